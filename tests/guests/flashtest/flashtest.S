/*
 * flashtest: a 64 KiB "firmware" image that checks the CFI flash contract OVMF relies on
 * (OvmfPkg/QemuFlashFvbServicesRuntimeDxe/QemuFlash.c), for tests/tests/vmm_flash.rs.
 *
 * The VMM maps the image read-only so that it ends at 4 GiB (0xFFFF0000-0xFFFFFFFF) and
 * the variable store (a CFI flash on the VARS file) right below it. The vCPU starts at
 * the reset vector (the image's last 16 bytes) in real mode with CS base 0xFFFF0000, the
 * image's first byte; this code loads a GDT held in the image (by its linear address),
 * enters 32-bit flat protected mode and runs the checks over the flash with byte (and
 * dword) accesses, each of which exits to the VMM:
 *
 *   detect        QemuFlashDetected, step by step: find a byte in sector 0 that is none of
 *                 0x00/0x50/0x70; write 0x50, read (0x50 = RAM); write 0x70, read:
 *                 0x00 = flash (the original byte = ROM, 0x70 = RAM); then 0xFF
 *   read-array    the whole store reads as the template (or, once the marker is there,
 *                 as a previous run left it): dword reads, byte compares
 *   id, cfi       0x90: manufacturer 0x89, device 0x18 (oxvirt's values; QEMU's q35
 *                 flash answers 0/0); 0x98: "QRY" and the geometry (blocks x sector
 *                 size = the store's size)
 *   program-status / program
 *                 QemuFlashWrite on 8 bytes (0x10 + data per byte, 0x40 for one, 0xFF at
 *                 the last byte); the device reads 0x80 after the last program and after
 *                 0x70; the bytes read back as old AND data (0xF0 over 0x0F = 0x00, as
 *                 real parts do; QEMU's cfi.pflash01 stores the data byte as is)
 *   erase         0x20 + 0xD0 at an address inside sector 3: status 0x80, the whole
 *                 sector reads 0xFF, its neighbours are untouched
 *   clear-status  0x50: back to read array; then 0x70 reads 0x00 (the quirk OVMF's
 *                 detection needs)
 *   marker        the 8 bytes at size - 0x800 hold "OXFLMARK" from an earlier run
 *                 (persisted=yes) or are erased: programmed now (persisted=no)
 *
 * The template the test writes (64 KiB by default, 4 KiB sectors), offset o:
 *   o < 16            0x00 (like an FV header's zero vector: the probe skips it)
 *   0x2000..0x2007    prog_template below
 *   last sector       0xFF (free space: the marker goes there)
 *   else              (o ^ (o >> 8) ^ 0x5A) & 0xFF
 *
 * Console (COM1, polled): "OXFLASH START base=… size=…", then per check
 * "OXFLASH <check> ok [k=v…]" or "OXFLASH <check> FAIL <reason> at=… got=… want=…",
 * then "OXFLASH DONE failures=N" (N decimal). Then it powers off through the ICH9 PM
 * block (PMBASE 0x600 programmed as firmware does: PM1a_CNT = SLP_EN | SLP_TYP 0), or,
 * with config flag bit 0, prints "OXFLASH HOLD" and halts forever (the test's second-VMM
 * case needs a VMM that keeps the store open).
 *
 * Configuration: a block at image offset 0 that the test may patch (magic
 * "OXFLASH-CONFIG1\0", then u32 flash base, u32 flash size, u32 flags); the defaults
 * describe a 64 KiB store below this 64 KiB image (base 0xFFFE0000). 64 KiB is also the
 * smallest image QEMU's -bios accepts, so the boot, console and power-off paths can be
 * checked there (`qemu-system-x86_64 -M q35 -bios flashtest.rom`; without a flash below
 * the image, detect and the flash checks FAIL there).
 */

	.set COM1, 0x3f8
	.set PM1A_CNT, 0x604
	.set SLP_EN, 0x2000
	.set STACK_TOP, 0x80000
	.set SECTOR, 0x1000
	.set PROG, 0x2000		/* the 8 programmed bytes */
	.set PROG_LEN, 8
	.set ERASE, 0x3000		/* the erased sector */
	.set ERASE_AT, ERASE + 0x123	/* the erase command goes to an address inside it */
	.set MARK_LEN, 8

	/* Variables in RAM (the image is read-only). */
	.set VAR_FAILURES, 0x1000
	.set VAR_SIZE, 0x1004
	.set VAR_MARK, 0x1008		/* marker offset: size - 0x800 */
	.set VAR_FREE, 0x100c		/* last sector: size - SECTOR */
	.set VAR_FRESH, 0x1010		/* 1: no marker yet (first run on this store) */
	.set VAR_AT, 0x1014		/* details of a failure */
	.set VAR_GOT, 0x1018
	.set VAR_WANT, 0x101c
	.set VAR_BAD, 0x1020

	.text
	.code32
	.globl _start
