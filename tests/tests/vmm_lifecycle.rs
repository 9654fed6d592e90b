//! Guest reset and host stop: `on_reboot` restart runs the guest again in the same process,
//! destroy ends it with `exit::REBOOT`; SIGTERM stops it with `exit::HOST_STOP`.

use std::time::Duration;

use machine_spec::{exit, LifecycleAction};
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::{spec, test_guests, Vm, GUEST_TIMEOUT};

#[test]
fn reset_with_on_reboot_restart_runs_the_guest_again() {
    if !require_kvm("reset_with_on_reboot_restart_runs_the_guest_again") {
        return;
    }
    let mut s = spec(&test_guests().elf, "console=ttyS0 oxtest=reset", 128, 1);
    s.lifecycle.on_reboot = LifecycleAction::Restart;
    let vm = Vm::start(&s);
    vm.wait_count("OXTEST READY", 2, GUEST_TIMEOUT);
    assert!(vm.exited().is_none(), "the VMM ended instead of restarting");
    let pid = vm.pid();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn reset_with_two_vcpus_restarts_all_of_them() {
    if !require_kvm("reset_with_two_vcpus_restarts_all_of_them") {
        return;
    }
    let s = spec(
        &test_guests().elf,
        "console=ttyS0 oxtest=acpi,smp,reset cpus_expect=2",
        128,
        2,
    );
    let vm = Vm::start(&s);
    // The second run brings the APs up again from INIT/SIPI.
    vm.wait_count("OXTEST smp ok cpus=2", 2, GUEST_TIMEOUT * 2);
    vm.assert_no_failures();
}

/// The guest resets the machine by `method` (`reset_method=`) with `on_reboot`
/// destroy: the VMM must end with `exit::REBOOT`.
fn reset_with_on_reboot_destroy(method: &str) -> Vm {
    let mut s = spec(
        &test_guests().elf,
        &format!("console=ttyS0 oxtest=reset reset_method={method}"),
        128,
        1,
    );
    s.lifecycle.on_reboot = LifecycleAction::Destroy;
    let vm = Vm::start(&s);
    vm.wait_for(&format!("OXTEST reset trying {method}"), GUEST_TIMEOUT);
    vm.expect_exit(exit::REBOOT, GUEST_TIMEOUT);
    vm
}

#[test]
fn keyboard_controller_reset_with_on_reboot_destroy_exits_reboot() {
    if !require_kvm("keyboard_controller_reset_with_on_reboot_destroy_exits_reboot") {
        return;
    }
    let vm = reset_with_on_reboot_destroy("kbd");
    assert_eq!(vm.console().matches("OXTEST READY").count(), 1);
}

#[test]
fn default_reset_with_on_reboot_destroy_exits_reboot() {
    if !require_kvm("default_reset_with_on_reboot_destroy_exits_reboot") {
        return;
    }
    // The guest tries the FADT reset register first, as Linux does (reboot=acpi).
    let mut s = spec(&test_guests().elf, "console=ttyS0 oxtest=reset", 128, 1);
    s.lifecycle.on_reboot = LifecycleAction::Destroy;
    let vm = Vm::start(&s);
    vm.expect_exit(exit::REBOOT, GUEST_TIMEOUT);
}

#[test]
fn sigterm_stops_a_running_guest() {
    if !require_kvm("sigterm_stops_a_running_guest") {
        return;
    }
    let s = spec(&test_guests().elf, "console=ttyS0 oxtest=count", 128, 1);
    let vm = Vm::start(&s);
    vm.wait_for("OXTEST tick 1", GUEST_TIMEOUT);
    vm.signal(nix::sys::signal::Signal::SIGTERM);
    vm.expect_exit(exit::HOST_STOP, Duration::from_secs(30));
}

#[test]
fn missing_kernel_is_a_clear_vmm_error() {
    let s = spec(std::path::Path::new("/nonexistent/vmlinux"), "", 128, 1);
    let vm = Vm::start(&s);
    let code = vm.wait_exit(Duration::from_secs(30));
    assert_eq!(code, exit::VMM_ERROR, "{}", vm.log());
    assert!(
        vm.log().contains("/nonexistent/vmlinux"),
        "the error should name the kernel path:\n{}",
        vm.log()
    );
}

#[test]
fn cf9_reset_with_on_reboot_destroy_exits_reboot() {
    if !require_kvm("cf9_reset_with_on_reboot_destroy_exits_reboot") {
        return;
    }
    reset_with_on_reboot_destroy("cf9");
}

#[test]
fn triple_fault_is_a_crash() {
    if !require_kvm("triple_fault_is_a_crash") {
        return;
    }
    let s = spec(
        &test_guests().elf,
        "console=ttyS0 oxtest=reset reset_method=triple",
        128,
        1,
    );
    let vm = Vm::start(&s);
    vm.wait_for("OXTEST reset trying triple", GUEST_TIMEOUT);
    vm.expect_exit(exit::CRASH, GUEST_TIMEOUT);
}

#[test]
fn pvpanic_is_a_crash() {
    if !require_kvm("pvpanic_is_a_crash") {
        return;
    }
    let mut s = spec(&test_guests().elf, "console=ttyS0 oxtest=pvpanic", 128, 1);
    s.devices.push(machine_spec::Device {
        boot_index: None,
        id: "panic0".into(),
        pci: None,
        kind: machine_spec::DeviceKind::Pvpanic,
    });
    let vm = Vm::start(&s);
    vm.wait_for("OXTEST pvpanic ok", GUEST_TIMEOUT);
    vm.expect_exit(exit::CRASH, GUEST_TIMEOUT);
}

#[test]
fn emulation_failure_is_a_crash_with_rip_and_bytes() {
    if !require_kvm("emulation_failure_is_a_crash_with_rip_and_bytes") {
        return;
    }
    if !oxvirt_tests::emulated_kvm() {
        oxvirt_tests::skip(
            "emulation_failure_is_a_crash_with_rip_and_bytes",
            "needs KVM's instruction emulator (kvm_pvm) to fail on int3; hardware runs it",
        );
        return;
    }
    let s = spec(&test_guests().elf, "console=ttyS0 oxtest=int3", 128, 1);
    let vm = Vm::start(&s);
    vm.wait_for("OXTEST int3 ok", GUEST_TIMEOUT);
    vm.expect_exit(exit::CRASH, GUEST_TIMEOUT);
    // The message names the instruction: int3 is the single byte 0xcc.
    let log = vm.log().to_lowercase();
    if !(log.contains("rip") && log.contains("cc")) {
        vm.fail("the VMM log should give the RIP and the instruction bytes (cc)");
    }
}

#[test]
fn not_a_kernel_is_a_clear_vmm_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("notakernel");
    std::fs::write(
        &bogus,
        b"this is text, not an ELF or a bzImage\n".repeat(100),
    )
    .unwrap();
    let vm = Vm::start(&spec(&bogus, "", 128, 1));
    let code = vm.wait_exit(Duration::from_secs(30));
    assert_eq!(code, exit::VMM_ERROR, "{}", vm.log());
    assert!(
        vm.log().contains("notakernel"),
        "the error should name the file:\n{}",
        vm.log()
    );
}

#[test]
fn pidfile_names_the_process() {
    if !require_kvm("pidfile_names_the_process") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("vm.pid");
    let s = spec(&test_guests().elf, "console=ttyS0 oxtest=count", 128, 1);
    let vm = Vm::start_with(&s, &["--pidfile", pidfile.to_str().unwrap()]);
    vm.wait_for("OXTEST DONE", GUEST_TIMEOUT);
    let text = std::fs::read_to_string(&pidfile).unwrap_or_default();
    assert_eq!(
        text.trim(),
        vm.pid().to_string(),
        "pidfile content {text:?}"
    );
}

#[test]
fn help_lists_the_exit_statuses_and_usage_errors_exit_2() {
    let bin = oxvirt_tests::bin_path("oxvirt-vmm");
    let out = std::process::Command::new(&bin)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for code in [
        exit::POWEROFF,
        exit::VMM_ERROR,
        exit::USAGE,
        exit::REBOOT,
        exit::CRASH,
        exit::HOST_STOP,
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&code.to_string())),
            "--help does not document exit status {code}:\n{help}"
        );
    }
    let out = std::process::Command::new(&bin)
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::USAGE));
}
