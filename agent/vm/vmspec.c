/*
 * VM spec parser (vmspec.h). Like agent/spec.c: jansson's tree, each field
 * checked by its own function, every error naming the field and quoting
 * the offending text sanitised; unknown fields refused (a misspelt one
 * would otherwise be ignored without a word).
 */
#include "agent/vm/vmspec.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jansson.h>

#include "agent/beneath.h"
#include "agent/spec.h"
#include "common/fileio.h"
#include "common/jsonv.h"
#include "common/size.h"

static const char *const top_fields[] = {
	"kind", "name", "kernel", "initramfs", "memory", "vcpus", "config",
	"cmdline", "accel", NULL
};
static const char *const config_fields[] = { "name", "path", NULL };

int vmspec_is_vm(const char *json, size_t len, struct parley_err *err)
{
	if (len > SPEC_FILE_MAX)
		return 0; /* the thin parser says it is too big */
	json_error_t jerr;
	json_t *root = json_loadb(json ? json : "", len,
				  JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!root)
		return 0;
	int rc = 0;
	json_t *k = json_is_object(root) ? json_object_get(root, "kind") : NULL;
	if (k) {
		const char *s = NULL;
		size_t n = 0;
		rc = jv_get_string(k, "field \"kind\"", &s, &n, err);
		if (!rc && !strcmp(s, "vm"))
			rc = 1;
		else if (!rc && strcmp(s, "thin")) {
			struct jv_quoted q;
			rc = perr(err, -EINVAL, "field \"kind\": %s is neither "
				  "\"thin\" nor \"vm\"", jv_quote(&q, s, n));
		}
	}
	json_decref(root);
	return rc;
}

struct ctx {
	struct beneath_dirs img, cfg;
};

/* Open path beneath dirs and keep the absolute name of what was opened
 * (QEMU and the measurement open it by name). */
static int resolve(const struct beneath_dirs *d, const char *path,
		   const char *lbl, char *out, size_t cap,
		   struct parley_err *err)
{
	if (!*path)
		return perr(err, -EINVAL, "%s: must not be empty", lbl);
	int fd = beneath_open(d, path, lbl, err);
	if (fd < 0)
		return fd;
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(proc, out, cap);
	close(fd);
	if (n < 0)
		return perr(err, -errno, "%s: %s: %s", lbl, path, strerror(errno));
	if ((size_t)n >= cap)
		return perr(err, -ENAMETOOLONG, "%s: %s: name too long", lbl,
			    path);
	out[n] = 0;
	/* The domain XML carries it between quotes. */
	if (strpbrk(out, "'\"<>&"))
		return perr(err, -EINVAL, "%s: %s: quote or markup characters "
			    "in the file's name", lbl, path);
	return 0;
}

static int path_field(json_t *root, const char *key, const struct beneath_dirs *d,
		      char *out, size_t cap, struct parley_err *err)
{
	char lbl[48];
	snprintf(lbl, sizeof(lbl), "field \"%s\"", key);
	json_t *v = json_object_get(root, key);
	if (!v)
		return perr(err, -EINVAL, "missing field \"%s\"", key);
	const char *s = NULL;
	size_t n = 0;
	int rc = jv_get_string(v, lbl, &s, &n, err);
	if (rc)
		return rc;
	if (n >= SPEC_PATH_MAX)
		return perr(err, -EINVAL, "%s: %zu bytes, at most %d", lbl, n,
			    SPEC_PATH_MAX - 1);
	return resolve(d, s, lbl, out, cap, err);
}

static int f_name(json_t *root, struct vm_spec *o, struct parley_err *err)
{
	json_t *v = json_object_get(root, "name");
	if (!v)
		return perr(err, -EINVAL, "missing field \"name\"");
	const char *s = NULL;
	size_t n = 0;
	int rc = jv_get_string(v, "field \"name\"", &s, &n, err);
	if (rc)
		return rc;
	if (!jv_name_valid(s, n, sizeof(o->name))) {
		struct jv_quoted q;
		return perr(err, -EINVAL, "field \"name\": %s is not 1..%zu "
			    "characters of [A-Za-z0-9_.-] (not starting with "
			    "'.' or '-')", jv_quote(&q, s, n),
			    sizeof(o->name) - 1);
	}
	memcpy(o->name, s, n + 1);
	return 0;
}

