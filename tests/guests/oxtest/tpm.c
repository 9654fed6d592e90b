/*
 * oxtest guest: a TPM 2.0 on the CRB interface, found the way an OS finds it (the ACPI
 * TPM2 table and the DSDT's MSFT0101 device) and driven the way Linux's tpm_crb does:
 * request locality 0, cmdReady, command into the buffer, START, poll START, response.
 * With start method 6 (no control area) it is the TIS FIFO interface instead, driven
 * as Linux's tpm_tis does: ACCESS requestUse, STS commandReady, the command byte by
 * byte into DATA_FIFO while STS.expect stays set, STS tpmGo, poll STS.dataAvail, the
 * response out of the FIFO.
 * Commands: TPM2_Startup(SU_CLEAR) (TPM_RC_INITIALIZE, "already started", is fine),
 * TPM2_GetRandom(16), TPM2_PCR_Read(sha256, PCR 0).
 *
 *   OXTEST tpm ok table start=7 ctrl=0xfed40040 dsdt=MSFT0101   (TIS: start=6 ctrl=0x0)
 *   OXTEST tpm ok startup rc=0x0
 *   OXTEST tpm ok getrandom rc=0x0 bytes=16 data=<hex>
 *   OXTEST tpm ok pcrread rc=0x0 digests=1 size=32 pcr0=<hex>
 *
 * Included by guest.c (needs the ACPI walk of oxtest/acpi.c: run with "acpi,tpm").
 */

#define CRB_BASE 0xfed40000ull
#define CRB_LOC_STATE 0x00
#define CRB_LOC_CTRL 0x08
#define CRB_LOC_STS 0x0c
#define CRB_INTF_ID 0x30
#define CRB_CTRL_REQ 0x40
#define CRB_CTRL_STS 0x44
#define CRB_CTRL_START 0x4c
#define CRB_CMD_SIZE 0x58
#define CRB_CMD_LADDR 0x5c
#define CRB_RSP_SIZE 0x64
#define CRB_RSP_ADDR 0x68

#define TIS_ACCESS 0x00
#define TIS_STS 0x18
#define TIS_DATA_FIFO 0x24
#define TIS_DID_VID 0xf00
#define TIS_STS_EXPECT 0x08
#define TIS_STS_DATA_AVAIL 0x10
#define TIS_STS_GO 0x20
#define TIS_STS_COMMAND_READY 0x40
#define TIS_STS_VALID 0x80

static uint8_t tpm_rsp[512];
/* The interface the TPM2 table named: 0 CRB, 1 TIS. */
static int tpm_tis;

static uint32_t tpm_be32(const uint8_t *p) { return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3]; }
static uint16_t tpm_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

/* Polls `reg` until (value & mask) == want, for up to `us` microseconds. */
static int crb_wait(uint32_t reg, uint32_t mask, uint32_t want, uint64_t us)
{
	uint64_t end = rdtsc() + us * 3000;
	while (rdtsc() < end) {
		if ((mmio_read32(CRB_BASE + reg) & mask) == want)
			return 1;
		cpu_relax();
	}
	return 0;
}

static uint8_t mmio_read8(uint64_t a) { return *(volatile uint8_t *)a; }
static void mmio_write8(uint64_t a, uint8_t v) { *(volatile uint8_t *)a = v; }

/* TIS: runs one command at locality 0; returns the response length (0: none). */
static uint32_t tis_command(const uint8_t *cmd, uint32_t len)
{
	mmio_write8(CRB_BASE + TIS_STS, TIS_STS_COMMAND_READY);
	if (!crb_wait(TIS_STS, TIS_STS_COMMAND_READY, TIS_STS_COMMAND_READY, 1000000))
		return 0;
	for (uint32_t i = 0; i < len; i++) {
		mmio_write8(CRB_BASE + TIS_DATA_FIFO, cmd[i]);
		uint32_t want = TIS_STS_VALID | (i + 1 < len ? TIS_STS_EXPECT : 0);
		if ((mmio_read32(CRB_BASE + TIS_STS) & (TIS_STS_VALID | TIS_STS_EXPECT)) != want)
			return 0;
	}
	mmio_write8(CRB_BASE + TIS_STS, TIS_STS_GO);
	uint32_t avail = TIS_STS_VALID | TIS_STS_DATA_AVAIL;
	if (!crb_wait(TIS_STS, avail, avail, 20000000))
		return 0;
	uint32_t n = 0;
	while (n < sizeof(tpm_rsp) && (mmio_read32(CRB_BASE + TIS_STS) & TIS_STS_DATA_AVAIL))
		tpm_rsp[n++] = mmio_read8(CRB_BASE + TIS_DATA_FIFO);
	mmio_write8(CRB_BASE + TIS_STS, TIS_STS_COMMAND_READY);
	return n >= 10 && n == tpm_be32(tpm_rsp + 2) ? n : 0;
}

