/* A stub child made into a partition vCPU: guest memory mapped at its
 * guest-physical addresses from the same memory fds KVM would be given,
 * with the permissions the page tables give it under KVM (and W^X on top),
 * then everything of the stub unmapped but the injection site, every
 * descriptor closed, and the partition's registers set. */
#include "agent/vmx/vmm.h"
#include "agent/stub/stub.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>

/* The highest user address on x86-64 with 4-level paging; nothing is
 * mapped above it unless asked for. */
#define USER_TOP 0x7ffffffff000ull
#define GIB4 0x100000000ull

struct seg {
	uint64_t gpa, len;
	int prot, fd;
};

static int by_gpa(const void *a, const void *b)
{
	const struct seg *x = a, *y = b;
	return x->gpa < y->gpa ? -1 : x->gpa > y->gpa;
}

/* RAM from PARLEY_IMAGE_MIN up: read-only image ranges from the read-only
 * fd (r-x where executable, else r--), the rest rw- and never executable. */
static unsigned ram_segs(const struct ctl_launch *l, struct seg *s)
{
	unsigned n = 0;
	for (uint32_t i = 0; i < l->nro; i++)
		s[n++] = (struct seg){ l->ro[i].gpa, l->ro[i].size,
				       PROT_READ | (l->ro[i].exec ? PROT_EXEC
								  : 0),
				       STUB_FD_MEM_RO };
	qsort(s, n, sizeof(*s), by_gpa);
	unsigned m = n;
	uint64_t at = PARLEY_IMAGE_MIN;
	for (unsigned i = 0; i <= n; i++) {
		uint64_t end = i < n ? s[i].gpa : l->ram_size;
		if (end > at)
			s[m++] = (struct seg){ at, end - at,
					       PROT_READ | PROT_WRITE,
					       STUB_FD_MEM };
		if (i < n && s[i].gpa + s[i].len > at)
			at = s[i].gpa + s[i].len;
	}
	return m;
}

static int map_memory(struct vmx_vcpu *c, const struct ctl_launch *l)
{
	struct seg s[2 * CTL_RO_RANGES_MAX + 3];
	unsigned n = ram_segs(l, s);
	/* Boot info is the partition's to read, not to write; page 0 and
	 * the system area (page tables, GDT, TSS: only KVM needs them) are
	 * not mapped at all. */
	s[n++] = (struct seg){ PARLEY_BOOT_INFO_GPA, PARLEY_BOOT_INFO_SIZE,
			       PROT_READ, STUB_FD_MEM_RO };
	if (l->cfg_size)
		s[n++] = (struct seg){ PARLEY_CONFIG_BASE, l->cfg_size,
				       PROT_READ | PROT_WRITE, STUB_FD_MEM };
	for (unsigned i = 0; i < n; i++) {
		/* The config region lies after RAM in the memory fd. */
		uint64_t off = s[i].gpa == PARLEY_CONFIG_BASE ? l->ram_size
							       : s[i].gpa;
		int rc = proc_map_at(c, s[i].gpa, s[i].len, s[i].prot,
				     s[i].fd, off);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Everything from 4 GiB up but the site's page: the stub's text and data,
 * its stack, the vDSO and vvar. (The vsyscall page cannot be unmapped; the
 * stub's filter kills a call into it.) */
static int unmap_stub(struct vmx_vcpu *c)
{
	int rc = proc_unmap_at(c, GIB4, STUB_SITE - GIB4);
	if (rc == 0)
		rc = proc_unmap_at(c, STUB_SITE + PARLEY_PAGE_SIZE,
				   USER_TOP - STUB_SITE - PARLEY_PAGE_SIZE);
	return rc;
}

/* Fresh registers as vm.c's KVM reset sets them: entry, boot info, vCPU
 * index, the top of this vCPU's stack; flat 64-bit user segments. */
static void regs_reset(struct vmx_vcpu *c, const struct ctl_launch *l)
{
	struct user_regs_struct *r = &c->proc.regs;
	unsigned long long cs = r->cs, ss = r->ss;
	memset(r, 0, sizeof(*r));
	r->cs = cs;
	r->ss = ss;
	r->rip = l->entry;
	r->rdi = l->boot_info;
	r->rsi = c->index;
	r->rsp = c->vm->ram_size - (uint64_t)c->index * PARLEY_STACK_SIZE;
	r->eflags = 0x202; /* IF is always set in user mode */
	r->orig_rax = (unsigned long long)-1;
}

int proc_setup(struct vmx_vcpu *c, const struct ctl_launch *l,
	       struct parley_err *err)
{
	int rc = map_memory(c, l);
	if (rc < 0)
		return perr(err, rc, "vCPU %u: mapping guest memory: %s",
			    c->index, strerror(-rc));
	rc = proc_uffd_setup(c);
	if (rc < 0)
		return perr(err, rc, "vCPU %u: dirty tracking: %s", c->index,
			    strerror(-rc));
	rc = proc_close_all(c);
	if (rc == 0)
		rc = unmap_stub(c);
	if (rc < 0)
		return perr(err, rc, "vCPU %u: emptying the stub: %s",
			    c->index, strerror(-rc));
	if (c->proc.have_restore)
		rc = proc_state_load(c, &c->proc.state);
	else
		regs_reset(c, l);
	if (rc < 0)
		return perr(err, rc, "vCPU %u: loading its state: %s",
			    c->index, strerror(-rc));
	c->proc.regs_dirty = true;
	return 0;
}
