/*
 * parley-chan: parley channels from a shell inside a Linux VM.
 *
 *   parley-chan [-p PORT] [-s SYSFS] open NAME      open, map, keep the
 *                                                   handle in /run/parley
 *   parley-chan send NAME TEXT                      one message
 *   parley-chan recv NAME [-w]                      one message (-w: sleep
 *                                                   until one comes)
 *   parley-chan close NAME
 *   parley-chan pong NAME COUNT [-w] [-r]           answer COUNT checksummed
 *                                                   messages of the ping
 *                                                   partition (pingpong);
 *                                                   -r: a channel lost with
 *                                                   its agent (kill -9,
 *                                                   restart, hand-over) is
 *                                                   opened again: a new one
 *                                                   and COUNT starts over,
 *                                                   the same one (handed
 *                                                   over) and it goes on
 *   parley-chan ping NAME COUNT [FIRST]             send COUNT checksummed messages
 *                                                   to the pong partition, one at
 *                                                   a time, polling for each
 *                                                   answer: round trips timed
 *   parley-chan ping NAME COUNT [FIRST] -w          the same, sleeping (WAIT) for
 *                                                   each answer
 *   parley-chan -e PORT ping NAME COUNT [FIRST] -w  the same, and as many
 *                                                   round trips through PORT
 *                                                   (vport-echo's), the two
 *                                                   alternating in blocks of
 *                                                   100: both see the same
 *                                                   host
 *   parley-chan vport-echo PORT [COUNT]             one byte round trips through
 *                                                   the virtio-serial port PORT
 *                                                   (the host echoes): baseline
 *   parley-chan digest PATH                         report the SHA-256 of
 *                                                   the guest's file PATH
 *                                                   (guest-reported: the
 *                                                   agent enrols, then
 *                                                   compares)
 *   parley-chan poke NAME SECTION                   write junk into a section
 *                                                   (read-only ones: dropped)
 *   parley-chan spam-open NAME COUNT                COUNT OPENs back to back
 *                                                   (a guest asking in a loop)
 *   parley-chan touch NAME                          read the sections for ever,
 *                                                   whatever happens (a guest
 *                                                   that ignores revocation)
 *
 * Prints one result line: "OPEN NAME handle=H side=S", "SENT N",
 * "DIGEST PATH HEX",
 * "RECV TEXT", "CLOSED", or "ERROR STATUS [detail]" (exit 1). The control
 * port is held only while a command runs (virtio-serial ports have one
 * opener), so the handle lives in the agent, named in /run/parley/NAME.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "libparley.h"
#include "sha256.h"
#include "ppmsg.h"

static const char *port, *sysfs = "/sys";
/* -e: ping's interleaved echo port (none: NULL) */
static const char *echo_port;
static struct pl_ctl ctl = { .fd = -1, .timeout_ms = 5000 };

static int fail(const char *what, int rc, const char *detail)
{
	if (rc > 0)
		printf("ERROR %s%s%s\n", pl_status_name(rc), detail ? " " : "",
		       detail ? detail : "");
	else
		printf("ERROR %s: %s\n", what, strerror(-rc));
	fflush(stdout);
	return 1;
}

static void state_path(const char *name, char *p, size_t cap)
{
	snprintf(p, cap, "/run/parley/%s", name);
}

static int ctl_up(void)
{
	int rc = pl_ctl_open(&ctl, port);
	return rc ? fail("control port", rc, NULL) : 0;
}

/* The channel opened earlier: its saved reply from /run/parley, nothing
 * mapped. 0, or 1 having said why. */
static int load_state(const char *name, struct pl_chan *ch)
{
	char p[128];
	state_path(name, p, sizeof(p));
	memset(ch, 0, sizeof(*ch));
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail("not open", -errno, NULL);
	ssize_t n = read(fd, &ch->rep, sizeof(ch->rep));
	close(fd);
	if (n != (ssize_t)sizeof(ch->rep))
		return fail("state", -EIO, NULL);
	return 0;
}

/* The same, its sections mapped. Devices that never come are said as
 * what the agent says of the channel (CLOSED: revoked, its devices
 * unplugged) when it says more than OK. */
