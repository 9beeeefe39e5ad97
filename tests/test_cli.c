/* parleyctl against a real parleyd on loopback, driven only through the
 * binary (exit codes and -o json output, as an operator or script sees
 * them). A route the daemon does not serve, a parleyd that does not start
 * or dies serving a request: each is a failure naming which side is
 * wrong, never a skip. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fileio.h"
#include "tests/helpers/fleetd.h"
#include "tests/helpers/testutil.h"

#define T_CTL T_BIN("parleyctl")
#define ARGS_MAX 32

struct cli {
	struct fleetd f;
	char server[64];
	char token[160];
};

static char *slurp_trim(const char *dir, const char *name)
{
	char path[700];
	uint8_t *buf;
	size_t len;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (file_read_all(path, 4096, &buf, &len, NULL) < 0)
		return NULL;
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		buf[--len] = 0;
	return (char *)buf;
}

static pid_t spawn_daemon(struct cli *c)
{
	char ca[600], crt[600], key[600], pol[600], log[600];
	const char *d = c->f.dir;
	snprintf(ca, sizeof(ca), "%s/ca/ca.crt", d);
	snprintf(crt, sizeof(crt), "%s/ca/parleyd.crt", d);
	snprintf(key, sizeof(key), "%s/ca/parleyd.key", d);
	snprintf(pol, sizeof(pol), "%s/ca/policy.key", d);
	snprintf(log, sizeof(log), "%s/parleyd.log", d);
	char *argv[] = { T_PARLEYD, "--listen", "127.0.0.1:0",
			 "--api-listen", "127.0.0.1:0", "--state-dir",
			 (char *)d, "--ca", ca, "--cert", crt, "--key", key,
			 "--policy-key", pol, "--store", c->f.store, NULL };
	pid_t parent_ = getpid();
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		t_child_dies_with_parent(parent_);
int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			      0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	return pid;
}

/* Wait for STATE_DIR/parleyd.api-port; false if parleyd exited first or
 * never wrote it (the API is not there yet). */
static bool wait_api_port(struct cli *c)
{
	for (int i = 0; i < 1000; i++) {
		char *port = slurp_trim(c->f.dir, "parleyd.api-port");
		if (port && atoi(port) > 0) {
			snprintf(c->server, sizeof(c->server),
				 "http://127.0.0.1:%d", atoi(port));
			free(port);
			return true;
		}
		free(port);
		if (waitpid(c->f.daemon, NULL, WNOHANG) == c->f.daemon) {
			c->f.daemon = 0;
			return false;
		}
		usleep(10000);
	}
	return false;
}

/* Run parleyctl with server and token (NULL: none) and the arguments
 * (NULL-terminated); stdout+stderr into *out. Returns the exit code. */
static int ctl_v(const char *server, const char *token, char **out,
		 va_list ap)
{
	char *argv[ARGS_MAX];
	int n = 0;
	argv[n++] = T_CTL;
	if (server) {
		argv[n++] = "--server";
		argv[n++] = (char *)server;
	}
	if (token) {
		argv[n++] = "--token";
		argv[n++] = (char *)token;
	}
	const char *a;
	while ((a = va_arg(ap, const char *)) && n < ARGS_MAX - 1)
		argv[n++] = (char *)a;
	argv[n] = NULL;
	return t_run(argv, out, 60);
}

static int ctl(struct cli *c, char **out, ...)
{
	va_list ap;
	va_start(ap, out);
	int rc = ctl_v(c->server, c->token, out, ap);
	va_end(ap);
	return rc;
}

static int ctl_as(const char *server, const char *token, char **out, ...)
{
	va_list ap;
	va_start(ap, out);
	int rc = ctl_v(server, token, out, ap);
	va_end(ap);
	return rc;
}

/* The test's fleet, stopped before a failure ends the test early. */
static struct cli *cur;

static void stop_before_failing(bool died)
{
	if (!cur)
		return;
	if (died)
		cur->f.daemon = 0;
	fd_stop(&cur->f);
	cur = NULL;
}

/* Fail, saying which side is wrong, when the daemon answered but not with
 * a parley API route (a body that is no error object, or 404/405 on a
 * collection), or when it died serving the route (a server-side bug). */
