/*
 * oxtest guest: S5 power-off, reset methods, power button, tick counter.
 * Included by guest.c: the guest is one translation unit.
 */

/* ---------------------------------------------------------------- power */

static void gas_write(const struct gas *g, uint32_t v)
{
	if (g->space == 1) {	/* system I/O */
		if (g->width == 16 || g->access == 2)
			outw((uint16_t)g->addr, (uint16_t)v);
		else if (g->width == 32 || g->access == 3)
			outl((uint16_t)g->addr, v);
		else
			outb((uint16_t)g->addr, (uint8_t)v);
	} else if (g->space == 0) {	/* system memory */
		if (g->width == 32 || g->access == 3)
			*(volatile uint32_t *)g->addr = v;
		else if (g->width == 16 || g->access == 2)
			*(volatile uint16_t *)g->addr = (uint16_t)v;
		else
			*(volatile uint8_t *)g->addr = (uint8_t)v;
	}
}

/* Puts the chipset in ACPI mode (SCI_EN) the way an OS does, through SMI_CMD. */
static void acpi_enable_mode(void)
{
	if (!acpi.pm1a_cnt || (inw((uint16_t)acpi.pm1a_cnt) & 1))
		return;
	if (acpi.smi_cmd && acpi.acpi_enable) {
		outb((uint16_t)acpi.smi_cmd, acpi.acpi_enable);
		for (int i = 0; i < 100000 && !(inw((uint16_t)acpi.pm1a_cnt) & 1); i++)
			cpu_relax();
	}
}

static void do_poweroff(void)
{
	if (!acpi.found) {
		say("poweroff", 0, "no ACPI tables: no S5");
		halt_forever();
	}
	if (!acpi.s5_found) {
		say("poweroff", 0, "no \\_S5 package in the DSDT");
		halt_forever();
	}
	int hw_reduced = (acpi.flags >> 20) & 1;
	put("OXTEST poweroff trying acpi-s5 slp_typ=");
	put_dec(acpi.s5_typ_a);
	put(hw_reduced ? " via=sleep_control_reg" : " via=pm1_cnt");
	flush();
	if (hw_reduced) {
		gas_write(&acpi.sleep_ctl, (uint32_t)((acpi.s5_typ_a & 7) << 2) | (1 << 5));
	} else {
		acpi_enable_mode();
		outw((uint16_t)acpi.pm1a_cnt, (uint16_t)(((acpi.s5_typ_a & 7) << 10) | (1 << 13)));
		if (acpi.pm1b_cnt)
			outw((uint16_t)acpi.pm1b_cnt, (uint16_t)(((acpi.s5_typ_b & 7) << 10) | (1 << 13)));
	}
	delay_us(2000000);
	say("poweroff", 0, "still running 2 s after S5");
	halt_forever();
}

static void triple_fault(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) d = { 0, 0 };
	__asm__ volatile("lidt %0; ud2" ::"m"(d));
}

static void try_reset(const char *method)
{
	put("OXTEST reset trying ");
	put(method);
	flush();
	if (!memcmp(method, "acpi", 5)) {
		if (!acpi.found || !((acpi.flags >> 10) & 1) || !acpi.reset_reg.addr) {
			say("reset", 0, "FADT has no reset register");
			return;
		}
		gas_write(&acpi.reset_reg, acpi.reset_value);
	} else if (!memcmp(method, "kbd", 4)) {
		outb(0x64, 0xfe);
	} else if (!memcmp(method, "cf9", 4)) {
		outb(0xcf9, 0x02);
		outb(0xcf9, 0x06);
	} else if (!memcmp(method, "triple", 7)) {
		triple_fault();
	}
	delay_us(500000);
}

static void do_reset(void)
{
	char m[16];
	if (cmdline_get("reset_method", m, sizeof(m))) {
		try_reset(m);
	} else {
		try_reset("acpi");
		try_reset("kbd");
		try_reset("cf9");
		try_reset("triple");
	}
	say("reset", 0, "still running after reset");
	halt_forever();
}

/* Waits for the ACPI power button: fixed event PWRBTN through the SCI on the IOAPIC. */
static void do_acpibutton(void)
{
	if (!acpi.found || !acpi.ioapic || !acpi.pm1a_evt || !acpi.pm1_evt_len) {
		say("acpibutton", 0, "no PM1 event block or IOAPIC in the ACPI tables");
		halt_forever();
	}
	acpi_enable_mode();
	uint16_t en_port = (uint16_t)(acpi.pm1a_evt + acpi.pm1_evt_len / 2);
	pm1_write_sts(0xffff & ~(1 << 0));	/* clear stale status */
	outw(en_port, 1 << 8);			/* PWRBTN_EN */
	/* SCI: ACPI default is level, active low; an interrupt source override says otherwise. */
	int level = 1, low = 1;
	if (acpi.sci_flags) {
		uint16_t pol = acpi.sci_flags & 3, trig = (acpi.sci_flags >> 2) & 3;
		if (pol == 1)
			low = 0;
		if (trig == 1)
			level = 0;
	}
	uint32_t pin = acpi.sci_gsi - acpi.ioapic_gsi_base;
	lapic_enable();
	ioapic_write(0x11 + 2 * pin, lapic_id() << 24);
	ioapic_write(0x10 + 2 * pin, 0x30 | (level ? 1 << 15 : 0) | (low ? 1 << 13 : 0));
	put("OXTEST acpibutton armed gsi=");
	put_dec(acpi.sci_gsi);
	put(level ? " level" : " edge");
	put(low ? " active-low" : " active-high");
	flush();
	/* busy: a 100 Hz LAPIC tick while waiting, so the guest uses some CPU time a
	 * management UI can show (tests/cockpit_machines' usage figures). */
	if (cmdline_has_word("busy")) {
		lapic_enable();
		lapic_write(0x3e0, 0x3);		/* divide by 16 */
		lapic_write(0x320, 0x40 | (1 << 17));	/* periodic, vector 0x40 */
		lapic_write(0x380, 625000);		/* 10 ms at a 1 GHz APIC bus (KVM's) */
	}
	while (!pwrbtn_seen)
		__asm__ volatile("sti; hlt; cli");
	lapic_write(0x320, 1 << 16);		/* mask */
	result("acpibutton", 1);
	put("pressed sci_irqs=");
	put_dec((uint64_t)sci_seen);
	flush();
	do_poweroff();
}

/* Prints "OXTEST tick N" about twice a second from the LAPIC timer (ticks=N stops). */
static void do_count(void)
{
	uint64_t max = cmdline_num("ticks", 0), shown = 0;
	lapic_enable();
	lapic_write(0x3e0, 0x3);		/* divide by 16 */
	lapic_write(0x320, 0x40 | (1 << 17));	/* periodic, vector 0x40 */
	lapic_write(0x380, 31250000);		/* 0.5 s at a 1 GHz APIC bus (KVM's) */
	for (;;) {
		__asm__ volatile("sti; hlt; cli");
		if (ticks != shown) {
			shown = ticks;
			put("OXTEST tick ");
			put_dec(shown);
			flush();
			if (max && shown >= max)
				break;
		}
	}
	lapic_write(0x320, 1 << 16);		/* mask */
}
