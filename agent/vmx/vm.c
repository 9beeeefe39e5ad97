#include "agent/vmx/vmm.h"
#include "agent/layout.h"
#include "agent/ctl/stop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CR0_PE 0x1ull
#define CR0_MP 0x2ull
#define CR0_ET 0x10ull
#define CR0_NE 0x20ull
#define CR0_WP 0x10000ull
#define CR0_PG 0x80000000ull
#define CR4_PAE 0x20ull
#define CR4_OSFXSR 0x200ull
#define CR4_OSXMMEXCPT 0x400ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull
#define EFER_NXE 0x800ull  /* honour the NX bit: data pages never run */
#define RFLAGS_FIXED 0x2ull
#define RFLAGS_IOPL3 0x3000ull
/* What a CPL 3 program can change in RFLAGS (popf): arithmetic flags, TF,
 * DF, AC, ID. Anything else in a restored state is refused. */
#define RFLAGS_USER 0x250dd5ull

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

static int vm_map_memory(struct vmx_vm *vm, int mem_fd, struct parley_err *err)
{
	uint64_t total = vm->ram_size + vm->cfg_size;
	vm->mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, mem_fd, 0);
	if (vm->mem == MAP_FAILED) {
		vm->mem = NULL;
		return perr(err, -errno, "mmap guest memory: %m");
	}
	struct kvm_userspace_memory_region ram = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = vm->ram_size,
		.userspace_addr = (uintptr_t)vm->mem,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &ram) < 0)
		return perr(err, -errno, "KVM_SET_USER_MEMORY_REGION ram: %m");
	gmem_add(&vm->gm, 0, vm->ram_size, vm->mem);
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
	gmem_add(&vm->gm, PARLEY_CONFIG_BASE, vm->cfg_size,
		 vm->mem + vm->ram_size);
	vm->dirty_logging = true;
	return 0;
}

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type,
		     uint8_t l, uint8_t db)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 3, .db = db, .s = 1, .l = l, .g = 1,
	};
}

/* The privileged state every partition vCPU has, fresh or restored. */
static void sregs_partition(struct kvm_sregs *s)
{
	seg_flat(&s->cs, LAYOUT_SEL_CODE, 0xb, 1, 0);
	seg_flat(&s->ds, LAYOUT_SEL_DATA, 0x3, 0, 1);
	s->es = s->fs = s->gs = s->ss = s->ds;
	s->tr = (struct kvm_segment){
		.base = LAYOUT_TSS, .limit = LAYOUT_TSS_LIMIT,
		.selector = LAYOUT_SEL_TSS,
		.type = 0xb, .present = 1,
	};
	s->ldt = (struct kvm_segment){ .type = 0x2, .unusable = 1 };
	s->gdt.base = LAYOUT_GDT;
	s->gdt.limit = LAYOUT_GDT_ENTRIES * 8 - 1;
	s->idt.base = 0;
	s->idt.limit = 0; /* any exception escalates to a triple fault */
	s->cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	s->cr3 = LAYOUT_PML4;
	s->cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	s->efer = EFER_LME | EFER_LMA | EFER_NXE;
	memset(s->interrupt_bitmap, 0, sizeof(s->interrupt_bitmap));
}

static int vcpu_set_sregs(struct vmx_vcpu *c, struct parley_err *err)
{
	struct kvm_sregs s;
	if (ioctl(c->fd, KVM_GET_SREGS, &s) < 0)
		return perr(err, -errno, "KVM_GET_SREGS: %m");
	sregs_partition(&s);
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
		.rflags = RFLAGS_FIXED | RFLAGS_IOPL3,
	};
	if (ioctl(c->fd, KVM_SET_REGS, &r) < 0)
		return perr(err, -errno, "KVM_SET_REGS: %m");
	return 0;
}

static int vcpu_create(struct vmx_vm *vm, unsigned i, struct parley_err *err)
{
	struct vmx_vcpu *c = &vm->vcpu[i];
	c->vm = vm;
	c->index = i;
	c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
	if (c->fd < 0)
		return perr(err, -errno, "KVM_CREATE_VCPU %u: %m", i);
	c->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->kick_fd < 0)
		return perr(err, -errno, "eventfd: %m");
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

