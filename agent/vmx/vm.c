/* One VM as its vmm process holds it, whatever the engine: guest memory,
 * the run state the vCPU threads obey (pause, resume, finish, join), and
 * the answers handed to waiting vCPUs. */
#include "agent/vmx/vmm.h"
#include "agent/ctl/stop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int vm_map_memory(struct vmx_vm *vm, int mem_fd, struct parley_err *err)
{
	uint64_t total = vm->ram_size + vm->cfg_size;
	vm->mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, mem_fd, 0);
	if (vm->mem == MAP_FAILED) {
		vm->mem = NULL;
		return perr(err, -errno, "mmap guest memory: %m");
	}
	gmem_add(&vm->gm, 0, vm->ram_size, vm->mem);
	if (vm->cfg_size)
		gmem_add(&vm->gm, PARLEY_CONFIG_BASE, vm->cfg_size,
			 vm->mem + vm->ram_size);
	return 0;
}

static void vm_init(struct vmx_vm *vm, const struct ctl_launch *l)
{
	memset(vm, 0, sizeof(*vm));
	vm->eng = l->backend == CTL_BACKEND_PROCESS ? &vmx_proc_engine
						    : &vmx_kvm_engine;
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;
	for (unsigned i = 0; i < PARLEY_VCPUS_MAX; i++) {
		struct vmx_vcpu *c = &vm->vcpu[i];
		c->vm = vm;
		c->index = i;
		c->fd = c->kick_fd = -1;
		c->proc.pidfd = c->proc.listener = c->proc.uffd = -1;
		atomic_store(&c->proc.uffd_live, -1);
	}
	for (unsigned i = 0; i < CTL_WIN_SLOTS; i++)
		for (unsigned j = 0; j < CTL_MAP_MEMS_MAX; j++)
			vm->proc.win[i].mem[j] = -1;
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
}

int vmx_vm_create(struct vmx_vm *vm, int kvm_fd, int mem_fd, int mem_ro_fd,
		  const struct ctl_launch *l, struct parley_err *err)
{
	vm_init(vm, l);
	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_efd < 0) {
		close(kvm_fd);
		return perr(err, -errno, "eventfd: %m");
	}
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		vm->vcpu[i].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vm->vcpu[i].kick_fd < 0) {
			close(kvm_fd);
			return perr(err, -errno, "eventfd: %m");
		}
	}
	int rc = vm_map_memory(vm, mem_fd, err);
	if (rc < 0) {
		close(kvm_fd);
		return rc;
	}
	return vm->eng->create(vm, kvm_fd, mem_fd, mem_ro_fd, l, err);
}

int vmx_vcpu_restore(struct vmx_vcpu *c, const struct ctl_vcpu_state *s,
		     struct parley_err *err)
{
	int rc = vmx_state_check(s, c->index, err);
	if (rc == 0)
		rc = c->vm->eng->vcpu_restore(c, s, err);
	if (rc == 0)
		c->halted = s->halted != 0;
	return rc;
}

int vmx_vcpu_save(struct vmx_vcpu *c, struct ctl_vcpu_state *s)
{
	memset(s, 0, sizeof(*s));
	s->index = c->index;
	s->halted = c->halted;
	return c->vm->eng->vcpu_save(c, s);
}

static void kick_all(struct vmx_vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		struct vmx_vcpu *c = &vm->vcpu[i];
		if (!c->started)
			continue;
		vm->eng->kick(c);
		uint64_t one = 1; /* and the eventfd one waiting in CHAN_WAIT */
		if (write(c->kick_fd, &one, sizeof(one)) < 0) {
			/* counter full: it will wake anyway */
		}
	}
}

void vmx_vm_wake_waiters(struct vmx_vm *vm)
{
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		struct vmx_vcpu *c = &vm->vcpu[i];
		uint64_t one = 1;
		if (c->started && c->kick_fd >= 0 &&
		    write(c->kick_fd, &one, sizeof(one)) < 0) {
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
		int rc = pthread_create(&c->thread, NULL, vm->eng->vcpu_thread, c);
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
	if (vm->eng)
		vm->eng->destroy(vm);
	for (unsigned i = 0; i < vm->nvcpu; i++) {
		struct vmx_vcpu *c = &vm->vcpu[i];
		if (c->kick_fd >= 0)
			close(c->kick_fd);
		c->kick_fd = -1;
	}
	if (vm->mem)
		munmap(vm->mem, vm->ram_size + vm->cfg_size);
	vm->mem = NULL;
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	vm->kvm_fd = vm->stop_efd = -1;
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
		 * behind the handle. (Handle 0 is none: an answer that maps
		 * nothing, a service offer's.) */
		if (r->status == PARLEY_OK && r->handle &&
		    !win_lookup(vm, r->handle))
			c->reply.status = PARLEY_E_LIMIT;
		c->replied = true;
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
}

void vmx_vcpu_update_reply(struct vmx_vm *vm, const struct ctl_update_reply *u)
{
	struct ctl_open_reply r = { .vcpu = u->vcpu, .status = u->status,
				    .gpa = u->received, .size = u->size,
				    .tx = u->state };
	_Static_assert(sizeof(r.detail) == sizeof(u->detail), "detail");
	memcpy(r.detail, u->detail, sizeof(r.detail));
	r.detail[sizeof(r.detail) - 1] = 0;
	vmx_vcpu_reply(vm, &r);
}

int vmx_send_dirty(struct vmx_vm *vm)
{
	uint64_t pages = vm->cfg_size / PARLEY_PAGE_SIZE;
	static uint64_t bitmap[PARLEY_CONFIG_MAX / PARLEY_PAGE_SIZE / 64];
	memset(bitmap, 0, (pages + 63) / 64 * 8);
	int rc = vm->eng->dirty(vm, bitmap, pages);
	if (rc < 0)
		return rc;
	vmx_dirty_filter(bitmap, pages);
	uint64_t per = 8 * CTL_DIRTY_BYTES;
	uint64_t first = 0;
	do {
		struct ctl_dirty d = { .first_page = first };
		d.npages = pages - first < per ? pages - first : per;
		memcpy(d.bits, (uint8_t *)bitmap + first / 8, (d.npages + 7) / 8);
		first += d.npages;
		d.last = first >= pages;
		rc = ctl_send(vm->ctl_fd, CTL_DIRTY, &d, sizeof(d));
		if (rc < 0)
			return rc;
	} while (first < pages);
	return 0;
}
