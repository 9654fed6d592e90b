//! The virtio-pci modern transport (virtio 1.2 §4.1).
//!
//! BAR 0 (64-bit memory, placed below 4 GiB) holds every structure the
//! capabilities point at:
//!
//! | offset | structure |
//! |---|---|
//! | 0x0000 | common configuration (`struct virtio_pci_common_cfg`) |
//! | 0x1000 | ISR status (read clears) |
//! | 0x2000 | device-specific configuration |
//! | 0x3000 | notifications: queue N at 0x3000 + 4·N (`notify_off_multiplier` 4) |
//! | 0x8000 | MSI-X table |
//! | 0xc000 | MSI-X PBA |
//!
//! Queue notifications normally never reach this code: each queue's notify
//! address is bound to an eventfd with KVM_IOEVENTFD ([`IoEventRegistrar`]), and
//! the device worker waits on that eventfd. A write that does arrive here (no
//! registrar, or the BAR just moved) signals the same eventfd.
//!
//! Interrupts go out as MSI-X when the driver enabled it, else on the INTA# pin
//! ([`IntxPin`], when the VMM gave the function one): level-triggered, held while
//! the ISR status is non-zero (virtio 1.2 §4.1.4.5).

use std::sync::atomic::{AtomicU16, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{debug, warn};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{Activation, ActiveQueue, GuestMem, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use crate::pci::config::{BarKind, ConfigSpace, PciHeader, COMMAND_MEMORY};
use crate::pci::intx::{IntxLine, IntxPin, PIN_INTA};
use crate::pci::msix::{MsiSink, MsixState};
use crate::pci::{PciDevice, PciError, PciRoot};

/// Offsets of the structures in BAR 0.
pub const COMMON_CFG: u64 = 0x0000;
pub const ISR_CFG: u64 = 0x1000;
pub const DEVICE_CFG: u64 = 0x2000;
pub const NOTIFY_CFG: u64 = 0x3000;
pub const MSIX_TABLE: u64 = 0x8000;
pub const MSIX_PBA: u64 = 0xc000;
/// Size of BAR 0.
pub const BAR0_SIZE: u64 = 0x1_0000;
/// Bytes between two queues' notify addresses.
pub const NOTIFY_MULTIPLIER: u32 = 4;
/// MSI-X "no vector".
pub const NO_VECTOR: u16 = 0xffff;
/// Largest queue count a device may have (bounded by the notify area).
const MAX_QUEUES: usize = 256;

/// Device status bits (virtio 1.2 §2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 0x40;
    pub const FAILED: u8 = 0x80;
}

/// virtio PCI capability types.
mod cap {
    pub const VENDOR: u8 = 0x09;
    pub const COMMON: u8 = 1;
    pub const NOTIFY: u8 = 2;
    pub const ISR: u8 = 3;
    pub const DEVICE: u8 = 4;
    pub const PCI_CFG: u8 = 5;
}

/// Binds guest MMIO writes at an address to an eventfd (KVM_IOEVENTFD).
pub trait IoEventRegistrar: Send + Sync {
    /// Any write at `addr` signals `evt` instead of exiting to userspace.
    fn register(&self, addr: u64, evt: &EventFd) -> std::io::Result<()>;
    /// Undoes [`IoEventRegistrar::register`].
    fn unregister(&self, addr: u64, evt: &EventFd) -> std::io::Result<()>;
}

/// Driver-programmed state of one queue (kept as it is by a saved machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct QueueSetup {
    max_size: u16,
    size: u16,
    vector: u16,
    enabled: bool,
    desc: u64,
    driver: u64,
    device: u64,
}

