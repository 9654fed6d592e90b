//! Catalog behaviour of the network driver against a temp dir (no bridge, no root):
//! define, redefine, duplicates, autostart, listing, undefine, reload.

use super::*;

const DEFAULT_XML: &str = include_str!("../../../packaging/networks/default.xml");

fn open(dir: &Path) -> Networks {
    Networks::open(
        &dir.join("networks"),
        &dir.join("dnsmasq"),
        &dir.join("run"),
        false,
    )
    .unwrap()
}

#[test]
fn define_fills_defaults_persists_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(dir.path());
    let mut ev = n.subscribe();
    let r = n.define_xml(DEFAULT_XML).unwrap();
    assert_eq!(r.name, "default");
    assert_eq!(ev.try_recv().unwrap().event, event::DEFINED);
    let x = n.xml_desc("default", 0).unwrap();
    assert!(x.contains(&format!("<uuid>{}</uuid>", r.uuid)), "{x}");
    assert_eq!(n.bridge_name("default").unwrap(), "virbr0");
    n.set_autostart("default", true).unwrap();
    // Redefining keeps UUID, MAC and bridge.
    let r2 = n.define_xml(DEFAULT_XML).unwrap();
    assert_eq!(r2.uuid, r.uuid);
    assert_eq!(n.xml_desc("default", 0).unwrap(), x);
    let again = open(dir.path());
    let info = again.info("default").unwrap();
    assert!(info.persistent && info.autostart && !info.active);
    assert_eq!(again.xml_desc("default", 1).unwrap(), x);
    assert_eq!(again.lookup_by_uuid(&r.uuid).unwrap().name, "default");
}

#[test]
fn duplicates_and_unknown_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(dir.path());
    let r = n.define_xml(DEFAULT_XML).unwrap();
    let other_uuid = DEFAULT_XML.replace(
        "<name>default</name>",
        "<name>default</name><uuid>00000000-0000-0000-0000-000000000001</uuid>",
    );
    let e = n.define_xml(&other_uuid).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("already defined with uuid {}", r.uuid)),
        "{e}"
    );
    let same_bridge = DEFAULT_XML.replace("<name>default</name>", "<name>second</name>");
    let e = n.define_xml(&same_bridge).unwrap_err();
    assert_eq!(
        e.to_string(),
        "operation failed: bridge name 'virbr0' already in use."
    );
    let e = n.start("nope").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Network not found: no network with matching name 'nope'"
    );
    assert_eq!(e.code(), error::code::NO_NETWORK);
    let e = n.destroy("default").unwrap_err();
    assert_eq!(e.code(), error::code::OPERATION_INVALID);
}

#[test]
fn listing_flags_and_undefine() {
    let dir = tempfile::tempdir().unwrap();
    let n = open(dir.path());
    n.define_xml(DEFAULT_XML).unwrap();
    n.define_xml("<network><name>iso</name></network>").unwrap();
    n.set_autostart("iso", true).unwrap();
    let names = |f| {
        n.list(f)
            .unwrap()
            .into_iter()
            .map(|i| i.net.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(0), ["default", "iso"]);
    assert_eq!(names(list::AUTOSTART), ["iso"]);
    assert_eq!(names(list::NO_AUTOSTART | list::INACTIVE), ["default"]);
    assert!(names(list::ACTIVE).is_empty());
    assert!(n.list(64).is_err());
    // The generated bridge skips virbr0 (taken by default).
    assert_ne!(n.bridge_name("iso").unwrap(), "virbr0");
    n.undefine("iso").unwrap();
    assert_eq!(names(0), ["default"]);
    assert!(!dir.path().join("networks/iso.xml").exists());
    assert!(!dir.path().join("networks/autostart/iso.xml").exists());
}

#[test]
fn a_packaged_definition_gets_its_defaults_on_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("networks")).unwrap();
    std::fs::write(dir.path().join("networks/default.xml"), DEFAULT_XML).unwrap();
    let n = open(dir.path());
    let r = n.lookup_by_name("default").unwrap();
    assert!(!r.uuid.is_nil());
    let x = n.xml_desc("default", 0).unwrap();
    assert!(x.contains("<mac address='52:54:00:"), "{x}");
    // Written back: the next load sees the same UUID.
    assert_eq!(
        open(dir.path()).lookup_by_name("default").unwrap().uuid,
        r.uuid
    );
}

/// Validates `xml` with libvirt's network schema (`virt-xml-validate FILE network`);
/// skips loudly where the tool (libvirt-clients + libxml2-utils) is missing.
fn validate(xml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("net.xml");
    std::fs::write(&f, xml).unwrap();
    match std::process::Command::new("virt-xml-validate")
        .arg(&f)
        .arg("network")
        .output()
    {
        Ok(o) => assert!(
            o.status.success(),
            "virt-xml-validate network failed:\n{xml}\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("SKIPPED: virt-xml-validate network: {e}"),
    }
}

#[test]
fn printed_networks_validate_against_libvirts_schema() {
    let cases = [
        DEFAULT_XML,
        "<network><name>iso</name><bridge name='br5'/><dns enable='no'/>\
         <ip address='10.5.0.1' prefix='24'><dhcp><range start='10.5.0.10' end='10.5.0.19'/>\
         <host mac='52:54:00:00:00:05' ip='10.5.0.5' name='five'/></dhcp></ip></network>",
        "<network><name>r</name><forward mode='route' dev='eth0'/><bridge name='br9' stp='off' delay='2'/>\
         <mtu size='9000'/><domain name='example.test'/><dns><host ip='10.9.0.5'><hostname>h5</hostname></host></dns>\
         <ip address='10.9.0.1' netmask='255.255.255.0'/><ip family='ipv6' address='fd00:9::1' prefix='64'>\
         <dhcp><range start='fd00:9::10' end='fd00:9::20'/></dhcp></ip></network>",
        "<network><name>o</name><forward mode='open'/><bridge name='bro'/></network>",
        "<network><name>hostbr</name><forward mode='bridge'/><bridge name='br0'/></network>",
    ];
    for x in cases {
        let mut n = Network::parse(x).unwrap();
        n.fill_defaults(|_| false);
        let printed = n.to_xml();
        validate(&printed);
        assert_eq!(
            Network::parse(&printed).unwrap(),
            n,
            "round trip of\n{printed}"
        );
    }
}
