/* A PostgreSQL store whose server session ends under it (a restart, a
 * network cut, an administrator's pg_terminate_backend): the operation it
 * broke fails, the next one runs on a new session, with its statements
 * prepared again; nothing is retried that may have committed. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/store.h"
#include "tests/helpers/pgtmp.h"
#include "tests/helpers/testutil.h"

static void cut(const char *uri)
{
	/* The store's one session on this database: its backend's pid (the
	 * server runs here, as the tests do). */
	char *n = t_pg_text(uri, "SELECT COALESCE(MAX(pid), 0) FROM "
			    "pg_stat_activity WHERE datname = "
			    "current_database() AND pid <> pg_backend_pid()");
	pid_t pid = (pid_t)atoi(n);
	free(n);
	cr_assert_gt(pid, 0, "no session of the store's to end");
	t_pg_exec(uri, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
		  "WHERE datname = current_database() AND "
		  "pid <> pg_backend_pid()");
	/* The signal is sent at once; the session ends a moment later: it
	 * has ended when its backend process is gone (its socket closed by
	 * the kernel), not already when pg_stat_activity stops listing it
	 * (the store could then still find the socket open, and its next
	 * operation would meet the close: a flaky test, seen once in CI). */
	for (int i = 0; i < 500; i++) {
		if (kill(pid, 0) < 0 && errno == ESRCH)
			return;
		usleep(10000);
	}
	cr_assert_fail("the store's session never ended");
}

Test(store_pg, lost_session_is_made_again_at_the_next_operation,
     .timeout = 60)
{
	t_store_pg = true;
	char *dir = t_tmpdir();
	char uri[600];
	t_store_uri(dir, "s.db", uri, sizeof(uri));
	struct store *s = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(store_open(uri, &s, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(store_host_put(s, "h1", "", (struct store_blob){ 0 },
				    &err), 0, "%s", perr_msg(&err));
	/* Between operations: the next one does not notice. */
	cut(uri);
	cr_expect_eq(store_host_put(s, "h2", "", (struct store_blob){ 0 },
				    &err), 0, "%s", perr_msg(&err));
	struct store_host h;
	cut(uri);
	cr_expect_eq(store_host_get(s, "h1", &h, &err), 0, "%s",
		     perr_msg(&err));
	/* Inside a batch: the batch is lost and says so; never replayed
	 * on a new session as if it were whole. */
	cr_assert_eq(store_begin(s, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(store_host_put(s, "h3", "", (struct store_blob){ 0 },
				    &err), 0, "%s", perr_msg(&err));
	cut(uri);
	cr_expect_eq(store_host_put(s, "h4", "", (struct store_blob){ 0 },
				    &err), -ECONNRESET, "%s", perr_msg(&err));
	cr_expect_lt(store_commit(s, &err), 0);
	store_rollback(s, NULL);
	cr_expect_eq(store_host_get(s, "h3", &h, NULL), -ENOENT);
	cr_expect_eq(store_host_get(s, "h4", &h, NULL), -ENOENT);
	cr_expect_eq(store_host_put(s, "h5", "", (struct store_blob){ 0 },
				    &err), 0, "%s", perr_msg(&err));
	store_close(s);
	t_store_uri_drop(uri);
	t_rmtree(dir);
	free(dir);
}
