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
#include "tests/helpers/testutil.h"

struct dk {
	struct api_client c;
	struct fd_agent *a;
	char disks[600];
};

static void call_ok(struct dk *t, const char *method, const char *path,
		    const char *body, int want, struct ac_resp *keep)
{
	struct ac_resp r;
	ac_call(&t->c, method, path, t->c.admin, body, &r);
	cr_assert_eq(r.status, want, "%s %s: %d %s", method, path, r.status,
		     r.body ? r.body : "");
	if (keep)
		*keep = r;
	else
		ac_free(&r);
}

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
