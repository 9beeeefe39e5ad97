/*
 * parleyctl: the operator's command line for parleyd's HTTP/JSON API
 * (daemon/rpc/API.md). `parleyctl [GLOBAL] NOUN VERB [ARGS]`; the global
 * options may stand anywhere on the line. One cmd_<noun>.c per family.
 */
#include "cli/ctl.h"
#include "common/version.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
	"usage: parleyctl [--server URL] [--token T] [-o table|json] "
	"NOUN VERB [ARGS]\n"
	"\n"
	"  host       list | show NAME | add NAME [--libvirt-uri URI] | remove NAME\n"
	"  partition  create --host H --backend thin|libvirt --spec FILE\n"
	"             | list [--host H] | show N | start N | stop N | destroy N\n"
	"  grant      add --channel C --a A --b B --direction D --ring-bytes SIZE\n"
	"             [--no-integrity] | remove C | list\n"
	"  segset     add FILE | list [--host H] | show NAME | remove NAME\n"
	"  disk       keys PARTITION | rekey PARTITION DISK\n"
	"  service    allow SRC TGT SVC | deny SRC TGT SVC | list [--host H]\n"
	"             | remove ID | remove SRC TGT SVC\n"
	"  baseline   list | show P | enroll P\n"
	"             | set P --file NAME=HEX... [--segment HEX]... [--digest HEX]\n"
	"  audit      list [--host H] [--partition P] [--event E] [--since T]\n"
	"             [--until T] [--limit N]\n"
	"             | verify [--checkpoint FILE --pubkey FILE]\n"
	"  policy     show\n"
	"  token      create --scope read|admin [--name N]\n"
	"  health     (GET /healthz, no token needed)\n"
	"\n"
	"  --server URL   parleyd's API (env PARLEY_SERVER, default "
	CTL_DEFAULT_SERVER ")\n"
	"  --token T      bearer token (env PARLEY_TOKEN)\n"
	"  --ca FILE      CA the https:// server must chain to (env PARLEY_CA)\n"
	"  --connect-timeout SECONDS  give up connecting after this long "
	"(default 5)\n"
	"  -o table|json  output: a table, or the server's JSON\n"
	"  --help         this text; --version: the version\n"
	"\n"
	"Every command takes --help. Exit codes: 0 ok, 1 other error, 2 usage,\n"
	"3 not found, 4 denied, 5 server unreachable, 6 conflict, 7 bad request.\n";

static const struct ctl_verb nouns[] = {
	{ "host", cmd_host },
	{ "partition", cmd_partition },
	{ "grant", cmd_grant },
	{ "segset", cmd_segset },
	{ "disk", cmd_disk },
	{ "service", cmd_service },
	{ "baseline", cmd_baseline },
	{ "audit", cmd_audit },
	{ "policy", cmd_policy },
	{ "token", cmd_token },
	{ "health", cmd_health },
	{ NULL, NULL },
};

struct globals {
	const char *server, *token, *output, *ca, *connect_timeout;
};

/* If argv[i] is global option `name` (as "--name V", "--name=V" or, with
 * a short form, "-o V"/"-oV"), store V and return how many argv entries it
 * used; 0 if it is not; -1 if its value is missing. */
static int take_global(int argc, char **argv, int i, const char *name,
		       const char *shrt, const char **val)
{
	size_t nl = strlen(name);
	const char *a = argv[i];
	if (!strcmp(a, name) || (shrt && !strcmp(a, shrt))) {
		if (i + 1 >= argc)
			return -1;
		*val = argv[i + 1];
		return 2;
	}
	if (!strncmp(a, name, nl) && a[nl] == '=') {
		*val = a + nl + 1;
		return 1;
	}
	if (shrt && !strncmp(a, shrt, 2) && a[2]) {
		*val = a + 2;
		return 1;
	}
	return 0;
}

/* Pull the global options out of argv wherever they are (up to "--");
 * returns the new argc, or -1 for a global option without its value. */
static int strip_globals(int argc, char **argv, struct globals *g)
{
	int out = 0, n;
	for (int i = 0; i < argc; i += n) {
		n = 0;
		if (!strcmp(argv[i], "--")) {
			while (i < argc)
				argv[out++] = argv[i++];
			break;
		}
		if (!n)
			n = take_global(argc, argv, i, "--server", NULL, &g->server);
		if (!n)
			n = take_global(argc, argv, i, "--token", NULL, &g->token);
		if (!n)
			n = take_global(argc, argv, i, "--ca", NULL, &g->ca);
		if (!n)
			n = take_global(argc, argv, i, "--connect-timeout", NULL,
					&g->connect_timeout);
		if (!n)
			n = take_global(argc, argv, i, "--output", "-o", &g->output);
		if (n < 0)
			return ctl_usage_error(usage, "%s needs a value", argv[i]),
			       -1;
		if (!n) {
			argv[out++] = argv[i];
			n = 1;
		}
	}
	argv[out] = NULL;
	return out;
}

/* JSON strings are UTF-8; refuse other bytes here, once, rather than
 * sending a request without the field. */
static int check_utf8(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		json_t *s = json_string(argv[i]);
		if (!s)
			return ctl_usage_error(usage, "argument %d is not UTF-8", i);
		json_decref(s);
	}
	return 0;
}

static int setup(struct ctl *c, const struct globals *g)
{
	struct parley_err err = { 0 };
	const char *server = g->server ? g->server : getenv("PARLEY_SERVER");
	if (!server || !server[0])
		server = CTL_DEFAULT_SERVER;
	if (http_url_parse(server, &c->url, &err) < 0)
		return ctl_usage_error(usage, "%s", perr_msg(&err));
	c->url.ca = g->ca ? g->ca : getenv("PARLEY_CA");
	if (c->url.ca && !c->url.ca[0])
		c->url.ca = NULL;
	if (g->connect_timeout &&
	    http_timeout_parse(g->connect_timeout, &c->url.connect_ms, &err) < 0)
		return ctl_usage_error(usage, "%s", perr_msg(&err));
	c->token = g->token ? g->token : getenv("PARLEY_TOKEN");
	if (c->token && !c->token[0])
		c->token = NULL;
	if (c->token && strpbrk(c->token, "\r\n"))
		return ctl_usage_error(usage, "--token: no line breaks");
	if (!g->output || !strcmp(g->output, "table"))
		c->json = false;
	else if (!strcmp(g->output, "json"))
		c->json = true;
	else
		return ctl_usage_error(usage, "-o: \"%s\" is not table or json",
				       g->output);
	return 0;
}

int main(int argc, char **argv)
{
	struct globals g = { 0 };
	struct ctl c = { 0 };
	argc = strip_globals(argc, argv, &g);
	if (argc < 0)
		return CTL_USAGE;
	/* Before the server settings are checked: they do not matter here. */
	if (argc == 2 && !strcmp(argv[1], "--version")) {
		parley_print_version("parleyctl");
		return 0;
	}
	int rc = check_utf8(argc, argv);
	if (!rc)
		rc = setup(&c, &g);
	if (rc)
		return rc;
	argv[0] = (char *)"parleyctl";
	/* Nouns dispatch like verbs: argv[0] "parleyctl", argv[1] the noun. */
	return ctl_dispatch(&c, argc, argv, nouns, usage);
}
