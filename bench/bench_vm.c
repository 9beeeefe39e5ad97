/*
 * The vm suite (issue 11): a Linux VM (the Debian cloud kernel, the
 * build's initramfs, under the embedded libvirt QEMU driver, TCG unless
 * PARLEY_VM_ACCEL says kvm) beside thin partitions under one grant manager.
 *
 *   vm_boot_s             vmmgr_add (define + start) until the guest's init
 *                         prints on its console
 *   vm_chan_open_ms       the guest's `parley-chan open` of a channel whose
 *                         peer (a thin partition, idle) never opened it:
 *                         the decision, the hot-plug of every section, the
 *                         guest's mapping (median of 5, the guest's clock;
 *                         noted: the agent's hot-plug, of which its
 *                         backends, and the guest's wait for the reply)
 *   vm_chan_rtt_poll_us   64..2 KiB checksummed messages, the VM's
 *                         `parley-chan ping` polling for each answer of the
 *                         thin partition pong (which sleeps when idle: the
 *                         VM then rings it through its bell);
 *                         median of 20,000 round trips, the guest's clock
 *
 *   vm_chan_notify_rtt_vs_vport_echo
 *                         the median sleeping round trip — both ends asleep
 *                         for every message: the VM rings pong, asleep in
 *                         CHAN_WAIT (pong's spin is 0 for these), and
 *                         sleeps on its ring's message-pending flag until
 *                         pong's ring comes on its wake port (protocol 4:
 *                         QEMU both ways, no agent; the guest prints which
 *                         way its doorbells went) — divided by the median one-byte round
 *                         trip through a bare virtio-serial port this bench
 *                         echoes (org.parley.echo.0), interleaved with them
 *                         in blocks of 100 (each kind back to back as when
 *                         measured alone; a host slower for a while is
 *                         slower for both); only the
 *                         round trips in which both ends slept (the guest
 *                         tells them apart), failing when under half did
 *   vm_chan_notify_rtt_less_peer_vs_vport_echo
 *                         the same less pong's turn as the agent sees it
 *                         (NOTIFY written to pong's doorbell until pong's
 *                         doorbell for the VM: its wake-up, its answer, its
 *                         exit): the VM's side of the round trip, for the
 *                         record — only when the doorbells go through the
 *                         agent (a guest without the bell): with protocol
 *                         4's the agent sees no turn
 *
 * pong (guest/examples/pong.c) makes each answer before the message comes
 * and checks the message after answering it: the round trip is the
 * channel's, not two checksums over up to 2 KiB on the thin side. The
 * guest's clocksource is printed (a VM without a TSC clocksource would
 * time each round trip with two syscalls).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/vm/vmmgr.h"
#include "agent/backend.h"
#include "agent/ctl/ctl.h"
#include "bench/bench.h"
#include "bench/chan_bench.h"
#include "common/fileio.h"

#define PINGS 20000
#define WAITS 1000
#define OPENS 5

static const char grants[] =
	"{\"grants\":["
	"{\"channel\":\"pingpong\",\"endpoint_a\":\"guest\",\"endpoint_b\":"
	"\"pong\",\"direction\":\"both\",\"ring_bytes\":\"64K\"},"
	"{\"channel\":\"openb\",\"endpoint_a\":\"guest\",\"endpoint_b\":"
	"\"peer\",\"direction\":\"both\",\"ring_bytes\":\"64K\"}]}";

static const char script[] =
	"echo CLOCKSOURCE $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)\n"
	"for i in 1 2 3 4 5; do\n"
	"  parley-chan open openb || exit 1\n"
	"  parley-chan close openb\n"
	"done\n"
	"parley-chan open pingpong || exit 1\n"
	"parley-chan ping pingpong 20000\n"
	"parley-chan -e org.parley.echo.0 ping pingpong 1000 20000 -w\n"
	"echo SCRIPT-END\n";

struct vm_bench {
	char dir[64];
	struct vm_spec spec;
	struct vmmgr m;
	bool vm_added;
	double boot_s;
	int echo;                  /* the echo port's host end */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *console(struct vm_bench *b)
{
	static char buf[1 << 16];
	char p[PATH_MAX + 64];
	vmhost_console_path(&b->m.host, "guest", p, sizeof(p));
	FILE *f = fopen(p, "r");
	buf[0] = 0;
	if (f) {
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = 0;
		fclose(f);
	}
	return buf;
}