impl QueueSetup {
    fn new(max_size: u16) -> Self {
        QueueSetup {
            max_size,
            size: max_size,
            vector: NO_VECTOR,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }
}

/// ISR status bits (virtio 1.2 §4.1.4.5).
const ISR_QUEUE: u8 = 1;
const ISR_CONFIG: u8 = 2;
/// Status register bit (in the dword at 0x04): INTx asserted.
const STATUS_INTERRUPT: u32 = 1 << 19;
/// Command register bit: INTx disabled.
const COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// Maps device notifications to MSI-X vectors, or the INTx pin when MSI-X is off.
struct PciInterrupt {
    msix: Arc<Mutex<MsixState>>,
    intx: Option<Arc<IntxPin>>,
    isr: Arc<AtomicU8>,
    queue_vectors: Vec<u16>,
    config_vector: Arc<AtomicU16>,
    config_generation: Arc<AtomicU8>,
}

impl PciInterrupt {
    fn raise(&self, vector: u16) {
        // A poisoned lock means a vCPU thread panicked; the VMM is going down.
        let Ok(mut m) = self.msix.lock() else {
            return;
        };
        if m.enabled() {
            // With MSI-X on, NO_VECTOR means "no interrupt" (§4.1.5.1.2).
            if vector != NO_VECTOR {
                m.trigger(vector);
            }
        } else if let Some(pin) = &self.intx {
            // The ISR bit is set already: the line holds until the driver reads it.
            pin.raise();
        }
    }
}

impl VirtioInterrupt for PciInterrupt {
    fn notify_queue(&self, queue: u16) {
        self.isr.fetch_or(ISR_QUEUE, Ordering::SeqCst);
        let v = self
            .queue_vectors
            .get(usize::from(queue))
            .copied()
            .unwrap_or(NO_VECTOR);
        self.raise(v);
    }

    fn queue_irqfd(&self, queue: u16) -> Option<EventFd> {
        let v = *self.queue_vectors.get(usize::from(queue))?;
        if v == NO_VECTOR {
            return None;
        }
        self.msix.lock().ok()?.irqfd(v)
    }

    fn notify_config(&self) {
        // The driver re-reads the configuration while the generation moves (§4.1.4.3).
        self.config_generation.fetch_add(1, Ordering::SeqCst);
        self.isr.fetch_or(ISR_CONFIG, Ordering::SeqCst);
        self.raise(self.config_vector.load(Ordering::SeqCst));
    }
}

/// A virtio device on the PCI bus.
pub struct VirtioPciDevice {
    config: ConfigSpace,
    device: Box<dyn VirtioDevice>,
    mem: GuestMem,
    msix: Arc<Mutex<MsixState>>,
    msix_cap: usize,
    pci_cfg_cap: usize,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    device_status: u8,
    config_generation: Arc<AtomicU8>,
    queue_select: u16,
    queues: Vec<QueueSetup>,
    config_vector: Arc<AtomicU16>,
    isr: Arc<AtomicU8>,
    /// The INTA# pin, when the VMM routed one.
    intx: Option<Arc<IntxPin>>,
    kicks: Vec<EventFd>,
    ioevents: Option<Arc<dyn IoEventRegistrar>>,
    /// BAR 0 address the ioeventfds are bound to.
    ioevent_base: Option<u64>,
    active: bool,
    /// The BAR holding the virtio structures ("BAR 0" everywhere else here).
    bar: usize,
}

/// How a function that is more than a virtio device lays itself out (virtio-vga:
/// the VGA framebuffer in BAR 0, so the virtio structures move up). The default is
/// a plain virtio function: BAR 0, the device type's class.
#[derive(Default)]
pub struct PciLayout {
    /// The BAR of the virtio structures (64-bit, so it takes this index and the next).
    pub bar: usize,
    /// The class code, instead of the device type's.
    pub class: Option<u32>,
    /// Other BARs of the function: (index, size, kind, address); the caller serves them.
    pub other_bars: Vec<(usize, u64, BarKind, u64)>,
}

impl std::fmt::Debug for VirtioPciDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioPciDevice")
            .field("device", &self.device.name())
            .field("status", &self.device_status)
            .field("active", &self.active)
            .finish()
    }
}

/// PCI class code for a virtio device type (what QEMU reports).
fn class_for(device_type: u32) -> u32 {
    match device_type {
        super::device_type::NET => 0x02_0000,
        super::device_type::BLOCK | super::device_type::SCSI => 0x01_0000,
        super::device_type::CONSOLE => 0x07_8000,
        // Display controller, "other" (virtio-gpu-pci; virtio-vga says VGA).
        super::device_type::GPU => 0x03_8000,
        _ => 0xff_0000,
    }
}

