//! virtio-blk (virtio 1.2 §5.2).
//!
//! A request is a chain: a 16-byte read-only header (type, reserved, sector),
//! the data buffers, and one device-writable status byte at the very end.
//! [`RequestHandler`] executes one chain against a [`DiskBackend`]; [`Block`] is
//! the [`VirtioDevice`] that runs it on a worker thread.

pub mod backend;
pub mod cache;
pub mod engine;
mod inflight;
pub mod lock;

use std::os::fd::RawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, VolatileSlice};

use super::queue_util::{segments, Segment};
use super::worker::Worker;
use super::{
    device_type, read_config_bytes, ActivateError, Activation, GuestMem, VirtioDevice,
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
pub use backend::{DiskBackend, Qcow2Disk, RawDisk};
pub use cache::OpenFlags;
use engine::Engine;
pub use engine::IoMode;
use inflight::QueueWorker;
pub use lock::{ImageLock, LockError, LockMode};

/// Sector size the protocol counts in.
pub const SECTOR: u64 = 512;
/// Queue size offered.
const QUEUE_SIZE: u16 = 256;
/// Largest number of data segments per request we advertise.
const SEG_MAX: u32 = 126;
/// Largest discard/write-zeroes request, in sectors.
const MAX_DISCARD_SECTORS: u32 = 1 << 22;
/// Segments per discard or write-zeroes request (config space max_discard_seg and
/// max_write_zeroes_seg).
const MAX_DWZ_SEGS: u32 = 1;

/// Feature bits.
pub mod features {
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const MQ: u64 = 1 << 12;
    pub const DISCARD: u64 = 1 << 13;
    pub const WRITE_ZEROES: u64 = 1 << 14;
}

/// Request types.
pub mod req {
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
    pub const FLUSH: u32 = 4;
    pub const GET_ID: u32 = 8;
    pub const DISCARD: u32 = 11;
    pub const WRITE_ZEROES: u32 = 13;
}

/// Request status codes.
pub mod status {
    pub const OK: u8 = 0;
    pub const IOERR: u8 = 1;
    pub const UNSUPP: u8 = 2;
}

/// Length of the GET_ID answer.
pub const ID_BYTES: usize = 20;

/// Errors opening a disk.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The image could not be opened.
    #[error("cannot open disk image '{path}'")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The image is locked by another VM.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// How to open a disk: the spec's `Disk` in device terms.
#[derive(Debug, Clone)]
pub struct DiskConfig<'a> {
    pub path: &'a Path,
    pub qcow2: bool,
    pub readonly: bool,
    pub shareable: bool,
    pub serial: Option<&'a str>,
    pub discard: bool,
    pub flags: OpenFlags,
}

/// I/O counters of one disk (QMP `query-blockstats`), shared with the monitor.
#[derive(Debug, Default)]
pub struct BlockStats {
    pub rd_bytes: AtomicU64,
    pub wr_bytes: AtomicU64,
    pub rd_ops: AtomicU64,
    pub wr_ops: AtomicU64,
    pub flush_ops: AtomicU64,
    pub unmap_ops: AtomicU64,
    pub unmap_bytes: AtomicU64,
    pub rd_ns: AtomicU64,
    pub wr_ns: AtomicU64,
    pub flush_ns: AtomicU64,
    pub failed_rd: AtomicU64,
    pub failed_wr: AtomicU64,
    pub failed_flush: AtomicU64,
    pub wr_highest_offset: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl BlockStats {
    /// Counts one read or write of `len` bytes at `off` that took `took`.
    pub(crate) fn count_rw(&self, write: bool, off: u64, len: u64, took: Duration, ok: bool) {
        let ns = took.as_nanos() as u64;
        match (ok, write) {
            (true, true) => {
                bump(&self.wr_ops, 1);
                bump(&self.wr_bytes, len);
                bump(&self.wr_ns, ns);
                self.wr_highest_offset
                    .fetch_max(off + len, Ordering::Relaxed);
            }
            (true, false) => {
                bump(&self.rd_ops, 1);
                bump(&self.rd_bytes, len);
                bump(&self.rd_ns, ns);
            }
            (false, true) => bump(&self.failed_wr, 1),
            (false, false) => bump(&self.failed_rd, 1),
        }
    }
}

/// A request chain taken apart: type, first sector, data buffers, status byte.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub rtype: u32,
    pub sector: u64,
    pub data: Vec<Segment>,
    pub data_len: u64,
    pub status: GuestAddress,
}