static int add_vm(struct cb_run *r, struct parley_err *err)
{
	struct vm_bench *b = r->ctx;
	int rc = vmmgr_init(&b->m, b->dir, NULL, &r->cm, &r->audit, err);
	if (rc)
		return rc;
	double t0 = now_s();
	if ((rc = vmmgr_add(&b->m, &b->spec, err)))
		return rc;
	b->vm_added = true;
	b->echo = vmhost_echo_connect(&b->m.host, "guest", 5000, err);
	if (b->echo < 0)
		return b->echo;
	/* Boot: until the guest's init speaks (the partitions are still
	 * paused: nothing else competes for the CPUs). */
	while (!strstr(console(b), "PARLEY-GUEST up")) {
		if (now_s() - t0 > 300)
			return perr(err, -ETIMEDOUT, "the VM did not boot in "
				    "300 s:\n%s", console(b));
		vmmgr_serve(&b->m, 0);
		nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
	}
	b->boot_s = now_s() - t0;
	/* One QMP round trip through libvirt (the hot-plug's unit of cost) */
	double rt[20];
	for (int i = 0; i < 20; i++) {
		double t1 = now_s();
		if ((rc = vmhost_qmp(&b->m.host, "guest",
				     "{\"execute\":\"query-version\"}", NULL, 0,
				     NULL, err)))
			return rc;
		rt[i] = (now_s() - t1) * 1e3;
	}
	bench_summary("vm_monitor_rtt", rt, 20, 1, "ms");
	return 0;
}