fn vendor_cap(cfg_type: u8, bar: u8, offset: u64, length: u64, extra: &[u8]) -> Vec<u8> {
    let mut c = vec![
        cap::VENDOR,
        0,
        (16 + extra.len()) as u8,
        cfg_type,
        bar,
        0,
        0,
        0,
    ];
    c.extend_from_slice(&(offset as u32).to_le_bytes());
    c.extend_from_slice(&(length as u32).to_le_bytes());
    c.extend_from_slice(extra);
    c
}

impl VirtioPciDevice {
    /// Wraps `device` as a PCI function and places its BAR in `root`'s 32-bit
    /// window (so guests without 64-bit page tables reach it).
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMem,
        root: &mut PciRoot,
        msi: Arc<dyn MsiSink>,
        ioevents: Option<Arc<dyn IoEventRegistrar>>,
    ) -> Result<Self, PciError> {
        Self::with_layout(device, mem, root, msi, ioevents, PciLayout::default())
    }

    /// Like [`VirtioPciDevice::new`], with the virtio structures in BAR `layout.bar`
    /// and `layout`'s class and other BARs.
    pub fn with_layout(
        device: Box<dyn VirtioDevice>,
        mem: GuestMem,
        root: &mut PciRoot,
        msi: Arc<dyn MsiSink>,
        ioevents: Option<Arc<dyn IoEventRegistrar>>,
        layout: PciLayout,
    ) -> Result<Self, PciError> {
        let sizes = device.queue_max_sizes();
        assert!(
            !sizes.is_empty() && sizes.len() <= MAX_QUEUES,
            "virtio device with {} queues",
            sizes.len()
        );
        let dtype = device.device_type();
        let mut config = ConfigSpace::new(PciHeader {
            vendor: 0x1af4,
            device: 0x1040 + dtype as u16,
            revision: 1,
            class: layout.class.unwrap_or_else(|| class_for(dtype)),
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        });
        let vbar = layout.bar;
        for &(index, size, kind, addr) in &layout.other_bars {
            config.add_bar(index, size, kind);
            config.set_bar_address(index, addr);
        }
        config.add_bar(vbar, BAR0_SIZE, BarKind::Mem64);
        let bar0 = root.allocate_bar(BAR0_SIZE, BarKind::Mem32)?;
        config.set_bar_address(vbar, bar0);
        let b = vbar as u8;

        config.add_capability(&vendor_cap(cap::COMMON, b, COMMON_CFG, 0x38, &[]), &[]);
        config.add_capability(
            &vendor_cap(
                cap::NOTIFY,
                b,
                NOTIFY_CFG,
                sizes.len() as u64 * u64::from(NOTIFY_MULTIPLIER),
                &NOTIFY_MULTIPLIER.to_le_bytes(),
            ),
            &[],
        );
        config.add_capability(&vendor_cap(cap::ISR, b, ISR_CFG, 1, &[]), &[]);
        config.add_capability(&vendor_cap(cap::DEVICE, b, DEVICE_CFG, 0x1000, &[]), &[]);
        // VIRTIO_PCI_CAP_PCI_CFG: a window into the BARs through config space.
        // bar (byte 4), offset, length and the data dword are guest-writable.
        let mut w = vec![0u8; 20];
        w[4] = 0xff;
        w[8..20].fill(0xff);
        let pci_cfg_cap = config.add_capability(&vendor_cap(cap::PCI_CFG, 0, 0, 0, &[0; 4]), &w);

        let vectors = sizes.len() as u16 + 1;
        let msix = MsixState::new(vectors, msi);
        let (body, mask) = msix.capability(b, MSIX_TABLE as u32, MSIX_PBA as u32);
        let msix_cap = config.add_capability(&body, &mask);

        let kicks = sizes
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK).expect("eventfd for a virtio queue"))
            .collect();
        let mut dev = VirtioPciDevice {
            config,
            device,
            mem,
            msix: Arc::new(Mutex::new(msix)),
            msix_cap,
            pci_cfg_cap,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            device_status: 0,
            config_generation: Arc::new(AtomicU8::new(0)),
            queue_select: 0,
            queues: sizes.iter().map(|&s| QueueSetup::new(s)).collect(),
            config_vector: Arc::new(AtomicU16::new(NO_VECTOR)),
            isr: Arc::new(AtomicU8::new(0)),
            intx: None,
            kicks,
            ioevents,
            ioevent_base: None,
            active: false,
            bar: vbar,
        };
        dev.bind_ioevents(bar0);
        Ok(dev)
    }

    /// Gives the function the INTA# pin, routed to `gsi` through `line`, for drivers
    /// that leave MSI-X off. Returns the pin, for the VMM's resampling of the line.
    pub fn attach_intx(&mut self, gsi: u8, line: Box<dyn IntxLine>) -> Arc<IntxPin> {
        self.config.set_interrupt(gsi, PIN_INTA);
        let pin = Arc::new(IntxPin::new(u32::from(gsi), self.isr.clone(), line));
        self.intx = Some(pin.clone());
        self.update_intx_mode();
        pin
    }

    /// MSI-X enable or the command register's INTx Disable changed.
    fn update_intx_mode(&self) {
        let Some(pin) = &self.intx else {
            return;
        };
        let msix = self.msix.lock().map(|m| m.enabled()).unwrap_or(false);
        pin.set_mode(msix, self.config.command() & COMMAND_INTX_DISABLE != 0);
    }

    /// The wrapped device's name.
    pub fn name(&self) -> &'static str {
        self.device.name()
    }

    /// Guest address of BAR 0 (of the virtio structures' BAR).
    pub fn bar0(&self) -> u64 {
        self.config.bar_address(self.bar).unwrap_or(0)
    }

    /// The device status byte (for tests and `info`-style queries).
    pub fn status(&self) -> u8 {
        self.device_status
    }

    fn bind_ioevents(&mut self, base: u64) {
        let Some(reg) = self.ioevents.clone() else {
            return;
        };
        if self.ioevent_base == Some(base) {
            return;
        }
        if let Some(old) = self.ioevent_base.take() {
            for (q, evt) in self.kicks.iter().enumerate() {
                let _ = reg.unregister(
                    old + NOTIFY_CFG + q as u64 * u64::from(NOTIFY_MULTIPLIER),
                    evt,
                );
            }
        }
        for (q, evt) in self.kicks.iter().enumerate() {
            let addr = base + NOTIFY_CFG + q as u64 * u64::from(NOTIFY_MULTIPLIER);
            if let Err(e) = reg.register(addr, evt) {
                warn!(device = self.device.name(), "ioeventfd at {addr:#x}: {e}");
            }
        }
        self.ioevent_base = Some(base);
    }

    fn device_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn reset(&mut self) {
        if self.active {
            self.device.reset();
            self.active = false;
        }
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.device_status = 0;
        self.queue_select = 0;
        for q in &mut self.queues {
            *q = QueueSetup::new(q.max_size);
        }
        self.config_vector.store(NO_VECTOR, Ordering::SeqCst);
        self.isr.store(0, Ordering::SeqCst);
        // Drain kicks that arrived before the reset.
        for k in &self.kicks {
            let _ = k.read();
        }
    }

    fn set_status(&mut self, value: u8) {
        if value == 0 {
            debug!(device = self.device.name(), "reset by the driver");
            self.reset();
            return;
        }
        let mut value = value;
        if value & status::FEATURES_OK != 0 && self.device_status & status::FEATURES_OK == 0 {
            let offered = self.device_features();
            let ok = self.driver_features & !offered == 0
                && self.driver_features & VIRTIO_F_VERSION_1 != 0;
            if !ok {
                warn!(
                    device = self.device.name(),
                    "driver features {:#x} not a subset of {:#x} with VERSION_1",
                    self.driver_features,
                    offered
                );
                value &= !status::FEATURES_OK;
            }
        }
        let newly_ok =
            value & status::DRIVER_OK != 0 && self.device_status & status::DRIVER_OK == 0;
        self.device_status = value;
        if newly_ok && value & status::FEATURES_OK != 0 && !self.active {
            self.activate();
        }
    }

    fn activate(&mut self) {
        self.activate_at(false);
    }

    /// Activates the device; with `from_used` each queue goes on from its used
    /// ring's index (a restored or just-saved machine: nothing was in flight, so
    /// every chain taken was returned and the next to take is the next to return),
    /// and each queue is kicked once for what the driver added meanwhile.
    fn activate_at(&mut self, from_used: bool) {
        let event_idx = self.driver_features & super::VIRTIO_RING_F_EVENT_IDX != 0;
        let mut active = Vec::new();
        for (i, s) in self.queues.iter().enumerate() {
            if !s.enabled {
                continue;
            }
            let mut q = match Queue::new(s.max_size) {
                Ok(q) => q,
                Err(e) => {
                    warn!(device = self.device.name(), "queue {i}: {e}");
                    self.device_status |= status::DEVICE_NEEDS_RESET;
                    return;
                }
            };
            q.set_size(s.size);
            q.set_desc_table_address(Some(s.desc as u32), Some((s.desc >> 32) as u32));
            q.set_avail_ring_address(Some(s.driver as u32), Some((s.driver >> 32) as u32));
            q.set_used_ring_address(Some(s.device as u32), Some((s.device >> 32) as u32));
            q.set_event_idx(event_idx);
            q.set_ready(true);
            if from_used {
                use vm_memory::Bytes;
                let idx: u16 = self
                    .mem
                    .read_obj(GuestAddress(s.device.wrapping_add(2)))
                    .unwrap_or(0);
                q.set_next_avail(idx);
                q.set_next_used(idx);
            }
            if !q.is_valid(&self.mem) {
                warn!(
                    device = self.device.name(),
                    "queue {i}: invalid setup (size {}, desc {:#x}, avail {:#x}, used {:#x})",
                    s.size,
                    s.desc,
                    s.driver,
                    s.device
                );
                self.device_status |= status::DEVICE_NEEDS_RESET;
                return;
            }
            let kick = match self.kicks[i].try_clone() {
                Ok(k) => k,
                Err(e) => {
                    warn!(device = self.device.name(), "queue {i}: eventfd: {e}");
                    self.device_status |= status::DEVICE_NEEDS_RESET;
                    return;
                }
            };
            active.push(ActiveQueue {
                index: i as u16,
                queue: q,
                kick,
            });
        }
        let interrupt = Arc::new(PciInterrupt {
            msix: self.msix.clone(),
            intx: self.intx.clone(),
            isr: self.isr.clone(),
            queue_vectors: self.queues.iter().map(|q| q.vector).collect(),
            config_vector: self.config_vector.clone(),
            config_generation: self.config_generation.clone(),
        });
        let activation = Activation {
            mem: self.mem.clone(),
            features: self.driver_features,
            queues: active,
            interrupt,
        };
        match self.device.activate(activation) {
            Ok(()) => {
                debug!(
                    device = self.device.name(),
                    features = self.driver_features,
                    "activated"
                );
                self.active = true;
                if from_used {
                    for (k, s) in self.kicks.iter().zip(&self.queues) {
                        if s.enabled {
                            let _ = k.write(1);
                        }
                    }
                }
            }
            Err(e) => {
                warn!("{e}");
                self.device_status |= status::DEVICE_NEEDS_RESET;
            }
        }
    }

    /// The common configuration as the driver sees it now.
    fn common_bytes(&self) -> [u8; 0x40] {
        let mut b = [0u8; 0x40];
        let feats = self.device_features();
        let dev_feat = match self.device_feature_select {
            0 => feats as u32,
            1 => (feats >> 32) as u32,
            _ => 0,
        };
        let drv_feat = match self.driver_feature_select {
            0 => self.driver_features as u32,
            1 => (self.driver_features >> 32) as u32,
            _ => 0,
        };
        b[0..4].copy_from_slice(&self.device_feature_select.to_le_bytes());
        b[4..8].copy_from_slice(&dev_feat.to_le_bytes());
        b[8..12].copy_from_slice(&self.driver_feature_select.to_le_bytes());
        b[12..16].copy_from_slice(&drv_feat.to_le_bytes());
        b[16..18].copy_from_slice(&self.config_vector.load(Ordering::SeqCst).to_le_bytes());
        b[18..20].copy_from_slice(&(self.queues.len() as u16).to_le_bytes());
        b[20] = self.device_status;
        b[21] = self.config_generation.load(Ordering::SeqCst);
        b[22..24].copy_from_slice(&self.queue_select.to_le_bytes());
        if let Some(q) = self.queues.get(usize::from(self.queue_select)) {
            b[24..26].copy_from_slice(&q.size.to_le_bytes());
            b[26..28].copy_from_slice(&q.vector.to_le_bytes());
            b[28..30].copy_from_slice(&u16::from(q.enabled).to_le_bytes());
            b[30..32].copy_from_slice(&self.queue_select.to_le_bytes());
            b[32..40].copy_from_slice(&q.desc.to_le_bytes());
            b[40..48].copy_from_slice(&q.driver.to_le_bytes());
            b[48..56].copy_from_slice(&q.device.to_le_bytes());
        }
        b
    }

    fn common_write(&mut self, offset: u64, data: &[u8]) {
        let mut raw = [0u8; 8];
        raw[..data.len().min(8)].copy_from_slice(&data[..data.len().min(8)]);
        let v = u64::from_le_bytes(raw);
        let nvec = self.msix.lock().map(|m| m.vectors()).unwrap_or(0);
        let vector_ok = |x: u16| if x < nvec { x } else { NO_VECTOR };
        let sel = usize::from(self.queue_select);
        let after_ok = self.device_status & status::DRIVER_OK != 0;
        match (offset, data.len()) {
            (0x00, 4) => self.device_feature_select = v as u32,
            (0x08, 4) => self.driver_feature_select = v as u32,
            (0x0c, 4) if self.device_status & status::FEATURES_OK == 0 => {
                match self.driver_feature_select {
                    0 => self.driver_features = (self.driver_features & !0xffff_ffff) | v,
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (v & 0xffff_ffff) << 32
                    }
                    _ => {}
                }
            }
            (0x10, 2) => self
                .config_vector
                .store(vector_ok(v as u16), Ordering::SeqCst),
            (0x14, 1) => self.set_status(v as u8),
            (0x16, 2) => self.queue_select = v as u16,
            (0x18, 2) if !after_ok => {
                if let Some(q) = self.queues.get_mut(sel) {
                    q.size = v as u16;
                }
            }
            (0x1a, 2) => {
                if let Some(q) = self.queues.get_mut(sel) {
                    q.vector = vector_ok(v as u16);
                }
            }
            (0x1c, 2) if !after_ok => {
                if let Some(q) = self.queues.get_mut(sel) {
                    q.enabled = v & 1 == 1;
                }
            }
            (0x20..=0x37, 4 | 8) if !after_ok => {
                let Some(q) = self.queues.get_mut(sel) else {
                    return;
                };
                let (field, high) = match offset {
                    0x20 | 0x24 => (&mut q.desc, offset == 0x24),
                    0x28 | 0x2c => (&mut q.driver, offset == 0x2c),
                    0x30 | 0x34 => (&mut q.device, offset == 0x34),
                    _ => return,
                };
                if data.len() == 8 {
                    *field = v;
                } else if high {
                    *field = (*field & 0xffff_ffff) | (v & 0xffff_ffff) << 32;
                } else {
                    *field = (*field & !0xffff_ffff) | (v & 0xffff_ffff);
                }
            }
            _ => debug!(
                device = self.device.name(),
                "ignored common config write at {offset:#x} ({} bytes)",
                data.len()
            ),
        }
    }

    fn bar0_read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            o if o < ISR_CFG => {
                let b = self.common_bytes();
                super::read_config_bytes(&b, o - COMMON_CFG, data);
            }
            o if o < DEVICE_CFG => {
                data.fill(0);
                if o == ISR_CFG {
                    data[0] = self.isr.swap(0, Ordering::SeqCst);
                }
            }
            o if o < NOTIFY_CFG => self.device.read_config(o - DEVICE_CFG, data),
            o if (MSIX_TABLE..MSIX_PBA).contains(&o) => match self.msix.lock() {
                Ok(m) => m.read_table(o - MSIX_TABLE, data),
                Err(_) => data.fill(0),
            },
            o if o >= MSIX_PBA => match self.msix.lock() {
                Ok(m) => m.read_pba(o - MSIX_PBA, data),
                Err(_) => data.fill(0),
            },
            _ => data.fill(0),
        }
    }

    fn bar0_write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            o if o < ISR_CFG => self.common_write(o - COMMON_CFG, data),
            o if o < DEVICE_CFG => {}
            o if o < NOTIFY_CFG => self.device.write_config(o - DEVICE_CFG, data),
            o if o < NOTIFY_CFG + self.kicks.len() as u64 * u64::from(NOTIFY_MULTIPLIER) => {
                let q = ((o - NOTIFY_CFG) / u64::from(NOTIFY_MULTIPLIER)) as usize;
                let _ = self.kicks[q].write(1);
            }
            o if (MSIX_TABLE..MSIX_PBA).contains(&o) => {
                if let Ok(mut m) = self.msix.lock() {
                    m.write_table(o - MSIX_TABLE, data);
                }
            }
            _ => {}
        }
    }

    /// VIRTIO_PCI_CAP_PCI_CFG data access: forwards to BAR `bar` at `offset`.
    fn pci_cfg_access(&mut self, write: Option<&[u8]>) -> Option<u32> {
        let c = self.pci_cfg_cap;
        let bar = self.config.byte(c + 4);
        let off = u32::from_le_bytes([
            self.config.byte(c + 8),
            self.config.byte(c + 9),
            self.config.byte(c + 10),
            self.config.byte(c + 11),
        ]);
        let len = self.config.byte(c + 12) as usize;
        if usize::from(bar) != self.bar
            || !matches!(len, 1 | 2 | 4)
            || u64::from(off) + len as u64 > BAR0_SIZE
        {
            return None;
        }
        match write {
            Some(d) => {
                let n = len.min(d.len());
                self.bar0_write(u64::from(off), &d[..n]);
                None
            }
            None => {
                let mut d = [0u8; 4];
                self.bar0_read(u64::from(off), &mut d[..len]);
                Some(u32::from_le_bytes(d))
            }
        }
    }
}