impl Request {
    /// Parses a chain's segments; None when it is too malformed to carry a
    /// status byte (the chain is then returned with a used length of 0).
    pub(crate) fn parse(mem: &GuestMem, segs: &[Segment]) -> Option<Self> {
        let total: u64 = segs.iter().map(|s| u64::from(s.len)).sum();
        let last = segs.last().copied()?;
        if total < 17 || !last.write || last.len == 0 {
            warn!("virtio-blk: malformed request ({} bytes)", total);
            return None;
        }
        // A buffer that wraps past the top of the address space is no guest memory;
        // the sums below overflowed on it (a panic in debug builds, and a panicking
        // worker ends the VMM). Found by the guest fuzzer, seed 27 (fuzzops=4000
        // fuzzvq=60, q35).
        if wraps(segs) {
            warn!("virtio-blk: malformed request (a buffer wraps the address space)");
            return None;
        }
        let status = GuestAddress(last.addr.0 + u64::from(last.len) - 1);
        let mut hdr = [0u8; 16];
        let mut p = 0;
        for s in &sub_range(segs, 0, 16) {
            if s.write
                || mem
                    .read_slice(&mut hdr[p..p + s.len as usize], s.addr)
                    .is_err()
            {
                return None;
            }
            p += s.len as usize;
        }
        let data = sub_range(segs, 16, total - 1);
        Some(Request {
            rtype: u32::from_le_bytes(hdr[0..4].try_into().expect("4 bytes")),
            sector: u64::from_le_bytes(hdr[8..16].try_into().expect("8 bytes")),
            data_len: data.iter().map(|s| u64::from(s.len)).sum(),
            data,
            status,
        })
    }
}

/// Executes requests against one image.
pub struct RequestHandler {
    backend: Box<dyn DiskBackend>,
    readonly: bool,
    discard: bool,
    id: [u8; ID_BYTES],
    stats: Arc<BlockStats>,
}

/// Whether a buffer of the chain wraps past the top of the address space: no guest
/// memory, and sums over it overflow (a panic in debug builds; a panicking worker
/// ends the VMM).
pub(crate) fn wraps(segs: &[Segment]) -> bool {
    segs.iter()
        .any(|s| s.addr.0.checked_add(u64::from(s.len)).is_none())
}

/// Bytes `start..end` of a chain's concatenated segments, as segments. A segment
/// that would wrap the address space ([`wraps`]; callers refuse such chains first)
/// ends at the top of it, where no guest memory is, so an access through it fails.
pub(crate) fn sub_range(segs: &[Segment], start: u64, end: u64) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    for s in segs {
        let (a, b) = (pos, pos + u64::from(s.len));
        pos = b;
        let (lo, hi) = (a.max(start), b.min(end));
        if lo < hi {
            out.push(Segment {
                addr: GuestAddress(s.addr.0.saturating_add(lo - a)),
                len: (hi - lo) as u32,
                write: s.write,
            });
        }
    }
    out
}

impl RequestHandler {
    /// A handler for `backend`; `serial` becomes the GET_ID answer.
    pub fn new(
        backend: Box<dyn DiskBackend>,
        readonly: bool,
        discard: bool,
        serial: Option<&str>,
    ) -> Self {
        let mut id = [0u8; ID_BYTES];
        if let Some(s) = serial {
            let n = s.len().min(ID_BYTES);
            id[..n].copy_from_slice(&s.as_bytes()[..n]);
        }
        RequestHandler {
            backend,
            readonly,
            discard,
            id,
            stats: Arc::new(BlockStats::default()),
        }
    }