static void need_route(int rc, const char *out, const char *what)
{
	if (rc == 1 && strstr(out, "connection closed before any response") &&
	    cur && cur->f.daemon > 0 &&
	    waitpid(cur->f.daemon, NULL, WNOHANG) == cur->f.daemon) {
		stop_before_failing(true);
		cr_assert_fail("SERVER BUG: parleyd died serving %s: %s", what,
			       out);
	}
	if ((rc == 1 && strstr(out, "not a parley error object")) ||
	    (rc == 3 && strstr(what, "list")) ||
	    strstr(out, "METHOD_NOT_ALLOWED")) {
		stop_before_failing(false);
		cr_assert_fail("parleyd does not serve %s: %s", what, out);
	}
}

/* Run, expecting exit 0 (failing clearly if the route is missing). */
static char *ok(struct cli *c, const char *what, ...)
{
	char *out;
	va_list ap;
	va_start(ap, what);
	int rc = ctl_v(c->server, c->token, &out, ap);
	va_end(ap);
	need_route(rc, out, what);
	cr_assert_eq(rc, 0, "%s: exit %d:\n%s", what, rc, out);
	return out;
}

static json_t *jparse(char *out)
{
	json_error_t je;
	json_t *j = json_loads(out, 0, &je);
	cr_assert(j, "not JSON (%s):\n%s", je.text, out);
	free(out);
	return j;
}

static void cli_start(struct cli *c)
{
	memset(c, 0, sizeof(*c));
	fd_init(&c->f);
	c->f.daemon = spawn_daemon(c);
	if (!wait_api_port(c)) {
		char *log = fd_daemon_log(&c->f);
		fd_stop(&c->f);
		/* A part of parley that fails to start is a failure. */
		cr_assert_fail("parleyd wrote no API port (parleyd.api-port): "
			       "%.300s", log ? log : "");
	}
	char *tok = slurp_trim(c->f.dir, "admin.token");
	if (!tok) {
		fd_stop(&c->f);
		cr_assert_fail("parleyd wrote no admin.token");
	}
	snprintf(c->token, sizeof(c->token), "%s", tok);
	free(tok);
	cur = c;
	char *out;
	int rc = ctl(c, &out, "health", NULL);
	if (rc) {
		fd_stop(&c->f);
		cr_assert_fail("parleyd /healthz failed: %s", out);
	}
	free(out);
}

static void cli_stop(struct cli *c)
{
	fd_stop(&c->f);
	cur = NULL;
}

/* The item of a list whose `key` is `val`, or NULL. */
static json_t *find_item(json_t *list, const char *key, const char *val)
{
	json_t *items = json_object_get(list, "items"), *it;
	size_t i;
	cr_assert(json_is_array(items), "no items");
	json_array_foreach(items, i, it) {
		const char *s = json_string_value(json_object_get(it, key));
		if (s && !strcmp(s, val))
			return it;
	}
	return NULL;
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	cr_assert(s, "no string %s in %s", key,
		  json_dumps(o, JSON_COMPACT));
	return s;
}

static void expect_rc(struct cli *c, int want, const char *what, ...)
{
	char *out;
	va_list ap;
	va_start(ap, what);
	int rc = ctl_v(c->server, c->token, &out, ap);
	va_end(ap);
	if (want != 0 && want != 1)
		need_route(rc == want ? 0 : rc, out, what);
	cr_assert_eq(rc, want, "%s: want exit %d, got %d:\n%s", what, want,
		     rc, out);
	if (want >= 3)
		cr_assert(strstr(out, "parleyctl: "), "%s: no message:\n%s",
			  what, out);
	free(out);
}

/* ---- no server needed ---- */

static int run_plain(char **out, ...)
{
	va_list ap;
	va_start(ap, out);
	int rc = ctl_v("http://127.0.0.1:9", NULL, out, ap);
	va_end(ap);
	return rc;
}

#define USAGE(...)                                                      \
	do {                                                            \
		char *o_;                                               \
		int r_ = run_plain(&o_, __VA_ARGS__, NULL);             \
		cr_assert_eq(r_, 2, "%s: exit %d:\n%s", #__VA_ARGS__,   \
			     r_, o_);                                   \
		cr_assert(strstr(o_, "parleyctl: usage: ") ||            \
			  strstr(o_, "unrecognized option") ||          \
			  strstr(o_, "requires an argument"),           \
			  "%s", o_);                                    \
		free(o_);                                               \
	} while (0)

