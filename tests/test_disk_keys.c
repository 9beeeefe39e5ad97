/* Disk keys released on attestation (issue 13): a real parleyd (its key
 * process makes, wraps and seals the keys) and a real `parley-agent
 * serve` on loopback, partitions defined through the API. The test reads
 * the daemon's wrapping key (it owns the state directory) to unwrap the
 * stored key: that is how it knows the key's bytes, to decrypt the disk
 * and to look for them where they must never be. */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "agent/vmx/blk_xts.h"
#include "common/fileio.h"
#include "common/seal.h"
#include "db/store.h"
#include "tests/helpers/apiclient.h"
#include "tests/helpers/linkpeer.h"
#include "tests/helpers/testutil.h"

struct dk {
	struct api_client c;
	struct fd_agent *a;
	char disks[600];
};

#define call_ok(t, m, p, b, w, k) ac_call_ok(&(t)->c, m, p, b, w, k)

/* parleyd with a host h1 and partition `name` of blktest (or counter) on
 * an encrypted disk "data"; no agent yet. */
static void setup(struct dk *t)
{
	memset(t, 0, sizeof(*t));
	ac_start(&t->c);
	call_ok(t, "POST", "/v1/hosts", "{\"name\":\"h1\"}", 201, NULL);
	snprintf(t->disks, sizeof(t->disks), "%s/disks", t->c.f.dir);
	cr_assert_eq(mkdir(t->disks, 0700), 0);
}

static void define(struct dk *t, const char *name, const char *image,
		   const char *cmdline)
{
	char body[1024];
	snprintf(body, sizeof(body), "{\"host\":\"h1\",\"backend\":\"thin\","
		 "\"spec\":{\"name\":\"%s\",\"image\":\"%s\",\"memory\":"
		 "\"8M\",\"cmdline\":\"%s\",\"disks\":[{\"name\":\"data\","
		 "\"path\":\"%s.img\",\"size\":\"1M\",\"encryption\":"
		 "{\"cipher\":\"aes-xts-plain64\"}}]}}", name, image, cmdline,
		 name);
	call_ok(t, "POST", "/v1/partitions", body, 201, NULL);
}

static void agent_up(struct dk *t)
{
	t->a = fd_host(&t->c.f, "h1", NULL);
	const char *extra[] = { "--disk-dir", t->disks, NULL };
	fd_start_agent_with(&t->c.f, t->a, NULL, extra);
}

static void teardown(struct dk *t)
{
	ac_stop(&t->c);
}

struct logwait {
	const struct fd_agent *a;
	const char *text;
};

static bool log_has(struct fleetd *f, void *ctx)
{
	(void)f;
	struct logwait *w = ctx;
	char *l = fd_agent_log(w->a);
	bool y = l && strstr(l, w->text);
	free(l);
	return y;
}

static bool wait_log(struct dk *t, const char *text, int ms)
{
	struct logwait w = { t->a, text };
	return fd_wait(log_has, &t->c.f, &w, ms);
}

/* The daemon's audit trail as the API answers it (events of one name). */
static char *audit_of(struct dk *t, const char *event)
{
	char path[160];
	snprintf(path, sizeof(path), "/v1/audit?limit=1000%s%s",
		 event ? "&event=" : "", event ? event : "");
	struct ac_resp r;
	call_ok(t, "GET", path, NULL, 200, &r);
	char *s = strdup(r.body);
	ac_free(&r);
	return s;
}

struct auwait {
	struct dk *t;
	const char *event, *text;
};

static bool audit_has(struct fleetd *f, void *ctx)
{
	(void)f;
	struct auwait *w = ctx;
	char *a = audit_of(w->t, w->event);
	bool y = strstr(a, "\"event\":\"") && (!w->text || strstr(a, w->text));
	y = y && strstr(a, w->event);
	free(a);
	return y;
}

static bool wait_audit(struct dk *t, const char *event, const char *text,
		       int ms)
{
	struct auwait w = { t, event, text };
	return fd_wait(audit_has, &t->c.f, &w, ms);
}

/* The plain key of partition/data version v, as the test alone can get
 * it: the stored wrapped key, unwrapped with the daemon's wrapping key. */
static void plain_key(struct dk *t, const char *part, uint64_t v,
		      uint8_t key[64])
{
	char path[700];
	snprintf(path, sizeof(path), "%s/disk-wrap.key", t->c.f.dir);
	uint8_t *wk;
	size_t wl;
	cr_assert_eq(file_read_all(path, 64, &wk, &wl, NULL), 0, "%s", path);
	cr_assert_eq(wl, 32);
	struct store *s = fd_store(&t->c.f);
	struct store_disk_key k;
	struct parley_err err = { 0 };
	cr_assert_eq(store_disk_key_get(s, part, "data", v, &k, &err), 0,
		     "%s", perr_msg(&err));
	store_close(s);
	uint8_t aad[SEAL_WRAP_AAD_MAX];
	size_t al = seal_wrap_aad(part, "data", v, aad);
	cr_assert_eq(seal_gcm_open(wk, aad, al, k.wrapped, sizeof(k.wrapped),
				   key), 0, "the stored key does not unwrap");
	OPENSSL_cleanse(wk, wl);
	free(wk);
}

