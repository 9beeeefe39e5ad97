/* Segment sets and service rules through the daemon (issue 14): the store
 * (versions, hosts noted, refusals), the per-host bundle (PolicyBody
 * fields 6 and 7) and what the agent makes of it (grant_set.svc/.seg),
 * hostile bundles refused with the reason. Suite `svcd`; the API, CLI and
 * end-to-end tests are in test_svcd_api.c. */
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agent/bundle.h"
#include "common/pki.h"
#include "common/sign.h"
#include "common/wire.h"
#include "daemon/import.h"
#include "daemon/policy/bundle.h"
#include "db/store.h"
#include "tests/helpers/testutil.h"

#define SET_BUS                                                              \
	"{\"name\":\"bus\",\"members\":[\"a\",\"b\",\"c\"],\"segments\":["     \
	"{\"name\":\"cmd\",\"kind\":\"pipe\",\"writer\":\"a\",\"size\":\"64K\"}," \
	"{\"name\":\"st\",\"kind\":\"area\",\"writer\":\"agent\","             \
	"\"size\":\"4K\"}]}"

struct fx {
	char *dir;
	char path[600];
	struct store *s;
};

static void add_host(struct store *s, const char *h)
{
	cr_assert_eq(store_host_put(s, h, "", (struct store_blob){ 0 }, NULL),
		     0);
}

static void add_part(struct store *s, const char *name, const char *host)
{
	struct store_part_in in = { .name = name, .host = host,
				    .kind = STORE_PART_THIN, .spec_json = "{}",
				    .spec_len = 2, .state = "defined" };
	struct parley_err err = { 0 };
	cr_assert_eq(store_partition_put(s, &in, NULL, &err), 0, "%s",
		     perr_msg(&err));
}

/* h1: a, b, c; h2: x. */
static void fx_open(struct fx *f)
{
	memset(f, 0, sizeof(*f));
	f->dir = t_tmpdir();
	snprintf(f->path, sizeof(f->path), "%s/parley.db", f->dir);
	struct parley_err e = { 0 };
	cr_assert_eq(store_open(f->path, &f->s, &e), 0, "%s", perr_msg(&e));
	add_host(f->s, "h1");
	add_host(f->s, "h2");
	add_part(f->s, "a", "h1");
	add_part(f->s, "b", "h1");
	add_part(f->s, "c", "h1");
	add_part(f->s, "x", "h2");
}

static void fx_close(struct fx *f)
{
	store_close(f->s);
	t_rmtree(f->dir);
	free(f->dir);
}

static struct svc_rule rule(const char *src, const char *tgt,
			    const char *svc, bool allow)
{
	struct svc_rule r = { .allow = allow };
	snprintf(r.source, sizeof(r.source), "%s", src);
	snprintf(r.target, sizeof(r.target), "%s", tgt);
	snprintf(r.service, sizeof(r.service), "%s", svc);
	return r;
}

static uint64_t version(struct store *s)
{
	uint64_t v = 0;
	cr_assert_eq(store_policy_version(s, &v, NULL), 0);
	return v;
}

static uint64_t host_version(struct store *s, const char *h)
{
	uint64_t v = 0;
	cr_assert_eq(store_policy_host_version(s, h, &v, NULL), 0);
	return v;
}

