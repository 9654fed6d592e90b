//! The `oxvirt-vmm` command line: help, usage errors and the host problems a user
//! meets first, each with its exit status and a message that names the culprit.

use std::path::Path;
use std::process::{Command, Output};

use machine_spec::exit;

fn vmm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_oxvirt-vmm"))
        .args(args)
        .env("OXVIRT_LOG", "info")
        .output()
        .expect("oxvirt-vmm runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A minimal spec booting `kernel`.
fn spec_json(kernel: &Path) -> String {
    format!(
        r#"{{"version":1,"name":"cli","uuid":"c7a5fdbd-cdaf-9455-926a-d65c16db1809",
 "memory":{{"size_bytes":67108864}},
 "cpus":{{"count":1,"max":1,"topology":{{"sockets":1,"dies":1,"cores":1,"threads":1}},"mode":"host-passthrough"}},
 "boot":{{"kernel":"{}","cmdline":""}},
 "platform":{{"acpi":true,"apic":true}},
 "lifecycle":{{"on_poweroff":"destroy","on_reboot":"destroy","on_crash":"destroy"}},
 "devices":[]}}"#,
        kernel.display()
    )
}

#[test]
fn help_documents_every_exit_status() {
    let o = vmm(&["--help"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for (code, word) in [
        (exit::POWEROFF, "powered off"),
        (exit::VMM_ERROR, "could not start"),
        (exit::USAGE, "usage"),
        (exit::REBOOT, "reset itself"),
        (exit::CRASH, "crashed"),
        (exit::HOST_STOP, "SIGTERM"),
    ] {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{code} ")))
            .unwrap_or_else(|| panic!("no line for exit status {code} in:\n{text}"));
        assert!(line.contains(word), "{line}");
    }
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(vmm(&[]).status.code(), Some(exit::USAGE));
    assert_eq!(
        vmm(&["--spec", "a.json", "--xml", "b.xml"]).status.code(),
        Some(exit::USAGE)
    );
    assert_eq!(vmm(&["--bogus"]).status.code(), Some(exit::USAGE));
}

#[test]
fn unreadable_or_invalid_spec_names_the_file() {
    let o = vmm(&["--spec", "/nonexistent/spec.json"]);
    assert_eq!(o.status.code(), Some(exit::VMM_ERROR));
    assert!(
        stderr(&o).contains("/nonexistent/spec.json"),
        "{}",
        stderr(&o)
    );

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("spec.json");
    std::fs::write(&p, r#"{"version": 1}"#).unwrap();
    let o = vmm(&["--spec", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(exit::VMM_ERROR));
    assert!(stderr(&o).contains("machine spec"), "{}", stderr(&o));
}

#[test]
fn missing_kernel_and_not_a_kernel_are_clear_errors() {
    if !Path::new("/dev/kvm").exists() {
        eprintln!("SKIPPED missing_kernel_and_not_a_kernel_are_clear_errors: no /dev/kvm");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("spec.json");

    let missing = dir.path().join("no-such-vmlinux");
    std::fs::write(&spec, spec_json(&missing)).unwrap();
    let o = vmm(&["--spec", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(exit::VMM_ERROR));
    let e = stderr(&o);
    assert!(
        e.contains("cannot open kernel") && e.contains("no-such-vmlinux"),
        "{e}"
    );

    let script = dir.path().join("not-a-kernel.sh");
    std::fs::write(&script, "#!/bin/sh\necho hello\n").unwrap();
    std::fs::write(&spec, spec_json(&script)).unwrap();
    let o = vmm(&["--spec", spec.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(exit::VMM_ERROR));
    let e = stderr(&o);
    assert!(
        e.contains("not-a-kernel.sh") && e.contains("is not a kernel"),
        "{e}"
    );
}

#[test]
fn bad_domain_xml_is_a_vmm_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("domain.xml");
    std::fs::write(&p, "<domain type='kvm'><name>x</name>").unwrap();
    let o = vmm(&["--xml", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(exit::VMM_ERROR));
    assert!(stderr(&o).contains("domain.xml"), "{}", stderr(&o));
}

/// oxvirtd's tap helper: a tap it cannot put on its bridge is an error naming the
/// tap and the failed step, and leaves no tap behind (the descriptor is never sent).
#[test]
fn open_tap_helper_names_what_failed() {
    let o = vmm(&["--open-tap", "oxclitap0", "--bridge", "oxno-such-br0"]);
    assert_eq!(o.status.code(), Some(exit::VMM_ERROR), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("oxclitap0"), "{err}");
    if nix::unistd::geteuid().is_root() {
        assert!(err.contains("SIOCBRADDIF"), "{err}");
    }
    assert!(!Path::new("/sys/class/net/oxclitap0").exists());
    // --bridge and --queues belong to --open-tap; queues are 1 to 64.
    for args in [
        &["--spec", "/dev/null", "--bridge", "br0"][..],
        &["--spec", "/dev/null", "--queues", "2"],
        &["--open-tap", "oxclitap0", "--queues", "0"],
        &["--open-tap", "oxclitap0", "--queues", "65"],
    ] {
        let o = vmm(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}
