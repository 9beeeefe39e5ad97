/*
 * libFuzzer target for the standalone baselines file: any bytes in, and
 * either an error with a message and no document kept, or a db that a fixed
 * measurement can be admitted against in both modes without crashing, and
 * whose enrolled form survives the save -> load round trip.
 *
 * The verdict is checked exactly: an entry admits the measurement if and
 * only if it lists exactly its files, its segments (when it lists any: all
 * of them, no more, no fewer) and its partition digest (when it gives one).
 * Every message, whatever the input, is printable text (hostile names are
 * quoted).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/ipc/baseline.h"
#include "agent/ipc/measure.h"
#include "common/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* motd = 11.., app.conf = 22.., segments 33.. and 44.., digest 00 01 .. 1f
 * (fuzz/seeds/baseline/match holds its entry). */
static const struct measure *fixed(void)
{
	static struct measure m;
	static int done;
	if (done)
		return &m;
	m.nfile = 2;
	snprintf(m.file[0].name, sizeof(m.file[0].name), "motd");
	memset(m.file[0].digest, 0x11, MEASURE_DIGEST);
	snprintf(m.file[1].name, sizeof(m.file[1].name), "app.conf");
	memset(m.file[1].digest, 0x22, MEASURE_DIGEST);
	m.nseg = 2;
	memset(m.seg[0].digest, 0x33, MEASURE_DIGEST);
	memset(m.seg[1].digest, 0x44, MEASURE_DIGEST);
	for (int i = 0; i < MEASURE_DIGEST; i++)
		m.digest[i] = (uint8_t)i;
	done = 1;
	return &m;
}

static json_t *entry(const struct baseline_db *db, const char *name)
{
	return json_object_get(json_object_get(db->root, "partitions"), name);
}

/* A message reaches the operator's terminal and logs: no raw bytes. */
static void check_msg(const struct parley_err *err)
{
	PARLEY_ASSERT(err->msg[0]);
	for (const char *c = err->msg; *c; c++)
		PARLEY_ASSERT(*c >= 0x20 && *c < 0x7f);
}

static void check_admit_rc(int rc, const struct parley_err *err)
{
	PARLEY_ASSERT(rc == 0 || rc == -EBADMSG || rc == -ENOENT);
	if (rc < 0) {
		PARLEY_ASSERT(err->code == rc);
		check_msg(err);
	}
}

static bool hex_is(json_t *v, const uint8_t *d)
{
	char h[2 * MEASURE_DIGEST + 1];
	measure_hex(d, h);
	return json_is_string(v) && !strcmp(json_string_value(v), h);
}

/* The entry lists exactly the fixed measurement's files. */
static bool files_equal(json_t *e)
{
	const struct measure *m = fixed();
	json_t *files = json_object_get(e, "files");
	if (json_object_size(files) != m->nfile)
		return false;
	for (unsigned i = 0; i < m->nfile; i++)
		if (!hex_is(json_object_get(files, m->file[i].name),
			    m->file[i].digest))
			return false;
	return true;
}

/* The first `n` segments listed are the measurement's. */
static bool segs_match(json_t *segs, unsigned n)
{
	const struct measure *m = fixed();
	for (unsigned i = 0; i < n; i++)
		if (!hex_is(json_array_get(segs, i), m->seg[i].digest))
			return false;
	return true;
}

/* Admitted if and only if everything the entry lists is the
 * measurement's: the files exactly; the segments, when listed, all of
 * them in order and no others; the partition digest, when given; the
 * plugins, when listed, exactly its (none). */
static void check_verdict(json_t *e, int rc)
{
	const struct measure *m = fixed();
	json_t *segs = json_object_get(e, "segments");
	json_t *dig = json_object_get(e, "digest");
	json_t *plg = json_object_get(e, "plugins");
	/* The fixed measurement loads no plugin: a listed set must be
	 * empty. */
	bool match = (!plg || json_object_size(plg) == 0) &&
		     files_equal(e) &&
		     (!segs || (json_array_size(segs) == m->nseg &&
				segs_match(segs, m->nseg))) &&
		     (!dig || hex_is(dig, m->digest));
	PARLEY_ASSERT((rc == 0) == match);
}

/* What baseline_save writes, read back the way baseline_load reads it. */
static void round_trip(const struct baseline_db *db, bool enrolled)
{
	char *text = json_dumps(db->root, JSON_INDENT(2) | JSON_SORT_KEYS);
	PARLEY_ASSERT(text);
	struct baseline_db back = { .mode = BASELINE_GOLDEN };
	struct parley_err err = { 0 };
	int rc = baseline_parse(&back, text, strlen(text), &err);
	PARLEY_ASSERT(rc == 0);
	if (enrolled) {
		rc = baseline_admit(&back, "pong", fixed(), &err);
		PARLEY_ASSERT(rc == 0);
	}
	baseline_free(&back);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct baseline_db db = { .mode = BASELINE_GOLDEN };
	struct parley_err err = { 0 };
	int rc = baseline_parse(&db, (const char *)data, size, &err);
	if (rc < 0) {
		PARLEY_ASSERT(rc == -EINVAL);
		PARLEY_ASSERT(err.code == rc);
		check_msg(&err);
		PARLEY_ASSERT(db.root == NULL);
		return 0;
	}
	PARLEY_ASSERT(rc == 0 && json_is_object(db.root));

	/* Golden: an entry is compared, no entry is ENOENT, nothing is
	 * recorded. */
	bool had_ping = entry(&db, "ping") != NULL;
	rc = baseline_admit(&db, "ping", fixed(), &err);
	check_admit_rc(rc, &err);
	PARLEY_ASSERT((rc == -ENOENT) == !had_ping);
	if (had_ping)
		check_verdict(entry(&db, "ping"), rc);
	PARLEY_ASSERT(!db.changed);

	/* Enroll: no entry means the measurement is recorded, and then it
	 * matches itself. */
	db.mode = BASELINE_ENROLL;
	bool had_pong = entry(&db, "pong") != NULL;
	rc = baseline_admit(&db, "pong", fixed(), &err);
	check_admit_rc(rc, &err);
	PARLEY_ASSERT(rc != -ENOENT);
	if (had_pong)
		check_verdict(entry(&db, "pong"), rc);
	if (!had_pong) {
		PARLEY_ASSERT(rc == 0 && db.changed && entry(&db, "pong"));
		rc = baseline_admit(&db, "pong", fixed(), &err);
		PARLEY_ASSERT(rc == 0);
	}
	round_trip(&db, !had_pong);
	baseline_free(&db);
	PARLEY_ASSERT(db.root == NULL);
	return 0;
}
