/* Several parleyd replicas on one store (issue 15): two or three real
 * parleyd processes on one SQLite file (WAL lets several processes write;
 * nothing here is SQLite's own) -- and, for the STORE_TESTs, the same
 * bodies again on one PostgreSQL database (suite `replicas_pg`) -- each
 * with its own state directory and ports chosen at run time, real agents failing over between them. Every
 * process started is killed and reaped by PID. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <openssl/x509.h>

#include "common/fileio.h"
#include "common/pki.h"
#include "common/sign.h"
#include "common/updpkg.h"
#include "db/store_updates.h"
#include <parley/abi.h>
#include "common/wire.h"
#include "daemon/join.h"
#include "agent/link.h"
#include "agent/servers.h"
#include "tests/helpers/apiclient.h"
#include "tests/helpers/fleetd.h"
#include "tests/helpers/pgtmp.h"
#include "tests/helpers/pgcluster.h"
#include "tests/helpers/testutil.h"

#define NREP 3

struct replica {
	char name[16];
	char dir[640];
	pid_t pid;
	int link, api, join;       /* ports */
	int relink;                /* started again: on this link port */
};

struct reps {
	struct fleetd f;           /* CA, store, agents; f.daemon unused */
	struct replica r[NREP];
	unsigned n;
	char admin[160];
	char poll_ms[16];          /* --poll-ms; "": 100 */
};

static int read_port(const char *dir, const char *name)
{
	char path[700];
	uint8_t *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (file_read_all(path, 256, &buf, &len, NULL) < 0)
		return 0;
	int port = atoi((char *)buf);
	free(buf);
	return port;
}

static bool rep_up(struct fleetd *f, void *ctx)
{
	(void)f;
	struct replica *r = ctx;
	r->link = read_port(r->dir, "parleyd.port");
	r->api = read_port(r->dir, "parleyd.api-port");
	r->join = read_port(r->dir, "parleyd.join-port");
	return r->link > 0 && r->api > 0 && r->join > 0;
}