_start:
config:
	.ascii "OXFLASH-CONFIG1\0"
cfg_base:
	.long 0xfffe0000
cfg_size:
	.long 0x10000
cfg_flags:
	.long 0

hexdigits:
	.ascii "0123456789abcdef"
marker:
	.ascii "OXFLMARK"
prog_template:
	.byte 0x0f, 0xff, 0xff, 0xff, 0x3c, 0xaa, 0x55, 0x81
prog_data:
	.byte 0xf0, 'O', 'X', 'F', 0xff, 0x0f, 0xf0, 0x81
prog_result:			/* template AND data */
	.byte 0x00, 'O', 'X', 'F', 0x3c, 0x0a, 0x50, 0x81

s_prefix:	.asciz "OXFLASH "
s_ok:		.asciz " ok"
s_fail:		.asciz " FAIL "
s_at:		.asciz " at="
s_got:		.asciz " got="
s_want:		.asciz " want="
s_eol:		.asciz "\r\n"
s_start:	.asciz "OXFLASH START base="
s_size:		.asciz " size="
s_done:		.asciz "OXFLASH DONE failures="
s_hold:		.asciz "OXFLASH HOLD\r\n"
s_probe:	.asciz " probe="
s_status:	.asciz " status="
s_bytes:	.asciz " bytes="
s_count:	.asciz " count="
s_ids:		.asciz " manufacturer=0x89 device=0x18"
s_yes:		.asciz " persisted=yes"
s_no:		.asciz " persisted=no"

n_detect:	.asciz "detect"
n_read:		.asciz "read-array"
n_id:		.asciz "id"
n_cfi:		.asciz "cfi"
n_pstatus:	.asciz "program-status"
n_program:	.asciz "program"
n_erase:	.asciz "erase"
n_clear:	.asciz "clear-status"
n_marker:	.asciz "marker"

r_noprobe:	.asciz "no-probe-location"
r_ram50:	.asciz "behaves-as-RAM(0x50-read-back)"
r_rom:		.asciz "behaves-as-ROM"
r_ram70:	.asciz "behaves-as-RAM(0x70-read-back)"
r_status:	.asciz "unexpected-status"
r_mismatch:	.asciz "mismatch"
r_manuf:	.asciz "manufacturer"
r_device:	.asciz "device"
r_qry:		.asciz "no-QRY"
r_geometry:	.asciz "geometry(blocks*sector!=size)"
r_readback:	.asciz "read-back"
r_notff:	.asciz "not-erased"
r_neighbour:	.asciz "neighbour-changed"
r_array:	.asciz "not-read-array-after-clear"
r_garbage:	.asciz "neither-marker-nor-erased"

/* ---- console ---------------------------------------------------------------- */

/* putc: %al to COM1 (waits for THRE). Clobbers %edx. */
putc:
	pushl %eax
	movw $COM1 + 5, %dx
1:	inb %dx, %al
	testb $0x20, %al
	jz 1b
	popl %eax
	movw $COM1, %dx
	outb %al, %dx
	ret

