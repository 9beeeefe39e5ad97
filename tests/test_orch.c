/*
 * Orchestration of libvirt partitions (daemon/orch*.c) on libvirt's own
 * test driver: two simulated hosts from examples/libvirt/node-h*.xml, a
 * real SQLite store in a temporary directory, and the daemon's libevent
 * loop driving libvirt's events. Define/start/stop/destroy are checked in
 * libvirt (through its API) and in the store; a change made behind the
 * daemon's back -- on the same connection, as the test driver's state is
 * per connection -- reaches the store through the lifecycle events; and
 * libvirt's refusals come back with libvirt's message.
 */
#include <criterion/criterion.h>

#include <event2/event.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/orch.h"
#include "db/store.h"
#include "tests/helpers/fleetd.h"
#include "tests/helpers/testutil.h"

#define NODE_H1 PARLEY_SOURCE_DIR "/examples/libvirt/node-h1.xml"
#define NODE_H2 PARLEY_SOURCE_DIR "/examples/libvirt/node-h2.xml"
#define MOTD PARLEY_SOURCE_DIR "/examples/motd.txt"
#define APPCONF PARLEY_SOURCE_DIR "/examples/app.conf"

#define SPEC(name)                                                        \
	"{\"name\":\"" name "\",\"memory\":\"64M\",\"vcpus\":1,"          \
	"\"config\":[{\"name\":\"motd\",\"path\":\"" MOTD "\"},"          \
	"{\"name\":\"app.conf\",\"path\":\"" APPCONF "\"}]}"

static struct {
	char *dir;
	struct store *s;
	struct event_base *base;
	struct orch *o;
	struct parley_err err;
} f;

/* NULL if the test driver opens here, else libvirt's reason. */
static const char *test_driver_missing(void)
{
	static char why[256];
	virSetErrorFunc(NULL, NULL);
	virConnectPtr c = virConnectOpen("test:///default");
	if (c) {
		virConnectClose(c);
		return NULL;
	}
	snprintf(why, sizeof(why), "%s", virGetLastErrorMessage());
	return why;
}

static void host(const char *name, const char *uri)
{
	struct parley_err err = { 0 };
	cr_assert_eq(store_host_put(f.s, name, uri, (struct store_blob){ 0 },
				    &err), 0, "%s", perr_msg(&err));
}

static void setup(void)
{
	const char *why = test_driver_missing();
	if (why)
		cr_assert_fail("libvirt's test driver cannot be opened: %s", why);
	f.dir = t_tmpdir();
	char path[4096];
	snprintf(path, sizeof(path), "%s/store.db", f.dir);
	cr_assert_eq(store_open(path, &f.s, &f.err), 0, "%s", perr_msg(&f.err));
	host("h1", "test://" NODE_H1);
	host("h2", "test://" NODE_H2);
	f.base = event_base_new();
	cr_assert_not_null(f.base);
	cr_assert_eq(orch_init(&f.o, f.base, f.s, &f.err), 0, "%s",
		     perr_msg(&f.err));
}

static void teardown(void)
{
	orch_free(f.o);
	if (f.base)
		event_base_free(f.base);
	store_close(f.s);
	if (f.dir)
		t_rmtree(f.dir);
	free(f.dir);
	memset(&f, 0, sizeof(f));
}

TestSuite(orch, .init = setup, .fini = teardown, .timeout = 30);

/* The partition's state in the store ("" when it is not there). */
static const char *state_of(const char *name)
{
	static char st[STORE_NAME_MAX];
	struct store_partition p;
	st[0] = 0;
	if (store_partition_get(f.s, name, &p, NULL) == 0) {
		snprintf(st, sizeof(st), "%s", p.state);
		store_partition_free(&p);
	}
	return st;
}

/* Run the loop until `name` is in `want`; bounded (2 s). */
static bool pump_until(const char *name, const char *want)
{
	for (int i = 0; i < 400; i++) {
		event_base_loop(f.base, EVLOOP_NONBLOCK);
		if (!strcmp(state_of(name), want))
			return true;
		usleep(5000);
	}
	return false;
}

