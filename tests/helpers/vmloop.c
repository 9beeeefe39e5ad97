/* The agent's loop around one VM and a fleet (vmloop.h). */
#include "tests/helpers/vmloop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <criterion/criterion.h>

#include "agent/supervisor.h"
#include "tests/helpers/testutil.h"

char *t_vm_console(struct vmmgr *m, const char *name)
{
	char p[PATH_MAX + 64];
	vmhost_console_path(&m->host, name, p, sizeof(p));
	/* whole: a console past 64 KiB (boot, hot-plugs, an agent killed
	 * and followed twice) has its latest lines at the end */
	return t_slurp(p);
}

bool t_vm_thin_live(struct t_fleet *f)
{
	for (unsigned i = 0; i < f->sup.n; i++)
		if (!f->sup.e[i].p->finished)
			return true;
	return false;
}

int t_vm_pump(struct t_fleet *f, struct vmmgr *m, int wait_ms)
{
	static uint64_t last;
	struct timespec ts;
	int rc = vmmgr_serve(m, 0);
	/* as parley-agent's loop: a closed port, then the VM stopped once
	 * libvirt sees it gone (QEMU closes its sockets a moment before) */
	if (rc == -EPIPE || rc == -EPROTO)
		vmmgr_reap(m, 0);
	if (t_vm_thin_live(f))
		sup_step(&f->sup, -1, rc == -EAGAIN ? wait_ms : 0);
	else if (rc == -EAGAIN || rc == -EPIPE)
		nanosleep(&(struct timespec){ 0, wait_ms * 1000000L }, NULL);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	if (now - last >= 20) {
		chanmgr_tick(&f->cm);
		last = now;
	}
	return rc;
}

void t_vm_serve_until(struct t_fleet *f, struct vmmgr *m, const char *name,
		      const char *until, int limit_s,
		      char *(*more)(void *ctx), void *ctx)
{
	time_t end = time(NULL) + limit_s;
	unsigned rounds = 0;
	for (;;) {
		int rc = t_vm_pump(f, m, 1);
		if (++rounds % 64 && rc != -EAGAIN)
			continue; /* busy: look at the console now and then */
		char *c = t_vm_console(m, name);
		bool done = strstr(c, until) != NULL;
		if (!done && (time(NULL) > end || rc == -EPROTO)) {
			char *x = more ? more(ctx) : NULL;
			cr_assert_fail("no '%s' within %d s (serve %d); console:\n"
				       "%s\nthin partitions:\n%s\naudit:\n%s%s%s",
				       until, limit_s, rc, c, t_fleet_out(f),
				       t_fleet_audit(f), x ? "\n" : "",
				       x ? x : "");
		}
		free(c);
		if (done)
			return;
	}
}
