/*
 * parleyd: the central daemon. One libevent loop: the agent link (mutual
 * TLS), policy pushes when grants change in the store, clean shutdown on
 * SIGTERM/SIGINT, SIGHUP to push at once.
 */
#include "common/checkpoint.h"
#include "common/log.h"
#include "common/pki.h"
#include "common/sign.h"
#include "common/tls.h"
#include "common/tls_join.h"
#include "common/hostport.h"
#include "common/fileio.h"
#include "daemon/checkpoint.h"
#include "common/version.h"
#include "daemon/config.h"
#include "daemon/keys/keyd.h"
#include "daemon/keys/privsep.h"
#include "daemon/import.h"
#include "daemon/orch.h"
#include "daemon/join.h"
#include "daemon/rpc/api.h"
#include "daemon/rpc/link.h"
#include "daemon/store_cli.h"
#include "db/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Every option of parleyd (config.c, join.c) and its subcommands; the
 * man page dist/man/parleyd.8 describes each (tests/test_conventions.c
 * checks that it names every option printed here). */
static const char usage_text[] =
	"usage: parleyd [--config FILE] [--listen HOST:PORT] [--state-dir DIR]\n"
	"               [--ca FILE] [--cert FILE] [--key FILE] [--policy-key FILE]\n"
	"               [--store STORE] [--log-level debug|info|warn|error]\n"
	"               [--api-listen HOST:PORT] [--api-cert FILE] [--api-key FILE]\n"
	"               [--ui-dir DIR]\n"
	"               [--join-listen HOST:PORT] [--ca-key FILE] [--user NAME]\n"
	"               [--checkpoint-key FILE] [--checkpoint-interval SECS]\n"
	"               [--replica-name NAME] [--advertise HOST:PORT] [--poll-ms MS]\n"
	"       parleyd import --store FILE --host NAME POLICY.json\n"
	"       parleyd audit --store FILE [--checkpoint FILE --pubkey FILE]\n"
	"       parleyd store migrate --from STORE --to STORE\n"
	"       parleyd --help | --version\n"
	"\n"
	"  --config FILE         JSON settings; flags override them\n"
	"  --listen HOST:PORT    agent link, mutual TLS (default 127.0.0.1:7420)\n"
	"  --state-dir DIR       relative paths start here (default /var/lib/parley)\n"
	"  --ca FILE             fleet CA certificate (default ca.crt)\n"
	"  --cert FILE           server certificate (default parleyd.crt)\n"
	"  --key FILE            its private key (default parleyd.key)\n"
	"  --policy-key FILE     policy signing key (default policy.key)\n"
	"  --store STORE         sqlite:FILE or FILE (default parley.db), or\n"
	"                        postgresql://... (libpq URI or postgresql:KEY=V..)\n"
	"  --log-level LEVEL     debug, info, warn or error (default info)\n"
	"  --api-listen HOST:PORT  HTTP API (default 127.0.0.1:7421)\n"
	"  --api-cert FILE       with --api-key: serve the API over HTTPS\n"
	"  --api-key FILE        the API certificate's private key\n"
	"  --ui-dir DIR          the web console's files, served at /ui/ (default\n"
	"                        ../share/parley/console from parleyd's directory)\n"
	"  --join-listen HOST:PORT  join listener (default 127.0.0.1:7422)\n"
	"  --ca-key FILE         CA private key for joins (default STATE_DIR/ca.key)\n"
	"  --user NAME           started as root: the network process drops to this\n"
	"                        user; the keys stay in a root key process\n"
	"                        (default parley, else nobody)\n"
	"  --checkpoint-key FILE audit checkpoint signing key (default\n"
	"                        STATE_DIR/checkpoint.key, made if absent)\n"
	"  --checkpoint-interval SECS  sign the audit head this often when it\n"
	"                        moved (default 60)\n"
	"  --replica-name NAME   this parleyd's name among replicas sharing the\n"
	"                        store (default HOSTNAME-PORT of the link)\n"
	"  --advertise HOST:PORT the link address agents are told to fail over\n"
	"                        to (default --listen unless it is a wildcard)\n"
	"  --poll-ms MS          how often the store is polled for changes other\n"
	"                        replicas made (default 200, 10..60000)\n"
	"  --checkpoint FILE     audit: also check this signed checkpoint\n"
	"  --pubkey FILE         audit: the checkpoint public key (checkpoint.pub)\n"
	"  --from STORE          store migrate: the store to copy\n"
	"  --to STORE            store migrate: the new, empty store\n"
	"  --help                this text\n"
	"  --version             the version\n";

