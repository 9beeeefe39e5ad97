/* An adopted VM's devices from an earlier agent (agent/vm/vmstale.c),
 * found in QEMU's query-pci answer. QEMU is not trusted: an answer of
 * the wrong shape, ids that are not an earlier agent's section devices,
 * slots outside the agent's range, or more devices than the record holds
 * are passed over, never taken as stale devices to unplug (or to fault
 * the VM for). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/vm/vmmgr_int.h"
#include "tests/helpers/testutil.h"

static struct vmmgr m;
static struct vm_part v;
static int pair[2];

static void up(void)
{
	memset(&m, 0, sizeof(m));
	memset(&v, 0, sizeof(v));
	m.nonce = 4242;
	v.m = &m;
	snprintf(v.spec.name, sizeof(v.spec.name), "guest");
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	v.mon = pair[0];
}

static void down(void)
{
	close(pair[0]);
	close(pair[1]);
}

static void qemu_answers(const char *json)
{
	size_t n = strlen(json);
	cr_assert_eq(write(pair[1], json, n), (ssize_t)n);
	cr_assert_eq(write(pair[1], "\r\n", 2), 2);
}

/* After query-pci the sweep asks for objects and chardevs, and, with no
 * stale device, for fdsets: nothing in them here. */
static void nothing_else(bool fdsets)
{
	qemu_answers("{\"return\": []}");
	qemu_answers("{\"return\": []}");
	if (fdsets)
		qemu_answers("{\"return\": []}");
}

/* Each of want[] in a, in that order. */
static void asked_in_order(const char *a, const char *const *want, size_t n)
{
	const char *at = a;
	for (size_t i = 0; i < n; i++) {
		const char *p = strstr(at, want[i]);
		cr_assert(p, "no %s (in order) in:\n%s", want[i], a);
		at = p + 1;
	}
}

