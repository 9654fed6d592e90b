/*
 * oxtest guest: PVH start info / boot_params, command line, e820 map check.
 * Included by guest.c: the guest is one translation unit.
 */

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

/* The next space-separated word of the command line from *p (advanced past it);
 * its length in *len, 0 at the end. */
static const char *cmdline_word(const char **p, size_t *len)
{
	while (**p == ' ')
		(*p)++;
	const char *tok = *p;
	while (**p && **p != ' ')
		(*p)++;
	*len = (size_t)(*p - tok);
	return tok;
}

/* Whether the bare word (no "=value") is on the command line, as Linux takes "quiet". */
static int cmdline_has_word(const char *word)
{
	size_t wl = str_len(word), len;
	const char *p = cmdline;
	while (*p) {
		const char *tok = cmdline_word(&p, &len);
		if (len == wl && !memcmp(tok, word, wl))
			return 1;
	}
	return 0;
}

/* Value of "key=" on the command line, copied into out; 0 if absent. */
static int cmdline_get(const char *key, char *out, size_t outsz)
{
	size_t kl = str_len(key), len;
	const char *p = cmdline;
	while (*p) {
		const char *tok = cmdline_word(&p, &len);
		if (len > kl && !memcmp(tok, key, kl) && tok[kl] == '=') {
			size_t n = len - kl - 1;
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
