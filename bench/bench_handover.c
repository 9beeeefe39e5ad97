/*
 * Suite `handover` (bench_handover): the agent replaced by hand-over while
 * partitions run (agent/update_commit.c, agent/update_adopt.c).
 *
 * `parley-agent run` (this build's; once per backend present, kvm first,
 * the process backend's figures prefixed proc_) with one active ping/pong pair
 * streaming checksummed messages and BENCH_HANDOVER_IDLE idle pairs (ping
 * window=0: both wait in a channel receive), then HANDOVERS hand-overs in
 * a row (SIGUSR1; the stage holds this build's parley-agent and
 * parley-vmm: an agent handing over to its own build is enough to time
 * it), each new agent handing over to the next.
 *
 *   update_handover_pause_ms  median over the hand-overs of the time the
 *                             grant manager did not answer: from the old
 *                             agent's last request served to the moment the
 *                             new one serves (the new agent's own line
 *                             "grant manager paused X ms", both ends
 *                             CLOCK_MONOTONIC)
 *   update_msgs_lost          messages of the ping/pong stream not
 *                             confirmed by ping at its end (ping checks the
 *                             sequence and checksum of every reply and
 *                             stops at the first bad one)
 */
#include "bench/bench.h"
#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HANDOVERS 5
/* The stream: long enough to span the hand-overs with room to spare.
 * Channels on KVM here (nested, ~4,000 messages/s) are far slower than on
 * the process backend (~300,000/s). */
static long COUNT, REPORT;

static char dir[64];
static char out_path[PATH_MAX];

static char *slurp(void)
{
	uint8_t *buf;
	size_t len;
	struct parley_err err = { 0 };
	if (file_read_all(out_path, 256 << 20, &buf, &len, &err) < 0)
		return strdup("");
	char *s = realloc(buf, len + 1);
	s[len] = 0;
	return s;
}

