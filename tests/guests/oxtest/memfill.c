/*
 * oxtest guest: memfill writes one byte in every page of RAM from 8 MiB up to 4 GiB, so
 * the host backs (and charges to the VMM's memory cgroup) all of the guest's memory:
 * a <memtune><hard_limit> below it gets the VMM OOM-killed in its cgroup.
 * Owned by the cgroup tests (tests/tests/rpc_cgroups.rs).
 */

static void do_memfill(void)
{
	uint64_t pages = 0;
	for (int i = 0; i < e820_n; i++) {
		struct e820 *e = &e820[i];
		if (e->type != 1)
			continue;
		uint64_t lo = e->addr < (8ull << 20) ? (8ull << 20) : e->addr;
		uint64_t hi = e->addr + e->size;
		if (hi > (1ull << 32))
			hi = 1ull << 32;
		for (uint64_t a = lo; a + 4096 <= hi; a += 4096) {
			*(volatile uint8_t *)a = 0x5a;
			pages++;
		}
	}
	result("memfill", 1);
	put("pages=");
	put_dec(pages);
	flush();
}
