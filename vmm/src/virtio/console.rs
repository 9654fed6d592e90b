//! virtio-console (virtio 1.2 §5.3): one port per device, wired to a character
//! backend.
//!
//! A plain console (`<console type='pty'><target type='virtio'/>`) uses the
//! single-port layout: queue 0 receives, queue 1 transmits. A named port
//! (`<channel>` with a target name such as `org.qemu.guest_agent.0`) needs
//! VIRTIO_CONSOLE_F_MULTIPORT so the guest learns the name: queues 2 and 3 then
//! carry control messages, and the device announces port 0 (DEVICE_ADD), names
//! it (PORT_NAME) and opens it (PORT_OPEN) once the driver says it is ready.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::RawFd;

use virtio_queue::{QueueOwnedT, QueueT};
use vm_memory::{Address, Bytes, GuestMemory, Permissions};
use vmm_sys_util::epoll::EventSet;

use super::queue_util::{drain, notify_if_needed, segments, Segment};
use super::worker::{DeviceCtx, Worker, WorkerHandler};
use super::{
    device_type, read_config_bytes, ActivateError, Activation, ActiveQueue, GuestMem, VirtioDevice,
    VirtioInterrupt, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};

/// VIRTIO_CONSOLE_F_MULTIPORT.
pub const F_MULTIPORT: u64 = 1 << 1;
const RX: u16 = 0;
const TX: u16 = 1;
const CTRL_RX: u16 = 2;
const CTRL_TX: u16 = 3;
/// Input buffered while the guest has no receive buffers.
const MAX_PENDING: usize = 64 << 10;

/// Control events (virtio 1.2 §5.3.6.2).
mod event {
    pub const DEVICE_READY: u16 = 0;
    pub const DEVICE_ADD: u16 = 1;
    pub const PORT_READY: u16 = 3;
    pub const CONSOLE_PORT: u16 = 4;
    pub const PORT_OPEN: u16 = 6;
    pub const PORT_NAME: u16 = 7;
}

/// What a console input read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum InputRead {
    /// Bytes for the guest.
    Data(Vec<u8>),
    /// The fd to poll changed (a socket client came or went).
    FdChanged,
    /// Nothing to do.
    Nothing,
}

/// The host side of a port: a character backend.
pub trait ConsoleBackend: Send {
    /// Guest output.
    fn output(&mut self, data: &[u8]);
    /// The fd to poll for input, if any.
    fn input_fd(&self) -> Option<RawFd>;
    /// Reads what the input fd has.
    fn read_input(&mut self) -> InputRead;
}

/// A backend that only takes output (a file, or a buffer in tests).
pub struct OutputOnly<W: Write + Send>(pub W);

impl<W: Write + Send> ConsoleBackend for OutputOnly<W> {
    fn output(&mut self, data: &[u8]) {
        let _ = self.0.write_all(data);
        let _ = self.0.flush();
    }
    fn input_fd(&self) -> Option<RawFd> {
        None
    }
    fn read_input(&mut self) -> InputRead {
        InputRead::Nothing
    }
}

/// Port state and protocol handling, independent of threads.
pub struct Port {
    backend: Box<dyn ConsoleBackend>,
    name: Option<String>,
    pending: VecDeque<u8>,
    control_out: VecDeque<Vec<u8>>,
    /// Told when the guest opens (true) or closes (false) the port.
    open_hook: Option<OpenHook>,
    guest_open: bool,
}

/// What a named port reports the guest's open/close to (QMP `VSERPORT_CHANGE`).
pub type OpenHook = Box<dyn Fn(bool) + Send>;

fn control(id: u32, ev: u16, value: u16, extra: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(8 + extra.len());
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&ev.to_le_bytes());
    m.extend_from_slice(&value.to_le_bytes());
    m.extend_from_slice(extra);
    m
}

/// Copies `data` into the writable segments; returns bytes copied.
fn fill(mem: &GuestMem, segs: &[Segment], data: &[u8]) -> usize {
    let mut done = 0;
    for s in segs.iter().filter(|s| s.write) {
        if done == data.len() {
            break;
        }
        let n = (s.len as usize).min(data.len() - done);
        if mem.write_slice(&data[done..done + n], s.addr).is_err() {
            break;
        }
        done += n;
    }
    done
}

