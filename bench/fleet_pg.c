/*
 * fleet_pg.c: the fleet's store on PostgreSQL -- a throw-away cluster the
 * bench starts in its own directory (tests/helpers/pgcluster.c), its
 * `postgres` database the store every replica shares.
 */
#include "bench/fleet_bench.h"
#include "tests/helpers/pgcluster.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

int fleet_pg_store(struct fleet_env *e, char *pgdir, size_t cap,
		   struct parley_err *err)
{
	char why[512], ci[PATH_MAX + 64];
	snprintf(pgdir, cap, "%s/pg", e->dir);
	/* The daemons reach the socket after dropping to an unprivileged
	 * user; on SQLite privsep hands them the store's directory, here
	 * nothing does. */
	if (chmod(e->dir, 0755) < 0 || mkdir(pgdir, 0755) < 0) {
		int rc = perr(err, -errno, "%s: %m", pgdir);
		pgdir[0] = 0;
		return rc;
	}
	const char *no = pgc_start(pgdir, false, why, sizeof(why));
	if (no) {
		pgdir[0] = 0;
		return perr(err, -ENOTSUP, "no PostgreSQL cluster: %s", no);
	}
	pgc_conninfo(pgdir, ci, sizeof(ci));
	snprintf(e->store, sizeof(e->store), "postgresql:%s dbname=postgres",
		 ci);
	return 0;
}

int fleet_pg_replica_dir(const struct fleet_env *e, const char *name,
			 struct parley_err *err)
{
	char dir[PATH_MAX + 64];
	snprintf(dir, sizeof(dir), "%s/%s", e->dir, name);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return perr(err, -errno, "%s: %m", dir);
	return 0;
}

void fleet_pg_stop(const char *pgdir)
{
	if (pgdir[0])
		pgc_stop(pgdir);
}
