/* The KVM engine's channel windows: each segment mapped into the vmm from
 * its own memory fd, then given to the VM as a memory slot (read-only where
 * the fd is); doorbells as ioeventfds. */
#include "agent/vmx/vmm.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

static unsigned kvm_slot(unsigned w, unsigned seg)
{
	return 2 + w * CTL_MAP_SEGS_MAX + seg;
}

static int set_slot(struct vmx_vm *vm, unsigned slot, uint64_t gpa,
		    uint64_t len, void *host, bool ro)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .flags = ro ? KVM_MEM_READONLY : 0,
		.guest_phys_addr = gpa, .memory_size = len,
		.userspace_addr = (uintptr_t)host,
	};
	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

/* The doorbell: an OUT of the handle to PARLEY_DOORBELL_PORT signals the
 * peer's eventfd inside KVM, without an exit. */
int kvm_doorbell(struct vmx_vm *vm, const struct vmx_window *w,
		 uint64_t handle, bool assign)
{
	struct kvm_ioeventfd io = {
		.datamatch = handle, .addr = PARLEY_DOORBELL_PORT, .len = 4,
		.fd = w->bell_peer,
		.flags = KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DATAMATCH |
			 (assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN),
	};
	return ioctl(vm->vm_fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

void kvm_win_unmap(struct vmx_vm *vm, unsigned wi, struct vmx_window *w)
{
	for (unsigned i = 0; i < w->nseg; i++)
		set_slot(vm, kvm_slot(wi, i), 0, 0, NULL, false);
	w->nseg = 0;
	if (w->host)
		munmap(w->host, w->size);
	w->host = NULL;
}

/* Our view of the window: a reserved range with each segment mapped from
 * its own memory fd at its place, read-only where the fd is (the kernel
 * refuses a writable mapping of a read-only fd). */
static int map_view(struct vmx_window *w, const struct ctl_map *m,
		    const int *mem)
{
	w->host = mmap(NULL, m->size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (w->host == MAP_FAILED) {
		w->host = NULL;
		return -errno;
	}
	for (unsigned i = 0; i < m->nseg; i++) {
		int prot = PROT_READ | (m->seg[i].readonly ? 0 : PROT_WRITE);
		void *at = mmap(w->host + m->seg[i].off, m->seg[i].len, prot,
				MAP_SHARED | MAP_FIXED, mem[m->seg[i].mem],
				(off_t)m->seg[i].file_off);
		if (at == MAP_FAILED) {
			int rc = -errno;
			munmap(w->host, m->size);
			w->host = NULL;
			return rc;
		}
	}
	return 0;
}

int kvm_win_map(struct vmx_vm *vm, unsigned wi, struct vmx_window *w,
		const struct ctl_map *m, const int *mem)
{
	int rc = map_view(w, m, mem);
	if (rc < 0)
		return rc;
	w->gpa = m->gpa;
	w->size = m->size;
	w->nseg = 0;
	for (unsigned i = 0; i < m->nseg; i++) {
		rc = set_slot(vm, kvm_slot(wi, i), m->gpa + m->seg[i].off,
			      m->seg[i].len, w->host + m->seg[i].off,
			      m->seg[i].readonly);
		if (rc < 0) {
			kvm_win_unmap(vm, wi, w);
			return rc;
		}
		w->ro[i] = m->seg[i].readonly;
		w->nseg = i + 1;
	}
	return 0;
}

