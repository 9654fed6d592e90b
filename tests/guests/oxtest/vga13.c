/*
 * vga13: programs the std VGA (PCI 1234:1111, class 0300) into mode 13h through its
 * legacy ports, with the register values IBM's BIOS tables give (what a VGA BIOS does
 * on INT 10h AX=0013h; this guest has no BIOS to call), loads a 256-entry DAC palette
 * and draws a pattern through the 0xA0000 window, so the host can compare the screen
 * with vga13_colour() (tests/tests/vga_modes_guest.rs):
 *
 *   pixel (x, y) of 320x200 = colour index (x + 2y) & 0xff
 *   DAC entry i = (i >> 2, (3i) & 63, 63 - (i >> 2))      6-bit components
 *
 *   OXTEST vga13 ok slot=<n>
 *
 * Uses pci_read32/pci_write16 from virtio/virtio.c.
 */

static void vga13_regs(uint16_t index_port, const uint8_t *v, int n)
{
	for (int i = 0; i < n; i++) {
		outb(index_port, (uint8_t)i);
		outb((uint16_t)(index_port + 1), v[i]);
	}
}

static void check_vga13(void)
{
	static const uint8_t seq[5] = { 0x03, 0x01, 0x0f, 0x00, 0x0e };
	static const uint8_t crtc[25] = { 0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00,
					  0x41, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x9c, 0x0e,
					  0x8f, 0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff };
	static const uint8_t gc[9] = { 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0f, 0xff };
	int slot = -1;
	for (int s = 0; s < 32 && slot < 0; s++)
		if (pci_read32((uint8_t)s, 0, 0) == 0x11111234u && pci_read32((uint8_t)s, 0, 8) >> 16 == 0x0300)
			slot = s;
	if (slot < 0) {
		say("vga13", 0, "reason=no-std-vga");
		return;
	}
	pci_write16((uint8_t)slot, 0, 4, 0x0003); /* I/O and memory decoding */
	outb(0x3c2, 0x63);
	vga13_regs(0x3c4, seq, 5);
	vga13_regs(0x3d4, crtc, 25);
	vga13_regs(0x3ce, gc, 9);
	(void)inb(0x3da); /* attribute flip-flop to "index" */
	for (int i = 0; i < 21; i++) {
		uint8_t v = i < 16 ? (uint8_t)i : i == 0x10 ? 0x41 : i == 0x12 ? 0x0f : 0;
		outb(0x3c0, (uint8_t)i);
		outb(0x3c0, v);
	}
	outb(0x3c0, 0x20); /* palette address source: the screen is on */
	outb(0x3c8, 0);
	for (int i = 0; i < 256; i++) {
		outb(0x3c9, (uint8_t)(i >> 2));
		outb(0x3c9, (uint8_t)((3 * i) & 63));
		outb(0x3c9, (uint8_t)(63 - (i >> 2)));
	}
	/* Four pixels a write: chain-4 maps window byte a to pixel a. */
	for (uint32_t y = 0; y < 200; y++)
		for (uint32_t x = 0; x < 320; x += 4) {
			uint32_t c = 0;
			for (uint32_t k = 0; k < 4; k++)
				c |= ((x + k + 2 * y) & 0xff) << (8 * k);
			mmio_write32(0xa0000 + y * 320 + x, c);
		}
	result("vga13", 1);
	put("slot=");
	put_dec((uint64_t)slot);
	flush();
}
