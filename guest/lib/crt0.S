/* Boot stub: the agent enters here at CPL 3 in 64-bit mode with
 * %rdi = boot info, %rsi = vCPU index, %rsp = top of this vCPU's stack
 * (16-byte aligned). There is no IDT: any fault ends the partition. */
	.section .text.start, "ax"
	.globl _start
	.type _start, @function
_start:
	xorl %ebp, %ebp
	call parley_start
	ud2
	.size _start, . - _start
	.section .note.GNU-stack, "", @progbits
