#include "daemon/config.h"
#include "common/fileio.h"
#include "common/hostport.h"
#include "common/jsonv.h"
#include "db/store.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#define CONFIG_FILE_MAX (64 * 1024)

static const char *const fields[] = {
	"listen", "api_listen", "api_cert", "api_key", "state_dir", "ca", "cert", "key", "policy_key", "store",
	"ui_dir", "log_level", "heartbeat_ms", "frame_max", "replica_name",
	"poll_ms", "advertise", NULL
};

static void defaults(struct daemon_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->listen, sizeof(c->listen), "127.0.0.1:7420");
	snprintf(c->api_listen, sizeof(c->api_listen), "127.0.0.1:7421");
	snprintf(c->state_dir, sizeof(c->state_dir), "/var/lib/parley");
	snprintf(c->ca, sizeof(c->ca), "ca.crt");
	snprintf(c->cert, sizeof(c->cert), "parleyd.crt");
	snprintf(c->key, sizeof(c->key), "parleyd.key");
	snprintf(c->policy_key, sizeof(c->policy_key), "policy.key");
	c->log_level = LOG_INFO;
	c->heartbeat_ms = 5000;
	c->frame_max = 1u << 20;
	c->poll_ms = 200;
}

static int set_str(char *dst, size_t cap, const char *v, const char *name,
		   struct parley_err *err)
{
	if ((size_t)snprintf(dst, cap, "%s", v) >= cap)
		return perr(err, -ENAMETOOLONG, "%s: too long", name);
	return 0;
}

/* One setting by name, from the file or a flag. */
static int set(struct daemon_config *c, const char *name, const char *v,
	       struct parley_err *err)
{
	char *end;
	if (!strcmp(name, "listen"))
		return set_str(c->listen, sizeof(c->listen), v, name, err);
	if (!strcmp(name, "api_cert"))
		return set_str(c->api_cert, sizeof(c->api_cert), v, name, err);
	if (!strcmp(name, "api_key"))
		return set_str(c->api_key, sizeof(c->api_key), v, name, err);
	if (!strcmp(name, "api_listen")) {
		c->api_listen_set = true;
		return set_str(c->api_listen, sizeof(c->api_listen), v, name,
			       err);
	}
	if (!strcmp(name, "ui_dir"))
		return set_str(c->ui_dir, sizeof(c->ui_dir), v, name, err);
	if (!strcmp(name, "state_dir"))
		return set_str(c->state_dir, sizeof(c->state_dir), v, name, err);
	if (!strcmp(name, "ca"))
		return set_str(c->ca, sizeof(c->ca), v, name, err);
	if (!strcmp(name, "cert"))
		return set_str(c->cert, sizeof(c->cert), v, name, err);
	if (!strcmp(name, "key"))
		return set_str(c->key, sizeof(c->key), v, name, err);
	if (!strcmp(name, "policy_key"))
		return set_str(c->policy_key, sizeof(c->policy_key), v, name, err);
	if (!strcmp(name, "store"))
		return set_str(c->store, sizeof(c->store), v, name, err);
	if (!strcmp(name, "replica_name")) {
		if (!jv_name_valid(v, strlen(v), sizeof(c->replica_name)))
			return perr(err, -EINVAL, "replica_name: \"%.80s\" is "
				    "not a name (A-Z a-z 0-9 _ . -, at most "
				    "63 bytes)", v);
		return set_str(c->replica_name, sizeof(c->replica_name), v,
			       name, err);
	}
	if (!strcmp(name, "advertise"))
		return set_str(c->advertise, sizeof(c->advertise), v, name,
			       err);
	if (!strcmp(name, "log_level")) {
		int l = log_level_parse(v);
		if (l < 0)
			return perr(err, -EINVAL, "log_level: \"%s\" is not "
				    "debug, info, warn or error", v);
		c->log_level = (enum log_level)l;
		return 0;
	}
	unsigned long long n = strtoull(v, &end, 10);
	if (*v == '-' || !*v || *end)
		return perr(err, -EINVAL, "%s: \"%s\" is not a number", name, v);
	if (!strcmp(name, "heartbeat_ms") && n >= 100 && n <= 600000) {
		c->heartbeat_ms = (uint32_t)n;
		return 0;
	}
	if (!strcmp(name, "poll_ms") && n >= 10 && n <= 60000) {
		c->poll_ms = (uint32_t)n;
		return 0;
	}
	if (!strcmp(name, "frame_max") && n >= 4096 && n <= (64u << 20)) {
		c->frame_max = (size_t)n;
		return 0;
	}
	return perr(err, -EINVAL, "%s: %llu is out of range", name, n);
}

