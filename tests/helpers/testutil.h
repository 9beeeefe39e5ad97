/* Shared by the Criterion tests: where the build put things, KVM presence,
 * temporary spec files, and starting real partitions and agents. */
#ifndef PARLEY_TESTUTIL_H
#define PARLEY_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include "agent/partition.h"

#define T_BIN(name) PARLEY_BUILD_DIR "/bin/" name
#define T_IMAGE(name) PARLEY_BUILD_DIR "/guest/" name
#define T_VMM T_BIN("parley-vmm")
#define T_AGENT T_BIN("parley-agent")
#define T_PARLEYD T_BIN("parleyd")

/* NULL if /dev/kvm can be used, else why not. */
const char *t_kvm_missing(void);

/* Skip the calling test (counted as skipped, with the reason) without KVM;
 * only kvm_* suites may. A runner that promises KVM (PARLEY_REQUIRE=kvm)
 * turns the skip into a failure. */
#define T_REQUIRE_KVM()                                                   \
	do {                                                              \
		const char *why_ = t_kvm_missing();                       \
		if (why_ && t_required("kvm"))                            \
			cr_assert_fail("PARLEY_REQUIRE=kvm: %s", why_);   \
		if (why_)                                                 \
			cr_skip_test("needs /dev/kvm: %s", why_);         \
	} while (0)

/* Is capability `cap` in the comma-separated PARLEY_REQUIRE? */
bool t_required(const char *cap);

/* The backends partitions can run on here: process always, kvm where
 * /dev/kvm is usable. Fills out[] (enum ctl_backend), returns the count.
 * Tests that run partitions run once per backend this returns, e.g. as
 * Criterion parameters, so that none is skipped for want of KVM; only
 * suites named kvm_* test what only KVM has and skip without it. */
#define T_BACKENDS_MAX 2
unsigned t_backends(uint32_t out[T_BACKENDS_MAX]);

/* The backend the running test uses (0: auto); t_opts() passes it on. */
extern uint32_t t_backend;

/* A test that runs once per backend in t_backends(), as Criterion
 * parameters: nothing is skipped for want of KVM, the process backend
 * always runs. The body sees the backend in t_backend. */
#define T_BACKEND_TEST(suite, name, ...)                                  \
	ParameterizedTestParameters(suite, name)                          \
	{                                                                 \
		static uint32_t b_[T_BACKENDS_MAX];                       \
		size_t n_ = t_backends(b_);                               \
		return cr_make_param_array(uint32_t, b_, n_);             \
	}                                                                 \
	static void suite##_##name##_body(void);                          \
	ParameterizedTest(uint32_t *backend_, suite, name, __VA_ARGS__)   \
	{                                                                 \
		t_backend = *backend_;                                    \
		cr_log_info("backend %s", t_backend_name());              \
		suite##_##name##_body();                                  \
	}                                                                 \
	static void suite##_##name##_body(void)

const char *t_backend_name(void);

/* In a child just forked by a test: die with the test's process, so that a
 * failed assertion (which ends the test without its clean-up) leaves no
 * daemon or agent running. */
void t_child_dies_with_parent(pid_t parent);

/* For a test that measures a daemon's memory (its RSS): the processes it
 * starts afterwards keep at most 4 MiB of freed memory in AddressSanitizer's
 * quarantine (256 MiB by default, which a busy daemon fills with what it
 * freed). Nothing without ASAN_OPTIONS set. */
void t_asan_small_quarantine(void);
/* pid's resident memory in KiB (VmRSS), or -1. */
long t_rss_kib(pid_t pid);
/* The pids of parent's children (from /proc), at most cap: how many. */
int t_children_of(pid_t parent, pid_t *out, int cap);
/* Every child of this process (its own, and those reparented to it as a
 * child subreaper: an agent's successor after a hand-over) killed and
 * reaped, by pid — for a test's fini, after an assertion ended it. */
void t_kill_children(void);

/* A fresh temporary directory (removed by t_rmtree). */
char *t_tmpdir(void);
void t_rmtree(const char *dir);
/* Write a file dir/name with the given contents; returns its path. */
char *t_write(const char *dir, const char *name, const void *data, size_t len);

/* Console output collected from a partition. */
struct t_console {
	char *buf;
	size_t len, cap;
};
void t_console_cb(struct partition *p, const char *buf, size_t len, void *ctx);
void t_console_free(struct t_console *c);

/* A fixed snapshot key for tests (t_opts hands it out). */
const struct snap_key *t_snap_key(void);

/* Options that find the build's vmm and images, collecting console output,
 * with t_snap_key() for snapshots. */
struct part_opts t_opts(struct t_console *out);

/* A spec for image with cmdline (and memory, "8M" if NULL). */
void t_spec(struct part_spec *s, const char *name, const char *image,
	    const char *cmdline, const char *memory);

/* Run a command with argv, collecting stdout+stderr into *out (caller
 * frees); returns the exit status (or 128 + signal). timeout_s kills it. */
int t_run(char *const argv[], char **out, int timeout_s);

/* Run argv with `in` (may be NULL) on its stdin, stdout and stderr
 * apart into *out and *err (caller frees both; NUL-terminated); returns
 * the exit status (or 128 + signal). Through memory files, so output of
 * any size cannot block the child. The suite's timeout bounds it. */
int t_exec(char *const argv[], const char *in, char **out, char **err);

/* Count of lines in text starting with prefix. */
int t_count_lines(const char *text, const char *prefix);

/* A file's whole text (up to 64 MiB), NUL-terminated; "" if it cannot be
 * read. Caller frees. */
char *t_slurp(const char *path);
/* How many times needle occurs in text (not overlapping). */
int t_count(const char *text, const char *needle);

#endif