int vmx_vm_create(struct vmx_vm *vm, int kvm_fd, int mem_fd,
		  const struct ctl_launch *l,
		  struct parley_err *err)
{
	memset(vm, 0, sizeof(*vm));
	vm->vm_fd = vm->stop_efd = -1;
	vm->kvm_fd = kvm_fd;
	for (unsigned i = 0; i < PARLEY_VCPUS_MAX; i++)
		vm->vcpu[i].fd = vm->vcpu[i].kick_fd = -1;
	vm->ctl_fd = -1;
	win_init(&vm->win);
	pthread_mutex_init(&vm->win_lock, NULL);
	vm->ram_size = l->ram_size;
	vm->cfg_size = l->cfg_size;
	vm->nvcpu = l->vcpus;
	vm->t0_ns = mono_now_ns();
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	atomic_store(&vm->state, (l->flags & CTL_LAUNCH_PAUSED) ? VMX_PAUSE
								: VMX_RUN);
	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_efd < 0)
		return perr(err, -errno, "eventfd: %m");
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
	rc = vm_map_memory(vm, mem_fd, err);
	for (unsigned i = 0; rc == 0 && i < vm->nvcpu; i++) {
		rc = vcpu_create(vm, i, err);
		if (rc == 0 && !(l->flags & CTL_LAUNCH_RESTORE))
			rc = vcpu_reset(&vm->vcpu[i], l, err);
	}
	return rc;
}

int vmx_vcpu_restore(struct vmx_vcpu *c, const struct ctl_vcpu_state *s,
		     struct parley_err *err)
{
	struct kvm_regs r = s->regs;
	/* IOPL is not checked: a nested CPU that ignores IOPL may also not
	 * keep it (seen here: saved as 0). It is set again below. */
	if (r.rflags & ~(RFLAGS_USER | RFLAGS_FIXED | RFLAGS_IOPL3))
		return perr(err, -EINVAL, "vCPU %u: rflags 0x%llx is not a "
			    "partition's", c->index, (unsigned long long)r.rflags);
	r.rflags |= RFLAGS_FIXED | RFLAGS_IOPL3;
	/* The saved special registers must be the ones we would set: a state
	 * that claims CPL 0 or its own page tables is not a partition's. */
	struct kvm_sregs want = s->sregs;
	sregs_partition(&want);
	if (s->sregs.cr0 != want.cr0 || s->sregs.cr3 != want.cr3 ||
	    s->sregs.cr4 != want.cr4 || s->sregs.efer != want.efer ||
	    s->sregs.cs.dpl != 3 || s->sregs.cs.selector != LAYOUT_SEL_CODE)
		return perr(err, -EINVAL, "vCPU %u: saved control registers "
			    "are not a partition's", c->index);
	int rc = vcpu_set_sregs(c, err);
	if (rc < 0)
		return rc;
	if (ioctl(c->fd, KVM_SET_REGS, &r) < 0)
		return perr(err, -errno, "KVM_SET_REGS: %m");
	struct kvm_xsave x = s->xsave;
	if (ioctl(c->fd, KVM_SET_XSAVE, &x) < 0)
		return perr(err, -errno, "vCPU %u: KVM_SET_XSAVE: %m", c->index);
	c->halted = s->halted != 0;
	return 0;
}

int vmx_vcpu_save(struct vmx_vcpu *c, struct ctl_vcpu_state *s)
{
	memset(s, 0, sizeof(*s));
	s->index = c->index;
	s->halted = c->halted;
	if (ioctl(c->fd, KVM_GET_REGS, &s->regs) < 0 ||
	    ioctl(c->fd, KVM_GET_SREGS, &s->sregs) < 0 ||
	    ioctl(c->fd, KVM_GET_XSAVE, &s->xsave) < 0)
		return -errno;
	return 0;
}

static void kick_all(struct vmx_vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		struct vmx_vcpu *c = &vm->vcpu[i];
		if (!c->started)
			continue;
		/* immediate_exit covers a thread about to enter KVM_RUN, the
		 * signal one already inside it. */
		__atomic_store_n(&c->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		pthread_kill(c->thread, SIGUSR1);
		uint64_t one = 1; /* and the eventfd one waiting in CHAN_WAIT */
		if (write(c->kick_fd, &one, sizeof(one)) < 0) {
			/* counter full: it will wake anyway */
		}
	}
}

static void noop_handler(int sig)
{
	(void)sig;
}

