/*
 * oxtest virtio drivers: PCI enumeration and small virtio 1.x (modern PCI) drivers,
 * written from the virtio 1.2 specification. Included by guest.c (it uses its
 * port/MMIO helpers and its result-line printer).
 *
 * Checks (oxtest=... tokens):
 *   pci      one line listing every function on bus 0: "OXTEST pci ok 00.0=1b36:0008 04.0=1af4:1042 ..."
 *   virtio   drive every virtio device found:
 *     blk     "OXTEST vblk ok slot=S cap=N ro=R id=SERIAL read=pattern|other write=ok|ioerr msix=1 reinit=1
 *             queues=Q inflight=5|-"
 *             reads sector 0..7 (expects the host pattern (k*13+0x5a)&0xff at byte k),
 *             writes (k*3+S+0xa5)&0xff to bytes 4096..8191 and reads them back, flushes;
 *             a read-only disk (VIRTIO_BLK_F_RO) must fail the write with VIRTIO_BLK_S_IOERR;
 *             after a reset, re-initialises with VIRTIO_BLK_F_MQ and up to 2 queues (Q), and
 *             on the last queue posts 5 writes of 4 KiB at once (byte k of write i at sector
 *             64+8i is (i*31+k+S)&0xff), then 5 reads of them at once, and compares
 *     rng     "OXTEST vrng ok slot=S bytes=64 distinct=D"
 *     console "OXTEST vcons ok slot=S" after sending "OXVIRTIO console says hello" on port 0
 *   net      "OXTEST vnet-tx ok slot=S mac=M link=L" after sending a broadcast frame
 *            (ethertype 0x88b5, "OXVNET-G2H"); "OXTEST vnet-rx ok" once a frame of that
 *            ethertype carrying "OXVNET-H2G" addressed to M arrives
 *   balloon  "OXTEST vballoon-wait ok", then once the host sets a target:
 *            "OXTEST vballoon ok pages=N" after inflating by N pages and setting `actual`
 *   link     "OXTEST vnet-link ok slot=S status=1 changes=0" once the NIC is up, then one
 *            line per configuration-change interrupt the host causes (QMP set_link):
 *            "OXTEST vnet-link ok slot=S status=0|1 changes=N gen=G", `link_changes=N`
 *            of them (default 2); the guest waits with sti;hlt for the interrupt
 *   intx     drive the devices without MSI-X: INTA# routed through the IO-APIC (the
 *            GSI from the Interrupt Line register the firmware programmed; the tests
 *            check it against the _PRT swizzle 16 + slot % 8), level-triggered,
 *            completions waited for with sti;hlt; the handler reads the ISR status of
 *            every device on the line (which clears it) before the EOI. blk/rng/link
 *            lines gain "intx=1 gsi=G pin=P" when an INTx interrupt came with the
 *            device's ISR queue (bit 0) or config (bit 1) bit.
 *   vsock    connects to host port 1234, sends "OXVSOCK-G2H", expects "OXVSOCK-H2G"
 *            ("OXTEST vsock-connect ok"), then "OXTEST vsock-listen ok port=5000", accepts a
 *            host connection on port 5000 and sends "OXVSOCK-ACC" ("OXTEST vsock-accept ok")
 *   vnetbench=MiB   instead of the net exchange, transmit MiB in 1514-byte frames (full-queue
 *                   batches, one notification each); OXBENCH lines around the phase.
 *   vnetpairs=N     with vnetbench: N (<= 3) queue pairs (VIRTIO_NET_F_MQ, VQ_PAIRS_SET on
 *                   the control queue); each batch fills every pair's transmit queue, one
 *                   notification each, before waiting for all. The OXBENCH lines gain pairs=N.
 *   vblkbench=MiB   sequential write then read of MiB through the first writable disk in
 *                   1 MiB requests, then 4 KiB requests; prints OXBENCH lines with TSC cycles.
 *   vblkdepth=N     with vblkbench: N (<= 32) requests kept in flight, 4 KiB ones at random
 *                   offsets; the OXBENCH lines gain depth=N.
 *   vscsibench=MiB  the same phases on LUN 0 of target 0 of the first virtio-scsi adapter,
 *                   as SCSI WRITE(10)/READ(10) on its request queue (same OXBENCH lines).
 *
 * Interrupts stay disabled (the guest runs with IF=0): completion is found by polling
 * the used ring, and MSI-X delivery is proven by the vector's bit in the local APIC IRR.
 * The link and intx modes take interrupts (sti;hlt) instead.
 */

/* Ring arrays hold VQ_MAX entries; queues are set up with vq_size of them (16, or 128
 * for vblkdepth=N benchmarks that keep up to 32 three-descriptor requests in flight). */
#define VQ_MAX 128
#define VQ_SIZE 16
static uint16_t vq_size = VQ_SIZE;
#define VIRTIO_F_VERSION_1 (1ull << 32)
#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2

/* Device status bits. */
#define S_ACK 1
#define S_DRIVER 2
#define S_DRIVER_OK 4
#define S_FEATURES_OK 8

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vring_avail {
	uint16_t flags, idx, ring[VQ_MAX], used_event;
};

struct vring_used {
	uint16_t flags, idx;
	struct {
		uint32_t id, len;
	} ring[VQ_MAX];
	uint16_t avail_event;
};

struct vq {
	volatile struct vring_desc *desc;
	volatile struct vring_avail *avail;
	volatile struct vring_used *used;
	uint16_t size, last_used;
	uint64_t notify;
	uint8_t vector;
};

struct vdev {
	uint8_t slot;
	uint16_t id;
	uint64_t common, notify, isr, devcfg;
	uint32_t notify_mult;
	uint64_t msix_table;
	uint8_t cap_msix;
	uint64_t features;
	struct vq q[8];	/* virtio-net with 3 queue pairs and its control queue at most */
	/* MSI-X: CPU vector for configuration changes (0 = none). */
	uint8_t config_vec;
	/* INTx mode: pin (1 = INTA#), GSI (Interrupt Line), the CPU vector it goes to and
	 * what the interrupt handler read from this device's ISR. */
	uint8_t pin, gsi, intx_vec;
	struct irq_src *intx_src;
};

/* Drive devices through INTx instead of MSI-X (oxtest=...,intx). */
static int use_intx;

/* Queues and buffers come from RAM above the image (8 MiB up); tests give >= 64 MiB. */
static uint64_t vmem_next = 8ull << 20;
static void *valloc(uint64_t size, uint64_t align)
{
	vmem_next = (vmem_next + align - 1) & ~(align - 1);
	void *p = (void *)vmem_next;
	vmem_next += size;
	memset(p, 0, size);
	return p;
}

static uint8_t next_vector = 0x50;
/* Benchmarks wait for completions with sti;hlt on the LAPIC timer's vector (0x40, whose
 * handler only counts and EOIs) instead of spinning, so host CPU time measures the
 * VMM's work rather than the guest's polling loop. */
static int halt_wait;

/* ---------------------------------------------------------------- PCI configuration */

