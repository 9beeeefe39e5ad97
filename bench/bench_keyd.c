/*
 * Suite `keyd`: bundle signing through the key process (daemon/keys/), as
 * a fleet-wide push asks for it -- N bodies of N hosts, one grant each --
 * one request at a time (keyd_sign_bundle) against a window of
 * KEYD_WINDOW in flight (keyd_sign_bundle_send/_recv), and, for
 * reference, the bare Ed25519 signature in this process.
 *
 *   keyd_sign_sync_us        wall time per signature, one request at a time
 *   keyd_sign_pipelined_us   wall time per signature, a window in flight
 *   keyd_sign_inprocess_us   sign_data in this process (no checks, no I/O)
 * stderr: the key process's CPU time per signature in each mode.
 *
 *   bench_keyd [--n N]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/fleet_bench.h"
#include "common/log.h"
#include "common/pki.h"
#include "common/sign.h"
#include "daemon/keys/keyd.h"
#include "parley.pb-c.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct body {
	char host[16];
	uint8_t *p;
	size_t len;
};

/* What policy_bundle_build makes for a host with one grant. */
static int make_body(struct body *b, unsigned i)
{
	char ch[32], pa[32], pb[32];
	Parley__V1__PolicyBody pbody;
	Parley__V1__Grant g, *gp = &g;
	snprintf(b->host, sizeof(b->host), "h-%05u", i);
	snprintf(ch, sizeof(ch), "%s-c", b->host);
	snprintf(pa, sizeof(pa), "%s-a", b->host);
	snprintf(pb, sizeof(pb), "%s-b", b->host);
	parley__v1__policy_body__init(&pbody);
	parley__v1__grant__init(&g);
	g.channel = ch;
	g.endpoint_a = pa;
	g.endpoint_b = pb;
	g.ring_bytes = 8192;
	pbody.host = b->host;
	pbody.version = i + 1;
	pbody.issued_unix_ms = 1700000000000ull + i;
	pbody.grants = &gp;
	pbody.n_grants = 1;
	b->len = parley__v1__policy_body__get_packed_size(&pbody);
	if (!(b->p = malloc(b->len)))
		return -ENOMEM;
	parley__v1__policy_body__pack(&pbody, b->p);
	return 0;
}

static int run_sync(struct keyd *k, struct body *b, unsigned n)
{
	uint8_t sig[SIGN_LEN];
	struct parley_err err = { 0 };
	for (unsigned i = 0; i < n; i++)
		if (keyd_sign_bundle(k, b[i].host, i + 1, b[i].p, b[i].len, sig,
				     &err) < 0) {
			fprintf(stderr, "bench: sync %u: %s\n", i,
				perr_msg(&err));
			return -1;
		}
	return 0;
}

static int run_pipelined(struct keyd *k, struct body *b, unsigned n)
{
	uint8_t sig[SIGN_LEN];
	struct parley_err err = { 0 };
	unsigned sent = 0, got = 0;
	while (got < n) {
		int rc = 0;
		if (sent < n && k->inflight < KEYD_WINDOW) {
			rc = keyd_sign_bundle_send(k, b[sent].host, sent + 1,
						   b[sent].p, b[sent].len, &err);
			sent++;
		} else {
			rc = keyd_sign_bundle_recv(k, sig, &err);
			got++;
		}
		if (rc < 0) {
			fprintf(stderr, "bench: pipelined: %s\n",
				perr_msg(&err));
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	unsigned n = 10000;
	if (argc == 3 && !strcmp(argv[1], "--n"))
		n = (unsigned)strtoul(argv[2], NULL, 10);
	if (!n) {
		fprintf(stderr, "usage: bench_keyd [--n N]\n");
		return 2;
	}
	log_init("bench_keyd", LOG_WARN);
	const char *tmp = getenv("TMPDIR");
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/parley-bench-keyd.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	struct keyd_paths p = { 0 };
	snprintf(p.policy_key, sizeof(p.policy_key), "%s/policy.key", dir);
	snprintf(p.ckpt_key, sizeof(p.ckpt_key), "%s/checkpoint.key", dir);
	struct parley_err err = { 0 };
	EVP_PKEY *key = NULL;
	struct keyd k;
	struct body *b = calloc(n, sizeof(*b));
	int rc = b ? pki_key_new(&key, &err) : -ENOMEM;
	if (rc == 0)
		rc = pki_write_key(p.policy_key, key, &err);
	if (rc == 0)
		rc = keyd_spawn(&k, &p, &err);
	if (rc < 0) {
		fprintf(stderr, "bench: %s\n", perr_msg(&err));
		return 1;
	}
	for (unsigned i = 0; i < n; i++)
		if (make_body(&b[i], i) < 0)
			return 1;
	/* warm both paths, then time them in turn */
	run_sync(&k, b, n < 200 ? n : 200);
	double c0 = fleet_cpu_s(k.pid), t0 = now_s();
	rc = run_sync(&k, b, n);
	double t1 = now_s(), c1 = fleet_cpu_s(k.pid);
	if (rc == 0)
		rc = run_pipelined(&k, b, n);
	double t2 = now_s(), c2 = fleet_cpu_s(k.pid);
	uint8_t sig[SIGN_LEN];
	for (unsigned i = 0; rc == 0 && i < n; i++)
		rc = sign_data(key, b[i].p, b[i].len, sig);
	double t3 = now_s();
	keyd_stop(&k);
	if (rc == 0) {
		printf("BENCH keyd_sign_sync_us %.1f us\n", (t1 - t0) / n * 1e6);
		printf("BENCH keyd_sign_pipelined_us %.1f us\n",
		       (t2 - t1) / n * 1e6);
		printf("BENCH keyd_sign_inprocess_us %.1f us\n",
		       (t3 - t2) / n * 1e6);
		fprintf(stderr, "bench: %u signatures; key process CPU per "
			"signature: sync %.1f us, pipelined %.1f us\n", n,
			(c1 - c0) / n * 1e6, (c2 - c1) / n * 1e6);
	}
	EVP_PKEY_free(key);
	for (unsigned i = 0; i < n; i++)
		free(b[i].p);
	free(b);
	char pub[4200];
	unlink(p.policy_key);
	unlink(p.ckpt_key);
	snprintf(pub, sizeof(pub), "%s/checkpoint.pub", dir);
	unlink(pub);
	rmdir(dir);
	return rc == 0 ? 0 : 1;
}