/* Drain what libvirt has queued (its events go through a 0 ms timer). */
static void pump(void)
{
	for (int i = 0; i < 20; i++)
		event_base_loop(f.base, EVLOOP_NONBLOCK);
}

static virDomainPtr lookup(const char *host_name, const char *name)
{
	virConnectPtr c = orch_conn_for_test(f.o, host_name);
	cr_assert_not_null(c);
	return virDomainLookupByName(c, name);
}

static int active(const char *host_name, const char *name)
{
	virDomainPtr d = lookup(host_name, name);
	cr_assert_not_null(d, "%s not in libvirt: %s", name,
			   virGetLastErrorMessage());
	int a = virDomainIsActive(d);
	virDomainFree(d);
	return a;
}

static void define_ok(const char *host_name, const char *name,
		      const char *spec)
{
	cr_assert_eq(orch_define(f.o, host_name, name, spec, &f.err), 0,
		     "%s", perr_msg(&f.err));
}

struct audit_find {
	const char *partition, *detail;
	int n;
	const char *event;
};

static int audit_cb(const struct store_audit *row, void *ctx)
{
	struct audit_find *a = ctx;
	if (!strcmp(row->event, a->event ? a->event : ORCH_AUDIT_EVENT) &&
	    !strcmp(row->partition, a->partition) &&
	    strstr(row->detail, a->detail))
		a->n++;
	return 0;
}

static int audited(const char *partition, const char *detail)
{
	struct audit_find a = { partition, detail, 0, NULL };
	cr_assert_geq(store_audit_list(f.s, 0, 0, audit_cb, &a, NULL), 0);
	return a.n;
}

/* Audit rows of `event` about `partition` whose detail has `detail`. */
static int audited_as(const char *event, const char *partition,
		      const char *detail)
{
	struct audit_find a = { partition, detail, 0, event };
	cr_assert_geq(store_audit_list(f.s, 0, 0, audit_cb, &a, NULL), 0);
	return a.n;
}

Test(orch, define_start_stop_destroy)
{
	define_ok("h1", "web2", SPEC("web2"));
	cr_expect_eq(active("h1", "web2"), 0);
	cr_expect_str_eq(state_of("web2"), "defined");

	struct store_partition p;
	cr_assert_eq(store_partition_get(f.s, "web2", &p, NULL), 0);
	cr_expect_eq(p.kind, STORE_PART_LIBVIRT);
	cr_expect_str_eq(p.host, "h1");
	store_partition_free(&p);
	struct store_names files;
	cr_assert_eq(store_partition_files(f.s, "web2", &files, NULL), 0);
	cr_assert_eq(files.n, 2);
	cr_expect_str_eq(files.name[0], "motd");
	cr_expect_str_eq(files.name[1], "app.conf");
	store_names_free(&files);

	/* The key configuration files are attached read-only. */
	virDomainPtr d = lookup("h1", "web2");
	cr_assert_not_null(d);
	char *xml = virDomainGetXMLDesc(d, 0);
	cr_assert_not_null(xml);
	cr_expect(strstr(xml, "<source file='" MOTD "'"), "%s", xml);
	cr_expect(strstr(xml, "<readonly/>"), "%s", xml);
	cr_expect(strstr(xml, "<serial>app.conf</serial>"), "%s", xml);
	cr_expect(strstr(xml, "65536"), "64M of memory: %s", xml);
	free(xml);
	virDomainFree(d);

	cr_assert_eq(orch_start(f.o, "web2", &f.err), 0, "%s", perr_msg(&f.err));
	cr_expect_eq(active("h1", "web2"), 1);
	cr_expect_str_eq(state_of("web2"), "running");

	cr_assert_eq(orch_stop(f.o, "web2", &f.err), 0, "%s", perr_msg(&f.err));
	cr_expect_eq(active("h1", "web2"), 0);
	cr_expect_str_eq(state_of("web2"), "stopped");

	cr_assert_eq(orch_start(f.o, "web2", &f.err), 0, "%s", perr_msg(&f.err));
	cr_assert_eq(orch_destroy(f.o, "web2", &f.err), 0, "%s",
		     perr_msg(&f.err));
	cr_expect_null(lookup("h1", "web2"));
	cr_expect_eq(virGetLastErrorCode(), VIR_ERR_NO_DOMAIN);
	cr_expect_str_eq(state_of("web2"), "");
	pump();        /* late events about a destroyed partition: ignored */
	cr_expect_str_eq(state_of("web2"), "");
}