static bool has_bytes(const uint8_t *b, size_t len, const uint8_t *x,
		      size_t xl)
{
	for (size_t i = 0; i + xl <= len; i++)
		if (b[i] == x[0] && !memcmp(b + i, x, xl))
			return true;
	return false;
}

/* Neither half of the key in the file (missing file: nothing in it). */
static void key_not_in(const char *path, const uint8_t key[64])
{
	uint8_t *b;
	size_t len;
	if (file_read_all(path, 256u << 20, &b, &len, NULL) < 0)
		return;
	cr_assert_not(has_bytes(b, len, key, 32), "key bytes in %s", path);
	cr_assert_not(has_bytes(b, len, key + 32, 32), "key bytes in %s",
		      path);
	/* As hex too (a log or JSON that printed it). */
	char hex[65];
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	cr_assert_not(has_bytes(b, len, (const uint8_t *)hex, 64),
		      "key in hex in %s", path);
	free(b);
}

static void key_not_in_text(const char *what, const char *text,
			    const uint8_t key[64])
{
	size_t len = strlen(text);
	cr_assert_not(has_bytes((const uint8_t *)text, len, key, 32), "%s",
		      what);
	char hex[65];
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", key[i]);
	cr_assert_not(strstr(text, hex), "key in hex in %s", what);
}

/* Sector 0 of the image, decrypted with key: blktest's text mode wrote
 * "parley-known-plaintext--" over and over. */
static bool decrypts_to_text(const char *img, const uint8_t key[64])
{
	uint8_t *b;
	size_t len;
	cr_assert_eq(file_read_all(img, 2u << 20, &b, &len, NULL), 0, "%s",
		     img);
	cr_assert_eq(len, 1u << 20);
	cr_assert_not(has_bytes(b, len, (const uint8_t *)"parley-known-pla",
				16), "plaintext in the encrypted image");
	struct blk_xts *x;
	struct parley_err err = { 0 };
	uint8_t k[64];
	memcpy(k, key, 64);
	cr_assert_eq(xts_new(k, 1 << 20, &x, &err), 0, "%s", perr_msg(&err));
	uint8_t out[512];
	cr_assert_eq(xts_crypt(x, 0, b, out, 512, 0), 0);
	xts_free(x);
	free(b);
	return !memcmp(out, "parley-known-plaintext--parley-known", 36);
}

Test(disk_keys, released_key_opens_the_disk_and_is_never_in_the_clear,
     .timeout = 120)
{
	struct dk t;
	setup(&t);
	define(&t, "blk", "blktest.elf", "mode=text sectors=64");
	cr_assert(wait_audit(&t, "disk_key_created", "\"blk\"", 10000));
	agent_up(&t);
	cr_assert(wait_log(&t, "blk ok", 60000), "the partition did not "
		  "write its disk:\n%s", fd_agent_log(t.a));
	/* The agent handed the key to the vmm, after admission. */
	cr_assert(wait_audit(&t, "disk_key_released", "disk data", 10000));

	uint8_t key[64];
	plain_key(&t, "blk", 1, key);
	char img[700];
	snprintf(img, sizeof(img), "%s/blk.img", t.disks);
	cr_assert(decrypts_to_text(img, key), "the image is not under the "
		  "released key");
	key[5] ^= 1;
	cr_assert_not(decrypts_to_text(img, key), "any key decrypts it?");
	key[5] ^= 1;

	/* Never in the clear: the store (and its WAL), the logs, the
	 * agent's saved bundle and outbox, the API's answers. */
	char path[700];
	key_not_in(t.c.f.store, key);
	snprintf(path, sizeof(path), "%s-wal", t.c.f.store);
	key_not_in(path, key);
	snprintf(path, sizeof(path), "%s/parleyd.log", t.c.f.dir);
	key_not_in(path, key);
	key_not_in(t.a->log, key);
	snprintf(path, sizeof(path), "%s/bundle.pb", t.a->dir);
	key_not_in(path, key);
	snprintf(path, sizeof(path), "%s/outbox", t.a->dir);
	key_not_in(path, key);
	char *au = audit_of(&t, NULL);
	key_not_in_text("audit", au, key);
	free(au);
	struct ac_resp r;
	call_ok(&t, "GET", "/v1/partitions/blk/disk-keys", NULL, 200, &r);
	key_not_in_text("disk-keys", r.body, key);
	cr_assert(strstr(r.body, "\"released\":true"), "%s", r.body);
	cr_assert(strstr(r.body, "\"key_version\":1"), "%s", r.body);
	ac_free(&r);
	call_ok(&t, "GET", "/v1/partitions/blk", NULL, 200, &r);
	key_not_in_text("partition", r.body, key);
	ac_free(&r);
	OPENSSL_cleanse(key, sizeof(key));
	teardown(&t);
}

