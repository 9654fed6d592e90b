//! Each serial console backend carries the guest's output: stdio, file, pty, unix socket
//! (the VMM listening or connecting), from a spec and from domain XML.

use machine_spec::{exit, CharBackend};
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::spec::{serial_xml, set_serial};
use oxvirt_tests::{domain_xml, spec, test_guests, Vm, GUEST_TIMEOUT};

const CMDLINE: &str = "console=ttyS0 oxtest=acpi,poweroff";

/// The guest ran to the end and powered off, and its output arrived through the backend.
fn ran_to_the_end(vm: &Vm) {
    vm.wait_for("OXTEST DONE", GUEST_TIMEOUT);
    vm.expect_ok("cmdline", GUEST_TIMEOUT);
    vm.expect_exit(exit::POWEROFF, GUEST_TIMEOUT);
}

fn with_backend(backend: CharBackend) -> Vm {
    let mut s = spec(&test_guests().elf, CMDLINE, 128, 1);
    set_serial(&mut s, backend);
    Vm::start(&s)
}

#[test]
fn stdio_console() {
    if !require_kvm("stdio_console") {
        return;
    }
    let vm = with_backend(CharBackend::Stdio);
    ran_to_the_end(&vm);
}

#[test]
fn file_console() {
    if !require_kvm("file_console") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.log");
    let vm = with_backend(CharBackend::File {
        path: path.clone(),
        append: false,
    });
    ran_to_the_end(&vm);
    // The file itself holds the whole transcript once the VMM is gone.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("OXTEST READY") && text.contains("OXTEST DONE"),
        "{text}"
    );
}

#[test]
fn file_console_append_keeps_old_content() {
    if !require_kvm("file_console_append_keeps_old_content") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("console.log");
    std::fs::write(&path, "previous run\n").unwrap();
    let vm = with_backend(CharBackend::File {
        path: path.clone(),
        append: true,
    });
    ran_to_the_end(&vm);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("previous run\n") && text.contains("OXTEST DONE"),
        "{text}"
    );
}

#[test]
fn pty_console() {
    if !require_kvm("pty_console") {
        return;
    }
    let vm = with_backend(CharBackend::Pty);
    ran_to_the_end(&vm);
}

#[test]
fn unix_socket_console_vmm_listens() {
    if !require_kvm("unix_socket_console_vmm_listens") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vm = with_backend(CharBackend::Unix {
        path: dir.path().join("console.sock"),
        listen: true,
    });
    // Output before a client connects is dropped (as QEMU's server=on,wait=off),
    // and the guest may print its first lines before the harness connects.
    vm.wait_for("OXTEST DONE", GUEST_TIMEOUT);
    vm.expect_exit(exit::POWEROFF, GUEST_TIMEOUT);
}

#[test]
fn unix_socket_console_vmm_connects() {
    if !require_kvm("unix_socket_console_vmm_connects") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vm = with_backend(CharBackend::Unix {
        path: dir.path().join("console.sock"),
        listen: false,
    });
    ran_to_the_end(&vm);
}

#[test]
fn domain_xml_with_stdio_console() {
    if !require_kvm("domain_xml_with_stdio_console") {
        return;
    }
    let xml = domain_xml(
        "oxtest-xml",
        &test_guests().elf,
        "console=ttyS0 oxtest=e820,acpi,smp,poweroff mem_expect=256 cpus_expect=2",
        256,
        2,
        "restart",
        &serial_xml("stdio"),
    );
    let vm = Vm::start_xml(&xml, &[]);
    vm.expect_ok("smp", GUEST_TIMEOUT);
    vm.expect_ok("e820", GUEST_TIMEOUT);
    ran_to_the_end(&vm);
    vm.assert_no_failures();
}

#[test]
fn domain_xml_with_file_console() {
    if !require_kvm("domain_xml_with_file_console") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("serial.log");
    let xml = domain_xml(
        "oxtest-xml-file",
        &test_guests().elf,
        CMDLINE,
        128,
        1,
        "destroy",
        &serial_xml(&format!("file:{}", path.display())),
    );
    let vm = Vm::start_xml(&xml, &[]);
    let code = vm.wait_exit(GUEST_TIMEOUT);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        text.contains("OXTEST DONE"),
        "console file:\n{text}\nlog:\n{}",
        vm.log()
    );
    assert_eq!(code, exit::POWEROFF, "{}", vm.log());
}

#[test]
fn uart_registers_loopback_and_irq4() {
    if !require_kvm("uart_registers_loopback_and_irq4") {
        return;
    }
    let vm = Vm::start(&spec(
        &test_guests().elf,
        "console=ttyS0 oxtest=serial,poweroff",
        128,
        1,
    ));
    let c = vm.expect_ok("serial", GUEST_TIMEOUT);
    assert_eq!(c.field("loopback"), Some("ok"), "{}", c.details);
    assert_eq!(c.field("irq4"), Some("ok"), "{}", c.details);
    // The loopback byte (0xa5, not UTF-8 on its own) must not leak to the backend.
    assert!(!vm.console().contains('\u{fffd}'), "{}", vm.console());
    ran_to_the_end(&vm);
}
