//! Storage pools and volumes over D-Bus (libvirt-dbus's `org.libvirt.StoragePool`,
//! `org.libvirt.StorageVol` and Connect's pool methods) with busctl and gdbus:
//! define/start a pool, create, inspect, resize and delete volumes, the
//! `StoragePoolEvent` and `Refresh` signals, LVM source discovery, and libvirt's errors.

mod daemon_common;

use daemon_common::{BusKind, Daemon, CONNECT};

/// The object path in busctl's `o "/path"` output.
fn object(out: &str) -> String {
    out.trim()
        .strip_prefix("o \"")
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not an object path reply: {out}"))
        .to_string()
}

#[test]
fn dbus_storage_pools_and_volumes() {
    let d = Daemon::start(BusKind::Session);
    let pool_dir = d.dir.path().join("dbuspool");
    std::fs::create_dir(&pool_dir).unwrap();
    let monitor = d.monitor("storage-monitor.log");

    // The default pool is listed.
    let list = d.call(
        CONNECT,
        "org.libvirt.Connect",
        "ListStoragePools",
        &["u", "0"],
    );
    assert!(list.contains("/org/libvirt/QEMU/storagepool/_"), "{list}");
    let default = object(&d.call(
        CONNECT,
        "org.libvirt.Connect",
        "StoragePoolLookupByName",
        &["s", "default"],
    ));
    assert!(list.contains(&default), "{list}");

    // Source discovery for LVM (what libvirt-dbus's test_connect_find_storage_pool_sources
    // calls): a <sources> document, listing volume groups where there are any. Only root
    // can read the physical volumes.
    if nix::unistd::geteuid().is_root() || !std::path::Path::new("/usr/sbin/pvs").exists() {
        let found = d.call(
            CONNECT,
            "org.libvirt.Connect",
            "FindStoragePoolSources",
            &["ssu", "logical", "", "0"],
        );
        assert!(found.starts_with("s \"<sources>"), "{found}");
    }

    let xml = format!(
        "<pool type='dir'><name>dbuspool</name><target><path>{}</path></target></pool>",
        pool_dir.display()
    );
    let pool = object(&d.call(
        CONNECT,
        "org.libvirt.Connect",
        "StoragePoolDefineXML",
        &["su", &xml, "0"],
    ));
    monitor.wait_for(&d, "StoragePoolEvent");
    const P: &str = "org.libvirt.StoragePool";
    assert_eq!(d.property(&pool, P, "Name"), "s \"dbuspool\"");
    assert_eq!(d.property(&pool, P, "Active"), "b false");
    assert_eq!(d.property(&pool, P, "Persistent"), "b true");
    d.call(&pool, P, "Create", &["u", "0"]);
    assert_eq!(d.property(&pool, P, "Active"), "b true");
    let r = d.busctl(&[
        "set-property",
        "org.libvirt",
        &pool,
        P,
        "Autostart",
        "b",
        "true",
    ]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(d.property(&pool, P, "Autostart"), "b true");
    let info = d.call(&pool, P, "GetInfo", &[]);
    assert!(info.starts_with("(ittt) 2 "), "{info}");
    let uuid = d.property(&pool, P, "UUID");
    let uuid = uuid.trim_start_matches("s \"").trim_end_matches('"');
    let by_uuid = object(&d.call(
        CONNECT,
        "org.libvirt.Connect",
        "StoragePoolLookupByUUID",
        &["s", uuid],
    ));
    assert_eq!(by_uuid, pool);

    // Volumes.
    let vol = object(&d.call(
        &pool,
        P,
        "StorageVolCreateXML",
        &[
            "su",
            "<volume><name>v1.qcow2</name><capacity unit='MiB'>8</capacity><target><format type='qcow2'/></target></volume>",
            "0",
        ],
    ));
    let file = pool_dir.join("v1.qcow2");
    assert_eq!(
        vol,
        format!(
            "/org/libvirt/QEMU/storagevol/{}",
            file.to_str()
                .unwrap()
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("_{b:02x}")
                })
                .collect::<String>()
        )
    );
    const V: &str = "org.libvirt.StorageVol";
    assert_eq!(d.property(&vol, V, "Name"), "s \"v1.qcow2\"");
    assert_eq!(
        d.property(&vol, V, "Path"),
        format!("s \"{}\"", file.display())
    );
    let info = d.call(&vol, V, "GetInfo", &["u", "0"]);
    assert!(info.starts_with("(itt) 0 8388608 "), "{info}");
    let vols = d.call(&pool, P, "ListStorageVolumes", &["u", "0"]);
    assert!(vols.contains(&vol), "{vols}");
    assert_eq!(
        object(&d.call(&pool, P, "StorageVolLookupByName", &["s", "v1.qcow2"])),
        vol
    );
    assert_eq!(
        object(&d.call(
            CONNECT,
            "org.libvirt.Connect",
            "StorageVolLookupByPath",
            &["s", file.to_str().unwrap()],
        )),
        vol
    );
    // gdbus too: the volume XML.
    let out = std::process::Command::new("gdbus")
        .args(["call", "--address", &d.address(), "--dest", "org.libvirt"])
        .args([
            "--object-path",
            &vol,
            "--method",
            "org.libvirt.StorageVol.GetXMLDesc",
            "0",
        ])
        .output()
        .expect("gdbus");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("<format type='qcow2'/>"), "{text}");
    d.call(&vol, V, "Resize", &["tu", "16777216", "0"]);
    let info = d.call(&vol, V, "GetInfo", &["u", "0"]);
    assert!(info.starts_with("(itt) 0 16777216 "), "{info}");
    let clone = object(&d.call(
        &pool,
        P,
        "StorageVolCreateXMLFrom",
        &[
            "ssu",
            "<volume><name>v2.qcow2</name><capacity>0</capacity></volume>",
            file.to_str().unwrap(),
            "0",
        ],
    ));
    assert!(pool_dir.join("v2.qcow2").exists());
    d.call(&clone, V, "Delete", &["u", "0"]);
    assert!(!pool_dir.join("v2.qcow2").exists());

    // libvirt's errors.
    let r = d.try_call(
        &pool,
        P,
        "StorageVolCreateXML",
        &[
            "su",
            "<volume><name>a/b</name><capacity>1</capacity></volume>",
            "0",
        ],
    );
    assert!(
        !r.ok && r.stderr.contains("cannot contain '/'"),
        "{}",
        r.stderr
    );
    let r = d.try_call(
        CONNECT,
        "org.libvirt.Connect",
        "StoragePoolLookupByName",
        &["s", "nope"],
    );
    assert!(
        !r.ok && r.stderr.contains("Storage pool not found"),
        "{}",
        r.stderr
    );

    // Refresh signal, then stop and undefine.
    d.call(&pool, P, "Refresh", &["u", "0"]);
    monitor.wait_for(&d, "org.libvirt.StoragePool.Refresh");
    d.call(&pool, P, "Destroy", &[]);
    d.call(&pool, P, "Undefine", &[]);
    let r = d.try_call(&pool, P, "GetInfo", &[]);
    assert!(!r.ok, "pool object still answers after Undefine");
    let seen = monitor.stop();
    // Defined 0, Started 2, Stopped 3, Undefined 1.
    for ev in ["', 0, 0)", "', 2, 0)", "', 3, 0)", "', 1, 0)"] {
        assert!(seen.contains(ev), "no StoragePoolEvent ({ev}) in:\n{seen}");
    }
}
