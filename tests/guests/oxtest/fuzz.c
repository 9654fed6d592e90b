/*
 * A seeded guest-side device fuzzer (issue #20, "Hostile guests and clients"). Check `fuzz`:
 *
 *   oxtest=fuzz fuzzseed=N fuzzops=M [fuzzvq=R] [fuzzverbose]
 *
 * 1. Discovers the devices the way an OS does: every PCI function on bus 0 and behind
 *    bridges (config space through 0xcf8/0xcfc), their I/O and memory BARs (sized with
 *    decoding off, restored), and the legacy port ranges of the platform (COM1's
 *    registers but its THR, COM2, CMOS, PIT, port 0x61, PICs, ELCR, port 0x92, fw_cfg,
 *    the ACPI PM1 block and PM timer from the FADT, PS/2, the VGA and Bochs VBE ports,
 *    the legacy IDE channels, the APM/SMI command ports).
 * 2. For M operations, a xorshift64* PRNG seeded with N picks a range and writes a
 *    random value (1, 2 or 4 bytes; values biased to edge cases) at a random offset of
 *    it, reading back one time in four.
 * 3. Posts malformed virtqueues to every modern virtio-pci device on bus 0 (R rounds
 *    each): buffers outside RAM, huge lengths, descriptor loops, indirect tables that
 *    point at themselves or nest, next indices out of range, avail indices far ahead,
 *    ring addresses outside RAM, chains well formed but with random contents (virtio-blk
 *    request types and sectors, SCSI CDBs), then notifies; the device is reset after.
 *
 * Prints the seed and the ranges first, progress every 256 operations, and ends with
 * "OXTEST FUZZ DONE ops=M seed=N". The VMM must survive; the guest keeps going.
 *
 * What it must not do, because that ends the run legitimately rather than finding a
 * bug (each is skipped where the write is made, see fz_port_allowed and fz_cfg_allowed):
 *  - the reset control register 0xcf9, the FADT reset register, port 0x92 bit 0 (fast
 *    reset), the i8042 commands that pulse the reset line (0xf0..0xff, 0xfe among them)
 *    and the output-port write (0xd1, whose data byte's bit 0 resets the CPU);
 *  - PM1a/PM1b control writes with SLP_EN (bit 13), the HW-reduced sleep control
 *    register, the pvpanic port (not in the list), the ACPI PCI/CPU hotplug ports (not
 *    in the list);
 *  - anything that moves a window over RAM or this guest's code: BARs, the expansion
 *    ROM BAR and bridge bus/window registers are never written at random, and the
 *    chipset functions' (class 06: host bridge, LPC/ISA, PIIX4 PM) device-specific
 *    config space (PCIEXBAR, PMBASE, RCBA, PAM, SMRAM...) is only read;
 *  - the local APIC and IO-APIC (an INIT or NMI delivered to the only CPU), COM1's THR
 *    (the console), whose other registers are reprogrammed before each line printed.
 * In the virtqueue phase every buffer a device is given lies in a scratch area (48 MiB..
 * 52 MiB) or outside RAM, so a device that honours a bad request cannot overwrite this
 * code. The register phase cannot know which registers hold DMA addresses (AHCI PxCLB,
 * fw_cfg DMA, e1000 rings, virtio queue addresses): its values are biased to the scratch
 * area and to addresses outside RAM, but a random 32-bit value can still point into this
 * guest (about 1 in 1000 of them with 128 MiB); a guest that then crashes is its own
 * doing, and the test accepts it only if the VMM exits cleanly.
 */

#define FZ_SCRATCH (48ull << 20)
#define FZ_SCRATCH_LEN (4ull << 20)
#define FZ_MAX_TARGETS 160

enum { FZ_PIO, FZ_MMIO, FZ_CFG };

struct fz_target {
	uint8_t kind, bus, dev, fn;
	uint8_t chipset;	/* class 06: device-specific config is read only */
	uint8_t bridge;
	uint64_t base, len;
	const char *name;
};

