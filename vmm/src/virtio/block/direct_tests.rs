//! cache='none' (O_DIRECT) on real files: aligned requests bypass the page cache,
//! misaligned ones go through it, and the data is right whichever way each went.

use std::path::Path;

use machine_spec::CacheMode;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::cache::OpenFlags;
use super::{DiskBackend, Qcow2Disk, RawDisk};
use crate::virtio::queue_util::testing::memory;
use crate::virtio::GuestMem;

const BUF: u64 = 0x20_0000;

/// A deterministic pattern, different per `seed`.
fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(u32::from(seed) * 7) as u8
        })
        .collect()
}

/// Writes `data` from guest memory at `gpa` (one segment per `split` bytes) to
/// disk offset `off`, and updates `model`.
fn write(
    d: &mut dyn DiskBackend,
    mem: &GuestMem,
    model: &mut [u8],
    (gpa, off, split): (u64, u64, usize),
    data: &[u8],
) {
    mem.write_slice(data, GuestAddress(gpa)).unwrap();
    let slices: Vec<_> = (0..data.len())
        .step_by(split)
        .map(|p| {
            mem.get_slice(GuestAddress(gpa + p as u64), split.min(data.len() - p))
                .unwrap()
        })
        .collect();
    d.write_at(off, &slices).unwrap();
    model[off as usize..off as usize + data.len()].copy_from_slice(data);
}

/// Reads `len` bytes at disk offset `off` into guest memory at `gpa` and returns them.
fn read(d: &mut dyn DiskBackend, mem: &GuestMem, gpa: u64, off: u64, len: usize) -> Vec<u8> {
    mem.write_slice(&vec![0xee; len], GuestAddress(gpa))
        .unwrap();
    let s = mem.get_slice(GuestAddress(gpa), len).unwrap();
    d.read_at(off, &[s]).unwrap();
    let mut out = vec![0u8; len];
    mem.read_slice(&mut out, GuestAddress(gpa)).unwrap();
    out
}

/// Mixes aligned (direct) and misaligned (page cache) requests over the same
/// blocks and checks every read, and the file, against a model of the disk.
fn exercise(d: &mut dyn DiskBackend, mem: &GuestMem, path: &Path, size: usize) {
    let mut model = std::fs::read(path).unwrap();
    assert_eq!(model.len(), size);
    // Aligned: page-aligned buffer, offset and length.
    write(d, mem, &mut model, (BUF, 4096, 8192), &pattern(1, 8192));
    // Buffer 8 bytes into a page: misaligned in memory.
    write(
        d,
        mem,
        &mut model,
        (BUF + 8, 16384, 4096),
        &pattern(2, 4096),
    );
    // One sector at a sector offset inside the first write: the page cache now
    // holds a block that O_DIRECT wrote a moment ago.
    write(d, mem, &mut model, (BUF, 4096 + 512, 512), &pattern(3, 512));
    // 512-byte segments of an aligned total.
    write(d, mem, &mut model, (BUF, 32768, 512), &pattern(4, 8192));
    // Aligned read over everything, then misaligned reads.
    assert!(read(d, mem, BUF, 0, size) == model, "aligned read");
    assert!(
        read(d, mem, BUF + 0x3001, 4096 + 512, 1024) == model[4096 + 512..4096 + 1536],
        "misaligned read"
    );
    // An aligned write over the block the page cache wrote, read back misaligned.
    write(d, mem, &mut model, (BUF, 4096, 4096), &pattern(5, 4096));
    assert!(
        read(d, mem, BUF + 4, 4096, 4096) == model[4096..8192],
        "page cache sees the direct write"
    );
    d.flush().unwrap();
    assert!(std::fs::read(path).unwrap() == model, "file content");
}

/// Whether files in `dir` open with O_DIRECT; says SKIPPED for `test` if not.
pub(super) fn takes_o_direct(dir: &Path, test: &str) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = dir.join("o_direct-probe");
    std::fs::write(&probe, [0u8; 4096]).unwrap();
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .is_ok();
    let _ = std::fs::remove_file(&probe);
    if !ok {
        eprintln!(
            "SKIPPED {test}: the filesystem of {} refuses O_DIRECT",
            dir.display()
        );
    }
    ok
}

fn image(dir: &Path, size: usize) -> std::path::PathBuf {
    let path = dir.join("disk.img");
    std::fs::write(&path, pattern(9, size)).unwrap();
    path
}

