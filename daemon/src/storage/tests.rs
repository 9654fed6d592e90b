//! Driver tests on temporary directories: pool lifecycle, volumes, libvirt's errors,
//! and the XML we print validated by libvirt's own schemas (`virt-xml-validate`).

use std::process::Command;

use super::*;

fn open(root: &Path) -> Storage {
    Storage::open(&StorageConfig::beside(&root.join("domains"))).unwrap()
}

/// Validates `xml` with `virt-xml-validate FILE KIND`; skips loudly where the tool is
/// missing (libvirt-clients, libxml2-utils).
fn validate(xml: &str, kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.xml");
    std::fs::write(&f, xml).unwrap();
    match Command::new("virt-xml-validate").arg(&f).arg(kind).output() {
        Ok(out) => assert!(
            out.status.success(),
            "virt-xml-validate {kind} failed:\n{xml}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("SKIPPED: virt-xml-validate {kind}: {e}"),
    }
}

#[tokio::test]
async fn default_pool_is_made_once_and_autostarted() {
    let root = tempfile::tempdir().unwrap();
    let s = open(root.path());
    let st = s.pool_status("default").unwrap();
    assert!(st.active && st.persistent && st.autostart);
    assert!(root.path().join("images").is_dir());
    s.destroy_pool("default").await.unwrap();
    s.undefine_pool("default").await.unwrap();
    // Undefined by the user: not made again.
    let s = open(root.path());
    assert!(s.lookup_pool_by_name("default").is_err());
}

#[tokio::test]
async fn pool_and_volume_lifecycle_with_valid_xml() {
    let root = tempfile::tempdir().unwrap();
    let s = open(root.path());
    let dir = root.path().join("p1");
    let xml = format!(
        "<pool type='dir'><name>p1</name><target><path>{}</path></target></pool>",
        dir.display()
    );
    let p = s.define_pool(&xml, 0).await.unwrap();
    assert!(!s.pool_status("p1").unwrap().active);
    // The target does not exist yet: libvirt's error, pool stays inactive.
    let e = s.start_pool("p1", 0).await.unwrap_err();
    assert_eq!(e.code(), 38);
    assert!(e.to_string().starts_with("cannot open directory"), "{e}");
    s.build_pool("p1", 0).await.unwrap();
    s.start_pool("p1", 0).await.unwrap();
    assert_eq!(s.pool_info("p1").unwrap().state, 2);
    let pxml = s.pool_xml("p1", 0).unwrap();
    validate(&pxml, "storagepool");
    assert_eq!(PoolDef::parse(&pxml).unwrap().uuid, p.uuid);

    let v = s
        .create_vol(
            "p1",
            "<volume><name>a.qcow2</name><capacity unit='M'>16</capacity><target><format type='qcow2'/></target></volume>",
            None,
            1,
        )
        .await
        .unwrap();
    assert_eq!(v.key, dir.join("a.qcow2").to_string_lossy());
    let vxml = s.vol_xml("p1", "a.qcow2", 0).unwrap();
    validate(&vxml, "storagevol");
    assert!(
        vxml.contains("<capacity unit='bytes'>16777216</capacity>"),
        "{vxml}"
    );
    assert!(vxml.contains("<format type='qcow2'/>"), "{vxml}");
    // Lookups by key and path name the same volume.
    assert_eq!(s.lookup_vol_by_path(&v.key).unwrap(), v);
    assert_eq!(s.lookup_vol_by_key(&v.key).unwrap(), v);
    // The name is taken now.
    let e = s
        .create_vol(
            "p1",
            "<volume><name>a.qcow2</name><capacity>1</capacity></volume>",
            None,
            0,
        )
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "storage volume 'a.qcow2' exists already");
    // A backing store that does not exist: nothing is created.
    let e = s
        .create_vol(
            "p1",
            "<volume><name>b.qcow2</name><target><format type='qcow2'/></target>\
             <backingStore><path>/nonexistent/base.img</path></backingStore></volume>",
            None,
            0,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), 38, "{e}");
    assert!(!dir.join("b.qcow2").exists());
    // A qcow2 on the first one, then its XML names the backing store.
    let xml = format!(
        "<volume><name>c.qcow2</name><target><format type='qcow2'/></target>\
         <backingStore><path>{}</path><format type='qcow2'/></backingStore></volume>",
        v.key
    );
    s.create_vol("p1", &xml, None, 0).await.unwrap();
    let cxml = s.vol_xml("p1", "c.qcow2", 0).unwrap();
    validate(&cxml, "storagevol");
    assert!(cxml.contains(&format!("<path>{}</path>", v.key)), "{cxml}");
    // Clone, resize, wipe, delete.
    s.create_vol(
        "p1",
        "<volume><name>d.qcow2</name><capacity>0</capacity></volume>",
        Some(("p1", "a.qcow2")),
        0,
    )
    .await
    .unwrap();
    assert_eq!(
        s.vol_info("p1", "d.qcow2").unwrap().format,
        VolFormat::Qcow2
    );
    s.resize_vol("p1", "d.qcow2", 32 << 20, 0).await.unwrap();
    assert_eq!(s.vol_info("p1", "d.qcow2").unwrap().capacity, 32 << 20);
    let e = s.resize_vol("p1", "d.qcow2", 1 << 20, 0).await.unwrap_err();
    assert_eq!(e.code(), 8);
    s.wipe_vol("p1", "d.qcow2", 0, 0).await.unwrap();
    s.delete_vol("p1", "d.qcow2", 0).await.unwrap();
    assert!(!dir.join("d.qcow2").exists());
    assert_eq!(s.list_vols("p1").unwrap().len(), 2);
    // Files made behind the driver's back appear on refresh.
    std::fs::write(dir.join("new.img"), b"x").unwrap();
    assert!(s.lookup_vol_by_name("p1", "new.img").is_err());
    let mut events = s.subscribe();
    s.refresh_pool("p1", 0).await.unwrap();
    assert_eq!(events.recv().await.unwrap().id(), event::ID_REFRESH);
    assert!(s.lookup_vol_by_name("p1", "new.img").is_ok());
    // Stopping makes volumes unreachable; an active pool cannot be undefined.
    let e = s.undefine_pool("p1").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "Requested operation is not valid: storage pool 'p1' is still active"
    );
    s.destroy_pool("p1").await.unwrap();
    let e = s.lookup_vol_by_name("p1", "a.qcow2").unwrap_err();
    assert_eq!(e.code(), 55);
    s.undefine_pool("p1").await.unwrap();
    assert_eq!(s.lookup_pool_by_name("p1").unwrap_err().code(), 49);
}

