//! virtio-vsock (virtio 1.2 §5.10) with the host side on unix sockets, the
//! way Firecracker and Cloud Hypervisor do it:
//!
//! * host to guest: a host program connects to the unix socket `uds_path` and
//!   writes `CONNECT <port>\n`; the device asks the guest to accept a stream on
//!   that port and, once it does, answers `OK <host port>\n` on the socket, which
//!   then carries the stream's bytes;
//! * guest to host: a guest connection to host (CID 2) port P connects to the
//!   unix socket `<uds_path>_<P>`.
//!
//! Packets are a 44-byte header plus payload. Flow control is credit based:
//! each side advertises its receive buffer (`buf_alloc`) and how much it has
//! consumed (`fwd_cnt`); a sender never has more than `buf_alloc` bytes in
//! flight. The connections' sockets are watched by an epoll set of their own,
//! which the device worker watches as one fd.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};
use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::queue_util::{drain, notify_if_needed, segments, Segment};
use super::worker::{DeviceCtx, Worker, WorkerHandler};
use super::{
    device_type, read_config_bytes, ActivateError, Activation, ActiveQueue, GuestMem, VirtioDevice,
    VirtioInterrupt, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};

/// The host's CID.
pub const HOST_CID: u64 = 2;
/// Header size.
pub const HDR: usize = 44;
const RXQ: u16 = 0;
const TXQ: u16 = 1;
/// Our receive buffer per connection (what the guest may have in flight to us).
const BUF_ALLOC: u32 = 256 << 10;
/// Largest payload we put in one packet.
const MAX_PKT: usize = 64 << 10;
/// Token of the listening socket in the inner epoll.
const LISTENER: u64 = u64::MAX;

/// Packet operations.
pub mod op {
    pub const REQUEST: u16 = 1;
    pub const RESPONSE: u16 = 2;
    pub const RST: u16 = 3;
    pub const SHUTDOWN: u16 = 4;
    pub const RW: u16 = 5;
    pub const CREDIT_UPDATE: u16 = 6;
    pub const CREDIT_REQUEST: u16 = 7;
}
/// SHUTDOWN flags (virtio 1.2, 5.10.6.5).
pub mod shutdown {
    /// The sender will receive no more data.
    pub const RCV: u32 = 1;
    /// The sender will send no more data.
    pub const SEND: u32 = 2;
    pub const BOTH: u32 = RCV | SEND;
}
/// VIRTIO_VSOCK_TYPE_STREAM.
const TYPE_STREAM: u16 = 1;

/// Errors setting up the device.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The host socket could not be created.
    #[error("cannot listen on '{path}'")]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// epoll could not be set up.
    #[error("cannot create the connection poller")]
    Epoll(#[source] io::Error),
}

/// A packet header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub src_cid: u64,
    pub dst_cid: u64,
    pub src_port: u32,
    pub dst_port: u32,
    pub len: u32,
    pub type_: u16,
    pub op: u16,
    pub flags: u32,
    pub buf_alloc: u32,
    pub fwd_cnt: u32,
}

impl Header {
    /// Little-endian wire form.
    pub fn to_bytes(self) -> [u8; HDR] {
        let mut b = [0u8; HDR];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }

    /// Parses the wire form.
    pub fn from_bytes(b: &[u8; HDR]) -> Self {
        let u32at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u16at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().expect("2 bytes"));
        Header {
            src_cid: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            dst_cid: u64::from_le_bytes(b[8..16].try_into().expect("8 bytes")),
            src_port: u32at(16),
            dst_port: u32at(20),
            len: u32at(24),
            type_: u16at(28),
            op: u16at(30),
            flags: u32at(32),
            buf_alloc: u32at(36),
            fwd_cnt: u32at(40),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    /// Host client connected; waiting for its `CONNECT <port>` line.
    AwaitConnect,
    /// REQUEST sent to the guest; waiting for RESPONSE.
    Requested,
    Established,
    /// The host hung up and the guest was told (SHUTDOWN); waiting to be dropped.
    Closing,
}

struct Conn {
    stream: UnixStream,
    state: ConnState,
    /// Host-side port (ours) and the guest's port.
    local_port: u32,
    peer_port: u32,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// Bytes sent to the guest.
    tx_cnt: u32,
    /// Bytes from the guest written to the host socket.
    fwd_cnt: u32,
    fwd_cnt_sent: u32,
    /// Guest bytes the host socket did not take yet.
    to_host: Vec<u8>,
    /// The `CONNECT` line being read.
    line: Vec<u8>,
    /// The socket has data we have not read (level-triggered mark).
    readable: bool,
    /// The host side hung up; tell the guest once.
    host_eof: bool,
    /// SHUTDOWN flags the guest sent so far (`shutdown::RCV` | `shutdown::SEND`).
    guest_shut: u32,
}

impl Conn {
    fn new(stream: UnixStream, state: ConnState) -> Self {
        Conn {
            stream,
            state,
            local_port: 0,
            peer_port: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            tx_cnt: 0,
            fwd_cnt: 0,
            fwd_cnt_sent: 0,
            to_host: Vec::new(),
            line: Vec::new(),
            readable: false,
            host_eof: false,
            guest_shut: 0,
        }
    }

