//! `oxvirt-xml` from the outside: exit statuses, stdin, and output that other tools read.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_oxvirt-xml");

fn corpus(name: &str) -> String {
    format!("{}/tests/corpus/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_reports_runnable_unsupported_and_broken_files() {
    let ok = run(&["validate", &corpus("002-kernel-boot-full.xml")], None);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("valid; oxvirt can run it"));

    let unsupported = run(&["validate", &corpus("012-cockpit-machines.xml")], None);
    assert!(unsupported.status.success());
    assert!(text(&unsupported.stdout).contains("secure boot requires SMM"));

    let unknown = run(
        &["validate", &corpus("028-unknown-elements-dropped.xml")],
        None,
    );
    assert!(
        text(&unknown.stderr).contains("warning: /domain/devices/gizmo is not known to libvirt")
    );

    let broken = run(
        &["validate", "-"],
        Some("<domain type='kvm'>\n<name>x</nam>"),
    );
    assert_eq!(broken.status.code(), Some(1));
    assert!(
        text(&broken.stderr).contains("XML error: line 2, column"),
        "{}",
        text(&broken.stderr)
    );

    let missing = run(&["validate", "/nonexistent/domain.xml"], None);
    assert_eq!(missing.status.code(), Some(1));
}

#[test]
fn format_reads_stdin_and_prints_both_forms() {
    let xml = std::fs::read_to_string(corpus("010-virt-manager-q35-live.xml")).unwrap();
    let live = run(&["format", "-"], Some(&xml));
    assert!(live.status.success(), "{}", text(&live.stderr));
    let live = text(&live.stdout);
    assert!(live.starts_with("<domain type='kvm' id='3'>"), "{live}");
    assert!(live.contains("<alias name='virtio-disk0'/>"));
    let inactive = run(&["format", "--inactive", "-"], Some(&xml));
    let inactive = text(&inactive.stdout);
    assert!(inactive.starts_with("<domain type='kvm'>"), "{inactive}");
    assert!(!inactive.contains("<alias"));
}

#[test]
fn spec_prints_a_machine_spec_or_the_error() {
    let out = run(&["spec", &corpus("002-kernel-boot-full.xml")], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let spec = machine_spec::MachineSpec::from_json(&text(&out.stdout)).unwrap();
    assert_eq!(spec.name, "oxvirt-full");
    assert_eq!(spec.cpus.max, 4);

    let out = run(&["spec", &corpus("017-graphics-video-sound.xml")], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unsupported configuration: "),
        "{}",
        text(&out.stderr)
    );
}
