/* Partitions on the process backend (ptrace'd stub processes), driven
 * through the agent's partition API exactly as on KVM: these run wherever
 * the tests run, /dev/kvm or not. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/ctl/stop.h"
#include "tests/helpers/testutil.h"

static struct partition *start_on(uint32_t backend, const char *name,
				   const char *image, const char *cmdline,
				   const char *json, bool paused,
				   struct t_console *out)
{
	struct part_spec s;
	struct parley_err err = { 0 };
	if (json)
		cr_assert_eq(spec_parse(json, strlen(json),
					PARLEY_BUILD_DIR "/guest", &s, &err),
			     0, "%s", perr_msg(&err));
	else
		t_spec(&s, name, image, cmdline, NULL);
	struct part_opts o = t_opts(out);
	o.backend = backend;
	o.start_paused = paused;
	struct partition *p = NULL;
	int rc = partition_create(&s, &o, &p, &err);
	spec_free(&s);
	cr_assert_eq(rc, 0, "create %s: %s", name, perr_msg(&err));
	return p;
}

static struct partition *start(const char *name, const char *image,
			       const char *cmdline, struct t_console *out)
{
	return start_on(CTL_BACKEND_PROCESS, name, image, cmdline, NULL,
			false, out);
}

static void finish(struct partition *p)
{
	cr_assert_eq(partition_wait(p, 20000), 0, "%s did not finish",
		     p->name);
}

#define STOPPED_WITH(p, r)                                                \
	cr_assert_eq((p)->fin.reason, (r), "%s: %s (%s)", (p)->name,       \
		     vmx_stop_name((p)->fin.reason), (p)->fin.detail)

Test(proc, hello_runs_and_exits_with_its_code, .timeout = 30)
{
	struct t_console out = { 0 };
	struct partition *p = start("hello", "hello.elf", "exit=7", &out);
	finish(p);
	STOPPED_WITH(p, VMX_STOP_EXIT);
	cr_assert_eq(p->fin.code, 7);
	cr_assert(out.buf && strstr(out.buf, "hello, world (abi 1.0, 8 MiB, "
				    "1 vcpu)\n"), "output: %s", out.buf);
	cr_assert_eq(p->backend, CTL_BACKEND_PROCESS);
	partition_destroy(p);
	t_console_free(&out);
}
