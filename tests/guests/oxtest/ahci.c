/*
 * A polled AHCI driver (Serial ATA AHCI 1.3.1): the first AHCI function on bus 0
 * (class 01:06:01), its first port with an ATA disk (PxSIG 0x101 once FIS receive
 * is on). Check `ahci`:
 * IDENTIFY DEVICE, a READ DMA EXT of LBA 0 (the host's pattern), a WRITE DMA EXT of
 * one sector and its read-back. `ahcibench=MiB`: the block benchmark's phases
 * (sequential writes then reads of MiB in 1 MiB requests, then 4 KiB requests),
 * printed as the virtio driver prints them (`OXBENCH vblk ...`, bench/block parses
 * both). Completion is polled (PxCI), one command in flight.
 *
 * Uses the PCI helpers and valloc() of virtio/virtio.c.
 */

struct ahci_port {
	uint64_t abar, px;
	uint8_t *clb, *fb, *table;
};

static uint32_t ahci_r(struct ahci_port *p, uint32_t off) { return r32(p->px + off); }
static void ahci_w(struct ahci_port *p, uint32_t off, uint32_t v) { w32(p->px + off, v); }

/* Issues one command in slot 0 with one PRD; returns the task file (status | error << 8),
 * or 0x10000 on a timeout. */
static uint32_t ahci_cmd(struct ahci_port *p, uint8_t cmd, uint64_t lba, uint16_t count,
			 void *buf, uint32_t len, int write)
{
	uint32_t dw0 = 5 | (len ? 1u << 16 : 0) | (write ? 1u << 6 : 0);
	w32((uint64_t)p->clb, dw0);
	w32((uint64_t)p->clb + 4, 0);
	w64((uint64_t)p->clb + 8, (uint64_t)p->table);
	uint8_t *f = p->table;
	memset(f, 0, 0x90);
	f[0] = 0x27;
	f[1] = 0x80;
	f[2] = cmd;
	f[4] = (uint8_t)lba;
	f[5] = (uint8_t)(lba >> 8);
	f[6] = (uint8_t)(lba >> 16);
	f[7] = 0x40;
	f[8] = (uint8_t)(lba >> 24);
	f[9] = (uint8_t)(lba >> 32);
	f[10] = (uint8_t)(lba >> 40);
	f[12] = (uint8_t)count;
	f[13] = (uint8_t)(count >> 8);
	if (len) {
		w64((uint64_t)f + 0x80, (uint64_t)buf);
		w32((uint64_t)f + 0x8c, len - 1);
	}
	mb();
	ahci_w(p, 0x10, 0xffffffffu);	/* PxIS */
	ahci_w(p, 0x38, 1);		/* PxCI */
	for (uint64_t i = 0; i < 400000000ull; i++) {
		if (!(ahci_r(p, 0x38) & 1) || (ahci_r(p, 0x10) & (1u << 30)))
			return ahci_r(p, 0x20) & 0xffff;
		__asm__ volatile("pause");
	}
	return 0x10000;
}

/* Not busy, no error, no timeout. */
static int ahci_good(uint32_t tfd) { return tfd < 0x10000 && !(tfd & 0x81); }

static int ahci_open(struct ahci_port *p)
{
	for (uint8_t s = 1; s < 32; s++) {
		for (uint8_t fn = 0; fn < 8; fn++) {
			uint32_t id = pci_read32(s, fn, 0);
			if ((id & 0xffff) == 0xffff || (pci_read32(s, fn, 8) >> 8) != 0x010601)
				continue;
			if (fn == 0)
				pci_assign_bars(s);
			outl(0xcf8, 0x80000000u | (uint32_t)s << 11 | (uint32_t)fn << 8 | 4);
			outw(0xcfc, (uint16_t)(inw(0xcfc) | 6));
			p->abar = pci_read32(s, fn, 0x24) & ~0xfu;
			if (!p->abar)
				continue;
			w32(p->abar + 4, r32(p->abar + 4) | (1u << 31));	/* GHC.AE */
			uint32_t pi = r32(p->abar + 0x0c);
			for (int n = 0; n < 32; n++) {
				p->px = p->abar + 0x100 + 0x80 * (uint64_t)n;
				if (!(pi & (1u << n)) || (ahci_r(p, 0x28) & 0xf) != 3)
					continue;
				ahci_w(p, 0x18, ahci_r(p, 0x18) & ~0x11u);	/* stop ST, FRE */
				for (int i = 0; i < 1000000 && (ahci_r(p, 0x18) & 0xc000); i++)
					__asm__ volatile("pause");
				p->clb = valloc(1024, 1024);
				p->fb = valloc(256, 256);
				p->table = valloc(256, 128);
				ahci_w(p, 0x00, (uint32_t)(uint64_t)p->clb);
				ahci_w(p, 0x04, (uint32_t)((uint64_t)p->clb >> 32));
				ahci_w(p, 0x08, (uint32_t)(uint64_t)p->fb);
				ahci_w(p, 0x0c, (uint32_t)((uint64_t)p->fb >> 32));
				ahci_w(p, 0x30, 0xffffffffu);	/* SERR */
				ahci_w(p, 0x14, 0);		/* polled: no interrupts */
				ahci_w(p, 0x18, ahci_r(p, 0x18) | 0x10);
				/* PxSIG is valid once the drive's first D2H FIS has come in,
				 * which QEMU sends when FIS receive is enabled. */
				for (int i = 0; i < 1000000 && ahci_r(p, 0x24) == 0xffffffffu; i++)
					__asm__ volatile("pause");
				if (ahci_r(p, 0x24) != 0x101)
					continue;
				ahci_w(p, 0x18, ahci_r(p, 0x18) | 0x01);
				return n + 1;
			}
		}
	}
	return 0;
}

