/* parleyctl partition: thin and libvirt partitions (/v1/partitions). */
#include "cli/ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: parleyctl partition create --host H --backend thin|libvirt "
	"--spec FILE\n"
	"       parleyctl partition list [--host H] [--limit N]\n"
	"       parleyctl partition show|start|stop|destroy NAME\n"
	"\n"
	"FILE is a partition spec (JSON, as the agent reads it).\n"
	"destroy removes the partition (DELETE).\n";

static const struct ctl_col cols[] = {
	{ "NAME", "name" },
	{ "HOST", "host" },
	{ "BACKEND", "backend" },
	{ "STATE", "state" },
	{ "VMM", "vmm_backend" },   /* kvm | process, as the agent reported */
	{ NULL, NULL },
};

static int part_list(struct ctl *c, int argc, char **argv)
{
	return ctl_list_by_host(c, argc, argv, "/v1/partitions", cols, usage);
}

/* show/start/stop/destroy: one name, one request. */
static int part_one(struct ctl *c, int argc, char **argv, const char *method,
		    const char *tail)
{
	const char *name = ctl_one_arg(argc, argv, usage);
	if (!name)
		return CTL_USAGE;
	char *path = ctl_path("/v1/partitions", name, tail);
	json_t *p;
	int rc = ctl_call(c, method, path, NULL, &p);
	free(path);
	if (rc)
		return rc;
	if (p)
		return ctl_show_object(c, p);
	if (strcmp(method, "DELETE"))
		return ctl_fail(CTL_ERR, "BAD_RESPONSE", "%s: empty response",
				argv[0]);
	if (!c->json)
		printf("partition %s destroyed\n", name);
	return CTL_OK;
}

static int part_show(struct ctl *c, int argc, char **argv)
{
	return part_one(c, argc, argv, "GET", "");
}

static int part_start(struct ctl *c, int argc, char **argv)
{
	return part_one(c, argc, argv, "POST", "/start");
}

static int part_stop(struct ctl *c, int argc, char **argv)
{
	return part_one(c, argc, argv, "POST", "/stop");
}

static int part_destroy(struct ctl *c, int argc, char **argv)
{
	return part_one(c, argc, argv, "DELETE", "");
}

struct create_args {
	const char *host, *backend, *spec;
};

static int create_args(int argc, char **argv, struct create_args *a)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "backend", required_argument, NULL, 'b' },
		{ "spec", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int o;
	while ((o = ctl_opt(argc, argv, opts, usage)) != -1) {
		if (o == 'H')
			a->host = optarg;
		else if (o == 'b')
			a->backend = optarg;
		else if (o == 's')
			a->spec = optarg;
		else
			return CTL_USAGE;
	}
	if (ctl_args(argc, argv, 0, usage))
		return CTL_USAGE;
	if (!a->host || !a->backend || !a->spec)
		return ctl_usage_error(usage, "create needs --host, --backend "
				       "and --spec");
	if (strcmp(a->backend, "thin") && strcmp(a->backend, "libvirt"))
		return ctl_usage_error(usage, "--backend: \"%s\" is not thin "
				       "or libvirt", a->backend);
	return 0;
}

static int part_create(struct ctl *c, int argc, char **argv)
{
	struct create_args a = { 0 };
	json_t *spec, *p;
	int rc = create_args(argc, argv, &a);
	if (rc)
		return rc;
	if (ctl_load_json(a.spec, &spec))
		return CTL_USAGE;
	json_t *body = json_pack("{s:s,s:s,s:o}", "host", a.host, "backend",
				 a.backend, "spec", spec);
	rc = ctl_call(c, "POST", "/v1/partitions", body, &p);
	json_decref(body);
	return rc ? rc : ctl_show_object(c, p);
}

static const struct ctl_verb verbs[] = {
	{ "create", part_create },
	{ "list", part_list },
	{ "show", part_show },
	{ "start", part_start },
	{ "stop", part_stop },
	{ "destroy", part_destroy },
	{ NULL, NULL },
};

int cmd_partition(struct ctl *c, int argc, char **argv)
{
	return ctl_dispatch(c, argc, argv, verbs, usage);
}
