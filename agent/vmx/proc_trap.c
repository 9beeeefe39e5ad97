/* What a stop of a process-backend vCPU means, mapped onto the stop reasons
 * KVM gives the same act: an `out dx,eax` to a hypercall port is served by
 * the very handlers KVM_EXIT_IO reaches; any syscall, any other
 * instruction that faults, any access outside the partition's memory
 * stops the partition with a named reason. */
#include "agent/vmx/vmm.h"
#include "agent/stub/stub.h"
#include "agent/ctl/stop.h"

#include <signal.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#define USER_CS 0x33 /* Linux's 64-bit user code segment */
#define GIB4 0x100000000ull

/* Up to 4 instruction bytes at rip, read through the vmm's own view of
 * guest memory (the only memory a partition executes from). */
static unsigned fetch(struct vmx_vcpu *c, uint8_t *b)
{
	for (unsigned n = 4; n > 0; n--) {
		const uint8_t *p = gmem_ptr(&c->vm->gm, c->proc.regs.rip, n, 1);
		if (p) {
			memcpy(b, p, n);
			return n;
		}
	}
	return 0;
}

/* Port I/O that faulted (#GP: user mode has no I/O privilege). Returns
 * true for the one form a hypercall takes. */
static bool io_insn(const uint8_t *b, unsigned n, const struct
		    user_regs_struct *r, unsigned *port, unsigned *size,
		    bool *out)
{
	unsigned i = 0, opsz = 4;
	if (n > 0 && b[0] == 0x66)
		i = 1, opsz = 2;
	if (i >= n)
		return false;
	uint8_t op = b[i];
	*port = (unsigned)(r->rdx & 0xffff);
	*size = op & 1 ? opsz : 1;
	switch (op) {
	case 0xe4: case 0xe5: case 0xe6: case 0xe7: /* in/out imm8 */
		*port = i + 1 < n ? b[i + 1] : 0;
		*out = op >= 0xe6;
		return true;
	case 0xec: case 0xed: case 0xee: case 0xef: /* in/out dx */
		*out = op >= 0xee;
		return true;
	case 0x6c: case 0x6d: case 0x6e: case 0x6f: /* ins/outs */
		*out = op >= 0x6e;
		*size = 0; /* string I/O is never a hypercall */
		return true;
	default:
		return false;
	}
}

/* The partition's own act, if it is a way into the host kernel. */
static const char *syscall_insn(const uint8_t *b, unsigned n)
{
	if (n >= 2 && b[0] == 0x0f && b[1] == 0x05)
		return "syscall";
	if (n >= 2 && b[0] == 0x0f && b[1] == 0x34)
		return "sysenter";
	if (n >= 2 && b[0] == 0xcd && b[1] == 0x80)
		return "int 0x80";
	return NULL;
}

static bool on_io(struct vmx_vcpu *c, unsigned port, unsigned size, bool out)
{
	unsigned nr = port - PARLEY_HC_PORT_BASE;
	if (port < PARLEY_HC_PORT_BASE || nr >= PARLEY_HC_PORT_SPAN) {
		vmx_vcpu_fault(c, VMX_STOP_BAD_PORT, port,
			       "%s of %u byte(s) to port 0x%x, which is not a "
			       "hypercall", out ? "OUT" : "IN", size, port);
		return false;
	}
	if (!out || size != 4) {
		vmx_vcpu_fault(c, VMX_STOP_BAD_HYPERCALL, port,
			       "hypercall %u: must be a single 32-bit OUT", nr);
		return false;
	}
	uint32_t gpa = (uint32_t)c->proc.regs.rax;
	/* Past the OUT before the handler runs, as KVM completes it: a state
	 * saved while the handler waits must not repeat the call. */
	c->proc.regs.rip += 1;
	c->proc.regs_dirty = true;
	if (port == PARLEY_DOORBELL_PORT)
		return vmx_doorbell_slow(c, gpa);
	if (nr == PARLEY_HC_CHAN_OPEN)
		proc_state_store(c); /* it may be saved while it waits */
	return vmx_hypercall(c, nr, gpa);
}

/* #GP and friends: an I/O instruction, a way into the kernel, or an
 * exception KVM would end in a triple fault. */
static bool on_gp(struct vmx_vcpu *c, const char *what)
{
	/* Zeroed: fetch() fills only n bytes, which gcc -O2 (the Debian
	 * package build) cannot see and fails on with -Werror. */
	uint8_t b[4] = { 0 };
	unsigned n = fetch(c, b), port, size;
	bool out;
	const char *sc = syscall_insn(b, n);
	if (sc) {
		vmx_vcpu_fault(c, VMX_STOP_SYSCALL, c->proc.regs.rip,
			       "%s at 0x%llx: partitions make no system calls",
			       sc, c->proc.regs.rip);
		return false;
	}
	if (io_insn(b, n, &c->proc.regs, &port, &size, &out))
		return on_io(c, port, size, out);
	vmx_vcpu_fault(c, VMX_STOP_TRIPLE_FAULT, 0,
		       "exception with no handler (triple fault): %s at 0x%llx",
		       what, c->proc.regs.rip);
	return false;
}

static bool in_chan(uint64_t a)
{
	return a >= PARLEY_CHAN_BASE && a < PARLEY_CHAN_BASE + PARLEY_CHAN_SIZE;
}