Test(orch, own_operations_are_audited_through_events)
{
	define_ok("h1", "web2", SPEC("web2"));
	cr_assert_eq(orch_start(f.o, "web2", &f.err), 0, "%s", perr_msg(&f.err));
	pump();
	cr_expect_eq(audited("web2", "defined (detail0)"), 1);
	cr_expect_eq(audited("web2", "started (booted)"), 1);
	cr_expect_str_eq(state_of("web2"), "running");
}

Test(orch, outside_changes_reach_the_store)
{
	define_ok("h1", "web2", SPEC("web2"));
	cr_assert_eq(orch_start(f.o, "web2", &f.err), 0, "%s", perr_msg(&f.err));
	pump();

	/* Another tool on h1 pauses it, resumes, pulls the plug, undefines. */
	virDomainPtr d = lookup("h1", "web2");
	cr_assert_not_null(d);
	cr_assert_eq(virDomainSuspend(d), 0, "%s", virGetLastErrorMessage());
	cr_expect(pump_until("web2", "paused"), "state %s", state_of("web2"));
	cr_expect_eq(audited("web2", "suspended (paused)"), 1);

	cr_assert_eq(virDomainResume(d), 0, "%s", virGetLastErrorMessage());
	cr_expect(pump_until("web2", "running"), "state %s", state_of("web2"));

	cr_assert_eq(virDomainDestroy(d), 0, "%s", virGetLastErrorMessage());
	cr_expect(pump_until("web2", "stopped"), "state %s", state_of("web2"));
	cr_expect_eq(audited("web2", "stopped (destroyed)"), 1);

	cr_assert_eq(virDomainUndefine(d), 0, "%s", virGetLastErrorMessage());
	cr_expect(pump_until("web2", "undefined"), "state %s",
		  state_of("web2"));
	virDomainFree(d);

	/* The operator cleans up: libvirt has nothing left to undefine. */
	cr_assert_eq(orch_destroy(f.o, "web2", &f.err), 0, "%s",
		     perr_msg(&f.err));
	cr_expect_str_eq(state_of("web2"), "");
}

Test(orch, domains_not_in_the_store_are_left_alone)
{
	/* "web" runs on h1 but parley never defined it. */
	virDomainPtr d = lookup("h1", "web");
	cr_assert_not_null(d);
	cr_assert_eq(virDomainDestroy(d), 0);
	virDomainFree(d);
	pump();
	cr_expect_str_eq(state_of("web"), "");
	cr_expect_eq(audited("web", ""), 0);
}

Test(orch, hosts_are_separate)
{
	define_ok("h2", "p2", SPEC("p2"));
	cr_expect_eq(active("h2", "p2"), 0);
	cr_expect_null(lookup("h1", "p2"));
	cr_expect_null(lookup("h2", "idle"));
	/* h2's shut-off "db" is there, and stays shut off. */
	cr_expect_eq(active("h2", "db"), 0);
	cr_assert_eq(orch_start(f.o, "p2", &f.err), 0, "%s", perr_msg(&f.err));
	cr_expect_eq(active("h2", "p2"), 1);
	cr_expect_eq(active("h1", "idle"), 0);
}

