//! Disk image backends: raw files and block devices, and qcow2 through `imago`.
//!
//! Requests move data directly between the image and guest memory: the raw
//! backend hands the guest buffers to `preadv`/`pwritev`, the qcow2 backend
//! hands them to imago as an I/O vector. No bounce buffer.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use tracing::{debug, warn};
use vm_memory::VolatileSlice;

use super::cache::{self, DioAlign, OpenFlags};

/// Guest buffers of one request.
pub type Bufs<'a, 'b> = &'a [VolatileSlice<'b>];

/// What virtio-blk needs from an image.
pub trait DiskBackend: Send {
    /// Virtual disk size in bytes.
    fn size(&self) -> u64;
    /// Fills `bufs` from the disk at byte `offset`.
    fn read_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()>;
    /// Writes `bufs` to the disk at byte `offset`.
    fn write_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()>;
    /// Makes completed writes durable.
    fn flush(&mut self) -> io::Result<()>;
    /// Drops the data of a range (reads may then return anything).
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// Makes a range read as zeroes, deallocating it if `unmap`.
    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()>;
    /// Whether I/O bypasses the host page cache (`O_DIRECT`).
    fn is_direct(&self) -> bool {
        false
    }
    /// Where a plain `preadv` (`write`: `pwritev`) of `iov` at disk byte `offset`
    /// may go, so that the request can be submitted asynchronously (io_uring, I/O
    /// threads): a descriptor and the byte in it. None when the backend must do the
    /// transfer itself. The descriptor stays open as long as the backend.
    fn async_target(
        &mut self,
        _offset: u64,
        _iov: &[libc::iovec],
        _write: bool,
    ) -> Option<(RawFd, u64)> {
        None
    }
}

/// A raw image: a regular file or a block device.
#[derive(Debug)]
pub struct RawDisk {
    /// The image, `O_DIRECT` when `direct` is set.
    file: File,
    direct: Option<Direct>,
    size: u64,
    block_device: bool,
    ignore_flush: bool,
    /// Descriptors given up (O_DIRECT refused) but kept open: transfers in
    /// flight may still name them.
    retired: Vec<File>,
}

/// The `O_DIRECT` side of a raw image.
#[derive(Debug)]
struct Direct {
    align: DioAlign,
    /// The same image through the page cache, for requests `align` refuses.
    buffered: File,
    /// Whether the first misaligned request was logged.
    noted: bool,
}

// BLKGETSIZE64 and BLKDISCARD from <linux/fs.h>.
nix::ioctl_read!(blk_get_size64, 0x12, 114, u64);
nix::ioctl_write_ptr_bad!(blk_discard, nix::request_code_none!(0x12, 119), [u64; 2]);

impl RawDisk {
    /// Opens `path` as `flags` say (see [`super::cache`]).
    pub fn open(path: &Path, flags: OpenFlags) -> io::Result<Self> {
        let (file, flags) = cache::open_image(path, flags)?;
        let meta = file.metadata()?;
        let block_device = meta.file_type().is_block_device();
        let size = if block_device {
            let mut s = 0u64;
            // SAFETY: BLKGETSIZE64 writes one u64 into `s`, which outlives the call;
            // the fd is a block device we just opened.
            unsafe { blk_get_size64(file.as_raw_fd(), &mut s) }.map_err(io::Error::from)?;
            s
        } else {
            meta.len()
        };
        let direct = if flags.direct {
            Some(Direct {
                align: DioAlign::probe(&file, block_device),
                buffered: cache::open_image(path, flags.buffered())?.0,
                noted: false,
            })
        } else {
            None
        };
        Ok(RawDisk {
            file,
            direct,
            size,
            block_device,
            ignore_flush: flags.ignore_flush,
            retired: Vec::new(),
        })
    }

    fn iovecs(bufs: Bufs<'_, '_>) -> Vec<libc::iovec> {
        bufs.iter()
            .map(|s| libc::iovec {
                iov_base: s.ptr_guard_mut().as_ptr().cast(),
                iov_len: s.len(),
            })
            .collect()
    }

