//! Real Linux judges the boot path: Debian's cloud kernel (ELF vmlinux, PVH entry) is
//! booted by oxvirt-vmm with earlyprintk on ttyS0 and read until it has reported the
//! e820 map, the ACPI tables, the CPU count, its memory and its command line; then the
//! test stops it. (On the emulated KVM here a stock kernel cannot get much further:
//! `Memory:` arrives ≈16 s after `Linux version`.)

use std::time::Duration;

use oxvirt_tests::host::require_kvm;
use oxvirt_tests::linux::debian_kernel;
use oxvirt_tests::{spec, Vm};

const MEM_MIB: u64 = 128;
const CPUS: u32 = 2;
/// Early boot takes ≈16 s of emulated guest time here; leave room for a loaded machine.
const EARLY_BOOT_TIMEOUT: Duration = Duration::from_secs(240);

/// Sums the `usable` ranges of the kernel's `BIOS-e820: [mem A-B] usable` lines.
fn e820_usable(console: &str) -> (usize, u64) {
    let mut n = 0;
    let mut total = 0;
    for l in console.lines().filter(|l| l.contains("BIOS-e820: [mem ")) {
        n += 1;
        if !l.trim_end().ends_with("usable") {
            continue;
        }
        let range = l.split("[mem ").nth(1).and_then(|r| r.split(']').next());
        if let Some((a, b)) = range.and_then(|r| r.split_once('-')) {
            let a = u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap_or(0);
            let b = u64::from_str_radix(b.trim_start_matches("0x"), 16).unwrap_or(0);
            total += b + 1 - a;
        }
    }
    (n, total)
}

#[test]
fn debian_kernel_early_boot_sees_the_machine() {
    if !require_kvm("debian_kernel_early_boot_sees_the_machine") {
        return;
    }
    let kernel = match debian_kernel() {
        Ok(k) => k,
        Err(e) => panic!("fetching the Debian cloud kernel (apt-get download, lz4): {e:#}"),
    };
    let marker = "oxtest.marker=early-boot-7f3a";
    let cmdline = format!("console=ttyS0 earlyprintk=ttyS0 panic=-1 {marker}");
    let vm = Vm::start(&spec(&kernel.vmlinux, &cmdline, MEM_MIB, CPUS));
    vm.wait_for("Linux version", EARLY_BOOT_TIMEOUT);
    let mem_line = vm.wait_for("Memory: ", EARLY_BOOT_TIMEOUT);
    let console = vm.console();
    vm.kill();

    // The command line arrived intact.
    let cmd = console
        .lines()
        .find(|l| l.contains("Command line: "))
        .unwrap_or_else(|| vm.fail("no `Command line:` from the kernel"));
    assert!(cmd.contains(marker), "{cmd}");

    // The e820 map: all RAM of the spec, minus the legacy hole and a little.
    let (entries, usable) = e820_usable(&console);
    let mem = MEM_MIB << 20;
    if entries == 0 || usable > mem || usable + (4 << 20) < mem {
        vm.fail(&format!(
            "kernel e820: {entries} entries, {usable:#x} bytes usable; spec has {mem:#x}"
        ));
    }

    // The ACPI tables the kernel found.
    for t in [
        "ACPI: RSDP",
        "ACPI: XSDT",
        "ACPI: FACP",
        "ACPI: DSDT",
        "ACPI: APIC",
    ] {
        if !console.contains(t) {
            vm.fail(&format!("the kernel did not report `{t}`"));
        }
    }
    for bad in [
        "ACPI BIOS Error",
        "ACPI Error",
        "Invalid checksum",
        "Incorrect checksum",
    ] {
        if console.contains(bad) {
            vm.fail(&format!(
                "the kernel complained about our ACPI tables: `{bad}`"
            ));
        }
    }

    // The CPU count from the MADT.
    let want = format!("smpboot: Allowing {CPUS} CPUs");
    if !console.contains(&want) {
        vm.fail(&format!("no `{want}` from the kernel"));
    }

    // `Memory: 190000K/261624K available (...)`: the second figure is the RAM it manages.
    let total_k: u64 = mem_line
        .split("Memory: ")
        .nth(1)
        .and_then(|r| r.split('/').nth(1))
        .and_then(|r| r.split('K').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| vm.fail(&format!("cannot parse `{mem_line}`")));
    let total = total_k << 10;
    assert!(
        total <= mem && total + (8 << 20) >= mem,
        "kernel manages {total_k} KiB, the spec gives {MEM_MIB} MiB: {mem_line}"
    );
}
