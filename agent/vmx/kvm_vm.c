/* The KVM engine's VM: memory slots over the guest memory, vCPUs in the
 * partition's CPL 3 long-mode state, their saved state. */
#include "agent/vmx/vmm.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int kvm_check(int fd, struct parley_err *err)
{
	int v = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION)
		return perr(err, -ENOTSUP, "KVM API version %d, need %d", v,
			    KVM_API_VERSION);
	static const int caps[] = { KVM_CAP_USER_MEMORY, KVM_CAP_IMMEDIATE_EXIT,
				    KVM_CAP_XSAVE };
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
		if (ioctl(fd, KVM_CHECK_EXTENSION, caps[i]) <= 0)
			return perr(err, -ENOTSUP, "KVM lacks capability %d",
				    caps[i]);
	return 0;
}

static int kvm_slots(struct vmx_vm *vm, struct parley_err *err)
{
	struct kvm_userspace_memory_region ram = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = vm->ram_size,
		.userspace_addr = (uintptr_t)vm->mem,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &ram) < 0)
		return perr(err, -errno, "KVM_SET_USER_MEMORY_REGION ram: %m");
	if (!vm->cfg_size)
		return 0;
	/* Dirty logging on the config region: re-measurement re-hashes only
	 * the pages written since the last check. */
	struct kvm_userspace_memory_region cfg = {
		.slot = 1, .flags = KVM_MEM_LOG_DIRTY_PAGES,
		.guest_phys_addr = PARLEY_CONFIG_BASE,
		.memory_size = vm->cfg_size,
		.userspace_addr = (uintptr_t)(vm->mem + vm->ram_size),
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &cfg) < 0)
		return perr(err, -errno, "KVM_SET_USER_MEMORY_REGION config: %m");
	vm->dirty_logging = true;
	return 0;
}

static int vcpu_set_sregs(struct vmx_vcpu *c, struct parley_err *err)
{
	struct kvm_sregs s;
	if (ioctl(c->fd, KVM_GET_SREGS, &s) < 0)
		return perr(err, -errno, "KVM_GET_SREGS: %m");
	vmx_sregs_partition(&s);
	if (ioctl(c->fd, KVM_SET_SREGS, &s) < 0)
		return perr(err, -errno, "KVM_SET_SREGS: %m");
	return 0;
}

static int vcpu_reset(struct vmx_vcpu *c, const struct ctl_launch *l,
		      struct parley_err *err)
{
	int rc = vcpu_set_sregs(c, err);
	if (rc < 0)
		return rc;
	struct kvm_regs r = {
		.rip = l->entry,
		.rdi = l->boot_info,
		.rsi = c->index,
		.rsp = c->vm->ram_size - (uint64_t)c->index * PARLEY_STACK_SIZE,
		.rflags = VMX_RFLAGS_FIXED | VMX_RFLAGS_IOPL3,
	};
	if (ioctl(c->fd, KVM_SET_REGS, &r) < 0)
		return perr(err, -errno, "KVM_SET_REGS: %m");
	return 0;
}

static int vcpu_create(struct vmx_vm *vm, unsigned i, struct parley_err *err)
{
	struct vmx_vcpu *c = &vm->vcpu[i];
	c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
	if (c->fd < 0)
		return perr(err, -errno, "KVM_CREATE_VCPU %u: %m", i);
	c->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      c->fd, 0);
	if (c->run == MAP_FAILED) {
		c->run = NULL;
		return perr(err, -errno, "mmap kvm_run: %m");
	}
	if (i == 0) {
		int khz = ioctl(c->fd, KVM_GET_TSC_KHZ, 0);
		vm->tsc_khz = khz > 0 ? (uint64_t)khz : 0;
	}
	return 0;
}

