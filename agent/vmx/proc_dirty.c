/* Which config pages a process-backend partition wrote: userfaultfd
 * write-protection of the config region in every child, created inside the
 * child by injection (user-mode faults only), fetched with pidfd_getfd and
 * driven from here. Synchronous resolution: the first write to a protected
 * page blocks the writer until the service thread has recorded the page
 * and lifted the protection; each dirty request re-arms exactly the pages
 * written since the last one, then takes the record. Where userfaultfd is
 * unavailable every page counts as written: the grant manager then
 * re-hashes more than needed, never less. */
#include "agent/vmx/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

static int wp(int uffd, uint64_t addr, uint64_t len, bool on)
{
	struct uffdio_writeprotect w = {
		.range = { .start = addr, .len = len },
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	return ioctl(uffd, UFFDIO_WRITEPROTECT, &w) < 0 ? -errno : 0;
}

/* Register the config region of this (stopped) child and protect it. */
static int arm(struct vmx_vcpu *c, int uffd)
{
	struct vmx_vm *vm = c->vm;
	/* Shared memory (a memfd) needs its own feature bit for WP. */
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM };
	struct uffdio_register reg = {
		.range = { .start = PARLEY_CONFIG_BASE, .len = vm->cfg_size },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	if (ioctl(uffd, UFFDIO_API, &api) < 0 ||
	    ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	return wp(uffd, PARLEY_CONFIG_BASE, vm->cfg_size, true);
}

int proc_uffd_setup(struct vmx_vcpu *c)
{
	struct vmx_vm *vm = c->vm;
	if (!vm->cfg_size || !vm->proc.dirty)
		return 0;
	long cfd;
	int rc = proc_inject(c, __NR_userfaultfd,
			     O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY, 0,
			     0, 0, 0, 0, &cfd);
	if (rc < 0)
		return rc;
	int uffd = cfd < 0 ? -1
			   : (int)syscall(SYS_pidfd_getfd, c->proc.pidfd,
					  (int)cfd, 0);
	if (uffd >= 0 && arm(c, uffd) < 0) {
		close(uffd);
		uffd = -1;
	}
	if (uffd < 0) /* no userfaultfd here: report everything written */
		atomic_store(&vm->proc.dirty_all, true);
	c->proc.uffd = uffd; /* the child's copy goes with close_all */
	atomic_store(&c->proc.uffd_live, uffd);
	return 0;
}

/* One write fault: record the page, lift the protection, wake the writer.
 * Under dirty_lock so that a dirty request never re-arms a page between
 * its record and its release (it would stay writable, unrecorded). */
static void on_fault(struct vmx_vcpu *c)
{
	struct vmx_vm *vm = c->vm;
	struct uffd_msg msg;
	while (read(c->proc.uffd, &msg, sizeof(msg)) == sizeof(msg)) {
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uint64_t a = msg.arg.pagefault.address & ~(PARLEY_PAGE_SIZE - 1);
		uint64_t p = (a - PARLEY_CONFIG_BASE) / PARLEY_PAGE_SIZE;
		if (a < PARLEY_CONFIG_BASE || p >= vm->cfg_size / PARLEY_PAGE_SIZE)
			continue;
		pthread_mutex_lock(&vm->proc.dirty_lock);
		vm->proc.dirty[p / 64] |= 1ull << (p % 64);
		c->proc.unprot[p / 64] |= 1ull << (p % 64);
		wp(c->proc.uffd, a, PARLEY_PAGE_SIZE, false);
		pthread_mutex_unlock(&vm->proc.dirty_lock);
	}
}

/* The service thread: every child's write faults, until the partition
 * stops. Children set up later join at the next round (20 ms at most). */
static void *uffd_thread(void *arg)
{
	struct vmx_vm *vm = arg;
	struct pollfd pf[PARLEY_VCPUS_MAX + 1];
	/* Past libc's thread start-up (rseq, robust list), which the
	 * sandbox installed after this does not allow: say so. */
	pthread_mutex_lock(&vm->lock);
	vm->proc.uffd_running = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	for (;;) {
		pf[0] = (struct pollfd){ .fd = vm->stop_efd, .events = POLLIN };
		for (unsigned i = 0; i < vm->nvcpu; i++)
			pf[i + 1] = (struct pollfd){
				.fd = atomic_load(&vm->vcpu[i].proc.uffd_live),
				.events = POLLIN };
		if (poll(pf, vm->nvcpu + 1, 20) < 0 && errno != EINTR)
			return NULL;
		if (pf[0].revents)
			return NULL;
		for (unsigned i = 0; i < vm->nvcpu; i++) {
			if (pf[i + 1].revents & POLLIN)
				on_fault(&vm->vcpu[i]);
			if (pf[i + 1].revents & (POLLERR | POLLHUP | POLLNVAL))
				atomic_store(&vm->vcpu[i].proc.uffd_live, -1);
		}
	}
}

int proc_dirty_init(struct vmx_vm *vm)
{
	uint64_t words = (vm->cfg_size / PARLEY_PAGE_SIZE + 63) / 64;
	if (!words)
		return 0;
	pthread_mutex_init(&vm->proc.dirty_lock, NULL);
	vm->proc.dirty = calloc(words, 8);
	for (unsigned i = 0; vm->proc.dirty && i < vm->nvcpu; i++) {
		vm->vcpu[i].proc.unprot = calloc(words, 8);
		if (!vm->vcpu[i].proc.unprot)
			return -ENOMEM;
	}
	if (!vm->proc.dirty)
		return -ENOMEM;
	int rc = pthread_create(&vm->proc.uffd_thread, NULL, uffd_thread, vm);
	if (rc)
		return -rc;
	vm->proc.uffd_started = true;
	/* The sandbox comes next: wait until the thread runs its own code. */
	pthread_mutex_lock(&vm->lock);
	while (!vm->proc.uffd_running)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void proc_dirty_fini(struct vmx_vm *vm)
{
	if (vm->proc.uffd_started)
		pthread_join(vm->proc.uffd_thread, NULL);
	vm->proc.uffd_started = false;
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		struct vmx_vcpu *c = &vm->vcpu[i];
		if (c->proc.uffd >= 0)
			close(c->proc.uffd);
		c->proc.uffd = -1;
		free(c->proc.unprot);
		c->proc.unprot = NULL;
	}
	free(vm->proc.dirty);
	vm->proc.dirty = NULL;
}

/* Re-arm what each child wrote, then hand over the record: a write after
 * its page is re-armed faults again and lands in the next record. */
int proc_dirty(struct vmx_vm *vm, uint64_t *bitmap, uint64_t pages)
{
	uint64_t words = (pages + 63) / 64;
	if (!vm->proc.dirty || atomic_load(&vm->proc.dirty_all)) {
		if (!words)
			return 0;
		memset(bitmap, 0xff, words * 8);
		if (pages % 64)
			bitmap[words - 1] = (1ull << (pages % 64)) - 1;
		return 0;
	}
	int rc = 0;
	pthread_mutex_lock(&vm->proc.dirty_lock);
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		struct vmx_vcpu *c = &vm->vcpu[i];
		for (uint64_t p = 0; c->proc.uffd >= 0 && p < pages; p++) {
			if (!(c->proc.unprot[p / 64] & (1ull << (p % 64))))
				continue;
			if (wp(c->proc.uffd,
			       PARLEY_CONFIG_BASE + p * PARLEY_PAGE_SIZE,
			       PARLEY_PAGE_SIZE, true) < 0)
				rc = -1;
			c->proc.unprot[p / 64] &= ~(1ull << (p % 64));
		}
	}
	memcpy(bitmap, vm->proc.dirty, words * 8);
	memset(vm->proc.dirty, 0, words * 8);
	pthread_mutex_unlock(&vm->proc.dirty_lock);
	/* A page that could not be re-armed may be written unseen from now
	 * on: never under-report, count everything from here. */
	if (rc < 0)
		atomic_store(&vm->proc.dirty_all, true);
	return 0;
}
