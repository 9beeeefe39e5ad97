/* The Linux guest library (guest/linux/libparley.c) trusting the agent no
 * more than it must: frames from the port are checked whole (magic,
 * version, an agent-to-guest type, its one length, the request's seq),
 * an OPEN reply's counts and side, its copy of the channel's header
 * (protocol 3), and every device it names before anything is mapped —
 * the PCI address's one shape (no path into sysfs elsewhere), the section
 * index (never the header's), sizes against the file. The port is a socketpair, sysfs a
 * directory of plain files standing for each device's resource2. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "guest/linux/libparley.h"

static int pair[2];
static struct pl_ctl ctl;

static void up(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	memset(&ctl, 0, sizeof(ctl));
	ctl.fd = pair[0];
	ctl.timeout_ms = 300;
}

static void down(void)
{
	close(pair[0]);
	close(pair[1]);
}

/* The agent's side: one frame as given (hostile ones too). */
static void agent_says(uint32_t magic, uint16_t version, uint16_t type,
		       uint32_t len, uint32_t seq, const void *pl, size_t n)
{
	struct parley_vmctl_hdr h = { magic, version, type, len, seq };
	cr_assert_eq(write(pair[1], &h, sizeof(h)), (ssize_t)sizeof(h));
	if (n)
		cr_assert_eq(write(pair[1], pl, n), (ssize_t)n);
}

static void agent_status(uint16_t type, uint32_t seq, int32_t status,
			 uint32_t handle)
{
	struct parley_vmctl_status st = { status, handle };
	agent_says(PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION, type, sizeof(st),
		   seq, &st, sizeof(st));
}

/* STATE of handle 7: the call's result. */
static int ask_state(struct parley_vmctl_status *out)
{
	struct parley_vmctl_handle q = { 7, 0 };
	return pl_ctl_call(&ctl, PARLEY_VMCTL_STATE, &q, sizeof(q),
			   PARLEY_VMCTL_STATUS, out, sizeof(*out));
}