static int f_memory(json_t *root, struct vm_spec *o, struct parley_err *err)
{
	json_t *v = json_object_get(root, "memory");
	o->mem_mib = 192;
	if (!v)
		return 0;
	uint64_t b = 0;
	struct jv_quoted q;
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		if (i <= 0)
			return perr(err, -EINVAL, "field \"memory\": %lld is not "
				    "a positive number of bytes", (long long)i);
		b = (uint64_t)i;
	} else if (json_is_string(v)) {
		const char *s = NULL;
		size_t n = 0;
		int rc = jv_get_string(v, "field \"memory\"", &s, &n, err);
		if (rc)
			return rc;
		if (parse_size(s, &b) < 0)
			return perr(err, -EINVAL, "field \"memory\": %s is not a "
				    "size (use bytes or K/M/G)",
				    jv_quote(&q, s, n));
	} else {
		return jv_type_error(v, "field \"memory\"",
				     "a size string or an integer", err);
	}
	if (b % (1u << 20) || b / (1u << 20) < VMSPEC_MEM_MIN_MIB ||
	    b / (1u << 20) > VMSPEC_MEM_MAX_MIB)
		return perr(err, -EINVAL, "field \"memory\": %llu bytes; a VM "
			    "takes %uM..%uM in whole MiB",
			    (unsigned long long)b, VMSPEC_MEM_MIN_MIB,
			    VMSPEC_MEM_MAX_MIB);
	o->mem_mib = (unsigned)(b >> 20);
	return 0;
}

static int f_vcpus(json_t *root, struct vm_spec *o, struct parley_err *err)
{
	json_t *v = json_object_get(root, "vcpus");
	o->vcpus = 1;
	if (!v)
		return 0;
	if (!json_is_integer(v))
		return jv_type_error(v, "field \"vcpus\"", "an integer", err);
	json_int_t n = json_integer_value(v);
	if (n < 1 || n > VMSPEC_VCPUS_MAX)
		return perr(err, -EINVAL, "field \"vcpus\": %lld, not 1..%d",
			    (long long)n, VMSPEC_VCPUS_MAX);
	o->vcpus = (unsigned)n;
	return 0;
}

/* fw_cfg entry names: opt/parley/NAME. */
static bool cfg_name_ok(const char *s, size_t n, size_t cap)
{
	return jv_name_valid(s, n, cap);
}