struct daemon {
	struct daemon_config cfg;
	struct event_base *base;
	struct store *store;
	SSL_CTX *ctx;
	struct keyd keys;          /* the key process: every private key but
				    * the TLS one (daemon/keys/README.md) */
	struct privsep_config priv;
	struct ckpt ckpt;
	struct link_server link;
	struct api_server api;
	struct event *sig[3];
	struct join_config join_cfg;
	struct join_server join;
	struct orch *orch;         /* libvirt partitions; NULL if unavailable */
	SSL_CTX *api_tls;          /* HTTPS for the API, or NULL */
	char ui_path[PATH_MAX];    /* the console's files (api.ui_dir) */
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

/* The join listener (daemon/join.h). Without --ca-key and without a CA
 * key at its default place the daemon runs without it: joining needs the
 * CA's private key, which not every deployment keeps beside parleyd (the
 * key process said whether it has one). As for the API, a busy default
 * address is not fatal; one asked for is. */
static int setup_join(struct daemon *d, struct parley_err *err)
{
	if (!d->keys.has_ca)
		return 0;
	struct join_opts o = {
		.listen = d->join_cfg.listen, .ca = d->cfg.ca,
		.cert = d->cfg.cert, .key = d->cfg.key, .keys = &d->keys,
		.state_dir = d->cfg.state_dir,
		.policy_key = d->keys.policy_pub,
	};
	int rc = join_start(&d->join, d->base, d->store, &o, err);
	if (rc == -EADDRINUSE && !d->join_cfg.listen_set) {
		log_warn("%s; running without joins", perr_msg(err));
		*err = (struct parley_err){ 0 };
		return 0;
	}
	if (rc == 0)
		log_info("joins on %s (port %d)", d->join_cfg.listen,
			 d->join.port);
	return rc;
}

static void write_api_port(const struct daemon *d)
{
	char path[PATH_MAX + 16];
	snprintf(path, sizeof(path), "%s/parleyd.api-port", d->cfg.state_dir);
	FILE *f = fopen(path, "w");
	if (f) {
		fprintf(f, "%d\n", d->api.port);
		fclose(f);
	}
}

/* The API's way to the agents of thin partitions. */
static void thin_changed(void *ctx, const char *host)
{
	struct daemon *d = ctx;
	link_route_command(&d->link, host, NULL, STORE_REPLICA_CMD_CHANGED);
}

static void thin_command(void *ctx, const char *host, const char *name,
			 int action)
{
	struct daemon *d = ctx;
	link_route_command(&d->link, host, name, action);
}

/* The API's way to libvirt partitions. */
static int h_define(void *ctx, const char *host, const char *name,
		    const char *spec, struct parley_err *err)
{
	/* The API then has its agent measure the key configuration files
	 * (hooks.thin_changed), once the row is committed. */
	return orch_define(((struct daemon *)ctx)->orch, host, name, spec, err);
}

static int h_start(void *ctx, const char *name, struct parley_err *err)
{
	return orch_start(((struct daemon *)ctx)->orch, name, err);
}

static int h_stop(void *ctx, const char *name, struct parley_err *err)
{
	return orch_stop(((struct daemon *)ctx)->orch, name, err);
}

static int h_destroy(void *ctx, const char *name, struct parley_err *err)
{
	return orch_destroy(((struct daemon *)ctx)->orch, name, err);
}

/* libvirt's event implementation goes on our loop before any connection
 * opens; without libvirt the daemon still serves thin partitions. */
static void setup_orch(struct daemon *d)
{
	struct parley_err err = { 0 };
	if (orch_init(&d->orch, d->base, d->store, &err) < 0) {
		log_warn("libvirt orchestration off: %s", perr_msg(&err));
		d->orch = NULL;
	}
}

/* The console's directory: --ui-dir, else ../share/parley/console from
 * the program's own directory (the build tree's bin/ and an installed
 * /usr/bin/ alike); NULL if it has no index.html. */
static const char *ui_dir(const char *given, char *buf, size_t cap)
{
	char exe[PATH_MAX];
	if (given[0]) {
		snprintf(buf, cap, "%s", given);
	} else {
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n <= 0)
			return NULL;
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (!slash)
			return NULL;
		*slash = '\0';
		if (snprintf(buf, cap, "%s/../share/parley/console", exe) >=
		    (int)cap)
			return NULL;
	}
	char index[PATH_MAX + 16];
	snprintf(index, sizeof(index), "%s/index.html", buf);
	return access(index, R_OK) == 0 ? buf : NULL;
}