    fn credit(&self) -> u32 {
        self.peer_buf_alloc
            .saturating_sub(self.tx_cnt.wrapping_sub(self.peer_fwd_cnt))
    }
}

/// The vsock protocol engine: connections, control packets, credit.
pub struct VsockMux {
    guest_cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    conns: BTreeMap<(u32, u32), Conn>,
    /// Host-initiated connections still reading their CONNECT line, by fd.
    pending: BTreeMap<RawFd, Conn>,
    /// Control packets waiting for receive buffers.
    control: VecDeque<Header>,
    next_port: u32,
}

impl VsockMux {
    /// Listens on `uds_path` (handed over, or bound replacing a stale socket file).
    pub fn new(guest_cid: u64, uds_path: &Path) -> Result<Self, VsockError> {
        let lerr = |source| VsockError::Listen {
            path: uds_path.to_path_buf(),
            source,
        };
        let listener = crate::files::listen_unix(uds_path).map_err(lerr)?;
        listener.set_nonblocking(true).map_err(lerr)?;
        let epoll = Epoll::new().map_err(VsockError::Epoll)?;
        epoll
            .ctl(
                ControlOperation::Add,
                listener.as_raw_fd(),
                EpollEvent::new(EventSet::IN, LISTENER),
            )
            .map_err(VsockError::Epoll)?;
        Ok(VsockMux {
            guest_cid,
            uds_path: uds_path.to_path_buf(),
            listener,
            epoll,
            conns: BTreeMap::new(),
            pending: BTreeMap::new(),
            control: VecDeque::new(),
            next_port: 1 << 30,
        })
    }