Test(cli, usage_errors_exit_2_before_any_request)
{
	USAGE("bogus");
	USAGE("host");
	USAGE("host", "frob");
	USAGE("host", "show");
	USAGE("host", "show", "a", "b");
	USAGE("host", "list", "--limit", "0");
	USAGE("host", "list", "--bogus");
	USAGE("-o", "yaml", "host", "list");
	USAGE("host", "list", "--token");
	USAGE("partition", "create", "--host", "h1");
	USAGE("partition", "create", "--host", "h1", "--backend", "xen",
	      "--spec", "/dev/null");
	USAGE("partition", "create", "--host", "h1", "--backend", "thin",
	      "--spec", "/nonexistent/spec.json");
	USAGE("grant", "add", "--channel", "c", "--a", "x", "--b", "y",
	      "--direction", "sideways", "--ring-bytes", "64K");
	USAGE("grant", "add", "--channel", "c", "--a", "x", "--b", "y",
	      "--direction", "both", "--ring-bytes", "64Q");
	USAGE("grant", "add", "--channel", "c");
	USAGE("baseline", "set", "p1", "--file", "motd=xyz");
	USAGE("baseline", "set", "p1");
	USAGE("audit", "list", "--since", "yesterday");
	USAGE("token", "create", "--scope", "root");
	USAGE("token", "create");
	USAGE("service", "allow", "a", "b");
	USAGE("service", "deny", "a", "b", "c", "d");
	USAGE("service", "remove", "a", "b");
	USAGE("segset", "add");
	USAGE("segset", "add", "/nonexistent/set.json");
}

Test(cli, help_on_every_command_exits_0)
{
	static const char *const cmds[][2] = {
		{ "--help", NULL }, { "host", "--help" },
		{ "partition", "--help" }, { "grant", "--help" },
		{ "baseline", "--help" }, { "audit", "--help" },
		{ "policy", "--help" }, { "token", "--help" },
		{ "health", "--help" },
	};
	static const char *const verbs[][2] = {
		{ "host", "list" }, { "host", "show" }, { "host", "add" },
		{ "partition", "create" }, { "partition", "list" },
		{ "partition", "show" }, { "partition", "start" },
		{ "partition", "stop" }, { "partition", "destroy" },
		{ "grant", "add" }, { "grant", "remove" }, { "grant", "list" },
		{ "baseline", "list" }, { "baseline", "show" },
		{ "baseline", "enroll" }, { "baseline", "set" },
		{ "audit", "list" }, { "audit", "verify" },
		{ "policy", "show" }, { "token", "create" },
		{ "segset", "add" }, { "segset", "list" },
		{ "segset", "show" }, { "segset", "remove" },
		{ "service", "allow" }, { "service", "deny" },
		{ "service", "list" }, { "service", "remove" },
	};
	char *out;
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		int rc = run_plain(&out, cmds[i][0], cmds[i][1], NULL);
		cr_assert_eq(rc, 0, "%s: %d\n%s", cmds[i][0], rc, out);
		cr_assert(strstr(out, "usage: parleyctl"), "%s", out);
		free(out);
	}
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		int rc = run_plain(&out, verbs[i][0], verbs[i][1], "--help",
				   NULL);
		cr_assert_eq(rc, 0, "%s %s: %d\n%s", verbs[i][0], verbs[i][1],
			     rc, out);
		cr_assert(strstr(out, verbs[i][1]), "%s", out);
		free(out);
	}
}

/* A loopback port nothing listens on (bound, then closed). */
static int dead_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &al), 0);
	close(s);
	return ntohs(a.sin_port);
}

Test(cli, server_down_exits_5)
{
	char url[64], *out;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", dead_port());
	int rc = ctl_as(url, "prl_x", &out, "host", "list", NULL);
	cr_assert_eq(rc, 5, "exit %d:\n%s", rc, out);
	cr_assert(strstr(out, "parleyctl: UNREACHABLE: "), "%s", out);
	free(out);
	rc = ctl_as("ftp://127.0.0.1", NULL, &out, "host", "list", NULL);
	cr_assert_eq(rc, 2, "exit %d:\n%s", rc, out);
	free(out);
}

/* ---- against parleyd ---- */

