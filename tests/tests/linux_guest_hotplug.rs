//! Live device hot-plug with Debian's virsh against oxvirtd, judged by Linux (the
//! patched test guest). Two machines share the harness ([`Run`]):
//!
//! **Q35** with spare `pcie-root-port`s (PCIe native hot-plug; the guest's `pciehp`
//! drives the ports' slots):
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
//!
//! **i440FX** (`pc`: ACPI PCI hot-plug of the root bus; the guest's `acpiphp` takes
//! the GPE, the slot notifications and runs `_EJ0`): a virtio disk and a virtio NIC
//! attached live go in free slots of bus 0 (the slot the guest finds each in is the
//! one the live XML names; the disk's data hashes as on the host, the NIC's link is
//! up), then `detach-disk` and `detach-interface --live`, the guest cooperating:
//! device-removed for each, both leave the live XML, and the guest's
//! `/sys/bus/pci/devices` loses both functions.

mod rpc_common;
#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rpc_common::Daemon;
use support::{guest, pattern, sha256_hex, LinuxGuest, BOOT};

const MAC: &str = "52:54:00:4f:58:01";

/// The guest's side (run by /init after its ready line; `oxvirt_cmd64`). Every
/// wait is bounded.
const SCRIPT: &str = r#"w() { i=0; while ! eval "$1" && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); done; }
echo "OXCHECK waiting"
w '[ -b /dev/vda ]'
echo "OXCHECK disk sha256=$(sha256sum </dev/vda | cut -d' ' -f1) mq=$(ls /sys/block/vda/mq | wc -l)"
w '[ -e /sys/class/net/eth0 ]'
ip link set eth0 up
w '[ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ]'
echo "OXCHECK nic mac=$(cat /sys/class/net/eth0/address) carrier=$(cat /sys/class/net/eth0/carrier) mq=$(cut -c23 /sys/class/net/eth0/device/features)"
port=$(basename "$(dirname "$(dirname "$(readlink -f /sys/class/net/eth0/device)")")")
echo "$port" >/sys/bus/pci/drivers/pcieport/unbind && echo "OXCHECK refusing port=$port"
w '[ ! -b /dev/vda ]'
nic=absent; [ -e /sys/class/net/eth0 ] && nic=present
disk=absent; [ -b /dev/vda ] && disk=present
echo "OXCHECK end disk=$disk nic=$nic"
"#;

