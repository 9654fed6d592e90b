//! virtio-balloon (virtio 1.2 §5.5): memory the host asks the guest to give back.
//!
//! The host sets a target guest size ([`BalloonControl::set_target`], QMP
//! `balloon`): the device publishes `num_pages` (4 KiB pages the balloon should
//! hold) and raises a configuration-change interrupt. The driver inflates by
//! putting page frame numbers on the inflate queue — the device drops those
//! pages from the host mapping (`madvise(MADV_DONTNEED)`), so host memory is
//! really freed — and reports the balloon size in `actual`. Deflated pages fault
//! back in on their next use. With a stats period, the device hands the stats
//! buffer back every period so the driver refills it.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::warn;
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

use super::queue_util::{drain, notify_if_needed, segments};
use super::worker::{DeviceCtx, Worker, WorkerHandler};
use super::{
    device_type, read_config_bytes, ActivateError, Activation, GuestMem, VirtioDevice,
    VirtioInterrupt,
};

/// Balloon page size (fixed by the spec, whatever the guest's page size).
pub const PAGE: u64 = 4096;
/// Feature bits.
pub mod features {
    pub const MUST_TELL_HOST: u64 = 1 << 0;
    pub const STATS_VQ: u64 = 1 << 1;
    pub const DEFLATE_ON_OOM: u64 = 1 << 2;
}
const INFLATE: u16 = 0;
const DEFLATE: u16 = 1;
const STATS: u16 = 2;

/// Shared between the device, its worker and the host side.
#[derive(Default)]
struct State {
    /// Pages the host wants in the balloon.
    num_pages: u32,
    /// Pages the driver says the balloon holds.
    actual: u32,
    /// Last statistics by virtio tag name, and when they came (seconds since start).
    stats: BTreeMap<&'static str, u64>,
    interrupt: Option<Arc<dyn VirtioInterrupt>>,
    /// Pages dropped from the host mapping so far.
    freed_pages: u64,
}

/// Host-side handle: what QMP `balloon` and `query-balloon` use.
#[derive(Clone)]
pub struct BalloonControl {
    state: Arc<Mutex<State>>,
    ram_bytes: u64,
}

impl BalloonControl {
    /// A control for a guest of `ram_bytes`; the device built on it
    /// ([`Balloon::with_control`]) shares its state, so the handle stays valid
    /// across machine resets.
    pub fn new(ram_bytes: u64) -> Self {
        BalloonControl {
            state: Arc::new(Mutex::new(State::default())),
            ram_bytes,
        }
    }

    /// Asks the guest to shrink (or grow back) to `bytes` of memory.
    pub fn set_target(&self, bytes: u64) {
        let pages = (self.ram_bytes.saturating_sub(bytes) / PAGE).min(u64::from(u32::MAX)) as u32;
        let intr = {
            let Ok(mut s) = self.state.lock() else {
                return;
            };
            s.num_pages = pages;
            s.interrupt.clone()
        };
        if let Some(i) = intr {
            i.notify_config();
        }
    }

    /// Guest memory size as the balloon leaves it (QMP `query-balloon` `actual`).
    pub fn actual_bytes(&self) -> u64 {
        let actual = self.state.lock().map(|s| s.actual).unwrap_or(0);
        self.ram_bytes.saturating_sub(u64::from(actual) * PAGE)
    }

    /// The target as last set, in bytes.
    pub fn target_bytes(&self) -> u64 {
        let n = self.state.lock().map(|s| s.num_pages).unwrap_or(0);
        self.ram_bytes.saturating_sub(u64::from(n) * PAGE)
    }

    /// Last guest statistics (`swap-in`, `free-memory`, … as libvirt names them).
    pub fn stats(&self) -> BTreeMap<&'static str, u64> {
        self.state
            .lock()
            .map(|s| s.stats.clone())
            .unwrap_or_default()
    }

    /// Pages released to the host since start.
    pub fn freed_pages(&self) -> u64 {
        self.state.lock().map(|s| s.freed_pages).unwrap_or(0)
    }
}