static struct fz_target fz_t[FZ_MAX_TARGETS];
static int fz_n;
static uint64_t fz_state;
static int fz_verbose;

static uint64_t fz_rand(void)
{
	fz_state ^= fz_state >> 12;
	fz_state ^= fz_state << 25;
	fz_state ^= fz_state >> 27;
	return fz_state * 0x2545f4914f6cdd1dull;
}

static uint32_t fz_below(uint32_t n) { return n ? (uint32_t)(fz_rand() % n) : 0; }

/* An address no device may write to: past RAM, at MMIO, in the non-canonical range. */
static uint64_t fz_bad_addr(void)
{
	static const uint64_t a[] = { 0xfffffffffffff000ull, 1ull << 52, 0xfee00000ull,
				      0xfec00000ull, 0xb0000000ull, 0xffffffffull,
				      0x7fffffffffffull, 0xe0000000ull, 0xfffffff0ull,
				      0x100000000ull + (64ull << 30) };
	return a[fz_below(sizeof(a) / sizeof(a[0]))] + (fz_rand() & 1 ? 0 : fz_below(4096));
}

/* A value to write: edge cases more often than chance gives them. */
static uint32_t fz_value(void)
{
	switch (fz_below(10)) {
	case 0: return 0;
	case 1: return 0xffffffffu;
	case 2: return 1u << fz_below(32);
	case 3: return fz_below(256);
	case 4: return (uint32_t)(FZ_SCRATCH + (fz_rand() % FZ_SCRATCH_LEN));
	case 5: return (uint32_t)fz_bad_addr();
	case 6: return 0x80000000u | fz_below(16);
	default: return (uint32_t)fz_rand();
	}
}

static struct fz_target *fz_add(uint8_t kind, uint64_t base, uint64_t len, const char *name)
{
	if (fz_n >= FZ_MAX_TARGETS || !len)
		return 0;
	struct fz_target *t = &fz_t[fz_n++];
	memset(t, 0, sizeof(*t));
	t->kind = kind;
	t->base = base;
	t->len = len;
	t->name = name;
	return t;
}

/* ---------------------------------------------------------------- PCI discovery */

static uint32_t fz_cfg_addr(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off)
{
	return 0x80000000u | (uint32_t)bus << 16 | (uint32_t)dev << 11 | (uint32_t)fn << 8 | (off & 0xfc);
}

static uint32_t fz_cfg_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off)
{
	outl(0xcf8, fz_cfg_addr(bus, dev, fn, off));
	return inl(0xcfc);
}

static void fz_cfg_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint32_t v)
{
	outl(0xcf8, fz_cfg_addr(bus, dev, fn, off));
	outl(0xcfc, v);
}

/* Sizes BAR `b` with decoding off (so the all-ones probe never decodes anywhere) and
 * puts the original back; returns the size, 0 for an unimplemented BAR. */
static uint64_t fz_bar_size(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint32_t lo)
{
	uint32_t cmd = fz_cfg_read32(bus, dev, fn, 4);
	fz_cfg_write32(bus, dev, fn, 4, cmd & 0xfffc);
	fz_cfg_write32(bus, dev, fn, off, 0xffffffffu);
	uint32_t m = fz_cfg_read32(bus, dev, fn, off);
	fz_cfg_write32(bus, dev, fn, off, lo);
	fz_cfg_write32(bus, dev, fn, 4, (cmd & 0xffff) | 7);
	m &= (lo & 1) ? ~3u : ~0xfu;
	if (!m)
		return 0;
	uint64_t size = (uint64_t)(~m) + 1;
	return (lo & 1) ? size & 0xffff : size & 0xffffffffull;
}

static void fz_function(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t *next_bus);

