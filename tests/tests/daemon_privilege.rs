//! The system-like bus with our policy (packaging/dbus/org.libvirt.conf): root is
//! served, an unprivileged caller (`nobody`) is refused. With a policy that lets
//! everybody through, oxvirtd's own credential check refuses `nobody`.

mod daemon_common;

use daemon_common::{set_autostart_args, BusKind, Daemon, CONNECT};
use oxvirt_tests::host::require_kvm;

#[test]
fn daemon_refuses_nobody_even_when_the_bus_policy_lets_it_through() {
    let d = Daemon::start(BusKind::SystemOpenPolicy);
    let o = d.try_call_as_nobody(CONNECT, "org.libvirt.Connect", "ListDomains", &["u", "0"]);
    let err = &o.stderr;
    assert!(!o.ok, "nobody was served");
    // Not root, not in the group, and no polkit on this private bus to ask.
    assert!(
        err.contains(
            "access denied: 'org.libvirt' requires root, membership of group 'oxvirt' or \
             polkit authorization for 'org.oxvirt.domain.monitor' \
             (polkit (org.freedesktop.PolicyKit1) is not available"
        ),
        "{err}"
    );
    let r = d.try_call(CONNECT, "org.libvirt.Connect", "ListDomains", &["u", "0"]);
    assert!(r.ok, "root was refused: {}", r.stderr);
    // Writing a property is checked as well.
    let path = d.define(
        "<domain type='kvm'><name>guarded</name><memory>65536</memory>\
         <os><type>hvm</type><kernel>/k</kernel></os></domain>",
    );
    let o = d.busctl_as_nobody(&set_autostart_args(&path));
    assert!(!o.ok, "nobody set Autostart");
    assert!(!d.dir.path().join("domains/autostart/guarded.xml").exists());
}

#[test]
fn system_bus_serves_root_and_refuses_nobody() {
    let d = Daemon::start(BusKind::System);
    let r = d.try_call(CONNECT, "org.libvirt.Connect", "ListDomains", &["u", "0"]);
    assert!(r.ok, "root was refused: {}", r.stderr);
    assert_eq!(r.stdout.trim(), "ao 0");

    let o = d.try_call_as_nobody(CONNECT, "org.libvirt.Connect", "ListDomains", &["u", "0"]);
    let err = &o.stderr;
    assert!(!o.ok, "nobody was served");
    assert!(
        err.contains("Access denied") || err.contains("AccessDenied"),
        "{err}"
    );
    // Defining is refused as well, and nothing is defined.
    let xml = "<domain type='kvm'><name>x</name><memory>65536</memory><os><type>hvm</type>\
               <kernel>/k</kernel></os></domain>";
    let o = d.try_call_as_nobody(
        CONNECT,
        "org.libvirt.Connect",
        "DomainDefineXML",
        &["s", xml],
    );
    assert!(!o.ok);
    let r = d.call(CONNECT, "org.libvirt.Connect", "ListDomains", &["u", "0"]);
    assert_eq!(r.trim(), "ao 0");
}

#[test]
fn root_drives_a_domain_on_the_system_bus() {
    if !require_kvm("root_drives_a_domain_on_the_system_bus") {
        return;
    }
    let d = Daemon::start(BusKind::System);
    let path = d.start_guest("sys", "OXTEST READY");
    assert_eq!(d.state(&path), (1, 1));
    // An unprivileged caller cannot stop it.
    let o = d.try_call_as_nobody(&path, "org.libvirt.Domain", "Destroy", &["u", "0"]);
    assert!(!o.ok);
    assert_eq!(d.state(&path), (1, 1));
    d.domain(&path, "Destroy", &["u", "0"]);
    assert_eq!(d.state(&path), (5, 2));
}