/* A busy default address is not fatal: the link alone still serves the
 * agents. One the operator asked for is. */
static int setup_api(struct daemon *d, struct parley_err *err)
{
	char host[128];
	int port;
	hostport_split(d->cfg.api_listen, host, sizeof(host), &port);
	d->api = (struct api_server){
		.base = d->base, .store = d->store, .link = &d->link,
		.keys = &d->keys,
		.state_dir = d->cfg.state_dir, .ckpt = &d->ckpt,
		.hooks = { .ctx = d, .thin_changed = thin_changed,
			   .thin_command = thin_command },
	};
	d->api.ui_dir = ui_dir(d->cfg.ui_dir, d->ui_path, sizeof(d->ui_path));
	if (d->api.ui_dir) {
		d->api.ui_fd = open(d->api.ui_dir, O_RDONLY | O_DIRECTORY |
						   O_CLOEXEC);
		if (d->api.ui_fd < 0)
			d->api.ui_dir = NULL;
	}
	if (d->api.ui_dir)
		log_info("console files in %s", d->api.ui_dir);
	else
		log_warn("no console files (--ui-dir): /ui/ answers 404");
	if (d->cfg.api_cert[0]) {
		d->api_tls = tls_server_ctx_noclient(d->cfg.ca, d->cfg.api_cert,
						     d->cfg.api_key, err);
		if (!d->api_tls)
			return err->code ? err->code : -EINVAL;
		d->api.tls = d->api_tls;
	}
	if (d->orch) {
		d->api.hooks.orch_define = h_define;
		d->api.hooks.orch_start = h_start;
		d->api.hooks.orch_stop = h_stop;
		d->api.hooks.orch_destroy = h_destroy;
	}
	int rc = api_start(&d->api, host, port, err);
	if (rc < 0 && !d->cfg.api_listen_set) {
		log_warn("%s; running without the API", perr_msg(err));
		api_stop(&d->api);
		*err = (struct parley_err){ 0 };
		return 0;
	}
	if (rc == 0) {
		write_api_port(d);
		log_info("API on %s://%s:%d", d->api.tls ? "https" : "http",
			 host, d->api.port);
	}
	return rc;
}

/* What the key process loads: the policy key, the CA key when there is
 * one (--ca-key, or STATE_DIR/ca.key if that exists), the checkpoint key
 * (--checkpoint-key, default STATE_DIR/checkpoint.key, made if absent). */
