/* parley-agent's options (cli.h). */
#include "agent/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent/backend.h"
#include "agent/vm/vmhost.h"
#include "agent/vmm_jail.h"
#include "common/err.h"

const char agent_cli_usage_text[] =
	"usage: parley-agent run [--image-dir DIR] [--config-dir DIR] "
	"[--vmm PATH]\n"
	"           [--backend kvm|process|auto] "
	"[--vmm-uid-range FIRST-LAST]\n"
	"           [--policy GRANTS.json] [--baselines FILE "
	"[--baseline-mode enroll|golden]]\n"
	"           [--audit FILE] [--audit-refusals N|all] "
	"[--rehash-interval SECONDS]\n"
	"           [--snapshot-dir DIR] [--snapshot-key FILE]\n"
	"           [--state-dir DIR] [--disk-dir DIR]\n"
	"           [--plugin-dir DIR] [--qemu-uid-range FIRST-LAST]\n"
	"           [--libvirt-uri URI]\n"
	"           [--update-stage DIR [--update-timeout SECONDS]] SPEC...\n"
	"       parley-agent restore [--vmm PATH] --baselines FILE "
	"[--snapshot-key FILE]\n"
	"           [--backend kvm|process|auto] "
	"[--vmm-uid-range FIRST-LAST] [--name NAME]\n"
	"           [--plugin-dir DIR] [--disk-dir DIR] [--spec SPEC] "
	"SNAPSHOT...\n"
	"       parley-agent serve --state-dir DIR [--server HOST:PORT[,...]] "
	"[--image-dir DIR]\n"
	"           [--config-dir DIR] [--audit FILE] "
	"[--audit-refusals N|all]\n"
	"           [--backend kvm|process|auto] "
	"[--vmm-uid-range FIRST-LAST]\n"
	"           [--update-stage DIR "
	"[--update-timeout SECONDS]]\n"
	"           [--disk-dir DIR] [--qemu-uid-range FIRST-LAST]\n"
	"           [--libvirt-uri URI] [SPEC...]\n"
	"       parley-agent join --server HOST:PORT --token prj_... "
	"--ca-sha256 HEX --state-dir DIR\n"
	"       parley-agent --help | --version\n"
	"\n"
	"See parley-agent(8) for what each option does.\n";

void agent_cli_usage(FILE *f)
{
	fputs(agent_cli_usage_text, f);
}

static int opt_dir(const char **dirs, unsigned *n, const char *d,
		   const char *opt)
{
	if (*n == IMAGE_DIRS_MAX) {
		fprintf(stderr, "parley-agent: too many %s\n", opt);
		return -1;
	}
	dirs[(*n)++] = d;
	return 0;
}

static int opt_mode(struct agent_cli *c, const char *m)
{
	if (!strcmp(m, "enroll"))
		c->mode = BASELINE_ENROLL;
	else if (!strcmp(m, "golden"))
		c->mode = BASELINE_GOLDEN;
	else {
		fprintf(stderr, "parley-agent: --baseline-mode is enroll or "
				"golden, not \"%s\"\n", m);
		return -1;
	}
	return 0;
}

static int opt_backend(struct agent_cli *c, const char *b)
{
	if (backend_parse(b, &c->backend) == 0)
		return 0;
	fprintf(stderr, "parley-agent: --backend is kvm, process or auto, "
			"not \"%s\"\n", b);
	return -1;
}

/* Each vmm runs as a uid of this range, its own while it lives. */
static int opt_uid_range(const char *r)
{
	uint32_t first, last;
	struct parley_err err = { 0 };
	if (vmm_jail_parse_range(r, &first, &last) < 0) {
		fprintf(stderr, "parley-agent: --vmm-uid-range takes FIRST-LAST "
				"above 65535, not \"%s\"\n", r);
		return -1;
	}
	if (vmm_jail_set_uid_range(first, last, &err) < 0) {
		fprintf(stderr, "parley-agent: %s\n", perr_msg(&err));
		return -1;
	}
	return 0;
}

/* Each VM's QEMU runs as a uid of this range, its own (agent/vm/vmhost.h):
 * refused when it holds root, a host user or vmm uids. */
static int opt_qemu_uid_range(const char *r)
{
	uint32_t first, last;
	struct parley_err err = { 0 };
	if (vmhost_parse_uid_range(r, &first, &last) < 0) {
		fprintf(stderr, "parley-agent: --qemu-uid-range takes "
				"FIRST-LAST, not \"%s\"\n", r);
		return -1;
	}
	if (vmhost_set_uid_range(first, last, &err) < 0) {
		fprintf(stderr, "parley-agent: --qemu-uid-range: %s\n",
			perr_msg(&err));
		return -1;
	}
	return 0;
}

/* The libvirt the agent's VMs run under (agent/vm/vmhost.h): a system
 * libvirtd of this host; without the option, the embedded driver. */
static int opt_libvirt_uri(struct agent_cli *c, const char *uri)
{
	struct parley_err err = { 0 };
	if (vmhost_uri_check(uri, &err) < 0) {
		fprintf(stderr, "parley-agent: --libvirt-uri: %s\n",
			perr_msg(&err));
		return -1;
	}
	c->libvirt_uri = uri;
	return 0;
}

/* --audit-refusals N (1..100000) or all: how many of a partition's
 * refusals a second are recorded one by one (ipc/audit.h). */
