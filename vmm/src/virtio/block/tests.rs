//! virtio-blk request handling, driven through mock queues in plain guest memory.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::virtio::queue_util::drain;
use crate::virtio::queue_util::testing::{
    add_chain, memory, queue, used, used_idx, CountingInterrupt,
};

const HDR: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const STATUS: u64 = 0x30_0000;

fn header(mem: &GuestMem, rtype: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&rtype.to_le_bytes());
    h[8..16].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&h, GuestAddress(HDR)).unwrap();
    mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
}

fn raw_image(bytes: usize) -> (tempfile::NamedTempFile, Box<dyn DiskBackend>) {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&vec![0u8; bytes]).unwrap();
    let d = RawDisk::open(f.path(), OpenFlags::default()).unwrap();
    (f, Box::new(d))
}

/// Runs one request of type `rtype` with `data` buffers and returns (status, used length).
fn run(
    h: &mut RequestHandler,
    mem: &GuestMem,
    rtype: u32,
    sector: u64,
    data: &[(u64, u32, bool)],
) -> (u8, u32) {
    let (mock, mut aq) = queue(mem, 0, 0);
    header(mem, rtype, sector);
    let mut parts = vec![(HDR, 16, false)];
    parts.extend_from_slice(data);
    parts.push((STATUS, 1, true));
    add_chain(&mock, 0, &parts);
    let intr = CountingInterrupt::default();
    let n = drain(&mut aq, mem, &intr, |c| h.process(mem, c));
    assert_eq!(n, 1);
    assert_eq!(
        *intr.queues.lock().unwrap(),
        vec![0],
        "driver is interrupted"
    );
    let (_, len) = used(mem, &mock, 0);
    (mem.read_obj(GuestAddress(STATUS)).unwrap(), len)
}

#[test]
fn write_then_read_reaches_the_file_in_split_buffers() {
    let mem = memory();
    let (file, backend) = raw_image(64 << 10);
    let mut h = RequestHandler::new(backend, false, false, None);
    let pattern: Vec<u8> = (0..1024u32).map(|i| (i * 7 + 3) as u8).collect();
    mem.write_slice(&pattern, GuestAddress(DATA)).unwrap();
    // Two data descriptors of 512 bytes each, written at sector 3.
    let st = run(
        &mut h,
        &mem,
        req::OUT,
        3,
        &[(DATA, 512, false), (DATA + 512, 512, false)],
    );
    assert_eq!(st, (status::OK, 1));
    let on_disk = std::fs::read(file.path()).unwrap();
    assert_eq!(&on_disk[3 * 512..5 * 512], &pattern[..]);
    assert!(on_disk[..3 * 512].iter().all(|&b| b == 0));

    mem.write_slice(&[0u8; 1024], GuestAddress(DATA + 0x1000))
        .unwrap();
    let st = run(&mut h, &mem, req::IN, 3, &[(DATA + 0x1000, 1024, true)]);
    assert_eq!(st, (status::OK, 1025));
    let mut back = vec![0u8; 1024];
    mem.read_slice(&mut back, GuestAddress(DATA + 0x1000))
        .unwrap();
    assert_eq!(back, pattern);
}

#[test]
fn readonly_disk_fails_writes_with_ioerr_and_keeps_data() {
    let mem = memory();
    let (file, backend) = raw_image(8192);
    let mut h = RequestHandler::new(backend, true, true, None);
    mem.write_slice(&[0xab; 512], GuestAddress(DATA)).unwrap();
    assert_eq!(
        run(&mut h, &mem, req::OUT, 0, &[(DATA, 512, false)]).0,
        status::IOERR
    );
    assert_eq!(
        run(&mut h, &mem, req::DISCARD, 0, &[(DATA, 16, false)]).0,
        status::IOERR
    );
    assert!(std::fs::read(file.path()).unwrap().iter().all(|&b| b == 0));
    assert_eq!(
        run(&mut h, &mem, req::IN, 0, &[(DATA, 512, true)]).0,
        status::OK
    );
    assert_eq!(run(&mut h, &mem, req::FLUSH, 0, &[]).0, status::OK);
    let dev = Block::with_backend("d", raw_image(4096).1, true, false, None);
    assert_ne!(dev.features() & features::RO, 0);
    assert_eq!(dev.features() & features::WRITE_ZEROES, 0);
}

