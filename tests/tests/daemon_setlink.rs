//! libvirt-dbus's `org.libvirt.Domain.UpdateDevice(s xml, u flags)` on oxvirtd,
//! through `busctl`: the same core operation as virsh's domif-setlink. A live link
//! change reaches the oxtest guest's virtio-net driver and shows in the live XML,
//! also after the daemon is killed and restarted (it reattaches from the runtime
//! copy of the live definition); a config change shows in the inactive XML and in
//! the next start; unknown interfaces get libvirt's error.
//!
//! The NIC needs a tap (oxvirt-vmm creates it): root and /dev/net/tun, else the test
//! is SKIPPED loudly.

mod daemon_common;

use daemon_common::{BusKind, Daemon, STEP};
use oxvirt_tests::net::{require_tap, wait_link_status};
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::{domain_xml, test_guests};

const MAC: &str = "52:54:00:5e:72:01";
const IFACE: &str = "org.libvirt.Domain";

/// Waits for the guest's `vnet-link` line with `changes=n` and returns its status.
fn link_line(d: &Daemon, name: &str, n: usize) -> String {
    wait_link_status(&d.console(name), n, STEP).unwrap_or_else(|e| d.fail(&e))
}

/// The interface XML an UpdateDevice call sends (as virsh's domif-setlink would).
fn nic(mac: &str, state: &str) -> String {
    format!("<interface type='ethernet'><mac address='{mac}'/><link state='{state}'/></interface>")
}

/// `GetXMLDesc(flags)`, without busctl's escaping of quotes.
fn xml_desc(d: &Daemon, path: &str, flags: &str) -> String {
    d.domain(path, "GetXMLDesc", &["u", flags])
        .replace("\\'", "'")
}

#[test]
fn dbus_update_device_sets_the_link() {
    let test = "dbus_update_device_sets_the_link";
    if !require_tap(test) {
        return;
    }
    let mut d = Daemon::start(BusKind::Session);
    let name = "dbus-setlink";
    let tap = format!("oxdl{}", std::process::id() % 100_000);
    let console = d.console(name);
    let xml = domain_xml(
        name,
        &test_guests().elf,
        "console=ttyS0 oxtest=pci,virtio,link link_changes=2",
        64,
        1,
        "destroy",
        &serial_xml(&format!("file:{}", console.display())),
    )
    .replace(
        "<devices>",
        &format!(
            "<devices>\n    <interface type='ethernet'><mac address='{MAC}'/>\
             <target dev='{tap}'/></interface>"
        ),
    );
    let path = d.define(&xml);
    d.domain(&path, "Create", &["u", "0"]);
    d.wait_state(&path, 1, STEP);
    assert_eq!(link_line(&d, name, 0), "1", "the link starts up");

    // VIR_DOMAIN_AFFECT_LIVE.
    d.domain(&path, "UpdateDevice", &["su", &nic(MAC, "down"), "1"]);
    assert_eq!(
        link_line(&d, name, 1),
        "0",
        "the guest saw the link go down"
    );
    let live = xml_desc(&d, &path, "0");
    assert!(live.contains("<link state='down'/>"), "{live}");
    assert!(
        !xml_desc(&d, &path, "2").contains("<link "),
        "the persistent definition keeps no link state"
    );

    // A restarted daemon finds the running domain with its current live definition.
    d.kill9();
    d.start_daemon();
    d.wait_state(&path, 1, STEP);
    let live = xml_desc(&d, &path, "0");
    assert!(live.contains("<link state='down'/>"), "{live}");

    // libvirt's errors, as org.libvirt.Error.
    let r = d.try_call(
        &path,
        IFACE,
        "UpdateDevice",
        &["su", &nic("52:54:00:de:ad:02", "up"), "0"],
    );
    assert!(!r.ok);
    assert!(
        r.stderr.contains(
            "device not found: no device found at address '(<null>)' matching MAC address \
             '52:54:00:de:ad:02' and alias '(<null>)'"
        ),
        "{}",
        r.stderr
    );
    // A <disk> goes to the media path (core/media.rs), which wants a target.
    let r = d.try_call(
        &path,
        IFACE,
        "UpdateDevice",
        &["su", "<disk type='file' device='cdrom'/>", "0"],
    );
    assert!(
        !r.ok && r.stderr.contains("missing target information for device"),
        "{}",
        r.stderr
    );
    let r = d.try_call(
        &path,
        IFACE,
        "UpdateDevice",
        &[
            "su",
            "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>",
            "0",
        ],
    );
    assert!(
        !r.ok
            && r.stderr
                .contains("Operation not supported: live update of device 'rng' is not supported"),
        "{}",
        r.stderr
    );
    let r = d.try_call(&path, IFACE, "UpdateDevice", &["su", &nic(MAC, "up"), "8"]);
    assert!(
        !r.ok
            && r.stderr.contains(
                "invalid argument: unsupported flags (0x8) in function virDomainUpdateDeviceFlags"
            ),
        "{}",
        r.stderr
    );

    // VIR_DOMAIN_AFFECT_CURRENT on a running domain is live.
    d.domain(&path, "UpdateDevice", &["su", &nic(MAC, "up"), "0"]);
    assert_eq!(
        link_line(&d, name, 2),
        "1",
        "the guest saw the link come up"
    );
    assert!(xml_desc(&d, &path, "0").contains("<link state='up'/>"));

    // VIR_DOMAIN_AFFECT_CONFIG: the next start has the link down.
    d.domain(&path, "UpdateDevice", &["su", &nic(MAC, "down"), "2"]);
    assert!(xml_desc(&d, &path, "2").contains("<link state='down'/>"));
    assert!(xml_desc(&d, &path, "0").contains("<link state='up'/>"));
    d.domain(&path, "Destroy", &["u", "0"]);
    d.wait_state(&path, 5, STEP);
    let _ = std::fs::remove_file(&console);
    d.domain(&path, "Create", &["u", "0"]);
    d.wait_state(&path, 1, STEP);
    assert_eq!(
        link_line(&d, name, 0),
        "0",
        "the NIC starts with its link down"
    );
    d.domain(&path, "Destroy", &["u", "0"]);
    d.wait_state(&path, 5, STEP);
    // A shut-off domain: LIVE is refused, CURRENT changes the definition.
    let r = d.try_call(&path, IFACE, "UpdateDevice", &["su", &nic(MAC, "up"), "1"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("Requested operation is not valid: domain is not running"),
        "{}",
        r.stderr
    );
    d.domain(&path, "UpdateDevice", &["su", &nic(MAC, "up"), "0"]);
    assert!(xml_desc(&d, &path, "0").contains("<link state='up'/>"));
}