#[tokio::test]
async fn volumes_in_use_are_not_deleted() {
    let root = tempfile::tempdir().unwrap();
    let s = open(root.path());
    s.create_vol(
        "default",
        "<volume><name>u.img</name><capacity>4096</capacity></volume>",
        None,
        0,
    )
    .await
    .unwrap();
    let busy = root.path().join("images/u.img");
    s.set_in_use(Box::new(move |p: &Path| {
        (p == busy).then(|| "vm1".to_string())
    }));
    let e = s.delete_vol("default", "u.img", 0).await.unwrap_err();
    assert_eq!(e.code(), 55);
    assert!(e.to_string().contains("vm1"), "{e}");
    assert!(root.path().join("images/u.img").exists());
}

#[tokio::test]
async fn active_pools_stay_active_across_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::beside(&root.path().join("domains"));
    config.state_dir = Some(root.path().join("run/storage"));
    let s = Storage::open(&config).unwrap();
    let a = root.path().join("a");
    let t = root.path().join("t");
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&t).unwrap();
    let xml = |n: &str, p: &Path| {
        format!(
            "<pool type='dir'><name>{n}</name><target><path>{}</path></target></pool>",
            p.display()
        )
    };
    s.define_pool(&xml("a", &a), 0).await.unwrap();
    s.start_pool("a", 0).await.unwrap();
    s.create_pool_xml(&xml("t", &t), 0).await.unwrap();
    s.destroy_pool("default").await.unwrap();
    drop(s);
    let s = Storage::open(&config).unwrap();
    assert!(s.pool_status("a").unwrap().active);
    let st = s.pool_status("t").unwrap();
    assert!(st.active && !st.persistent);
    // An autostart pool is started at every daemon start, as libvirtd does.
    assert!(s.pool_status("default").unwrap().active);
}