/// Waits until the console file holds `needle`; returns the rest of its line.
fn wait_line(d: &Daemon, console: &Path, needle: &str, within: Duration) -> String {
    support::console_line(console, needle, within).unwrap_or_else(|e| d.fail(&e))
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

/// A running domain of the Linux guest under a fresh oxvirtd, `virsh event`
/// listening: what both machines' cases share.
struct Run {
    d: Daemon,
    name: &'static str,
    console: PathBuf,
    rx: Receiver<String>,
    /// What `virsh event` printed so far.
    events: String,
    ev: Child,
}

impl Run {
    /// Defines and starts `name` running `script` in the guest (after its ready
    /// line), its XML the test guest's `pc` domain passed through `edit`; waits
    /// for the script's first line.
    fn start(
        g: &LinuxGuest,
        name: &'static str,
        script: &str,
        edit: impl Fn(String) -> String,
    ) -> Run {
        let d = Daemon::start();
        let console = d.dir.path().join("console.log");
        let xml = g.domain_xml(name, script, 160, &console);
        let f = d.xml_file(name, &edit(xml));
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
        d.virsh_ok(&["start", name]);
        wait_line(&d, &console, "OXCHECK waiting", BOOT);
        Run {
            d,
            name,
            console,
            rx,
            events: String::new(),
            ev,
        }
    }

    /// Waits for the guest's `needle` line; the rest of it.
    fn line(&self, needle: &str) -> String {
        wait_line(&self.d, &self.console, needle, BOOT)
    }

    /// Waits for libvirt's `device-added`/`device-removed` event of `alias`.
    fn event(&mut self, what: &str, alias: &str) {
        let needle = format!("event 'device-{what}' for domain '{}': {alias}", self.name);
        wait_event(&self.d, &self.rx, &mut self.events, &needle);
    }

    /// `virsh attach-disk --live` of `img` as `vda` or, with `queues`, `attach-device
    /// --live` of the same disk with `<driver queues='N'>`: the event, the guest's hash of
    /// the disk checked against `data`, and its request queue count (`/sys/block/vda/mq`:
    /// N, else one per vCPU). Returns the live XML.
    fn attach_disk(&mut self, img: &Path, data: &[u8], queues: Option<u32>) -> String {
        let out = match queues {
            None => self.d.virsh_ok(&[
                "attach-disk",
                self.name,
                img.to_str().unwrap(),
                "vda",
                "--targetbus",
                "virtio",
                "--live",
            ]),
            Some(n) => {
                let disk = self.d.xml_file(
                    "disk",
                    &format!(
                        "<disk type='file' device='disk'>\
                         <driver name='qemu' type='raw' queues='{n}'/>\
                         <source file='{}'/><target dev='vda' bus='virtio'/></disk>",
                        img.display()
                    ),
                );
                let out = self.d.virsh_ok(&[
                    "attach-device",
                    self.name,
                    disk.to_str().unwrap(),
                    "--live",
                ]);
                out.replace("Device attached", "Disk attached")
            }
        };
        assert!(out.contains("Disk attached successfully"), "{out}");
        let live = self.d.virsh_ok(&["dumpxml", self.name]);
        self.event("added", "virtio-disk0");
        let h = self.line("OXCHECK disk sha256=");
        let mut words = h.split_whitespace();
        assert_eq!(
            words.next().unwrap_or_default(),
            sha256_hex(data),
            "the guest read the hot-added disk differently"
        );
        let mq = words
            .find_map(|w| w.strip_prefix("mq="))
            .unwrap_or_default();
        assert_eq!(
            mq,
            queues.unwrap_or(1).to_string(),
            "request queues the guest's virtio_blk found on the hot-added disk"
        );
        live
    }

    /// `virsh attach-device --live` of a virtio NIC on a tap with two queue pairs:
    /// the guest's `eth0` comes up with the MAC given and multiqueue offered (the
    /// daemon handed over both queues of a multiqueue tap), the event follows.
    fn attach_nic(&mut self) {
        let nic = self.d.xml_file(
            "nic",
            &format!(
                "<interface type='ethernet'><mac address='{MAC}'/><target dev='oxhp0'/>\
                 <model type='virtio'/><driver queues='2'/></interface>"
            ),
        );
        let out = self
            .d
            .virsh_ok(&["attach-device", self.name, nic.to_str().unwrap(), "--live"]);
        assert!(out.contains("Device attached successfully"), "{out}");
        let line = self.line("OXCHECK nic ");
        assert_eq!(
            line,
            format!("mac={MAC} carrier=1 mq=1"),
            "the guest's eth0"
        );
        let flags = std::fs::read_to_string("/sys/class/net/oxhp0/tun_flags").unwrap_or_default();
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(0);
        assert_ne!(
            flags & 0x100,
            0,
            "oxhp0 is not a multiqueue tap (tun_flags {flags:#x})"
        );
        self.event("added", "net0");
    }

    fn stop(mut self) {
        let _ = self.ev.kill();
        let _ = self.ev.wait();
        self.d.virsh_ok(&["destroy", self.name]);
    }
}

/// The PCI address (`0000:BB:SS.F`, as Linux names it) the live XML gives the
/// device whose alias is `alias`.
fn pci_address(live: &str, alias: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(live).ok()?;
    let dev = doc.descendants().find(|n| {
        n.children()
            .any(|c| c.has_tag_name("alias") && c.attribute("name") == Some(alias))
    })?;
    let a = dev
        .children()
        .find(|c| c.has_tag_name("address") && c.attribute("type") == Some("pci"))?;
    let num = |k: &str| u32::from_str_radix(a.attribute(k)?.trim_start_matches("0x"), 16).ok();
    Some(format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        num("domain")?,
        num("bus")?,
        num("slot")?,
        num("function")?
    ))
}

