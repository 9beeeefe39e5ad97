/*
 * Agent updates from a partition (issue 12), up to a verified stage:
 * `parley-agent run --state-dir` with the example updater partition
 * streaming a package down (from its own config file, or from another
 * partition over a channel), on every backend. Each refusal is checked
 * for its reason on the partition's side, in the audit and on disk
 * (nothing staged); a partition without the capability gets NO_GRANT,
 * audited; an agent killed mid-stream leaves a partial stage the next
 * start discards. The package parser itself (common/updpkg.c) is checked
 * here too, on hostile manifests and headers.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <parley/abi.h>

#include "common/fileio.h"
#include "common/pki.h"
#include "common/sign.h"
#include "common/updpkg.h"
#include "common/version.h"
#include "tests/helpers/testutil.h"

TestSuite(update, .timeout = 120);

/* ---- packages ------------------------------------------------------------ */

static const char agent_bytes[] = "#!/bin/false new parley-agent\n";
static const char vmm_bytes[] = "#!/bin/false new parley-vmm\n";

static EVP_PKEY *new_key(void)
{
	EVP_PKEY *k = NULL;
	struct parley_err err = { 0 };
	cr_assert_eq(pki_key_new(&k, &err), 0, "%s", perr_msg(&err));
	return k;
}

/* The running version with `bump` added to its minor ("0.5.0" from
 * 0.4.0 and +1; -1 an older one, 0 the same). */
static void version_plus(char *out, size_t cap, int bump)
{
	struct updpkg_running r;
	updpkg_running_self(&r);
	int minor = (int)r.version.v[1] + bump;
	unsigned major = r.version.v[0];
	if (minor < 0) { /* 1.0.0 - 1: 0.65535.0 */
		cr_assert(major > 0);
		major--;
		minor = 65535;
	}
	snprintf(out, cap, "%u.%d.%u", major, minor, r.version.v[2]);
}

struct pkg_opts {
	int bump;                   /* version against the running one */
	const char *replaces_min;   /* NULL: "0.0.0" */
	const char *abi_min, *abi_max;  /* NULL: "1.0", this build's */
	EVP_PKEY *key;              /* NULL: unsigned */
};

static uint8_t *make_pkg(const struct pkg_opts *o, size_t *len)
{
	char ver[32], abi_max[16];
	version_plus(ver, sizeof(ver), o->bump);
	snprintf(abi_max, sizeof(abi_max), "%u.%u", PARLEY_ABI_MAJOR,
		 PARLEY_ABI_MINOR);
	struct updpkg_input in[] = {
		{ "parley-agent", (const uint8_t *)agent_bytes,
		  sizeof(agent_bytes) - 1 },
		{ "parley-vmm", (const uint8_t *)vmm_bytes,
		  sizeof(vmm_bytes) - 1 },
		{ "sdk-notes.txt", (const uint8_t *)"for the updater\n", 16 },
	};
	uint8_t *buf;
	struct parley_err err = { 0 };
	cr_assert_eq(updpkg_build(ver, o->replaces_min ? o->replaces_min
						       : "0.0.0",
				  o->abi_min ? o->abi_min : "1.0",
				  o->abi_max ? o->abi_max : abi_max, in, 3,
				  &buf, len, &err), 0, "%s", perr_msg(&err));
	if (o->key)
		cr_assert_eq(updpkg_sign(buf, *len, o->key, &err), 0, "%s",
			     perr_msg(&err));
	return buf;
}

/* ---- an agent with a state dir, its updater and what they said ---------- */

struct rig {
	char *dir;                  /* state dir is dir/state */
	char state[512], audit[512], pkg[512];
	EVP_PKEY *release;
	char *out;
	int rc;
};

static void rig_init(struct rig *r)
{
	memset(r, 0, sizeof(*r));
	r->dir = t_tmpdir();
	snprintf(r->state, sizeof(r->state), "%s/state", r->dir);
	snprintf(r->audit, sizeof(r->audit), "%s/audit.jsonl", r->dir);
	snprintf(r->pkg, sizeof(r->pkg), "%s/update.pkg", r->dir);
	cr_assert_eq(mkdir(r->state, 0700), 0);
	/* What the join step leaves in the state dir. */
	r->release = new_key();
	char pub[600];
	snprintf(pub, sizeof(pub), "%s/release.pub", r->state);
	struct parley_err err = { 0 };
	cr_assert_eq(sign_write_pub(pub, r->release, &err), 0, "%s",
		     perr_msg(&err));
}

static void rig_free(struct rig *r)
{
	EVP_PKEY_free(r->release);
	free(r->out);
	t_rmtree(r->dir);
	free(r->dir);
}

