//! The daemon hands the VMM its files open (#20): a domain's qcow2 disk with its
//! backing file and a SATA CD-ROM's image go to the VMM as inherited descriptors
//! listed in the spec (`files`), which QMP `query-fdsets` shows as fd sets named by
//! their paths, and the VMM opens nothing of them by path: with the images' directory
//! renamed away, `virsh reset` (the VMM rebuilds the machine and opens every disk
//! again) still finds them, and the guest keeps running. Run as root (CI) with
//! `vmm_user = "root"`, the images belong to `nobody`, mode 0600 in a 0700
//! directory, and the VMM keeps no CAP_DAC_* in any thread: it could not open one of them by path, yet it runs, takes a
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

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A domain's images in `dir/NAME`: `top.qcow2` and `extra.qcow2` over `base.qcow2`
/// (relative backing names), `cd.iso` and `new.iso`. `None` (said loudly) without
/// qemu-img.
struct Images {
    dir: PathBuf,
    base: PathBuf,
    top: PathBuf,
    extra: PathBuf,
    iso: PathBuf,
    new_iso: PathBuf,
}

impl Images {
    fn make(parent: &Path, name: &str, test: &str) -> Option<Images> {
        let dir = parent.join(name);
        std::fs::create_dir(&dir).unwrap();
        let i = Images {
            base: dir.join("base.qcow2"),
            top: dir.join("top.qcow2"),
            extra: dir.join("extra.qcow2"),
            iso: dir.join("cd.iso"),
            new_iso: dir.join("new.iso"),
            dir,
        };
        if !qemu_img(&["create", "-q", "-f", "qcow2", &s(&i.base), "4M"]) {
            eprintln!("*** SKIPPED: {test}: qemu-img not installed (Debian qemu-utils)");
            return None;
        }
        for p in [&i.top, &i.extra] {
            let backing = ["-b", "base.qcow2", "-F", "qcow2"];
            qemu_img(&[&["create", "-q", "-f", "qcow2"][..], &backing, &[&s(p)]].concat());
        }
        std::fs::write(&i.iso, vec![0x5a; 16 * 2048]).unwrap();
        std::fs::write(&i.new_iso, vec![0xa5; 16 * 2048]).unwrap();
        Some(i)
    }

