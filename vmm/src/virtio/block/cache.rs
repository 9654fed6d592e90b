//! libvirt disk cache modes (`<driver cache=…>`) as host I/O flags, the way QEMU
//! maps them:
//!
//! | mode                  | host page cache | `O_DSYNC` | guest flush      |
//! |-----------------------|-----------------|-----------|------------------|
//! | `none`                | bypassed (`O_DIRECT`) | no  | `fdatasync`      |
//! | `directsync`          | bypassed (`O_DIRECT`) | yes | `fdatasync`      |
//! | `writethrough`        | used            | yes       | `fdatasync`      |
//! | `writeback`, default  | used            | no        | `fdatasync`      |
//! | `unsafe`              | used            | no        | ignored          |
//!
//! `O_DIRECT` asks for aligned offsets, lengths and buffers ([`DioAlign`]); a
//! request that is not aligned goes through a second, buffered descriptor of the
//! same file (the kernel keeps the page cache and direct I/O coherent). A
//! filesystem that refuses `O_DIRECT` altogether (ramfs, some FUSE filesystems)
//! gets the page cache with a warning; QEMU refuses to start there instead, but
//! the guest's durability is the same either way, since flushes are honoured.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use machine_spec::CacheMode;
use tracing::warn;

/// How a disk image is opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenFlags {
    pub readonly: bool,
    /// Bypass the host page cache with `O_DIRECT` (cache=none, directsync).
    pub direct: bool,
    /// Writes reach stable storage before completing (cache=writethrough, directsync).
    pub sync_writes: bool,
    /// Guest flushes are ignored (cache=unsafe).
    pub ignore_flush: bool,
}

impl OpenFlags {
    /// The flags of a libvirt cache mode (a writable disk).
    pub fn for_cache(mode: CacheMode) -> Self {
        OpenFlags {
            readonly: false,
            direct: matches!(mode, CacheMode::None | CacheMode::Directsync),
            sync_writes: matches!(mode, CacheMode::Writethrough | CacheMode::Directsync),
            ignore_flush: matches!(mode, CacheMode::Unsafe),
        }
    }

    /// `open(2)` flags beyond the access mode.
    pub fn custom_flags(&self) -> libc::c_int {
        let mut f = 0;
        if self.direct {
            f |= libc::O_DIRECT;
        }
        if self.sync_writes {
            f |= libc::O_DSYNC;
        }
        f
    }

    /// These flags without `O_DIRECT`: the page-cache twin of a direct descriptor.
    pub fn buffered(self) -> Self {
        OpenFlags {
            direct: false,
            ..self
        }
    }
}

/// Opens `path` with `flags`. When `O_DIRECT` is asked for and the filesystem
/// refuses it (EINVAL), warns and opens through the page cache; the returned
/// flags say what was opened.
pub fn open_image(path: &Path, flags: OpenFlags) -> io::Result<(File, OpenFlags)> {
    match open_with(path, flags) {
        Err(e) if flags.direct && e.raw_os_error() == Some(libc::EINVAL) => {
            warn!(
                "disk image '{}': the filesystem refuses O_DIRECT ({e}); cache mode \
                 'none'/'directsync' falls back to the host page cache (guest flushes \
                 are still honoured)",
                path.display()
            );
            let flags = flags.buffered();
            Ok((open_with(path, flags)?, flags))
        }
        r => r.map(|f| (f, flags)),
    }
}

fn open_with(path: &Path, flags: OpenFlags) -> io::Result<File> {
    let access = crate::files::Access {
        write: !flags.readonly,
        direct: flags.direct,
    };
    if let Some(file) = crate::files::given(path, access) {
        let file = file?;
        // O_DSYNC (writethrough, directsync) cannot be set on an open description
        // (F_SETFL ignores it): whoever opened the image must have given it.
        if flags.sync_writes && !flags.readonly {
            use nix::fcntl::{fcntl, FcntlArg, OFlag};
            let now = OFlag::from_bits_truncate(fcntl(&file, FcntlArg::F_GETFL)?);
            if !now.contains(OFlag::O_DSYNC) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "'{}' was handed over without O_DSYNC, which its cache mode needs",
                        path.display()
                    ),
                ));
            }
        }
        return Ok(file);
    }
    OpenOptions::new()
        .read(true)
        .write(!flags.readonly)
        .custom_flags(flags.custom_flags())
        .open(path)
}

/// What `O_DIRECT` wants aligned on one file: buffer addresses to `mem`, file
/// offsets and every segment's length to `offset` (both powers of two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DioAlign {
    pub mem: usize,
    pub offset: usize,
}

/// Assumed when the kernel does not say: a page covers every device's logical block.
const PAGE: usize = 4096;

// BLKSSZGET from <linux/fs.h>: logical block size of a block device.
nix::ioctl_read_bad!(blk_ssz_get, libc::BLKSSZGET, libc::c_int);

impl DioAlign {
    /// Asks the kernel (`statx` `STATX_DIOALIGN`, Linux 6.1+; a block device's
    /// logical block size before that); a page for both where neither answers.
    pub fn probe(file: &File, block_device: bool) -> Self {
        if let Some(a) = Self::statx(file) {
            return a;
        }
        if block_device {
            let mut ssz: libc::c_int = 0;
            // SAFETY: BLKSSZGET writes one int into `ssz`, which outlives the call.
            if unsafe { blk_ssz_get(file.as_raw_fd(), &mut ssz) }.is_ok()
                && ssz > 0
                && (ssz as usize).is_power_of_two()
            {
                let ssz = ssz as usize;
                return DioAlign {
                    mem: ssz,
                    offset: ssz,
                };
            }
        }
        DioAlign {
            mem: PAGE,
            offset: PAGE,
        }
    }

