//! Disk image backends: raw files and block devices, and qcow2 through `imago`.
//!
//! Requests move data directly between the image and guest memory: the raw
//! backend hands the guest buffers to `preadv`/`pwritev`, the qcow2 backend
//! hands them to imago as an I/O vector. No bounce buffer.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use vm_memory::VolatileSlice;

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
}

/// How a disk is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFlags {
    pub readonly: bool,
    /// Writes reach stable storage before completing (cache=writethrough/directsync).
    pub sync_writes: bool,
    /// Guest flushes are ignored (cache=unsafe).
    pub ignore_flush: bool,
}

/// A raw image: a regular file or a block device.
#[derive(Debug)]
pub struct RawDisk {
    file: File,
    size: u64,
    block_device: bool,
    ignore_flush: bool,
}

// BLKGETSIZE64 and BLKDISCARD from <linux/fs.h>.
nix::ioctl_read!(blk_get_size64, 0x12, 114, u64);
nix::ioctl_write_ptr_bad!(blk_discard, nix::request_code_none!(0x12, 119), [u64; 2]);

impl RawDisk {
    /// Opens `path` (read-only or read-write).
    pub fn open(path: &Path, flags: OpenFlags) -> io::Result<Self> {
        let mut o = OpenOptions::new();
        o.read(true).write(!flags.readonly);
        if flags.sync_writes {
            o.custom_flags(libc::O_DSYNC);
        }
        let file = o.open(path)?;
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
        Ok(RawDisk {
            file,
            size,
            block_device,
            ignore_flush: flags.ignore_flush,
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

    /// Runs `op` (preadv or pwritev) until every byte moved; `op` returning 0
    /// means end of file: reads zero-fill the rest, writes fail.
    fn transfer(&self, mut offset: u64, bufs: Bufs<'_, '_>, write: bool) -> io::Result<()> {
        let mut iov = Self::iovecs(bufs);
        let mut first = 0;
        while first < iov.len() {
            let rest = &iov[first..];
            let cnt = rest.len().min(1024) as libc::c_int;
            // SAFETY: every iovec points into guest memory owned by a VolatileSlice
            // that lives for this call (bufs), with its exact length; the kernel
            // reads or writes at most that many bytes. The fd is ours.
            let n = unsafe {
                if write {
                    libc::pwritev(
                        self.file.as_raw_fd(),
                        rest.as_ptr(),
                        cnt,
                        offset as libc::off_t,
                    )
                } else {
                    libc::preadv(
                        self.file.as_raw_fd(),
                        rest.as_ptr(),
                        cnt,
                        offset as libc::off_t,
                    )
                }
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
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
}

impl DiskBackend for RawDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()> {
        self.transfer(offset, bufs, false)
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
            std::os::unix::fs::FileExt::write_all_at(&self.file, &zero[..n], pos)?;
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
pub struct Qcow2Disk {
    access: imago::FormatAccess<imago::file::File>,
    ignore_flush: bool,
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
    pub fn open(path: &Path, flags: OpenFlags) -> io::Result<Self> {
        use imago::FormatDriverBuilder;
        let q = imago::qcow2::Qcow2::<imago::file::File>::builder_path(path)
            .write(!flags.readonly)
            .open(imago::PermissiveImplicitOpenGate::default())?;
        Ok(Qcow2Disk {
            access: imago::FormatAccess::new(q),
            ignore_flush: flags.ignore_flush,
        })
    }
}

impl DiskBackend for Qcow2Disk {
    fn size(&self) -> u64 {
        self.access.size()
    }

    fn read_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()> {
        let (v, _guard) = imago::io_buffers::IoVectorMut::from_volatile_slice(bufs.iter());
        self.access.readv(v, offset)
    }

    fn write_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()> {
        let (v, _guard) = imago::io_buffers::IoVector::from_volatile_slice(bufs.iter());
        self.access.writev(v, offset)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.ignore_flush {
            return Ok(());
        }
        self.access.flush()?;
        self.access.sync()
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.access.discard_to_any(offset, len)
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, _unmap: bool) -> io::Result<()> {
        self.access.write_zeroes(offset, len)
    }
}
