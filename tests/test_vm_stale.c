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

Test(vm_stale, ids_other_than_an_earlier_agents_sections_refused,
     .init = up, .fini = down)
{
	struct vm_stale st;
	static const char *bad[] = {
		"", "pld", "pld7", "pld7h1", "pld7h1s", "pld7h1s0x",
		"pld7h1s0 ", " pld7h1s0", "plm7h1s0", "plc7h1s0", "pld-7h1s0",
		"pld0h1s0", "pld4242h1s0" /* this agent's own */,
		"pld7h1s99", "pld7h4294967295s0", "pld7h-1s0", "pld7hxs0",
		"PLD7H1S0", "pld7h1s0\n",
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
	vmstale_find(&v);
	cr_assert_eq(v.nstale, 16);
	cr_assert_eq(v.slots_used, 0xffffu);
}
