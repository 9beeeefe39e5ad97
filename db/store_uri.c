/*
 * What --store names: `sqlite:PATH`, a bare PATH (today's form), or a
 * PostgreSQL database as a libpq URI (`postgresql://...`,
 * `postgres://...`) or `postgresql:` followed by a libpq keyword string
 * (`postgresql:service=parley`, `postgresql:host=/run/pg dbname=p`).
 * libpq itself reads sslmode, sslrootcert, service files and the like;
 * this only tells the backends apart, refuses what is neither, and makes
 * a form to print that never shows a password.
 */
#include "db/store_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Longer than any path or connection string anyone writes. */
#define STORE_NAME_LEN_MAX 4096

static bool has_prefix(const char *s, const char *p)
{
	return strncmp(s, p, strlen(p)) == 0;
}

int db_uri_parse(const char *uri, enum db_kind *kind, char **target,
		 char **shown, struct parley_err *err)
{
	*target = *shown = NULL;
	size_t len = strnlen(uri, STORE_NAME_LEN_MAX + 1);
	if (len == 0)
		return perr(err, -EINVAL, "store: empty path");
	if (len > STORE_NAME_LEN_MAX)
		return perr(err, -ENAMETOOLONG, "store: name longer than %d "
			    "bytes", STORE_NAME_LEN_MAX);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)uri[i] < 0x20 || uri[i] == 0x7f)
			return perr(err, -EINVAL, "store: control character "
				    "at byte %zu of the name", i);
	const char *pg = NULL;
	if (has_prefix(uri, "postgresql://") || has_prefix(uri, "postgres://"))
		pg = uri;               /* libpq takes the URI as is */
	else if (has_prefix(uri, "postgresql:"))
		pg = uri + strlen("postgresql:");
	if (pg) {
		*kind = DB_PG;
		if (!pg[0])
			return perr(err, -EINVAL, "store %s: no connection "
				    "string", uri);
		int rc = db_pg_conninfo_check(pg, shown, err);
		if (rc < 0)
			return rc;
		*target = strdup(pg);
	} else {
		const char *path = uri;
		if (has_prefix(uri, "sqlite:"))
			path = uri + strlen("sqlite:");
		else if (strstr(uri, "://"))
			return perr(err, -EINVAL, "store %.64s: unknown kind "
				    "of store (sqlite:PATH or "
				    "postgresql://...)", uri);
		*kind = DB_SQLITE;
		if (!path[0])
			return perr(err, -EINVAL, "store %s: empty path", uri);
		*target = strdup(path);
		*shown = strdup(path);
	}
	if (!*target || !*shown) {
		free(*target);
		free(*shown);
		*target = *shown = NULL;
		return perr(err, -ENOMEM, "store: out of memory");
	}
	return 0;
}

int store_uri_file(const char *uri, char *path, size_t cap,
		   struct parley_err *err)
{
	enum db_kind kind;
	char *target, *shown;
	int rc = db_uri_parse(uri ? uri : "", &kind, &target, &shown, err);
	if (rc < 0)
		return rc;
	rc = kind == DB_SQLITE;
	if (rc && strlen(target) >= cap)
		rc = perr(err, -ENAMETOOLONG, "store %s: path too long",
			  shown);
	else if (rc)
		memcpy(path, target, strlen(target) + 1);
	free(target);
	free(shown);
	return rc;
}
