#include "agent/ipc/baseline.h"
#include "common/fileio.h"
#include "common/jsonv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const part_fields[] = { "digest", "files", "segments",
					   "plugins", NULL };

static bool is_hex64(const json_t *v)
{
	if (!json_is_string(v) || json_string_length(v) != 2 * MEASURE_DIGEST)
		return false;
	const char *s = json_string_value(v);
	for (int i = 0; i < 2 * MEASURE_DIGEST; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static int check_files(const char *name, json_t *files, struct parley_err *err)
{
	if (!json_is_object(files))
		return perr(err, -EINVAL, "partitions.%s.files: expected an "
			    "object, got %s", name, jv_type_name(files));
	const char *k;
	json_t *v;
	json_object_foreach(files, k, v) {
		struct jv_quoted q;
		if (!k[0] || strlen(k) >= PARLEY_CONFIG_NAME_MAX)
			return perr(err, -EINVAL, "partitions.%s.files: bad "
				    "file name %s", name,
				    jv_quote(&q, k, strlen(k)));
		if (!is_hex64(v))
			return perr(err, -EINVAL, "partitions.%s.files.%s: not "
				    "a SHA-256 in lower-case hex", name,
				    jv_quote(&q, k, strlen(k)));
	}
	return 0;
}

static int check_part(const char *name, json_t *p, struct parley_err *err)
{
	if (!jv_name_valid(name, strlen(name), PARLEY_CONFIG_NAME_MAX))
		return perr(err, -EINVAL, "partitions: bad partition name");
	if (!json_is_object(p))
		return perr(err, -EINVAL, "partitions.%s: expected an object",
			    name);
	char where[96];
	snprintf(where, sizeof(where), "partitions.%s: ", name);
	int rc = jv_check_known(p, part_fields, where, err);
	if (rc < 0)
		return rc;
	json_t *d = json_object_get(p, "digest");
	if (d && !is_hex64(d))
		return perr(err, -EINVAL, "partitions.%s.digest: not a SHA-256 "
			    "in lower-case hex", name);
	json_t *files = json_object_get(p, "files");
	if (!files)
		return perr(err, -EINVAL, "partitions.%s: missing \"files\"",
			    name);
	rc = check_files(name, files, err);
	json_t *plugins = json_object_get(p, "plugins");
	if (rc == 0 && plugins) {
		if (!json_is_object(plugins) ||
		    json_object_size(plugins) > MEASURE_PLUGINS_MAX)
			return perr(err, -EINVAL, "partitions.%s.plugins: "
				    "expected an object of at most %d", name,
				    MEASURE_PLUGINS_MAX);
		const char *k;
		json_t *v;
		json_object_foreach(plugins, k, v) {
			struct jv_quoted q;
			if (!jv_name_valid(k, strlen(k), 32))
				return perr(err, -EINVAL, "partitions.%s."
					    "plugins: bad plugin name %s", name,
					    jv_quote(&q, k, strlen(k)));
			if (!is_hex64(v))
				return perr(err, -EINVAL, "partitions.%s."
					    "plugins.%s: not a SHA-256 in "
					    "lower-case hex", name, k);
		}
	}
	json_t *segs = json_object_get(p, "segments");
	if (rc == 0 && segs) {
		if (!json_is_array(segs) || json_array_size(segs) > MEASURE_SEGS_MAX)
			return perr(err, -EINVAL, "partitions.%s.segments: "
				    "expected an array of at most %d", name,
				    MEASURE_SEGS_MAX);
		size_t i;
		json_t *v;
		json_array_foreach(segs, i, v)
			if (!is_hex64(v))
				return perr(err, -EINVAL, "partitions.%s."
					    "segments[%zu]: not a SHA-256", name,
					    i);
	}
	return rc;
}

/* A guest-reported path as the VM control protocol admits it
 * (agent/vm/vmctl.c): absolute, printable ASCII, no ".." component. */
static bool guest_path_ok(const char *s)
{
	size_t n = strlen(s);
	if (s[0] != '/' || n >= BASELINE_GUEST_PATH_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return false;
	for (const char *p = s; (p = strstr(p, "..")); p += 2)
		if (p[-1] == '/' && (p[2] == '/' || p[2] == '\0'))
			return false;
	return true;
}

static int check_guest(json_t *g, struct parley_err *err)
{
	if (!json_is_object(g))
		return perr(err, -EINVAL, "\"guest_reported\": expected an "
			    "object");
	const char *k;
	json_t *v;
	json_object_foreach(g, k, v) {
		if (!jv_name_valid(k, strlen(k), PARLEY_CONFIG_NAME_MAX))
			return perr(err, -EINVAL, "guest_reported: bad "
				    "partition name");
		if (!json_is_object(v) ||
		    json_object_size(v) > BASELINE_GUEST_FILES_MAX)
			return perr(err, -EINVAL, "guest_reported.%s: expected "
				    "an object of at most %d", k,
				    BASELINE_GUEST_FILES_MAX);
		const char *path;
		json_t *d;
		json_object_foreach(v, path, d) {
			struct jv_quoted q;
			if (!guest_path_ok(path))
				return perr(err, -EINVAL, "guest_reported.%s: "
					    "bad path %s", k,
					    jv_quote(&q, path, strlen(path)));
			if (!is_hex64(d))
				return perr(err, -EINVAL, "guest_reported.%s."
					    "%s: not a SHA-256 in lower-case "
					    "hex", k, path);
		}
	}
	return 0;
}

static int check_root(json_t *root, struct parley_err *err)
{
	static const char *const top[] = { "partitions", "guest_reported",
					   NULL };
	if (!json_is_object(root))
		return perr(err, -EINVAL, "expected an object");
	int rc = jv_check_known(root, top, "", err);
	if (rc < 0)
		return rc;
	json_t *parts = json_object_get(root, "partitions");
	if (!json_is_object(parts))
		return perr(err, -EINVAL, "\"partitions\": expected an object");
	const char *k;
	json_t *v;
	json_object_foreach(parts, k, v) {
		rc = check_part(k, v, err);
		if (rc < 0)
			return rc;
	}
	json_t *g = json_object_get(root, "guest_reported");
	return g ? check_guest(g, err) : 0;
}

int baseline_parse(struct baseline_db *db, const char *json, size_t len,
		   struct parley_err *err)
{
	json_error_t jerr;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return jv_syntax_error(&jerr, err);
	int rc = check_root(root, err);
	if (rc < 0) {
		json_decref(root);
		return rc;
	}
	json_decref(db->root);
	db->root = root;
	return 0;
}

int baseline_load(struct baseline_db *db, const char *path,
		  enum baseline_mode mode, struct parley_err *err)
{
	memset(db, 0, sizeof(*db));
	db->mode = mode;
	db->path = strdup(path);
	uint8_t *buf;
	size_t len;
	int rc = file_read_all(path, BASELINE_FILE_MAX, &buf, &len, err);
	if (rc == -ENOENT && mode == BASELINE_ENROLL) {
		/* No file yet: enrolment starts one. */
		if (err)
			*err = (struct parley_err){ 0 };
		db->root = json_pack("{s:{}}", "partitions");
		return 0;
	}
	if (rc == 0) {
		rc = baseline_parse(db, (const char *)buf, len, err);
		free(buf);
		if (rc < 0)
			perr_prefix(err, "baselines %s", path);
	}
	if (rc < 0)
		baseline_free(db);
	return rc;
}

static json_t *entry_of(const struct measure *m)
{
	char hex[2 * MEASURE_DIGEST + 1];
	json_t *files = json_object(), *segs = json_array();
	for (unsigned i = 0; i < m->nfile; i++) {
		measure_hex(m->file[i].digest, hex);
		json_object_set_new(files, m->file[i].name, json_string(hex));
	}
	for (unsigned i = 0; i < m->nseg; i++) {
		measure_hex(m->seg[i].digest, hex);
		json_array_append_new(segs, json_string(hex));
	}
	measure_hex(m->digest, hex);
	json_t *e = json_pack("{s:s,s:o,s:o}", "digest", hex, "files", files,
			      "segments", segs);
	if (m->nplugin) {
		json_t *plugins = json_object();
		for (unsigned i = 0; i < m->nplugin; i++) {
			measure_hex(m->plugin[i].digest, hex);
			json_object_set_new(plugins, m->plugin[i].name,
					    json_string(hex));
		}
		json_object_set_new(e, "plugins", plugins);
	}
	return e;
}

/* Compare a measurement with a stored entry, naming what differs. */
static int compare(const char *name, json_t *e, const struct measure *m,
		   struct parley_err *err)
{
	char hex[2 * MEASURE_DIGEST + 1];
	json_t *files = json_object_get(e, "files");
	for (unsigned i = 0; i < m->nfile; i++) {
		json_t *want = json_object_get(files, m->file[i].name);
		measure_hex(m->file[i].digest, hex);
		if (!want || strcmp(json_string_value(want), hex))
			return perr(err, -EBADMSG, "partition %s: config file "
				    "\"%s\" %s its baseline", name,
				    m->file[i].name,
				    want ? "differs from" : "is not in");
	}
	if (json_object_size(files) != m->nfile)
		return perr(err, -EBADMSG, "partition %s: its baseline lists "
			    "config files it no longer has", name);
	/* Plugins, when the entry lists them (enrolled with plugins):
	 * exactly the same set, each the same file. */
	json_t *plugins = json_object_get(e, "plugins");
	for (unsigned i = 0; plugins && i < m->nplugin; i++) {
		json_t *want = json_object_get(plugins, m->plugin[i].name);
		measure_hex(m->plugin[i].digest, hex);
		if (!want || strcmp(json_string_value(want), hex))
			return perr(err, -EBADMSG, "partition %s: device plugin "
				    "\"%s\" %s its baseline", name,
				    m->plugin[i].name,
				    want ? "differs from" : "is not in");
	}
	if (plugins && json_object_size(plugins) != m->nplugin)
		return perr(err, -EBADMSG, "partition %s: its baseline lists "
			    "device plugins it no longer has", name);
	json_t *segs = json_object_get(e, "segments");
	if (segs && json_array_size(segs) != m->nseg)
		return perr(err, -EBADMSG, "partition %s: %u image segments, "
			    "its baseline has %zu", name, m->nseg,
			    json_array_size(segs));
	for (unsigned i = 0; segs && i < m->nseg; i++) {
		json_t *want = json_array_get(segs, i);
		measure_hex(m->seg[i].digest, hex);
		if (strcmp(json_string_value(want), hex))
			return perr(err, -EBADMSG, "partition %s: image segment "
				    "%u differs from its baseline", name, i);
	}
	/* The partition digest covers files and segments together: a
	 * baseline that gives only it still pins the image. */
	json_t *d = json_object_get(e, "digest");
	measure_hex(m->digest, hex);
	if (d && strcmp(json_string_value(d), hex))
		return perr(err, -EBADMSG, "partition %s: partition digest "
			    "differs from its baseline", name);
	return 0;
}

int baseline_admit(struct baseline_db *db, const char *name,
		   const struct measure *m, struct parley_err *err)
{
	json_t *parts = json_object_get(db->root, "partitions");
	json_t *e = json_object_get(parts, name);
	if (e)
		return compare(name, e, m, err);
	if (db->mode == BASELINE_GOLDEN)
		return perr(err, -ENOENT, "partition %s has no golden baseline",
			    name);
	json_object_set_new(parts, name, entry_of(m));
	db->changed = true;
	return 0;
}

int baseline_guest_report(struct baseline_db *db, const char *name,
			  const char *path, const uint8_t digest[MEASURE_DIGEST],
			  bool *enrolled, struct parley_err *err)
{
	char hex[2 * MEASURE_DIGEST + 1];
	*enrolled = false;
	if (!jv_name_valid(name, strlen(name), PARLEY_CONFIG_NAME_MAX) ||
	    !guest_path_ok(path))
		return perr(err, -EINVAL, "guest-reported digest: bad name or "
			    "path");
	measure_hex(digest, hex);
	json_t *g = json_object_get(db->root, "guest_reported");
	json_t *mine = g ? json_object_get(g, name) : NULL;
	json_t *want = mine ? json_object_get(mine, path) : NULL;
	if (want)
		return strcmp(json_string_value(want), hex)
			? perr(err, -EBADMSG, "partition %s: guest-reported "
			       "file %s differs from its baseline", name, path)
			: 0;
	if (db->mode == BASELINE_GOLDEN)
		return perr(err, -EBADMSG, "partition %s: guest-reported file "
			    "%s is not in its golden baseline", name, path);
	if (mine && json_object_size(mine) >= BASELINE_GUEST_FILES_MAX)
		return perr(err, -ENOSPC, "partition %s: more than %d "
			    "guest-reported files", name,
			    BASELINE_GUEST_FILES_MAX);
	if (!g) {
		g = json_object();
		json_object_set_new(db->root, "guest_reported", g);
	}
	if (!mine) {
		mine = json_object();
		json_object_set_new(g, name, mine);
	}
	json_object_set_new(mine, path, json_string(hex));
	db->changed = true;
	*enrolled = true;
	return 0;
}

int baseline_memory(struct baseline_db *db)
{
	memset(db, 0, sizeof(*db));
	db->mode = BASELINE_ENROLL;
	db->root = json_pack("{s:{}}", "partitions");
	return db->root ? 0 : -ENOMEM;
}

static int dump_to_fd(const char *buf, size_t len, void *data)
{
	return fd_write_all(*(const int *)data, buf, len) < 0 ? -1 : 0;
}

/* Like json_dump_file, with the file opened close-on-exec. */
static int dump_file(json_t *root, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	int rc = json_dump_callback(root, dump_to_fd, &fd,
				    JSON_INDENT(2) | JSON_SORT_KEYS);
	if (close(fd) < 0)
		rc = -1;
	return rc;
}

int baseline_save(struct baseline_db *db, struct parley_err *err)
{
	if (!db->changed || !db->path)
		return 0; /* unchanged, or kept in memory only */
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", db->path) >= sizeof(tmp))
		return perr(err, -ENAMETOOLONG, "baseline path too long");
	if (dump_file(db->root, tmp) < 0 ||
	    rename(tmp, db->path) < 0) {
		unlink(tmp);
		return perr(err, -EIO, "writing baselines %s failed", db->path);
	}
	db->changed = false;
	return 0;
}

void baseline_free(struct baseline_db *db)
{
	json_decref(db->root);
	free(db->path);
	db->root = NULL;
	db->path = NULL;
}
