//! oxvirt-vmm boots our test guests and they find the machine the spec describes:
//! entry protocol, e820 map, ACPI tables, vCPUs started by INIT/SIPI, memory above 4 GiB,
//! and S5 power-off ending the process with `exit::POWEROFF`.

use machine_spec::exit;
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::{spec, test_guests, Vm, GUEST_TIMEOUT};

/// Boots `kernel` with `oxtest=<checks>,poweroff`, expects every check ok and a clean
/// power-off; returns the VM for further assertions.
fn run_checks(kernel: &std::path::Path, checks: &str, mem_mib: u64, cpus: u32) -> Vm {
    let cmdline =
        format!("console=ttyS0 oxtest={checks},poweroff mem_expect={mem_mib} cpus_expect={cpus}");
    let vm = Vm::start(&spec(kernel, &cmdline, mem_mib, cpus));
    vm.wait_for("OXTEST DONE", GUEST_TIMEOUT);
    vm.assert_no_failures();
    vm.expect_exit(exit::POWEROFF, GUEST_TIMEOUT);
    vm
}

#[test]
fn pvh_entry_e820_acpi_poweroff() {
    if !require_kvm("pvh_entry_e820_acpi_poweroff") {
        return;
    }
    let vm = run_checks(&test_guests().elf, "e820,acpi", 128, 1);
    let boot = vm.expect_ok("boot", GUEST_TIMEOUT);
    assert_eq!(boot.field("protocol"), Some("pvh"), "{}", vm.console());
    assert_eq!(boot.field("magic"), Some("0x336ec578"));
    let e820 = vm.expect_ok("e820", GUEST_TIMEOUT);
    assert_eq!(e820.field("expect_mib"), Some("128"));
    let acpi = vm.expect_ok("acpi", GUEST_TIMEOUT);
    // The VMM hands the RSDP over in the PVH start info.
    assert_eq!(acpi.field("source"), Some("start_info"), "{}", vm.console());
    let tables = acpi.field("tables").unwrap_or_default();
    for t in ["FACP", "APIC"] {
        assert!(tables.contains(t), "{t} missing from the XSDT: {tables}");
    }
    assert_eq!(acpi.field("madt_cpus"), Some("1"));
    assert_ne!(acpi.field("s5"), Some("none"), "DSDT has no \\_S5");
    assert_eq!(
        acpi.field("pm_timer"),
        Some("ok"),
        "ACPI PM timer: {}",
        acpi.details
    );
    let cmd = vm.expect_ok("cmdline", GUEST_TIMEOUT);
    assert!(cmd.details.contains("oxtest=e820,acpi,poweroff"));
}

#[test]
fn bzimage_64bit_entry() {
    if !require_kvm("bzimage_64bit_entry") {
        return;
    }
    let vm = run_checks(&test_guests().bzimage, "e820,acpi", 128, 1);
    let boot = vm.expect_ok("boot", GUEST_TIMEOUT);
    assert_eq!(boot.field("protocol"), Some("bzimage"), "{}", vm.console());
    // A 64-bit boot protocol loader enters at code32_start + 0x200 in long mode.
    assert_eq!(boot.field("entry"), Some("64"), "{}", vm.console());
    let proto = boot.field("boot_protocol").unwrap_or_default();
    assert_eq!(proto, "0x20f", "setup header version as the guest has it");
}

#[test]
fn one_vcpu() {
    if !require_kvm("one_vcpu") {
        return;
    }
    let vm = run_checks(&test_guests().elf, "acpi,smp", 128, 1);
    assert_eq!(vm.expect_ok("smp", GUEST_TIMEOUT).field("cpus"), Some("1"));
}

#[test]
fn two_vcpus_by_init_sipi() {
    if !require_kvm("two_vcpus_by_init_sipi") {
        return;
    }
    let vm = run_checks(&test_guests().elf, "acpi,smp", 128, 2);
    let smp = vm.expect_ok("smp", GUEST_TIMEOUT);
    assert_eq!(smp.field("cpus"), Some("2"), "{}", vm.console());
    assert_eq!(smp.field("apic_ids"), Some("0,1"));
}

#[test]
fn four_vcpus_more_than_host_cores() {
    if !require_kvm("four_vcpus_more_than_host_cores") {
        return;
    }
    let vm = run_checks(&test_guests().elf, "acpi,smp", 128, 4);
    let smp = vm.expect_ok("smp", GUEST_TIMEOUT);
    assert_eq!(smp.field("cpus"), Some("4"), "{}", vm.console());
    let mut ids: Vec<u32> = smp
        .field("apic_ids")
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1, 2, 3], "{}", vm.console());
}

#[test]
fn bzimage_with_smp() {
    if !require_kvm("bzimage_with_smp") {
        return;
    }
    let vm = run_checks(&test_guests().bzimage, "e820,acpi,smp", 128, 2);
    assert_eq!(vm.expect_ok("smp", GUEST_TIMEOUT).field("cpus"), Some("2"));
}