/// QEMU's names for the virtio stats tags (`guest-stats` in QMP).
fn stat_name(tag: u16) -> Option<&'static str> {
    Some(match tag {
        0 => "stat-swap-in",
        1 => "stat-swap-out",
        2 => "stat-major-faults",
        3 => "stat-minor-faults",
        4 => "stat-free-memory",
        5 => "stat-total-memory",
        6 => "stat-available-memory",
        7 => "stat-disk-caches",
        8 => "stat-htlb-pgalloc",
        9 => "stat-htlb-pgfail",
        _ => return None,
    })
}

/// Drops the host pages behind guest page frame `pfn`.
fn release(mem: &GuestMem, pfn: u32) -> bool {
    let addr = GuestAddress(u64::from(pfn) * PAGE);
    if !mem.address_in_range(addr) {
        return false;
    }
    let Ok(ptr) = mem.get_host_address(addr) else {
        return false;
    };
    // SAFETY: `ptr` is the host mapping of one 4 KiB page of guest RAM (page
    // aligned, inside a region we mapped). MADV_DONTNEED only discards its
    // contents; the mapping stays valid and reads back as zeroes, which is what
    // the guest agreed to by inflating the page.
    unsafe { libc::madvise(ptr.cast(), PAGE as usize, libc::MADV_DONTNEED) == 0 }
}

struct BalloonWorker {
    state: Arc<Mutex<State>>,
    timer: Option<TimerFd>,
    /// The stats buffer the driver gave us, held until the next period.
    stats_head: Option<u16>,
}

impl BalloonWorker {
    fn pages(&mut self, ctx: &mut DeviceCtx, pos: usize, inflate: bool) {
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        let mut freed = 0u64;
        drain(&mut queues[pos], mem, interrupt.as_ref(), |chain| {
            for s in segments(chain).into_iter().filter(|s| !s.write) {
                let mut raw = vec![0u8; s.len as usize];
                if mem.read_slice(&mut raw, s.addr).is_err() {
                    continue;
                }
                if inflate {
                    for pfn in raw.chunks_exact(4) {
                        let pfn = u32::from_le_bytes(pfn.try_into().expect("4 bytes"));
                        freed += u64::from(release(mem, pfn));
                    }
                }
            }
            0
        });
        if let Ok(mut s) = self.state.lock() {
            s.freed_pages += freed;
        }
    }

    fn stats(&mut self, ctx: &mut DeviceCtx, pos: usize) {
        let DeviceCtx { mem, queues, .. } = ctx;
        let aq = &mut queues[pos];
        while let Some(chain) = aq.queue.pop_descriptor_chain(&*mem) {
            let head = chain.head_index();
            let mut got = BTreeMap::new();
            for s in segments(chain).into_iter().filter(|s| !s.write) {
                let mut raw = vec![0u8; s.len as usize];
                if mem.read_slice(&mut raw, s.addr).is_err() {
                    continue;
                }
                for e in raw.chunks_exact(10) {
                    let tag = u16::from_le_bytes([e[0], e[1]]);
                    let val = u64::from_le_bytes(e[2..10].try_into().expect("8 bytes"));
                    if let Some(n) = stat_name(tag) {
                        got.insert(n, val);
                    }
                }
            }
            if let Ok(mut s) = self.state.lock() {
                s.stats = got;
            }
            // Keep the buffer until the next period (or give back an older one).
            if let Some(old) = self.stats_head.replace(head) {
                let _ = aq.queue.add_used(&*mem, old, 0);
            }
        }
    }

    fn tick(&mut self, ctx: &mut DeviceCtx) {
        if let Some(t) = self.timer.as_mut() {
            let _ = t.wait();
        }
        let (Some(head), Some(pos)) = (self.stats_head.take(), ctx.queue(STATS)) else {
            return;
        };
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        let _ = queues[pos].queue.add_used(&*mem, head, 0);
        notify_if_needed(&mut queues[pos], mem, interrupt.as_ref());
    }
}

impl WorkerHandler for BalloonWorker {
    fn extra_fds(&self) -> Vec<(RawFd, EventSet)> {
        match &self.timer {
            Some(t) => vec![(t.as_raw_fd(), EventSet::IN)],
            None => Vec::new(),
        }
    }

