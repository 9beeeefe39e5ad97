/* Anchored audit (issue 10 item 6): signed checkpoints of the chain's
 * head, stored and exported, and verified offline -- passing on an
 * untouched store, failing on one rewritten and rechained by someone who
 * had the file but not the key, and on a forged or altered checkpoint. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/checkpoint.h"
#include "common/fileio.h"
#include "common/pki.h"
#include "common/sign.h"
#include "db/store.h"
#include "tests/helpers/apiclient.h"
#include "tests/helpers/audit_rewrite.h"
#include "tests/helpers/pgtmp.h"
#include "tests/helpers/testutil.h"

static struct store *fresh(char **dir, char *path, size_t cap)
{
	*dir = t_tmpdir();
	t_store_uri(*dir, "s.db", path, cap);
	struct store *s = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(store_open(path, &s, &err), 0, "%s", perr_msg(&err));
	return s;
}

static void append(struct store *s, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		char d[32];
		snprintf(d, sizeof(d), "event %u", i);
		struct store_audit_in ev = { .host = "h1", .event = "test",
					     .detail = d };
		cr_assert_eq(store_audit_append(s, &ev, 1, NULL, NULL), 0);
	}
}

/* On SQLite (checkpoint) and PostgreSQL (checkpoint_pg). */
STORE_TEST(checkpoint, store_keeps_them_newest_first)
{
	char *dir, path[600];
	struct store *s = fresh(&dir, path, sizeof(path));
	struct parley_err err = { 0 };
	struct store_checkpoint c = { .seq = 3, .time_ms = 1000 }, out[4];
	memset(c.key_id, 'a', 64);
	memset(c.hash, 7, sizeof(c.hash));
	memset(c.sig, 9, sizeof(c.sig));
	uint64_t id;
	for (unsigned i = 1; i <= 3; i++) {
		c.seq = i * 10;
		cr_assert_eq(store_checkpoint_add(s, &c, &id, &err), 0, "%s",
			     perr_msg(&err));
		cr_expect_eq(id, i);
	}
	cr_assert_eq(store_checkpoint_list(s, 0, 4, out, &err), 3);
	cr_expect_eq(out[0].seq, 30);
	cr_expect_eq(out[2].seq, 10);
	cr_expect_eq(memcmp(out[1].sig, c.sig, 64), 0);
	cr_expect_str_eq(out[1].key_id, c.key_id);
	cr_assert_eq(store_checkpoint_list(s, 3, 1, out, &err), 1);
	cr_expect_eq(out[0].id, 2);
	cr_expect_eq(store_checkpoint_list(s, 0, 0, out, &err), -EINVAL);
	/* shapes: seq 0, a key id that is not 64 hex digits */
	c.seq = 0;
	cr_expect_eq(store_checkpoint_add(s, &c, NULL, &err), -EINVAL);
	c.seq = 1;
	c.key_id[5] = 'X';
	cr_expect_eq(store_checkpoint_add(s, &c, NULL, &err), -EINVAL);
	c.key_id[5] = 0;
	cr_expect_eq(store_checkpoint_add(s, &c, NULL, &err), -EINVAL);
	store_close(s);
	t_store_uri_drop(path);
	t_rmtree(dir);
	free(dir);
}

/* The chain alone cannot tell a rewritten history; the head it had can. */
Test(checkpoint, a_rewritten_and_rechained_store_fails_verify_to)
{
	char *dir, path[600];
	struct store *s = fresh(&dir, path, sizeof(path));
	struct parley_err err = { 0 };
	append(s, 6);
	uint64_t head, bad = 0;
	uint8_t hash[32];
	cr_assert_eq(store_audit_head(s, &head, hash, &err), 0);
	cr_assert_eq(head, 6);
	cr_expect_eq(store_audit_verify_to(s, 6, hash, &bad, &err), 0, "%s",
		     perr_msg(&err));
	append(s, 2);   /* rows after the checkpoint are not its business */
	cr_expect_eq(store_audit_verify_to(s, 6, hash, &bad, &err), 0, "%s",
		     perr_msg(&err));
	store_close(s);

	t_audit_rewrite(path, 3, "nothing happened");
	cr_assert_eq(store_open(path, &s, &err), 0);
	cr_expect_eq(store_audit_verify(s, &bad, NULL, &err), 0,
		     "the rechained store verifies on its own: %s",
		     perr_msg(&err));
	cr_expect_eq(store_audit_verify_to(s, 6, hash, &bad, &err), -EBADMSG);
	cr_expect_eq(bad, 6);
	cr_expect(strstr(perr_msg(&err), "history rewritten"), "%s",
		  perr_msg(&err));
	/* a checkpoint beyond the rows there are */
	cr_expect_eq(store_audit_verify_to(s, 99, hash, &bad, &err), -EBADMSG);
	cr_expect_eq(bad, 9);
	cr_expect_eq(store_audit_verify_to(s, 0, hash, &bad, &err), -EINVAL);
	store_close(s);
	t_rmtree(dir);
	free(dir);
}

