/*
 * parley-vmm-stub: the process a partition's vCPU runs in on the process
 * backend. No libc, raw syscalls only. It locks itself down and stops;
 * everything after that is done to it by its tracer, the vmm: guest memory
 * mapped in by injected syscalls, everything of the stub unmapped but the
 * injection site, every descriptor closed, then the partition's registers.
 *
 * The filter is the stub's own last word: x86-64 only, and only the calls
 * the vmm injects, only from the injection site. A partition never gets a
 * syscall through (the vmm runs it under PTRACE_SYSEMU, which stops at
 * every syscall entry before seccomp), but the vsyscall page is invisible
 * to SYSEMU: a call into it meets this filter and the process is killed.
 */
#include <stddef.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/prctl.h>
#include <linux/seccomp.h>
#include <asm/unistd.h>
#include "agent/stub/stub.h"
#include "parley_version.h"

#define SIGSTOP_ 19

_Static_assert(STUB_NR_FDS == __NR_getppid, "stub.h names getppid");

/* The injection site: its own page, `syscall; int3`. */
__asm__(".section .site, \"ax\"\n"
	".globl stub_site\n"
	"stub_site:\n"
	"	syscall\n"
	"	int3\n"
	".previous\n");

static long sys3(long nr, long a, long b, long c)
{
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

static long sys5(long nr, long a, long b, long c, long d, long e)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
}

#define SITE_NEXT (STUB_SITE + 2) /* the address after `syscall` */
#define LD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define KILL RET(SECCOMP_RET_KILL_PROCESS)
/* Jump over the next instruction (a KILL) when equal. */
#define IF_EQ_ELSE_KILL(v) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (v), 1, 0), KILL
#define ALLOW_IF_NR(n)                                                     \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (n), 0, 1),                    \
		RET(SECCOMP_RET_ALLOW)
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i))

static const struct sock_filter filter[] = {
	LD(offsetof(struct seccomp_data, arch)),
	IF_EQ_ELSE_KILL(AUDIT_ARCH_X86_64),
	LD(offsetof(struct seccomp_data, instruction_pointer)),
	IF_EQ_ELSE_KILL((unsigned)(SITE_NEXT & 0xffffffffu)),
	LD(offsetof(struct seccomp_data, instruction_pointer) + 4),
	IF_EQ_ELSE_KILL((unsigned)(SITE_NEXT >> 32)),
	LD(offsetof(struct seccomp_data, nr)),
	ALLOW_IF_NR(__NR_mmap),        /* guest memory and channel windows */
	ALLOW_IF_NR(__NR_munmap),      /* the stub itself; revoked windows */
	ALLOW_IF_NR(__NR_close),       /* each descriptor once it is mapped */
	ALLOW_IF_NR(__NR_close_range), /* everything, once set up */
	ALLOW_IF_NR(__NR_userfaultfd), /* dirty tracking of the config region */
	/* descriptors handed in by the vmm through the listener */
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, STUB_NR_FDS, 0, 1),
	RET(SECCOMP_RET_USER_NOTIF),
	/* kill(self, SIGSTOP): the stub's own first stop, nothing else */
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_kill, 0, 3),
	LD(ARG_LO(1)),
	IF_EQ_ELSE_KILL(SIGSTOP_),
	RET(SECCOMP_RET_ALLOW),
	KILL,
};

void _start(void);
__attribute__((noreturn, used)) void stub_main(const long *sp);

static long len_of(const char *s)
{
	long n = 0;
	while (s[n])
		n++;
	return n;
}

static int same(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

/* Run by hand (the vmm passes no argument): say what this is and end,
 * rather than stop for a tracer that never comes. */
static void by_hand(const long *sp)
{
	static const char version[] = "parley-vmm-stub " PARLEY_VERSION_STRING
				      "\n";
	static const char help[] =
		"usage: parley-vmm-stub (started by parley-vmm only)\n"
		"The process a partition's vCPU runs in on the process backend:\n"
		"it locks itself down and stops for its tracer, the vmm.\n"
		"See parley-vmm(8).\n";
	if (sp[0] < 2)
		return;
	const char *a = (const char *)sp[2];
	int v = same(a, "--version"), h = same(a, "--help");
	const char *t = v ? version : help;
	sys3(__NR_write, v || h ? 1 : 2, (long)t, len_of(t));
	sys3(__NR_exit_group, v || h ? 0 : 2, 0, 0);
}

__attribute__((noreturn, used)) void stub_main(const long *sp)
{
	by_hand(sp);
	long pid = sys3(__NR_getpid, 0, 0, 0);
	struct sock_fprog prog = {
		.len = sizeof(filter) / sizeof(filter[0]),
		.filter = (struct sock_filter *)filter,
	};
	long l = -1;
	if (sys5(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)
		l = sys3(__NR_seccomp, SECCOMP_SET_MODE_FILTER,
			 SECCOMP_FILTER_FLAG_NEW_LISTENER, (long)&prog);
	if (l < 0)
		sys3(__NR_exit_group, 127, 0, 0);
	/* Stop through the site, the listener fd in rdx for the vmm. The
	 * vmm never lets this return: it sets rip before resuming. */
	register long rax __asm__("rax") = __NR_kill;
	__asm__ volatile("jmp stub_site"
			 :
			 : "r"(rax), "D"(pid), "S"((long)SIGSTOP_), "d"(l)
			 : "memory");
	__builtin_unreachable();
}

/* The kernel enters with rsp 16-byte aligned; keep it so for the call. */
__asm__(".text\n"
	".globl _start\n"
	"_start:\n"
	"	xorl %ebp, %ebp\n"
	"	movq %rsp, %rdi\n" /* argc, argv: stub_main's by_hand */
	"	andq $-16, %rsp\n"
	"	call stub_main\n"
	"	ud2\n");
