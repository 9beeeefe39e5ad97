/*
 * Segment sets in memory (issue 14): agent/ipc/segmem.c's memfds mapped by
 * member processes the way a vmm maps them (each segment from the
 * descriptor the member is handed: writable only for what it writes), and
 * the SDK's pipes and queues over them. Covers: 4 members, one writer per
 * segment, 100,000 messages with checksums through a pipe and a queue;
 * a write to a read-only segment stopped by the fault and a writable
 * mapping refused by the kernel; removal revoking a member's segments for
 * everyone with the others told (every end sees CHANGED, the revoked one
 * GONE; once cut, a kept mapping faults); a late joiner seeing
 * the current table; hostile pipe indices refused.
 *
 * Still to come with the vmm path (SEG_ATTACH): the same with partitions
 * on both backends, and the integrity check at attach.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent/ipc/segmem.h"
#include "common/crc32c.h"
#include "common/segset.h"
#include "tests/helpers/testutil.h"
#include <parley/segsdk.h>

static const char doc[] =
	"{\"segsets\":[{\"name\":\"bus\",\"members\":[\"hub\",\"left\","
	"\"right\",\"mon\"],\"segments\":["
	"{\"name\":\"cmd\",\"kind\":\"pipe\",\"writer\":\"hub\",\"size\":\"16K\"},"
	"{\"name\":\"ev.left\",\"kind\":\"queue\",\"queue\":\"events\","
	"\"writer\":\"left\",\"size\":\"8K\",\"readers\":[\"hub\"]},"
	"{\"name\":\"ev.right\",\"kind\":\"queue\",\"queue\":\"events\","
	"\"writer\":\"right\",\"size\":\"8K\",\"readers\":[\"hub\"]},"
	"{\"name\":\"ev.mon\",\"kind\":\"queue\",\"queue\":\"events\","
	"\"writer\":\"mon\",\"size\":\"8K\",\"readers\":[\"hub\"]},"
	"{\"name\":\"status\",\"kind\":\"area\",\"writer\":\"agent\","
	"\"size\":4096}]}]}";

enum { HUB, LEFT, RIGHT, MON, NMEM };

static void make_set(struct segmem *sm)
{
	struct segset_doc d;
	struct parley_err err = { 0 };
	cr_assert_eq(segset_doc_parse(doc, strlen(doc), NULL, &d, &err), 0,
		     "%s", err.msg);
	uint8_t *t;
	size_t len;
	cr_assert_eq(segset_compile(&d.s[0], &t, &len, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(segmem_create(sm, t, len, &err), 0, "%s", err.msg);
	free(t);
	segset_doc_free(&d);
}

/* Map a member's view as its vmm would: a reserved window, each segment
 * at its offset from the descriptor the member is handed. */