static void add_host(struct cli *c, const char *name)
{
	json_t *r = jparse(ok(c, "POST /v1/hosts", "-o", "json", "host",
			      "add", name, NULL));
	cr_assert_str_eq(jstr(json_object_get(r, "host"), "name"), name);
	cr_assert(!strncmp(jstr(r, "join_token"), "prj_", 4));
	json_decref(r);
}

Test(cli, hosts_add_list_show, .timeout = 60)
{
	struct cli c;
	cli_start(&c);
	add_host(&c, "h1");
	json_t *l = jparse(ok(&c, "GET /v1/hosts list", "-o", "json", "host",
			      "list", NULL));
	json_t *h = find_item(l, "name", "h1");
	cr_assert(h, "h1 not listed");
	cr_assert(json_is_boolean(json_object_get(h, "connected")));
	cr_assert(json_is_null(json_object_get(l, "next")));
	json_decref(l);
	json_t *s = jparse(ok(&c, "GET /v1/hosts/h1", "host", "show", "h1",
			      "-o", "json", NULL));
	cr_assert_str_eq(jstr(s, "name"), "h1");
	json_decref(s);
	char *t = ok(&c, "GET /v1/hosts list", "host", "list", NULL);
	cr_assert(strstr(t, "NAME") && strstr(t, "\nh1 "), "%s", t);
	free(t);
	expect_rc(&c, 3, "GET /v1/hosts/nope", "host", "show", "nope", NULL);
	expect_rc(&c, 6, "POST /v1/hosts again", "host", "add", "h1", NULL);
	cli_stop(&c);
}

static void create_thin(struct cli *c, const char *name, const char *host)
{
	char spec[256];
	snprintf(spec, sizeof(spec), "{\"name\":\"%s\",\"image\":\"hello.elf\","
		 "\"memory\":\"4M\",\"cmdline\":\"exit=0\"}", name);
	char *path = t_write(c->f.dir, name, spec, strlen(spec));
	json_t *p = jparse(ok(c, "POST /v1/partitions", "-o", "json",
			      "partition", "create", "--host", host,
			      "--backend", "thin", "--spec", path, NULL));
	cr_assert_str_eq(jstr(p, "name"), name);
	cr_assert_str_eq(jstr(p, "host"), host);
	cr_assert_str_eq(jstr(p, "backend"), "thin");
	cr_assert(json_is_object(json_object_get(p, "spec")));
	json_decref(p);
	free(path);
}

Test(cli, thin_partitions_create_list_show, .timeout = 60)
{
	struct cli c;
	cli_start(&c);
	add_host(&c, "h1");
	create_thin(&c, "p1", "h1");
	json_t *l = jparse(ok(&c, "GET /v1/partitions list", "-o", "json",
			      "partition", "list", "--host", "h1", NULL));
	json_t *p = find_item(l, "name", "p1");
	cr_assert(p, "p1 not listed");
	cr_assert_str_eq(jstr(p, "host"), "h1");
	json_decref(l);
	json_t *s = jparse(ok(&c, "GET /v1/partitions/p1", "-o", "json",
			      "partition", "show", "p1", NULL));
	cr_assert_str_eq(jstr(s, "name"), "p1");
	cr_assert(json_is_string(json_object_get(s, "state")));
	json_decref(s);
	expect_rc(&c, 3, "GET /v1/partitions/nope", "partition", "show",
		  "nope", NULL);
	expect_rc(&c, 3, "POST /v1/partitions/nope/start", "partition",
		  "start", "nope", NULL);
	cli_stop(&c);
}

static json_int_t policy_version(struct cli *c)
{
	json_t *p = jparse(ok(c, "GET /v1/policy", "-o", "json", "policy",
			      "show", NULL));
	json_t *v = json_object_get(p, "version");
	cr_assert(json_is_integer(v));
	cr_assert(json_is_array(json_object_get(p, "hosts")));
	json_int_t n = json_integer_value(v);
	json_decref(p);
	return n;
}

static json_int_t grant_add(struct cli *c)
{
	json_t *r = jparse(ok(c, "POST /v1/grants", "-o", "json", "grant",
			      "add", "--channel", "tele", "--a", "p1", "--b",
			      "p2", "--direction", "a_to_b", "--ring-bytes",
			      "64K", NULL));
	json_t *g = json_object_get(r, "grant");
	cr_assert_str_eq(jstr(g, "channel"), "tele");
	cr_assert_str_eq(jstr(g, "direction"), "a_to_b");
	cr_assert_eq(json_integer_value(json_object_get(g, "ring_bytes")),
		     65536);
	cr_assert(json_is_true(json_object_get(g, "require_integrity")));
	json_int_t v = json_integer_value(json_object_get(r, "policy_version"));
	json_decref(r);
	return v;
}

