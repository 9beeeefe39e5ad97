/*
 * parley-pkg: agent update packages (common/updpkg.h).
 *
 *   parley-pkg build --version V --replaces-min V [--abi-min M.N]
 *                    [--abi-max M.N] -o OUT FILE...
 *       an unsigned package of FILEs (each named by its base name;
 *       parley-agent and parley-vmm required)
 *   parley-pkg sign --key release.key PKG
 *       sign PKG in place with the release key (parley-pki release-key)
 *   parley-pkg inspect [--key release.pub] PKG
 *       print the manifest; with --key, verify the signature and every
 *       hash too (what an agent checks, but for the version it runs)
 *
 * Exit status 0, 1 when a package is refused or an operation fails, 2 on
 * a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <parley/abi.h>

#include "common/fileio.h"
#include "common/pki.h"
#include "common/sign.h"
#include "common/updpkg.h"
#include "common/version.h"

static const char usage_text[] =
	"usage: parley-pkg build --version V --replaces-min V [--abi-min M.N]\n"
	"                        [--abi-max M.N] -o OUT FILE...\n"
	"       parley-pkg sign --key KEY PKG\n"
	"       parley-pkg inspect [--key PUB] PKG\n"
	"       parley-pkg --help | --version\n"
	"\n"
	"  build           an unsigned package of FILEs (parley-agent and\n"
	"                  parley-vmm required; each named by its base name)\n"
	"  --version V     the package's version, X.Y.Z\n"
	"  --replaces-min V  the oldest running version it may replace\n"
	"  --abi-min M.N   lowest partition ABI it speaks (default 1.0)\n"
	"  --abi-max M.N   highest partition ABI it speaks (default: this\n"
	"                  build's)\n"
	"  -o OUT          where the package goes\n"
	"  sign            sign PKG in place with KEY (parley-pki release-key)\n"
	"  inspect         print PKG's manifest; with --key PUB, verify its\n"
	"                  signature and hashes\n"
	"  --key           the release key: private for sign, public (.pub)\n"
	"                  for inspect\n"
	"  --help          this text\n"
	"  --version       the version (of parley-pkg, when it comes first)\n";

static int usage(void)
{
	fputs(usage_text, stderr);
	return 2;
}

static int fail(const struct parley_err *err)
{
	fprintf(stderr, "parley-pkg: %s\n", perr_msg(err));
	return 1;
}

/* Whole file written beside `path`, then renamed over it. */
static int write_file(const char *path, const uint8_t *buf, size_t len,
		      struct parley_err *err)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return perr(err, -ENAMETOOLONG, "%s: path too long", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return perr(err, -errno, "%s: %m", tmp);
	int rc = fd_write_all(fd, buf, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return perr(err, rc, "%s: %s", path, strerror(-rc));
	}
	return 0;
}

struct build_opts {
	const char *version, *replaces_min, *abi_min, *abi_max, *out;
};

static int cmd_build(int argc, char **argv)
{
	char abi_max[16];
	snprintf(abi_max, sizeof(abi_max), "%u.%u", PARLEY_ABI_MAJOR,
		 PARLEY_ABI_MINOR);
	struct build_opts o = { .abi_min = "1.0", .abi_max = abi_max };
	int i = 0;
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char **slot = !strcmp(argv[i], "--version") ? &o.version
			: !strcmp(argv[i], "--replaces-min") ? &o.replaces_min
			: !strcmp(argv[i], "--abi-min") ? &o.abi_min
			: !strcmp(argv[i], "--abi-max") ? &o.abi_max
			: !strcmp(argv[i], "-o") ? &o.out : NULL;
		if (!slot || i + 1 >= argc)
			return usage();
		*slot = argv[++i];
	}
	int n = argc - i;
	if (!o.version || !o.replaces_min || !o.out || n < 1 ||
	    n > UPDPKG_FILES_MAX)
		return usage();
	struct updpkg_input in[UPDPKG_FILES_MAX];
	uint8_t *data[UPDPKG_FILES_MAX] = { 0 };
	char names[UPDPKG_FILES_MAX][PATH_MAX];
	struct parley_err err = { 0 };
	int rc = 0;
	for (int k = 0; rc == 0 && k < n; k++) {
		size_t len;
		rc = file_read_all(argv[i + k], UPDPKG_MAX, &data[k], &len,
				   &err);
		snprintf(names[k], sizeof(names[k]), "%s", argv[i + k]);
		in[k] = (struct updpkg_input){ .name = basename(names[k]),
					       .data = data[k], .len = len };
	}
	uint8_t *pkg = NULL;
	size_t plen = 0;
	if (rc == 0)
		rc = updpkg_build(o.version, o.replaces_min, o.abi_min,
				  o.abi_max, in, (unsigned)n, &pkg, &plen, &err);
	if (rc == 0)
		rc = write_file(o.out, pkg, plen, &err);
	if (rc == 0)
		printf("%s: %s %s, %d files, %zu bytes, unsigned\n", o.out,
		       "parley-agent", o.version, n, plen);
	for (int k = 0; k < n; k++)
		free(data[k]);
	free(pkg);
	return rc < 0 ? fail(&err) : 0;
}