static uint8_t *map_view(const struct segmem *sm, uint32_t member)
{
	struct segmem_view v;
	cr_assert_eq(segmem_view(sm, member, &v), 0);
	uint8_t *base = mmap(NULL, v.window_size, PROT_NONE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(base, MAP_FAILED);
	for (unsigned i = 0; i < v.n; i++) {
		int prot = PROT_READ | (v.s[i].readonly ? 0 : PROT_WRITE);
		void *p = mmap(base + v.s[i].off, v.s[i].len, prot,
			       MAP_SHARED | MAP_FIXED, v.s[i].fd, 0);
		cr_assert_neq(p, MAP_FAILED, "segment %u: %s", v.s[i].seg,
			      strerror(errno));
	}
	return base;
}

static void read_table(const uint8_t *base, struct parley_segtab *t)
{
	int rc;
	while ((rc = parley_segtab_read(base, PARLEY_SEGSET_PAGE, t)) ==
	       PARLEY_SEG_AGAIN)
		sched_yield();
	cr_assert_eq(rc, PARLEY_SEG_OK);
}

/* ---- 100,000 messages through a pipe and a queue ----------------------- */

#define MSGS 100000u
#define QMSGS (MSGS / 3 + 1)  /* per queue writer; ~100,000 in all */

struct msg {
	uint32_t from, len;
	uint64_t seq;
	uint8_t body[200];
};

/* A message whose length and bytes follow from (from, seq), with a
 * CRC-32C of what precedes it in its last four bytes. */
static uint32_t make_msg(struct msg *m, uint32_t from, uint64_t seq)
{
	m->from = from;
	m->seq = seq;
	m->len = (uint32_t)(seq * 7919 % 180);
	for (uint32_t i = 0; i < m->len; i++)
		m->body[i] = (uint8_t)(seq * 31 + i * 17 + from);
	uint32_t total = 16 + m->len;
	uint32_t crc = crc32c(0, m, total);
	memcpy((uint8_t *)m + total, &crc, 4);
	return total + 4;
}

static int check_msg(const struct msg *m, uint32_t len, uint32_t from,
		     uint64_t seq)
{
	struct msg want;
	uint32_t n = make_msg(&want, from, seq);
	uint32_t crc;
	if (len != n || len < 20)
		return 0;
	memcpy(&crc, (const uint8_t *)m + len - 4, 4);
	return crc == crc32c(0, m, len - 4) && !memcmp(m, &want, n);
}

/* One member process: exit 0 when everything it got was right. */
static int member_run(const struct segmem *sm, uint32_t self)
{
	uint8_t *base = map_view(sm, self);
	struct parley_segtab *t = malloc(sizeof(*t));
	read_table(base, t);
	struct parley_seg_pipe *cmd = malloc(sizeof(*cmd)), *ev = NULL;
	struct parley_seg_queue *q = NULL;
	uint64_t sent = 0, got = 0, qsent = 0;
	uint64_t want = self == HUB ? 3 * QMSGS : MSGS;
	uint64_t next[NMEM] = { 0 };
	struct msg m;
	if (self == HUB) {
		if (parley_seg_pipe_writer(cmd, t, base, self, "cmd"))
			return 10;
		q = malloc(sizeof(*q));
		if (parley_seg_queue_reader(q, t, base, self, "events") ||
		    q->n != 3)
			return 11;
	} else {
		if (parley_seg_pipe_reader(cmd, t, base, self, "cmd"))
			return 12;
		ev = malloc(sizeof(*ev));
		if (parley_seg_queue_writer(ev, t, base, self, "events"))
			return 13;
	}
	/* Everyone is PRESENT before anyone starts (the parent joined all):
	 * the writers count every reader's position. */
	parley_seg_pipe_update(cmd, t);
	if (ev)
		parley_seg_pipe_update(ev, t);
	while (got < want || (self == HUB ? sent < MSGS : qsent < QMSGS)) {
		int progress = 0;
		if (self == HUB && sent < MSGS) {
			uint32_t n = make_msg(&m, HUB, sent);
			int rc = parley_seg_send(cmd, &m, n);
			if (rc == PARLEY_SEG_OK)
				sent++, progress = 1;
			else if (rc != PARLEY_SEG_AGAIN)
				return 20;
		}
		if (self != HUB && qsent < QMSGS) {
			uint32_t n = make_msg(&m, self, qsent);
			int rc = parley_seg_send(ev, &m, n);
			if (rc == PARLEY_SEG_OK)
				qsent++, progress = 1;
			else if (rc != PARLEY_SEG_AGAIN)
				return 21;
		}
		if (got < want) {
			uint32_t len, from = HUB;
			int rc = self == HUB
				? parley_seg_queue_recv(q, &m, sizeof(m), &len,
							&from)
				: parley_seg_recv(cmd, &m, sizeof(m), &len);
			if (rc == PARLEY_SEG_OK) {
				/* in order, per writer, nothing lost */
				if (from >= NMEM ||
				    !check_msg(&m, len, from, next[from]))
					return 30;
				next[from]++;
				got++;
				progress = 1;
			} else if (rc != PARLEY_SEG_AGAIN) {
				return 31;
			}
		}
		if (!progress)
			sched_yield();
	}
	if (self == HUB && (next[LEFT] != QMSGS || next[RIGHT] != QMSGS ||
			    next[MON] != QMSGS))
		return 40;
	return 0;
}

Test(segset, four_members_100k_messages_through_pipe_and_queue,
     .timeout = 600)
{
	struct segmem sm;
	make_set(&sm);
	for (uint32_t m = 0; m < NMEM; m++)
		cr_assert_eq(segmem_join(&sm, m), 0);
	pid_t parent = getpid(), pid[NMEM];
	for (uint32_t m = 0; m < NMEM; m++) {
		pid[m] = fork();
		cr_assert_geq(pid[m], 0);
		if (pid[m] == 0) {
			t_child_dies_with_parent(parent);
			_exit(member_run(&sm, m));
		}
	}
	/* A member that fails stops the others (they would wait for it). */
	for (uint32_t done = 0; done < NMEM; done++) {
		int st;
		pid_t w = waitpid(-1, &st, 0);
		cr_assert_gt(w, 0);
		uint32_t m = 0;
		while (m < NMEM && pid[m] != w)
			m++;
		cr_assert_lt(m, NMEM);
		pid[m] = 0;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			for (uint32_t k = 0; k < NMEM; k++)
				if (pid[k] > 0)
					kill(pid[k], SIGKILL);
			cr_assert_fail("member %u: status 0x%x", m, st);
		}
	}
	segmem_close(&sm);
}

