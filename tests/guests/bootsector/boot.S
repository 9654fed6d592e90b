/*
 * A 512-byte boot sector: what a BIOS boots from a disk, and all it may rely on.
 * Loaded by the firmware at 0000:7C00 in real mode with the boot drive in %dl, it
 *   1. prints "OXBOOT-SECTOR-OK drive=XX" on COM1 (its own UART writes: the
 *      firmware's console may be anywhere),
 *   2. reads LBA 1 of its own drive through INT 13h AH=42h (extended read, as every
 *      bootloader does) and prints the NUL-terminated text found there
 *      ("OXBOOT-DATA tag=<tag>", written by the test harness),
 *   3. powers off through the ACPI PM1a control register at 0x604 (SLP_TYP 0 and
 *      SLP_EN: soft-off as QEMU's Q35/i440FX DSDT and OVMF say it; then SLP_TYP 5),
 *      and halts if that did not work.
 * On a failed read it prints "OXBOOT-READ-FAIL ah=XX" and halts.
 */
        .code16
        .text
        .globl _start
_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $0x7c00, %sp
        sti
        mov     %dl, drive

        mov     $msg_ok, %si
        call    puts
        mov     drive, %al
        call    puthex8
        call    crlf

        mov     $0x42, %ah
        mov     drive, %dl
        mov     $dap, %si
        int     $0x13
        jc      read_fail

        mov     $0x8000, %si
        call    puts
        call    crlf

        mov     $0x604, %dx
        mov     $0x2000, %ax            /* SLP_EN | SLP_TYP 0 */
        out     %ax, %dx
        mov     $0x3400, %ax            /* SLP_EN | SLP_TYP 5 */
        out     %ax, %dx
        jmp     hang

read_fail:
        push    %ax
        mov     $msg_fail, %si
        call    puts
        pop     %ax
        mov     %ah, %al
        call    puthex8
        call    crlf
hang:
        cli
        hlt
        jmp     hang

/* Prints the NUL-terminated string at %si. */
puts:
        lodsb
        test    %al, %al
        jz      1f
        call    putc
        jmp     puts
1:      ret

crlf:
        mov     $'\r', %al
        call    putc
        mov     $'\n', %al
        jmp     putc

/* Prints %al as two hex digits. */
puthex8:
        push    %ax
        shr     $4, %al
        call    hexdigit
        pop     %ax
        and     $0x0f, %al
hexdigit:
        add     $'0', %al
        cmp     $'9', %al
        jbe     putc
        add     $('a' - '0' - 10), %al
/* Writes %al to COM1 once its transmit holding register is empty. */
putc:
        push    %dx
        push    %ax
        mov     $0x3fd, %dx
2:      in      %dx, %al
        test    $0x20, %al
        jz      2b
        pop     %ax
        mov     $0x3f8, %dx
        out     %al, %dx
        pop     %dx
        ret

msg_ok:   .asciz "OXBOOT-SECTOR-OK drive="
msg_fail: .asciz "OXBOOT-READ-FAIL ah="
drive:    .byte 0
        .balign 4
/* INT 13h extended read: one sector of LBA 1 into 0000:8000. */
dap:    .byte 16, 0
        .word 1
        .word 0x8000, 0
        .quad 1

        .org 510
        .byte 0x55, 0xaa
