//! Live device hot-plug with Debian's virsh against oxvirtd, judged by Linux (the
//! patched test guest on a Q35 machine with spare `pcie-root-port`s; its `pciehp`
//! drives the ports' hot-plug slots):
//!
//! 1. `virsh attach-disk --live` of a virtio disk: the guest finds `/dev/vda` and
//!    hashes it; the hash is the host file's; `virsh event` shows device-added;
//! 2. `virsh attach-device --live` of a virtio NIC on a tap: the guest's `eth0`
//!    appears with the MAC given and its link up (carrier);
//! 3. the guest then refuses the NIC's removal (it unbinds the port driver, so
//!    nothing answers the attention button): `virsh detach-interface --live`
//!    succeeds after libvirt's 5-second wait, as libvirt's does, and the interface
//!    stays — in the live XML and in the guest;
//! 4. D-Bus `AttachDevice`/`DetachDevice` (busctl, live) of a second disk: the
//!    device-added and device-removed events;
//! 5. `virsh detach-disk --live`: the guest releases the disk (pciehp powers the
//!    slot off), the disk leaves the live XML, device-removed follows, and the guest
//!    no longer has `/dev/vda` while `eth0` is still there.

mod rpc_common;
#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oxvirt_tests::domain_xml;
use oxvirt_tests::spec::serial_xml;
use rpc_common::Daemon;
use support::{base64, guest, pattern, sha256_hex, BOOT};

const MAC: &str = "52:54:00:4f:58:01";

/// The guest's side (run by /init after its ready line; `oxvirt_cmd64`). Every
/// wait is bounded.
const SCRIPT: &str = r#"w() { i=0; while ! eval "$1" && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); done; }
echo "OXCHECK waiting"
w '[ -b /dev/vda ]'
echo "OXCHECK disk sha256=$(sha256sum </dev/vda | cut -d' ' -f1)"
w '[ -e /sys/class/net/eth0 ]'
ip link set eth0 up
w '[ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ]'
echo "OXCHECK nic mac=$(cat /sys/class/net/eth0/address) carrier=$(cat /sys/class/net/eth0/carrier)"
port=$(basename "$(dirname "$(dirname "$(readlink -f /sys/class/net/eth0/device)")")")
echo "$port" >/sys/bus/pci/drivers/pcieport/unbind && echo "OXCHECK refusing port=$port"
w '[ ! -b /dev/vda ]'
nic=absent; [ -e /sys/class/net/eth0 ] && nic=present
disk=absent; [ -b /dev/vda ] && disk=present
echo "OXCHECK end disk=$disk nic=$nic"
"#;