static void put_pkg(struct rig *r, const uint8_t *buf, size_t len)
{
	free(t_write(r->dir, "update.pkg", buf, len));
}

/* A good package (newer, signed with the trusted key) as the updater's
 * config file; returned for the caller to free. */
static uint8_t *good_pkg(struct rig *r, size_t *len)
{
	uint8_t *pkg = make_pkg(&(struct pkg_opts){ .bump = 1,
						    .key = r->release }, len);
	put_pkg(r, pkg, *len);
	return pkg;
}

/* The updater's spec: the package as its config file, `update` granted
 * or not. */
static void write_specs(struct rig *r, const char *cmdline, bool capable)
{
	char spec[1024];
	snprintf(spec, sizeof(spec),
		 "{\"name\":\"updater\",\"image\":\"updater.elf\","
		 "\"memory\":\"8M\",\"cmdline\":\"%s\","
		 "\"config\":[{\"name\":\"package\",\"path\":\"update.pkg\"}]"
		 "%s}", cmdline,
		 capable ? ",\"capabilities\":[\"update\"]" : "");
	free(t_write(r->dir, "updater.json", spec, strlen(spec)));
}

static void run_agent(struct rig *r, const char *policy, const char *spec2)
{
	char s1[600], s2[600], pol[600];
	snprintf(s1, sizeof(s1), "%s/updater.json", r->dir);
	snprintf(s2, sizeof(s2), "%s/%s", r->dir, spec2 ? spec2 : "");
	snprintf(pol, sizeof(pol), "%s/%s", r->dir, policy ? policy : "");
	char *argv[20] = { T_AGENT, "run", "--vmm", T_VMM, "--image-dir",
			   PARLEY_BUILD_DIR "/guest", "--backend",
			   (char *)t_backend_name(), "--state-dir", r->state,
			   "--audit", r->audit };
	int n = 12;
	if (policy) {
		argv[n++] = "--policy";
		argv[n++] = pol;
	}
	argv[n++] = s1;
	if (spec2)
		argv[n++] = s2;
	free(r->out);
	r->rc = t_run(argv, &r->out, 60);
}

static char *audit_of(struct rig *r)
{
	uint8_t *buf = NULL;
	size_t len;
	struct parley_err err = { 0 };
	if (file_read_all(r->audit, 1 << 20, &buf, &len, &err) < 0)
		return strdup("");
	return (char *)buf;
}

#define OUT_HAS(r, s) cr_assert(strstr((r)->out, s), "no \"%s\" in:\n%s", s, (r)->out)

static void audit_has(struct rig *r, const char *s)
{
	char *a = audit_of(r);
	cr_expect(strstr(a, s), "no %s in the audit:\n%s", s, a);
	free(a);
}

static bool exists(struct rig *r, const char *rel)
{
	char p[700];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", r->state, rel);
	return lstat(p, &st) == 0;
}

static unsigned mode_of(struct rig *r, const char *rel)
{
	char p[700];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", r->state, rel);
	cr_assert_eq(lstat(p, &st), 0, "%s: %s", p, strerror(errno));
	cr_expect_eq(st.st_uid, geteuid(), "%s not the agent's", rel);
	return st.st_mode & 07777;
}

static void same_file(struct rig *r, const char *rel, const char *want,
		      size_t len)
{
	char p[700];
	uint8_t *buf;
	size_t got;
	struct parley_err err = { 0 };
	snprintf(p, sizeof(p), "%s/%s", r->state, rel);
	cr_assert_eq(file_read_all(p, 1 << 20, &buf, &got, &err), 0, "%s",
		     perr_msg(&err));
	cr_expect(got == len && !memcmp(buf, want, len), "%s differs", rel);
	free(buf);
}

static void nothing_staged(struct rig *r)
{
	cr_expect(!exists(r, "update/stage"), "a stage exists");
	cr_expect(!exists(r, "update/stage.tmp"), "stage.tmp exists");
	cr_expect(!exists(r, "update/incoming.pkg"), "incoming.pkg left");
}