/// A function taken off the bus (hot-unplug, machine rebuild) leaves no
/// ioeventfd behind: one left registered would swallow the doorbell writes of
/// the next function whose BAR lands at the same address.
impl Drop for VirtioPciDevice {
    fn drop(&mut self) {
        if let (Some(reg), Some(base)) = (self.ioevents.as_ref(), self.ioevent_base) {
            for (q, evt) in self.kicks.iter().enumerate() {
                let _ = reg.unregister(
                    base + NOTIFY_CFG + q as u64 * u64::from(NOTIFY_MULTIPLIER),
                    evt,
                );
            }
        }
    }
}

/// The transport's state; the rings' positions are in guest memory (their used
/// indices), the device's data path is started again from them.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedVirtio {
    regs: Vec<u32>,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    device_status: u8,
    config_generation: u8,
    queue_select: u16,
    queues: Vec<QueueSetup>,
    config_vector: u16,
    isr: u8,
    msix_table: Vec<u8>,
}

impl VirtioPciDevice {
    /// Whether the driver had the device running (DRIVER_OK with features agreed).
    fn driver_ok(&self) -> bool {
        let s = self.device_status;
        s & status::DRIVER_OK != 0
            && s & status::FEATURES_OK != 0
            && s & status::DEVICE_NEEDS_RESET == 0
    }