static int load(const char *name, struct pl_chan *ch)
{
	if (load_state(name, ch))
		return 1;
	int rc = pl_chan_map(ch, sysfs, 5000);
	if (!rc)
		return 0;
	int st = pl_chan_state(&ctl, ch);
	return fail("map", st > 0 ? st : rc, NULL);
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Round trips are timed with the TSC, scaled by CLOCK_MONOTONIC over the
 * whole run: a guest kernel may pick a clocksource (hpet: under TCG with
 * more than one possible vCPU) whose every read is a syscall and an
 * emulated device access, microseconds each — the clock, not the
 * channel. */
struct tsc_clock {
	double t0_us;
	uint64_t c0;
};

static void tsc_start(struct tsc_clock *k)
{
	k->t0_us = now_us();
	k->c0 = __builtin_ia32_rdtsc();
}

/* Microseconds per TSC tick, from the run's length (>= 10 ms of it). */
static double tsc_us_per_tick(const struct tsc_clock *k)
{
	double t;
	uint64_t c;
	while ((t = now_us()) - k->t0_us < 10000)
		;
	c = __builtin_ia32_rdtsc();
	return c > k->c0 ? (t - k->t0_us) / (double)(c - k->c0) : 0;
}

/* The open channel's reply, for the commands after this one. */
static int save(const char *name, const struct pl_chan *ch)
{
	char p[128];
	mkdir("/run/parley", 0700);
	state_path(name, p, sizeof(p));
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int rc = write(fd, &ch->rep, sizeof(ch->rep)) == (ssize_t)sizeof(ch->rep)
		 ? 0 : -EIO;
	close(fd);
	return rc;
}

static int cmd_open(const char *name)
{
	struct pl_chan ch;
	if (ctl_up())
		return 1;
	double t0 = now_us();
	int rc = pl_chan_open(&ctl, name, &ch);
	if (rc)
		return fail("open", rc, ch.rep.detail[0] ? ch.rep.detail : NULL);
	double reply_ms = (now_us() - t0) / 1e3; /* the agent's answer: its
						  * decision and hot-plug */
	if ((rc = pl_chan_map(&ch, sysfs, 5000)))
		return fail("map", rc, NULL);
	double ms = (now_us() - t0) / 1e3; /* the agent's decision, its
					    * hot-plug, our mapping */
	if ((rc = save(name, &ch)))
		return fail("state", rc, NULL);
	printf("OPEN %s handle=%u side=%u ms=%.1f reply=%.1f\n", name,
	       ch.rep.handle, ch.rep.side, ms, reply_ms);
	return 0;
}

/* A ring result other than OK/EMPTY/FULL, or a wait that ended: ask the
 * agent what became of the channel (a revoked one reads zeros). */
static int channel_state(struct pl_chan *ch)
{
	int rc = pl_chan_state(&ctl, ch);
	return rc == 0 ? PL_STATUS(PARLEY_E_IO) : rc;
}

static int cmd_send(const char *name, const char *text)
{
	struct pl_chan ch;
	if (ctl_up() || load(name, &ch))
		return 1;
	int rc = pl_chan_send(&ch, text, (uint32_t)strlen(text));
	if (rc != PARLEY_RING_OK)
		return rc == PARLEY_RING_FULL ? fail("full", -EAGAIN, NULL)
					      : fail("send", channel_state(&ch), NULL);
	if (pl_chan_peer_waiting(&ch) && (rc = pl_chan_notify(&ctl, &ch)))
		return fail("notify", rc, NULL);
	printf("SENT %zu\n", strlen(text));
	return 0;
}

static int recv_one(struct pl_chan *ch, void *buf, uint32_t cap,
		    uint32_t *len, int wait)
{
	for (unsigned spins = 0;; spins++) {
		int rc = pl_chan_recv(ch, buf, cap, len);
		if (rc == PARLEY_RING_OK)
			return 0;
		if (rc != PARLEY_RING_EMPTY)
			return channel_state(ch);
		if (wait) {
			if ((rc = pl_chan_wait(&ctl, ch)))
				return rc;
		} else if (spins % 100000 == 99999) {
			/* polling: now and then, is the agent there (if it
			 * went, let go of the channel before a new one
			 * unplugs its devices), and the channel? */
			if (!pl_ctl_connected(&ctl))
				return -ENOTCONN;
			if ((rc = pl_chan_state(&ctl, ch)))
				return rc;
		}
	}
}

static int cmd_recv(const char *name, int wait)
{
	struct pl_chan ch;
	static char buf[65536];
	uint32_t len;
	if (ctl_up() || load(name, &ch))
		return 1;
	int rc = recv_one(&ch, buf, sizeof(buf) - 1, &len, wait);
	if (rc)
		return fail("recv", rc, NULL);
	buf[len] = 0;
	printf("RECV %s\n", buf);
	return 0;
}

static int cmd_close(const char *name)
{
	struct pl_chan ch;
	char p[128];
	/* Nothing mapped (the agent unplugs the devices at CLOSE; after a
	 * revocation they are gone already, and mapping them first would
	 * wait for them in vain): the handle is all a close needs. */
	if (ctl_up() || load_state(name, &ch))
		return 1;
	int rc = pl_chan_close(&ctl, &ch);
	state_path(name, p, sizeof(p));
	unlink(p);
	if (rc)
		return fail("close", rc, NULL);
	printf("CLOSED\n");
	return 0;
}

/* The agent went away (killed, restarting) or came back knowing none of
 * our handles. */
static int agent_lost(int rc)
{
	return rc == -ENOTCONN || rc == -ETIMEDOUT || rc == -EPIPE ||
	       rc == PL_STATUS(PARLEY_E_BAD_HANDLE);
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long)(t.tv_sec - t0->tv_sec) * 1000 +
	       (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Open the channel again under a new agent: let go of the old mapping
 * (the new agent unplugs the old devices once we say HELLO), wait for the
 * agent and for the peer, map the new devices. 0 or an error. Says how
 * long each step took: the agent found, the channel open, its devices
 * mapped (ms from the start). */
static int reopen_chan(const char *name, struct pl_chan *ch)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pl_chan_unmap(ch);
	pl_ctl_close(&ctl);
	for (int t = 0; t < 1200; t++) {
		nanosleep(&(struct timespec){ 0, 100000000 }, NULL);
		if (pl_ctl_open(&ctl, port))
			continue; /* no agent yet */
		long agent_ms = ms_since(&t0);
		int rc = pl_chan_open(&ctl, name, ch);
		if (rc == PL_STATUS(PARLEY_E_PEER_DOWN) ||
		    rc == PL_STATUS(PARLEY_E_LIMIT)) {
			/* its peer is not up yet; or the agent's OPEN bucket
			 * is empty (a long wait for the peer drains it): later */
			pl_ctl_close(&ctl);
			if (rc == PL_STATUS(PARLEY_E_LIMIT))
				nanosleep(&(struct timespec){ 0, 400000000 },
					  NULL);
			continue;
		}
		long open_ms = ms_since(&t0);
		if (rc == 0 && !(rc = pl_chan_map(ch, sysfs, 5000)))
			rc = save(name, ch);
		if (rc == 0)
			printf("REOPENED %s handle=%u agent=%ld open=%ld "
			       "mapped=%ld ms\n", name, ch->rep.handle,
			       agent_ms, open_ms, ms_since(&t0));
		return rc;
	}
	return -ETIMEDOUT;
}

/* After a re-open: the same channel (an agent's hand-over passed it on:
 * its rings, in shared memory, hold what was in flight, and the stream
 * goes on at message *i) or a new one (nothing of it read yet: its peer
 * starts over, and so does the count). A wake-up the peer waited for may
 * have been lost with the old agent: rung again. */
static int resume(struct pl_chan *ch, long *i, long next)
{
	if (!ch->rx.cons || !__atomic_load_n(&ch->rx.cons->tail,
					     __ATOMIC_ACQUIRE))
		*i = -1;
	else
		*i = next - 1;
	if (pl_chan_peer_waiting(ch))
		return pl_chan_notify(&ctl, ch);
	return 0;
}

/* Answer COUNT messages; with `reopen`, a channel lost with its agent is
 * opened again: on the same channel (a hand-over) the stream goes on, on
 * a new one COUNT counts from its new peer's first message. */
static int cmd_pong(const char *name, long count, int wait, int reopen)
{
	struct pl_chan ch;
	static struct pp_msg in, out;
	unsigned reopened = 0;
	if (ctl_up() || load(name, &ch))
		return 1;
	for (long i = 0; i < count; i++) {
		uint32_t len;
		int rc = recv_one(&ch, &in, sizeof(in), &len, wait);
		if (rc && reopen && agent_lost(rc)) {
			if ((rc = reopen_chan(name, &ch)) ||
			    (rc = resume(&ch, &i, i)))
				return fail("reopen", rc, NULL);
			reopened++;
			continue;
		}
		if (rc)
			return fail("recv", rc, NULL);
		if (reopen && i == 300)
			printf("PONG-AT 300 session %u\n", reopened);
		if (pp_check(&in, len, (uint32_t)i)) {
			/* Revoked while it was read (the agent punches the
			 * memory: zeros)? Then the channel says CLOSED; only
			 * on a live channel is the message damaged. */
			int st = pl_chan_state(&ctl, &ch);
			if (st)
				return fail("recv", st, NULL);
			printf("ERROR message %ld damaged\n", i);
			return 1;
		}
		uint32_t n = pp_fill(&out, (uint32_t)i, PP_SALT_PONG);
		while ((rc = pl_chan_send(&ch, &out, n)) == PARLEY_RING_FULL)
			;
		if (rc != PARLEY_RING_OK)
			return fail("send", channel_state(&ch), NULL);
		if (pl_chan_peer_waiting(&ch) && (rc = pl_chan_notify(&ctl, &ch))) {
			if (!reopen || !agent_lost(rc))
				return fail("notify", rc, NULL);
			/* The answer is in the ring; its wake-up is rung
			 * through the agent that answers the re-open. */
			if ((rc = reopen_chan(name, &ch)) ||
			    (rc = resume(&ch, &i, i + 1)))
				return fail("reopen", rc, NULL);
			reopened++;
		}
	}
	/* how the doorbells went: straight through QEMU (protocol 4's bell
	 * and wake port) or through the agent (NOTIFY, WAKE) */
	printf("PONG %ld messages checked and answered (lost wake-ups: %u) "
	       "doorbells %s\n", count, ctl.lost_wakes,
	       ch.bell ? "direct" : "through the agent");
	if (reopen)
		printf("PONG reopened %u\n", reopened);
	return 0;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The bare virtio-serial round trip, the baseline of a notify: one byte
 * to the port the host echoes, and its answer. */
static int echo_open(const char *port_name)
{
	char dev[300];
	int rc = pl_find_port(port_name, dev, sizeof(dev));
	if (rc)
		return fail("port", rc, NULL);
	int fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail("port", -errno, NULL);
	return fd;
}

/* -e: ping's round trips and the echo's alternate in blocks of this */
#define ECHO_BLOCK 100

/* One round trip of byte B; its time in TSC ticks. 0, or 1 on failure
 * (said). */
static int echo_once(int fd, char b, double *ticks)
{
	char r;
	uint64_t t0 = __builtin_ia32_rdtsc();
	if (write(fd, &b, 1) != 1)
		return fail("write", -errno, NULL);
	ssize_t n;
	while ((n = read(fd, &r, 1)) == 0)
		;
	if (n != 1 || r != b)
		return fail("echo", n < 0 ? -errno : -EPROTO, NULL);
	*ticks = (double)(__builtin_ia32_rdtsc() - t0);
	return 0;
}

static void echo_print(double *rtt, long count, double scale)
{
	for (long i = 0; i < count; i++)
		rtt[i] *= scale;
	qsort(rtt, (size_t)count, sizeof(rtt[0]), cmp_d);
	printf("ECHO %ld median_us=%.2f\n", count, rtt[count / 2]);
}

static int cmd_echo(const char *port_name, long count)
{
	static double rtt[100000];
	if (count < 1 || count > 100000)
		return fail("count", -EINVAL, NULL);
	int fd = echo_open(port_name);
	if (fd < 0)
		return 1;
	struct tsc_clock k;
	tsc_start(&k);
	for (long i = 0; i < count; i++)
		if (echo_once(fd, (char)i, &rtt[i])) {
			close(fd);
			return 1;
		}
	close(fd);
	echo_print(rtt, count, tsc_us_per_tick(&k));
	return 0;
}

static int cmd_ping(const char *name, long count, long first, int wait)
{
	struct pl_chan ch;
	static struct pp_msg in, out;
	static double rtt[100000], both[100000], ertt[100000];
	unsigned notifies = 0, nboth = 0;
	long ne = 0;
	if (count < 1 || count > 100000)
		return fail("count", -EINVAL, NULL);
	int efd = echo_port ? echo_open(echo_port) : -1;
	if (echo_port && efd < 0)
		return 1;
	if (ctl_up() || load(name, &ch)) {
		if (efd >= 0)
			close(efd);
		return 1;
	}
	struct tsc_clock k;
	tsc_start(&k);
	for (long i = 0; i < count; i++) {
		uint32_t seq = (uint32_t)(first + i);
		uint32_t n = pp_fill(&out, seq, PP_SALT_PING), len;
		uint64_t t0 = __builtin_ia32_rdtsc();
		int rc;
		while ((rc = pl_chan_send(&ch, &out, n)) == PARLEY_RING_FULL)
			;
		if (rc != PARLEY_RING_OK)
			return fail("send", channel_state(&ch), NULL);
		/* the thin partition sleeps in CHAN_WAIT when idle: ring it */
		unsigned slept = ctl.sleeps;
		bool rang = false;
		if (pl_chan_peer_waiting(&ch)) {
			rang = true;
			notifies++;
			if ((rc = pl_chan_notify(&ctl, &ch)))
				return fail("notify", rc, NULL);
		}
		if ((rc = recv_one(&ch, &in, sizeof(in), &len, wait)))
			return fail("recv", rc, NULL);
		rtt[i] = (double)(__builtin_ia32_rdtsc() - t0);
		/* both ends asleep: the peer rung, this side woken */
		if (rang && ctl.sleeps != slept)
			both[nboth++] = rtt[i];
		if (len < 16 || in.seq != seq) {
			int st = pl_chan_state(&ctl, &ch);
			if (st)
				return fail("recv", st, NULL);
			printf("ERROR answer %ld damaged\n", i);
			return 1;
		}
		/* the echo's round trips in blocks between these: each kind
		 * back to back as when measured alone (its own tails, no
		 * pause that lets the host idle), both through the same
		 * phases of the host */
		if (efd >= 0 && ((i + 1) % ECHO_BLOCK == 0 || i == count - 1))
			for (long e = ne; ne < count && ne - e < ECHO_BLOCK; ne++)
				if (echo_once(efd, (char)ne, &ertt[ne]))
					return 1;
	}
	double scale = tsc_us_per_tick(&k);
	for (long i = 0; i < count; i++)
		rtt[i] *= scale;
	for (unsigned i = 0; i < nboth; i++)
		both[i] *= scale;
	qsort(rtt, (size_t)count, sizeof(rtt[0]), cmp_d);
	qsort(both, nboth, sizeof(both[0]), cmp_d);
	printf("PING%s %ld median_us=%.2f p99_us=%.2f notifies=%u lost_wakes=%u "
	       "sleeps=%u both=%u both_median_us=%.2f doorbells=%s\n",
	       wait ? "-WAIT" : "", count, rtt[count / 2],
	       rtt[count * 99 / 100], notifies, ctl.lost_wakes, ctl.sleeps,
	       nboth, nboth ? both[nboth / 2] : 0,
	       ch.bell ? "direct" : "agent");
	if (efd >= 0) {
		close(efd);
		echo_print(ertt, ne, scale);
	}
	return 0;
}

static int cmd_digest(const char *path)
{
	uint8_t d[32];
	char hex[65];
	int rc = pl_sha256_file(path, d);
	if (rc)
		return fail("read", rc, NULL);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	if (ctl_up())
		return 1;
	if ((rc = pl_digest(&ctl, path, d)))
		return fail("digest", rc, path);
	printf("DIGEST %s %s\n", path, hex);
	return 0;
}

static int cmd_poke(const char *name, unsigned section)
{
	struct pl_chan ch;
	if (ctl_up() || load(name, &ch))
		return 1;
	if (section >= PARLEY_VMCTL_DEVS_MAX || !ch.map[section])
		return fail("no such section", -EINVAL, NULL);
	/* Map it writable whatever the agent said: a read-only backend must
	 * drop the writes, not this tool refrain from them. */
	for (unsigned i = 0; i < ch.rep.ndev; i++) {
		const struct parley_vmctl_dev *d = &ch.rep.dev[i];
		if (d->section != section)
			continue;
		char p[256];
		snprintf(p, sizeof(p), "%s/bus/pci/devices/%s/resource2", sysfs,
			 d->pci);
		int fd = open(p, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			return fail("open resource2", -errno, NULL);
		static char junk[4096];
		memset(junk, 0xa5, sizeof(junk));
		/* sysfs resource files take no write(); map and store */
		void *m = mmap(NULL, d->size, PROT_READ | PROT_WRITE, MAP_SHARED,
			       fd, 0);
		close(fd);
		if (m == MAP_FAILED)
			return fail("mmap writable", -errno, NULL);
		for (uint64_t off = 0; off < d->size; off += sizeof(junk))
			memcpy((char *)m + off, junk, sizeof(junk));
		printf("POKED %u %llu\n", section, (unsigned long long)d->size);
		munmap(m, d->size);
		return 0;
	}
	return fail("no such section", -EINVAL, NULL);
}

/* COUNT OPENs of NAME back to back, nothing mapped: a guest asking in a
 * loop (the agent answers LIMIT past its OPEN bucket). */
static int cmd_spam_open(const char *name, long count)
{
	long ok = 0, limit = 0, denied = 0;
	if (ctl_up())
		return 1;
	for (long k = 0; k < count; k++) {
		struct pl_chan ch;
		int rc = pl_chan_open(&ctl, name, &ch);
		if (rc == 0)
			ok++;
		else if (rc == PL_STATUS(PARLEY_E_LIMIT))
			limit++;
		else if (rc < 0)
			return fail("open", rc, NULL);
		else
			denied++;
	}
	printf("SPAMMED %ld ok=%ld limit=%ld denied=%ld\n", count, ok, limit,
	       denied);
	return 0;
}

static int cmd_touch(const char *name)
{
	struct pl_chan ch;
	if (ctl_up() || load(name, &ch))
		return 1;
	pl_ctl_close(&ctl);
	/* Keep a second mapping of every section, so the kernel's eject
	 * cannot be the end of it: this guest touches the memory until the
	 * host stops it. */
	printf("TOUCHING\n");
	/* volatile reads: each one reaches the memory */
	for (;;)
		for (unsigned i = 0; i < PARLEY_VMCTL_DEVS_MAX; i++)
			if (ch.map[i])
				for (uint64_t o = 0; o < ch.maplen[i]; o += 4096)
					(void)*(volatile uint8_t *)((char *)ch.map[i] + o);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: parley-chan [-p PORT] [-s SYSFS] [-e ECHO] "
		"open|send|recv|close|pong|ping|digest|poke|touch NAME [ARGS]\n");
	return 2;
}

int main(int argc, char **argv)
{
	int i = 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
		if (!strcmp(argv[i], "-p"))
			port = argv[i + 1];
		else if (!strcmp(argv[i], "-s"))
			sysfs = argv[i + 1];
		else if (!strcmp(argv[i], "-e"))
			echo_port = argv[i + 1];
		else
			return usage();
	}
	if (argc - i < 2)
		return usage();
	const char *cmd = argv[i], *name = argv[i + 1];
	/* trailing flags: -w (sleep for messages), -r (re-open a channel
	 * lost with its agent) */
	int wait = 0, reopen = 0;
	while (argc - i > 2 && (!strcmp(argv[argc - 1], "-w") ||
				!strcmp(argv[argc - 1], "-r"))) {
		if (!strcmp(argv[--argc], "-w"))
			wait = 1;
		else
			reopen = 1;
	}
	int rc;
	if (!strcmp(cmd, "open"))
		rc = cmd_open(name);
	else if (!strcmp(cmd, "send") && argc - i == 3)
		rc = cmd_send(name, argv[i + 2]);
	else if (!strcmp(cmd, "recv"))
		rc = cmd_recv(name, wait);
	else if (!strcmp(cmd, "close"))
		rc = cmd_close(name);
	else if (!strcmp(cmd, "pong") && argc - i >= 3)
		rc = cmd_pong(name, strtol(argv[i + 2], NULL, 10), wait, reopen);
	else if (!strcmp(cmd, "ping") && argc - i >= 3)
		rc = cmd_ping(name, strtol(argv[i + 2], NULL, 10),
			      argc - i >= 4 && strcmp(argv[i + 3], "-w")
				      ? strtol(argv[i + 3], NULL, 10) : 0,
			      wait);
	else if (!strcmp(cmd, "vport-echo"))
		rc = cmd_echo(name, argc - i >= 3 ? strtol(argv[i + 2], NULL, 10)
						  : 1000);
	else if (!strcmp(cmd, "digest"))
		rc = cmd_digest(name);
	else if (!strcmp(cmd, "touch"))
		rc = cmd_touch(name);
	else if (!strcmp(cmd, "spam-open") && argc - i == 3)
		rc = cmd_spam_open(name, strtol(argv[i + 2], NULL, 10));
	else if (!strcmp(cmd, "poke") && argc - i == 3)
		rc = cmd_poke(name, (unsigned)strtoul(argv[i + 2], NULL, 10));
	else
		return usage();
	pl_ctl_close(&ctl);
	return rc;
}