static void staged(struct rig *r)
{
	char want[96], ver[32];
	version_plus(ver, sizeof(ver), 1);
	/* Verified and staged, then handed over from the agent's loop: the
	 * staged "agent" is /bin/false, so the hand-over rolls back and the
	 * old agent answers the updater's STATUS with the reason. */
	snprintf(want, sizeof(want), "updater| updater: commit 0 state "
		 "staged: handing over to %s\n", ver);
	OUT_HAS(r, want);
	OUT_HAS(r, "updater| updater: status 0 state failed");
	OUT_HAS(r, "the new agent exited with status 1 at start");
	cr_expect_eq(mode_of(r, "update"), 0700);
	cr_expect_eq(mode_of(r, "update/stage"), 0700);
	cr_expect_eq(mode_of(r, "update/stage/parley-agent"), 0755);
	cr_expect_eq(mode_of(r, "update/stage/parley-vmm"), 0755);
	cr_expect_eq(mode_of(r, "update/stage/manifest.json"), 0644);
	same_file(r, "update/stage/parley-agent", agent_bytes,
		  sizeof(agent_bytes) - 1);
	same_file(r, "update/stage/parley-vmm", vmm_bytes,
		  sizeof(vmm_bytes) - 1);
	cr_expect(!exists(r, "update/stage/sdk-notes.txt"),
		  "the updater's own files are not the agent's to stage");
	cr_expect(!exists(r, "update/incoming.pkg"));
	audit_has(r, "\"event\":\"update_begin\",\"partition\":\"updater\"");
	audit_has(r, "\"event\":\"update_staged\",\"partition\":\"updater\"");
	audit_has(r, "\"event\":\"update_handover\",\"partition\":\"updater\"");
	audit_has(r, "\"event\":\"update_rollback\"");
}

/* ---- from a partition ---------------------------------------------------- */

T_BACKEND_TEST(update, good_package_from_a_partition_is_staged_and_verified, .timeout = 120)
{
	struct rig r;
	rig_init(&r);
	size_t len;
	uint8_t *pkg = good_pkg(&r, &len);
	/* Chunks of 1000 bytes: many WRITEs, none aligned to anything. */
	write_specs(&r, "source=config chunk=1000", true);
	run_agent(&r, NULL, NULL);
	cr_assert_eq(r.rc, 0, "exit %d:\n%s", r.rc, r.out);
	staged(&r);
	free(pkg);
	rig_free(&r);
}

/* The prior art's way: the updater gets the package from another
 * partition over a channel (its "guest facilities") and hands it down. */
T_BACKEND_TEST(update, good_package_over_a_channel_then_down, .timeout = 120)
{
	struct rig r;
	rig_init(&r);
	size_t len;
	uint8_t *pkg = good_pkg(&r, &len);
	write_specs(&r, "source=chan", true);
	static const char src[] =
		"{\"name\":\"pkgsrc\",\"image\":\"pkgsrc.elf\","
		"\"memory\":\"8M\",\"config\":[{\"name\":\"package\","
		"\"path\":\"update.pkg\"}]}";
	static const char pol[] =
		"{\"grants\":[{\"channel\":\"update\",\"endpoint_a\":"
		"\"pkgsrc\",\"endpoint_b\":\"updater\",\"direction\":"
		"\"both\",\"ring_bytes\":\"64K\"}]}";
	free(t_write(r.dir, "pkgsrc.json", src, strlen(src)));
	free(t_write(r.dir, "grants.json", pol, strlen(pol)));
	run_agent(&r, "grants.json", "pkgsrc.json");
	cr_assert_eq(r.rc, 0, "exit %d:\n%s", r.rc, r.out);
	char sent[64];
	snprintf(sent, sizeof(sent), "pkgsrc| pkgsrc: sent %zu bytes, "
		 "received\n", len);
	OUT_HAS(&r, sent);
	staged(&r);
	free(pkg);
	rig_free(&r);
}

/* The whole way from a partition: the package holds a real new agent
 * (parley-agent-next: this build, a version saying "+next") and vmm; the
 * updater streams it down, the old agent hands its partitions over, and
 * the updater, still running, hears from the new one. */
