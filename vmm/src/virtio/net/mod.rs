//! virtio-net (virtio 1.2 §5.1) on a tap device.
//!
//! Frames cross the tap with the same 12-byte `virtio_net_hdr_v1` the guest
//! uses (IFF_VNET_HDR, TUNSETVNETHDRSZ 12), so checksum and segmentation
//! offloads pass through untouched: the guest may send 64 KiB TSO frames with
//! partial checksums (HOST_TSO*, CSUM), and the tap may hand it large frames
//! (GUEST_TSO*, GUEST_CSUM, enabled on the tap with TUNSETOFFLOAD once the guest
//! accepts them). Receive uses mergeable buffers when negotiated. The control queue
//! ([`ctrl`]) programs a receive filter, the MAC address and the receive offloads.
//!
//! Multiqueue (`VIRTIO_NET_F_MQ`, libvirt `<driver queues='N'>`): N receive/transmit
//! pairs, each on its own queue of a multiqueue tap and its own worker thread, so
//! flows spread over host CPUs as they do with QEMU. Queue `2k`/`2k+1` is pair k's,
//! the control queue comes last (`2N`; 2 when the driver did not take MQ). Until the
//! driver sets a pair count (`VQ_PAIRS_SET`) only the first pair is in use, and the
//! tap queues of unused pairs are detached so the kernel steers nothing to them.
//!
//! With vhost-net ([`vhost`], libvirt's default where the host has it) the host
//! kernel moves each pair's frames; the VMM serves only the control queue and relays
//! the kernel's interrupts, on one worker.

pub mod ctrl;
mod passt_args;
pub mod stream;
pub mod tap;
pub mod vhost;

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{debug, info, warn};
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::Bytes;
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::queue_util::{drain, notify_if_needed, segments, Segment};
use super::worker::{DeviceCtx, Worker, WorkerHandler};
use super::{
    device_type, read_config_bytes, ActivateError, Activation, ActiveQueue, GuestMem, VirtioDevice,
    VirtioInterrupt, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
pub use stream::{PasstLink, StreamIo};
pub use tap::{Tap, TapError, VNET_HDR_LEN};
pub use vhost::{VhostError, VhostNet};

/// Feature bits.
pub mod features {
    pub const CSUM: u64 = 1 << 0;
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const CTRL_GUEST_OFFLOADS: u64 = 1 << 2;
    pub const MTU: u64 = 1 << 3;
    pub const MAC: u64 = 1 << 5;
    pub const GUEST_TSO4: u64 = 1 << 7;
    pub const GUEST_TSO6: u64 = 1 << 8;
    pub const GUEST_ECN: u64 = 1 << 9;
    pub const HOST_TSO4: u64 = 1 << 11;
    pub const HOST_TSO6: u64 = 1 << 12;
    pub const HOST_ECN: u64 = 1 << 13;
    pub const MRG_RXBUF: u64 = 1 << 15;
    pub const STATUS: u64 = 1 << 16;
    pub const CTRL_VQ: u64 = 1 << 17;
    pub const CTRL_RX: u64 = 1 << 18;
    pub const CTRL_VLAN: u64 = 1 << 19;
    pub const CTRL_RX_EXTRA: u64 = 1 << 20;
    pub const MQ: u64 = 1 << 22;
    pub const CTRL_MAC_ADDR: u64 = 1 << 23;
}

/// The control queue's index without `MQ`: after the one receive/transmit pair.
const CTRLQ: u16 = 2;
/// Largest control command read (a MAC table of 64 + 64 entries is under 1 KiB).
const MAX_CTRL: usize = 4096;
/// Largest frame plus header the tap can hand us (64 KiB GSO frame).
const MAX_FRAME: usize = 65562;

/// A frame transport: the tap, or a datagram socket pair in tests.
pub trait FrameIo: Send {
    /// Reads one frame (with its vnet header); `WouldBlock` when none waits.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one frame (with its vnet header).
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
    /// The fd to poll for readability.
    fn fd(&self) -> RawFd;
    /// Enables receive offloads (TUN_F_* bits); a no-op where there are none.
    fn set_offload(&mut self, _flags: u32) -> io::Result<()> {
        Ok(())
    }
    /// Whether the backend carries the virtio-net header's checksum/GSO offloads (a tap
    /// does; passt's stream does not, so the guest must not be offered them).
    fn offloads(&self) -> bool {
        true
    }
}

impl FrameIo for Tap {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut f = self.file();
        f.read(buf)
    }
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let mut f = self.file();
        f.write(frame).map(|_| ())
    }
    fn fd(&self) -> RawFd {
        self.file().as_raw_fd()
    }
    fn set_offload(&mut self, flags: u32) -> io::Result<()> {
        Tap::set_offload(self, flags).map_err(io::Error::other)
    }
}

