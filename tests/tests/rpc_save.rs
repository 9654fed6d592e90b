//! Saving a domain's state and going on from it with Debian's virsh against
//! oxvirtd: `managedsave` (the next `start` restores it), `save FILE` /
//! `restore FILE`, `save-image-dumpxml`, `managedsave-remove`, and what libvirt
//! shows meanwhile (`shut off (saved)`, `Managed save: yes`, `list
//! --with-managed-save`, `running (restored)`, undefine refused while an image
//! exists).
//!
//! The oxtest guest counts LAPIC timer ticks ("OXTEST tick N", twice a second) on
//! a serial log file: a restored guest goes on from the tick after the last one
//! saved, with no new boot ("OXTEST READY" shows once per boot); after ten ticks it
//! waits for the ACPI power button, so `virsh shutdown` ends it.

mod rpc_common;

use std::path::Path;

use oxvirt_tests::domain_xml;
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::test_guests;
use rpc_common::{console_ticks, Daemon};

fn boots(console: &Path) -> usize {
    std::fs::read_to_string(console)
        .unwrap_or_default()
        .matches("OXTEST READY")
        .count()
}

#[test]
fn managedsave_save_and_restore_go_on_where_the_guest_was() {
    let d = Daemon::start();
    let name = "saver";
    let console = d.dir.path().join("console.log");
    let xml = domain_xml(
        name,
        &test_guests().elf,
        "console=ttyS0 oxtest=count,acpibutton ticks=10",
        64,
        1,
        "restart",
        &serial_xml(&format!("file:{}", console.display())),
    );
    let f = d.xml_file(name, &xml);
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    let before = d.wait_ticks(&console, 2);
    assert_eq!(boots(&console), 1);

    // 1. managedsave: shut off (saved), with an image the next start uses.
    let out = d.virsh_ok(&["managedsave", name]);
    assert!(
        out.contains(&format!("Domain '{name}' state saved by libvirt")),
        "{out}"
    );
    let last = *console_ticks(&console).last().unwrap();
    assert!(last >= *before.last().unwrap());
    let st = d.virsh_ok(&["domstate", name, "--reason"]);
    assert_eq!(st.trim(), "shut off (saved)", "{st}");
    let info = d.virsh_ok(&["dominfo", name]);
    assert_eq!(rpc_common::field(&info, "Managed save"), "yes", "{info}");
    let list = d.virsh_ok(&["list", "--all", "--with-managed-save", "--name"]);
    assert!(list.lines().any(|l| l.trim() == name), "{list}");
    let list = d.virsh_ok(&["list", "--all", "--without-managed-save", "--name"]);
    assert!(!list.lines().any(|l| l.trim() == name), "{list}");
    let image = d.dir.path().join("save").join(format!("{name}.save"));
    assert!(
        image.exists(),
        "no managed save image at {}",
        image.display()
    );
    let r = d.virsh(&["undefine", name]);
    assert!(
        !r.ok && r.stderr.contains("managed save image exists"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );

    // 2. start: the guest goes on from the next tick; the image is gone.
    d.virsh_ok(&["start", name]);
    let st = d.virsh_ok(&["domstate", name, "--reason"]);
    assert_eq!(st.trim(), "running (restored)", "{st}");
    let t = d.wait_ticks(&console, 1);
    // The next tick, or the one after if the save caught the guest half-way through
    // printing a line (its tail then opens the new log, unparsed).
    assert!(
        (last + 1..=last + 2).contains(&t[0]),
        "the count did not go on from {last}: {t:?}"
    );
    assert_eq!(boots(&console), 0, "the restored guest booted again");
    assert!(
        !image.exists(),
        "the managed save image stays after the restore"
    );
    let info = d.virsh_ok(&["dominfo", name]);
    assert_eq!(rpc_common::field(&info, "Managed save"), "no", "{info}");

    // 3. save FILE / save-image-dumpxml / restore FILE.
    let file = d.dir.path().join("by-hand.save");
    let out = d.virsh_ok(&["save", name, file.to_str().unwrap()]);
    assert!(out.contains(&format!("Domain '{name}' saved to")), "{out}");
    let last = *console_ticks(&console).last().unwrap();
    d.wait_state(name, "shut off");
    let saved_xml = d.virsh_ok(&["save-image-dumpxml", file.to_str().unwrap()]);
    assert!(
        saved_xml.contains(&format!("<name>{name}</name>")),
        "{saved_xml}"
    );
    let out = d.virsh_ok(&["restore", file.to_str().unwrap()]);
    assert!(out.contains("Domain restored from"), "{out}");
    let t = d.wait_ticks(&console, 1);
    // The next tick, or the one after if the save caught the guest half-way through
    // printing a line (its tail then opens the new log, unparsed).
    assert!(
        (last + 1..=last + 2).contains(&t[0]),
        "the count did not go on from {last}: {t:?}"
    );
    assert_eq!(boots(&console), 0);

    // The restored guest counts to ten and powers off on the button.
    d.wait_ticks(&console, 10 - last as usize);
    d.shutdown_until_off(name);

    // 4. managedsave-remove: the next start boots afresh.
    d.virsh_ok(&["start", name]);
    d.wait_ticks(&console, 1);
    d.virsh_ok(&["managedsave", name]);
    assert!(image.exists());
    d.virsh_ok(&["managedsave-remove", name]);
    assert!(!image.exists());
    d.virsh_ok(&["start", name]);
    let t = d.wait_ticks(&console, 1);
    assert_eq!(t[0], 1, "a fresh boot counts from one: {t:?}");
    assert_eq!(boots(&console), 1);
    d.virsh_ok(&["destroy", name]);
    d.virsh_ok(&["undefine", name]);
}
