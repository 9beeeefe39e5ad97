/* The privileged state of a partition vCPU, which no saved state may
 * change: one definition for both engines, so a snapshot taken on one
 * restores on the other. */
#include "agent/vmx/vmm.h"

#include <errno.h>
#include <string.h>

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

static void seg_flat(struct kvm_segment *s, uint16_t sel, uint8_t type,
		     uint8_t l, uint8_t db)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = 3, .db = db, .s = 1, .l = l, .g = 1,
	};
}

void vmx_sregs_partition(struct kvm_sregs *s)
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

int vmx_state_check(const struct ctl_vcpu_state *s, unsigned index,
		    struct parley_err *err)
{
	/* IOPL is not checked: a nested CPU that ignores IOPL may also not
	 * keep it (seen here: saved as 0). Engines set it again. */
	if (s->regs.rflags & ~(VMX_RFLAGS_USER | VMX_RFLAGS_FIXED |
			       VMX_RFLAGS_IOPL3))
		return perr(err, -EINVAL, "vCPU %u: rflags 0x%llx is not a "
			    "partition's", index,
			    (unsigned long long)s->regs.rflags);
	/* The saved special registers must be the ones we would set: a state
	 * that claims CPL 0 or its own page tables is not a partition's. */
	struct kvm_sregs want = s->sregs;
	vmx_sregs_partition(&want);
	if (s->sregs.cr0 != want.cr0 || s->sregs.cr3 != want.cr3 ||
	    s->sregs.cr4 != want.cr4 || s->sregs.efer != want.efer ||
	    s->sregs.cs.dpl != 3 || s->sregs.cs.selector != LAYOUT_SEL_CODE)
		return perr(err, -EINVAL, "vCPU %u: saved control registers "
			    "are not a partition's", index);
	return 0;
}