static int f_config(json_t *root, const struct ctx *c, struct vm_spec *o,
		    struct parley_err *err)
{
	json_t *a = json_object_get(root, "config");
	if (!a)
		return perr(err, -EINVAL, "missing field \"config\" (at least "
			    "the \"run\" script)");
	if (!json_is_array(a))
		return jv_type_error(a, "field \"config\"", "an array", err);
	size_t n = json_array_size(a);
	if (n < 1 || n > VMHOST_CFG_MAX)
		return perr(err, -EINVAL, "field \"config\": %zu entries, "
			    "1..%d", n, VMHOST_CFG_MAX);
	int run = -1;
	for (size_t i = 0; i < n; i++) {
		char lbl[48], w[32];
		json_t *e = json_array_get(a, i);
		snprintf(w, sizeof(w), "config[%zu]: ", i);
		if (!json_is_object(e)) {
			snprintf(lbl, sizeof(lbl), "config[%zu]", i);
			return jv_type_error(e, lbl, "an object", err);
		}
		int rc = jv_check_known(e, config_fields, w, err);
		if (rc)
			return rc;
		const char *s = NULL;
		size_t len = 0;
		json_t *v = json_object_get(e, "name");
		snprintf(lbl, sizeof(lbl), "config[%zu].name", i);
		if (!v)
			return perr(err, -EINVAL, "%smissing field \"name\"", w);
		if ((rc = jv_get_string(v, lbl, &s, &len, err)))
			return rc;
		if (!cfg_name_ok(s, len, sizeof(o->cfg[i].name))) {
			struct jv_quoted q;
			return perr(err, -EINVAL, "%s: %s is not 1..%zu "
				    "characters of [A-Za-z0-9_.-]", lbl,
				    jv_quote(&q, s, len),
				    sizeof(o->cfg[i].name) - 1);
		}
		for (size_t k = 0; k < i; k++)
			if (!strcmp(o->cfg[k].name, s))
				return perr(err, -EINVAL, "%s: \"%s\" twice",
					    lbl, s);
		memcpy(o->cfg[i].name, s, len + 1);
		if (!strcmp(s, "run"))
			run = (int)i;
		v = json_object_get(e, "path");
		snprintf(lbl, sizeof(lbl), "config[%zu].path", i);
		if (!v)
			return perr(err, -EINVAL, "%smissing field \"path\"", w);
		if ((rc = jv_get_string(v, lbl, &s, &len, err)))
			return rc;
		if (len >= SPEC_PATH_MAX)
			return perr(err, -EINVAL, "%s: %zu bytes, at most %d",
				    lbl, len, SPEC_PATH_MAX - 1);
		if ((rc = resolve(&c->cfg, s, lbl, o->cfg[i].path,
				  sizeof(o->cfg[i].path), err)))
			return rc;
	}
	o->ncfg = (unsigned)n;
	if (run < 0)
		return perr(err, -EINVAL, "field \"config\": no entry named "
			    "\"run\" (the script the VM's init runs)");
	if (run > 0) { /* vmhost: cfg[0] is run */
		char tn[sizeof(o->cfg[0].name)], tp[sizeof(o->cfg[0].path)];
		memcpy(tn, o->cfg[0].name, sizeof(tn));
		memcpy(tp, o->cfg[0].path, sizeof(tp));
		memcpy(o->cfg[0].name, o->cfg[run].name, sizeof(tn));
		memcpy(o->cfg[0].path, o->cfg[run].path, sizeof(tp));
		memcpy(o->cfg[run].name, tn, sizeof(tn));
		memcpy(o->cfg[run].path, tp, sizeof(tp));
	}
	return 0;
}

static int f_cmdline(json_t *root, struct vm_spec *o, struct parley_err *err)
{
	json_t *v = json_object_get(root, "cmdline");
	if (!v)
		return 0;
	const char *s = NULL;
	size_t n = 0;
	int rc = jv_get_string(v, "field \"cmdline\"", &s, &n, err);
	if (rc)
		return rc;
	struct jv_quoted q;
	if (n >= sizeof(o->cmdline_extra))
		return perr(err, -EINVAL, "field \"cmdline\": %zu bytes, at "
			    "most %zu", n, sizeof(o->cmdline_extra) - 1);
	/* It goes into the domain XML and the kernel's command line: no
	 * markup, no quotes. */
	if (strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		      "0123456789._,=/:+ -") != n)
		return perr(err, -EINVAL, "field \"cmdline\": %s has "
			    "characters outside [A-Za-z0-9._,=/:+ -]",
			    jv_quote(&q, s, n));
	memcpy(o->cmdline_extra, s, n + 1);
	return 0;
}

static int f_accel(json_t *root, unsigned dflt, struct vm_spec *o,
		   struct parley_err *err)
{
	json_t *v = json_object_get(root, "accel");
	o->accel = dflt;
	if (!v)
		return 0;
	const char *s = NULL;
	size_t n = 0;
	int rc = jv_get_string(v, "field \"accel\"", &s, &n, err);
	if (rc)
		return rc;
	int a = vm_accel_parse(s);
	if (a < 0) {
		struct jv_quoted q;
		return perr(err, -EINVAL, "field \"accel\": %s is not auto, "
			    "kvm or tcg", jv_quote(&q, s, n));
	}
	o->accel = (unsigned)a;
	return 0;
}