/* --key K PKG, as sign and inspect take them (key optional for inspect). */
static int key_and_pkg(int argc, char **argv, const char **key,
		       const char **pkg)
{
	*key = NULL;
	if (argc == 3 && !strcmp(argv[0], "--key")) {
		*key = argv[1];
		*pkg = argv[2];
		return 0;
	}
	if (argc == 1 && argv[0][0] != '-') {
		*pkg = argv[0];
		return 0;
	}
	return -EINVAL;
}

static int cmd_sign(int argc, char **argv)
{
	const char *key, *path;
	if (key_and_pkg(argc, argv, &key, &path) < 0 || !key)
		return usage();
	struct parley_err err = { 0 };
	EVP_PKEY *k = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = pki_read_key(key, &k, &err);
	if (rc == 0)
		rc = file_read_all(path, UPDPKG_MAX, &buf, &len, &err);
	struct updpkg p;
	enum updpkg_refusal why;
	/* Sign only what an agent could accept but for the signature. */
	if (rc == 0)
		rc = updpkg_parse(buf, len, &p, &why, &err);
	if (rc == 0)
		rc = updpkg_sign(buf, len, k, &err);
	if (rc == 0)
		rc = write_file(path, buf, len, &err);
	char id[65];
	if (rc == 0 && sign_key_id(k, id) == 0)
		printf("%s: signed by key-id:%s\n", path, id);
	EVP_PKEY_free(k);
	free(buf);
	return rc < 0 ? fail(&err) : 0;
}

static void print_manifest(const char *path, const struct updpkg *p)
{
	printf("package      %s\n", path);
	printf("product      %s\n", p->product);
	printf("version      %s\n", p->version_s);
	printf("replaces     %u.%u.%u and later\n", p->replaces_min.v[0],
	       p->replaces_min.v[1], p->replaces_min.v[2]);
	printf("abi          %u.%u..%u.%u\n", p->abi_min[0], p->abi_min[1],
	       p->abi_max[0], p->abi_max[1]);
	printf("signed       %s\n", p->is_signed ? "yes" : "no");
	for (unsigned i = 0; i < p->nfile; i++) {
		char hex[65];
		pki_hex(p->file[i].sha256, 32, hex);
		printf("file         %-20s %10llu  sha256:%s\n", p->file[i].name,
		       (unsigned long long)p->file[i].size, hex);
	}
}

static int cmd_inspect(int argc, char **argv)
{
	const char *key, *path;
	if (key_and_pkg(argc, argv, &key, &path) < 0)
		return usage();
	struct parley_err err = { 0 };
	EVP_PKEY *pub = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = key ? sign_read_pub(key, &pub, &err) : 0;
	if (rc == 0)
		rc = file_read_all(path, UPDPKG_MAX, &buf, &len, &err);
	struct updpkg p;
	enum updpkg_refusal why = UPDPKG_OK;
	if (rc == 0)
		rc = updpkg_parse(buf, len, &p, &why, &err);
	if (rc == 0 && pub) {
		/* Every check an agent makes but the fit: any version fits. */
		struct updpkg_running any = { .version = { { 0, 0, 0 } },
			.abi_major = p.abi_min[0], .abi_minor = p.abi_min[1] };
		if (p.replaces_min.v[0] || p.replaces_min.v[1] ||
		    p.replaces_min.v[2])
			any.version = p.replaces_min;
		if (updpkg_version_cmp(&any.version, &p.version) >= 0)
			any.version = (struct updpkg_version){ { 0, 0, 0 } };
		rc = updpkg_verify(buf, len, pub, &any, &p, &why, &err);
	}
	if (rc == 0) {
		print_manifest(path, &p);
		if (pub)
			printf("verified     signature and %u hashes\n",
			       p.nfile);
	}
	EVP_PKEY_free(pub);
	free(buf);
	return rc < 0 ? fail(&err) : 0;
}

int main(int argc, char **argv)
{
	/* "build --version V" is an option of build, not a request for
	 * ours: only a first argument asks for help or the version. */
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		parley_print_version("parley-pkg");
		return 0;
	}
	if (argc < 2)
		return usage();
	if (!strcmp(argv[1], "build"))
		return cmd_build(argc - 2, argv + 2);
	if (!strcmp(argv[1], "sign"))
		return cmd_sign(argc - 2, argv + 2);
	if (!strcmp(argv[1], "inspect"))
		return cmd_inspect(argc - 2, argv + 2);
	fprintf(stderr, "parley-pkg: unknown command or option \"%s\"\n",
		argv[1]);
	return usage();
}