static void start_replica(struct reps *x, unsigned i)
{
	struct replica *r = &x->r[i];
	const char *d = x->f.dir;
	snprintf(r->name, sizeof(r->name), "r%u", i);
	snprintf(r->dir, sizeof(r->dir), "%s/r%u", d, i);
	mkdir(r->dir, 0755); /* as fd_init's: the daemon reads it unprivileged */
	char ca[600], crt[600], key[600], pol[600], cakey[600], log[700];
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", d);
	snprintf(crt, sizeof(crt), "%s/ca/parleyd.crt", d);
	snprintf(key, sizeof(key), "%s/ca/parleyd.key", d);
	snprintf(pol, sizeof(pol), "%s/ca/policy.key", d);
	snprintf(cakey, sizeof(cakey), "%s/ca/ca.key", d);
	snprintf(log, sizeof(log), "%s/parleyd.log", r->dir);
	char path[700], listen[32];
	snprintf(path, sizeof(path), "%s/parleyd.port", r->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/parleyd.api-port", r->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/parleyd.join-port", r->dir);
	unlink(path);
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", r->relink);
	char *argv[] = { T_BIN("parleyd"), "--listen", listen,
			 "--api-listen", "127.0.0.1:0", "--join-listen",
			 "127.0.0.1:0", "--ca-key", cakey, "--state-dir",
			 r->dir, "--ca", ca, "--cert", crt, "--key", key,
			 "--policy-key", pol, "--store", x->f.store,
			 "--replica-name", r->name, "--poll-ms",
			 x->poll_ms[0] ? x->poll_ms : "100",
			 "--checkpoint-interval", "0", NULL };
	pid_t parent = getpid();
	r->pid = fork();
	cr_assert_geq(r->pid, 0);
	if (r->pid == 0) {
		t_child_dies_with_parent(parent);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			      0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	cr_assert(fd_wait(rep_up, &x->f, r, 20000), "replica %s did not start",
		  r->name);
}

/* The fleet's CA and an empty store: a file in its directory on SQLite
 * (suite `replicas`), a database of the run's throw-away cluster on
 * PostgreSQL (suite `replicas_pg`), which every replica shares. */
static void rep_init(struct reps *x)
{
	fd_init(&x->f);
	if (!t_store_pg)
		return;
	/* On SQLite the daemon takes the store's directory over (privsep
	 * own_store); here nothing does, and it must still read its state
	 * directory in it after dropping to an unprivileged user. */
	chmod(x->f.dir, 0755);
	t_store_uri(x->f.dir, "parley.db", x->f.store, sizeof(x->f.store));
	store_close(fd_store(&x->f));
}

/* Replicas 0..n-1; the first writes the bootstrap admin token (the store
 * has none yet), which is good on every replica: tokens are in the store. */
static void start_all(struct reps *x, unsigned n)
{
	x->n = n;
	for (unsigned i = 0; i < n; i++)
		start_replica(x, i);
	char path[700];
	uint8_t *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/admin.token", x->r[0].dir);
	cr_assert_eq(file_read_all(path, 200, &buf, &len, NULL), 0);
	while (len && buf[len - 1] == '\n')
		buf[--len] = 0;
	snprintf(x->admin, sizeof(x->admin), "%s", (char *)buf);
	free(buf);
}

static void kill_replica(struct replica *r)
{
	if (r->pid <= 0)
		return;
	kill(r->pid, SIGKILL);
	waitpid(r->pid, NULL, 0);
	r->pid = 0;
}

static void stop_all(struct reps *x)
{
	for (unsigned i = 0; i < x->f.n; i++)
		fd_stop_agent(&x->f.agent[i]);
	for (unsigned i = 0; i < x->n; i++) {
		if (x->r[i].pid <= 0)
			continue;
		kill(x->r[i].pid, SIGTERM);
		int st;
		for (int k = 0; k < 500; k++) {
			if (waitpid(x->r[i].pid, &st, WNOHANG) == x->r[i].pid) {
				x->r[i].pid = 0;
				break;
			}
			usleep(10000);
		}
		kill_replica(&x->r[i]);
	}
	if (t_store_pg)
		t_store_uri_drop(x->f.store);
	fd_stop(&x->f);
}

static char *rep_log(const struct replica *r)
{
	char path[700];
	uint8_t *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/parleyd.log", r->dir);
	if (file_read_all(path, 16 << 20, &buf, &len, NULL) < 0)
		return strdup("");
	return (char *)buf;
}

/* "127.0.0.1:P,127.0.0.1:Q" for replicas given by index (-1 ends). */
static void server_list(const struct reps *x, const int *idx, char *out,
			size_t cap)
{
	size_t n = 0;
	out[0] = 0;
	for (int i = 0; idx[i] >= 0; i++)
		n += (size_t)snprintf(out + n, cap - n, "%s127.0.0.1:%d",
				      i ? "," : "", x->r[idx[i]].link);
}

static void host_put(struct reps *x, const char *host)
{
	struct store *s = fd_store(&x->f);
	cr_assert_eq(store_host_put(s, host, "", (struct store_blob){ 0 },
				    NULL), 0);
	store_close(s);
}

struct held {
	const char *host;
	const char *by;            /* NULL: any replica but `not` */
	const char *not_by;
	char got[STORE_NAME_MAX];
};

static bool is_held(struct fleetd *f, void *ctx)
{
	struct held *h = ctx;
	struct store *s = fd_store(f);
	int rc = store_replica_holder(s, h->host, h->got, NULL, NULL);
	store_close(s);
	if (rc < 0)
		return false;
	if (h->by)
		return !strcmp(h->got, h->by);
	return !h->not_by || strcmp(h->got, h->not_by);
}

static int api(struct reps *x, unsigned i, const char *method,
	       const char *path, const char *body, struct ac_resp *r)
{
	struct api_client c = { .port = x->r[i].api };
	ac_call(&c, method, path, x->admin, body, r);
	return r->status;
}

/* ---- store level: the replica rows and their refusals ---- */

/* The heartbeat and the deletion of a delivered command run in the
 * daemon's event loop: while another writer holds the store they come
 * back with -EBUSY rather than wait the busy timeout (-EAGAIN after it),
 * which stalled API clients and agents; once the writer is done they go
 * through. */
STORE_TEST(replicas, poll_writes_never_wait_for_another_writer, .timeout = 60)
{
	char *dir = t_tmpdir();
	char uri[600];
	t_store_uri(dir, "s.db", uri, sizeof(uri));
	struct store *a = NULL, *b = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(store_open(uri, &a, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(store_open(uri, &b, &err), 0, "%s", perr_msg(&err));
	/* A command delivered by b, whose deletion comes while a writes. */
	cr_assert_eq(store_host_put(b, "h0", "", (struct store_blob){ 0 },
				    NULL), 0);
	cr_assert_eq(store_replica_cmd_put(b, "h0", "p", 1, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(store_replica_hold(b, "h0", "r1", NULL), 0);
	struct store_replica_cmd *k = NULL;
	cr_assert_eq(store_replica_cmd_list(b, "r1", &k, NULL), 1);
	int64_t id = k[0].id;
	free(k);
	cr_assert_eq(store_begin(a, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(store_host_put(a, "h1", "", (struct store_blob){ 0 },
				    NULL), 0);
	cr_expect_eq(store_replica_beat(b, "r1", "127.0.0.1:1", 1, &err),
		     -EBUSY, "%s", perr_msg(&err));
	cr_expect_eq(store_replica_cmd_delete(b, id, &err), -EBUSY, "%s",
		     perr_msg(&err));
	/* b is left usable: no transaction of its own is open. */
	struct store_replica *r = NULL;
	cr_expect_eq(store_replica_list(b, &r, NULL), 0);
	free(r);
	/* Inside the holder's own batch it is an ordinary write. */
	cr_expect_eq(store_replica_beat(a, "r0", "127.0.0.1:2", 1, &err), 0,
		     "%s", perr_msg(&err));
	cr_assert_eq(store_commit(a, &err), 0, "%s", perr_msg(&err));
	cr_expect_eq(store_replica_beat(b, "r1", "127.0.0.1:1", 1, &err), 0,
		     "%s", perr_msg(&err));
	cr_expect_eq(store_replica_list(b, &r, NULL), 2);
	free(r);
	cr_expect_eq(store_replica_cmd_delete(b, id, &err), 0, "%s",
		     perr_msg(&err));
	cr_expect_eq(store_replica_cmd_list(b, "r1", &k, NULL), 0);
	free(k);
	store_close(a);
	store_close(b);
	t_store_uri_drop(uri);
	t_rmtree(dir);
	free(dir);
}

Test(replicas, store_rows_and_malformed_input)
{
	char *dir = t_tmpdir();
	char path[600];
	snprintf(path, sizeof(path), "%s/s.db", dir);
	struct store *s = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(store_open(path, &s, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(store_host_put(s, "h1", "", (struct store_blob){ 0 },
				    NULL), 0);
	/* Hostile names and addresses. */
	cr_expect_eq(store_replica_beat(s, "a:1", "127.0.0.1:1", 0, NULL),
		     -EINVAL);
	cr_expect_eq(store_replica_beat(s, "", "127.0.0.1:1", 0, NULL),
		     -EINVAL);
	cr_expect_eq(store_replica_beat(s, "a", "x y", 0, NULL), -EINVAL);
	cr_expect_eq(store_replica_beat(s, "a", "a\x1b[2J", 0, NULL), -EINVAL);
	char big[300];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	cr_expect_eq(store_replica_beat(s, "a", big, 0, NULL), -E2BIG);
	cr_expect_eq(store_replica_hold(s, "nohost", "a", NULL), -ENOENT);
	cr_expect_eq(store_replica_hold(s, "h1", "../x", NULL), -EINVAL);
	cr_expect_eq(store_replica_cmd_put(s, "h1", "p", 99, NULL), -EINVAL);
	cr_expect_eq(store_replica_cmd_put(s, "h1", "p", -4, NULL), -EINVAL);
	cr_expect_eq(store_replica_cmd_put(s, "h1", "", -4, NULL), -EINVAL);
	cr_expect_eq(store_replica_cmd_put(s, "h1", "p",
					   STORE_REPLICA_CMD_ROLLBACK, NULL),
		     -EINVAL);
	cr_expect_eq(store_replica_cmd_put(s, "h1", "p",
					   STORE_REPLICA_CMD_UPDATE, NULL),
		     -EINVAL);
	cr_expect_eq(store_replica_cmd_put(s, "h1", "p",
					   STORE_REPLICA_CMD_CHANGED, NULL),
		     -EINVAL);
	cr_expect_eq(store_replica_cmd_put(s, "h1", "", 1, NULL), -EINVAL);
	cr_expect_eq(store_replica_cmd_put(s, "nohost", "p", 1, NULL),
		     -ENOENT);
	/* Rows. */
	cr_assert_eq(store_replica_beat(s, "a", "127.0.0.1:7420", 5, NULL), 0);
	cr_assert_eq(store_replica_beat(s, "b", "", 6, NULL), 0);
	cr_assert_eq(store_replica_hold(s, "h1", "a", NULL), 0);
	cr_assert_eq(store_replica_cmd_put(s, "h1", "p", 1, NULL), 0);
	cr_assert_eq(store_replica_cmd_put(s, "h1", NULL,
					   STORE_REPLICA_CMD_CHANGED, NULL), 0);
	cr_assert_eq(store_replica_cmd_put(s, "h1", "",
					   STORE_REPLICA_CMD_ROLLBACK, NULL), 0);
	struct store_replica *r = NULL;
	cr_assert_eq(store_replica_list(s, &r, NULL), 2);
	cr_expect_str_eq(r[0].name, "a");
	cr_expect_str_eq(r[0].link, "127.0.0.1:7420");
	cr_expect_eq(r[0].hosts, 1);
	cr_expect_eq(r[1].hosts, 0);
	free(r);
	/* Commands go to the holder only. */
	struct store_replica_cmd *k = NULL;
	cr_assert_eq(store_replica_cmd_list(s, "b", &k, NULL), 0);
	free(k);
	cr_assert_eq(store_replica_cmd_list(s, "a", &k, NULL), 3);
	cr_expect_str_eq(k[0].partition, "p");
	cr_expect_eq(k[0].action, 1);
	cr_expect_eq(k[1].action, STORE_REPLICA_CMD_CHANGED);
	cr_expect_str_eq(k[1].partition, "");
	cr_expect_eq(k[2].action, STORE_REPLICA_CMD_ROLLBACK);
	cr_expect_str_eq(k[2].partition, "");
	cr_assert_eq(store_replica_cmd_delete(s, k[0].id, NULL), 0);
	free(k);
	/* A late release by a replica that no longer holds the host keeps
	 * the new holder's claim. */
	cr_assert_eq(store_replica_hold(s, "h1", "b", NULL), 0);
	cr_assert_eq(store_replica_release(s, "h1", "a", NULL), 0);
	char who[STORE_NAME_MAX];
	cr_assert_eq(store_replica_holder(s, "h1", who, NULL, NULL), 0);
	cr_expect_str_eq(who, "b");
	cr_assert_eq(store_replica_cmd_list(s, "b", &k, NULL), 2);
	free(k);
	cr_assert_eq(store_replica_release(s, "h1", "b", NULL), 0);
	cr_expect_eq(store_replica_holder(s, "h1", who, NULL, NULL), -ENOENT);
	/* A replica starting again forgets what it held. */
	cr_assert_eq(store_replica_hold(s, "h1", "c", NULL), 0);
	cr_assert_eq(store_replica_forget(s, "c", NULL), 0);
	cr_expect_eq(store_replica_holder(s, "h1", who, NULL, NULL), -ENOENT);
	cr_expect_eq(store_replica_forget(s, "c:", NULL), -EINVAL);
	store_close(s);
	t_rmtree(dir);
	free(dir);
}

/* JoinResponse.servers from a hostile daemon: bounded and HOST:PORT. */
Test(replicas, join_response_servers_checked)
{
	Parley__V1__Envelope e;
	Parley__V1__JoinResponse r;
	wire_init_envelope(&e, 0);
	parley__v1__join_response__init(&r);
	r.host = "h1";
	r.cert_pem = r.ca_pem = r.policy_pub_pem =
		"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n";
	e.body_case = PARLEY__V1__ENVELOPE__BODY_JOIN_RESPONSE;
	e.join_response = &r;
	struct parley_err err = { 0 };
	cr_assert_eq(wire_check(&e, &err), 0, "%s", perr_msg(&err));
	char *ok[] = { "127.0.0.1:7420", "[::1]:7420" };
	r.servers = ok;
	r.n_servers = 2;
	cr_assert_eq(wire_check(&e, &err), 0, "%s", perr_msg(&err));
	char *bad[][1] = { { "127.0.0.1" }, { "127.0.0.1:99999" },
			   { "h:1\n" }, { "" }, { "a b:1" } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r.servers = bad[i];
		r.n_servers = 1;
		cr_expect_lt(wire_check(&e, NULL), 0, "accepted \"%s\"",
			     bad[i][0]);
	}
	char *many[WIRE_JOIN_SERVERS_MAX + 1];
	for (int i = 0; i <= WIRE_JOIN_SERVERS_MAX; i++)
		many[i] = "127.0.0.1:1";
	r.servers = many;
	r.n_servers = WIRE_JOIN_SERVERS_MAX + 1;
	cr_expect_eq(wire_check(&e, NULL), -E2BIG);
	/* The same rules for a replica's ServerList (Envelope field 27). */
	Parley__V1__ServerList sl;
	parley__v1__server_list__init(&sl);
	e.body_case = PARLEY__V1__ENVELOPE__BODY_SERVERS;
	e.servers = &sl;
	sl.servers = ok;
	sl.n_servers = 2;
	cr_assert_eq(wire_check(&e, &err), 0, "%s", perr_msg(&err));
	cr_expect_str_eq(wire_body_name(e.body_case), "servers");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sl.servers = bad[i];
		sl.n_servers = 1;
		cr_expect_lt(wire_check(&e, NULL), 0, "accepted \"%s\"",
			     bad[i][0]);
	}
	sl.servers = many;
	sl.n_servers = WIRE_JOIN_SERVERS_MAX + 1;
	cr_expect_eq(wire_check(&e, NULL), -E2BIG);
}

/* Whether the agent's servers file names both links. */
struct told {
	const char *dir;
	int port[2];
};

static bool told_of(struct fleetd *f, void *ctx)
{
	(void)f;
	struct told *t = ctx;
	char path[700];
	uint8_t *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/servers", t->dir);
	if (file_read_all(path, 4096, &buf, &len, NULL) < 0)
		return false;
	bool all = true;
	for (int i = 0; i < 2; i++) {
		char want[64];
		snprintf(want, sizeof(want), "127.0.0.1:%d\n", t->port[i]);
		all = all && strstr((char *)buf, want);
	}
	free(buf);
	return all;
}

/* ---- change propagation ---- */

struct audit_want {
	const char *event, *partition;
	unsigned n;
	const char *reason;        /* NULL: any */
};

static int count_event(const struct store_audit *row, void *ctx)
{
	struct audit_want *w = ctx;
	if (!strcmp(row->event, w->event) &&
	    (!w->partition || !strcmp(row->partition, w->partition)) &&
	    (!w->reason || !strcmp(row->reason, w->reason)))
		w->n++;
	return 0;
}

static bool audited(struct fleetd *f, void *ctx)
{
	struct audit_want *w = ctx;
	w->n = 0;
	struct store *s = fd_store(f);
	store_audit_list(s, 0, 0, count_event, w, NULL);
	store_close(s);
	return w->n > 0;
}

static const char spec_a[] =
	"{\"name\":\"a\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
	"\"cmdline\":\"steps=open:c1,send:0:10,sleep:60000\"}";
static const char spec_b[] =
	"{\"name\":\"b\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
	"\"cmdline\":\"steps=open:c1,recv:0:10,sleep:60000\"}";

/* Partitions a and b on host-1 in `state` ("stopped": their rows wait, so
 * the agent's hello does not start them). */
static void put_ab(struct reps *x, const char *state)
{
	struct store *s = fd_store(&x->f);
	const char *specs[] = { spec_a, spec_b };
	const char *names[] = { "a", "b" };
	for (int i = 0; i < 2; i++) {
		struct store_part_in in = { .name = names[i], .host = "host-1",
					    .kind = STORE_PART_THIN,
					    .spec_json = specs[i],
					    .spec_len = strlen(specs[i]),
					    .state = state };
		cr_assert_eq(store_partition_put(s, &in, NULL, NULL), 0);
	}
	store_close(s);
}

/* host-1's agent, knowing only replica i, once the store says i holds
 * it. */
static struct fd_agent *agent_on(struct reps *x, unsigned i, int wait_ms)
{
	struct fd_agent *h = fd_host(&x->f, "host-1", NULL);
	char servers[128];
	server_list(x, (const int[]){ (int)i, -1 }, servers, sizeof(servers));
	const char *extra[] = { "--server", servers, NULL };
	x->f.port = x->r[i].link;
	fd_start_agent_with(&x->f, h, NULL, extra);
	struct held hw = { .host = "host-1", .by = x->r[i].name };
	cr_assert(fd_wait(is_held, &x->f, &hw, wait_ms), "host-1 held by "
		  "%s:\n%s", hw.got, fd_agent_log(h));
	return h;
}

/* Grant c1 between a and b through replica i's API: its policy version. */
static uint64_t grant_c1(struct reps *x, unsigned i)
{
	struct ac_resp r;
	cr_assert_eq(api(x, i, "POST", "/v1/grants",
			 "{\"channel\":\"c1\",\"endpoint_a\":\"a\","
			 "\"endpoint_b\":\"b\",\"direction\":\"both\","
			 "\"ring_bytes\":\"64K\"}", &r), 201, "%s", r.raw);
	uint64_t v = (uint64_t)json_integer_value(json_object_get(
		r.json, "policy_version"));
	ac_free(&r);
	cr_assert_gt(v, 0);
	return v;
}

STORE_TEST(replicas, grant_through_a_opens_a_channel_on_b, .timeout = 180)
{
	static struct reps x;
	memset(&x, 0, sizeof(x));
	rep_init(&x);
	host_put(&x, "host-1");
	/* Partitions a and b on host-1, neither created yet: their rows
	 * wait ("stopped"), so the agent's hello does not start them. */
	put_ab(&x, "stopped");
	start_all(&x, 2);
	/* The agent knows only replica 1 (B). */
	struct fd_agent *h = agent_on(&x, 1, 30000);
	/* A grant through replica 0 (A) reaches the agent through B. */
	struct ac_resp r;
	struct fd_ack ack = { "host-1", grant_c1(&x, 0) };
	cr_assert(fd_wait(fd_acked, &x.f, &ack, 30000),
		  "host-1 never acked version %llu:\n%s",
		  (unsigned long long)ack.want, fd_agent_log(h));
	/* Now a and b may be created: through A's API, a third partition
	 * on host-1 -- its agent, on B, gets every defined one. */
	struct store *s = fd_store(&x.f);
	const char *names[] = { "a", "b" };
	for (int i = 0; i < 2; i++)
		cr_assert_eq(store_partition_set_state(s, names[i], "defined",
						       0, NULL, NULL), 0);
	store_close(s);
	cr_assert_eq(api(&x, 0, "POST", "/v1/partitions",
			 "{\"host\":\"host-1\",\"backend\":\"thin\",\"spec\":"
			 "{\"name\":\"c\",\"image\":\"chantest.elf\","
			 "\"memory\":\"4M\",\"cmdline\":\"steps=sleep:60000\"}}",
			 &r), 201, "%s", r.raw);
	ac_free(&r);
	struct audit_want ow = { "open_allowed", "b", 0 };
	char *l1 = NULL;
	bool opened = fd_wait(audited, &x.f, &ow, 60000);
	if (!opened)
		l1 = rep_log(&x.r[1]);
	cr_assert(opened, "no open_allowed for b:\nagent:\n%s\nreplica 1:\n%s",
		  fd_agent_log(h), l1);
	struct audit_want aw = { "open_allowed", "a", 0 };
	cr_assert(fd_wait(audited, &x.f, &aw, 30000));
	/* Never for want of the grant (PEER_DOWN, while the other end
	 * starts, is how an open waits). */
	struct audit_want dw = { "open_denied", NULL, 0, "NO_GRANT" };
	audited(&x.f, &dw);
	cr_expect_eq(dw.n, 0, "c1 was denied for want of its grant");
	/* B delivered what A stored; A's metrics say who holds host-1. */
	char *log = rep_log(&x.r[1]);
	cr_expect(strstr(log, "from the store"), "%s", log);
	free(log);
	cr_assert_eq(api(&x, 0, "GET", "/metrics", NULL, &r), 200);
	cr_expect(strstr(r.body, "parley_replica_agents{replica=\"r1\"} 1"),
		  "%s", r.body);
	cr_expect(strstr(r.body, "parley_replica_agents{replica=\"r0\"} 0"),
		  "%s", r.body);
	cr_expect(strstr(r.body, "parley_replica_info{replica=\"r0\"} 1"),
		  "%s", r.body);
	ac_free(&r);
	/* B's welcome told the agent of A too. */
	struct told tw = { h->dir, { x.r[0].link, x.r[1].link } };
	cr_expect(fd_wait(told_of, &x.f, &tw, 30000), "never told of r0");
	/* A's host list says where host-1's agent is. */
	cr_assert_eq(api(&x, 0, "GET", "/v1/hosts", NULL, &r), 200, "%s", r.raw);
	json_t *it = json_array_get(json_object_get(r.json, "items"), 0);
	cr_expect_str_eq(json_string_value(json_object_get(it, "name")),
			 "host-1");
	cr_expect(json_is_true(json_object_get(it, "connected")), "%s", r.body);
	cr_expect_str_eq(json_string_value(json_object_get(it, "replica")),
			 "r1");
	ac_free(&r);
	cr_assert_eq(api(&x, 1, "GET", "/metrics", NULL, &r), 200);
	cr_expect(strstr(r.body, "parley_replica_commands_relayed_total 1") ||
		  strstr(r.body, "parley_replica_commands_relayed_total 2"),
		  "%s", r.body);
	ac_free(&r);
	stop_all(&x);
}

/* ---- failover: exactly once ---- */


#define SPAM 3000

struct tally {
	uint8_t n[SPAM];
	unsigned total, stray;
};

static int stored_row(const struct store_audit *row, void *ctx)
{
	struct tally *t = ctx;
	if (strcmp(row->event, "open_denied") || strcmp(row->host, "host-a"))
		return 0;
	unsigned k;
	char tail;
	if (sscanf(row->channel, "f%u%c", &k, &tail) != 1 || k >= SPAM) {
		t->stray++;
		return 0;
	}
	if (t->n[k] < 255)
		t->n[k]++;
	t->total++;
	return 0;
}

/* Opened before the replicas (see test_outbox_e2e.c: an open takes the
 * write lock for its migration check; reading does not need it). */
static struct store *reader;

struct spam_wait {
	unsigned want;
	struct tally t;
};

static bool spam_stored(struct fleetd *f, void *ctx)
{
	(void)f;
	struct spam_wait *w = ctx;
	memset(&w->t, 0, sizeof(w->t));
	cr_assert_geq(store_audit_list(reader, 0, 0, stored_row, &w->t, NULL),
		      0);
	unsigned distinct = 0;
	for (unsigned k = 0; k < SPAM; k++)
		distinct += w->t.n[k] > 0;
	return distinct >= w->want;
}

STORE_TEST(replicas, kill9_of_the_holder_fails_over_and_every_record_arrives_once,
     .timeout = 300)
{
	static struct reps x;
	memset(&x, 0, sizeof(x));
	rep_init(&x);
	host_put(&x, "host-a");
	reader = fd_store(&x.f);
	start_all(&x, 3);
	struct fd_agent *h = fd_host(&x.f, "host-a", NULL);
	/* It is told only of r0; r0's welcome names the others
	 * (ServerList), which is how it finds one after the kill. */
	char servers[160];
	server_list(&x, (const int[]){ 0, -1 }, servers, sizeof(servers));
	/* The refusals are this test's stream of records: every one. */
	const char *extra[] = { "--server", servers, "--audit-refusals",
				"all", NULL };
	char spec[256];
	snprintf(spec, sizeof(spec),
		 "{\"name\":\"a\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
		 "\"cmdline\":\"steps=sleep:200,spamn:%u:f,sleep:60000\"}",
		 SPAM);
	struct store *s = fd_store(&x.f);
	struct store_part_in in = { .name = "a", .host = "host-a",
				    .kind = STORE_PART_THIN, .spec_json = "{}",
				    .spec_len = 2, .state = "defined" };
	cr_assert_eq(store_partition_put(s, &in, NULL, NULL), 0);
	store_close(s);
	const char *specs[] = { spec, NULL };
	x.f.port = x.r[0].link;
	fd_start_agent_with(&x.f, h, specs, extra);
	struct held hw = { .host = "host-a", .by = "r0" };
	cr_assert(fd_wait(is_held, &x.f, &hw, 30000), "held by %s:\n%s",
		  hw.got, fd_agent_log(h));
	/* Some of the stream stored through r0, the rest still coming. */
	static struct spam_wait w;
	w = (struct spam_wait){ .want = 200 };
	cr_assert(fd_wait(spam_stored, &x.f, &w, 60000), "nothing stored:\n%s",
		  fd_agent_log(h));
	struct told tw = { h->dir, { x.r[1].link, x.r[2].link } };
	cr_assert(fd_wait(told_of, &x.f, &tw, 30000), "never told of r1, r2:\n%s",
		  fd_agent_log(h));
	kill_replica(&x.r[0]);
	unsigned at_kill = w.t.total;
	/* Served by another replica... */
	hw = (struct held){ .host = "host-a", .not_by = "r0" };
	cr_assert(fd_wait(is_held, &x.f, &hw, 30000), "nobody took host-a:\n%s",
		  fd_agent_log(h));
	/* ...and every record the agent sent arrives, once. */
	w = (struct spam_wait){ .want = SPAM };
	cr_assert(fd_wait(spam_stored, &x.f, &w, 120000),
		  "%u of %u stored after the failover:\n%s", w.t.total, SPAM,
		  fd_agent_log(h));
	usleep(500000); /* duplicates, if any, would arrive now */
	spam_stored(&x.f, &w);
	for (unsigned k = 0; k < SPAM; k++)
		cr_assert_eq(w.t.n[k], 1, "f%u stored %u times", k, w.t.n[k]);
	cr_assert_eq(w.t.stray, 0);
	cr_log_info("%u of %u stored when r0 was killed; %s took over",
		    at_kill, SPAM, hw.got);
	uint64_t bad = 0;
	struct parley_err err = { 0 };
	cr_assert_eq(store_audit_verify(reader, &bad, NULL, &err), 0, "%s",
		     perr_msg(&err));
	store_close(reader);
	reader = NULL;
	char *log = fd_agent_log(h);
	char up[64];
	snprintf(up, sizeof(up), "daemon link up to 127.0.0.1:%d",
		 !strcmp(hw.got, "r1") ? x.r[1].link : x.r[2].link);
	cr_expect(strstr(log, up), "%s", log);
	free(log);
	stop_all(&x);
}

/* ---- joins on every replica ---- */

struct log_has {
	const struct fd_agent *a;
	const char *text;
};

static bool agent_log_has(struct fleetd *f, void *ctx)
{
	(void)f;
	struct log_has *l = ctx;
	char *log = fd_agent_log(l->a);
	bool yes = strstr(log, l->text) != NULL;
	free(log);
	return yes;
}

STORE_TEST(replicas, join_token_used_on_a_is_refused_on_b, .timeout = 120)
{
	static struct reps x;
	memset(&x, 0, sizeof(x));
	rep_init(&x);
	start_all(&x, 2);
	char tok[69];
	uint8_t d[32];
	cr_assert_eq(join_token_new(tok, d), 0);
	struct store *s = fd_store(&x.f);
	cr_assert_eq(store_join_token_add(s, "host-j",
					  (struct store_blob){ d, sizeof(d) },
					  (int64_t)time(NULL) * 1000 + 600000,
					  NULL), 0);
	store_close(s);
	char ca[700], pin[80];
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", x.f.dir);
	X509 *crt = NULL;
	cr_assert_eq(pki_read_cert(ca, &crt, NULL), 0);
	pki_fingerprint(crt, pin);
	X509_free(crt);
	char dir_a[700], dir_b[700], srv[64];
	snprintf(dir_a, sizeof(dir_a), "%s/joined-a", x.f.dir);
	snprintf(dir_b, sizeof(dir_b), "%s/joined-b", x.f.dir);
	snprintf(srv, sizeof(srv), "127.0.0.1:%d", x.r[0].join);
	char *argv[] = { T_AGENT, "join", "--server", srv, "--token", tok,
			 "--ca-sha256", pin, "--state-dir", dir_a, NULL };
	char *out;
	cr_assert_eq(t_run(argv, &out, 30), 0, "join on r0: %s", out);
	free(out);
	snprintf(srv, sizeof(srv), "127.0.0.1:%d", x.r[1].join);
	argv[9] = dir_b;
	cr_assert_neq(t_run(argv, &out, 30), 0);
	cr_assert(strstr(out, "TOKEN_USED"), "%s", out);
	free(out);
	/* The join told the agent every live replica's link. */
	char path[720];
	uint8_t *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/servers", dir_a);
	cr_assert_eq(file_read_all(path, 4096, &buf, &len, NULL), 0);
	for (unsigned i = 0; i < 2; i++) {
		char want[64];
		snprintf(want, sizeof(want), "127.0.0.1:%d\n", x.r[i].link);
		cr_expect(strstr((char *)buf, want), "%s not in %s", want,
			  (char *)buf);
	}
	free(buf);
	/* `serve` without --server takes them from there. */
	cr_assert_lt(x.f.n, FD_AGENTS_MAX);
	struct fd_agent *a = &x.f.agent[x.f.n++];
	snprintf(a->name, sizeof(a->name), "host-j");
	snprintf(a->dir, sizeof(a->dir), "%s", dir_a);
	snprintf(a->log, sizeof(a->log), "%s/agent-j.log", x.f.dir);
	char *sargv[] = { T_AGENT, "serve", "--state-dir", dir_a, "--vmm",
			  T_VMM, "--image-dir", PARLEY_BUILD_DIR "/guest",
			  NULL };
	pid_t parent = getpid();
	a->pid = fork();
	cr_assert_geq(a->pid, 0);
	if (a->pid == 0) {
		t_child_dies_with_parent(parent);
		int fd = open(a->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			      0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(sargv[0], sargv);
		_exit(127);
	}
	struct held hw = { .host = "host-j" };
	cr_assert(fd_wait(is_held, &x.f, &hw, 30000), "host-j never served:\n%s",
		  fd_agent_log(a));
	/* Deleted through the other replica's API: the one holding it cuts
	 * its agent off (its claim vanished with the host's row). */
	unsigned other = strcmp(hw.got, "r0") ? 0 : 1;
	struct ac_resp r;
	cr_assert_eq(api(&x, other, "DELETE", "/v1/hosts/host-j", NULL, &r),
		     204, "%s", r.raw);
	ac_free(&r);
	struct log_has lh = { a, "HOST_DELETED" };
	cr_assert(fd_wait(agent_log_has, &x.f, &lh, 30000),
		  "the agent on %s was not cut off:\n%s", hw.got,
		  fd_agent_log(a));
	stop_all(&x);
}

/* The agent's list of servers: --server and the state file, hostile
 * entries refused. */
Test(replicas, agent_server_list_and_its_file)
{
	char *dir = t_tmpdir();
	char host[128];
	int port = 0;
	struct parley_err err = { 0 };
	cr_expect_eq(agent_servers_first(NULL, dir, host, sizeof(host), &port,
					 &err), -ENOENT);
	cr_expect_eq(agent_servers_first("a:1,b", dir, host, sizeof(host),
					 &port, &err), 0);
	cr_expect_str_eq(host, "a");
	cr_expect_eq(port, 1);
	err = (struct parley_err){ 0 };
	cr_expect_eq(agent_servers_first("nope", dir, host, sizeof(host),
					 &port, &err), -EINVAL);
	char *list[] = { "127.0.0.1:7", "[::1]:8" };
	cr_assert_eq(agent_servers_save(dir, list, 2, &err), 0, "%s",
		     perr_msg(&err));
	char *badlist[] = { "127.0.0.1" };
	cr_expect_eq(agent_servers_save(dir, badlist, 1, NULL), -EINVAL);
	cr_assert_eq(agent_servers_first(NULL, dir, host, sizeof(host), &port,
					 &err), 0, "%s", perr_msg(&err));
	cr_expect_str_eq(host, "127.0.0.1");
	cr_expect_eq(port, 7);
	static struct agent_link l;
	memset(&l, 0, sizeof(l));
	snprintf(l.servers[0], sizeof(l.servers[0]), "127.0.0.1");
	l.ports[0] = 7;
	l.nservers = 1;
	cr_assert_eq(agent_servers_add(&l, "10.0.0.1:9,127.0.0.1:7", dir,
				       &err), 0, "%s", perr_msg(&err));
	cr_expect_eq(l.nservers, 3); /* 127.0.0.1:7 once */
	cr_expect_str_eq(l.servers[2], "::1");
	/* A hostile file: refused, not half taken. */
	static const char ctl[] = "127.0.0.1:7\nx\x01y:3\n";
	free(t_write(dir, "servers", ctl, strlen(ctl)));
	cr_expect_lt(agent_servers_add(&l, NULL, dir, &err), 0);
	free(t_write(dir, "servers", "127.0.0.1:7\n\0:3\n", 16));
	cr_expect_lt(agent_servers_first(NULL, dir, host, sizeof(host), &port,
					 &err), 0);
	for (int i = 0; i < AGENT_LINK_SERVERS_MAX + 2; i++) {
		char hp[32];
		snprintf(hp, sizeof(hp), "127.0.0.%d:1", i + 2);
		int rc = agent_link_add_server(&l, hp, &err);
		if (l.nservers == AGENT_LINK_SERVERS_MAX && rc < 0)
			cr_expect_eq(rc, -E2BIG);
	}
	cr_expect_eq(l.nservers, AGENT_LINK_SERVERS_MAX);
	t_rmtree(dir);
	free(dir);
}

/* parleyd's replica flags: a name that is not a store name, a poll out of
 * range, an advertise address that is not HOST:PORT. */
Test(replicas, daemon_refuses_bad_replica_flags)
{
	const char *bad[][2] = { { "--replica-name", "a:b" },
				 { "--replica-name", "" },
				 { "--poll-ms", "5" },
				 { "--poll-ms", "x" },
				 { "--advertise", "nohost" } };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *argv[] = { T_BIN("parleyd"), (char *)bad[i][0],
				 (char *)bad[i][1], "--state-dir", "/nonexistent",
				 NULL };
		char *out;
		int rc = t_run(argv, &out, 30);
		cr_expect_neq(rc, 0, "%s %s accepted", bad[i][0], bad[i][1]);
		cr_expect(strstr(out, bad[i][0] + 2) ||
			  strstr(out, "replica_name") || strstr(out, "poll_ms"),
			  "%s %s: %s", bad[i][0], bad[i][1], out);
		free(out);
	}
}

/* ---- one audit chain, appended to by every replica at once ---- */

#define WRITES 150
#define WRITERS (2 * NREP)  /* two per replica */

STORE_TEST(replicas, concurrent_audit_appends_keep_one_chain, .timeout = 240)
{
	static struct reps x;
	memset(&x, 0, sizeof(x));
	rep_init(&x);
	start_all(&x, 3);
	/* Two writers per replica, all at once: each host added is an
	 * api_change event appended by that replica. */
	pid_t kids[WRITERS];
	for (unsigned i = 0; i < WRITERS; i++) {
		kids[i] = fork();
		cr_assert_geq(kids[i], 0);
		if (kids[i] == 0) {
			int fails = 0;
			for (int k = 0; k < WRITES; k++) {
				char body[96];
				snprintf(body, sizeof(body),
					 "{\"name\":\"w%u-%d\"}", i, k);
				if (ac_request(x.r[i % NREP].api, x.admin, "POST",
					       "/v1/hosts", body) != 201)
					fails++;
			}
			_exit(fails > 255 ? 255 : fails);
		}
	}
	for (unsigned i = 0; i < WRITERS; i++) {
		int st;
		cr_assert_eq(waitpid(kids[i], &st, 0), kids[i]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			  "writer %u: %d requests failed", i,
			  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	}
	struct store *s = fd_store(&x.f);
	uint64_t bad = 0, rows = 0;
	struct parley_err err = { 0 };
	cr_assert_eq(store_audit_verify(s, &bad, &rows, &err), 0, "%s (row %llu)",
		     perr_msg(&err), (unsigned long long)bad);
	unsigned n = 0;
	for (unsigned i = 0; i < WRITERS; i++)
		for (int k = 0; k < WRITES; k++) {
			char name[32];
			snprintf(name, sizeof(name), "w%u-%d", i, k);
			struct store_host hh;
			n += store_host_get(s, name, &hh, NULL) == 0;
		}
	cr_expect_eq(n, WRITERS * WRITES);
	struct audit_want aw = { "api_change", NULL, 0 };
	store_audit_list(s, 0, 0, count_event, &aw, NULL);
	cr_expect_geq(aw.n, WRITERS * WRITES);
	cr_log_info("%llu audit rows, one chain, from %d replicas",
		    (unsigned long long)rows, NREP);
	store_close(s);
	stop_all(&x);
}

/* ---- an agent update asked for on one replica, offered by another ---- */

struct upd_moved {
	const char *host;
	char state[64];
};

static bool update_moved(struct fleetd *f, void *ctx)
{
	struct upd_moved *m = ctx;
	struct store *s = fd_store(f);
	struct store_update u;
	int rc = store_update_get(s, m->host, &u, NULL);
	store_close(s);
	if (rc == 0)
		snprintf(m->state, sizeof(m->state), "%s", u.state);
	return rc == 0 && strcmp(u.state, "pending");
}

STORE_TEST(replicas, update_asked_on_a_is_offered_by_b, .timeout = 180)
{
	static struct reps x;
	memset(&x, 0, sizeof(x));
	rep_init(&x);
	host_put(&x, "host-u");
	/* Replica 0 reads STATE/release.pub at its start. */
	EVP_PKEY *k = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(pki_key_new(&k, &err), 0, "%s", perr_msg(&err));
	char pub[700];
	snprintf(pub, sizeof(pub), "%s/r0", x.f.dir);
	cr_assert_eq(mkdir(pub, 0755), 0);
	snprintf(pub, sizeof(pub), "%s/r0/release.pub", x.f.dir);
	cr_assert_eq(sign_write_pub(pub, k, &err), 0, "%s", perr_msg(&err));
	/* Read after the daemon dropped its privileges (parley or nobody). */
	chmod(pub, 0644);
	start_all(&x, 2);
	struct fd_agent *h = fd_host(&x.f, "host-u", NULL);
	char servers[64];
	server_list(&x, (const int[]){ 1, -1 }, servers, sizeof(servers));
	const char *extra[] = { "--server", servers, NULL };
	x.f.port = x.r[1].link;
	fd_start_agent_with(&x.f, h, NULL, extra);
	struct held hw = { .host = "host-u", .by = "r1" };
	cr_assert(fd_wait(is_held, &x.f, &hw, 30000), "held by %s:\n%s",
		  hw.got, fd_agent_log(h));
	/* A signed package of this build, one minor version up, through
	 * replica 0's API (its release.pub checks it). */
	uint8_t *ab, *vb, *pkg;
	size_t al, vl, len;
	cr_assert_eq(file_read_all(T_AGENT, 256 << 20, &ab, &al, &err), 0);
	cr_assert_eq(file_read_all(T_VMM, 256 << 20, &vb, &vl, &err), 0);
	struct updpkg_running run;
	updpkg_running_self(&run);
	char ver[32], abi_max[16];
	snprintf(ver, sizeof(ver), "%u.%u.%u", run.version.v[0],
		 run.version.v[1] + 1, run.version.v[2]);
	snprintf(abi_max, sizeof(abi_max), "%u.%u", PARLEY_ABI_MAJOR,
		 PARLEY_ABI_MINOR);
	struct updpkg_input in[] = { { "parley-agent", ab, al },
				     { "parley-vmm", vb, vl } };
	cr_assert_eq(updpkg_build(ver, "0.0.0", "1.0", abi_max, in, 2, &pkg,
				  &len, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(updpkg_sign(pkg, len, k, &err), 0, "%s", perr_msg(&err));
	free(ab);
	free(vb);
	EVP_PKEY_free(k);
	size_t cap = len + 1024;
	char *req = malloc(cap);
	int n = snprintf(req, cap, "POST /v1/hosts/host-u/update HTTP/1.1\r\n"
			 "Host: 127.0.0.1\r\nConnection: close\r\n"
			 "Authorization: Bearer %s\r\nContent-Type: "
			 "application/octet-stream\r\nContent-Length: %zu\r\n"
			 "\r\n", x.admin, len);
	memcpy(req + n, pkg, len);
	struct ac_resp r;
	ac_raw(x.r[0].api, req, (size_t)n + len, &r);
	free(req);
	free(pkg);
	cr_assert_eq(r.status, 202, "%s", r.raw);
	ac_free(&r);
	/* Replica 1, holding host-u, offers it: the agent answers and the
	 * host's row moves on from "pending" (whatever the agent then does
	 * with it: this agent has no update stage). */
	struct upd_moved m = { "host-u", "" };
	char *l1 = NULL;
	bool moved = fd_wait(update_moved, &x.f, &m, 60000);
	if (!moved)
		l1 = rep_log(&x.r[1]);
	cr_assert(moved, "still %s:\nagent:\n%s\nreplica 1:\n%s", m.state,
		  fd_agent_log(h), l1);
	cr_log_info("host-u's update: %s", m.state);
	stop_all(&x);
}

/* ---- a rollback asked for on one replica, sent by another ---- */

struct rb_moved {
	const char *host;
	struct store_rollback r;
};

static bool rollback_answered(struct fleetd *f, void *ctx)
{
	struct rb_moved *m = ctx;
	struct store *s = fd_store(f);
	int rc = store_rollback_get(s, m->host, &m->r, NULL);
	store_close(s);
	return rc == 0 && strcmp(m->r.state, "requested");
}

/* The API of replica 0 records it; replica 1, holding the host, sends it
 * through the stored command (STORE_REPLICA_CMD_ROLLBACK); the agent,
 * which keeps no previous version, refuses with the reason, and replica
 * 1 stores the answer. */
STORE_TEST(replicas, rollback_asked_on_a_is_sent_by_b, .timeout = 180)
{
	static struct reps x;
	memset(&x, 0, sizeof(x));
	rep_init(&x);
	host_put(&x, "host-r");
	start_all(&x, 2);
	struct fd_agent *h = fd_host(&x.f, "host-r", NULL);
	char servers[64];
	server_list(&x, (const int[]){ 1, -1 }, servers, sizeof(servers));
	const char *extra[] = { "--server", servers, NULL };
	x.f.port = x.r[1].link;
	fd_start_agent_with(&x.f, h, NULL, extra);
	struct held hw = { .host = "host-r", .by = "r1" };
	cr_assert(fd_wait(is_held, &x.f, &hw, 30000), "held by %s:\n%s",
		  hw.got, fd_agent_log(h));
	struct ac_resp r;
	cr_assert_eq(api(&x, 0, "POST", "/v1/hosts/host-r/rollback", "{}",
			 &r), 202, "%s", r.raw);
	ac_free(&r);
	struct rb_moved m = { "host-r" };
	char *l1 = NULL;
	bool moved = fd_wait(rollback_answered, &x.f, &m, 60000);
	if (!moved)
		l1 = rep_log(&x.r[1]);
	cr_assert(moved, "still %s:\nagent:\n%s\nreplica 1:\n%s", m.r.state,
		  fd_agent_log(h), l1);
	cr_expect_str_eq(m.r.state, "refused");
	cr_expect(strstr(m.r.reason, "no previous version"), "%s",
		  m.r.reason);
	struct audit_want aw = { "update_rollback_sent", NULL, 0 };
	struct store *s = fd_store(&x.f);
	store_audit_list(s, 0, 0, count_event, &aw, NULL);
	store_close(s);
	cr_expect_eq(aw.n, 1);
	stop_all(&x);
}

/* ---- a dead replica, commands across a cut link ---- */

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Store level: command ids only grow (also after every command was
 * deleted), a host's agent confirms only its own, and a dead replica is
 * reaped by exactly one of two handles that try. */
STORE_TEST(replicas, command_ids_confirmations_and_one_reaper, .timeout = 60)
{
	char *dir = t_tmpdir();
	char uri[600];
	t_store_uri(dir, "s.db", uri, sizeof(uri));
	struct store *a = NULL, *b = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(store_open(uri, &a, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(store_open(uri, &b, &err), 0, "%s", perr_msg(&err));
	for (int i = 0; i < 2; i++)
		cr_assert_eq(store_host_put(a, i ? "h2" : "h1", "",
					    (struct store_blob){ 0 }, NULL), 0);
	/* Commands: kept until confirmed by their own host. */
	cr_assert_eq(store_replica_cmd_put(a, "h1", "p", 2, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(store_replica_cmd_put(a, "h1", NULL,
					   STORE_REPLICA_CMD_CHANGED, NULL), 0);
	struct store_replica_cmd *k = NULL;
	cr_assert_eq(store_replica_cmd_pending(b, "h1", 0, &k, NULL), 1,
		     "CHANGED is not a command to confirm");
	int64_t id1 = k[0].id;
	cr_expect_str_eq(k[0].partition, "p");
	cr_expect_eq(k[0].action, 2);
	free(k);
	cr_expect_eq(store_replica_cmd_pending(b, "h1", id1, &k, NULL), 0);
	free(k);
	/* Hostile confirmations: another host's id, no id. */
	cr_expect_eq(store_replica_cmd_done(b, "h2", id1, NULL), 0);
	cr_expect_eq(store_replica_cmd_done(b, "h1", 0, NULL), -EINVAL);
	cr_expect_eq(store_replica_cmd_done(b, "h1", -5, NULL), -EINVAL);
	cr_expect_eq(store_replica_cmd_done(b, "../h1", id1, NULL), -EINVAL);
	cr_assert_eq(store_replica_cmd_pending(b, "h1", 0, &k, NULL), 1);
	free(k);
	cr_assert_eq(store_replica_cmd_done(b, "h1", id1, &err), 0, "%s",
		     perr_msg(&err));
	cr_assert_eq(store_replica_cmd_pending(b, "h1", 0, &k, NULL), 0);
	free(k);
	/* Every row gone: the next id is still above the last. */
	cr_assert_eq(store_replica_cmd_list(a, "nobody", &k, NULL), 0);
	free(k);
	cr_assert_eq(store_host_delete(a, "h1", NULL), 0);
	cr_assert_eq(store_replica_cmd_put(b, "h2", "q", 1, NULL), 0);
	cr_assert_eq(store_replica_cmd_pending(a, "h2", 0, &k, NULL), 1);
	cr_expect_gt(k[0].id, id1);
	free(k);
	/* r2 beat before the cutoff, r0 and r1 after it; r2 holds h2. */
	cr_assert_eq(store_replica_beat(a, "r2", "127.0.0.1:3", 1, NULL), 0);
	cr_assert_eq(store_replica_hold(a, "h2", "r2", NULL), 0);
	usleep(20000);
	int64_t cutoff = wall_ms();
	usleep(20000);
	cr_assert_eq(store_replica_beat(a, "r0", "127.0.0.1:1", 1, NULL), 0);
	cr_assert_eq(store_replica_beat(b, "r1", "127.0.0.1:2", 1, NULL), 0);
	struct store_replica *d = NULL;
	cr_assert_eq(store_begin(a, &err), 0, "%s", perr_msg(&err));
	/* b tries while a holds the lock: not now, and no waiting. */
	cr_expect_eq(store_try_begin(b, &err), -EBUSY, "%s", perr_msg(&err));
	cr_assert_eq(store_replica_reap(a, "r0", cutoff, &d, &err), 1, "%s",
		     perr_msg(&err));
	cr_expect_str_eq(d[0].name, "r2");
	cr_expect_eq(d[0].hosts, 1);
	free(d);
	cr_assert_eq(store_commit(a, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(store_try_begin(b, &err), 0, "%s", perr_msg(&err));
	cr_expect_eq(store_replica_reap(b, "r1", cutoff, &d, &err), 0, "%s",
		     perr_msg(&err));
	free(d);
	cr_assert_eq(store_commit(b, &err), 0, "%s", perr_msg(&err));
	char who[STORE_NAME_MAX];
	cr_expect_eq(store_replica_holder(b, "h2", who, NULL, NULL), -ENOENT);
	struct store_replica *r = NULL;
	cr_assert_eq(store_replica_list(b, &r, NULL), 2);
	cr_expect_str_eq(r[0].name, "r0");
	cr_expect_str_eq(r[1].name, "r1");
	free(r);
	cr_expect_eq(store_replica_reap(b, "r:1", cutoff, &d, NULL), -EINVAL);
	/* What a poll asks first: did anything commit since the last look?
	 * SQLite says cheaply; PostgreSQL cannot (it listens and polls). */
	uint64_t m0 = 0, m1 = 0;
	int rc = store_mark(a, &m0, &err);
	if (t_store_pg) {
		cr_expect_eq(rc, -ENOTSUP);
	} else {
		cr_assert_eq(rc, 0, "%s", perr_msg(&err));
		cr_assert_eq(store_mark(a, &m1, NULL), 0);
		cr_expect_eq(m1, m0, "nothing committed, the mark moved");
		/* Each beat changes its row whatever the clock says (a new
		 * started_ms): one that rewrote the same values within the
		 * same millisecond as r1's last beat would write no page,
		 * and SQLite's data_version rightly stays (seen on tmpfs). */
		cr_assert_eq(store_replica_beat(b, "r1", "127.0.0.1:2", 2,
						NULL), 0);
		cr_assert_eq(store_mark(a, &m1, NULL), 0);
		cr_expect_neq(m1, m0, "another handle's commit not seen");
		cr_assert_eq(store_replica_beat(a, "r0", "127.0.0.1:1", 2,
						NULL), 0);
		cr_assert_eq(store_mark(a, &m0, NULL), 0);
		cr_expect_neq(m1, m0, "this handle's own commit not seen");
	}
	store_close(a);
	store_close(b);
	t_store_uri_drop(uri);
	t_rmtree(dir);
	free(dir);
}

struct nobody {
	const char *host;
};

static bool held_by_nobody(struct fleetd *f, void *ctx)
{
	struct nobody *n = ctx;
	char who[STORE_NAME_MAX];
	struct store *s = fd_store(f);
	int rc = store_replica_holder(s, n->host, who, NULL, NULL);
	store_close(s);
	return rc == -ENOENT;
}

/* kill -9 of a replica whose agent cannot go elsewhere (stopped with
 * SIGSTOP, so its connection is not closed and it does not reconnect):
 * a survivor releases the host within seconds and one audit event says
 * so, though two survivors look; the agent, woken, is served again. */
STORE_TEST(replicas, dead_replica_releases_its_hosts_once, .timeout = 180)
{
	static struct reps x;
	memset(&x, 0, sizeof(x));
	rep_init(&x);
	host_put(&x, "host-1");
	start_all(&x, 3);
	struct fd_agent *h = agent_on(&x, 2, 30000);
	cr_assert_eq(kill(h->pid, SIGSTOP), 0);
	kill_replica(&x.r[2]);
	struct nobody nb = { "host-1" };
	cr_assert(fd_wait(held_by_nobody, &x.f, &nb, 60000),
		  "host-1 still held by the dead r2");
	struct audit_want dw = { "replica_dead", NULL, 0, "SILENT" };
	cr_assert(audited(&x.f, &dw), "no replica_dead event");
	/* Released in the transaction that audited it: the other survivor,
	 * looking after the commit, found nothing to release. */
	struct store_replica *r = NULL;
	char *l0 = rep_log(&x.r[0]), *l1 = rep_log(&x.r[1]);
	unsigned said = (strstr(l0, "replica r2 silent") != NULL) +
			(strstr(l1, "replica r2 silent") != NULL);
	free(l0);
	free(l1);
	cr_expect_eq(said, 1, "released by %u replicas", said);
	struct store *s = fd_store(&x.f);
	cr_assert_eq(store_replica_list(s, &r, NULL), 2);
	store_close(s);
	free(r);
	audited(&x.f, &dw);
	cr_expect_eq(dw.n, 1, "%u replica_dead events", dw.n);
	/* Neither survivor shows host-1 as connected or r2 holding agents. */
	for (unsigned i = 0; i < 2; i++) {
		struct ac_resp q;
		cr_assert_eq(api(&x, i, "GET", "/v1/hosts/host-1", NULL, &q),
			     200, "%s", q.raw);
		cr_expect(json_is_false(json_object_get(q.json, "connected")),
			  "%s", q.body);
		cr_expect(json_is_null(json_object_get(q.json, "replica")) ||
			  !json_object_get(q.json, "replica"), "%s", q.body);
		ac_free(&q);
		cr_assert_eq(api(&x, i, "GET", "/metrics", NULL, &q), 200);
		cr_expect_null(strstr(q.body, "{replica=\"r2\"}"), "%s",
			       q.body);
		ac_free(&q);
	}
	/* Woken, the agent finds a survivor (r2's welcome named them). */
	cr_assert_eq(kill(h->pid, SIGCONT), 0);
	struct held hw = { .host = "host-1", .not_by = "r2" };
	cr_assert(fd_wait(is_held, &x.f, &hw, 60000), "host-1 not served "
		  "again:\n%s", fd_agent_log(h));
	stop_all(&x);
}

struct part_wait {
	const char *name, *want;
	char got[64];
};

static bool part_in(struct fleetd *f, void *ctx)
{
	struct part_wait *p = ctx;
	struct store_partition sp = { 0 };
	struct store *s = fd_store(f);
	int rc = store_partition_get(s, p->name, &sp, NULL);
	store_close(s);
	if (rc < 0)
		return false;
	snprintf(p->got, sizeof(p->got), "%s", sp.state);
	store_partition_free(&sp);
	return !strcmp(p->got, p->want);
}

struct pending {
	const char *host;
	int n;
};

static bool pending_is(struct fleetd *f, void *ctx)
{
	struct pending *p = ctx;
	struct store_replica_cmd *k = NULL;
	struct store *s = fd_store(f);
	int n = store_replica_cmd_pending(s, p->host, 0, &k, NULL);
	store_close(s);
	free(k);
	return n == p->n;
}

static unsigned occurrences(const char *hay, const char *needle)
{
	unsigned n = 0;
	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* A STOP issued while the agent's link is cut (its only replica killed;
 * issued through another it does not know) reaches it once it is back;
 * then a delivery whose confirmation is lost (the store's write lock held
 * by the test, so the replica cannot commit it, and the replica killed)
 * is sent again and carried out once. */
STORE_TEST(replicas, command_across_a_cut_link_runs_once, .timeout = 240)
{
	static struct reps x;
	memset(&x, 0, sizeof(x));
	rep_init(&x);
	host_put(&x, "host-1");
	struct store *s = fd_store(&x.f);
	static const char spec[] =
		"{\"name\":\"p\",\"image\":\"chantest.elf\",\"memory\":\"4M\","
		"\"cmdline\":\"steps=sleep:600000\"}";
	struct store_part_in in = { .name = "p", .host = "host-1",
				    .kind = STORE_PART_THIN, .spec_json = spec,
				    .spec_len = strlen(spec),
				    .state = "defined" };
	cr_assert_eq(store_partition_put(s, &in, NULL, NULL), 0);
	store_close(s);
	/* r0 alone: its welcome names no other replica. */
	start_all(&x, 1);
	struct fd_agent *h = agent_on(&x, 0, 30000);
	struct part_wait ps = { "p", "running" };
	cr_assert(fd_wait(part_in, &x.f, &ps, 60000), "p is %s:\n%s", ps.got,
		  fd_agent_log(h));
	start_replica(&x, 1);
	x.n = 2;
	x.r[0].relink = x.r[0].link;
	kill_replica(&x.r[0]);
	/* Cut: the agent knows only r0. The STOP goes through r1. */
	struct ac_resp r;
	cr_assert_eq(api(&x, 1, "POST", "/v1/partitions/p/stop", NULL, &r),
		     200, "%s", r.raw);
	ac_free(&r);
	struct pending pw = { "host-1", 1 };
	cr_assert(pending_is(&x.f, &pw), "the STOP is not stored");
	struct store_replica_cmd *k = NULL;
	s = fd_store(&x.f);
	cr_assert_eq(store_replica_cmd_pending(s, "host-1", 0, &k, NULL), 1);
	store_close(s);
	char ran[96], skipped[96];
	snprintf(ran, sizeof(ran), "command %lld (action 2) for p: carried "
		 "out", (long long)k[0].id);
	snprintf(skipped, sizeof(skipped), "command %lld for p: carried out "
		 "already", (long long)k[0].id);
	free(k);
	/* r0 back on its port: the agent reconnects, gets the STOP, runs
	 * it, and its confirmation cannot be committed: the test holds the
	 * store's write lock. */
	cr_assert_eq(kill(h->pid, SIGSTOP), 0);
	start_replica(&x, 0);
	struct store *lock = fd_store(&x.f);
	struct parley_err err = { 0 };
	cr_assert_eq(store_begin(lock, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(store_replica_beat(lock, "test-lock", "", 1, &err), 0,
		     "%s", perr_msg(&err));
	cr_assert_eq(kill(h->pid, SIGCONT), 0);
	struct log_has lh = { h, ran };
	cr_assert(fd_wait(agent_log_has, &x.f, &lh, 60000), "never ran:\n%s",
		  fd_agent_log(h));
	kill_replica(&x.r[0]);
	store_rollback(lock, NULL);
	store_close(lock);
	cr_assert(pending_is(&x.f, &pw), "the lost confirmation was stored");
	/* Again: sent once more, skipped, confirmed. */
	start_replica(&x, 0);
	lh.text = skipped;
	cr_assert(fd_wait(agent_log_has, &x.f, &lh, 60000), "never resent:\n%s",
		  fd_agent_log(h));
	pw.n = 0;
	cr_assert(fd_wait(pending_is, &x.f, &pw, 30000), "never confirmed");
	ps.want = "stopped";
	cr_assert(fd_wait(part_in, &x.f, &ps, 30000), "p is %s", ps.got);
	char *log = fd_agent_log(h);
	cr_expect_eq(occurrences(log, ran), 1, "%s", log);
	/* At least once: a reconnect while the lock was held (the replica's
	 * loop waited on it, heartbeats went unanswered) resends it too. */
	cr_expect_geq(occurrences(log, skipped), 1, "%s", log);
	free(log);
	stop_all(&x);
}

/* ---- PostgreSQL only: notifications and a lost connection ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static bool log_has(struct fleetd *f, void *ctx)
{
	(void)f;
	const struct replica *r = ((const struct replica **)ctx)[0];
	const char *what = ((const char **)ctx)[1];
	char *log = rep_log(r);
	bool yes = strstr(log, what) != NULL;
	free(log);
	return yes;
}

/* The value of an unlabelled counter in replica i's /metrics (0: none). */
static uint64_t counter(struct reps *x, unsigned i, const char *name)
{
	struct ac_resp r;
	cr_assert_eq(api(x, i, "GET", "/metrics", NULL, &r), 200);
	char key[128];
	snprintf(key, sizeof(key), "\n%s ", name);
	const char *p = strstr(r.body, key);
	uint64_t v = p ? strtoull(p + strlen(key), NULL, 10) : 0;
	ac_free(&r);
	return v;
}

/* Both replicas poll once a minute: a grant and a partition made through
 * A reach the agent on B through B's LISTEN connection, before B's first
 * poll could have run (it is due a minute after B started, and t0 is
 * taken before). Without notifications the waits below time out. */
Test(replicas_pg, change_reaches_another_replica_before_its_poll,
     .timeout = 180)
{
	static struct reps x;
	memset(&x, 0, sizeof(x));
	t_store_pg = true;
	rep_init(&x);
	snprintf(x.poll_ms, sizeof(x.poll_ms), "60000");
	host_put(&x, "host-1");
	put_ab(&x, "defined");
	uint64_t t0 = now_ms();
	start_all(&x, 2);
	struct fd_agent *h = agent_on(&x, 1, 20000);
	struct fd_ack ack = { "host-1", grant_c1(&x, 0) };
	cr_assert(fd_wait(fd_acked, &x.f, &ack, 15000),
		  "host-1 (on B) never acked version %llu:\n%s",
		  (unsigned long long)ack.want, fd_agent_log(h));
	/* A partition through A: B is told to send its commands. */
	struct ac_resp r;
	cr_assert_eq(api(&x, 0, "POST", "/v1/partitions",
			 "{\"host\":\"host-1\",\"backend\":\"thin\",\"spec\":"
			 "{\"name\":\"c\",\"image\":\"chantest.elf\","
			 "\"memory\":\"4M\",\"cmdline\":\"steps=sleep:60000\"}}",
			 &r), 201, "%s", r.raw);
	ac_free(&r);
	const void *lw[] = { &x.r[1], "from the store" };
	cr_assert(fd_wait(log_has, &x.f, lw, 15000), "B never delivered the "
		  "stored command");
	uint64_t took = now_ms() - t0;
	cr_assert_lt(took, 60000, "inconclusive: %llu ms, B may have polled",
		     (unsigned long long)took);
	cr_expect_gt(counter(&x, 1, "parley_replica_notifications_total"), 0);
	stop_all(&x);
}

/* A cluster of the test's own (restarted or stopped: the run's is
 * shared with others) and x's store in its database; its directory, or
 * the test skipped with the reason. */
static char *own_cluster(struct reps *x)
{
	char why[512];
	char *cdir = t_tmpdir();
	chmod(cdir, 0755);
	const char *no = pgc_start(cdir, false, why, sizeof(why));
	if (no && t_required("postgresql"))
		cr_assert_fail("PARLEY_REQUIRE=postgresql: %s", no);
	if (no) {
		pgc_stop(cdir);
		free(cdir);
		cr_skip_test("needs a PostgreSQL cluster: %s", no);
	}
	t_store_pg = false; /* the database is the cluster's own: not dropped */
	fd_init(&x->f);
	chmod(x->f.dir, 0755);
	char ci[400];
	pgc_conninfo(cdir, ci, sizeof(ci));
	snprintf(x->f.store, sizeof(x->f.store),
		 "postgresql:%s dbname=postgres", ci);
	store_close(fd_store(&x->f));
	return cdir;
}

/* The cluster restarted (every session ended) under two running
 * replicas: the next API call on each is served on a new connection,
 * and B listens again and is woken by a change made after the restart
 * (the poll is a minute: it is not what finds it). */
Test(replicas_pg, store_restart_under_running_replicas, .timeout = 180)
{
	static struct reps x;
	memset(&x, 0, sizeof(x));
	char why[512];
	char *cdir = own_cluster(&x);
	snprintf(x.poll_ms, sizeof(x.poll_ms), "60000");
	start_all(&x, 2);
	struct ac_resp r;
	cr_assert_eq(api(&x, 0, "POST", "/v1/hosts", "{\"name\":\"h1\"}", &r),
		     201, "%s", r.raw);
	ac_free(&r);
	const char *again = pgc_restart(cdir, why, sizeof(why));
	cr_assert_null(again, "%s", again);
	cr_assert_eq(api(&x, 0, "POST", "/v1/hosts", "{\"name\":\"h2\"}", &r),
		     201, "%s", r.raw);
	ac_free(&r);
	cr_assert_eq(api(&x, 1, "GET", "/v1/hosts/h2", NULL, &r), 200, "%s",
		     r.raw);
	ac_free(&r);
	/* B's listener was cut too; it listens again within a second or
	 * so, and a command stored for h2 (no replica holds it) wakes it. */
	uint64_t before = counter(&x, 1, "parley_replica_notifications_total");
	bool woke = false;
	for (int i = 0; i < 40 && !woke; i++) {
		struct store *s = fd_store(&x.f);
		cr_assert_eq(store_replica_cmd_put(s, "h2", NULL,
						   STORE_REPLICA_CMD_CHANGED,
						   NULL), 0);
		store_close(s);
		usleep(250000);
		woke = counter(&x, 1, "parley_replica_notifications_total") >
		       before;
	}
	char *l1 = woke ? NULL : rep_log(&x.r[1]);
	cr_assert(woke, "B was never woken after the restart:\n%s", l1);
	stop_all(&x);
	pgc_stop(cdir);
	free(cdir);
}

/* The store away under a running replica, in the worst way: its sessions
 * ended and the postmaster stopped (SIGSTOP), so a new connection is
 * accepted by the kernel and never answered -- libpq's blocking connect
 * would wait for ever. Meanwhile the replica answers /healthz at once
 * (degraded), a request that needs the store 503, and its agent's link
 * stays up (heartbeats answered); once the postmaster runs again, a
 * change made through the API lands in the store. */
Test(replicas_pg, store_away_does_not_block_the_loop, .timeout = 240)
{
	static struct reps x;
	memset(&x, 0, sizeof(x));
	char *cdir = own_cluster(&x);
	host_put(&x, "host-1");
	start_all(&x, 1);
	struct fd_agent *h = agent_on(&x, 0, 30000);
	/* Every session of the replica's (store and listener), then no
	 * postmaster to make new ones. */
	char *pids = t_pg_text(x.f.store,
			       "SELECT COALESCE(string_agg(pid::text, ' '), '') "
			       "FROM pg_stat_activity WHERE pid <> "
			       "pg_backend_pid() AND backend_type = "
			       "'client backend'");
	long pm = pgc_postmaster(cdir);
	cr_assert_gt(pm, 1);
	cr_assert_eq(kill((pid_t)pm, SIGSTOP), 0);
	unsigned ended = 0;
	for (char *p = pids, *end; *p; p = end) {
		long pid = strtol(p, &end, 10);
		if (end == p)
			break;
		ended += pid > 1 && kill((pid_t)pid, SIGTERM) == 0;
	}
	free(pids);
	cr_assert_geq(ended, 1);
	/* Store calls now find the session gone and try to connect: each
	 * /healthz is answered (the client gives up after 10 s, which a
	 * loop blocked in libpq's connect would exceed). Several, spread
	 * over more than the agent's dead-peer time (3 heartbeats). */
	struct ac_resp r;
	bool degraded = false;
	for (int i = 0; i < 12; i++) {
		struct api_client c = { .port = x.r[0].api };
		ac_call(&c, "GET", "/healthz", NULL, NULL, &r);
		cr_assert_eq(r.status, 200, "healthz %d: %d %s", i, r.status,
			     r.raw);
		const char *st = json_string_value(json_object_get(r.json,
								   "status"));
		degraded |= st && !strcmp(st, "degraded");
		cr_expect_eq(json_integer_value(json_object_get(r.json,
								"agents")),
			     1, "%s", r.body);
		ac_free(&r);
		usleep(500000);
	}
	cr_expect(degraded, "the store was never reported away");
	/* A request that needs the store: 503, at once. */
	cr_assert_eq(api(&x, 0, "GET", "/v1/hosts", NULL, &r), 503, "%s",
		     r.raw);
	ac_free(&r);
	char *log = fd_agent_log(h);
	cr_expect_null(strstr(log, "link down"), "the agent's link went "
		       "down while the store was away:\n%s", log);
	free(log);
	/* Back: a change through the API lands (after the replica's
	 * connection is made again: 503 until then). */
	cr_assert_eq(kill((pid_t)pm, SIGCONT), 0);
	int st = 0;
	for (int i = 0; i < 120 && st != 201; i++) {
		st = api(&x, 0, "POST", "/v1/hosts", "{\"name\":\"h-after\"}",
			 &r);
		cr_assert(st == 201 || st == 503, "%d %s", st, r.raw);
		ac_free(&r);
		if (st != 201)
			usleep(250000);
	}
	cr_assert_eq(st, 201, "the replica never wrote to the store again");
	struct store *s = fd_store(&x.f);
	struct store_host sh;
	cr_expect_eq(store_host_get(s, "h-after", &sh, NULL), 0);
	store_close(s);
	/* Its beat and its listener are back too: a healthz says ok. */
	struct api_client c = { .port = x.r[0].api };
	ac_call(&c, "GET", "/healthz", NULL, NULL, &r);
	cr_expect_str_eq(json_string_value(json_object_get(r.json, "status")),
			 "ok");
	ac_free(&r);
	stop_all(&x);
	pgc_stop(cdir);
	free(cdir);
}