static uint32_t pci_read32(uint8_t slot, uint8_t fn, uint8_t off)
{
	outl(0xcf8, 0x80000000u | (uint32_t)slot << 11 | (uint32_t)fn << 8 | (off & 0xfc));
	return inl(0xcfc);
}

static void pci_write16(uint8_t slot, uint8_t fn, uint8_t off, uint16_t v)
{
	outl(0xcf8, 0x80000000u | (uint32_t)slot << 11 | (uint32_t)fn << 8 | (off & 0xfc));
	outw((uint16_t)(0xcfc + (off & 2)), v);
}

static uint64_t pci_bar(uint8_t slot, uint8_t bar)
{
	uint32_t lo = pci_read32(slot, 0, (uint8_t)(0x10 + 4 * bar));
	uint64_t a = lo & ~0xfu;
	if ((lo & 6) == 4)
		a |= (uint64_t)pci_read32(slot, 0, (uint8_t)(0x14 + 4 * bar)) << 32;
	return a;
}

static void check_pci(void)
{
	result("pci", 1);
	for (uint8_t s = 0; s < 32; s++) {
		uint32_t hdr = pci_read32(s, 0, 0x0c);
		int fns = (hdr >> 16) & 0x80 ? 8 : 1;
		for (uint8_t f = 0; f < fns; f++) {
			uint32_t id = pci_read32(s, f, 0);
			if ((id & 0xffff) == 0xffff)
				continue;
			char b[3] = { "0123456789abcdef"[s >> 4], "0123456789abcdef"[s & 15], 0 };
			put(b);
			put(".");
			b[0] = (char)('0' + f);
			b[1] = 0;
			put(b);
			put("=");
			put_hex(id & 0xffff);
			put(":");
			put_hex(id >> 16);
			put(" ");
		}
	}
	flush();
}

/* ---------------------------------------------------------------- virtio-pci transport */