    /// The descriptor a transfer of `iov` at `offset` goes to: the direct one
    /// when its alignment allows, else the page-cache one.
    fn fd_for(&mut self, offset: u64, iov: &[libc::iovec]) -> (libc::c_int, bool) {
        let Some(d) = &mut self.direct else {
            return (self.file.as_raw_fd(), false);
        };
        let segs = iov.iter().map(|v| (v.iov_base as usize, v.iov_len));
        if d.align.fits(offset, segs) {
            return (self.file.as_raw_fd(), true);
        }
        if !d.noted {
            d.noted = true;
            debug!(
                "virtio-blk: request at byte {offset} not aligned for O_DIRECT ({:?}); \
                 such requests go through the page cache",
                d.align
            );
        }
        (d.buffered.as_raw_fd(), false)
    }

    /// The kernel refused an O_DIRECT transfer that looked aligned: demand more
    /// alignment, or give up on O_DIRECT when a page did not satisfy it either.
    fn direct_refused(&mut self, e: &io::Error) {
        let Some(d) = &mut self.direct else {
            return;
        };
        match d.align.stricter() {
            Some(a) => {
                warn!(
                    "virtio-blk: O_DIRECT refused with {:?} ({e}); using {a:?}",
                    d.align
                );
                d.align = a;
            }
            None => {
                warn!("virtio-blk: O_DIRECT refused page-aligned I/O ({e}); using the host page cache");
                let d = self.direct.take().expect("checked above");
                let direct = std::mem::replace(&mut self.file, d.buffered);
                self.retired.push(direct);
            }
        }
    }

    /// Runs preadv or pwritev until every byte moved; a return of 0 means end of
    /// file: reads zero-fill the rest, writes fail. Each call picks the direct or
    /// the page-cache descriptor for what is left (a short direct transfer can
    /// leave a misaligned rest).
    fn transfer(&mut self, mut offset: u64, bufs: Bufs<'_, '_>, write: bool) -> io::Result<()> {
        let mut iov = Self::iovecs(bufs);
        let mut first = 0;
        while first < iov.len() {
            let rest = &iov[first..];
            let cnt = rest.len().min(1024);
            let (fd, direct) = self.fd_for(offset, &rest[..cnt]);
            // SAFETY: every iovec points into guest memory owned by a VolatileSlice
            // that lives for this call (bufs), with its exact length; the kernel
            // reads or writes at most that many bytes. The fd is ours.
            let n = unsafe {
                if write {
                    libc::pwritev(fd, rest.as_ptr(), cnt as libc::c_int, offset as libc::off_t)
                } else {
                    libc::preadv(fd, rest.as_ptr(), cnt as libc::c_int, offset as libc::off_t)
                }
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if direct && e.raw_os_error() == Some(libc::EINVAL) {
                    // Alignment is checked before any I/O: nothing moved, retry.
                    self.direct_refused(&e);
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                if write {
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
                }
                // Past the end of the file: the rest reads as zeroes.
                for (i, b) in bufs.iter().enumerate().skip(first) {
                    let done = b.len() - iov[i].iov_len;
                    let _ = vm_memory::Bytes::write_slice(b, &vec![0u8; iov[i].iov_len], done);
                }
                return Ok(());
            }
            offset += n as u64;
            let mut n = n as usize;
            while n > 0 && first < iov.len() {
                let take = n.min(iov[first].iov_len);
                iov[first].iov_len -= take;
                // SAFETY: advancing within the same iovec by at most its length.
                iov[first].iov_base = unsafe { iov[first].iov_base.cast::<u8>().add(take) }.cast();
                n -= take;
                if iov[first].iov_len == 0 {
                    first += 1;
                }
            }
            while first < iov.len() && iov[first].iov_len == 0 {
                first += 1;
            }
        }
        Ok(())
    }

    /// The descriptor for small host-made writes (zero fill), which are never
    /// aligned for O_DIRECT.
    fn buffered_file(&self) -> &File {
        self.direct.as_ref().map_or(&self.file, |d| &d.buffered)
    }
}

impl DiskBackend for RawDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    fn read_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()> {
        self.transfer(offset, bufs, false)
    }

    fn async_target(
        &mut self,
        offset: u64,
        iov: &[libc::iovec],
        _write: bool,
    ) -> Option<(RawFd, u64)> {
        Some((self.fd_for(offset, iov).0, offset))
    }

