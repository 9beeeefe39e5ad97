/* The host baselines the channel figures are ratios to, measured in the
 * same run: glibc memcpy in this process, and an AF_UNIX socketpair
 * between this process and a forked child. No partition runs meanwhile. */
#include "bench/chan_bench.h"
#include "agent/ctl/clock.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define RING 0x100000u  /* as the channel's ring: 1 MiB */
#define SRC  0x10000u   /* the biggest message */
#define RTT_MSG 64

static void *zalloc_aligned(size_t n)
{
	void *p = NULL;
	if (posix_memalign(&p, 4096, n) != 0)
		return NULL;
	memset(p, 0x5a, n); /* touched: no first-touch faults in the timing */
	return p;
}

static double copy_round(uint8_t *dst, const uint8_t *src, uint32_t size,
			 uint64_t msgs)
{
	uint64_t off = 0, t0 = mono_now_ns();
	for (uint64_t i = 0; i < msgs; i++) {
		memcpy(dst + off, src, size);
		off = (off + size) & (RING - 1);
	}
	/* The copies are the point: keep the compiler from dropping them. */
	__asm__ volatile("" : : "r"(dst) : "memory");
	return (double)(mono_now_ns() - t0);
}

double host_memcpy_bps(uint32_t size, uint64_t msgs, unsigned rounds)
{
	uint8_t *dst = zalloc_aligned(RING), *src = zalloc_aligned(SRC);
	double *bps = calloc(rounds, sizeof(double)), med = 0;
	if (dst && src && bps && size <= SRC && rounds) {
		copy_round(dst, src, size, msgs); /* warm-up */
		for (unsigned r = 0; r < rounds; r++)
			bps[r] = (double)(msgs * size) * 1e9 /
				 copy_round(dst, src, size, msgs);
		med = bench_pct(bps, rounds, 50);
	}
	free(dst);
	free(src);
	free(bps);
	return med;
}

