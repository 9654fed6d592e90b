//! Linux (the patched test guest, direct kernel boot) as oxvirtd's domain with a
//! virtio-scsi CD-ROM, driven with Debian's `virsh change-media` while the guest
//! watches the disc with its own `sr` driver:
//!
//! 1. the guest hashes `/dev/sr0` (disc A), then keeps the device open, which makes
//!    Linux lock the door (PREVENT ALLOW MEDIUM REMOVAL; QMP `query-block` says
//!    `locked`);
//! 2. `virsh change-media --update` fails as libvirt's does against a locked drive
//!    (the guest gets an eject request it ignores; "timed out waiting to open
//!    tray"); with `--force` the tray opens anyway and disc B goes in;
//! 3. the guest sees the media change (GET EVENT STATUS NOTIFICATION, then NOT
//!    READY / UNIT ATTENTION) and hashes disc B;
//! 4. the guest closes the device with `/proc/sys/dev/cdrom/autoeject` on: Linux
//!    unlocks and ejects (START STOP UNIT), and the tray-change event ("opened")
//!    and `tray='open'` in the live XML follow;
//! 5. `virsh change-media --update` into the open tray (libvirt skips the open step)
//!    gives the guest disc A again;
//! 6. the same domain's IDE CD-ROM (`hdc` on the PIIX3 IDE function, Linux's
//!    `ata_piix` and `sr`): the guest hashes disc A in it, `virsh change-media hdc
//!    --update` puts disc B in, and the guest reads disc B.
//!
//! Each checksum is compared with the host's.

mod rpc_common;
#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rpc_common::Daemon;
use support::{guest, pattern, sha256_hex, BOOT};

/// The guest's side (run by /init after its ready line; `oxvirt_cmd64`). Every wait
/// is bounded; an empty hash is "no disc readable now".
const SCRIPT: &str = r#"cd_on() { for d in /sys/block/sr*; do case $(readlink -f "$d") in *"$1"*) echo "/dev/${d##*/}"; return;; esac; done; }
scsi=$(cd_on /virtio); ide=$(cd_on /ata)
echo "OXCHECK drives scsi=$scsi ide=$ide"
h() { sha256sum <"${1:-$scsi}" 2>/dev/null | cut -d' ' -f1; }
echo 0 >/proc/sys/dev/cdrom/autoclose
first=$(h)
echo "OXCHECK disc n=1 sha256=$first"
exec 3<"$scsi"
echo "OXCHECK locked"
cur=$first; i=0
while { [ -z "$cur" ] || [ "$cur" = "$first" ]; } && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); cur=$(h); done
echo "OXCHECK disc n=2 sha256=$cur"
second=$cur
echo 1 >/proc/sys/dev/cdrom/autoeject
exec 3<&-
echo 0 >/proc/sys/dev/cdrom/autoeject
echo "OXCHECK ejected"
cur=$(h); i=0
while { [ -z "$cur" ] || [ "$cur" = "$second" ]; } && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); cur=$(h); done
echo "OXCHECK disc n=3 sha256=$cur"
ifirst=$(h "$ide")
echo "OXCHECK ide n=1 sha256=$ifirst"
cur=$ifirst; i=0
while { [ -z "$cur" ] || [ "$cur" = "$ifirst" ]; } && [ $i -lt 900 ]; do sleep 1; i=$((i+1)); cur=$(h "$ide"); done
echo "OXCHECK ide n=2 sha256=$cur"
"#;

/// Waits until the console file holds `needle`; returns the rest of its line.
fn wait_line(d: &Daemon, console: &Path, needle: &str, within: Duration) -> String {
    support::console_line(console, needle, within).unwrap_or_else(|e| d.fail(&e))
}