/* ---- what the kernel refuses ------------------------------------------ */

/* A write fault on a mapping that exists but is read-only: what stops a
 * partition (the vmm reports it; ASan's own handler is replaced here so
 * the exit status says which fault it was). */
#define EXIT_ACCERR 77
static void on_segv(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)uc;
	_exit(si->si_code == SEGV_ACCERR ? EXIT_ACCERR : 78);
}

/* Run f in a child; its wait status. */
static int in_child(void (*f)(struct segmem *), struct segmem *sm)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct sigaction sa = { .sa_sigaction = on_segv,
					.sa_flags = SA_SIGINFO };
		sigaction(SIGSEGV, &sa, NULL);
		f(sm);
		_exit(0);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return st;
}

static void write_table(struct segmem *sm)
{
	uint8_t *base = map_view(sm, LEFT);
	base[8] = 1;  /* the table: read-only for every member */
}

static void write_peer_pipe(struct segmem *sm)
{
	uint8_t *base = map_view(sm, LEFT);
	struct parley_segtab t;
	read_table(base, &t);
	/* hub's pipe: left may read it, never write it */
	base[t.seg[parley_segtab_find(&t, "cmd")].offset + 200] = 1;
}

static void write_own_pipe(struct segmem *sm)
{
	uint8_t *base = map_view(sm, LEFT);
	struct parley_segtab t;
	read_table(base, &t);
	base[t.seg[parley_segtab_find(&t, "ev.left")].offset + 200] = 1;
}

Test(segset, write_to_a_read_only_segment_is_stopped_by_the_fault)
{
	struct segmem sm;
	make_set(&sm);
	for (uint32_t m = 0; m < NMEM; m++)
		segmem_join(&sm, m);
	int st = in_child(write_table, &sm);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == EXIT_ACCERR, "0x%x", st);
	st = in_child(write_peer_pipe, &sm);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == EXIT_ACCERR, "0x%x", st);
	st = in_child(write_own_pipe, &sm);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "own: 0x%x", st);
	/* The descriptor a reader gets cannot be mapped writable, nor made
	 * writable, nor grown or cut. */
	struct segmem_view v;
	segmem_view(&sm, LEFT, &v);
	unsigned ro = 0;
	for (unsigned i = 0; i < v.n; i++) {
		if (!v.s[i].readonly)
			continue;
		ro++;
		void *p = mmap(NULL, v.s[i].len, PROT_READ | PROT_WRITE,
			       MAP_SHARED, v.s[i].fd, 0);
		cr_expect_eq(p, MAP_FAILED, "segment %u writable", v.s[i].seg);
		cr_expect_eq(errno, EACCES);
		p = mmap(NULL, v.s[i].len, PROT_READ, MAP_SHARED, v.s[i].fd, 0);
		cr_assert_neq(p, MAP_FAILED);
		cr_expect_eq(mprotect(p, v.s[i].len, PROT_READ | PROT_WRITE),
			     -1);
		munmap(p, v.s[i].len);
		cr_expect_eq(ftruncate(v.s[i].fd, 0), -1);
	}
	/* table, cmd, status, and the 3 other position pages */
	cr_expect_eq(ro, 6);
	/* left maps nothing of right's and mon's queue segments */
	for (unsigned i = 0; i < v.n; i++)
		cr_expect(v.s[i].seg != 3 && v.s[i].seg != 4, "seg %u",
			  v.s[i].seg);
	/* and no one can grow a segment it writes */
	for (unsigned i = 0; i < v.n; i++)
		if (!v.s[i].readonly)
			cr_expect_eq(ftruncate(v.s[i].fd, (off_t)v.s[i].len * 2),
				     -1);
	segmem_close(&sm);
}

