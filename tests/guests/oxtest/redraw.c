/*
 * redraw (a final action, after `display`): keeps redrawing the 640x480x32 bochs
 * framebuffer that `display` set up, for the VNC benchmark's continuous case
 * (bench/vnc): every 20 ms (LAPIC tick) one 640x48 band, in a colour that changes
 * each time, cycling down the screen, so a watching client always has damage to get.
 * The benchmark counts the bands drawn (the guest's speed differs between VMMs on an
 * emulated KVM) from a line every 50 bands:
 *
 *   OXTEST redraw ok started fb=<addr>
 *   OXTEST redraw bands=<n>
 */

static void do_redraw(void)
{
	int slot = -1;
	for (int s = 0; s < 32 && slot < 0; s++)
		if (pci_read32((uint8_t)s, 0, 0) == 0x11111234u)
			slot = s;
	if (slot < 0) {
		say("redraw", 0, "reason=no-1234:1111");
		return;
	}
	uint64_t fb = pci_bar((uint8_t)slot, 0);
	result("redraw", 1);
	put("started fb=");
	put_hex(fb);
	flush();
	lapic_enable();
	lapic_write(0x3e0, 0x3);		/* divide by 16 */
	lapic_write(0x320, 0x40 | (1 << 17));	/* periodic, vector 0x40 */
	lapic_write(0x380, 1250000);		/* 20 ms at a 1 GHz APIC bus (KVM's) */
	for (uint32_t n = 0;; n++) {
		__asm__ volatile("sti; hlt; cli");
		uint32_t band = n % 10, colour = n * 0x010305u;
		volatile uint32_t *p = (volatile uint32_t *)fb + band * 48 * 640;
		uint64_t count = 48 * 640;
		__asm__ volatile("rep stosl" : "+D"(p), "+c"(count) : "a"(colour) : "memory");
		if ((n + 1) % 50 == 0) {
			put("OXTEST redraw bands=");
			put_dec(n + 1);
			flush();
		}
	}
}
