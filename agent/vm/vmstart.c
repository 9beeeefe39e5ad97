/* A VM's start off the agent's event loop (vmstart.h). */
#include "agent/vm/vmstart.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "agent/vm/qmp.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The domain this job started goes again (a port that never came, or a
 * cancel): destroyed on this thread, its error (if any) logged into
 * nothing — the job's own error says why it is going. */
static void undo(struct vmstart *j)
{
	struct parley_err e2 = { 0 };
	vmhost_destroy(j->vh, j->spec.name, &e2);
}

static void *run(void *arg)
{
	struct vmstart *j = arg;
	j->rc = vmhost_start(j->vh, &j->spec, &j->err);
	if (j->rc == 0 && atomic_load(&j->cancel)) {
		undo(j);
		j->rc = perr(&j->err, -ECANCELED, "VM %s: stopped while it "
			     "started: destroyed", j->spec.name);
	}
	if (j->rc == 0) {
		j->ctl = vmhost_ctl_connect(j->vh, j->spec.name, 5000, &j->err);
		if (j->ctl < 0) {
			j->rc = j->ctl;
			j->ctl = -1;
			undo(j);
		}
	}
	if (j->rc == 0) {
		/* The agent's own monitor; without it the loop does not take
		 * the VM on (hot-plug goes through nothing else). */
		char mp[PATH_MAX + 64];
		vmhost_mon_path(j->vh, j->spec.name, mp, sizeof(mp));
		j->mon = qmp_open(mp, 5000, &j->mon_err);
		if (j->mon < 0)
			j->mon = -1;
	}
	j->ended_ns = now_ns();
	uint64_t one = 1;
	/* An eventfd write of 1 cannot fail short of a counter at its
	 * maximum, which one write per job never reaches. */
	if (write(j->done, &one, sizeof(one)) != (ssize_t)sizeof(one))
		abort();
	return NULL;
}

int vmstart_begin(struct vmstart **out, struct vmhost *vh,
		  const struct vm_spec *s, struct parley_err *err)
{
	struct vmstart *j = calloc(1, sizeof(*j));
	*out = NULL;
	if (!j)
		return perr(err, -ENOMEM, "VM %s: out of memory", s->name);
	j->vh = vh;
	j->spec = *s;
	j->ctl = j->mon = -1;
	j->joined = true; /* nothing to join until the thread runs */
	atomic_init(&j->cancel, false);
	j->done = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (j->done < 0) {
		int e = errno;
		free(j);
		return perr(err, -e, "VM %s: eventfd: %s", s->name,
			    strerror(e));
	}
	j->begun_ns = now_ns();
	/* The thread runs the embedded QEMU driver's whole start (libvirt
	 * runs it on default-sized threads in libvirtd) under vmhost_start's
	 * XML and spec copy: 8 MiB (reserved, touched as used), whatever
	 * RLIMIT_STACK says. */
	pthread_attr_t a;
	int rc = pthread_attr_init(&a);
	if (rc == 0)
		rc = pthread_attr_setstacksize(&a, 8u << 20);
	if (rc == 0)
		rc = pthread_create(&j->thread, &a, run, j);
	pthread_attr_destroy(&a);
	if (rc) {
		close(j->done);
		free(j);
		return perr(err, -rc, "VM %s: no thread to start it: %s",
			    s->name, strerror(rc));
	}
	j->joined = false;
	*out = j;
	return 0;
}

int vmstart_fd(const struct vmstart *j)
{
	return j->done;
}

bool vmstart_done(const struct vmstart *j)
{
	struct pollfd p = { j->done, POLLIN, 0 };
	return j->joined || poll(&p, 1, 0) == 1;
}

void vmstart_cancel(struct vmstart *j)
{
	atomic_store(&j->cancel, true);
}

void vmstart_join(struct vmstart *j)
{
	if (j->joined)
		return;
	pthread_join(j->thread, NULL);
	j->joined = true;
}

void vmstart_free(struct vmstart *j)
{
	if (!j)
		return;
	vmstart_join(j);
	if (j->ctl >= 0)
		close(j->ctl);
	if (j->mon >= 0)
		close(j->mon);
	close(j->done);
	free(j);
}