Test(orch, libvirt_errors_carry_libvirts_message)
{
	host("bad", "bogus:///nowhere");
	cr_expect_eq(orch_define(f.o, "bad", "x", SPEC("x"), &f.err),
		     ORCH_ELIBVIRT);
	cr_expect(strstr(f.err.msg, "cannot connect to bogus:///nowhere: "),
		  "%s", f.err.msg);
	cr_expect_gt(strlen(f.err.msg),
		     strlen("cannot connect to bogus:///nowhere: "), "%s",
		     f.err.msg);
	cr_expect_str_eq(state_of("x"), "");

	/* A test:/// host whose node file is missing: the driver says so. */
	host("gone", "test:///nonexistent/node.xml");
	cr_expect_eq(orch_define(f.o, "gone", "x", SPEC("x"), &f.err),
		     ORCH_ELIBVIRT);
	cr_expect(strstr(f.err.msg, "/nonexistent/node.xml"), "%s", f.err.msg);

	define_ok("h1", "web2", SPEC("web2"));
	cr_expect_eq(orch_define(f.o, "h1", "web2", SPEC("web2"), &f.err),
		     ORCH_ELIBVIRT);
	cr_expect(strstr(f.err.msg, "already exists"), "%s", f.err.msg);

	/* A domain of the host's own that parley does not know. */
	cr_expect_eq(orch_define(f.o, "h1", "idle", SPEC("idle"), &f.err),
		     ORCH_ELIBVIRT);
	cr_expect(strstr(f.err.msg, "already exists"), "%s", f.err.msg);
	cr_expect_str_eq(state_of("idle"), "");

}

struct bad_case {
	const char *host, *name, *spec;
	int code;
	const char *msg;
};