/* The document parser: every member, its type and size, nothing else. */
Test(checkpoint, documents_are_parsed_strictly)
{
	static const char *const bad[] = {
		"[]",
		"{}",
		"{\"format\":\"x\",\"seq\":1}",
		/* seq 0, negative time, short hash, upper-case, extra key */
		"{\"format\":\"parley-audit-checkpoint-v1\",\"seq\":0,\"hash\":"
		"\"%H\",\"time_ms\":1,\"key_id\":\"%H\",\"signature\":\"%S\"}",
		"{\"format\":\"parley-audit-checkpoint-v1\",\"seq\":1,\"hash\":"
		"\"%H\",\"time_ms\":-1,\"key_id\":\"%H\",\"signature\":\"%S\"}",
		"{\"format\":\"parley-audit-checkpoint-v1\",\"seq\":1,\"hash\":"
		"\"ab\",\"time_ms\":1,\"key_id\":\"%H\",\"signature\":\"%S\"}",
		"{\"format\":\"parley-audit-checkpoint-v1\",\"seq\":1,\"hash\":"
		"\"%U\",\"time_ms\":1,\"key_id\":\"%H\",\"signature\":\"%S\"}",
		"{\"format\":\"parley-audit-checkpoint-v1\",\"seq\":1,\"hash\":"
		"\"%H\",\"time_ms\":1,\"key_id\":\"%H\",\"signature\":\"%S\","
		"\"public_key\":\"x\"}",
		"{\"format\":\"parley-audit-checkpoint-v1\",\"seq\":\"1\",\"hash\":"
		"\"%H\",\"time_ms\":1,\"key_id\":\"%H\",\"signature\":\"%S\"}",
	};
	char h[65], u[65], sg[129];
	memset(h, 'a', 64);
	h[64] = 0;
	memset(u, 'A', 64);
	u[64] = 0;
	memset(sg, '0', 128);
	sg[128] = 0;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char doc[1024] = "";
		const char *p = bad[i];
		while (*p) {
			if (p[0] == '%' && p[1]) {
				strcat(doc, p[1] == 'H' ? h : p[1] == 'U' ? u : sg);
				p += 2;
			} else {
				strncat(doc, p++, 1);
			}
		}
		json_t *j = json_loads(doc, 0, NULL);
		cr_assert(j, "case %zu: %s", i, doc);
		struct checkpoint c;
		struct parley_err err = { 0 };
		cr_expect_eq(checkpoint_from_json(j, &c, &err), -EINVAL,
			     "case %zu", i);
		json_decref(j);
	}
}

/* ---- end to end: parleyd, the API, parleyctl, parleyd audit ---- */

static int run(char **out, char *const argv[])
{
	return t_run(argv, out, 60);
}

static char *write_doc(const char *dir, const char *name, json_t *doc)
{
	char *s = json_dumps(doc, JSON_COMPACT);
	char *p = t_write(dir, name, s, strlen(s));
	free(s);
	return p;
}