int vmx_vm_start(struct vmx_vm *vm)
{
	struct sigaction sa = { .sa_handler = noop_handler };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL); /* no SA_RESTART: KVM_RUN returns */
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		struct vmx_vcpu *c = &vm->vcpu[i];
		int rc = pthread_create(&c->thread, NULL, vmx_vcpu_thread, c);
		if (rc) {
			struct ctl_finished f = { .reason = VMX_STOP_INTERNAL };
			snprintf(f.detail, sizeof(f.detail),
				 "pthread_create: %s", strerror(rc));
			vmx_vm_finish(vm, &f);
			return -rc;
		}
		c->started = true;
	}
	return 0;
}

static unsigned live_vcpus(struct vmx_vm *vm)
{
	unsigned n = 0;
	for (unsigned i = 0; i < vm->nvcpu; i++)
		n += vm->vcpu[i].started;
	return n;
}

void vmx_vm_pause(struct vmx_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (atomic_load(&vm->state) == VMX_RUN)
		atomic_store(&vm->state, VMX_PAUSE);
	pthread_mutex_unlock(&vm->lock);
	kick_all(vm);
	pthread_mutex_lock(&vm->lock);
	while (atomic_load(&vm->state) == VMX_PAUSE &&
	       vm->nparked < live_vcpus(vm))
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
}

void vmx_vm_resume(struct vmx_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	if (atomic_load(&vm->state) == VMX_PAUSE)
		atomic_store(&vm->state, VMX_RUN);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

void vmx_vm_finish(struct vmx_vm *vm, const struct ctl_finished *fin)
{
	pthread_mutex_lock(&vm->lock);
	bool first = !vm->finished;
	if (first) {
		vm->finished = true;
		vm->fin = *fin;
		vm->fin.detail[sizeof(vm->fin.detail) - 1] = 0;
	}
	atomic_store(&vm->state, VMX_STOP);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	if (!first)
		return;
	kick_all(vm);
	uint64_t one = 1;
	if (write(vm->stop_efd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow with one write; nothing to do. */
	}
}

void vmx_vm_join(struct vmx_vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		if (vm->vcpu[i].started)
			pthread_join(vm->vcpu[i].thread, NULL);
		vm->vcpu[i].started = false;
	}
}

void vmx_vm_destroy(struct vmx_vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		struct vmx_vcpu *c = &vm->vcpu[i];
		if (c->run)
			munmap(c->run, vm->run_size);
		if (c->fd >= 0)
			close(c->fd);
		if (c->kick_fd >= 0)
			close(c->kick_fd);
		c->run = NULL;
		c->fd = c->kick_fd = -1;
	}
	if (vm->mem)
		munmap(vm->mem, vm->ram_size + vm->cfg_size);
	vm->mem = NULL;
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	vm->vm_fd = vm->kvm_fd = vm->stop_efd = -1;
}

void vmx_vcpu_reply(struct vmx_vm *vm, const struct ctl_open_reply *r)
{
	if (r->vcpu >= vm->nvcpu)
		return;
	struct vmx_vcpu *c = &vm->vcpu[r->vcpu];
	pthread_mutex_lock(&vm->lock);
	if (c->awaiting) {
		c->reply = *r;
		/* The map request came first; if it failed there is nothing
		 * behind the handle. */
		if (r->status == PARLEY_OK && !win_lookup(vm, r->handle))
			c->reply.status = PARLEY_E_LIMIT;
		c->replied = true;
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
}

int vmx_send_dirty(struct vmx_vm *vm)
{
	uint64_t pages = vm->cfg_size / PARLEY_PAGE_SIZE;
	static uint64_t bitmap[PARLEY_CONFIG_MAX / PARLEY_PAGE_SIZE / 64];
	memset(bitmap, 0, (pages + 63) / 64 * 8);
	if (vm->dirty_logging) {
		struct kvm_dirty_log log = { .slot = 1, .dirty_bitmap = bitmap };
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			return -errno;
	}
	vmx_dirty_filter(bitmap, pages);
	uint64_t per = 8 * CTL_DIRTY_BYTES;
	uint64_t first = 0;
	do {
		struct ctl_dirty d = { .first_page = first };
		d.npages = pages - first < per ? pages - first : per;
		memcpy(d.bits, (uint8_t *)bitmap + first / 8, (d.npages + 7) / 8);
		first += d.npages;
		d.last = first >= pages;
		int rc = ctl_send(vm->ctl_fd, CTL_DIRTY, &d, sizeof(d));
		if (rc < 0)
			return rc;
	} while (first < pages);
	return 0;
}
