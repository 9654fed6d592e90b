/*
 * oxtest guest: entry stubs, long-mode switch, page tables, GDT/IDT, AP trampoline.
 *
 * Linked at 0x100000. The same protected-mode image is entered three ways:
 *   0x100000  startup_32  Linux 32-bit boot protocol (bzImage via real-mode setup), %esi = boot_params
 *   0x100200  startup_64  Linux 64-bit boot protocol (bzImage, XLF_KERNEL_64),    %rsi = boot_params
 *   pvh_start            PVH (ELF note XEN_ELFNOTE_PHYS32_ENTRY),                 %ebx = hvm_start_info
 * Every path ends in long mode on our own GDT and identity page tables and calls
 * oxmain(protocol, info).
 */

#define PROTO_PVH    1
#define PROTO_BZ32   2
#define PROTO_BZ64   3

#define MSR_EFER     0xC0000080

	.section .head, "ax"
	.code32
	.globl startup_32
startup_32:
	cli
	movl	$PROTO_BZ32, %eax
	movl	%esi, %edi
	jmp	common32

	.org	0x200
	.code64
	.globl startup_64
startup_64:
	cli
	movl	$PROTO_BZ64, boot_proto(%rip)
	movq	%rsi, boot_info(%rip)
	lgdt	gdt_ptr(%rip)
	leaq	pml4(%rip), %rax
	movq	%rax, %cr3
	pushq	$0x08
	leaq	long_entry(%rip), %rax
	pushq	%rax
	lretq

	.code32
	.globl pvh_start
pvh_start:
	cli
	movl	$PROTO_PVH, %eax
	movl	%ebx, %edi

/* %eax = protocol, %edi = boot info pointer; flat 32-bit segments, paging off. */
common32:
	movl	%eax, boot_proto
	movl	%edi, boot_info
	movl	$0, boot_info + 4
	lgdt	gdt_ptr
	movl	%cr4, %eax
	orl	$0x20, %eax			/* PAE */
	movl	%eax, %cr4
	movl	$pml4, %eax
	movl	%eax, %cr3
	movl	$MSR_EFER, %ecx
	rdmsr
	orl	$0x100, %eax			/* LME */
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000001, %eax		/* PG | PE */
	movl	%eax, %cr0
	ljmp	$0x08, $long_entry

	.code64
long_entry:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	leaq	bsp_stack_top(%rip), %rsp
	movl	boot_proto(%rip), %edi
	movq	boot_info(%rip), %rsi
	call	oxmain
1:	cli
	hlt
	jmp	1b

/* ---- AP trampoline: copied to a page below 1 MiB, entered by SIPI in real mode ---- */
	.code16
	.globl ap_tramp_start, ap_tramp_end
ap_tramp_start:
	cli
	cld
	movw	%cs, %ax
	movw	%ax, %ds
	lgdtl	(ap_gdt_ptr - ap_tramp_start)
	movl	%cr4, %eax
	orl	$0x20, %eax
	movl	%eax, %cr4
	movl	$pml4, %eax
	movl	%eax, %cr3
	movl	$MSR_EFER, %ecx
	rdmsr
	orl	$0x100, %eax
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000001, %eax
	movl	%eax, %cr0
	ljmpl	$0x08, $ap_long
	.p2align 2
ap_gdt_ptr:
	.word	gdt_end - gdt - 1
	.long	gdt
ap_tramp_end:

	.code64
ap_long:
	movw	$0x10, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movl	$1, %eax
	lock xaddl %eax, ap_next(%rip)	/* this AP's slot */
	movl	%eax, %edi
	incl	%eax
	shll	$11, %eax			/* 2 KiB per AP */
	leaq	ap_stacks(%rip), %rsp
	addq	%rax, %rsp
	call	ap_main
1:	cli
	hlt
	jmp	1b

/* ---- interrupt and exception stubs ---- */
	.globl exc_stubs
	.p2align 4
exc_stubs:
	.set	vec, 0
	.rept	32
	.p2align 4
	.if (vec == 8) || (vec == 10) || (vec == 11) || (vec == 12) || (vec == 13) || (vec == 14) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
	pushq	$vec				/* CPU pushed an error code */
	.else
	pushq	$0				/* dummy error code */
	pushq	$vec
	.endif
	jmp	exc_common
	.set	vec, vec + 1
	.endr

exc_common:
	movq	%rsp, %rdi			/* -> vector, error, rip, cs, rflags, rsp, ss */
	andq	$-16, %rsp
	call	exception
1:	cli
	hlt
	jmp	1b

/* One 16-byte stub per vector 0x20-0xfe: pushes the vector and joins irq_common, which
 * calls irq_handler(vector). Every vector has a handler, so an interrupt the guest did
 * not expect (a device's MSI-X vector still pending when a later phase enables
 * interrupts) is counted and acknowledged instead of faulting on a missing IDT entry. */
	.globl irq_stubs, irq_stub_spurious
	.p2align 4
irq_stubs:
	.set	vec, 0x20
	.rept	0xff - 0x20
	.p2align 4
	pushq	$vec
	jmp	irq_common
	.set	vec, vec + 1
	.endr

irq_common:
	pushq	%rax
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	subq	$8, %rsp			/* frame (40) + vector + 9 regs + 8: aligned for the call */
	movl	80(%rsp), %edi
	call	irq_handler
	addq	$8, %rsp
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rdi
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rax
	addq	$8, %rsp			/* the vector */
	iretq

irq_stub_spurious:
	iretq

/* ---- data: everything lives in the loaded image (no .bss), so every loader maps it ---- */
	.section .data
	.p2align 3
	.globl boot_proto, boot_info
boot_proto:	.long 0
		.long 0
boot_info:	.quad 0
	.globl ap_next
ap_next:	.long 0

	.p2align 3
gdt:
	.quad	0
	.quad	0x00af9a000000ffff		/* 0x08: 64-bit code */
	.quad	0x00cf92000000ffff		/* 0x10: data */
	.quad	0x00cf9a000000ffff		/* 0x18: 32-bit code */
gdt_end:
	.p2align 3
	.word	0, 0, 0
gdt_ptr:
	.word	gdt_end - gdt - 1
	.quad	gdt

/* Identity map of the first 4 GiB with 2 MiB pages; the top GiB (MMIO) uncached.
 * Memory above 4 GiB is mapped on demand by map_gib() through high_pds. */
	.p2align 12
	.globl pml4, pdpt, high_pds
pml4:
	.quad	pdpt + 0x3
	.fill	511, 8, 0
pdpt:
	.quad	pd_ident + 0x0000 + 0x3
	.quad	pd_ident + 0x1000 + 0x3
	.quad	pd_ident + 0x2000 + 0x3
	.quad	pd_ident + 0x3000 + 0x3
	.fill	508, 8, 0
pd_ident:
	.set	i, 0
	.rept	2048
	.if i >= 1536
	.quad	(i << 21) | 0x9b
	.else
	.quad	(i << 21) | 0x83
	.endif
	.set	i, i + 1
	.endr
high_pds:
	.fill	4 * 512, 8, 0

	.p2align 12
bsp_stack:
	.fill	16384, 1, 0
bsp_stack_top:
	.globl ap_stacks
ap_stacks:
	.fill	2048 * 64, 1, 0		/* up to 64 APs */

/* PVH entry point for ELF loaders (Linux uses the same note). */
	.section .note.pvh, "a"
	.p2align 2
	.long	4				/* namesz: "Xen\0" */
	.long	8				/* descsz */
	.long	18				/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz	"Xen"
	.p2align 2
	.quad	pvh_start