    /// The fd the worker watches (the inner epoll).
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn header(&self, c: &Conn, op: u16, len: u32) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: c.local_port,
            dst_port: c.peer_port,
            len,
            type_: TYPE_STREAM,
            op,
            flags: 0,
            buf_alloc: BUF_ALLOC,
            fwd_cnt: c.fwd_cnt,
        }
    }

    fn rst(&mut self, h: &Header) {
        self.control.push_back(Header {
            src_cid: HOST_CID,
            dst_cid: self.guest_cid,
            src_port: h.dst_port,
            dst_port: h.src_port,
            type_: TYPE_STREAM,
            op: op::RST,
            ..Default::default()
        });
    }

    fn watch(&self, fd: RawFd, token: u64) {
        if let Err(e) = self.epoll.ctl(
            ControlOperation::Add,
            fd,
            EpollEvent::new(EventSet::IN, token),
        ) {
            warn!("vsock: epoll add: {e}");
        }
    }

    fn unwatch(&self, fd: RawFd) {
        let _ = self
            .epoll
            .ctl(ControlOperation::Delete, fd, EpollEvent::default());
    }

    fn token(key: (u32, u32)) -> u64 {
        u64::from(key.0) << 32 | u64::from(key.1)
    }

    fn close(&mut self, key: (u32, u32)) {
        if let Some(c) = self.conns.remove(&key) {
            self.unwatch(c.stream.as_raw_fd());
        }
    }

    /// A packet from the guest (tx queue).
    pub fn from_guest(&mut self, h: Header, payload: &[u8]) {
        if h.dst_cid != HOST_CID || h.type_ != TYPE_STREAM {
            if h.op != op::RST {
                self.rst(&h);
            }
            return;
        }
        let key = (h.dst_port, h.src_port);
        if h.op == op::REQUEST {
            if self.conns.contains_key(&key) {
                self.rst(&h);
                return;
            }
            let path = format!("{}_{}", self.uds_path.display(), h.dst_port);
            match UnixStream::connect(&path).and_then(|s| s.set_nonblocking(true).map(|_| s)) {
                Ok(stream) => {
                    let mut c = Conn::new(stream, ConnState::Established);
                    c.local_port = h.dst_port;
                    c.peer_port = h.src_port;
                    c.peer_buf_alloc = h.buf_alloc;
                    c.peer_fwd_cnt = h.fwd_cnt;
                    self.watch(c.stream.as_raw_fd(), Self::token(key));
                    self.control.push_back(self.header(&c, op::RESPONSE, 0));
                    self.conns.insert(key, c);
                }
                Err(e) => {
                    debug!(
                        "vsock: guest connect to host port {}: {path}: {e}",
                        h.dst_port
                    );
                    self.rst(&h);
                }
            }
            return;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            if h.op != op::RST {
                self.rst(&h);
            }
            return;
        };
        c.peer_buf_alloc = h.buf_alloc;
        c.peer_fwd_cnt = h.fwd_cnt;
        match h.op {
            op::RESPONSE if c.state == ConnState::Requested => {
                c.state = ConnState::Established;
                let _ = c
                    .stream
                    .write_all(format!("OK {}\n", c.local_port).as_bytes());
            }
            op::RW if c.state == ConnState::Established => {
                c.to_host.extend_from_slice(payload);
                flush_to_host(c);
                if c.fwd_cnt.wrapping_sub(c.fwd_cnt_sent) >= BUF_ALLOC / 4 {
                    c.fwd_cnt_sent = c.fwd_cnt;
                    let hd = self.header(&self.conns[&key], op::CREDIT_UPDATE, 0);
                    self.control.push_back(hd);
                }
            }
            op::CREDIT_REQUEST => {
                c.fwd_cnt_sent = c.fwd_cnt;
                let hd = self.header(&self.conns[&key], op::CREDIT_UPDATE, 0);
                self.control.push_back(hd);
            }
            op::CREDIT_UPDATE => {}
            // A half-close (`shutdown(SHUT_WR)` in the guest, as `nc` does) keeps the
            // other direction open: the host socket gets its own write side shut once
            // the guest's bytes are through. Both directions shut is a clean close,
            // which the spec says the peer answers with RST.
            op::SHUTDOWN => {
                c.guest_shut |= h.flags & shutdown::BOTH;
                flush_to_host(c);
                if c.guest_shut == shutdown::BOTH || h.flags == 0 {
                    let _ = c.stream.shutdown(std::net::Shutdown::Both);
                    self.close(key);
                    self.rst(&h);
                }
            }
            op::RST => {
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
                self.close(key);
            }
            _ => {}
        }
    }

    /// Host-side readiness: accept clients, read CONNECT lines, mark streams
    /// readable, notice hang-ups.
    pub fn poll_host(&mut self) {
        let mut events = vec![EpollEvent::default(); 32];
        let n = self.epoll.wait(0, &mut events).unwrap_or(0);
        for ev in &events[..n] {
            let t = ev.data();
            if t == LISTENER {
                while let Ok((s, _)) = self.listener.accept() {
                    if s.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let fd = s.as_raw_fd();
                    self.watch(fd, 1 << 63 | fd as u64);
                    self.pending
                        .insert(fd, Conn::new(s, ConnState::AwaitConnect));
                }
            } else if t & (1 << 63) != 0 {
                self.read_connect_line((t & 0xffff_ffff) as RawFd);
            } else {
                let key = ((t >> 32) as u32, t as u32);
                if let Some(c) = self.conns.get_mut(&key) {
                    c.readable = true;
                    flush_to_host(c);
                }
            }
        }
    }

    fn read_connect_line(&mut self, fd: RawFd) {
        let Some(c) = self.pending.get_mut(&fd) else {
            return;
        };
        let mut b = [0u8; 64];
        let n = match c.stream.read(&mut b) {
            Ok(0) => {
                self.unwatch(fd);
                self.pending.remove(&fd);
                return;
            }
            Ok(n) => n,
            Err(_) => return,
        };
        c.line.extend_from_slice(&b[..n]);
        let Some(end) = c.line.iter().position(|&x| x == b'\n') else {
            if c.line.len() > 64 {
                self.unwatch(fd);
                self.pending.remove(&fd);
            }
            return;
        };
        let mut c = self.pending.remove(&fd).expect("pending connection");
        self.unwatch(fd);
        let text = String::from_utf8_lossy(&c.line[..end]).into_owned();
        let port = text
            .strip_prefix("CONNECT ")
            .and_then(|p| p.trim().parse::<u32>().ok());
        let Some(port) = port else {
            let _ = c.stream.write_all(b"ERROR bad command\n");
            return;
        };
        // Anything after the line is the start of the stream.
        c.to_host.clear();
        let early = c.line[end + 1..].to_vec();
        c.line.clear();
        self.next_port = self.next_port.wrapping_add(1).max(1 << 30);
        c.local_port = self.next_port;
        c.peer_port = port;
        c.state = ConnState::Requested;
        let key = (c.local_port, c.peer_port);
        self.watch(c.stream.as_raw_fd(), Self::token(key));
        self.control.push_back(self.header(&c, op::REQUEST, 0));
        if !early.is_empty() {
            c.line = early;
        }
        self.conns.insert(key, c);
    }

    /// Fills one receive chain (`segs`, device-writable) with the next packet
    /// for the guest; returns the bytes written, or None if there is none.
    pub fn next_for_guest(&mut self, mem: &GuestMem, segs: &[Segment]) -> Option<u32> {
        let room: usize = segs.iter().map(|s| s.len as usize).sum();
        if room < HDR {
            return None;
        }
        if let Some(h) = self.control.pop_front() {
            return write_packet(mem, segs, &h, &[]);
        }
        let keys: Vec<(u32, u32)> = self.conns.keys().copied().collect();
        for key in keys {
            let mut buf = Vec::new();
            let (hdr, closed) = {
                let c = self.conns.get_mut(&key).expect("listed key");
                if c.state != ConnState::Established {
                    continue;
                }
                // Bytes that arrived behind the CONNECT line go first.
                if !c.line.is_empty() {
                    buf = std::mem::take(&mut c.line);
                } else if c.readable && !c.host_eof && c.guest_shut & shutdown::RCV == 0 {
                    let want = (c.credit() as usize).min(room - HDR).min(MAX_PKT);
                    if want == 0 {
                        continue;
                    }
                    buf.resize(want, 0);
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            c.host_eof = true;
                            buf.clear();
                        }
                        Ok(n) => buf.truncate(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            c.readable = false;
                            continue;
                        }
                        Err(_) => {
                            c.host_eof = true;
                            buf.clear();
                        }
                    }
                } else {
                    continue;
                }
                if buf.is_empty() && c.host_eof {
                    (None, true)
                } else {
                    c.tx_cnt = c.tx_cnt.wrapping_add(buf.len() as u32);
                    c.fwd_cnt_sent = c.fwd_cnt;
                    (Some(()), false)
                }
            };
            if closed {
                // Host hung up: tell the guest both directions are done.
                let c = &self.conns[&key];
                let mut h = self.header(c, op::SHUTDOWN, 0);
                h.flags = 3;
                self.unwatch(c.stream.as_raw_fd());
                if let Some(c) = self.conns.get_mut(&key) {
                    c.state = ConnState::Closing;
                }
                return write_packet(mem, segs, &h, &[]);
            }
            if hdr.is_some() {
                let h = self.header(&self.conns[&key], op::RW, buf.len() as u32);
                return write_packet(mem, segs, &h, &buf);
            }
        }
        None
    }
}