/* puts: the NUL-terminated string at %esi. Clobbers %eax, %edx, %esi. */
puts:
	lodsb
	testb %al, %al
	jz 1f
	call putc
	jmp puts
1:	ret

/* puthex: "0x" and the low %ecx hex digits of %eax. Preserves all registers. */
puthex:
	pushal
	movl %eax, %esi
	movb $'0', %al
	call putc
	movb $'x', %al
	call putc
	movl $8, %eax
	subl %ecx, %eax
	shll $2, %eax
	movl %ecx, %edi
	movl %eax, %ecx
	shll %cl, %esi
2:	roll $4, %esi
	movl %esi, %eax
	andl $0xf, %eax
	movb hexdigits(%eax), %al
	call putc
	decl %edi
	jnz 2b
	popal
	ret

/* putdec: %eax in decimal. Preserves all registers. */
putdec:
	pushal
	xorl %ecx, %ecx
	movl $10, %ebx
1:	xorl %edx, %edx
	divl %ebx
	pushl %edx
	incl %ecx
	testl %eax, %eax
	jnz 1b
2:	popl %eax
	addb $'0', %al
	call putc
	loop 2b
	popal
	ret

/* say: the string at %esi, preserving all registers. */
say:
	pushal
	call puts
	popal
	ret

eol:
	pushl %esi
	movl $s_eol, %esi
	call say
	popl %esi
	ret

/* kv: the string at %esi, then %eax as %ecx hex digits. */
kv:
	call say
	jmp puthex

/* say_ok: "OXFLASH <name at %esi> ok" (no line end). */
say_ok:
	pushl %esi
	movl $s_prefix, %esi
	call say
	popl %esi
	call say
	pushl %esi
	movl $s_ok, %esi
	call say
	popl %esi
	ret

/* say_fail_open: "OXFLASH <name at %esi> FAIL <reason at %edx> at=… got=… want=…" from
 * VAR_AT/GOT/WANT (got/want as 2 hex digits when they fit), and counts the failure; no
 * line end. Preserves all registers. */
say_fail_open:
	pushal
	pushl %esi
	movl $s_prefix, %esi
	call say
	popl %esi
	call say
	movl $s_fail, %esi
	call say
	movl %edx, %esi
	call say
	movl $s_at, %esi
	movl VAR_AT, %eax
	movl $8, %ecx
	call kv
	movl $s_got, %esi
	movl VAR_GOT, %eax
	call digits
	call kv
	movl $s_want, %esi
	movl VAR_WANT, %eax
	call digits
	call kv
	incl VAR_FAILURES
	popal
	ret

/* say_fail: say_fail_open and the line end. */
say_fail:
	call say_fail_open
	jmp eol

/* digits: %ecx = 2 if %eax < 0x100, else 8. */
digits:
	movl $2, %ecx
	cmpl $0x100, %eax
	jb 1f
	movl $8, %ecx
1:	ret

/* fail_with: VAR_AT = %edi, VAR_GOT = %al, VAR_WANT = %cl; then say_fail. */
fail_with:
	pushl %eax
	movl %edi, VAR_AT
	movzbl %al, %eax
	movl %eax, VAR_GOT
	movzbl %cl, %eax
	movl %eax, VAR_WANT
	popl %eax
	jmp say_fail

/* ---- the store ---------------------------------------------------------------- */

/* expected: what offset %edi must read in read-array mode, in %al (the template, or
 * what the checks leave behind once a run has completed). Clobbers %eax. */
expected:
	cmpl $0, VAR_FRESH
	jne 5f
	movl %edi, %eax
	subl $PROG, %eax
	cmpl $PROG_LEN, %eax
	jae 1f
	movb prog_result(%eax), %al
	ret
1:	movl %edi, %eax
	subl $ERASE, %eax
	cmpl $SECTOR, %eax
	jae 2f
	movb $0xff, %al
	ret
2:	movl %edi, %eax
	subl VAR_MARK, %eax
	cmpl $MARK_LEN, %eax
	jae 5f
	movb marker(%eax), %al
	ret