/* Runs one command; returns the response length (0: no response). */
static uint32_t tpm_command(const uint8_t *cmd, uint32_t len)
{
	if (tpm_tis)
		return tis_command(cmd, len);
	uint64_t cmd_addr = mmio_read32(CRB_BASE + CRB_CMD_LADDR);
	uint64_t rsp_addr = mmio_read32(CRB_BASE + CRB_RSP_ADDR) | ((uint64_t)mmio_read32(CRB_BASE + CRB_RSP_ADDR + 4) << 32);
	uint32_t rsp_size = mmio_read32(CRB_BASE + CRB_RSP_SIZE);
	volatile uint8_t *c = (volatile uint8_t *)cmd_addr;
	for (uint32_t i = 0; i < len; i++)
		c[i] = cmd[i];
	mmio_write32(CRB_BASE + CRB_CTRL_START, 1);
	/* swtpm answers in milliseconds; generous for a loaded, emulated host. */
	if (!crb_wait(CRB_CTRL_START, 1, 0, 20000000))
		return 0;
	volatile uint8_t *r = (volatile uint8_t *)rsp_addr;
	for (uint32_t i = 0; i < 10; i++)
		tpm_rsp[i] = r[i];
	uint32_t n = tpm_be32(tpm_rsp + 2);
	if (n < 10 || n > sizeof(tpm_rsp) || n > rsp_size)
		return 0;
	for (uint32_t i = 10; i < n; i++)
		tpm_rsp[i] = r[i];
	return n;
}

static void put_bytes(const uint8_t *p, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		char h[3] = { "0123456789abcdef"[p[i] >> 4], "0123456789abcdef"[p[i] & 15], 0 };
		put(h);
	}
}

/* The TPM2 table from the XSDT, or 0. */
static const uint8_t *tpm2_table(void)
{
	const char *src;
	uint64_t rsdp = find_rsdp(&src);
	if (!rsdp || ((const uint8_t *)rsdp)[15] < 2)
		return 0;
	const uint8_t *x = (const uint8_t *)*(const uint64_t *)(rsdp + 24);
	uint32_t len = *(const uint32_t *)(x + 4);
	for (uint32_t off = 36; off + 8 <= len; off += 8) {
		const uint8_t *t = (const uint8_t *)*(const uint64_t *)(x + off);
		if (!memcmp(t, "TPM2", 4))
			return t;
	}
	return 0;
}

static int dsdt_has(const char *needle)
{
	if (!acpi.dsdt)
		return 0;
	const uint8_t *d = (const uint8_t *)acpi.dsdt;
	uint32_t len = *(const uint32_t *)(d + 4);
	size_t n = str_len(needle);
	for (uint32_t i = 0; i + n <= len; i++)
		if (!memcmp(d + i, needle, n))
			return 1;
	return 0;
}

