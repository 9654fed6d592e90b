//! `oxvirt-vmm --run-as USER` (#20): a VMM started as root takes the files it was
//! handed (`files` in the spec, inherited descriptors: the kernel, `/dev/kvm`, a
//! disk image) and becomes an unprivileged user before it builds the machine. The
//! files live in a directory only root may enter: the guest boots, reads the
//! host's pattern from the disk and writes its own, which the host finds after the
//! VMM exits; every thread runs as `nobody` with no capabilities. A disk that was
//! not handed over cannot be opened: the VMM exits naming it and the reason.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use machine_spec::{exit, PassedFile};
use oxvirt_tests::disk::{guest_pattern, host_pattern, raw_image, vblk_line};
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::spec::{disk_device, raw_disk};
use oxvirt_tests::{oxtest_spec, test_guests, Vm, GUEST_TIMEOUT};

fn open(p: &Path, write: bool) -> OwnedFd {
    OwnedFd::from(OpenOptions::new().read(true).write(write).open(p).unwrap())
}

/// Uid, gid and effective capabilities of every thread of `pid`.
fn credentials(pid: u32) -> Vec<(String, String, String)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| {
            let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            let f = |k: &str| {
                s.lines()
                    .find_map(|l| l.strip_prefix(k))
                    .unwrap_or_default()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            (f("Uid:"), f("Gid:"), f("CapEff:"))
        })
        .collect()
}

#[test]
fn a_vmm_run_as_nobody_uses_the_files_it_was_handed_and_opens_nothing_else() {
    let test = "a_vmm_run_as_nobody_uses_the_files_it_was_handed_and_opens_nothing_else";
    if !require_kvm(test) {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("*** SKIPPED: {test}: --run-as needs root (CI runs the suite as root)");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    // Mode 0700, owned by root: nobody may not enter it.
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("oxtest.elf");
    std::fs::copy(&test_guests().elf, &kernel).unwrap();
    let image = raw_image(dir.path(), "vda.img", 2);
    let mut spec = oxtest_spec(
        // The checks, then ticks until the test stops it (credentials are read live).
        "pci,virtio,count",
        vec![disk_device("virtio-disk0", 5, raw_disk(&image))],
    );
    spec.boot.kernel = Some(kernel.clone());
    let handed = |with_disk: bool| {
        let mut files = vec![
            (kernel.clone(), open(&kernel, false)),
            ("/dev/kvm".into(), open(Path::new("/dev/kvm"), true)),
        ];
        if with_disk {
            files.push((image.clone(), open(&image, true)));
        }
        let listed = files
            .iter()
            .zip(3..)
            .map(|((path, _), fd)| PassedFile {
                path: path.clone(),
                fd,
            })
            .collect::<Vec<_>>();
        (
            listed,
            files.into_iter().map(|(_, fd)| fd).collect::<Vec<_>>(),
        )
    };

    let (listed, fds) = handed(true);
    spec.files = listed;
    let vm = Vm::start_with_files(&spec, &["--run-as", "nobody"], fds);
    let deadline = std::time::Instant::now() + GUEST_TIMEOUT;
    while !vm.checks().iter().any(|c| c.name == "vblk") {
        if std::time::Instant::now() > deadline || vm.exited().is_some() {
            vm.fail("no vblk line");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let creds = credentials(vm.pid());
    let uid = nobody.uid.as_raw().to_string();
    for (u, g, cap) in &creds {
        assert!(
            u.split(' ').all(|x| x == uid),
            "uid {u}, want {uid}: {creds:?}"
        );
        assert!(
            g.split(' ').all(|x| x == nobody.gid.as_raw().to_string()),
            "{creds:?}"
        );
        assert_eq!(cap, "0000000000000000", "{creds:?}");
    }
    vm.assert_no_failures();
    let d = vblk_line(&vm, 5);
    assert_eq!(
        d.field("read"),
        Some("pattern"),
        "the guest reads the host's pattern"
    );
    assert_eq!(d.field("write"), Some("ok"));
    let data = std::fs::read(&image).unwrap();
    assert_eq!(&data[..4096], host_pattern().as_slice());
    assert_eq!(
        &data[4096..8192],
        guest_pattern(5).as_slice(),
        "the guest's write landed"
    );
    assert!(
        vm.log().contains("running as an unprivileged user"),
        "{}",
        vm.log()
    );
    vm.kill();

    // Without the disk's descriptor the VMM, as nobody, cannot open it.
    let (listed, fds) = handed(false);
    spec.files = listed;
    let vm = Vm::start_with_files(&spec, &["--run-as", "nobody"], fds);
    vm.expect_exit(exit::VMM_ERROR, Duration::from_secs(60));
    let log = vm.log();
    assert!(
        log.contains(image.to_str().unwrap()) && log.contains("Permission denied"),
        "{log}"
    );
}