/// Switches a backend queue on and off: a multiqueue tap's queue of a pair the guest
/// does not use is detached, so the kernel steers no frames to it.
pub trait QueueSwitch: Send {
    fn set_enabled(&mut self, on: bool) -> io::Result<()>;
}

impl QueueSwitch for Tap {
    fn set_enabled(&mut self, on: bool) -> io::Result<()> {
        self.set_queue_enabled(on).map_err(io::Error::other)
    }
}

/// One queue pair's backend: its frame transport and, for pairs after the first,
/// the switch that attaches and detaches it ([`Net::multiqueue`]).
pub type PairBackend = (Box<dyn FrameIo>, Option<Box<dyn QueueSwitch>>);

/// The pair backends of a tap's queues (one per pair, in order): each queue moves
/// its pair's frames, and a second handle on it lets the control queue switch it.
pub fn tap_pairs(taps: Vec<Tap>) -> Result<Vec<PairBackend>, TapError> {
    let mut pairs: Vec<PairBackend> = Vec::new();
    for t in taps {
        let switch: Option<Box<dyn QueueSwitch>> = match pairs.is_empty() {
            true => None,
            false => Some(Box::new(t.try_clone()?)),
        };
        pairs.push((Box::new(t), switch));
    }
    Ok(pairs)
}

/// The backend queues of pairs 2..N, as the control queue switches them.
struct MultiQueue {
    /// Pair `i + 1`'s queue and whether it is attached.
    switches: Vec<(Box<dyn QueueSwitch>, bool)>,
}

impl MultiQueue {
    /// Attaches the queues of the first `pairs` pairs and detaches the others.
    fn set_active(&mut self, pairs: u16) -> io::Result<()> {
        for (i, (sw, on)) in self.switches.iter_mut().enumerate() {
            let want = i + 1 < usize::from(pairs);
            if *on != want {
                sw.set_enabled(want)?;
                *on = want;
            }
        }
        Ok(())
    }

    /// The most pairs there are.
    fn max_pairs(&self) -> u16 {
        self.switches.len() as u16 + 1
    }
}

/// Host control of a NIC: link state (QMP `set_link`).
#[derive(Clone)]
pub struct NetControl {
    link_up: Arc<AtomicBool>,
    interrupt: Arc<Mutex<Option<Arc<dyn VirtioInterrupt>>>>,
    /// With vhost-net, the running pairs' instances and tap queues: link down
    /// detaches the taps (no frame moves either way), as QEMU stops vhost then.
    vhost: Arc<Mutex<Vec<VhostPair>>>,
}

/// A running pair's vhost-net instance and the tap queue it serves.
type VhostPair = (Arc<VhostNet>, RawFd);