#[test]
fn linux_sees_virtio_disk_and_nic_come_and_go_with_virsh() {
    let Some(g) = guest("linux_sees_virtio_disk_and_nic_come_and_go_with_virsh") else {
        return;
    };
    let name = "linux-hotplug";
    let data = pattern(512 << 10, 0x5eed);
    // Linux takes native hot-plug of the root ports because the DSDT's `_OSC`
    // grants it (no `pcie_ports=native` here).
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
    let mut run = Run::start(g, name, SCRIPT, |xml| {
        // Two vCPUs: Linux's virtio_blk uses at most one request queue per CPU, so
        // the hot-added disk's two queues show only with two.
        xml.replace("machine='pc'", "machine='q35'")
            .replace(
                "<vcpu placement='static'>1</vcpu>",
                "<vcpu placement='static'>2</vcpu>",
            )
            .replace("<devices>", &format!("<devices>\n    {ports}"))
    });
    let img = run.d.dir.path().join("hot.img");
    std::fs::write(&img, &data).unwrap();

    // 1. A virtio disk, hot-added.
    let live = run.attach_disk(&img, &data, Some(2));
    assert!(
        live.contains("<alias name='virtio-disk0'/>") && live.contains("bus='0x01' slot='0x00'"),
        "the disk goes behind the first free root port: {live}"
    );

    // 2. A virtio NIC on a tap, hot-added.
    run.attach_nic();
    let Run {
        ref d,
        ref console,
        ref rx,
        ref mut events,
        ..
    } = run;

    // 3. The guest refuses the NIC's removal: libvirt answers success after its
    // wait, and the interface stays.
    wait_line(d, console, "OXCHECK refusing", BOOT);
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
        domain_call(d, &uuid, method, &vdb);
        let what = if method == "AttachDevice" {
            "added"
        } else {
            "removed"
        };
        wait_event(
            d,
            rx,
            events,
            &format!("event 'device-{what}' for domain '{name}': virtio-disk1"),
        );
    }

    // 4. The disk's removal, with the guest's cooperation.
    let out = d.virsh_ok(&["detach-disk", name, "vda", "--live"]);
    assert!(out.contains("Disk detached successfully"), "{out}");
    wait_event(
        d,
        rx,
        events,
        &format!("event 'device-removed' for domain '{name}': virtio-disk0"),
    );
    let live = d.virsh_ok(&["dumpxml", name]);
    assert!(
        !live.contains("virtio-disk0") && live.contains(MAC),
        "{live}"
    );
    let end = wait_line(d, console, "OXCHECK end ", BOOT);
    assert_eq!(end, "disk=absent nic=present");
    assert!(
        !events.contains("device-removed' for domain 'linux-hotplug': net0"),
        "{events}"
    );
    run.stop();
}

/// The guest's side of the `pc` case: it reports where each device is and when
/// its function leaves `/sys/bus/pci`.
const PC_SCRIPT: &str = r#"w() { i=0; while ! eval "$1" && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); done; }
at() { basename "$(dirname "$(readlink -f "$1")")"; }
echo "OXCHECK waiting"
w '[ -b /dev/vda ]'
disk=$(at /sys/block/vda/device)
echo "OXCHECK disk sha256=$(sha256sum </dev/vda | cut -d' ' -f1) mq=$(ls /sys/block/vda/mq | wc -l) pci=$disk"
w '[ -e /sys/class/net/eth0 ]'
ip link set eth0 up
w '[ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" = 1 ]'
nic=$(at /sys/class/net/eth0/device)
echo "OXCHECK nic mac=$(cat /sys/class/net/eth0/address) carrier=$(cat /sys/class/net/eth0/carrier) mq=$(cut -c23 /sys/class/net/eth0/device/features)"
echo "OXCHECK nicpci=$nic"
w "[ ! -e /sys/bus/pci/devices/$disk ]"
b=absent; [ -b /dev/vda ] && b=present
echo "OXCHECK disk gone vda=$b"
w "[ ! -e /sys/bus/pci/devices/$nic ]"
n=absent; [ -e /sys/class/net/eth0 ] && n=present
echo "OXCHECK end eth0=$n pci=$(ls /sys/bus/pci/devices | tr '\n' ' ')"
"#;