static void check_ahci(void)
{
	struct ahci_port p;
	int port = ahci_open(&p);
	if (!port) {
		say("ahci", 0, "no AHCI port with an ATA disk");
		return;
	}
	uint8_t *buf = valloc(1u << 20, 4096);
	uint32_t st_id = ahci_cmd(&p, 0xec, 0, 0, buf, 512, 0);
	uint16_t *id = (uint16_t *)buf;
	uint64_t sectors = 0;
	for (int i = 3; i >= 0; i--)
		sectors = sectors << 16 | id[100 + i];
	char model[41];
	for (int i = 0; i < 20; i++) {
		model[2 * i] = (char)(id[27 + i] >> 8);
		model[2 * i + 1] = (char)id[27 + i];
	}
	model[40] = 0;
	for (int i = 39; i >= 0 && model[i] == ' '; i--)
		model[i] = 0;
	/* Sector 1 written and read back; sector 0 keeps the host's pattern. */
	uint32_t st_r0 = ahci_cmd(&p, 0x25, 0, 1, buf, 512, 0);
	uint8_t first = buf[0];
	for (int i = 0; i < 512; i++)
		buf[i] = (uint8_t)(i ^ 0xa5);
	uint32_t st_w = ahci_cmd(&p, 0x35, 1, 1, buf, 512, 1);
	memset(buf, 0, 512);
	uint32_t st_r = ahci_cmd(&p, 0x25, 1, 1, buf, 512, 0);
	int back = 1;
	for (int i = 0; i < 512; i++)
		back &= buf[i] == (uint8_t)(i ^ 0xa5);
	int ok = ahci_good(st_id) && ahci_good(st_r0) && ahci_good(st_w) && ahci_good(st_r) && back;
	result("ahci", ok);
	put("port=");
	put_dec((uint64_t)(port - 1));
	put(" sectors=");
	put_dec(sectors);
	put(" first=");
	put_hex(first);
	put(" readback=");
	put_dec((uint64_t)back);
	put(" model=");
	for (char *c = model; *c; c++)
		if (*c == ' ')
			*c = '_';
	put(model);
	flush();

	uint64_t mib = cmdline_num("ahcibench", 0);
	for (uint32_t req = 1u << 20; mib && req >= 4096; req = req == 4096 ? 0 : 4096) {
		uint64_t total = req == 4096 && (mib << 20) > (4u << 20) ? 4u << 20 : mib << 20;
		for (int write = 1; write >= 0; write--) {
			put("OXBENCH vblk begin ");
			put(write ? "write" : "read");
			put(" req=");
			put_dec(req);
			flush();
			uint64_t t0 = rdtsc(), n = 0;
			int bad = 0;
			for (uint64_t off = 0; off + req <= total; off += req, n++)
				bad |= !ahci_good(ahci_cmd(&p, write ? 0x35 : 0x25, (4096 + off) / 512,
							   (uint16_t)(req / 512), buf, req, write));
			uint64_t t1 = rdtsc();
			put("OXBENCH vblk ");
			put(write ? "write" : "read");
			put(" req=");
			put_dec(req);
			put(" count=");
			put_dec(n);
			put(" cycles=");
			put_dec(t1 - t0);
			put(bad ? " errors=1" : " errors=0");
			flush();
		}
	}
}
