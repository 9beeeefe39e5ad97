/*
 * The test harness's throw-away PostgreSQL clusters: a run killed before
 * its clean-up leaves its cluster running; the next run stops it.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/helpers/pgcluster.h"
#include "tests/helpers/pgtmp.h"
#include "tests/helpers/testutil.h"

static pid_t dead_pid(void)
{
	pid_t p = fork();
	cr_assert_geq(p, 0);
	if (p == 0)
		_exit(0);
	cr_assert_eq(waitpid(p, NULL, 0), p);
	return p;
}

Test(pgtmp, clusters_of_dead_runs_are_stopped_live_ones_kept,
     .timeout = 120)
{
	char *top = t_tmpdir();
	chmod(top, 0755);
	char dead[600], live[600], why[512];
	snprintf(dead, sizeof(dead), "%s/parley-pg-%d", top, (int)dead_pid());
	snprintf(live, sizeof(live), "%s/parley-pg-%d", top, (int)getpid());
	cr_assert_eq(mkdir(dead, 0755), 0);
	cr_assert_eq(mkdir(live, 0755), 0);
	const char *no = pgc_start(dead, false, why, sizeof(why));
	if (no && t_required("postgresql"))
		cr_assert_fail("PARLEY_REQUIRE=postgresql: %s", no);
	if (no) {
		pgc_stop(dead);
		t_rmtree(top);
		free(top);
		cr_skip_test("needs a PostgreSQL cluster: %s", no);
	}
	long pm = pgc_postmaster(dead);
	cr_assert_gt(pm, 1);
	char lock[640], other[640];
	snprintf(lock, sizeof(lock), "%s.lock", dead);
	snprintf(other, sizeof(other), "%s/parley-pg-x1", top);
	fclose(fopen(lock, "w"));
	cr_assert_eq(mkdir(other, 0755), 0);

	cr_expect_eq(pgc_reap_dead(top, "parley-pg-"), 1);
	cr_expect_neq(access(dead, F_OK), 0, "the dead run's cluster stays");
	cr_expect_neq(access(lock, F_OK), 0, "its lock stays");
	cr_expect(kill((pid_t)pm, 0) != 0, "its postmaster still runs");
	cr_expect_eq(access(live, F_OK), 0, "a live run's dir was removed");
	cr_expect_eq(access(other, F_OK), 0, "a name not ending in a PID "
		     "was taken for a run");
	if (kill((pid_t)pm, 0) == 0)
		kill((pid_t)pm, SIGKILL);
	t_rmtree(top);
	free(top);
}

/* A postmaster.pid naming a process that is not PostgreSQL (the
 * postmaster gone, its PID reused) gets nobody signalled. */
Test(pgtmp, stale_postmaster_pid_signals_nobody, .timeout = 30)
{
	char *top = t_tmpdir();
	pid_t bystander = fork();
	cr_assert_geq(bystander, 0);
	if (bystander == 0) {
		pause();
		_exit(0);
	}
	char d[600], p[700];
	snprintf(d, sizeof(d), "%s/c", top);
	snprintf(p, sizeof(p), "%s/data", d);
	cr_assert_eq(mkdir(d, 0755), 0);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/data/postmaster.pid", d);
	FILE *f = fopen(p, "w");
	cr_assert_not_null(f);
	fprintf(f, "%d\n", (int)bystander);
	fclose(f);
	pgc_stop(d);
	int st;
	cr_expect_eq(waitpid(bystander, &st, WNOHANG), 0,
		     "a process that is not PostgreSQL was signalled");
	kill(bystander, SIGKILL);
	waitpid(bystander, NULL, 0);
	cr_expect_neq(access(d, F_OK), 0);
	t_rmtree(top);
	free(top);
}