    /// Counts into `stats` (kept by the caller across device resets).
    pub fn with_stats(mut self, stats: Arc<BlockStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Disk size in bytes.
    pub fn size(&self) -> u64 {
        self.backend.size()
    }

    /// Executes one request chain; returns the bytes written into it (the used
    /// length). A chain too malformed to carry a status byte is returned with 0.
    pub fn process(&mut self, mem: &GuestMem, chain: DescriptorChain<&GuestMem>) -> u32 {
        let Some(r) = Request::parse(mem, &segments(chain)) else {
            return 0;
        };
        let (st, written) = self.run(mem, &r);
        let _ = mem.write_obj(st, r.status);
        written + 1
    }

    /// Executes a parsed request; returns its status and the data bytes written
    /// into the guest's buffers.
    pub(crate) fn run(&mut self, mem: &GuestMem, r: &Request) -> (u8, u32) {
        self.execute(mem, r.rtype, r.sector, &r.data, r.data_len)
    }

    /// The byte offset of a read or write, or the status that fails it (a write
    /// to a read-only disk, buffers pointing the wrong way, out of range).
    pub(crate) fn rw_offset(
        &self,
        write: bool,
        sector: u64,
        data: &[Segment],
        data_len: u64,
    ) -> Result<u64, u8> {
        if write && self.readonly {
            return Err(status::IOERR);
        }
        // Data buffers must point the right way: device-writable for reads.
        if data.iter().any(|s| s.write == write) || !data_len.is_multiple_of(SECTOR) {
            return Err(status::IOERR);
        }
        sector
            .checked_mul(SECTOR)
            .filter(|o| {
                o.checked_add(data_len)
                    .is_some_and(|end| end <= self.backend.size())
            })
            .ok_or(status::IOERR)
    }

    /// The descriptor and byte an asynchronous transfer of `iov` at disk byte
    /// `offset` may go to (None: the backend does this one itself, e.g. a qcow2
    /// cluster it must allocate).
    pub(crate) fn async_target(
        &mut self,
        offset: u64,
        iov: &[libc::iovec],
        write: bool,
    ) -> Option<(RawFd, u64)> {
        self.backend.async_target(offset, iov, write)
    }

    /// The counters this handler updates.
    pub(crate) fn stats(&self) -> Arc<BlockStats> {
        self.stats.clone()
    }

    fn execute(
        &mut self,
        mem: &GuestMem,
        rtype: u32,
        sector: u64,
        data: &[Segment],
        data_len: u64,
    ) -> (u8, u32) {
        match rtype {
            req::IN | req::OUT => {
                let write = rtype == req::OUT;
                let off = match self.rw_offset(write, sector, data, data_len) {
                    Ok(off) => off,
                    Err(st) => return (st, 0),
                };
                let Some(slices) = guest_slices(mem, data) else {
                    return (status::IOERR, 0);
                };
                let t = Instant::now();
                let r = if write {
                    self.backend.write_at(off, &slices)
                } else {
                    self.backend.read_at(off, &slices)
                };
                self.stats
                    .count_rw(write, off, data_len, t.elapsed(), r.is_ok());
                match r {
                    Ok(()) => (status::OK, if write { 0 } else { data_len as u32 }),
                    Err(e) => {
                        warn!(
                            "virtio-blk: {} at sector {sector}: {e}",
                            if write { "write" } else { "read" }
                        );
                        (status::IOERR, 0)
                    }
                }
            }
            req::FLUSH => match self.timed_flush() {
                Ok(()) => (status::OK, 0),
                Err(e) => {
                    bump(&self.stats.failed_flush, 1);
                    warn!("virtio-blk: flush: {e}");
                    (status::IOERR, 0)
                }
            },
            req::GET_ID => {
                let mut left = ID_BYTES;
                let mut written = 0u32;
                for s in data {
                    if !s.write || left == 0 {
                        break;
                    }
                    let n = (s.len as usize).min(left);
                    let from = ID_BYTES - left;
                    if mem.write_slice(&self.id[from..from + n], s.addr).is_err() {
                        return (status::IOERR, 0);
                    }
                    left -= n;
                    written += n as u32;
                }
                (status::OK, written)
            }
            req::DISCARD | req::WRITE_ZEROES => {
                if self.readonly {
                    return (status::IOERR, 0);
                }
                if rtype == req::DISCARD && !self.discard {
                    return (status::UNSUPP, 0);
                }
                // Each 16-byte segment: le64 sector, le32 count, le32 flags. The config
                // space allows one (max_discard_seg, max_write_zeroes_seg): more is
                // UNSUPP as QEMU answers it, before anything is allocated (a 4 GiB
                // descriptor was a 4 GiB allocation, the class of bug the guest fuzzer
                // found in virtio-console).
                if data_len > 16 * u64::from(MAX_DWZ_SEGS) {
                    return (status::UNSUPP, 0);
                }
                let mut raw = vec![0u8; data_len as usize];
                let mut p = 0;
                for s in data {
                    if mem
                        .read_slice(&mut raw[p..p + s.len as usize], s.addr)
                        .is_err()
                    {
                        return (status::IOERR, 0);
                    }
                    p += s.len as usize;
                }
                if !raw.len().is_multiple_of(16) || raw.is_empty() {
                    return (status::UNSUPP, 0);
                }
                for seg in raw.chunks_exact(16) {
                    let sec = u64::from_le_bytes(seg[0..8].try_into().expect("8 bytes"));
                    let num = u32::from_le_bytes(seg[8..12].try_into().expect("4 bytes"));
                    let flags = u32::from_le_bytes(seg[12..16].try_into().expect("4 bytes"));
                    let (off, len) = (sec.wrapping_mul(SECTOR), u64::from(num) * SECTOR);
                    // A sector past 2^55 overflowed here (a panic in debug builds).
                    let end = sec.checked_mul(SECTOR).and_then(|o| o.checked_add(len));
                    if num > MAX_DISCARD_SECTORS || end.is_none_or(|e| e > self.backend.size()) {
                        return (status::IOERR, 0);
                    }
                    if rtype == req::DISCARD && flags != 0 {
                        return (status::UNSUPP, 0);
                    }
                    bump(&self.stats.unmap_ops, 1);
                    bump(&self.stats.unmap_bytes, len);
                    let r = if rtype == req::DISCARD {
                        self.backend.discard(off, len)
                    } else {
                        self.backend.write_zeroes(off, len, flags & 1 != 0)
                    };
                    if let Err(e) = r {
                        debug!("virtio-blk: discard/write-zeroes at sector {sec}: {e}");
                        // A discard the host cannot do is still a valid no-op.
                        if rtype == req::WRITE_ZEROES {
                            return (status::IOERR, 0);
                        }
                    }
                }
                (status::OK, 0)
            }
            _ => (status::UNSUPP, 0),
        }
    }
}

impl RequestHandler {
    fn timed_flush(&mut self) -> std::io::Result<()> {
        let t = Instant::now();
        let r = self.backend.flush();
        bump(&self.stats.flush_ops, 1);
        bump(&self.stats.flush_ns, t.elapsed().as_nanos() as u64);
        r
    }
}

/// Guest memory of `segs` as volatile slices (None if any is outside RAM).
pub(crate) fn guest_slices<'m>(
    mem: &'m GuestMem,
    segs: &[Segment],
) -> Option<Vec<VolatileSlice<'m>>> {
    segs.iter()
        .map(|s| mem.get_slice(s.addr, s.len as usize).ok())
        .collect()
}

