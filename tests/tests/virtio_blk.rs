//! virtio-blk through the real VMM: the oxtest guest's own virtio 1.x driver
//! (tests/guests/virtio/virtio.c) finds each disk on PCI at the spec's slot,
//! reads the pattern the host wrote, writes its own pattern, and the host
//! checks the image after the VMM exits. Also: a qcow2 overlay on a backing
//! file, a read-only disk, the serial as the device ID, image locking.

use std::path::Path;
use std::process::Command;

use machine_spec::{exit, Device, DeviceKind, Disk, DiskFormat, DiskIo, MachineSpec};
use oxvirt_tests::disk::{
    guest_pattern, host_pattern, inflight_pattern, raw_image, vblk_line, INFLIGHT_SECTORS,
};
use oxvirt_tests::host::require_kvm;
use oxvirt_tests::spec::{disk_device, raw_disk};
use oxvirt_tests::{oxtest_spec, Vm, GUEST_TIMEOUT};

fn disk(
    id: &str,
    slot: u8,
    path: &Path,
    format: DiskFormat,
    readonly: bool,
    serial: Option<&str>,
) -> Device {
    disk_device(
        id,
        slot,
        Disk {
            format,
            target: format!("vd{}", (b'a' + slot) as char),
            readonly,
            serial: serial.map(Into::into),
            discard: true,
            ..raw_disk(path)
        },
    )
}

fn guest_spec(devices: Vec<Device>) -> MachineSpec {
    oxtest_spec("pci,virtio,poweroff", devices)
}

