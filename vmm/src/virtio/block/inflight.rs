//! One virtio-blk queue served with many requests in flight.
//!
//! Reads and writes of raw images, and of the clusters a qcow2 image holds itself,
//! go to the queue's [`Engine`] (io_uring or I/O threads) and complete in any
//! order; every other request (flush, discard, write-zeroes, get-id) and every
//! read or write the backend must do itself (a qcow2 cluster to allocate, backing
//! data) runs synchronously on the worker, after the requests in flight on
//! this queue completed: a FLUSH therefore covers every write this queue
//! completed before it, as virtio requires (the driver waits for a write's
//! completion before it relies on a flush covering it, so writes still in
//! flight on other queues are not the flush's concern). Completions are put on
//! the used ring in batches with one interrupt each, which `EVENT_IDX`
//! suppresses further when the driver asks.
//!
//! A transfer that fails or comes back short is redone synchronously through
//! the backend, which knows the cases (O_DIRECT refusing an alignment, end of a
//! file), before the guest sees an error.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::{debug, warn};
use virtio_queue::QueueT;
use vm_memory::Bytes;
use vmm_sys_util::epoll::EventSet;

use super::engine::{Completion, Engine, Transfer};
use super::{guest_slices, req, status, BlockStats, Request, RequestHandler};
use crate::virtio::queue_util::{more_work, notify_if_needed, segments};
use crate::virtio::worker::{DeviceCtx, WorkerHandler};
use crate::virtio::{ActiveQueue, GuestMem, VirtioInterrupt};

/// A request whose transfer is in flight.
struct Pending {
    head: u16,
    req: Request,
    offset: u64,
    start: Instant,
}

/// The worker of one queue.
pub(super) struct QueueWorker {
    handler: Arc<Mutex<RequestHandler>>,
    stats: Arc<BlockStats>,
    engine: Engine,
    pending: HashMap<u64, Pending>,
    next_tag: u64,
    /// Reaped completions waiting to be put on the used ring.
    done: Vec<(Completion, Transfer)>,
    /// Guest memory, held until the engine (declared above: dropped first) has
    /// waited for the transfers in flight into it.
    _mem: Option<GuestMem>,
}

impl QueueWorker {
    pub(super) fn new(handler: Arc<Mutex<RequestHandler>>, engine: Engine) -> Self {
        let stats = handler.lock().expect("block handler lock").stats();
        QueueWorker {
            handler,
            stats,
            engine,
            pending: HashMap::new(),
            next_tag: 0,
            done: Vec::new(),
            _mem: None,
        }
    }

    /// The engine back, idle: waits for the transfers in flight (device reset),
    /// whose completions are dropped with the queue they belonged to.
    pub(super) fn into_engine(mut self) -> Engine {
        self.quiesce();
        self.engine
    }

    fn handler(&self) -> std::sync::MutexGuard<'_, RequestHandler> {
        // A panic on another queue's worker poisons the lock; the handler holds
        // no invariant a panic could break halfway.
        self.handler.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pops every available chain, starting transfers or running requests,
    /// and completes what is ready; one interrupt for the batch.
    pub(super) fn serve(
        &mut self,
        mem: &GuestMem,
        aq: &mut ActiveQueue,
        irq: &dyn VirtioInterrupt,
    ) {
        let mut used = 0;
        loop {
            if aq.queue.disable_notification(mem).is_err() {
                break;
            }
            while let Some(chain) = aq.queue.pop_descriptor_chain(mem) {
                let head = chain.head_index();
                let segs = segments(chain);
                if let Some(len) = self.start(mem, aq, head, &segs, &mut used) {
                    if aq.queue.add_used(mem, head, len).is_ok() {
                        used += 1;
                    }
                }
            }
            if let Err(e) = self.engine.submit() {
                warn!("virtio-blk: submitting I/O: {e}");
            }
            if !more_work(aq, mem) {
                break;
            }
        }
        self.engine.reap(&mut self.done);
        used += self.finish(mem, aq);
        if used > 0 {
            notify_if_needed(aq, mem, irq);
        }
    }