    fn saved(&self) -> SavedVirtio {
        let msix_table = match self.msix.lock() {
            Ok(m) => {
                let mut t = vec![0u8; m.table_size() as usize];
                for (i, chunk) in t.chunks_mut(4).enumerate() {
                    m.read_table(i as u64 * 4, chunk);
                }
                t
            }
            Err(_) => Vec::new(),
        };
        SavedVirtio {
            regs: self.config.save_regs(),
            device_feature_select: self.device_feature_select,
            driver_feature_select: self.driver_feature_select,
            driver_features: self.driver_features,
            device_status: self.device_status,
            config_generation: self.config_generation.load(Ordering::SeqCst),
            queue_select: self.queue_select,
            queues: self.queues.clone(),
            config_vector: self.config_vector.load(Ordering::SeqCst),
            isr: self.isr.load(Ordering::SeqCst),
            msix_table,
        }
    }
}

impl PciDevice for VirtioPciDevice {
    fn can_save(&self) -> bool {
        self.device.can_save()
    }

    fn save_state(&mut self) -> Option<serde_json::Value> {
        if self.active {
            if !self.device.reset_for_save() {
                return None;
            }
            self.active = false;
        }
        Some(crate::vmstate::to_value(&self.saved()))
    }

    fn resume_after_save(&mut self) {
        if !self.active && self.driver_ok() {
            self.activate_at(true);
        }
    }