/* ---- removal, notification, late joiners ------------------------------ */

/* A read of memory cut under a mapping: SIGBUS (ASan's handler is
 * replaced so the exit status says so). */
#define EXIT_BUS 79
static void on_bus(int sig, siginfo_t *si, void *uc)
{
	(void)sig, (void)si, (void)uc;
	_exit(EXIT_BUS);
}

Test(segset, removed_member_is_revoked_for_everyone_and_others_told)
{
	struct segmem sm;
	make_set(&sm);
	for (uint32_t m = 0; m < NMEM; m++)
		segmem_join(&sm, m);
	uint8_t *hub = map_view(&sm, HUB);
	struct parley_segtab *t = malloc(sizeof(*t));
	read_table(hub, t);
	uint64_t e0 = t->hdr.epoch;
	int evl = parley_segtab_find(t, "ev.left");
	uint64_t evl_off = t->seg[evl].offset;
	struct parley_seg_queue *q = malloc(sizeof(*q));
	cr_assert_eq(parley_seg_queue_reader(q, t, hub, HUB, "events"), 0);
	cr_assert_eq(q->n, 3);
	struct parley_seg_pipe *evp = malloc(sizeof(*evp));
	cr_assert_eq(parley_seg_pipe_reader(evp, t, hub, HUB, "ev.left"), 0);

	uint64_t notify = segmem_remove(&sm, LEFT);
	cr_expect_eq(notify, (1u << HUB) | (1u << RIGHT) | (1u << MON),
		     "the others are told");
	read_table(hub, t);
	cr_expect_eq(t->hdr.epoch, e0 + 2, "one change, seen by the epoch");
	cr_expect_eq(t->member[LEFT].state, PARLEY_MEMBER_REMOVED);
	cr_expect_eq(t->seg[evl].state, PARLEY_SEG_REVOKED);
	cr_expect_eq(t->seg[t->member[LEFT].pos_seg].state,
		     PARLEY_SEG_REVOKED);
	/* Every end sees the change before its next access; the revoked
	 * one learns it is gone. */
	uint8_t buf[256];
	uint32_t len, from;
	cr_expect_eq(parley_seg_queue_recv(q, buf, sizeof(buf), &len, &from),
		     PARLEY_SEG_CHANGED);
	cr_expect_eq(parley_seg_recv(evp, buf, sizeof(buf), &len),
		     PARLEY_SEG_CHANGED);
	cr_expect_eq(parley_seg_pipe_update(evp, t), PARLEY_SEG_GONE);
	/* The SDK skips it from now on. */
	cr_expect_eq(parley_seg_queue_reader(q, t, hub, HUB, "events"), 0);
	cr_expect_eq(q->n, 2);
	struct parley_seg_pipe *p = malloc(sizeof(*p));
	cr_expect_eq(parley_seg_pipe_writer(p, t, hub, LEFT, "ev.left"),
		     PARLEY_SEG_GONE);
	/* Until the agent cuts it (after the others confirmed), the memory
	 * is still there; then the kernel enforces it: the old mapping of
	 * the cut memfd faults. */
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(hub[evl_off] == 0 ? 0 : 1);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "0x%x", st);
	segmem_cut(&sm, LEFT);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct sigaction sa = { .sa_sigaction = on_bus,
					.sa_flags = SA_SIGINFO };
		sigaction(SIGBUS, &sa, NULL);
		volatile uint8_t *x = hub + evl_off;
		_exit(x[0]);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == EXIT_BUS, "0x%x", st);
	/* A new view of hub no longer maps it. */
	struct segmem_view v;
	segmem_view(&sm, HUB, &v);
	for (unsigned i = 0; i < v.n; i++)
		cr_expect_neq(v.s[i].seg, (uint32_t)evl);
	/* Rejoining gives left fresh memory, LIVE again. */
	cr_assert_eq(segmem_join(&sm, LEFT), 0);
	read_table(hub, t);
	cr_expect_eq(t->member[LEFT].state, PARLEY_MEMBER_PRESENT);
	cr_expect_eq(t->member[LEFT].joins, 2);
	cr_expect_eq(t->seg[evl].state, PARLEY_SEG_LIVE);
	free(p), free(q), free(t), free(evp);
	segmem_close(&sm);
}