Test(guest_linux, hostile_frames_refused, .init = up, .fini = down)
{
	struct parley_vmctl_status st;
	struct parley_vmctl_status ok = { 0, 7 };
	uint32_t slen = sizeof(ok);
	struct {
		uint32_t magic;
		uint16_t version, type;
		uint32_t len;
		const char *what;
	} bad[] = {
		{ 0x31435651u, PARLEY_VMCTL_VERSION, PARLEY_VMCTL_STATUS, 8,
		  "wrong magic" },
		{ PARLEY_VMCTL_MAGIC, 1, PARLEY_VMCTL_STATUS, 8, "version 1" },
		{ PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION, PARLEY_VMCTL_STATE,
		  8, "a guest-to-agent type" },
		{ PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION, 0x9f, 8,
		  "an unknown type" },
		{ PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION, PARLEY_VMCTL_STATUS,
		  9, "a longer payload" },
		{ PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION, PARLEY_VMCTL_STATUS,
		  0xffffffffu, "a huge length" },
		{ PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION,
		  PARLEY_VMCTL_OPEN_REPLY, 8, "the wrong reply's length" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		agent_says(bad[i].magic, bad[i].version, bad[i].type,
			   bad[i].len, ctl.seq + 1, &ok, slen);
		cr_assert_eq(ask_state(&st), -EPROTO, "%s taken", bad[i].what);
		/* the stream is lost: whatever followed was dropped */
		cr_assert_eq(ctl.in_len, 0);
		char junk[256];
		while (recv(pair[0], junk, sizeof(junk), MSG_DONTWAIT) > 0)
			;
	}
	/* a well-formed answer to another request */
	agent_status(PARLEY_VMCTL_STATUS, ctl.seq + 5, 0, 7);
	cr_assert_eq(ask_state(&st), -EPROTO);
	/* a header and then silence: the rest never comes */
	agent_says(PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION, PARLEY_VMCTL_STATUS,
		   slen, ctl.seq + 1, NULL, 0);
	cr_assert_eq(ask_state(&st), -ETIMEDOUT);
	ctl.in_len = 0;
	/* nothing at all */
	cr_assert_eq(ask_state(&st), -ETIMEDOUT);
}

/* WAKEs before the answer are noted (an ended channel remembered), the
 * answer then taken; two frames in one read are both used. */
Test(guest_linux, wakes_first_then_the_answer, .init = up, .fini = down)
{
	struct parley_vmctl_status st;
	agent_status(PARLEY_VMCTL_WAKE, 0, 0, 3);
	agent_status(PARLEY_VMCTL_WAKE, 0, PARLEY_E_CLOSED, 4);
	agent_status(PARLEY_VMCTL_STATUS, ctl.seq + 1, PARLEY_E_PEER_DOWN, 7);
	cr_assert_eq(ask_state(&st), 0);
	cr_assert_eq(st.status, PARLEY_E_PEER_DOWN);
	cr_assert_eq(st.handle, 7);
	cr_assert_eq(ctl.ended_handle, 4);
	cr_assert_eq(ctl.ended_status, PARLEY_E_CLOSED);
	/* a reply cut in pieces across reads */
	struct parley_vmctl_hdr h = { PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION,
				      PARLEY_VMCTL_STATUS, 8, ctl.seq + 1 };
	struct parley_vmctl_status s2 = { 0, 7 };
	uint8_t all[sizeof(h) + sizeof(s2)];
	memcpy(all, &h, sizeof(h));
	memcpy(all + sizeof(h), &s2, sizeof(s2));
	cr_assert_eq(write(pair[1], all, 5), 5);
	pid_t pid = fork();
	if (pid == 0) {
		usleep(50000);
		_exit(write(pair[1], all + 5, sizeof(all) - 5) ==
		      (ssize_t)(sizeof(all) - 5) ? 0 : 1);
	}
	cr_assert_eq(ask_state(&st), 0);
	cr_assert_eq(st.status, 0);
	int ws;
	cr_assert_eq(waitpid(pid, &ws, 0), pid);
}

static void open_reply(struct parley_vmctl_open_reply *r)
{
	agent_says(PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION,
		   PARLEY_VMCTL_OPEN_REPLY, sizeof(*r), ctl.seq + 1, r,
		   sizeof(*r));
}

Test(guest_linux, open_reply_counts_checked, .init = up, .fini = down)
{
	struct parley_vmctl_open_reply r;
	struct pl_chan ch;
	memset(&r, 0, sizeof(r));
	r.status = PARLEY_E_NO_GRANT;
	memset(r.detail, 'x', sizeof(r.detail)); /* no NUL: cut */
	open_reply(&r);
	cr_assert_eq(pl_chan_open(&ctl, "c1", &ch), PL_STATUS(PARLEY_E_NO_GRANT));
	cr_assert_eq(strlen(ch.rep.detail), sizeof(r.detail) - 1);
	struct { int32_t status; uint32_t side, ndev; } bad[] = {
		{ 5, 0, 4 },                      /* not a status */
		{ 0, 0, 1 }, { 0, 0, 0 },         /* too few devices */
		{ 0, 0, PARLEY_VMCTL_DEVS_MAX },  /* 4 at most: 2 queues x 2 */
		{ 0, 2, 4 },                      /* no such side */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&r, 0, sizeof(r));
		r.status = bad[i].status;
		r.side = bad[i].side;
		r.ndev = bad[i].ndev;
		open_reply(&r);
		cr_assert_eq(pl_chan_open(&ctl, "c1", &ch), -EPROTO, "case %zu", i);
	}
	cr_assert_eq(pl_chan_open(&ctl, "", &ch), -EINVAL);
}

/* ---- mapping: a directory standing for sysfs ---------------------------- */

static char sysfs[64];