    fn restore_state(&mut self, state: &serde_json::Value) -> Result<(), String> {
        let s: SavedVirtio = crate::vmstate::from_value(state)?;
        let sizes = |q: &[QueueSetup]| q.iter().map(|q| q.max_size).collect::<Vec<_>>();
        if sizes(&s.queues) != sizes(&self.queues) {
            return Err(format!(
                "queues of sizes {:?} were saved, this device has {:?}",
                sizes(&s.queues),
                sizes(&self.queues)
            ));
        }
        self.config.restore_regs(&s.regs)?;
        self.device_feature_select = s.device_feature_select;
        self.driver_feature_select = s.driver_feature_select;
        self.driver_features = s.driver_features;
        self.device_status = s.device_status;
        self.config_generation
            .store(s.config_generation, Ordering::SeqCst);
        self.queue_select = s.queue_select;
        self.queues = s.queues;
        self.config_vector.store(s.config_vector, Ordering::SeqCst);
        self.isr.store(s.isr, Ordering::SeqCst);
        // The MSI-X table as the guest wrote it (routes go to KVM on the way), then
        // its control word from the restored capability.
        let ctrl = self.msix_cap + 2;
        let control = u16::from_le_bytes([self.config.byte(ctrl), self.config.byte(ctrl + 1)]);
        if let Ok(mut m) = self.msix.lock() {
            for (i, chunk) in s.msix_table.chunks(4).enumerate() {
                m.write_table(i as u64 * 4, chunk);
            }
            m.set_control(control);
        }
        self.update_intx_mode();
        // The data path starts in `resume_after_save`, once the interrupt
        // controllers and vCPUs are back (an interrupt raised now would be lost).
        Ok(())
    }

