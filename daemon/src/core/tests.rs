//! Core catalog behaviour against a real store in a temp dir (no VMM needed):
//! define, redefine, duplicates, malformed XML, undefine, rename, metadata,
//! autostart, listing; failures leave the disk as it was.

use std::path::{Path, PathBuf};

use super::event::{detail, kind};
use super::*;

fn xml(name: &str, uuid: &str) -> String {
    format!(
        "<domain type='kvm'><name>{name}</name><uuid>{uuid}</uuid><memory unit='MiB'>64</memory>\
         <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type><kernel>/nonexistent/kernel</kernel></os>\
         <features><acpi/></features><devices/></domain>"
    )
}

const U1: &str = "11111111-2222-3333-4444-555555555555";
const U2: &str = "66666666-7777-8888-9999-000000000000";

async fn core(dir: &Path) -> Core {
    Core::open(CoreConfig {
        domains_dir: dir.join("domains"),
        runtime_dir: dir.join("run"),
        vmm: PathBuf::from("/nonexistent/oxvirt-vmm"),
        autostart: false,
        vmm_user: None,
    })
    .await
    .unwrap()
}

/// Every file under `dir` with its content.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn define_then_redefine_emits_added_then_updated_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let c = core(dir.path()).await;
    let mut ev = c.subscribe();
    let d = c.define_xml(&xml("a", U1)).await.unwrap();
    assert_eq!((d.name.as_str(), d.id), ("a", -1));
    assert_eq!(d.uuid.to_string(), U1);
    c.define_xml(&xml("a", U1)).await.unwrap();
    let e1 = ev.recv().await.unwrap();
    let e2 = ev.recv().await.unwrap();
    assert!(matches!(
        e1,
        Event::Lifecycle {
            event: kind::DEFINED,
            detail: detail::defined::ADDED,
            ..
        }
    ));
    assert!(matches!(
        e2,
        Event::Lifecycle {
            event: kind::DEFINED,
            detail: detail::defined::UPDATED,
            ..
        }
    ));
    assert!(dir.path().join("domains/a.xml").is_file());
    // A new core over the same store sees the domain, shut off.
    drop(c);
    let c = core(dir.path()).await;
    let d = c.lookup_by_name("a").unwrap();
    assert_eq!(c.state(&d.uuid).unwrap(), StateReason::SHUTOFF_UNKNOWN);
    assert!(c.xml_desc(&d.uuid, 0).unwrap().contains("<name>a</name>"));
}

#[tokio::test]
async fn bad_defines_fail_in_libvirt_words_and_leave_the_disk_alone() {
    let dir = tempfile::tempdir().unwrap();
    let c = core(dir.path()).await;
    c.define_xml(&xml("a", U1)).await.unwrap();
    c.define_xml(&xml("b", U2)).await.unwrap();
    let before = snapshot(dir.path());

    let e = c
        .define_xml("<domain type='kvm'><name>a</name>")
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("XML error:"), "{e}");

    let e = c.define_xml(&xml("a", U2)).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("operation failed: domain 'b' is already defined with uuid {U2}")
    );
    assert_eq!(e.code(), error::code::OPERATION_FAILED);

    let e = c
        .define_xml(&xml("b", "aaaaaaaa-2222-3333-4444-555555555555"))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("operation failed: domain 'b' already exists with uuid {U2}")
    );

    let e = c.lookup_by_name("nosuch").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Domain not found: no domain with matching name 'nosuch'"
    );
    assert_eq!(e.code(), 42);

    let u1 = Uuid::parse_str(U1).unwrap();
    let e = c.suspend(&u1).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "Requested operation is not valid: domain is not running"
    );
    let e = c.start(&u1, 0x10).await.unwrap_err();
    assert_eq!(e.code(), error::code::INVALID_ARG);
    // Starting with no VMM binary fails with the path named, and nothing is left over.
    let e = c.start(&u1, 0).await.unwrap_err();
    assert!(e.to_string().contains("/nonexistent/oxvirt-vmm"), "{e}");
    assert_eq!(c.state(&u1).unwrap(), StateReason::SHUTOFF_UNKNOWN);
    let after = snapshot(dir.path());
    let paths = |v: &[(PathBuf, Vec<u8>)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(paths(&after), paths(&before));
    assert!(after == before, "file contents changed");
}

#[tokio::test]
async fn undefine_rename_autostart_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let c = core(dir.path()).await;
    let d = c.define_xml(&xml("a", U1)).await.unwrap();
    c.set_autostart(&d.uuid, true).await.unwrap();
    assert!(c.autostart(&d.uuid).unwrap());
    assert_eq!(c.list(flags::list::AUTOSTART).unwrap().len(), 1);
    assert!(c.list(flags::list::ACTIVE).unwrap().is_empty());

    c.rename(&d.uuid, "b", 0).await.unwrap();
    assert!(c.lookup_by_name("a").is_err());
    assert_eq!(c.lookup_by_name("b").unwrap().uuid, d.uuid);
    assert!(dir.path().join("domains/b.xml").is_file());
    assert!(!dir.path().join("domains/a.xml").exists());
    assert!(c.autostart(&d.uuid).unwrap());

    c.set_metadata(
        &d.uuid,
        flags::metadata::TITLE,
        Some("My VM"),
        None,
        None,
        0,
    )
    .await
    .unwrap();
    assert_eq!(
        c.metadata(&d.uuid, flags::metadata::TITLE, None, 0)
            .unwrap(),
        "My VM"
    );
    c.set_metadata(
        &d.uuid,
        flags::metadata::ELEMENT,
        Some("<app><v>1</v></app>"),
        Some("ex"),
        Some("http://example.org/app"),
        0,
    )
    .await
    .unwrap();
    let m = c
        .metadata(
            &d.uuid,
            flags::metadata::ELEMENT,
            Some("http://example.org/app"),
            0,
        )
        .unwrap();
    assert!(
        m.contains("ex:app") && m.contains("http://example.org/app"),
        "{m}"
    );
    let e = c
        .metadata(&d.uuid, flags::metadata::DESCRIPTION, None, 0)
        .unwrap_err();
    assert_eq!(e.code(), error::code::NO_DOMAIN_METADATA);
    // Survives a reload from disk.
    drop(c);
    let c = core(dir.path()).await;
    assert_eq!(
        c.metadata(&d.uuid, flags::metadata::TITLE, None, 0)
            .unwrap(),
        "My VM"
    );

    c.undefine(&d.uuid, 0).await.unwrap();
    assert!(c.lookup_by_uuid(&d.uuid).is_err());
    assert!(!dir.path().join("domains/b.xml").exists());
    assert!(!dir.path().join("domains/autostart/b.xml").exists());
}