5:	cmpl $16, %edi
	jae 6f
	xorl %eax, %eax
	ret
6:	movl %edi, %eax
	subl $PROG, %eax
	cmpl $PROG_LEN, %eax
	jae 7f
	movb prog_template(%eax), %al
	ret
7:	cmpl VAR_FREE, %edi
	jb 8f
	movb $0xff, %al
	ret
8:	movl %edi, %eax
	shrl $8, %eax
	xorl %edi, %eax
	xorb $0x5a, %al
	ret

/* marker_state: compares the marker location with "OXFLMARK": %eax = 1 equal,
 * 2 erased (all 0xFF), 0 neither. Clobbers %ecx, %edx, %edi. */
marker_state:
	movl VAR_MARK, %edi
	xorl %ecx, %ecx
	movl $3, %edx			/* bit 0: still equal, bit 1: still erased */
1:	movb (%ebx,%edi), %al
	cmpb marker(%ecx), %al
	je 2f
	andl $~1, %edx
2:	cmpb $0xff, %al
	je 3f
	andl $~2, %edx
3:	incl %edi
	incl %ecx
	cmpl $MARK_LEN, %ecx
	jb 1b
	movl %edx, %eax
	testl $1, %eax
	jz 4f
	movl $1, %eax
4:	ret

/* ---- the checks ----------------------------------------------------------------- */

/* QemuFlashDetected, step by step. */
check_detect:
	movl $n_detect, %esi
	xorl %edi, %edi
1:	movb (%ebx,%edi), %al
	cmpb $0x00, %al
	je 2f
	cmpb $0x50, %al
	je 2f
	cmpb $0x70, %al
	je 2f
	jmp 3f
2:	incl %edi
	cmpl $SECTOR, %edi
	jb 1b
	xorl %ecx, %ecx
	movl $r_noprobe, %edx
	jmp fail_with
3:	movb %al, %cl			/* OriginalUint8 */
	movb $0x50, (%ebx,%edi)
	movb (%ebx,%edi), %al		/* ProbeUint8 */
	cmpb $0x50, %cl
	je 4f
	cmpb $0x50, %al
	jne 4f
	movb %cl, (%ebx,%edi)		/* OVMF puts the byte back */
	movl $r_ram50, %edx
	jmp fail_with
4:	movb $0x70, (%ebx,%edi)
	movb (%ebx,%edi), %al
	cmpb %cl, %al
	jne 5f
	movl $r_rom, %edx
	xorl %ecx, %ecx
	jmp fail_with
5:	cmpb $0x70, %al
	jne 6f
	movb %cl, (%ebx,%edi)
	movl $r_ram70, %edx
	xorl %ecx, %ecx
	jmp fail_with
6:	testb %al, %al
	jz 7f
	movb $0xff, (%ebx,%edi)
	movl $r_status, %edx
	xorl %ecx, %ecx
	jmp fail_with
7:	movb $0xff, (%ebx,%edi)		/* FD behaves as FLASH: back to read array */
	call say_ok
	movl %edi, %eax
	movl $s_probe, %esi
	movl $8, %ecx
	call kv
	jmp eol

/* The whole store against `expected`, one dword read at a time. */
check_read_array:
	movl $0, VAR_BAD
	xorl %edi, %edi
1:	movl (%ebx,%edi), %edx
	movl $4, %esi
2:	call expected
	cmpb %al, %dl
	je 3f
	cmpl $0, VAR_BAD
	jne 4f
	movl %edi, VAR_AT
	movzbl %al, %eax
	movl %eax, VAR_WANT
	movzbl %dl, %eax
	movl %eax, VAR_GOT
4:	incl VAR_BAD
3:	shrl $8, %edx
	incl %edi
	decl %esi
	jnz 2b
	cmpl VAR_SIZE, %edi
	jb 1b
	movl $n_read, %esi
	cmpl $0, VAR_BAD
	je 5f
	movl $r_mismatch, %edx
	call say_fail_open
	movl $s_count, %esi		/* how many bytes differ */
	movl VAR_BAD, %eax
	movl $8, %ecx
	call kv
	jmp eol