static int io_all(int fd, void *buf, size_t n, bool wr)
{
	uint8_t *b = buf;
	while (n) {
		ssize_t k = wr ? write(fd, b, n) : read(fd, b, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

/* ---- where the two processes run ---------------------------------------- */

/* The two CPUs a placement uses: the first two this process may run on. */
static int two_cpus(int cpu[2])
{
	cpu_set_t set;
	int n = 0;
	if (sched_getaffinity(0, sizeof(set), &set) < 0)
		return -errno;
	for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
		if (CPU_ISSET(c, &set))
			cpu[n++] = c;
	return n == 2 ? 0 : -ENOTSUP;
}

static int pin_to(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : 0;
}

struct place {
	cpu_set_t saved;   /* this process's affinity before */
	int child_cpu;     /* -1: anywhere */
};

/* This process on the first CPU (unless SOCK_ANY); the child's CPU
 * chosen. place_end() restores our affinity. */
static int place_begin(enum sock_place where, struct place *pl,
		       struct parley_err *err)
{
	int cpu[2] = { -1, -1 };
	pl->child_cpu = -1;
	int rc = sched_getaffinity(0, sizeof(pl->saved), &pl->saved) < 0
			 ? -errno : 0;
	if (rc == 0 && where != SOCK_ANY)
		rc = two_cpus(cpu);
	if (rc == 0 && where != SOCK_ANY)
		rc = pin_to(cpu[0]);
	if (rc < 0)
		return perr(err, rc, "placing the socketpair's processes: %s",
			    strerror(-rc));
	pl->child_cpu = where == SOCK_APART ? cpu[1] : cpu[0];
	return 0;
}

static void place_end(struct place *pl)
{
	sched_setaffinity(0, sizeof(pl->saved), &pl->saved);
}

/* A connected pair and a child holding the other end, on its CPU. */
static int spawn_peer(int sv[2], pid_t *pid, int child_cpu,
		      struct parley_err *err)
{
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return perr(err, -errno, "socketpair: %m");
	*pid = fork();
	if (*pid < 0) {
		close(sv[0]);
		close(sv[1]);
		return perr(err, -errno, "fork: %m");
	}
	close(sv[*pid == 0 ? 0 : 1]);
	if (*pid == 0 && child_cpu >= 0 && pin_to(child_cpu) < 0)
		_exit(1);
	return 0;
}

static int end_peer(int fd, pid_t pid, int rc, struct parley_err *err)
{
	int st;
	close(fd);
	if (rc < 0)
		kill(pid, SIGKILL);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		rc = rc < 0 ? rc : -EPROTO;
	return rc < 0 ? perr(err, rc, "socketpair peer failed") : 0;
}

/* ---- message rate ------------------------------------------------------- */

/* Messages go `batch` at a time: one write() of batch * size bytes, and
 * the reader read()s that many bytes at a time, as the channel pushes and
 * pops up to 32 messages per index publish. The last of a round may be
 * shorter. */
struct rate_shape {
	uint32_t size, batch;
	uint64_t msgs;
};

static size_t chunk_of(const struct rate_shape *sh, uint64_t done)
{
	uint64_t left = sh->msgs - done;
	return (size_t)(left < sh->batch ? left : sh->batch) * sh->size;
}

/* The reader: every message, then one byte back per round. */
static void rate_child(int fd, const struct rate_shape *sh, unsigned rounds)
{
	static uint8_t buf[SRC];
	uint8_t ack = 1;
	for (unsigned r = 0; r < rounds; r++) {
		for (uint64_t i = 0; i < sh->msgs; i += sh->batch)
			if (io_all(fd, buf, chunk_of(sh, i), false) < 0)
				_exit(1);
		if (io_all(fd, &ack, 1, true) < 0)
			_exit(1);
	}
	_exit(0);
}

/* One round: the messages written, then the reader's byte saying it has
 * them. */
static double rate_round(int fd, const uint8_t *msg,
			 const struct rate_shape *sh)
{
	uint8_t ack;
	uint64_t t0 = mono_now_ns();
	for (uint64_t i = 0; i < sh->msgs; i += sh->batch)
		if (io_all(fd, (void *)msg, chunk_of(sh, i), true) < 0)
			return -1;
	if (io_all(fd, &ack, 1, false) < 0)
		return -1;
	return (double)sh->msgs * 1e9 / (double)(mono_now_ns() - t0);
}

/* rounds + 1 rounds, the first untimed, into v[0..rounds). */
static int rate_rounds(int fd, const struct rate_shape *sh, unsigned rounds,
		       double *v)
{
	static uint8_t msg[SRC];
	if (rate_round(fd, msg, sh) < 0)
		return -EIO;
	for (unsigned r = 0; r < rounds; r++)
		if ((v[r] = rate_round(fd, msg, sh)) < 0)
			return -EIO;
	return 0;
}

int host_sock_rate(enum sock_place where, uint32_t size, uint32_t batch,
		   uint64_t msgs, unsigned rounds, double *msgs_per_s,
		   struct parley_err *err)
{
	int sv[2];
	pid_t pid;
	struct place pl;
	double v[64];
	const struct rate_shape sh = { size, batch, msgs };
	if (!size || !batch || (uint64_t)size * batch > SRC || !msgs ||
	    !rounds || rounds > 64)
		return perr(err, -EINVAL, "socketpair rate: bad arguments");
	int rc = place_begin(where, &pl, err);
	if (rc < 0)
		return rc;
	rc = spawn_peer(sv, &pid, pl.child_cpu, err);
	if (rc == 0 && pid == 0)
		rate_child(sv[1], &sh, rounds + 1);
	if (rc == 0)
		rc = end_peer(sv[0], pid, rate_rounds(sv[0], &sh, rounds, v),
			      err);
	place_end(&pl);
	if (rc == 0)
		*msgs_per_s = bench_pct(v, rounds, 50);
	return rc;
}

/* ---- round trips -------------------------------------------------------- */

static void echo_child(int fd, unsigned n)
{
	uint8_t buf[RTT_MSG];
	for (unsigned i = 0; i < n; i++)
		if (io_all(fd, buf, sizeof(buf), false) < 0 ||
		    io_all(fd, buf, sizeof(buf), true) < 0)
			_exit(1);
	_exit(0);
}

static int rtt_rounds(int fd, unsigned warm, unsigned n, double *ns)
{
	uint8_t buf[RTT_MSG] = { 0 };
	uint64_t t = mono_now_ns();
	for (unsigned i = 0; i < warm + n; i++) {
		if (io_all(fd, buf, sizeof(buf), true) < 0 ||
		    io_all(fd, buf, sizeof(buf), false) < 0)
			return -EIO;
		uint64_t now = mono_now_ns();
		if (i >= warm)
			ns[i - warm] = (double)(now - t);
		t = now;
	}
	return 0;
}

int host_sock_rtt(enum sock_place where, unsigned warm, unsigned n,
		  double **ns, struct parley_err *err)
{
	int sv[2];
	pid_t pid;
	struct place pl;
	*ns = calloc(n ? n : 1, sizeof(double));
	if (!*ns)
		return perr(err, -ENOMEM, "out of memory");
	int rc = place_begin(where, &pl, err);
	if (rc < 0)
		return rc;
	rc = spawn_peer(sv, &pid, pl.child_cpu, err);
	if (rc == 0 && pid == 0)
		echo_child(sv[1], warm + n);
	if (rc == 0)
		rc = end_peer(sv[0], pid, rtt_rounds(sv[0], warm, n, *ns), err);
	place_end(&pl);
	return rc;
}

/* ---- shared-memory floor ----------------------------------------------- */

struct shm_pp {
	_Alignas(64) volatile uint64_t ping;
	_Alignas(64) volatile uint64_t pong;
	uint64_t n;
	int cpu;
};

static void *shm_echo(void *arg)
{
	struct shm_pp *s = arg;
	pin_to(s->cpu);
	for (uint64_t i = 1; i <= s->n; i++) {
		while (s->ping != i)
			__builtin_ia32_pause();
		s->pong = i;
	}
	return NULL;
}

int host_shm_rtt(unsigned batches, unsigned per_batch, double *median_ns,
		 struct parley_err *err)
{
	int cpu[2];
	cpu_set_t saved;
	static struct shm_pp s;
	double v[64];
	pthread_t t;
	if (batches > 64 || !batches || !per_batch)
		return perr(err, -EINVAL, "shm round trips: bad arguments");
	int rc = two_cpus(cpu);
	if (rc == 0 && sched_getaffinity(0, sizeof(saved), &saved) < 0)
		rc = -errno;
	if (rc < 0)
		return perr(err, rc, "two CPUs needed: %s", strerror(-rc));
	s = (struct shm_pp){ .n = (uint64_t)batches * per_batch,
			     .cpu = cpu[1] };
	pin_to(cpu[0]);
	if ((rc = pthread_create(&t, NULL, shm_echo, &s)) != 0) {
		sched_setaffinity(0, sizeof(saved), &saved);
		return perr(err, -rc, "pthread_create: %s", strerror(rc));
	}
	for (uint64_t b = 0, i = 1; b < batches; b++) {
		uint64_t t0 = mono_now_ns();
		for (unsigned k = 0; k < per_batch; k++, i++) {
			s.ping = i;
			while (s.pong != i)
				__builtin_ia32_pause();
		}
		v[b] = (double)(mono_now_ns() - t0) / per_batch;
	}
	pthread_join(t, NULL);
	sched_setaffinity(0, sizeof(saved), &saved);
	*median_ns = bench_pct(v, batches, 50);
	return 0;
}

void host_note_floor(const char *when)
{
	struct parley_err err = { 0 };
	double ns = 0;
	if (host_shm_rtt(20, 5000, &ns, &err) < 0)
		bench_note("cache-line floor: %s", perr_msg(&err));
	else
		bench_note("floor %s: host threads bouncing a cache line "
			   "between the 2 CPUs: %.3f us", when, ns / 1e3);
}
