/*
 * oxtest guest: on-demand identity mapping and the pattern test above 4 GiB.
 * Included by guest.c: the guest is one translation unit.
 */

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