#[test]
fn guest_with_4_5_gib_sees_all_its_ram() {
    if !require_kvm("guest_with_4_5_gib_sees_all_its_ram") {
        return;
    }
    let vm = run_checks(&test_guests().elf, "e820,highmem", 4608, 1);
    let e820 = vm.expect_ok("e820", GUEST_TIMEOUT);
    // 3 GiB below the PCI hole, the rest above 4 GiB.
    let above: u64 = e820.field("above_4g_mib").unwrap_or("0").parse().unwrap();
    assert!(
        above >= 1024,
        "only {above} MiB above 4 GiB: {}",
        e820.details
    );
    let hm = vm.expect_ok("highmem", GUEST_TIMEOUT);
    assert_eq!(hm.field("first"), Some("0x100000000"));
    assert_eq!(hm.field("pattern"), Some("ok"));
}

#[test]
fn guest_with_exactly_4_gib() {
    if !require_kvm("guest_with_exactly_4_gib") {
        return;
    }
    let vm = run_checks(&test_guests().elf, "e820,highmem", 4096, 1);
    vm.expect_ok("highmem", GUEST_TIMEOUT);
}

#[test]
fn no_acpi_means_no_tables() {
    if !require_kvm("no_acpi_means_no_tables") {
        return;
    }
    let mut s = spec(&test_guests().elf, "console=ttyS0 oxtest=acpi,halt", 128, 1);
    s.platform.acpi = false;
    let vm = Vm::start(&s);
    vm.wait_for("OXTEST DONE", GUEST_TIMEOUT);
    let acpi = vm
        .checks()
        .into_iter()
        .find(|c| c.name == "acpi")
        .unwrap_or_else(|| vm.fail("no acpi line"));
    assert!(
        !acpi.ok,
        "ACPI tables found although the spec has acpi=false: {}",
        acpi.details
    );
}

