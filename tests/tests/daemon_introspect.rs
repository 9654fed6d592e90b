//! Our D-Bus objects against Debian's libvirt-dbus interface files
//! (`/usr/share/dbus-1/interfaces/org.libvirt.{Connect,Domain}.xml`): the same
//! methods, signals and properties with the same signatures. Also keeps
//! `schemas/dbus/` (our introspection, as served) current.

mod daemon_common;

use std::collections::BTreeMap;
use std::path::Path;

use daemon_common::{BusKind, Daemon, CONNECT};

/// member key (`method Foo`, `signal Bar`, `property Baz`) → signature text.
fn members(xml: &str, iface: &str) -> BTreeMap<String, String> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, opts).expect("introspection XML parses");
    let itf = doc
        .descendants()
        .find(|n| n.has_tag_name("interface") && n.attribute("name") == Some(iface))
        .unwrap_or_else(|| panic!("interface {iface} missing"));
    let mut out = BTreeMap::new();
    for m in itf.children().filter(|n| n.is_element()) {
        let name = m.attribute("name").unwrap_or_default();
        let args = || {
            m.children()
                .filter(|a| a.has_tag_name("arg"))
                .map(|a| {
                    let dir = a
                        .attribute("direction")
                        .unwrap_or(if m.has_tag_name("signal") {
                            "out"
                        } else {
                            "in"
                        });
                    format!("{dir} {}", a.attribute("type").unwrap_or_default())
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match m.tag_name().name() {
            "method" => out.insert(format!("method {name}"), args()),
            "signal" => out.insert(format!("signal {name}"), args()),
            "property" => out.insert(
                format!("property {name}"),
                format!(
                    "{} {}",
                    m.attribute("type").unwrap_or_default(),
                    m.attribute("access").unwrap_or_default()
                ),
            ),
            _ => None,
        };
    }
    out
}

fn compare(ours: &str, reference_file: &str, iface: &str) {
    compare_min(ours, reference_file, iface, 50);
}

/// As [`compare`], for an interface with at least `min` members.
fn compare_min(ours: &str, reference_file: &str, iface: &str, min: usize) {
    let reference = std::fs::read_to_string(reference_file)
        .unwrap_or_else(|e| panic!("{reference_file}: {e} (install Debian's libvirt-dbus)"));
    let want = members(&reference, iface);
    let got = members(ours, iface);
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<_> = want
        .iter()
        .filter_map(|(k, v)| {
            got.get(k)
                .filter(|g| *g != v)
                .map(|g| format!("{k}: ours ({g}) vs libvirt-dbus ({v})"))
        })
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && differ.is_empty(),
        "{iface}: missing {missing:?}\nextra {extra:?}\ndifferent {differ:#?}"
    );
    assert!(
        want.len() > min,
        "{iface}: only {} members in the reference?",
        want.len()
    );
}

/// The interface element of `iface`, as text, for schemas/dbus/.
fn interface_xml(xml: &str, iface: &str) -> String {
    let start = xml
        .find(&format!("<interface name=\"{iface}\">"))
        .expect("interface in introspection");
    let end = start + xml[start..].find("</interface>").unwrap() + "</interface>".len();
    format!(
        "<!-- {iface} as oxvirtd serves it (regenerate: OXVIRT_UPDATE_SCHEMAS=1 cargo test --test daemon_introspect) -->\n<node>\n {}\n</node>\n",
        &xml[start..end]
    )
}

fn check_schema(xml: &str, iface: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas/dbus")
        .join(format!("{iface}.xml"));
    let text = interface_xml(xml, iface);
    if std::env::var_os("OXVIRT_UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        stored == text,
        "{} is stale: run OXVIRT_UPDATE_SCHEMAS=1 cargo test --test daemon_introspect",
        path.display()
    );
}

#[test]
fn connect_and_domain_objects_match_libvirt_dbus_interfaces() {
    let d = Daemon::start(BusKind::Session);
    let xml = "<domain type='kvm'><name>introspect</name>\
               <uuid>0b6a6e58-3d9f-4f53-9d1c-2c8f4a7e9b10</uuid><memory unit='MiB'>64</memory>\
               <os><type>hvm</type><kernel>/nonexistent</kernel></os></domain>";
    let path = d.define(xml);
    assert_eq!(
        path,
        "/org/libvirt/QEMU/domain/_0b6a6e58_3d9f_4f53_9d1c_2c8f4a7e9b10"
    );

    let connect = d.busctl(&["introspect", "--xml-interface", "org.libvirt", CONNECT]);
    assert!(connect.ok, "{}", connect.stderr);
    let domain = d.busctl(&["introspect", "--xml-interface", "org.libvirt", &path]);
    assert!(domain.ok, "{}", domain.stderr);

    compare(
        &connect.stdout,
        "/usr/share/dbus-1/interfaces/org.libvirt.Connect.xml",
        "org.libvirt.Connect",
    );
    compare(
        &domain.stdout,
        "/usr/share/dbus-1/interfaces/org.libvirt.Domain.xml",
        "org.libvirt.Domain",
    );
    check_schema(&connect.stdout, "org.libvirt.Connect");
    check_schema(&domain.stdout, "org.libvirt.Domain");
}

/// The storage pool and volume objects against libvirt-dbus's StoragePool and
/// StorageVol interface files.
#[test]
fn storage_objects_match_libvirt_dbus_interfaces() {
    let d = Daemon::start(BusKind::Session);
    let pool = d.call(
        CONNECT,
        "org.libvirt.Connect",
        "StoragePoolLookupByName",
        &["s", "default"],
    );
    let pool = pool
        .trim()
        .trim_start_matches("o \"")
        .trim_end_matches('"')
        .to_string();
    let vol = d.call(
        &pool,
        "org.libvirt.StoragePool",
        "StorageVolCreateXML",
        &[
            "su",
            "<volume><name>i.img</name><capacity>4096</capacity></volume>",
            "0",
        ],
    );
    let vol = vol
        .trim()
        .trim_start_matches("o \"")
        .trim_end_matches('"')
        .to_string();
    let p = d.busctl(&["introspect", "--xml-interface", "org.libvirt", &pool]);
    assert!(p.ok, "{}", p.stderr);
    let v = d.busctl(&["introspect", "--xml-interface", "org.libvirt", &vol]);
    assert!(v.ok, "{}", v.stderr);
    compare_min(
        &p.stdout,
        "/usr/share/dbus-1/interfaces/org.libvirt.StoragePool.xml",
        "org.libvirt.StoragePool",
        15,
    );
    compare_min(
        &v.stdout,
        "/usr/share/dbus-1/interfaces/org.libvirt.StorageVol.xml",
        "org.libvirt.StorageVol",
        7,
    );
    check_schema(&p.stdout, "org.libvirt.StoragePool");
    check_schema(&v.stdout, "org.libvirt.StorageVol");
}

/// The network objects against libvirt-dbus's Network interface file (defining a
/// network needs no privilege; starting one does, see network_nat.rs).
#[test]
fn network_objects_match_libvirt_dbus_interfaces() {
    let d = Daemon::start(BusKind::Session);
    let net = d.call(
        CONNECT,
        "org.libvirt.Connect",
        "NetworkDefineXML",
        &[
            "s",
            "<network><name>introspect</name><uuid>6a888e3b-2249-45da-a9c2-c6731e2ebde4</uuid>\
             <bridge name='oxvbr-i'/><ip address='10.250.0.1' prefix='24'/></network>",
        ],
    );
    let net = net
        .trim()
        .trim_start_matches("o \"")
        .trim_end_matches('"')
        .to_string();
    assert_eq!(
        net,
        "/org/libvirt/QEMU/network/_6a888e3b_2249_45da_a9c2_c6731e2ebde4"
    );
    let n = d.busctl(&["introspect", "--xml-interface", "org.libvirt", &net]);
    assert!(n.ok, "{}", n.stderr);
    compare_min(
        &n.stdout,
        "/usr/share/dbus-1/interfaces/org.libvirt.Network.xml",
        "org.libvirt.Network",
        10,
    );
    check_schema(&n.stdout, "org.libvirt.Network");
    // The members answer: lookups, properties, XML, listing, undefine.
    let by_name = d.call(
        CONNECT,
        "org.libvirt.Connect",
        "NetworkLookupByName",
        &["s", "introspect"],
    );
    assert!(by_name.contains(&net), "{by_name}");
    let xml = d.call(&net, "org.libvirt.Network", "GetXMLDesc", &["u", "0"]);
    assert!(
        xml.contains("oxvbr-i") && xml.contains("<mac address="),
        "{xml}"
    );
    let active = d.busctl(&[
        "get-property",
        "org.libvirt",
        &net,
        "org.libvirt.Network",
        "Active",
    ]);
    assert_eq!(active.stdout.trim(), "b false", "{}", active.stderr);
    let list = d.call(CONNECT, "org.libvirt.Connect", "ListNetworks", &["u", "0"]);
    assert!(list.contains(&net), "{list}");
    let leases = d.call(
        &net,
        "org.libvirt.Network",
        "GetDHCPLeases",
        &["su", "", "0"],
    );
    assert_eq!(leases.trim(), "a(sxisssuss) 0", "{leases}");
    d.call(&net, "org.libvirt.Network", "Undefine", &[]);
    let list = d.call(CONNECT, "org.libvirt.Connect", "ListNetworks", &["u", "0"]);
    assert!(!list.contains(&net), "{list}");
}

/// The secret, node device and host interface objects against libvirt-dbus's
/// Secret, NodeDevice and Interface interface files.
#[test]
fn host_objects_match_libvirt_dbus_interfaces() {
    let d = Daemon::start(BusKind::Session);
    let object = |method: &str, args: &[&str]| {
        let out = d.call(CONNECT, "org.libvirt.Connect", method, args);
        daemon_common::object_path(&out)
    };
    let secret = object(
        "SecretDefineXML",
        &[
            "su",
            "<secret><usage type='ceph'><name>c</name></usage></secret>",
            "0",
        ],
    );
    let dev = object("NodeDeviceLookupByName", &["s", "computer"]);
    let iface = object("InterfaceLookupByName", &["s", "lo"]);
    for (path, iface_name, min) in [
        (&secret, "org.libvirt.Secret", 6),
        (&dev, "org.libvirt.NodeDevice", 7),
        (&iface, "org.libvirt.Interface", 6),
    ] {
        let x = d.busctl(&["introspect", "--xml-interface", "org.libvirt", path]);
        assert!(x.ok, "{}", x.stderr);
        compare_min(
            &x.stdout,
            &format!("/usr/share/dbus-1/interfaces/{iface_name}.xml"),
            iface_name,
            min,
        );
        check_schema(&x.stdout, iface_name);
    }
}