static int key_paths(struct daemon *d, struct keyd_paths *p,
		     struct parley_err *err)
{
	memset(p, 0, sizeof(*p));
	const char *sd = d->cfg.state_dir;
	bool ca_dflt = !d->join_cfg.ca_key[0];
	p->ca_optional = ca_dflt;
	snprintf(p->policy_key, sizeof(p->policy_key), "%s", d->cfg.policy_key);
	snprintf(p->ca_cert, sizeof(p->ca_cert), "%s", d->cfg.ca);
	if (!ca_dflt)
		snprintf(p->ca_key, sizeof(p->ca_key), "%s", d->join_cfg.ca_key);
	else if (path_join(p->ca_key, sizeof(p->ca_key), sd, "ca.key") < 0)
		return perr(err, -ENAMETOOLONG, "state_dir: too long");
	if (d->priv.ckpt_key[0])
		snprintf(p->ckpt_key, sizeof(p->ckpt_key), "%s",
			 d->priv.ckpt_key);
	else if (path_join(p->ckpt_key, sizeof(p->ckpt_key), sd,
			   "checkpoint.key") < 0)
		return perr(err, -ENAMETOOLONG, "state_dir: too long");
	if (path_join(p->disk_key, sizeof(p->disk_key), sd,
		      "disk-wrap.key") < 0)
		return perr(err, -ENAMETOOLONG, "state_dir: too long");
	return 0;
}

/* First of all, before any socket: the key process. */
static int setup_keys(struct daemon *d, struct parley_err *err)
{
	struct keyd_paths p;
	int rc = key_paths(d, &p, err);
	if (rc == 0)
		rc = keyd_spawn(&d->keys, &p, err);
	if (rc == 0)
		log_info("key process %d: policy key %.16s..., checkpoint key "
			 "%.16s...%s", (int)d->keys.pid, d->keys.policy_id,
			 d->keys.ckpt_id, d->keys.has_ca ? ", CA key" : "");
	return rc;
}

static int setup(struct daemon *d, struct parley_err *err)
{
	int rc = setup_keys(d, err);
	if (rc == 0)
		rc = store_open(d->cfg.store, &d->store, err);
	if (rc < 0)
		return rc;
	d->ctx = tls_server_ctx(d->cfg.ca, d->cfg.cert, d->cfg.key, err);
	if (!d->ctx)
		return err && err->code ? err->code : -EINVAL;
	d->base = event_base_new();
	d->link = (struct link_server){
		.base = d->base, .ctx = d->ctx, .store = d->store,
		.policy_key = &d->keys, .frame_max = d->cfg.frame_max,
		.heartbeat_ms = d->cfg.heartbeat_ms,
		.poll_ms = d->cfg.poll_ms,
	};
	snprintf(d->link.replica, sizeof(d->link.replica), "%s",
		 d->cfg.replica_name);
	snprintf(d->link.advertise, sizeof(d->link.advertise), "%s",
		 d->cfg.advertise);
	memcpy(d->link.key_id, d->keys.policy_id, sizeof(d->link.key_id));
	char host[128];
	int port;
	hostport_split(d->cfg.listen, host, sizeof(host), &port);
	rc = link_start(&d->link, host, port, err);
	if (rc == 0)
		rc = setup_join(d, err);
	if (rc < 0)
		return rc;
	int sigs[3] = { SIGTERM, SIGINT, SIGHUP };
	for (int i = 0; i < 3; i++) {
		d->sig[i] = evsignal_new(d->base, sigs[i], on_signal, d);
		event_add(d->sig[i], NULL);
	}
	setup_orch(d);
	rc = ckpt_start(&d->ckpt, d->base, d->store, &d->keys,
			d->priv.ckpt_interval_s, err);
	if (rc == 0)
		rc = setup_api(d, err);
	if (rc < 0)
		return rc;
	write_port(d);
	/* Last: nothing after this may need root or a key file. */
	unsigned uid;
	rc = privsep_drop(&d->priv, d->cfg.store, &uid, err);
	if (rc < 0)
		return rc;
	log_info("listening on %s:%d (store %s, policy key %.16s..., "
		 "replica %s)", host, d->link.port, store_name(d->store),
		 d->link.key_id, d->link.replica);
	return 0;
}