#[test]
fn get_id_returns_the_serial_padded() {
    let mem = memory();
    let (_f, backend) = raw_image(4096);
    let mut h = RequestHandler::new(backend, false, false, Some("disk-serial-1"));
    mem.write_slice(&[0xee; 20], GuestAddress(DATA)).unwrap();
    let (st, len) = run(&mut h, &mem, req::GET_ID, 0, &[(DATA, 20, true)]);
    assert_eq!((st, len), (status::OK, 21));
    let mut id = [0u8; 20];
    mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
    assert_eq!(&id[..13], b"disk-serial-1");
    assert!(id[13..].iter().all(|&b| b == 0));
}

#[test]
fn out_of_range_misdirected_and_unknown_requests_fail() {
    let mem = memory();
    let (_f, backend) = raw_image(4096);
    let mut h = RequestHandler::new(backend, false, false, None);
    assert_eq!(
        run(&mut h, &mem, req::IN, 8, &[(DATA, 512, true)]).0,
        status::IOERR
    );
    assert_eq!(
        run(&mut h, &mem, req::IN, 7, &[(DATA, 1024, true)]).0,
        status::IOERR
    );
    assert_eq!(
        run(&mut h, &mem, req::IN, 0, &[(DATA, 512, false)]).0,
        status::IOERR,
        "read into a read-only buffer"
    );
    assert_eq!(
        run(&mut h, &mem, req::IN, u64::MAX, &[(DATA, 512, true)]).0,
        status::IOERR
    );
    assert_eq!(run(&mut h, &mem, 99, 0, &[]).0, status::UNSUPP);
    assert_eq!(
        run(&mut h, &mem, req::DISCARD, 0, &[(DATA, 16, false)]).0,
        status::UNSUPP,
        "discard not enabled"
    );
}

#[test]
fn discard_and_write_zeroes_clear_data() {
    let mem = memory();
    let (file, backend) = raw_image(1 << 20);
    std::fs::OpenOptions::new()
        .write(true)
        .open(file.path())
        .unwrap()
        .write_all(&vec![0x5a; 1 << 20])
        .unwrap();
    let mut h = RequestHandler::new(backend, false, true, None);
    let mut seg = [0u8; 16];
    seg[0..8].copy_from_slice(&16u64.to_le_bytes());
    seg[8..12].copy_from_slice(&16u32.to_le_bytes());
    mem.write_slice(&seg, GuestAddress(DATA)).unwrap();
    assert_eq!(
        run(&mut h, &mem, req::WRITE_ZEROES, 0, &[(DATA, 16, false)]).0,
        status::OK
    );
    let d = std::fs::read(file.path()).unwrap();
    assert!(d[16 * 512..32 * 512].iter().all(|&b| b == 0));
    assert_eq!(d[15 * 512], 0x5a);
    assert_eq!(d[32 * 512], 0x5a);
    seg[0..8].copy_from_slice(&256u64.to_le_bytes());
    seg[8..12].copy_from_slice(&256u32.to_le_bytes());
    mem.write_slice(&seg, GuestAddress(DATA)).unwrap();
    assert_eq!(
        run(&mut h, &mem, req::DISCARD, 0, &[(DATA, 16, false)]).0,
        status::OK
    );
}