static void fz_bus(uint8_t bus, uint8_t *next_bus)
{
	for (uint8_t dev = 0; dev < 32; dev++) {
		uint32_t id = fz_cfg_read32(bus, dev, 0, 0);
		if ((id & 0xffff) == 0xffff)
			continue;
		int fns = (fz_cfg_read32(bus, dev, 0, 0x0c) >> 16) & 0x80 ? 8 : 1;
		for (uint8_t fn = 0; fn < fns; fn++)
			if ((fz_cfg_read32(bus, dev, fn, 0) & 0xffff) != 0xffff)
				fz_function(bus, dev, fn, next_bus);
	}
}

static void fz_function(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t *next_bus)
{
	uint32_t class = fz_cfg_read32(bus, dev, fn, 8) >> 8;
	uint8_t hdr = (uint8_t)(fz_cfg_read32(bus, dev, fn, 0x0c) >> 16) & 0x7f;
	struct fz_target *t = fz_add(FZ_CFG, 0, 256, "cfg");
	if (t) {
		t->bus = bus;
		t->dev = dev;
		t->fn = fn;
		t->chipset = (class >> 16) == 0x06 && hdr == 0;
		t->bridge = hdr == 1;
	}
	int nbars = hdr == 0 ? 6 : hdr == 1 ? 2 : 0;
	for (int b = 0; b < nbars; b++) {
		uint8_t off = (uint8_t)(0x10 + 4 * b);
		uint32_t lo = fz_cfg_read32(bus, dev, fn, off);
		int is64 = !(lo & 1) && (lo & 6) == 4;
		uint32_t hi = is64 ? fz_cfg_read32(bus, dev, fn, (uint8_t)(off + 4)) : 0;
		if (lo & 1) {
			uint64_t size = fz_bar_size(bus, dev, fn, off, lo);
			if ((lo & ~3u) && size)
				fz_add(FZ_PIO, lo & 0xfffc, size > 256 ? 256 : size, "iobar");
		} else if (!hi) {
			uint64_t size = fz_bar_size(bus, dev, fn, off, lo);
			if (size && !(lo & ~0xfu) && bus == 0) {
				/* Firmware's job (no firmware here): an address in the MMIO hole. */
				bar_next = (bar_next + size - 1) & ~(size - 1);
				fz_cfg_write32(bus, dev, fn, off, (uint32_t)bar_next);
				lo = (uint32_t)bar_next | (lo & 0xf);
				bar_next += size;
			}
			if ((lo & ~0xfu) >= 0x80000000u && size)
				fz_add(FZ_MMIO, lo & ~0xfu, size, "membar");
		}
		if (is64)
			b++;
	}
	uint32_t cmd = fz_cfg_read32(bus, dev, fn, 4);
	fz_cfg_write32(bus, dev, fn, 4, (cmd & 0xffff) | 7);
	if (hdr == 1 && *next_bus < 255) {
		uint32_t buses = fz_cfg_read32(bus, dev, fn, 0x18);
		uint8_t sec = (uint8_t)(buses >> 8);
		if (!sec) {
			sec = (*next_bus)++;
			fz_cfg_write32(bus, dev, fn, 0x18, (buses & 0xff000000u) | (uint32_t)sec << 16 | (uint32_t)sec << 8 | bus);
		}
		fz_bus(sec, next_bus);
	}
}

/* ---------------------------------------------------------------- the forbidden writes */