    /// Completions are ready: puts them on the used ring, interrupts once.
    pub(super) fn complete_ready(
        &mut self,
        mem: &GuestMem,
        aq: &mut ActiveQueue,
        irq: &dyn VirtioInterrupt,
    ) {
        self.engine.reap(&mut self.done);
        if self.finish(mem, aq) > 0 {
            notify_if_needed(aq, mem, irq);
        }
    }

    /// Starts one request. Returns the used length when it already completed
    /// (synchronously, or failed), None when its transfer is in flight.
    fn start(
        &mut self,
        mem: &GuestMem,
        aq: &mut ActiveQueue,
        head: u16,
        segs: &[crate::virtio::queue_util::Segment],
        used: &mut usize,
    ) -> Option<u32> {
        let Some(r) = Request::parse(mem, segs) else {
            return Some(0);
        };
        if r.rtype == req::IN || r.rtype == req::OUT {
            match self.start_transfer(mem, head, r) {
                Ok(()) => return None,
                Err((r, Some(st))) => {
                    let _ = mem.write_obj(st, r.status);
                    return Some(1);
                }
                Err((r, None)) => return Some(self.run_now(mem, &r)),
            }
        }
        // Barrier: flush and the rest run after everything in flight here.
        let mut out = std::mem::take(&mut self.done);
        if let Err(e) = self.engine.drain(&mut out) {
            warn!("virtio-blk: waiting for I/O in flight: {e}");
        }
        self.done = out;
        *used += self.finish(mem, aq);
        Some(self.run_now(mem, &r))
    }

    /// Submits a read or write. Err with a status: the request failed
    /// validation; Err without: it must run synchronously.
    fn start_transfer(
        &mut self,
        mem: &GuestMem,
        head: u16,
        r: Request,
    ) -> Result<(), (Request, Option<u8>)> {
        let write = r.rtype == req::OUT;
        let mut h = self.handler();
        let offset = match h.rw_offset(write, r.sector, &r.data, r.data_len) {
            Ok(o) => o,
            Err(st) => {
                drop(h);
                return Err((r, Some(st)));
            }
        };
        let Some(slices) = guest_slices(mem, &r.data) else {
            drop(h);
            return Err((r, Some(status::IOERR)));
        };
        let iov: Vec<libc::iovec> = slices
            .iter()
            .map(|s| libc::iovec {
                iov_base: s.ptr_guard_mut().as_ptr().cast(),
                iov_len: s.len(),
            })
            .collect();
        let target = h.async_target(offset, &iov, write);
        drop(h);
        let Some((fd, file_offset)) = target else {
            return Err((r, None));
        };
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        let t = Transfer {
            fd,
            write,
            offset: file_offset,
            iov,
        };
        if let Err(e) = self.engine.push(tag, t) {
            debug!("virtio-blk: cannot submit ({e}); running the request synchronously");
            return Err((r, None));
        }
        self.pending.insert(
            tag,
            Pending {
                head,
                req: r,
                offset,
                start: Instant::now(),
            },
        );
        Ok(())
    }

    /// Runs a request on this thread; returns its used length.
    fn run_now(&mut self, mem: &GuestMem, r: &Request) -> u32 {
        let (st, written) = self.handler().run(mem, r);
        let _ = mem.write_obj(st, r.status);
        written + 1
    }