    /// Gives every file to `nobody`, mode 0600, in a 0700 directory: only that user
    /// may open them by path, and root without CAP_DAC_* may not.
    fn give_to_nobody(&self) {
        use std::os::unix::fs::PermissionsExt;
        let nobody = nobody();
        let files = [&self.base, &self.top, &self.extra, &self.iso, &self.new_iso];
        for p in files.into_iter().chain([&self.dir]) {
            nix::unistd::chown(p.as_path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
            let mode = if p == &self.dir { 0o700 } else { 0o600 };
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

fn nobody() -> nix::unistd::User {
    nix::unistd::User::from_name("nobody").unwrap().unwrap()
}

/// The VMM of `name` (process `pid`, runtime directory `rt`) runs in its own mount
/// namespace (`--mount-sandbox`): the host's tree read-only, `/tmp` private — a
/// world-readable image in the test's directory, which the VMM's user could open by
/// path, is not there for a `blockdev-add` by path — and its runtime directory, at
/// its own path, writable.
fn check_sandbox(d: &Daemon, name: &str, pid: i32, rt: &Path) {
    oxvirt_tests::host::check_mount_sandbox(pid, rt);
    let readable = d.dir.path().join("readable.img");
    std::fs::write(&readable, vec![0u8; 65536]).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let add = format!(
        r#"{{"execute":"blockdev-add","arguments":{{"node-name":"sandboxed","driver":"raw","file":{{"driver":"file","filename":"{}"}}}}}}"#,
        readable.display()
    );
    let out = d.virsh(&["qemu-monitor-command", name, &add]);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("No such file or directory"),
        "blockdev-add of {} by path: {said}",
        readable.display()
    );
}

/// Whether `test` can run here: KVM, and root (a VMM user needs a root daemon);
/// says why not.
fn root_with_kvm(test: &str) -> bool {
    if !require_kvm(test) {
        return false;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "*** SKIPPED: {test}: a VMM user needs a root daemon (CI runs the suite as root)"
        );
        return false;
    }
    true
}

/// Defines and starts `xml` as `name`; the VMM's runtime directory and pid.
fn start(d: &Daemon, name: &str, xml: &str) -> (PathBuf, i32) {
    d.virsh_ok(&["define", d.xml_file(name, xml).to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    d.wait_state(name, "running");
    let rt = d.dir.path().join("run/domains").join(name);
    let pid = std::fs::read_to_string(rt.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (rt, pid)
}

/// A field of every thread's /proc status.
fn thread_fields(pid: i32, field: &str) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| {
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .collect()
}

/// `virsh attach-disk` of the extra qcow2 and `change-media` to the new ISO on
/// `sda`; the VMM then holds both.
fn hot_plug_and_change_media(d: &Daemon, name: &str, pid: i32, i: &Images, how: &str) {
    let out = d.virsh_ok(&[
        "attach-disk",
        name,
        &s(&i.extra),
        "vdc",
        "--targetbus",
        "virtio",
        "--subdriver",
        "qcow2",
    ]);
    assert!(out.contains("Disk attached successfully"), "{out}");
    d.virsh_ok(&["change-media", name, "sda", &s(&i.new_iso), how]);
    let held = open_files(pid);
    for p in [&i.extra, &i.new_iso] {
        assert!(
            held.contains(p),
            "the VMM does not hold {}: {held:?}",
            p.display()
        );
    }
}

#[test]
fn images_go_to_the_vmm_open_and_a_reset_finds_them_with_their_paths_gone() {
    let test = "images_go_to_the_vmm_open_and_a_reset_finds_them_with_their_paths_gone";
    if !require_kvm(test) {
        return;
    }
    // VMMs as root (`vmm_user = "root"`, as qemu.conf's `user`), without CAP_DAC_*:
    // the default user is the other test's.
    let d = Daemon::start_with_config("vmm_user = \"root\"");
    let Some(i) = Images::make(d.dir.path(), "handed-over", test) else {
        return;
    };
    // As root: images only their owner may read, whom the VMM is not.
    let root = nix::unistd::geteuid().is_root();
    if root {
        i.give_to_nobody();
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
            i.top.display(),
            i.iso.display()
        ),
    );
    let (rt, pid) = start(&d, name, &xml);
    check_sandbox(&d, name, pid, &rt);

    // The spec names every file handed over; the VMM holds them.
    let spec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rt.join("spec.json")).unwrap()).unwrap();
    let listed: BTreeSet<PathBuf> = spec["files"]
        .as_array()
        .unwrap_or_else(|| d.fail(&format!("no files in the spec: {spec}")))
        .iter()
        .map(|f| PathBuf::from(f["path"].as_str().unwrap()))
        .collect();
    let want: BTreeSet<PathBuf> = [&i.top, &i.base, &i.iso].into_iter().cloned().collect();
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
        // No thread may open the images by path, yet a hot-plug and a media change
        // from their directory work (the daemon sends them with add-fd).
        const DAC: u64 = 1 << 1 | 1 << 2;
        for field in ["CapEff:", "CapPrm:"] {
            for v in thread_fields(pid, field) {
                let v = u64::from_str_radix(&v, 16).unwrap();
                assert_eq!(v & DAC, 0, "a thread has {field} {v:#x}");
            }
        }
        hot_plug_and_change_media(&d, name, pid, &i, "--update");
    }

    // Paths gone: the rebuilt machine opens every image again, from the sets.
    let moved = d.dir.path().join("handed-over-moved");
    std::fs::rename(&i.dir, &moved).unwrap();
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
    assert!(blk.contains(&s(&i.top)), "{blk}");
    d.virsh_ok(&["destroy", name]);
}

/// A system daemon runs every VMM as its own user by default (`vmm_user`,
/// `oxvirt-vmm` unless the config names another; `oxvirt-vmm --run-as`, `/dev/kvm`
/// handed over with the images), in a runtime directory of its own, and the everyday
/// calls that reach files still work: a hot-plugged qcow2, a new CD-ROM medium, a
/// screenshot, a reset, destroy. The serial console's log file and a unix socket
/// the VMM listens on lie in a directory only root may enter: the daemon creates
/// and hands over both. With swtpm installed the domain has a TPM: its state
/// directory is made the user's and swtpm (started by the VMM) manufactures the
/// TPM there.
#[test]
fn a_system_daemon_runs_each_vmm_as_its_own_user() {
    let test = "a_system_daemon_runs_each_vmm_as_its_own_user";
    if !root_with_kvm(test) {
        return;
    }
    let user = nix::unistd::User::from_name("oxvirt-vmm")
        .unwrap()
        .expect("user oxvirt-vmm (systemd-sysusers packaging/sysusers/oxvirt.conf; scripts/test.sh creates it)");
    let d = Daemon::start();
    let Some(i) = Images::make(d.dir.path(), "nobodys", test) else {
        return;
    };
    i.give_to_nobody();
    let private = d.dir.path().join("root-only");
    std::fs::create_dir(&private).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let serial_log = private.join("serial.log");
    let channel = private.join("channel.sock");
    // (`swtpm_setup --version` exits 1 in Debian's 0.7.1: ask for its help instead.)
    let tpm = ["swtpm", "swtpm_setup"].iter().all(|t| {
        std::process::Command::new(t)
            .arg("--help")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !tpm {
        eprintln!(
            "*** SKIPPED: {test}: the TPM part: swtpm not installed (Debian swtpm, swtpm-tools)"
        );
    }
    let name = "ho2";
    let graphics = format!(
        "<graphics type='vnc' port='-1' autoport='yes'/>{}",
        if tpm {
            "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>"
        } else {
            ""
        }
    );
    let xml = rpc_common::display_xml(name, &graphics)
        .replace(
            &serial_xml("pty"),
            &serial_xml(&format!("file:{}", serial_log.display())),
        )
        .replace(
            "  </devices>",
            &format!(
                "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
      <source file='{}'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/><readonly/></disk>
    <channel type='unix'><source mode='bind' path='{}'/>
      <target type='virtio' name='org.example.test'/></channel>
  </devices>",
                i.top.display(),
                channel.display()
            ),
        );
    let (rt, pid) = start(&d, name, &xml);
    check_sandbox(&d, name, pid, &rt);
    let uid = user.uid.as_raw().to_string();
    for ids in thread_fields(pid, "Uid:") {
        assert!(ids.split_whitespace().all(|u| u == uid), "Uid: {ids}");
    }
    for cap in thread_fields(pid, "CapEff:") {
        assert_eq!(cap, "0000000000000000");
    }
    // The user's supplementary groups (kvm, as the package makes it), as libvirt
    // gives QEMU's user its own.
    let kvm = nix::unistd::Group::from_name("kvm").unwrap().unwrap().gid;
    for groups in thread_fields(pid, "Groups:") {
        assert!(
            groups
                .split_whitespace()
                .any(|g| g == kvm.as_raw().to_string()),
            "Groups: {groups}"
        );
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
        assert_eq!(owner, user.uid.as_raw(), "{}", state.display());
        let made = std::fs::read_dir(&state)
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("tpm2"))
            })
            .unwrap_or(false);
        assert!(made, "no TPM state in {}: {log}", state.display());
    }

