/*
 * `parleyd store migrate --from STORE --to STORE`: copy a store into a
 * new, empty one -- typically the embedded SQLite file into PostgreSQL
 * when one daemon becomes several (db/store_copy.c does the copying and
 * verifies the audit chain on arrival). The source is opened as any
 * parleyd would (migrated to this binary's schema first); the target is
 * created with the same schema and must hold nothing yet. Stop the daemon
 * that writes the source first: rows it adds after the copy's snapshot
 * stay behind.
 */
#include "daemon/store_cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "db/store.h"

static const char usage[] =
	"usage: parleyd store migrate --from STORE --to STORE\n"
	"  STORE is sqlite:PATH (or PATH) or postgresql://...; the target\n"
	"  must be empty; the audit chain is verified on arrival\n";

/* The source must exist: opening a path that is not there would create
 * an empty store and "copy" nothing. */
static int open_from(const char *uri, struct store **s,
		     struct parley_err *err)
{
	char path[4096];
	int rc = store_uri_file(uri, path, sizeof(path), err);
	if (rc == 1 && access(path, F_OK) != 0)
		return perr(err, -errno, "store %s: %s", path,
			    strerror(errno));
	return rc < 0 ? rc : store_open(uri, s, err);
}

static int migrate(const char *from, const char *to)
{
	struct parley_err err = { 0 };
	struct store *a = NULL, *b = NULL;
	struct store_copy_stats cs;
	int rc = open_from(from, &a, &err);
	if (rc == 0)
		rc = store_open(to, &b, &err);
	if (rc == 0)
		rc = store_copy(a, b, &cs, &err);
	store_close(a);
	store_close(b);
	if (rc < 0) {
		fprintf(stderr, "parleyd: store migrate: %s\n",
			perr_msg(&err));
		return 1;
	}
	printf("copied %llu rows in %u tables; audit chain verified: %llu "
	       "rows\n", (unsigned long long)cs.rows, cs.tables,
	       (unsigned long long)cs.audit_rows);
	return 0;
}

int store_cli_main(int argc, char **argv)
{
	const char *from = NULL, *to = NULL;
	if (argc < 3 || strcmp(argv[2], "migrate") != 0) {
		fputs(usage, stderr);
		return 2;
	}
	for (int i = 3; i < argc; i++) {
		if (!strcmp(argv[i], "--from") && i + 1 < argc && !from)
			from = argv[++i];
		else if (!strcmp(argv[i], "--to") && i + 1 < argc && !to)
			to = argv[++i];
		else
			from = to = NULL, i = argc;
	}
	if (!from || !to) {
		fputs(usage, stderr);
		return 2;
	}
	return migrate(from, to);
}