Test(cli, grants_add_list_remove_move_policy_version, .timeout = 60)
{
	struct cli c;
	cli_start(&c);
	add_host(&c, "h1");
	create_thin(&c, "p1", "h1");
	create_thin(&c, "p2", "h1");
	json_int_t v0 = policy_version(&c);
	json_int_t v1 = grant_add(&c);
	cr_assert_gt(v1, v0);
	cr_assert_eq(policy_version(&c), v1);
	json_t *l = jparse(ok(&c, "GET /v1/grants list", "-o", "json",
			      "grant", "list", NULL));
	json_t *g = find_item(l, "channel", "tele");
	cr_assert(g, "tele not listed");
	cr_assert_str_eq(jstr(g, "endpoint_a"), "p1");
	json_decref(l);
	expect_rc(&c, 6, "POST /v1/grants again", "grant", "add", "--channel",
		  "tele", "--a", "p1", "--b", "p2", "--direction", "both",
		  "--ring-bytes", "64K", NULL);
	json_t *r = jparse(ok(&c, "DELETE /v1/grants/tele", "-o", "json",
			      "grant", "remove", "tele", NULL));
	cr_assert_gt(json_integer_value(json_object_get(r, "policy_version")),
		     v1);
	json_decref(r);
	l = jparse(ok(&c, "GET /v1/grants list", "-o", "json", "grant",
		      "list", NULL));
	cr_assert_null(find_item(l, "channel", "tele"));
	json_decref(l);
	expect_rc(&c, 3, "DELETE /v1/grants/tele again", "grant", "remove",
		  "tele", NULL);
	cli_stop(&c);
}

/* parleyctl service and segset (issue 14): each change a policy version;
 * allow and deny change one rule; removal by triple or id; a set from a
 * data set file; refusals as exit codes. */
