/*
 * `parleyd import --store FILE --host NAME POLICY.json`: put a standalone
 * policy file (the agent's --policy format) into the store, its partitions
 * on one host, in one transaction: the grants become exactly the file's
 * (one policy version), and its service rules and segment sets are added
 * (a rule's action set as the file says; a set of the same name
 * replaced). The operator's way in until the HTTP API; also what
 * `./dev demo` uses.
 */
#include "daemon/import.h"

#include <errno.h>
#include "common/grant.h"
#include "common/log.h"
#include "db/store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The file's service rules, each created or changed. */
static int import_services(struct store *s, const struct grant_set *g,
			   const char *host, struct parley_err *err)
{
	int rc = 0;
	for (unsigned i = 0; rc == 0 && i < g->nsvc; i++) {
		rc = ensure_part(s, g->svc[i].source, host, err);
		if (rc == 0)
			rc = ensure_part(s, g->svc[i].target, host, err);
		if (rc == 0)
			rc = store_put_svc_rule(s, &g->svc[i], NULL, NULL, NULL,
						err);
		if (rc < 0)
			perr_prefix(err, "services[%u]", i);
	}
	return rc;
}

/* The file's segment sets, by their own JSON (the store checks and keeps
 * the text; g->seg, parsed from the same file, names the members). */
static int import_segsets(struct store *s, const struct grant_set *g,
			  const char *path, const char *host,
			  struct parley_err *err)
{
	if (!g->seg.n)
		return 0;
	json_error_t je;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	json_t *arr = json_object_get(root, "segsets");
	int rc = json_array_size(arr) == g->seg.n
			 ? 0 : perr(err, -EIO, "%s changed while read", path);
	for (unsigned i = 0; rc == 0 && i < g->seg.n; i++) {
		const struct segset_def *d = &g->seg.s[i];
		for (unsigned m = 0; rc == 0 && m < d->nmembers; m++)
			rc = ensure_part(s, d->member[m], host, err);
		struct store_segset old;
		if (rc == 0 && store_get_segset(s, d->name, &old, NULL) == 0) {
			store_segset_clear(&old);
			rc = store_del_segset(s, d->name, NULL, err);
		}
		char *text = rc == 0 ? json_dumps(json_array_get(arr, i),
						  JSON_COMPACT) : NULL;
		if (rc == 0 && !text)
			rc = perr(err, -ENOMEM, "out of memory");
		if (rc == 0)
			rc = store_put_segset(s, text, strlen(text), NULL, NULL,
					      err);
		free(text);
	}
	json_decref(root);
	return rc;
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
		rc = import_services(s, &g, host, err);
	if (rc == 0)
		rc = import_segsets(s, &g, policy, host, err);
	if (rc == 0)
		rc = store_policy_version(s, &version, err);
	if (rc == 0)
		rc = store_commit(s, err);
	else if (s)
		store_rollback(s, NULL);
	if (rc == 0)
		printf("imported %u grants, %u service rules and %u segment "
		       "sets for host %s: policy version %llu\n", g.n, g.nsvc,
		       g.seg.n, host, (unsigned long long)version);
	store_close(s);
	grant_set_free(&g);
	return rc;
}