/// Opens and locks the image `cfg` describes, as every disk front end does
/// (virtio-blk, SCSI units); `id` names the device in the log.
pub fn open_backend(
    id: &str,
    cfg: &DiskConfig<'_>,
) -> Result<(Box<dyn DiskBackend>, ImageLock), BlockError> {
    let mode = match (cfg.readonly, cfg.shareable) {
        (true, _) => LockMode::ReadOnly,
        (false, true) => LockMode::SharedWrite,
        (false, false) => LockMode::Exclusive,
    };
    let lock = ImageLock::acquire(cfg.path, mode)?;
    let flags = OpenFlags {
        readonly: cfg.readonly,
        ..cfg.flags
    };
    let open_err = |source| BlockError::Open {
        path: cfg.path.to_path_buf(),
        source,
    };
    let backend: Box<dyn DiskBackend> = if cfg.qcow2 {
        Box::new(Qcow2Disk::open(cfg.path, flags).map_err(open_err)?)
    } else {
        Box::new(RawDisk::open(cfg.path, flags).map_err(open_err)?)
    };
    info!(
        "{id}: '{}' opened {}{}{}",
        cfg.path.display(),
        if backend.is_direct() {
            "O_DIRECT"
        } else {
            "through the host page cache"
        },
        if flags.sync_writes { ", O_DSYNC" } else { "" },
        if flags.ignore_flush {
            ", guest flushes ignored"
        } else {
            ""
        },
    );
    Ok((backend, lock))
}