    fn queue_event(&mut self, ctx: &mut DeviceCtx, pos: usize) {
        match ctx.queues[pos].index {
            INFLATE => self.pages(ctx, pos, true),
            DEFLATE => self.pages(ctx, pos, false),
            STATS => self.stats(ctx, pos),
            _ => {}
        }
    }

    fn fd_event(&mut self, ctx: &mut DeviceCtx, _i: usize, _events: EventSet) {
        self.tick(ctx);
    }
}

/// The virtio-balloon device.
pub struct Balloon {
    id: String,
    state: Arc<Mutex<State>>,
    ram_bytes: u64,
    stats_period: u32,
    deflate_on_oom: bool,
    worker: Option<Worker<BalloonWorker>>,
}

impl Balloon {
    /// A balloon for a guest with `ram_bytes` of memory.
    pub fn new(id: &str, ram_bytes: u64, stats_period: u32, deflate_on_oom: bool) -> Self {
        Balloon {
            id: id.to_string(),
            state: Arc::new(Mutex::new(State::default())),
            ram_bytes,
            stats_period,
            deflate_on_oom,
            worker: None,
        }
    }

    /// A balloon on an existing control (kept by the VMM across resets).
    pub fn with_control(
        id: &str,
        control: &BalloonControl,
        stats_period: u32,
        deflate_on_oom: bool,
    ) -> Self {
        if let Ok(mut s) = control.state.lock() {
            // A new machine starts with an empty balloon; the target stays.
            s.actual = 0;
            s.stats.clear();
        }
        Balloon {
            id: id.to_string(),
            state: control.state.clone(),
            ram_bytes: control.ram_bytes,
            stats_period,
            deflate_on_oom,
            worker: None,
        }
    }

    /// The host-side handle.
    pub fn control(&self) -> BalloonControl {
        BalloonControl {
            state: self.state.clone(),
            ram_bytes: self.ram_bytes,
        }
    }
}