static int write_file(const char *dir, const char *name, const char *text,
		      char *path, size_t cap)
{
	snprintf(path, cap, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
	fputs(text, f);
	return fclose(f) ? -EIO : 0;
}

int main(void)
{
	struct bench_env e;
	struct parley_err err = { 0 };
	static struct vm_bench b;
	if (bench_env_init(&e, &err)) {
		fprintf(stderr, "bench_vm: %s\n", perr_msg(&err));
		return 1;
	}
	/* The thin partitions on KVM where it is, the process backend
	 * elsewhere (the VM's accelerator is PARLEY_VM_ACCEL's) */
	if (backend_kvm_missing())
		bench_use_backend(&e, CTL_BACKEND_PROCESS);
	snprintf(b.dir, sizeof(b.dir), "/tmp/parley-benchvm-XXXXXX");
	if (!mkdtemp(b.dir))
		return 1;
	char build[PATH_MAX];
	snprintf(build, sizeof(build), "%s", e.image_dir);
	char *slash = strrchr(build, '/');
	if (slash)
		*slash = 0; /* <build>/guest -> <build> */
	struct vm_spec *s = &b.spec;
	snprintf(s->name, sizeof(s->name), "guest");
	const char *acc = getenv("PARLEY_VM_ACCEL");
	s->accel = (unsigned)(vm_accel_parse(acc ? acc : "tcg") < 0
		? VM_ACCEL_TCG : vm_accel_parse(acc ? acc : "tcg"));
	snprintf(s->kernel, sizeof(s->kernel), "%s/vm/vmlinuz", build);
	snprintf(s->initrd, sizeof(s->initrd), "%s/vm/initramfs.gz", build);
	/* The guest times each round trip with its clock: under TCG the
	 * kernel does not trust the emulated TSC and takes the HPET, whose
	 * every read is an MMIO exit into QEMU under its big lock (a clock
	 * read then costs microseconds, and more whenever QEMU's main loop
	 * holds the lock). The TSC is QEMU's host clock there: monotonic. */
	snprintf(s->cmdline_extra, sizeof(s->cmdline_extra), "tsc=reliable");
	s->ncfg = 1;
	snprintf(s->cfg[0].name, sizeof(s->cfg[0].name), "run");
	if (write_file(b.dir, "run.sh", script, s->cfg[0].path,
		       sizeof(s->cfg[0].path)))
		return 1;
	/* pong spins (the SDK's default) for the polled round trips, then
	 * sleeps at once for every message of the sleeping ones */
	char pong_cmd[64];
	snprintf(pong_cmd, sizeof(pong_cmd), "count=%d sleep_from=%d",
		 PINGS + WAITS, PINGS);
	s->echo_port = true;
	b.echo = -1;
	const struct cb_part parts[] = {
		{ "pong", pong_cmd, NULL, false, "pong.elf" },
		{ "peer", "mode=idle", NULL, true, NULL },
	};
	struct cb_run *r = calloc(1, sizeof(*r));
	if (!r)
		return 1;
	r->before_resume = add_vm;
	r->extra_name = "guest";
	r->ctx = &b;
	int rc = cb_start(r, &e, grants, parts, 2, &err);
	double t0 = now_s();
	double plug_ms[OPENS], be_ms[OPENS];
	static double turn_us[PINGS + WAITS];
	unsigned nplug = 0, nturn = 0;
	uint64_t plug_seen = 0, turns_seen = 0;
	while (rc == 0 && !strstr(console(&b), "SCRIPT-END") &&
	       !strstr(console(&b), "PARLEY-GUEST done")) {
		if (now_s() - t0 > 600) {
			rc = perr(&err, -ETIMEDOUT, "the VM's script did not end");
			break;
		}
		int v = vmmgr_serve(&b.m, 0);
		if (b.m.plug_ns_last != plug_seen && nplug < OPENS) {
			plug_seen = b.m.plug_ns_last;
			plug_ms[nplug] = (double)plug_seen / 1e6;
			be_ms[nplug++] = (double)b.m.plug_backends_ns_last / 1e6;
		}
		if (b.m.turns != turns_seen && nturn < PINGS + WAITS) {
			turns_seen = b.m.turns;
			turn_us[nturn++] = (double)b.m.turn_ns_last / 1e3;
		}
		/* the bare echo: each byte straight back */
		char eb[64];
		ssize_t en = b.echo >= 0 ? recv(b.echo, eb, sizeof(eb),
						MSG_DONTWAIT) : -1;
		if (en > 0 && send(b.echo, eb, (size_t)en, MSG_NOSIGNAL) != en)
			bench_note("echo: short write");
		if (en > 0)
			v = 0;
		/* wake for the VM's port and doorbells and the echo as for
		 * the partitions: no polling interval in any round trip */
		int fds[CB_EXTRA_MAX];
		unsigned nf = vmmgr_fds(&b.m, 0, fds, CB_EXTRA_MAX - 1);
		if (b.echo >= 0)
			fds[nf++] = b.echo;
		cb_serve_once_with(r, v == -EAGAIN ? 20 : 0, fds, nf);
	}
	const char *c = console(&b);
	double open_ms[OPENS], reply_ms[OPENS], med = 0, p99 = 0;
	unsigned nopen = 0;
	for (const char *p = c; (p = strstr(p, "OPEN openb ")); p++) {
		const char *ms = strstr(p, "ms="), *rp = strstr(p, "reply=");
		if (ms && rp && nopen < OPENS) {
			reply_ms[nopen] = strtod(rp + 6, NULL);
			open_ms[nopen++] = strtod(ms + 3, NULL);
		}
	}
	const char *pg = strstr(c, "PING ");
	const char *pw = strstr(c, "PING-WAIT "), *ec = strstr(c, "ECHO ");
	double wmed = 0, emed = 0;
	unsigned wnot = 0, wsleep = 0, wboth = 0;
	double wall = 0;
	if (rc == 0 && (!pw || !ec ||
			sscanf(pw, "PING-WAIT %*d median_us=%lf p99_us=%*f "
			       "notifies=%u lost_wakes=%*u sleeps=%u both=%u "
			       "both_median_us=%lf", &wall, &wnot, &wsleep,
			       &wboth, &wmed) != 5 ||
			sscanf(ec, "ECHO %*d median_us=%lf", &emed) != 1 ||
			emed <= 0))
		rc = perr(&err, -EPROTO, "the VM's script failed:\n%s", c);
	/* A sleeping round trip is one in which both ends slept: pong
	 * rung by the VM's NOTIFY, the VM woken by the agent's WAKE. The
	 * guest times those apart (a loaded host can let one end find the
	 * other's message before it sleeps); fewer than half such, and the
	 * run measured something else. */
	if (rc == 0 && wboth < WAITS / 2)
		rc = perr(&err, -EPROTO, "of %d sleeping round trips, %u had "
			  "both ends asleep (pong in %u, the VM in %u): not "
			  "the figure's round trip\n%s", WAITS, wboth, wnot,
			  wsleep, c);
	if (rc == 0 && (nopen != OPENS || !pg ||
			sscanf(pg, "PING %*d median_us=%lf p99_us=%lf", &med,
			       &p99) != 2))
		rc = perr(&err, -EPROTO, "the VM's script failed:\n%s", c);
	if (rc == 0) {
		bench_note("VM console:\n%s", c);
		bench_figure("vm_boot_s", b.boot_s, "s");
		bench_figure("vm_chan_open_ms",
			     bench_summary("vm_chan_open", open_ms, nopen, 1, "ms"),
			     "ms");
		bench_summary("vm_chan_open_reply", reply_ms, nopen, 1, "ms");
		if (nplug) {
			bench_summary("vm_chan_open_agent_plug", plug_ms, nplug,
				      1, "ms");
			bench_summary("vm_chan_open_agent_backends", be_ms, nplug,
				      1, "ms");
		}
		bench_figure("vm_chan_rtt_poll_us", med, "us");
		bench_note("sleeping round trip %.1f us, bare virtio-serial echo "
			   "%.1f us", wmed, emed);
		bench_figure("vm_chan_notify_rtt_vs_vport_echo", wmed / emed, "x");
		/* pong's turn (its wake from CHAN_WAIT, its answer, its
		 * doorbell's exit) is the thin partition's, on this host
		 * two exits: what the round trip costs on the VM's side */
		double tmed = nturn ? bench_summary("vm_chan_notify_peer_turn",
						    turn_us, nturn, 1, "us") : 0;
		bench_note("sleeping: both ends asleep in %u of %d (pong in "
			   "%u, the VM in %u); median of all %d: %.1f us",
			   wboth, WAITS, wnot, wsleep, WAITS, wall);
		if (nturn)
			bench_figure("vm_chan_notify_rtt_less_peer_vs_vport_echo",
				     (wmed - tmed) / emed, "x");
		bench_note("vm_chan_rtt_poll p99 %.2f us (%s)", p99,
			   s->accel == VM_ACCEL_KVM ? "KVM" : "TCG");
	} else {
		fprintf(stderr, "bench_vm: %s\n", perr_msg(&err));
	}
	if (b.echo >= 0)
		close(b.echo);
	if (b.vm_added)
		vmhost_destroy(&b.m.host, "guest", &err);
	vmmgr_free(&b.m);
	if (r->n && r->p[r->n - 1])
		cb_wait(r, 1000, &err);
	cb_free(r);
	free(r);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", b.dir);
	if (system(cmd) != 0)
		bench_note("could not remove %s", b.dir);
	return rc ? 1 : 0;
}