Test(segset, late_joiner_sees_the_current_table_and_new_messages)
{
	struct segmem sm;
	make_set(&sm);
	segmem_join(&sm, HUB);
	segmem_join(&sm, LEFT);
	uint8_t *hb = map_view(&sm, HUB), *lb = map_view(&sm, LEFT);
	struct parley_segtab *t = malloc(sizeof(*t));
	read_table(hb, t);
	struct parley_seg_pipe w, rl, rr;
	cr_assert_eq(parley_seg_pipe_writer(&w, t, hb, HUB, "cmd"), 0);
	cr_assert_eq(parley_seg_pipe_reader(&rl, t, lb, LEFT, "cmd"), 0);
	cr_expect_eq(w.readers, 1u << LEFT, "only present readers count");
	struct msg m;
	uint32_t len;
	for (uint64_t i = 0; i < 10; i++) {
		uint32_t n = make_msg(&m, HUB, i);
		cr_assert_eq(parley_seg_send(&w, &m, n), 0);
		cr_assert_eq(parley_seg_recv(&rl, &m, sizeof(m), &len), 0);
		cr_assert(check_msg(&m, len, HUB, i));
	}
	/* right joins late */
	segmem_join(&sm, RIGHT);
	uint8_t *rb = map_view(&sm, RIGHT);
	struct parley_segtab *tr = malloc(sizeof(*tr));
	read_table(rb, tr);
	cr_expect_eq(tr->member[HUB].state, PARLEY_MEMBER_PRESENT);
	cr_expect_eq(tr->member[LEFT].state, PARLEY_MEMBER_PRESENT);
	cr_expect_eq(tr->member[RIGHT].state, PARLEY_MEMBER_PRESENT);
	cr_expect_eq(tr->member[MON].state, PARLEY_MEMBER_ABSENT);
	cr_assert_eq(parley_seg_pipe_reader(&rr, tr, rb, RIGHT, "cmd"), 0);
	/* nothing was overwritten since position 0: it reads it all */
	for (uint64_t i = 0; i < 10; i++) {
		cr_assert_eq(parley_seg_recv(&rr, &m, sizeof(m), &len), 0);
		cr_assert(check_msg(&m, len, HUB, i));
	}
	cr_expect_eq(parley_seg_recv(&rr, &m, sizeof(m), &len),
		     PARLEY_SEG_AGAIN);
	/* the ends see the change before they touch the ring again */
	uint32_t n = make_msg(&m, HUB, 10);
	cr_expect_eq(parley_seg_send(&w, &m, n), PARLEY_SEG_CHANGED);
	cr_expect_eq(parley_seg_recv(&rl, &m, sizeof(m), &len),
		     PARLEY_SEG_CHANGED);
	/* the writer counts right from now on */
	read_table(hb, t);
	cr_assert_eq(parley_seg_pipe_update(&w, t), 0);
	cr_assert_eq(parley_seg_pipe_update(&rl, t), 0);
	cr_expect_eq(w.readers, (1u << LEFT) | (1u << RIGHT));
	n = make_msg(&m, HUB, 10);
	cr_assert_eq(parley_seg_send(&w, &m, n), 0);
	cr_assert_eq(parley_seg_recv(&rr, &m, sizeof(m), &len), 0);
	cr_expect(check_msg(&m, len, HUB, 10));
	cr_assert_eq(parley_seg_recv(&rl, &m, sizeof(m), &len), 0);
	cr_expect(check_msg(&m, len, HUB, 10));
	/* a reader that does not read holds the writer back, no more */
	for (uint64_t i = 11;; i++) {
		n = make_msg(&m, HUB, i);
		int rc = parley_seg_send(&w, &m, n);
		if (rc == PARLEY_SEG_AGAIN)
			break;
		cr_assert_eq(rc, 0);
		cr_assert_lt(i, 10000, "never full");
	}
	/* mon joins after the ring went round: it starts at the head */
	while (parley_seg_recv(&rl, &m, sizeof(m), &len) == 0)
		;
	while (parley_seg_recv(&rr, &m, sizeof(m), &len) == 0)
		;
	segmem_join(&sm, MON);
	uint8_t *mb = map_view(&sm, MON);
	struct parley_seg_pipe rm;
	read_table(mb, tr);
	cr_assert_eq(parley_seg_pipe_reader(&rm, tr, mb, MON, "cmd"), 0);
	cr_expect_eq(rm.at, w.at);
	cr_expect_eq(parley_seg_recv(&rm, &m, sizeof(m), &len),
		     PARLEY_SEG_AGAIN);
	free(t), free(tr);
	segmem_close(&sm);
}

