/*
 * bench_chan: the chan suite (`./dev bench chan`). Figures on stdout, each
 * `BENCH <name> <value> <unit>`; spread, cross-checks and breakdowns on
 * stderr. See bench/README.md for what each figure holds. Nothing here
 * asserts on time: the exit status says only whether every measurement
 * could be made.
 */
#include "bench/chan_bench.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Share of the CPUs other processes may use before a run is called noisy. */
#define OTHERS_MAX 0.10


static int failed(const char *what, const struct parley_err *err)
{
	bench_note("%s: %s", what, perr_msg(err));
	return 1;
}

static int throughput(const struct bench_env *e)
{
	struct parley_err err = { 0 };
	struct chan_tput_result r;
	if (chan_bench_tput(e, &r, &err) < 0)
		return failed("throughput", &err);
	bench_figure_e(e, "chan_tput_64k_vs_memcpy", r.vs_memcpy_64k, "x");
	bench_figure_e(e, "chan_tput_4k_vs_memcpy", r.vs_memcpy_4k, "x");
	bench_figure_e(e, "chan_msgs_64b_vs_socketpair", r.msgs_64b_vs_sock, "x");
	bench_figure_e(e, "chan_msgs_64b_unbatched_vs_socketpair",
		       r.msgs_64b_one_vs_sock, "x");
	return 0;
}

static int round_trips(const struct bench_env *e)
{
	struct parley_err err = { 0 };
	struct chan_rtt_result r;
	if (chan_bench_rtt(e, &r, &err) < 0)
		return failed("round trips", &err);
	bench_figure_e(e, "chan_rtt_poll_us", r.poll_us, "us");
	bench_figure_e(e, "chan_rtt_wait_vs_socketpair", r.wait_vs_sock, "x");
	return 0;
}

/* Service calls through the agent's ephemeral channel against the bare
 * channel, polled, in the same run (target: at most 1.5x). */
static int svc_calls(const struct bench_env *e)
{
	struct parley_err err = { 0 };
	struct svc_rtt_result r;
	if (svc_bench_rtt(e, &r, &err) < 0)
		return failed("service calls", &err);
	bench_figure_e(e, "svc_call_rtt_us", r.svc_us, "us");
	bench_figure_e(e, "svc_call_vs_chan_rtt", r.ratio, "x");
	return 0;
}

static int opens(const struct bench_env *e)
{
	struct parley_err err = { 0 };
	struct chan_open_result r;
	if (chan_bench_open(e, &r, &err) < 0)
		return failed("channel open", &err);
	/* The first open creates the channel and maps both ends. */
	bench_figure_e(e, "chan_first_open_ms", r.first_open_ms, "ms");
	/* Up to 1 MiB a config region is re-hashed whole on every open. */
	bench_figure_e(e, "chan_open_1m_full_rehash_ms", r.open_1m_ms, "ms");
	bench_figure_e(e, "chan_open_64m_untouched_ms", r.open_64m_clean_ms, "ms");
	bench_figure_e(e, "chan_open_64m_one_page_ms", r.open_64m_page_ms, "ms");
	bench_figure_e(e, "chan_open_64m_full_rehash_ms", r.rehash_64m_ms, "ms");
	return 0;
}

/* Say how much of the machine others used: the figures assume it idle. */
static void load_note(const struct bench_cpu *start)
{
	double others = bench_cpu_others(start);
	if (others < 0)
		return;
	bench_note("other processes used %.0f%% of the CPUs during the run%s",
		   others * 100, others > OTHERS_MAX
					 ? ": figures are inflated, rerun on "
					   "an idle machine"
					 : "");
}

/* Parts named on the command line run alone (for a closer look at one);
 * none named: all of them. */
static bool wanted(int argc, char **argv, const char *part)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], part))
			return true;
	return argc < 2;
}

int main(int argc, char **argv)
{
	struct bench_env env;
	struct parley_err err = { 0 };
	struct bench_cpu cpu;
	uint32_t backends[2];
	unsigned nb = bench_backends(backends);
	if (bench_env_init(&env, &err) < 0)
		return failed("set-up", &err);
	/* A socketpair peer that dies must not take the bench with it. */
	signal(SIGPIPE, SIG_IGN);
	bench_cpu_mark(&cpu);
	int bad = 0;
	/* Round trips first: the throughput run keeps both CPUs busy for
	 * seconds, after which the hypervisor under this machine has been
	 * seen to move our vCPUs further apart for a while (see README). */
	for (unsigned i = 0; i < nb; i++) {
		bench_use_backend(&env, backends[i]);
		if (wanted(argc, argv, "rtt"))
			bad |= round_trips(&env);
		if (wanted(argc, argv, "svc"))
			bad |= svc_calls(&env);
		if (wanted(argc, argv, "tput"))
			bad |= throughput(&env);
		if (wanted(argc, argv, "open"))
			bad |= opens(&env);
	}
	load_note(&cpu);
	return bad;
}