/// A control message is 8 bytes and, for PORT_NAME (device to driver only), a name:
/// more than this from the driver is not a control message.
const MAX_CONTROL: usize = 4096;

/// Reads the readable segments, at most `limit` bytes; stops at a segment outside
/// guest memory. The bytes are only allocated once the range is known to be guest
/// memory, so a descriptor claiming 4 GiB costs nothing (it made the VMM zero 4 GiB
/// per descriptor; found by the guest fuzzer, `oxtest=fuzz fuzzseed=5`, q35).
fn gather(mem: &GuestMem, segs: &[Segment], limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for s in segs.iter().filter(|s| !s.write) {
        let start = out.len();
        let n = (s.len as usize).min(limit - start);
        if n == 0 || !mem.check_range(s.addr, n, Permissions::Read) {
            break;
        }
        out.resize(start + n, 0);
        if mem.read_slice(&mut out[start..], s.addr).is_err() {
            out.truncate(start);
            break;
        }
    }
    out
}

/// Streams the readable segments to `out` in 64 KiB pieces (a chain may describe all
/// of guest memory; nothing is buffered whole). Stops at a segment outside guest memory.
fn stream(mem: &GuestMem, segs: &[Segment], mut out: impl FnMut(&[u8])) {
    let mut buf = vec![0u8; 64 << 10];
    for s in segs.iter().filter(|s| !s.write) {
        let len = s.len as usize;
        if !mem.check_range(s.addr, len, Permissions::Read) {
            break;
        }
        let mut off = 0;
        while off < len {
            let n = (len - off).min(buf.len());
            if mem
                .read_slice(&mut buf[..n], s.addr.unchecked_add(off as u64))
                .is_err()
            {
                return;
            }
            out(&buf[..n]);
            off += n;
        }
    }
}

impl Port {
    /// A port on `backend`, named for a channel.
    pub fn new(backend: Box<dyn ConsoleBackend>, name: Option<String>) -> Self {
        Port {
            backend,
            name,
            pending: VecDeque::new(),
            control_out: VecDeque::new(),
            open_hook: None,
            guest_open: false,
        }
    }

    /// Transmit queue: guest output to the backend.
    pub fn transmit(&mut self, aq: &mut ActiveQueue, mem: &GuestMem, intr: &dyn VirtioInterrupt) {
        let backend = &mut self.backend;
        drain(aq, mem, intr, |chain| {
            stream(mem, &segments(chain), |data| backend.output(data));
            0
        });
    }

    /// Moves pending input into receive buffers while both exist.
    pub fn receive(&mut self, aq: &mut ActiveQueue, mem: &GuestMem, intr: &dyn VirtioInterrupt) {
        Self::deliver(aq, mem, intr, |segs| {
            if self.pending.is_empty() {
                return None;
            }
            let (a, b) = self.pending.as_slices();
            let data: Vec<u8> = a.iter().chain(b).copied().collect();
            let n = fill(mem, segs, &data);
            self.pending.drain(..n);
            Some(n as u32)
        });
    }

    /// Sends queued control messages to the driver.
    pub fn send_control(
        &mut self,
        aq: &mut ActiveQueue,
        mem: &GuestMem,
        intr: &dyn VirtioInterrupt,
    ) {
        Self::deliver(aq, mem, intr, |segs| {
            let m = self.control_out.pop_front()?;
            Some(fill(mem, segs, &m) as u32)
        });
    }