/// Waits until the console file holds `needle`; returns the rest of its line.
fn wait_line(d: &Daemon, console: &Path, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(console).unwrap_or_default();
        if let Some(i) = text.find(needle) {
            let rest = &text[i + needle.len()..];
            return rest.lines().next().unwrap_or("").trim().to_string();
        }
        if Instant::now() > deadline {
            d.fail(&format!(
                "the guest never printed '{needle}'; console:\n{text}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until `virsh event` has printed `needle`.
fn wait_event(d: &Daemon, rx: &std::sync::mpsc::Receiver<String>, seen: &mut String, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.contains(needle) {
        if let Ok(c) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push_str(&c);
        }
        if Instant::now() > deadline {
            d.fail(&format!("no '{needle}'; virsh event printed:\n{seen}"));
        }
    }
}

/// `busctl call` of an `org.libvirt.Domain` method taking (xml, flags = live).
/// While the guest is still bringing a new slot up (power indicator blinking) an
/// unplug request is refused, as QEMU refuses it: tried again, for a while.
fn domain_call(d: &Daemon, uuid: &str, method: &str, xml: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = domain_call_once(d, uuid, method, xml);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            return;
        }
        if !err.contains("guest is busy") || Instant::now() > deadline {
            d.fail(&format!("busctl {method}: {err}"));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn domain_call_once(d: &Daemon, uuid: &str, method: &str, xml: &str) -> std::process::Output {
    Command::new("busctl")
        .arg("--address")
        .arg(format!("unix:path={}", d.dir.path().join("bus").display()))
        .args([
            "call",
            "org.libvirt",
            &format!("/org/libvirt/QEMU/domain/_{uuid}"),
            "org.libvirt.Domain",
            method,
            "su",
            xml,
            "1",
        ])
        .output()
        .expect("busctl (Debian package systemd)")
}

#[test]
fn linux_sees_virtio_disk_and_nic_come_and_go_with_virsh() {
    let Some(g) = guest("linux_sees_virtio_disk_and_nic_come_and_go_with_virsh") else {
        return;
    };
    let d = Daemon::start();
    let name = "linux-hotplug";
    let data = pattern(512 << 10, 0x5eed);
    let img = d.dir.path().join("hot.img");
    std::fs::write(&img, &data).unwrap();
    let console = d.dir.path().join("console.log");
    // Linux takes native hot-plug of the root ports because the DSDT's `_OSC`
    // grants it (no `pcie_ports=native` here).
    let cmdline = format!("{} oxvirt_cmd64={}", g.cmdline, base64(SCRIPT.as_bytes()));
    let ports: String = (1..=3)
        .map(|i| {
            format!(
                "<controller type='pci' index='{i}' model='pcie-root-port'>
      <model name='pcie-root-port'/><target chassis='{i}' port='{:#x}'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='{:#x}'{}/>
    </controller>",
                0x10 + i - 1,
                i - 1,
                if i == 1 { " multifunction='on'" } else { "" }
            )
        })
        .collect();
    let xml = domain_xml(
        name,
        &g.kernel,
        &cmdline,
        160,
        1,
        "destroy",
        &serial_xml(&format!("file:{}", console.display())),
    )
    .replace("machine='pc'", "machine='q35'")
    .replace(
        "</kernel>",
        &format!("</kernel>\n    <initrd>{}</initrd>", g.initrd.display()),
    )
    .replace("<devices>", &format!("<devices>\n    {ports}"));
    let f = d.xml_file(name, &xml);
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    let mut ev = Command::new("virsh")
        .args(["-c", &d.uri(), "event", "--all", "--loop"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("virsh event");
    let mut ev_out = ev.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = ev_out.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let mut events = String::new();
    d.virsh_ok(&["start", name]);
    wait_line(&d, &console, "OXCHECK waiting", BOOT);

    // 1. A virtio disk, hot-added.
    let out = d.virsh_ok(&[
        "attach-disk",
        name,
        img.to_str().unwrap(),
        "vda",
        "--targetbus",
        "virtio",
        "--live",
    ]);
    assert!(out.contains("Disk attached successfully"), "{out}");
    let live = d.virsh_ok(&["dumpxml", name]);
    assert!(
        live.contains("<alias name='virtio-disk0'/>") && live.contains("bus='0x01' slot='0x00'"),
        "the disk goes behind the first free root port: {live}"
    );
    wait_event(
        &d,
        &rx,
        &mut events,
        &format!("event 'device-added' for domain '{name}': virtio-disk0"),
    );
    let h = wait_line(&d, &console, "OXCHECK disk sha256=", BOOT);
    assert_eq!(
        h,
        sha256_hex(&data),
        "the guest read the hot-added disk differently"
    );

    // 2. A virtio NIC on a tap, hot-added.
    let nic = d.xml_file(
        "nic",
        &format!(
            "<interface type='ethernet'><mac address='{MAC}'/><target dev='oxhp0'/>\
             <model type='virtio'/></interface>"
        ),
    );
    let out = d.virsh_ok(&["attach-device", name, nic.to_str().unwrap(), "--live"]);
    assert!(out.contains("Device attached successfully"), "{out}");
    let line = wait_line(&d, &console, "OXCHECK nic ", BOOT);
    assert_eq!(line, format!("mac={MAC} carrier=1"), "the guest's eth0");
    wait_event(
        &d,
        &rx,
        &mut events,
        &format!("event 'device-added' for domain '{name}': net0"),
    );

    // 3. The guest refuses the NIC's removal: libvirt answers success after its
    // wait, and the interface stays.
    wait_line(&d, &console, "OXCHECK refusing", BOOT);
    let out = d.virsh_ok(&["detach-interface", name, "ethernet", "--mac", MAC, "--live"]);
    assert!(out.contains("Interface detached successfully"), "{out}");
    std::thread::sleep(Duration::from_secs(8));
    let live = d.virsh_ok(&["dumpxml", name]);
    assert!(
        live.contains(MAC),
        "the interface the guest did not release must stay: {live}"
    );

    // D-Bus (libvirt-dbus's AttachDevice/DetachDevice, flags AFFECT_LIVE): a
    // second disk behind the last free port, then away again with the guest's
    // cooperation.
    let uuid = d.virsh_ok(&["domuuid", name]).trim().replace('-', "_");
    let second = d.dir.path().join("second.img");
    std::fs::write(&second, pattern(64 << 10, 7)).unwrap();
    let vdb = format!(
        "<disk type='file' device='disk'><source file='{}'/><target dev='vdb' bus='virtio'/></disk>",
        second.display()
    );
    for method in ["AttachDevice", "DetachDevice"] {
        domain_call(&d, &uuid, method, &vdb);
        let what = if method == "AttachDevice" {
            "added"
        } else {
            "removed"
        };
        wait_event(
            &d,
            &rx,
            &mut events,
            &format!("event 'device-{what}' for domain '{name}': virtio-disk1"),
        );
    }

    // 4. The disk's removal, with the guest's cooperation.
    let out = d.virsh_ok(&["detach-disk", name, "vda", "--live"]);
    assert!(out.contains("Disk detached successfully"), "{out}");
    wait_event(
        &d,
        &rx,
        &mut events,
        &format!("event 'device-removed' for domain '{name}': virtio-disk0"),
    );
    let live = d.virsh_ok(&["dumpxml", name]);
    assert!(
        !live.contains("virtio-disk0") && live.contains(MAC),
        "{live}"
    );
    let end = wait_line(&d, &console, "OXCHECK end ", BOOT);
    assert_eq!(end, "disk=absent nic=present");
    assert!(
        !events.contains("device-removed' for domain 'linux-hotplug': net0"),
        "{events}"
    );
    let _ = ev.kill();
    let _ = ev.wait();
    d.virsh_ok(&["destroy", name]);
}