#[test]
fn linux_sees_new_discs_after_virsh_change_media() {
    let Some(g) = guest("linux_sees_new_discs_after_virsh_change_media") else {
        return;
    };
    let d = Daemon::start();
    let name = "linux-media";
    let (a, b) = (pattern(256 << 10, 0xa1), pattern(384 << 10, 0xb2));
    let (a_iso, b_iso) = (d.dir.path().join("a.iso"), d.dir.path().join("b.iso"));
    std::fs::write(&a_iso, &a).unwrap();
    std::fs::write(&b_iso, &b).unwrap();
    let console = d.dir.path().join("console.log");
    let xml = g.domain_xml(name, SCRIPT, 128, &console).replace(
        "<devices>",
        &format!(
            "<devices>
    <controller type='scsi' index='0' model='virtio-scsi'/>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <source file='{a}'/><target dev='sda' bus='scsi'/><readonly/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <source file='{a}'/><target dev='hdc' bus='ide'/><readonly/></disk>",
            a = a_iso.display()
        ),
    );
    let f = d.xml_file(name, &xml);
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    let mut ev = Command::new("virsh")
        .args(["-c", &d.uri(), "event", "--event", "tray-change", "--loop"])
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

    // 1. Disc A, then the guest holds the device open: the door is locked.
    let h1 = wait_line(&d, &console, "OXCHECK disc n=1 sha256=", BOOT);
    assert_eq!(h1, sha256_hex(&a), "the guest read disc A differently");
    wait_line(&d, &console, "OXCHECK locked", BOOT);
    // The VMM's own view (a second QMP client beside the daemon): the door is locked.
    let sock = d.dir.path().join("run/domains").join(name).join("qmp.sock");
    let out = Command::new("socat")
        .args(["-t", "5", "-", &format!("UNIX-CONNECT:{}", sock.display())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(
                b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-block\"}\n",
            )?;
            c.wait_with_output()
        })
        .expect("socat (Debian package socat)");
    let text = String::from_utf8_lossy(&out.stdout);
    let blocks: serde_json::Value = text
        .lines()
        .find(|l| l.contains("\"qdev\""))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| d.fail(&format!("no query-block reply: {text}")));
    let cd = &blocks["return"][0];
    assert_eq!(cd["locked"], true, "Linux holds /dev/sr0 open: {cd}");
    assert_eq!(cd["tray_open"], false, "{cd}");

    // 2. Without --force libvirt waits for the guest to open the tray, in vain.
    let r = d.virsh(&[
        "change-media",
        name,
        "sda",
        b_iso.to_str().unwrap(),
        "--update",
    ]);
    assert!(
        !r.ok
            && r.stderr
                .contains("error: operation failed: timed out waiting to open tray of 'sda'"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    let live = d.virsh_ok(&["dumpxml", name]);
    assert!(
        live.contains(&format!("<source file='{}'", a_iso.display())),
        "{live}"
    );
    let out = d.virsh_ok(&[
        "change-media",
        name,
        "sda",
        b_iso.to_str().unwrap(),
        "--update",
        "--force",
    ]);
    assert!(out.contains("Successfully updated media."), "{out}");

    // 3. The guest finds disc B.
    let h2 = wait_line(&d, &console, "OXCHECK disc n=2 sha256=", BOOT);
    assert_eq!(
        h2,
        sha256_hex(&b),
        "the guest did not read disc B after the change"
    );

    // 4. The guest's own eject: the event and the live XML.
    wait_line(&d, &console, "OXCHECK ejected", BOOT);
    let opened = format!("event 'tray-change' for domain '{name}' disk scsi0-0-0-0: opened");
    let deadline = Instant::now() + BOOT;
    let mut events = String::new();
    while events.matches(&opened).count() < 2 {
        if let Ok(c) = rx.recv_timeout(Duration::from_millis(200)) {
            events.push_str(&c);
        }
        if Instant::now() > deadline {
            d.fail(&format!(
                "no second 'opened' (the guest's eject); virsh event:\n{events}"
            ));
        }
    }
    let live = d.virsh_ok(&["dumpxml", name]);
    assert!(live.contains("tray='open'"), "{live}");

    // 5. A disc into the open tray.
    d.virsh_ok(&[
        "change-media",
        name,
        "sda",
        a_iso.to_str().unwrap(),
        "--update",
    ]);
    let h3 = wait_line(&d, &console, "OXCHECK disc n=3 sha256=", BOOT);
    assert_eq!(h3, sha256_hex(&a), "the guest did not read disc A again");

    // 6. The IDE CD-ROM (at 00:01.1 as libvirt places it; the direct-boot machine
    // gets the PIIX3's function 0 with it, so Linux scans the slot).
    let i1 = wait_line(&d, &console, "OXCHECK ide n=1 sha256=", BOOT);
    assert_eq!(
        i1,
        sha256_hex(&a),
        "the guest read disc A in hdc differently"
    );
    let out = d.virsh_ok(&[
        "change-media",
        name,
        "hdc",
        b_iso.to_str().unwrap(),
        "--update",
    ]);
    assert!(out.contains("Successfully updated media."), "{out}");
    let i2 = wait_line(&d, &console, "OXCHECK ide n=2 sha256=", BOOT);
    assert_eq!(
        i2,
        sha256_hex(&b),
        "the guest did not read disc B in hdc after the change"
    );
    let _ = ev.kill();
    let _ = ev.wait();
    // The guest powers off after its script.
    let deadline = Instant::now() + BOOT;
    while d.virsh_ok(&["domstate", name]).trim() != "shut off" {
        if Instant::now() > deadline {
            d.fail("the guest did not power off after its script");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