T_BACKEND_TEST(update, good_package_from_a_partition_takes_over, .timeout = 180)
{
	struct rig r;
	rig_init(&r);
	uint8_t *ab, *vb;
	size_t al, vl, len;
	struct parley_err err = { 0 };
	cr_assert_eq(file_read_all(T_BIN("parley-agent-next"), 256 << 20, &ab,
				   &al, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(file_read_all(T_VMM, 256 << 20, &vb, &vl, &err), 0,
		     "%s", perr_msg(&err));
	char ver[32], abi_max[16];
	version_plus(ver, sizeof(ver), 1);
	snprintf(abi_max, sizeof(abi_max), "%u.%u", PARLEY_ABI_MAJOR,
		 PARLEY_ABI_MINOR);
	struct updpkg_input in[] = { { "parley-agent", ab, al },
				     { "parley-vmm", vb, vl } };
	uint8_t *pkg;
	cr_assert_eq(updpkg_build(ver, "0.0.0", "1.0", abi_max, in, 2, &pkg,
				  &len, &err), 0, "%s", perr_msg(&err));
	cr_assert_eq(updpkg_sign(pkg, len, r.release, &err), 0, "%s",
		     perr_msg(&err));
	put_pkg(&r, pkg, len);
	char spec[1024];
	snprintf(spec, sizeof(spec),
		 "{\"name\":\"updater\",\"image\":\"updater.elf\","
		 "\"memory\":\"64M\",\"cmdline\":\"source=config "
		 "chunk=65536\",\"config\":[{\"name\":\"package\","
		 "\"path\":\"update.pkg\"}],\"capabilities\":[\"update\"]}");
	free(t_write(r.dir, "updater.json", spec, strlen(spec)));
	run_agent(&r, NULL, NULL);
	cr_assert_eq(r.rc, 0, "exit %d:\n%s", r.rc, r.out);
	OUT_HAS(&r, "+next took over from");
	OUT_HAS(&r, "updater| updater: status 0 state committed received 0 of 0: running ");
	audit_has(&r, "\"event\":\"update_staged\",\"partition\":\"updater\"");
	audit_has(&r, "\"event\":\"update_committed\"");
	char *a = audit_of(&r);
	cr_expect(!strstr(a, "update_rollback"), "%s", a);
	free(a);
	free(pkg);
	free(ab);
	free(vb);
	rig_free(&r);
}

struct refusal {
	const char *name;       /* the reason, as detail and audit say it */
	struct pkg_opts o;
	int other_key;          /* sign with another key */
	int cut;                /* bytes cut off the end */
	int flip;               /* flip a byte of the last file */
};

static const struct refusal refusals[] = {
	{ "unsigned", { .bump = 1 }, 0, 0, 0 },
	{ "bad-signature", { .bump = 1 }, 1, 0, 0 },
	{ "truncated", { .bump = 1 }, 0, 5, 0 },
	{ "hash-mismatch", { .bump = 1 }, 0, 0, 1 },
	{ "not-newer", { .bump = 0 }, 0, 0, 0 },      /* the same version */
	{ "not-newer", { .bump = -1 }, 0, 0, 0 },     /* a downgrade */
	{ "too-old-to-replace", { .bump = 2, .replaces_min = "65535.0.0" },
	  0, 0, 0 },
	{ "abi", { .bump = 1, .abi_min = "2.0", .abi_max = "2.3" }, 0, 0, 0 },
	{ "abi", { .bump = 1, .abi_min = "0.1", .abi_max = "0.9" }, 0, 0, 0 },
};

struct refusal_param {
	unsigned i;
	uint32_t backend;
};

ParameterizedTestParameters(update, each_refusal_with_its_reason_nothing_staged)
{
	static struct refusal_param p[32];
	uint32_t b[T_BACKENDS_MAX];
	size_t nb = t_backends(b), n = 0;
	for (size_t k = 0; k < nb; k++)
		for (unsigned i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
			p[n].i = i;
			p[n++].backend = b[k];
		}
	return cr_make_param_array(struct refusal_param, p, n);
}

ParameterizedTest(struct refusal_param *pp, update,
		  each_refusal_with_its_reason_nothing_staged)
{
	t_backend = pp->backend;
	const struct refusal *f = &refusals[pp->i];
	cr_log_info("backend %s, %s", t_backend_name(), f->name);
	struct rig r;
	rig_init(&r);
	EVP_PKEY *other = f->other_key ? new_key() : NULL;
	struct pkg_opts o = f->o;
	o.key = !strcmp(f->name, "unsigned") ? NULL
		: other ? other : r.release;
	size_t len;
	uint8_t *pkg = make_pkg(&o, &len);
	if (f->flip)
		pkg[len - 3] ^= 0x20;
	put_pkg(&r, pkg, len - (size_t)f->cut);
	write_specs(&r, "source=config", true);
	run_agent(&r, NULL, NULL);
	cr_assert_eq(r.rc, 1, "exit %d:\n%s", r.rc, r.out);
	char want[96];
	snprintf(want, sizeof(want), "updater| updater: commit -3 state "
		 "refused: %s: ", f->name);
	OUT_HAS(&r, want);
	OUT_HAS(&r, "updater| updater: status 0 state refused");
	snprintf(want, sizeof(want), "\"event\":\"update_refused\","
		 "\"partition\":\"updater\",\"reason\":\"%s\"", f->name);
	audit_has(&r, want);
	nothing_staged(&r);
	EVP_PKEY_free(other);
	free(pkg);
	rig_free(&r);
}

T_BACKEND_TEST(update, partition_without_the_capability_gets_no_grant_audited, .timeout = 120)
{
	struct rig r;
	rig_init(&r);
	size_t len;
	uint8_t *pkg = good_pkg(&r, &len);
	write_specs(&r, "source=config", false);
	run_agent(&r, NULL, NULL);
	cr_assert_eq(r.rc, 1, "exit %d:\n%s", r.rc, r.out);
	char want[96];
	snprintf(want, sizeof(want), "updater| updater: begin %zu bytes: -2 "
		 "no update capability\n", len);
	OUT_HAS(&r, want);
	OUT_HAS(&r, "updater| updater: status -2 state idle");
	audit_has(&r, "\"event\":\"update_denied\",\"partition\":\"updater\","
		      "\"reason\":\"NO_GRANT\",\"detail\":\"begin\"");
	audit_has(&r, "\"event\":\"update_denied\",\"partition\":\"updater\","
		      "\"reason\":\"NO_GRANT\",\"detail\":\"status\"");
	nothing_staged(&r);
	free(pkg);
	rig_free(&r);
}

/* The policy narrows what specs ask for: with a "capabilities" list, a
 * partition not on it has no update capability whatever its spec says;
 * on it, it has. */
T_BACKEND_TEST(update, policy_capabilities_narrow_the_spec, .timeout = 120)
{
	struct rig r;
	rig_init(&r);
	size_t len;
	uint8_t *pkg = good_pkg(&r, &len);
	write_specs(&r, "source=config", true);
	static const char none[] = "{\"grants\":[],\"capabilities\":[]}";
	free(t_write(r.dir, "none.json", none, strlen(none)));
	run_agent(&r, "none.json", NULL);
	cr_assert_eq(r.rc, 1, "exit %d:\n%s", r.rc, r.out);
	OUT_HAS(&r, "-2 update not granted by policy\n");
	audit_has(&r, "\"event\":\"update_denied\",\"partition\":\"updater\","
		      "\"reason\":\"NO_GRANT\",\"detail\":\"begin\"");
	nothing_staged(&r);
	static const char some[] = "{\"grants\":[],\"capabilities\":["
		"{\"partition\":\"updater\",\"capability\":\"update\"}]}";
	free(t_write(r.dir, "some.json", some, strlen(some)));
	run_agent(&r, "some.json", NULL);
	cr_assert_eq(r.rc, 0, "exit %d:\n%s", r.rc, r.out);
	staged(&r);
	free(pkg);
	rig_free(&r);
}

/* No release.pub (a host that joined a daemon without one): nothing can
 * verify, so nothing is taken. */
T_BACKEND_TEST(update, no_release_key_takes_nothing, .timeout = 120)
{
	struct rig r;
	rig_init(&r);
	char pub[600];
	snprintf(pub, sizeof(pub), "%s/release.pub", r.state);
	cr_assert_eq(unlink(pub), 0);
	size_t len;
	uint8_t *pkg = good_pkg(&r, &len);
	write_specs(&r, "source=config", true);
	run_agent(&r, NULL, NULL);
	cr_assert_eq(r.rc, 1, "exit %d:\n%s", r.rc, r.out);
	OUT_HAS(&r, "-10 no release.pub: this agent trusts no release key");
	nothing_staged(&r);
	free(pkg);
	rig_free(&r);
}

/* A vmm taken over by its partition names memory the partition could never
 * pass (its config region) in an update write: the grant manager checks
 * the range itself and stops the partition; nothing is read from there. */
Test(update, lying_vmm_is_stopped_by_the_grant_managers_own_check)
{
	struct rig r;
	rig_init(&r);
	static const char spec[] =
		"{\"name\":\"evil-update_lie\",\"image\":\"hello.elf\","
		"\"memory\":\"8M\",\"capabilities\":[\"update\"],"
		"\"config\":[{\"name\":\"motd\",\"path\":\"motd\"}]}";
	free(t_write(r.dir, "updater.json", spec, strlen(spec)));
	free(t_write(r.dir, "motd", "hello\n", 6));
	char s1[600];
	snprintf(s1, sizeof(s1), "%s/updater.json", r.dir);
	char *argv[] = { T_AGENT, "run", "--vmm", T_BIN("parley-vmm-evil"),
			 "--image-dir", PARLEY_BUILD_DIR "/guest", "--backend",
			 "process", "--state-dir", r.state, "--audit", r.audit,
			 s1, NULL };
	r.rc = t_run(argv, &r.out, 60);
	cr_assert_eq(r.rc, 1, "exit %d:\n%s", r.rc, r.out);
	OUT_HAS(&r, "evil: update reply 0");
	OUT_HAS(&r, "update write of 0x40000000 + 16 bytes: in the config "
		    "region");
	OUT_HAS(&r, "vmm-protocol");
	audit_has(&r, "\"event\":\"update_begin\"");
	audit_has(&r, "\"event\":\"update_discarded\",\"partition\":"
		      "\"evil-update_lie\",\"reason\":\"PARTITION_STOPPED\"");
	nothing_staged(&r);
	rig_free(&r);
}

/* ---- kill -9 mid-stage ----------------------------------------------------- */

/* Start the agent with its output into dir/out.txt; returns its pid. */
static pid_t start_agent(struct rig *r)
{
	char s1[600], outp[600];
	snprintf(s1, sizeof(s1), "%s/updater.json", r->dir);
	snprintf(outp, sizeof(outp), "%s/out.txt", r->dir);
	int fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert(fd >= 0);
	pid_t parent = getpid(), pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		t_child_dies_with_parent(parent);
		dup2(fd, 1);
		dup2(fd, 2);
		char *argv[] = { T_AGENT, "run", "--vmm", T_VMM, "--image-dir",
				 PARLEY_BUILD_DIR "/guest", "--backend",
				 (char *)t_backend_name(), "--state-dir",
				 r->state, "--audit", r->audit, s1, NULL };
		execv(argv[0], argv);
		_exit(127);
	}
	close(fd);
	return pid;
}

static char *read_out(struct rig *r)
{
	char p[600];
	uint8_t *buf = NULL;
	size_t len;
	struct parley_err err = { 0 };
	snprintf(p, sizeof(p), "%s/out.txt", r->dir);
	if (file_read_all(p, 1 << 20, &buf, &len, &err) < 0)
		return strdup("");
	return (char *)buf;
}

T_BACKEND_TEST(update, kill_9_mid_stage_next_start_discards_it, .timeout = 120)
{
	struct rig r;
	rig_init(&r);
	size_t len;
	uint8_t *pkg = good_pkg(&r, &len);
	write_specs(&r, "source=config chunk=100 stop_after=300", true);
	pid_t pid = start_agent(&r);
	/* The suite's timeout bounds this wait; it is no timed assertion. */
	char *out = NULL;
	for (;;) {
		free(out);
		out = read_out(&r);
		if (strstr(out, "updater: holding at 300"))
			break;
		int st;
		cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "agent ended:\n%s",
			     out);
		usleep(20000);
	}
	free(out);
	char inc[600];
	struct stat st;
	snprintf(inc, sizeof(inc), "%s/update/incoming.pkg", r.state);
	cr_assert_eq(stat(inc, &st), 0, "no partial stage while streaming");
	cr_assert_eq(kill(pid, SIGKILL), 0);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	cr_assert_eq(stat(inc, &st), 0, "the partial stage is still there");

	/* The next start: a partition that only asks how things stand. */
	write_specs(&r, "source=config chunk=100 stop_after=0", true);
	pid = start_agent(&r);
	out = NULL;
	for (;;) {
		free(out);
		out = read_out(&r);
		if (strstr(out, "updater: holding at"))
			break;
		int s2;
		cr_assert_eq(waitpid(pid, &s2, WNOHANG), 0, "agent ended:\n%s",
			     out);
		usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	audit_has(&r, "\"event\":\"update_discarded\",\"reason\":\"PARTIAL\"");
	/* After the discard, this run began a stage of its own. */
	char *a = audit_of(&r);
	const char *disc = strstr(a, "update_discarded");
	cr_assert(disc && strstr(disc, "\"event\":\"update_begin\""),
		  "no fresh begin after the discard:\n%s", a);
	free(a);
	free(out);
	free(pkg);
	rig_free(&r);
}

/* One stage at a time: two capable updaters, each holding mid-stream once
 * it has begun. Whichever asks second gets LIMIT naming the first. */
T_BACKEND_TEST(update, one_stage_at_a_time, .timeout = 120)
{
	struct rig r;
	rig_init(&r);
	size_t len;
	uint8_t *pkg = good_pkg(&r, &len);
	write_specs(&r, "source=config chunk=100 stop_after=100", true);
	char spec[600], *two;
	snprintf(spec, sizeof(spec), "%s/updater.json", r.dir);
	uint8_t *text;
	size_t tlen;
	struct parley_err err = { 0 };
	cr_assert_eq(file_read_all(spec, 4096, &text, &tlen, &err), 0);
	/* The same spec under another name. */
	char *at = strstr((char *)text, "\"updater\"");
	cr_assert(at);
	cr_assert(asprintf(&two, "%.*s\"updater2\"%s", (int)(at - (char *)text),
			   (char *)text, at + strlen("\"updater\"")) > 0);
	free(t_write(r.dir, "updater2.json", two, strlen(two)));
	free(text);
	free(two);
	char s1[600], s2[600], outp[600];
	snprintf(s1, sizeof(s1), "%s/updater.json", r.dir);
	snprintf(s2, sizeof(s2), "%s/updater2.json", r.dir);
	snprintf(outp, sizeof(outp), "%s/out.txt", r.dir);
	int fd = open(outp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert(fd >= 0);
	pid_t parent = getpid(), pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		t_child_dies_with_parent(parent);
		dup2(fd, 1);
		dup2(fd, 2);
		char *argv[] = { T_AGENT, "run", "--vmm", T_VMM, "--image-dir",
				 PARLEY_BUILD_DIR "/guest", "--backend",
				 (char *)t_backend_name(), "--state-dir",
				 r.state, "--audit", r.audit, s1, s2, NULL };
		execv(argv[0], argv);
		_exit(127);
	}
	close(fd);
	/* Bounded by the suite's timeout: one holds, the other is refused
	 * (and exits). */
	char *out = NULL;
	for (;;) {
		free(out);
		out = read_out(&r);
		if (strstr(out, "updater: holding at 100") &&
		    strstr(out, "is staging an update\n"))
			break;
		int st;
		cr_assert_eq(waitpid(pid, &st, WNOHANG), 0, "agent ended:\n%s",
			     out);
		usleep(20000);
	}
	kill(pid, SIGKILL);
	int st;
	waitpid(pid, &st, 0);
	char a[160], b[160];
	snprintf(a, sizeof(a), "updater| updater: begin %zu bytes: -5 "
		 "updater2 is staging an update\n", len);
	snprintf(b, sizeof(b), "updater2| updater: begin %zu bytes: -5 "
		 "updater is staging an update\n", len);
	cr_assert((strstr(out, a) != NULL) + (strstr(out, b) != NULL) == 1,
		  "not exactly one refused:\n%s", out);
	cr_assert_eq(t_count_lines(out, "updater| updater: holding at") +
		     t_count_lines(out, "updater2| updater: holding at"), 1,
		     "%s", out);
	free(out);
	free(pkg);
	rig_free(&r);
}

/* ---- the parser, on hostile bytes ----------------------------------------- */

static int parse(const uint8_t *b, size_t n, enum updpkg_refusal *why)
{
	struct updpkg p;
	struct parley_err err = { 0 };
	return updpkg_parse(b, n, &p, why, &err);
}

Test(update, version_compare)
{
	unsigned a[3], b[3];
	cr_assert_eq(parley_version_parse("0.4.0 (36e23e5-dirty)", true, a), 0);
	cr_assert_eq(parley_version_parse("0.10.0", false, b), 0);
	cr_expect_lt(parley_version_cmp(a, b), 0, "0.4.0 < 0.10.0 (numbers, "
		     "not strings)");
	cr_expect_eq(parley_version_cmp(a, a), 0);
	cr_expect_gt(parley_version_cmp(b, a), 0);
	static const char *const bad[] = {
		"", "1", "1.2", "1.2.3.4", "1.2.x", "-1.2.3", "1..3",
		"1.2.3 (x)", "65536.0.0", "000001.0.0", " 1.2.3", "1.2.3\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(parley_version_parse(bad[i], false, a), -EINVAL,
			     "\"%s\" accepted", bad[i]);
	cr_expect_eq(parley_version_parse("65535.65535.65535", false, a), 0);
}

Test(update, header_refusals)
{
	EVP_PKEY *k = new_key();
	size_t len;
	uint8_t *pkg = make_pkg(&(struct pkg_opts){ .bump = 1, .key = k },
				&len);
	enum updpkg_refusal why;
	cr_assert_eq(parse(pkg, len, &why), 0);
	/* Every cut is truncated, none a crash. */
	for (size_t n = 0; n < len; n++) {
		cr_assert_eq(parse(pkg, n, &why), -EBADMSG, "cut at %zu", n);
		cr_expect(why == UPDPKG_TRUNCATED || (n >= 8 && n < UPDPKG_HDR
			  && why == UPDPKG_MALFORMED) || n < 8,
			  "cut at %zu: %s", n, updpkg_refusal_name(why));
	}
	uint8_t *b = malloc(len + 1);
	memcpy(b, pkg, len);
	b[len] = 0;
	cr_expect_eq(parse(b, len + 1, &why), -EBADMSG);
	cr_expect_eq(why, UPDPKG_MALFORMED, "a byte after the last file");
	memcpy(b, pkg, len);
	b[0] = 'X';
	cr_expect_eq(parse(b, len, &why), -EBADMSG);
	cr_expect_eq(why, UPDPKG_MALFORMED);
	memcpy(b, pkg, len);
	b[8] = 2; /* format 2 */
	cr_expect_eq(parse(b, len, &why), -EBADMSG);
	memcpy(b, pkg, len);
	b[12] = b[13] = b[14] = b[15] = 0xff; /* manifest length 4 GiB */
	cr_expect_eq(parse(b, len, &why), -EBADMSG);
	cr_expect_eq(why, UPDPKG_MALFORMED);
	/* A changed manifest no longer verifies. */
	memcpy(b, pkg, len);
	b[UPDPKG_HDR + 5] ^= 1;
	struct updpkg p;
	struct updpkg_running run;
	updpkg_running_self(&run);
	struct parley_err err = { 0 };
	cr_expect_eq(updpkg_verify(b, len, k, &run, &p, &why, &err), -EBADMSG);
	cr_expect_eq(why, UPDPKG_BAD_SIGNATURE, "%s", perr_msg(&err));
	memcpy(b, pkg, len);
	cr_expect_eq(updpkg_verify(b, len, k, &run, &p, &why, &err), 0, "%s",
		     perr_msg(&err));
	free(b);
	free(pkg);
	EVP_PKEY_free(k);
}

static int manifest(const char *m, struct parley_err *err)
{
	struct updpkg p;
	memset(&p, 0, sizeof(p));
	return updpkg_parse_manifest((const uint8_t *)m, strlen(m), &p, err);
}

#define H64 "0000000000000000000000000000000000000000000000000000000000000000"
#define FILE_(n, s) "{\"name\":\"" n "\",\"size\":" s ",\"sha256\":\"" H64 "\"}"
#define MAN(extra, files)                                                  \
	"{\"product\":\"parley-agent\",\"version\":\"1.0.0\","             \
	"\"replaces_min\":\"0.1.0\",\"abi_min\":\"1.0\",\"abi_max\":\"1.1\"" \
	extra ",\"files\":[" files "]}"
#define TWO FILE_("parley-agent", "1") "," FILE_("parley-vmm", "2")

Test(update, hostile_manifests_refused_with_a_message)
{
	struct parley_err err = { 0 };
	cr_assert_eq(manifest(MAN("", TWO), &err), 0, "%s", perr_msg(&err));
	static const struct { const char *m, *says; } bad[] = {
		{ MAN(",\"extra\":1", TWO), "extra" },
		{ MAN("", FILE_("parley-agent", "1")), "parley-vmm" },
		{ MAN("", TWO "," FILE_("parley-vmm", "3")), "twice" },
		{ MAN("", TWO "," FILE_("../etc", "3")), "plain file name" },
		{ MAN("", TWO "," FILE_(".hidden", "3")), "plain file name" },
		{ MAN("", FILE_("parley-agent", "-1") "," FILE_("parley-vmm", "1")), "size" },
		{ MAN("", FILE_("parley-agent", "268435457") "," FILE_("parley-vmm", "1")), "size" },
		{ MAN("", FILE_("parley-agent", "1.5") "," FILE_("parley-vmm", "1")), "size" },
		{ MAN("", ""), "files" },
		{ "{\"product\":\"parley-agent\",\"version\":\"1.0\","
		  "\"replaces_min\":\"0.1.0\",\"abi_min\":\"1.0\","
		  "\"abi_max\":\"1.1\",\"files\":[" TWO "]}", "X.Y.Z" },
		{ "{\"product\":\"parley-agent\",\"version\":\"1.0.0\","
		  "\"replaces_min\":\"0.1.0\",\"abi_min\":\"1.2\","
		  "\"abi_max\":\"1.1\",\"files\":[" TWO "]}", "above" },
		{ "{\"product\":\"parley-agent\",\"product\":\"x\"}", "" },
		{ "[]", "object" },
		{ "{", "" },
		{ "{\"product\":\"\\u0000\"}", "" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = (struct parley_err){ 0 };
		cr_expect_lt(manifest(bad[i].m, &err), 0, "accepted: %s",
			     bad[i].m);
		cr_expect(err.msg[0] && strstr(perr_msg(&err), bad[i].says),
			  "%zu: \"%s\" says \"%s\"", i, bad[i].m,
			  perr_msg(&err));
	}
	/* A bad hash digit. */
	err = (struct parley_err){ 0 };
	cr_expect_lt(manifest(MAN("", FILE_("parley-agent", "1") ","
				  "{\"name\":\"parley-vmm\",\"size\":1,"
				  "\"sha256\":\"" "A" H64 "\"}"), &err), 0);
	/* Seventeen files. */
	char big[8192] = MAN("", TWO);
	char files[6000] = TWO;
	for (int i = 0; i < 15; i++) {
		char f[200];
		snprintf(f, sizeof(f), ",{\"name\":\"f%d\",\"size\":1,"
			 "\"sha256\":\"" H64 "\"}", i);
		strcat(files, f);
	}
	snprintf(big, sizeof(big), MAN("", "%s"), files);
	err = (struct parley_err){ 0 };
	cr_expect_lt(manifest(big, &err), 0, "17 files accepted");
}
