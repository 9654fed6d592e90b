//! Snapshots as oxvirt has them today (none are made): virsh and python3-libvirt see
//! an empty list through every procedure (DOMAIN_SNAPSHOT_NUM, SNAPSHOT_LIST_NAMES,
//! LIST_ALL_SNAPSHOTS) and `snapshot-create` answers libvirt's "not supported" error;
//! an unknown domain answers libvirt's "Domain not found". No guest runs.

mod rpc_common;

use std::process::Command;

use rpc_common::{guest_xml, Daemon};

#[test]
fn rpc_snapshot_lists_are_empty_and_create_is_not_supported() {
    let d = Daemon::start();
    let p = d.xml_file("snap", &guest_xml("snap"));
    d.virsh_ok(&["define", p.to_str().unwrap()]);

    // snapshot-list: LIST_ALL_SNAPSHOTS; the table has its header and no rows.
    let list = d.virsh_ok(&["snapshot-list", "snap", "--name"]);
    assert_eq!(list.trim(), "", "{list}");
    let list = d.virsh_ok(&["snapshot-list", "snap"]);
    assert_eq!(
        list.lines().filter(|l| !l.trim().is_empty()).count(),
        2,
        "{list}"
    );

    let r = d.virsh(&["snapshot-create-as", "snap", "first"]);
    assert!(!r.ok, "snapshot-create-as succeeded: {}", r.stdout);
    assert!(
        r.stderr.contains(
            "this function is not supported by the connection driver: virDomainSnapshotCreateXML"
        ),
        "{}",
        r.stderr
    );
    // Naming a snapshot: libvirt's VIR_ERR_NO_DOMAIN_SNAPSHOT words.
    // virsh asks HAS_CURRENT_SNAPSHOT first and says so itself.
    let r = d.virsh(&["snapshot-current", "snap"]);
    assert!(
        !r.ok && r.stderr.contains("domain 'snap' has no current snapshot"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    for args in [
        ["snapshot-dumpxml", "snap", "first"],
        ["snapshot-revert", "snap", "first"],
        ["snapshot-delete", "snap", "first"],
    ] {
        let r = d.virsh(&args);
        assert!(
            !r.ok
                && r.stderr.contains(
                    "Domain snapshot not found: no domain snapshot with matching name 'first'"
                ),
            "{args:?}: {}{}",
            r.stdout,
            r.stderr
        );
    }

    // python3-libvirt: the older NUM + LIST_NAMES pair and LIST_ALL.
    let py = format!(
        "import libvirt\n\
         c = libvirt.open('{uri}')\n\
         d = c.lookupByName('snap')\n\
         print(d.snapshotNum(0), d.snapshotListNames(0), len(d.listAllSnapshots(0)))\n\
         print(d.hasCurrentSnapshot(0))\n\
         try:\n\
         \x20   d.snapshotCurrent(0)\n\
         except libvirt.libvirtError as e:\n\
         \x20   print(e.get_error_code(), e.get_error_message())\n\
         try:\n\
         \x20   d.snapshotCreateXML('<domainsnapshot/>', 0)\n\
         except libvirt.libvirtError as e:\n\
         \x20   print(e.get_error_code(), e.get_error_message())\n",
        uri = d.uri()
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &py])
        .output()
        .expect("python3-libvirt");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "0 [] 0", "{stdout}");
    assert_eq!(lines[1], "0", "{stdout}");
    // VIR_ERR_NO_DOMAIN_SNAPSHOT = 72, VIR_ERR_NO_SUPPORT = 3
    assert_eq!(
        lines[2], "72 Domain snapshot not found: the domain does not have a current snapshot",
        "{stdout}"
    );
    assert_eq!(
        lines[3],
        "3 this function is not supported by the connection driver: virDomainSnapshotCreateXML",
        "{stdout}"
    );

    // An unknown domain: virsh's lookup fails first, python's list call after it.
    let r = d.virsh(&["snapshot-list", "nosuch"]);
    assert!(
        !r.ok && r.stderr.contains("failed to get domain 'nosuch'"),
        "{}",
        r.stderr
    );
}
