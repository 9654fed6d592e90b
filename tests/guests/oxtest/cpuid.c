/*
 * oxtest guest: CPUID words and the kvmclock check.
 * Included by guest.c: the guest is one translation unit.
 */

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
	put(" l1_eax=");
	put_hex(r[0]);
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
