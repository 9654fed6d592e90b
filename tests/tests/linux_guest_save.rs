//! Linux (the patched test guest, direct kernel boot, a virtio-blk disk) saved and
//! restored with Debian's virsh against oxvirtd:
//!
//! 1. the guest reads its disk with O_DIRECT once a second (every read a real
//!    virtio-blk request) and prints a counter with the data's hash;
//! 2. `virsh managedsave`, then `virsh start`: the counter goes on where it was
//!    (no new boot: the kernel's banner does not show again), and the disk still
//!    answers with the right data — the virtqueues went on from their used rings;
//! 3. `virsh save FILE` and `virsh restore FILE`: the same once more.
//!
//! Each hash is compared with the host's.

mod rpc_common;
#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use rpc_common::Daemon;
use support::{guest, pattern, sha256_hex, BOOT};

/// The guest's side (run by /init after its ready line; `oxvirt_cmd64`).
const SCRIPT: &str = r#"i=0
while [ $i -lt 900 ]; do
  i=$((i+1))
  h=$(dd if=/dev/vda bs=64k count=4 iflag=direct 2>/dev/null | sha256sum | cut -c1-16)
  echo "OXCHECK n=$i h=$h"
  sleep 1
done
"#;

/// The counter lines on the console so far: (n, hash).
fn counts(console: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(console)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("OXCHECK n=")?;
            let (n, h) = rest.split_once(" h=")?;
            Some((n.parse().ok()?, h.trim().to_string()))
        })
        .filter(|(_, h)| h.len() == 16)
        .collect()
}

/// Waits for at least `n` counter lines; returns them.
fn wait_counts(d: &Daemon, console: &Path, n: usize) -> Vec<(u64, String)> {
    let deadline = Instant::now() + BOOT;
    loop {
        let c = counts(console);
        if c.len() >= n {
            return c;
        }
        if Instant::now() > deadline {
            d.fail(&format!(
                "fewer than {n} counter lines; console:\n{}",
                std::fs::read_to_string(console).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn linux_goes_on_after_managedsave_and_restore() {
    let Some(g) = guest("linux_goes_on_after_managedsave_and_restore") else {
        return;
    };
    let d = Daemon::start();
    let name = "linux-save";
    let data = pattern(256 << 10, 0x5a);
    let want = sha256_hex(&data)[..16].to_string();
    let disk = d.dir.path().join("disk.raw");
    std::fs::write(&disk, &data).unwrap();
    let console = d.dir.path().join("console.log");
    let xml = g.domain_xml(name, SCRIPT, 128, &console).replace(
        "<devices>",
        &format!(
            "<devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{}'/><target dev='vda' bus='virtio'/></disk>",
            disk.display()
        ),
    );
    let f = d.xml_file(name, &xml);
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    let c = wait_counts(&d, &console, 3);
    assert!(
        c.iter().all(|(_, h)| *h == want),
        "the guest read {c:?}, want {want}"
    );

    // 1. managedsave, start: the counter goes on, the disk still answers.
    d.virsh_ok(&["managedsave", name]);
    let last = counts(&console).last().unwrap().0;
    let st = d.virsh_ok(&["domstate", name, "--reason"]);
    assert_eq!(st.trim(), "shut off (saved)", "{st}");
    d.virsh_ok(&["start", name]);
    let c = wait_counts(&d, &console, 3);
    let text = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(
        !text.contains("Linux version"),
        "the guest booted again after the restore:\n{text}"
    );
    assert!(
        c[0].0 > last && c[0].0 <= last + 2,
        "the counter went on from {} after {last}:\n{text}",
        c[0].0
    );
    assert!(
        c.iter().all(|(_, h)| *h == want),
        "after the restore: {c:?}, want {want}"
    );

    // 2. save FILE / restore FILE.
    let file = d.dir.path().join("linux.save");
    d.virsh_ok(&["save", name, file.to_str().unwrap()]);
    let last = counts(&console).last().unwrap().0;
    d.virsh_ok(&["restore", file.to_str().unwrap()]);
    let c = wait_counts(&d, &console, 3);
    assert!(
        c[0].0 > last && c[0].0 <= last + 2,
        "the counter went on from {} after {last}",
        c[0].0
    );
    assert!(
        c.iter().all(|(_, h)| *h == want),
        "after restore: {c:?}, want {want}"
    );
    d.virsh_ok(&["destroy", name]);
}