/* A latest measurement that differs from the baseline: the daemon
 * withholds the key (audited), the agent finds none, the disk does not
 * open and the partition never runs. */
Test(disk_keys, tampered_partition_never_gets_its_key, .timeout = 120)
{
	struct dk t;
	setup(&t);
	define(&t, "blk", "blktest.elf", "mode=text sectors=64");
	/* What the partition measured last (as its agent reported it),
	 * and the operator's golden baseline, which differs. */
	struct store *s = fd_store(&t.c.f);
	uint8_t got[32], want[32];
	memset(got, 0x11, sizeof(got));
	memset(want, 0x22, sizeof(want));
	struct store_measure_in m = { .seq = 1, .partition = "blk",
				      .d = { .digest = { got, 32 } } };
	struct parley_err err = { 0 };
	cr_assert_eq(store_ingest_measurements(s, "h1", &m, 1, NULL, &err), 0,
		     "%s", perr_msg(&err));
	store_close(s);
	char body[256], hex[65];
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", want[i]);
	snprintf(body, sizeof(body), "{\"digest\":\"%s\"}", hex);
	call_ok(&t, "PUT", "/v1/baselines/blk", body, 200, NULL);
	cr_assert(wait_audit(&t, "disk_key_withheld",
			     "differs from the baseline", 5000));
	struct ac_resp r;
	call_ok(&t, "GET", "/v1/partitions/blk/disk-keys", NULL, 200, &r);
	cr_assert(strstr(r.body, "\"released\":false"), "%s", r.body);
	cr_assert(strstr(r.body, "INTEGRITY"), "%s", r.body);
	ac_free(&r);

	agent_up(&t);
	cr_assert(wait_audit(&t, "disk_key_refused", "no key for disk", 60000),
		  "%s", fd_agent_log(t.a));
	char *l = fd_agent_log(t.a);
	cr_assert_null(strstr(l, "blk ok"), "%s", l);
	free(l);
	teardown(&t);
}

/* A key withdrawn from the host's next bundle while the partition runs:
 * the agent stops it (its vmm, which alone held the key, is gone) and
 * audits the wipe. */
Test(disk_keys, key_withdrawn_while_running_stops_and_wipes, .timeout = 120)
{
	struct dk t;
	setup(&t);
	define(&t, "cnt", "counter.elf", "count=100000000 work=1000");
	agent_up(&t);
	cr_assert(wait_audit(&t, "disk_key_released", "disk data", 60000),
		  "%s", fd_agent_log(t.a));
	cr_assert(wait_log(&t, "tick 1 ", 30000), "%s", fd_agent_log(t.a));
	/* A running partition's disk is not rekeyed (offline only). */
	call_ok(&t, "POST", "/v1/partitions/cnt/disk-keys/rekey",
		"{\"disk\":\"data\"}", 409, NULL);
	/* Its measurement was enrolled as its baseline; a golden one that
	 * differs makes the latest measurement a mismatch. */
	call_ok(&t, "PUT", "/v1/baselines/cnt", "{\"digest\":\""
		"3333333333333333333333333333333333333333333333333333333333333333"
		"\"}", 200, NULL);
	cr_assert(wait_audit(&t, "disk_key_withheld", "INTEGRITY", 5000));
	cr_assert(wait_audit(&t, "disk_key_withdrawn", "\"cnt\"", 30000),
		  "%s", fd_agent_log(t.a));
	cr_assert(wait_audit(&t, "disk_key_wiped", "WITHDRAWN", 30000),
		  "%s", fd_agent_log(t.a));
	cr_assert(wait_log(&t, "partition cnt stopped", 30000), "%s",
		  fd_agent_log(t.a));
	if (getenv("DK_SHOW"))
		fprintf(stderr, "%s\n", fd_agent_log(t.a));
	teardown(&t);
}

/* Keys are made only by the key process: no key process (the API's
 * keys NULL) is not this daemon's case, but a spec whose disk name does
 * not fit is refused with its field named. */
