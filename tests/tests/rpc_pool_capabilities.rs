//! `virsh pool-capabilities` (what Cockpit's Create storage pool dialog reads to offer
//! pool types): every libvirt pool type listed, `dir` supported with the volume formats
//! it creates, `logical` with its source formats where the LVM tools (lvm2) are
//! installed; valid against libvirt's own schema (`storagepoolcaps.rng`). No guest runs.

mod rpc_common;

use std::process::Command;

use rpc_common::Daemon;

#[test]
fn rpc_pool_capabilities_offer_dir_and_logical() {
    let d = Daemon::start();
    let caps = d.virsh_ok(&["pool-capabilities"]);
    assert!(caps.contains("<pool type='dir' supported='yes'>"), "{caps}");
    assert!(caps.contains("<value>qcow2</value>"), "{caps}");
    // The daemon offers LVM pools where it can run the tools.
    let lvm = std::path::Path::new("/usr/sbin/lvcreate").exists();
    if lvm {
        assert!(
            caps.contains(
                "<pool type='logical' supported='yes'>\n    <poolOptions>\n      \
                 <defaultFormat type='lvm2'/>"
            ),
            "{caps}"
        );
        assert!(caps.contains("<value>lvm2</value>"), "{caps}");
    } else {
        assert!(
            caps.contains("<pool type='logical' supported='no'>"),
            "{caps}"
        );
    }
    let supported = if lvm { 2 } else { 1 };
    assert_eq!(caps.matches("supported='yes'").count(), supported, "{caps}");

    let p = d.xml_file("poolcaps", &caps);
    let out = Command::new("virt-xml-validate")
        .arg(&p)
        .arg("storagepoolcaps")
        .output()
        .expect("virt-xml-validate (libvirt-clients, libxml2-utils)");
    assert!(
        out.status.success(),
        "pool-capabilities does not validate:\n{caps}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Flags: none are defined.
    let py = format!(
        "import libvirt\n\
         c = libvirt.open('{}')\n\
         try:\n\
         \x20   c.getStoragePoolCapabilities(1)\n\
         except libvirt.libvirtError as e:\n\
         \x20   print(e.get_error_code(), e.get_error_message())\n",
        d.uri()
    );
    let out = Command::new("/usr/bin/python3")
        .args(["-c", &py])
        .output()
        .expect("python3-libvirt");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "8 invalid argument: unsupported flags (0x1) in function virConnectGetStoragePoolCapabilities",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
