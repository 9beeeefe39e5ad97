/* Libvirt partitions their host's agent runs (agentvm.h). */
#include "daemon/agentvm.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

bool agentvm_spec(const char *json, size_t len)
{
	if (!json)
		return false;
	json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
	const char *kind = json_string_value(json_object_get(j, "kind"));
	bool vm = kind && !strcmp(kind, "vm");
	json_decref(j);
	return vm;
}

bool agentvm_part(const struct store_partition *p)
{
	return p->kind == STORE_PART_LIBVIRT &&
	       agentvm_spec(p->spec_json, p->spec_len);
}

int agentvm_no_grant(struct store *s, const char *name,
		     struct parley_err *err)
{
	struct grant_set gs;
	int rc = store_grant_list(s, &gs, err);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < gs.n && rc == 0; i++)
		if (!strcmp(gs.g[i].a, name) || !strcmp(gs.g[i].b, name))
			rc = perr(err, -EBUSY, "partition %s: grant %s names "
				  "it", name, gs.g[i].channel);
	grant_set_free(&gs);
	return rc;
}
