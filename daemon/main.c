/*
 * parleyd: the central daemon. One libevent loop: the agent link (mutual
 * TLS), policy pushes when grants change in the store, clean shutdown on
 * SIGTERM/SIGINT, SIGHUP to push at once.
 */
#include "common/log.h"
#include "common/pki.h"
#include "common/sign.h"
#include "common/tls.h"
#include "common/hostport.h"
#include "daemon/config.h"
#include "daemon/import.h"
#include "daemon/rpc/link.h"
#include "db/store.h"

#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARLEYD_VERSION "0.4.0"

struct daemon {
	struct daemon_config cfg;
	struct event_base *base;
	struct store *store;
	SSL_CTX *ctx;
	EVP_PKEY *policy_key;
	struct link_server link;
	struct event *sig[3];
};

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct daemon *d = arg;
	if (sig == SIGHUP) {
		log_info("SIGHUP: pushing policy");
		d->link.seen_version = 0;
		link_push_policy(&d->link);
		return;
	}
	log_info("signal %d: shutting down", (int)sig);
	event_base_loopbreak(d->base);
}

/* The actual port goes to state_dir/parleyd.port so that tests and tools
 * can use --listen 127.0.0.1:0. */
static void write_port(const struct daemon *d)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/parleyd.port", d->cfg.state_dir);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "%d\n", d->link.port);
		fclose(f);
	}
}

static int setup(struct daemon *d, struct parley_err *err)
{
	int rc = store_open(d->cfg.store, &d->store, err);
	if (rc < 0)
		return rc;
	rc = pki_read_key(d->cfg.policy_key, &d->policy_key, err);
	if (rc < 0)
		return rc;
	d->ctx = tls_server_ctx(d->cfg.ca, d->cfg.cert, d->cfg.key, err);
	if (!d->ctx)
		return err && err->code ? err->code : -EINVAL;
	d->base = event_base_new();
	d->link = (struct link_server){
		.base = d->base, .ctx = d->ctx, .store = d->store,
		.policy_key = d->policy_key, .frame_max = d->cfg.frame_max,
		.heartbeat_ms = d->cfg.heartbeat_ms,
	};
	sign_key_id(d->policy_key, d->link.key_id);
	char host[128];
	int port;
	hostport_split(d->cfg.listen, host, sizeof(host), &port);
	rc = link_start(&d->link, host, port, err);
	if (rc < 0)
		return rc;
	int sigs[3] = { SIGTERM, SIGINT, SIGHUP };
	for (int i = 0; i < 3; i++) {
		d->sig[i] = evsignal_new(d->base, sigs[i], on_signal, d);
		event_add(d->sig[i], NULL);
	}
	write_port(d);
	log_info("listening on %s:%d (store %s, policy key %.16s...)", host,
		 d->link.port, d->cfg.store, d->link.key_id);
	return 0;
}

static void teardown(struct daemon *d)
{
	link_stop(&d->link);
	for (int i = 0; i < 3; i++)
		if (d->sig[i])
			event_free(d->sig[i]);
	if (d->base)
		event_base_free(d->base);
	if (d->ctx)
		SSL_CTX_free(d->ctx);
	EVP_PKEY_free(d->policy_key);
	store_close(d->store);
}

static int import_main(int argc, char **argv)
{
	const char *store = NULL, *host = NULL, *policy = NULL;
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--store") && i + 1 < argc)
			store = argv[++i];
		else if (!strcmp(argv[i], "--host") && i + 1 < argc)
			host = argv[++i];
		else if (!policy)
			policy = argv[i];
	}
	if (!store || !host || !policy) {
		fprintf(stderr, "usage: parleyd import --store FILE --host NAME "
				"POLICY.json\n");
		return 2;
	}
	struct parley_err err = { 0 };
	if (daemon_import(store, host, policy, &err) < 0) {
		fprintf(stderr, "parleyd: %s\n", perr_msg(&err));
		return 1;
	}
	return 0;
}

static int print_row(const struct store_audit *r, void *ctx)
{
	(void)ctx;
	printf("%llu host=%s event=%s partition=%s channel=%s reason=%s "
	       "file=%s%s%s\n", (unsigned long long)r->id, r->host, r->event,
	       r->partition, r->channel, r->reason, r->file,
	       r->detail[0] ? " detail=" : "", r->detail);
	return 0;
}

/* `parleyd audit --store FILE`: the trail, then the chain verified. */
static int audit_main(int argc, char **argv)
{
	if (argc != 4 || strcmp(argv[2], "--store")) {
		fprintf(stderr, "usage: parleyd audit --store FILE\n");
		return 2;
	}
	struct store *s = NULL;
	struct parley_err err = { 0 };
	if (store_open(argv[3], &s, &err) < 0) {
		fprintf(stderr, "parleyd: %s\n", perr_msg(&err));
		return 1;
	}
	store_audit_list(s, 0, 0, print_row, NULL, &err);
	uint64_t bad = 0, rows = 0;
	int rc = store_audit_verify(s, &bad, &rows, &err);
	if (rc == 0)
		printf("audit chain verified: %llu rows\n",
		       (unsigned long long)rows);
	else
		printf("AUDIT CHAIN BROKEN at row %llu: %s\n",
		       (unsigned long long)bad, perr_msg(&err));
	store_close(s);
	return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "import"))
		return import_main(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "audit"))
		return audit_main(argc, argv);
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--version")) {
			printf("parleyd %s\n", PARLEYD_VERSION);
			return 0;
		}
	signal(SIGPIPE, SIG_IGN);
	static struct daemon d;
	struct parley_err err = { 0 };
	if (daemon_config_parse(argc, argv, &d.cfg, &err) < 0) {
		fprintf(stderr, "parleyd: %s\n", perr_msg(&err));
		return 2;
	}
	log_init("parleyd", d.cfg.log_level);
	int rc = setup(&d, &err);
	if (rc < 0) {
		log_error("%s", perr_msg(&err));
		teardown(&d);
		return 1;
	}
	event_base_dispatch(d.base);
	teardown(&d);
	log_info("stopped");
	return 0;
}