static inline void mb(void) { __asm__ volatile("mfence" ::: "memory"); }
static inline uint8_t r8(uint64_t a) { return *(volatile uint8_t *)a; }
static inline uint16_t r16(uint64_t a) { return *(volatile uint16_t *)a; }
static inline uint32_t r32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline void w8(uint64_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void w16(uint64_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline void w32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline void w64(uint64_t a, uint64_t v) { w32(a, (uint32_t)v); w32(a + 4, (uint32_t)(v >> 32)); }

/* Firmware's job where the firmware did not do it (qboot under QEMU): give
 * every unassigned memory BAR an address, naturally aligned, from 0xc1000000 up. */
static uint64_t bar_next = 0xc1000000ull;
static void pci_assign_bars(uint8_t slot)
{
	for (uint8_t b = 0; b < 6; b++) {
		uint8_t off = (uint8_t)(0x10 + 4 * b);
		uint32_t lo = pci_read32(slot, 0, off);
		if (lo & 1)
			continue;
		int is64 = (lo & 6) == 4;
		if ((lo & ~0xfu) == 0 && (!is64 || pci_read32(slot, 0, (uint8_t)(off + 4)) == 0)) {
			outl(0xcf8, 0x80000000u | (uint32_t)slot << 11 | off);
			outl(0xcfc, 0xffffffffu);
			uint32_t mask = pci_read32(slot, 0, off) & ~0xfu;
			if (mask) {
				uint64_t size = (uint64_t)(~mask) + 1;
				bar_next = (bar_next + size - 1) & ~(size - 1);
				outl(0xcf8, 0x80000000u | (uint32_t)slot << 11 | off);
				outl(0xcfc, (uint32_t)bar_next);
				if (is64) {
					outl(0xcf8, 0x80000000u | (uint32_t)slot << 11 | (uint32_t)(off + 4));
					outl(0xcfc, 0);
				}
				bar_next += size;
			} else {
				outl(0xcf8, 0x80000000u | (uint32_t)slot << 11 | off);
				outl(0xcfc, 0);
			}
		}
		if (is64)
			b++;
	}
}

/* Walks the capability list for the virtio structures and MSI-X. */
static int virtio_probe(struct vdev *d, uint8_t slot)
{
	memset(d, 0, sizeof(*d));
	d->slot = slot;
	pci_assign_bars(slot);
	d->id = (uint16_t)(pci_read32(slot, 0, 0) >> 16);
	/* memory space + bus master */
	pci_write16(slot, 0, 4, (uint16_t)(pci_read32(slot, 0, 4) | 6));
	uint8_t cap = (uint8_t)pci_read32(slot, 0, 0x34);
	while (cap) {
		uint32_t h = pci_read32(slot, 0, cap);
		uint8_t id = (uint8_t)h, type = (uint8_t)(h >> 24);
		if (id == 0x09) {
			uint8_t bar = (uint8_t)pci_read32(slot, 0, (uint8_t)(cap + 4));
			uint64_t a = pci_bar(slot, bar) + pci_read32(slot, 0, (uint8_t)(cap + 8));
			if (type == 1)
				d->common = a;
			else if (type == 2) {
				d->notify = a;
				d->notify_mult = pci_read32(slot, 0, (uint8_t)(cap + 16));
			} else if (type == 3)
				d->isr = a;
			else if (type == 4)
				d->devcfg = a;
		} else if (id == 0x11) {
			d->cap_msix = cap;
			uint32_t t = pci_read32(slot, 0, (uint8_t)(cap + 4));
			d->msix_table = pci_bar(slot, (uint8_t)(t & 7)) + (t & ~7u);
		}
		cap = (uint8_t)(h >> 8);
	}
	uint32_t irq = pci_read32(slot, 0, 0x3c);
	d->gsi = (uint8_t)irq;
	d->pin = (uint8_t)(irq >> 8);
	return d->common && d->notify && d->isr && d->msix_table;
}

/* Routes the device's INTx GSI through the IO-APIC to vector 0x60 + GSI, level-triggered,
 * active low (what _PRT's GSI entries mean), to this CPU; the handler reads the ISR. */
static void intx_route(struct vdev *d)
{
	d->intx_vec = (uint8_t)(0x60 + d->gsi);
	d->intx_src = irq_src_add(d->intx_vec, d->isr);
	if (!acpi.ioapic || d->gsi < acpi.ioapic_gsi_base)
		return;
	uint32_t pin = d->gsi - acpi.ioapic_gsi_base;
	ioapic_write(0x11 + 2 * pin, lapic_id() << 24);
	ioapic_write(0x10 + 2 * pin, d->intx_vec | 1 << 15 | 1 << 13);
}

/* What the INTx path proved for the result line: " intx=1 gsi=G" when an INTx interrupt
 * arrived whose ISR read had `bits` set. */
static int intx_seen(struct vdev *d, uint8_t bits)
{
	return irq_count[d->intx_vec] > 0 && d->intx_src && (d->intx_src->bits & bits) != 0;
}

/* The device writes the used ring before it raises the interrupt, so a completion can be
 * seen before its interrupt arrives: wait (sti;hlt, the LAPIC timer bounds it) until the
 * INTx interrupt with `bits` in the ISR was taken, or ~10 s pass. */
static void intx_settle(struct vdev *d, uint8_t bits)
{
	uint64_t end = rdtsc() + 10ull * 3000000000ull;
	while (use_intx && !intx_seen(d, bits) && rdtsc() < end)
		__asm__ volatile("sti; hlt; cli" ::: "memory");
}

static void put_intx(struct vdev *d, uint8_t bits)
{
	if (!use_intx)
		return;
	put(" intx=");
	put_dec((uint64_t)intx_seen(d, bits));
	put(" gsi=");
	put_dec(d->gsi);
	put(" pin=");
	put_dec(d->pin);
}

/* Programs MSI-X vector `entry` to deliver CPU vector `vec` to this CPU. */
static void msix_set(struct vdev *d, uint16_t entry, uint8_t vec)
{
	uint64_t e = d->msix_table + 16ull * entry;
	w32(e, 0xfee00000u | lapic_id() << 12);
	w32(e + 4, 0);
	w32(e + 8, vec);
	w32(e + 12, 0);	/* unmask */
}

/* Reset, negotiate (VERSION_1 | want & offered), set up `nq` queues with MSI-X. */
static int virtio_init(struct vdev *d, uint64_t want, int nq)
{
	uint64_t c = d->common;
	w8(c + 0x14, 0);
	while (r8(c + 0x14))
		cpu_relax();
	w8(c + 0x14, S_ACK);
	w8(c + 0x14, S_ACK | S_DRIVER);
	w32(c + 0x00, 0);
	uint64_t f = r32(c + 0x04);
	w32(c + 0x00, 1);
	f |= (uint64_t)r32(c + 0x04) << 32;
	if (!(f & VIRTIO_F_VERSION_1))
		return 0;
	d->features = f & (want | VIRTIO_F_VERSION_1);
	w32(c + 0x08, 0);
	w32(c + 0x0c, (uint32_t)d->features);
	w32(c + 0x08, 1);
	w32(c + 0x0c, (uint32_t)(d->features >> 32));
	w8(c + 0x14, S_ACK | S_DRIVER | S_FEATURES_OK);
	if (!(r8(c + 0x14) & S_FEATURES_OK))
		return 0;
	/* MSI-X on (message control bit 15, config space word at cap + 2), or off for INTx. */
	uint32_t mc = pci_read32(d->slot, 0, d->cap_msix);
	uint16_t ctl = (uint16_t)(mc >> 16);
	pci_write16(d->slot, 0, (uint8_t)(d->cap_msix + 2), use_intx ? (uint16_t)(ctl & ~0x8000) : (uint16_t)(ctl | 0x8000));
	if (use_intx) {
		intx_route(d);
		w16(c + 0x10, 0xffff);
	} else if (d->config_vec) {
		msix_set(d, 0, d->config_vec);
		w16(c + 0x10, 0);
	} else {
		w16(c + 0x10, 0xffff);	/* no config-change vector */
	}
	for (int i = 0; i < nq; i++) {
		struct vq *q = &d->q[i];
		w16(c + 0x16, (uint16_t)i);
		uint16_t max = r16(c + 0x18);
		if (!max)
			return 0;
		q->size = max < vq_size ? max : vq_size;
		w16(c + 0x18, q->size);
		q->desc = valloc(sizeof(struct vring_desc) * VQ_MAX, 16);
		q->avail = valloc(sizeof(struct vring_avail), 2);
		q->used = valloc(sizeof(struct vring_used), 4);
		q->last_used = 0;
		if (use_intx) {
			q->vector = 0;
			w16(c + 0x1a, 0xffff);	/* no MSI-X vector: INTx */
		} else {
			q->vector = halt_wait ? 0x40 : next_vector++;
			msix_set(d, (uint16_t)(i + 1), q->vector);
			w16(c + 0x1a, (uint16_t)(i + 1));
			if (r16(c + 0x1a) != i + 1)
				return 0;
		}
		w64(c + 0x20, (uint64_t)q->desc);
		w64(c + 0x28, (uint64_t)q->avail);
		w64(c + 0x30, (uint64_t)q->used);
		q->notify = d->notify + (uint64_t)r16(c + 0x1e) * d->notify_mult;
		w16(c + 0x1c, 1);
	}
	w8(c + 0x14, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
	return (r8(c + 0x14) & 0x40) == 0;
}

static int irr_set(uint8_t vec)
{
	return (lapic_read(0x200 + 0x10 * (vec / 32)) >> (vec % 32)) & 1;
}

/* Puts a chain of n descriptors (from slot 0) on the queue and notifies. */
static void vq_submit(struct vq *q, int qi, const uint64_t *addr, const uint32_t *len, const uint16_t *flags, int n)
{
	for (int i = 0; i < n; i++) {
		q->desc[i].addr = addr[i];
		q->desc[i].len = len[i];
		q->desc[i].flags = (uint16_t)(flags[i] | (i + 1 < n ? VRING_DESC_F_NEXT : 0));
		q->desc[i].next = (uint16_t)(i + 1);
	}
	q->avail->ring[q->avail->idx % q->size] = 0;
	mb();
	q->avail->idx++;
	mb();
	w16(q->notify, (uint16_t)qi);
}

/* Waits until the used index reaches `idx` (or ~30 s pass); false on timeout. */
static int vq_wait_idx(struct vq *q, uint16_t idx)
{
	uint64_t end = rdtsc() + 30ull * 3000000000ull;
	while ((int16_t)(q->used->idx - idx) < 0) {
		if (rdtsc() > end)
			return 0;
		if (halt_wait || use_intx)
			__asm__ volatile("sti; hlt; cli" ::: "memory");
		else
			cpu_relax();
	}
	return 1;
}

/* Waits for the next used entry; returns its length, or -1 after ~30 s. */
static int64_t vq_wait(struct vq *q)
{
	if (!vq_wait_idx(q, (uint16_t)(q->last_used + 1)))
		return -1;
	mb();
	int64_t len = q->used->ring[q->last_used % q->size].len;
	q->last_used++;
	return len;
}

/* ---------------------------------------------------------------- virtio-blk */

#define BLK_F_RO (1ull << 5)
#define BLK_F_FLUSH (1ull << 9)

struct blk_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

static struct blk_hdr *blk_hdr;
static volatile uint8_t *blk_status;

/* One request; returns the status byte (0xff if none came back). */
static uint8_t blk_rw(struct vdev *d, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
	blk_hdr->type = type;
	blk_hdr->reserved = 0;
	blk_hdr->sector = sector;
	*blk_status = 0xff;
	uint64_t a[3] = { (uint64_t)blk_hdr, (uint64_t)buf, (uint64_t)blk_status };
	uint32_t l[3] = { 16, len, 1 };
	uint16_t f[3] = { 0, (uint16_t)(type == 1 ? 0 : VRING_DESC_F_WRITE), VRING_DESC_F_WRITE };
	if (len) {
		vq_submit(&d->q[0], 0, a, l, f, 3);
	} else {
		a[1] = a[2];
		l[1] = 1;
		f[1] = VRING_DESC_F_WRITE;
		vq_submit(&d->q[0], 0, a, l, f, 2);
	}
	if (vq_wait(&d->q[0]) < 0)
		return 0xff;
	return *blk_status;
}

#define BLK_F_MQ (1ull << 12)

/* Puts request i of `n` on queue `qi` without notifying: descriptors 3i..3i+2 (header,
 * `len` bytes at `buf`, status), header and status slots `slot` of hdrs/sts. */
static struct blk_hdr *blk_hdrs;
static volatile uint8_t *blk_sts;
static void blk_post(struct vq *q, uint16_t slot, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
	uint16_t b = (uint16_t)(3 * slot);
	blk_hdrs[slot].type = type;
	blk_hdrs[slot].reserved = 0;
	blk_hdrs[slot].sector = sector;
	blk_sts[slot] = 0xff;
	q->desc[b].addr = (uint64_t)&blk_hdrs[slot];
	q->desc[b].len = 16;
	q->desc[b].flags = VRING_DESC_F_NEXT;
	q->desc[b].next = (uint16_t)(b + 1);
	q->desc[b + 1].addr = (uint64_t)buf;
	q->desc[b + 1].len = len;
	q->desc[b + 1].flags = (uint16_t)(VRING_DESC_F_NEXT | (type == 1 ? 0 : VRING_DESC_F_WRITE));
	q->desc[b + 1].next = (uint16_t)(b + 2);
	q->desc[b + 2].addr = (uint64_t)&blk_sts[slot];
	q->desc[b + 2].len = 1;
	q->desc[b + 2].flags = VRING_DESC_F_WRITE;
	q->desc[b + 2].next = 0;
	q->avail->ring[q->avail->idx % q->size] = b;
	mb();
	q->avail->idx++;
}

static void blk_kick(struct vq *q, int qi)
{
	mb();
	w16(q->notify, (uint16_t)qi);
}

#define BLK_DEPTH 5
/* Several requests in flight at once on queue `qi`: BLK_DEPTH 4 KiB writes of distinct
 * patterns to sectors 64, 72, ... posted together, then BLK_DEPTH reads of them posted
 * together into zeroed buffers; 1 when every status is 0 and the data came back. */
static int blk_inflight(struct vdev *d, int qi)
{
	struct vq *q = &d->q[qi];
	uint8_t *w = valloc(BLK_DEPTH * 4096, 4096), *r = valloc(BLK_DEPTH * 4096, 4096);
	for (int i = 0; i < BLK_DEPTH; i++)
		for (int k = 0; k < 4096; k++)
			w[i * 4096 + k] = (uint8_t)(i * 31 + k + d->slot);
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < BLK_DEPTH; i++)
			blk_post(q, (uint16_t)i, pass ? 0 : 1, 64 + 8 * (uint64_t)i, (pass ? r : w) + i * 4096, 4096);
		blk_kick(q, qi);
		uint16_t want = (uint16_t)(q->last_used + BLK_DEPTH);
		if (!vq_wait_idx(q, want))
			return 0;
		q->last_used = want;
		for (int i = 0; i < BLK_DEPTH; i++)
			if (blk_sts[i] != 0)
				return 0;
	}
	return !memcmp(w, r, BLK_DEPTH * 4096);
}

static struct vdev *bench_disk;

static void check_vblk(struct vdev *d)
{
	if (!blk_hdr) {
		blk_hdr = valloc(16, 16);
		blk_status = valloc(1, 1);
		blk_hdrs = valloc(16 * (VQ_MAX / 3), 16);
		blk_sts = valloc(VQ_MAX / 3, 1);
	}
	if (!virtio_init(d, BLK_F_RO | BLK_F_FLUSH, 1)) {
		result("vblk", 0);
		put("slot=");
		put_dec(d->slot);
		put(" init failed");
		flush();
		return;
	}
	int ro = (d->features & BLK_F_RO) != 0;
	uint64_t cap = r32(d->devcfg) | (uint64_t)r32(d->devcfg + 4) << 32;
	uint8_t *buf = valloc(8192, 4096);
	char id[21];
	memset(id, 0, sizeof(id));
	uint8_t st_id = blk_rw(d, 8, 0, buf, 20);
	for (int i = 0; i < 20 && buf[i]; i++)
		id[i] = (char)buf[i];
	uint8_t st_rd = blk_rw(d, 0, 0, buf, 4096);
	int pattern = st_rd == 0;
	for (int k = 0; k < 4096 && pattern; k++)
		pattern = buf[k] == (uint8_t)(k * 13 + 0x5a);
	for (int k = 0; k < 4096; k++)
		buf[4096 + k] = (uint8_t)(k * 3 + d->slot + 0xa5);
	uint8_t st_wr = blk_rw(d, 1, 8, buf + 4096, 4096);
	int wrote = st_wr == 0;
	if (wrote) {
		memset(buf, 0, 4096);
		wrote = blk_rw(d, 0, 8, buf, 4096) == 0 && !memcmp(buf, buf + 4096, 4096);
		wrote = wrote && (!(d->features & BLK_F_FLUSH) || blk_rw(d, 4, 0, 0, 0) == 0);
	}
	intx_settle(d, 1);
	int msix = use_intx ? intx_seen(d, 1) : halt_wait ? ticks > 0 : irr_set(d->q[0].vector);
	/* Device reset and re-initialisation: a fresh queue must work, and the data stays.
	 * With VIRTIO_BLK_F_MQ offered, up to 2 queues, and the in-flight check on the last. */
	w32(d->common + 0x00, 0);
	int nq = (r32(d->common + 0x04) & BLK_F_MQ) ? r16(d->devcfg + 34) : 1;
	nq = nq > 2 ? 2 : nq < 1 ? 1 : nq;
	int reinit = virtio_init(d, BLK_F_RO | BLK_F_FLUSH | BLK_F_MQ, nq);
	if (reinit) {
		memset(buf, 0, 4096);
		reinit = blk_rw(d, 0, 0, buf, 4096) == 0 && (!pattern || buf[1] == (uint8_t)(13 + 0x5a));
	}
	int inflight = reinit && !ro ? blk_inflight(d, nq - 1) : -1;
	int ok = st_id == 0 && st_rd == 0 && msix && reinit && (ro ? st_wr == 1 : wrote) && inflight != 0;
	result("vblk", ok);
	put("slot=");
	put_dec(d->slot);
	put(" cap=");
	put_dec(cap);
	put(" ro=");
	put_dec((uint64_t)ro);
	put(" id=");
	put(id[0] ? id : "-");
	put(pattern ? " read=pattern" : " read=other");
	put(st_wr == 0 ? (wrote ? " write=ok" : " write=mismatch") : st_wr == 1 ? " write=ioerr" : " write=bad");
	if (!use_intx) {
		put(" msix=");
		put_dec((uint64_t)msix);
	}
	put(" reinit=");
	put_dec((uint64_t)reinit);
	put(" queues=");
	put_dec((uint64_t)nq);
	put(inflight < 0 ? " inflight=-" : inflight ? " inflight=5" : " inflight=fail");
	put_intx(d, 1);
	flush();
	if (!ro && !bench_disk)
		bench_disk = d;
}

/* One read (write = 0) or write of `len` bytes at 512-byte `sector`; 0 when it worked. */
typedef uint8_t (*rw_fn)(struct vdev *d, int write, uint64_t sector, void *buf, uint32_t len);

static uint8_t blk_rw_data(struct vdev *d, int write, uint64_t sector, void *buf, uint32_t len)
{
	return blk_rw(d, write ? 1 : 0, sector, buf, len);
}

/* Sequential throughput with `req` byte requests over `total` bytes; prints TSC cycles. */
static void bench_blk(struct vdev *d, uint64_t total, uint32_t req, rw_fn rw)
{
	uint8_t *buf = valloc(req, 4096);
	for (uint32_t k = 0; k < req; k += 4096)
		buf[k] = (uint8_t)k;
	for (int write = 1; write >= 0; write--) {
		/* The host times the phase between this line and the next. */
		put("OXBENCH vblk begin ");
		put(write ? "write" : "read");
		put(" req=");
		put_dec(req);
		flush();
		uint64_t t0 = rdtsc(), n = 0;
		int bad = 0;
		for (uint64_t off = 0; off + req <= total; off += req, n++)
			bad |= rw(d, write, (4096 + off) / 512, buf, req) != 0;
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

/* vblkdepth=N: the same phases with N requests kept in flight on queue 0 (a completion
 * is replaced by the next request at once, one notification per batch of
 * replacements); `random` picks each request's offset at random within `total`. */
static uint64_t bench_rng = 0x9e3779b97f4a7c15ull;
static uint64_t bench_rand(void)
{
	bench_rng ^= bench_rng << 13;
	bench_rng ^= bench_rng >> 7;
	bench_rng ^= bench_rng << 17;
	return bench_rng;
}

static void bench_blk_depth(struct vdev *d, uint64_t total, uint32_t req, uint16_t depth, int random)
{
	struct vq *q = &d->q[0];
	uint8_t *buf = valloc((uint64_t)req * depth, 4096);
	uint64_t n = total / req;
	for (int write = 1; write >= 0; write--) {
		put("OXBENCH vblk begin ");
		put(write ? "write" : "read");
		put(" req=");
		put_dec(req);
		put(" depth=");
		put_dec(depth);
		flush();
		uint64_t t0 = rdtsc(), issued = 0, done = 0;
		int bad = 0;
#define NEXT_SECTOR() (8 + (random ? bench_rand() % n : issued) * (req / 512))
		for (uint16_t i = 0; i < depth && issued < n; i++, issued++)
			blk_post(q, i, (uint32_t)write, NEXT_SECTOR(), buf + (uint64_t)i * req, req);
		blk_kick(q, 0);
		while (done < n && !bad) {
			if (!vq_wait_idx(q, (uint16_t)(q->last_used + 1))) {
				bad = 1;
				break;
			}
			int posted = 0;
			while (q->used->idx != q->last_used) {
				mb();
				uint16_t slot = (uint16_t)(q->used->ring[q->last_used % q->size].id / 3);
				q->last_used++;
				bad |= blk_sts[slot] != 0;
				done++;
				if (issued < n) {
					blk_post(q, slot, (uint32_t)write, NEXT_SECTOR(), buf + (uint64_t)slot * req, req);
					issued++;
					posted = 1;
				}
			}
			if (posted)
				blk_kick(q, 0);
		}
#undef NEXT_SECTOR
		uint64_t t1 = rdtsc();
		put("OXBENCH vblk ");
		put(write ? "write" : "read");
		put(" req=");
		put_dec(req);
		put(" depth=");
		put_dec(depth);
		put(" count=");
		put_dec(done);
		put(" cycles=");
		put_dec(t1 - t0);
		put(bad ? " errors=1" : " errors=0");
		flush();
	}
}

/* ---------------------------------------------------------------- virtio-scsi */

/* virtio 1.2 §5.6.6: a command request and its response (default 32-byte CDB and
 * 96-byte sense sizes). */
struct vscsi_req {
	uint8_t lun[8];
	uint64_t tag;
	uint8_t task_attr, prio, crn;
	uint8_t cdb[32];
} __attribute__((packed));

struct vscsi_resp {
	uint32_t sense_len, resid;
	uint16_t status_qualifier;
	uint8_t status, response;
	uint8_t sense[96];
} __attribute__((packed));

static struct vscsi_req *vscsi_req;
static struct vscsi_resp *vscsi_resp;
static struct vdev *bench_scsi;

/* A command to target 0 LUN 0 on the request queue (queue 2); returns the SCSI
 * status (0 = GOOD), 0xff if the transport failed. */
static uint8_t scsi_cmd(struct vdev *d, const uint8_t *cdb, int write, void *buf, uint32_t len)
{
	memset(vscsi_req, 0, sizeof(*vscsi_req));
	vscsi_req->lun[0] = 1;
	vscsi_req->lun[2] = 0x40;
	vscsi_req->tag++;
	memcpy(vscsi_req->cdb, cdb, 16);
	vscsi_resp->response = 0xff;
	uint64_t a[3] = { (uint64_t)vscsi_req, 0, 0 };
	uint32_t l[3] = { sizeof(*vscsi_req), 0, 0 };
	uint16_t f[3] = { 0, 0, 0 };
	int n = 2;
	if (!len) {
		a[1] = (uint64_t)vscsi_resp, l[1] = sizeof(*vscsi_resp), f[1] = VRING_DESC_F_WRITE;
	} else if (write) {
		/* Device-readable parts first: the request, then the data out. */
		a[1] = (uint64_t)buf, l[1] = len;
		a[2] = (uint64_t)vscsi_resp, l[2] = sizeof(*vscsi_resp), f[2] = VRING_DESC_F_WRITE;
		n = 3;
	} else {
		a[1] = (uint64_t)vscsi_resp, l[1] = sizeof(*vscsi_resp), f[1] = VRING_DESC_F_WRITE;
		a[2] = (uint64_t)buf, l[2] = len, f[2] = VRING_DESC_F_WRITE;
		n = 3;
	}
	vq_submit(&d->q[2], 2, a, l, f, n);
	if (vq_wait(&d->q[2]) < 0 || vscsi_resp->response != 0)
		return 0xff;
	return vscsi_resp->status;
}

static uint8_t scsi_rw(struct vdev *d, int write, uint64_t sector, void *buf, uint32_t len)
{
	uint8_t cdb[16];
	uint32_t blocks = len / 512;
	memset(cdb, 0, sizeof(cdb));
	cdb[0] = write ? 0x2a : 0x28;	/* WRITE(10) / READ(10) */
	cdb[2] = (uint8_t)(sector >> 24);
	cdb[3] = (uint8_t)(sector >> 16);
	cdb[4] = (uint8_t)(sector >> 8);
	cdb[5] = (uint8_t)sector;
	cdb[7] = (uint8_t)(blocks >> 8);
	cdb[8] = (uint8_t)blocks;
	return scsi_cmd(d, cdb, write, buf, len);
}

/* Brings the adapter up for the benchmark: three queues (control, event, request),
 * then TEST UNIT READY until the unit's power-on UNIT ATTENTION is consumed. */
static void setup_vscsi(struct vdev *d)
{
	if (bench_scsi)
		return;
	vscsi_req = valloc(sizeof(*vscsi_req), 16);
	vscsi_resp = valloc(sizeof(*vscsi_resp), 16);
	int ok = virtio_init(d, 0, 3);
	uint8_t tur[16] = { 0 };
	uint8_t st = 0xff;
	for (int i = 0; ok && i < 4 && st != 0; i++)
		st = scsi_cmd(d, tur, 0, 0, 0);
	result("vscsi", ok && st == 0);
	put("slot=");
	put_dec(d->slot);
	flush();
	if (ok && st == 0)
		bench_scsi = d;
}

/* ---------------------------------------------------------------- virtio-rng */

static void check_vrng(struct vdev *d)
{
	int ok = virtio_init(d, 0, 1);
	uint8_t *buf = valloc(64, 64);
	int64_t n = -1;
	if (ok) {
		uint64_t a[1] = { (uint64_t)buf };
		uint32_t l[1] = { 64 };
		uint16_t f[1] = { VRING_DESC_F_WRITE };
		vq_submit(&d->q[0], 0, a, l, f, 1);
		n = vq_wait(&d->q[0]);
	}
	intx_settle(d, 1);
	int distinct = 0;
	for (int i = 0; i < 64; i++) {
		int seen = 0;
		for (int j = 0; j < i; j++)
			seen |= buf[j] == buf[i];
		distinct += !seen;
	}
	result("vrng", ok && n > 0 && distinct > 16 && (!use_intx || intx_seen(d, 1)));
	put("slot=");
	put_dec(d->slot);
	put(" bytes=");
	put_dec(n < 0 ? 0 : (uint64_t)n);
	put(" distinct=");
	put_dec((uint64_t)distinct);
	put_intx(d, 1);
	flush();
}

/* ---------------------------------------------------------------- virtio-console */

static void check_vcons(struct vdev *d)
{
	static const char msg[] = "OXVIRTIO console says hello\n";
	int ok = virtio_init(d, 0, 2);
	int64_t n = -1;
	if (ok) {
		char *buf = valloc(sizeof(msg), 64);
		memcpy(buf, msg, sizeof(msg) - 1);
		uint64_t a[1] = { (uint64_t)buf };
		uint32_t l[1] = { sizeof(msg) - 1 };
		uint16_t f[1] = { 0 };
		vq_submit(&d->q[1], 1, a, l, f, 1);
		n = vq_wait(&d->q[1]);
	}
	result("vcons", ok && n >= 0);
	put("slot=");
	put_dec(d->slot);
	flush();
}

/* ---------------------------------------------------------------- virtio-net */

#define NET_F_MAC (1ull << 5)
#define NET_F_STATUS (1ull << 16)
#define NET_F_CTRL_VQ (1ull << 17)
#define NET_F_MQ (1ull << 22)
#define NET_HDR 12
#define NET_RX_BUFS 4
#define NET_MAX_PAIRS 3

/* Re-initialises `d` with `pairs` queue pairs and the control queue after them, and
 * tells the device to use them all (VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET); true if it
 * acknowledged. */
static int vnet_multiqueue(struct vdev *d, uint16_t pairs)
{
	if (!virtio_init(d, NET_F_MAC | NET_F_STATUS | NET_F_CTRL_VQ | NET_F_MQ, 2 * pairs + 1))
		return 0;
	if (!(d->features & NET_F_MQ) || r16(d->devcfg + 8) < pairs)
		return 0;
	uint8_t *cmd = valloc(64, 64);
	cmd[0] = 4;	/* class MQ */
	cmd[1] = 0;	/* VQ_PAIRS_SET */
	cmd[2] = (uint8_t)pairs;
	cmd[3] = (uint8_t)(pairs >> 8);
	cmd[4] = 0xff;	/* the ack, written by the device */
	uint64_t a[3] = { (uint64_t)cmd, (uint64_t)cmd + 2, (uint64_t)cmd + 4 };
	uint32_t l[3] = { 2, 2, 1 };
	uint16_t fl[3] = { 0, 0, VRING_DESC_F_WRITE };
	vq_submit(&d->q[2 * pairs], 2 * pairs, a, l, fl, 3);
	return vq_wait(&d->q[2 * pairs]) == 1 && cmd[4] == 0;
}

/* Transmit throughput: `total` bytes of 1514-byte frames, batches of a full queue
 * with one notification each; prints OXBENCH lines around the phase. */
static void bench_vnet(struct vdev *d, uint64_t total, const uint8_t *mac, uint16_t pairs)
{
	uint32_t flen = 1514;
	for (uint16_t p = 0; p < pairs; p++) {
		struct vq *q = &d->q[2 * p + 1];
		uint8_t *frames = valloc((uint64_t)q->size * 2048, 4096);
		for (uint16_t i = 0; i < q->size; i++) {
			uint8_t *f = frames + 2048ull * i;
			memset(f + NET_HDR, 0xff, 6);
			memcpy(f + NET_HDR + 6, mac, 6);
			f[NET_HDR + 12] = 0x88;
			f[NET_HDR + 13] = 0xb5;
			q->desc[i].addr = (uint64_t)f;
			q->desc[i].len = NET_HDR + flen;
			q->desc[i].flags = 0;
		}
	}
	say("vnet-bench", 1, "begin");
	put("OXBENCH vnet begin tx req=");
	put_dec(flen);
	put(" pairs=");
	put_dec(pairs);
	flush();
	uint64_t sent = 0, n = 0;
	while (sent < total) {
		for (uint16_t p = 0; p < pairs; p++) {
			struct vq *q = &d->q[2 * p + 1];
			for (uint16_t i = 0; i < q->size; i++) {
				q->avail->ring[q->avail->idx % q->size] = i;
				mb();
				q->avail->idx++;
			}
			mb();
			w16(q->notify, (uint16_t)(2 * p + 1));
		}
		for (uint16_t p = 0; p < pairs; p++) {
			struct vq *q = &d->q[2 * p + 1];
			vq_wait_idx(q, q->avail->idx);
			q->last_used = q->used->idx;
			sent += (uint64_t)q->size * flen;
			n += q->size;
		}
	}
	put("OXBENCH vnet tx req=");
	put_dec(flen);
	put(" count=");
	put_dec(n);
	put(" errors=0 pairs=");
	put_dec(pairs);
	flush();
}

/* Sends one broadcast frame of ethertype 0x88b5 carrying "OXVNET-G2H", then waits
 * for a frame of that ethertype carrying "OXVNET-H2G" from the host. */
static void check_vnet(struct vdev *d)
{
	if (!virtio_init(d, NET_F_MAC | NET_F_STATUS, 2)) {
		say("vnet", 0, "init failed");
		return;
	}
	uint8_t mac[6];
	for (int i = 0; i < 6; i++)
		mac[i] = r8(d->devcfg + (uint64_t)i);
	uint16_t status = r16(d->devcfg + 6);
	uint64_t bench_mib = cmdline_num("vnetbench", 0);
	if (bench_mib) {
		uint64_t pairs = cmdline_num("vnetpairs", 1);
		if (pairs < 1 || pairs > NET_MAX_PAIRS) {
			say("vnet-bench", 0, "vnetpairs out of range");
			return;
		}
		if (pairs > 1 && !vnet_multiqueue(d, (uint16_t)pairs)) {
			say("vnet-bench", 0, "multiqueue refused");
			return;
		}
		bench_vnet(d, bench_mib << 20, mac, (uint16_t)pairs);
		return;
	}
	struct vq *rx = &d->q[0];
	uint8_t *bufs[NET_RX_BUFS];
	for (int i = 0; i < NET_RX_BUFS; i++) {
		bufs[i] = valloc(2048, 4096);
		rx->desc[i].addr = (uint64_t)bufs[i];
		rx->desc[i].len = 2048;
		rx->desc[i].flags = VRING_DESC_F_WRITE;
		rx->avail->ring[rx->avail->idx % rx->size] = (uint16_t)i;
		mb();
		rx->avail->idx++;
	}
	mb();
	w16(rx->notify, 0);
	uint8_t *f = valloc(NET_HDR + 64, 64);
	memset(f + NET_HDR, 0xff, 6);
	memcpy(f + NET_HDR + 6, mac, 6);
	f[NET_HDR + 12] = 0x88;
	f[NET_HDR + 13] = 0xb5;
	memcpy(f + NET_HDR + 14, "OXVNET-G2H", 10);
	uint64_t a[1] = { (uint64_t)f };
	uint32_t l[1] = { NET_HDR + 60 };
	uint16_t fl[1] = { 0 };
	vq_submit(&d->q[1], 1, a, l, fl, 1);
	int tx = vq_wait(&d->q[1]) >= 0;
	result("vnet-tx", tx);
	put("slot=");
	put_dec(d->slot);
	put(" mac=");
	for (int i = 0; i < 6; i++) {
		char b[4] = { "0123456789abcdef"[mac[i] >> 4], "0123456789abcdef"[mac[i] & 15], i < 5 ? ':' : 0, 0 };
		put(b);
	}
	put(" link=");
	put_dec(status & 1);
	flush();
	int got = 0;
	uint64_t end = rdtsc() + 60ull * 3000000000ull;
	while (!got && rdtsc() < end) {
		if (rx->used->idx == rx->last_used) {
			cpu_relax();
			continue;
		}
		mb();
		uint32_t id = rx->used->ring[rx->last_used % rx->size].id;
		uint32_t len = rx->used->ring[rx->last_used % rx->size].len;
		rx->last_used++;
		uint8_t *p = bufs[id % NET_RX_BUFS] + NET_HDR;
		got = len >= NET_HDR + 24 && p[12] == 0x88 && p[13] == 0xb5 && !memcmp(p + 14, "OXVNET-H2G", 10) &&
		      !memcmp(p, mac, 6);
		rx->avail->ring[rx->avail->idx % rx->size] = (uint16_t)id;
		mb();
		rx->avail->idx++;
		mb();
		w16(rx->notify, 0);
	}
	say("vnet-rx", got, got ? "frame from the host" : "no frame from the host");
}

/* Link state: prints the status field now and after each configuration-change
 * interrupt (MSI-X vector 0x4e, or INTx with the ISR's config bit). */
#define LINK_CONFIG_VEC 0x4e
static void link_line(struct vdev *d, uint64_t changes, int via_intx)
{
	result("vnet-link", 1);
	put("slot=");
	put_dec(d->slot);
	put(" status=");
	put_dec(r16(d->devcfg + 6) & 1);
	put(" changes=");
	put_dec(changes);
	put(" gen=");
	put_dec(r8(d->common + 0x15));
	if (use_intx) {
		put(" intx=");
		put_dec((uint64_t)via_intx);
		put(" gsi=");
		put_dec(d->gsi);
		put(" pin=");
		put_dec(d->pin);
	}
	flush();
}

static void check_vlink(struct vdev *d)
{
	d->config_vec = LINK_CONFIG_VEC;
	if (!virtio_init(d, NET_F_MAC | NET_F_STATUS, 2)) {
		say("vnet-link", 0, "init failed");
		return;
	}
	if (!(d->features & NET_F_STATUS)) {
		say("vnet-link", 0, "no VIRTIO_NET_F_STATUS");
		return;
	}
	uint64_t want_changes = cmdline_num("link_changes", 2);
	link_line(d, 0, 0);
	for (uint64_t n = 1; n <= want_changes; n++) {
		/* Wait (IF=0 between checks, so no interrupt slips past the hlt). */
		for (;;) {
			if (use_intx) {
				if (d->intx_src && (d->intx_src->bits & 2)) {
					d->intx_src->bits &= (uint8_t)~2;
					break;
				}
			} else if (irq_count[LINK_CONFIG_VEC] >= n) {
				break;
			}
			__asm__ volatile("sti; hlt; cli" ::: "memory");
		}
		link_line(d, n, use_intx);
	}
}

/* ---------------------------------------------------------------- virtio-balloon */

/* Waits for the host's target (num_pages), hands that many page frames from
 * 32 MiB up to the inflate queue, and reports the balloon size in `actual`. */
static void check_vballoon(struct vdev *d)
{
	if (!virtio_init(d, 0, 2)) {
		say("vballoon", 0, "init failed");
		return;
	}
	say("vballoon-wait", 1, "waiting for a target");
	uint64_t end = rdtsc() + 60ull * 3000000000ull;
	uint32_t want;
	while (!(want = r32(d->devcfg)) && rdtsc() < end)
		cpu_relax();
	if (!want || want > 8192) {
		result("vballoon", 0);
		put("pages=");
		put_dec(want);
		flush();
		return;
	}
	uint32_t *pfns = valloc(4ull * want, 4096);
	for (uint32_t i = 0; i < want; i++)
		pfns[i] = (32u << 20) / 4096 + i;
	uint64_t a[1] = { (uint64_t)pfns };
	uint32_t l[1] = { 4 * want };
	uint16_t f[1] = { 0 };
	vq_submit(&d->q[0], 0, a, l, f, 1);
	int64_t n = vq_wait(&d->q[0]);
	w32(d->devcfg + 4, want);
	result("vballoon", n >= 0);
	put("pages=");
	put_dec(want);
	flush();
}

/* ---------------------------------------------------------------- virtio-vsock */

struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

#define VS_RX_BUFS 4
static uint8_t *vs_rx[VS_RX_BUFS];
static struct vsock_hdr *vs_tx;
static uint64_t vs_cid;
static uint32_t vs_fwd;

/* Makes receive buffer `i` available (descriptor slot i of the rx queue). */
static void vs_post(struct vdev *d, int i)
{
	struct vq *q = &d->q[0];
	q->desc[i].addr = (uint64_t)vs_rx[i];
	q->desc[i].len = 4096;
	q->desc[i].flags = VRING_DESC_F_WRITE;
	q->desc[i].next = 0;
	q->avail->ring[q->avail->idx % q->size] = (uint16_t)i;
	mb();
	q->avail->idx++;
	mb();
	w16(q->notify, 0);
}

static void vs_send(struct vdev *d, uint16_t op, uint32_t sport, uint32_t dport, const char *data, uint32_t len)
{
	vs_tx->src_cid = vs_cid;
	vs_tx->dst_cid = 2;
	vs_tx->src_port = sport;
	vs_tx->dst_port = dport;
	vs_tx->len = len;
	vs_tx->type = 1;
	vs_tx->op = op;
	vs_tx->flags = op == 4 ? 3 : 0;
	vs_tx->buf_alloc = 65536;
	vs_tx->fwd_cnt = vs_fwd;
	memcpy(vs_tx + 1, data, len);
	uint64_t a[1] = { (uint64_t)vs_tx };
	uint32_t l[1] = { (uint32_t)sizeof(*vs_tx) + len };
	uint16_t f[1] = { 0 };
	vq_submit(&d->q[1], 1, a, l, f, 1);
	vq_wait(&d->q[1]);
}

/* Next packet from the host other than a credit update; copies it to *h and
 * its payload to data (up to 64 bytes). Returns 0 on timeout. */
static int vs_recv(struct vdev *d, struct vsock_hdr *h, char *data)
{
	struct vq *q = &d->q[0];
	for (;;) {
		uint64_t end = rdtsc() + 30ull * 3000000000ull;
		while (q->used->idx == q->last_used) {
			if (rdtsc() > end)
				return 0;
			cpu_relax();
		}
		mb();
		uint32_t id = q->used->ring[q->last_used % q->size].id;
		q->last_used++;
		memcpy(h, vs_rx[id], sizeof(*h));
		uint32_t n = h->len < 64 ? h->len : 64;
		memcpy(data, vs_rx[id] + sizeof(*h), n);
		vs_post(d, (int)id);
		if (h->op == 5)
			vs_fwd += h->len;
		if (h->op != 6)
			return 1;
	}
}

static void check_vsock(struct vdev *d)
{
	if (!virtio_init(d, 0, 3)) {
		say("vsock-connect", 0, "init failed");
		return;
	}
	vs_cid = r32(d->devcfg) | (uint64_t)r32(d->devcfg + 4) << 32;
	vs_tx = valloc(4096, 4096);
	for (int i = 0; i < VS_RX_BUFS; i++) {
		vs_rx[i] = valloc(4096, 4096);
		vs_post(d, i);
	}
	struct vsock_hdr h;
	char data[65];
	/* Guest to host: connect to host port 1234, send, receive. */
	vs_send(d, 1, 40000, 1234, "", 0);
	int ok = vs_recv(d, &h, data) && h.op == 2;
	if (ok) {
		vs_send(d, 5, 40000, 1234, "OXVSOCK-G2H", 11);
		ok = vs_recv(d, &h, data) && h.op == 5 && h.len == 11 && !memcmp(data, "OXVSOCK-H2G", 11);
	}
	result("vsock-connect", ok);
	put("cid=");
	put_dec(vs_cid);
	put(" op=");
	put_dec(h.op);
	flush();
	if (!ok)
		return;
	vs_send(d, 4, 40000, 1234, "", 0);
	/* Host to guest: accept a connection on port 5000 and greet. */
	say("vsock-listen", 1, "port=5000");
	ok = 0;
	while (vs_recv(d, &h, data)) {
		if (h.op == 1 && h.dst_port == 5000) {
			ok = 1;
			break;
		}
	}
	if (ok) {
		uint32_t peer = h.src_port;
		vs_send(d, 2, 5000, peer, "", 0);
		vs_send(d, 5, 5000, peer, "OXVSOCK-ACC", 11);
	}
	say("vsock-accept", ok, ok ? "greeted" : "no connection request");
}

/* ---------------------------------------------------------------- entry */

static struct vdev vdevs[32];

static void check_virtio(void)
{
	lapic_enable();
	halt_wait = cmdline_num("vblkbench", 0) || cmdline_num("vnetbench", 0) ||
		    cmdline_num("vscsibench", 0);
	use_intx = want("intx");
	/* Up to 32 requests of 3 descriptors in flight: 128-entry rings. */
	uint64_t depth = cmdline_num("vblkdepth", 0);
	if (depth > 32)
		depth = 32;
	if (depth)
		vq_size = VQ_MAX;
	if (use_intx && !acpi.found) {
		/* The IO-APIC's address comes from the MADT. */
		acpi_verify = 0;
		check_acpi();
		acpi_verify = 1;
	}
	if (use_intx) {
		/* A slow LAPIC timer wakes the sti;hlt waits, so a lost interrupt ends in a
		 * timeout line rather than a hang. */
		lapic_write(0x3e0, 0x3);
		lapic_write(0x320, 0x40 | (1 << 17));
		lapic_write(0x380, 125000000);	/* 2 s */
	}
	int found = 0;
	for (uint8_t s = 1; s < 32; s++) {
		uint32_t id = pci_read32(s, 0, 0);
		if ((id & 0xffff) != 0x1af4 || (id >> 16) < 0x1040)
			continue;
		struct vdev *d = &vdevs[s];
		if (!virtio_probe(d, s)) {
			result("virtio", 0);
			put("slot=");
			put_dec(s);
			put(" capabilities missing");
			flush();
			continue;
		}
		found++;
		switch (d->id - 0x1040) {
		case 2:
			check_vblk(d);
			break;
		case 4:
			check_vrng(d);
			break;
		case 3:
			check_vcons(d);
			break;
		case 1:
			if (want("link"))
				check_vlink(d);
			else if (want("net"))
				check_vnet(d);
			break;
		case 5:
			if (want("balloon"))
				check_vballoon(d);
			break;
		case 19:
			if (want("vsock"))
				check_vsock(d);
			break;
		case 8:
			if (cmdline_num("vscsibench", 0))
				setup_vscsi(d);
			break;
		default:
			break;
		}
	}
	result("virtio", found > 0);
	put("devices=");
	put_dec((uint64_t)found);
	flush();
	if (use_intx)
		lapic_write(0x320, 1 << 16);	/* timer off again */
	uint64_t mib = cmdline_num("vblkbench", 0);
	if (mib && bench_disk && depth) {
		bench_blk_depth(bench_disk, mib << 20, 1u << 20, (uint16_t)depth, 0);
		bench_blk_depth(bench_disk, mib << 20 > (4u << 20) ? 4u << 20 : mib << 20, 4096, (uint16_t)depth, 1);
	} else if (mib && bench_disk) {
		bench_blk(bench_disk, mib << 20, 1u << 20, blk_rw_data);
		bench_blk(bench_disk, mib << 20 > (4u << 20) ? 4u << 20 : mib << 20, 4096, blk_rw_data);
	}
	mib = cmdline_num("vscsibench", 0);
	if (mib && bench_scsi) {
		bench_blk(bench_scsi, mib << 20, 1u << 20, scsi_rw);
		bench_blk(bench_scsi, mib << 20 > (4u << 20) ? 4u << 20 : mib << 20, 4096, scsi_rw);
	}
}