int vmspec_parse(const char *json, size_t len, const char *base_dir,
		 const char *const *image_dirs, const char *const *config_dirs,
		 unsigned accel_default, struct vm_spec *out,
		 struct parley_err *err)
{
	memset(out, 0, sizeof(*out));
	if (len > SPEC_FILE_MAX)
		return perr(err, -EFBIG, "spec is %zu bytes, more than the %d "
			    "allowed", len, SPEC_FILE_MAX);
	json_error_t jerr;
	json_t *root = json_loadb(json ? json : "", len,
				  JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!root)
		return jv_syntax_error(&jerr, err);
	struct ctx c = { 0 };
	beneath_add(&c.img, base_dir);
	beneath_add_all(&c.img, image_dirs);
	beneath_add(&c.cfg, base_dir);
	beneath_add_all(&c.cfg, config_dirs);
	int rc;
	if (!json_is_object(root))
		rc = perr(err, -EINVAL, "spec: expected an object, got %s",
			  jv_type_name(root));
	else if ((rc = jv_check_known(root, top_fields, "", err)) == 0) {
		int vm = vmspec_is_vm(json, len, err);
		rc = vm == 1 ? 0 : vm < 0 ? vm
		     : perr(err, -EINVAL, "field \"kind\": must be \"vm\" "
			    "in a VM's spec");
	}
	if (!rc)
		rc = f_name(root, out, err);
	if (!rc)
		rc = path_field(root, "kernel", &c.img, out->kernel,
				sizeof(out->kernel), err);
	if (!rc)
		rc = path_field(root, "initramfs", &c.img, out->initrd,
				sizeof(out->initrd), err);
	if (!rc)
		rc = f_memory(root, out, err);
	if (!rc)
		rc = f_vcpus(root, out, err);
	if (!rc)
		rc = f_config(root, &c, out, err);
	if (!rc)
		rc = f_cmdline(root, out, err);
	if (!rc)
		rc = f_accel(root, accel_default, out, err);
	json_decref(root);
	if (rc)
		memset(out, 0, sizeof(*out));
	return rc;
}

int vmspec_load(const char *path, const char *const *image_dirs,
		const char *const *config_dirs, unsigned accel_default,
		struct vm_spec *out, struct parley_err *err)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	memset(out, 0, sizeof(*out));
	int rc = file_read_all(path, SPEC_FILE_MAX, &buf, &len, err);
	if (rc)
		return rc;
	char *copy = strdup(path);
	if (!copy) {
		free(buf);
		return perr(err, -ENOMEM, "%s: out of memory", path);
	}
	rc = vmspec_parse((const char *)buf, len, dirname(copy), image_dirs,
			  config_dirs, accel_default, out, err);
	if (rc)
		perr_prefix(err, "%s", path);
	free(copy);
	free(buf);
	return rc;
}

int vmspec_file_is_vm(const char *path, struct parley_err *err)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = file_read_all(path, SPEC_FILE_MAX, &buf, &len, err);
	if (rc)
		return rc == -EFBIG ? 0 : rc;
	rc = vmspec_is_vm((const char *)buf, len, err);
	if (rc < 0)
		perr_prefix(err, "%s", path);
	free(buf);
	return rc;
}

unsigned vm_accel_default(void)
{
	const char *e = getenv("PARLEY_VM_ACCEL");
	int acc = e ? vm_accel_parse(e) : VM_ACCEL_AUTO;
	if (acc < 0) {
		fprintf(stderr, "parley-agent: PARLEY_VM_ACCEL=%s is not auto, "
			"kvm or tcg: auto\n", e);
		acc = VM_ACCEL_AUTO;
	}
	return (unsigned)acc;
}