/// A status buffer at the top of the address space (its end overflows u64) is a
/// malformed chain, returned with no status, not a worker panic.
#[test]
fn a_buffer_wrapping_the_address_space_is_malformed() {
    let mem = memory();
    let (_file, backend) = raw_image(1 << 20);
    let mut h = RequestHandler::new(backend, false, true, None);
    let (mock, mut aq) = queue(&mem, 0, 0);
    header(&mem, req::IN, 0);
    add_chain(&mock, 0, &[(HDR, 16, false), (u64::MAX - 8, 4096, true)]);
    let intr = CountingInterrupt::default();
    assert_eq!(drain(&mut aq, &mem, &intr, |c| h.process(&mem, c)), 1);
    assert_eq!(used(&mem, &mock, 0).1, 0);
}

/// Hostile discard/write-zeroes requests: more than the one segment the config space
/// allows is UNSUPP before anything is copied (each descriptor can span guest RAM), a
/// sector whose byte offset overflows u64 is IOERR (it panicked in debug builds).
#[test]
fn write_zeroes_with_huge_lengths_or_sectors_fails_cleanly() {
    let mem = memory();
    let (_file, backend) = raw_image(1 << 20);
    let mut h = RequestHandler::new(backend, false, true, None);
    let t = std::time::Instant::now();
    assert_eq!(
        run(
            &mut h,
            &mem,
            req::WRITE_ZEROES,
            0,
            &[(DATA, 1 << 20, false)]
        )
        .0,
        status::UNSUPP
    );
    assert!(t.elapsed() < std::time::Duration::from_millis(500));
    let mut seg = [0u8; 16];
    seg[0..8].copy_from_slice(&(u64::MAX / 4).to_le_bytes());
    seg[8..12].copy_from_slice(&16u32.to_le_bytes());
    mem.write_slice(&seg, GuestAddress(DATA)).unwrap();
    for rtype in [req::WRITE_ZEROES, req::DISCARD] {
        assert_eq!(
            run(&mut h, &mem, rtype, 0, &[(DATA, 16, false)]).0,
            status::IOERR
        );
    }
}

#[test]
fn config_space_reports_capacity_and_limits() {
    let dev = Block::with_backend("d", raw_image(1 << 20).1, false, true, None);
    let mut cap = [0u8; 8];
    dev.read_config(0, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), 2048);
    let mut b = [0u8; 4];
    dev.read_config(20, &mut b);
    assert_eq!(u32::from_le_bytes(b), 512);
    assert_ne!(dev.features() & features::DISCARD, 0);
    let mut tail = [0xffu8; 8];
    dev.read_config(58, &mut tail);
    assert_eq!(tail, [0; 8], "reads past the structure are zero");
}

#[test]
fn used_index_advances_for_a_batch() {
    let mem = memory();
    let (_f, backend) = raw_image(8192);
    let mut h = RequestHandler::new(backend, false, false, None);
    let (mock, mut aq) = queue(&mem, 0, 0);
    header(&mem, req::FLUSH, 0);
    for i in 0..3u16 {
        add_chain(
            &mock,
            i * 2,
            &[(HDR, 16, false), (STATUS + u64::from(i), 1, true)],
        );
    }
    let intr = CountingInterrupt::default();
    assert_eq!(drain(&mut aq, &mem, &intr, |c| h.process(&mem, c)), 3);
    assert_eq!(used_idx(&mem, &mock), 3);
    assert_eq!(used(&mem, &mock, 2), (4, 1));
}

pub(super) fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A qcow2 at `top` over `base.qcow2` in its directory (qemu-img).
fn qcow2_over_base(top: &std::path::Path) {
    let o = Command::new("qemu-img")
        .args([
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
        ])
        .arg(top)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A writable, unshared qcow2 disk on `path` with default flags.
fn writable_qcow2(path: &std::path::Path) -> DiskConfig<'_> {
    DiskConfig {
        path,
        qcow2: true,
        readonly: false,
        shareable: false,
        serial: None,
        discard: false,
        flags: OpenFlags::default(),
    }
}

