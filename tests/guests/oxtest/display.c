/*
 * display: finds the 1234:1111 display adapter (QEMU's std VGA or bochs-display),
 * checks its DISPI identity and EDID through BAR2, sets 640x480x32 through the DISPI
 * registers at BAR2 + 0x500 (as Linux's bochs driver does), and draws the pattern
 * display_pixel() describes into the framebuffer at BAR0. The host compares a
 * screendump with the same function (tests/tests/display_guest.rs).
 *
 *   OXTEST display ok class=<0300|0380> id=<b0c5> vram64k=<n> edid=<w>x<h> fb=<addr>
 *
 * Uses pci_read32/pci_write16 from virtio/virtio.c.
 */

#define DISPLAY_W 640
#define DISPLAY_H 480

/* The picture: 8 colour bars in the top half, a gradient below. */
static uint32_t display_pixel(uint32_t x, uint32_t y)
{
	static const uint32_t bars[8] = { 0x000000, 0xff0000, 0x00ff00, 0x0000ff,
					  0xffffff, 0xffff00, 0x00ffff, 0xff00ff };
	if (y < DISPLAY_H / 2)
		return bars[x / (DISPLAY_W / 8)];
	return (x & 0xff) << 16 | (y & 0xff) << 8 | ((x ^ y) & 0xff);
}

static void dispi_mmio(uint64_t mmio, int reg, uint16_t v) { w16(mmio + 0x500 + 2 * reg, v); }

static void check_display(void)
{
	int slot = -1;
	for (int s = 0; s < 32 && slot < 0; s++)
		if (pci_read32((uint8_t)s, 0, 0) == 0x11111234u)
			slot = s;
	if (slot < 0) {
		say("display", 0, "reason=no-1234:1111");
		return;
	}
	uint32_t class = pci_read32((uint8_t)slot, 0, 8) >> 16;
	pci_write16((uint8_t)slot, 0, 4, 0x0002); /* memory decoding */
	uint64_t fb = pci_bar((uint8_t)slot, 0);
	uint64_t mmio = pci_bar((uint8_t)slot, 2);
	uint16_t id = r16(mmio + 0x500);
	uint16_t vram64k = r16(mmio + 0x500 + 2 * 10);
	/* EDID: header, then the preferred mode from the first detailed timing. */
	int edid_ok = r32(mmio) == 0xffffff00u && r32(mmio + 4) == 0x00ffffffu;
	uint32_t ew = r8(mmio + 56) | (uint32_t)(r8(mmio + 58) >> 4) << 8;
	uint32_t eh = r8(mmio + 59) | (uint32_t)(r8(mmio + 61) >> 4) << 8;

	dispi_mmio(mmio, 4, 0);          /* ENABLE off */
	dispi_mmio(mmio, 3, 32);         /* BPP */
	dispi_mmio(mmio, 1, DISPLAY_W);  /* XRES */
	dispi_mmio(mmio, 2, DISPLAY_H);  /* YRES */
	dispi_mmio(mmio, 6, DISPLAY_W);  /* VIRT_WIDTH */
	dispi_mmio(mmio, 4, 0x41);       /* ENABLED | LFB_ENABLED */
	volatile uint32_t *p = (volatile uint32_t *)fb;
	for (uint32_t y = 0; y < DISPLAY_H; y++)
		for (uint32_t x = 0; x < DISPLAY_W; x++)
			p[y * DISPLAY_W + x] = display_pixel(x, y);

	int ok = id >= 0xb0c0 && id <= 0xb0c5 && edid_ok && r16(mmio + 0x502) == DISPLAY_W;
	result("display", ok);
	put("class=");
	put_hex(class);
	put(" id=");
	put_hex(id);
	put(" vram64k=");
	put_dec(vram64k);
	put(" edid=");
	put_dec(ew);
	put("x");
	put_dec(eh);
	put(" fb=");
	put_hex(fb);
	flush();
}