Test(segset, hostile_pipe_indices_are_refused)
{
	struct segmem sm;
	make_set(&sm);
	for (uint32_t m = 0; m < NMEM; m++)
		segmem_join(&sm, m);
	uint8_t *hb = map_view(&sm, HUB), *lb = map_view(&sm, LEFT);
	struct parley_segtab *t = malloc(sizeof(*t));
	read_table(hb, t);
	struct parley_seg_pipe w, r;
	cr_assert_eq(parley_seg_pipe_writer(&w, t, hb, HUB, "cmd"), 0);
	cr_assert_eq(parley_seg_pipe_reader(&r, t, lb, LEFT, "cmd"), 0);
	uint8_t buf[64];
	uint32_t len;
	/* head beyond what the ring holds */
	w.hdr->head = w.ring_size * 4;
	cr_expect_eq(parley_seg_recv(&r, buf, sizeof(buf), &len),
		     PARLEY_SEG_CORRUPT);
	/* head not 8-byte aligned */
	w.hdr->head = 12;
	cr_expect_eq(parley_seg_recv(&r, buf, sizeof(buf), &len),
		     PARLEY_SEG_CORRUPT);
	/* a record longer than what was written */
	w.hdr->head = 16;
	uint32_t rec[2] = { 4000, 0 };
	memcpy((void *)w.ring, rec, 8);
	cr_expect_eq(parley_seg_recv(&r, buf, sizeof(buf), &len),
		     PARLEY_SEG_CORRUPT);
	/* non-zero pad word */
	rec[0] = 4, rec[1] = 7;
	memcpy((void *)w.ring, rec, 8);
	cr_expect_eq(parley_seg_recv(&r, buf, sizeof(buf), &len),
		     PARLEY_SEG_CORRUPT);
	/* too big for the caller: left in place, _INVAL */
	rec[0] = 8, rec[1] = 0;
	memcpy((void *)w.ring, rec, 8);
	cr_expect_eq(parley_seg_recv(&r, buf, 4, &len), PARLEY_SEG_INVAL);
	cr_expect_eq(parley_seg_recv(&r, buf, sizeof(buf), &len), 0);
	cr_expect_eq(len, 8);
	/* a hostile reader position holds no one back */
	w.hdr->head = 0;
	w.at = 0;
	volatile struct parley_seg_pos *lp =
		(void *)(lb + t->seg[t->member[LEFT].pos_seg].offset);
	lp->at[w.seg].v = UINT64_MAX;
	for (int i = 0; i < 100; i++)
		cr_assert_eq(parley_seg_send(&w, buf, sizeof(buf)), 0);
	/* one that can never fit */
	static uint8_t huge[32768];
	cr_expect_eq(parley_seg_send(&w, huge, sizeof(huge)),
		     PARLEY_SEG_INVAL);
	/* only the writer sends, only readers receive */
	cr_expect_eq(parley_seg_send(&r, buf, 8), PARLEY_SEG_ACCESS);
	cr_expect_eq(parley_seg_recv(&w, buf, 8, &len), PARLEY_SEG_ACCESS);
	struct parley_seg_pipe x;
	cr_expect_eq(parley_seg_pipe_writer(&x, t, lb, LEFT, "cmd"),
		     PARLEY_SEG_ACCESS);
	cr_expect_eq(parley_seg_pipe_reader(&x, t, lb, RIGHT, "ev.left"),
		     PARLEY_SEG_ACCESS);
	cr_expect_eq(parley_seg_pipe_reader(&x, t, lb, LEFT, "status"),
		     PARLEY_SEG_INVAL);
	cr_expect_eq(parley_seg_pipe_reader(&x, t, lb, LEFT, "nope"),
		     PARLEY_SEG_NOENT);
	/* an area: the agent's, read-only for members */
	volatile uint8_t *a;
	uint64_t asz;
	int wr;
	cr_expect_eq(parley_seg_area(t, lb, LEFT, "status", &a, &asz, &wr), 0);
	cr_expect_eq(asz, 4096);
	cr_expect_eq(wr, 0);
	free(t);
	segmem_close(&sm);
}
