//! Image locking: two VMs must not open one writable image, and readers may
//! share one (an installer ISO in several VMs, QEMU's included).
//!
//! Open-file-description locks (`F_OFD_SETLK`): they belong to the open file, not
//! the process, so they also conflict within one process, and they vanish when
//! the VMM exits however it exits.
//!
//! * A writable, non-shareable disk takes a write lock on the whole file: it
//!   conflicts with every other opener, ours or QEMU's.
//! * A read-only or `<shareable/>` disk takes QEMU's own byte locks
//!   (`block/file-posix.c`, `raw_apply_lock_bytes`): a read lock at byte
//!   100 + n for each permission n it uses (0 consistent read, 1 write) and at
//!   200 + n for each it does not share (a read-only disk does not share write or
//!   resize, a shareable one resize). It then checks, as QEMU does, that nobody
//!   else holds what it refuses to share (byte 100 + n) nor refuses what it uses
//!   (byte 200 + n). So a read-only ISO opens in oxvirt and QEMU at once, while a
//!   writer in either keeps the other's readers out.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg};

/// Why a lock was refused.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds a conflicting lock (libvirt's wording for QEMU's error).
    #[error("Failed to get \"{kind}\" lock on '{path}': Is another process using the image?")]
    Busy { kind: &'static str, path: PathBuf },
    /// The image could not be opened or locked at all.
    #[error("cannot lock '{path}'")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How an image is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Writable and not shareable: nobody else may open it.
    Exclusive,
    /// Read-only: others may read, nobody may write.
    ReadOnly,
    /// Writable `<shareable/>`: others may read and write, nobody may resize.
    SharedWrite,
}

/// QEMU's permission bits (`BLK_PERM_*` bit numbers) and lock byte bases.
const PERM_READ: i64 = 0;
const PERM_WRITE: i64 = 1;
const PERM_RESIZE: i64 = 3;
const PERM_BASE: i64 = 100;
const SHARED_BASE: i64 = 200;

impl LockMode {
    /// (permissions used, permissions not shared) as QEMU's bit numbers.
    fn qemu_perms(self) -> (&'static [i64], &'static [i64]) {
        match self {
            LockMode::Exclusive => (&[PERM_READ, PERM_WRITE], &[PERM_WRITE, PERM_RESIZE]),
            LockMode::ReadOnly => (&[PERM_READ], &[PERM_WRITE, PERM_RESIZE]),
            LockMode::SharedWrite => (&[PERM_READ, PERM_WRITE], &[PERM_RESIZE]),
        }
    }
}

/// A held image lock; dropping it releases the lock.
#[derive(Debug)]
pub struct ImageLock {
    file: File,
    /// The description is a handed-over image's ([`crate::files`]), which lives
    /// on after this lock: dropping it unlocks explicitly.
    shared: bool,
}

impl Drop for ImageLock {
    fn drop(&mut self) {
        if self.shared {
            let _ = fcntl(
                &self.file,
                FcntlArg::F_OFD_SETLK(&flock(libc::F_UNLCK, 0, 0)),
            );
        }
    }
}

fn flock(kind: libc::c_int, start: i64, len: i64) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start,
        l_len: len,
        l_pid: 0,
    }
}

impl ImageLock {
    /// Locks `path` for `mode`.
    pub fn acquire(path: &Path, mode: LockMode) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let exclusive = mode == LockMode::Exclusive;
        let busy = |kind| LockError::Busy {
            kind,
            path: path.to_path_buf(),
        };
        // A handed-over image locks through its own description (OFD locks belong
        // to the description, which the disk's descriptors share).
        let (file, shared) = match crate::files::given(path, crate::files::Access::READ) {
            Some(f) => (f.map_err(io)?, true),
            None => (
                OpenOptions::new()
                    .read(true)
                    .write(exclusive)
                    .open(path)
                    .map_err(io)?,
                false,
            ),
        };
        let set = |l: libc::flock, kind| match fcntl(&file, FcntlArg::F_OFD_SETLK(&l)) {
            Ok(_) => Ok(()),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Err(busy(kind)),
            Err(e) => Err(io(e.into())),
        };
        if exclusive {
            // Byte 0 to the end of any file: every other lock conflicts.
            set(flock(libc::F_WRLCK, 0, 0), "write")?;
            return Ok(ImageLock { file, shared });
        }
        let (used, unshared) = mode.qemu_perms();
        for &p in used {
            set(flock(libc::F_RDLCK, PERM_BASE + p, 1), "consistent read")?;
        }
        for &p in unshared {
            set(flock(libc::F_RDLCK, SHARED_BASE + p, 1), "shared")?;
        }
        // Another opener that refuses what we use, or uses what we refuse.
        let taken = |byte| -> Result<bool, LockError> {
            let mut l = flock(libc::F_WRLCK, byte, 1);
            fcntl(&file, FcntlArg::F_OFD_GETLK(&mut l)).map_err(|e| io(e.into()))?;
            Ok(l.l_type != libc::F_UNLCK as libc::c_short)
        };
        for &p in used {
            if taken(SHARED_BASE + p)? {
                return Err(busy(if p == PERM_WRITE {
                    "write"
                } else {
                    "consistent read"
                }));
            }
        }
        for &p in unshared {
            if taken(PERM_BASE + p)? {
                return Err(busy("shared"));
            }
        }
        Ok(ImageLock { file, shared })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Acquires a lock that a dropped `ImageLock` of this process just gave
    /// up. Another test of this binary may be spawning a child at that moment:
    /// between fork and exec the child holds a copy of every descriptor, and
    /// with it the OFD lock, so give it a moment (the CI saw this race).
    fn acquire_after_release(p: &Path, mode: LockMode) -> ImageLock {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match ImageLock::acquire(p, mode) {
                Ok(l) => return l,
                Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        }
    }

