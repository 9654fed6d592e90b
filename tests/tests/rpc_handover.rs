//! The daemon hands the VMM its files open (#20): a domain's qcow2 disk with its
//! backing file and a SATA CD-ROM's image go to the VMM as inherited descriptors
//! listed in the spec (`files`), which QMP `query-fdsets` shows as fd sets named by
//! their paths, and the VMM opens nothing of them by path: with the images' directory
//! renamed away, `virsh reset` (the VMM rebuilds the machine and opens every disk
//! again) still finds them, and the guest keeps running. Run as root (CI), the images
//! belong to `nobody`, mode 0600 in a 0700 directory, and the VMM keeps no CAP_DAC_*
//! in any thread: it could not open one of them by path, yet it runs, takes a
//! hot-plugged qcow2 disk (`virsh attach-disk`; the daemon sends its chain with QMP
//! `add-fd` before `blockdev-add`) and a new CD-ROM medium (`virsh change-media`).

mod rpc_common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oxvirt_tests::host::require_kvm;
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::{domain_xml, test_guests};
use rpc_common::{Daemon, STEP};

fn qemu_img(args: &[&str]) -> bool {
    match Command::new("qemu-img").args(args).output() {
        Ok(o) => {
            assert!(
                o.status.success(),
                "qemu-img {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            true
        }
        Err(_) => false,
    }
}

/// The files process `pid` holds open.
fn open_files(pid: i32) -> BTreeSet<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn images_go_to_the_vmm_open_and_a_reset_finds_them_with_their_paths_gone() {
    if !require_kvm("rpc_handover") {
        return;
    }
    let d = Daemon::start();
    let images = d.dir.path().join("handed-over");
    std::fs::create_dir(&images).unwrap();
    let (base, top, iso) = (
        images.join("base.qcow2"),
        images.join("top.qcow2"),
        images.join("cd.iso"),
    );
    let s = |p: &Path| p.to_str().unwrap().to_string();
    if !qemu_img(&["create", "-q", "-f", "qcow2", &s(&base), "4M"]) {
        eprintln!("SKIPPED rpc_handover: qemu-img not installed (Debian qemu-utils)");
        return;
    }
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        &s(&top),
    ]);
    std::fs::write(&iso, vec![0x5a; 16 * 2048]).unwrap();
    // Images only their owner may read, whom the VMM is not.
    let root = nix::unistd::geteuid().is_root();
    let (extra, new_iso) = (images.join("extra.qcow2"), images.join("new.iso"));
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        &s(&extra),
    ]);
    std::fs::write(&new_iso, vec![0xa5; 16 * 2048]).unwrap();
    if root {
        use std::os::unix::fs::PermissionsExt;
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        for p in [&base, &top, &iso, &extra, &new_iso, &images] {
            nix::unistd::chown(p.as_path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
            let mode = if p == &images { 0o700 } else { 0o600 };
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    let name = "ho1";
    let xml = domain_xml(
        name,
        &test_guests().elf,
        "console=ttyS0 oxtest=count",
        64,
        1,
        "restart",
        &serial_xml("pty"),
    )
    .replace(
        "<devices>",
        &format!(
            "<devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{}'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <source file='{}'/><target dev='sda' bus='sata'/><readonly/></disk>",
            top.display(),
            iso.display()
        ),
    );
    d.virsh_ok(&["define", d.xml_file(name, &xml).to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    d.wait_state(name, "running");
    let rt = d.dir.path().join("run/domains").join(name);
    let pid: i32 = std::fs::read_to_string(rt.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // The spec names every file handed over; the VMM holds them.
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rt.join("spec.json")).unwrap()).unwrap();
    let listed: BTreeSet<PathBuf> = spec["files"]
        .as_array()
        .unwrap_or_else(|| d.fail(&format!("no files in the spec: {spec}")))
        .iter()
        .map(|f| PathBuf::from(f["path"].as_str().unwrap()))
        .collect();
    let want: BTreeSet<PathBuf> = [&top, &base, &iso].into_iter().cloned().collect();
    assert!(
        want.is_subset(&listed),
        "handed over {listed:?}, want {want:?}"
    );
    let held = open_files(pid);
    assert!(want.is_subset(&held), "the VMM holds {held:?}");

    // QMP shows them as fd sets named by their paths.
    let sets = d.virsh_ok(&[
        "qemu-monitor-command",
        name,
        r#"{"execute":"query-fdsets"}"#,
    ]);
    let sets: serde_json::Value = serde_json::from_str(&sets).unwrap();
    let named: BTreeSet<PathBuf> = sets["return"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["fds"].as_array().unwrap().iter())
        .filter_map(|f| f["opaque"].as_str().map(PathBuf::from))
        .collect();
    assert!(want.is_subset(&named), "{sets}");

    if root {
        // No thread may open the images by path.
        const DAC: u64 = 1 << 1 | 1 << 2;
        for t in std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
        {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for field in ["CapEff:", "CapPrm:"] {
                let v = status
                    .lines()
                    .find_map(|l| l.strip_prefix(field))
                    .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
                    .unwrap();
                assert_eq!(v & DAC, 0, "thread {:?} has {field} {v:#x}", t.path());
            }
        }
        // A hot-plugged disk and a new medium from the same directory.
        let out = d.virsh_ok(&[
            "attach-disk",
            name,
            &s(&extra),
            "vdc",
            "--targetbus",
            "virtio",
            "--subdriver",
            "qcow2",
        ]);
        assert!(out.contains("Disk attached successfully"), "{out}");
        let out = d.virsh_ok(&["change-media", name, "sda", &s(&new_iso), "--update"]);
        assert!(
            out.contains("succeeded") || out.contains("Successfully"),
            "{out}"
        );
        let held = open_files(pid);
        for p in [&extra, &new_iso] {
            assert!(
                held.contains(p),
                "the VMM does not hold {}: {held:?}",
                p.display()
            );
        }
    }

    // Paths gone: the rebuilt machine opens every image again, from the sets.
    let moved = d.dir.path().join("handed-over-moved");
    std::fs::rename(&images, &moved).unwrap();
    d.virsh_ok(&["reset", name]);
    let deadline = Instant::now() + STEP;
    loop {
        let log = std::fs::read_to_string(rt.join("log")).unwrap_or_default();
        // Each build of the machine attaches the disk again.
        if log.matches("virtio-blk id=virtio-disk0").count() >= 2 {
            break;
        }
        if Instant::now() > deadline {
            d.fail(&format!(
                "no machine rebuild after reset:\n{}",
                d.domain_log(name)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let state = d.virsh_ok(&["domstate", name]);
    assert_eq!(state.trim(), "running", "{}", d.domain_log(name));
    let held = open_files(pid);
    assert!(
        held.contains(&moved.join("top.qcow2")) && held.contains(&moved.join("base.qcow2")),
        "{held:?}"
    );
    let blk = d.virsh_ok(&["domblklist", name]);
    assert!(blk.contains(&s(&top)), "{blk}");
    d.virsh_ok(&["destroy", name]);
}

/// `vmm_user` in a system daemon's config: every VMM runs as that user
/// (`oxvirt-vmm --run-as`, `/dev/kvm` handed over with the images), in a runtime
/// directory of its own, and the everyday calls that reach files still work: a
/// hot-plugged qcow2, a new CD-ROM medium, a screenshot, a reset, destroy. With
/// swtpm installed the domain has a TPM: its state directory is made the user's and
/// swtpm (started by the VMM) manufactures the TPM there.
#[test]
fn a_system_daemon_with_vmm_user_runs_each_vmm_as_that_user() {
    let test = "a_system_daemon_with_vmm_user_runs_each_vmm_as_that_user";
    if !require_kvm(test) {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "*** SKIPPED: {test}: a VMM user needs a root daemon (CI runs the suite as root)"
        );
        return;
    }
    let d = Daemon::start_with_config("vmm_user = \"nobody\"");
    // The VMM reaches its runtime directory below the daemon's private one.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let images = d.dir.path().join("nobodys");
    std::fs::create_dir(&images).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (base, top, extra, iso) = (
        images.join("base.qcow2"),
        images.join("top.qcow2"),
        images.join("extra.qcow2"),
        images.join("new.iso"),
    );
    if !qemu_img(&["create", "-q", "-f", "qcow2", &s(&base), "4M"]) {
        eprintln!("*** SKIPPED: {test}: qemu-img not installed (Debian qemu-utils)");
        return;
    }
    for p in [&top, &extra] {
        qemu_img(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            &s(p),
        ]);
    }
    std::fs::write(&iso, vec![0xa5; 16 * 2048]).unwrap();
    for p in [&base, &top, &extra, &iso, &images] {
        use std::os::unix::fs::PermissionsExt;
        nix::unistd::chown(p.as_path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
        let mode = if p == &images { 0o700 } else { 0o600 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let name = "ho2";
    let tpm = ["swtpm", "swtpm_setup"].iter().all(|t| {
        std::process::Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !tpm {
        eprintln!(
            "*** SKIPPED: {test}: the TPM part: swtpm not installed (Debian swtpm, swtpm-tools)"
        );
    }
    let graphics = format!(
        "<graphics type='vnc' port='-1' autoport='yes'/>{}",
        if tpm {
            "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>"
        } else {
            ""
        }
    );
    let xml = rpc_common::display_xml(name, &graphics).replace(
        "  </devices>",
        &format!(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{}'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/><readonly/></disk>
  </devices>",
            top.display()
        ),
    );
    d.virsh_ok(&["define", d.xml_file(name, &xml).to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    d.wait_state(name, "running");
    let rt = d.dir.path().join("run/domains").join(name);
    let pid: i32 = std::fs::read_to_string(rt.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let uid = nobody.uid.as_raw().to_string();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or("")
                .trim()
                .to_string()
        };
        assert!(
            field("Uid:").split_whitespace().all(|u| u == uid),
            "{status}"
        );
        assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    }
    let log = std::fs::read_to_string(rt.join("log")).unwrap_or_default();
    assert!(log.contains("running as an unprivileged user"), "{log}");
    if tpm {
        use std::os::unix::fs::MetadataExt;
        let uuid = d.virsh_ok(&["domuuid", name]).trim().to_string();
        let state = Path::new("/var/lib/oxvirt/swtpm").join(&uuid);
        let owner = std::fs::metadata(&state)
            .map(|m| m.uid())
            .unwrap_or(u32::MAX);
        assert_eq!(owner, nobody.uid.as_raw(), "{}", state.display());
        let made = std::fs::read_dir(&state)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("tpm2"))
            })
            .unwrap_or(false);
        assert!(made, "no TPM state in {}: {log}", state.display());
    }

    let out = d.virsh_ok(&[
        "attach-disk",
        name,
        &s(&extra),
        "vdc",
        "--targetbus",
        "virtio",
        "--subdriver",
        "qcow2",
    ]);
    assert!(out.contains("Disk attached successfully"), "{out}");
    d.virsh_ok(&["change-media", name, "sda", &s(&iso), "--insert"]);
    let held = open_files(pid);
    for p in [&top, &base, &extra, &iso] {
        assert!(
            held.contains(p),
            "the VMM does not hold {}: {held:?}",
            p.display()
        );
    }
    let shot = d.dir.path().join("shot.ppm");
    d.virsh_ok(&["screenshot", name, &s(&shot)]);
    assert!(std::fs::metadata(&shot)
        .map(|m| m.len() > 0)
        .unwrap_or(false));
    d.virsh_ok(&["reset", name]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        d.virsh_ok(&["domstate", name]).trim(),
        "running",
        "{}",
        d.domain_log(name)
    );
    d.virsh_ok(&["destroy", name]);
    d.wait_state(name, "shut off");
    // (Removes the TPM state too.)
    d.virsh_ok(&["undefine", name]);
    let deadline = Instant::now() + STEP;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() > deadline {
            d.fail("the VMM outlived destroy");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
