//! The Hyper-V enlightenments test body, shared by `hyperv_guest.rs` (tier 2) and
//! `linux_full.rs` (so the nested SVM tier runs it where KVM has Hyper-V support).
//!
//! `oxvirt-vmm --xml` boots the oxtest guest with the enlightenments virt-install and
//! virt-manager write for Windows 10/11 (plus `reset`, `frequencies`, `stimer direct`),
//! through the same translation the daemon uses. Where KVM has Hyper-V (hardware, nested
//! SVM) the guest reads the Hyper-V CPUID leaves and uses the MSRs; on the emulated KVM of
//! the CI machines (`kvm_pvm`, no Hyper-V capabilities at all) the VMM must refuse to
//! start, naming every enlightenment, before the guest runs.

use std::time::Duration;

use oxvirt_tests::{kvm_kind, skip, test_guests, KvmKind, Vm, GUEST_TIMEOUT};

/// Every enlightenment of the Windows set, by the name the refusal must give.
pub const NAMES: &[&str] = &[
    "'relaxed' (hv-relaxed)",
    "'vapic' (hv-vapic)",
    "'spinlocks' (hv-spinlocks)",
    "'vpindex' (hv-vpindex)",
    "'runtime' (hv-runtime)",
    "'synic' (hv-synic)",
    "'stimer' (hv-stimer)",
    "'stimer direct' (hv-stimer-direct)",
    "'reset' (hv-reset)",
    "'frequencies' (hv-frequencies)",
    "'tlbflush' (hv-tlbflush)",
    "'ipi' (hv-ipi)",
    "'hypervclock' (hv-time)",
];

/// The domain XML: oxtest with `oxtest=CHECKS,poweroff`, 2 vCPUs, the console on stdout.
fn domain(hyperv: &str, checks: &str) -> String {
    let guest = test_guests().elf.display().to_string();
    format!(
        "<domain type='kvm'><name>hyperv</name><memory unit='MiB'>128</memory><vcpu>2</vcpu>
  <os><type arch='x86_64'>hvm</type><kernel>{guest}</kernel>
    <cmdline>console=ttyS0 oxtest={checks},poweroff</cmdline></os>
  <features><acpi/><apic/>{hyperv}</features>
  <clock offset='localtime'><timer name='rtc' tickpolicy='catchup'/><timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/><timer name='hypervclock' present='yes'/></clock>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot>
  <devices><serial type='stdio'/></devices></domain>"
    )
}

/// virt-install's Windows 10/11 set (libvirt 9 / virt-install 4.1 and newer) with
/// everything KVM on AMD and Intel both have.
pub const WINDOWS: &str = "<hyperv mode='custom'><relaxed state='on'/><vapic state='on'/>\
    <spinlocks state='on' retries='8191'/><vpindex state='on'/><runtime state='on'/>\
    <synic state='on'/><stimer state='on'><direct state='on'/></stimer><reset state='on'/>\
    <frequencies state='on'/><tlbflush state='on'/><ipi state='on'/></hyperv>";

/// Waits for the VMM to end without the guest having run; returns its log.
fn refused(vm: &Vm) -> String {
    let rc = vm.wait_exit(Duration::from_secs(60));
    if rc == 0 || vm.console().contains("OXTEST READY") {
        vm.fail("the VMM started a guest it should have refused");
    }
    vm.log()
}

/// Runs the test as `test`: the guest's view where KVM has Hyper-V, the refusal where not.
pub fn run(test: &str) {
    if !oxvirt_tests::host::require_kvm(test) {
        return;
    }
    let xml = domain(WINDOWS, "cpuid,hyperv");
    let vm = Vm::start_xml(&xml, &[]);
    if kvm_kind() == KvmKind::Emulated {
        let log = refused(&vm);
        for name in NAMES {
            assert!(log.contains(name), "refusal does not name {name}:\n{log}");
        }
        assert!(log.contains("not started"), "{log}");
        skip(
            test,
            "this KVM (kvm_pvm) has no Hyper-V support: checked the refusal by name only; \
             the guest's view of the leaves and MSRs runs in the nested SVM tier \
             (scripts/test-nested-svm.sh full_hyperv)",
        );
        return;
    }
    let hv = vm.expect_ok("hyperv", GUEST_TIMEOUT);
    let field = |k: &str| {
        hv.field(k)
            .unwrap_or_else(|| vm.fail(&format!("no {k}= in `{}`", hv.details)))
            .to_string()
    };
    assert!(
        hv.details.starts_with("vendor=Microsoft Hv "),
        "{}",
        hv.details
    );
    assert_eq!(field("max"), "0x40000005");
    // runtime, time ref count, synic, stimer, APIC MSRs, hypercall, VP index, reset,
    // reference TSC, frequencies (hyperv.rs in the VMM has the table).
    assert_eq!(field("feat_eax"), "0xaff");
    // CPU dynamic partitioning, frequency MSRs, stimer direct mode.
    assert_eq!(field("feat_edx"), "0x80108");
    // remote TLB flush, APIC access, relaxed timing, cluster IPI, ex processor masks.
    assert_eq!(field("rec_eax"), "0xc2c");
    assert_eq!(field("spin"), "0x1fff");
    assert_eq!(field("kvm_leaves"), "0x40000100");
    let msrs = vm.expect_ok("hyperv-msrs", GUEST_TIMEOUT);
    let m = |k: &str| {
        msrs.field(k)
            .unwrap_or_else(|| vm.fail(&format!("no {k}= in `{}`", msrs.details)))
            .to_string()
    };
    // What the guest saw, for the log of the nested tier.
    eprintln!(
        "{test}: guest saw: hyperv {}\n{test}: hyperv-msrs {}",
        hv.details, msrs.details
    );
    assert_eq!(m("guest_os_id"), "ok");
    assert_eq!(m("hypercall_msr"), "ok");
    // HvCallNotifyLongSpinWait through the hypercall page: HV_STATUS_SUCCESS.
    assert_eq!(m("spin_wait_status"), "0x0");
    assert_eq!(m("vp_index"), "0");
    assert_ne!(m("time_ref_advanced"), "0");
    assert_eq!(m("synic_version"), "1");
    assert_ne!(m("tsc_hz"), "0");
    vm.wait_for("OXTEST DONE", GUEST_TIMEOUT);
    vm.assert_no_failures();
    vm.expect_exit(machine_spec::exit::POWEROFF, GUEST_TIMEOUT);

    // An enlightenment this host lacks is refused by name: the enlightened VMCS exists
    // only on Intel (VMX) hosts.
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if !cpuinfo.contains(" vmx") {
        let evmcs = WINDOWS.replace("</hyperv>", "<evmcs state='on'/></hyperv>");
        let vm = Vm::start_xml(&domain(&evmcs, "hyperv"), &[]);
        let log = refused(&vm);
        assert!(log.contains("'evmcs' (hv-evmcs)"), "{log}");
    }
}