/* A fault on a channel window, classified as KVM's MMIO exit is. */
static bool chan_fault(struct vmx_vcpu *c, uint64_t a, bool write, bool bus)
{
	const char *rw = write ? "write" : "access";
	int kind = bus ? 1 : win_classify(c->vm, a, write);
	if (!win_fault(c, a, kind, rw))
		vmx_vcpu_fault(c, VMX_STOP_BAD_ACCESS, a, "%s at guest-physical "
			       "0x%llx, outside the partition's memory", rw,
			       (unsigned long long)a);
	return false;
}

/* A page fault at a. Under KVM, an address the page tables map but no
 * memory backs exits as MMIO (bad-access, or a window's reason); anything
 * the page tables refuse (page 0, system area, boot info writes, read-only
 * or non-executable pages, above 4 GiB) is a triple fault. */
static bool mem_fault(struct vmx_vcpu *c, uint64_t a, int code, bool bus)
{
	if (in_chan(a)) {
		/* A window mapped since this child last stopped: map, retry. */
		if (atomic_load(&c->proc.win_gen) !=
		    atomic_load(&c->vm->proc.win_gen))
			return proc_win_sync(c) == 0;
		bool exec = a == c->proc.regs.rip;
		if (!exec)
			return chan_fault(c, a, code == SEGV_ACCERR, bus);
	}
	bool backed = (a >= PARLEY_IMAGE_MIN && a < c->vm->ram_size) ||
		      (a >= PARLEY_CONFIG_BASE &&
		       a < PARLEY_CONFIG_BASE + c->vm->cfg_size);
	if (!backed && a >= c->vm->ram_size && a < GIB4 && !in_chan(a)) {
		vmx_vcpu_fault(c, VMX_STOP_BAD_ACCESS, a, "access at "
			       "guest-physical 0x%llx, outside the partition's "
			       "memory", (unsigned long long)a);
		return false;
	}
	vmx_vcpu_fault(c, VMX_STOP_TRIPLE_FAULT, a,
		       "exception with no handler (triple fault): page fault "
		       "(%s) at 0x%llx, cr2 0x%llx",
		       a == c->proc.regs.rip ? "execute"
		       : code == SEGV_ACCERR ? "protection" : "not present",
		       c->proc.regs.rip, (unsigned long long)a);
	return false;
}

static bool on_signal(struct vmx_vcpu *c, int sig)
{
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	ptrace(PTRACE_GETSIGINFO, c->proc.pid, 0, &si);
	if (sig == SIGUSR1 && si.si_code == SI_TKILL && si.si_pid == getpid())
		return true; /* a kick: the gate decides */
	if (si.si_code <= 0) { /* sent by a process, not raised by the CPU */
		vmx_vcpu_fault(c, VMX_STOP_KILLED, 0, "signal %d sent to the "
			       "partition's process from outside", sig);
		return false;
	}
	if (c->proc.regs.cs != USER_CS) {
		vmx_vcpu_fault(c, VMX_STOP_TRIPLE_FAULT, 0, "exception with no "
			       "handler (triple fault): signal %d in code "
			       "segment 0x%llx (not the partition's)", sig,
			       c->proc.regs.cs);
		return false;
	}
	uint64_t a = (uint64_t)(uintptr_t)si.si_addr;
	switch (sig) {
	case SIGSEGV:
		if (si.si_code == SEGV_MAPERR || si.si_code == SEGV_ACCERR)
			return mem_fault(c, a, si.si_code, false);
		return on_gp(c, "general protection");
	case SIGBUS:
		if (in_chan(a))
			return mem_fault(c, a, 0, true);
		return on_gp(c, "bus error");
	case SIGILL:
		return on_gp(c, "invalid opcode");
	case SIGTRAP:
		return on_gp(c, "breakpoint or debug trap");
	case SIGFPE:
		return on_gp(c, "divide error");
	default:
		return on_gp(c, "unexpected signal");
	}
}

/* The child died: killed by its own filter (a call into the vsyscall page
 * or a syscall SYSEMU does not see), or from outside. */
static bool on_death(struct vmx_vcpu *c, int st)
{
	c->proc.pid = 0;
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)
		vmx_vcpu_fault(c, VMX_STOP_SYSCALL, 0, "system call outside "
			       "the partition's reach (vsyscall page or "
			       "32-bit entry): killed by the stub's filter");
	else
		vmx_vcpu_fault(c, VMX_STOP_INTERNAL, 0, "the partition's "
			       "process ended (status 0x%x)", st);
	return false;
}

bool proc_dispatch(struct vmx_vcpu *c, int st)
{
	if (WIFEXITED(st) || WIFSIGNALED(st))
		return on_death(c, st);
	if (!WIFSTOPPED(st))
		return true;
	int sig = WSTOPSIG(st);
	if (sig == (SIGTRAP | 0x80)) { /* a syscall entry, under SYSEMU */
		uint8_t b[4] = { 0 };
		c->proc.regs.rip -= 2; /* the kernel reports the next insn */
		const char *sc = syscall_insn(b, fetch(c, b));
		if (c->proc.regs.rip == STUB_SITE)
			sc = "syscall at the stub's injection site:";
		vmx_vcpu_fault(c, VMX_STOP_SYSCALL, c->proc.regs.orig_rax,
			       "%s %lld at 0x%llx: partitions make no system "
			       "calls", sc ? sc : "syscall",
			       (long long)c->proc.regs.orig_rax,
			       c->proc.regs.rip);
		return false;
	}
	if ((st >> 16) != 0) /* a group stop from outside: ignore it */
		return true;
	return on_signal(c, sig);
}