/// Writes what the host socket takes of `c.to_host`; once the guest will send no
/// more and all it sent is through, shuts the host socket's write side (EOF there).
fn flush_to_host(c: &mut Conn) {
    while !c.to_host.is_empty() {
        match c.stream.write(&c.to_host) {
            Ok(0) => break,
            Ok(n) => {
                c.to_host.drain(..n);
                c.fwd_cnt = c.fwd_cnt.wrapping_add(n as u32);
            }
            Err(_) => break,
        }
    }
    if c.to_host.is_empty() && c.guest_shut & shutdown::SEND != 0 {
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
    }
}

fn write_packet(mem: &GuestMem, segs: &[Segment], h: &Header, payload: &[u8]) -> Option<u32> {
    let mut data = Vec::with_capacity(HDR + payload.len());
    data.extend_from_slice(&h.to_bytes());
    data.extend_from_slice(payload);
    let mut off = 0;
    for s in segs {
        if off == data.len() {
            break;
        }
        let n = (s.len as usize).min(data.len() - off);
        mem.write_slice(&data[off..off + n], s.addr).ok()?;
        off += n;
    }
    Some(off as u32)
}

/// Reads a tx chain: header and payload.
fn read_packet(mem: &GuestMem, segs: &[Segment]) -> Option<(Header, Vec<u8>)> {
    let mut data = Vec::new();
    for s in segs.iter().filter(|s| !s.write) {
        let start = data.len();
        if start + s.len as usize > HDR + MAX_PKT {
            return None;
        }
        data.resize(start + s.len as usize, 0);
        mem.read_slice(&mut data[start..], GuestAddress(s.addr.0))
            .ok()?;
    }
    if data.len() < HDR {
        return None;
    }
    let h = Header::from_bytes(data[..HDR].try_into().expect("header bytes"));
    let len = (h.len as usize).min(data.len() - HDR);
    Some((h, data[HDR..HDR + len].to_vec()))
}