5:	call say_ok
	movl $s_bytes, %esi
	movl %edi, %eax
	movl $8, %ecx
	call kv
	jmp eol

/* Read identifier (0x90). */
check_id:
	movl $n_id, %esi
	xorl %edi, %edi
	movb $0x90, (%ebx)
	movb (%ebx), %al
	movb 1(%ebx), %ah
	movb $0xff, (%ebx)
	cmpb $0x89, %al
	je 1f
	movb $0x89, %cl
	movl $r_manuf, %edx
	jmp fail_with
1:	movb %ah, %al
	incl %edi
	cmpb $0x18, %al
	je 2f
	movb $0x18, %cl
	movl $r_device, %edx
	jmp fail_with
2:	call say_ok
	movl $s_ids, %esi
	call say
	jmp eol

/* CFI query (0x98 at 0x55, as the spec says): "QRY", blocks x sector = size. */
check_cfi:
	movl $n_cfi, %esi
	movb $0x98, 0x55(%ebx)
	movl $0x10, %edi
	movb 0x10(%ebx), %al
	movb $'Q', %cl
	cmpb %cl, %al
	jne 1f
	incl %edi
	movb 0x11(%ebx), %al
	movb $'R', %cl
	cmpb %cl, %al
	jne 1f
	incl %edi
	movb 0x12(%ebx), %al
	movb $'Y', %cl
	cmpb %cl, %al
	jne 1f
	movzbl 0x2d(%ebx), %eax		/* erase blocks - 1 */
	movzbl 0x2e(%ebx), %ecx
	shll $8, %ecx
	orl %ecx, %eax
	incl %eax
	movzbl 0x2f(%ebx), %ecx		/* block size / 256 */
	movzbl 0x30(%ebx), %edx
	shll $8, %edx
	orl %edx, %ecx
	shll $8, %ecx
	mull %ecx
	movb $0xff, (%ebx)
	cmpl VAR_SIZE, %eax
	je 2f
	movl $0x2d, VAR_AT
	movl %eax, VAR_GOT
	movl VAR_SIZE, %eax
	movl %eax, VAR_WANT
	movl $r_geometry, %edx
	jmp say_fail
1:	movb $0xff, (%ebx)
	movl $r_qry, %edx
	jmp fail_with
2:	call say_ok
	jmp eol

/* QemuFlashWrite over PROG..PROG+7 (0x40 for byte 6, the alternative command), with the
 * status read after the last data byte and after 0x70. */
check_program:
	xorl %ecx, %ecx
1:	leal PROG(%ecx), %edi
	movb $0x10, %al
	cmpl $6, %ecx
	jne 2f
	movb $0x40, %al
2:	movb %al, (%ebx,%edi)
	movb prog_data(%ecx), %al
	movb %al, (%ebx,%edi)
	incl %ecx
	cmpl $PROG_LEN, %ecx
	jb 1b
	/* still at the last byte: the device is in read-status mode */
	movl $n_pstatus, %esi
	movb (%ebx,%edi), %al
	movb $0x80, %cl
	cmpb %cl, %al
	jne 3f
	movl $PROG, %edi
	movb $0x70, (%ebx,%edi)
	addl $3, %edi
	movb (%ebx,%edi), %al
	cmpb %cl, %al
	jne 3f
	call say_ok
	movl $s_status, %esi
	movzbl %al, %eax
	movl $2, %ecx
	call kv
	call eol
	jmp 4f
3:	movl $r_status, %edx
	call fail_with
4:	movb $0xff, PROG + PROG_LEN - 1(%ebx)	/* QemuFlashWrite: read array at the last byte */
	movl $n_program, %esi
	xorl %ecx, %ecx
5:	leal PROG(%ecx), %edi
	movb (%ebx,%edi), %al
	movb prog_result(%ecx), %dl
	cmpb %dl, %al
	jne 6f
	incl %ecx
	cmpl $PROG_LEN, %ecx
	jb 5b
	call say_ok
	movl $s_bytes, %esi
	movl $PROG_LEN, %eax
	movl $2, %ecx
	call kv
	jmp eol