static int load_file(struct daemon_config *c, const char *path,
		     struct parley_err *err)
{
	uint8_t *buf;
	size_t len;
	int rc = file_read_all(path, CONFIG_FILE_MAX, &buf, &len, err);
	if (rc < 0)
		return rc;
	json_error_t jerr;
	json_t *root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES,
				  &jerr);
	free(buf);
	if (!root) {
		rc = jv_syntax_error(&jerr, err);
		perr_prefix(err, "%s", path);
		return rc;
	}
	rc = json_is_object(root) ? jv_check_known(root, fields, "", err)
				  : perr(err, -EINVAL, "expected an object");
	const char *k;
	json_t *v;
	json_object_foreach(root, k, v) {
		if (rc < 0)
			break;
		char num[32];
		const char *s = json_string_value(v);
		if (json_is_integer(v)) {
			snprintf(num, sizeof(num), "%lld",
				 (long long)json_integer_value(v));
			s = num;
		}
		rc = s ? set(c, k, s, err)
		       : jv_type_error(v, k, "a string or an integer", err);
	}
	json_decref(root);
	return rc < 0 ? perr_prefix(err, "%s", path) : 0;
}

static int resolve(char *p, size_t cap, const char *dir)
{
	if (!p[0] || p[0] == '/')
		return 0;
	char tmp[PATH_MAX];
	if (path_join(tmp, sizeof(tmp), dir, p) < 0 ||
	    (size_t)snprintf(p, cap, "%s", tmp) >= cap)
		return -ENAMETOOLONG;
	return 0;
}

static int finish(struct daemon_config *c, struct parley_err *err)
{
	if (!c->store[0])
		snprintf(c->store, sizeof(c->store), "parley.db");
	if (!c->api_cert[0] != !c->api_key[0])
		return perr(err, -EINVAL, "api_cert and api_key go together");
	/* The store is a file (sqlite:FILE or FILE: relative to the state
	 * directory like the others) or a database (left as it is). */
	char file[PATH_MAX];
	int kind = store_uri_file(c->store, file, sizeof(file), err);
	if (kind < 0)
		return perr_prefix(err, "store");
	if (kind == 1)
		snprintf(c->store, sizeof(c->store), "%s", file);
	char *paths[] = { c->ca, c->cert, c->key, c->policy_key,
			  kind == 1 ? c->store : NULL, c->api_cert, c->api_key,
			  c->ui_dir };
	for (size_t i = 0; i < sizeof(paths) / sizeof(*paths); i++)
		if (paths[i] && resolve(paths[i], PATH_MAX, c->state_dir) < 0)
			return perr(err, -ENAMETOOLONG, "path too long");
	char host[128];
	int port;
	if (hostport_split(c->listen, host, sizeof(host), &port) < 0)
		return perr(err, -EINVAL, "listen: \"%s\" is not HOST:PORT",
			    c->listen);
	if (hostport_split(c->api_listen, host, sizeof(host), &port) < 0)
		return perr(err, -EINVAL, "api_listen: \"%s\" is not "
			    "HOST:PORT", c->api_listen);
	if (c->advertise[0] &&
	    (hostport_split(c->advertise, host, sizeof(host), &port) < 0 ||
	     port <= 0))
		return perr(err, -EINVAL, "advertise: \"%s\" is not "
			    "HOST:PORT", c->advertise);
	return 0;
}

int daemon_config_parse(int argc, char **argv, struct daemon_config *c,
			struct parley_err *err)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "listen", required_argument, NULL, 'l' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "ca", required_argument, NULL, 'a' },
		{ "cert", required_argument, NULL, 'e' },
		{ "key", required_argument, NULL, 'k' },
		{ "policy-key", required_argument, NULL, 'p' },
		{ "store", required_argument, NULL, 'd' },
		{ "log-level", required_argument, NULL, 'v' },
		{ "api-listen", required_argument, NULL, 'A' },
		{ "api-cert", required_argument, NULL, 'C' },
		{ "api-key", required_argument, NULL, 'K' },
		{ "ui-dir", required_argument, NULL, 'U' },
		{ "replica-name", required_argument, NULL, 'R' },
		{ "poll-ms", required_argument, NULL, 'P' },
		{ "advertise", required_argument, NULL, 'V' },
		{ 0 },
	};
	static const char *const names[128] = {
		['l'] = "listen", ['s'] = "state_dir", ['a'] = "ca",
		['e'] = "cert", ['k'] = "key", ['p'] = "policy_key",
		['d'] = "store", ['v'] = "log_level", ['A'] = "api_listen",
		['C'] = "api_cert", ['K'] = "api_key", ['U'] = "ui_dir",
		['R'] = "replica_name", ['P'] = "poll_ms",
		['V'] = "advertise",
	};
	defaults(c);
	/* The file first, so that flags override it whatever their order. */
	for (int i = 1; i + 1 < argc; i++)
		if (!strcmp(argv[i], "--config")) {
			int rc = load_file(c, argv[i + 1], err);
			if (rc < 0)
				return rc;
		}
	optind = 1;
	opterr = 0;                /* one message, ours, naming the option */
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'c')
			continue;
		if (o == '?' || o < 0 || o >= 128 || !names[o])
			return perr(err, -EINVAL, "unknown option or missing "
				    "value: %s", argv[optind - 1]);
		int rc = set(c, names[o], optarg, err);
		if (rc < 0)
			return rc;
	}
	if (optind < argc)
		return perr(err, -EINVAL, "unexpected argument \"%s\"",
			    argv[optind]);
	return finish(c, err);
}
