//! org.libvirt.Secret, org.libvirt.NodeDevice and org.libvirt.Interface through
//! busctl on a private bus, and Domain.ListDomainSnapshots answering an empty
//! list. No guest runs.

mod daemon_common;

use daemon_common::{object_path, BusKind, Daemon, CONNECT};

const UUID: &str = "3e1c0d2a-5b7f-4c39-8e2d-9a4b6c1f0e77";
const SECRET_PATH: &str = "/org/libvirt/QEMU/secret/_3e1c0d2a_5b7f_4c39_8e2d_9a4b6c1f0e77";

fn connect(d: &Daemon, method: &str, args: &[&str]) -> String {
    d.call(CONNECT, "org.libvirt.Connect", method, args)
}

#[test]
fn daemon_secrets_on_dbus() {
    let d = Daemon::start(BusKind::Session);
    let xml = format!(
        "<secret ephemeral='no' private='no'><uuid>{UUID}</uuid>\
         <usage type='tls'><name>vnc-tls</name></usage></secret>"
    );
    let path = object_path(&connect(&d, "SecretDefineXML", &["su", &xml, "0"]));
    assert_eq!(path, SECRET_PATH);
    let list = connect(&d, "ListSecrets", &["u", "0"]);
    assert!(list.contains(SECRET_PATH), "{list}");
    assert_eq!(d.property(&path, "org.libvirt.Secret", "UsageType"), "i 4");
    assert_eq!(
        d.property(&path, "org.libvirt.Secret", "UsageID"),
        "s \"vnc-tls\""
    );
    let by_usage = connect(&d, "SecretLookupByUsage", &["is", "4", "vnc-tls"]);
    assert_eq!(object_path(&by_usage), SECRET_PATH);
    d.call(
        &path,
        "org.libvirt.Secret",
        "SetValue",
        &["ayu", "3", "112", "119", "100", "0"],
    );
    let v = d.call(&path, "org.libvirt.Secret", "GetValue", &["u", "0"]);
    assert_eq!(v.trim(), "ay 3 112 119 100");
    let x = d.call(&path, "org.libvirt.Secret", "GetXMLDesc", &["u", "0"]);
    assert!(x.contains("<name>vnc-tls</name>"), "{x}");
    let mode = std::fs::metadata(d.dir.path().join(format!("secrets/{UUID}.base64")))
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap();
    assert_eq!(mode, 0o600);
    // A property that cannot be read answers org.libvirt.Error with libvirt's text
    // (libvirt-dbus returns the libvirt error), not DBus.Error.Failed: the files go
    // behind the daemon's back while the object is still exported.
    let dir = d.dir.path().join("secrets");
    for ext in ["xml", "base64"] {
        std::fs::rename(
            dir.join(format!("{UUID}.{ext}")),
            d.dir.path().join(format!("{UUID}.{ext}")),
        )
        .unwrap();
    }
    let o = std::process::Command::new("gdbus")
        .args(["call", "--address", &d.address(), "--dest", "org.libvirt"])
        .args(["--object-path", &path, "--method"])
        .args([
            "org.freedesktop.DBus.Properties.Get",
            "org.libvirt.Secret",
            "UsageID",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("GDBus.Error:org.libvirt.Error: Secret not found"),
        "{err}"
    );
    for ext in ["xml", "base64"] {
        std::fs::rename(
            d.dir.path().join(format!("{UUID}.{ext}")),
            dir.join(format!("{UUID}.{ext}")),
        )
        .unwrap();
    }
    d.call(&path, "org.libvirt.Secret", "Undefine", &[]);
    assert_eq!(connect(&d, "ListSecrets", &["u", "0"]).trim(), "ao 0");
    let r = d.try_call(
        CONNECT,
        "org.libvirt.Connect",
        "SecretLookupByUUID",
        &["s", UUID],
    );
    assert!(
        !r.ok && r.stderr.contains("Secret not found"),
        "{}",
        r.stderr
    );
}

#[test]
fn daemon_node_devices_interfaces_and_snapshots_on_dbus() {
    let d = Daemon::start(BusKind::Session);
    let devs = connect(&d, "ListNodeDevices", &["u", "0"]);
    assert!(
        devs.contains("/org/libvirt/QEMU/nodedev/computer"),
        "{devs}"
    );
    let pci = devs
        .split_whitespace()
        .map(|w| w.trim_matches('"'))
        .find(|p| p.contains("/nodedev/pci_"))
        .unwrap_or_else(|| panic!("no PCI device in {devs}"))
        .to_string();
    assert_eq!(
        d.property(&pci, "org.libvirt.NodeDevice", "Parent"),
        "s \"computer\""
    );
    // busctl prints ' inside a string as \'.
    let x = d
        .call(&pci, "org.libvirt.NodeDevice", "GetXMLDesc", &["u", "0"])
        .replace("\\'", "'");
    assert!(x.contains("<capability type='pci'>"), "{x}");
    let caps = d.call(&pci, "org.libvirt.NodeDevice", "ListCaps", &[]);
    assert_eq!(caps.trim(), "as 1 \"pci\"");
    let lo = object_path(&connect(
        &d,
        "NodeDeviceLookupByName",
        &["s", "net_lo_00_00_00_00_00_00"],
    ));
    let x = d.call(&lo, "org.libvirt.NodeDevice", "GetXMLDesc", &["u", "0"]);
    assert!(x.contains("<interface>lo</interface>"), "{x}");
    let r = d.try_call(&pci, "org.libvirt.NodeDevice", "Detach", &["su", "", "0"]);
    assert!(
        !r.ok && r.stderr.contains("virNodeDeviceDetachFlags"),
        "{}",
        r.stderr
    );

    let ifaces = connect(&d, "ListInterfaces", &["u", "0"]);
    let lo_path = "/org/libvirt/QEMU/interface/00_3a00_3a00_3a00_3a00_3a00";
    assert!(ifaces.contains(lo_path), "{ifaces}");
    assert_eq!(
        object_path(&connect(&d, "InterfaceLookupByName", &["s", "lo"])),
        lo_path
    );
    assert_eq!(
        d.property(lo_path, "org.libvirt.Interface", "Name"),
        "s \"lo\""
    );
    let x = d
        .call(lo_path, "org.libvirt.Interface", "GetXMLDesc", &["u", "0"])
        .replace("\\'", "'");
    assert!(x.contains("<interface type='ethernet' name='lo'>"), "{x}");

    // A domain without snapshots: the list is empty, not "not supported".
    let dom = d.define_guest("snaps");
    let s = d.domain(&dom, "ListDomainSnapshots", &["u", "0"]);
    assert_eq!(s.trim(), "ao 0");
    // Naming one: libvirt's "Domain snapshot not found", not "not supported".
    let r = d.try_call(&dom, "org.libvirt.Domain", "SnapshotCurrent", &["u", "0"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("the domain does not have a current snapshot"),
        "{}",
        r.stderr
    );
    let r = d.try_call(
        &dom,
        "org.libvirt.Domain",
        "SnapshotLookupByName",
        &["su", "first", "0"],
    );
    assert!(
        !r.ok
            && r.stderr
                .contains("no domain snapshot with matching name 'first'"),
        "{}",
        r.stderr
    );

    // Pin info of an inactive domain: its one vCPU may run on every host CPU.
    let ncpus = std::thread::available_parallelism().unwrap().get();
    let pins = d.domain(&dom, "GetVcpuPinInfo", &["u", "0"]);
    let want = format!("aab 1 {ncpus} {}", vec!["true"; ncpus].join(" "));
    assert_eq!(pins.trim(), want);
    let r = d.try_call(
        &dom,
        "org.libvirt.Domain",
        "GetEmulatorPinInfo",
        &["u", "1"],
    );
    assert!(
        !r.ok && r.stderr.contains("domain is not running"),
        "{}",
        r.stderr
    );
    let r = d.try_call(
        &dom,
        "org.libvirt.Domain",
        "PinVcpu",
        &["uabu", "0", "1", "true", "2"],
    );
    assert!(!r.ok && r.stderr.contains("<cputune>"), "{}", r.stderr);
    // Job and time calls need a running domain, as in libvirt.
    for (method, args) in [
        ("GetJobInfo", &[][..]),
        ("GetJobStats", &["u", "0"][..]),
        ("GetTime", &["u", "0"][..]),
    ] {
        let r = d.try_call(&dom, "org.libvirt.Domain", method, args);
        assert!(
            !r.ok && r.stderr.contains("domain is not running"),
            "{method}: {}",
            r.stderr
        );
    }
}
