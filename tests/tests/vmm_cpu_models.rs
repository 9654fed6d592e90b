//! Named CPU models run: a domain XML with `<cpu mode='custom'><model>` or
//! `mode='host-model'` boots the oxtest guest, which reads CPUID from inside and
//! finds the model's vendor and family/model/stepping, a `disable`d feature gone,
//! and features beyond the model masked off. A model or policy the host cannot
//! honour refuses the start, naming the features.
//!
//! Models usable on an emulated KVM (kvm_pvm offers few features: no SSE3) are the
//! 32-bit Pentiums, which a 64-bit guest cannot run, so the custom-model boot uses
//! `check='none'` (QEMU without `enforce`: the host's missing features are dropped).

use machine_spec::cpu_models::{self, HostCpu};
use machine_spec::exit;
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::spec::{domain_xml, serial_xml};
use oxvirt_tests::vm::bin_path;
use oxvirt_tests::{test_guests, Vm, GUEST_TIMEOUT};

/// CPUID.1:ECX bits.
const CX16: u64 = 1 << 13;
const TSC_DEADLINE: u64 = 1 << 24;
const X2APIC: u64 = 1 << 21;
const HYPERVISOR: u64 = 1 << 31;
/// CPUID.1:EAX of Nehalem (family 6, model 26, stepping 3; QEMU's definition).
const NEHALEM_SIGNATURE: u64 = 0x0001_06a3;

/// Boots the oxtest guest's cpuid check with `cpu` as the domain's `<cpu>`.
fn boot_with_cpu(name: &str, cpu: &str) -> Vm {
    let xml = domain_xml(
        name,
        &test_guests().elf,
        "console=ttyS0 oxtest=cpuid,poweroff",
        128,
        1,
        "destroy",
        &serial_xml("stdio"),
    )
    .replace("<cpu mode='host-passthrough'/>", cpu);
    Vm::start_xml(&xml, &[])
}

fn word(vm: &Vm, key: &str) -> u64 {
    let c = vm.expect_ok("cpuid", GUEST_TIMEOUT);
    let v = c
        .field(key)
        .unwrap_or_else(|| vm.fail(&format!("no {key} in the cpuid line")));
    u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn custom_model_reaches_cpuid_in_the_guest() {
    if !require_kvm("custom_model_reaches_cpuid_in_the_guest") {
        return;
    }
    let host = boot_with_cpu("cpu-host", "<cpu mode='host-passthrough'/>");
    let host_ecx = word(&host, "l1_ecx");
    host.expect_exit(exit::POWEROFF, GUEST_TIMEOUT);

    let vm = boot_with_cpu(
        "cpu-nehalem",
        "<cpu mode='custom' match='exact' check='none'>\
         <model fallback='forbid'>Nehalem</model>\
         <feature policy='disable' name='cx16'/></cpu>",
    );
    let c = vm.expect_ok("cpuid", GUEST_TIMEOUT);
    assert_eq!(c.field("vendor"), Some("GenuineIntel"), "{}", c.details);
    assert_eq!(word(&vm, "l1_eax"), NEHALEM_SIGNATURE, "{}", c.details);
    let ecx = word(&vm, "l1_ecx");
    assert_eq!(ecx & CX16, 0, "cx16 disabled by policy: {ecx:#x}");
    assert_ne!(ecx & HYPERVISOR, 0, "hypervisor bit kept: {ecx:#x}");
    if host_ecx & TSC_DEADLINE != 0 {
        assert_eq!(
            ecx & TSC_DEADLINE,
            0,
            "tsc-deadline is not Nehalem's: {ecx:#x}"
        );
    }
    vm.assert_no_failures();
    vm.expect_exit(exit::POWEROFF, GUEST_TIMEOUT);
}

#[test]
fn host_model_runs_the_closest_model() {
    if !require_kvm("host_model_runs_the_closest_model") {
        return;
    }
    let vm = boot_with_cpu("cpu-host-model", "<cpu mode='host-model' check='partial'/>");
    // The model the probe and the model table choose for this host.
    let out = std::process::Command::new(bin_path("oxvirt-vmm"))
        .arg("--probe-cpu")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let host: HostCpu = serde_json::from_slice(&out.stdout).unwrap();
    let fit = cpu_models::host_model(&host).expect("a model for this host");
    let m = fit.model;
    let c = vm.expect_ok("cpuid", GUEST_TIMEOUT);
    eprintln!("host-model is {} + {:?}: {}", m.name, fit.extra, c.details);
    let eax = word(&vm, "l1_eax");
    assert_eq!(
        (eax >> 8) & 0xf,
        u64::from(m.family.min(0xf)),
        "{}",
        c.details
    );
    let model = ((eax >> 4) & 0xf) | (((eax >> 16) & 0xf) << 4);
    assert_eq!(model, u64::from(m.model), "{}", c.details);
    assert_eq!(eax & 0xf, u64::from(m.stepping), "{}", c.details);
    // The host's features beyond the model are kept (x2apic is one on every
    // host KVM runs on, and no model of the table before Nehalem has it).
    if fit.extra.iter().any(|f| f == "x2apic") {
        assert_ne!(word(&vm, "l1_ecx") & X2APIC, 0, "{}", c.details);
    }
    vm.assert_no_failures();
    vm.expect_exit(exit::POWEROFF, GUEST_TIMEOUT);
}

#[test]
fn unusable_model_or_forbidden_feature_refuses_to_start() {
    if !require_kvm("unusable_model_or_forbidden_feature_refuses_to_start") {
        return;
    }
    // `ia64` is never offered by KVM; `fpu` always is.
    for (cpu, want) in [
        (
            "<cpu mode='custom' match='exact'><model>Nehalem</model>\
             <feature policy='require' name='ia64'/></cpu>",
            "Host CPU does not provide required features: ia64",
        ),
        (
            "<cpu mode='custom' match='exact'><model>Nehalem</model>\
             <feature policy='forbid' name='fpu'/></cpu>",
            "Host CPU provides forbidden features: fpu",
        ),
    ] {
        let vm = boot_with_cpu("cpu-refused", cpu);
        let code = vm.wait_exit(GUEST_TIMEOUT);
        assert_eq!(code, exit::VMM_ERROR, "{}", vm.log());
        assert!(
            vm.log()
                .contains(&format!("the CPU is incompatible with host CPU: {want}")),
            "{}",
            vm.log()
        );
    }
}