Test(disk_keys, bad_disk_name_in_a_spec_is_refused, .timeout = 60)
{
	struct dk t;
	setup(&t);
	struct ac_resp r;
	ac_call(&t.c, "POST", "/v1/partitions", t.c.admin,
		"{\"host\":\"h1\",\"backend\":\"thin\",\"spec\":{\"name\":"
		"\"p\",\"image\":\"x.elf\",\"disks\":[{\"name\":\""
		"0123456789012345678901234567890123456789\",\"encryption\":"
		"{}}]}}", &r);
	cr_assert_eq(r.status, 400, "%d %s", r.status, r.body);
	cr_assert(strstr(r.body, "disks[0].name"), "%s", r.body);
	ac_free(&r);
	call_ok(&t, "GET", "/v1/partitions/p", NULL, 404, NULL);
	teardown(&t);
}

struct statewait {
	struct dk *t;
	const char *part, *state;
};

static bool state_is(struct fleetd *f, void *ctx)
{
	(void)f;
	struct statewait *w = ctx;
	char path[128], want[64];
	snprintf(path, sizeof(path), "/v1/partitions/%s", w->part);
	snprintf(want, sizeof(want), "\"state\":\"%s\"", w->state);
	struct ac_resp r;
	ac_call(&w->t->c, "GET", path, w->t->c.admin, NULL, &r);
	bool y = r.status == 200 && strstr(r.body, want);
	ac_free(&r);
	return y;
}

/* parleyctl disk rekey, through the API: refused while the partition
 * runs; once it stopped, a new version; its agent re-encrypts the image
 * offline and says so; the daemon drops the old version. The data is
 * intact under the new key, and the old key no longer opens it. */
Test(disk_keys, rekey_round_trip_keeps_the_data_under_the_new_key,
     .timeout = 120)
{
	struct dk t;
	setup(&t);
	define(&t, "blk", "blktest.elf", "mode=text sectors=64");
	agent_up(&t);
	cr_assert(wait_log(&t, "blk ok", 60000), "%s", fd_agent_log(t.a));
	struct statewait sw = { &t, "blk", "stopped" };
	cr_assert(fd_wait(state_is, &t.c.f, &sw, 30000));
	uint8_t k1[64], k2[64];
	plain_key(&t, "blk", 1, k1);
	char img[700];
	snprintf(img, sizeof(img), "%s/blk.img", t.disks);
	cr_assert(decrypts_to_text(img, k1));

	struct ac_resp r;
	call_ok(&t, "POST", "/v1/partitions/blk/disk-keys/rekey",
		"{\"disk\":\"nope\"}", 404, NULL);
	call_ok(&t, "POST", "/v1/partitions/blk/disk-keys/rekey",
		"{\"disk\":\"data\"}", 200, &r);
	cr_assert(strstr(r.body, "\"key_version\":2"), "%s", r.body);
	ac_free(&r);
	cr_assert(wait_audit(&t, "disk_key_rekey", "version 2", 5000));
	cr_assert(wait_audit(&t, "disk_key_rekeyed", "from key version 1 to 2",
			     30000), "%s\n%s", fd_agent_log(t.a),
		  fd_daemon_log(&t.c.f));
	cr_assert(wait_audit(&t, "disk_key_retired", "below 2", 30000));
	call_ok(&t, "GET", "/v1/partitions/blk/disk-keys", NULL, 200, &r);
	cr_assert(strstr(r.body, "\"key_version\":2"), "%s", r.body);
	cr_assert(strstr(r.body, "\"versions_held\":1"), "%s", r.body);
	ac_free(&r);
	plain_key(&t, "blk", 2, k2);
	cr_assert(decrypts_to_text(img, k2), "data not intact under the new "
		  "key");
	cr_assert_not(decrypts_to_text(img, k1), "the old key still opens it");
	/* Nothing left beside the image but its version marker. */
	char p[800];
	snprintf(p, sizeof(p), "%s.rekey", img);
	cr_assert_neq(access(p, F_OK), 0);
	snprintf(p, sizeof(p), "%s.keyver", img);
	cr_assert_eq(access(p, F_OK), 0);
	OPENSSL_cleanse(k1, sizeof(k1));
	OPENSSL_cleanse(k2, sizeof(k2));
	teardown(&t);
}

/* An agent that quarantined a partition says so (its audit event): the
 * daemon withholds the partition's keys from the next bundle at once,
 * audited with the reason, without waiting for a measurement. */