#[test]
fn linux_sees_virtio_disk_and_nic_come_and_go_on_i440fx() {
    let Some(g) = guest("linux_sees_virtio_disk_and_nic_come_and_go_on_i440fx") else {
        return;
    };
    let data = pattern(256 << 10, 0xacb1);
    let mut run = Run::start(g, "linux-hotplug-pc", PC_SCRIPT, |xml| xml);
    let img = run.d.dir.path().join("hot.img");
    std::fs::write(&img, &data).unwrap();

    // A virtio disk in a free slot of bus 0: the guest finds it where the live
    // XML says.
    let live = run.attach_disk(&img, &data, None);
    let want = pci_address(&live, "virtio-disk0")
        .unwrap_or_else(|| run.d.fail(&format!("no PCI address for the disk: {live}")));
    assert!(want.starts_with("0000:00:"), "on the root bus: {live}");
    let seen = run.line("OXCHECK disk sha256=");
    assert!(
        seen.ends_with(&format!("pci={want}")),
        "{seen} (live XML: {want})"
    );

    // A virtio NIC in the next one.
    run.attach_nic();
    let live = run.d.virsh_ok(&["dumpxml", run.name]);
    let nic = pci_address(&live, "net0")
        .unwrap_or_else(|| run.d.fail(&format!("no PCI address for the NIC: {live}")));
    assert_ne!(nic, want);
    assert_eq!(run.line("OXCHECK nicpci="), nic);

    // Both go, the guest ejecting each slot.
    let out = run.d.virsh_ok(&["detach-disk", run.name, "vda", "--live"]);
    assert!(out.contains("Disk detached successfully"), "{out}");
    run.event("removed", "virtio-disk0");
    assert_eq!(run.line("OXCHECK disk gone "), "vda=absent");
    let out = run.d.virsh_ok(&[
        "detach-interface",
        run.name,
        "ethernet",
        "--mac",
        MAC,
        "--live",
    ]);
    assert!(out.contains("Interface detached successfully"), "{out}");
    run.event("removed", "net0");
    let end = run.line("OXCHECK end ");
    assert!(end.starts_with("eth0=absent "), "{end}");
    assert!(
        !end.contains(&want) && !end.contains(&nic),
        "the guest still lists a removed function: {end}"
    );
    let live = run.d.virsh_ok(&["dumpxml", run.name]);
    assert!(
        !live.contains("virtio-disk0") && !live.contains(MAC),
        "both leave the live XML: {live}"
    );
    run.stop();
}

/// The guest's side of the SCSI case: each disk's hash and SCSI address
/// (host:channel:target:lun) as it appears, then when each goes.
const SCSI_SCRIPT: &str = r#"w() { i=0; while ! eval "$1" && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); done; }
hctl() { basename "$(readlink -f /sys/block/$1/device)"; }
echo "OXCHECK waiting"
w '[ -b /dev/sda ]'
echo "OXCHECK sda sha256=$(sha256sum </dev/sda | cut -d' ' -f1) hctl=$(hctl sda)"
w '[ -b /dev/sdb ]'
echo "OXCHECK sdb sha256=$(sha256sum </dev/sdb | cut -d' ' -f1) hctl=$(hctl sdb)"
w '[ ! -b /dev/sda ]'
b=absent; [ -b /dev/sdb ] && b=present
echo "OXCHECK sda gone sdb=$b"
w '[ ! -b /dev/sdb ]'
echo "OXCHECK end scsi_disks=$(ls /sys/class/scsi_disk | wc -l)"
"#;