    fn write_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()> {
        self.transfer(offset, bufs, true)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.ignore_flush {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if self.block_device {
            let range = [offset, len];
            // SAFETY: BLKDISCARD reads two u64 (start, length) from `range`,
            // which outlives the call.
            unsafe { blk_discard(self.file.as_raw_fd(), &range) }.map_err(io::Error::from)?;
            return Ok(());
        }
        fallocate(
            &self.file,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        let mode = if unmap && !self.block_device {
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
        } else {
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
        };
        if fallocate(&self.file, mode, offset, len).is_ok() {
            return Ok(());
        }
        // Fallback: write zeroes in 64 KiB pieces.
        let zero = vec![0u8; 64 << 10];
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let n = (end - pos).min(zero.len() as u64) as usize;
            std::os::unix::fs::FileExt::write_all_at(self.buffered_file(), &zero[..n], pos)?;
            pos += n as u64;
        }
        Ok(())
    }
}

fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: fallocate only reads its integer arguments; the fd is open.
    let r = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            mode,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A qcow2 image (and its backing chain) through imago.
///
/// Reads and writes of clusters the image itself holds (allocated, and for writes
/// not shared with a snapshot) go to the image file directly at the offset imago maps
/// them to, through the queue's engine with many in flight, as QEMU's qcow2 driver
/// sends guest data to its file; everything else (backing data, zero or unallocated
/// clusters, allocation, compressed clusters) runs through imago on the queue worker.
/// A request that fails on the direct path is redone through imago.
pub struct Qcow2Disk {
    access: imago::FormatAccess<imago::file::File>,
    sync_writes: bool,
    ignore_flush: bool,
    /// The image file for direct transfers: opened like imago's (`O_DIRECT` when
    /// imago's is); None when the image keeps its data elsewhere (an external data
    /// file) or every write must be synced (`sync_writes`: imago does that).
    data: Option<File>,
    /// Alignment a direct transfer needs (offset, buffer addresses and lengths):
    /// imago's for its `O_DIRECT` file, 1 through the page cache.
    align: usize,
}

impl std::fmt::Debug for Qcow2Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2Disk")
            .field("size", &self.access.size())
            .finish()
    }
}

impl Qcow2Disk {
    /// Opens a qcow2 image; backing files named in its header are opened
    /// read-only (relative names resolve against the image's directory).
    ///
    /// With `direct`, every file of the chain is opened `O_DIRECT` and imago
    /// realigns requests itself (bounce buffers, read-modify-write); a filesystem
    /// that refuses `O_DIRECT` gets the page cache with a warning, as for raw
    /// images. imago has no `O_DSYNC`: `sync_writes` flushes after every write.
    pub fn open(path: &Path, flags: OpenFlags) -> io::Result<Self> {
        let access = match Self::open_with(path, flags) {
            Err(e) if flags.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                warn!(
                    "disk image '{}': cannot open with O_DIRECT ({e}); cache mode \
                     'none'/'directsync' falls back to the host page cache (guest \
                     flushes are still honoured)",
                    path.display()
                );
                Self::open_with(path, flags.buffered())?
            }
            r => r?,
        };
        let mut disk = Qcow2Disk {
            access,
            sync_writes: flags.sync_writes,
            ignore_flush: flags.ignore_flush,
            data: None,
            align: 1,
        };
        if !flags.sync_writes && !external_data_file(path) {
            disk.align = disk.access.mem_align().max(disk.access.req_align());
            let access = crate::files::Access {
                write: !flags.readonly,
                direct: disk.align > 1,
            };
            match crate::files::open(path, access) {
                Ok(f) => disk.data = Some(f),
                Err(e) => debug!(
                    "disk image '{}': no direct transfers ({e}); every request goes through imago",
                    path.display()
                ),
            }
        }
        Ok(disk)
    }

    fn open_with(
        path: &Path,
        flags: OpenFlags,
    ) -> io::Result<imago::FormatAccess<imago::file::File>> {
        use imago::qcow2::Qcow2;
        use imago::FormatDriverBuilder;
        let access = crate::files::Access {
            write: !flags.readonly,
            direct: flags.direct,
        };
        let builder = match crate::files::given(path, access) {
            Some(file) => {
                // The real path, so that relative backing names resolve as by path.
                let opts = imago::StorageOpenOptions::new()
                    .filename(crate::files::real_path(path))
                    .write(access.write)
                    .direct(access.direct);
                Qcow2::builder(imago::file::File::from_open_file(file?, opts)?)
            }
            None => Qcow2::<imago::file::File>::builder_path(path),
        };
        let q = builder
            .write(!flags.readonly)
            .storage_open_options(imago::StorageOpenOptions::new().direct(flags.direct))
            .open(GivenFilesGate)?;
        Ok(imago::FormatAccess::new(q))
    }
}

