//! `virsh domif-setlink` / `domif-getlink` (Debian's virsh, libvirt 9.0) against
//! oxvirtd, as against libvirtd with QEMU: virsh edits the interface XML from
//! `dumpxml` and sends it with virDomainUpdateDeviceFlags (REMOTE procedure 174);
//! oxvirtd takes the running NIC's link down or up with QMP `set_link`, which the
//! oxtest guest's virtio-net driver sees (it prints the link status on every
//! configuration-change interrupt), and `--config` changes the persistent
//! definition, so the next start begins with the link down.
//!
//! A second test runs one virsh session against oxvirtd and against a private
//! libvirtd (Debian's, QEMU driver, as `nobody`) and compares the transcripts: the
//! outputs and error texts asserted here are libvirt's own.
//!
//! The NIC needs a tap (oxvirt-vmm creates it): root and /dev/net/tun, else the test
//! is SKIPPED loudly; the comparison also needs libvirtd and qemu-system-x86_64.

mod rpc_common;

use std::path::{Path, PathBuf};

use oxvirt_tests::net::{require_tap, wait_link_status};
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::{domain_xml, test_guests};
use rpc_common::libvirtd::{Driver, Libvirtd};
use rpc_common::{virsh, Daemon, STEP};

const MAC: &str = "52:54:00:5e:71:01";

/// The oxtest guest watching its NIC's link (two changes), console into the
/// daemon's `console.log`, one `<interface type='ethernet'>`, on tap `tap` or (`None`)
/// on one the daemon names `vnetN`, as libvirt does.
fn guest_xml(name: &str, tap: Option<&str>) -> String {
    let target = tap
        .map(|t| format!("<target dev='{t}'/>"))
        .unwrap_or_default();
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
             {target}<model type='virtio'/></interface>"
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
    wait_link_status(&console_path(d, name), n, STEP)
        .unwrap_or_else(|e| d.fail(&format!("{e}\n{}", d.domain_log(name))))
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

/// The host interface `virsh domiflist` shows for the NIC.
fn iface_name(d: &Daemon, name: &str) -> String {
    let out = d.virsh_ok(&["domiflist", name]);
    out.lines()
        .find(|l| l.contains(MAC))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| d.fail(&format!("no row for {MAC} in domiflist:\n{out}")))
        .to_string()
}

fn getlink(d: &Daemon, args: &[&str]) -> String {
    let mut a = vec!["domif-getlink"];
    a.extend_from_slice(args);
    d.virsh_ok(&a).trim().to_string()
}