fn cpuid_word(vm: &Vm, key: &str) -> u64 {
    let c = vm.expect_ok("cpuid", GUEST_TIMEOUT);
    let v = c
        .field(key)
        .unwrap_or_else(|| vm.fail(&format!("no {key} in the cpuid line")));
    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn cpu_feature_disable_reaches_cpuid() {
    if !require_kvm("cpu_feature_disable_reaches_cpuid") {
        return;
    }
    const X2APIC: u64 = 1 << 21; // CPUID.01H:ECX
    const HYPERVISOR: u64 = 1 << 31;
    let kernel = &test_guests().elf;
    let plain = run_checks(kernel, "cpuid", 128, 1);
    let ecx = cpuid_word(&plain, "l1_ecx");
    assert_eq!(
        plain.expect_ok("cpuid", GUEST_TIMEOUT).field("hypervisor"),
        Some("KVMKVMKVM"),
        "KVM's paravirt CPUID leaves"
    );
    assert!(ecx & HYPERVISOR != 0, "hypervisor bit clear: {ecx:#x}");
    assert!(
        ecx & X2APIC != 0,
        "KVM offers x2apic, host-passthrough should pass it on: {ecx:#x}"
    );

    let mut s = spec(kernel, "console=ttyS0 oxtest=cpuid,poweroff", 128, 1);
    s.cpus.features.push(machine_spec::CpuFeature {
        name: "x2apic".into(),
        policy: machine_spec::FeaturePolicy::Disable,
    });
    let vm = Vm::start(&s);
    let ecx2 = cpuid_word(&vm, "l1_ecx");
    assert!(
        ecx2 & X2APIC == 0,
        "x2apic still set after policy=disable: {ecx2:#x}"
    );
    assert_eq!(ecx2 | X2APIC, ecx | X2APIC, "only x2apic should change");
    assert_eq!(vm.wait_exit(GUEST_TIMEOUT), exit::POWEROFF);
}

#[test]
fn topology_reaches_cpuid_and_madt() {
    if !require_kvm("topology_reaches_cpuid_and_madt") {
        return;
    }
    let mut s = spec(
        &test_guests().elf,
        "console=ttyS0 oxtest=cpuid,acpi,smp,poweroff cpus_expect=4",
        128,
        4,
    );
    s.cpus.topology = machine_spec::Topology {
        sockets: 2,
        dies: 1,
        cores: 2,
        threads: 1,
    };
    let vm = Vm::start(&s);
    let c = vm.expect_ok("cpuid", GUEST_TIMEOUT);
    assert_eq!(
        c.field("lb_smt"),
        Some("1"),
        "threads per core: {}",
        c.details
    );
    assert_eq!(
        c.field("lb_core"),
        Some("2"),
        "logical CPUs per socket: {}",
        c.details
    );
    assert_eq!(vm.expect_ok("smp", GUEST_TIMEOUT).field("cpus"), Some("4"));
    vm.assert_no_failures();
    assert_eq!(vm.wait_exit(GUEST_TIMEOUT), exit::POWEROFF);
}

/// FNV-1a 64, as the guest computes it over the initrd.
fn fnv1a(bytes: &[u8]) -> String {
    let mut h = oxvirt_tests::cache::Fnv::default();
    h.write(bytes);
    format!("0x{}", h.hex().trim_start_matches('0'))
}

fn initrd_arrives(kernel: &std::path::Path) {
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initrd.bin");
    // Not a multiple of the page size, so a loader that rounds the size shows.
    let data: Vec<u8> = (0..12_345u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(&initrd, &data).unwrap();
    let mut s = spec(kernel, "console=ttyS0 oxtest=initrd,e820,poweroff", 128, 1);
    s.boot.initrd = Some(initrd);
    let vm = Vm::start(&s);
    let c = vm.expect_ok("initrd", GUEST_TIMEOUT);
    assert_eq!(c.field("size"), Some("12345"), "{}", c.details);
    assert_eq!(
        c.field("fnv"),
        Some(fnv1a(&data).as_str()),
        "initrd bytes differ: {}",
        c.details
    );
    vm.assert_no_failures();
    assert_eq!(vm.wait_exit(GUEST_TIMEOUT), exit::POWEROFF);
}

#[test]
fn initrd_through_pvh_module_list() {
    if !require_kvm("initrd_through_pvh_module_list") {
        return;
    }
    initrd_arrives(&test_guests().elf);
}

#[test]
fn initrd_through_boot_params() {
    if !require_kvm("initrd_through_boot_params") {
        return;
    }
    initrd_arrives(&test_guests().bzimage);
}

#[test]
fn cmos_rtc_tells_the_host_time() {
    if !require_kvm("cmos_rtc_tells_the_host_time") {
        return;
    }
    let vm = run_checks(&test_guests().elf, "rtc", 128, 1);
    let c = vm.expect_ok("rtc", GUEST_TIMEOUT);
    let guest: i64 = c.field("epoch").unwrap_or("0").parse().unwrap();
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // libvirt's default clock is UTC; allow for a slow guest and a loaded machine.
    assert!(
        (host - guest).abs() < 300,
        "guest RTC {} (epoch {guest}) vs host epoch {host}",
        c.details
    );
}

/// libvirt's `<clock offset>`: the guest's RTC starts at the zone's wall time plus the
/// adjustment (a Windows guest expects local time), as QEMU's `-rtc base=` does.
#[test]
fn cmos_rtc_follows_the_clock_offset() {
    if !require_kvm("cmos_rtc_follows_the_clock_offset") {
        return;
    }
    // Etc/GMT-5 is UTC+5 (POSIX signs); with 600 s more: 18600 s ahead of UTC.
    let cmdline = "console=ttyS0 oxtest=rtc,poweroff mem_expect=128 cpus_expect=1";
    let mut s = spec(&test_guests().elf, cmdline, 128, 1);
    s.platform.rtc = machine_spec::Rtc {
        base: machine_spec::RtcBase::Timezone("Etc/GMT-5".into()),
        adjustment_s: 600,
    };
    let vm = Vm::start(&s);
    vm.wait_for("OXTEST DONE", GUEST_TIMEOUT);
    let c = vm.expect_ok("rtc", GUEST_TIMEOUT);
    let guest: i64 = c.field("epoch").unwrap_or("0").parse().unwrap();
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ahead = guest - host;
    assert!(
        (ahead - 18600).abs() < 300,
        "guest RTC {} is {ahead} s from the host's UTC, want 18600",
        c.details
    );
    vm.expect_exit(exit::POWEROFF, GUEST_TIMEOUT);
}

#[test]
fn kvmclock_is_offered_and_runs() {
    if !require_kvm("kvmclock_is_offered_and_runs") {
        return;
    }
    let vm = run_checks(&test_guests().elf, "kvmclock", 128, 1);
    let c = vm.expect_ok("kvmclock", GUEST_TIMEOUT);
    let advanced: u64 = c.field("advanced_ns").unwrap_or("0").parse().unwrap();
    assert!(advanced > 0, "{}", c.details);
}

#[test]
fn bzimage_all_checks_two_vcpus_4_5_gib() {
    if !require_kvm("bzimage_all_checks_two_vcpus_4_5_gib") {
        return;
    }
    let vm = run_checks(
        &test_guests().bzimage,
        "cpuid,kvmclock,e820,acpi,rtc,serial,smp,highmem",
        4608,
        2,
    );
    for check in [
        "boot", "cpuid", "kvmclock", "e820", "acpi", "rtc", "serial", "smp", "highmem",
    ] {
        vm.expect_ok(check, GUEST_TIMEOUT);
    }
    assert_eq!(
        vm.expect_ok("boot", GUEST_TIMEOUT).field("entry"),
        Some("64")
    );
}

#[test]
fn long_command_line_arrives_intact() {
    if !require_kvm("long_command_line_arrives_intact") {
        return;
    }
    // Linux's x86 limit is 2048 bytes with the NUL; fill it with distinct words.
    let mut cmdline = String::from("console=ttyS0 oxtest=poweroff");
    let mut i = 0;
    while cmdline.len() < 2000 {
        cmdline.push_str(&format!(" w{i}=v{}", i * 7));
        i += 1;
    }
    let vm = Vm::start(&spec(&test_guests().elf, &cmdline, 128, 1));
    let c = vm.expect_ok("cmdline", GUEST_TIMEOUT);
    assert_eq!(c.details, cmdline, "command line changed on the way in");
    assert_eq!(vm.wait_exit(GUEST_TIMEOUT), exit::POWEROFF);
}
