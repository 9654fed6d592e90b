/*
 * oxtest guest: checks the guest-visible machine contract the way an OS does and
 * reports on COM1, one line per result:
 *
 *   OXTEST READY proto=<pvh|bzimage>      as early as possible
 *   OXTEST <check> ok <details>           a check passed
 *   OXTEST <check> FAIL <details>         a check failed
 *   OXTEST DONE                           all requested checks ran
 *
 * The kernel command line says what to do:
 *   oxtest=initrd,cpuid,kvmclock,e820,acpi,rtc,serial,smp,highmem,poweroff|reset|acpibutton|count|halt|int3|pvpanic
 *   mem_expect=<MiB>  cpus_expect=<N>  reset_method=acpi|kbd|cf9|triple  ticks=<N>
 *   quiet   (print only READY, DONE, failures and the final action's lines)
 *
 * Guest code runs through KVM's instruction emulator on the development machines
 * (hundreds of times slower than hardware), so every check does as little as it can.
 * Instructions that emulator cannot run (int3, xsave/xrstor, fwait, cmpxchg16b) are
 * not used: the C code is built with -mgeneral-regs-only.
 */
#include <stdint.h>
#include <stddef.h>

#define PROTO_PVH  1
#define PROTO_BZ32 2
#define PROTO_BZ64 3

#define COM1 0x3f8
#define PVH_MAGIC 0x336ec578u

/* ---------------------------------------------------------------- basics */

