//! Storage pools and volumes through libvirt's protocol with Debian's real clients:
//! virsh's pool and volume commands (upload/download compared byte for byte, qcow2
//! checked by `qemu-img check`), libvirt's errors, read-only refusal, pool events,
//! `<disk type='volume'>` resolved at start, `virt-install --disk size=N` creating its
//! volume in the default pool, `undefine --remove-all-storage`, and session mode's
//! default pool under `$XDG_DATA_HOME`.

mod rpc_common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use oxvirt_tests::host::require_kvm;
use rpc_common::{guest_xml, run_with_timeout, Daemon, STEP};

fn qemu_img_check(path: &Path) {
    let out = Command::new("qemu-img")
        .arg("check")
        .arg(path)
        .output()
        .expect("qemu-img (Debian package qemu-utils)");
    assert!(
        out.status.success(),
        "qemu-img check {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn qemu_img_info(path: &Path) -> serde_json::Value {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .expect("qemu-img (Debian package qemu-utils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Random-looking bytes (an LCG), so a mix-up of blocks would show.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

#[test]
fn rpc_storage_virsh_pool_and_volume_commands() {
    let d = Daemon::start();
    let dir = d.dir.path().join("pool1");
    let dirs = dir.to_str().unwrap();

    // The default pool exists from the start, active and autostarted.
    let out = d.virsh_ok(&["pool-list", "--all", "--details"]);
    assert!(out.contains("default") && out.contains("running"), "{out}");
    assert!(d.dir.path().join("images").is_dir());

    // Events while we work (virsh waits for one event type per process).
    let watch = |event: &str| {
        Command::new("virsh")
            .args(["-c", &d.uri(), "pool-event", "--event", event, "--loop"])
            .args(["--timeout", "60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let watchers = [watch("lifecycle"), watch("refresh")];
    std::thread::sleep(Duration::from_millis(500));

    // A pool whose target is missing cannot start (libvirt's error), nothing is made.
    d.virsh_ok(&["pool-define-as", "pool1", "dir", "--target", dirs]);
    let r = d.virsh(&["pool-start", "pool1"]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains(&format!(
            "cannot open directory '{dirs}': No such file or directory"
        )),
        "{}",
        r.stderr
    );
    assert!(!dir.exists());
    d.virsh_ok(&["pool-build", "pool1"]);
    d.virsh_ok(&["pool-start", "pool1"]);
    d.virsh_ok(&["pool-autostart", "pool1"]);
    let info = d.virsh_ok(&["pool-info", "pool1"]);
    assert_eq!(rpc_common::field(&info, "State"), "running");
    assert_eq!(rpc_common::field(&info, "Autostart"), "yes");
    let xml = d.virsh_ok(&["pool-dumpxml", "pool1"]);
    assert!(xml.contains(&format!("<path>{dirs}</path>")), "{xml}");

    // Volumes: qcow2 and raw.
    d.virsh_ok(&[
        "vol-create-as",
        "pool1",
        "a.qcow2",
        "16M",
        "--format",
        "qcow2",
    ]);
    d.virsh_ok(&["vol-create-as", "pool1", "b.img", "8M"]);
    qemu_img_check(&dir.join("a.qcow2"));
    let qi = qemu_img_info(&dir.join("a.qcow2"));
    assert_eq!(qi["virtual-size"], 16u64 << 20);
    // A qcow2 on top of it (--backing-vol).
    d.virsh_ok(&[
        "vol-create-as",
        "pool1",
        "top.qcow2",
        "16M",
        "--format",
        "qcow2",
        "--backing-vol",
        "a.qcow2",
        "--backing-vol-format",
        "qcow2",
    ]);
    qemu_img_check(&dir.join("top.qcow2"));
    let qi = qemu_img_info(&dir.join("top.qcow2"));
    assert_eq!(
        qi["backing-filename"],
        dir.join("a.qcow2").to_str().unwrap()
    );
    let list = d.virsh_ok(&["vol-list", "pool1", "--details"]);
    for want in ["a.qcow2", "b.img", "top.qcow2", "16.00 MiB", "8.00 MiB"] {
        assert!(list.contains(want), "{want} missing:\n{list}");
    }

    // Upload and download, compared byte for byte (several stream packets).
    let data = pattern(3 * 1024 * 1024 + 4321, 7);
    let up = d.dir.path().join("up.bin");
    std::fs::write(&up, &data).unwrap();
    d.virsh_ok(&[
        "vol-upload",
        "--pool",
        "pool1",
        "b.img",
        up.to_str().unwrap(),
    ]);
    assert_eq!(
        &std::fs::read(dir.join("b.img")).unwrap()[..data.len()],
        &data[..]
    );
    let down = d.dir.path().join("down.bin");
    d.virsh_ok(&[
        "vol-download",
        "--pool",
        "pool1",
        "b.img",
        down.to_str().unwrap(),
    ]);
    let got = std::fs::read(&down).unwrap();
    assert_eq!(got.len(), 8 << 20);
    assert_eq!(&got[..data.len()], &data[..]);
    // With an offset and length.
    d.virsh_ok(&[
        "vol-download",
        "--pool",
        "pool1",
        "b.img",
        down.to_str().unwrap(),
        "--offset",
        "1000",
        "--length",
        "5000",
    ]);
    assert_eq!(std::fs::read(&down).unwrap(), &data[1000..6000]);

    // Sparse streams: holes travel as STREAM_HOLE packets and stay holes.
    let sparse = d.dir.path().join("sparse.bin");
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::create(&sparse).unwrap();
        f.set_len(16 << 20).unwrap();
        f.write_all_at(b"hello", 5_000_000).unwrap();
    }
    d.virsh_ok(&[
        "vol-create-as",
        "pool1",
        "sp.img",
        "16M",
        "--allocation",
        "16M",
    ]);
    let sp = sparse.to_str().unwrap();
    d.virsh_ok(&["vol-upload", "--sparse", "--pool", "pool1", "sp.img", sp]);
    let blocks = |p: &Path| std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(p).unwrap());
    assert_eq!(
        std::fs::read(dir.join("sp.img")).unwrap(),
        std::fs::read(&sparse).unwrap()
    );
    assert!(
        blocks(&dir.join("sp.img")) < 2048,
        "the holes were written as data"
    );
    let down_sparse = d.dir.path().join("down-sparse.bin");
    let ds = down_sparse.to_str().unwrap();
    d.virsh_ok(&["vol-download", "--sparse", "--pool", "pool1", "sp.img", ds]);
    assert_eq!(
        std::fs::read(&down_sparse).unwrap(),
        std::fs::read(&sparse).unwrap()
    );
    assert!(blocks(&down_sparse) < 2048, "the holes arrived as data");
    d.virsh_ok(&["vol-delete", "--pool", "pool1", "sp.img"]);

    // Clone, resize, info, path, key, wipe, delete.
    d.virsh_ok(&["vol-clone", "--pool", "pool1", "b.img", "c.img"]);
    assert_eq!(
        &std::fs::read(dir.join("c.img")).unwrap()[..data.len()],
        &data[..]
    );
    d.virsh_ok(&["vol-resize", "--pool", "pool1", "c.img", "12M"]);
    let vi = d.virsh_ok(&["vol-info", "--pool", "pool1", "c.img"]);
    assert_eq!(rpc_common::field(&vi, "Capacity"), "12.00 MiB");
    let r = d.virsh(&["vol-resize", "--pool", "pool1", "c.img", "1M"]);
    assert!(
        !r.ok && r.stderr.contains("shrink capacity below"),
        "{}",
        r.stderr
    );
    d.virsh_ok(&["vol-resize", "--pool", "pool1", "a.qcow2", "32M"]);
    qemu_img_check(&dir.join("a.qcow2"));
    assert_eq!(
        qemu_img_info(&dir.join("a.qcow2"))["virtual-size"],
        32u64 << 20
    );
    let path = d.virsh_ok(&["vol-path", "--pool", "pool1", "c.img"]);
    assert_eq!(path.trim(), dir.join("c.img").to_str().unwrap());
    let key = d.virsh_ok(&["vol-key", "--pool", "pool1", "c.img"]);
    assert_eq!(key.trim(), path.trim());
    let vx = d.virsh_ok(&["vol-dumpxml", path.trim()]);
    assert!(
        vx.contains("<capacity unit='bytes'>12582912</capacity>"),
        "{vx}"
    );
    d.virsh_ok(&["vol-wipe", "--pool", "pool1", "c.img"]);
    assert!(std::fs::read(dir.join("c.img"))
        .unwrap()
        .iter()
        .all(|b| *b == 0));
    d.virsh_ok(&["vol-delete", "--pool", "pool1", "c.img"]);
    assert!(!dir.join("c.img").exists());

    // Bad input: libvirt's errors, no stray files.
    let bad = d.xml_file(
        "badcap",
        "<volume><name>x.img</name><capacity>12Q</capacity></volume>",
    );
    let r = d.virsh(&["vol-create", "pool1", bad.to_str().unwrap()]);
    assert!(
        !r.ok && r.stderr.contains("malformed capacity element"),
        "{}",
        r.stderr
    );
    let bad = d.xml_file(
        "slash",
        "<volume><name>a/b</name><capacity>1024</capacity></volume>",
    );
    let r = d.virsh(&["vol-create", "pool1", bad.to_str().unwrap()]);
    assert!(
        !r.ok && r.stderr.contains("cannot contain '/'"),
        "{}",
        r.stderr
    );
    let r = d.virsh(&[
        "vol-create-as",
        "pool1",
        "n.qcow2",
        "1M",
        "--format",
        "qcow2",
        "--backing-vol",
        "/nonexistent/base.qcow2",
        "--backing-vol-format",
        "qcow2",
    ]);
    assert!(!r.ok, "{}", r.stdout);
    assert!(!dir.join("n.qcow2").exists());
    let r = d.virsh(&["vol-create-as", "pool1", "b.img", "1M"]);
    assert!(!r.ok && r.stderr.contains("exists already"), "{}", r.stderr);
    let r = d.virsh(&[
        "pool-define-as",
        "nfs",
        "netfs",
        "--source-host",
        "h",
        "--source-path",
        "/x",
        "--target",
        "/mnt/x",
    ]);
    assert!(
        !r.ok && r.stderr.contains("missing backend for pool type 2 (netfs)"),
        "{}",
        r.stderr
    );
    let r = d.virsh(&["vol-info", "--pool", "pool1", "nope"]);
    assert!(
        !r.ok && r.stderr.contains("Storage volume not found"),
        "{}",
        r.stderr
    );
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["a.qcow2", "b.img", "top.qcow2"]);

    // Read-only connections look, never change.
    let ro = format!("oxvirt:///system?socket={}-ro", d.socket.display());
    let r = rpc_common::virsh(&ro, &["vol-list", "pool1"]);
    assert!(r.ok && r.stdout.contains("a.qcow2"), "{}", r.stderr);
    for args in [
        &["vol-create-as", "pool1", "ro.img", "1M"][..],
        &["vol-delete", "--pool", "pool1", "b.img"],
        &["pool-destroy", "pool1"],
        &[
            "vol-upload",
            "--pool",
            "pool1",
            "b.img",
            up.to_str().unwrap(),
        ],
    ] {
        let r = rpc_common::virsh(&ro, args);
        assert!(
            !r.ok && r.stderr.contains("read only access prevents"),
            "{args:?}: {}",
            r.stderr
        );
    }

    // Refresh finds files made behind the daemon's back.
    std::fs::write(dir.join("outside.img"), b"x").unwrap();
    d.virsh_ok(&["pool-refresh", "pool1"]);
    assert!(d.virsh_ok(&["vol-list", "pool1"]).contains("outside.img"));

    d.virsh_ok(&["pool-destroy", "pool1"]);
    d.virsh_ok(&["pool-undefine", "pool1"]);
    std::thread::sleep(Duration::from_millis(500));
    let mut ev = String::new();
    for w in watchers {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(w.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        ev += &String::from_utf8_lossy(&w.wait_with_output().unwrap().stdout);
    }
    for want in [
        "'lifecycle' for storage pool pool1: Defined",
        "'lifecycle' for storage pool pool1: Started",
        "'refresh' for storage pool pool1",
        "'lifecycle' for storage pool pool1: Stopped",
        "'lifecycle' for storage pool pool1: Undefined",
    ] {
        assert!(ev.contains(want), "no {want:?} in:\n{ev}");
    }
}

/// `<disk type='volume'>` resolves to its file at start; the volume cannot be deleted
/// while the domain runs; `undefine --remove-all-storage` deletes it.
#[test]
fn rpc_storage_volume_disk_and_remove_all_storage() {
    if !require_kvm("rpc_storage_volume_disk_and_remove_all_storage") {
        return;
    }
    let d = Daemon::start();
    d.virsh_ok(&[
        "vol-create-as",
        "default",
        "disk1.qcow2",
        "16M",
        "--format",
        "qcow2",
    ]);
    let name = "rpc-volume-disk";
    let xml = guest_xml(name).replace(
        "  </devices>",
        "    <disk type='volume' device='disk'>\n      <source pool='default' volume='disk1.qcow2'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n  </devices>",
    );
    let f = d.xml_file(name, &xml);
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    let inactive = d.virsh_ok(&["dumpxml", name, "--inactive"]);
    assert!(
        inactive.contains("<source pool='default' volume='disk1.qcow2'/>"),
        "{inactive}"
    );
    d.virsh_ok(&["start", name]);
    let path = d.dir.path().join("images/disk1.qcow2");
    let live = d.virsh_ok(&["dumpxml", name]);
    assert!(
        live.contains(&format!("<source file='{}'/>", path.display())),
        "{live}"
    );
    assert!(live.contains("type='qcow2'"), "{live}");
    let r = d.virsh(&["vol-delete", "--pool", "default", "disk1.qcow2"]);
    assert!(!r.ok && r.stderr.contains("still in use"), "{}", r.stderr);
    assert!(path.exists());
    d.virsh_ok(&["destroy", name]);
    let out = d.virsh_ok(&["undefine", name, "--remove-all-storage"]);
    assert!(out.contains("removed"), "{out}");
    assert!(!path.exists());
}

/// virt-install creates its disk in the default pool and the domain starts with it;
/// `virsh undefine --remove-all-storage` removes it again.
#[test]
fn rpc_storage_virt_install_disk_size() {
    let test = "rpc_storage_virt_install_disk_size";
    if !Path::new("/usr/bin/virt-install").exists() {
        oxvirt_tests::skip(test, "virt-install missing (Debian package virtinst)");
        return;
    }
    if !require_kvm(test) {
        return;
    }
    let d = Daemon::start();
    // The qemu scheme makes virtinst choose q35 and virtio (its defaults key on it).
    let uri = format!("qemu+unix:///system?socket={}", d.socket.display());
    let kernel = oxvirt_tests::test_guests().elf.clone();
    let mut c = Command::new("virt-install");
    c.args(["--connect", &uri, "--name", "rpc-vi-disk"])
        .args([
            "--memory", "64", "--vcpus", "1", "--disk", "size=1", "--import",
        ])
        .args([
            "--osinfo",
            "debian11",
            "--network",
            "none",
            "--graphics",
            "none",
        ])
        .args(["--noautoconsole", "--boot"])
        .arg(format!(
            "kernel={},cmdline=console=ttyS0 oxtest=acpibutton",
            kernel.display()
        ));
    let r = run_with_timeout(c, STEP);
    if !r.ok {
        d.fail(&format!("virt-install failed:\n{}\n{}", r.stdout, r.stderr));
    }
    let vol = d.dir.path().join("images/rpc-vi-disk.qcow2");
    assert!(vol.exists(), "{}", r.stdout);
    assert_eq!(d.virsh_ok(&["domstate", "rpc-vi-disk"]).trim(), "running");
    let live = d.virsh_ok(&["dumpxml", "rpc-vi-disk"]);
    assert!(live.contains(&vol.display().to_string()), "{live}");
    d.virsh_ok(&["destroy", "rpc-vi-disk"]);
    // The VMM held the image locked; now qemu-img may look.
    qemu_img_check(&vol);
    assert_eq!(qemu_img_info(&vol)["virtual-size"], 1u64 << 30);
    d.virsh_ok(&["undefine", "rpc-vi-disk", "--remove-all-storage"]);
    assert!(!vol.exists());
    assert!(!d.virsh_ok(&["vol-list", "default"]).contains("rpc-vi-disk"));
}

/// Session mode: the default pool lives in `$XDG_DATA_HOME/oxvirt/images`.
#[test]
fn rpc_storage_session_default_pool() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let bus = dir.path().join("bus");
    let mut dbus = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--nopidfile"])
        .arg(format!("--address=unix:path={}", bus.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon");
    let sock = dir.path().join("sock");
    let config = dir.path().join("oxvirtd.toml");
    std::fs::write(
        &config,
        format!(
            "bus = \"unix:path={}\"\nrpc_socket = \"{}\"\nvmm = \"{}\"\n",
            bus.display(),
            sock.display(),
            oxvirt_tests::bin_path("oxvirt-vmm").display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new(oxvirt_tests::bin_path("oxvirtd"))
        .args(["--session", "--config"])
        .arg(&config)
        .env("XDG_DATA_HOME", &data)
        .env("XDG_RUNTIME_DIR", &run)
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + STEP;
    while !rpc_common::is_socket(&sock) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let uri = format!("oxvirt:///session?socket={}", sock.display());
    let r = rpc_common::virsh(&uri, &["pool-dumpxml", "default"]);
    let images = data.join("oxvirt/images");
    let ok = r.ok
        && r.stdout
            .contains(&format!("<path>{}</path>", images.display()));
    let r2 = rpc_common::virsh(
        &uri,
        &[
            "vol-create-as",
            "default",
            "s.qcow2",
            "1M",
            "--format",
            "qcow2",
        ],
    );
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = dbus.kill();
    let _ = dbus.wait();
    assert!(ok, "{}\n{}", r.stdout, r.stderr);
    assert!(r2.ok, "{}", r2.stderr);
    qemu_img_check(&images.join("s.qcow2"));
}
