/*
 * oxtest guest: the Hyper-V enlightenments as Windows finds them (check "hyperv").
 * Included by guest.c after cpuid.c (cpuid, wrmsr). Reads the Hyper-V CPUID leaves
 * 0x40000000..0x40000005 and KVM's leaves moved to 0x40000100, then uses what the
 * features leaf offers: GUEST_OS_ID and the hypercall page (with a real hypercall,
 * HvCallNotifyLongSpinWait, when spinlocks are on), VP_INDEX, the reference time
 * counter, VP_RUNTIME, the frequency MSRs and the SynIC version. One line; the test
 * compares it with the spec.
 */

#define HV_MSR_GUEST_OS_ID 0x40000000u
#define HV_MSR_HYPERCALL 0x40000001u
#define HV_MSR_VP_INDEX 0x40000002u
#define HV_MSR_VP_RUNTIME 0x40000010u
#define HV_MSR_TIME_REF_COUNT 0x40000020u
#define HV_MSR_TSC_FREQUENCY 0x40000022u
#define HV_MSR_SVERSION 0x40000081u

/* 0x40000003 EAX privileges */
#define HV_VP_RUNTIME (1u << 0)
#define HV_TIME_REF_COUNT (1u << 1)
#define HV_SYNIC (1u << 2)
#define HV_HYPERCALL (1u << 5)
#define HV_VP_INDEX (1u << 6)
#define HV_FREQUENCY_MSRS (1u << 11)

/* KVM fills this page with its hypercall sequence (vmcall or vmmcall; ret). */
static uint8_t hv_hypercall_page[4096] __attribute__((aligned(4096)));

/* A "simple" hypercall through the page: control in RCX, input and output GPAs in
 * RDX and R8, status in RAX. */
static uint64_t hv_hypercall(uint64_t control)
{
	uint64_t status;
	register uint64_t r8 __asm__("r8") = 0;
	__asm__ volatile("call *%[page]"
			 : "=a"(status), "+r"(r8)
			 : [page] "r"(hv_hypercall_page), "c"(control), "d"(0)
			 : "memory", "cc");
	return status;
}

static void put_kv_hex(const char *k, uint64_t v)
{
	put(" ");
	put(k);
	put("=");
	put_hex(v);
}

static void put_kv_dec(const char *k, uint64_t v)
{
	put(" ");
	put(k);
	put("=");
	put_dec(v);
}

static void check_hyperv(void)
{
	uint32_t r[4];
	cpuid(0x40000000, 0, r);
	char vendor[13];
	memcpy(vendor, &r[1], 4);
	memcpy(vendor + 4, &r[2], 4);
	memcpy(vendor + 8, &r[3], 4);
	vendor[12] = 0;
	for (int i = 0; i < 12; i++)
		if (vendor[i] && (vendor[i] < 0x20 || vendor[i] > 0x7e))
			vendor[i] = '?';
	uint32_t max = r[0];
	cpuid(0x40000001, 0, r);
	uint32_t iface = r[0];
	if (max < 0x40000005 || iface != 0x31237648 /* "Hv#1" */) {
		result("hyperv", 1);
		put("none vendor=");
		put(vendor[0] ? vendor : "none");
		flush();
		return;
	}
	int ok = 1;
	result("hyperv", 1);
	put("vendor=");
	put(vendor);
	put_kv_hex("max", max);
	put(" iface=Hv#1");
	cpuid(0x40000003, 0, r);
	uint32_t feat = r[0];
	put_kv_hex("feat_eax", r[0]);
	put_kv_hex("feat_ebx", r[1]);
	put_kv_hex("feat_edx", r[3]);
	cpuid(0x40000004, 0, r);
	put_kv_hex("rec_eax", r[0]);
	put_kv_hex("spin", r[1]);
	cpuid(0x40000005, 0, r);
	put_kv_dec("max_vps", r[0]);
	cpuid(0x40000100, 0, r);
	put(" kvm_leaves=");
	put(memcmp(&r[1], "KVMKVMKVM", 9) == 0 ? "0x40000100" : "missing");
	flush();

	/* MSRs, each only where the features leaf offers it (KVM enforces that). Values
	 * first, then one line whose verdict covers them. */
	int os_ok = 0, hc_ok = 0;
	uint32_t page_head = 0;
	uint64_t spin_status = ~0ull, t1 = 0, t2 = 0;
	if (feat & HV_HYPERCALL) {
		/* A Windows 10-style guest OS id: vendor Microsoft, OS 4, version 10.0. */
		uint64_t os_id = 0x0001040a00000000ull | 19041;
		wrmsr(HV_MSR_GUEST_OS_ID, os_id);
		os_ok = rdmsr(HV_MSR_GUEST_OS_ID) == os_id;
		uint64_t hc = (uint64_t)hv_hypercall_page | 1;
		wrmsr(HV_MSR_HYPERCALL, hc);
		hc_ok = rdmsr(HV_MSR_HYPERCALL) == hc && hv_hypercall_page[0] != 0;
		page_head = (uint32_t)hv_hypercall_page[0] << 24 | (uint32_t)hv_hypercall_page[1] << 16 |
			    (uint32_t)hv_hypercall_page[2] << 8 | hv_hypercall_page[3];
		cpuid(0x40000004, 0, r);
		if (hc_ok && r[1] != 0xffffffffu)
			spin_status = hv_hypercall(0x0008) & 0xffff;
		ok &= os_ok && hc_ok;
	}
	if (feat & HV_TIME_REF_COUNT) {
		/* 100 ns units since the partition started. */
		t1 = rdmsr(HV_MSR_TIME_REF_COUNT);
		delay_us(20000);
		t2 = rdmsr(HV_MSR_TIME_REF_COUNT);
		ok &= t2 > t1;
	}
	result("hyperv-msrs", ok);
	if (feat & HV_HYPERCALL) {
		put("guest_os_id=");
		put(os_ok ? "ok" : "mismatch");
		put(" hypercall_msr=");
		put(hc_ok ? "ok" : "bad");
		put_kv_hex("hypercall_page", page_head);
		if (spin_status != ~0ull)
			put_kv_hex("spin_wait_status", spin_status);
	}
	if (feat & HV_VP_INDEX)
		put_kv_dec("vp_index", rdmsr(HV_MSR_VP_INDEX));
	if (feat & HV_TIME_REF_COUNT) {
		put_kv_dec("time_ref", t2);
		put_kv_dec("time_ref_advanced", t2 > t1 ? t2 - t1 : 0);
	}
	if (feat & HV_VP_RUNTIME)
		put_kv_dec("vp_runtime", rdmsr(HV_MSR_VP_RUNTIME));
	if (feat & HV_FREQUENCY_MSRS)
		put_kv_dec("tsc_hz", rdmsr(HV_MSR_TSC_FREQUENCY));
	if (feat & HV_SYNIC)
		put_kv_dec("synic_version", rdmsr(HV_MSR_SVERSION));
	/* Disable the hypercall page again, as a guest does on shutdown. */
	if (feat & HV_HYPERCALL)
		wrmsr(HV_MSR_HYPERCALL, 0);
	flush();
}