#[tokio::test]
async fn duplicate_pools_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let s = open(root.path());
    let xml = format!(
        "<pool type='dir'><name>other</name><target><path>{}</path></target></pool>",
        root.path().join("images").display()
    );
    let e = s.define_pool(&xml, 0).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "operation failed: Storage source conflict with pool: 'default'"
    );
    let list = s.list_pools(flags::list::ACTIVE);
    assert_eq!(list.len(), 1);
    assert!(s.list_pools(flags::list::INACTIVE).is_empty());
    assert!(s.list_pools(flags::list::TRANSIENT).is_empty());
}

#[tokio::test]
async fn source_discovery_answers_as_libvirt() {
    let e = find_pool_sources("dir", 0).await.unwrap_err();
    assert_eq!(e.code(), error::code::NO_SUPPORT);
    assert!(e
        .to_string()
        .ends_with("pool type 'dir' does not support source discovery"));
    let e = find_pool_sources("netfs", 0).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "internal error: missing backend for pool type 2 (netfs)"
    );
    let e = find_pool_sources("bogus", 0).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "internal error: unknown storage pool type bogus"
    );
    assert!(find_pool_sources("logical", 1)
        .await
        .unwrap_err()
        .to_string()
        .contains("unsupported flags (0x1) in function virConnectFindStoragePoolSources"));
    // With or without LVM here: a <sources> document (empty without the tools). Only
    // root may read the physical volumes.
    if nix::unistd::geteuid().is_root() || !lvm::installed() {
        let x = find_pool_sources("logical", 0).await.unwrap();
        let doc = roxmltree::Document::parse(&x).unwrap();
        assert_eq!(doc.root_element().tag_name().name(), "sources");
        if !lvm::installed() {
            assert_eq!(x, "<sources>\n</sources>\n");
        }
    }
}

#[tokio::test]
async fn logical_pools_define_list_and_refuse_to_start_without_their_group() {
    let root = tempfile::tempdir().unwrap();
    let s = open(root.path());
    let vg = format!("oxvg_absent_{}", std::process::id());
    let xml = format!(
        "<pool type='logical'><name>lv</name><source><device path='/dev/oxvirt-no-such-disk'/>\
         <name>{vg}</name></source><target><path>/dev/{vg}</path></target></pool>"
    );
    s.define_pool(&xml, 0).await.unwrap();
    let dumped = s.pool_xml("lv", 0).unwrap();
    assert!(dumped.starts_with("<pool type='logical'>"), "{dumped}");
    validate(&dumped, "storagepool");
    let names = |f| -> Vec<String> { s.list_pools(f).into_iter().map(|p| p.pool.name).collect() };
    assert_eq!(names(flags::list::LOGICAL), ["lv"]);
    assert_eq!(names(flags::list::DIR), ["default"]);
    assert_eq!(
        names(flags::list::DIR | flags::list::LOGICAL),
        ["default", "lv"]
    );
    assert_eq!(names(1 << 7), Vec::<String>::new());
    // Its target is the group's, whatever was given: a dir pool there conflicts.
    let e = s
        .define_pool(
            &format!(
                "<pool type='dir'><name>d</name><target><path>/dev/{vg}</path></target></pool>"
            ),
            0,
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "operation failed: Storage source conflict with pool: 'lv'"
    );

    let e = s.start_pool("lv", 0).await.unwrap_err();
    if lvm::installed() && nix::unistd::geteuid().is_root() {
        assert_eq!(
            e.to_string(),
            format!("unsupported configuration: cannot find logical volume group name '{vg}'")
        );
        assert_eq!(e.code(), error::code::CONFIG_UNSUPPORTED);
    } else {
        assert!(e.to_string().contains("/usr/sbin/"), "{e}");
    }
    assert!(!s.pool_status("lv").unwrap().active);
    // Building on a missing device fails before any LVM tool runs.
    let e = s
        .build_pool("lv", flags::BUILD_OVERWRITE)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot open device '/dev/oxvirt-no-such-disk': No such file or directory"
    );
    let e = s
        .build_pool("lv", flags::BUILD_OVERWRITE | flags::BUILD_NO_OVERWRITE)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("mutually exclusive"), "{e}");
    s.undefine_pool("lv").await.unwrap();
}

