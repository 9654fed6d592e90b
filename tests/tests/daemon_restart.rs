//! Supervision: a daemon killed with SIGKILL loses nothing (its VMMs keep running
//! and are found again, still controllable), and a VMM killed with SIGKILL leaves
//! its domain shut off (crashed) while the daemon and other domains carry on.

mod daemon_common;

use std::time::Duration;

use daemon_common::{guest_xml, BusKind, Daemon, STEP};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oxvirt_tests::host::require_kvm;

fn start_two(d: &Daemon) -> (String, String) {
    let a = d.define_guest("one");
    let b = d.define_guest("two");
    d.domain(&a, "Create", &["u", "0"]);
    d.domain(&b, "Create", &["u", "0"]);
    d.wait_console("one", "OXTEST acpibutton armed", STEP);
    d.wait_console("two", "OXTEST acpibutton armed", STEP);
    assert_eq!(d.state(&a), (1, 1));
    assert_eq!(d.state(&b), (1, 1));
    (a, b)
}

#[test]
fn daemon_killed_and_restarted_finds_its_running_domains() {
    if !require_kvm("daemon_killed_and_restarted_finds_its_running_domains") {
        return;
    }
    let mut d = Daemon::start(BusKind::Session);
    let (a, b) = start_two(&d);
    let ids = (
        d.property(&a, "org.libvirt.Domain", "Id"),
        d.property(&b, "org.libvirt.Domain", "Id"),
    );
    d.domain(&b, "Suspend", &[]);
    let pids = (d.vmm_pid("one"), d.vmm_pid("two"));

    d.kill9();
    // The VMMs did not die with the daemon.
    for pid in [pids.0, pids.1] {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "VMM {pid} died with the daemon"
        );
    }
    d.start_daemon();

    // Same objects, same ids, same states.
    assert_eq!(d.state(&a), (1, 1));
    assert_eq!(d.state(&b).0, 3, "the paused domain is still paused");
    assert_eq!(d.property(&a, "org.libvirt.Domain", "Id"), ids.0);
    assert_eq!(d.property(&b, "org.libvirt.Domain", "Id"), ids.1);
    assert_eq!((d.vmm_pid("one"), d.vmm_pid("two")), pids);

    // Controllable: resume one, shut the other down through the guest, destroy.
    d.domain(&b, "Resume", &[]);
    assert_eq!(d.state(&b), (1, 5));
    d.domain(&a, "Shutdown", &["u", "0"]);
    assert_eq!(
        d.wait_state(&a, 5, STEP),
        (5, 1),
        "a reattached VMM's power-off is a shutdown"
    );
    d.domain(&b, "Destroy", &["u", "0"]);
    assert_eq!(d.wait_state(&b, 5, Duration::from_secs(30)), (5, 2));
    // And it can start again under the new daemon.
    d.domain(&a, "Create", &["u", "0"]);
    assert_eq!(d.state(&a), (1, 1));
}

#[test]
fn vmm_killed_leaves_its_domain_crashed_and_others_running() {
    if !require_kvm("vmm_killed_leaves_its_domain_crashed_and_others_running") {
        return;
    }
    let mut d = Daemon::start(BusKind::Session);
    let (a, b) = start_two(&d);
    kill(Pid::from_raw(d.vmm_pid("one")), Signal::SIGKILL).unwrap();
    assert_eq!(
        d.wait_state(&a, 5, Duration::from_secs(30)),
        (5, 3),
        "shutoff (crashed)"
    );
    assert_eq!(d.state(&b), (1, 1));
    d.domain(&b, "Suspend", &[]);
    assert_eq!(d.state(&b), (3, 1));

    // The same after a daemon restart: a reattached VMM that dies is a crash too.
    d.kill9();
    d.start_daemon();
    kill(Pid::from_raw(d.vmm_pid("two")), Signal::SIGKILL).unwrap();
    assert_eq!(d.wait_state(&b, 5, Duration::from_secs(30)), (5, 3));
    // Like libvirtd, a restarted daemon keeps no reason for a domain that was
    // already shut off: (5, 0) "unknown".
    assert_eq!(d.state(&a).0, 5);
    // A crashed domain starts again.
    d.domain(&a, "Create", &["u", "0"]);
    assert_eq!(d.state(&a), (1, 1));
}

#[test]
fn transient_domain_survives_a_daemon_restart() {
    if !require_kvm("transient_domain_survives_a_daemon_restart") {
        return;
    }
    let mut d = Daemon::start(BusKind::Session);
    let xml = guest_xml("passing", &d.console("passing"));
    let out = d.call(
        daemon_common::CONNECT,
        "org.libvirt.Connect",
        "DomainCreateXML",
        &["su", &xml, "0"],
    );
    let path = daemon_common::object_path(&out);
    d.wait_console("passing", "OXTEST acpibutton armed", STEP);
    d.kill9();
    d.start_daemon();
    assert_eq!(d.state(&path), (1, 1));
    let p = d.property(&path, "org.libvirt.Domain", "Persistent");
    assert_eq!(p, "b false");
    // Still transient: it vanishes when the guest powers off.
    d.domain(&path, "Shutdown", &["u", "0"]);
    d.wait_undefined("passing");
}
