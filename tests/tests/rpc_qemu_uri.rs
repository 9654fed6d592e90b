//! The drop-in: with `--qemu-uri`, unmodified libvirt clients that say `qemu:///session`
//! (virsh, python3-libvirt) reach oxvirtd through libvirt's own socket lookup, as an
//! unprivileged desktop user; `oxvirt:///session` keeps working beside it; and a socket
//! a real libvirt daemon is answering on is never taken over.

mod rpc_common;

use std::time::Duration;

use oxvirt_tests::host::require_kvm;
use oxvirt_tests::session::SessionDaemon;
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::{domain_xml, test_guests};
use rpc_common::libvirtd::{Driver, Libvirtd};

#[test]
fn qemu_session_uri_reaches_oxvirtd_for_virsh_and_python() {
    let s = SessionDaemon::start(&["--qemu-uri"]).unwrap_or_else(|e| panic!("{e}"));
    for f in ["virtqemud-sock", "libvirt-sock"] {
        assert!(
            s.socket_dir().join(f).exists(),
            "{f} missing; the daemon's log:\n{}",
            s.log()
        );
    }
    // A read-only twin exists only for system daemons, as libvirt's session daemons have none.
    assert!(!s.socket_dir().join("virtqemud-sock-ro").exists());

    // libvirt's client finds virtqemud-sock in $XDG_RUNTIME_DIR/libvirt for qemu:///session.
    assert_eq!(
        s.virsh_ok("qemu:///session", &["uri"]).trim(),
        "qemu:///session"
    );
    assert_eq!(
        s.virsh_ok("oxvirt:///session", &["uri"]).trim(),
        "oxvirt:///session"
    );
    // Both URIs see the same daemon: a domain defined through one is listed by the other.
    let kernel = s.give(&test_guests().elf);
    let xml = domain_xml(
        "dropin",
        &kernel,
        "console=ttyS0 oxtest=acpibutton",
        64,
        1,
        "restart",
        &serial_xml("pty"),
    );
    let xml_path = s.files().join("dropin.xml");
    std::fs::write(&xml_path, xml).unwrap();
    s.virsh_ok("qemu:///session", &["define", xml_path.to_str().unwrap()]);
    let names = s.virsh_ok("oxvirt:///session", &["list", "--all", "--name"]);
    assert!(names.lines().any(|l| l.trim() == "dropin"), "{names}");

    // python3-libvirt as scripts use it: the default-less open of qemu:///session.
    let py = "import libvirt\n\
              c = libvirt.open('qemu:///session')\n\
              print(c.getURI())\n\
              print(c.getType())\n\
              print(c.lookupByName('dropin').name())\n";
    let r = s.run("python3", &["-c", py], Duration::from_secs(60));
    assert!(r.ok, "python3-libvirt failed: {}\n{}", r.stderr, s.log());
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, ["qemu:///session", "QEMU", "dropin"], "{}", r.stdout);
    // virt-install gates features on the version of the QEMU driver it believes it talks to.
    let v = s.virsh_ok("qemu:///session", &["version"]);
    assert!(v.contains("Running hypervisor: QEMU 7.2.0"), "{v}");

    // And the domain runs for this unprivileged user (the kvm group, like a desktop user).
    if require_kvm("qemu_session_uri_reaches_oxvirtd_for_virsh_and_python (start)") {
        s.virsh_ok("qemu:///session", &["start", "dropin"]);
        let state = s.virsh_ok("qemu:///session", &["domstate", "dropin"]);
        assert_eq!(state.trim(), "running");
        s.virsh_ok("qemu:///session", &["destroy", "dropin"]);
    }
}

#[test]
fn a_socket_a_libvirt_daemon_answers_on_is_not_taken_over() {
    // A real libvirtd (Debian's, as nobody) holds libvirt-sock in its socket directory.
    let Some(lv) = Libvirtd::start(
        "a_socket_a_libvirt_daemon_answers_on_is_not_taken_over",
        Driver::Test,
    ) else {
        return;
    };
    let dir = lv.dir.path().join("sock");
    let cfg = lv.dir.path().join("oxvirtd.toml");
    std::fs::write(
        &cfg,
        format!(
            "rpc_socket = \"{}/virtoxvirtd-sock\"\nqemu_uri = true\nbus = \"unix:path=/nonexistent\"\n\
             domains_dir = \"{d}/oxd\"\nruntime_dir = \"{d}/oxr\"\n",
            dir.display(),
            d = lv.dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(oxvirt_tests::bin_path("oxvirtd"))
        .args(["--system", "--config"])
        .arg(&cfg)
        .output()
        .expect("running oxvirtd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "oxvirtd started anyway:\n{err}");
    let held = dir.join("libvirt-sock");
    assert!(
        err.contains(&format!(
            "'{}' is in use by a running daemon",
            held.display()
        )),
        "unclear refusal:\n{err}"
    );
    // Nothing half-done: the sockets bound before the refusal are gone, libvirtd still answers.
    assert!(!dir.join("virtqemud-sock").exists());
    assert!(!dir.join("virtoxvirtd-sock").exists());
    let r = rpc_common::virsh(&lv.uri(), &["uri"]);
    assert!(r.ok, "libvirtd stopped answering: {}", r.stderr);
}