Test(disk_keys, quarantine_reported_by_the_agent_withholds_the_key,
     .timeout = 60)
{
	struct dk t;
	setup(&t);
	define(&t, "blk", "blktest.elf", "mode=text sectors=64");
	struct fd_agent *h = fd_host(&t.c.f, "h1", NULL);
	uint8_t b[8192];
	size_t n = 0;
	lp_add_hello(b, sizeof(b), &n, "h1");
	Parley__V1__Envelope e;
	Parley__V1__AuditBatch ab;
	Parley__V1__AuditEvent ev, *evp = &ev;
	wire_init_envelope(&e, 7);
	parley__v1__audit_batch__init(&ab);
	parley__v1__audit_event__init(&ev);
	ev.seq = 1;
	ev.event = "quarantine";
	ev.partition = "blk";
	ev.reason = "INTEGRITY";
	ev.file = "app.conf";
	ab.events = &evp;
	ab.n_events = 1;
	e.body_case = PARLEY__V1__ENVELOPE__BODY_AUDIT;
	e.audit = &ab;
	lp_add(b, sizeof(b), &n, &e);
	struct lp_result r;
	lp_session(t.c.f.port, h->dir, b, n, 4, &r);
	cr_assert(r.handshake);
	cr_assert_geq(r.acks, 1, "not acknowledged: %s %s", r.error_code,
		      r.error_msg);
	cr_assert(wait_audit(&t, "disk_key_withheld", "QUARANTINE", 5000));
	struct ac_resp a;
	call_ok(&t, "GET", "/v1/partitions/blk/disk-keys", NULL, 200, &a);
	cr_assert(strstr(a.body, "\"released\":false"), "%s", a.body);
	cr_assert(strstr(a.body, "app.conf"), "%s", a.body);
	ac_free(&a);
	teardown(&t);
}

/* ---- the pieces, without processes ---- */

#include "agent/disk/keyring.h"
#include "common/pki.h"
#include "common/wire.h"

static const uint8_t K64[64] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
				  14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
				  25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
				  36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46,
				  47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57,
				  58, 59, 60, 61, 62, 63, 64 };

/* The X25519 key the agent derives from its Ed25519 key has the public
 * half the daemon derives from the certificate: a sealed key opens, for
 * exactly its entry and host, and with no other key. */
Test(disk_keys, seal_opens_only_for_its_host_and_entry)
{
	EVP_PKEY *h1 = NULL, *h2 = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(pki_key_new(&h1, &err), 0);
	cr_assert_eq(pki_key_new(&h2, &err), 0);
	for (int round = 0; round < 16; round++) {
		EVP_PKEY *k = NULL;
		cr_assert_eq(pki_key_new(&k, &err), 0);
		uint8_t s[SEAL_LEN], out[64];
		struct seal_ctx c = { "h1", "p", "data", 3 };
		cr_assert_eq(seal_key(k, &c, K64, s, &err), 0, "%s",
			     perr_msg(&err));
		cr_assert_eq(seal_open(k, &c, s, sizeof(s), out, &err), 0,
			     "%s", perr_msg(&err));
		cr_assert_eq(memcmp(out, K64, 64), 0);
		EVP_PKEY_free(k);
	}
	uint8_t s[SEAL_LEN], out[64];
	struct seal_ctx c = { "h1", "p", "data", 3 };
	cr_assert_eq(seal_key(h1, &c, K64, s, &err), 0);
	cr_assert_eq(seal_open(h2, &c, s, sizeof(s), out, &err), -EBADMSG);
	static const struct seal_ctx other[] = {
		{ "h2", "p", "data", 3 }, { "h1", "q", "data", 3 },
		{ "h1", "p", "logs", 3 }, { "h1", "p", "data", 4 },
	};
	for (size_t i = 0; i < 4; i++) {
		cr_assert_eq(seal_open(h1, &other[i], s, sizeof(s), out, &err),
			     -EBADMSG, "entry %zu", i);
		cr_assert(strstr(perr_msg(&err), "does not open"), "%s",
			  perr_msg(&err));
		for (int b = 0; b < 64; b++)
			cr_assert_eq(out[b], 0, "a failed open left key bytes");
	}
	cr_assert_eq(seal_open(h1, &c, s, sizeof(s) - 1, out, &err), -EBADMSG);
	s[0] = 2;
	cr_assert_eq(seal_open(h1, &c, s, sizeof(s), out, &err), -EBADMSG);
	cr_assert(strstr(perr_msg(&err), "kind 2"), "%s", perr_msg(&err));
	s[0] = 1;
	for (size_t i = 1; i < sizeof(s); i += 7) {
		s[i] ^= 0x40;
		cr_assert_eq(seal_open(h1, &c, s, sizeof(s), out, &err),
			     -EBADMSG, "byte %zu flipped", i);
		s[i] ^= 0x40;
	}
	cr_assert_eq(seal_open(h1, &c, s, sizeof(s), out, &err), 0);
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	cr_assert_eq(seal_key(ec, &c, K64, s, &err), -EKEYREJECTED);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(h1);
	EVP_PKEY_free(h2);
}

static Parley__V1__PolicyBody *body_with(Parley__V1__DiskKey *k, size_t n)
{
	static Parley__V1__PolicyBody b;
	static Parley__V1__DiskKey *kp[8];
	parley__v1__policy_body__init(&b);
	b.host = "h1";
	b.version = 1;
	for (size_t i = 0; i < n; i++)
		kp[i] = &k[i];
	b.disk_keys = kp;
	b.n_disk_keys = n;
	return &b;
}