static int count_of(const char *s, const char *needle)
{
	int n = 0;
	for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* Up to secs for the n-th `needle`; the output then, or NULL. */
static char *await(const char *needle, int n, int secs)
{
	for (int i = 0; i < secs * 100; i++) {
		char *s = slurp();
		if (count_of(s, needle) >= n)
			return s;
		free(s);
		usleep(10000);
	}
	return NULL;
}

static int put(const char *name, const char *text)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

static int spec(const char *name, const char *image, const char *cmdline)
{
	char text[512], file[96];
	snprintf(text, sizeof(text), "{\"name\":\"%s\",\"image\":\"%s\","
		 "\"memory\":\"8M\",\"cmdline\":\"%s\"}", name, image, cmdline);
	snprintf(file, sizeof(file), "%s.json", name);
	return put(file, text);
}

/* The specs and grants: pair 0 active, pairs 1..idle waiting. */
static int write_setup(int idle, char **specs)
{
	char cmd[256], name[32];
	char *grants = malloc(256 * (size_t)(idle + 1) + 64);
	strcpy(grants, "{\"grants\":[");
	for (int i = 0; i <= idle; i++) {
		char chan[32], g[256];
		snprintf(chan, sizeof(chan), i ? "idle%d" : "pingpong", i);
		snprintf(g, sizeof(g), "%s{\"channel\":\"%s\",\"endpoint_a\":"
			 "\"ping%d\",\"endpoint_b\":\"pong%d\",\"direction\":"
			 "\"both\",\"ring_bytes\":\"64K\","
			 "\"require_integrity\":false}", i ? "," : "", chan, i, i);
		strcat(grants, g);
		snprintf(cmd, sizeof(cmd), i ? "chan=%s count=2000000000 "
			 "window=0" : "chan=%s count=%ld report=%ld", chan,
			 COUNT, REPORT);
		snprintf(name, sizeof(name), "ping%d", i);
		if (spec(name, "ping.elf", cmd) < 0)
			return -1;
		specs[2 * i] = strdup(name);
		snprintf(cmd, sizeof(cmd), "chan=%s count=%ld", chan,
			 i ? 2000000000L : COUNT);
		snprintf(name, sizeof(name), "pong%d", i);
		if (spec(name, "pong.elf", cmd) < 0)
			return -1;
		specs[2 * i + 1] = strdup(name);
	}
	strcat(grants, "]}");
	int rc = put("grants.json", grants);
	free(grants);
	return rc;
}

static pid_t start_agent(const char *agent, const struct bench_env *e,
			 char **specs, int nspecs)
{
	const char *vmm = e->vmm, *image_dir = e->image_dir;
	char *argv[32 + 140];
	int n = 0;
	argv[n++] = (char *)agent;
	argv[n++] = "run";
	argv[n++] = "--backend";
	argv[n++] = e->backend == CTL_BACKEND_KVM ? "kvm" : "process";
	argv[n++] = "--vmm";
	argv[n++] = (char *)vmm;
	argv[n++] = "--image-dir";
	argv[n++] = (char *)image_dir;
	argv[n++] = "--policy";
	argv[n++] = "grants.json";
	argv[n++] = "--update-stage";
	argv[n++] = "stage";
	for (int i = 0; i < nspecs; i++) {
		static char file[140][48];
		snprintf(file[i], sizeof(file[i]), "%s.json", specs[i]);
		argv[n++] = file[i];
	}
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid == 0) {
		if (chdir(dir) < 0)
			_exit(127);
		int fd = open("run.out", O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(agent, argv);
		_exit(127);
	}
	return pid;
}

/* The n-th "handed over to pid N" line's N, "paused X ms" of the n-th
 * "took over from" line. */
static double nth_number(const char *s, const char *key, int n,
			 const char *after)
{
	const char *p = s;
	for (int i = 0; i < n && p; i++)
		if ((p = strstr(p, key)))
			p += strlen(key);
	if (!p)
		return -1;
	if (after && !(p = strstr(p, after)))
		return -1;
	return strtod(after ? p + strlen(after) : p, NULL);
}

/* One backend's run; the figures named with its prefix. 0 or -1. */
static int run_one(const struct bench_env *e, const char *agent, int idle)
{
	char path[PATH_MAX];
	strcpy(dir, "/tmp/parley-bench-handover-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(out_path, sizeof(out_path), "%s/run.out", dir);
	snprintf(path, sizeof(path), "%s/stage", dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/stage/parley-agent", dir);
	if (symlink(agent, path) < 0)
		return -1;
	snprintf(path, sizeof(path), "%s/stage/parley-vmm", dir);
	if (symlink(e->vmm, path) < 0)
		return -1;
	put("stage/manifest.json", "{\"version\":\"bench\"}");
	char *specs[128];
	int nspecs = 2 * (idle + 1);
	if (write_setup(idle, specs) < 0)
		return -1;
	bench_note("%d partitions (1 ping/pong pair streaming, %d idle pairs), "
		   "%d hand-overs", nspecs, idle, HANDOVERS);
	pid_t pid = start_agent(agent, e, specs, nspecs);
	int rc = 0;
	char *s = await("ping0| ping: ", 1, 120);
	double pause[HANDOVERS];
	int done = 0;
	for (int h = 0; s && h < HANDOVERS; h++) {
		free(s);
		kill(pid, SIGUSR1);
		s = await("grant manager paused ", h + 1, 60);
		if (!s) {
			bench_note("hand-over %d did not complete", h + 1);
			break;
		}
		pause[done++] = nth_number(s, "took over from", h + 1,
					   "grant manager paused ");
		pid = (pid_t)nth_number(s, "handed over to pid ", h + 1, NULL);
		usleep(300000);
	}
	free(s);
	/* The stream's end: "ping: COUNT messages each way ... checksums ok",
	 * or the last "ping: N ok" before it stopped. */
	long confirmed = 0;
	for (int i = 0; i < 600; i++) {
		s = slurp();
		char fin[64];
		snprintf(fin, sizeof(fin), "ping0| ping: %ld messages each way",
			 COUNT);
		bool over = strstr(s, fin) || strstr(s, "ping0: exited") ||
			    strstr(s, "ping0: stopped");
		if (strstr(s, fin))
			confirmed = COUNT;
		else if (over)
			for (const char *p = s; (p = strstr(p, "ping0| ping: "));
			     p += 13)
				confirmed = atol(p + 13) > confirmed
						    ? atol(p + 13) : confirmed;
		free(s);
		if (over)
			break;
		usleep(100000);
	}
	kill(pid, SIGTERM);
	while (wait(NULL) > 0)
		;
	s = slurp();
	for (const char *p = s; (p = strstr(p, "hand-over steps: ")); p += 17) {
		const char *eol = strchr(p, '\n');
		bench_note("%.*s", eol ? (int)(eol - p) : 80, p);
	}
	free(s);
	if (done) {
		double p50 = bench_summary("grant manager pause", pause,
					   (size_t)done, 1, "ms");
		bench_figure_e(e, "update_handover_pause_ms", p50, "ms");
	} else {
		rc = -1;
	}
	if (done == HANDOVERS) {
		bench_note("ping confirmed %ld of %ld messages", confirmed,
			   COUNT);
		bench_figure_e(e, "update_msgs_lost",
			       (double)(COUNT - confirmed), "msgs");
	} else {
		rc = -1;
	}
	for (int i = 0; i < nspecs; i++)
		free(specs[i]);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		rc = -1;
	return rc;
}

int main(void)
{
	struct bench_env e;
	struct parley_err err = { 0 };
	if (bench_env_init(&e, &err) < 0) {
		bench_note("%s", perr_msg(&err));
		return 1;
	}
	const char *ie = getenv("BENCH_HANDOVER_IDLE");
	int idle = ie ? atoi(ie) : 9;
	if (idle < 0 || idle > 63) {
		bench_note("BENCH_HANDOVER_IDLE is 0..63 (run mode holds 128 "
			   "partitions)");
		return 1;
	}
	char agent[PATH_MAX];
	snprintf(agent, sizeof(agent), "%s", e.vmm);
	*strrchr(agent, '/') = 0;
	strncat(agent, "/parley-agent", sizeof(agent) - strlen(agent) - 1);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	uint32_t b[2];
	unsigned nb = bench_backends(b);
	int rc = 0;
	for (unsigned i = 0; i < nb; i++) {
		bench_use_backend(&e, b[i]);
		COUNT = b[i] == CTL_BACKEND_KVM ? 100000 : 3000000;
		REPORT = COUNT / 30;
		if (run_one(&e, agent, idle) < 0)
			rc = 1;
	}
	return rc;
}
