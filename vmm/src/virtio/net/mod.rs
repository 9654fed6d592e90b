//! virtio-net (virtio 1.2 §5.1) on a tap device.
//!
//! Frames cross the tap with the same 12-byte `virtio_net_hdr_v1` the guest
//! uses (IFF_VNET_HDR, TUNSETVNETHDRSZ 12), so checksum and segmentation
//! offloads pass through untouched: the guest may send 64 KiB TSO frames with
//! partial checksums (HOST_TSO*, CSUM), and the tap may hand it large frames
//! (GUEST_TSO*, GUEST_CSUM, enabled on the tap with TUNSETOFFLOAD once the guest
//! accepts them). Receive uses mergeable buffers when negotiated. The control queue
//! ([`ctrl`]) programs a receive filter, the MAC address and the receive offloads.

pub mod ctrl;
mod passt_args;
pub mod stream;
pub mod tap;

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{debug, warn};
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::Bytes;
use vmm_sys_util::epoll::EventSet;

use super::queue_util::{drain, notify_if_needed, segments, Segment};
use super::worker::{DeviceCtx, Worker, WorkerHandler};
use super::{
    device_type, read_config_bytes, ActivateError, Activation, ActiveQueue, GuestMem, VirtioDevice,
    VirtioInterrupt, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
pub use stream::{PasstLink, StreamIo};
pub use tap::{Tap, TapError, VNET_HDR_LEN};

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
    pub const CTRL_MAC_ADDR: u64 = 1 << 23;
}

const RXQ: u16 = 0;
const TXQ: u16 = 1;
/// The control queue, after the one receive/transmit pair.
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

/// Host control of a NIC: link state (QMP `set_link`).
#[derive(Clone)]
pub struct NetControl {
    link_up: Arc<AtomicBool>,
    interrupt: Arc<Mutex<Option<Arc<dyn VirtioInterrupt>>>>,
}

impl NetControl {
    /// A control with the link `up` or down; see [`Net::with_control`].
    pub fn new(up: bool) -> Self {
        NetControl {
            link_up: Arc::new(AtomicBool::new(up)),
            interrupt: Arc::new(Mutex::new(None)),
        }
    }

    /// Sets the link state and tells the driver (configuration change).
    pub fn set_link(&self, up: bool) {
        if self.link_up.swap(up, Ordering::SeqCst) != up {
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

/// The data path of one NIC, independent of threads.
pub struct NetCore {
    io: Box<dyn FrameIo>,
    link_up: Arc<AtomicBool>,
    mergeable: bool,
    /// Negotiated features (what the control commands may use).
    features: u64,
    /// The MAC address the driver set (config space reads it).
    mac: Arc<Mutex<[u8; 6]>>,
    filter: ctrl::RxFilter,
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
            mac: Arc::new(Mutex::new([0; 6])),
            filter: ctrl::RxFilter::new([0; 6], 0),
            held: None,
            buf: vec![0; MAX_FRAME],
            dropped: 0,
            filtered: 0,
        }
    }

    /// Applies negotiated features (mergeable buffers, receive offloads) and starts
    /// the receive filter from its reset state.
    pub fn negotiate(&mut self, f: u64) {
        self.mergeable = f & features::MRG_RXBUF != 0;
        self.features = f;
        let mac = self.mac.lock().map(|m| *m).unwrap_or_default();
        self.filter = ctrl::RxFilter::new(mac, f);
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
            ctrl::Command::MacAddr(mac) => {
                if let Ok(mut m) = self.mac.lock() {
                    *m = mac;
                }
                self.filter.apply(&command);
            }
            _ => self.filter.apply(&command),
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
            if !self.filter.accepts(&frame[VNET_HDR_LEN..]) {
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

struct NetWorker {
    core: NetCore,
}

impl NetWorker {
    fn rx(&mut self, ctx: &mut DeviceCtx) {
        let Some(pos) = ctx.queue(RXQ) else {
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
        vec![(self.core.io.fd(), EventSet::IN)]
    }

    fn started(&mut self, ctx: &mut DeviceCtx) {
        self.core.negotiate(ctx.features);
    }

    fn queue_event(&mut self, ctx: &mut DeviceCtx, pos: usize) {
        match ctx.queues[pos].index {
            RXQ => self.rx(ctx),
            TXQ => {
                let DeviceCtx {
                    mem,
                    queues,
                    interrupt,
                    ..
                } = ctx;
                self.core
                    .transmit(&mut queues[pos], mem, interrupt.as_ref());
            }
            CTRLQ => {
                let DeviceCtx {
                    mem,
                    queues,
                    interrupt,
                    ..
                } = ctx;
                self.core.control(&mut queues[pos], mem, interrupt.as_ref());
            }
            _ => {}
        }
    }

    fn fd_event(&mut self, ctx: &mut DeviceCtx, _i: usize, _events: EventSet) {
        self.rx(ctx);
    }
}

/// The virtio-net device.
pub struct Net {
    id: String,
    /// The configured MAC address, which a device reset restores.
    mac: [u8; 6],
    /// The current one (the driver may set another through the control queue).
    current_mac: Arc<Mutex<[u8; 6]>>,
    mtu: Option<u16>,
    /// The backend carries checksum/GSO offloads ([`FrameIo::offloads`]).
    offloads: bool,
    control: NetControl,
    core: Option<NetCore>,
    worker: Option<Worker<NetWorker>>,
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
        let link = control.link_up.clone();
        let current_mac = Arc::new(Mutex::new(mac));
        let offloads = io.offloads();
        let mut core = NetCore::new(io, link);
        core.mac = current_mac.clone();
        Net {
            id: id.to_string(),
            mac,
            current_mac,
            mtu,
            offloads,
            control,
            core: Some(core),
            worker: None,
        }
    }

    /// The host-side control handle.
    pub fn control(&self) -> NetControl {
        self.control.clone()
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
        vec![256, 256, 64]
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
        f
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut c = [0u8; 12];
        let mac = self.current_mac.lock().map(|m| *m).unwrap_or(self.mac);
        c[..6].copy_from_slice(&mac);
        c[6..8].copy_from_slice(&u16::from(self.control.link_up()).to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes());
        c[10..12].copy_from_slice(&self.mtu.unwrap_or(1500).to_le_bytes());
        read_config_bytes(&c, offset, data);
    }
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        let core = self.core.take().ok_or(ActivateError::NoBackend {
            device: "virtio-net",
        })?;
        if let Ok(mut g) = self.control.interrupt.lock() {
            *g = Some(act.interrupt.clone());
        }
        let w =
            Worker::spawn(&format!("_{}", self.id), NetWorker { core }, act).map_err(|source| {
                ActivateError::Worker {
                    device: "virtio-net",
                    source,
                }
            })?;
        self.worker = Some(w);
        Ok(())
    }
    fn reset(&mut self) {
        if let Ok(mut g) = self.control.interrupt.lock() {
            *g = None;
        }
        if let Ok(mut m) = self.current_mac.lock() {
            *m = self.mac;
        }
        if let Some(w) = self.worker.take() {
            self.core = w.stop().map(|w| {
                let mut c = w.core;
                c.held = None;
                c
            });
        }
    }
}

#[cfg(test)]
mod tests;