6:	movb %dl, %cl
	movl $r_readback, %edx
	jmp fail_with

/* Block erase inside sector 3, as QemuFlashEraseBlock (at the sector's start there). */
check_erase:
	movl $n_erase, %esi
	movl $ERASE_AT, %edi
	movb $0x20, (%ebx,%edi)
	movb $0xd0, (%ebx,%edi)
	movb (%ebx,%edi), %al		/* status mode until the next command */
	movb $0x80, %cl
	cmpb %cl, %al
	je 1f
	movb $0xff, (%ebx,%edi)
	movl $r_status, %edx
	jmp fail_with
1:	movb $0xff, (%ebx,%edi)
	movl $ERASE, %edi
2:	movl (%ebx,%edi), %eax
	cmpl $0xffffffff, %eax
	jne 4f
	addl $4, %edi
	cmpl $ERASE + SECTOR, %edi
	jb 2b
	movl $ERASE - 1, %edi		/* the bytes on either side are untouched */
	call expected
	movb %al, %cl
	movb (%ebx,%edi), %al
	cmpb %cl, %al
	jne 5f
	movl $ERASE + SECTOR, %edi
	call expected
	movb %al, %cl
	movb (%ebx,%edi), %al
	cmpb %cl, %al
	jne 5f
	call say_ok
	movl $s_status, %esi
	movl $0x80, %eax
	movl $2, %ecx
	call kv
	jmp eol
4:	cmpb $0xff, %al			/* find the byte that is not 0xFF */
	jne 3f
	incl %edi
	shrl $8, %eax
	jmp 4b
3:	movb $0xff, %cl
	movl $r_notff, %edx
	jmp fail_with
5:	movl $r_neighbour, %edx
	jmp fail_with

/* Clear status (0x50): read array again, and the status reads 0x00 afterwards. */
check_clear_status:
	movl $n_clear, %esi
	movl $ERASE, %edi
	movb $0x70, (%ebx,%edi)		/* the status is still 0x80 from the erase ... */
	movb (%ebx,%edi), %al
	movb $0x80, %cl
	cmpb %cl, %al
	je 3f
	movb $0xff, (%ebx,%edi)
	movl $r_status, %edx
	jmp fail_with
3:	movb $0x50, (%ebx,%edi)		/* ... until cleared */
	movb (%ebx,%edi), %al
	movb $0xff, %cl			/* the erased sector, in read-array mode */
	cmpb %cl, %al
	je 1f
	movb $0xff, (%ebx,%edi)
	movl $r_array, %edx
	jmp fail_with
1:	movb $0x70, (%ebx,%edi)
	movb (%ebx,%edi), %al
	movb $0xff, (%ebx,%edi)
	xorl %ecx, %ecx
	testb %al, %al
	jz 2f
	movl $r_status, %edx
	jmp fail_with
2:	call say_ok
	movl $s_status, %esi
	xorl %eax, %eax
	movl $2, %ecx
	call kv
	jmp eol

/* The marker: there from an earlier run, or programmed now. */
check_marker:
	call marker_state
	movl $n_marker, %esi
	cmpl $1, %eax
	jne 1f
	call say_ok
	movl $s_yes, %esi
	call say
	jmp eol
1:	cmpl $2, %eax
	je 2f
	movl VAR_MARK, %edi
	movb (%ebx,%edi), %al
	movb marker, %cl
	movl $r_garbage, %edx
	jmp fail_with
2:	movl VAR_MARK, %edi
	xorl %ecx, %ecx
3:	movb $0x10, (%ebx,%edi)
	movb marker(%ecx), %al
	movb %al, (%ebx,%edi)
	incl %edi
	incl %ecx
	cmpl $MARK_LEN, %ecx
	jb 3b
	movb $0xff, -1(%ebx,%edi)
	call marker_state
	movl $n_marker, %esi
	cmpl $1, %eax
	je 4f
	movl VAR_MARK, %edi
	movb (%ebx,%edi), %al
	movb marker, %cl
	movl $r_readback, %edx
	jmp fail_with
