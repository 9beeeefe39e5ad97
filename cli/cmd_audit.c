/* parleyctl audit: the daemon's hash-chained audit log (/v1/audit). */
#include "cli/ctl.h"
#include "common/checkpoint.h"
#include "common/pki.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char usage[] =
	"usage: parleyctl audit list [--host H] [--partition P] [--event E]\n"
	"           [--reason R] [--since T] [--until T] [--limit N]\n"
	"       parleyctl audit verify [--checkpoint FILE --pubkey FILE]\n"
	"\n"
	"T is unix milliseconds, or an age: 30s, 10m, 2h, 7d (that long ago).\n"
	"verify checks the chain; exit 1 when a row was altered.\n"
	"With --checkpoint (a document from GET /v1/audit/checkpoints) it first\n"
	"checks the checkpoint's signature offline with --pubkey (the daemon's\n"
	"checkpoint.pub), then that the store's rows up to the checkpoint still\n"
	"chain to the hash it signed: a store rewritten without the key fails.\n"
	"(`parleyd audit --store COPY --checkpoint F --pubkey P` does both\n"
	"offline, on a copy of the store file.)\n";

static const struct ctl_col cols[] = {
	{ "ID", "id" },
	{ "TIME_MS", "time_ms" },
	{ "HOST", "host" },
	{ "EVENT", "event" },
	{ "PARTITION", "partition" },
	{ "CHANNEL", "channel" },
	{ "REASON", "reason" },
	{ "FILE", "file" },
	{ NULL, NULL },
};

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* T as unix ms into buf; -EINVAL if it is neither form. */
static int time_arg(const char *s, char *buf, size_t cap)
{
	static const struct { char unit; long long ms; } units[] = {
		{ 's', 1000 }, { 'm', 60000 }, { 'h', 3600000 },
		{ 'd', 86400000 },
	};
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || v < 0 || *s == '-' || *s == '+')
		return -EINVAL;
	if (!*end) {
		snprintf(buf, cap, "%lld", v);
		return 0;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (end[0] != units[i].unit || end[1])
			continue;
		if (v > now_ms() / units[i].ms)
			return -EINVAL;
		snprintf(buf, cap, "%lld", now_ms() - v * units[i].ms);
		return 0;
	}
	return -EINVAL;
}

/* One filter option into the query; 0 or a usage error. */
static int filter_opt(char *q, size_t cap, int o, const char *arg)
{
	static const char *const keys[128] = {
		['H'] = "host", ['p'] = "partition", ['e'] = "event",
		['r'] = "reason",
		['s'] = "since_ms", ['u'] = "until_ms",
	};
	char t[32];
	if (o <= 0 || o >= 128 || !keys[o])
		return CTL_USAGE;
	if ((o == 's' || o == 'u') && time_arg(arg, t, sizeof(t)) < 0)
		return ctl_usage_error(usage, "--%s: \"%s\" is not unix ms or "
				       "an age like 10m", o == 's' ? "since" :
				       "until", arg);
	if (ctl_qadd(q, cap, keys[o], o == 's' || o == 'u' ? t : arg) < 0)
		return ctl_usage_error(usage, "filters too long");
	return 0;
}

static int audit_list(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "partition", required_argument, NULL, 'p' },
		{ "event", required_argument, NULL, 'e' },
		{ "reason", required_argument, NULL, 'r' },
		{ "since", required_argument, NULL, 's' },
		{ "until", required_argument, NULL, 'u' },
		{ "limit", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char q[2048] = "";
	long limit = 0;
	int o, rc = 0;
	while (!rc && (o = ctl_opt(argc, argv, opts, usage)) != -1)
		rc = o == 'l' ? ctl_limit(optarg, &limit, usage) :
				filter_opt(q, sizeof(q), o, optarg);
	if (rc || ctl_args(argc, argv, 0, usage))
		return CTL_USAGE;
	json_t *list;
	rc = ctl_list(c, "/v1/audit", q, limit, &list);
	return rc ? rc : ctl_show_list(c, list, cols);
}

static int verify_result(struct ctl *c, json_t *r)
{
	json_t *ok = json_object_get(r, "ok");
	json_t *rows = json_object_get(r, "rows");
	if (!json_is_boolean(ok) || !json_is_integer(rows)) {
		json_decref(r);
		return ctl_fail(CTL_ERR, "BAD_RESPONSE", "POST /v1/audit/verify: "
				"no ok or rows");
	}
	if (json_is_true(ok)) {
		if (c->json)
			return ctl_show_object(c, r);
		printf("audit chain ok: %" JSON_INTEGER_FORMAT " rows\n",
		       json_integer_value(rows));
		json_decref(r);
		return CTL_OK;
	}
	char *bad = ctl_text(json_object_get(r, "first_bad"));
	char *msg = ctl_text(json_object_get(r, "message"));
	if (c->json)
		ctl_show_object(c, json_incref(r));
	ctl_fail(CTL_ERR, "AUDIT_BROKEN", "first bad row %s: %s", bad, msg);
	free(bad);
	free(msg);
	json_decref(r);
	return CTL_ERR;
}

/* The checkpoint document and its signature, checked here: the server is
 * asked only whether its rows still chain to it. */
static int read_checkpoint(const char *file, const char *pubfile,
			   struct checkpoint *cp)
{
	struct parley_err err = { 0 };
	if (checkpoint_load(file, pubfile, cp, &err) < 0)
		return ctl_fail(CTL_ERR, "CHECKPOINT_BAD", "%s", perr_msg(&err));
	return CTL_OK;
}

static int audit_verify(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "checkpoint", required_argument, NULL, 'c' },
		{ "pubkey", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cpf = NULL, *pubf = NULL;
	int o;
	while ((o = ctl_opt(argc, argv, opts, usage)) != -1) {
		if (o == 'c')
			cpf = optarg;
		else if (o == 'k')
			pubf = optarg;
		else
			return CTL_USAGE;
	}
	if (ctl_args(argc, argv, 0, usage))
		return CTL_USAGE;
	if (!cpf != !pubf)
		return ctl_usage_error(usage, "--checkpoint and --pubkey go "
				       "together");
	char path[160] = "/v1/audit/verify";
	struct checkpoint cp;
	if (cpf) {
		int rc = read_checkpoint(cpf, pubf, &cp);
		if (rc)
			return rc;
		char hex[65];
		pki_hex(cp.hash, sizeof(cp.hash), hex);
		snprintf(path, sizeof(path), "/v1/audit/verify?seq=%llu&hash=%s",
			 (unsigned long long)cp.seq, hex);
		if (!c->json)
			printf("checkpoint signature ok: audit row %llu, key "
			       "%.16s...\n", (unsigned long long)cp.seq,
			       cp.key_id);
	}
	json_t *r;
	int rc = ctl_call(c, "POST", path, NULL, &r);
	return rc ? rc : verify_result(c, r);
}

static const struct ctl_verb verbs[] = {
	{ "list", audit_list },
	{ "verify", audit_verify },
	{ NULL, NULL },
};

int cmd_audit(struct ctl *c, int argc, char **argv)
{
	return ctl_dispatch(c, argc, argv, verbs, usage);
}