    #[test]
    fn exclusive_conflicts_and_shared_coexists() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.img");
        std::fs::write(&p, [0u8; 512]).unwrap();
        let a = ImageLock::acquire(&p, LockMode::Exclusive).unwrap();
        let err = ImageLock::acquire(&p, LockMode::Exclusive).unwrap_err();
        assert!(
            err.to_string()
                .contains("Is another process using the image?"),
            "{err}"
        );
        assert!(
            ImageLock::acquire(&p, LockMode::ReadOnly).is_err(),
            "readers wait for the writer"
        );
        drop(a);
        let r1 = acquire_after_release(&p, LockMode::ReadOnly);
        let _r2 = ImageLock::acquire(&p, LockMode::ReadOnly).unwrap();
        assert!(ImageLock::acquire(&p, LockMode::Exclusive).is_err());
        assert!(
            ImageLock::acquire(&p, LockMode::SharedWrite).is_err(),
            "readers do not share write"
        );
        drop(r1);
    }

    #[test]
    fn shareable_writers_coexist_but_keep_readers_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.img");
        std::fs::write(&p, [0u8; 512]).unwrap();
        let _w1 = ImageLock::acquire(&p, LockMode::SharedWrite).unwrap();
        let _w2 = ImageLock::acquire(&p, LockMode::SharedWrite).unwrap();
        assert!(ImageLock::acquire(&p, LockMode::ReadOnly).is_err());
        assert!(ImageLock::acquire(&p, LockMode::Exclusive).is_err());
    }

    /// Runs Debian's `qemu-io` on `p` (`-r`: read-only); None without it.
    fn qemu_io(p: &Path, readonly: bool) -> Option<std::process::Output> {
        let mut c = std::process::Command::new("qemu-io");
        c.args(["-f", "raw", "-c", "read 0 512"]);
        if readonly {
            c.arg("-r");
        }
        c.arg(p).output().ok()
    }

    #[test]
    fn a_read_only_image_is_shared_with_qemu_readers_and_not_writers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cd.iso");
        std::fs::write(&p, [0u8; 4096]).unwrap();
        let ours = ImageLock::acquire(&p, LockMode::ReadOnly).unwrap();
        let Some(reader) = qemu_io(&p, true) else {
            eprintln!("SKIP: qemu-io not installed (Debian package qemu-utils)");
            return;
        };
        assert!(
            reader.status.success(),
            "QEMU should read an ISO oxvirt has open read-only: {}",
            String::from_utf8_lossy(&reader.stderr)
        );
        let writer = qemu_io(&p, false).unwrap();
        let err = String::from_utf8_lossy(&writer.stderr);
        assert!(
            !writer.status.success() && err.contains("lock"),
            "QEMU must not write an image oxvirt reads: {err}"
        );
        drop(ours);
        // And the other way round: a QEMU writer keeps our reader out. qemu-io
        // holds the image while it waits on its stdin.
        let mut q = std::process::Command::new("qemu-io")
            .args(["-f", "raw"])
            .arg(&p)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut refused = false;
        while std::time::Instant::now() < deadline {
            if ImageLock::acquire(&p, LockMode::ReadOnly).is_err() {
                refused = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        drop(q.stdin.take());
        let _ = q.wait();
        assert!(refused, "a QEMU writer should keep our reader out");
    }
}