void *memset(void *d, int c, size_t n)
{
	uint8_t *p = d;
	while (n--)
		*p++ = (uint8_t)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	uint8_t *p = d;
	const uint8_t *q = s;
	while (n--)
		*p++ = *q++;
	return d;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *p = a, *q = b;
	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

static size_t str_len(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) { uint8_t v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint16_t inw(uint16_t port) { uint16_t v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline uint32_t inl(uint16_t port) { uint32_t v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

static inline uint32_t mmio_read32(uint64_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write32(uint64_t a, uint32_t v) { *(volatile uint32_t *)a = v; }

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

static void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

/* Busy wait; assumes a TSC of about 3 GHz (only the order of magnitude matters). */
static void delay_us(uint64_t us)
{
	uint64_t end = rdtsc() + us * 3000;
	while (rdtsc() < end)
		cpu_relax();
}

/* ---------------------------------------------------------------- serial output */

static void serial_init(void)
{
	outb(COM1 + 1, 0x00);	/* no interrupts */
	outb(COM1 + 3, 0x80);	/* DLAB */
	outb(COM1 + 0, 0x01);	/* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03);	/* 8n1 */
	outb(COM1 + 4, 0x03);	/* DTR | RTS */
}

static void serial_putc(char c)
{
	for (int i = 0; i < 1000 && !(inb(COM1 + 5) & 0x20); i++)
		cpu_relax();
	outb(COM1, (uint8_t)c);
}

/* A line is assembled here and written with one call: only the BSP prints. */
static char line[1024];
static size_t line_len;

static void put(const char *s)
{
	while (*s && line_len < sizeof(line) - 2)
		line[line_len++] = *s++;
}

static void put_dec(uint64_t v)
{
	char b[24];
	int i = 0;
	do {
		b[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i--) {
		char c[2] = { b[i], 0 };
		put(c);
	}
}

static void put_hex(uint64_t v)
{
	char b[20];
	int i = 0;
	do {
		b[i++] = "0123456789abcdef"[v & 15];
		v >>= 4;
	} while (v);
	put("0x");
	while (i--) {
		char c[2] = { b[i], 0 };
		put(c);
	}
}

static void put_sig(const uint8_t *sig)
{
	char c[5] = { (char)sig[0], (char)sig[1], (char)sig[2], (char)sig[3], 0 };
	for (int i = 0; i < 4; i++)
		if (c[i] < 0x20 || c[i] > 0x7e)
			c[i] = '?';
	put(c);
}

/* `quiet` on the command line: only READY, DONE, failures and the final action's lines. */
static int quiet;

static void flush(void)
{
	if (quiet && line_len > 7 && memcmp(line, "OXTEST DONE", 11) && memcmp(line, "OXTEST READY", 12)) {
		int keep = 0;
		for (size_t i = 0; i + 6 <= line_len; i++)
			if (!memcmp(line + i, " FAIL ", 6) || !memcmp(line + i, " tick ", 6) ||
			    !memcmp(line + i, " trying ", 8) || !memcmp(line + i, " armed ", 7))
				keep = 1;
		if (!keep) {
			line_len = 0;
			return;
		}
	}
	line[line_len++] = '\n';
	for (size_t i = 0; i < line_len; i++)
		serial_putc(line[i]);
	line_len = 0;
}

/* Starts a result line: "OXTEST <check> ok " or "OXTEST <check> FAIL ". */
static int failures;
static void result(const char *check, int ok)
{
	put("OXTEST ");
	put(check);
	put(ok ? " ok " : " FAIL ");
	if (!ok)
		failures++;
}

static void say(const char *check, int ok, const char *text)
{
	result(check, ok);
	put(text);
	flush();
}

/* ---------------------------------------------------------------- boot information */

struct e820 {
	uint64_t addr, size;
	uint32_t type;
};

#define MAX_E820 128
static struct e820 e820[MAX_E820];
static int e820_n;
static char cmdline[2048];
static uint64_t boot_rsdp;	/* RSDP address handed over by the loader, 0 if none */
static uint64_t initrd_addr, initrd_size;	/* first PVH module / bzImage ramdisk */
static int boot_proto_seen;

static void copy_cmdline(uint64_t addr)
{
	if (!addr)
		return;
	const char *s = (const char *)addr;
	size_t i = 0;
	while (i < sizeof(cmdline) - 1 && s[i]) {
		cmdline[i] = s[i];
		i++;
	}
	cmdline[i] = 0;
}

/* Value of "key=" on the command line, copied into out; 0 if absent. */
static int cmdline_get(const char *key, char *out, size_t outsz)
{
	size_t kl = str_len(key);
	const char *p = cmdline;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *tok = p;
		while (*p && *p != ' ')
			p++;
		if ((size_t)(p - tok) > kl && !memcmp(tok, key, kl) && tok[kl] == '=') {
			size_t n = (size_t)(p - tok) - kl - 1;
			if (n >= outsz)
				n = outsz - 1;
			memcpy(out, tok + kl + 1, n);
			out[n] = 0;
			return 1;
		}
	}
	return 0;
}

static uint64_t cmdline_num(const char *key, uint64_t dflt)
{
	char v[32];
	if (!cmdline_get(key, v, sizeof(v)))
		return dflt;
	uint64_t n = 0;
	for (char *p = v; *p >= '0' && *p <= '9'; p++)
		n = n * 10 + (uint64_t)(*p - '0');
	return n;
}

static char oxtest[256];
static int want(const char *check)
{
	size_t cl = str_len(check);
	const char *p = oxtest;
	while (*p) {
		const char *tok = p;
		while (*p && *p != ',')
			p++;
		if ((size_t)(p - tok) == cl && !memcmp(tok, check, cl))
			return 1;
		if (*p == ',')
			p++;
	}
	return 0;
}

/* Reads the boot information of whichever protocol entered us; returns the name. */
static const char *read_boot_info(int proto, uint64_t info)
{
	if (proto == PROTO_PVH) {
		const uint8_t *si = (const uint8_t *)info;
		uint32_t magic = *(const uint32_t *)(si + 0);
		uint32_t version = *(const uint32_t *)(si + 4);
		result("boot", magic == PVH_MAGIC);
		put("protocol=pvh start_info=");
		put_hex(info);
		put(" magic=");
		put_hex(magic);
		put(" version=");
		put_dec(version);
		flush();
		if (magic != PVH_MAGIC)
			return "pvh";
		copy_cmdline(*(const uint64_t *)(si + 24));
		boot_rsdp = *(const uint64_t *)(si + 32);
		if (*(const uint32_t *)(si + 12)) {	/* nr_modules: hvm_modlist_entry {paddr, size, ...} */
			const uint8_t *mod = (const uint8_t *)*(const uint64_t *)(si + 16);
			initrd_addr = *(const uint64_t *)(mod + 0);
			initrd_size = *(const uint64_t *)(mod + 8);
		}
		if (version >= 1) {
			const uint8_t *mm = (const uint8_t *)*(const uint64_t *)(si + 40);
			uint32_t n = *(const uint32_t *)(si + 48);
			for (uint32_t i = 0; i < n && e820_n < MAX_E820; i++, mm += 24) {
				e820[e820_n].addr = *(const uint64_t *)(mm + 0);
				e820[e820_n].size = *(const uint64_t *)(mm + 8);
				e820[e820_n].type = *(const uint32_t *)(mm + 16);
				e820_n++;
			}
		}
		return "pvh";
	}
	const uint8_t *bp = (const uint8_t *)info;
	uint32_t hdr_magic = *(const uint32_t *)(bp + 0x202);
	uint16_t version = *(const uint16_t *)(bp + 0x206);
	result("boot", hdr_magic == 0x53726448);
	put("protocol=bzimage entry=");
	put(proto == PROTO_BZ64 ? "64" : "32");
	put(" boot_params=");
	put_hex(info);
	put(" boot_protocol=");
	put_hex(version);
	put(" type_of_loader=");
	put_hex(bp[0x210]);
	flush();
	uint64_t cl = *(const uint32_t *)(bp + 0x228) | ((uint64_t)*(const uint32_t *)(bp + 0x0c8) << 32);
	copy_cmdline(cl);
	boot_rsdp = *(const uint64_t *)(bp + 0x070);
	initrd_addr = *(const uint32_t *)(bp + 0x218) | ((uint64_t)*(const uint32_t *)(bp + 0x0c0) << 32);
	initrd_size = *(const uint32_t *)(bp + 0x21c) | ((uint64_t)*(const uint32_t *)(bp + 0x0c4) << 32);
	uint8_t n = bp[0x1e8];
	const uint8_t *t = bp + 0x2d0;
	for (int i = 0; i < n && e820_n < MAX_E820; i++, t += 20) {
		e820[e820_n].addr = *(const uint64_t *)(t + 0);
		e820[e820_n].size = *(const uint64_t *)(t + 8);
		e820[e820_n].type = *(const uint32_t *)(t + 16);
		e820_n++;
	}
	return "bzimage";
}

/* ---------------------------------------------------------------- e820 */

static uint64_t ram_total, ram_end, ram_above_4g;

static int e820_is_ram(uint64_t a, uint64_t len)
{
	for (int i = 0; i < e820_n; i++)
		if (e820[i].type == 1 && a >= e820[i].addr && a + len <= e820[i].addr + e820[i].size)
			return 1;
	return 0;
}

/* Sorts the map by address and drops empty entries, as an OS does before using it. */
static int e820_sanitize(void)
{
	int sorted = 1, n = 0;
	for (int i = 0; i < e820_n; i++)
		if (e820[i].size)
			e820[n++] = e820[i];
	e820_n = n;
	for (int i = 1; i < e820_n; i++) {
		struct e820 e = e820[i];
		int j = i - 1;
		if (e.addr < e820[j].addr)
			sorted = 0;
		while (j >= 0 && e820[j].addr > e.addr) {
			e820[j + 1] = e820[j];
			j--;
		}
		e820[j + 1] = e;
	}
	return sorted;
}

static int e820_sorted = 1;

static void check_e820(void)
{
	int ok = e820_n > 0;
	const char *why = e820_n ? "" : "no e820 map";
	ram_total = ram_end = ram_above_4g = 0;
	for (int i = 0; i < e820_n; i++) {
		struct e820 *e = &e820[i];
		put("OXTEST e820entry ");
		put_hex(e->addr);
		put(" ");
		put_hex(e->addr + e->size);
		put(" type=");
		put_dec(e->type);
		flush();
		if (i && e->addr < e820[i - 1].addr + e820[i - 1].size) {
			ok = 0;
			why = "entries overlap";
		}
		if (e->type != 1)
			continue;
		ram_total += e->size;
		if (e->addr + e->size > ram_end)
			ram_end = e->addr + e->size;
		if (e->addr + e->size > (1ull << 32))
			ram_above_4g += e->addr + e->size - (e->addr > (1ull << 32) ? e->addr : (1ull << 32));
		if (e->addr < 0x100000 && e->addr + e->size > 0xa0000) {
			ok = 0;
			why = "RAM overlaps the legacy hole 0xa0000-0x100000";
		}
		if (e->addr < (1ull << 32) && e->addr + e->size > 0xfec00000ull) {
			ok = 0;
			why = "RAM overlaps the IOAPIC/LAPIC range below 4 GiB";
		}
	}
	if (ok && !e820_is_ram(0x100000, 0x100000)) {
		ok = 0;
		why = "no RAM at 1 MiB";
	}
	uint64_t expect = cmdline_num("mem_expect", 0) << 20;
	if (ok && expect) {
		/* All RAM but the legacy hole and what the VMM keeps for its tables. */
		if (ram_total > expect || ram_total + (4ull << 20) < expect) {
			ok = 0;
			why = "RAM total does not match mem_expect";
		}
	}
	result("e820", ok);
	put("entries=");
	put_dec((uint64_t)e820_n);
	put(" ram_total=");
	put_hex(ram_total);
	put(" ram_mib=");
	put_dec(ram_total >> 20);
	put(" ram_end=");
	put_hex(ram_end);
	put(" above_4g_mib=");
	put_dec(ram_above_4g >> 20);
	if (!e820_sorted)
		put(" unsorted=1");
	if (expect) {
		put(" expect_mib=");
		put_dec(expect >> 20);
	}
	if (!ok) {
		put(" reason=");
		put(why);
	}
	flush();
}

/* ---------------------------------------------------------------- ACPI */

struct gas {
	uint8_t space, width, offset, access;
	uint64_t addr;
};

static struct {
	int found;
	uint64_t rsdp;
	uint64_t fadt, madt, dsdt;
	uint32_t flags;
	uint16_t sci;
	uint32_t smi_cmd;
	uint8_t acpi_enable;
	uint32_t pm1a_evt, pm1b_evt, pm1a_cnt, pm1b_cnt;
	uint8_t pm1_evt_len;
	uint32_t pm_tmr;
	struct gas reset_reg, sleep_ctl, sleep_sts;
	uint8_t reset_value;
	int s5_found;
	uint8_t s5_typ_a, s5_typ_b;
	/* MADT */
	uint64_t lapic_base;
	int ncpus;
	uint32_t apic_ids[256];
	uint64_t ioapic;
	uint32_t ioapic_gsi_base;
	uint32_t sci_gsi;
	uint16_t sci_flags;	/* MPS INTI flags from the interrupt source override, 0 = none */
} acpi;

/* Only the "acpi" check verifies checksums; power-off and reset just need the tables'
 * contents (and under an emulated KVM every byte summed costs microseconds). */
static int acpi_verify = 1;

static int checksum_ok(const uint8_t *p, uint32_t len)
{
	if (!acpi_verify)
		return 1;
	uint8_t s = 0;
	for (uint32_t i = 0; i < len; i++)
		s += p[i];
	return s == 0;
}

static uint64_t find_rsdp(const char **src)
{
	if (boot_rsdp) {
		*src = boot_proto_seen == PROTO_PVH ? "start_info" : "boot_params";
		return boot_rsdp;
	}
	/* The EBDA's first KiB, then the BIOS area, on 16-byte boundaries. */
	uint64_t ebda = (uint64_t)*(const uint16_t *)0x40e << 4;
	if (ebda >= 0x80000 && ebda < 0xa0000)
		for (uint64_t a = ebda; a < ebda + 1024; a += 16)
			if (!memcmp((const void *)a, "RSD PTR ", 8) && checksum_ok((const uint8_t *)a, 20)) {
				*src = "ebda";
				return a;
			}
	for (uint64_t a = 0xe0000; a < 0x100000; a += 16)
		if (!memcmp((const void *)a, "RSD PTR ", 8) && checksum_ok((const uint8_t *)a, 20)) {
			*src = "scan";
			return a;
		}
	*src = "none";
	return 0;
}

static void read_gas(struct gas *g, const uint8_t *p)
{
	g->space = p[0];
	g->width = p[1];
	g->offset = p[2];
	g->access = p[3];
	g->addr = *(const uint64_t *)(p + 4);
}

static void parse_fadt(const uint8_t *t, uint32_t len)
{
	acpi.sci = *(const uint16_t *)(t + 46);
	acpi.smi_cmd = *(const uint32_t *)(t + 48);
	acpi.acpi_enable = t[52];
	acpi.pm1a_evt = *(const uint32_t *)(t + 56);
	acpi.pm1b_evt = *(const uint32_t *)(t + 60);
	acpi.pm1a_cnt = *(const uint32_t *)(t + 64);
	acpi.pm1b_cnt = *(const uint32_t *)(t + 68);
	acpi.pm1_evt_len = t[88];
	acpi.pm_tmr = t[91] >= 4 ? *(const uint32_t *)(t + 76) : 0;
	acpi.flags = len >= 116 ? *(const uint32_t *)(t + 112) : 0;
	acpi.dsdt = *(const uint32_t *)(t + 40);
	if (len >= 129) {
		read_gas(&acpi.reset_reg, t + 116);
		acpi.reset_value = t[128];
	}
	if (len >= 148 && *(const uint64_t *)(t + 140))
		acpi.dsdt = *(const uint64_t *)(t + 140);
	if (len >= 184) {
		struct gas g;
		read_gas(&g, t + 148);
		if (!acpi.pm1a_evt && g.space == 1)
			acpi.pm1a_evt = (uint32_t)g.addr;
		read_gas(&g, t + 172);
		if (!acpi.pm1a_cnt && g.space == 1)
			acpi.pm1a_cnt = (uint32_t)g.addr;
	}
	if (len >= 268) {
		read_gas(&acpi.sleep_ctl, t + 244);
		read_gas(&acpi.sleep_sts, t + 256);
	}
}

static void parse_madt(const uint8_t *t, uint32_t len)
{
	acpi.lapic_base = *(const uint32_t *)(t + 36);
	acpi.sci_gsi = acpi.sci;
	for (uint32_t off = 44; off + 2 <= len;) {
		const uint8_t *e = t + off;
		if (e[1] < 2)
			break;
		switch (e[0]) {
		case 0:	/* processor local APIC */
			if ((*(const uint32_t *)(e + 4) & 1) && acpi.ncpus < 256)
				acpi.apic_ids[acpi.ncpus++] = e[3];
			break;
		case 9:	/* processor local x2APIC */
			if ((*(const uint32_t *)(e + 8) & 1) && acpi.ncpus < 256)
				acpi.apic_ids[acpi.ncpus++] = *(const uint32_t *)(e + 4);
			break;
		case 1:	/* I/O APIC */
			if (!acpi.ioapic) {
				acpi.ioapic = *(const uint32_t *)(e + 4);
				acpi.ioapic_gsi_base = *(const uint32_t *)(e + 8);
			}
			break;
		case 2:	/* interrupt source override */
			if (e[3] == acpi.sci) {
				acpi.sci_gsi = *(const uint32_t *)(e + 4);
				acpi.sci_flags = *(const uint16_t *)(e + 8);
			}
			break;
		case 5:	/* local APIC address override */
			acpi.lapic_base = *(const uint64_t *)(e + 4);
			break;
		}
		off += e[1];
	}
}

/* One element of the \_S5 package: ZeroOp, OneOp, BytePrefix n, or a raw byte. */
static const uint8_t *aml_small_int(const uint8_t *p, uint8_t *v)
{
	if (*p == 0x0a) {
		*v = p[1];
		return p + 2;
	}
	if (*p == 0x00 || *p == 0x01) {
		*v = *p;
		return p + 1;
	}
	*v = *p;
	return p + 1;
}

/* Finds "Name(_S5_, Package(){a, b, ...})" in the DSDT without an AML interpreter. */
static void find_s5(const uint8_t *t, uint32_t len)
{
	for (uint32_t i = 36; i + 8 < len; i++) {
		if (t[i] != '_' || memcmp(t + i, "_S5_", 4) || t[i + 4] != 0x12)
			continue;
		if (i > 36 && t[i - 1] != 0x08 && t[i - 1] != '\\')	/* NameOp, or a rooted name */
			continue;
		const uint8_t *p = t + i + 5;
		p += (*p >> 6) + 1;	/* PkgLength: lead byte + (bits 7:6) following bytes */
		p++;			/* NumElements */
		p = aml_small_int(p, &acpi.s5_typ_a);
		aml_small_int(p, &acpi.s5_typ_b);
		acpi.s5_found = 1;
		return;
	}
}

static void check_acpi(void)
{
	const char *src;
	uint64_t rsdp = find_rsdp(&src);
	if (!rsdp || memcmp((const void *)rsdp, "RSD PTR ", 8)) {
		result("acpi", 0);
		put("no RSDP (source=");
		put(src);
		put(")");
		flush();
		return;
	}
	const uint8_t *r = (const uint8_t *)rsdp;
	int ok = checksum_ok(r, 20);
	const char *why = ok ? "" : "RSDP checksum";
	uint8_t rev = r[15];
	uint64_t root = *(const uint32_t *)(r + 16);
	int xsdt = 0;
	if (rev >= 2) {
		uint32_t xlen = *(const uint32_t *)(r + 20);
		if (!checksum_ok(r, xlen)) {
			ok = 0;
			why = "RSDP extended checksum";
		}
		if (*(const uint64_t *)(r + 24)) {
			root = *(const uint64_t *)(r + 24);
			xsdt = 1;
		}
	}
	acpi.rsdp = rsdp;
	const uint8_t *rt = (const uint8_t *)root;
	uint32_t rlen = *(const uint32_t *)(rt + 4);
	if (memcmp(rt, xsdt ? "XSDT" : "RSDT", 4) || !checksum_ok(rt, rlen)) {
		ok = 0;
		why = xsdt ? "XSDT signature or checksum" : "RSDT signature or checksum";
	}
	put("OXTEST acpitable ");
	put_sig(rt);
	put(" addr=");
	put_hex(root);
	put(" len=");
	put_dec(rlen);
	put(!acpi_verify ? " checksum=unchecked" : checksum_ok(rt, rlen) ? " checksum=ok" : " checksum=BAD");
	flush();
	int esz = xsdt ? 8 : 4;
	char names[200] = "";
	size_t nl = 0;
	for (uint32_t off = 36; off + esz <= rlen; off += esz) {
		uint64_t a = xsdt ? *(const uint64_t *)(rt + off) : *(const uint32_t *)(rt + off);
		const uint8_t *t = (const uint8_t *)a;
		uint32_t len = *(const uint32_t *)(t + 4);
		int csum = len >= 36 && checksum_ok(t, len);
		put("OXTEST acpitable ");
		put_sig(t);
		put(" addr=");
		put_hex(a);
		put(" len=");
		put_dec(len);
		put(!acpi_verify ? " checksum=unchecked" : csum ? " checksum=ok" : " checksum=BAD");
		flush();
		if (!csum) {
			ok = 0;
			why = "table checksum";
			continue;
		}
		if (nl + 6 < sizeof(names)) {
			if (nl)
				names[nl++] = ',';
			memcpy(names + nl, t, 4);
			nl += 4;
			names[nl] = 0;
		}
		if (!memcmp(t, "FACP", 4)) {
			acpi.fadt = a;
			parse_fadt(t, len);
		} else if (!memcmp(t, "APIC", 4)) {
			acpi.madt = a;
			parse_madt(t, len);
		}
	}
	if (acpi.dsdt) {
		const uint8_t *d = (const uint8_t *)acpi.dsdt;
		uint32_t len = *(const uint32_t *)(d + 4);
		int csum = !memcmp(d, "DSDT", 4) && checksum_ok(d, len);
		put("OXTEST acpitable DSDT addr=");
		put_hex(acpi.dsdt);
		put(" len=");
		put_dec(len);
		put(!acpi_verify ? " checksum=unchecked" : csum ? " checksum=ok" : " checksum=BAD");
		flush();
		if (csum)
			find_s5(d, len);
		else {
			ok = 0;
			why = "DSDT signature or checksum";
		}
	}
	if (ok && !acpi.fadt) {
		ok = 0;
		why = "no FADT";
	} else if (ok && !acpi.dsdt) {
		ok = 0;
		why = "no DSDT";
	} else if (ok && !acpi.madt) {
		ok = 0;
		why = "no MADT";
	}
	int hw_reduced = (acpi.flags >> 20) & 1;
	int pm_ok = hw_reduced ? acpi.sleep_ctl.addr != 0 : (acpi.pm1a_cnt != 0 && acpi.pm1a_evt != 0);
	if (ok && acpi.fadt && !pm_ok) {
		ok = 0;
		why = "FADT has no PM1 event/control (or sleep control) registers";
	}
	/* The ACPI PM timer (3.579545 MHz, 24 or 32 bits) must count. */
	const char *pmt = "none";
	if (acpi.pm_tmr) {
		uint32_t a = inl((uint16_t)acpi.pm_tmr);
		delay_us(1000);
		uint32_t b = inl((uint16_t)acpi.pm_tmr);
		pmt = a != b ? "ok" : "stuck";
		if (ok && a == b) {
			ok = 0;
			why = "the PM timer does not count";
		}
	}
	uint64_t cpus_expect = cmdline_num("cpus_expect", 0);
	if (ok && cpus_expect && (uint64_t)acpi.ncpus != cpus_expect) {
		ok = 0;
		why = "MADT CPU count does not match cpus_expect";
	}
	acpi.found = 1;
	result("acpi", ok);
	put("rsdp=");
	put_hex(rsdp);
	put(" source=");
	put(src);
	put(" rev=");
	put_dec(rev);
	put(xsdt ? " xsdt=" : " rsdt=");
	put_hex(root);
	put(" tables=");
	put(names);
	put(" madt_cpus=");
	put_dec((uint64_t)acpi.ncpus);
	put(" ioapic=");
	put_hex(acpi.ioapic);
	put(" sci=");
	put_dec(acpi.sci);
	put(hw_reduced ? " hw_reduced=1 sleep_ctl=" : " pm1a_evt=");
	put_hex(hw_reduced ? acpi.sleep_ctl.addr : acpi.pm1a_evt);
	if (!hw_reduced) {
		put(" pm1a_cnt=");
		put_hex(acpi.pm1a_cnt);
	}
	put(" s5=");
	if (acpi.s5_found)
		put_dec(acpi.s5_typ_a);
	else
		put("none");
	put(" reset_reg=");
	put_hex(acpi.reset_reg.addr);
	put(" pm_timer=");
	put(pmt);
	if (!ok) {
		put(" reason=");
		put(why);
	}
	flush();
}

/* ---------------------------------------------------------------- CPUID */

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

/* Raw CPUID words the tests compare with the spec: features, hypervisor, topology. */
static void check_cpuid(void)
{
	uint32_t r[4], v[4];
	cpuid(0, 0, r);
	uint32_t max = r[0];
	char vendor[13];
	memcpy(vendor, &r[1], 4);
	memcpy(vendor + 4, &r[3], 4);
	memcpy(vendor + 8, &r[2], 4);
	vendor[12] = 0;
	result("cpuid", max >= 1);
	put("vendor=");
	put(vendor);
	put(" max_leaf=");
	put_hex(max);
	cpuid(1, 0, r);
	put(" l1_ecx=");
	put_hex(r[2]);
	put(" l1_edx=");
	put_hex(r[3]);
	put(" l1_ebx=");
	put_hex(r[1]);
	if (max >= 7) {
		cpuid(7, 0, r);
		put(" l7_ebx=");
		put_hex(r[1]);
		put(" l7_ecx=");
		put_hex(r[2]);
		put(" l7_edx=");
		put_hex(r[3]);
	}
	if (max >= 0xb) {
		/* Extended topology: logical processors at the SMT and core levels. */
		cpuid(0xb, 0, r);
		cpuid(0xb, 1, v);
		put(" lb_smt=");
		put_dec(r[1] & 0xffff);
		put(" lb_core=");
		put_dec(v[1] & 0xffff);
	}
	cpuid(0x40000000, 0, r);
	char hv[13];
	memcpy(hv, &r[1], 4);
	memcpy(hv + 4, &r[2], 4);
	memcpy(hv + 8, &r[3], 4);
	hv[12] = 0;
	for (int i = 0; i < 12; i++)
		if (hv[i] && (hv[i] < 0x20 || hv[i] > 0x7e))
			hv[i] = '?';
	put(" hypervisor=");
	put(hv[0] ? hv : "none");
	flush();
}

/* ---------------------------------------------------------------- initrd */

/* Where the loader put the initrd and an FNV-1a 64 hash of its bytes (the test hashes the
 * file); must lie in RAM and not overlap this image. Must run before anything below
 * 1 MiB or past our image is reused. */
static void check_initrd(void)
{
	if (!initrd_size) {
		say("initrd", 0, "the loader passed no initrd");
		return;
	}
	extern char __image_start[], __image_end[];
	int in_ram = e820_is_ram(initrd_addr, initrd_size);
	int overlaps = initrd_addr < (uint64_t)__image_end && initrd_addr + initrd_size > (uint64_t)__image_start;
	uint64_t h = 0xcbf29ce484222325ull;
	if (in_ram && initrd_addr + initrd_size <= (1ull << 32)) {
		const uint8_t *p = (const uint8_t *)initrd_addr;
		for (uint64_t i = 0; i < initrd_size; i++) {
			h ^= p[i];
			h *= 0x100000001b3ull;
		}
	}
	result("initrd", in_ram && !overlaps);
	put("addr=");
	put_hex(initrd_addr);
	put(" size=");
	put_dec(initrd_size);
	put(" fnv=");
	put_hex(h);
	if (!in_ram)
		put(" reason=not in e820 RAM (or above 4 GiB)");
	else if (overlaps)
		put(" reason=overlaps the kernel image");
	flush();
}

/* ---------------------------------------------------------------- kvmclock */

struct pvclock {
	uint32_t version, pad0;
	uint64_t tsc_timestamp, system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags, pad[2];
} __attribute__((aligned(64)));

static volatile struct pvclock pvclock;

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" ::"c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

/* Nanoseconds as a guest computes them from the pvclock structure (version-checked). */
static uint64_t pvclock_read(void)
{
	uint32_t v;
	uint64_t now;
	do {
		v = pvclock.version;
		uint64_t delta = rdtsc() - pvclock.tsc_timestamp;
		if (pvclock.tsc_shift >= 0)
			delta <<= pvclock.tsc_shift;
		else
			delta >>= -pvclock.tsc_shift;
		now = pvclock.system_time +
		      (uint64_t)(((unsigned __int128)delta * pvclock.tsc_to_system_mul) >> 32);
	} while ((v & 1) || v != pvclock.version);
	return now;
}

/* KVM's paravirtual clock, as Linux uses it: advertised in CPUID 0x40000001, enabled by
 * MSR_KVM_SYSTEM_TIME_NEW, and the time it publishes moves forward. */
static void check_kvmclock(void)
{
	uint32_t r[4];
	cpuid(0x40000000, 0, r);
	if (r[0] < 0x40000001 || memcmp(&r[1], "KVMK", 4)) {
		say("kvmclock", 0, "no KVM CPUID leaves");
		return;
	}
	cpuid(0x40000001, 0, r);
	if (!(r[0] & (1 << 3))) {	/* KVM_FEATURE_CLOCKSOURCE2 */
		say("kvmclock", 0, "KVM_FEATURE_CLOCKSOURCE2 not in CPUID 0x40000001");
		return;
	}
	wrmsr(0x4b564d01, (uint64_t)&pvclock | 1);
	uint64_t t1 = pvclock_read();
	delay_us(20000);
	uint64_t t2 = pvclock_read();
	wrmsr(0x4b564d01, 0);
	int ok = pvclock.tsc_to_system_mul != 0 && t1 != 0 && t2 > t1;
	result("kvmclock", ok);
	put("features=");
	put_hex(r[0]);
	put(" system_time_ns=");
	put_dec(t2);
	put(" advanced_ns=");
	put_dec(t2 > t1 ? t2 - t1 : 0);
	if (!ok)
		put(" reason=no published time, or it does not advance");
	flush();
}

/* ---------------------------------------------------------------- paging for high memory */

extern uint64_t pml4[], pdpt[], high_pds[];

static void reload_cr3(void)
{
	uint64_t v;
	__asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(v)::"memory");
}

/* Identity-maps the GiB that holds addr (above 4 GiB) with one of four spare page directories. */
static int high_pds_used;
static int map_gib(uint64_t addr)
{
	uint64_t gib = addr >> 30;
	if (gib < 4 || gib >= 512)
		return gib < 4;
	if (pdpt[gib])
		return 1;
	if (high_pds_used == 4)
		return 0;
	uint64_t *pd = &high_pds[512 * high_pds_used++];
	for (uint64_t j = 0; j < 512; j++)
		pd[j] = (gib << 30) | (j << 21) | 0x83;
	pdpt[gib] = (uint64_t)pd | 3;
	reload_cr3();
	return 1;
}

static int pattern_ok(uint64_t a, int n)
{
	volatile uint64_t *p = (volatile uint64_t *)a;
	for (int i = 0; i < n; i++)
		p[i] = 0x0ddba11cafe00000ull ^ (a + (uint64_t)i * 8);
	for (int i = 0; i < n; i++)
		if (p[i] != (0x0ddba11cafe00000ull ^ (a + (uint64_t)i * 8)))
			return 0;
	return 1;
}

static void check_highmem(void)
{
	uint64_t first = 0, last = 0;
	for (int i = 0; i < e820_n; i++) {
		struct e820 *e = &e820[i];
		if (e->type != 1 || e->addr + e->size <= (1ull << 32))
			continue;
		uint64_t lo = e->addr < (1ull << 32) ? (1ull << 32) : e->addr;
		if (!first)
			first = lo;
		last = e->addr + e->size;
	}
	if (!first) {
		say("highmem", 0, "no RAM above 4 GiB in the e820 map");
		return;
	}
	uint64_t a = first, b = (last - 512) & ~7ull;
	if (!map_gib(a) || !map_gib(b)) {
		say("highmem", 0, "RAM beyond 512 GiB, not mapped");
		return;
	}
	int ok = pattern_ok(a, 64) && pattern_ok(b, 64);
	result("highmem", ok);
	put("first=");
	put_hex(a);
	put(" last=");
	put_hex(b + 512);
	put(" above_4g_mib=");
	put_dec(ram_above_4g >> 20);
	put(ok ? " pattern=ok" : " pattern=MISMATCH");
	flush();
}

/* ---------------------------------------------------------------- interrupts */

struct idt_entry {
	uint16_t off0, sel;
	uint8_t ist, type;
	uint16_t off1;
	uint32_t off2, zero;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));
extern char exc_stubs[], irq_stub_sci[], irq_stub_timer[], irq_stub_com1[], irq_stub_spurious[];

static void idt_set(int v, void *fn)
{
	uint64_t a = (uint64_t)fn;
	idt[v].off0 = (uint16_t)a;
	idt[v].sel = 0x08;
	idt[v].ist = 0;
	idt[v].type = 0x8e;
	idt[v].off1 = (uint16_t)(a >> 16);
	idt[v].off2 = (uint32_t)(a >> 32);
	idt[v].zero = 0;
}

static void idt_load(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) d = { sizeof(idt) - 1, (uint64_t)idt };
	__asm__ volatile("lidt %0" ::"m"(d));
}

static void idt_init(void)
{
	for (int v = 0; v < 32; v++)
		idt_set(v, exc_stubs + 16 * v);
	idt_set(0x30, irq_stub_sci);
	idt_set(0x40, irq_stub_timer);
	idt_set(0x34, irq_stub_com1);
	idt_set(0xff, irq_stub_spurious);
	idt_load();
}

/* frame: vector, error code, rip, cs, rflags, rsp, ss */
void exception(uint64_t *frame)
{
	line_len = 0;
	result("exception", 0);
	put("vector=");
	put_dec(frame[0]);
	put(" error=");
	put_hex(frame[1]);
	put(" rip=");
	put_hex(frame[2]);
	if (frame[0] == 14) {
		uint64_t cr2;
		__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
		put(" cr2=");
		put_hex(cr2);
	}
	flush();
	halt_forever();
}

static uint64_t lapic_base(void) { return rdmsr(0x1b) & ~0xfffull; }
static uint32_t lapic_read(uint32_t reg) { return mmio_read32(lapic_base() + reg); }
static void lapic_write(uint32_t reg, uint32_t v) { mmio_write32(lapic_base() + reg, v); }
static uint32_t lapic_id(void) { return lapic_read(0x20) >> 24; }

static void lapic_enable(void)
{
	/* Mask the 8259s: only the LAPIC and IOAPIC deliver interrupts here. */
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
	lapic_write(0xf0, 0x1ff);	/* software enable, spurious vector 0xff */
	lapic_write(0x80, 0);		/* task priority: accept all */
}

static volatile int sci_seen, pwrbtn_seen, com1_irqs, com1_thre;
static volatile uint64_t ticks;

static void pm1_write_sts(uint16_t v)
{
	outw((uint16_t)acpi.pm1a_evt, v);
}

void irq_handler(int vector)
{
	if (vector == 0x30) {
		sci_seen++;
		if (acpi.pm1a_evt) {
			uint16_t sts = inw((uint16_t)acpi.pm1a_evt);
			if (sts & (1 << 8)) {
				pwrbtn_seen = 1;
				pm1_write_sts(1 << 8);	/* write 1 to clear before EOI (level-triggered) */
			}
		}
	} else if (vector == 0x40) {
		ticks++;
	} else if (vector == 0x34) {
		com1_irqs++;
		if ((inb(COM1 + 2) & 0x0f) == 0x02)	/* IIR: THR empty (reading IIR clears it) */
			com1_thre++;
	}
	lapic_write(0xb0, 0);	/* EOI */
}

static void ioapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(acpi.ioapic, reg);
	mmio_write32(acpi.ioapic + 0x10, v);
}

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

/* ---------------------------------------------------------------- CMOS RTC */

static uint8_t cmos_read(uint8_t reg)
{
	outb(0x70, reg);
	return inb(0x71);
}

static uint64_t bcd(uint8_t v, int binary)
{
	return binary ? v : (uint64_t)((v >> 4) * 10 + (v & 15));
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, uint64_t m, uint64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	uint64_t yoe = (uint64_t)(y - era * 400);
	uint64_t doy = (153 * (m + (m > 2 ? (uint64_t)-3 : 9)) + 2) / 5 + d - 1;
	uint64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* The wall clock as an OS reads it at boot: wait out an update, decode BCD/12h. */
static void check_rtc(void)
{
	for (int i = 0; i < 100000 && (cmos_read(0x0a) & 0x80); i++)
		cpu_relax();
	uint8_t b = cmos_read(0x0b);
	int binary = (b >> 2) & 1, h24 = (b >> 1) & 1;
	uint64_t sec = bcd(cmos_read(0x00), binary), min = bcd(cmos_read(0x02), binary);
	uint8_t hr = cmos_read(0x04);
	uint64_t day = bcd(cmos_read(0x07), binary), mon = bcd(cmos_read(0x08), binary);
	uint64_t year = bcd(cmos_read(0x09), binary), century = bcd(cmos_read(0x32), binary);
	uint64_t hour = bcd(hr & 0x7f, binary);
	if (!h24) {
		hour %= 12;
		if (hr & 0x80)
			hour += 12;
	}
	if (century < 19 || century > 30)
		century = 20;
	year += century * 100;
	int ok = sec < 60 && min < 60 && hour < 24 && day >= 1 && day <= 31 && mon >= 1 && mon <= 12;
	uint64_t epoch = ok ? (uint64_t)days_from_civil((int64_t)year, mon, day) * 86400 + hour * 3600 + min * 60 + sec : 0;
	result("rtc", ok);
	put("epoch=");
	put_dec(epoch);
	put(" date=");
	put_dec(year);
	put("-");
	put_dec(mon);
	put("-");
	put_dec(day);
	put(" time=");
	put_dec(hour);
	put(":");
	put_dec(min);
	put(":");
	put_dec(sec);
	put(binary ? " binary" : " bcd");
	put(h24 ? " 24h" : " 12h");
	if (!ok)
		put(" reason=date/time registers out of range");
	flush();
}

/* ---------------------------------------------------------------- SMP */

extern char ap_tramp_start[], ap_tramp_end[];
extern volatile uint32_t ap_next;
static volatile uint32_t ap_arrived;
static volatile uint32_t ap_apic_id[256];

void ap_main(uint32_t slot)
{
	if (slot < 256)
		ap_apic_id[slot] = lapic_id();
	__atomic_fetch_add(&ap_arrived, 1, __ATOMIC_SEQ_CST);
}

static void lapic_icr(uint32_t dest, uint32_t low)
{
	lapic_write(0x310, dest << 24);
	lapic_write(0x300, low);
	for (int i = 0; i < 100000 && (lapic_read(0x300) & (1 << 12)); i++)
		cpu_relax();
}

/* A free page below 1 MiB for the real-mode AP entry: the highest RAM page under 0x9f000. */
static uint64_t trampoline_page(void)
{
	for (uint64_t p = 0x9e000; p >= 0x1000; p -= 0x1000)
		if (e820_is_ram(p, 0x1000))
			return p;
	return 0;
}

static void check_smp(void)
{
	if (!acpi.found || !acpi.ncpus) {
		say("smp", 0, "no MADT: cannot find the APs");
		return;
	}
	uint64_t tp = trampoline_page();
	if (!tp) {
		say("smp", 0, "no RAM page below 1 MiB for the AP trampoline");
		return;
	}
	memcpy((void *)tp, ap_tramp_start, (size_t)(ap_tramp_end - ap_tramp_start));
	uint32_t bsp = lapic_id();
	int started = 0, ok = 1;
	const char *why = "";
	for (int i = 0; i < acpi.ncpus; i++) {
		uint32_t id = acpi.apic_ids[i];
		if (id == bsp)
			continue;
		uint32_t before = ap_arrived;
		lapic_icr(id, 0x4500);			/* INIT, level assert */
		delay_us(10000);
		for (int s = 0; s < 2 && ap_arrived == before; s++) {
			lapic_icr(id, 0x4600 | (uint32_t)(tp >> 12));	/* STARTUP */
			uint64_t deadline = rdtsc() + 3000ull * 1000 * (s ? 20000 : 200);
			while (ap_arrived == before && rdtsc() < deadline)
				cpu_relax();
		}
		started++;
		if (ap_arrived == before) {
			ok = 0;
			why = "an AP did not come up after INIT/SIPI/SIPI";
			put("OXTEST smp-ap FAIL apic_id=");
			put_dec(id);
			put(" did not start");
			flush();
		}
	}
	/* Every MADT id must have been reported by exactly one started CPU. */
	uint32_t n = ap_arrived;
	for (int i = 0; ok && i < acpi.ncpus; i++) {
		uint32_t id = acpi.apic_ids[i];
		int seen = id == bsp;
		for (uint32_t s = 0; s < n && s < 256; s++)
			if (ap_apic_id[s] == id)
				seen++;
		if (seen != 1) {
			ok = 0;
			why = "APIC ids reported by the APs do not match the MADT";
		}
	}
	result("smp", ok);
	put("cpus=");
	put_dec(n + 1);
	put(" bsp=");
	put_dec(bsp);
	put(" apic_ids=");
	put_dec(bsp);
	for (uint32_t s = 0; s < n && s < 256; s++) {
		put(",");
		put_dec(ap_apic_id[s]);
	}
	put(" trampoline=");
	put_hex(tp);
	if (!ok) {
		put(" reason=");
		put(why);
	}
	flush();
	(void)started;
}

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
	while (!pwrbtn_seen)
		__asm__ volatile("sti; hlt; cli");
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

/* virtio drivers and PCI enumeration (owned by the virtio devices' tests) */
#include "virtio/virtio.c"

/* ---------------------------------------------------------------- main */

void oxmain(int proto, uint64_t info)
{
	serial_init();
	put("OXTEST READY proto=");
	put(proto == PROTO_PVH ? "pvh" : "bzimage");
	flush();
	idt_init();
	boot_proto_seen = proto;
	read_boot_info(proto, info);
	e820_sorted = e820_sanitize();
	{
		/* a bare "quiet" word, as Linux takes it */
		const char *p = cmdline;
		while (*p) {
			while (*p == ' ')
				p++;
			const char *tok = p;
			while (*p && *p != ' ')
				p++;
			if (p - tok == 5 && !memcmp(tok, "quiet", 5))
				quiet = 1;
		}
	}
	if (!cmdline_get("oxtest", oxtest, sizeof(oxtest)))
		memcpy(oxtest, "e820,acpi,poweroff", 19);
	result("cmdline", 1);
	put(cmdline);
	flush();

	if (want("initrd"))
		check_initrd();
	if (want("cpuid"))
		check_cpuid();
	if (want("e820"))
		check_e820();
	if (want("acpi") || want("smp") || want("poweroff") || want("reset") || want("acpibutton") ||
	    want("serial")) {
		acpi_verify = want("acpi");
		check_acpi();
		acpi_verify = 1;
	}
	if (want("kvmclock"))
		check_kvmclock();
	if (want("rtc"))
		check_rtc();
	if (want("serial"))
		check_serial();
	if (want("smp"))
		check_smp();
	if (want("highmem"))
		check_highmem();
	if (want("pci"))
		check_pci();
	if (want("virtio"))
		check_virtio();

	put("OXTEST DONE failures=");
	put_dec((uint64_t)failures);
	flush();

	if (want("int3")) {
		/* KVM's instruction emulator cannot execute int3: on an emulated KVM this is an
		 * emulation failure for the VMM to report; on hardware a #BP (exception line). */
		say("int3", 1, "executing int3");
		__asm__ volatile("int3");
	}
	if (want("pvpanic")) {
		say("pvpanic", 1, "signalling a guest panic on port 0x505");
		outb(0x505, 1);
		delay_us(2000000);
		say("pvpanic", 0, "still running 2 s after the panic notification");
	}
	if (want("count"))
		do_count();
	if (want("acpibutton"))
		do_acpibutton();
	if (want("reset"))
		do_reset();
	if (want("poweroff"))
		do_poweroff();
	say("halt", 1, "halting");
	halt_forever();
}