    // The guest's serial output reaches the log file the daemon opened, and the
    // channel's socket (bound by the daemon) takes a client.
    let deadline = Instant::now() + STEP;
    while !std::fs::read_to_string(&serial_log).is_ok_and(|t| t.contains("OXTEST")) {
        if Instant::now() > deadline {
            d.fail(&format!("no guest output in {}", serial_log.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::os::unix::net::UnixStream::connect(&channel)
        .unwrap_or_else(|e| d.fail(&format!("connect to {}: {e}", channel.display())));
    hot_plug_and_change_media(&d, name, pid, &i, "--insert");
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
    while Path::new(&format!("/proc/{pid}")).exists() {
        if Instant::now() > deadline {
            d.fail("the VMM outlived destroy");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A domain's static DAC security label picks the user and group its VMM runs as,
/// as libvirt runs QEMU for it (`<seclabel type='static' model='dac'><label>USER:GROUP`);
/// the label stays in the domain's XML. A label naming a user the host lacks fails the
/// start by name, and the domain stays defined and shut off.
#[test]
fn a_static_dac_label_picks_the_vmm_user_and_group() {
    let test = "a_static_dac_label_picks_the_vmm_user_and_group";
    if !root_with_kvm(test) {
        return;
    }
    let nobody = nobody();
    let nogroup = nix::unistd::Group::from_gid(nobody.gid).unwrap().unwrap();
    let d = Daemon::start();
    let label = |l: &str| {
        format!("<seclabel type='static' model='dac' relabel='no'><label>{l}</label></seclabel>")
    };
    let xml = |name: &str, l: &str| {
        domain_xml(
            name,
            &test_guests().elf,
            "console=ttyS0 oxtest=count",
            64,
            1,
            "destroy",
            &serial_xml("pty"),
        )
        .replace("</domain>", &format!("{}</domain>", label(l)))
    };
    let (_, pid) = start(
        &d,
        "labelled",
        &xml("labelled", &format!("nobody:{}", nogroup.name)),
    );
    let (uid, gid) = (
        nobody.uid.as_raw().to_string(),
        nobody.gid.as_raw().to_string(),
    );
    for ids in thread_fields(pid, "Uid:") {
        assert!(ids.split_whitespace().all(|u| u == uid), "Uid: {ids}");
    }
    for ids in thread_fields(pid, "Gid:") {
        assert!(ids.split_whitespace().all(|g| g == gid), "Gid: {ids}");
    }
    let dumped = d.virsh_ok(&["dumpxml", "labelled"]);
    assert!(
        dumped.contains("<seclabel type='static' model='dac' relabel='no'>"),
        "{dumped}"
    );
    d.virsh_ok(&["destroy", "labelled"]);

    d.virsh_ok(&[
        "define",
        d.xml_file("ghost", &xml("ghost", "no-such-user:nogroup"))
            .to_str()
            .unwrap(),
    ]);
    let r = d.virsh(&["start", "ghost"]);
    assert!(!r.ok, "a label naming a missing user started");
    assert!(r.stderr.contains("no user 'no-such-user'"), "{}", r.stderr);
    assert_eq!(d.virsh_ok(&["domstate", "ghost"]).trim(), "shut off");
}