impl NetControl {
    /// A control with the link `up` or down; see [`Net::with_control`].
    pub fn new(up: bool) -> Self {
        NetControl {
            link_up: Arc::new(AtomicBool::new(up)),
            interrupt: Arc::new(Mutex::new(None)),
            vhost: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Sets the link state and tells the driver (configuration change).
    pub fn set_link(&self, up: bool) {
        if self.link_up.swap(up, Ordering::SeqCst) != up {
            if let Ok(pairs) = self.vhost.lock() {
                for (v, tap) in pairs.iter() {
                    if let Err(e) = v.set_backend(up.then_some(*tap)) {
                        warn!("virtio-net: link {}: {e}", if up { "up" } else { "down" });
                    }
                }
            }
            if let Some(i) = self.interrupt.lock().ok().and_then(|g| g.clone()) {
                i.notify_config();
            }
        }
    }

    /// Whom to tell about link changes when the NIC is not virtio (an emulated
    /// NIC raises its own link-status interrupt from `notify_config`).
    pub fn on_change(&self, watcher: Arc<dyn VirtioInterrupt>) {
        if let Ok(mut g) = self.interrupt.lock() {
            *g = Some(watcher);
        }
    }

    /// Current link state.
    pub fn link_up(&self) -> bool {
        self.link_up.load(Ordering::SeqCst)
    }
}

/// The data path of one queue pair, independent of threads.
pub struct NetCore {
    io: Box<dyn FrameIo>,
    link_up: Arc<AtomicBool>,
    mergeable: bool,
    /// Negotiated features (what the control commands may use).
    features: u64,
    /// The receive filter and MAC address the control queue programs, shared by
    /// every pair (config space reads the address from it).
    filter: Arc<Mutex<ctrl::RxFilter>>,
    /// The other pairs' backend queues: the first pair's core, which serves the
    /// control queue, switches them (`None` with one pair).
    mq: Option<MultiQueue>,
    /// A frame read from the backend that did not fit in the guest's buffers yet.
    held: Option<Vec<u8>>,
    buf: Vec<u8>,
    /// Frames dropped (link down, backend full, no room).
    pub dropped: u64,
    /// Frames the receive filter kept from the guest.
    pub filtered: u64,
}

impl NetCore {
    /// A data path over `io`.
    pub fn new(io: Box<dyn FrameIo>, link_up: Arc<AtomicBool>) -> Self {
        NetCore {
            io,
            link_up,
            mergeable: false,
            features: 0,
            filter: Arc::new(Mutex::new(ctrl::RxFilter::new([0; 6], 0))),
            mq: None,
            held: None,
            buf: vec![0; MAX_FRAME],
            dropped: 0,
            filtered: 0,
        }
    }

    /// Applies negotiated features (mergeable buffers, the control commands); the
    /// pair that serves the control queue also enables the receive offloads (one
    /// setting for the whole tap) and restarts the receive filter from its reset state.
    pub fn negotiate(&mut self, f: u64) {
        self.mergeable = f & features::MRG_RXBUF != 0;
        self.features = f;
    }

    /// The first pair's part of [`NetCore::negotiate`]: receive offloads, the filter.
    fn negotiate_device(&mut self, f: u64) {
        if let Ok(mut filter) = self.filter.lock() {
            *filter = ctrl::RxFilter::new(filter.mac(), f);
        }
        if let Err(e) = self.set_guest_offloads(f) {
            warn!("virtio-net: receive offloads {f:#x}: {e}");
        }
    }

    /// Enables on the backend the receive offloads among the feature bits `f`.
    fn set_guest_offloads(&mut self, f: u64) -> io::Result<()> {
        let mut tun = 0;
        if f & features::GUEST_CSUM != 0 {
            tun |= libc::TUN_F_CSUM;
            if f & features::GUEST_TSO4 != 0 {
                tun |= libc::TUN_F_TSO4;
            }
            if f & features::GUEST_TSO6 != 0 {
                tun |= libc::TUN_F_TSO6;
            }
            if f & features::GUEST_ECN != 0 {
                tun |= libc::TUN_F_TSO_ECN;
            }
        }
        self.io.set_offload(tun)
    }

    /// Control queue: each chain is a command (class, command, data) and a
    /// device-writable ack byte, `VIRTIO_NET_OK` or `VIRTIO_NET_ERR`.
    pub fn control(&mut self, aq: &mut ActiveQueue, mem: &GuestMem, intr: &dyn VirtioInterrupt) {
        drain(aq, mem, intr, |chain| {
            let segs = segments(chain);
            let mut req = Vec::new();
            for s in segs.iter().filter(|s| !s.write) {
                let start = req.len();
                let len = (s.len as usize).min(MAX_CTRL - start);
                req.resize(start + len, 0);
                if mem.read_slice(&mut req[start..], s.addr).is_err() {
                    req.truncate(start);
                }
            }
            let Some(ack) = segs.iter().rev().find(|s| s.write && s.len > 0) else {
                debug!("virtio-net: control command without room for its ack");
                return 0;
            };
            let status = match req.as_slice() {
                [class, cmd, data @ ..] => self.execute(*class, *cmd, data),
                _ => ctrl::ACK_ERR,
            };
            match mem.write_obj(status, ack.addr) {
                Ok(()) => 1,
                Err(_) => 0,
            }
        });
    }

    /// Carries out one control command; the ack byte.
    fn execute(&mut self, class: u8, cmd: u8, data: &[u8]) -> u8 {
        let command = match ctrl::parse(class, cmd, data, self.features) {
            Ok(c) => c,
            Err(e) => {
                debug!("virtio-net: control command refused: {e}");
                return ctrl::ACK_ERR;
            }
        };
        match command {
            ctrl::Command::GuestOffloads(bits) => {
                if let Err(e) = self.set_guest_offloads(bits) {
                    warn!("virtio-net: receive offloads {bits:#x}: {e}");
                    return ctrl::ACK_ERR;
                }
            }
            ctrl::Command::QueuePairs(n) => {
                let Some(mq) = self.mq.as_mut().filter(|mq| n <= mq.max_pairs()) else {
                    debug!("virtio-net: {n} queue pairs refused");
                    return ctrl::ACK_ERR;
                };
                if let Err(e) = mq.set_active(n) {
                    warn!("virtio-net: switching to {n} queue pairs: {e}");
                    return ctrl::ACK_ERR;
                }
                debug!("virtio-net: {n} queue pairs in use");
            }
            _ => {
                if let Ok(mut f) = self.filter.lock() {
                    f.apply(&command);
                }
            }
        }
        ctrl::ACK_OK
    }

    /// Transmit queue: each chain is a header plus a frame, sent as one write.
    pub fn transmit(&mut self, aq: &mut ActiveQueue, mem: &GuestMem, intr: &dyn VirtioInterrupt) {
        let up = self.link_up.load(Ordering::SeqCst);
        let (io, dropped) = (&mut self.io, &mut self.dropped);
        drain(aq, mem, intr, |chain| {
            let mut frame = Vec::with_capacity(2048);
            for s in segments(chain).into_iter().filter(|s| !s.write) {
                let start = frame.len();
                if start + s.len as usize > MAX_FRAME {
                    break;
                }
                frame.resize(start + s.len as usize, 0);
                if mem.read_slice(&mut frame[start..], s.addr).is_err() {
                    frame.truncate(start);
                }
            }
            if !up || frame.len() <= VNET_HDR_LEN {
                *dropped += 1;
            } else if let Err(e) = io.send(&frame) {
                debug!("virtio-net: tap write: {e}");
                *dropped += 1;
            }
            0
        });
    }

    /// Moves frames from the backend into receive buffers until either runs
    /// out. Returns true when a frame waits for buffers (stop polling the
    /// backend until the driver adds some).
    pub fn receive(
        &mut self,
        aq: &mut ActiveQueue,
        mem: &GuestMem,
        intr: &dyn VirtioInterrupt,
    ) -> bool {
        let mut delivered = 0;
        loop {
            let frame = match self.held.take() {
                Some(f) => f,
                None => match self.io.recv(&mut self.buf) {
                    Ok(n) if n > VNET_HDR_LEN => self.buf[..n].to_vec(),
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        warn!("virtio-net: tap read: {e}");
                        break;
                    }
                },
            };
            if !self.link_up.load(Ordering::SeqCst) {
                self.dropped += 1;
                continue;
            }
            let accepted = self
                .filter
                .lock()
                .map_or(true, |f| f.accepts(&frame[VNET_HDR_LEN..]));
            if !accepted {
                self.filtered += 1;
                continue;
            }
            if !self.place(aq, mem, &frame) {
                self.held = Some(frame);
                break;
            }
            delivered += 1;
        }
        if delivered > 0 {
            notify_if_needed(aq, mem, intr);
        }
        self.held.is_some()
    }

    /// Writes one frame into as many chains as it needs (one unless
    /// mergeable); false (nothing consumed) if the driver has too few.
    fn place(&mut self, aq: &mut ActiveQueue, mem: &GuestMem, frame: &[u8]) -> bool {
        let mut chains: Vec<(u16, Vec<Segment>)> = Vec::new();
        let mut room = 0usize;
        while room < frame.len() {
            let Some(c) = aq.queue.pop_descriptor_chain(mem) else {
                for _ in 0..chains.len() {
                    aq.queue.go_to_previous_position();
                }
                return false;
            };
            let head = c.head_index();
            let segs: Vec<Segment> = segments(c).into_iter().filter(|s| s.write).collect();
            room += segs.iter().map(|s| s.len as usize).sum::<usize>();
            chains.push((head, segs));
            if !self.mergeable {
                break;
            }
        }
        let mut header = [0u8; VNET_HDR_LEN];
        header.copy_from_slice(&frame[..VNET_HDR_LEN]);
        header[10..12].copy_from_slice(&(chains.len() as u16).to_le_bytes());
        let mut data = Vec::with_capacity(frame.len());
        data.extend_from_slice(&header);
        data.extend_from_slice(&frame[VNET_HDR_LEN..]);
        let mut off = 0;
        for (head, segs) in &chains {
            let mut used = 0u32;
            for s in segs {
                if off == data.len() {
                    break;
                }
                let n = (s.len as usize).min(data.len() - off);
                if mem.write_slice(&data[off..off + n], s.addr).is_err() {
                    break;
                }
                off += n;
                used += n as u32;
            }
            let _ = aq.queue.add_used(mem, *head, used);
        }
        if off < data.len() {
            self.dropped += 1;
        }
        true
    }
}

/// One pair's worker: its receive and transmit queues, and the control queue for
/// the first pair.
struct NetWorker {
    core: NetCore,
    pair: u16,
    ctrlq: Option<u16>,
    /// With vhost-net: each ring's call eventfd and its queue index. The kernel
    /// signals them; the worker raises the queue's interrupt (and reads no tap).
    calls: Vec<(EventFd, u16)>,
}

impl NetWorker {
    fn rxq(&self) -> u16 {
        2 * self.pair
    }

