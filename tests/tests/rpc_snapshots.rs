//! Domain snapshots with Debian's virsh and python3-libvirt against oxvirtd.
//!
//! * A **running** domain (the oxtest guest counting LAPIC timer ticks, no disks):
//!   `snapshot-create-as` keeps its machine state and the guest runs on; a second
//!   snapshot's parent is the first; `snapshot-revert` to the first brings the
//!   guest back to the tick it was at (no new boot), `running (from snapshot)`.
//! * A **shut-off** domain with a qcow2 disk: the snapshot is an internal qcow2
//!   snapshot (`qemu-img snapshot -l` lists it); data written after it (qemu-io)
//!   is gone after `snapshot-revert`; `snapshot-delete` removes it from the image.
//! * Refusals as libvirt words them: a running domain's writable disk, an unknown
//!   snapshot, undefine of an inactive domain with snapshots (fine with
//!   `--snapshots-metadata`).

mod rpc_common;

use std::path::Path;
use std::process::Command;

use oxvirt_tests::domain_xml;
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::test_guests;
use rpc_common::{console_ticks, Daemon};

fn counting_xml(name: &str, console: &Path) -> String {
    domain_xml(
        name,
        &test_guests().elf,
        "console=ttyS0 oxtest=count",
        64,
        1,
        "restart",
        &serial_xml(&format!("file:{}", console.display())),
    )
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_running_domain_goes_back_to_its_snapshot() {
    let d = Daemon::start();
    let name = "snap";
    let console = d.dir.path().join("console.log");
    let f = d.xml_file(name, &counting_xml(name, &console));
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    let before = *d.wait_ticks(&console, 3).last().unwrap();

    let out = d.virsh_ok(&["snapshot-create-as", name, "s1", "--description", "first"]);
    assert!(out.contains("Domain snapshot s1 created"), "{out}");
    let after = *console_ticks(&console).last().unwrap();
    // The guest runs on after a snapshot.
    d.wait_ticks(&console, console_ticks(&console).len() + 2);
    assert_eq!(d.virsh_ok(&["domstate", name]).trim(), "running");

    let xml = d.virsh_ok(&["snapshot-dumpxml", name, "s1"]);
    for want in [
        "<name>s1</name>",
        "<description>first</description>",
        "<state>running</state>",
        "<memory snapshot='internal'/>",
        &format!("<name>{name}</name>"),
    ] {
        assert!(xml.contains(want), "no {want} in:\n{xml}");
    }
    assert_eq!(
        d.virsh_ok(&["snapshot-current", name, "--name"]).trim(),
        "s1"
    );
    d.virsh_ok(&["snapshot-create-as", name, "s2"]);
    assert_eq!(d.virsh_ok(&["snapshot-parent", name, "s2"]).trim(), "s1");
    let list = d.virsh_ok(&["snapshot-list", name, "--name"]);
    assert_eq!(list.split_whitespace().collect::<Vec<_>>(), ["s1", "s2"]);
    let leaves = d.virsh_ok(&["snapshot-list", name, "--leaves", "--name"]);
    assert_eq!(leaves.trim(), "s2");
    let info = d.virsh_ok(&["snapshot-info", name, "s1"]);
    assert_eq!(rpc_common::field(&info, "Current"), "no", "{info}");
    assert_eq!(rpc_common::field(&info, "Children"), "1", "{info}");
    assert_eq!(rpc_common::field(&info, "State"), "running", "{info}");
    let r = d.virsh(&["snapshot-parent", name, "s1"]);
    assert!(
        !r.ok && r.stderr.contains("snapshot 's1' has no parent"),
        "{}",
        r.stderr
    );

    // Revert: the guest is where it was at s1 — the count goes on from there.
    d.virsh_ok(&["snapshot-revert", name, "s1"]);
    let st = d.virsh_ok(&["domstate", name, "--reason"]);
    assert_eq!(st.trim(), "running (from snapshot)", "{st}");
    let t = d.wait_ticks(&console, 1);
    assert!(
        // (+2: the snapshot may catch the guest half-way through printing a line)
        (before + 1..=after + 2).contains(&t[0]),
        "after the revert the count went on from {} (the snapshot was taken between ticks {before} and {after})",
        t[0]
    );
    assert!(
        !std::fs::read_to_string(&console)
            .unwrap()
            .contains("OXTEST READY"),
        "the guest booted again"
    );
    assert_eq!(
        d.virsh_ok(&["snapshot-current", name, "--name"]).trim(),
        "s1"
    );

    // python3-libvirt sees the same.
    let py = format!(
        "import libvirt\n\
         c = libvirt.open('{uri}')\n\
         d = c.lookupByName('{name}')\n\
         s = d.snapshotLookupByName('s1', 0)\n\
         print(d.snapshotNum(0), sorted(d.snapshotListNames(0)), len(d.listAllSnapshots(0)))\n\
         print(s.isCurrent(0), s.hasMetadata(0), s.numChildren(0), [x.getName() for x in s.listAllChildren(0)])\n\
         print(s.getParent() if False else d.snapshotCurrent(0).getName())\n",
        uri = d.uri()
    );
    let out = run("/usr/bin/python3", &["-c", &py]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "2 ['s1', 's2'] 2", "{out}");
    assert_eq!(lines[1], "1 1 1 ['s2']", "{out}");
    assert_eq!(lines[2], "s1", "{out}");

    // Delete: the child moves up; then none is left.
    d.virsh_ok(&["snapshot-delete", name, "s1"]);
    let r = d.virsh(&["snapshot-parent", name, "s2"]);
    assert!(!r.ok, "s2 kept a parent: {}", r.stdout);
    d.virsh_ok(&["snapshot-delete", name, "s2"]);
    assert_eq!(d.virsh_ok(&["snapshot-list", name, "--name"]).trim(), "");
    let r = d.virsh(&["snapshot-dumpxml", name, "s1"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("Domain snapshot not found: no domain snapshot with matching name 's1'"),
        "{}",
        r.stderr
    );
    d.virsh_ok(&["destroy", name]);
}

#[test]
fn a_shut_off_domain_snapshots_its_qcow2_disk() {
    let d = Daemon::start();
    let name = "snapdisk";
    let console = d.dir.path().join("console.log");
    let image = d.dir.path().join("disk.qcow2");
    run(
        "qemu-img",
        &["create", "-q", "-f", "qcow2", image.to_str().unwrap(), "1M"],
    );
    let xml = counting_xml(name, &console).replace(
        "<devices>",
        &format!(
            "<devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{}'/><target dev='vda' bus='virtio'/></disk>",
            image.display()
        ),
    );
    let f = d.xml_file(name, &xml);
    d.virsh_ok(&["define", f.to_str().unwrap()]);

    let out = d.virsh_ok(&["snapshot-create-as", name, "off1"]);
    assert!(out.contains("Domain snapshot off1 created"), "{out}");
    let listed = run("qemu-img", &["snapshot", "-l", image.to_str().unwrap()]);
    assert!(listed.contains("off1"), "{listed}");
    let r = d.virsh(&["domrename", name, "other"]);
    assert!(
        !r.ok && r.stderr.contains("cannot rename domain with snapshots"),
        "{}",
        r.stderr
    );
    let xml = d.virsh_ok(&["snapshot-dumpxml", name, "off1"]);
    assert!(xml.contains("<state>shutoff</state>"), "{xml}");
    assert!(
        xml.contains("<disk name='vda' snapshot='internal'/>"),
        "{xml}"
    );
    assert!(xml.contains("<memory snapshot='no'/>"), "{xml}");

    // Written after the snapshot, gone after the revert.
    let img = image.to_str().unwrap();
    run(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0xab 0 64k", img],
    );
    run("qemu-io", &["-f", "qcow2", "-c", "read -P 0xab 0 64k", img]);
    d.virsh_ok(&["snapshot-revert", name, "off1"]);
    assert_eq!(d.virsh_ok(&["domstate", name]).trim(), "shut off");
    run("qemu-io", &["-f", "qcow2", "-c", "read -P 0 0 64k", img]);

    // A running domain cannot freeze its writable disk (yet): refused by name.
    d.virsh_ok(&["start", name]);
    d.wait_ticks(&console, 1);
    let r = d.virsh(&["snapshot-create-as", name, "on1"]);
    assert!(
        !r.ok && r.stderr.contains("writable disk 'vda'"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    d.virsh_ok(&["destroy", name]);

    // Undefine keeps the snapshots safe unless told.
    let r = d.virsh(&["undefine", name]);
    assert!(
        !r.ok
            && r.stderr
                .contains("cannot delete inactive domain with 1 snapshots"),
        "{}",
        r.stderr
    );
    d.virsh_ok(&["snapshot-delete", name, "off1"]);
    let listed = run("qemu-img", &["snapshot", "-l", img]);
    assert!(!listed.contains("off1"), "{listed}");
    d.virsh_ok(&["snapshot-create-as", name, "off2"]);
    d.virsh_ok(&["undefine", name, "--snapshots-metadata"]);

    let r = d.virsh(&["snapshot-list", "nosuch"]);
    assert!(
        !r.ok && r.stderr.contains("failed to get domain 'nosuch'"),
        "{}",
        r.stderr
    );
}
