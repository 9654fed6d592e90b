//! `virsh domif-setlink` / `domif-getlink` (Debian's virsh, libvirt 9.0) against
//! oxvirtd, as against libvirtd with QEMU: virsh edits the interface XML from
//! `dumpxml` and sends it with virDomainUpdateDeviceFlags (REMOTE procedure 174);
//! oxvirtd takes the running NIC's link down or up with QMP `set_link`, which the
//! oxtest guest's virtio-net driver sees (it prints the link status on every
//! configuration-change interrupt), and `--config` changes the persistent
//! definition, so the next start begins with the link down.
//!
//! The NIC needs a tap (oxvirt-vmm creates it): root and /dev/net/tun, else the test
//! is SKIPPED loudly.

mod rpc_common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use oxvirt_tests::host::{require_kvm, skip};
use oxvirt_tests::oxtest::{checks, Check};
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::{domain_xml, test_guests};
use rpc_common::{Daemon, STEP};

const MAC: &str = "52:54:00:5e:71:01";

fn usable(test: &str) -> bool {
    if !require_kvm(test) {
        return false;
    }
    if !nix::unistd::Uid::effective().is_root() {
        skip(test, "needs root to create the NIC's tap");
        return false;
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        skip(test, "no /dev/net/tun");
        return false;
    }
    true
}

/// The oxtest guest watching its NIC's link (two changes), console into the
/// daemon's `console.log`, one `<interface type='ethernet'>` on tap `tap`.
fn guest_xml(name: &str, tap: &str) -> String {
    domain_xml(
        name,
        &test_guests().elf,
        "console=ttyS0 oxtest=pci,virtio,link link_changes=2",
        64,
        1,
        "destroy",
        &serial_xml("stdio"),
    )
    .replace(
        "<devices>",
        &format!(
            "<devices>\n    <interface type='ethernet'><mac address='{MAC}'/>\
             <target dev='{tap}'/><model type='virtio'/></interface>"
        ),
    )
}

fn console_path(d: &Daemon, name: &str) -> PathBuf {
    d.dir
        .path()
        .join("run/domains")
        .join(name)
        .join("console.log")
}