/// Reads sector 0 (every byte must be `expect`), writes a page of `write` at
/// sector 256 and flushes, each answered OK.
fn read_write_flush(h: &mut RequestHandler, mem: &GuestMem, expect: u8, write: u8) {
    let (st, _) = run(h, mem, req::IN, 0, &[(DATA, 4096, true)]);
    assert_eq!(st, status::OK);
    let mut b = vec![0u8; 4096];
    mem.read_slice(&mut b, GuestAddress(DATA)).unwrap();
    assert!(
        b.iter().all(|&x| x == expect),
        "read {:#x}, want {expect:#x}",
        b[0]
    );
    mem.write_slice(&[write; 4096], GuestAddress(DATA)).unwrap();
    assert_eq!(
        run(h, mem, req::OUT, 256, &[(DATA, 4096, false)]).0,
        status::OK
    );
    assert_eq!(run(h, mem, req::FLUSH, 0, &[]).0, status::OK);
}

#[test]
fn qcow2_overlay_reads_base_and_writes_only_the_overlay() {
    if !have("qemu-img") || !have("qemu-io") {
        eprintln!("SKIPPED qcow2_overlay_reads_base_and_writes_only_the_overlay: qemu-img/qemu-io not installed (Debian qemu-utils)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base.qcow2");
    let top = dir.path().join("top.qcow2");
    let sh = |args: &[&str]| {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    sh(&[
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        base.to_str().unwrap(),
        "4M",
    ]);
    sh(&[
        "qemu-io",
        "-c",
        "write -P 0x11 0 64k",
        base.to_str().unwrap(),
    ]);
    qcow2_over_base(&top);
    let mem = memory();
    {
        let cfg = writable_qcow2(&top);
        let stats = Arc::new(BlockStats::default());
        let dev = Block::open("vda", &cfg, stats.clone()).unwrap();
        let mut h = dev.handler.lock().unwrap();
        let h = &mut *h;
        assert_eq!(h.size(), 4 << 20);
        // Base data visible through the overlay.
        read_write_flush(h, &mem, 0x11, 0x22);
        assert_eq!(
            stats.rd_bytes.load(std::sync::atomic::Ordering::Relaxed),
            4096
        );
        assert_eq!(stats.wr_ops.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(
            stats.flush_ops.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
    sh(&["qemu-img", "check", top.to_str().unwrap()]);
    sh(&[
        "qemu-io",
        "-c",
        "read -P 0x22 128k 4k",
        top.to_str().unwrap(),
    ]);
    sh(&["qemu-io", "-c", "read -P 0x11 0 64k", top.to_str().unwrap()]);
    // The base is untouched at the written offset.
    sh(&["qemu-io", "-c", "read -P 0 128k 4k", base.to_str().unwrap()]);
}

#[test]
fn multiqueue_offers_mq_and_num_queues() {
    let one = Block::with_backend("d", raw_image(4096).1, false, false, None);
    assert_eq!(one.queue_max_sizes().len(), 1);
    assert_eq!(one.features() & features::MQ, 0, "one queue: no MQ");
    let four = Block::with_backend("d", raw_image(4096).1, false, false, None)
        .with_queueing(4, IoMode::Threads);
    assert_eq!(four.queue_max_sizes(), vec![QUEUE_SIZE; 4]);
    assert_ne!(four.features() & features::MQ, 0);
    let mut n = [0u8; 2];
    four.read_config(34, &mut n);
    assert_eq!(u16::from_le_bytes(n), 4, "num_queues");
}

/// Two queues, each with a write posted: both are served (by their own workers),
/// each queue's driver is interrupted, and both writes reach the image.
#[test]
fn each_queue_is_served_by_its_own_worker() {
    let mem = memory();
    let (file, backend) = raw_image(64 << 10);
    let mut dev =
        Block::with_backend("d", backend, false, false, None).with_queueing(2, IoMode::Auto);
    let (mock0, aq0) = queue(&mem, 0, 0);
    let (mock1, aq1) = queue(&mem, 0x8000, 1);
    let kicks = [aq0.kick.try_clone().unwrap(), aq1.kick.try_clone().unwrap()];
    for (q, mock) in [&mock0, &mock1].into_iter().enumerate() {
        let q = q as u64;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&req::OUT.to_le_bytes());
        h[8..16].copy_from_slice(&(10 + q).to_le_bytes());
        mem.write_slice(&h, GuestAddress(HDR + 16 * q)).unwrap();
        mem.write_slice(&[0x60 + q as u8; 512], GuestAddress(DATA + 0x1000 * q))
            .unwrap();
        mem.write_obj(0xffu8, GuestAddress(STATUS + q)).unwrap();
        add_chain(
            mock,
            0,
            &[
                (HDR + 16 * q, 16, false),
                (DATA + 0x1000 * q, 512, false),
                (STATUS + q, 1, true),
            ],
        );
    }
    let intr = Arc::new(CountingInterrupt::default());
    dev.activate(crate::virtio::Activation {
        mem: mem.clone(),
        features: 0,
        queues: vec![aq0, aq1],
        interrupt: intr.clone(),
    })
    .unwrap();
    for k in &kicks {
        k.write(1).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while used_idx(&mem, &mock0) < 1 || used_idx(&mem, &mock1) < 1 {
        assert!(std::time::Instant::now() < deadline, "queues not served");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    dev.reset();
    for q in 0..2u64 {
        let st: u8 = mem.read_obj(GuestAddress(STATUS + q)).unwrap();
        assert_eq!(st, status::OK, "queue {q}");
    }
    let mut seen = intr.queues.lock().unwrap().clone();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        vec![0, 1],
        "each queue's completion interrupts its driver"
    );
    let disk = std::fs::read(file.path()).unwrap();
    assert!(disk[10 * 512..11 * 512].iter().all(|&b| b == 0x60));
    assert!(disk[11 * 512..12 * 512].iter().all(|&b| b == 0x61));
}

/// A qcow2 chain handed over open (oxvirtd's way, #20): the overlay and its
/// backing file are found through their descriptors, though neither path exists
/// any more when the disk is opened; writes land in the handed-over overlay.
#[test]
fn a_qcow2_chain_handed_over_opens_from_its_descriptors() {
    if !have("qemu-img") || !have("qemu-io") {
        eprintln!("SKIPPED a_qcow2_chain_handed_over_opens_from_its_descriptors: qemu-img/qemu-io not installed (Debian qemu-utils)");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("images");
    std::fs::create_dir(&dir).unwrap();
    let (base, top) = (dir.join("base.qcow2"), dir.join("top.qcow2"));
    let sh = |args: &[&str]| {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    sh(&["qemu-img", "create", "-q", "-f", "qcow2", &s(&base), "4M"]);
    sh(&["qemu-io", "-c", "write -P 0x33 0 64k", &s(&base)]);
    qcow2_over_base(&top);
    let fd = |p: &std::path::Path, write: bool| {
        std::os::fd::OwnedFd::from(
            std::fs::OpenOptions::new()
                .read(true)
                .write(write)
                .open(p)
                .unwrap(),
        )
    };
    let sets = [
        crate::files::add(fd(&top, true), None, Some(s(&top))),
        crate::files::add(fd(&base, false), None, Some(s(&base))),
    ];
    let moved = root.path().join("moved");
    std::fs::rename(&dir, &moved).unwrap();
    assert!(!top.exists() && !base.exists());
    let mem = memory();
    {
        let cfg = writable_qcow2(&top);
        let dev = Block::open("vda", &cfg, Arc::new(BlockStats::default())).unwrap();
        let mut h = dev.handler.lock().unwrap();
        let h = &mut *h;
        // Backing data through the descriptors.
        read_write_flush(h, &mem, 0x33, 0x44);
    }
    for a in sets {
        crate::files::remove(a.fdset_id, None).unwrap();
    }
    let top = moved.join("top.qcow2");
    sh(&["qemu-io", "-c", "read -P 0x44 128k 4k", &s(&top)]);
    sh(&["qemu-io", "-c", "read -P 0x33 0 4k", &s(&top)]);
}