    /// Pops chains only while `produce` has something for them; a chain it
    /// declines goes back to the ring.
    fn deliver<F>(aq: &mut ActiveQueue, mem: &GuestMem, intr: &dyn VirtioInterrupt, mut produce: F)
    where
        F: FnMut(&[Segment]) -> Option<u32>,
    {
        let mut used = 0;
        while let Some(chain) = aq.queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            match produce(&segments(chain)) {
                Some(len) => {
                    let _ = aq.queue.add_used(mem, head, len);
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
    }

    /// Control messages from the driver; queues the answers.
    pub fn control_in(&mut self, aq: &mut ActiveQueue, mem: &GuestMem, intr: &dyn VirtioInterrupt) {
        let mut msgs = Vec::new();
        drain(aq, mem, intr, |chain| {
            msgs.push(gather(mem, &segments(chain), MAX_CONTROL));
            0
        });
        for m in msgs {
            if m.len() < 8 {
                continue;
            }
            let id = u32::from_le_bytes(m[0..4].try_into().expect("4 bytes"));
            let ev = u16::from_le_bytes([m[4], m[5]]);
            let value = u16::from_le_bytes([m[6], m[7]]);
            match ev {
                event::DEVICE_READY if value == 1 => {
                    self.control_out
                        .push_back(control(0, event::DEVICE_ADD, 0, &[]));
                }
                event::PORT_READY if id == 0 && value == 1 => {
                    match &self.name {
                        Some(n) => {
                            let mut name = n.clone().into_bytes();
                            name.push(0);
                            self.control_out
                                .push_back(control(0, event::PORT_NAME, 0, &name));
                        }
                        None => self
                            .control_out
                            .push_back(control(0, event::CONSOLE_PORT, 1, &[])),
                    }
                    self.control_out
                        .push_back(control(0, event::PORT_OPEN, 1, &[]));
                }
                // The guest's side: a process opened or closed the port.
                event::PORT_OPEN if id == 0 => {
                    let open = value == 1;
                    if open != self.guest_open {
                        self.guest_open = open;
                        if let Some(hook) = &self.open_hook {
                            hook(open);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Backend input is readable: buffer it. Returns false when the pending
    /// buffer is full (stop watching until the guest takes some).
    pub fn input_ready(&mut self) -> (InputRead, bool) {
        match self.backend.read_input() {
            InputRead::Data(d) => {
                self.pending.extend(d);
                (InputRead::Nothing, self.pending.len() < MAX_PENDING)
            }
            other => (other, true),
        }
    }
}

struct ConsoleWorker {
    port: Port,
}

impl ConsoleWorker {
    fn queue(
        ctx: &mut DeviceCtx,
        index: u16,
    ) -> Option<(&mut ActiveQueue, &GuestMem, &dyn VirtioInterrupt)> {
        let pos = ctx.queue(index)?;
        let DeviceCtx {
            mem,
            queues,
            interrupt,
            ..
        } = ctx;
        let interrupt: &std::sync::Arc<dyn VirtioInterrupt> = interrupt;
        Some((&mut queues[pos], &*mem, interrupt.as_ref()))
    }

    fn flush_rx(&mut self, ctx: &mut DeviceCtx) {
        if let Some((q, mem, intr)) = Self::queue(ctx, RX) {
            self.port.receive(q, mem, intr);
        }
        if self.port.pending.len() < MAX_PENDING && self.port.backend.input_fd().is_some() {
            ctx.watch_fd(0, EventSet::IN);
        }
    }
}

impl WorkerHandler for ConsoleWorker {
    fn extra_fds(&self) -> Vec<(RawFd, EventSet)> {
        vec![(self.port.backend.input_fd().unwrap_or(-1), EventSet::IN)]
    }

    fn queue_event(&mut self, ctx: &mut DeviceCtx, pos: usize) {
        match ctx.queues[pos].index {
            RX => self.flush_rx(ctx),
            TX => {
                if let Some((q, mem, intr)) = Self::queue(ctx, TX) {
                    self.port.transmit(q, mem, intr);
                }
            }
            CTRL_TX => {
                if let Some((q, mem, intr)) = Self::queue(ctx, CTRL_TX) {
                    self.port.control_in(q, mem, intr);
                }
                if let Some((q, mem, intr)) = Self::queue(ctx, CTRL_RX) {
                    self.port.send_control(q, mem, intr);
                }
            }
            CTRL_RX => {
                if let Some((q, mem, intr)) = Self::queue(ctx, CTRL_RX) {
                    self.port.send_control(q, mem, intr);
                }
            }
            _ => {}
        }
    }

    fn fd_event(&mut self, ctx: &mut DeviceCtx, _i: usize, _events: EventSet) {
        let (r, keep) = self.port.input_ready();
        if r == InputRead::FdChanged {
            ctx.replace_fd(0, self.port.backend.input_fd(), EventSet::IN);
        } else if !keep {
            ctx.watch_fd(0, EventSet::empty());
        }
        self.flush_rx(ctx);
    }
}

/// The virtio-console device.
pub struct Console {
    id: String,
    multiport: bool,
    port: Option<Port>,
    worker: Option<Worker<ConsoleWorker>>,
}

impl Console {
    /// A console port on `backend`; `name` makes it a named channel port.
    pub fn new(id: &str, backend: Box<dyn ConsoleBackend>, name: Option<String>) -> Self {
        Console {
            id: id.to_string(),
            multiport: name.is_some(),
            port: Some(Port::new(backend, name)),
            worker: None,
        }
    }

    /// Reports the guest opening and closing the port to `hook`.
    pub fn with_open_hook(mut self, hook: OpenHook) -> Self {
        if let Some(p) = &mut self.port {
            p.open_hook = Some(hook);
        }
        self
    }
}

impl VirtioDevice for Console {
    fn device_type(&self) -> u32 {
        device_type::CONSOLE
    }
    fn name(&self) -> &'static str {
        "virtio-console"
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        if self.multiport {
            vec![128; 4]
        } else {
            vec![128; 2]
        }
    }
    fn features(&self) -> u64 {
        let f = VIRTIO_RING_F_EVENT_IDX | VIRTIO_RING_F_INDIRECT_DESC;
        if self.multiport {
            f | F_MULTIPORT
        } else {
            f
        }
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // cols, rows, max_nr_ports, emerg_wr.
        let mut c = [0u8; 12];
        c[4..8].copy_from_slice(&1u32.to_le_bytes());
        read_config_bytes(&c, offset, data);
    }
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        let mut port = self.port.take().ok_or(ActivateError::NoBackend {
            device: "virtio-console",
        })?;
        if act.features & F_MULTIPORT == 0 {
            // A driver that declined multiport gets a plain console.
            port.control_out.clear();
        }
        let w = Worker::spawn(&format!("_{}", self.id), ConsoleWorker { port }, act).map_err(
            |source| ActivateError::Worker {
                device: "virtio-console",
                source,
            },
        )?;
        self.worker = Some(w);
        Ok(())
    }
    fn reset(&mut self) {
        if let Some(w) = self.worker.take() {
            self.port = w.stop().map(|w| {
                let mut p = w.port;
                p.control_out.clear();
                p
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::queue_util::testing::{add_chain, memory, queue, used, CountingInterrupt};
    use std::sync::{Arc, Mutex};
    use vm_memory::GuestAddress;

    fn ga(a: u64) -> GuestAddress {
        GuestAddress(a)
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmit_reaches_the_backend() {
        let mem = memory();
        let out = Shared::default();
        let mut port = Port::new(Box::new(OutputOnly(out.clone())), None);
        let (mock, mut aq) = queue(&mem, 0, TX);
        mem.write_slice(b"hello ", ga(0x10_0000)).unwrap();
        mem.write_slice(b"world", ga(0x10_1000)).unwrap();
        add_chain(&mock, 0, &[(0x10_0000, 6, false), (0x10_1000, 5, false)]);
        let intr = CountingInterrupt::default();
        port.transmit(&mut aq, &mem, &intr);
        assert_eq!(&*out.0.lock().unwrap(), b"hello world");
        assert_eq!(*intr.queues.lock().unwrap(), vec![TX]);
    }

    /// A descriptor claiming 4 GiB (guest memory is 16 MiB) is dropped at once, without
    /// the VMM allocating it; the chain is still returned.
    #[test]
    fn transmit_of_a_4_gib_descriptor_is_dropped_quickly() {
        let mem = memory();
        let out = Shared::default();
        let mut port = Port::new(Box::new(OutputOnly(out.clone())), None);
        let (mock, mut aq) = queue(&mem, 0, TX);
        mem.write_slice(b"hi", ga(0x10_0000)).unwrap();
        add_chain(
            &mock,
            0,
            &[(0x10_0000, 2, false), (0x10_1000, u32::MAX, false)],
        );
        let intr = CountingInterrupt::default();
        let t = std::time::Instant::now();
        port.transmit(&mut aq, &mem, &intr);
        assert!(
            t.elapsed() < std::time::Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(&*out.0.lock().unwrap(), b"hi");
        assert_eq!(*intr.queues.lock().unwrap(), vec![TX]);
    }

    #[test]
    fn input_waits_for_receive_buffers() {
        let mem = memory();
        let mut port = Port::new(Box::new(OutputOnly(Vec::new())), None);
        port.pending.extend(b"abcdef");
        let (mock, mut aq) = queue(&mem, 0, RX);
        let intr = CountingInterrupt::default();
        port.receive(&mut aq, &mem, &intr);
        assert!(
            intr.queues.lock().unwrap().is_empty(),
            "no buffers, no interrupt"
        );
        add_chain(&mock, 0, &[(0x10_0000, 4, true)]);
        port.receive(&mut aq, &mem, &intr);
        assert_eq!(used(&mem, &mock, 0), (0, 4));
        assert_eq!(port.pending.len(), 2);
        let mut b = [0u8; 4];
        mem.read_slice(&mut b, ga(0x10_0000)).unwrap();
        assert_eq!(&b, b"abcd");
    }

    #[test]
    fn multiport_handshake_names_the_port() {
        let mem = memory();
        let mut port = Port::new(
            Box::new(OutputOnly(Vec::new())),
            Some("org.qemu.guest_agent.0".into()),
        );
        let (ctl_tx, mut tx) = queue(&mem, 0, CTRL_TX);
        let (ctl_rx, mut rx) = queue(&mem, 0x8000, CTRL_RX);
        let intr = CountingInterrupt::default();
        mem.write_slice(
            &control(u32::MAX, event::DEVICE_READY, 1, &[]),
            ga(0x10_0000),
        )
        .unwrap();
        mem.write_slice(&control(0, event::PORT_READY, 1, &[]), ga(0x10_0100))
            .unwrap();
        add_chain(&ctl_tx, 0, &[(0x10_0000, 8, false)]);
        add_chain(&ctl_tx, 1, &[(0x10_0100, 8, false)]);
        for i in 0..3u16 {
            add_chain(&ctl_rx, i, &[(0x20_0000 + u64::from(i) * 0x100, 64, true)]);
        }
        port.control_in(&mut tx, &mem, &intr);
        port.send_control(&mut rx, &mem, &intr);
        let msg = |i: u64| {
            let mut m = [0u8; 40];
            mem.read_slice(&mut m, ga(0x20_0000 + i * 0x100)).unwrap();
            m
        };
        assert_eq!(
            u16::from_le_bytes([msg(0)[4], msg(0)[5]]),
            event::DEVICE_ADD
        );
        let name = msg(1);
        assert_eq!(u16::from_le_bytes([name[4], name[5]]), event::PORT_NAME);
        assert_eq!(&name[8..30], b"org.qemu.guest_agent.0");
        assert_eq!(used(&mem, &ctl_rx, 1).1, 8 + 23);
        assert_eq!(u16::from_le_bytes([msg(2)[4], msg(2)[5]]), event::PORT_OPEN);
    }

    #[test]
    fn the_guest_opening_and_closing_the_port_is_reported_once_each() {
        let mem = memory();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let mut port = Port::new(
            Box::new(OutputOnly(Vec::new())),
            Some("org.qemu.guest_agent.0".into()),
        );
        port.open_hook = Some(Box::new(move |open| s.lock().unwrap().push(open)));
        let (ctl_tx, mut tx) = queue(&mem, 0, CTRL_TX);
        let intr = CountingInterrupt::default();
        for (i, value) in [1u16, 1, 0].into_iter().enumerate() {
            let at = 0x10_0000 + i as u64 * 0x100;
            mem.write_slice(&control(0, event::PORT_OPEN, value, &[]), ga(at))
                .unwrap();
            add_chain(&ctl_tx, i as u16, &[(at, 8, false)]);
        }
        port.control_in(&mut tx, &mem, &intr);
        assert_eq!(*seen.lock().unwrap(), vec![true, false]);
    }
}