#[test]
fn block_volume_xml_validates() {
    let info = VolInfo {
        name: "v1".into(),
        path: PathBuf::from("/dev/vg/v1"),
        format: VolFormat::Raw,
        capacity: 8 << 20,
        allocation: 8 << 20,
        physical: 8 << 20,
        perms: pool_xml::Perms {
            mode: Some(0o600),
            owner: Some(0),
            group: Some(6),
            label: None,
        },
        times: [(1, 2), (3, 4), (5, 6)],
        backing: None,
        compat: None,
        block: Some(vol_xml::BlockVol {
            key: "Jm3Uv4-kS0C-dzRw-c3Xd-3zyW-bJfa-oFYBNn".into(),
            extents: vec![vol_xml::Extent {
                device: "/dev/loop0".into(),
                start: 0,
                end: 8 << 20,
            }],
            sparse: false,
        }),
    };
    validate(&info.format_xml(), "storagevol");
}

/// The fuzz target's property (`fuzz/fuzz_targets/storage_xml.rs`) on mutated inputs,
/// so every test run checks it: the parsers never panic; a pool that parses formats to
/// XML that parses back equal.
#[test]
fn mutated_storage_inputs_never_panic() {
    let seeds: [&[u8]; 4] = [
        b"<pool type='logical'><name>lv</name><source><device path='/dev/loop0'/><name>vg</name><format type='lvm2'/></source><target><path>/dev/vg</path></target></pool>",
        b"<pool type='dir'><name>p</name><uuid>e4679589-6b6f-4b3a-9a7b-ffa3a5c6a6e1</uuid><target><path>/a/b</path><permissions><mode>0711</mode><owner>0</owner></permissions></target></pool>",
        b"<volume><name>v</name><capacity unit='G'>1</capacity><allocation>0</allocation><target><format type='qcow2'/></target><backingStore><path>/b</path><format type='raw'/></backingStore></volume>",
        b"QFI\xfb\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x68\x00\x00\x00\x04\x00\x00\x00\x10\x00\x00\x00\x00\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x68/x/y",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for seed in seeds {
        for _ in 0..3000 {
            let mut d = seed.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % d.len();
                match next() % 3 {
                    0 => d[i] = next() as u8,
                    1 => {
                        d.remove(i);
                    }
                    _ => d.insert(i, b"<>'/0x\xff"[(next() % 7) as usize]),
                }
                if d.is_empty() {
                    break;
                }
            }
            let _ = image::parse_qcow2(&d);
            if let Ok(text) = std::str::from_utf8(&d) {
                if let Ok(p) = PoolDef::parse(text) {
                    assert_eq!(PoolDef::parse(&p.format(None, None)).unwrap(), p, "{text}");
                }
                let _ = VolRequest::parse(text);
            }
        }
    }
}