static void sys_up(void)
{
	snprintf(sysfs, sizeof(sysfs), "/tmp/parley-sysfs-XXXXXX");
	cr_assert_not_null(mkdtemp(sysfs));
	char p[256];
	snprintf(p, sizeof(p), "%s/bus", sysfs);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/bus/pci", sysfs);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/bus/pci/devices", sysfs);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/bus/pci/rescan", sysfs);
	int fd = open(p, O_WRONLY | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
}

static void bell_gone(void);

static void sys_down(void)
{
	bell_gone();   /* a FIFO under /dev, left by a test that failed */
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", sysfs);
	cr_assert_eq(system(cmd), 0);
}

/* A device: resource2 of `size` bytes, holding `head` at its start. */
static void device(const char *pci, size_t size, const void *head, size_t n)
{
	char p[256];
	snprintf(p, sizeof(p), "%s/bus/pci/devices/%s", sysfs, pci);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/bus/pci/devices/%s/resource2", sysfs, pci);
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	if (n)
		cr_assert_eq(pwrite(fd, head, n, 0), (ssize_t)n);
	close(fd);
}

#define RING 0x1000ull

/* A well-formed channel: side 0 produces queue 0, consumes queue 1; the
 * header in the reply (protocol 3), sections 1..4 as devices. */
static void good(struct pl_chan *ch)
{
	memset(ch, 0, sizeof(*ch));
	struct parley_vmctl_open_reply *r = &ch->rep;
	struct parley_chan_hdr *h = &r->hdr;
	h->magic = PARLEY_RING_MAGIC;
	h->version = PARLEY_RING_VERSION;
	h->nqueues = 2;
	h->ring_bytes = RING;
	h->q[0].from = 0;
	h->q[1].from = 1;
	r->side = 0;
	r->ndev = 4;
	for (unsigned i = 0; i < 4; i++) {
		unsigned sec = i + 1;
		snprintf(r->dev[i].pci, sizeof(r->dev[i].pci), "0000:00:1%u.0",
			 sec);
		r->dev[i].section = sec;
		r->dev[i].size = (sec == 1 || sec == 3) ? 2 * RING : RING;
		r->dev[i].writable = sec == 1 || sec == 4;
	}
	r->bell_dev = PARLEY_VMCTL_NO_BELL;
}

/* Protocol 4's bell: device dev[0] (section 1, written by side 0) rings,
 * its BAR 0 at `start` (256 bytes: the page holds others), the wake port
 * a node under /dev (a FIFO here: the test is root) named in sysfs. */
#define WAKE "org.parley.wake.7.9"
static char wake_node[64] = "";

static void bell(struct pl_chan *ch, uint64_t start)
{
	ch->rep.bell_dev = 0;
	snprintf(ch->rep.wake, sizeof(ch->rep.wake), WAKE);
	char p[256], line[160];
	snprintf(p, sizeof(p), "%s/bus/pci/devices/%s/resource", sysfs,
		 ch->rep.dev[0].pci);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f);
	snprintf(line, sizeof(line), "0x%016llx 0x%016llx 0x0000000000040200\n",
		 (unsigned long long)start, (unsigned long long)start + 0xff);
	fputs(line, f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/bus/pci/devices/%s/resource0", sysfs,
		 ch->rep.dev[0].pci);
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 4096), 0);
	close(fd);
	snprintf(p, sizeof(p), "%s/class", sysfs);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/class/virtio-ports", sysfs);
	mkdir(p, 0700);
	snprintf(wake_node, sizeof(wake_node), "vport%dp9", (int)getpid());
	snprintf(p, sizeof(p), "%s/class/virtio-ports/%s", sysfs, wake_node);
	mkdir(p, 0700);
	snprintf(p, sizeof(p), "%s/class/virtio-ports/%s/name", sysfs,
		 wake_node);
	f = fopen(p, "w");
	cr_assert_not_null(f);
	fputs(WAKE "\n", f);
	fclose(f);
	snprintf(p, sizeof(p), "/dev/%s", wake_node);
	unlink(p);
	cr_assert_eq(mkfifo(p, 0600), 0, "%s: %s", p, strerror(errno));
}

