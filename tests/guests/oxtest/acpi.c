/*
 * oxtest guest: RSDP, XSDT/RSDT walk, checksums, FADT, MADT, DSDT \_S5, PM timer.
 * Included by guest.c: the guest is one translation unit.
 */

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
