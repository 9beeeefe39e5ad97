/*
 * parley-pki: make the throw-away certificates tests and `./dev demo` use.
 *
 *   parley-pki ca DIR        DIR/ca.key, DIR/ca.crt (the fleet CA) and
 *                            DIR/policy.key, DIR/policy.pub (the policy
 *                            signing pair); refuses to replace a CA
 *   parley-pki issue DIR NAME [--server] [--days N] [--expired]
 *                            DIR/NAME.key, DIR/NAME.crt signed by DIR/ca.*;
 *                            CN = NAME; --server for the daemon (serverAuth,
 *                            loopback subjectAltName), else an agent
 *                            (clientAuth); --expired: expired yesterday
 *   parley-pki release-key DIR
 *                            DIR/release.key, DIR/release.pub: the pair
 *                            agent update packages are signed with
 *                            (parley-pkg sign); refuses to replace one
 *
 * Prints one line per certificate: "<path> sha256:<fingerprint>".
 * Exit status 0, 1 on failure, 2 on a usage error.
 */

/*
 * daemon/CMakeLists.txt globs every .c of this folder but main.c into
 * parley_daemonlib, so this file is compiled there too; without the guard
 * its main() would be linked into parley_tests ahead of Criterion's. The
 * program is built only where daemon/pki.cmake defines PARLEY_PKI_TOOL.
 */
#ifdef PARLEY_PKI_TOOL
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/jsonv.h"
#include "common/pki.h"
#include "common/sign.h"
#include "common/version.h"

#define CA_CN "parley-ca"
#define CA_DAYS 3650
#define LEAF_DAYS 365
#define DAY_S 86400L

static const char usage_text[] =
	"usage: parley-pki ca DIR\n"
	"       parley-pki issue DIR NAME [--server] [--days N] [--expired]\n"
	"       parley-pki release-key DIR\n"
	"       parley-pki --help | --version\n"
	"\n"
	"  ca DIR       make DIR/ca.key, ca.crt, policy.key, policy.pub\n"
	"  issue        DIR/NAME.key and NAME.crt signed by DIR's CA\n"
	"  release-key  DIR/release.key, release.pub: signs agent updates\n"
	"  --server     a server certificate (serverAuth, loopback names)\n"
	"  --days N     valid N days, 1..36500 (default 365)\n"
	"  --expired    expired yesterday (for tests)\n"
	"  --help       this text\n"
	"  --version    the version\n";

static int usage(void)
{
	fputs(usage_text, stderr);
	return 2;
}

static int fail(const struct parley_err *err)
{
	fprintf(stderr, "parley-pki: %s\n", perr_msg(err));
	return 1;
}

static int dir_file(char *out, const char *dir, const char *name,
		    const char *ext, struct parley_err *err)
{
	char base[NAME_MAX + 1];
	if (snprintf(base, sizeof(base), "%s%s", name, ext) >=
	    (int)sizeof(base))
		return perr(err, -ENAMETOOLONG, "%s%s: name too long", name,
			    ext);
	if (path_join(out, PATH_MAX, dir, base) < 0)
		return perr(err, -ENAMETOOLONG, "%s/%s: path too long", dir,
			    base);
	return 0;
}

static int print_cert(const char *path, X509 *x)
{
	char fp[65];
	if (pki_fingerprint(x, fp) < 0)
		return -EINVAL;
	printf("%s sha256:%s\n", path, fp);
	return 0;
}

/* DIR itself, 0700 when made here: it will hold private keys. */
static int make_dir(const char *dir, struct parley_err *err)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return perr(err, -errno, "%s: %m", dir);
	return 0;
}

static int write_pair(const char *dir, const char *name, EVP_PKEY *k,
		      X509 *x, struct parley_err *err)
{
	char kp[PATH_MAX], cp[PATH_MAX];
	int rc = dir_file(kp, dir, name, ".key", err);
	if (!rc)
		rc = dir_file(cp, dir, name, ".crt", err);
	if (!rc)
		rc = pki_write_key(kp, k, err);
	if (!rc)
		rc = pki_write_cert(cp, x, err);
	if (!rc)
		rc = print_cert(cp, x);
	return rc;
}

/* NAME.key and NAME.pub: an Ed25519 signing pair (policy, release). */
static int write_sign_key(const char *dir, const char *name,
			  struct parley_err *err)
{
	char kp[PATH_MAX], pp[PATH_MAX];
	EVP_PKEY *k = NULL;
	int rc = dir_file(kp, dir, name, ".key", err);
	if (!rc)
		rc = dir_file(pp, dir, name, ".pub", err);
	if (!rc)
		rc = pki_key_new(&k, err);
	if (!rc)
		rc = pki_write_key(kp, k, err);
	if (!rc)
		rc = sign_write_pub(pp, k, err);
	char id[65];
	if (!rc && sign_key_id(k, id) == 0)
		printf("%s key-id:%s\n", pp, id);
	EVP_PKEY_free(k);
	return rc;
}