/// Waits for the guest's `vnet-link` line with `changes=n` (0 = the state at start)
/// and returns its `status` (1 up, 0 down).
fn link_line(d: &Daemon, name: &str, n: usize) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        let console = std::fs::read_to_string(console_path(d, name)).unwrap_or_default();
        let found: Option<Check> = checks(&console)
            .into_iter()
            .find(|c| c.name == "vnet-link" && c.field("changes") == Some(&n.to_string()));
        if let Some(c) = found {
            if !c.ok {
                d.fail(&format!(
                    "vnet-link FAIL {}\n{}",
                    c.details,
                    d.domain_log(name)
                ));
            }
            return c.field("status").unwrap_or_default().to_string();
        }
        if Instant::now() > deadline {
            d.fail(&format!(
                "no vnet-link line with changes={n}\n{}",
                d.domain_log(name)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `<link …/>` element of the (only) interface in a dumpxml, if any.
fn link_element(xml: &str) -> Option<String> {
    let start = xml.find("<interface")?;
    let end = xml[start..].find("</interface>")? + start;
    let iface = &xml[start..end];
    let l = iface.find("<link ")?;
    let e = iface[l..].find("/>")? + l + 2;
    Some(iface[l..e].to_string())
}

fn getlink(d: &Daemon, args: &[&str]) -> String {
    let mut a = vec!["domif-getlink"];
    a.extend_from_slice(args);
    d.virsh_ok(&a).trim().to_string()
}

#[test]
fn rpc_domif_setlink_live_and_config() {
    let test = "rpc_domif_setlink_live_and_config";
    if !usable(test) {
        return;
    }
    let d = Daemon::start();
    let name = "rpc-setlink";
    let tap = format!("oxsl{}", std::process::id() % 100_000);
    let f = d.xml_file(name, &guest_xml(name, &tap));
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    d.wait_state(name, "running");
    assert_eq!(link_line(&d, name, 0), "1", "the link starts up");
    assert_eq!(getlink(&d, &[name, &tap]), format!("{tap} up"));

    // Down, by tap name: virsh sends the live <interface> (alias, address) with
    // <link state='down'/> and VIR_DOMAIN_AFFECT_LIVE.
    let out = d.virsh_ok(&["domif-setlink", name, &tap, "down"]);
    assert!(out.contains("Device updated successfully"), "{out}");
    assert_eq!(
        link_line(&d, name, 1),
        "0",
        "the guest saw the link go down"
    );
    assert_eq!(getlink(&d, &[name, &tap]), format!("{tap} down"));
    let live = d.virsh_ok(&["dumpxml", name]);
    assert_eq!(
        link_element(&live).as_deref(),
        Some("<link state='down'/>"),
        "{live}"
    );
    // The persistent definition is untouched by a live change.
    let inactive = d.virsh_ok(&["dumpxml", "--inactive", name]);
    assert_eq!(link_element(&inactive), None, "{inactive}");
    assert_eq!(d.virsh_ok(&["domstate", name]).trim(), "running");

    // Up again, by MAC: libvirt keeps the explicit state.
    d.virsh_ok(&["domif-setlink", name, MAC, "up"]);
    assert_eq!(
        link_line(&d, name, 2),
        "1",
        "the guest saw the link come back"
    );
    assert_eq!(getlink(&d, &[name, MAC]), format!("{MAC} up"));
    let live = d.virsh_ok(&["dumpxml", name]);
    assert_eq!(
        link_element(&live).as_deref(),
        Some("<link state='up'/>"),
        "{live}"
    );

    // Errors: an interface virsh cannot find in the XML (client side), one the daemon
    // cannot match, and a change QEMU cannot make live either.
    let r = d.virsh(&["domif-setlink", name, "nope0", "down"]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("error: interface 'nope0' not found"),
        "{}",
        r.stderr
    );
    let other = d.xml_file(
        "other-nic",
        "<interface type='ethernet'><mac address='52:54:00:de:ad:01'/><link state='down'/></interface>",
    );
    let r = d.virsh(&["update-device", name, other.to_str().unwrap()]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains(
            "error: device not found: no device found at address '(<null>)' matching MAC \
             address '52:54:00:de:ad:01' and alias '(<null>)'"
        ),
        "{}",
        r.stderr
    );
    let mtu = d.xml_file(
        "mtu-nic",
        &format!("<interface type='ethernet'><mac address='{MAC}'/><mtu size='9000'/></interface>"),
    );
    let r = d.virsh(&["update-device", name, mtu.to_str().unwrap()]);
    assert!(!r.ok);
    assert!(
        r.stderr
            .contains("error: Operation not supported: cannot modify MTU"),
        "{}",
        r.stderr
    );

    // --config: the persistent definition (saved to the store) gets the link down;
    // the running NIC keeps its link up.
    d.virsh_ok(&["domif-setlink", name, &tap, "down", "--config"]);
    assert_eq!(
        getlink(&d, &[name, &tap, "--config"]),
        format!("{tap} down")
    );
    assert_eq!(getlink(&d, &[name, &tap]), format!("{tap} up"));
    let inactive = d.virsh_ok(&["dumpxml", "--inactive", name]);
    assert_eq!(
        link_element(&inactive).as_deref(),
        Some("<link state='down'/>"),
        "{inactive}"
    );
    let stored =
        std::fs::read_to_string(d.dir.path().join("domains").join(format!("{name}.xml"))).unwrap();
    assert!(stored.contains("<link state='down'/>"), "{stored}");
    assert_eq!(
        d.virsh_ok(&["domstate", name]).trim(),
        "running",
        "a config change leaves the domain running"
    );

    // The next start begins with the link down, and a live `up` brings it up.
    d.virsh_ok(&["destroy", name]);
    d.wait_state(name, "shut off");
    d.virsh_ok(&["start", name]);
    d.wait_state(name, "running");
    assert_eq!(
        link_line(&d, name, 0),
        "0",
        "the NIC starts with its link down"
    );
    assert_eq!(getlink(&d, &[name, &tap]), format!("{tap} down"));
    d.virsh_ok(&["domif-setlink", name, &tap, "up"]);
    assert_eq!(
        link_line(&d, name, 1),
        "1",
        "the guest saw the link come up"
    );
    d.virsh_ok(&["destroy", name]);
    d.wait_state(name, "shut off");

    // An inactive domain: virsh changes the definition (VIR_DOMAIN_AFFECT_CONFIG).
    d.virsh_ok(&["domif-setlink", name, MAC, "up"]);
    assert_eq!(getlink(&d, &[name, MAC]), format!("{MAC} up"));
    let inactive = d.virsh_ok(&["dumpxml", "--inactive", name]);
    assert_eq!(
        link_element(&inactive).as_deref(),
        Some("<link state='up'/>"),
        "{inactive}"
    );
    let r = d.virsh(&["update-device", name, other.to_str().unwrap(), "--live"]);
    assert!(!r.ok);
    assert!(
        r.stderr
            .contains("error: Requested operation is not valid: domain is not running"),
        "{}",
        r.stderr
    );
    d.virsh_ok(&["undefine", name]);
}