/// SCSI LUNs on a virtio-scsi controller, hot-added and removed live: the guest's
/// `virtio_scsi` hears of each on the controller's event queue (rescan / removed)
/// and adds or removes the disk itself; no guest cooperation is needed to remove.
///
/// 1. `virsh attach-disk --targetbus scsi --live` of `sda` (no address: libvirt's
///    from the name, unit 0): device-added, the live XML's drive address and alias,
///    the guest's `/dev/sda` hashes as the host file at SCSI address x:0:0:0;
/// 2. `virsh attach-device --live` of `sdb` at unit 3 (`scsi_add_device` of LUN 3);
///    a third disk at the same address is refused with libvirt's error;
/// 3. `virsh domblkstat` counts what the guest read from the hot-added disk;
/// 4. `virsh detach-disk --live` of each: device-removed, gone from the live XML
///    when the call returns, and from the guest (`sdb` staying while `sda` goes);
/// 5. `--config` attach of a SCSI disk to the running domain changes only the
///    persistent definition.
#[test]
fn linux_sees_scsi_luns_come_and_go_with_virsh() {
    let Some(g) = guest("linux_sees_scsi_luns_come_and_go_with_virsh") else {
        return;
    };
    let name = "linux-hotplug-scsi";
    let mut run = Run::start(g, name, SCSI_SCRIPT, |xml| {
        xml.replace(
            "<devices>",
            "<devices>\n    <controller type='scsi' index='0' model='virtio-scsi'/>",
        )
    });
    let dir = run.d.dir.path().to_path_buf();
    let (a, b) = (pattern(256 << 10, 0x5c5a), pattern(128 << 10, 0x5c5b));
    let (img_a, img_b) = (dir.join("lun0.img"), dir.join("lun3.img"));
    std::fs::write(&img_a, &a).unwrap();
    std::fs::write(&img_b, &b).unwrap();

    // 1. sda, its address from its name.
    let out = run.d.virsh_ok(&[
        "attach-disk",
        name,
        img_a.to_str().unwrap(),
        "sda",
        "--targetbus",
        "scsi",
        "--live",
    ]);
    assert!(out.contains("Disk attached successfully"), "{out}");
    let live = run.d.virsh_ok(&["dumpxml", name]);
    assert!(
        live.contains("<alias name='scsi0-0-0-0'/>")
            && live.contains("<address type='drive' controller='0' bus='0' target='0' unit='0'/>"),
        "sda on unit 0 of controller 0: {live}"
    );
    run.event("added", "scsi0-0-0-0");
    let seen = run.line("OXCHECK sda sha256=");
    assert_eq!(
        seen.split_whitespace().next(),
        Some(sha256_hex(&a).as_str()),
        "the guest read the hot-added LUN differently: {seen}"
    );
    assert!(seen.ends_with(":0:0:0"), "sda is LUN 0 of target 0: {seen}");

    // 2. sdb at unit 3, and a third disk where it is.
    let disk_xml = |img: &Path, dev: &str| {
        format!(
            "<disk type='file' device='disk'><driver name='qemu' type='raw'/>\
             <source file='{}'/><target dev='{dev}' bus='scsi'/>\
             <address type='drive' controller='0' bus='0' target='0' unit='3'/></disk>",
            img.display()
        )
    };
    let f = run.d.xml_file("sdb", &disk_xml(&img_b, "sdb"));
    let out = run
        .d
        .virsh_ok(&["attach-device", name, f.to_str().unwrap(), "--live"]);
    assert!(out.contains("Device attached successfully"), "{out}");
    run.event("added", "scsi0-0-0-3");
    let seen = run.line("OXCHECK sdb sha256=");
    assert_eq!(
        seen.split_whitespace().next(),
        Some(sha256_hex(&b).as_str()),
        "{seen}"
    );
    assert!(seen.ends_with(":0:0:3"), "sdb is LUN 3 of target 0: {seen}");
    let f = run.d.xml_file("sdc", &disk_xml(&img_b, "sdc"));
    let r = run
        .d
        .virsh(&["attach-device", name, f.to_str().unwrap(), "--live"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("Found duplicate drive address for disk with target name 'sdb'"),
        "{} {}",
        r.stdout,
        r.stderr
    );

    // 3. What the guest read of sda is counted.
    let stats = run.d.virsh_ok(&["domblkstat", name, "sda"]);
    let rd: u64 = stats
        .lines()
        .find_map(|l| match l.split_whitespace().collect::<Vec<_>>()[..] {
            [_, "rd_bytes", n] => n.parse().ok(),
            _ => None,
        })
        .unwrap_or_else(|| run.d.fail(&format!("no rd_bytes: {stats}")));
    assert!(rd >= a.len() as u64, "rd_bytes {rd} < {}: {stats}", a.len());

    // 4. Both go, at once and without the guest's help.
    let out = run.d.virsh_ok(&["detach-disk", name, "sda", "--live"]);
    assert!(out.contains("Disk detached successfully"), "{out}");
    let live = run.d.virsh_ok(&["dumpxml", name]);
    assert!(
        !live.contains("scsi0-0-0-0") && live.contains("scsi0-0-0-3"),
        "sda leaves the live XML when the call returns: {live}"
    );
    run.event("removed", "scsi0-0-0-0");
    assert_eq!(run.line("OXCHECK sda gone "), "sdb=present");
    let out = run.d.virsh_ok(&["detach-disk", name, "sdb", "--live"]);
    assert!(out.contains("Disk detached successfully"), "{out}");
    run.event("removed", "scsi0-0-0-3");
    assert_eq!(run.line("OXCHECK end "), "scsi_disks=0");

    // 5. --config: the persistent definition only.
    let out = run.d.virsh_ok(&[
        "attach-disk",
        name,
        img_b.to_str().unwrap(),
        "sdc",
        "--targetbus",
        "scsi",
        "--config",
    ]);
    assert!(out.contains("Disk attached successfully"), "{out}");
    let inactive = run.d.virsh_ok(&["dumpxml", "--inactive", name]);
    assert!(
        inactive.contains("<target dev='sdc' bus='scsi'/>") && inactive.contains("unit='2'/>"),
        "{inactive}"
    );
    assert!(!run.d.virsh_ok(&["dumpxml", name]).contains("sdc"));
    run.stop();
}