Test(svcd, store_service_rules)
{
	struct fx f;
	fx_open(&f);
	struct parley_err e = { 0 };
	uint64_t id = 0, v = 0;
	bool created = false;
	struct svc_rule r = rule("a", "b", "auth", true);
	cr_assert_eq(store_put_svc_rule(f.s, &r, &id, &created, &v, &e), 0,
		     "%s", perr_msg(&e));
	cr_expect(created);
	cr_expect_eq(id, 1);
	cr_expect_eq(v, 1);
	cr_expect_eq(host_version(f.s, "h1"), 1);
	cr_expect_eq(host_version(f.s, "h2"), 0);
	/* The same action again: nothing changes, no version. */
	cr_assert_eq(store_put_svc_rule(f.s, &r, &id, &created, &v, &e), 0);
	cr_expect(!created);
	cr_expect_eq(v, 1);
	cr_expect_eq(version(f.s), 1);
	/* Deny: the same rule changes action, a new version. */
	r.allow = false;
	cr_assert_eq(store_put_svc_rule(f.s, &r, &id, &created, &v, &e), 0);
	cr_expect(!created);
	cr_expect_eq(id, 1);
	cr_expect_eq(v, 2);
	struct store_svc_rule *l = NULL;
	cr_assert_eq(store_list_svc_rules(f.s, "h1", &l, &e), 1);
	cr_expect(!l[0].r.allow);
	cr_expect_eq(l[0].version, 2);
	free(l);
	cr_assert_eq(store_list_svc_rules(f.s, "h2", &l, &e), 0);
	free(l);
	/* A partition a rule names can be neither deleted nor moved. */
	cr_expect_eq(store_partition_delete(f.s, "b", &e), -EBUSY);
	cr_expect(strstr(e.msg, "service rule"), "%s", e.msg);
	struct store_part_in mv = { .name = "a", .host = "h2",
				    .kind = STORE_PART_THIN, .spec_json = "{}",
				    .spec_len = 2, .state = "defined" };
	cr_expect_eq(store_partition_put(f.s, &mv, NULL, &e), -EBUSY);
	/* Refusals name what is wrong; nothing is versioned. */
	struct svc_rule bad = rule("a", "x", "auth", true);
	cr_expect_eq(store_put_svc_rule(f.s, &bad, NULL, NULL, NULL, &e),
		     -EINVAL);
	cr_expect(strstr(e.msg, "one host"), "%s", e.msg);
	bad = rule("a", "nope", "auth", true);
	cr_expect_eq(store_put_svc_rule(f.s, &bad, NULL, NULL, NULL, &e),
		     -ENOENT);
	cr_expect(strstr(e.msg, "target"), "%s", e.msg);
	bad = rule("a", "a", "auth", true);
	cr_expect_eq(store_put_svc_rule(f.s, &bad, NULL, NULL, NULL, &e),
		     -EINVAL);
	bad = rule("a", "b", "a/b", true);
	cr_expect_eq(store_put_svc_rule(f.s, &bad, NULL, NULL, NULL, &e),
		     -EINVAL);
	cr_expect(strstr(e.msg, "service"), "%s", e.msg);
	cr_expect_eq(version(f.s), 2);
	/* Removal by triple and by id. */
	struct svc_rule r2 = rule("b", "c", "log", true);
	cr_assert_eq(store_put_svc_rule(f.s, &r2, &id, NULL, &v, &e), 0);
	cr_expect_eq(id, 2);
	cr_assert_eq(store_del_svc_rule_named(f.s, &r, &v, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(v, 4);
	cr_expect_eq(store_del_svc_rule_named(f.s, &r, &v, &e), -ENOENT);
	cr_expect_eq(store_del_svc_rule(f.s, 2, &v, &e), 0);
	cr_expect_eq(v, 5);
	cr_expect_eq(store_del_svc_rule(f.s, 2, &v, &e), -ENOENT);
	cr_expect_eq(store_del_svc_rule(f.s, 0, &v, &e), -EINVAL);
	/* Ids are never given twice: the rule made after the newest (2) was
	 * deleted is 3, so a client still holding 2 deletes nothing. */
	cr_assert_eq(store_put_svc_rule(f.s, &r2, &id, NULL, &v, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(id, 3, "id %llu reused", (unsigned long long)id);
	cr_expect_eq(store_del_svc_rule(f.s, 2, &v, &e), -ENOENT);
	cr_expect_eq(store_del_svc_rule(f.s, 3, &v, &e), 0);
	cr_expect_eq(store_partition_delete(f.s, "b", &e), 0, "%s",
		     perr_msg(&e));
	fx_close(&f);
}

/* A host's bundle carries all its rules: no more than an agent takes. */
Test(svcd, store_rules_per_host_bounded)
{
	struct fx f;
	fx_open(&f);
	struct parley_err e = { 0 };
	cr_assert_eq(store_begin(f.s, &e), 0);
	for (int i = 0; i < SVC_RULES_MAX; i++) {
		char svc[16];
		snprintf(svc, sizeof(svc), "s%d", i);
		struct svc_rule r = rule("a", "b", svc, true);
		cr_assert_eq(store_put_svc_rule(f.s, &r, NULL, NULL, NULL, &e),
			     0, "%d: %s", i, perr_msg(&e));
	}
	cr_assert_eq(store_commit(f.s, &e), 0);
	struct svc_rule r = rule("c", "b", "one-more", true);
	cr_expect_eq(store_put_svc_rule(f.s, &r, NULL, NULL, NULL, &e), -E2BIG);
	cr_expect(strstr(e.msg, "at most 1024"), "%s", e.msg);
	/* Changing one that is there is not one more. */
	r = rule("a", "b", "s7", false);
	cr_expect_eq(store_put_svc_rule(f.s, &r, NULL, NULL, NULL, &e), 0);
	/* Another host has room. */
	add_part(f.s, "y", "h2");
	r = rule("x", "y", "s", true);
	cr_expect_eq(store_put_svc_rule(f.s, &r, NULL, NULL, NULL, &e), 0);
	uint64_t v;
	uint8_t *body = NULL;
	size_t len;
	cr_expect_eq(policy_body_build(f.s, "h1", 0, &v, &body, &len, &e), 0,
		     "%s", perr_msg(&e));
	free(body);
	fx_close(&f);
}

Test(svcd, store_segsets)
{
	struct fx f;
	fx_open(&f);
	struct parley_err e = { 0 };
	char name[STORE_NAME_MAX];
	uint64_t v = 0;
	cr_assert_eq(store_put_segset(f.s, SET_BUS, strlen(SET_BUS), name, &v,
				      &e), 0, "%s", perr_msg(&e));
	cr_expect_str_eq(name, "bus");
	cr_expect_eq(v, 1);
	cr_expect_eq(host_version(f.s, "h1"), 1);
	cr_expect_eq(host_version(f.s, "h2"), 0);
	struct store_segset g;
	cr_assert_eq(store_get_segset(f.s, "bus", &g, &e), 0);
	cr_expect_str_eq(g.host, "h1");
	cr_expect(strstr(g.json, "\"members\":[\"a\",\"b\",\"c\"]"), "%s",
		  g.json);
	store_segset_clear(&g);
	cr_expect_eq(store_put_segset(f.s, SET_BUS, strlen(SET_BUS), NULL,
				      NULL, &e), -EEXIST);
	/* A member cannot go while the set holds it. */
	cr_expect_eq(store_partition_delete(f.s, "c", &e), -EBUSY);
	cr_expect(strstr(e.msg, "segment set"), "%s", e.msg);
	/* Refusals name the entry and field. */
	static const struct {
		const char *json;
		int rc;
		const char *msg;
	} bad[] = {
		{ "{\"name\":\"s2\",\"members\":[\"a\",\"x\"],\"segments\":[{"
		  "\"name\":\"p\",\"kind\":\"pipe\",\"writer\":\"a\","
		  "\"size\":\"4K\"}]}", -EINVAL, "members[1]: \"x\" is on host" },
		{ "{\"name\":\"s3\",\"members\":[\"a\",\"zz\"],\"segments\":[{"
		  "\"name\":\"p\",\"kind\":\"pipe\",\"writer\":\"a\","
		  "\"size\":\"4K\"}]}", -ENOENT, "segset (\"s3\").members[1]" },
		{ "{\"name\":\"s4\",\"members\":[\"a\",\"b\"],\"segments\":[{"
		  "\"name\":\"p\",\"kind\":\"pipe\",\"writer\":\"c\","
		  "\"size\":\"4K\"}]}", -EINVAL, "segset (\"s4\").segments[0]" },
		{ "[1]", -EINVAL, "segset" },
		{ "{\"name\":", -EINVAL, "not JSON" },
		/* A name twice within the set is a bad set, not a taken
		 * name (-EEXIST, 409 through the API). */
		{ "{\"name\":\"s5\",\"members\":[\"a\",\"a\"],\"segments\":[{"
		  "\"name\":\"p\",\"kind\":\"pipe\",\"writer\":\"a\","
		  "\"size\":\"4K\"}]}", -EINVAL, "members[1]: \"a\" is listed "
		  "twice" },
		{ "{\"name\":\"s6\",\"members\":[\"a\",\"b\"],\"segments\":[{"
		  "\"name\":\"p\",\"kind\":\"pipe\",\"writer\":\"a\","
		  "\"size\":\"4K\"},{\"name\":\"p\",\"kind\":\"pipe\","
		  "\"writer\":\"b\",\"size\":\"4K\"}]}", -EINVAL,
		  "duplicate segment" },
		{ "{\"name\":\"s7\",\"members\":[\"a\",\"b\",\"c\"],"
		  "\"segments\":[{\"name\":\"p\",\"kind\":\"pipe\",\"writer\":"
		  "\"a\",\"size\":\"4K\",\"readers\":[\"b\",\"b\"]}]}", -EINVAL,
		  "readers[1]: \"b\" is listed twice" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = store_put_segset(f.s, bad[i].json, strlen(bad[i].json),
					  NULL, &v, &e);
		cr_expect_eq(rc, bad[i].rc, "%zu: %d %s", i, rc, e.msg);
		cr_expect(strstr(e.msg, bad[i].msg), "%zu: %s", i, e.msg);
	}
	cr_expect_eq(version(f.s), 1);
	struct store_segset *l = NULL;
	cr_assert_eq(store_list_segsets(f.s, NULL, &l, &e), 1);
	store_segsets_free(l, 1);
	cr_assert_eq(store_list_segsets(f.s, "h2", &l, &e), 0);
	store_segsets_free(l, 0);
	cr_assert_eq(store_del_segset(f.s, "bus", &v, &e), 0);
	cr_expect_eq(v, 2);
	cr_expect_eq(host_version(f.s, "h1"), 2);
	cr_expect_eq(store_del_segset(f.s, "bus", &v, &e), -ENOENT);
	cr_expect_eq(store_partition_delete(f.s, "c", &e), 0);
	fx_close(&f);
}

/* A baseline of a partition that only a rule or a set names still
 * changes its host's bundle. */
Test(svcd, baseline_of_a_rule_partition_versions_its_host)
{
	struct fx f;
	fx_open(&f);
	struct svc_rule r = rule("a", "b", "auth", true);
	cr_assert_eq(store_put_svc_rule(f.s, &r, NULL, NULL, NULL, NULL), 0);
	uint8_t d[32] = { 1 };
	struct store_digests_in in = { .digest = { d, 32 } };
	uint64_t v = 0;
	struct parley_err e = { 0 };
	cr_assert_eq(store_baseline_put(f.s, "b", &in, true, &v, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(v, 2);
	cr_expect_eq(host_version(f.s, "h1"), 2);
	fx_close(&f);
}

/* ---- the bundle and the agent ---- */

/* Sign body bytes as the daemon's key process would, and accept them as
 * the agent of `host` does. */
static int accept_body(EVP_PKEY *k, const char *host, const uint8_t *body,
		       size_t len, struct agent_policy *p,
		       struct parley_err *e)
{
	uint8_t sig[SIGN_LEN];
	cr_assert_eq(sign_data(k, body, len, sig), 0);
	Parley__V1__PolicyBundle pb;
	parley__v1__policy_bundle__init(&pb);
	wire_bytes(&pb.body, body, len);
	wire_bytes(&pb.signature, sig, SIGN_LEN);
	return bundle_accept(k, host, 0, &pb, p, e);
}

Test(svcd, bundle_carries_rules_and_sets_to_the_agent)
{
	struct fx f;
	fx_open(&f);
	struct parley_err e = { 0 };
	struct svc_rule r1 = rule("a", "b", "auth", true),
			r2 = rule("c", "b", "auth", false);
	cr_assert_eq(store_put_svc_rule(f.s, &r1, NULL, NULL, NULL, &e), 0);
	cr_assert_eq(store_put_svc_rule(f.s, &r2, NULL, NULL, NULL, &e), 0);
	cr_assert_eq(store_put_segset(f.s, SET_BUS, strlen(SET_BUS), NULL,
				      NULL, &e), 0, "%s", perr_msg(&e));
	uint8_t d[32] = { 7 };
	struct store_digests_in in = { .digest = { d, 32 } };
	cr_assert_eq(store_baseline_put(f.s, "c", &in, true, NULL, &e), 0);
	uint64_t v = 0;
	uint8_t *body = NULL;
	size_t len = 0;
	cr_assert_eq(policy_body_build(f.s, "h1", 0, &v, &body, &len, &e), 0,
		     "%s", perr_msg(&e));
	cr_assert(body);
	/* What is on the wire: fields 6 and 7. */
	Parley__V1__PolicyBody *b = parley__v1__policy_body__unpack(NULL, len,
								   body);
	cr_assert(b);
	cr_expect_eq(b->n_services, 2);
	cr_expect(strstr(b->segsets_json, "\"bus\""), "%s", b->segsets_json);
	/* c's baseline travels: a rule and the set name it. */
	cr_expect_eq(b->n_baselines, 1);
	parley__v1__policy_body__free_unpacked(b, NULL);
	/* The agent's policy, as a --policy file would have filled it. */
	EVP_PKEY *k = NULL;
	cr_assert_eq(pki_key_new(&k, NULL), 0);
	struct agent_policy p;
	cr_assert_eq(accept_body(k, "h1", body, len, &p, &e), 0, "%s",
		     perr_msg(&e));
	cr_expect_eq(p.grants.nsvc, 2);
	const struct svc_rule *got = svc_rule_find(&p.grants, "a", "b", "auth");
	cr_expect(got && got->allow);
	got = svc_rule_find(&p.grants, "c", "b", "auth");
	cr_expect(got && !got->allow);
	cr_expect_null(svc_rule_find(&p.grants, "b", "a", "auth"));
	cr_assert_eq(p.grants.seg.n, 1);
	const struct segset_def *s = segset_find(&p.grants.seg, "bus");
	cr_assert(s);
	cr_expect_eq(s->nmembers, 3);
	cr_expect_eq(s->ndecl, 2);
	cr_expect_eq(segset_member(s, "c"), 2);
	/* A deep copy is what the channel manager gets. */
	struct grant_set cp;
	cr_assert_eq(grant_set_copy(&cp, &p.grants), 0);
	cr_expect_eq(cp.seg.n, 1);
	cr_expect_eq(cp.nsvc, 2);
	grant_set_free(&cp);
	agent_policy_free(&p);
	free(body);
	/* h2 has none of them. */
	cr_assert_eq(policy_body_build(f.s, "h2", 0, &v, &body, &len, &e), 0);
	cr_expect_null(body);
	EVP_PKEY_free(k);
	fx_close(&f);
}

/* A body with field 6 and 7 as a hostile daemon (with the key) could
 * write them: each refused, naming the field. */
Test(svcd, hostile_rules_and_sets_refused)
{
	EVP_PKEY *k = NULL;
	cr_assert_eq(pki_key_new(&k, NULL), 0);
	static const struct {
		const char *src, *tgt, *svc, *src2, *segsets, *msg;
	} cases[] = {
		{ "a", "a", "auth", NULL, "", "services[0]: source and target" },
		{ "a", "b", "x/y", NULL, "", "services[0].service" },
		{ "", "b", "auth", NULL, "", "services[0].source: missing" },
		{ "a", "b", "auth", "a", "", "duplicate" },
		{ "a", "b", "auth", NULL, "[", "segsets_json: not JSON" },
		{ "a", "b", "auth", NULL, "{}", "segsets_json" },
		{ "a", "b", "auth", NULL,
		  "[{\"name\":\"s\",\"members\":[\"a\"],\"segments\":[]}]",
		  "segsets_json: segsets[0] (\"s\").members" },
		{ "a", "b", "auth", NULL,
		  "[{\"name\":\"s\",\"members\":[\"a\",\"b\"],\"segments\":[{"
		  "\"name\":\"p\",\"kind\":\"pipe\",\"writer\":\"a\","
		  "\"size\":\"3000\"}]}]", "segments[0]" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		Parley__V1__PolicyBody b;
		parley__v1__policy_body__init(&b);
		b.host = "h1";
		b.version = 3;
		Parley__V1__ServiceRule r[2], *rp[2] = { &r[0], &r[1] };
		for (int j = 0; j < 2; j++) {
			parley__v1__service_rule__init(&r[j]);
			r[j].source = (char *)(j && cases[i].src2 ? cases[i].src2
							       : cases[i].src);
			r[j].target = (char *)cases[i].tgt;
			r[j].service = (char *)cases[i].svc;
		}
		b.services = rp;
		b.n_services = cases[i].src2 ? 2 : 1;
		b.segsets_json = (char *)cases[i].segsets;
		size_t len = parley__v1__policy_body__get_packed_size(&b);
		uint8_t *body = malloc(len);
		parley__v1__policy_body__pack(&b, body);
		struct agent_policy p;
		struct parley_err e = { 0 };
		int rc = accept_body(k, "h1", body, len, &p, &e);
		cr_expect(rc == -EINVAL || rc == -EEXIST, "%zu: %d %s", i, rc,
			  e.msg);
		cr_expect(strstr(e.msg, cases[i].msg), "%zu: %s", i, e.msg);
		cr_expect(!p.body && !p.grants.nsvc && !p.grants.seg.n);
		free(body);
	}
	EVP_PKEY_free(k);
}

/* `parleyd import` of a policy file with services and segsets: the store
 * gets them (partitions made on the host), and a second import of the
 * same file changes nothing but replaces the set. */
Test(svcd, import_takes_services_and_segsets)
{
	char *dir = t_tmpdir();
	char store[600];
	snprintf(store, sizeof(store), "%s/parley.db", dir);
	static const char pol[] =
		"{\"grants\":[],\"services\":["
		"{\"source\":\"client\",\"target\":\"auth\",\"service\":\"auth\","
		"\"action\":\"allow\"},"
		"{\"source\":\"auth\",\"target\":\"client\",\"service\":\"auth\","
		"\"action\":\"deny\"}],\"segsets\":[" SET_BUS "]}";
	char *path = t_write(dir, "pol.json", pol, strlen(pol));
	struct parley_err e = { 0 };
	cr_assert_eq(daemon_import(store, "h1", path, &e), 0, "%s",
		     perr_msg(&e));
	struct store *s = NULL;
	cr_assert_eq(store_open(store, &s, &e), 0);
	uint64_t v1 = version(s);
	struct store_svc_rule *l = NULL;
	cr_assert_eq(store_list_svc_rules(s, "h1", &l, &e), 2);
	cr_expect(l[0].r.allow && !l[1].r.allow);
	free(l);
	struct store_segset g;
	cr_assert_eq(store_get_segset(s, "bus", &g, &e), 0);
	cr_expect_str_eq(g.host, "h1");
	store_segset_clear(&g);
	store_close(s);
	cr_assert_eq(daemon_import(store, "h1", path, &e), 0, "%s",
		     perr_msg(&e));
	cr_assert_eq(store_open(store, &s, &e), 0);
	/* The set was removed and added again: two versions, no more. */
	cr_expect_eq(version(s), v1 + 2);
	cr_assert_eq(store_list_svc_rules(s, NULL, &l, &e), 2);
	free(l);
	store_close(s);
	/* A set that would span hosts (client is on h1): refused, and
	 * nothing of the file kept -- no rule, no partition made. */
	static const char bad[] =
		"{\"grants\":[],\"services\":[{\"source\":\"x\",\"target\":"
		"\"y\",\"service\":\"s\",\"action\":\"allow\"}],\"segsets\":["
		"{\"name\":\"t\",\"members\":[\"client\",\"newp\"],"
		"\"segments\":[{\"name\":\"p\",\"kind\":\"pipe\",\"writer\":"
		"\"client\",\"size\":\"4K\"}]}]}";
	char *bpath = t_write(dir, "bad.json", bad, strlen(bad));
	cr_assert_eq(daemon_import(store, "h2", bpath, &e), -EINVAL);
	cr_expect(strstr(e.msg, "members[1]: \"newp\" is on host \"h2\""),
		  "%s", e.msg);
	cr_assert_eq(store_open(store, &s, &e), 0);
	cr_expect_eq(store_list_svc_rules(s, NULL, &l, &e), 2);
	free(l);
	struct store_partition sp;
	cr_expect_eq(store_partition_get(s, "x", &sp, NULL), -ENOENT);
	cr_expect_eq(version(s), v1 + 2);
	store_close(s);
	free(bpath);
	free(path);
	t_rmtree(dir);
	free(dir);
}