static void bell_gone(void)
{
	char p[96];
	if (!wake_node[0])
		return;
	snprintf(p, sizeof(p), "/dev/%s", wake_node);
	unlink(p);
}

static void devices(const struct pl_chan *ch)
{
	for (unsigned i = 0; i < ch->rep.ndev; i++)
		device(ch->rep.dev[i].pci, ch->rep.dev[i].size, NULL, 0);
}

Test(guest_linux, a_good_channel_maps, .init = sys_up, .fini = sys_down)
{
	struct pl_chan ch;
	good(&ch);
	devices(&ch);
	cr_assert_eq(pl_chan_map(&ch, sysfs, 100), 0);
	cr_assert_eq(ch.tx.size, RING);
	cr_assert_eq(ch.rx.size, RING);
	cr_assert_eq(ch.tx.prod, ch.map[1]);
	cr_assert_eq(ch.rx.prod, ch.map[3]);
	pl_chan_unmap(&ch);
	cr_assert_null(ch.map[0]);
}

/* The bell's register block at BAR 0's offset in its page; the ring is
 * one 32-bit write of PARLEY_VMCTL_BELL_PEER to the doorbell register. */
Test(guest_linux, a_bell_maps_at_its_offset_in_the_page, .init = sys_up,
     .fini = sys_down)
{
	struct pl_chan ch;
	struct pl_ctl c = { .fd = -1 };
	good(&ch);
	devices(&ch);
	bell(&ch, 0xc002300);
	cr_assert_eq(pl_chan_map(&ch, sysfs, 100), 0);
	cr_assert(ch.has_wake);
	cr_assert_eq((uintptr_t)ch.bell - (uintptr_t)ch.bell_page, 0x300);
	cr_assert_eq(pl_chan_notify(&c, &ch), 0);
	uint32_t v = 0;
	char p[256];
	snprintf(p, sizeof(p), "%s/bus/pci/devices/%s/resource0", sysfs,
		 ch.rep.dev[0].pci);
	int fd = open(p, O_RDONLY);
	cr_assert_eq(pread(fd, &v, 4, 0x300 + PARLEY_VMCTL_BELL_REG), 4);
	close(fd);
	cr_assert_eq(v, PARLEY_VMCTL_BELL_PEER);
	pl_chan_unmap(&ch);
	cr_assert_null(ch.bell);
	cr_assert(!ch.has_wake);
	bell_gone();
}

/* A reply's bell that points anywhere else: refused, nothing mapped. */
Test(guest_linux, hostile_bells_refused, .init = sys_up, .fini = sys_down)
{
	static const char *bad_wake[] = {
		"org.parley.wake.", "org.parley.ctl.0", "org.parley.wake.1/..",
		"org.parley.wake.1 ", "../org.parley.wake.1", "org.parley.wakeX1",
		"org.parley.wake.1\n",
	};
	enum { DEV_BIG, DEV_NONE_LIKE, DEV_READONLY, RESERVED, NO_NUL,
	       OFF_PAST_PAGE, BAR_SMALL, RESOURCE_JUNK, NO_PORT, NAMES,
	       CASES };
	for (int k = 0; k < CASES; k++) {
		unsigned names = k == NAMES ? sizeof(bad_wake) /
					      sizeof(bad_wake[0]) : 1;
		for (unsigned n = 0; n < names; n++) {
			struct pl_chan ch;
			good(&ch);
			devices(&ch);
			bell(&ch, k == OFF_PAST_PAGE ? 0xc002ff8 : 0xc002100);
			int want = -EPROTO;
			char p[256];
			switch (k) {
			case DEV_BIG: ch.rep.bell_dev = ch.rep.ndev; break;
			case DEV_NONE_LIKE: ch.rep.bell_dev = 0xfffffffe; break;
			case DEV_READONLY: ch.rep.bell_dev = 1; break;
			case RESERVED: ch.rep.reserved = 1; break;
			case NO_NUL:
				memset(ch.rep.wake, '1', sizeof(ch.rep.wake));
				break;
			case BAR_SMALL:
			case RESOURCE_JUNK: {
				snprintf(p, sizeof(p), "%s/bus/pci/devices/%s/"
					 "resource", sysfs, ch.rep.dev[0].pci);
				FILE *f = fopen(p, "w");
				fputs(k == BAR_SMALL ? "0xc002100 0xc002104 0\n"
						     : "none\n", f);
				fclose(f);
				break;
			}
			case NO_PORT: bell_gone(); want = -ENOENT; break;
			case NAMES:
				snprintf(ch.rep.wake, sizeof(ch.rep.wake), "%s",
					 bad_wake[n]);
				break;
			default: break;
			}
			cr_assert_eq(pl_chan_map(&ch, sysfs, 50), want,
				     "case %d/%u", k, n);
			cr_assert_null(ch.bell, "case %d", k);
			cr_assert(!ch.has_wake, "case %d", k);
			for (unsigned i = 0; i < PARLEY_VMCTL_DEVS_MAX; i++)
				cr_assert_null(ch.map[i], "case %d", k);
			bell_gone();
		}
	}
}