    /// Puts the reaped completions on the used ring; returns how many.
    fn finish(&mut self, mem: &GuestMem, aq: &mut ActiveQueue) -> usize {
        let mut n = 0;
        for (c, t) in std::mem::take(&mut self.done) {
            let Some(p) = self.pending.remove(&c.tag) else {
                continue;
            };
            let write = p.req.rtype == req::OUT;
            let len = match c.result {
                Ok(moved) if moved == t.len() => {
                    self.stats
                        .count_rw(write, p.offset, p.req.data_len, p.start.elapsed(), true);
                    let _ = mem.write_obj(status::OK, p.req.status);
                    if write {
                        1
                    } else {
                        p.req.data_len as u32 + 1
                    }
                }
                other => {
                    debug!(
                        "virtio-blk: transfer at byte {} ended with {other:?} of {} bytes; \
                         redoing it synchronously",
                        p.offset,
                        t.len()
                    );
                    self.run_now(mem, &p.req)
                }
            };
            if aq.queue.add_used(mem, p.head, len).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Waits for every transfer in flight (device reset, VMM exit): guest
    /// memory and the image must outlive them. Their completions are dropped:
    /// the queue they belonged to is gone.
    fn quiesce(&mut self) {
        let mut out = std::mem::take(&mut self.done);
        if let Err(e) = self.engine.drain(&mut out) {
            warn!("virtio-blk: waiting for I/O in flight: {e}");
        }
        self.pending.clear();
    }
}

impl WorkerHandler for QueueWorker {
    fn extra_fds(&self) -> Vec<(RawFd, EventSet)> {
        vec![(self.engine.ready_fd(), EventSet::IN)]
    }

    fn queue_event(&mut self, ctx: &mut DeviceCtx, pos: usize) {
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        self.serve(mem, &mut queues[pos], interrupt.as_ref());
    }

    fn fd_event(&mut self, ctx: &mut DeviceCtx, _i: usize, _events: EventSet) {
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        if let Some(aq) = queues.first_mut() {
            self.complete_ready(mem, aq, interrupt.as_ref());
        }
    }

    fn started(&mut self, ctx: &mut DeviceCtx) {
        self._mem = Some(ctx.mem.clone());
    }

    /// Waits for the transfers in flight and puts them on the used ring, so a
    /// saved machine has no request the restored one would never answer.
    fn stopping_for_save(&mut self, ctx: &mut DeviceCtx) {
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        let mut out = std::mem::take(&mut self.done);
        if let Err(e) = self.engine.drain(&mut out) {
            warn!("virtio-blk: waiting for I/O in flight: {e}");
        }
        self.done = out;
        if let Some(aq) = queues.first_mut() {
            if self.finish(mem, aq) > 0 {
                notify_if_needed(aq, mem, interrupt.as_ref());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Many requests in flight on one queue, through mock queues in plain guest
    //! memory and a real image file.

    use std::io::Write;
    use std::sync::Mutex as StdMutex;

    use vm_memory::GuestAddress;

    use super::*;
    use crate::virtio::block::backend::Bufs;
    use crate::virtio::block::engine::IoMode;
    use crate::virtio::block::{DiskBackend, OpenFlags, RawDisk};
    use crate::virtio::queue_util::testing::{
        add_chain, memory, queue, used, used_idx, CountingInterrupt,
    };

    const HDR: u64 = 0x10_0000;
    const DATA: u64 = 0x20_0000;
    const STATUS: u64 = 0x30_0000;

    /// A raw image; flushes record the file's content at that moment.
    struct Recording {
        raw: RawDisk,
        path: std::path::PathBuf,
        at_flush: Arc<StdMutex<Vec<Vec<u8>>>>,
    }

    impl DiskBackend for Recording {
        fn size(&self) -> u64 {
            self.raw.size()
        }
        fn read_at(&mut self, o: u64, b: Bufs<'_, '_>) -> std::io::Result<()> {
            self.raw.read_at(o, b)
        }
        fn write_at(&mut self, o: u64, b: Bufs<'_, '_>) -> std::io::Result<()> {
            self.raw.write_at(o, b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            let now = std::fs::read(&self.path)?;
            self.at_flush.lock().unwrap().push(now);
            self.raw.flush()
        }
        fn discard(&mut self, o: u64, l: u64) -> std::io::Result<()> {
            self.raw.discard(o, l)
        }
        fn write_zeroes(&mut self, o: u64, l: u64, u: bool) -> std::io::Result<()> {
            self.raw.write_zeroes(o, l, u)
        }
        fn async_target(&mut self, o: u64, iov: &[libc::iovec], w: bool) -> Option<(RawFd, u64)> {
            self.raw.async_target(o, iov, w)
        }
    }

    type Flushes = Arc<StdMutex<Vec<Vec<u8>>>>;

    /// An image of 64 sectors where byte k of sector s is `s`, and a worker on it.
    fn worker(mode: IoMode) -> Option<(tempfile::NamedTempFile, QueueWorker, Flushes)> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..64 * 512).map(|i| (i / 512) as u8).collect();
        f.write_all(&data).unwrap();
        let at_flush = Flushes::default();
        let backend = Recording {
            raw: RawDisk::open(f.path(), OpenFlags::default()).unwrap(),
            path: f.path().to_path_buf(),
            at_flush: at_flush.clone(),
        };
        let h = RequestHandler::new(Box::new(backend), false, false, None);
        let (engine, why_not) = Engine::new(mode, 16).unwrap();
        if mode == IoMode::IoUring && why_not.is_some() {
            eprintln!("SKIP io_uring part: {why_not:?}");
            return None;
        }
        let w = QueueWorker::new(Arc::new(Mutex::new(h)), engine);
        Some((f, w, at_flush))
    }

    /// Publishes request `k` (descriptors 3k..3k+2): `rtype` at `sector` with one
    /// 512-byte data buffer per sector at DATA + k * 0x1000 (none for a flush).
    fn post(
        mem: &GuestMem,
        mock: &virtio_queue::mock::MockSplitQueue<'_, GuestMem>,
        k: u16,
        rtype: u32,
        sector: u64,
        sectors: u32,
    ) {
        let hdr = HDR + u64::from(k) * 16;
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&rtype.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        mem.write_slice(&h, GuestAddress(hdr)).unwrap();
        let st = STATUS + u64::from(k);
        mem.write_obj(0xffu8, GuestAddress(st)).unwrap();
        let data = DATA + u64::from(k) * 0x1000;
        let mut parts = vec![(hdr, 16, false)];
        if sectors > 0 {
            parts.push((data, sectors * 512, rtype == req::IN));
        }
        parts.push((st, 1, true));
        add_chain(mock, 3 * k, &parts);
    }

    /// Starts every posted request (none completes at once) and submits them.
    fn start_posted(mem: &GuestMem, aq: &mut ActiveQueue, w: &mut QueueWorker) {
        let mut used_now = 0;
        while let Some(chain) = aq.queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let segs = segments(chain);
            assert_eq!(w.start(mem, aq, head, &segs, &mut used_now), None);
        }
        w.engine.submit().unwrap();
    }

    fn status_of(mem: &GuestMem, k: u16) -> u8 {
        mem.read_obj(GuestAddress(STATUS + u64::from(k))).unwrap()
    }

    /// Reads in flight together, completed in the reverse of their submission
    /// order, each reach their own request: right head, length, data, status.
    #[test]
    fn out_of_order_completions_reach_their_requests() {
        for mode in [IoMode::IoUring, IoMode::Threads] {
            let Some((_f, mut w, _)) = worker(mode) else {
                continue;
            };
            let mem = memory();
            let (mock, mut aq) = queue(&mem, 0, 0);
            for k in 0..5u16 {
                post(&mem, &mock, k, req::IN, 10 + u64::from(k), 1);
            }
            start_posted(&mem, &mut aq, &mut w);
            assert_eq!(w.engine.in_flight(), 5, "{}", w.engine.describe());
            let mut out = Vec::new();
            w.engine.drain(&mut out).unwrap();
            out.sort_by_key(|(c, _)| std::cmp::Reverse(c.tag));
            w.done = out;
            assert_eq!(w.finish(&mem, &mut aq), 5);
            assert_eq!(used_idx(&mem, &mock), 5);
            for i in 0..5u16 {
                let k = 4 - i;
                assert_eq!(used(&mem, &mock, i), (u32::from(3 * k), 513), "{mode:?}");
                assert_eq!(status_of(&mem, k), status::OK);
                let mut buf = [0u8; 512];
                mem.read_slice(&mut buf, GuestAddress(DATA + u64::from(k) * 0x1000))
                    .unwrap();
                assert!(
                    buf.iter().all(|&b| b == 10 + k as u8),
                    "{mode:?} request {k}"
                );
            }
        }
    }

    /// A FLUSH behind writes in flight runs only after they all completed (the
    /// file holds them when the backend flushes), and the batch costs one interrupt.
    #[test]
    fn flush_waits_for_the_writes_before_it() {
        for mode in [IoMode::IoUring, IoMode::Threads] {
            let Some((f, mut w, at_flush)) = worker(mode) else {
                continue;
            };
            let mem = memory();
            let (mock, mut aq) = queue(&mem, 0, 0);
            for k in 0..4u16 {
                let data = vec![0xa0 + k as u8; 1024];
                mem.write_slice(&data, GuestAddress(DATA + u64::from(k) * 0x1000))
                    .unwrap();
                post(&mem, &mock, k, req::OUT, 20 + 2 * u64::from(k), 2);
            }
            post(&mem, &mock, 4, req::FLUSH, 0, 0);
            let intr = CountingInterrupt::default();
            w.serve(&mem, &mut aq, &intr);
            // Writes completing after the flush was taken would arrive here.
            w.complete_ready(&mem, &mut aq, &intr);
            assert_eq!(used_idx(&mem, &mock), 5, "{mode:?}");
            let mut heads: Vec<u32> = (0..4).map(|i| used(&mem, &mock, i).0).collect();
            heads.sort();
            assert_eq!(heads, vec![0, 3, 6, 9], "the writes complete first");
            assert_eq!(used(&mem, &mock, 4), (12, 1), "then the flush");
            for k in 0..5 {
                assert_eq!(status_of(&mem, k), status::OK, "request {k}");
            }
            let flushed = at_flush.lock().unwrap();
            assert_eq!(flushed.len(), 1);
            for k in 0..4u64 {
                let at = (20 + 2 * k as usize) * 512;
                assert!(
                    flushed[0][at..at + 1024]
                        .iter()
                        .all(|&b| b == 0xa0 + k as u8),
                    "{mode:?}: write {k} not on file when the flush ran"
                );
            }
            assert_eq!(*intr.queues.lock().unwrap(), vec![0], "one interrupt");
            drop(flushed);
            let disk = std::fs::read(f.path()).unwrap();
            assert_eq!(disk[20 * 512], 0xa0);
        }
    }

    /// A qcow2 image: reads and writes of a cluster it holds go in flight together
    /// (to the image file, at the offsets imago maps them to); a write to a cluster
    /// it must allocate and a read of one it does not hold run through imago at
    /// once. qemu-io reads back what each wrote.
    #[test]
    fn qcow2_held_clusters_go_in_flight_the_rest_through_imago() {
        const T: &str = "qcow2_held_clusters_go_in_flight_the_rest_through_imago";
        use crate::virtio::block::tests::have;
        if !have("qemu-img") || !have("qemu-io") {
            eprintln!("SKIPPED {T}: qemu-img/qemu-io not installed (Debian qemu-utils)");
            return;
        }
        let sh = |args: &[&str]| {
            let o = std::process::Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap();
            assert!(
                o.status.success()
                    && !String::from_utf8_lossy(&o.stdout).contains("Pattern verification failed"),
                "{args:?}: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        };
        for mode in [IoMode::IoUring, IoMode::Threads] {
            let dir = tempfile::tempdir().unwrap();
            let img = dir.path().join("d.qcow2");
            let p = img.to_str().unwrap();
            sh(&["qemu-img", "create", "-q", "-f", "qcow2", p, "1M"]);
            // The first 64 KiB cluster is allocated; the rest reads as zeroes.
            sh(&["qemu-io", "-c", "write -P 0x11 0 64k", p]);
            let disk = crate::virtio::block::Qcow2Disk::open(&img, OpenFlags::default()).unwrap();
            let h = RequestHandler::new(Box::new(disk), false, false, None);
            let (engine, why_not) = Engine::new(mode, 16).unwrap();
            if mode == IoMode::IoUring && why_not.is_some() {
                eprintln!("SKIP io_uring part: {why_not:?}");
                continue;
            }
            let mut w = QueueWorker::new(Arc::new(Mutex::new(h)), engine);
            let mem = memory();
            let (mock, mut aq) = queue(&mem, 0, 0);
            for k in 0..4u16 {
                mem.write_slice(
                    &[0xb0 + k as u8; 1024],
                    GuestAddress(DATA + u64::from(k) * 0x1000),
                )
                .unwrap();
                post(&mem, &mock, k, req::OUT, 8 + 2 * u64::from(k), 2);
            }
            post(&mem, &mock, 4, req::IN, 0, 1);
            start_posted(&mem, &mut aq, &mut w);
            assert_eq!(w.engine.in_flight(), 5, "{mode:?}: {}", w.engine.describe());
            let mut out = Vec::new();
            w.engine.drain(&mut out).unwrap();
            w.done = out;
            assert_eq!(w.finish(&mem, &mut aq), 5);
            for k in 0..5 {
                assert_eq!(status_of(&mem, k), status::OK, "{mode:?} request {k}");
            }
            let mut buf = [0u8; 512];
            mem.read_slice(&mut buf, GuestAddress(DATA + 4 * 0x1000))
                .unwrap();
            assert!(
                buf.iter().all(|&b| b == 0x11),
                "{mode:?}: the read in flight"
            );
            // Sector 256 (128 KiB) is in no cluster of the image: imago allocates it,
            // at once; sector 1024 reads as zeroes, at once (descriptors and buffers
            // of the first two requests reused).
            mem.write_slice(&[0xcc; 512], GuestAddress(DATA)).unwrap();
            post(&mem, &mock, 0, req::OUT, 256, 1);
            mem.write_slice(&[0xee; 512], GuestAddress(DATA + 0x1000))
                .unwrap();
            post(&mem, &mock, 1, req::IN, 1024, 1);
            let mut used_now = 0;
            for want in [1, 513] {
                let chain = aq.queue.pop_descriptor_chain(&mem).unwrap();
                let head = chain.head_index();
                let segs = segments(chain);
                assert_eq!(
                    w.start(&mem, &mut aq, head, &segs, &mut used_now),
                    Some(want),
                    "{mode:?}: not in flight"
                );
            }
            assert_eq!(w.engine.in_flight(), 0);
            mem.read_slice(&mut buf, GuestAddress(DATA + 0x1000))
                .unwrap();
            assert!(
                buf.iter().all(|&b| b == 0),
                "{mode:?}: unallocated reads as zeroes"
            );
            drop(w);
            for (pattern, at, len) in [
                ("0x11", 0, 4096),
                ("0xb0", 4096, 1024),
                ("0xb1", 5120, 1024),
                ("0xb2", 6144, 1024),
                ("0xb3", 7168, 1024),
                ("0x11", 8192, 57344),
                ("0xcc", 131072, 512),
                ("0x00", 131584, 512),
            ] {
                sh(&["qemu-io", "-c", &format!("read -P {pattern} {at} {len}"), p]);
            }
            sh(&["qemu-img", "check", "-q", p]);
        }
    }

    /// Stopping the worker (device reset) with writes in flight waits for them:
    /// nothing stays in flight, and what the kernel wrote is on the file.
    #[test]
    fn quiesce_waits_for_writes_in_flight() {
        for mode in [IoMode::IoUring, IoMode::Threads] {
            let Some((f, mut w, _)) = worker(mode) else {
                continue;
            };
            let mem = memory();
            let (mock, mut aq) = queue(&mem, 0, 0);
            for k in 0..5u16 {
                mem.write_slice(
                    &[0x50 + k as u8; 512],
                    GuestAddress(DATA + u64::from(k) * 0x1000),
                )
                .unwrap();
                post(&mem, &mock, k, req::OUT, 40 + u64::from(k), 1);
            }
            start_posted(&mem, &mut aq, &mut w);
            w.quiesce();
            assert_eq!(w.engine.in_flight(), 0);
            assert!(w.pending.is_empty());
            let disk = std::fs::read(f.path()).unwrap();
            for k in 0..5usize {
                assert_eq!(disk[(40 + k) * 512], 0x50 + k as u8, "{mode:?} write {k}");
            }
        }
    }
}