static void teardown(struct daemon *d)
{
	api_stop(&d->api);
	if (d->api.ui_dir)
		close(d->api.ui_fd);
	if (d->orch)
		orch_free(d->orch);
	if (d->api_tls)
		SSL_CTX_free(d->api_tls);
	ckpt_stop(&d->ckpt);
	link_stop(&d->link);
	join_stop(&d->join);
	for (int i = 0; i < 3; i++)
		if (d->sig[i])
			event_free(d->sig[i]);
	if (d->base)
		event_base_free(d->base);
	if (d->ctx)
		SSL_CTX_free(d->ctx);
	store_close(d->store);
	keyd_stop(&d->keys);
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

/* `parleyd audit --store FILE [--checkpoint F --pubkey P]`: the trail,
 * then the chain verified -- and with a checkpoint, that the file still
 * holds the history the checkpoint key signed (works on a copy of the
 * file, offline). */
static int audit_main(int argc, char **argv)
{
	const char *store = NULL, *cpf = NULL, *pubf = NULL;
	for (int i = 2; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--store"))
			store = argv[i + 1];
		else if (!strcmp(argv[i], "--checkpoint"))
			cpf = argv[i + 1];
		else if (!strcmp(argv[i], "--pubkey"))
			pubf = argv[i + 1];
		else
			store = NULL, i = argc;
	}
	if (!store || argc % 2 || !cpf != !pubf) {
		fprintf(stderr, "usage: parleyd audit --store FILE "
				"[--checkpoint FILE --pubkey FILE]\n");
		return 2;
	}
	struct store *s = NULL;
	struct parley_err err = { 0 };
	struct checkpoint cp;
	if (cpf && checkpoint_load(cpf, pubf, &cp, &err) < 0) {
		printf("CHECKPOINT REFUSED: %s\n", perr_msg(&err));
		return 1;
	}
	/* A file that is not there would be created empty: refuse it. */
	char file[PATH_MAX];
	int kind = store_uri_file(store, file, sizeof(file), &err);
	if (kind < 0 || (kind == 1 && access(file, F_OK) != 0) ||
	    store_open(store, &s, &err) < 0) {
		fprintf(stderr, "parleyd: %s\n", err.code ? perr_msg(&err) :
			strerror(errno));
		return 1;
	}
	if (!cpf)
		store_audit_list(s, 0, 0, print_row, NULL, &err);
	uint64_t bad = 0, rows = 0;
	int rc = store_audit_verify(s, &bad, &rows, &err);
	if (rc == 0)
		printf("audit chain verified: %llu rows\n",
		       (unsigned long long)rows);
	else
		printf("AUDIT CHAIN BROKEN at row %llu: %s\n",
		       (unsigned long long)bad, perr_msg(&err));
	if (rc == 0 && cpf) {
		rc = store_audit_verify_to(s, cp.seq, cp.hash, &bad, &err);
		if (rc == 0)
			printf("checkpoint verified: rows 1..%llu are the ones "
			       "key %.16s... signed\n",
			       (unsigned long long)cp.seq, cp.key_id);
		else
			printf("CHECKPOINT MISMATCH at row %llu: %s\n",
			       (unsigned long long)bad, perr_msg(&err));
	}
	store_close(s);
	return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (parley_help_or_version(argc, argv, "parleyd", usage_text))
		return 0;
	if (argc > 1 && !strcmp(argv[1], "import"))
		return import_main(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "audit"))
		return audit_main(argc, argv);
	if (argc > 1 && !strcmp(argv[1], "store"))
		return store_cli_main(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	static struct daemon d;
	struct parley_err err = { 0 };
	if (join_take_args(&argc, argv, &d.join_cfg, &err) < 0 ||
	    privsep_take_args(&argc, argv, &d.priv, &err) < 0 ||
	    daemon_config_parse(argc, argv, &d.cfg, &err) < 0) {
		fprintf(stderr, "parleyd: %s (parleyd --help)\n",
			perr_msg(&err));
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
