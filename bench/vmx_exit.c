/* The baseline the hypercall figure is compared with: a KVM I/O exit and
 * nothing else. The VM is set up exactly as a partition's (layout_system's
 * page tables, GDT and TSS; vmx_vm_create's CPL 3 long-mode vCPU), but it
 * lives in this process and its exits are not handled: the loop re-enters
 * KVM_RUN as soon as it returns. */
#include "bench/bench_vmx.h"
#include "agent/layout.h"
#include "agent/vmx/vmm.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define EXIT_RAM   PARLEY_MEM_MIN
#define EXIT_CODE  PARLEY_IMAGE_MIN
/* The port a CLOCK hypercall uses: the same instruction to the same port
 * as the hypercall figure, so the two differ only in what follows the exit. */
#define EXIT_PORT  (PARLEY_HC_PORT_BASE + PARLEY_HC_CLOCK)
#define EXIT_WARM  200

/* mov $EXIT_PORT, %dx;  1: out %eax, (%dx);  jmp 1b */
static const uint8_t exit_code[] = {
	0x66, 0xba, EXIT_PORT & 0xff, EXIT_PORT >> 8,
	0xef,
	0xeb, 0xfd,
};

struct exit_vm {
	int mem_fd;
	uint8_t *ram;       /* our read-write view, for laying it out */
	struct vmx_vm vm;
};

/* Guest memory laid out as for a partition whose image is one read-only
 * code page at EXIT_CODE. */
static int exit_mem(struct exit_vm *x, struct parley_err *err)
{
	x->mem_fd = memfd_create("parley-bench", MFD_CLOEXEC);
	if (x->mem_fd < 0)
		return perr(err, -errno, "memfd_create: %m");
	if (ftruncate(x->mem_fd, EXIT_RAM) < 0)
		return perr(err, -errno, "ftruncate: %m");
	x->ram = mmap(NULL, EXIT_RAM, PROT_READ | PROT_WRITE, MAP_SHARED,
		      x->mem_fd, 0);
	if (x->ram == MAP_FAILED) {
		x->ram = NULL;
		return perr(err, -errno, "mmap: %m");
	}
	const struct layout_range code = { EXIT_CODE, PARLEY_PAGE_SIZE,
					   PF_R | PF_X };
	const struct layout_params lp = {
		.ram_size = EXIT_RAM, .vcpus = 1,
		.image_hi = EXIT_CODE + PARLEY_PAGE_SIZE,
		.nrange = 1, .ranges = &code, .cmdline = "",
	};
	int rc = layout_system(x->ram, &lp, err);
	if (rc == 0)
		rc = layout_boot(x->ram, NULL, 0, &lp, err);
	memcpy(x->ram + EXIT_CODE, exit_code, sizeof(exit_code));
	return rc;
}

static void exit_vm_destroy(struct exit_vm *x)
{
	vmx_vm_destroy(&x->vm);
	if (x->ram)
		munmap(x->ram, EXIT_RAM);
	if (x->mem_fd >= 0)
		close(x->mem_fd);
	x->ram = NULL;
	x->mem_fd = -1;
}

static int exit_vm_create(struct exit_vm *x, struct parley_err *err)
{
	memset(x, 0, sizeof(*x));
	x->mem_fd = -1;
	x->vm.kvm_fd = x->vm.vm_fd = x->vm.stop_efd = -1;
	const struct ctl_launch l = {
		.ram_size = EXIT_RAM, .entry = EXIT_CODE,
		.boot_info = PARLEY_BOOT_INFO_GPA, .vcpus = 1,
	};
	int rc = exit_mem(x, err);
	if (rc == 0)
		{
			int kfd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
			rc = kfd < 0 ? perr(err, -errno, "/dev/kvm: %m")
				     : vmx_vm_create(&x->vm, kfd, x->mem_fd, -1, &l,
						    err);
		}
	if (rc < 0)
		exit_vm_destroy(x);
	return rc;
}

/* n round trips; anything but an I/O exit means the set-up is wrong. */
static int run_exits(struct vmx_vcpu *c, unsigned n, struct parley_err *err)
{
	for (unsigned i = 0; i < n; i++) {
		if (ioctl(c->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			return perr(err, -errno, "KVM_RUN: %m");
		}
		if (c->run->exit_reason != KVM_EXIT_IO)
			return perr(err, -EIO, "exit reason %u, not I/O",
				    c->run->exit_reason);
	}
	return 0;
}

int vmx_exit_open(struct exit_vm **out, struct parley_err *err)
{
	struct exit_vm *x = malloc(sizeof(*x));
	if (!x)
		return perr(err, -ENOMEM, "out of memory");
	int rc = exit_vm_create(x, err);
	/* Untimed: the first entries fault in the guest's pages. */
	if (rc == 0)
		rc = run_exits(&x->vm.vcpu[0], EXIT_WARM, err);
	if (rc < 0) {
		vmx_exit_close(x);
		return rc;
	}
	*out = x;
	return 0;
}

int vmx_exit_batch(struct exit_vm *x, unsigned n, double *ns_per_exit,
		   struct parley_err *err)
{
	uint64_t t0 = mono_now_ns();
	int rc = run_exits(&x->vm.vcpu[0], n, err);
	*ns_per_exit = (double)(mono_now_ns() - t0) / n;
	return rc;
}

void vmx_exit_close(struct exit_vm *x)
{
	if (!x)
		return;
	exit_vm_destroy(x);
	free(x);
}

/* One VM from nothing to its first exit, then gone. */
static int bare_start_once(struct exit_vm *x, double *ns,
			   struct parley_err *err)
{
	uint64_t t0 = mono_now_ns();
	int rc = exit_vm_create(x, err);
	if (rc < 0)
		return rc;
	rc = run_exits(&x->vm.vcpu[0], 1, err);
	*ns = (double)(mono_now_ns() - t0);
	exit_vm_destroy(x);
	return rc;
}

int vmx_bench_bare_start(unsigned runs, double *median_ms,
			 struct parley_err *err)
{
	struct exit_vm *x = malloc(sizeof(*x));
	double *t = calloc(runs, sizeof(*t));
	int rc = x && t ? 0 : perr(err, -ENOMEM, "out of memory");
	for (unsigned i = 0; rc == 0 && i < runs; i++)
		rc = bare_start_once(x, &t[i], err);
	if (rc == 0)
		*median_ms = bench_summary("bare VM create->first exit", t,
					   runs, 1e-6, "ms");
	free(x);
	free(t);
	return rc;
}