static int cmd_ca(const char *dir)
{
	struct parley_err err = { 0 };
	char kp[PATH_MAX];
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	int rc = make_dir(dir, &err);
	if (!rc)
		rc = dir_file(kp, dir, "ca", ".key", &err);
	/* Replacing a CA silently would orphan every certificate it made. */
	if (!rc && access(kp, F_OK) == 0)
		rc = perr(&err, -EEXIST,
			  "%s exists; remove it to make a new CA", kp);
	if (!rc)
		rc = pki_ca_new(CA_CN, CA_DAYS, &k, &x, &err);
	if (!rc)
		rc = write_pair(dir, "ca", k, x, &err);
	if (!rc)
		rc = write_sign_key(dir, "policy", &err);
	X509_free(x);
	EVP_PKEY_free(k);
	return rc < 0 ? fail(&err) : 0;
}

/* The release key signs what every agent of the fleet will run: kept
 * apart from the CA and the policy key so that it can live offline. */
static int cmd_release_key(const char *dir)
{
	struct parley_err err = { 0 };
	char kp[PATH_MAX];
	int rc = make_dir(dir, &err);
	if (!rc)
		rc = dir_file(kp, dir, "release", ".key", &err);
	if (!rc && access(kp, F_OK) == 0)
		rc = perr(&err, -EEXIST, "%s exists; remove it to make a new "
			  "release key (agents trust the old one)", kp);
	if (!rc)
		rc = write_sign_key(dir, "release", &err);
	return rc < 0 ? fail(&err) : 0;
}

struct issue_opts {
	bool server, expired;
	int days;
};

static int parse_issue_opts(int argc, char **argv, struct issue_opts *o)
{
	*o = (struct issue_opts){ .days = LEAF_DAYS };
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--server")) {
			o->server = true;
		} else if (!strcmp(argv[i], "--expired")) {
			o->expired = true;
		} else if (!strcmp(argv[i], "--days") && i + 1 < argc) {
			char *end;
			errno = 0;
			long d = strtol(argv[++i], &end, 10);
			if (errno || *end || end == argv[i] || d < 1 ||
			    d > 36500)
				return -EINVAL;
			o->days = (int)d;
		} else {
			return -EINVAL;
		}
	}
	return 0;
}

static int load_ca(const char *dir, EVP_PKEY **k, X509 **x,
		   struct parley_err *err)
{
	char kp[PATH_MAX], cp[PATH_MAX];
	int rc = dir_file(kp, dir, "ca", ".key", err);
	if (!rc)
		rc = dir_file(cp, dir, "ca", ".crt", err);
	if (!rc)
		rc = pki_read_key(kp, k, err);
	if (!rc)
		rc = pki_read_cert(cp, x, err);
	return rc;
}

static int cmd_issue(const char *dir, const char *name,
		     const struct issue_opts *o)
{
	struct parley_err err = { 0 };
	EVP_PKEY *ca_k = NULL, *k = NULL;
	X509 *ca_x = NULL, *x = NULL;
	long nb = -PKI_SKEW_S, na = o->days * DAY_S;
	if (o->expired) {
		nb = -2 * DAY_S;
		na = -DAY_S;
	}
	int rc = load_ca(dir, &ca_k, &ca_x, &err);
	if (!rc)
		rc = pki_key_new(&k, &err);
	if (!rc)
		rc = pki_issue(ca_k, ca_x, k, name, nb, na, o->server, &x,
			       &err);
	if (!rc)
		rc = write_pair(dir, name, k, x, &err);
	X509_free(x);
	EVP_PKEY_free(k);
	X509_free(ca_x);
	EVP_PKEY_free(ca_k);
	return rc < 0 ? fail(&err) : 0;
}

int main(int argc, char **argv)
{
	if (parley_help_or_version(argc, argv, "parley-pki", usage_text))
		return 0;
	if (argc == 3 && !strcmp(argv[1], "ca"))
		return cmd_ca(argv[2]);
	if (argc == 3 && !strcmp(argv[1], "release-key"))
		return cmd_release_key(argv[2]);
	if (argc < 4 || strcmp(argv[1], "issue"))
		return usage();
	/* NAME is the CN and part of two file names. */
	if (!jv_name_valid(argv[3], strlen(argv[3]), PKI_CN_MAX) ||
	    !strcmp(argv[3], "ca") || !strcmp(argv[3], "policy") ||
	    !strcmp(argv[3], "release")) {
		fprintf(stderr,
			"parley-pki: \"%s\" is not a usable host name\n",
			argv[3]);
		return 2;
	}
	struct issue_opts o;
	if (parse_issue_opts(argc - 4, argv + 4, &o) < 0)
		return usage();
	return cmd_issue(argv[2], argv[3], &o);
}

#endif /* PARLEY_PKI_TOOL */