static void check_tpm(void)
{
	const uint8_t *t = tpm2_table();
	if (!t) {
		say("tpm", 0, "no TPM2 table in the XSDT");
		return;
	}
	uint64_t ctrl = *(const uint64_t *)(t + 40);
	uint32_t start = *(const uint32_t *)(t + 48);
	int has_dev = dsdt_has("MSFT0101");
	tpm_tis = start == 6;
	int table_ok = tpm_tis ? ctrl == 0 : start == 7 && ctrl == CRB_BASE + CRB_CTRL_REQ;
	result("tpm", table_ok && has_dev);
	put("table start=");
	put_dec(start);
	put(" ctrl=");
	put_hex(ctrl);
	put(has_dev ? " dsdt=MSFT0101" : " dsdt=no-MSFT0101");
	flush();

	if (tpm_tis) {
		uint32_t id = mmio_read32(CRB_BASE + TIS_DID_VID);
		mmio_write8(CRB_BASE + TIS_ACCESS, 0x02); /* requestUse */
		if (id == 0 || id == 0xffffffff || !crb_wait(TIS_ACCESS, 0xa0, 0xa0, 1000000)) {
			result("tpm", 0);
			put("TIS: DID_VID ");
			put_hex(id);
			put(", locality 0 not active");
			flush();
			return;
		}
	} else {
		uint32_t intf = mmio_read32(CRB_BASE + CRB_INTF_ID);
		if ((intf & 0xf) != 1) {
			result("tpm", 0);
			put("INTF_ID ");
			put_hex(intf);
			put(" is not a CRB interface");
			flush();
			return;
		}
		mmio_write32(CRB_BASE + CRB_LOC_CTRL, 1); /* requestAccess */
		if (!crb_wait(CRB_LOC_STATE, 0x82, 0x82, 1000000) || !(mmio_read32(CRB_BASE + CRB_LOC_STS) & 1)) {
			say("tpm", 0, "locality 0 not granted");
			return;
		}
		mmio_write32(CRB_BASE + CRB_CTRL_REQ, 1); /* cmdReady */
		if (!crb_wait(CRB_CTRL_STS, 2, 0, 1000000)) {
			say("tpm", 0, "TPM stays idle after cmdReady");
			return;
		}
	}

	/* TPM2_Startup(TPM_SU_CLEAR) */
	static const uint8_t startup[] = { 0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0 };
	uint32_t n = tpm_command(startup, sizeof(startup));
	uint32_t rc = n ? tpm_be32(tpm_rsp + 6) : 0xffffffff;
	result("tpm", n == 10 && (rc == 0 || rc == 0x100));
	put("startup rc=");
	put_hex(rc);
	flush();

	/* TPM2_GetRandom(16) */
	static const uint8_t getrandom[] = { 0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 16 };
	n = tpm_command(getrandom, sizeof(getrandom));
	rc = n ? tpm_be32(tpm_rsp + 6) : 0xffffffff;
	uint16_t got = n >= 12 ? tpm_be16(tpm_rsp + 10) : 0;
	result("tpm", rc == 0 && got == 16 && n == 12u + got);
	put("getrandom rc=");
	put_hex(rc);
	put(" bytes=");
	put_dec(got);
	if (got == 16 && n >= 28) {
		put(" data=");
		put_bytes(tpm_rsp + 12, 16);
	}
	flush();

	/* TPM2_PCR_Read: one selection, TPM_ALG_SHA256 (0x000b), 3 bytes of bitmap, PCR 0. */
	static const uint8_t pcrread[] = { 0x80, 0x01, 0, 0, 0, 20, 0, 0, 0x01, 0x7e,
					   0, 0, 0, 1, 0, 0x0b, 3, 1, 0, 0 };
	n = tpm_command(pcrread, sizeof(pcrread));
	rc = n ? tpm_be32(tpm_rsp + 6) : 0xffffffff;
	/* updateCounter(4), pcrSelectionOut (count 4 + 6), pcrValues: count(4), TPM2B size(2), digest */
	uint32_t digests = n >= 30 ? tpm_be32(tpm_rsp + 24) : 0;
	uint16_t size = n >= 30 ? tpm_be16(tpm_rsp + 28) : 0;
	result("tpm", rc == 0 && digests == 1 && size == 32 && n == 30u + size);
	put("pcrread rc=");
	put_hex(rc);
	put(" digests=");
	put_dec(digests);
	put(" size=");
	put_dec(size);
	if (size == 32 && n >= 62) {
		put(" pcr0=");
		put_bytes(tpm_rsp + 30, 32);
	}
	flush();
	if (tpm_tis) {
		mmio_write8(CRB_BASE + TIS_ACCESS, 0x20); /* relinquish */
		return;
	}
	mmio_write32(CRB_BASE + CRB_CTRL_REQ, 2); /* goIdle */
	mmio_write32(CRB_BASE + CRB_LOC_CTRL, 2); /* relinquish */
}