Test(orch, refused_before_libvirt)
{
	host("nouri", "");
	static const struct bad_case cases[] = {
		{ "nohost", "a", SPEC("a"), -ENOENT, "nohost" },
		{ "nouri", "a", SPEC("a"), -EINVAL, "no libvirt URI" },
		{ "h1", "../a", "{}", -EINVAL, "not a valid partition name" },
		{ "h1", "a", SPEC("b"), -EINVAL, "names partition b" },
		{ "h1", "a", "[]", -EINVAL, "spec" },
		{ "h1", "a", "{\"nope\":1}", -EINVAL, "nope" },
		{ "h1", "a", "{\"memory\":\"12X\"}", -EINVAL, "memory" },
		{ "h1", "a", "{\"vcpus\":0}", -EINVAL, "vcpus" },
		{ "h1", "a", "{\"config\":[{\"name\":\"m\",\"path\":\"rel\"}]}",
		  -EINVAL, "absolute" },
		{ "h1", "a", "{\"config\":[{\"name\":\"a/b\",\"path\":\"/x\"}]}",
		  -EINVAL, "config[0].name" },
		{ "h1", "a", "{\"config\":[{\"name\":\"m\",\"path\":\"/x\"},"
		  "{\"name\":\"m\",\"path\":\"/y\"}]}", -EINVAL, "twice" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *c = &cases[i];
		f.err = (struct parley_err){ 0 };
		cr_expect_eq(orch_define(f.o, c->host, c->name, c->spec,
					 &f.err), c->code, "case %zu: %s", i,
			     f.err.msg);
		cr_expect(strstr(f.err.msg, c->msg), "case %zu: %s", i,
			  f.err.msg);
	}
	cr_expect_null(lookup("h1", "a"));
	cr_expect_eq(orch_start(f.o, "none", &f.err), -ENOENT);
}

Test(orch, xml_special_characters_are_escaped)
{
	define_ok("h1", "q", "{\"cmdline\":\"a<b>&'\\\"\","
		  "\"config\":[{\"name\":\"x&y\",\"path\":\"/tmp/a'b<c\"}]}");
	virDomainPtr d = lookup("h1", "q");
	cr_assert_not_null(d);
	char *xml = virDomainGetXMLDesc(d, 0);
	cr_expect(strstr(xml, "a&lt;b&gt;&amp;'\"</cmdline>") ||
		  strstr(xml, "a&lt;b&gt;&amp;&apos;&quot;</cmdline>"), "%s",
		  xml);
	cr_expect(strstr(xml, "/tmp/a&apos;b&lt;c"), "%s", xml);
	cr_expect_null(strstr(xml, "<serial>"), "x&y is no serial: %s", xml);
	free(xml);
	virDomainFree(d);
}

Test(orch, other_partitions_and_grants)
{
	struct store_part_in thin = {
		.name = "t", .host = "h1", .kind = STORE_PART_THIN,
		.spec_json = "{}", .spec_len = 2, .state = "running",
	};
	cr_assert_eq(store_partition_put(f.s, &thin, NULL, NULL), 0);
	cr_expect_eq(orch_define(f.o, "h1", "t", SPEC("t"), &f.err), -EEXIST);
	cr_expect_null(lookup("h1", "t"));
	cr_expect_eq(orch_start(f.o, "t", &f.err), -EINVAL);
	cr_expect(strstr(f.err.msg, "thin"), "%s", f.err.msg);

	define_ok("h1", "web2", SPEC("web2"));
	cr_expect_eq(orch_define(f.o, "h2", "web2", SPEC("web2"), &f.err),
		     -EEXIST);
	struct grant g = { .channel = "c", .a = "t", .b = "web2",
			   .dir = GRANT_BOTH, .ring_bytes = 4096,
			   .require_integrity = true };
	cr_assert_eq(store_grant_add(f.s, &g, NULL, &f.err), 0, "%s",
		     perr_msg(&f.err));
	cr_expect_eq(orch_destroy(f.o, "web2", &f.err), -EBUSY);
	cr_expect(strstr(f.err.msg, "grant c"), "%s", f.err.msg);
	cr_expect_eq(active("h1", "web2"), 0);
	cr_expect_str_eq(state_of("web2"), "defined");
}

Test(orch, one_orchestrator_per_process)
{
	struct orch *o2;
	cr_expect_eq(orch_init(&o2, f.base, f.s, &f.err), -EBUSY);
	cr_expect_null(o2);
}

/* ---- conflicts, audited writes, reconciliation --------------------------- */

Test(orch, state_conflicts_are_econflict_and_fix_the_store)
{
	define_ok("h1", "web2", SPEC("web2"));
	cr_expect_eq(orch_stop(f.o, "web2", &f.err), ORCH_ECONFLICT);
	cr_expect(strstr(f.err.msg, "not running"), "%s", f.err.msg);
	cr_assert_eq(orch_start(f.o, "web2", &f.err), 0, "%s", perr_msg(&f.err));
	f.err = (struct parley_err){ 0 };
	cr_expect_eq(orch_start(f.o, "web2", &f.err), ORCH_ECONFLICT);
	cr_expect(strstr(f.err.msg, "running already"), "%s", f.err.msg);
	cr_expect_str_eq(state_of("web2"), "running");
	/* Nothing drifted so far: no reconciliation. */
	cr_expect_eq(audited_as(ORCH_AUDIT_RECONCILED, "web2", ""), 0);

	/* Stopped behind our back, before its event was read: the conflict
	 * finds the store wrong, and fixes it (audited). */
	virDomainPtr d = lookup("h1", "web2");
	cr_assert_not_null(d);
	cr_assert_eq(virDomainDestroy(d), 0, "%s", virGetLastErrorMessage());
	virDomainFree(d);
	cr_expect_eq(orch_stop(f.o, "web2", &f.err), ORCH_ECONFLICT);
	cr_expect_str_eq(state_of("web2"), "stopped");
	cr_expect_eq(audited_as(ORCH_AUDIT_RECONCILED, "web2",
				"store running (running), libvirt shut off"), 1);
	pump();
	cr_expect_str_eq(state_of("web2"), "stopped");
}

Test(orch, every_state_write_is_audited)
{
	define_ok("h1", "web2", SPEC("web2"));
	cr_assert_eq(orch_start(f.o, "web2", &f.err), 0, "%s", perr_msg(&f.err));
	cr_assert_eq(orch_stop(f.o, "web2", &f.err), 0, "%s", perr_msg(&f.err));
	cr_assert_eq(orch_destroy(f.o, "web2", &f.err), 0, "%s",
		     perr_msg(&f.err));
	cr_expect_eq(audited_as(ORCH_AUDIT_DEFINED, "web2", "defined"), 1);
	cr_expect_eq(audited_as(ORCH_AUDIT_STARTED, "web2", "running"), 1);
	cr_expect_eq(audited_as(ORCH_AUDIT_STOPPED, "web2", "stopped"), 1);
	cr_expect_eq(audited_as(ORCH_AUDIT_DESTROYED, "web2", "stopped"), 1);
}

/* parleyd restarts: orch_free, then orch_init on the same store, as
 * daemon/main.c does. */
static void restart(void)
{
	orch_free(f.o);
	f.o = NULL;
	cr_assert_eq(orch_init(&f.o, f.base, f.s, &f.err), 0, "%s",
		     perr_msg(&f.err));
}

/* A test:///FILE connection starts from the node file every time it is
 * opened: the domain parleyd defined and started is gone once it comes
 * back, as after a libvirt host rebuilt while parleyd was down. */
Test(orch, restart_reconciles_a_domain_libvirt_lost)
{
	define_ok("h1", "web2", SPEC("web2"));
	cr_assert_eq(orch_start(f.o, "web2", &f.err), 0, "%s", perr_msg(&f.err));
	define_ok("h2", "p2", SPEC("p2"));         /* defined, shut off */
	/* A row in a state no writer of ours uses (written behind our
	 * back): libvirt's word replaces it too. */
	struct store_part_in odd = {
		.name = "odd", .host = "h1", .kind = STORE_PART_LIBVIRT,
		.spec_json = "{}", .spec_len = 2, .state = "half-alive",
	};
	cr_assert_eq(store_partition_put(f.s, &odd, NULL, NULL), 0);
	pump();
	cr_expect_str_eq(state_of("web2"), "running");
	restart();
	cr_expect_str_eq(state_of("odd"), "undefined");
	cr_expect_eq(audited_as(ORCH_AUDIT_RECONCILED, "odd",
				"store half-alive (unknown), libvirt missing"),
		     1);
	/* Reconciled by orch_init itself: no operation, no loop turn. */
	cr_expect_str_eq(state_of("web2"), "undefined");
	cr_expect_eq(audited_as(ORCH_AUDIT_RECONCILED, "web2",
				"store running (running), libvirt missing"), 1);
	cr_expect_str_eq(state_of("p2"), "undefined");
	cr_expect_eq(audited_as(ORCH_AUDIT_RECONCILED, "p2",
				"store defined (shut off), libvirt missing"), 1);
	/* A second start-up finds nothing more to fix. */
	restart();
	cr_expect_eq(audited_as(ORCH_AUDIT_RECONCILED, "web2", ""), 1);
	cr_expect_eq(audited_as(ORCH_AUDIT_RECONCILED, "p2", ""), 1);
}

/* test:///default keeps one state per process while any connection to it
 * is open: this test's own connection plays another tool on the host,
 * acting while parleyd is down or deaf. */
static virConnectPtr other_tool(void)
{
	host("d", "test:///default");
	virConnectPtr c = virConnectOpen("test:///default");
	cr_assert_not_null(c, "%s", virGetLastErrorMessage());
	return c;
}

static void other_tool_does(virConnectPtr c, const char *name,
			    int (*op)(virDomainPtr))
{
	virDomainPtr d = virDomainLookupByName(c, name);
	cr_assert_not_null(d, "%s", virGetLastErrorMessage());
	cr_assert_eq(op(d), 0, "%s", virGetLastErrorMessage());
	virDomainFree(d);
}

Test(orch, restart_reconciles_a_domain_started_behind_our_back)
{
	virConnectPtr c = other_tool();
	define_ok("d", "bg", SPEC("bg"));
	orch_free(f.o);                    /* parleyd is down ... */
	f.o = NULL;
	other_tool_does(c, "bg", virDomainCreate);
	restart();                         /* ... and back */
	cr_expect_str_eq(state_of("bg"), "running");
	cr_expect_eq(audited_as(ORCH_AUDIT_RECONCILED, "bg",
				"store defined (shut off), libvirt running"), 1);
	/* The store agrees now: starting it is a conflict, stopping works. */
	cr_expect_eq(orch_start(f.o, "bg", &f.err), ORCH_ECONFLICT);
	cr_expect_eq(orch_stop(f.o, "bg", &f.err), 0, "%s", perr_msg(&f.err));
	cr_assert_eq(orch_destroy(f.o, "bg", &f.err), 0, "%s",
		     perr_msg(&f.err));
	pump();
	virConnectClose(c);
}

Test(orch, lost_connection_is_reopened_and_reconciled)
{
	virConnectPtr c = other_tool();
	define_ok("d", "bg", SPEC("bg"));
	cr_assert_eq(orch_start(f.o, "bg", &f.err), 0, "%s", perr_msg(&f.err));
	pump();
	cr_assert_eq(orch_lose_conn_for_test(f.o, "d"), 0);
	cr_expect_eq(orch_lose_conn_for_test(f.o, "nohost"), -ENOENT);
	/* While it is lost, the domain stops: no event reaches parleyd. */
	other_tool_does(c, "bg", virDomainDestroy);
	cr_expect(pump_until("bg", "stopped"), "state %s", state_of("bg"));
	cr_expect_eq(audited("bg", "stopped (destroyed)"), 0);
	cr_expect_eq(audited_as(ORCH_AUDIT_RECONCILED, "bg",
				"store running (running), libvirt shut off"), 1);
	/* Events flow again on the new connection. */
	other_tool_does(c, "bg", virDomainCreate);
	cr_expect(pump_until("bg", "running"), "state %s", state_of("bg"));
	cr_expect_eq(audited("bg", "started (booted)"), 2); /* ours, theirs */
	cr_assert_eq(orch_destroy(f.o, "bg", &f.err), 0, "%s",
		     perr_msg(&f.err));
	pump();
	virConnectClose(c);
}

/* The same through a real parleyd: its store says a libvirt partition
 * runs that libvirt does not know (the daemon was down while the host
 * lost it); parleyd's start-up reconciles it before it listens. */
TestSuite(orch_daemon, .timeout = 60);

static int reconciled_cb(const struct store_audit *row, void *ctx)
{
	if (!strcmp(row->event, ORCH_AUDIT_RECONCILED) &&
	    !strcmp(row->partition, "ghost") &&
	    !strcmp(row->reason, "STATE_DRIFT") &&
	    strstr(row->detail, "libvirt missing"))
		++*(int *)ctx;
	return 0;
}

Test(orch_daemon, parleyd_start_reconciles_the_store)
{
	const char *why = test_driver_missing();
	if (why)
		cr_assert_fail("libvirt's test driver cannot be opened: %s", why);
	struct fleetd fl;
	fd_init(&fl);
	struct store *s = fd_store(&fl);
	struct parley_err err = { 0 };
	cr_assert_eq(store_host_put(s, "h1", "test://" NODE_H1,
				    (struct store_blob){ 0 }, &err), 0, "%s",
		     perr_msg(&err));
	struct store_part_in in = {
		.name = "ghost", .host = "h1", .kind = STORE_PART_LIBVIRT,
		.spec_json = "{}", .spec_len = 2, .state = "running",
	};
	cr_assert_eq(store_partition_put(s, &in, NULL, &err), 0, "%s",
		     perr_msg(&err));
	store_close(s);
	fd_start_daemon(&fl);    /* returns once it listens */
	s = fd_store(&fl);
	struct store_partition p;
	cr_assert_eq(store_partition_get(s, "ghost", &p, &err), 0, "%s",
		     perr_msg(&err));
	cr_expect_str_eq(p.state, "undefined");
	store_partition_free(&p);
	int n = 0;
	cr_assert_geq(store_audit_list(s, 0, 0, reconciled_cb, &n, NULL), 0);
	cr_expect_eq(n, 1);
	store_close(s);
	fd_stop(&fl);
}