Test(cli, services_and_segsets_add_list_remove, .timeout = 60)
{
	struct cli c;
	cli_start(&c);
	add_host(&c, "h1");
	add_host(&c, "h2");
	create_thin(&c, "client", "h1");
	create_thin(&c, "auth", "h1");
	create_thin(&c, "far", "h2");
	json_int_t v0 = policy_version(&c);
	char *out = ok(&c, "POST /v1/services", "service", "allow", "client",
		       "auth", "auth", NULL);
	cr_assert(strstr(out, "client may call auth of auth; policy version"),
		  "%s", out);
	free(out);
	json_int_t v1 = policy_version(&c);
	cr_assert_gt(v1, v0);
	json_t *r = jparse(ok(&c, "POST /v1/services deny", "-o", "json",
			      "service", "deny", "client", "auth", "auth",
			      NULL));
	json_t *rule = json_object_get(r, "rule");
	cr_assert_str_eq(jstr(rule, "action"), "deny");
	cr_assert(json_is_false(json_object_get(r, "created")));
	json_int_t id = json_integer_value(json_object_get(rule, "id"));
	cr_assert_gt(json_integer_value(json_object_get(r, "policy_version")),
		     v1);
	json_decref(r);
	json_t *l = jparse(ok(&c, "GET /v1/services list", "-o", "json",
			      "service", "list", "--host", "h1", NULL));
	cr_assert_eq(json_array_size(json_object_get(l, "items")), 1);
	json_decref(l);
	out = ok(&c, "GET /v1/services table", "service", "list", NULL);
	cr_assert(strstr(out, "ACTION") && strstr(out, "deny"), "%s", out);
	free(out);
	/* Across hosts: a bad request; an unknown partition: not found. */
	expect_rc(&c, 7, "POST /v1/services across hosts", "service", "allow",
		  "client", "far", "auth", NULL);
	expect_rc(&c, 3, "POST /v1/services unknown", "service", "allow",
		  "client", "nope", "auth", NULL);
	out = ok(&c, "DELETE /v1/services/TRIPLE", "service", "remove",
		 "client", "auth", "auth", NULL);
	cr_assert(strstr(out, "service rule removed"), "%s", out);
	free(out);
	char ids[32];
	snprintf(ids, sizeof(ids), "%lld", (long long)id);
	expect_rc(&c, 3, "DELETE /v1/services/ID gone", "service", "remove",
		  ids, NULL);
	/* Segment sets: a data set file with one set. */
	static const char set[] =
		"{\"segsets\":[{\"name\":\"bus\",\"members\":[\"client\","
		"\"auth\"],\"segments\":[{\"name\":\"cmd\",\"kind\":\"pipe\","
		"\"writer\":\"client\",\"size\":\"4K\"}]}]}";
	char *file = t_write(c.f.dir, "set.json", set, strlen(set));
	out = ok(&c, "POST /v1/segsets", "segset", "add", file, NULL);
	cr_assert(strstr(out, "segset bus added; policy version"), "%s", out);
	free(out);
	expect_rc(&c, 6, "POST /v1/segsets again", "segset", "add", file,
		  NULL);
	json_t *g = jparse(ok(&c, "GET /v1/segsets/bus", "-o", "json", "segset",
			      "show", "bus", NULL));
	cr_assert_str_eq(jstr(g, "host"), "h1");
	json_decref(g);
	l = jparse(ok(&c, "GET /v1/segsets list", "-o", "json", "segset",
		      "list", NULL));
	cr_assert(find_item(l, "name", "bus"));
	json_decref(l);
	static const char far[] =
		"{\"name\":\"wide\",\"members\":[\"client\",\"far\"],"
		"\"segments\":[{\"name\":\"cmd\",\"kind\":\"pipe\","
		"\"writer\":\"client\",\"size\":\"4K\"}]}";
	char *ffile = t_write(c.f.dir, "far.json", far, strlen(far));
	expect_rc(&c, 7, "POST /v1/segsets across hosts", "segset", "add",
		  ffile, NULL);
	out = ok(&c, "DELETE /v1/segsets/bus", "segset", "remove", "bus",
		 NULL);
	cr_assert(strstr(out, "segset removed"), "%s", out);
	free(out);
	expect_rc(&c, 3, "GET /v1/segsets/bus gone", "segset", "show", "bus",
		  NULL);
	free(file);
	free(ffile);
	cli_stop(&c);
}

Test(cli, audit_list_and_verify, .timeout = 60)
{
	struct cli c;
	cli_start(&c);
	add_host(&c, "h1");
	add_host(&c, "h2");
	json_t *l = jparse(ok(&c, "GET /v1/audit list", "-o", "json", "audit",
			      "list", NULL));
	size_t n = json_array_size(json_object_get(l, "items"));
	json_decref(l);
	l = jparse(ok(&c, "GET /v1/audit list", "-o", "json", "audit", "list",
		      "--limit", "1", "--since", "1h", NULL));
	cr_assert_leq(json_array_size(json_object_get(l, "items")), 1);
	if (n > 1)
		cr_assert(!json_is_null(json_object_get(l, "next")),
			  "stopped at --limit 1 of %zu, but next is null", n);
	json_decref(l);
	/* Filters the server applies: no api_change has a reason. */
	l = jparse(ok(&c, "GET /v1/audit list --reason", "-o", "json", "audit",
		      "list", "--event", "api_change", "--reason", "NO_GRANT",
		      NULL));
	cr_assert_eq(json_array_size(json_object_get(l, "items")), 0);
	json_decref(l);
	l = jparse(ok(&c, "GET /v1/audit list --event", "-o", "json", "audit",
		      "list", "--event", "api_change", NULL));
	cr_assert_geq(json_array_size(json_object_get(l, "items")), 2);
	json_decref(l);
	json_t *v = jparse(ok(&c, "POST /v1/audit/verify", "-o", "json",
			      "audit", "verify", NULL));
	cr_assert(json_is_true(json_object_get(v, "ok")));
	cr_assert(json_is_integer(json_object_get(v, "rows")));
	json_decref(v);
	cli_stop(&c);
}

