/*
 * oxtest guest: real-mode setup sectors of the bzImage form.
 *
 * A 64-bit boot-protocol loader (oxvirt-vmm, Firecracker, cloud-hypervisor) only reads
 * the setup header and jumps to code32_start + 0x200 in long mode. A loader that goes
 * through real mode (QEMU: qboot/SeaBIOS linuxboot) jumps to offset 0x200 here with
 * CS = setup segment + 0x20, DS = ES = SS = setup segment; like Linux's setup we ask the
 * BIOS for the e820 map (INT 15h AX=E820h) into the zero page, enter protected mode and
 * jump to code32_start with %esi = boot_params (32-bit boot protocol).
 */
	.code16
	.section .setup, "ax"
	.globl _start
_start:
	.org	0x1f1
setup_sects:		.byte	8		/* 8 + 1 sectors of setup: code lives past the zero page */
root_flags:		.word	0
syssize:		.long	0		/* patched by build.sh: payload size / 16 */
ram_size:		.word	0
vid_mode:		.word	0xffff
root_dev:		.word	0
boot_flag:		.word	0xaa55
	.org	0x200
	jmp	start_of_setup
	.org	0x202
header:			.ascii	"HdrS"
version:		.word	0x020f
realmode_swtch:		.long	0
start_sys_seg:		.word	0x1000
kernel_version:		.word	version_str - 0x200
type_of_loader:		.byte	0
loadflags:		.byte	0x01		/* LOADED_HIGH */
setup_move_size:	.word	0x8000
code32_start:		.long	0x100000
ramdisk_image:		.long	0
ramdisk_size:		.long	0
bootsect_kludge:	.long	0
heap_end_ptr:		.word	0
ext_loader_ver:		.byte	0
ext_loader_type:	.byte	0
cmd_line_ptr:		.long	0
initrd_addr_max:	.long	0x7fffffff
kernel_alignment:	.long	0x200000
relocatable_kernel:	.byte	0
min_alignment:		.byte	21
xloadflags:		.word	0x0001		/* XLF_KERNEL_64: 64-bit entry at code32_start + 0x200 */
cmdline_size:		.long	2047
hardware_subarch:	.long	0
hardware_subarch_data:	.quad	0
payload_offset:		.long	0
payload_length:		.long	0
setup_data:		.quad	0
pref_address:		.quad	0x100000
init_size:		.long	0x100000
handover_offset:	.long	0
kernel_info_offset:	.long	0
start_of_setup:
	jmp	setup_main

version_str:		.asciz	"oxtest guest"

	.org	0x1000
setup_main:
	cli
	cld
	movw	%ds, %ax
	movw	%ax, %es
	movw	%ax, %ss
	movw	$0xfff0, %sp

	/* e820 map into boot_params.e820_table (0x2d0), count at 0x1e8 */
	xorl	%ebx, %ebx
	movw	$0x2d0, %di
	xorw	%bp, %bp
1:	movl	$0xe820, %eax
	movl	$0x534d4150, %edx
	movl	$20, %ecx
	int	$0x15
	jc	2f
	cmpl	$0x534d4150, %eax
	jne	2f
	addw	$20, %di
	incw	%bp
	cmpw	$128, %bp
	jae	2f
	testl	%ebx, %ebx
	jnz	1b
2:	movw	%bp, %ax
	movb	%al, 0x1e8

	/* fast A20 */
	inb	$0x92, %al
	orb	$2, %al
	andb	$0xfe, %al
	outb	%al, $0x92

	/* linear address of the zero page; patch the GDT base and the far pointer */
	xorl	%esi, %esi
	movw	%ds, %si
	shll	$4, %esi
	leal	gdt(%esi), %eax
	movl	%eax, gdt_ptr + 2
	leal	pm32(%esi), %eax
	movl	%eax, pm_ptr
	lgdtl	gdt_ptr
	movl	%cr0, %eax
	orl	$1, %eax
	movl	%eax, %cr0
	ljmpl	*pm_ptr

	.code32
pm32:
	movw	$0x18, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movl	0x214(%esi), %eax		/* code32_start */
	jmp	*%eax

	.p2align 3
gdt:
	.quad	0
	.quad	0
	.quad	0x00cf9a000000ffff		/* 0x10: __BOOT_CS */
	.quad	0x00cf92000000ffff		/* 0x18: __BOOT_DS */
gdt_ptr:
	.word	gdt_ptr - gdt - 1
	.long	0
pm_ptr:
	.long	0
	.word	0x10
	.org	9 * 512