/// The virtio-blk device.
pub struct Block {
    id: String,
    readonly: bool,
    discard: bool,
    capacity: u64,
    /// Shared by the queue workers for what they run synchronously.
    handler: Arc<Mutex<RequestHandler>>,
    /// Request queues offered (`num_queues`).
    queues: u16,
    io: IoMode,
    /// Idle submission engines, one per queue: made before the guest runs (I/O
    /// threads are best started before the VMM's threads take their seccomp
    /// filters) and kept across device resets.
    engines: Vec<Engine>,
    workers: Vec<Worker<QueueWorker>>,
    _lock: Option<ImageLock>,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("id", &self.id)
            .field("readonly", &self.readonly)
            .field("capacity", &self.capacity)
            .field("queues", &self.queues)
            .finish()
    }
}

impl Block {
    /// Opens and locks the image `cfg` describes; I/O is counted in `stats`.
    pub fn open(
        id: &str,
        cfg: &DiskConfig<'_>,
        stats: Arc<BlockStats>,
    ) -> Result<Self, BlockError> {
        let (backend, lock) = open_backend(id, cfg)?;
        let handler =
            RequestHandler::new(backend, cfg.readonly, cfg.discard, cfg.serial).with_stats(stats);
        let mut b = Self::with_handler(id, handler, cfg.readonly, cfg.discard);
        b._lock = Some(lock);
        Ok(b)
    }

    /// A device over an already open backend (tests, benchmarks).
    pub fn with_backend(
        id: &str,
        backend: Box<dyn DiskBackend>,
        readonly: bool,
        discard: bool,
        serial: Option<&str>,
    ) -> Self {
        let handler = RequestHandler::new(backend, readonly, discard, serial);
        Self::with_handler(id, handler, readonly, discard)
    }

    fn with_handler(id: &str, handler: RequestHandler, readonly: bool, discard: bool) -> Self {
        Block {
            id: id.to_string(),
            readonly,
            discard,
            capacity: handler.size() / SECTOR,
            handler: Arc::new(Mutex::new(handler)),
            queues: 1,
            io: IoMode::Auto,
            engines: Vec::new(),
            workers: Vec::new(),
            _lock: None,
        }
    }

    /// Offers `queues` request queues (at least 1), each served by its own
    /// worker with requests submitted as `io` says.
    pub fn with_queueing(mut self, queues: u16, io: IoMode) -> Self {
        self.queues = queues.max(1);
        self.io = io;
        if let Err(e) = self.make_engines() {
            // Retried at activation, where the error reaches the guest's driver.
            warn!("{}: cannot set up request submission: {e}", self.id);
        }
        self
    }