impl VirtioDevice for Balloon {
    fn device_type(&self) -> u32 {
        device_type::BALLOON
    }
    fn name(&self) -> &'static str {
        "virtio-balloon"
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![128, 128, 128]
    }
    fn features(&self) -> u64 {
        let mut f = features::STATS_VQ;
        if self.deflate_on_oom {
            f |= features::DEFLATE_ON_OOM;
        }
        f
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let (n, a) = self
            .state
            .lock()
            .map(|s| (s.num_pages, s.actual))
            .unwrap_or((0, 0));
        let mut c = [0u8; 8];
        c[0..4].copy_from_slice(&n.to_le_bytes());
        c[4..8].copy_from_slice(&a.to_le_bytes());
        read_config_bytes(&c, offset, data);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        // Only `actual` (offset 4) is the driver's to write.
        if offset == 4 && data.len() == 4 {
            if let Ok(mut s) = self.state.lock() {
                s.actual = u32::from_le_bytes(data.try_into().expect("4 bytes"));
            }
        }
    }
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        if let Ok(mut s) = self.state.lock() {
            s.interrupt = Some(act.interrupt.clone());
        }
        let timer = if self.stats_period > 0 && act.features & features::STATS_VQ != 0 {
            let mut t = TimerFd::new().map_err(|e| ActivateError::Worker {
                device: "virtio-balloon",
                source: e.into(),
            })?;
            let p = Duration::from_secs(u64::from(self.stats_period));
            if let Err(e) = t.reset(p, Some(p)) {
                warn!("virtio-balloon: stats timer: {e}");
            }
            Some(t)
        } else {
            None
        };
        let worker = BalloonWorker {
            state: self.state.clone(),
            timer,
            stats_head: None,
        };
        let w = Worker::spawn(&format!("_{}", self.id), worker, act).map_err(|source| {
            ActivateError::Worker {
                device: "virtio-balloon",
                source,
            }
        })?;
        self.worker = Some(w);
        Ok(())
    }
    fn reset(&mut self) {
        if let Some(w) = self.worker.take() {
            w.stop();
        }
        if let Ok(mut s) = self.state.lock() {
            s.interrupt = None;
            s.actual = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::queue_util::testing::{add_chain, memory, queue, CountingInterrupt};
    use crate::virtio::ActiveQueue;
    use vmm_sys_util::epoll::Epoll;

    fn ctx(mem: GuestMem, queues: Vec<ActiveQueue>, intr: Arc<CountingInterrupt>) -> DeviceCtx {
        DeviceCtx::for_test(mem, 0, queues, intr, Epoll::new().unwrap())
    }

    #[test]
    fn target_sets_num_pages_and_interrupts() {
        let b = Balloon::new("balloon0", 64 << 20, 0, false);
        let ctl = b.control();
        let intr = Arc::new(CountingInterrupt::default());
        b.state.lock().unwrap().interrupt = Some(intr.clone());
        ctl.set_target(48 << 20);
        let mut c = [0u8; 4];
        b.read_config(0, &mut c);
        assert_eq!(u32::from_le_bytes(c), (16 << 20) / 4096);
        assert_eq!(intr.config.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(ctl.target_bytes(), 48 << 20);
        let mut b = b;
        b.write_config(4, &1024u32.to_le_bytes());
        assert_eq!(ctl.actual_bytes(), (64 << 20) - (1024 * 4096));
        b.write_config(0, &7u32.to_le_bytes());
        assert_eq!(ctl.target_bytes(), 48 << 20, "num_pages is the host's");
    }

    #[test]
    fn inflate_releases_guest_pages() {
        let mem = memory();
        // Page 0x800 (8 MiB) holds data; inflating it zeroes it on the host.
        mem.write_slice(&[0x77; 4096], GuestAddress(0x80_0000))
            .unwrap();
        mem.write_slice(&0x800u32.to_le_bytes(), GuestAddress(0x10_0000))
            .unwrap();
        mem.write_slice(&0x0fff_ffff_u32.to_le_bytes(), GuestAddress(0x10_0004))
            .unwrap();
        let (mock, aq) = queue(&mem, 0, INFLATE);
        add_chain(&mock, 0, &[(0x10_0000, 8, false)]);
        let intr = Arc::new(CountingInterrupt::default());
        let state = Arc::new(Mutex::new(State::default()));
        let mut w = BalloonWorker {
            state: state.clone(),
            timer: None,
            stats_head: None,
        };
        let mut c = ctx(mem.clone(), vec![aq], intr.clone());
        w.queue_event(&mut c, 0);
        let mut b = [0u8; 16];
        mem.read_slice(&mut b, GuestAddress(0x80_0000)).unwrap();
        assert_eq!(b, [0; 16], "page dropped");
        assert_eq!(
            state.lock().unwrap().freed_pages,
            1,
            "out-of-range PFN ignored"
        );
        assert_eq!(*intr.queues.lock().unwrap(), vec![INFLATE]);
    }

    #[test]
    fn stats_are_parsed_and_buffer_held_until_tick() {
        let mem = memory();
        let mut raw = Vec::new();
        for (tag, val) in [(4u16, 1000u64), (5, 4000), (99, 1)] {
            raw.extend_from_slice(&tag.to_le_bytes());
            raw.extend_from_slice(&val.to_le_bytes());
        }
        mem.write_slice(&raw, GuestAddress(0x10_0000)).unwrap();
        let (mock, aq) = queue(&mem, 0, STATS);
        add_chain(&mock, 0, &[(0x10_0000, raw.len() as u32, false)]);
        let intr = Arc::new(CountingInterrupt::default());
        let state = Arc::new(Mutex::new(State::default()));
        let mut w = BalloonWorker {
            state: state.clone(),
            timer: None,
            stats_head: None,
        };
        let mut c = ctx(mem.clone(), vec![aq], intr.clone());
        w.queue_event(&mut c, 0);
        let ctl = BalloonControl {
            state,
            ram_bytes: 1 << 30,
        };
        let s = ctl.stats();
        assert_eq!(s.get("stat-free-memory"), Some(&1000));
        assert_eq!(s.get("stat-total-memory"), Some(&4000));
        assert_eq!(s.len(), 2);
        assert!(intr.queues.lock().unwrap().is_empty(), "buffer held");
        w.tick(&mut c);
        assert_eq!(*intr.queues.lock().unwrap(), vec![STATS]);
    }
}