    fn rx(&mut self, ctx: &mut DeviceCtx) {
        let Some(pos) = ctx.queue(self.rxq()) else {
            return;
        };
        let waiting = {
            let DeviceCtx {
                mem,
                queues,
                interrupt,
                ..
            } = ctx;
            self.core.receive(&mut queues[pos], mem, interrupt.as_ref())
        };
        ctx.watch_fd(
            0,
            if waiting {
                EventSet::empty()
            } else {
                EventSet::IN
            },
        );
    }
}

impl WorkerHandler for NetWorker {
    fn extra_fds(&self) -> Vec<(RawFd, EventSet)> {
        if self.calls.is_empty() {
            return vec![(self.core.io.fd(), EventSet::IN)];
        }
        self.calls
            .iter()
            .map(|(fd, _)| (fd.as_raw_fd(), EventSet::IN))
            .collect()
    }

    fn started(&mut self, ctx: &mut DeviceCtx) {
        self.core.negotiate(ctx.features);
    }

    fn queue_event(&mut self, ctx: &mut DeviceCtx, pos: usize) {
        let index = ctx.queues[pos].index;
        if index == self.rxq() {
            return self.rx(ctx);
        }
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        if index == self.rxq() + 1 {
            self.core
                .transmit(&mut queues[pos], mem, interrupt.as_ref());
        } else if Some(index) == self.ctrlq {
            self.core.control(&mut queues[pos], mem, interrupt.as_ref());
        }
    }

