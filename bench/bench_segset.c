/*
 * Suite `segset`: fan-out through a segment-set pipe (issue 14).
 *
 *   BENCH segset_fanout_msgs_per_s             one writer, 8 readers,
 *                                              64-byte messages
 *   BENCH segset_fanout_baseline_msgs_per_s    the same pipe, 1 reader
 *                                              (the baseline, same run)
 *
 * Members are host processes mapping the set's memory exactly as a vmm
 * does (agent/ipc/segmem.c's descriptors: the writer's segment read-write,
 * the rest read-only), running the SDK's pipe code (guest/lib/segset.c);
 * partitions attaching through SEG_ATTACH are not wired yet. A message
 * counts when the writer has written it and all readers have read it: the
 * figure is messages written per second, each delivered to every reader.
 * Readers and writer spin and yield when there is nothing to do; on a
 * machine with fewer CPUs than members the scheduler dominates (stderr
 * says how many CPUs there were).
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/ipc/segmem.h"
#include "bench/bench.h"
#include "common/segset.h"
#include <parley/segsdk.h>

#define MSGS 200000u
#define MSG_BYTES 64
#define RUNS 3

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int make_set(unsigned readers, struct segmem *sm)
{
	char doc[2048];
	int n = snprintf(doc, sizeof(doc), "{\"segsets\":[{\"name\":\"fan\","
			 "\"members\":[\"w\"");
	for (unsigned i = 0; i < readers; i++)
		n += snprintf(doc + n, sizeof(doc) - (size_t)n, ",\"r%u\"", i);
	snprintf(doc + n, sizeof(doc) - (size_t)n,
		 "],\"segments\":[{\"name\":\"fan\",\"kind\":\"pipe\","
		 "\"writer\":\"w\",\"size\":\"64K\"}]}]}");
	struct segset_doc d;
	struct parley_err err = { 0 };
	uint8_t *t;
	size_t len;
	int rc = segset_doc_parse(doc, strlen(doc), NULL, &d, &err);
	if (rc == 0)
		rc = segset_compile(&d.s[0], &t, &len, &err);
	if (rc == 0) {
		rc = segmem_create(sm, t, len, &err);
		free(t);
	}
	segset_doc_free(&d);
	if (rc < 0)
		bench_note("segset: %s", err.msg);
	for (unsigned m = 0; rc == 0 && m <= readers; m++)
		rc = segmem_join(sm, m);
	return rc;
}

static uint8_t *map_view(const struct segmem *sm, uint32_t member)
{
	struct segmem_view v;
	if (segmem_view(sm, member, &v) < 0)
		return NULL;
	uint8_t *base = mmap(NULL, v.window_size, PROT_NONE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return NULL;
	for (unsigned i = 0; i < v.n; i++)
		if (mmap(base + v.s[i].off, v.s[i].len,
			 PROT_READ | (v.s[i].readonly ? 0 : PROT_WRITE),
			 MAP_SHARED | MAP_FIXED, v.s[i].fd, 0) == MAP_FAILED)
			return NULL;
	return base;
}

/* One member: 0 when it wrote / read all MSGS messages intact. */
static int member(const struct segmem *sm, uint32_t self)
{
	uint8_t *base = map_view(sm, self);
	static struct parley_segtab t;
	if (!base || parley_segtab_read(base, PARLEY_SEGSET_PAGE, &t))
		return 2;
	struct parley_seg_pipe p;
	int rc = self == 0 ? parley_seg_pipe_writer(&p, &t, base, 0, "fan")
			   : parley_seg_pipe_reader(&p, &t, base, self, "fan");
	if (rc)
		return 3;
	uint8_t msg[MSG_BYTES];
	for (uint32_t i = 0; i < MSGS;) {
		uint32_t len;
		if (self == 0) {
			memset(msg, (int)(i & 0xff), sizeof(msg));
			memcpy(msg, &i, sizeof(i));
			rc = parley_seg_send(&p, msg, sizeof(msg));
		} else {
			rc = parley_seg_recv(&p, msg, sizeof(msg), &len);
			uint32_t seq;
			memcpy(&seq, msg, sizeof(seq));
			if (rc == 0 && (len != MSG_BYTES || seq != i ||
					msg[MSG_BYTES - 1] != (i & 0xff)))
				return 4;
		}
		if (rc == PARLEY_SEG_OK)
			i++;
		else if (rc == PARLEY_SEG_AGAIN)
			sched_yield();
		else
			return 5;
	}
	return 0;
}

/* Messages per second for one writer and `readers` readers; < 0 on
 * failure. */
static double run_once(unsigned readers)
{
	struct segmem sm;
	if (make_set(readers, &sm) < 0)
		return -1;
	pid_t pid[1 + 8];
	uint64_t t0 = now_ns();
	/* readers first, so they are mapped before the writer starts */
	for (unsigned m = readers + 1; m-- > 0;) {
		pid[m] = fork();
		if (pid[m] == 0)
			_exit(member(&sm, m));
	}
	int ok = 1;
	for (unsigned m = 0; m <= readers; m++) {
		int st;
		if (pid[m] < 0 || waitpid(pid[m], &st, 0) != pid[m] ||
		    !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			bench_note("member %u failed", m);
			ok = 0;
		}
	}
	uint64_t dt = now_ns() - t0;
	segmem_close(&sm);
	return ok ? MSGS / (dt / 1e9) : -1;
}

static int figure(const char *name, unsigned readers)
{
	double v[RUNS];
	for (unsigned i = 0; i < RUNS; i++) {
		v[i] = run_once(readers);
		if (v[i] < 0)
			return -1;
	}
	char label[64];
	snprintf(label, sizeof(label), "%u reader(s)", readers);
	double med = bench_summary(label, v, RUNS, 1, "msgs/s");
	bench_figure(name, med, "msgs/s");
	return 0;
}

int main(void)
{
	bench_note("segset: %u messages of %d bytes, %d runs each, %ld CPUs; "
		   "members are host processes on the SDK's pipe",
		   MSGS, MSG_BYTES, RUNS, sysconf(_SC_NPROCESSORS_ONLN));
	int rc = figure("segset_fanout_baseline_msgs_per_s", 1);
	if (figure("segset_fanout_msgs_per_s", 8) < 0)
		rc = -1;
	return rc < 0 ? 1 : 0;
}