/* What the agent asked QEMU, in order (the commands it wrote). */
static char *asked(void)
{
	static char buf[16384];
	ssize_t n = recv(pair[1], buf, sizeof(buf) - 1, MSG_DONTWAIT);
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

Test(vm_stale, ids_other_than_an_earlier_agents_sections_refused,
     .init = up, .fini = down)
{
	struct vm_stale st;
	static const char *bad[] = {
		"", "pld", "pld7", "pld7h1", "pld7h1s", "pld7h1s0x",
		"pld7h1s0 ", " pld7h1s0", "plm7h1s0", "plc7h1s0", "pld-7h1s0",
		"pld0h1s0", "pld4242h1s0" /* this agent's own */,
		"pld7h1s99", "pld7h4294967295s0", "pld7h-1s0", "pld7hxs0",
		"PLD7H1S0", "pld7h1s0\n", "pld 7h1s0", "pld07h1s0",
		"pld7h+1s0", "pld7h01s0", "pld+7h1s0", "pld7h1s00",
	};
	cr_assert_not(vmstale_id(&v, NULL, &st));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(vmstale_id(&v, bad[i], &st), "%s taken", bad[i]);
	cr_assert(vmstale_id(&v, "pld7h12s3", &st));
	cr_assert_eq(st.pid, 7);
	cr_assert_eq(st.handle, 12);
	cr_assert_eq(st.sec, 3);
}

/* A well-formed answer: the earlier agent's devices on the agent's slots
 * taken (their slots marked used, new handles above theirs); everything
 * else on the bus left alone. */
Test(vm_stale, found_on_the_agents_slots_only, .init = up, .fini = down)
{
	v.next_handle = 5;
	qemu_answers("{\"return\": [{\"bus\": 0, \"devices\": ["
		     "{\"slot\": 16, \"qdev_id\": \"pld7h900s0\"},"
		     "{\"slot\": 17, \"qdev_id\": \"pld7h900s1\"},"
		     "{\"slot\": 3, \"qdev_id\": \"pld7h901s0\"},"
		     "{\"slot\": 32, \"qdev_id\": \"pld7h902s0\"},"
		     "{\"slot\": 18, \"qdev_id\": \"pld4242h1s0\"},"
		     "{\"slot\": 19, \"qdev_id\": \"net0\"},"
		     "{\"slot\": 20}]},"
		     "{\"bus\": 1, \"devices\": ["
		     "{\"slot\": 21, \"qdev_id\": \"pld7h903s0\"}]}]}");
	nothing_else(false);
	vmstale_find(&v);
	cr_assert_eq(v.nstale, 2);
	cr_assert_eq(v.stale[0].slot, 16);
	cr_assert_eq(v.stale[1].slot, 17);
	cr_assert_eq(v.slots_used, 0x3u);
	cr_assert_eq(v.next_handle, 900);
	cr_assert_eq(v.fault, 0);
}

/* Answers of the wrong shape: nothing taken, the VM not faulted (the
 * monitor answered in time; what it said is simply not a device list). */
Test(vm_stale, hostile_shapes_take_nothing, .init = up, .fini = down)
{
	static const char *answers[] = {
		"{\"return\": {}}",
		"{\"return\": \"pld7h1s0\"}",
		"{\"return\": [1, \"x\", null, []]}",
		"{\"return\": [{\"bus\": \"0\", \"devices\": [{\"slot\": 16, "
		"\"qdev_id\": \"pld7h1s0\"}]}]}",
		"{\"return\": [{\"bus\": 0, \"devices\": {\"slot\": 16}}]}",
		"{\"return\": [{\"bus\": 0, \"devices\": [{\"slot\": \"16\", "
		"\"qdev_id\": \"pld7h1s0\"}]}]}",
		"{\"return\": [{\"bus\": 0, \"devices\": [{\"slot\": 16.0, "
		"\"qdev_id\": \"pld7h1s0\"}]}]}",
		"{\"return\": [{\"bus\": 0, \"devices\": [{\"slot\": -1, "
		"\"qdev_id\": \"pld7h1s0\"}]}]}",
		"{\"return\": [{\"bus\": 0, \"devices\": [{\"slot\": "
		"99999999999999999999, \"qdev_id\": \"pld7h1s0\"}]}]}",
		"{\"return\": [{\"bus\": 0, \"devices\": [{\"slot\": 16, "
		"\"qdev_id\": 7}]}]}",
		"{\"return\": [{\"bus\": 0, \"devices\": [{\"slot\": 16, "
		"\"qdev_id\": \"pld7h1s0\\u0000x\"}]}]}",
	};
	for (size_t i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
		qemu_answers(answers[i]);
		nothing_else(true);
		vmstale_find(&v);
		cr_assert_eq(v.nstale, 0, "answer %zu: %u taken", i, v.nstale);
		cr_assert_eq(v.slots_used, 0);
		cr_assert_eq(v.fault, 0);
	}
}

/* More devices than the record holds: the first 16 taken, the rest
 * passed over (never written past the array). */
Test(vm_stale, no_more_than_the_record_holds, .init = up, .fini = down)
{
	char json[8192];
	int n = snprintf(json, sizeof(json), "{\"return\": [{\"bus\": 0, "
			 "\"devices\": [");
	for (int i = 0; i < 40; i++)
		n += snprintf(json + n, sizeof(json) - (size_t)n,
			      "%s{\"slot\": %d, \"qdev_id\": \"pld7h%ds0\"}",
			      i ? "," : "", 16 + i % 16, 100 + i);
	snprintf(json + n, sizeof(json) - (size_t)n, "]}]}");
	qemu_answers(json);
	nothing_else(false);
	vmstale_find(&v);
	cr_assert_eq(v.nstale, 16);
	cr_assert_eq(v.slots_used, 0xffffu);
}

/* Backends and chardevs an earlier agent left without their device (it
 * died between the guest's eject and its own delete): deleted at once,
 * whichever earlier agent's mark they carry; those whose device is still
 * there wait for it (vmstale_gone), this agent's own and QEMU's own are
 * left alone. */
Test(vm_stale, orphaned_backends_of_earlier_agents_deleted, .init = up,
     .fini = down)
{
	qemu_answers("{\"return\": [{\"bus\": 0, \"devices\": ["
		     "{\"slot\": 16, \"qdev_id\": \"pld7h900s1\"}]}]}");
	qemu_answers("{\"return\": [{\"name\": \"type\", \"type\": \"string\"},"
		     "{\"name\": \"plm7h900s1\"}, {\"name\": \"plm7h901s2\"},"
		     "{\"name\": \"plm8h5s3\"}, {\"name\": \"plm4242h1s2\"},"
		     "{\"name\": \"plm7h901s2x\"}, {\"name\": \"plm07h9s2\"},"
		     "{\"name\": 7}, {\"name\": \"plc7h3s1\"}, {}]}");
	qemu_answers("{\"return\": {}}");   /* object-del plm7h901s2 */
	qemu_answers("{\"return\": {}}");   /* object-del plm8h5s3 */
	qemu_answers("{\"return\": [{\"label\": \"charmonitor\"},"
		     "{\"label\": \"plc7h900s1\"}, {\"label\": \"plc9h2s4\"},"
		     "{\"label\": \"plm7h2s4\"}]}");
	qemu_answers("{\"return\": {}}");   /* chardev-remove plc9h2s4 */
	vmstale_find(&v);
	cr_assert_eq(v.nstale, 1);
	cr_assert_eq(v.fault, 0);
	const char *a = asked();
	const char *want[] = {
		"\"query-pci\"", "\"qom-list\"",
		"{\"execute\":\"object-del\",\"arguments\":{\"id\":\"plm7h901s2\"}}",
		"{\"execute\":\"object-del\",\"arguments\":{\"id\":\"plm8h5s3\"}}",
		"\"query-chardev\"",
		"{\"execute\":\"chardev-remove\",\"arguments\":{\"id\":\"plc9h2s4\"}}",
	};
	asked_in_order(a, want, sizeof(want) / sizeof(want[0]));
	cr_assert_null(strstr(a, "plm7h900s1\"}}"), "%s", a); /* its device is there */
	cr_assert_null(strstr(a, "plm4242"), "%s", a);        /* our own */
	cr_assert_null(strstr(a, "plc7h900s1\"}}"), "%s", a);
	cr_assert_null(strstr(a, "query-fdsets"), "%s", a);   /* a device left */
	cr_assert_eq(t_count(a, "\"execute\""), 6, "%s", a);
}

/* With no earlier device left, the earlier agents' fdsets go too (their
 * descriptors for read-only backends); this agent's stay. */
Test(vm_stale, no_device_left_fdsets_removed, .init = up, .fini = down)
{
	qemu_answers("{\"return\": [{\"bus\": 0, \"devices\": []}]}");
	qemu_answers("{\"return\": [{\"name\": \"plm7h1s2\"}]}");
	qemu_answers("{\"return\": {}}");   /* object-del plm7h1s2 */
	qemu_answers("{\"return\": []}");   /* query-chardev */
	qemu_answers("{\"return\": [{\"fdset-id\": 3, \"fds\": [{\"fd\": 30, "
		     "\"opaque\": \"plf7h1s2\"}]}, {\"fdset-id\": 4, \"fds\": "
		     "[{\"fd\": 31, \"opaque\": \"plf4242h1s2\"}]}]}");
	qemu_answers("{\"return\": {}}");   /* remove-fd 3 */
	vmstale_find(&v);
	const char *a = asked();
	cr_assert(strstr(a, "{\"execute\":\"remove-fd\",\"arguments\":"
			    "{\"fdset-id\":3}}"), "%s", a);
	cr_assert_null(strstr(a, "\"fdset-id\":4"), "%s", a);
	cr_assert_eq(v.fault, 0);
}

/* A QEMU listing a thousand such objects gets a bounded sweep. */
Test(vm_stale, the_sweep_is_bounded, .init = up, .fini = down, .timeout = 60)
{
	static char json[200000];
	qemu_answers("{\"return\": []}");
	int n = snprintf(json, sizeof(json), "{\"return\": [");
	for (int i = 0; i < 1000; i++)
		n += snprintf(json + n, sizeof(json) - (size_t)n,
			      "%s{\"name\": \"plm7h%ds1\"}", i ? "," : "", i + 1);
	snprintf(json + n, sizeof(json) - (size_t)n, "]}");
	qemu_answers(json);
	for (int i = 0; i < 64; i++)
		qemu_answers("{\"return\": {}}");
	nothing_else(true);
	vmstale_find(&v);
	cr_assert_eq(v.fault, 0);
	cr_assert_eq(t_count(asked(), "object-del"), 64);
}

/* An earlier agent's wake ports (vmbell.c: port plp..., chardev plw...):
 * the port deleted, then its chardev; one QEMU still holds a moment
 * (busy) is swept again once the earlier agent's devices are gone; this
 * agent's own are left alone. */
Test(vm_stale, earlier_wake_ports_deleted_busy_ones_again_later, .init = up,
     .fini = down)
{
	qemu_answers("{\"return\": [{\"bus\": 0, \"devices\": ["
		     "{\"slot\": 16, \"qdev_id\": \"pld7h900s1\"}]}]}");
	qemu_answers("{\"return\": []}");                /* qom-list */
	qemu_answers("{\"return\": [{\"label\": \"plw7h900s0\"},"
		     "{\"label\": \"plw4242h3s0\"}, {\"label\": \"plw7h901s0\"},"
		     "{\"label\": \"plw7h9s0 \"}]}");
	qemu_answers("{\"return\": {}}");                /* device_del plp7h900s0 */
	qemu_answers("{\"error\": {\"class\": \"GenericError\", \"desc\": "
		     "\"Chardev 'plw7h900s0' is busy\"}}");
	qemu_answers("{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": "
		     "\"gone\"}}");                          /* plp7h901s0 */
	qemu_answers("{\"return\": {}}");                /* chardev-remove */
	vmstale_find(&v);
	cr_assert_eq(v.nstale, 1);
	cr_assert(v.stale_wake_left);
	const char *a = asked();
	const char *want[] = {
		"{\"execute\":\"device_del\",\"arguments\":{\"id\":\"plp7h900s0\"}}",
		"{\"execute\":\"chardev-remove\",\"arguments\":{\"id\":\"plw7h900s0\"}}",
		"{\"execute\":\"device_del\",\"arguments\":{\"id\":\"plp7h901s0\"}}",
		"{\"execute\":\"chardev-remove\",\"arguments\":{\"id\":\"plw7h901s0\"}}",
	};
	asked_in_order(a, want, sizeof(want) / sizeof(want[0]));
	cr_assert_null(strstr(a, "4242"), "%s", a);
	cr_assert_eq(t_count(a, "\"execute\""), 7, "%s", a);
	/* the guest's HELLO: the stale device unplugged; ejected: its
	 * backend goes, and the busy wake chardev is swept again */
	qemu_answers("{\"return\": {}}");                /* device_del pld7h900s1 */
	vmstale_unplug(&v);
	qemu_answers("{\"return\": {}}");                /* object-del */
	qemu_answers("{\"error\": {\"class\": \"GenericError\", \"desc\": "
		     "\"no such chardev\"}}");              /* chardev-remove plc */
	qemu_answers("{\"return\": [{\"label\": \"plw7h900s0\"}]}");
	qemu_answers("{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": "
		     "\"gone\"}}");                          /* plp7h900s0 */
	qemu_answers("{\"return\": {}}");                /* chardev-remove */
	qemu_answers("{\"return\": []}");                /* query-fdsets */
	static struct chanmgr cm;    /* its revocation deadline: default */
	m.cm = &cm;
	v.stale_try_ns = 0;
	cr_assert(vmstale_gone(&m, &v));
	cr_assert_eq(v.nstale, 0);
	cr_assert(!v.stale_wake_left);
	a = asked();
	cr_assert(strstr(a, "{\"execute\":\"chardev-remove\",\"arguments\":"
			    "{\"id\":\"plw7h900s0\"}}"), "%s", a);
	cr_assert(strstr(a, "\"query-fdsets\""), "%s", a);
	cr_assert_eq(v.fault, 0);
}

/* An earlier agent's device, no wake chardev of it busy: once the device
 * is gone its fdsets go too (and the adoption's unplug is audited) — not
 * only when a busy wake chardev was left to sweep again. */
Test(vm_stale, device_gone_fdsets_removed_without_a_busy_wake_port,
     .init = up, .fini = down)
{
	qemu_answers("{\"return\": [{\"bus\": 0, \"devices\": ["
		     "{\"slot\": 16, \"qdev_id\": \"pld7h900s1\"}]}]}");
	qemu_answers("{\"return\": []}");                /* qom-list */
	qemu_answers("{\"return\": []}");                /* query-chardev */
	vmstale_find(&v);
	cr_assert_eq(v.nstale, 1);
	cr_assert(!v.stale_wake_left);
	(void)asked();
	qemu_answers("{\"return\": {}}");                /* device_del pld7h900s1 */
	vmstale_unplug(&v);
	qemu_answers("{\"return\": {}}");                /* object-del */
	qemu_answers("{\"error\": {\"class\": \"GenericError\", \"desc\": "
		     "\"no such chardev\"}}");              /* chardev-remove plc */
	qemu_answers("{\"return\": [{\"fdset-id\": 3, \"fds\": [{\"fd\": 30, "
		     "\"opaque\": \"plf7h900s1\"}]}]}");    /* query-fdsets */
	qemu_answers("{\"return\": {}}");                /* remove-fd 3 */
	static struct chanmgr cm;    /* its revocation deadline: default */
	m.cm = &cm;
	cr_assert(vmstale_gone(&m, &v));
	cr_assert_eq(v.nstale, 0);
	const char *a = asked();
	cr_assert(strstr(a, "\"query-fdsets\""), "%s", a);
	cr_assert(strstr(a, "{\"execute\":\"remove-fd\",\"arguments\":"
			    "{\"fdset-id\":3}}"), "%s", a);
	cr_assert_eq(v.fault, 0);
}

/* A QEMU that says an earlier agent's wake chardev is busy for ever is
 * not asked for ever: past VMSTALE_WAKE_SWEEPS sweeps, nothing more. */
Test(vm_stale, busy_wake_chardev_swept_a_bounded_number_of_times,
     .init = up, .fini = down)
{
	for (unsigned i = 0; i < VMSTALE_WAKE_SWEEPS; i++) {
		v.stale_wake_left = true;
		qemu_answers("{\"return\": [{\"label\": \"plw7h900s0\"}]}");
		qemu_answers("{\"return\": {}}");            /* device_del port */
		qemu_answers("{\"error\": {\"class\": \"GenericError\", "
			     "\"desc\": \"Chardev 'plw7h900s0' is busy\"}}");
		vmstale_wake_sweep(&v);
		cr_assert(v.stale_wake_left);
		cr_assert_eq(t_count(asked(), "\"execute\""), 3);
	}
	vmstale_wake_sweep(&v);
	cr_assert(!v.stale_wake_left);
	cr_assert_str_eq(asked(), "");
	cr_assert_eq(v.fault, 0);
}
