/* "disks": [{"name", "path", "size", "sector_size", "read_only",
 * "encryption": {"cipher": "aes-xts-plain64", "key": PATH}}] ("key" may
 * be left out under a daemon, which releases the key). Names are
 * 1..31 bytes of [A-Za-z0-9_.-], unique; paths (disk and key) relative
 * without ".." (agent/beneath.h); two disks never share a file. */
#include "agent/disk/disk_spec.h"
#include "agent/beneath.h"
#include "common/jsonv.h"
#include "common/size.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const disk_fields[] = {
	"name", "path", "size", "sector_size", "read_only", "encryption", NULL
};
static const char *const enc_fields[] = { "cipher", "key", NULL };

static int get_str(json_t *o, const char *key, const char *lbl,
		   bool required, const char **s, size_t *len,
		   struct parley_err *err)
{
	json_t *v = json_object_get(o, key);
	*s = NULL;
	if (!v)
		return required ? perr(err, -EINVAL, "%s: missing", lbl) : 0;
	return jv_get_string(v, lbl, s, len, err);
}

static int path_field(json_t *o, const char *key, const char *lbl,
		      char **out, struct parley_err *err)
{
	const char *s;
	size_t len = 0;
	int rc = get_str(o, key, lbl, true, &s, &len, err);
	if (rc)
		return rc;
	if (!len || len >= SPEC_PATH_MAX)
		return perr(err, -EINVAL, "%s: %zu bytes, must be 1..%d", lbl,
			    len, SPEC_PATH_MAX - 1);
	rc = beneath_check(s, lbl, err);
	if (rc)
		return rc;
	*out = strdup(s);
	return *out ? 0 : perr(err, -ENOMEM, "%s: out of memory", lbl);
}

static int size_field(json_t *o, const char *lbl, uint64_t *size,
		      struct parley_err *err)
{
	json_t *v = json_object_get(o, "size");
	if (!v)
		return perr(err, -EINVAL, "%s: missing", lbl);
	if (json_is_integer(v)) {
		if (json_integer_value(v) <= 0)
			return perr(err, -EINVAL, "%s: not a positive number "
				    "of bytes", lbl);
		*size = (uint64_t)json_integer_value(v);
		return 0;
	}
	const char *s;
	size_t len;
	int rc = jv_get_string(v, lbl, &s, &len, err);
	if (rc)
		return rc;
	if (parse_size(s, size) < 0) {
		struct jv_quoted q;
		return perr(err, -EINVAL, "%s: %s is not a size (use bytes or "
			    "K/M/G)", lbl, jv_quote(&q, s, len));
	}
	return 0;
}

static int enc_field(json_t *e, int i, struct part_disk_spec *d,
		     struct parley_err *err)
{
	char lbl[64], where[48];
	json_t *v = json_object_get(e, "encryption");
	if (!v)
		return 0;
	snprintf(lbl, sizeof(lbl), "disks[%d].encryption", i);
	if (!json_is_object(v))
		return jv_type_error(v, lbl, "an object", err);
	snprintf(where, sizeof(where), "disks[%d].encryption: ", i);
	int rc = jv_check_known(v, enc_fields, where, err);
	const char *s;
	size_t len;
	snprintf(lbl, sizeof(lbl), "disks[%d].encryption.cipher", i);
	if (!rc)
		rc = get_str(v, "cipher", lbl, true, &s, &len, err);
	if (!rc && strcmp(s, "aes-xts-plain64")) {
		struct jv_quoted q;
		rc = perr(err, -EINVAL, "%s: %s is not supported (only "
			  "\"aes-xts-plain64\")", lbl, jv_quote(&q, s, len));
	}
	snprintf(lbl, sizeof(lbl), "disks[%d].encryption.key", i);
	/* No key file: the key comes from the daemon's bundle
	 * (agent/disk/keyring.h); without a daemon the open says so. */
	if (!rc && json_object_get(v, "key"))
		rc = path_field(v, "key", lbl, &d->key, err);
	d->encrypted = rc == 0;
	return rc;
}

static int disk_entry(json_t *e, int i, struct part_spec *out,
		      struct parley_err *err)
{
	struct part_disk_spec *d = &out->disk[i];
	char lbl[64], where[32];
	if (!json_is_object(e))
		return perr(err, -EINVAL, "disks[%d]: expected an object, got "
			    "%s", i, jv_type_name(e));
	snprintf(where, sizeof(where), "disks[%d]: ", i);
	int rc = jv_check_known(e, disk_fields, where, err);
	const char *s;
	size_t len = 0;
	snprintf(lbl, sizeof(lbl), "disks[%d].name", i);
	if (!rc)
		rc = get_str(e, "name", lbl, true, &s, &len, err);
	if (!rc && !jv_name_valid(s, len, sizeof(d->name)))
		rc = perr(err, -EINVAL, "%s: must be 1..%d of A-Z a-z 0-9 _ "
			  ". -", lbl, PARLEY_DISK_NAME_MAX - 1);
	for (int k = 0; !rc && k < i; k++)
		if (!strcmp(out->disk[k].name, s))
			rc = perr(err, -EINVAL, "%s: \"%s\" twice", lbl, s);
	if (!rc)
		memcpy(d->name, s, len + 1);
	snprintf(lbl, sizeof(lbl), "disks[%d].path", i);
	if (!rc)
		rc = path_field(e, "path", lbl, &d->path, err);
	for (int k = 0; !rc && k < i; k++)
		if (!strcmp(out->disk[k].path, d->path))
			rc = perr(err, -EINVAL, "%s: the file of disks[%d] "
				  "too", lbl, k);
	d->sector_size = 512;
	json_t *v = json_object_get(e, "sector_size");
	snprintf(lbl, sizeof(lbl), "disks[%d].sector_size", i);
	if (!rc && v && (!json_is_integer(v) ||
			 (json_integer_value(v) != 512 &&
			  json_integer_value(v) != 4096)))
		rc = perr(err, -EINVAL, "%s: must be 512 or 4096", lbl);
	if (!rc && v)
		d->sector_size = (uint32_t)json_integer_value(v);
	snprintf(lbl, sizeof(lbl), "disks[%d].size", i);
	if (!rc)
		rc = size_field(e, lbl, &d->size, err);
	if (!rc && (d->size < d->sector_size || d->size % d->sector_size ||
		    d->size > SPEC_DISK_SIZE_MAX))
		rc = perr(err, -EINVAL, "%s: %llu bytes, must be a multiple "
			  "of %u up to 1T", lbl, (unsigned long long)d->size,
			  d->sector_size);
	v = json_object_get(e, "read_only");
	snprintf(lbl, sizeof(lbl), "disks[%d].read_only", i);
	if (!rc && v && !json_is_boolean(v))
		rc = jv_type_error(v, lbl, "true or false", err);
	d->read_only = v && json_is_true(v);
	if (!rc)
		rc = enc_field(e, i, d, err);
	return rc;
}

int spec_parse_disks(json_t *root, struct part_spec *out,
		     struct parley_err *err)
{
	json_t *v = json_object_get(root, "disks");
	if (!v)
		return 0;
	if (!json_is_array(v))
		return jv_type_error(v, "field \"disks\"", "an array", err);
	size_t n = json_array_size(v);
	if (n > PARLEY_DISKS_MAX)
		return perr(err, -EINVAL, "field \"disks\": %zu entries, at "
			    "most %d", n, PARLEY_DISKS_MAX);
	for (size_t i = 0; i < n; i++) {
		int rc = disk_entry(json_array_get(v, i), (int)i, out, err);
		if (rc)
			return rc;
		out->ndisk++;
	}
	return 0;
}