Test(cli, read_token_cannot_write_and_bad_tokens_are_denied, .timeout = 60)
{
	struct cli c;
	cli_start(&c);
	json_t *t = jparse(ok(&c, "POST /v1/tokens", "-o", "json", "token",
			      "create", "--scope", "read", "--name", "ci",
			      NULL));
	cr_assert(!strncmp(jstr(t, "token"), "prl_", 4));
	cr_assert_str_eq(jstr(t, "scope"), "read");
	char *out, ro[160];
	snprintf(ro, sizeof(ro), "%s", jstr(t, "token"));
	json_decref(t);
	int rc = ctl_as(c.server, ro, &out, "host", "list", NULL);
	cr_assert_eq(rc, 0, "read token cannot read: %d\n%s", rc, out);
	free(out);
	rc = ctl_as(c.server, ro, &out, "grant", "add", "--channel", "x",
		    "--a", "p1", "--b", "p2", "--direction", "both",
		    "--ring-bytes", "64K", NULL);
	cr_assert_eq(rc, 4, "exit %d:\n%s", rc, out);
	cr_assert(strstr(out, "parleyctl: FORBIDDEN: "), "%s", out);
	free(out);
	rc = ctl_as(c.server, "prl_0000000000000000000000000000000000000000"
		    "000000000000000000000000", &out, "host", "list", NULL);
	cr_assert_eq(rc, 4, "exit %d:\n%s", rc, out);
	cr_assert(strstr(out, "parleyctl: UNAUTHENTICATED: "), "%s", out);
	free(out);
	rc = ctl_as(c.server, NULL, &out, "policy", "show", NULL);
	cr_assert_eq(rc, 4, "exit %d:\n%s", rc, out);
	free(out);
	cli_stop(&c);
}

#define HEX64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

Test(cli, baseline_set_show_enroll, .timeout = 60)
{
	struct cli c;
	cli_start(&c);
	add_host(&c, "h1");
	create_thin(&c, "p1", "h1");
	json_t *b = jparse(ok(&c, "PUT /v1/baselines/p1", "-o", "json",
			      "baseline", "set", "p1", "--file", "motd=" HEX64,
			      "--segment", HEX64, "--digest", HEX64, NULL));
	cr_assert_str_eq(jstr(b, "partition"), "p1");
	cr_assert(json_is_true(json_object_get(b, "golden")));
	cr_assert_str_eq(jstr(json_object_get(b, "files"), "motd"), HEX64);
	json_decref(b);
	b = jparse(ok(&c, "GET /v1/baselines/p1", "-o", "json", "baseline",
		      "show", "p1", NULL));
	cr_assert_str_eq(jstr(b, "digest"), HEX64);
	json_decref(b);
	json_t *l = jparse(ok(&c, "GET /v1/baselines list", "-o", "json",
			      "baseline", "list", NULL));
	cr_assert(find_item(l, "partition", "p1"), "p1 not listed");
	json_decref(l);
	free(ok(&c, "DELETE /v1/baselines/p1", "baseline", "enroll", "p1",
		NULL));
	expect_rc(&c, 3, "GET /v1/baselines/p1 after enroll", "baseline",
		  "show", "p1", NULL);
	char *t = ok(&c, "GET /v1/policy", "policy", "show", NULL);
	cr_assert(strstr(t, "policy version "), "%s", t);
	free(t);
	cli_stop(&c);
}

/* ---- a hostile server: the HTTP client (libcurl) under bad answers ---- */

/* One canned answer per connection, from a child process on loopback:
 * the answer is written (head, then `fill` bytes of 'x'), then the
 * connection is closed. */
struct canned {
	const char *head;
	size_t fill;
};

static void serve_canned(int ls, const struct canned *c)
{
	int fd = accept(ls, NULL, NULL);
	if (fd < 0)
		_exit(1);
	char req[4096];
	(void)!read(fd, req, sizeof(req)); /* the request head; not checked */
	size_t hl = strlen(c->head);
	if (hl && write(fd, c->head, hl) != (ssize_t)hl)
		_exit(0);
	char chunk[65536];
	memset(chunk, 'x', sizeof(chunk));
	for (size_t left = c->fill; left;) {
		size_t n = left < sizeof(chunk) ? left : sizeof(chunk);
		ssize_t w = write(fd, chunk, n);
		if (w <= 0)
			break; /* the client gave up: what we test */
		left -= (size_t)w;
	}
	close(fd);
	_exit(0);
}