    /// Guest-visible size in bytes (whole sectors).
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity * SECTOR
    }

    fn config_bytes(&self) -> [u8; 60] {
        let mut c = [0u8; 60];
        c[0..8].copy_from_slice(&self.capacity.to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c[20..24].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        // num_queues (read by drivers that negotiated MQ).
        c[34..36].copy_from_slice(&self.queues.to_le_bytes());
        c[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        c[40..44].copy_from_slice(&MAX_DWZ_SEGS.to_le_bytes());
        c[44..48].copy_from_slice(&1u32.to_le_bytes());
        c[48..52].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        c[52..56].copy_from_slice(&MAX_DWZ_SEGS.to_le_bytes());
        c[56] = 1;
        c
    }

    /// Makes the missing submission engines (one per queue); the first time,
    /// logs which path requests take.
    fn make_engines(&mut self) -> std::io::Result<()> {
        let first = self.engines.is_empty() && self.workers.is_empty();
        while self.engines.len() + self.workers.len() < usize::from(self.queues) {
            let (engine, why_not) = Engine::new(self.io, u32::from(QUEUE_SIZE))?;
            if first && self.engines.is_empty() {
                let how = match &why_not {
                    Some(why) if self.io == IoMode::IoUring => {
                        warn!("{}: io='io_uring' asked for, but {why}", self.id);
                        format!("{} ({why})", engine.describe())
                    }
                    Some(why) => format!("{} ({why})", engine.describe()),
                    None => engine.describe(),
                };
                info!(
                    "{}: virtio-blk with {} queue(s) of {QUEUE_SIZE}, each on its own \
                     worker; reads and writes go through {how}",
                    self.id, self.queues
                );
            }
            self.engines.push(engine);
        }
        Ok(())
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }

    fn name(&self) -> &'static str {
        "virtio-blk"
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE; usize::from(self.queues)]
    }

    fn features(&self) -> u64 {
        let mut f = features::SEG_MAX
            | features::BLK_SIZE
            | features::FLUSH
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_RING_F_INDIRECT_DESC;
        if self.queues > 1 {
            f |= features::MQ;
        }
        if self.readonly {
            f |= features::RO;
        } else {
            f |= features::WRITE_ZEROES;
            if self.discard {
                f |= features::DISCARD;
            }
        }
        f
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config_bytes(), offset, data);
    }

    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        if !act.queues.iter().any(|q| q.index == 0) {
            return Err(ActivateError::MissingQueue {
                device: "virtio-blk",
                queue: 0,
            });
        }
        let mut act = act;
        for aq in act.take_queues() {
            let name = format!("_{}q{}", self.id, aq.index);
            let engine = self.make_engines().and_then(|()| {
                self.engines
                    .pop()
                    .ok_or(std::io::ErrorKind::NotFound.into())
            });
            let worker = engine.and_then(|e| {
                let w = QueueWorker::new(self.handler.clone(), e);
                Worker::spawn(&name, w, act.part(vec![aq]))
            });
            match worker {
                Ok(w) => self.workers.push(w),
                Err(source) => {
                    self.reset();
                    return Err(ActivateError::Worker {
                        device: "virtio-blk",
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        // Each worker waits for its I/O in flight before it ends.
        for w in self.workers.drain(..) {
            if let Some(w) = w.stop() {
                self.engines.push(w.into_engine());
            }
        }
    }

    fn can_save(&self) -> bool {
        true
    }
    fn reset_for_save(&mut self) -> bool {
        // Each worker completes its I/O in flight onto the used ring first.
        for w in self.workers.drain(..) {
            if let Some(w) = w.stop_for_save() {
                self.engines.push(w.into_engine());
            }
        }
        true
    }
}

#[cfg(test)]
mod direct_tests;
#[cfg(test)]
mod tests;