static int opt_refusals(struct agent_cli *c, const char *arg)
{
	char *end;
	long n = strtol(arg, &end, 10);
	if (!strcmp(arg, "all")) {
		c->audit_refusals = -1;
		return 0;
	}
	if (*arg < '0' || *arg > '9' || *end || n < 1 || n > 100000) {
		fprintf(stderr, "parley-agent: --audit-refusals takes a number "
			"a second (1-100000) or 'all'\n");
		return -1;
	}
	c->audit_refusals = (int)n;
	return 0;
}

/* Seconds, a plain decimal number in [lo, hi] (above lo when lo_open):
 * not empty, not NaN or infinite — they would reach a conversion to
 * nanoseconds that C leaves undefined. */
static int opt_seconds(const char *arg, const char *opt, double lo,
		       bool lo_open, double hi, double *out)
{
	char *end;
	double v = strtod(arg, &end);
	if (end == arg || *end || !isfinite(v) || v < lo || (lo_open && v == lo) ||
	    v > hi) {
		fprintf(stderr, "parley-agent: %s takes seconds, %s%g to %g, not "
			"'%s'\n", opt, lo_open ? "more than " : "", lo, hi, arg);
		return -1;
	}
	*out = v;
	return 0;
}

static int opt_one(struct agent_cli *c, int o)
{
	switch (o) {
	case 'i':
		return opt_dir(c->image_dirs, &c->nimage_dirs, optarg,
			       "--image-dir");
	case 'c':
		return opt_dir(c->config_dirs, &c->nconfig_dirs, optarg,
			       "--config-dir");
	case 'd':
		return opt_dir(c->disk_dirs, &c->ndisk_dirs, optarg,
			       "--disk-dir");
	case 'v':
		c->vmm = optarg;
		return 0;
	case 's':
		c->snapshot_dir = optarg;
		return 0;
	case 'p':
		c->policy = optarg;
		return 0;
	case 'b':
		c->baselines = optarg;
		return 0;
	case 'm':
		return opt_mode(c, optarg);
	case 'a':
		c->audit = optarg;
		return 0;
	case 'r':
		return opt_seconds(optarg, "--rehash-interval", 0, false,
				   REHASH_S_MAX, &c->rehash_s);
	case 'A':
		return opt_refusals(c, optarg);
	case 'S':
		c->state_dir = optarg;
		return 0;
	case 'D':
		c->server = optarg;
		return 0;
	case 'k':
		c->snapshot_key = optarg;
		return 0;
	case 'n':
		c->name = optarg;
		return 0;
	case 'B':
		return opt_backend(c, optarg);
	case 'U':
		c->update_stage = optarg;
		return 0;
	case 'T':
		/* (a millisecond at least: it is counted in them) */
		return opt_seconds(optarg, "--update-timeout", 0.001, false,
				   600, &c->update_timeout_s);
	case 'u':
		return opt_uid_range(optarg);
	case 'Q':
		return opt_qemu_uid_range(optarg);
	case 'X':
		c->spec = optarg;
		return 0;
	case 'L':
		return opt_libvirt_uri(c, optarg);
	case 'P':
		c->plugin_dir = optarg;
		return 0;
	case 'h':
		agent_cli_usage(stdout);
		exit(0);
	default:
		agent_cli_usage(stderr);
		return -1;
	}
}

/* --state-dir: made (0700) when it is missing, as a service manager's
 * StateDirectory would be; its parent must exist. Anything else in its
 * place is named. */
static int state_dir_ready(const char *dir)
{
	struct stat st;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "parley-agent: --state-dir %s: cannot make it: "
			"%s\n", dir, strerror(errno));
		return -1;
	}
	if (stat(dir, &st) < 0) {
		fprintf(stderr, "parley-agent: --state-dir %s: %s\n", dir,
			strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "parley-agent: --state-dir %s: not a "
			"directory\n", dir);
		return -1;
	}
	return 0;
}

int agent_cli_parse(int argc, char **argv, struct agent_cli *c)
{
	static const struct option opts[] = {
		{ "image-dir", required_argument, NULL, 'i' },
		{ "config-dir", required_argument, NULL, 'c' },
		{ "disk-dir", required_argument, NULL, 'd' },
		{ "vmm", required_argument, NULL, 'v' },
		{ "snapshot-dir", required_argument, NULL, 's' },
		{ "policy", required_argument, NULL, 'p' },
		{ "baselines", required_argument, NULL, 'b' },
		{ "baseline-mode", required_argument, NULL, 'm' },
		{ "audit", required_argument, NULL, 'a' },
		{ "rehash-interval", required_argument, NULL, 'r' },
		{ "audit-refusals", required_argument, NULL, 'A' },
		{ "state-dir", required_argument, NULL, 'S' },
		{ "server", required_argument, NULL, 'D' },
		{ "snapshot-key", required_argument, NULL, 'k' },
		{ "backend", required_argument, NULL, 'B' },
		{ "name", required_argument, NULL, 'n' },
		{ "vmm-uid-range", required_argument, NULL, 'u' },
		{ "qemu-uid-range", required_argument, NULL, 'Q' },
		{ "libvirt-uri", required_argument, NULL, 'L' },
		{ "update-stage", required_argument, NULL, 'U' },
		{ "update-timeout", required_argument, NULL, 'T' },
		{ "plugin-dir", required_argument, NULL, 'P' },
		{ "spec", required_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int o;
	c->rehash_s = 10;
	while ((o = getopt_long(argc, argv, "+i:v:s:p:b:m:a:r:h", opts,
				NULL)) != -1)
		if (opt_one(c, o) < 0)
			return -1;
	if (optind >= argc && strcmp(argv[0], "serve")) {
		agent_cli_usage(stderr);
		return -1;
	}
	if (c->state_dir && state_dir_ready(c->state_dir) < 0)
		return -1;
	return optind;
}
