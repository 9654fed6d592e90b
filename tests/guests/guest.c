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
 *   oxtest=initrd,cpuid,kvmclock,hyperv,e820,acpi,rtc,serial,smp,highmem,fwcfg,tpm,memfill,fuzz,poweroff|reset|acpibutton|count|input|redraw|halt|int3|pvpanic
 *   mem_expect=<MiB>  cpus_expect=<N>  reset_method=acpi|kbd|cf9|triple  ticks=<N>
 *   quiet   (print only READY, DONE, failures and the final action's lines)
 *   busy    (acpibutton: a 100 Hz timer runs while it waits, so the guest uses CPU)
 *   fuzzseed=<N> fuzzops=<M> fuzzvq=<R> fuzzverbose   (fuzz: see oxtest/fuzz.c)
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

#include "oxtest/base.c"
#include "oxtest/bootinfo.c"
#include "oxtest/acpi.c"
#include "oxtest/cpuid.c"
/* the Hyper-V leaves and MSRs (uses cpuid.c) */
#include "oxtest/hyperv.c"
#include "oxtest/initrd.c"
#include "oxtest/highmem.c"
#include "oxtest/irq.c"
#include "oxtest/uart.c"
#include "oxtest/rtc.c"
#include "oxtest/smp.c"
#include "oxtest/power.c"
#include "oxtest/fwcfg.c"

/* virtio drivers and PCI enumeration (owned by the virtio devices' tests) */
#include "virtio/virtio.c"

/* the display adapter (owned by the display tests; uses the PCI helpers above) */
#include "oxtest/display.c"

/* a polled AHCI driver (owned by the ATA tests; uses the PCI helpers above) */
#include "oxtest/ahci.c"

/* VGA mode 13h through the legacy ports (owned by the VGA graphics tests) */
#include "oxtest/vga13.c"

/* the i8042 byte reporter (owned by the input tests) */
#include "oxtest/input.c"

/* the continuous redraw of the VNC benchmark (owned by bench/vnc) */
#include "oxtest/redraw.c"

/* a TPM 2.0 on the CRB interface (owned by the TPM tests; uses the ACPI walk) */
#include "oxtest/tpm.c"

/* every page of RAM touched (owned by the cgroup tests) */
#include "oxtest/memfill.c"

/* the seeded device fuzzer (owned by the guest fuzz test; uses the virtio and ACPI code) */
#include "oxtest/fuzz.c"

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
	quiet = cmdline_has_word("quiet");
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
	if (want("hyperv"))
		check_hyperv();
	if (want("rtc"))
		check_rtc();
	if (want("serial"))
		check_serial();
	if (want("smp"))
		check_smp();
	if (want("highmem"))
		check_highmem();
	if (want("fwcfg"))
		check_fwcfg();
	if (want("pci"))
		check_pci();
	if (want("virtio"))
		check_virtio();
	if (want("display"))
		check_display();
	if (want("ahci"))
		check_ahci();
	if (want("vga13"))
		check_vga13();
	if (want("tpm"))
		check_tpm();
	if (want("memfill"))
		do_memfill();
	if (want("fuzz"))
		do_fuzz();

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
	if (want("input"))
		do_input();
	if (want("redraw"))
		do_redraw();
	if (want("reset"))
		do_reset();
	if (want("poweroff"))
		do_poweroff();
	say("halt", 1, "halting");
	halt_forever();
}