/* Each hostile reply or header: refused, nothing left mapped. */
Test(guest_linux, hostile_devices_refused, .init = sys_up, .fini = sys_down)
{
	struct pl_chan ch;
	struct parley_chan_hdr *h = &ch.rep.hdr;
	static const char *bad_pci[] = {
		"../../../../etc", "0000:00:10.0/..", "0000:00:10.00",
		"0000:00:1G.0", "0000:00:10.0 ", "0000-00:10.0", "0000:00:1A.0",
		"", "0000:00:10", "/000:00:10.0",
	};
	for (size_t k = 0; k < sizeof(bad_pci) / sizeof(bad_pci[0]); k++) {
		good(&ch);
		devices(&ch);
		snprintf(ch.rep.dev[1].pci, sizeof(ch.rep.dev[1].pci), "%s",
			 bad_pci[k]);
		cr_assert_eq(pl_chan_map(&ch, sysfs, 50), -EPROTO, "%s",
			     bad_pci[k]);
		for (unsigned i = 0; i < PARLEY_VMCTL_DEVS_MAX; i++)
			cr_assert_null(ch.map[i]);
	}
	/* no NUL in the address field */
	good(&ch);
	devices(&ch);
	memset(ch.rep.dev[1].pci, '0', sizeof(ch.rep.dev[1].pci));
	cr_assert_eq(pl_chan_map(&ch, sysfs, 50), -EPROTO);

	enum { SEC_BIG, SEC_HEADER, SEC_TWICE, SIZE_SMALL, SIZE_HUGE,
	       FILE_SHORT, MAGIC, VERSION, NQ0, NQ3, RING_ODD, RING_SMALL,
	       RING_HUGE, NDEV, NDEV_BIG, FROM, FROM_TWICE, RING_SHORT, NO_DEV,
	       TX_READONLY, RX_WRITABLE, SAME_PCI, CASES };
	for (int c = 0; c < CASES; c++) {
		good(&ch);
		int want = -EPROTO;
		struct parley_vmctl_dev *d3 = &ch.rep.dev[3];
		switch (c) {
		case SEC_BIG: d3->section = PARLEY_VMCTL_DEVS_MAX; break;
		case SEC_HEADER:        /* refused before it is looked for */
			d3->section = 0;
			break;
		case SEC_TWICE: d3->section = 1; break;
		case SIZE_SMALL: ch.rep.dev[1].size = 512; break;
		case SIZE_HUGE: ch.rep.dev[1].size = 4 * PARLEY_RING_MAX; break;
		case MAGIC: h->magic ^= 1; break;
		case VERSION: h->version++; break;
		case NQ0: h->nqueues = 0; break;
		case NQ3: h->nqueues = 3; break;
		case RING_ODD: h->ring_bytes = 3 * RING; break;
		case RING_SMALL: h->ring_bytes = PARLEY_RING_MIN / 2; break;
		case RING_HUGE: h->ring_bytes = 2 * PARLEY_RING_MAX; break;
		case NDEV: h->nqueues = 1; break;    /* 4 devices, 2 needed */
		case NDEV_BIG: ch.rep.ndev = 0xffffffffu; break;
		case FROM: h->q[1].from = 2; break;
		case FROM_TWICE: h->q[1].from = 0; break;
		case RING_SHORT: break;               /* below */
		case NO_DEV: want = -ENODEV; break;   /* below */
		case TX_READONLY: ch.rep.dev[0].writable = 0; break;
		case RX_WRITABLE: ch.rep.dev[1].writable = 1; break;
		case SAME_PCI:
			memcpy(ch.rep.dev[2].pci, ch.rep.dev[1].pci,
			       sizeof(ch.rep.dev[2].pci));
			break;
		default: break;
		}
		if (c != NDEV_BIG)
			devices(&ch);
		if (c == FILE_SHORT)    /* the file smaller than the reply says */
			device(ch.rep.dev[2].pci, RING, NULL, 0);
		if (c == RING_SHORT) {  /* a producer section without its data */
			ch.rep.dev[2].size = RING;
			device(ch.rep.dev[2].pci, RING, NULL, 0);
		}
		if (c == NO_DEV || c == SEC_HEADER) /* never plugged */
			snprintf(d3->pci, sizeof(d3->pci), "0000:00:1f.0");
		cr_assert_eq(pl_chan_map(&ch, sysfs, 50), want, "case %d", c);
		for (unsigned i = 0; i < PARLEY_VMCTL_DEVS_MAX; i++)
			cr_assert_null(ch.map[i], "case %d: section %u mapped",
				       c, i);
	}
}