static int kvm_create(struct vmx_vm *vm, int kvm_fd, int mem_fd, int mem_ro_fd,
		      const struct ctl_launch *l, struct parley_err *err)
{
	(void)mem_fd;
	(void)mem_ro_fd; /* KVM maps nothing read-only through an fd */
	vm->kvm_fd = kvm_fd;
	int rc = kvm_check(vm->kvm_fd, err);
	if (rc < 0)
		return rc;
	int rs = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (rs <= 0)
		return perr(err, -EIO, "KVM_GET_VCPU_MMAP_SIZE: %m");
	vm->run_size = (size_t)rs;
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return perr(err, -errno, "KVM_CREATE_VM: %m");
	rc = kvm_slots(vm, err);
	for (unsigned i = 0; rc == 0 && i < vm->nvcpu; i++) {
		rc = vcpu_create(vm, i, err);
		if (rc == 0 && !(l->flags & CTL_LAUNCH_RESTORE))
			rc = vcpu_reset(&vm->vcpu[i], l, err);
	}
	return rc;
}

static int kvm_vcpu_restore(struct vmx_vcpu *c, const struct ctl_vcpu_state *s,
			    struct parley_err *err)
{
	struct kvm_regs r = s->regs;
	r.rflags |= VMX_RFLAGS_FIXED | VMX_RFLAGS_IOPL3;
	int rc = vcpu_set_sregs(c, err);
	if (rc < 0)
		return rc;
	if (ioctl(c->fd, KVM_SET_REGS, &r) < 0)
		return perr(err, -errno, "KVM_SET_REGS: %m");
	struct kvm_xsave x = s->xsave;
	if (ioctl(c->fd, KVM_SET_XSAVE, &x) < 0)
		return perr(err, -errno, "vCPU %u: KVM_SET_XSAVE: %m", c->index);
	return 0;
}

static int kvm_vcpu_save(struct vmx_vcpu *c, struct ctl_vcpu_state *s)
{
	if (ioctl(c->fd, KVM_GET_REGS, &s->regs) < 0 ||
	    ioctl(c->fd, KVM_GET_SREGS, &s->sregs) < 0 ||
	    ioctl(c->fd, KVM_GET_XSAVE, &s->xsave) < 0)
		return -errno;
	return 0;
}

static void kvm_kick(struct vmx_vcpu *c)
{
	/* immediate_exit covers a thread about to enter KVM_RUN, the signal
	 * one already inside it. */
	__atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(c->thread, SIGUSR1);
}

static void kvm_destroy(struct vmx_vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		struct vmx_vcpu *c = &vm->vcpu[i];
		if (c->run)
			munmap(c->run, vm->run_size);
		if (c->fd >= 0)
			close(c->fd);
		c->run = NULL;
		c->fd = -1;
	}
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	vm->vm_fd = -1;
}

static int kvm_dirty(struct vmx_vm *vm, uint64_t *bitmap, uint64_t pages)
{
	(void)pages;
	if (!vm->dirty_logging)
		return 0;
	struct kvm_dirty_log log = { .slot = 1, .dirty_bitmap = bitmap };
	return ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0 ? -errno : 0;
}

static uint64_t kvm_rip(struct vmx_vcpu *c)
{
	struct kvm_regs r;
	return ioctl(c->fd, KVM_GET_REGS, &r) == 0 ? r.rip : 0;
}

static void kvm_win_settle(struct vmx_vm *vm)
{
	(void)vm; /* a removed slot is gone for every vCPU at once */
}

const struct vmx_engine vmx_kvm_engine = {
	.name = "kvm",
	.create = kvm_create,
	.destroy = kvm_destroy,
	.vcpu_restore = kvm_vcpu_restore,
	.vcpu_save = kvm_vcpu_save,
	.vcpu_thread = kvm_vcpu_thread,
	.kick = kvm_kick,
	.settle = kvm_vcpu_settle,
	.win_map = kvm_win_map,
	.win_unmap = kvm_win_unmap,
	.win_settle = kvm_win_settle,
	.doorbell = kvm_doorbell,
	.dirty = kvm_dirty,
	.rip = kvm_rip,
};
