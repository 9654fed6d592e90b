/*
 * oxtest guest: 16550 registers, loopback and the IRQ 4 interrupt.
 * Included by guest.c: the guest is one translation unit.
 */

/* ---------------------------------------------------------------- 16550 UART */

/* What a UART driver relies on: scratch and line-control registers, a 16550A FIFO in IIR,
 * loopback, and the THR-empty interrupt on ISA IRQ 4 through the IOAPIC. */
static void check_serial(void)
{
	int ok = 1;
	const char *why = "";
	outb(COM1 + 7, 0x5a);
	if (inb(COM1 + 7) != 0x5a) {
		ok = 0;
		why = "scratch register does not hold a value";
	}
	uint8_t lcr = inb(COM1 + 3);
	if (ok && lcr != 0x03) {
		ok = 0;
		why = "LCR does not read back 8n1";
	}
	outb(COM1 + 2, 0x07);	/* FCR: enable and clear FIFOs */
	uint8_t iir = inb(COM1 + 2);
	if (ok && (iir & 0xc0) != 0xc0) {
		ok = 0;
		why = "IIR shows no 16550A FIFO";
	}
	/* Loopback: a byte written comes back in RBR with LSR.DR set, and is not sent. */
	uint8_t mcr = inb(COM1 + 4);
	outb(COM1 + 4, 0x10 | mcr);
	while (inb(COM1 + 5) & 1)
		(void)inb(COM1);
	outb(COM1, 0xa5);
	int dr = inb(COM1 + 5) & 1;
	uint8_t back = inb(COM1);
	outb(COM1 + 4, mcr);
	if (ok && (!dr || back != 0xa5)) {
		ok = 0;
		why = "loopback did not return the byte";
	}
	/* THR-empty interrupt on IRQ 4: ISA default is edge, active high, unless overridden. */
	int irq_ok = 0;
	if (acpi.found && acpi.ioapic) {
		lapic_enable();
		ioapic_write(0x11 + 2 * 4, lapic_id() << 24);
		ioapic_write(0x10 + 2 * 4, 0x34);
		__asm__ volatile("sti");
		outb(COM1 + 1, 0x02);	/* IER: THR empty */
		for (int i = 0; i < 100000 && !com1_thre; i++)
			cpu_relax();
		outb(COM1 + 1, 0x00);
		__asm__ volatile("cli");
		ioapic_write(0x10 + 2 * 4, 1 << 16);	/* mask */
		irq_ok = com1_thre > 0;
		if (ok && !irq_ok) {
			ok = 0;
			why = "no THR-empty interrupt on IRQ 4";
		}
	}
	result("serial", ok);
	put("scratch=ok iir=");
	put_hex(iir);
	put(" loopback=");
	put(dr && back == 0xa5 ? "ok" : "bad");
	put(" irq4=");
	put(!acpi.found ? "untested" : irq_ok ? "ok" : "none");
	put(" irqs=");
	put_dec((uint64_t)com1_irqs);
	if (!ok) {
		put(" reason=");
		put(why);
	}
	flush();
}