    fn fd_event(&mut self, ctx: &mut DeviceCtx, i: usize, _events: EventSet) {
        match self.calls.get(i) {
            None => self.rx(ctx),
            Some((call, queue)) => {
                let _ = call.read();
                ctx.interrupt.notify_queue(*queue);
            }
        }
    }
}

/// The virtio-net device.
pub struct Net {
    id: String,
    /// The configured MAC address, which a device reset restores.
    mac: [u8; 6],
    /// The receive filter, with the current MAC address (the driver may set another
    /// through the control queue).
    filter: Arc<Mutex<ctrl::RxFilter>>,
    mtu: Option<u16>,
    /// The backend carries checksum/GSO offloads ([`FrameIo::offloads`]).
    offloads: bool,
    /// Receive/transmit queue pairs.
    pairs: u16,
    control: NetControl,
    /// Each pair's data path while the device is not active, in pair order.
    cores: Vec<NetCore>,
    workers: Vec<Worker<NetWorker>>,
    /// Each pair's vhost-net instance; empty: the VMM moves the frames itself.
    vhost: Vec<Arc<VhostNet>>,
    /// The rings the kernel serves while active (their kick eventfds with them).
    vhost_rings: Vec<ActiveQueue>,
}

/// Parses `52:54:00:12:34:56`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl Net {
    /// A NIC with `mac` over `io`.
    pub fn new(
        id: &str,
        mac: [u8; 6],
        mtu: Option<u16>,
        link_up: bool,
        io: Box<dyn FrameIo>,
    ) -> Self {
        Self::with_control(id, mac, mtu, NetControl::new(link_up), io)
    }

