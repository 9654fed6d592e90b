//! The 82540EM or 82574L function ([`Model`]): its register file, interrupts and
//! rings, and the thread that moves frames from the backend into the receive ring.
//! Transmit runs on the vCPU thread that writes the tail register, as on real
//! hardware the write starts the DMA engine.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tracing::{debug, warn};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::eeprom::{self, Eeprom};
use super::model::Model;
use super::phy::{self, Phy};
use super::regs::{self, ctrl, ctrl_ext, eecd, eerd, icr, mdic, rctl, status, tctl};
use super::tx::{TxDesc, TxState, STATUS_DD};
use crate::pci::intx::{IntxLine, IntxPin, PIN_INTA};
use crate::pci::{BarKind, ConfigSpace, PciDevice, PciError, PciHeader, PciRoot};
use crate::virtio::net::{FrameIo, NetControl, VNET_HDR_LEN};
use crate::virtio::{GuestMem, VirtioInterrupt};

/// PCI vendor: Intel (device ids come from the [`Model`]).
const VENDOR: u16 = 0x8086;
const BAR_MMIO: usize = 0;
const COMMAND_MEMORY: u16 = 1 << 1;
const COMMAND_BUS_MASTER: u16 = 1 << 2;
const COMMAND_INTX_DISABLE: u16 = 1 << 10;
const STATUS_INTERRUPT: u32 = 1 << 19;
/// Receive descriptor status: done, end of packet, ignore checksum indication, VLAN.
const RXD_DD: u8 = 1 << 0;
const RXD_EOP: u8 = 1 << 1;
const RXD_IXSM: u8 = 1 << 2;
const RXD_VP: u8 = 1 << 3;
/// The 82574L's PCI Express capability (version 2, endpoint): x1 link at
/// 2.5 GT/s, trained; 128-byte payloads; no extended capabilities behind it.
const PCIE_ENDPOINT: [u8; 60] = {
    let mut c = [0u8; 60];
    c[0] = 0x10; // PCI Express
    c[2] = 0x02; // version 2, device/port type 0: endpoint
    c[12] = 0x11; // link capabilities: 2.5 GT/s, x1
    c[18] = 0x11; // link status: 2.5 GT/s, x1
    c
};
/// Device control and link control are the driver's to write.
const PCIE_ENDPOINT_WRITABLE: [u8; 18] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
];
/// Frames shorter than this are padded, as the MAC pads on the wire.
const MIN_FRAME: usize = 60;
/// Largest frame taken from the backend (jumbo frames up to 16 KiB).
const MAX_RX_FRAME: usize = 16384;

/// The state the vCPUs and the receive thread share.
pub struct E1000 {
    id: String,
    model: Model,
    config: ConfigSpace,
    regs: Vec<u32>,
    eeprom: Eeprom,
    phy: Phy,
    tx: TxState,
    mem: GuestMem,
    mac: [u8; 6],
    io: Arc<Mutex<Box<dyn FrameIo>>>,
    link: NetControl,
    intx: Option<Arc<IntxPin>>,
    /// 1 while the interrupt line should be asserted (shared with the pin).
    level: Arc<AtomicU8>,
    /// Tells the receive thread that descriptors (or the enable bit) changed.
    wake: Arc<EventFd>,
}

/// What became of a received frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Rx {
    Stored,
    Dropped,
    /// No room in the ring now: keep it until the driver adds descriptors.
    NoRoom,
}

impl E1000 {
    fn reg(&self, off: u64) -> u32 {
        self.regs[(off / 4) as usize]
    }

    fn set(&mut self, off: u64, v: u32) {
        self.regs[(off / 4) as usize] = v;
    }

    fn add_stat(&mut self, off: u64, n: u64) {
        let i = (off / 4) as usize;
        let v = u64::from(self.regs[i]) | u64::from(self.regs[i + 1]) << 32;
        let v = v.wrapping_add(n);
        self.regs[i] = v as u32;
        self.regs[i + 1] = (v >> 32) as u32;
    }

