/* Keeping the running version and the previous one (agent/update/keep.h):
 * real directories, the renames and their failures. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/ipc/audit.h"
#include "agent/update/keep.h"
#include "agent/update/stage.h"
#include "common/fileio.h"
#include "tests/helpers/testutil.h"

struct tree {
	char *state;
	char upd[600];
};

static void version_dir(struct tree *t, const char *name, const char *v)
{
	char d[700], m[100];
	snprintf(d, sizeof(d), "%s/%s", t->upd, name);
	cr_assert_eq(mkdir(d, 0700), 0, "%s", d);
	free(t_write(d, "parley-agent", v, strlen(v)));
	free(t_write(d, "parley-vmm", v, strlen(v)));
	snprintf(m, sizeof(m), "{\"version\":\"%s\"}", v);
	free(t_write(d, "manifest.json", m, strlen(m)));
}

/* The version a directory holds ("" if there is none). */
static const char *version_of(struct tree *t, const char *name)
{
	static char v[4][100];
	static unsigned n;
	char *out = v[n++ % 4];
	char p[700];
	snprintf(p, sizeof(p), "%s/%s/parley-agent", t->upd, name);
	FILE *f = fopen(p, "r");
	out[0] = 0;
	if (f) {
		size_t k = fread(out, 1, 99, f);
		out[k] = 0;
		fclose(f);
	}
	return out;
}

static void tree_init(struct tree *t)
{
	t->state = t_tmpdir();
	snprintf(t->upd, sizeof(t->upd), "%s/update", t->state);
	cr_assert_eq(mkdir(t->upd, 0700), 0);
}

static void tree_free(struct tree *t)
{
	t_rmtree(t->state);
	free(t->state);
}

static int keep(struct tree *t, const char *served, char *vmm, size_t cap,
		struct parley_err *err)
{
	char argv0[700];
	snprintf(argv0, sizeof(argv0), "%s/%s/parley-agent", t->upd, served);
	return upd_keep_served(t->state, argv0, vmm, cap, err);
}

Test(update_keep, forward_then_back_then_forward_again)
{
	struct tree t;
	tree_init(&t);
	version_dir(&t, "current", "1.0");
	version_dir(&t, "previous", "0.9");
	version_dir(&t, "stage", "1.1");
	struct parley_err err = { 0 };
	char vmm[1024] = "";
	cr_assert_eq(keep(&t, "stage", vmm, sizeof(vmm), &err),
		     UPD_KEPT_FORWARD, "%s", perr_msg(&err));
	cr_expect_str_eq(version_of(&t, "current"), "1.1");
	cr_expect_str_eq(version_of(&t, "previous"), "1.0");
	cr_expect_str_eq(version_of(&t, "stage"), "");
	cr_expect_str_eq(version_of(&t, "previous.old"), "", "0.9 dropped");
	char want[1024];
	snprintf(want, sizeof(want), "%s/current/parley-vmm", t.upd);
	cr_expect_str_eq(vmm, want);
	/* An explicit rollback: previous and current swap, both kept. */
	vmm[0] = 0;
	cr_assert_eq(keep(&t, "previous", vmm, sizeof(vmm), &err),
		     UPD_KEPT_BACK, "%s", perr_msg(&err));
	cr_expect_str_eq(version_of(&t, "current"), "1.0");
	cr_expect_str_eq(version_of(&t, "previous"), "1.1");
	cr_expect_str_eq(vmm, want);
	/* ... and rolling "back" again goes forward to 1.1. */
	cr_assert_eq(keep(&t, "previous/", vmm, sizeof(vmm), &err),
		     UPD_KEPT_BACK, "%s", perr_msg(&err));
	cr_expect_str_eq(version_of(&t, "current"), "1.1");
	cr_expect_str_eq(version_of(&t, "previous"), "1.0");
	tree_free(&t);
}

Test(update_keep, first_update_without_current_keeps_no_previous)
{
	struct tree t;
	tree_init(&t);
	version_dir(&t, "stage", "1.1");
	struct parley_err err = { 0 };
	char vmm[1024] = "";
	cr_assert_eq(keep(&t, "stage", vmm, sizeof(vmm), &err),
		     UPD_KEPT_FORWARD, "%s", perr_msg(&err));
	cr_expect_str_eq(version_of(&t, "current"), "1.1");
	cr_expect_str_eq(version_of(&t, "previous"), "");
	tree_free(&t);
}

Test(update_keep, stage_elsewhere_or_no_state_dir_moves_nothing)
{
	struct tree t;
	tree_init(&t);
	version_dir(&t, "current", "1.0");
	version_dir(&t, "stage", "1.1");
	char other[700];
	snprintf(other, sizeof(other), "%s/elsewhere", t.state);
	cr_assert_eq(mkdir(other, 0700), 0);
	strcat(other, "/parley-agent");
	struct parley_err err = { 0 };
	char vmm[1024] = "";
	cr_expect_eq(upd_keep_served(t.state, other, vmm, sizeof(vmm), &err),
		     UPD_KEPT_NONE, "%s", perr_msg(&err));
	cr_expect_eq(upd_keep_served(NULL, other, vmm, sizeof(vmm), &err),
		     UPD_KEPT_NONE);
	cr_expect_str_eq(vmm, "");
	cr_expect_str_eq(version_of(&t, "current"), "1.0");
	cr_expect_str_eq(version_of(&t, "stage"), "1.1");
	tree_free(&t);
}