4:	call say_ok
	movl $s_no, %esi
	call say
	jmp eol

/* ---- main ---------------------------------------------------------------------- */

main:
	/* COM1: 115200 8N1, no interrupts */
	movw $COM1 + 1, %dx
	xorb %al, %al
	outb %al, %dx
	movw $COM1 + 3, %dx
	movb $0x80, %al
	outb %al, %dx
	movw $COM1, %dx
	movb $1, %al
	outb %al, %dx
	movw $COM1 + 1, %dx
	xorb %al, %al
	outb %al, %dx
	movw $COM1 + 3, %dx
	movb $3, %al
	outb %al, %dx

	/* ICH9 LPC (00:1f.0): PMBASE 0x600, ACPI_EN, as firmware programs them */
	movw $0xcf8, %dx
	movl $0x8000f840, %eax
	outl %eax, %dx
	movw $0xcfc, %dx
	movl $0x601, %eax
	outl %eax, %dx
	movw $0xcf8, %dx
	movl $0x8000f844, %eax
	outl %eax, %dx
	movw $0xcfc, %dx
	movb $0x80, %al
	outb %al, %dx

	movl $0, VAR_FAILURES
	movl cfg_base, %ebx		/* %ebx: the flash base, for every check */
	movl cfg_size, %eax
	movl %eax, VAR_SIZE
	subl $SECTOR, %eax
	movl %eax, VAR_FREE
	addl $SECTOR - 0x800, %eax
	movl %eax, VAR_MARK

	movl $s_start, %esi
	movl %ebx, %eax
	movl $8, %ecx
	call kv
	movl $s_size, %esi
	movl VAR_SIZE, %eax
	call kv
	call eol

	call check_detect
	/* Which state the store must be in: the template, or a finished run's result. */
	call marker_state
	xorl %ecx, %ecx
	cmpl $1, %eax
	je 1f
	incl %ecx
1:	movl %ecx, VAR_FRESH
	call check_read_array
	call check_id
	call check_cfi
	call check_program
	call check_erase
	call check_clear_status
	call check_marker

	movl $s_done, %esi
	call say
	movl VAR_FAILURES, %eax
	call putdec
	call eol

	testl $1, cfg_flags
	jz 2f
	movl $s_hold, %esi
	call say
3:	cli
	hlt
	jmp 3b

2:	movw $PM1A_CNT, %dx		/* S5: SLP_TYP 0 | SLP_EN */
	movw $SLP_EN, %ax
	outw %ax, %dx
	jmp 3b

/* ---- real mode to 32-bit flat protected mode ---------------------------------- */

	/* The descriptors have their accessed bit set already: the CPU would otherwise write
	 * it into the read-only image when loading them (real hardware ignores the write; the
	 * emulated KVM of the development machines spins in KVM_RUN on it). */
	.p2align 3
gdt:
	.quad 0
	.quad 0x00cf9b000000ffff	/* 0x08: code, base 0, 4 GiB, accessed */
	.quad 0x00cf93000000ffff	/* 0x10: data, base 0, 4 GiB, accessed */
gdt_end:
gdtr:
	.word gdt_end - gdt - 1
	.long gdt			/* linear: 0xFFFFxxxx */

	.code16
start16:
	cli
	cld
	/* CS base is 0xFFFF0000, where the image starts */
	lgdtl %cs:(gdtr - _start)
	movl %cr0, %eax
	orb $1, %al
	movl %eax, %cr0
	ljmpl $0x08, $start32

	.code32
start32:
	movw $0x10, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %ss
	movw %ax, %fs
	movw %ax, %gs
	movl $STACK_TOP, %esp
	call main
9:	cli
	hlt
	jmp 9b

	.code16
	.org 0xfff0
reset_vector:				/* 0xFFFFFFF0 */
	cli
	jmp start16
	.org 0x10000