    fn count(&mut self, off: u64) {
        let i = (off / 4) as usize;
        self.regs[i] = self.regs[i].saturating_add(1);
    }

    /// Power-on and software reset (CTRL.RST) values.
    fn reset(&mut self) {
        self.regs.fill(0);
        self.set(regs::CTRL, ctrl::SLU | 0x241);
        self.set(regs::VET, 0x8100);
        let m = self.mac;
        self.set(regs::RA, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        self.set(
            regs::RA + 4,
            u32::from(u16::from_le_bytes([m[4], m[5]])) | regs::RAH_AV,
        );
        self.tx = TxState::default();
        self.phy = Phy::new(self.model.phy_id2());
        self.update_irq();
    }

    fn status(&self) -> u32 {
        let mut s = status::FD | status::SPEED_1000 | status::ASDV_1000;
        if self.link.link_up() {
            s |= status::LU;
        }
        s
    }

    /// A register read (dword `off`), with its side effects.
    pub fn read(&mut self, off: u64) -> u32 {
        match off {
            regs::STATUS => self.status(),
            // The 82574L loads its NVM at reset by itself (e1000e polls AUTO_RD).
            regs::EECD if self.model.is_82574() => self.eeprom.read_eecd() | eecd::AUTO_RD,
            regs::EECD => self.eeprom.read_eecd(),
            regs::EEMNGCTL if self.model.is_82574() => regs::EEMNGCTL_CFG_DONE_0,
            regs::ICR => self.read_icr(),
            regs::ICS | regs::IMC => 0,
            o if (regs::STATS_START..regs::STATS_END).contains(&o) => {
                let v = self.reg(o);
                self.set(o, 0);
                v
            }
            o => self.reg(o),
        }
    }

    /// A register write (dword `off`).
    pub fn write(&mut self, off: u64, v: u32) {
        match off {
            regs::CTRL => {
                if v & ctrl::RST != 0 {
                    self.reset();
                } else {
                    self.set(regs::CTRL, v & !ctrl::PHY_RST);
                }
            }
            regs::STATUS => {}
            regs::EECD => self.eeprom.write_eecd(v),
            regs::EERD => {
                let (start, done, shift) = self.model.eerd_layout();
                if v & start != 0 {
                    let mask = if self.model.is_82574() { 0x3fff } else { 0xff };
                    let addr = (v >> shift) & mask;
                    let data = self.eeprom.word(addr as usize);
                    self.set(
                        regs::EERD,
                        done | addr << shift | u32::from(data) << eerd::DATA_SHIFT,
                    );
                }
            }
            regs::MDIC => self.mdic(v),
            regs::ICR => {
                let left = self.reg(regs::ICR) & !v;
                self.set(regs::ICR, left);
                self.update_irq();
            }
            regs::ICS => self.raise(v & !icr::INT_ASSERTED),
            regs::IMS => {
                let m = self.reg(regs::IMS) | v;
                self.set(regs::IMS, m);
                self.update_irq();
            }
            regs::IMC => {
                let m = self.reg(regs::IMS) & !v;
                self.set(regs::IMS, m);
                self.update_irq();
            }
            regs::RDH | regs::TDH => self.set(off, v & 0xffff),
            regs::RDLEN | regs::TDLEN => self.set(off, v & 0xf_ff80),
            regs::RCTL | regs::RDT => {
                if off == regs::RCTL
                    && v & rctl::DTYP_MASK != 0
                    && self.reg(regs::RCTL) & rctl::DTYP_MASK == 0
                {
                    // e1000e picks them for a jumbo MTU: frames would land in the
                    // first buffer only, so say so rather than fail silently.
                    warn!(id = %self.id, "{}: packet-split receive descriptors (RCTL.DTYP, jumbo MTU) are not modelled", self.model.name());
                }
                self.set(off, if off == regs::RDT { v & 0xffff } else { v });
                let _ = self.wake.write(1);
            }
            regs::TDT => {
                self.set(off, v & 0xffff);
                self.transmit();
            }
            regs::TCTL => {
                self.set(off, v);
                self.transmit();
            }
            o if (regs::STATS_START..regs::STATS_END).contains(&o) => {}
            o => self.set(o, v),
        }
    }

    fn mdic(&mut self, v: u32) {
        let phy_addr = (v >> mdic::PHY_SHIFT) & 0x1f;
        let reg = ((v >> mdic::REG_SHIFT) & 0x1f) as u8;
        let out = if phy_addr != phy::ADDRESS {
            v | mdic::ERROR
        } else if v & mdic::OP_READ == mdic::OP_READ {
            let data = self.phy.read(reg, self.link.link_up());
            (v & !mdic::DATA_MASK) | u32::from(data)
        } else {
            if v & mdic::OP_WRITE != 0 {
                self.phy.write(reg, v as u16);
            }
            v
        };
        self.set(regs::MDIC, out | mdic::READY);
    }

    /// ICR as read: the causes, then cleared. The 82574L adds INT_ASSERTED while
    /// an enabled cause is pending (e1000e's INTx handler returns IRQ_NONE without
    /// it) and, under CTRL_EXT.IAME, masks the IAM causes as the read happens.
    fn read_icr(&mut self) -> u32 {
        let mut v = self.reg(regs::ICR);
        if self.model.is_82574() && v & self.reg(regs::IMS) != 0 {
            v |= icr::INT_ASSERTED;
            if self.reg(regs::CTRL_EXT) & ctrl_ext::IAME != 0 {
                let m = self.reg(regs::IMS) & !self.reg(regs::IAM);
                self.set(regs::IMS, m);
            }
        }
        self.set(regs::ICR, 0);
        self.update_irq();
        v
    }

    /// Sets interrupt causes and drives the line.
    fn raise(&mut self, causes: u32) {
        let v = self.reg(regs::ICR) | causes;
        self.set(regs::ICR, v);
        self.update_irq();
    }

    fn update_irq(&mut self) {
        let level = self.reg(regs::ICR) & self.reg(regs::IMS) != 0;
        let was = self.level.swap(u8::from(level), Ordering::SeqCst);
        if level && was == 0 {
            if let Some(pin) = &self.intx {
                pin.raise();
            }
        }
    }

    fn dma_allowed(&self) -> bool {
        self.config.command() & COMMAND_BUS_MASTER != 0
    }

    fn ring(&self, bal: u64) -> (u64, u32) {
        let base = u64::from(self.reg(bal)) | u64::from(self.reg(bal + 4)) << 32;
        (base, self.reg(bal + 8) / 16)
    }

    /// Sends every descriptor between head and tail.
    fn transmit(&mut self) {
        if self.reg(regs::TCTL) & tctl::EN == 0 || !self.dma_allowed() {
            return;
        }
        let (base, n) = self.ring(regs::TDBAL);
        if n == 0 {
            return;
        }
        let vlan = (self.reg(regs::CTRL) & ctrl::VME != 0).then(|| self.reg(regs::VET) as u16);
        let mut done = false;
        // At most one lap: a tail past the ring's end must not spin the vCPU.
        for _ in 0..n {
            let head = self.reg(regs::TDH) % n;
            if head == self.reg(regs::TDT) {
                break;
            }
            let at = GuestAddress(base + u64::from(head) * 16);
            let mut raw = [0u8; 16];
            if self.mem.read_slice(&mut raw, at).is_err() {
                warn!(id = %self.id, "{}: transmit descriptor at {:#x} is outside RAM", self.model.name(), at.0);
                break;
            }
            let d = TxDesc::parse(&raw);
            for frame in self.tx.push(&d, &self.mem, vlan) {
                self.send(&frame);
            }
            if d.report_status() {
                let _ = self
                    .mem
                    .write_obj(raw[12] | STATUS_DD, GuestAddress(at.0 + 12));
            }
            self.set(regs::TDH, (head + 1) % n);
            done = true;
        }
        if done {
            self.raise(icr::TXDW | icr::TXQE);
        }
    }

    fn send(&mut self, frame: &[u8]) {
        if !self.link.link_up() {
            return;
        }
        let mut buf = vec![0u8; VNET_HDR_LEN + frame.len()];
        buf[VNET_HDR_LEN..].copy_from_slice(frame);
        let sent = match self.io.lock() {
            Ok(mut io) => io.send(&buf),
            Err(_) => return,
        };
        match sent {
            Ok(()) => {
                self.count(regs::GPTC);
                self.count(regs::TPT);
                self.add_stat(regs::GOTCL, frame.len() as u64);
            }
            Err(e) => debug!(id = %self.id, "e1000: backend write: {e}"),
        }
    }

    /// Whether the receive filters pass a frame to `dst`.
    fn accepts(&self, dst: &[u8]) -> bool {
        let r = self.reg(regs::RCTL);
        if dst == [0xff; 6] {
            return r & rctl::BAM != 0 || r & rctl::MPE != 0;
        }
        if dst[0] & 1 != 0 {
            if r & rctl::MPE != 0 {
                return true;
            }
            // The multicast table: 12 address bits chosen by RCTL.MO.
            let shift = [4, 3, 2, 0][((r >> rctl::MO_SHIFT) & 3) as usize];
            let h = (u32::from(u16::from_le_bytes([dst[4], dst[5]])) >> shift) & 0xfff;
            return self.reg(regs::MTA + u64::from(h >> 5) * 4) & 1 << (h & 31) != 0;
        }
        if r & rctl::UPE != 0 {
            return true;
        }
        (0..16).any(|i| {
            let lo = self.reg(regs::RA + i * 8).to_le_bytes();
            let hi = self.reg(regs::RA + i * 8 + 4);
            hi & regs::RAH_AV != 0 && dst[..4] == lo && dst[4..] == (hi as u16).to_le_bytes()
        })
    }

    fn rx_buffer_size(&self) -> usize {
        let r = self.reg(regs::RCTL);
        let code = (r >> rctl::BSIZE_SHIFT) & 3;
        if r & rctl::BSEX != 0 {
            [2048, 16384, 8192, 4096][code as usize]
        } else {
            [2048, 1024, 512, 256][code as usize]
        }
    }

    /// Stores `frame` (no vnet header) in the receive ring.
    pub fn receive(&mut self, frame: &[u8]) -> Rx {
        if self.reg(regs::RCTL) & rctl::EN == 0
            || !self.link.link_up()
            || !self.dma_allowed()
            || frame.len() < 14
            || !self.accepts(&frame[..6])
        {
            return Rx::Dropped;
        }
        let mut data = frame.to_vec();
        let mut special = 0u16;
        let mut vlan = false;
        let vet = self.reg(regs::VET) as u16;
        if self.reg(regs::CTRL) & ctrl::VME != 0
            && data.len() >= 18
            && u16::from_be_bytes([data[12], data[13]]) == vet
        {
            special = u16::from_be_bytes([data[14], data[15]]);
            data.drain(12..16);
            vlan = true;
        }
        if data.len() < MIN_FRAME {
            data.resize(MIN_FRAME, 0);
        }
        if self.reg(regs::RCTL) & rctl::SECRC == 0 {
            // The driver strips a frame check sequence it expects at the end.
            data.extend_from_slice(&[0; 4]);
        }
        let (base, n) = self.ring(regs::RDBAL);
        let size = self.rx_buffer_size();
        let needed = data.len().div_ceil(size) as u32;
        let (head, tail) = (self.reg(regs::RDH), self.reg(regs::RDT));
        if n == 0 || head >= n || tail >= n {
            return Rx::NoRoom;
        }
        let free = (tail + n - head) % n;
        if free < needed {
            self.raise(icr::RXO);
            return Rx::NoRoom;
        }
        let mut head = head;
        let chunks = data.chunks(size).count();
        for (i, chunk) in data.chunks(size).enumerate() {
            let at = GuestAddress(base + u64::from(head) * 16);
            let buf: u64 = self.mem.read_obj(at).unwrap_or(0);
            if buf != 0 && self.mem.write_slice(chunk, GuestAddress(buf)).is_err() {
                warn!(id = %self.id, "e1000: receive buffer at {buf:#x} is outside RAM");
            }
            let mut st = RXD_DD | RXD_IXSM;
            if i + 1 == chunks {
                st |= RXD_EOP;
                if vlan {
                    st |= RXD_VP;
                }
            }
            let _ = self.write_back_rx(at, chunk.len() as u16, st, special);
            head = (head + 1) % n;
        }
        self.set(regs::RDH, head);
        self.count(regs::GPRC);
        self.count(regs::TPR);
        self.add_stat(regs::GORCL, frame.len() as u64);
        let mut causes = icr::RXT0;
        let threshold = n >> (1 + ((self.reg(regs::RCTL) >> rctl::RDMTS_SHIFT) & 3));
        if (tail + n - head) % n <= threshold {
            causes |= icr::RXDMT0;
        }
        self.raise(causes);
        Rx::Stored
    }

    /// Writes the receive descriptor at `at` back as done: the legacy layout
    /// (length at 8, status at 12, VLAN at 14), or with RFCTL.EXSTEN on an 82574L
    /// the extended one (RSS words at 0-7, which stay 0, status/error dword at 8,
    /// length at 12, VLAN at 14), which e1000e always selects.
    fn write_back_rx(
        &self,
        at: GuestAddress,
        len: u16,
        st: u8,
        vlan: u16,
    ) -> Result<(), vm_memory::GuestMemoryError> {
        if self.model.is_82574() && self.reg(regs::RFCTL) & regs::RFCTL_EXSTEN != 0 {
            let mut wb = [0u8; 16];
            wb[8] = st;
            wb[12..14].copy_from_slice(&len.to_le_bytes());
            wb[14..16].copy_from_slice(&vlan.to_le_bytes());
            return self.mem.write_slice(&wb, at);
        }
        let mut wb = [0u8; 8];
        wb[0..2].copy_from_slice(&len.to_le_bytes());
        wb[4] = st;
        wb[6..8].copy_from_slice(&vlan.to_le_bytes());
        self.mem.write_slice(&wb, GuestAddress(at.0 + 8))
    }

    fn link_changed(&mut self) {
        self.raise(icr::LSC);
        let _ = self.wake.write(1);
    }
}

/// Tells the function about host link changes (QMP `set_link`): a status change
/// interrupt, as a cable plugged in or pulled.
struct LinkWatcher(Weak<Mutex<E1000>>);

impl VirtioInterrupt for LinkWatcher {
    fn notify_queue(&self, _queue: u16) {}
    fn notify_config(&self) {
        if let Some(s) = self.0.upgrade() {
            if let Ok(mut s) = s.lock() {
                s.link_changed();
            }
        }
    }
}

/// Why a function could not be made.
#[derive(Debug, thiserror::Error)]
pub enum E1000Error {
    #[error(transparent)]
    Pci(#[from] PciError),
    #[error("eventfd: {0}")]
    EventFd(io::Error),
}

/// The PCI function: the shared state and its receive thread.
pub struct E1000Function {
    state: Arc<Mutex<E1000>>,
    stop: Arc<AtomicBool>,
    wake: Arc<EventFd>,
    rx: Option<JoinHandle<()>>,
}

impl E1000Function {
    /// A `model` NIC with `mac` on `io`, its register BAR placed in `root`'s window.
    pub fn new(
        id: &str,
        model: Model,
        mac: [u8; 6],
        io: Box<dyn FrameIo>,
        link: NetControl,
        mem: GuestMem,
        root: &mut PciRoot,
    ) -> Result<Self, E1000Error> {
        let (subsystem_vendor, subsystem) = model.subsystem();
        let mut config = ConfigSpace::new(PciHeader {
            vendor: VENDOR,
            device: model.device_id(),
            revision: if model.is_82574() { 0 } else { 3 },
            class: 0x02_00_00,
            subsystem_vendor,
            subsystem,
        });
        config.add_bar(BAR_MMIO, regs::MMIO_SIZE, BarKind::Mem32);
        if model.is_82574() {
            // Drivers (Windows' above all) expect an 82574L to be PCIe.
            config.add_capability(&PCIE_ENDPOINT, &PCIE_ENDPOINT_WRITABLE);
        }
        let at = root.allocate_bar(regs::MMIO_SIZE, BarKind::Mem32)?;
        config.set_bar_address(BAR_MMIO, at);
        let backend_fd = io.fd();
        // Receive offloads stay off: frames arrive whole, with a zero vnet header.
        let mut io = io;
        if let Err(e) = io.set_offload(0) {
            debug!(id, "e1000: backend offloads: {e}");
        }
        let wake = Arc::new(
            EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(E1000Error::EventFd)?,
        );
        let mut s = E1000 {
            id: id.to_string(),
            model,
            config,
            regs: vec![0; (regs::MMIO_SIZE / 4) as usize],
            eeprom: Eeprom::new(eeprom::image(mac, model)),
            phy: Phy::new(model.phy_id2()),
            tx: TxState::default(),
            mem,
            mac,
            io: Arc::new(Mutex::new(io)),
            link: link.clone(),
            intx: None,
            level: Arc::new(AtomicU8::new(0)),
            wake: wake.clone(),
        };
        s.reset();
        let io = s.io.clone();
        let state = Arc::new(Mutex::new(s));
        link.on_change(Arc::new(LinkWatcher(Arc::downgrade(&state))));
        let stop = Arc::new(AtomicBool::new(false));
        let rx = {
            let (state, stop, wake) = (state.clone(), stop.clone(), wake.clone());
            std::thread::Builder::new()
                .name(format!("{}-{id}", model.name()))
                .spawn(move || {
                    crate::seccomp::enter_or_exit(crate::seccomp::Thread::Worker);
                    receive_loop(&state, &io, backend_fd, &wake, &stop)
                })
                .ok()
        };
        if rx.is_none() {
            warn!(id, "e1000: no receive thread");
        }
        Ok(E1000Function {
            state,
            stop,
            wake,
            rx,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, E1000> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives the function INTA#, routed to `gsi`. Returns the pin for resampling.
    pub fn attach_intx(&mut self, gsi: u8, line: Box<dyn IntxLine>) -> Arc<IntxPin> {
        let mut s = self.lock();
        s.config.set_interrupt(gsi, PIN_INTA);
        let pin = Arc::new(IntxPin::new(u32::from(gsi), s.level.clone(), line));
        s.intx = Some(pin.clone());
        pin
    }

    /// Where the register BAR is now.
    pub fn bar0(&self) -> u64 {
        self.lock().config.bar_address(BAR_MMIO).unwrap_or(0)
    }

    /// A register read, for tests.
    pub fn read_reg(&self, off: u64) -> u32 {
        self.lock().read(off)
    }

    /// A register write, for tests.
    pub fn write_reg(&self, off: u64, v: u32) {
        self.lock().write(off, v)
    }
}

impl Drop for E1000Function {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
        if let Some(t) = self.rx.take() {
            let _ = t.join();
        }
    }
}

/// Moves frames from the backend into the ring; while a frame waits for
/// descriptors, listens only for the driver's tail writes.
fn receive_loop(
    state: &Mutex<E1000>,
    io: &Mutex<Box<dyn FrameIo>>,
    backend_fd: RawFd,
    wake: &EventFd,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; VNET_HDR_LEN + MAX_RX_FRAME];
    let mut held: Option<Vec<u8>> = None;
    let mut backend_gone = false;
    while !stop.load(Ordering::SeqCst) {
        if let Some(f) = &held {
            match state.lock().map(|mut s| s.receive(f)) {
                Ok(Rx::NoRoom) => {}
                _ => held = None,
            }
        }
        while held.is_none() && !backend_gone {
            let got = match io.lock() {
                Ok(mut io) => io.recv(&mut buf),
                Err(_) => return,
            };
            match got {
                Ok(n) if n > VNET_HDR_LEN => {
                    let frame = &buf[VNET_HDR_LEN..n];
                    if let Ok(Rx::NoRoom) = state.lock().map(|mut s| s.receive(frame)) {
                        held = Some(frame.to_vec());
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("e1000: backend read: {e}");
                    break;
                }
            }
        }
        // SAFETY: both fds stay open for the loop's lifetime (the backend is
        // owned by `io`, the eventfd by the function, which joins this thread
        // before dropping either).
        let wake_fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(wake.as_raw_fd()) };
        // SAFETY: as above.
        let backend = unsafe { std::os::fd::BorrowedFd::borrow_raw(backend_fd) };
        let mut fds = vec![PollFd::new(wake_fd, PollFlags::POLLIN)];
        if held.is_none() && !backend_gone {
            fds.push(PollFd::new(backend, PollFlags::POLLIN));
        }
        if poll(&mut fds, PollTimeout::from(1000u16)).is_err() {
            continue;
        }
        if let Some(b) = fds.get(1).and_then(|f| f.revents()) {
            if b.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
                && !b.contains(PollFlags::POLLIN)
            {
                // passt went away: nothing more will come (the link is down).
                backend_gone = true;
            }
        }
        let _ = wake.read();
    }
}

impl PciDevice for E1000Function {
    fn state_name(&self) -> String {
        "e1000".into()
    }
    fn read_config(&mut self, reg: usize) -> u32 {
        let s = self.lock();
        let v = s.config.read(reg);
        match &s.intx {
            Some(pin) if reg == 1 && pin.pending() => v | STATUS_INTERRUPT,
            _ => v,
        }
    }

    fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]) {
        let mut s = self.lock();
        s.config.write(reg, offset, data);
        if reg == 1 {
            if let Some(pin) = &s.intx {
                pin.set_mode(false, s.config.command() & COMMAND_INTX_DISABLE != 0);
            }
            // Bus mastering may just have been enabled.
            let _ = s.wake.write(1);
        }
    }

    fn bars(&self) -> Vec<(usize, u64, u64)> {
        self.lock().config.bars()
    }

    fn memory_enabled(&self) -> bool {
        self.lock().config.command() & COMMAND_MEMORY != 0
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar != BAR_MMIO || data.len() > 4 || offset >= regs::MMIO_SIZE {
            data.fill(0);
            return;
        }
        let v = self.lock().read(offset & !3).to_le_bytes();
        let at = (offset & 3) as usize;
        for (i, b) in data.iter_mut().enumerate() {
            *b = v.get(at + i).copied().unwrap_or(0);
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != BAR_MMIO || data.len() > 4 || offset >= regs::MMIO_SIZE {
            return;
        }
        let mut s = self.lock();
        let reg = offset & !3;
        let at = (offset & 3) as usize;
        let mut v = if data.len() == 4 { 0 } else { s.reg(reg) }.to_le_bytes();
        for (i, &b) in data.iter().enumerate() {
            if let Some(x) = v.get_mut(at + i) {
                *x = b;
            }
        }
        s.write(reg, u32::from_le_bytes(v));
    }

    fn set_multifunction(&mut self) {
        self.lock().config.set_multifunction(true);
    }
}