/// Opens a qcow2's backing files (and external data file) as the top image is
/// opened: from the descriptors handed to the VMM where one stands for the path
/// ([`crate::files`]), else by path. A backing file is opened read-only.
#[derive(Debug, Clone, Copy, Default)]
struct GivenFilesGate;

impl imago::format::gate::ImplicitOpenGate<imago::file::File> for GivenFilesGate {
    fn open_format<F: imago::FormatDriverBuilder<imago::file::File>>(
        &mut self,
        builder: F,
    ) -> io::Result<imago::FormatAccess<imago::file::File>> {
        Ok(imago::FormatAccess::new(builder.open(*self)?))
    }

    fn open_storage(&mut self, opts: imago::StorageOpenOptions) -> io::Result<imago::file::File> {
        use imago::Storage;
        let access = crate::files::Access {
            write: opts.get_writable(),
            direct: opts.get_direct(),
        };
        match opts
            .get_filename()
            .and_then(|p| crate::files::given(p, access))
        {
            Some(file) => imago::file::File::from_open_file(file?, opts),
            None => imago::file::File::open(opts),
        }
    }
}

impl Qcow2Disk {
    /// Writes imago's cached metadata and syncs every file of the image.
    fn sync(&mut self) -> io::Result<()> {
        self.access.flush()?;
        self.access.sync()
    }
}

impl DiskBackend for Qcow2Disk {
    fn size(&self) -> u64 {
        self.access.size()
    }

    /// imago asks for alignment only of files it opened with O_DIRECT.
    fn is_direct(&self) -> bool {
        self.access.mem_align() > 1 || self.access.req_align() > 1
    }

    fn read_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()> {
        let (v, _guard) = imago::io_buffers::IoVectorMut::from_volatile_slice(bufs.iter());
        self.access.readv(v, offset)
    }

    fn write_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()> {
        let (v, _guard) = imago::io_buffers::IoVector::from_volatile_slice(bufs.iter());
        self.access.writev(v, offset)?;
        if self.sync_writes {
            self.sync()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.ignore_flush {
            return Ok(());
        }
        self.sync()
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.access.discard_to_any(offset, len)
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, _unmap: bool) -> io::Result<()> {
        self.access.write_zeroes(offset, len)
    }

    fn async_target(
        &mut self,
        offset: u64,
        iov: &[libc::iovec],
        write: bool,
    ) -> Option<(RawFd, u64)> {
        let data = self.data.as_ref()?;
        let a = self.align;
        let aligned = |v: usize| v.is_multiple_of(a);
        if !aligned(offset as usize)
            || !iov
                .iter()
                .all(|v| aligned(v.iov_base as usize) && aligned(v.iov_len))
        {
            return None;
        }
        let len: u64 = iov.iter().map(|v| v.iov_len as u64).sum();
        // This layer's own clusters only: backing data is read through imago.
        match self.access.get_shallow_mapping(offset, len).ok()? {
            (
                imago::ShallowMapping::Raw {
                    offset: at,
                    writable,
                    ..
                },
                mapped,
            ) if mapped >= len && (writable || !write) => Some((data.as_raw_fd(), at)),
            _ => None,
        }
    }
}

/// Whether the qcow2 image at `path` keeps its data in an external data file
/// (incompatible feature bit 2 of a version 3 header); unreadable counts as yes.
fn external_data_file(path: &Path) -> bool {
    let mut h = [0u8; 80];
    let read = crate::files::open(path, crate::files::Access::READ).and_then(|f| {
        use std::os::unix::fs::FileExt;
        f.read_exact_at(&mut h, 0)
    });
    if read.is_err() {
        return true;
    }
    let version = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let incompatible = u64::from_be_bytes(h[72..80].try_into().unwrap_or_default());
    version >= 3 && incompatible & (1 << 2) != 0
}