    fn state_name(&self) -> String {
        self.device.name().into()
    }

    fn read_config(&mut self, reg: usize) -> u32 {
        if reg * 4 == self.pci_cfg_cap + 16 {
            if let Some(v) = self.pci_cfg_access(None) {
                return v;
            }
        }
        let v = self.config.read(reg);
        match &self.intx {
            Some(pin) if reg == 1 && pin.pending() => v | STATUS_INTERRUPT,
            _ => v,
        }
    }

    fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]) {
        self.config.write(reg, offset, data);
        let start = reg * 4 + usize::from(offset);
        let ctrl = self.msix_cap + 2;
        if start < ctrl + 2 && start + data.len() > ctrl {
            let v = u16::from_le_bytes([self.config.byte(ctrl), self.config.byte(ctrl + 1)]);
            if let Ok(mut m) = self.msix.lock() {
                m.set_control(v);
            }
            self.update_intx_mode();
        } else if reg == 1 {
            self.update_intx_mode();
        }
        if reg * 4 == self.pci_cfg_cap + 16 {
            let d = self.config.read(reg).to_le_bytes();
            self.pci_cfg_access(Some(&d));
        }
    }

    fn bars(&self) -> Vec<(usize, u64, u64)> {
        self.config.bars()
    }

    fn memory_enabled(&self) -> bool {
        self.config.command() & COMMAND_MEMORY != 0
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar == self.bar {
            self.bar0_read(offset, data);
        } else {
            data.fill(0xff);
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar == self.bar {
            self.bar0_write(offset, data);
        }
    }

    fn set_multifunction(&mut self) {
        self.config.set_multifunction(true);
    }

    fn bar_moved(&mut self, bar: usize, _old: u64, new: u64) {
        if bar == self.bar {
            self.bind_ioevents(new);
        }
    }
}

/// Guest address helper for tests and drivers: the notify address of `queue`.
pub fn notify_address(bar0: u64, queue: u16) -> GuestAddress {
    GuestAddress(bar0 + NOTIFY_CFG + u64::from(queue) * u64::from(NOTIFY_MULTIPLIER))
}