    /// A NIC whose link state lives in `control` (kept across machine resets).
    pub fn with_control(
        id: &str,
        mac: [u8; 6],
        mtu: Option<u16>,
        control: NetControl,
        io: Box<dyn FrameIo>,
    ) -> Self {
        Self::multiqueue(id, mac, mtu, control, vec![(io, None)])
    }

    /// A NIC with one queue pair per backend queue in `queues` (at least one): each
    /// pair's frame transport, and for pairs after the first a switch that attaches
    /// and detaches its queue (a second handle on a multiqueue tap's queue).
    pub fn multiqueue(
        id: &str,
        mac: [u8; 6],
        mtu: Option<u16>,
        control: NetControl,
        queues: Vec<PairBackend>,
    ) -> Self {
        let filter = Arc::new(Mutex::new(ctrl::RxFilter::new(mac, 0)));
        let offloads = queues.first().is_some_and(|(io, _)| io.offloads());
        let pairs = queues.len().max(1) as u16;
        let mut switches = Vec::new();
        let mut cores = Vec::new();
        for (io, switch) in queues {
            let mut core = NetCore::new(io, control.link_up.clone());
            core.filter = filter.clone();
            cores.push(core);
            if let Some(sw) = switch {
                switches.push((sw, true));
            }
        }
        if let Some(first) = cores.first_mut().filter(|_| !switches.is_empty()) {
            let mut mq = MultiQueue { switches };
            // Until the driver asks for more, the first pair only.
            if let Err(e) = mq.set_active(1) {
                warn!(id, "virtio-net: detaching the other queues: {e}");
            }
            first.mq = Some(mq);
        }
        Net {
            id: id.to_string(),
            mac,
            filter,
            mtu,
            offloads,
            pairs,
            control,
            cores,
            workers: Vec::new(),
            vhost: Vec::new(),
            vhost_rings: Vec::new(),
        }
    }

    /// Hands the pairs' frames to the host kernel: one vhost-net instance per pair
    /// ([`vhost::open_for`]; none keeps the VMM's own data path).
    pub fn with_vhost(mut self, instances: Vec<VhostNet>) -> Self {
        if !instances.is_empty() && instances.len() == self.cores.len() {
            self.vhost = instances.into_iter().map(Arc::new).collect();
        }
        self
    }

    /// Whether the host kernel moves the frames.
    pub fn is_vhost(&self) -> bool {
        !self.vhost.is_empty()
    }

