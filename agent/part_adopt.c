/*
 * A running partition taken over from the agent before us (the hand-over,
 * agent/update_adopt.c): no vmm is started, no memory laid out; the
 * descriptors that came with the message are checked against it and the
 * partition is rebuilt as partition_create would have left it.
 */
#include "agent/partition.h"
#include "agent/partition_int.h"
#include "agent/handover.h"
#include "agent/vmm_jail.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* The pid a pidfd refers to, from /proc/self/fdinfo ("Pid:\t1234"); -1 if
 * it is no pidfd. */
static long pidfd_pid(int fd)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	int f = open(path, O_RDONLY | O_CLOEXEC);
	if (f < 0)
		return -1;
	ssize_t n = read(f, buf, sizeof(buf) - 1);
	close(f);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	const char *at = strstr(buf, "\nPid:\t");
	if (!at)
		return -1;
	char *end;
	long pid = strtol(at + 6, &end, 10);
	return end == at + 6 ? -1 : pid;
}

static int check_fds(const struct ho_part *hp, const int fds[3],
		     struct parley_err *err)
{
	int type = 0;
	socklen_t tl = sizeof(type);
	struct stat st;
	if (getsockopt(fds[0], SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
	    type != SOCK_SEQPACKET)
		return perr(err, -EBADF, "%s: its control descriptor is no "
			    "SEQPACKET socket", hp->name);
	if (pidfd_pid(fds[1]) != hp->pid)
		return perr(err, -EBADF, "%s: its pidfd is not that of vmm "
			    "pid %d", hp->name, (int)hp->pid);
	if (fstat(fds[2], &st) < 0 || !S_ISREG(st.st_mode) ||
	    (uint64_t)st.st_size != hp->ram_size + hp->cfg_size)
		return perr(err, -EBADF, "%s: its guest memory is not %llu "
			    "bytes", hp->name,
			    (unsigned long long)(hp->ram_size + hp->cfg_size));
	return 0;
}

int partition_adopt(const struct ho_part *hp, const int fds[3],
		    const struct part_opts *o, struct partition **out,
		    struct parley_err *err)
{
	int rc = check_fds(hp, fds, err);
	struct partition *p = rc == 0 ? part_new(hp->name, o) : NULL;
	if (rc == 0 && !p)
		rc = perr(err, -ENOMEM, "out of memory");
	if (rc < 0) {
		for (int i = 0; i < 3; i++)
			close(fds[i]);
		return rc;
	}
	p->ctl = fds[0];
	p->pidfd = fds[1];
	p->mem_fd = fds[2];
	p->adopted = true;
	p->pid = hp->pid;
	p->vmm_uid = hp->vmm_uid;
	p->state = (enum part_state)hp->state;
	p->ram_size = hp->ram_size;
	p->cfg_size = hp->cfg_size;
	p->vcpus = hp->vcpus;
	p->backend = hp->backend;
	p->caps = hp->caps;
	p->entry = hp->entry;
	p->image_hi = hp->image_hi;
	p->nrange = hp->nrange;
	memcpy(p->range, hp->range, sizeof(p->range));
	p->open_pending = hp->open_pending;
	snprintf(p->vmm_version, sizeof(p->vmm_version), "%s",
		 hp->vmm_version);
	p->t_ready_ns = p->t_created_ns;
	/* Ours now: the measurement's arrays are copied, the message keeps
	 * its own. */
	p->measure = hp->measure;
	uint64_t words = (hp->measure.npages + 63) / 64;
	p->measure.page = malloc(hp->measure.npages * MEASURE_DIGEST + 1);
	p->measure.dirty = calloc(words ? words : 1, sizeof(uint64_t));
	if (!p->measure.page || !p->measure.dirty) {
		rc = perr(err, -ENOMEM, "out of memory");
	} else {
		memcpy(p->measure.page, hp->measure.page,
		       hp->measure.npages * MEASURE_DIGEST);
		memcpy(p->measure.dirty, hp->measure.dirty,
		       words * sizeof(uint64_t));
	}
	uint64_t total = p->ram_size + p->cfg_size;
	void *ro = rc == 0 ? mmap(NULL, total, PROT_READ, MAP_SHARED,
				  p->mem_fd, 0) : MAP_FAILED;
	if (rc == 0 && ro == MAP_FAILED)
		rc = perr(err, -errno, "%s: mapping its memory: %s", p->name,
			  strerror(errno));
	if (rc == 0)
		p->mem = ro;
	if (rc == 0)
		rc = vmm_jail_adopt_uid(p->vmm_uid, p->pidfd, err);
	if (rc < 0) {
		/* Not partition_destroy: that kills the vmm, which is still
		 * the old agent's to serve. */
		if (p->mem)
			munmap((void *)p->mem, total);
		close(p->ctl);
		close(p->pidfd);
		close(p->mem_fd);
		measure_free(&p->measure);
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}