Test(update_keep, served_directory_that_is_gone_is_an_error)
{
	struct tree t;
	tree_init(&t);
	struct parley_err err = { 0 };
	char vmm[64] = "";
	cr_expect_lt(keep(&t, "stage", vmm, sizeof(vmm), &err), 0);
	cr_expect(strstr(perr_msg(&err), "No such file"), "%s",
		  perr_msg(&err));
	tree_free(&t);
}

Test(update_keep, leftovers_of_a_crash_are_tidied_at_open)
{
	struct tree t;
	tree_init(&t);
	version_dir(&t, "current", "1.1");
	version_dir(&t, "previous.old", "0.9");
	version_dir(&t, "current.tmp", "half");
	struct audit a = { 0 };
	struct upd_stage s;
	struct parley_err err = { 0 };
	cr_assert_eq(upd_stage_open(&s, t.state, &a, &err), 0, "%s",
		     perr_msg(&err));
	upd_stage_close(&s);
	cr_expect_str_eq(version_of(&t, "previous.old"), "");
	cr_expect_str_eq(version_of(&t, "current.tmp"), "");
	cr_expect_str_eq(version_of(&t, "current"), "1.1");
	tree_free(&t);
}

Test(update_keep, rollback_without_previous_refused_with_the_reason)
{
	struct tree t;
	tree_init(&t);
	char prev[700];
	snprintf(prev, sizeof(prev), "%s/previous", t.upd);
	struct parley_err err = { 0 };
	cr_expect_eq(upd_keep_check(prev, &err), -ENOENT);
	cr_expect(strstr(perr_msg(&err), "no previous version to roll back "
		  "to"), "%s", perr_msg(&err));
	/* Audited, with the reason, by the agent about to hand over. */
	char apath[700];
	snprintf(apath, sizeof(apath), "%s/audit.jsonl", t.state);
	struct audit a = { .out = fopen(apath, "w") };
	cr_assert(a.out);
	cr_expect_eq(upd_keep_before(&a, t.state, prev, T_VMM, "1.0", &err),
		     -ENOENT);
	fclose(a.out);
	uint8_t *buf;
	size_t len;
	cr_assert_eq(file_read_all(apath, 1 << 20, &buf, &len, &err), 0);
	buf[len - 1] = 0;
	cr_expect(strstr((char *)buf, "\"update_rollback_refused\""), "%s",
		  buf);
	cr_expect(strstr((char *)buf, "no previous version"), "%s", buf);
	free(buf);
	/* With one: allowed, and audited as a rollback asked for. */
	version_dir(&t, "previous", "0.9");
	version_dir(&t, "current", "1.0");
	cr_expect_eq(upd_keep_check(prev, &err), 0);
	cr_expect(upd_keep_is_previous("previous"));
	cr_expect(upd_keep_is_previous("/x/previous//"));
	cr_expect_not(upd_keep_is_previous("/x/notprevious"));
	cr_expect_not(upd_keep_is_previous("/x/stage"));
	tree_free(&t);
}

Test(update_keep, seed_copies_what_runs_once)
{
	struct tree t;
	tree_init(&t);
	struct parley_err err = { 0 };
	cr_assert_eq(upd_keep_seed(t.state, T_AGENT, T_VMM, "7.7.7", &err), 1,
		     "%s", perr_msg(&err));
	char p[700];
	snprintf(p, sizeof(p), "%s/current/manifest.json", t.upd);
	uint8_t *buf;
	size_t len;
	cr_assert_eq(file_read_all(p, 4096, &buf, &len, &err), 0);
	cr_expect(len > 0 && memmem(buf, len, "\"version\":\"7.7.7\"", 17),
		  "%.*s", (int)len, buf);
	free(buf);
	struct stat a, b;
	snprintf(p, sizeof(p), "%s/current/parley-vmm", t.upd);
	cr_assert_eq(stat(p, &a), 0);
	cr_assert_eq(stat(T_VMM, &b), 0);
	cr_expect_eq(a.st_size, b.st_size);
	cr_expect(a.st_mode & S_IXUSR);
	/* Never over a current that exists. */
	cr_expect_eq(upd_keep_seed(t.state, T_AGENT, T_VMM, "8.8.8", &err), 0);
	/* A vmm that cannot be read: nothing half made. */
	tree_free(&t);
	tree_init(&t);
	cr_expect_lt(upd_keep_seed(t.state, T_AGENT, "/nonexistent/vmm", "1",
				   &err), 0);
	cr_expect(strstr(perr_msg(&err), "/nonexistent/vmm"), "%s",
		  perr_msg(&err));
	cr_expect_str_eq(version_of(&t, "current"), "");
	cr_expect_str_eq(version_of(&t, "current.tmp"), "");
	tree_free(&t);
}