    fn statx(file: &File) -> Option<Self> {
        // SAFETY: statx is plain old data; all-zero is a valid value.
        let mut st: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: AT_EMPTY_PATH with an empty C string stats the open fd into
        // `st`, which outlives the call.
        let rc = unsafe {
            libc::statx(
                file.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_EMPTY_PATH,
                libc::STATX_DIOALIGN,
                &mut st,
            )
        };
        if rc != 0 || st.stx_mask & libc::STATX_DIOALIGN == 0 {
            return None;
        }
        let (mem, offset) = (
            st.stx_dio_mem_align as usize,
            st.stx_dio_offset_align as usize,
        );
        (mem.is_power_of_two() && offset.is_power_of_two()).then_some(DioAlign { mem, offset })
    }

    /// Whether a transfer at `offset` of the `(address, length)` segments can go
    /// to an `O_DIRECT` descriptor as it is.
    pub fn fits(&self, offset: u64, segs: impl IntoIterator<Item = (usize, usize)>) -> bool {
        if !offset.is_multiple_of(self.offset as u64) {
            return false;
        }
        segs.into_iter()
            .all(|(addr, len)| addr.is_multiple_of(self.mem) && len.is_multiple_of(self.offset))
    }

    /// A stricter alignment after the kernel refused one this said fits
    /// (a filesystem that reported too little); None when already a page.
    pub fn stricter(&self) -> Option<Self> {
        (self.mem < PAGE || self.offset < PAGE).then_some(DioAlign {
            mem: PAGE,
            offset: PAGE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_modes_map_like_qemu() {
        let f = OpenFlags::for_cache;
        let table = [
            (CacheMode::None, true, false, false),
            (CacheMode::Directsync, true, true, false),
            (CacheMode::Writethrough, false, true, false),
            (CacheMode::Writeback, false, false, false),
            (CacheMode::Default, false, false, false),
            (CacheMode::Unsafe, false, false, true),
        ];
        for (mode, direct, sync, ignore) in table {
            let o = f(mode);
            assert_eq!(
                (o.direct, o.sync_writes, o.ignore_flush, o.readonly),
                (direct, sync, ignore, false),
                "{mode:?}"
            );
        }
        assert_eq!(f(CacheMode::None).custom_flags(), libc::O_DIRECT);
        assert_eq!(
            f(CacheMode::Directsync).custom_flags(),
            libc::O_DIRECT | libc::O_DSYNC
        );
        assert_eq!(f(CacheMode::Writethrough).custom_flags(), libc::O_DSYNC);
        assert_eq!(f(CacheMode::Writeback).custom_flags(), 0);
        assert_eq!(f(CacheMode::Unsafe).custom_flags(), 0);
        assert_eq!(
            f(CacheMode::Directsync).buffered().custom_flags(),
            libc::O_DSYNC
        );
    }

    #[test]
    fn opened_descriptors_carry_the_flags() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let direct_ok = super::super::direct_tests::takes_o_direct(
            dir.path(),
            "opened_descriptors_carry_the_flags (O_DIRECT part)",
        );
        let path = dir.path().join("img");
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        for mode in [
            CacheMode::None,
            CacheMode::Directsync,
            CacheMode::Writethrough,
            CacheMode::Writeback,
        ] {
            let (f, got) = open_image(&path, OpenFlags::for_cache(mode)).unwrap();
            // SAFETY: F_GETFL only reads the descriptor's flags.
            let fl = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
            let want = OpenFlags::for_cache(mode);
            if direct_ok {
                assert_eq!(got, want, "{mode:?}");
            } else {
                assert_eq!(got, want.buffered(), "{mode:?}: O_DIRECT refused");
            }
            assert_eq!(fl & libc::O_DIRECT != 0, got.direct, "{mode:?}");
            assert_eq!(fl & libc::O_DSYNC != 0, got.sync_writes, "{mode:?}");
        }
    }

    #[test]
    fn alignment_is_probed_and_checked() {
        let f = tempfile::tempfile_in("/var/tmp").unwrap();
        let a = DioAlign::probe(&f, false);
        assert!(
            a.mem.is_power_of_two() && a.offset.is_power_of_two(),
            "{a:?}"
        );
        assert!(a.offset >= 512 && a.offset <= PAGE, "{a:?}");
        let a = DioAlign {
            mem: 512,
            offset: 4096,
        };
        assert!(a.fits(8192, [(0x1000, 4096), (0x3200, 8192)]));
        assert!(!a.fits(512, [(0x1000, 4096)]), "offset");
        assert!(!a.fits(0, [(0x1100, 4096)]), "buffer address");
        assert!(
            !a.fits(0, [(0x1000, 4096), (0x3000, 512)]),
            "segment length"
        );
        assert_eq!(
            a.stricter(),
            Some(DioAlign {
                mem: PAGE,
                offset: PAGE
            })
        );
        assert_eq!(a.stricter().unwrap().stricter(), None);
    }
}