impl VsockMux {
    /// Serves the tx queue.
    pub fn transmit(&mut self, aq: &mut ActiveQueue, mem: &GuestMem, intr: &dyn VirtioInterrupt) {
        let mut pkts = Vec::new();
        drain(aq, mem, intr, |chain| {
            if let Some(p) = read_packet(mem, &segments(chain)) {
                pkts.push(p);
            }
            0
        });
        for (h, payload) in pkts {
            self.from_guest(h, &payload);
        }
    }

    /// Fills receive buffers while there is something for the guest.
    pub fn receive(&mut self, aq: &mut ActiveQueue, mem: &GuestMem, intr: &dyn VirtioInterrupt) {
        let mut used = 0;
        while let Some(chain) = aq.queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let segs: Vec<Segment> = segments(chain).into_iter().filter(|s| s.write).collect();
            match self.next_for_guest(mem, &segs) {
                Some(n) => {
                    let _ = aq.queue.add_used(mem, head, n);
                    used += 1;
                }
                None => {
                    aq.queue.go_to_previous_position();
                    break;
                }
            }
        }
        if used > 0 {
            notify_if_needed(aq, mem, intr);
        }
        // Connections whose hang-up was reported can go.
        self.conns.retain(|_, c| c.state != ConnState::Closing);
    }
}

struct VsockWorker {
    mux: VsockMux,
}

impl VsockWorker {
    fn rx(&mut self, ctx: &mut DeviceCtx) {
        let Some(pos) = ctx.queue(RXQ) else {
            return;
        };
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        self.mux.receive(&mut queues[pos], mem, interrupt.as_ref());
    }
}

impl WorkerHandler for VsockWorker {
    fn extra_fds(&self) -> Vec<(RawFd, EventSet)> {
        vec![(self.mux.fd(), EventSet::IN)]
    }

    fn queue_event(&mut self, ctx: &mut DeviceCtx, pos: usize) {
        if ctx.queues[pos].index == TXQ {
            let DeviceCtx {
                mem,
                queues,
                interrupt,
                ..
            } = ctx;
            self.mux.transmit(&mut queues[pos], mem, interrupt.as_ref());
        }
        // Answers and freed credit may let data flow to the guest.
        self.rx(ctx);
    }

    fn fd_event(&mut self, ctx: &mut DeviceCtx, _i: usize, _events: EventSet) {
        self.mux.poll_host();
        self.rx(ctx);
    }
}

/// The virtio-vsock device.
pub struct Vsock {
    id: String,
    guest_cid: u64,
    mux: Option<VsockMux>,
    worker: Option<Worker<VsockWorker>>,
}

impl Vsock {
    /// A device for guest CID `guest_cid`, host side at `uds_path`.
    pub fn new(id: &str, guest_cid: u64, uds_path: &Path) -> Result<Self, VsockError> {
        Ok(Vsock {
            id: id.to_string(),
            guest_cid,
            mux: Some(VsockMux::new(guest_cid, uds_path)?),
            worker: None,
        })
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        device_type::VSOCK
    }
    fn name(&self) -> &'static str {
        "virtio-vsock"
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![256, 256, 16]
    }
    fn features(&self) -> u64 {
        VIRTIO_RING_F_EVENT_IDX | VIRTIO_RING_F_INDIRECT_DESC
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.guest_cid.to_le_bytes(), offset, data);
    }
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        let mux = self.mux.take().ok_or(ActivateError::NoBackend {
            device: "virtio-vsock",
        })?;
        let w = Worker::spawn(&format!("_{}", self.id), VsockWorker { mux }, act).map_err(
            |source| ActivateError::Worker {
                device: "virtio-vsock",
                source,
            },
        )?;
        self.worker = Some(w);
        Ok(())
    }
    fn reset(&mut self) {
        if let Some(w) = self.worker.take() {
            // A driver reset ends every connection (the spec's transport reset).
            self.mux = w.stop().map(|w| {
                let mut m = w.mux;
                let keys: Vec<_> = m.conns.keys().copied().collect();
                for k in keys {
                    m.close(k);
                }
                m.control.clear();
                m
            });
        }
    }
}

#[cfg(test)]
#[path = "vsock_tests.rs"]
mod tests;
