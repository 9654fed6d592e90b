//! Secrets, node devices and host interfaces through virsh: `secret-define`,
//! `secret-set-value`, `secret-get-value`, `secret-list`, `secret-dumpxml`,
//! `secret-undefine` (values stored 0600), `nodedev-list`, `nodedev-dumpxml`,
//! `iface-list`, `iface-dumpxml`; each XML validated by libvirt's own schema
//! (`virt-xml-validate`). No guest runs.

mod rpc_common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use rpc_common::Daemon;

/// Validates `text` with `virt-xml-validate` against libvirt's schema `schema`.
fn validate(d: &Daemon, name: &str, text: &str, schema: &str) {
    let p = d.xml_file(name, text);
    let out = Command::new("virt-xml-validate")
        .arg(&p)
        .arg(schema)
        .output()
        .expect("virt-xml-validate (libvirt-clients, libxml2-utils)");
    assert!(
        out.status.success(),
        "{name} does not validate as {schema}:\n{text}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const UUID: &str = "0a81f5b2-8403-7b23-c8d6-21ccc2f80d6f";
const PRIVATE_UUID: &str = "7d5f1a3e-6c51-4b8a-9f0e-2b6f1c9d8e11";

#[test]
fn rpc_virsh_secrets() {
    let d = Daemon::start();
    let xml = format!(
        "<secret ephemeral='no' private='no'><uuid>{UUID}</uuid>\
         <description>disk passphrase</description>\
         <usage type='volume'><volume>/var/lib/oxvirt/a.img</volume></usage></secret>"
    );
    let f = d.xml_file("secret", &xml);
    let out = d.virsh_ok(&["secret-define", f.to_str().unwrap()]);
    assert!(out.contains(&format!("Secret {UUID} created")), "{out}");
    let list = d.virsh_ok(&["secret-list"]);
    assert!(
        list.contains(UUID) && list.contains("volume /var/lib/oxvirt/a.img"),
        "{list}"
    );
    let dump = d.virsh_ok(&["secret-dumpxml", UUID]);
    validate(&d, "secret-dump", &dump, "secret");
    assert!(
        dump.contains("<volume>/var/lib/oxvirt/a.img</volume>"),
        "{dump}"
    );

    // A value round-trips, stored where only the daemon reads it.
    let r = d.virsh_ok(&["secret-set-value", UUID, "--base64", "aGVsbG8="]);
    assert!(r.contains("Secret value set"), "{r}");
    assert_eq!(d.virsh_ok(&["secret-get-value", UUID]).trim(), "aGVsbG8=");
    let dir = d.dir.path().join("secrets");
    for f in [format!("{UUID}.xml"), format!("{UUID}.base64")] {
        let mode = std::fs::metadata(dir.join(&f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join(format!("{UUID}.base64"))).unwrap(),
        "aGVsbG8="
    );

    // libvirt's errors: the same usage twice, a private value, an unknown secret.
    let other = d.xml_file(
        "other",
        "<secret><usage type='volume'><volume>/var/lib/oxvirt/a.img</volume></usage></secret>",
    );
    let r = d.virsh(&["secret-define", other.to_str().unwrap()]);
    assert!(
        !r.ok
            && r.stderr.contains(&format!(
                "a secret with UUID {UUID} already defined for use with /var/lib/oxvirt/a.img"
            )),
        "{}",
        r.stderr
    );
    let private = d.xml_file(
        "private",
        &format!("<secret private='yes'><uuid>{PRIVATE_UUID}</uuid><usage type='vtpm'><name>tpm</name></usage></secret>"),
    );
    d.virsh_ok(&["secret-define", private.to_str().unwrap()]);
    d.virsh_ok(&["secret-set-value", PRIVATE_UUID, "--base64", "c2VjcmV0"]);
    let r = d.virsh(&["secret-get-value", PRIVATE_UUID]);
    assert!(
        !r.ok && r.stderr.contains("Invalid secret: secret is private"),
        "{}",
        r.stderr
    );
    let r = d.virsh(&["secret-dumpxml", "00000000-0000-0000-0000-000000000001"]);
    assert!(
        !r.ok && r.stderr.contains("Secret not found"),
        "{}",
        r.stderr
    );
    let bad = d.xml_file("bad", "<secret><usage type='floppy'/></secret>");
    let r = d.virsh(&["secret-define", bad.to_str().unwrap()]);
    assert!(
        !r.ok && r.stderr.contains("unknown secret usage type floppy"),
        "{}",
        r.stderr
    );

    // Undefine removes both files.
    d.virsh_ok(&["secret-undefine", UUID]);
    assert!(!dir.join(format!("{UUID}.xml")).exists());
    assert!(!dir.join(format!("{UUID}.base64")).exists());
    let list = d.virsh_ok(&["secret-list"]);
    assert!(
        !list.contains(UUID) && list.contains(PRIVATE_UUID),
        "{list}"
    );
}

#[test]
fn rpc_virsh_node_devices_and_interfaces() {
    let d = Daemon::start();
    let list = d.virsh_ok(&["nodedev-list"]);
    let names: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert!(names.contains(&"computer"), "{list}");
    // Every PCI function of this host, named as libvirt names it.
    for e in std::fs::read_dir("/sys/bus/pci/devices").unwrap().flatten() {
        let addr = e.file_name().into_string().unwrap();
        let name = format!("pci_{}", addr.replace([':', '.'], "_"));
        assert!(names.contains(&name.as_str()), "{name} missing from {list}");
    }
    let lo = "net_lo_00_00_00_00_00_00";
    let nets = d.virsh_ok(&["nodedev-list", "--cap", "net"]);
    assert!(nets.contains(lo) && !nets.contains("pci_"), "{nets}");
    let pci = names.iter().find(|n| n.starts_with("pci_"));
    for name in [Some(&"computer"), pci, Some(&lo)].into_iter().flatten() {
        let xml = d.virsh_ok(&["nodedev-dumpxml", name]);
        assert!(xml.contains(&format!("<name>{name}</name>")), "{xml}");
        validate(&d, name, &xml, "nodedev");
    }
    let r = d.virsh(&["nodedev-dumpxml", "pci_ffff_ff_ff_7"]);
    assert!(
        !r.ok && r.stderr.contains("Node device not found"),
        "{}",
        r.stderr
    );

    let ifaces = d.virsh_ok(&["iface-list", "--all"]);
    assert!(
        ifaces.contains("lo") && ifaces.contains("00:00:00:00:00:00"),
        "{ifaces}"
    );
    let xml = d.virsh_ok(&["iface-dumpxml", "lo"]);
    assert!(
        xml.contains("<interface type='ethernet' name='lo'>"),
        "{xml}"
    );
    validate(&d, "iface-lo", &xml, "interface");
    let r = d.virsh(&["iface-dumpxml", "nosuch0"]);
    assert!(
        !r.ok && r.stderr.contains("Interface not found"),
        "{}",
        r.stderr
    );
}
