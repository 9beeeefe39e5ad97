/* parleyctl segset: segment sets (/v1/segsets, issue 14). A FILE holds one
 * set (an entry of the data set) or a whole data set {"segsets": [...]},
 * whose sets are added one by one; each addition is a policy version. */
#include "cli/ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: parleyctl segset add FILE\n"
	"       parleyctl segset list [--host H] [--limit N]\n"
	"       parleyctl segset show NAME\n"
	"       parleyctl segset remove NAME\n"
	"\n"
	"FILE: one set {\"name\":..., \"members\":[...], \"segments\":[...]}\n"
	"or a data set {\"segsets\":[...]} (see parley-smcp). A set's members\n"
	"must all be partitions of one host.\n";

static const struct ctl_col cols[] = {
	{ "NAME", "name" },
	{ "HOST", "host" },
	{ "VERSION", "version" },
	{ NULL, NULL },
};

static int segset_list(struct ctl *c, int argc, char **argv)
{
	return ctl_list_by_host(c, argc, argv, "/v1/segsets", cols, usage);
}

static int segset_show(struct ctl *c, int argc, char **argv)
{
	const char *name = ctl_one_arg(argc, argv, usage);
	if (!name)
		return CTL_USAGE;
	char *path = ctl_path("/v1/segsets", name, "");
	json_t *r;
	int rc = ctl_call(c, "GET", path, NULL, &r);
	free(path);
	return rc ? rc : ctl_show_object(c, r);
}

static int segset_remove(struct ctl *c, int argc, char **argv)
{
	const char *name = ctl_one_arg(argc, argv, usage);
	if (!name)
		return CTL_USAGE;
	char *path = ctl_path("/v1/segsets", name, "");
	json_t *r;
	int rc = ctl_call(c, "DELETE", path, NULL, &r);
	free(path);
	return rc ? rc : ctl_show_version(c, r, "segset removed");
}

static int add_one(struct ctl *c, json_t *set)
{
	json_t *r;
	int rc = ctl_call(c, "POST", "/v1/segsets", set, &r);
	if (rc)
		return rc;
	char what[128];
	const char *n = json_string_value(json_object_get(
		json_object_get(r, "segset"), "name"));
	snprintf(what, sizeof(what), "segset %.64s added", n ? n : "?");
	return ctl_show_version(c, r, what);
}

static int segset_add(struct ctl *c, int argc, char **argv)
{
	const char *file = ctl_one_arg(argc, argv, usage);
	json_t *doc;
	if (!file)
		return CTL_USAGE;
	int rc = ctl_load_json(file, &doc);
	if (rc)
		return rc;
	json_t *arr = json_object_get(doc, "segsets");
	if (!json_is_object(doc) || (arr && !json_is_array(arr))) {
		json_decref(doc);
		return ctl_usage_error(usage, "%s: not a set nor a data set "
				       "with a \"segsets\" array", file);
	}
	if (!arr) {
		rc = add_one(c, doc);
	} else {
		/* Stops at the first refusal: the sets before it stay. */
		size_t i;
		json_t *set;
		json_array_foreach(arr, i, set)
			if ((rc = add_one(c, set)) != CTL_OK)
				break;
	}
	json_decref(doc);
	return rc;
}

static const struct ctl_verb verbs[] = {
	{ "add", segset_add },
	{ "list", segset_list },
	{ "show", segset_show },
	{ "remove", segset_remove },
	{ NULL, NULL },
};

int cmd_segset(struct ctl *c, int argc, char **argv)
{
	return ctl_dispatch(c, argc, argv, verbs, usage);
}
