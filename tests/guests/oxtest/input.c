/*
 * input (a final action): reports every byte the i8042 delivers, so the tests can
 * check what the host's input paths (VNC, QMP send-key/input-send-event, virsh
 * send-key) put into the PS/2 keyboard and mouse, as set-1 scancodes (the controller
 * translates, as firmware leaves it) and 3-byte mouse packets.
 *
 *   OXTEST input ok ready aux_ack=<fa>   the mouse reports (after 0xD4 0xF4)
 *   OXTEST input kbd=<hh>                 one byte from the keyboard
 *   OXTEST input aux=<hh>                 one byte from the mouse
 *
 * The controller's interrupts are switched off (command byte bits 0/1): the guest
 * polls on a 10 ms LAPIC tick, so no PIC/IO-APIC routing is involved.
 */

#define I8042_DATA 0x60
#define I8042_STATUS 0x64
#define I8042_OBF 0x01
#define I8042_AUXB 0x20

static void put_byte(uint8_t b)
{
	char c[3] = { "0123456789abcdef"[b >> 4], "0123456789abcdef"[b & 15], 0 };
	put(c);
}

/* The next byte in the output buffer, or -1 if none comes within ~100 polls. */
static int i8042_read_wait(void)
{
	for (int i = 0; i < 100; i++)
		if (inb(I8042_STATUS) & I8042_OBF)
			return inb(I8042_DATA);
	return -1;
}

static void do_input(void)
{
	/* Drop whatever is pending, then: command byte without interrupts (keep
	 * translation and the system flag), aux port on, mouse data reporting on. */
	while (inb(I8042_STATUS) & I8042_OBF)
		(void)inb(I8042_DATA);
	outb(I8042_STATUS, 0x20);
	int ccb = i8042_read_wait();
	outb(I8042_STATUS, 0x60);
	outb(I8042_DATA, (uint8_t)((ccb < 0 ? 0x44 : ccb) & ~0x33));
	outb(I8042_STATUS, 0xa8);
	outb(I8042_STATUS, 0xd4);
	outb(I8042_DATA, 0xf4);
	int ack = i8042_read_wait();
	result("input", ack == 0xfa);
	put("ready aux_ack=");
	put_byte((uint8_t)ack);
	flush();

	lapic_enable();
	lapic_write(0x3e0, 0x3);		/* divide by 16 */
	lapic_write(0x320, 0x40 | (1 << 17));	/* periodic, vector 0x40 */
	lapic_write(0x380, 625000);		/* 10 ms at a 1 GHz APIC bus (KVM's) */
	for (;;) {
		__asm__ volatile("sti; hlt; cli");
		uint8_t st;
		while ((st = inb(I8042_STATUS)) & I8042_OBF) {
			uint8_t b = inb(I8042_DATA);
			put(st & I8042_AUXB ? "OXTEST input aux=" : "OXTEST input kbd=");
			put_byte(b);
			flush();
		}
	}
}