#[test]
fn raw_cache_none_is_direct_and_exact_for_any_alignment() {
    // /var/tmp: a disk filesystem (O_DIRECT has a device to bypass the cache to).
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    if !takes_o_direct(
        dir.path(),
        "raw_cache_none_is_direct_and_exact_for_any_alignment",
    ) {
        return;
    }
    let path = image(dir.path(), 64 << 10);
    let mem = memory();
    for mode in [CacheMode::None, CacheMode::Directsync] {
        let mut d = RawDisk::open(&path, OpenFlags::for_cache(mode)).unwrap();
        assert!(d.is_direct(), "{mode:?}");
        exercise(&mut d, &mem, &path, 64 << 10);
    }
    let mut d = RawDisk::open(&path, OpenFlags::for_cache(CacheMode::Writeback)).unwrap();
    assert!(!d.is_direct());
    exercise(&mut d, &mem, &path, 64 << 10);
}

#[test]
fn raw_cache_none_reads_a_partial_last_block() {
    // 8 KiB + 512: an O_DIRECT read of the last page comes back short, and the
    // rest of the request (past the end) reads as zeroes.
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    if !takes_o_direct(dir.path(), "raw_cache_none_reads_a_partial_last_block") {
        return;
    }
    let path = dir.path().join("odd.img");
    let data = pattern(7, 8192 + 512);
    std::fs::write(&path, &data).unwrap();
    let mem = memory();
    let mut d = RawDisk::open(&path, OpenFlags::for_cache(CacheMode::None)).unwrap();
    assert_eq!(d.size(), 8192 + 512);
    let got = read(&mut d, &mem, BUF, 4096, 8192);
    assert!(got[..4608] == data[4096..], "data up to the end");
    assert!(got[4608..].iter().all(|&b| b == 0), "zeroes past the end");
}

#[test]
fn qcow2_cache_none_is_direct_and_exact() {
    if std::process::Command::new("qemu-img")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED qcow2_cache_none_is_direct_and_exact: qemu-img not installed");
        return;
    }
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    if !takes_o_direct(dir.path(), "qcow2_cache_none_is_direct_and_exact") {
        return;
    }
    let path = dir.path().join("disk.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg("64K")
        .status()
        .unwrap();
    assert!(st.success());
    let mem = memory();
    let mut d = Qcow2Disk::open(&path, OpenFlags::for_cache(CacheMode::None)).unwrap();
    assert!(d.is_direct());
    let mut model = vec![0u8; 64 << 10];
    write(
        &mut d,
        &mem,
        &mut model,
        (BUF, 4096, 8192),
        &pattern(1, 8192),
    );
    write(
        &mut d,
        &mem,
        &mut model,
        (BUF + 8, 4096 + 512, 512),
        &pattern(2, 512),
    );
    assert!(read(&mut d, &mem, BUF + 3, 0, 64 << 10) == model);
    d.flush().unwrap();
    drop(d);
    let out = std::process::Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(&path)
        .arg(dir.path().join("out.raw"))
        .status()
        .unwrap();
    assert!(out.success());
    assert!(std::fs::read(dir.path().join("out.raw")).unwrap() == model);
}

fn sys_mount(
    src: Option<&std::ffi::CStr>,
    target: &std::ffi::CStr,
    fstype: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
) -> std::io::Result<()> {
    let p = |c: Option<&std::ffi::CStr>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: all pointers are NUL-terminated strings (or null) that outlive the call.
    let rc = unsafe { libc::mount(p(src), target.as_ptr(), p(fstype), flags, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// In a private mount namespace of this thread only: a ramfs, which refuses
/// O_DIRECT. Needs CAP_SYS_ADMIN.
fn on_ramfs(f: impl FnOnce(&Path) + Send) -> Result<(), String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
                .map_err(|e| format!("unshare(CLONE_NEWNS): {e}"))?;
            // Keep the ramfs out of the host's namespace (shared propagation).
            sys_mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE)
                .map_err(|e| format!("making / private: {e}"))?;
            let dir = tempfile::tempdir().unwrap();
            let target = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes())
                .expect("no NUL in a temp path");
            sys_mount(Some(c"none"), &target, Some(c"ramfs"), 0)
                .map_err(|e| format!("mount ramfs: {e}"))?;
            f(dir.path());
            // SAFETY: unmounts the ramfs mounted above, in this thread's namespace.
            unsafe { libc::umount(target.as_ptr()) };
            Ok(())
        })
        .join()
        .unwrap()
    })
}

#[test]
fn cache_none_on_a_filesystem_without_o_direct_uses_the_page_cache() {
    let r = on_ramfs(|dir| {
        let path = image(dir, 64 << 10);
        let mem = memory();
        let mut d = RawDisk::open(&path, OpenFlags::for_cache(CacheMode::None)).unwrap();
        assert!(!d.is_direct(), "ramfs refuses O_DIRECT");
        exercise(&mut d, &mem, &path, 64 << 10);
    });
    if let Err(why) = r {
        eprintln!(
            "SKIPPED cache_none_on_a_filesystem_without_o_direct_uses_the_page_cache: \
             no private ramfs ({why})"
        );
    }
}