    /// Starts vhost-net on the rings of the first `pairs` pairs and the worker that
    /// serves the control queue and relays the kernel's interrupts; `queues` without
    /// the control queue's become the kernel's.
    fn activate_vhost(
        &mut self,
        mut act: Activation,
        (ctrlq, pairs): (u16, u16),
    ) -> Result<(), ActivateError> {
        let device = "virtio-net";
        let (ctrl, rings): (Vec<_>, Vec<_>) = act
            .take_queues()
            .into_iter()
            .partition(|q| q.index == ctrlq);
        let find = |i: u16| {
            rings
                .iter()
                .find(|q| q.index == i)
                .ok_or(ActivateError::MissingQueue { device, queue: i })
        };
        let fail = |e: &dyn std::error::Error| ActivateError::Backend {
            device,
            reason: crate::seccomp::error_chain(e),
        };
        // Each ring's call eventfd: its vector's KVM irqfd where MSI-X gives one (no
        // VMM thread on the interrupt path, as QEMU wires vhost), else one the worker
        // relays.
        let mut calls = Vec::new();
        let mut call_fd = |queue: u16| -> Result<EventFd, ActivateError> {
            if let Some(fd) = act.interrupt.queue_irqfd(queue) {
                return Ok(fd);
            }
            let fd = EventFd::new(EFD_NONBLOCK).map_err(|e| fail(&e))?;
            calls.push((fd.try_clone().map_err(|e| fail(&e))?, queue));
            Ok(fd)
        };
        let mut running: Vec<VhostPair> = Vec::new();
        let up = self.control.link_up();
        for pair in 0..pairs {
            let (rx, tx) = (find(2 * pair)?, find(2 * pair + 1)?);
            let call_rx = call_fd(2 * pair)?;
            let call_tx = call_fd(2 * pair + 1)?;
            let v = &self.vhost[usize::from(pair)];
            let tap = self.cores[usize::from(pair)].io.fd();
            let rings = [(rx, &call_rx), (tx, &call_tx)].map(|(q, call)| vhost::Ring {
                queue: &q.queue,
                kick: &q.kick,
                call,
            });
            let started = v
                .start(&act.mem, act.features, rings)
                .and_then(|()| v.set_backend(up.then_some(tap)));
            if let Err(e) = started {
                for (v, _) in &running {
                    let _ = v.set_backend(None);
                }
                return Err(fail(&e));
            }
            running.push((v.clone(), tap));
        }
        info!(
            id = %self.id,
            rings = 2 * pairs,
            relayed = calls.len(),
            "vhost-net started: ring interrupts through KVM irqfds unless relayed"
        );
        if let Ok(mut g) = self.control.vhost.lock() {
            *g = running;
        }
        self.vhost_rings = rings;
        let mut core = self.cores.remove(0);
        core.negotiate_device(act.features);
        let handler = NetWorker {
            core,
            pair: 0,
            ctrlq: Some(ctrlq),
            calls,
        };
        match Worker::spawn(&format!("_{}", self.id), handler, act.part(ctrl)) {
            Ok(w) => {
                self.workers.push(w);
                Ok(())
            }
            Err(source) => {
                self.reset();
                Err(ActivateError::Worker { device, source })
            }
        }
    }

    /// The host-side control handle.
    pub fn control(&self) -> NetControl {
        self.control.clone()
    }