/// Runs the guest to power-off and returns the VM for its console.
fn run(spec: &MachineSpec) -> Vm {
    let vm = Vm::start(spec);
    vm.wait_poweroff(GUEST_TIMEOUT);
    vm
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn sh(args: &[&str]) -> String {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn raw_disks_at_spec_slots_read_host_pattern_and_write_guest_pattern() {
    if !require_kvm("raw_disks_at_spec_slots_read_host_pattern_and_write_guest_pattern") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = raw_image(dir.path(), "a.img", 2);
    let b = raw_image(dir.path(), "b.img", 4);
    let vm = run(&guest_spec(vec![
        disk(
            "virtio-disk0",
            5,
            &a,
            DiskFormat::Raw,
            false,
            Some("OXSERIAL-A"),
        ),
        {
            // Two queues, requests through the I/O thread pool.
            let mut d = disk("virtio-disk1", 9, &b, DiskFormat::Raw, false, None);
            if let DeviceKind::Disk(k) = &mut d.kind {
                k.queues = Some(2);
                k.io = DiskIo::Threads;
            }
            d
        },
    ]));
    vm.assert_no_failures();
    let pci = vm.expect_ok("pci", GUEST_TIMEOUT);
    for want in [
        "00.0=0x1b36:0x8",
        "05.0=0x1af4:0x1042",
        "09.0=0x1af4:0x1042",
    ] {
        assert!(
            pci.details.contains(want),
            "{want} missing from {}",
            pci.details
        );
    }
    let da = vblk_line(&vm, 5);
    assert_eq!(
        da.field("id"),
        Some("OXSERIAL-A"),
        "serial is the device ID"
    );
    assert_eq!(da.field("cap"), Some("4096"));
    assert_eq!(
        da.field("read"),
        Some("pattern"),
        "guest reads what the host wrote"
    );
    assert_eq!(da.field("write"), Some("ok"));
    assert_eq!(
        da.field("msix"),
        Some("1"),
        "completion interrupt arrived by MSI-X"
    );
    let db = vblk_line(&vm, 9);
    assert_eq!(db.field("cap"), Some("8192"));
    assert_eq!(db.field("id"), Some("-"));
    // Several requests in flight at once: one queue per vCPU (one here) on
    // io_uring, and on the second of two queues through the thread pool.
    assert_eq!(da.field("queues"), Some("1"));
    assert_eq!(
        db.field("queues"),
        Some("2"),
        "VIRTIO_BLK_F_MQ, num_queues=2"
    );
    for d in [&da, &db] {
        assert_eq!(d.field("inflight"), Some("5"), "{}", vm.console());
    }
    let log = vm.log();
    assert!(
        log.contains("virtio-disk1: virtio-blk with 2 queue(s)")
            && log.contains("go through a pool of"),
        "the domain log says how requests are submitted\n{log}"
    );
    for (img, slot) in [(&a, 5u8), (&b, 9u8)] {
        let data = std::fs::read(img).unwrap();
        assert!(
            data[INFLIGHT_SECTORS.start * 512..INFLIGHT_SECTORS.end * 512]
                == inflight_pattern(slot)[..],
            "{}: the writes posted at once are on the image",
            img.display()
        );
        assert_eq!(
            &data[..4096],
            &host_pattern()[..],
            "{} sector 0 untouched",
            img.display()
        );
        assert!(
            data[4096..8192] == guest_pattern(slot)[..],
            "{} holds the guest's pattern after exit\n{}",
            img.display(),
            vm.console()
        );
    }
}

#[test]
fn readonly_disk_fails_writes_with_ioerr() {
    if !require_kvm("readonly_disk_fails_writes_with_ioerr") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = raw_image(dir.path(), "ro.img", 1);
    let vm = run(&guest_spec(vec![disk(
        "virtio-disk0",
        4,
        &a,
        DiskFormat::Raw,
        true,
        None,
    )]));
    vm.assert_no_failures();
    let d = vblk_line(&vm, 4);
    assert_eq!(d.field("ro"), Some("1"), "VIRTIO_BLK_F_RO offered");
    assert_eq!(
        d.field("write"),
        Some("ioerr"),
        "write failed with VIRTIO_BLK_S_IOERR"
    );
    assert_eq!(d.field("read"), Some("pattern"));
    let data = std::fs::read(&a).unwrap();
    assert!(data[4096..8192].iter().all(|&b| b == 0), "image unchanged");
}

#[test]
fn qcow2_overlay_reads_base_and_writes_only_the_overlay() {
    if !require_kvm("qcow2_overlay_reads_base_and_writes_only_the_overlay") {
        return;
    }
    if !have("qemu-img") || !have("qemu-io") {
        oxvirt_tests::host::skip(
            "qcow2_overlay_reads_base_and_writes_only_the_overlay",
            "qemu-img/qemu-io not installed (Debian qemu-utils)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_image(dir.path(), "seed.raw", 1);
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    sh(&[
        "qemu-img",
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        base.to_str().unwrap(),
    ]);
    sh(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        base.to_str().unwrap(),
        "-F",
        "qcow2",
        top.to_str().unwrap(),
    ]);
    let vm = run(&guest_spec(vec![disk(
        "virtio-disk0",
        6,
        &top,
        DiskFormat::Qcow2,
        false,
        Some("QCOW"),
    )]));
    vm.assert_no_failures();
    let d = vblk_line(&vm, 6);
    assert_eq!(
        d.field("read"),
        Some("pattern"),
        "base data read through the overlay"
    );
    assert_eq!(d.field("write"), Some("ok"));
    sh(&["qemu-img", "check", top.to_str().unwrap()]);
    // Dump the guest's 4 KiB from the overlay and compare.
    let out = dir.path().join("out.raw");
    sh(&[
        "qemu-img",
        "convert",
        "-f",
        "qcow2",
        "-O",
        "raw",
        top.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    let data = std::fs::read(&out).unwrap();
    assert_eq!(&data[..4096], &host_pattern()[..]);
    assert!(
        data[4096..8192] == guest_pattern(6)[..],
        "overlay holds the guest's write"
    );
    // The base is unchanged: its second 4 KiB is still zero.
    sh(&[
        "qemu-io",
        "-r",
        "-c",
        "read -P 0 4k 4k",
        base.to_str().unwrap(),
    ]);
    // And the overlay only allocated what the guest wrote.
    let map = sh(&["qemu-img", "map", "--output=json", top.to_str().unwrap()]);
    assert!(
        map.contains("\"depth\": 0"),
        "overlay has its own cluster: {map}"
    );
}

#[test]
fn second_vmm_cannot_open_a_locked_writable_image() {
    if !require_kvm("second_vmm_cannot_open_a_locked_writable_image") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = raw_image(dir.path(), "shared.img", 1);
    // The first VMM holds the image while its guest waits.
    let mut s1 = guest_spec(vec![disk(
        "virtio-disk0",
        4,
        &a,
        DiskFormat::Raw,
        false,
        None,
    )]);
    s1.boot.cmdline = "console=ttyS0 oxtest=halt".into();
    let first = Vm::start(&s1);
    first.wait_for("OXTEST", GUEST_TIMEOUT);
    let second = Vm::start(&guest_spec(vec![disk(
        "virtio-disk0",
        4,
        &a,
        DiskFormat::Raw,
        false,
        None,
    )]));
    let code = second.wait_exit(GUEST_TIMEOUT);
    assert_eq!(code, exit::VMM_ERROR, "second VMM must refuse the image");
    assert!(
        second.log().contains("Is another process using the image?"),
        "{}",
        second.log()
    );
    first.kill();
}
