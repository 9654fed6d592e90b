//! Image locking: two VMs must not open one writable image.
//!
//! An open-file-description lock (`F_OFD_SETLK`) on the whole image: exclusive
//! (write lock) for a writable, non-shareable disk; shared (read lock) for a
//! read-only or `<shareable/>` one. OFD locks belong to the open file, not the
//! process, so they also conflict within one process, and they vanish when the
//! VMM exits however it exits. QEMU's own image locks are OFD byte-range locks in
//! the same file, so a QEMU holding the image conflicts with us and vice versa.

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

/// A held image lock; dropping it releases the lock.
#[derive(Debug)]
pub struct ImageLock {
    _file: File,
}

impl ImageLock {
    /// Locks `path`: exclusively when `exclusive`, shared otherwise.
    pub fn acquire(path: &Path, exclusive: bool) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(exclusive)
            .open(path)
            .map_err(io)?;
        let lock = libc::flock {
            l_type: if exclusive {
                libc::F_WRLCK as libc::c_short
            } else {
                libc::F_RDLCK as libc::c_short
            },
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        match fcntl(&file, FcntlArg::F_OFD_SETLK(&lock)) {
            Ok(_) => Ok(ImageLock { _file: file }),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Err(LockError::Busy {
                kind: if exclusive { "write" } else { "shared" },
                path: path.to_path_buf(),
            }),
            Err(e) => Err(io(e.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_conflicts_and_shared_coexists() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("disk.img");
        std::fs::write(&p, [0u8; 512]).unwrap();
        let a = ImageLock::acquire(&p, true).unwrap();
        let err = ImageLock::acquire(&p, true).unwrap_err();
        assert!(
            err.to_string()
                .contains("Is another process using the image?"),
            "{err}"
        );
        assert!(
            ImageLock::acquire(&p, false).is_err(),
            "readers wait for the writer"
        );
        drop(a);
        let r1 = ImageLock::acquire(&p, false).unwrap();
        let _r2 = ImageLock::acquire(&p, false).unwrap();
        assert!(ImageLock::acquire(&p, true).is_err());
        drop(r1);
    }
}