/* Serve c once on a fresh loopback port; *url gets the server URL. */
static pid_t start_canned(const struct canned *c, char *url, size_t cap)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(s, 4), 0);
	cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &al), 0);
	snprintf(url, cap, "http://127.0.0.1:%d", ntohs(a.sin_port));
	signal(SIGPIPE, SIG_IGN);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		serve_canned(s, c);
	close(s);
	return pid;
}

static void expect_canned(const struct canned *c, int want_rc,
			  const char *want_text)
{
	char url[64], *out;
	pid_t pid = start_canned(c, url, sizeof(url));
	int rc = ctl_as(url, "prl_x", &out, "host", "list", NULL);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_expect_eq(rc, want_rc, "exit %d for %.40s:\n%s", rc, c->head, out);
	cr_expect(strstr(out, want_text), "want \"%s\" for %.40s:\n%s",
		  want_text, c->head, out);
	free(out);
}

Test(cli, hostile_server_answers_are_errors_not_crashes, .timeout = 60)
{
	/* Closed before any byte. */
	expect_canned(&(struct canned){ "" }, 1,
		      "connection closed before any response");
	/* Not HTTP at all. */
	expect_canned(&(struct canned){ "SSH-2.0-OpenSSH_9.2\r\n\r\n" }, 1,
		      "response is not HTTP/1.x");
	/* A body beyond the 16 MiB cap, announced... */
	expect_canned(&(struct canned){ "HTTP/1.1 200 OK\r\nContent-Length: "
					"17825792\r\n\r\n", 17825792 }, 1,
		      "response larger than 16777216 bytes");
	/* ...and unannounced (read to end of stream). */
	expect_canned(&(struct canned){ "HTTP/1.1 200 OK\r\n"
					"Connection: close\r\n\r\n", 17825792 },
		      1, "response larger than 16777216 bytes");
	/* A head beyond 16 KiB. */
	char head[20000];
	int n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nX-Pad: ");
	memset(head + n, 'a', sizeof(head) - (size_t)n - 5);
	memcpy(head + sizeof(head) - 5, "\r\n\r\n", 5);
	expect_canned(&(struct canned){ head }, 1,
		      "response larger than 16384 bytes");
	/* A body cut short of its Content-Length. */
	expect_canned(&(struct canned){ "HTTP/1.1 200 OK\r\nContent-Length: "
					"100\r\n\r\n{\"items\":", 0 }, 1,
		      "response is not HTTP/1.x");
	/* A 2xx whose body is not a JSON object. */
	expect_canned(&(struct canned){ "HTTP/1.1 200 OK\r\nContent-Length: "
					"2\r\n\r\n[]", 0 }, 1,
		      "not a JSON object");
	/* A bad chunked encoding. */
	expect_canned(&(struct canned){ "HTTP/1.1 200 OK\r\nTransfer-Encoding:"
					" chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
					0 }, 1, "HTTP: ");
}

Test(cli, connect_timeout_and_hostile_server_urls_are_usage_errors)
{
	char *out;
	const char *bad_timeouts[] = { "0", "-1", "abc", "1e3", "3601", "5s",
				       "", "nan", "inf" };
	for (size_t i = 0; i < sizeof(bad_timeouts) / sizeof(*bad_timeouts);
	     i++) {
		int rc = ctl_as(NULL, NULL, &out, "--connect-timeout",
				bad_timeouts[i], "health", NULL);
		cr_expect_eq(rc, 2, "--connect-timeout '%s': exit %d:\n%s",
			     bad_timeouts[i], rc, out);
		free(out);
	}
	/* URLs whose host or path would change where libcurl connects. */
	const char *bad_urls[] = { "http://user@evil:1", "http://a b:1",
				   "http://h:1/p?q", "http://h:1/p#f",
				   "http://h:1/p q", "http://[::1%eth0]:1",
				   "http://h:99999", "https://" };
	for (size_t i = 0; i < sizeof(bad_urls) / sizeof(*bad_urls); i++) {
		int rc = ctl_as(bad_urls[i], NULL, &out, "health", NULL);
		cr_expect_eq(rc, 2, "'%s': exit %d:\n%s", bad_urls[i], rc, out);
		free(out);
	}
	/* A good timeout against a dead port: still exit 5. */
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", dead_port());
	int rc = ctl_as(url, NULL, &out, "--connect-timeout", "0.5", "health",
			NULL);
	cr_expect_eq(rc, 5, "exit %d:\n%s", rc, out);
	free(out);
}