Test(checkpoint, signed_exported_and_verified_offline, .timeout = 120)
{
	struct api_client c;
	ac_start(&c);
	struct ac_resp r;
	char server[64], pub[700], pol[700], copy[700];
	snprintf(server, sizeof(server), "http://127.0.0.1:%d", c.port);
	snprintf(pub, sizeof(pub), "%s/checkpoint.pub", c.f.dir);
	snprintf(pol, sizeof(pol), "%s/ca/policy.pub", c.f.dir);
	snprintf(copy, sizeof(copy), "%s/copy.db", c.f.dir);
	ac_call(&c, "GET", "/v1/audit/checkpoints", c.admin, NULL, &r);
	cr_expect_eq(r.status, 404, "none yet: %s", r.raw);
	ac_free(&r);
	for (int i = 0; i < 3; i++) {
		char body[64];
		snprintf(body, sizeof(body), "{\"name\":\"h%d\"}", i);
		ac_call(&c, "POST", "/v1/hosts", c.admin, body, &r);
		cr_assert_eq(r.status, 201, "%s", r.raw);
		ac_free(&r);
	}
	ac_call(&c, "POST", "/v1/audit/checkpoints", c.admin, NULL, &r);
	cr_assert_eq(r.status, 201, "%s", r.raw);
	json_t *made = json_incref(r.json);
	ac_free(&r);
	/* read scope may export, not sign */
	ac_call(&c, "GET", "/v1/audit/checkpoints", c.admin, NULL, &r);
	cr_assert_eq(r.status, 200, "%s", r.raw);
	cr_expect(json_equal(r.json, made), "GET gives the one POST made");
	char *doc = write_doc(c.f.dir, "cp.json", r.json);
	ac_free(&r);
	ac_call(&c, "GET", "/v1/audit/checkpoints?list=1", c.admin, NULL, &r);
	cr_expect_eq(json_array_size(json_object_get(r.json, "items")), 1);
	ac_free(&r);

	char *out;
	char *v[] = { T_BIN("parleyctl"), "--server", server, "--token",
		      c.admin, "audit", "verify", "--checkpoint", doc,
		      "--pubkey", pub, NULL };
	cr_expect_eq(run(&out, v), 0, "%s", out);
	cr_expect(strstr(out, "checkpoint signature ok"), "%s", out);
	free(out);
	/* offline, on a copy of the file (with its WAL, where the newest
	 * rows are until SQLite checkpoints them into the file) */
	char wal[700], copywal[720];
	snprintf(wal, sizeof(wal), "%s-wal", c.f.store);
	snprintf(copywal, sizeof(copywal), "%s-wal", copy);
	char *cp[] = { "/bin/cp", c.f.store, copy, NULL };
	cr_assert_eq(run(&out, cp), 0, "%s", out);
	free(out);
	char *cpw[] = { "/bin/cp", wal, copywal, NULL };
	cr_assert_eq(run(&out, cpw), 0, "%s", out);
	free(out);
	char *off[] = { T_BIN("parleyd"), "audit", "--store", copy,
			"--checkpoint", doc, "--pubkey", pub, NULL };
	cr_expect_eq(run(&out, off), 0, "%s", out);
	cr_expect(strstr(out, "checkpoint verified"), "%s", out);
	free(out);
	unlink(copy);
	unlink(copywal);

	/* forged: another key; altered: the hash, the seq */
	char *w[] = { T_BIN("parleyctl"), "--server", server, "--token",
		      c.admin, "audit", "verify", "--checkpoint", doc,
		      "--pubkey", pol, NULL };
	cr_expect_eq(run(&out, w), 1, "%s", out);
	cr_expect(strstr(out, "CHECKPOINT_BAD"), "%s", out);
	free(out);
	json_t *alt = json_deep_copy(made);
	char hash[65];
	snprintf(hash, sizeof(hash), "%s",
		 json_string_value(json_object_get(alt, "hash")));
	hash[0] = hash[0] == '0' ? '1' : '0';
	json_object_set_new(alt, "hash", json_string(hash));
	char *altf = write_doc(c.f.dir, "alt.json", alt);
	v[8] = altf;
	cr_expect_eq(run(&out, v), 1, "%s", out);
	cr_expect(strstr(out, "does not verify"), "%s", out);
	free(out);
	json_object_set_new(alt, "hash", json_incref(json_object_get(made,
								     "hash")));
	json_object_set_new(alt, "seq", json_integer(1));
	free(altf);
	altf = write_doc(c.f.dir, "alt.json", alt);
	v[8] = altf;
	cr_expect_eq(run(&out, v), 1, "%s", out);
	free(out);
	off[3] = c.f.store;
	off[5] = altf;
	cr_expect_eq(run(&out, off), 1, "%s", out);
	cr_expect(strstr(out, "CHECKPOINT REFUSED"), "%s", out);
	free(out);

	/* the attacker with the file: history rewritten and rechained */
	t_audit_rewrite(c.f.store, 2, "nothing happened");
	char *plain[] = { T_BIN("parleyctl"), "--server", server, "--token",
			  c.admin, "audit", "verify", NULL };
	cr_expect_eq(run(&out, plain), 0, "the chain alone still verifies: %s",
		     out);
	free(out);
	v[8] = doc;
	cr_expect_eq(run(&out, v), 1, "%s", out);
	cr_expect(strstr(out, "AUDIT_BROKEN"), "%s", out);
	free(out);
	off[3] = c.f.store;
	off[5] = doc;
	cr_expect_eq(run(&out, off), 1, "%s", out);
	cr_expect(strstr(out, "CHECKPOINT MISMATCH"), "%s", out);
	free(out);
	free(altf);
	free(doc);
	json_decref(alt);
	json_decref(made);
	ac_stop(&c);
}

/* The interval: a checkpoint appears by itself once the head moved. */
static bool has_checkpoint(struct fleetd *f, void *ctx)
{
	struct api_client *c = ctx;
	(void)f;
	struct ac_resp r;
	ac_call(c, "GET", "/v1/audit/checkpoints", c->admin, NULL, &r);
	bool ok = r.status == 200;
	ac_free(&r);
	return ok;
}

Test(checkpoint, made_at_the_interval_when_the_head_moved, .timeout = 60)
{
	struct api_client c;
	ac_start_args(&c, (const char *const[]){ "--checkpoint-interval", "1",
						 NULL });
	struct ac_resp r;
	cr_expect_not(has_checkpoint(&c.f, &c), "none before any event");
	ac_call(&c, "POST", "/v1/hosts", c.admin, "{\"name\":\"h1\"}", &r);
	cr_assert_eq(r.status, 201, "%s", r.raw);
	ac_free(&r);
	cr_expect(fd_wait(has_checkpoint, &c.f, &c, 20000),
		  "no checkpoint after the head moved");
	ac_stop(&c);
}
