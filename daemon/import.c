/*
 * `parleyd import --store FILE --host NAME POLICY.json`: put a standalone
 * policy file (the agent's --policy format) into the store, its partitions
 * on one host, as one policy version. The operator's way in until the
 * HTTP API; also what `./dev demo` uses.
 */
#include "daemon/import.h"
#include "common/grant.h"
#include "common/log.h"
#include "db/store.h"

#include <stdio.h>
#include <string.h>

static int ensure_part(struct store *s, const char *name, const char *host,
		       struct parley_err *err)
{
	struct store_partition p;
	if (store_partition_get(s, name, &p, NULL) == 0) {
		store_partition_free(&p);
		return 0;
	}
	struct store_part_in in = { .name = name, .host = host,
				    .kind = STORE_PART_THIN, .spec_json = "{}",
				    .spec_len = 2, .state = "defined" };
	return store_partition_put(s, &in, NULL, err);
}

int daemon_import(const char *store_path, const char *host,
		  const char *policy, struct parley_err *err)
{
	struct grant_set g;
	int rc = grant_set_load(policy, NULL, &g, err);
	if (rc < 0)
		return rc;
	struct store *s = NULL;
	rc = store_open(store_path, &s, err);
	if (rc == 0)
		rc = store_begin(s, err);
	if (rc == 0) {
		struct store_host h;
		if (store_host_get(s, host, &h, NULL) < 0)
			rc = store_host_put(s, host, "", (struct store_blob){ 0 },
					    err);
	}
	for (unsigned i = 0; rc == 0 && i < g.n; i++) {
		rc = ensure_part(s, g.g[i].a, host, err);
		if (rc == 0)
			rc = ensure_part(s, g.g[i].b, host, err);
	}
	uint64_t version = 0;
	if (rc == 0)
		rc = store_grant_replace(s, &g, &version, err);
	if (rc == 0)
		rc = store_commit(s, err);
	else if (s)
		store_rollback(s, NULL);
	if (rc == 0)
		printf("imported %u grants for host %s: policy version %llu\n",
		       g.n, host, (unsigned long long)version);
	store_close(s);
	grant_set_free(&g);
	return rc;
}
