/*
 * oxtest guest: the fw_cfg contract SeaBIOS and OVMF rely on (QEMU docs/specs/fw_cfg.rst):
 * the signature and id through the selector/data ports, the DMA register's signature,
 * the file directory, etc/e820 read by DMA and equal to the map the loader gave us,
 * DMA skip and select, and the error bit for a write and for a bad address.
 * Included by guest.c: the guest is one translation unit.
 */

/* ---------------------------------------------------------------- fw_cfg */

#define FW_CFG_SEL	0x510
#define FW_CFG_DATA	0x511
#define FW_CFG_DMA_HI	0x514
#define FW_CFG_DMA_LO	0x518

#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_ID	0x01
#define FW_CFG_FILE_DIR	0x19

#define FW_CFG_DMA_ERROR  0x01
#define FW_CFG_DMA_READ   0x02
#define FW_CFG_DMA_SKIP   0x04
#define FW_CFG_DMA_SELECT 0x08
#define FW_CFG_DMA_WRITE  0x10

/* FWCfgDmaAccess, big-endian fields */
static volatile struct {
	uint32_t control, length;
	uint64_t address;
} __attribute__((packed, aligned(16))) fwcfg_req;

static uint8_t fwcfg_buf[4096];
static char fwcfg_names[512];	/* the directory's names, comma-separated */

static void fwcfg_select(uint16_t key)
{
	outw(FW_CFG_SEL, key);
}

static void fwcfg_read(void *buf, uint32_t n)
{
	uint8_t *p = buf;
	while (n--)
		*p++ = inb(FW_CFG_DATA);
}

static uint32_t be32(uint32_t v)
{
	return __builtin_bswap32(v);
}

/* One DMA transfer (the structure and buffer are identity-mapped); returns the control
 * word the device stored back: 0 when done, the error bit on failure. */
static uint32_t fwcfg_dma(uint32_t control, uint64_t addr, uint32_t len)
{
	fwcfg_req.control = be32(control);
	fwcfg_req.length = be32(len);
	fwcfg_req.address = __builtin_bswap64(addr);
	uint64_t at = (uint64_t)&fwcfg_req;
	__asm__ volatile("" ::: "memory");
	outl(FW_CFG_DMA_HI, be32((uint32_t)(at >> 32)));
	outl(FW_CFG_DMA_LO, be32((uint32_t)at));
	/* The device wrote guest memory behind the compiler's back. */
	__asm__ volatile("" ::: "memory");
	/* The transfer completes within the port write; wait as firmware does anyway. */
	for (int i = 0; i < 1000 && (be32(fwcfg_req.control) & ~FW_CFG_DMA_ERROR); i++)
		cpu_relax();
	return be32(fwcfg_req.control);
}

static void check_fwcfg(void)
{
	const char *why = 0;
	uint8_t sig[4], dma_sig[8];
	uint32_t id = 0, nfiles = 0, e820_key = 0, e820_size = 0, n = 0;

	fwcfg_select(FW_CFG_SIGNATURE);
	fwcfg_read(sig, 4);
	if (memcmp(sig, "QEMU", 4))
		why = "signature is not QEMU";
	fwcfg_select(FW_CFG_ID);
	fwcfg_read(&id, 4);
	if (!why && (id & 3) != 3)
		why = "id lacks the traditional or the DMA bit";
	uint32_t hi = inl(FW_CFG_DMA_HI), lo = inl(FW_CFG_DMA_LO);
	memcpy(dma_sig, &hi, 4);
	memcpy(dma_sig + 4, &lo, 4);
	if (!why && memcmp(dma_sig, "QEMU CFG", 8))
		why = "DMA register does not read QEMU CFG";

	/* The directory, through the ports: BE count, then {BE size, BE select, 0, name[56]}. */
	fwcfg_select(FW_CFG_FILE_DIR);
	fwcfg_read(&nfiles, 4);
	nfiles = be32(nfiles);
	for (uint32_t i = 0; i < nfiles && i < 64; i++) {
		struct {
			uint32_t size;
			uint16_t select, reserved;
			char name[56];
		} __attribute__((packed)) f;
		fwcfg_read(&f, sizeof(f));
		f.name[55] = 0;
		size_t have = str_len(fwcfg_names), len = str_len(f.name);
		if (have + len + 2 < sizeof(fwcfg_names)) {
			if (have)
				fwcfg_names[have++] = ',';
			memcpy(fwcfg_names + have, f.name, len + 1);
		}
		if (!memcmp(f.name, "etc/e820", 9)) {
			e820_size = be32(f.size);
			e820_key = __builtin_bswap16(f.select);
		}
	}
	if (!why && !e820_key)
		why = "no etc/e820 in the directory";
	if (!why && (e820_size % 20 || e820_size > sizeof(fwcfg_buf)))
		why = "etc/e820 size is not a multiple of 20";

	/* etc/e820 by DMA, selected in the same request; equal to the boot map. */
	if (!why) {
		memset(fwcfg_buf, 0xaa, sizeof(fwcfg_buf));
		uint32_t c = fwcfg_dma((e820_key << 16) | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ,
				       (uint64_t)fwcfg_buf, e820_size);
		n = e820_size / 20;
		if (c)
			why = "DMA read of etc/e820 failed";
		else if ((int)n != e820_n)
			why = "etc/e820 has a different entry count than the boot map";
		for (uint32_t i = 0; !why && i < n; i++) {
			struct e820 e;
			memcpy(&e.addr, fwcfg_buf + i * 20, 8);
			memcpy(&e.size, fwcfg_buf + i * 20 + 8, 8);
			memcpy(&e.type, fwcfg_buf + i * 20 + 16, 4);
			if (e.addr != e820[i].addr || e.size != e820[i].size || e.type != e820[i].type)
				why = "etc/e820 differs from the boot map";
		}
	}

	/* Select + skip, then a read that runs past the end: zeros after "MU". */
	if (!why) {
		uint32_t c = fwcfg_dma((FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_SELECT | FW_CFG_DMA_SKIP, 0, 2);
		memset(fwcfg_buf, 0xaa, 8);
		if (!c)
			c = fwcfg_dma(FW_CFG_DMA_READ, (uint64_t)fwcfg_buf, 4);
		if (c || memcmp(fwcfg_buf, "MU\0\0", 4) || fwcfg_buf[4] != 0xaa)
			why = "DMA skip/select/read past the end misbehaved";
	}

	/* Writes are refused with the error bit; so is a buffer outside RAM. */
	if (!why) {
		uint32_t c = fwcfg_dma((e820_key << 16) | FW_CFG_DMA_SELECT | FW_CFG_DMA_WRITE,
				       (uint64_t)fwcfg_buf, 4);
		if (c != FW_CFG_DMA_ERROR)
			why = "DMA write did not report an error";
	}
	if (!why) {
		uint32_t c = fwcfg_dma((FW_CFG_SIGNATURE << 16) | FW_CFG_DMA_SELECT | FW_CFG_DMA_READ,
				       1ull << 46, 4);
		if (c != FW_CFG_DMA_ERROR)
			why = "DMA read to an address outside RAM did not report an error";
	}

	result("fwcfg", !why);
	put("sig=");
	put_sig(sig);
	put(" id=");
	put_hex(id);
	put(" files=");
	put_dec(nfiles);
	put(" names=");
	put(fwcfg_names);
	put(" e820_key=");
	put_hex(e820_key);
	put(" e820_entries=");
	put_dec(n);
	put(" boot_entries=");
	put_dec((uint64_t)e820_n);
	if (why) {
		put(" reason=");
		put(why);
	}
	flush();
}