static int fz_port_allowed(uint16_t port, int width, uint32_t *v)
{
	uint16_t end = (uint16_t)(port + width);
	if (port <= 0xcf9 && end > 0xcf9)
		return 0;	/* reset control register */
	if (acpi.reset_reg.space == 1 && acpi.reset_reg.addr >= port && acpi.reset_reg.addr < end)
		return 0;	/* the FADT's reset register */
	if (acpi.sleep_ctl.space == 1 && acpi.sleep_ctl.addr >= port && acpi.sleep_ctl.addr < end)
		return 0;	/* HW-reduced sleep control: SLP_EN powers off */
	uint32_t cnts[2] = { acpi.pm1a_cnt, acpi.pm1b_cnt };
	for (int i = 0; i < 2; i++) {
		/* PM1 control: SLP_EN is bit 13 (byte 1, bit 5) */
		if (!cnts[i])
			continue;
		if (cnts[i] >= port && cnts[i] < end)
			*v &= ~(0x2000u << 8 * (cnts[i] - port));
		if (cnts[i] + 1 >= port && cnts[i] + 1 < end)
			*v &= ~(0x20u << 8 * (cnts[i] + 1 - port));
	}
	if (port <= 0x92 && end > 0x92)
		*v = (*v & ~(1u << 8 * (0x92 - port))) | 2u << 8 * (0x92 - port);	/* fast reset off, A20 on */
	if (port <= 0x64 && end > 0x64) {
		uint8_t c = (uint8_t)(*v >> 8 * (0x64 - port));
		if (c >= 0xf0 || c == 0xd1)
			return 0;	/* i8042 reset pulse (0xfe...) or output-port write */
	}
	return 1;
}

/* Config offsets written at random: not the BARs, ROM BAR, bridge buses and windows; for
 * chipset functions nothing device-specific. */
static int fz_cfg_allowed(const struct fz_target *t, uint8_t off)
{
	if (off >= 0x10 && off < 0x28)
		return 0;
	if (off >= 0x30 && off < 0x34)
		return 0;
	if (t->bridge && off >= 0x10 && off < 0x3c)
		return 0;
	if (t->chipset && off >= 0x40)
		return 0;
	return 1;
}

/* ---------------------------------------------------------------- one operation */

static void fz_show(const char *what, const struct fz_target *t, uint64_t addr, int width, uint32_t v)
{
	put("OXTEST FUZZ op ");
	put(what);
	put(" ");
	put(t->name);
	put(" addr=");
	put_hex(addr);
	put(" w=");
	put_dec((uint64_t)width);
	put(" v=");
	put_hex(v);
	serial_init();
	flush();
}

static uint64_t fz_reads, fz_writes, fz_skipped;

static void fz_op(void)
{
	struct fz_target *t = &fz_t[fz_below((uint32_t)fz_n)];
	int width = 1 << fz_below(3);
	uint64_t off = fz_rand() % t->len;
	if (fz_below(8))
		off &= ~(uint64_t)(width - 1);
	if (off + (uint64_t)width > t->len)
		off = t->len >= (uint64_t)width ? t->len - (uint64_t)width : 0;
	if (t->len < (uint64_t)width)
		width = 1;
	uint32_t v = fz_value();
	int read = fz_below(4) == 0;
	if (t->kind == FZ_PIO) {
		uint16_t port = (uint16_t)(t->base + off);
		if (!read && !fz_port_allowed(port, width, &v)) {
			fz_skipped++;
			return;
		}
		if (fz_verbose)
			fz_show(read ? "in" : "out", t, port, width, v);
		if (read)
			(void)(width == 1 ? inb(port) : width == 2 ? inw(port) : inl(port));
		else if (width == 1)
			outb(port, (uint8_t)v);
		else if (width == 2)
			outw(port, (uint16_t)v);
		else
			outl(port, v);
	} else if (t->kind == FZ_MMIO) {
		uint64_t a = t->base + off;
		if (fz_verbose)
			fz_show(read ? "rd" : "wr", t, a, width, v);
		if (read)
			(void)(width == 1 ? r8(a) : width == 2 ? r16(a) : r32(a));
		else if (width == 1)
			w8(a, (uint8_t)v);
		else if (width == 2)
			w16(a, (uint16_t)v);
		else
			w32(a, v);
	} else {
		uint8_t o = (uint8_t)off;
		if (!read && !fz_cfg_allowed(t, o)) {
			fz_skipped++;
			return;
		}
		if (fz_verbose)
			fz_show(read ? "cfgrd" : "cfgwr", t, (uint64_t)t->bus << 16 | t->dev << 11 | t->fn << 8 | o, width, v);
		outl(0xcf8, fz_cfg_addr(t->bus, t->dev, t->fn, o));
		uint16_t port = (uint16_t)(0xcfc + (o & 3));
		if (read)
			(void)(width == 1 ? inb(port) : width == 2 ? inw(port) : inl(port));
		else if (width == 1)
			outb(port, (uint8_t)v);
		else if (width == 2)
			outw(port, (uint16_t)v);
		else
			outl(port, v);
	}
	if (read)
		fz_reads++;
	else
		fz_writes++;
	/* Read back what was written, sometimes. */
	if (!read && fz_below(4) == 0) {
		if (t->kind == FZ_PIO)
			(void)inb((uint16_t)(t->base + off));
		else if (t->kind == FZ_MMIO)
			(void)r8(t->base + off);
		fz_reads++;
	}
}