#[test]
fn rpc_domif_setlink_live_and_config() {
    let test = "rpc_domif_setlink_live_and_config";
    if !require_tap(test) {
        return;
    }
    let d = Daemon::start();
    let name = "rpc-setlink";
    // No <target dev>: the daemon names the tap vnetN, as libvirt does.
    let f = d.xml_file(name, &guest_xml(name, None));
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    d.wait_state(name, "running");
    let tap = iface_name(&d, name);
    assert!(
        tap.starts_with("vnet") && std::path::Path::new("/sys/class/net").join(&tap).exists(),
        "domiflist names the host tap: {tap}"
    );
    assert_eq!(link_line(&d, name, 0), "1", "the link starts up");
    assert_eq!(getlink(&d, &[name, &tap]), format!("{tap} up"));

    // Down, by tap name (as `virsh domiflist` shows it): virsh sends the live <interface> (alias, address) with
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
    // the running NIC keeps its link up. The inactive XML has no generated tap name
    // (as libvirt's), so virsh finds the interface by MAC only.
    let r = d.virsh(&["domif-setlink", name, &tap, "down", "--config"]);
    assert!(
        !r.ok
            && r.stderr
                .contains(&format!("error: interface '{tap}' not found")),
        "{}",
        r.stderr
    );
    d.virsh_ok(&["domif-setlink", name, MAC, "down", "--config"]);
    assert_eq!(getlink(&d, &[name, MAC, "--config"]), format!("{MAC} down"));
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
    let tap = iface_name(&d, name);
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

/// One virsh session on a running domain `name` whose only NIC has MAC [`MAC`]:
/// every command's exit status and output, one entry per command. Device XML files
/// are written to `files`.
fn setlink_session(uri: &str, name: &str, files: &Path) -> Vec<String> {
    let file = |n: &str, xml: &str| {
        let p = files.join(format!("{n}.xml"));
        std::fs::write(&p, xml).unwrap();
        p.display().to_string()
    };
    let other = file(
        "other",
        "<interface type='ethernet'><mac address='52:54:00:de:ad:01'/><link state='down'/></interface>",
    );
    let alias = file(
        "alias",
        &format!("<interface type='ethernet'><mac address='{MAC}'/><alias name='net7'/><link state='down'/></interface>"),
    );
    let no_mac = file(
        "nomac",
        "<interface type='ethernet'><link state='down'/></interface>",
    );
    let bogus = file("bogus", "<bogus/>");
    let boot = file(
        "boot",
        &format!("<interface type='ethernet'><mac address='{MAC}'/><model type='virtio'/><boot order='1'/></interface>"),
    );
    let mut out = Vec::new();
    // Runs virsh; with `link`, also records the interface's <link> in its output.
    let mut run = |args: &[&str], link: bool| {
        let r = virsh(uri, args);
        // Without <mac>, libvirt compares a MAC it generated at random.
        let err = match r.stderr.find(" to 52:54:00:") {
            Some(i)
                if r.stderr
                    .contains("cannot change network interface mac address") =>
            {
                format!("{} to <generated>", &r.stderr[..i])
            }
            _ => r.stderr.trim().to_string(),
        };
        let dir = files.to_str().unwrap();
        out.push(format!(
            "virsh {} -> ok={} {} {}",
            args.join(" ").replace(dir, "DIR"),
            r.ok,
            if link { "" } else { r.stdout.trim() },
            err.replace(dir, "DIR")
        ));
        if link {
            out.push(link_element(&r.stdout).unwrap_or_else(|| "no <link>".into()));
        }
    };
    run(&["domif-getlink", name, MAC], false);
    run(&["domif-setlink", name, MAC, "down"], false);
    run(&["domif-getlink", name, MAC], false);
    run(&["dumpxml", name], true);
    run(&["domif-setlink", name, MAC, "up"], false);
    run(&["dumpxml", name], true);
    run(&["domif-setlink", name, "nope0", "down"], false);
    for f in [&other, &alias, &no_mac, &bogus, &boot] {
        run(&["update-device", name, f], false);
    }
    run(&["update-device", name, &other, "--config"], false);
    run(&["domif-setlink", name, MAC, "down", "--config"], false);
    run(&["domif-getlink", name, MAC, "--config"], false);
    run(&["domif-getlink", name, MAC], false);
    run(&["dumpxml", "--inactive", name], true);
    run(&["destroy", name], false);
    run(&["start", name], false);
    run(&["domif-getlink", name, MAC], false);
    run(&["destroy", name], false);
    run(&["update-device", name, &other, "--live"], false);
    run(&["domif-setlink", name, MAC, "up"], false);
    run(&["domif-getlink", name, MAC], false);
    run(&["dumpxml", name], true);
    out
}

#[test]
fn rpc_domif_setlink_answers_as_libvirtd_qemu() {
    let test = "rpc_domif_setlink_answers_as_libvirtd_qemu";
    if !require_tap(test) {
        return;
    }
    let Some(lv) = Libvirtd::start(test, Driver::Qemu) else {
        return;
    };
    let name = "setlink-cmp";

    // libvirtd: QEMU with a user-mode NIC (nobody cannot make taps).
    let lv_xml = domain_xml(
        name,
        &lv.guest_kernel(),
        // The guest waits for the power button: the domain stays running.
        rpc_common::CMDLINE,
        64,
        1,
        "destroy",
        "",
    )
    .replace("<domain type='kvm'>", "<domain type='qemu'>")
    .replace("<cpu mode='host-passthrough'/>", "")
    .replace(
        "<devices>",
        &format!(
            "<devices>\n    <interface type='user'><mac address='{MAC}'/><model type='virtio'/></interface>"
        ),
    );
    let lv_file = lv.dir.path().join("dom.xml");
    std::fs::write(&lv_file, lv_xml).unwrap();
    let r = virsh(&lv.uri(), &["define", lv_file.to_str().unwrap()]);
    assert!(r.ok, "{}\n{}", r.stderr, lv.log());
    let r = virsh(&lv.uri(), &["start", name]);
    assert!(r.ok, "{}\n{}", r.stderr, lv.log());
    let r = virsh(&lv.uri(), &["domstate", name]);
    assert_eq!(r.stdout.trim(), "running", "{}\n{}", r.stderr, lv.log());
    let want = setlink_session(&lv.uri(), name, lv.dir.path());
    let _ = virsh(&lv.uri(), &["undefine", name]);

    // oxvirtd: the same session.
    let d = Daemon::start();
    let tap = format!("oxsc{}", std::process::id() % 100_000);
    let f = d.xml_file(name, &guest_xml(name, Some(&tap)));
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    d.wait_state(name, "running");
    let got = setlink_session(&d.uri(), name, d.dir.path());
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(
            g,
            w,
            "oxvirtd (left) and libvirtd (right) differ\n{}",
            d.log()
        );
    }
    assert_eq!(got.len(), want.len());
}