static void dkey(Parley__V1__DiskKey *k, const char *part, const char *disk,
		 uint64_t v, uint8_t *sealed, size_t len)
{
	parley__v1__disk_key__init(k);
	k->partition = (char *)part;
	k->disk = (char *)disk;
	k->key_version = v;
	k->sealed.data = sealed;
	k->sealed.len = len;
}

/* Hostile entries in a bundle's body: each refused with its field
 * named, so the whole bundle is refused (policy_refused). */
Test(disk_keys, hostile_bundle_entries_are_refused_with_their_field)
{
	uint8_t sealed[SEAL_LEN + 1] = { 1 };
	struct {
		const char *part, *disk;
		uint64_t v;
		size_t len;
		const char *why;
	} bad[] = {
		{ "p", "data", 1, SEAL_LEN - 1, "disk_keys[0].sealed: 124 bytes" },
		{ "p", "data", 1, SEAL_LEN + 1, "disk_keys[0].sealed: 126 bytes" },
		{ "p", "data", 1, 0, "disk_keys[0].sealed: 0 bytes" },
		{ "p", "data", 0, SEAL_LEN, "disk_keys[0].key_version: 0" },
		{ "", "data", 1, SEAL_LEN, "disk_keys[0].partition" },
		{ "p/../x", "data", 1, SEAL_LEN, "disk_keys[0].partition" },
		{ "p", "", 1, SEAL_LEN, "disk_keys[0].disk" },
		{ "p", "0123456789012345678901234567890123", 1, SEAL_LEN,
		  "disk_keys[0].disk: 34 bytes" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		Parley__V1__DiskKey k;
		dkey(&k, bad[i].part, bad[i].disk, bad[i].v, sealed,
		     bad[i].len);
		struct parley_err err = { 0 };
		cr_assert_lt(wire_check_policy_body(body_with(&k, 1), NULL,
						    &err), 0, "case %zu", i);
		cr_assert(strstr(perr_msg(&err), bad[i].why), "case %zu: %s",
			  i, perr_msg(&err));
	}
	Parley__V1__DiskKey two[2];
	dkey(&two[0], "p", "data", 1, sealed, SEAL_LEN);
	dkey(&two[1], "p", "data", 1, sealed, SEAL_LEN);
	struct parley_err err = { 0 };
	cr_assert_eq(wire_check_policy_body(body_with(two, 2), NULL, &err),
		     -EEXIST, "%s", perr_msg(&err));
	cr_assert(strstr(perr_msg(&err), "disk_keys[1]: duplicate"), "%s",
		  perr_msg(&err));
	/* Two versions of one disk's key: a rekey in progress. */
	two[1].key_version = 2;
	cr_assert_eq(wire_check_policy_body(body_with(two, 2), NULL, &err), 0,
		     "%s", perr_msg(&err));
}

struct reports {
	char text[2048];
};

static void rep(void *ctx, const char *event, const char *part,
		const char *disk, const char *detail)
{
	struct reports *r = ctx;
	size_t n = strlen(r->text);
	snprintf(r->text + n, sizeof(r->text) - n, "%s %s/%s: %s\n", event,
		 part, disk, detail);
}

/* The agent's ring: entries that do not open are refused one by one (the
 * others are taken), a key moved to another entry does not open, a key
 * gone from the next bundle is reported withdrawn; the key the source
 * hands out is the one sealed. */
Test(disk_keys, keyring_takes_what_opens_and_reports_withdrawals)
{
	EVP_PKEY *h = NULL, *other = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(pki_key_new(&h, &err), 0);
	cr_assert_eq(pki_key_new(&other, &err), 0);
	uint8_t s_ok[SEAL_LEN], s_moved[SEAL_LEN], s_other[SEAL_LEN];
	struct seal_ctx c1 = { "h1", "p", "data", 1 };
	struct seal_ctx c2 = { "h1", "q", "data", 1 };
	cr_assert_eq(seal_key(h, &c1, K64, s_ok, &err), 0);
	cr_assert_eq(seal_key(h, &c1, K64, s_moved, &err), 0);
	cr_assert_eq(seal_key(other, &c2, K64, s_other, &err), 0);
	Parley__V1__DiskKey k[3];
	dkey(&k[0], "p", "data", 1, s_ok, SEAL_LEN);
	dkey(&k[1], "q", "logs", 1, s_moved, SEAL_LEN);  /* p's, moved */
	dkey(&k[2], "q", "data", 1, s_other, SEAL_LEN);  /* another host's */
	struct disk_keyring ring;
	cr_assert_eq(disk_keyring_init(&ring, &err), 0);
	struct reports r = { "" };
	cr_assert_eq(disk_keyring_load(&ring, body_with(k, 3), "h1", h, rep,
				       &r), 2, "%s", r.text);
	cr_assert(strstr(r.text, "disk_key_refused q/logs"), "%s", r.text);
	cr_assert(strstr(r.text, "disk_key_refused q/data"), "%s", r.text);
	cr_assert(disk_keyring_has(&ring, "p", "data"));
	cr_assert_not(disk_keyring_has(&ring, "q", "data"));
	struct part_disk_spec d = { .name = "data" };
	uint8_t key[64];
	cr_assert_eq(disk_keyring_get(&ring, "p", &d, key, &err), 0);
	cr_assert_eq(memcmp(key, K64, 64), 0);
	cr_assert_eq(disk_keyring_get(&ring, "q", &d, key, &err), -ENOKEY);
	cr_assert(strstr(perr_msg(&err), "no key for disk"), "%s",
		  perr_msg(&err));
	/* The next bundle has none: p's key is withdrawn. */
	r.text[0] = 0;
	cr_assert_eq(disk_keyring_load(&ring, body_with(k, 0), "h1", h, rep,
				       &r), 0);
	cr_assert(strstr(r.text, "disk_key_withdrawn p/data"), "%s", r.text);
	cr_assert_not(disk_keyring_has(&ring, "p", "data"));
	/* Wiped: nothing of the key is left in the ring's memory. */
	for (size_t i = 0; i < KEYRING_MAX; i++)
		cr_assert_not(has_bytes(ring.e[i].key, 64, K64, 32));
	disk_keyring_free(&ring);
	EVP_PKEY_free(h);
	EVP_PKEY_free(other);
}

/* The store's side: wrapped keys of the right size only, versions only
 * up, a withheld state that follows measurement and baseline, and a
 * policy version each time the host's bundle changes. */
Test(disk_keys, store_keeps_wrapped_keys_and_their_release_state)
{
	char *dir = t_tmpdir();
	char path[600];
	snprintf(path, sizeof(path), "%s/s.db", dir);
	struct store *s;
	struct parley_err err = { 0 };
	cr_assert_eq(store_open(path, &s, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(store_host_put(s, "h1", NULL, (struct store_blob){ 0 },
				    &err), 0);
	struct store_part_in in = { .name = "p", .host = "h1",
				    .kind = STORE_PART_THIN, .spec_json = "{}",
				    .spec_len = 2, .state = "defined" };
	cr_assert_eq(store_partition_put(s, &in, NULL, &err), 0);
	uint8_t w[STORE_WRAPPED_LEN];
	memset(w, 7, sizeof(w));
	uint64_t pv = 0, v0 = 0, v = 0;
	store_policy_host_version(s, "h1", &v0, NULL);
	cr_assert_eq(store_disk_key_add(s, "p", "data", 1,
					(struct store_blob){ w, 91 }, &pv,
					&err), -EINVAL);
	cr_assert_eq(store_disk_key_add(s, "nope", "data", 1,
					(struct store_blob){ w, sizeof(w) },
					&pv, &err), -ENOENT);
	cr_assert_eq(store_disk_key_add(s, "p", "a/b", 1,
					(struct store_blob){ w, sizeof(w) },
					&pv, &err), -EINVAL);
	cr_assert_eq(store_disk_key_add(s, "p", "data", 1,
					(struct store_blob){ w, sizeof(w) },
					&pv, &err), 0, "%s", perr_msg(&err));
	store_policy_host_version(s, "h1", &v, NULL);
	cr_assert_eq(v, pv);
	cr_assert_gt(v, v0);
	cr_assert_eq(store_disk_key_add(s, "p", "data", 1,
					(struct store_blob){ w, sizeof(w) },
					&pv, &err), -EEXIST);
	struct store_disk_key *l = NULL;
	cr_assert_eq(store_disk_keys_list(s, "h1", NULL, &l, &err), 1);
	cr_assert_str_eq(l[0].withheld, "");
	cr_assert_eq(l[0].version, 1);
	cr_assert_eq(memcmp(l[0].wrapped, w, sizeof(w)), 0);
	free(l);
	/* A measurement, then a baseline that differs: withheld. */
	uint8_t d1[32], d2[32];
	memset(d1, 1, 32);
	memset(d2, 2, 32);
	struct store_measure_in m = { .seq = 1, .partition = "p",
				      .d = { .digest = { d1, 32 } } };
	cr_assert_eq(store_ingest_measurements(s, "h1", &m, 1, NULL, &err), 0);
	bool changed = false;
	char why[STORE_WITHHELD_MAX];
	cr_assert_eq(store_disk_keys_refresh(s, "p", &changed, why,
					     sizeof(why), &pv, &err), 0);
	cr_assert_not(changed, "no baseline: released as before");
	struct store_digests_in bd = { .digest = { d2, 32 } };
	cr_assert_eq(store_baseline_put(s, "p", &bd, true, NULL, &err), 0);
	cr_assert_eq(store_disk_keys_refresh(s, "p", &changed, why,
					     sizeof(why), &pv, &err), 0);
	cr_assert(changed);
	cr_assert(strstr(why, "INTEGRITY"), "%s", why);
	cr_assert_gt(pv, v);
	cr_assert_eq(store_disk_keys_refresh(s, "p", &changed, why,
					     sizeof(why), &pv, &err), 0);
	cr_assert_not(changed, "the same state twice is one change");
	/* It measures as its baseline again: released. */
	m.seq = 2;
	m.d.digest.p = d2;
	cr_assert_eq(store_ingest_measurements(s, "h1", &m, 1, NULL, &err), 0);
	cr_assert_eq(store_disk_keys_refresh(s, "p", &changed, why,
					     sizeof(why), &pv, &err), 0);
	cr_assert(changed);
	cr_assert_str_eq(why, "");
	/* Rekey: version 2 beside 1 until the old one is retired. */
	cr_assert_eq(store_disk_key_add(s, "p", "data", 2,
					(struct store_blob){ w, sizeof(w) },
					&pv, &err), 0);
	cr_assert_eq(store_disk_keys_list(s, NULL, "p", &l, &err), 1);
	cr_assert_eq(l[0].version, 2);
	cr_assert_eq(l[0].versions, 2);
	free(l);
	unsigned removed = 9;
	cr_assert_eq(store_disk_key_retire(s, "p", "data", 1, &removed, &err),
		     -ESTALE);
	cr_assert_eq(store_disk_key_retire(s, "p", "data", 2, &removed, &err),
		     0);
	cr_assert_eq(removed, 1);
	struct store_disk_key one;
	cr_assert_eq(store_disk_key_get(s, "p", "data", 1, &one, &err),
		     -ENOENT);
	/* The partition goes, its keys with it. */
	cr_assert_eq(store_partition_delete(s, "p", &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(store_disk_keys_list(s, NULL, NULL, &l, &err), 0);
	store_close(s);
	t_rmtree(dir);
	free(dir);
}

struct devwait {
	struct dk *t;
	const char *text;
};

static bool partition_shows(struct fleetd *f, void *ctx)
{
	(void)f;
	struct devwait *w = ctx;
	struct ac_resp r;
	ac_call(&w->t->c, "GET", "/v1/partitions/blk", w->t->c.admin, NULL,
		&r);
	bool y = r.status == 200 && r.body && strstr(r.body, w->text);
	ac_free(&r);
	return y;
}

/* The agent's status carries each device's lifecycle state
 * (PartitionStatus.devices); the daemon keeps it with the partition and
 * GET /v1/partitions/{name} shows it: torn-down, each, once the
 * partition ended (the vmm powers its devices down at its end). */
Test(disk_keys, device_states_reach_the_api, .timeout = 120)
{
	struct dk t;
	setup(&t);
	define(&t, "blk", "blktest.elf", "mode=write seed=3 sectors=64");
	cr_assert(wait_audit(&t, "disk_key_created", "\"blk\"", 10000));
	t.a = fd_host(&t.c.f, "h1", NULL);
	const char *extra[] = { "--disk-dir", t.disks, "--plugin-dir",
				PARLEY_BUILD_DIR "/plugins", NULL };
	fd_start_agent_with(&t.c.f, t.a, NULL, extra);
	cr_assert(wait_log(&t, "blk ok", 60000), "the partition did not "
		  "write its disk:\n%s", fd_agent_log(t.a));
	struct devwait w = { &t, "{\"device\":\"data\",\"plugin\":\"xts\","
				 "\"state\":\"torn-down\"}" };
	cr_assert(fd_wait(partition_shows, &t.c.f, &w, 20000),
		  "no torn-down xts device:\n%s", fd_agent_log(t.a));
	struct ac_resp r;
	call_ok(&t, "GET", "/v1/partitions/blk", NULL, 200, &r);
	cr_assert(strstr(r.body, "\"state\":\"stopped\""), "%s", r.body);
	/* In the order the vmm made them: the disk's, then the console. */
	cr_assert(strstr(r.body, "\"devices\":[{\"device\":\"data\","
			 "\"plugin\":\"file\",\"state\":\"torn-down\"},"
			 "{\"device\":\"data\",\"plugin\":\"xts\",\"state\":"
			 "\"torn-down\"},{\"device\":\"console\",\"plugin\":"
			 "\"console\",\"state\":\"torn-down\"}]"), "%s",
		  r.body);
	ac_free(&r);
	teardown(&t);
}