/* ---------------------------------------------------------------- malformed virtqueues */

static int fz_wait_status(uint64_t c, uint8_t want)
{
	for (int i = 0; i < 100000; i++) {
		if (r8(c + 0x14) == want)
			return 1;
		cpu_relax();
	}
	return 0;
}

/* Reset and bring up every queue (up to 4) with MSI-X off and no vectors; 0 when the
 * device did not come up. Every wait is bounded. */
static int fz_vinit(struct vdev *d, int *nq)
{
	uint64_t c = d->common;
	w8(c + 0x14, 0);
	if (!fz_wait_status(c, 0))
		return 0;
	w8(c + 0x14, S_ACK | S_DRIVER);
	w32(c + 0x08, 1);
	w32(c + 0x0c, 1);	/* VERSION_1 only: split rings, no event index */
	w32(c + 0x08, 0);
	w32(c + 0x0c, fz_below(2) ? (1u << 28) : 0);	/* INDIRECT_DESC, sometimes */
	w8(c + 0x14, S_ACK | S_DRIVER | S_FEATURES_OK);
	if (!(r8(c + 0x14) & S_FEATURES_OK))
		return 0;
	w16(c + 0x10, 0xffff);
	int n = 0;
	for (int i = 0; i < 4; i++) {
		struct vq *q = &d->q[i];
		w16(c + 0x16, (uint16_t)i);
		uint16_t max = r16(c + 0x18);
		if (!max || max == 0xffff)
			break;
		q->size = max < 16 ? max : 16;
		w16(c + 0x18, q->size);
		if (!q->desc) {
			q->desc = valloc(sizeof(struct vring_desc) * VQ_MAX, 16);
			q->avail = valloc(sizeof(struct vring_avail), 2);
			q->used = valloc(sizeof(struct vring_used), 4);
		}
		memset((void *)q->desc, 0, sizeof(struct vring_desc) * VQ_MAX);
		memset((void *)q->avail, 0, sizeof(struct vring_avail));
		memset((void *)q->used, 0, sizeof(struct vring_used));
		q->last_used = 0;
		w16(c + 0x1a, 0xffff);
		/* A ring outside RAM, sometimes: the device must not touch it. */
		int bad = fz_below(12) == 0;
		w64(c + 0x20, bad ? fz_bad_addr() : (uint64_t)q->desc);
		w64(c + 0x28, (uint64_t)q->avail);
		w64(c + 0x30, fz_below(12) == 0 ? fz_bad_addr() : (uint64_t)q->used);
		q->notify = d->notify + (uint64_t)r16(c + 0x1e) * d->notify_mult;
		w16(c + 0x1c, 1);
		n++;
	}
	w8(c + 0x14, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	*nq = n;
	return n > 0;
}

static uint64_t fz_vq_posted, fz_vq_used, fz_vq_needs_reset;

/* One malformed request on queue `qi`. */
static void fz_vq_round(struct vdev *d, int qi)
{
	struct vq *q = &d->q[qi];
	volatile struct vring_desc *dt = q->desc;
	uint8_t *scr = (uint8_t *)FZ_SCRATCH;
	uint32_t n = 1 + fz_below(4);
	int kind = (int)fz_below(9);
	/* Random contents for the buffers (request headers, CDBs, packets...). */
	for (int i = 0; i < 256; i++)
		scr[i] = (uint8_t)fz_rand();
	if (fz_below(2)) {
		scr[0] = (uint8_t)fz_below(12);	/* a plausible virtio-blk type */
		scr[8] = (uint8_t)fz_rand();
	}
	if (d->id == 0x1048 && fz_below(2)) {
		/* virtio-scsi request: LUN 1/target/lun, then a CDB with a known opcode */
		static const uint8_t ops[] = { 0x00, 0x03, 0x12, 0x1a, 0x25, 0x28, 0x2a, 0x35, 0x4a,
					       0x43, 0x46, 0x51, 0x5a, 0x88, 0x8a, 0x9e, 0xa0, 0xa8,
					       0xbd, 0x1b, 0x1e, 0xbb, 0x42, 0xad, 0xac, 0x55 };
		scr[0] = 1;
		scr[1] = (uint8_t)fz_below(3);
		scr[2] = (uint8_t)(fz_below(2) ? 0x40 : 0);
		scr[3] = (uint8_t)fz_below(3);
		scr[19] = ops[fz_below(sizeof(ops))];
	}
	if (d->id == 0x1045) {
		/* virtio-balloon: page numbers in the scratch area or far outside RAM, never
		 * this guest's own pages (a discarded page of code is the guest's doing). */
		uint32_t *pfn = (uint32_t *)scr;
		for (int i = 0; i < 64; i++)
			pfn[i] = fz_below(4) ? (uint32_t)(FZ_SCRATCH >> 12) + fz_below(FZ_SCRATCH_LEN >> 12)
					     : 0xfff00000u + fz_below(0x100000);
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t addr = FZ_SCRATCH + 4096ull * i;
		uint32_t len = 16 + fz_below(4096);
		uint16_t flags = (uint16_t)((i + 1 < n ? VRING_DESC_F_NEXT : 0) | (i ? VRING_DESC_F_WRITE : 0));
		uint16_t next = (uint16_t)(i + 1);
		switch (kind) {
		case 1:	/* buffer outside RAM */
			if (fz_below(2))
				addr = fz_bad_addr();
			break;
		case 2:	/* huge length */
			if (fz_below(2))
				len = fz_below(2) ? 0xffffffffu : 0x80000000u | fz_below(4096);
			break;
		case 3:	/* a loop */
			if (i + 1 == n) {
				flags |= VRING_DESC_F_NEXT;
				next = (uint16_t)fz_below(n);
			}
			break;
		case 4:	/* an indirect table that is the ring itself, or holds itself */
			if (i == 0) {
				flags = 4 | (fz_below(4) == 0 ? VRING_DESC_F_NEXT : 0);
				addr = fz_below(2) ? (uint64_t)(uintptr_t)dt : FZ_SCRATCH + 0x10000;
				len = 16u * (1 + fz_below(q->size)) + (fz_below(4) == 0 ? 3 : 0);
				volatile struct vring_desc *it = (volatile struct vring_desc *)(FZ_SCRATCH + 0x10000);
				for (int k = 0; k < 16; k++) {
					it[k].addr = fz_below(2) ? FZ_SCRATCH + 0x10000 : FZ_SCRATCH + 4096ull * k;
					it[k].len = fz_below(2) ? 256 : (uint32_t)fz_rand();
					it[k].flags = (uint16_t)(fz_rand() & 7);
					it[k].next = (uint16_t)fz_below(20);
				}
			}
			break;
		case 5:	/* next out of range, zero lengths */
			flags |= VRING_DESC_F_NEXT;
			next = (uint16_t)(q->size + fz_below(0x10000 - q->size));
			len = fz_below(2) ? 0 : len;
			break;
		case 6:	/* random flags and lengths */
			flags = (uint16_t)(fz_rand() & 0xffff);
			len = (uint32_t)fz_rand();
			next = (uint16_t)fz_below(q->size + 4u);
			break;
		default:	/* well formed, random contents */
			break;
		}
		dt[i].addr = addr;
		dt[i].len = len;
		dt[i].flags = flags;
		dt[i].next = next;
	}
	uint16_t head = (uint16_t)(kind == 7 && fz_below(2) ? q->size + fz_below(100) : 0);
	q->avail->ring[q->avail->idx % q->size] = head;
	mb();
	if (kind == 8)	/* avail index far ahead of what was posted */
		q->avail->idx = (uint16_t)(q->avail->idx + q->size + fz_below(2000));
	else
		q->avail->idx++;
	mb();
	if (fz_verbose) {
		put("OXTEST FUZZ vq slot=");
		put_dec(d->slot);
		put(" queue=");
		put_dec((uint64_t)qi);
		put(" kind=");
		put_dec((uint64_t)kind);
		put(" descs=");
		put_dec(n);
		serial_init();
		flush();
	}
	w16(q->notify, (uint16_t)qi);
	fz_vq_posted++;
	for (int i = 0; i < 2000 && q->used->idx == q->last_used; i++)
		cpu_relax();
	if (q->used->idx != q->last_used) {
		fz_vq_used++;
		q->last_used = q->used->idx;
	}
}

static void fz_virtqueues(uint32_t rounds)
{
	int devices = 0;
	for (uint8_t s = 1; s < 32; s++) {
		uint32_t id = pci_read32(s, 0, 0);
		if ((id & 0xffff) != 0x1af4 || (id >> 16) < 0x1040)
			continue;
		struct vdev *d = &vdevs[s];
		/* Power state D0 again, in case the register phase put it in D3. */
		for (uint8_t cap = (uint8_t)pci_read32(s, 0, 0x34), k = 0; cap && k < 32; k++) {
			uint32_t h = pci_read32(s, 0, cap);
			if ((uint8_t)h == 0x01)
				pci_write16(s, 0, (uint8_t)(cap + 4), 0);
			cap = (uint8_t)(h >> 8);
		}
		struct vq saved[4];
		memcpy(saved, d->q, sizeof(saved));
		if (!virtio_probe(d, s))
			continue;
		memcpy(d->q, saved, sizeof(saved));
		int nq = 0, up = 0;
		for (uint32_t r = 0; r < rounds; r++) {
			if (!up || fz_below(3) == 0)
				up = fz_vinit(d, &nq);
			if (!up)
				continue;
			fz_vq_round(d, (int)fz_below((uint32_t)nq));
			if (r8(d->common + 0x14) & 0x40)
				fz_vq_needs_reset++;
		}
		w8(d->common + 0x14, 0);
		fz_wait_status(d->common, 0);
		devices++;
		result("fuzz-vq", 1);
		put("slot=");
		put_dec(s);
		put(" id=");
		put_hex(d->id);
		put(" queues=");
		put_dec((uint64_t)nq);
		serial_init();
		flush();
	}
	result("fuzz-vq", 1);
	put("devices=");
	put_dec((uint64_t)devices);
	put(" posted=");
	put_dec(fz_vq_posted);
	put(" used=");
	put_dec(fz_vq_used);
	put(" needs_reset=");
	put_dec(fz_vq_needs_reset);
	serial_init();
	flush();
}

/* ---------------------------------------------------------------- entry */

static void do_fuzz(void)
{
	uint64_t seed = cmdline_num("fuzzseed", 1);
	uint64_t ops = cmdline_num("fuzzops", 1000);
	uint32_t vq_rounds = (uint32_t)cmdline_num("fuzzvq", 16);
	fz_verbose = cmdline_has_word("fuzzverbose");
	fz_state = seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
	if (!fz_state)
		fz_state = 1;
	lapic_enable();
	if (!acpi.found) {
		acpi_verify = 0;
		check_acpi();
		acpi_verify = 1;
	}

	uint8_t next_bus = 1;
	fz_bus(0, &next_bus);
	static const struct {
		uint16_t base, len;
		const char *name;
	} legacy[] = {
		{ COM1 + 1, 7, "com1" }, { 0x2f8, 8, "com2" }, { 0x70, 2, "cmos" },
		{ 0x40, 4, "pit" }, { 0x61, 1, "port61" }, { 0x20, 2, "pic1" },
		{ 0xa0, 2, "pic2" }, { 0x4d0, 2, "elcr" }, { 0x92, 1, "port92" },
		{ 0x510, 2, "fwcfg" }, { 0x514, 8, "fwcfg-dma" }, { 0x60, 1, "ps2-data" },
		{ 0x64, 1, "ps2-cmd" }, { 0x3b0, 0x30, "vga" }, { 0x1ce, 3, "vbe" },
		{ 0x1f0, 8, "ide0" }, { 0x3f6, 1, "ide0-ctl" }, { 0x170, 8, "ide1" },
		{ 0x376, 1, "ide1-ctl" }, { 0xb2, 2, "apm" }, { 0x80, 1, "post" },
		{ 0x402, 1, "debugcon" },
	};
	for (size_t i = 0; i < sizeof(legacy) / sizeof(legacy[0]); i++)
		fz_add(FZ_PIO, legacy[i].base, legacy[i].len, legacy[i].name);
	if (acpi.pm1a_evt)
		fz_add(FZ_PIO, acpi.pm1a_evt, acpi.pm1_evt_len ? acpi.pm1_evt_len : 4, "pm1-evt");
	if (acpi.pm1a_cnt)
		fz_add(FZ_PIO, acpi.pm1a_cnt, 2, "pm1-cnt");
	if (acpi.pm_tmr)
		fz_add(FZ_PIO, acpi.pm_tmr, 4, "pm-tmr");
	if (acpi.smi_cmd && acpi.smi_cmd < 0x10000)
		fz_add(FZ_PIO, acpi.smi_cmd, 1, "smi-cmd");

	put("OXTEST FUZZ seed=");
	put_dec(seed);
	put(" ops=");
	put_dec(ops);
	put(" vq_rounds=");
	put_dec(vq_rounds);
	put(" targets=");
	put_dec((uint64_t)fz_n);
	flush();
	for (int i = 0; i < fz_n; i++) {
		struct fz_target *t = &fz_t[i];
		if (t->kind == FZ_CFG) {
			put("OXTEST FUZZ target cfg ");
			put_hex(t->bus);
			put(":");
			put_hex(t->dev);
			put(".");
			put_dec(t->fn);
			put(t->chipset ? " chipset" : t->bridge ? " bridge" : "");
		} else {
			put(t->kind == FZ_PIO ? "OXTEST FUZZ target pio " : "OXTEST FUZZ target mmio ");
			put(t->name);
			put(" ");
			put_hex(t->base);
			put("+");
			put_hex(t->len);
		}
		flush();
	}

	for (uint64_t i = 0; i < ops; i++) {
		fz_op();
		if ((i + 1) % 256 == 0) {
			put("OXTEST FUZZ progress ops=");
			put_dec(i + 1);
			serial_init();
			flush();
		}
	}
	serial_init();
	result("fuzz-regs", 1);
	put("writes=");
	put_dec(fz_writes);
	put(" reads=");
	put_dec(fz_reads);
	put(" skipped=");
	put_dec(fz_skipped);
	flush();

	/* The virtqueue phase has a sequence of its own: a seed replays the same
	 * malformed requests whatever the number of register operations. */
	fz_state = seed * 0xd1b54a32d192ed03ull + 0x8bb84b93962eacc9ull;
	fz_virtqueues(vq_rounds);

	put("OXTEST FUZZ DONE ops=");
	put_dec(ops);
	put(" seed=");
	put_dec(seed);
	serial_init();
	flush();
}