static void bell_up(void)
{
	up();
	sys_up();
}

static void bell_down(void)
{
	down();
	sys_down();
}

/* A wait on protocol 4's wake port: a ring (8 bytes on the port) after a
 * message ends it; the control port still ends it with WAKE CLOSED; a
 * frame that is no WAKE, or one that begins and stalls, ends it with an
 * error rather than a wait for ever. */
Test(guest_linux, a_bell_wait_ends_on_a_ring_a_wake_or_a_broken_frame,
     .init = bell_up, .fini = bell_down, .timeout = 30)
{
	struct pl_chan ch;
	good(&ch);
	devices(&ch);
	bell(&ch, 0xc002100);
	cr_assert_eq(pl_chan_map(&ch, sysfs, 100), 0);
	char node[96];
	snprintf(node, sizeof(node), "/dev/%s", wake_node);
	int w = open(node, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	cr_assert_geq(w, 0, "%s: %s", node, strerror(errno));
	/* the peer publishes, then rings, a moment after the wait began */
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		usleep(50000);
		/* the peer's side: section 3 (queue 1's producer) writable */
		char p[256];
		snprintf(p, sizeof(p), "%s/bus/pci/devices/%s/resource2",
			 sysfs, ch.rep.dev[2].pci);
		int fd = open(p, O_RDWR);
		void *m = fd < 0 ? MAP_FAILED
				 : mmap(NULL, 2 * RING, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			_exit(2);
		struct parley_ring r = ch.rx;
		r.prod = m;
		r.data = (uint8_t *)m + PARLEY_RING_PAGE;
		uint64_t one = 1;
		_exit(parley_ring_push(&r, "hi", 2) == PARLEY_RING_OK &&
		      write(w, &one, sizeof(one)) == sizeof(one) ? 0 : 1);
	}
	cr_assert_eq(pl_chan_wait(&ctl, &ch), 0);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert_eq(st, 0);
	cr_assert_eq(ctl.lost_wakes, 0);
	char buf[8];
	uint32_t len;
	cr_assert_eq(pl_chan_recv(&ch, buf, sizeof(buf), &len), PARLEY_RING_OK);
	cr_assert_eq(len, 2);
	/* the channel's end still comes on the control port */
	agent_status(PARLEY_VMCTL_WAKE, 0, PARLEY_E_CLOSED, ch.rep.handle);
	cr_assert_eq(pl_chan_wait(&ctl, &ch), PL_STATUS(PARLEY_E_CLOSED));
	ctl.ended_status = 0;
	/* a frame nothing asked for */
	agent_status(PARLEY_VMCTL_STATUS, 0, 0, ch.rep.handle);
	cr_assert_eq(pl_chan_wait(&ctl, &ch), -EPROTO);
	/* a frame that begins and stalls: the stream is lost, said so */
	struct parley_vmctl_hdr h = { PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION,
				      PARLEY_VMCTL_WAKE, 8, 0 };
	cr_assert_eq(write(pair[1], &h, 5), 5);
	cr_assert_eq(pl_chan_wait(&ctl, &ch), -ETIMEDOUT);
	cr_assert_eq(ctl.in_len, 0);
	close(w);
	pl_chan_unmap(&ch);
}

/* The same wait without a wake port (a reply with no bell: NOTIFY and
 * WAKE through the agent): the agent's WAKE after a message ends it, WAKE
 * CLOSED ends it with CLOSED, a frame that is no WAKE or one that begins
 * and stalls ends it with an error. */
Test(guest_linux, an_agent_wait_ends_on_a_wake_or_a_broken_frame,
     .init = bell_up, .fini = bell_down, .timeout = 30)
{
	struct pl_chan ch;
	good(&ch);
	devices(&ch);
	cr_assert_eq(pl_chan_map(&ch, sysfs, 100), 0);
	cr_assert(!ch.has_wake);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		usleep(50000);
		char p[256];
		snprintf(p, sizeof(p), "%s/bus/pci/devices/%s/resource2",
			 sysfs, ch.rep.dev[2].pci);
		int fd = open(p, O_RDWR);
		void *m = fd < 0 ? MAP_FAILED
				 : mmap(NULL, 2 * RING, PROT_READ | PROT_WRITE,
					MAP_SHARED, fd, 0);
		if (m == MAP_FAILED)
			_exit(2);
		struct parley_ring r = ch.rx;
		r.prod = m;
		r.data = (uint8_t *)m + PARLEY_RING_PAGE;
		if (parley_ring_push(&r, "hi", 2) != PARLEY_RING_OK)
			_exit(1);
		struct { struct parley_vmctl_hdr h; struct parley_vmctl_status s; }
			f = { { PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION,
				PARLEY_VMCTL_WAKE, sizeof(f.s), 0 },
			      { PARLEY_OK, ch.rep.handle } };
		_exit(write(pair[1], &f, sizeof(f)) == sizeof(f) ? 0 : 1);
	}
	cr_assert_eq(pl_chan_wait(&ctl, &ch), 0);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert_eq(st, 0);
	cr_assert_eq(ctl.lost_wakes, 0);
	char buf[8];
	uint32_t len;
	cr_assert_eq(pl_chan_recv(&ch, buf, sizeof(buf), &len), PARLEY_RING_OK);
	cr_assert_eq(len, 2);
	agent_status(PARLEY_VMCTL_WAKE, 0, PARLEY_E_CLOSED, ch.rep.handle);
	cr_assert_eq(pl_chan_wait(&ctl, &ch), PL_STATUS(PARLEY_E_CLOSED));
	ctl.ended_status = 0;
	agent_status(PARLEY_VMCTL_STATUS, 0, 0, ch.rep.handle);
	cr_assert_eq(pl_chan_wait(&ctl, &ch), -EPROTO);
	struct parley_vmctl_hdr h = { PARLEY_VMCTL_MAGIC, PARLEY_VMCTL_VERSION,
				      PARLEY_VMCTL_WAKE, 8, 0 };
	cr_assert_eq(write(pair[1], &h, 5), 5);
	cr_assert_eq(pl_chan_wait(&ctl, &ch), -ETIMEDOUT);
	cr_assert_eq(ctl.in_len, 0);
	pl_chan_unmap(&ch);
}