    /// The control queue's index under `features`: after every pair with `MQ`.
    fn ctrl_queue(&self, features: u64) -> u16 {
        if features & features::MQ != 0 {
            2 * self.pairs
        } else {
            CTRLQ
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        device_type::NET
    }
    fn name(&self) -> &'static str {
        "virtio-net"
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        let mut sizes = vec![256; 2 * usize::from(self.pairs)];
        sizes.push(64);
        sizes
    }
    fn features(&self) -> u64 {
        use features::*;
        let mut f = MAC
            | STATUS
            | MRG_RXBUF
            | CTRL_VQ
            | CTRL_RX
            | CTRL_RX_EXTRA
            | CTRL_VLAN
            | CTRL_MAC_ADDR
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_RING_F_INDIRECT_DESC;
        if self.offloads {
            f |= CSUM
                | CTRL_GUEST_OFFLOADS
                | GUEST_CSUM
                | HOST_TSO4
                | HOST_TSO6
                | HOST_ECN
                | GUEST_TSO4
                | GUEST_TSO6
                | GUEST_ECN;
        }
        if self.mtu.is_some() {
            f |= MTU;
        }
        if self.pairs > 1 {
            f |= features::MQ;
        }
        f
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut c = [0u8; 12];
        let mac = self.filter.lock().map(|f| f.mac()).unwrap_or(self.mac);
        c[..6].copy_from_slice(&mac);
        c[6..8].copy_from_slice(&u16::from(self.control.link_up()).to_le_bytes());
        c[8..10].copy_from_slice(&self.pairs.to_le_bytes());
        c[10..12].copy_from_slice(&self.mtu.unwrap_or(1500).to_le_bytes());
        read_config_bytes(&c, offset, data);
    }
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        if self.cores.len() != usize::from(self.pairs) {
            return Err(ActivateError::NoBackend {
                device: "virtio-net",
            });
        }
        if let Ok(mut g) = self.control.interrupt.lock() {
            *g = Some(act.interrupt.clone());
        }
        let mut act = act;
        let features = act.features;
        let ctrlq = self.ctrl_queue(features);
        let pairs = if features & features::MQ != 0 {
            self.pairs
        } else {
            1
        };
        // Each pair's worker takes its two queues; the first also the control queue.
        if self.is_vhost() {
            return self.activate_vhost(act, (ctrlq, pairs));
        }
        let mut per_pair: Vec<Vec<ActiveQueue>> = (0..pairs).map(|_| Vec::new()).collect();
        for q in act.take_queues() {
            let pair = if q.index == ctrlq { 0 } else { q.index / 2 };
            if let Some(v) = per_pair.get_mut(usize::from(pair)) {
                v.push(q);
            }
        }
        let mut cores = std::mem::take(&mut self.cores).into_iter();
        for (pair, queues) in (0..pairs).zip(per_pair) {
            let Some(mut core) = cores.next() else { break };
            if pair == 0 {
                core.negotiate_device(features);
            }
            let name = match pair {
                0 => format!("_{}", self.id),
                p => format!("_{}q{p}", self.id),
            };
            let handler = NetWorker {
                core,
                pair,
                ctrlq: (pair == 0).then_some(ctrlq),
                calls: Vec::new(),
            };
            match Worker::spawn(&name, handler, act.part(queues)) {
                Ok(w) => self.workers.push(w),
                Err(source) => {
                    // Give every backend back, so a later activation can start over.
                    self.cores.extend(cores);
                    self.reset();
                    return Err(ActivateError::Worker {
                        device: "virtio-net",
                        source,
                    });
                }
            }
        }
        // Pairs the driver did not take (no MQ) keep their cores here.
        self.cores.extend(cores);
        Ok(())
    }
    fn reset(&mut self) {
        if let Ok(mut g) = self.control.interrupt.lock() {
            *g = None;
        }
        if let Ok(mut f) = self.filter.lock() {
            *f = ctrl::RxFilter::new(self.mac, 0);
        }
        // The kernel lets go of the rings before the driver sets them up again.
        if let Ok(mut running) = self.control.vhost.lock() {
            for (v, _) in running.drain(..) {
                if let Err(e) = v.set_backend(None) {
                    warn!(id = %self.id, "virtio-net: reset: {e}");
                }
            }
        }
        self.vhost_rings.clear();
        let idle = std::mem::take(&mut self.cores);
        let mut cores: Vec<(u16, NetCore)> = self
            .workers
            .drain(..)
            .filter_map(|w| w.stop())
            .map(|w| (w.pair, w.core))
            .collect();
        let first_idle = cores.len() as u16;
        cores.extend((first_idle..).zip(idle));
        cores.sort_by_key(|(pair, _)| *pair);
        self.cores = cores
            .into_iter()
            .map(|(_, mut c)| {
                c.held = None;
                c
            })
            .collect();
        // As after power-on: the first pair only until the driver asks again.
        if let Some(mq) = self.cores.first_mut().and_then(|c| c.mq.as_mut()) {
            if let Err(e) = mq.set_active(1) {
                warn!(id = %self.id, "virtio-net: detaching the other queues: {e}");
            }
        }
    }

    /// The VMM's own data path with one pair: frames are handled as they come, no
    /// chain is held. vhost-net (the kernel's ring state) and several pairs (the
    /// driver's pair count lives in the control queue's state) are not saved yet.
    fn can_save(&self) -> bool {
        self.vhost.is_empty() && self.pairs == 1
    }
    fn reset_for_save(&mut self) -> bool {
        if !self.can_save() {
            return false;
        }
        self.reset();
        true
    }
}

#[cfg(test)]
mod tests;
