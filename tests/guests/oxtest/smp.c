/*
 * oxtest guest: AP bring-up by INIT/SIPI-SIPI.
 * Included by guest.c: the guest is one translation unit.
 */

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
