//! KVM plumbing for PCI devices: MSI-X delivery through irqfd + GSI routes, and
//! queue notifications through ioeventfd.
//!
//! KVM's GSI routing table is global to the VM and `KVM_SET_GSI_ROUTING` replaces
//! it whole, so [`IrqRouting`] keeps the complete table: the default routes the
//! in-kernel irqchip installs (GSI 0-15 to the PICs, 0-23 to the IO-APIC) plus one
//! MSI route per MSI-X vector, on GSIs from 24 up. Each vector gets its own irqfd
//! registered once at creation; (re)programming a vector only rewrites its route,
//! and a masked vector has none, so a write to its irqfd injects nothing.
//!
//! INTx: each function's INTA# is an irqfd on its IO-APIC GSI (16-23) registered with
//! a resample eventfd. KVM treats such a line as level-triggered: the irqfd write
//! asserts it, the guest's EOI deasserts it and signals the resample fd, and the
//! [`IntxResampler`] thread asks the function's pin whether to assert it again.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kvm_bindings::{
    kvm_irq_routing_entry, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use tracing::warn;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::pci_transport::IoEventRegistrar;
use crate::pci::intx::{IntxLine, IntxPin};
use crate::pci::msix::{MsiMessage, MsiSink};

/// First GSI handed to MSI routes (after the IO-APIC's 24 pins).
const FIRST_MSI_GSI: u32 = 24;

/// Errors setting up interrupt delivery.
#[derive(Debug, thiserror::Error)]
pub enum KvmIrqError {
    /// An eventfd could not be created.
    #[error("cannot create an eventfd for MSI delivery")]
    EventFd(#[source] std::io::Error),
    /// KVM refused the irqfd.
    #[error("cannot register irqfd for GSI {gsi}")]
    Irqfd {
        gsi: u32,
        #[source]
        source: kvm_ioctls::Error,
    },
    /// No GSIs left.
    #[error("out of GSIs for MSI routes")]
    NoGsi,
    /// KVM refused the level-triggered (resample) irqfd for INTx.
    #[error("cannot register a resampling irqfd for INTx on GSI {gsi}")]
    IntxIrqfd {
        gsi: u32,
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The INTx resampling thread could not be started.
    #[error("cannot start the INTx resampling thread")]
    Resampler(#[source] std::io::Error),
}

/// The VM's complete GSI routing table.
pub struct IrqRouting {
    vm: Arc<VmFd>,
    table: Mutex<Table>,
}

struct Table {
    /// (gsi, entry) for routes beyond the irqchip defaults, keyed by GSI.
    msi: BTreeMap<u32, kvm_irq_routing_entry>,
    next_gsi: u32,
}

impl std::fmt::Debug for IrqRouting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IrqRouting").finish_non_exhaustive()
    }
}

fn irqchip_route(gsi: u32, chip: u32, pin: u32) -> kvm_irq_routing_entry {
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    e.u.irqchip.irqchip = chip;
    e.u.irqchip.pin = pin;
    e
}

impl IrqRouting {
    /// Routing for `vm`, which has an in-kernel irqchip (KVM_CREATE_IRQCHIP).
    pub fn new(vm: Arc<VmFd>) -> Self {
        IrqRouting {
            vm,
            table: Mutex::new(Table {
                msi: BTreeMap::new(),
                next_gsi: FIRST_MSI_GSI,
            }),
        }
    }

    fn commit(&self, t: &Table) {
        let mut entries = Vec::new();
        for gsi in 0..16u32 {
            let (chip, pin) = if gsi < 8 {
                (KVM_IRQCHIP_PIC_MASTER, gsi)
            } else {
                (KVM_IRQCHIP_PIC_SLAVE, gsi - 8)
            };
            entries.push(irqchip_route(gsi, chip, pin));
        }
        for pin in 0..24u32 {
            entries.push(irqchip_route(pin, KVM_IRQCHIP_IOAPIC, pin));
        }
        entries.extend(t.msi.values().copied());
        let mut routing = match KvmIrqRouting::new(entries.len()) {
            Ok(r) => r,
            Err(e) => {
                warn!("GSI routing table of {} entries: {e:?}", entries.len());
                return;
            }
        };
        routing.as_mut_slice().copy_from_slice(&entries);
        if let Err(e) = self.vm.set_gsi_routing(&routing) {
            warn!("KVM_SET_GSI_ROUTING: {e}");
        }
    }

    fn set_msi(&self, gsi: u32, msg: Option<MsiMessage>) {
        let Ok(mut t) = self.table.lock() else {
            return;
        };
        match msg {
            Some(m) => {
                let mut e = kvm_irq_routing_entry {
                    gsi,
                    type_: KVM_IRQ_ROUTING_MSI,
                    ..Default::default()
                };
                e.u.msi.address_lo = m.address as u32;
                e.u.msi.address_hi = (m.address >> 32) as u32;
                e.u.msi.data = m.data;
                t.msi.insert(gsi, e);
            }
            None => {
                t.msi.remove(&gsi);
            }
        }
        self.commit(&t);
    }

    /// An MSI sink for a function with `vectors` MSI-X vectors.
    pub fn msi_sink(self: &Arc<Self>, vectors: u16) -> Result<Arc<dyn MsiSink>, KvmIrqError> {
        let base = {
            let mut t = self.table.lock().map_err(|_| KvmIrqError::NoGsi)?;
            let base = t.next_gsi;
            t.next_gsi = base
                .checked_add(u32::from(vectors))
                .ok_or(KvmIrqError::NoGsi)?;
            base
        };
        let mut fds = Vec::new();
        for v in 0..u32::from(vectors) {
            let fd = EventFd::new(EFD_NONBLOCK).map_err(KvmIrqError::EventFd)?;
            self.vm
                .register_irqfd(&fd, base + v)
                .map_err(|source| KvmIrqError::Irqfd {
                    gsi: base + v,
                    source,
                })?;
            fds.push(fd);
        }
        Ok(Arc::new(KvmMsiSink {
            routing: self.clone(),
            base,
            fds,
        }))
    }
}

/// MSI-X vectors of one function as GSIs `base..base+n` with one irqfd each.
struct KvmMsiSink {
    routing: Arc<IrqRouting>,
    base: u32,
    fds: Vec<EventFd>,
}

impl MsiSink for KvmMsiSink {
    fn program(&self, vector: u16, msg: MsiMessage, masked: bool) {
        let gsi = self.base + u32::from(vector);
        self.routing
            .set_msi(gsi, (!masked && msg.address != 0).then_some(msg));
    }

    fn trigger(&self, vector: u16) {
        if let Some(fd) = self.fds.get(usize::from(vector)) {
            let _ = fd.write(1);
        }
    }

    fn irqfd(&self, vector: u16) -> Option<EventFd> {
        self.fds.get(usize::from(vector))?.try_clone().ok()
    }
}

impl IrqRouting {
    /// A level-triggered line on IO-APIC GSI `gsi`: the irqfd that asserts it and
    /// the resample eventfd KVM signals when the guest's EOI deasserts it.
    pub fn intx_line(&self, gsi: u32) -> Result<(Box<dyn IntxLine>, EventFd), KvmIrqError> {
        let fd = EventFd::new(EFD_NONBLOCK).map_err(KvmIrqError::EventFd)?;
        let resample = EventFd::new(EFD_NONBLOCK).map_err(KvmIrqError::EventFd)?;
        self.vm
            .register_irqfd_with_resample(&fd, &resample, gsi)
            .map_err(|source| KvmIrqError::IntxIrqfd { gsi, source })?;
        Ok((Box::new(KvmIntxLine(fd)), resample))
    }
}

/// An INTx line as an irqfd with resampling.
struct KvmIntxLine(EventFd);

impl IntxLine for KvmIntxLine {
    fn assert(&self) {
        let _ = self.0.write(1);
    }
}

/// The thread that re-asserts INTx lines after the guest's EOI while their
/// function still has an interrupt pending (a driver that EOIs without reading
/// the ISR, or a new interrupt between its read and its EOI). Stopped on drop.
pub struct IntxResampler {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl IntxResampler {
    /// Watches each `(resample fd, pin)`.
    pub fn start(pins: Vec<(EventFd, Arc<IntxPin>)>) -> Result<Self, KvmIrqError> {
        let stop = EventFd::new(EFD_NONBLOCK).map_err(KvmIrqError::EventFd)?;
        let epoll = Epoll::new().map_err(KvmIrqError::Resampler)?;
        let token_stop = pins.len() as u64;
        epoll
            .ctl(
                ControlOperation::Add,
                stop.as_raw_fd(),
                EpollEvent::new(EventSet::IN, token_stop),
            )
            .map_err(KvmIrqError::Resampler)?;
        for (i, (fd, _)) in pins.iter().enumerate() {
            epoll
                .ctl(
                    ControlOperation::Add,
                    fd.as_raw_fd(),
                    EpollEvent::new(EventSet::IN, i as u64),
                )
                .map_err(KvmIrqError::Resampler)?;
        }
        let thread = std::thread::Builder::new()
            .name("intx".into())
            .spawn(move || {
                crate::seccomp::enter_or_exit(crate::seccomp::Thread::Worker);
                let mut events = vec![EpollEvent::default(); pins.len() + 1];
                loop {
                    let n = match epoll.wait(-1, &mut events) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            warn!("INTx resampler: epoll: {e}");
                            return;
                        }
                    };
                    for ev in &events[..n] {
                        let i = ev.data() as usize;
                        let Some((fd, pin)) = pins.get(i) else {
                            return;
                        };
                        let _ = fd.read();
                        pin.resample();
                    }
                }
            })
            .map_err(KvmIrqError::Resampler)?;
        Ok(IntxResampler {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for IntxResampler {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds notify addresses to eventfds with KVM_IOEVENTFD (any write width).
pub struct KvmIoEvents {
    vm: Arc<VmFd>,
}

impl KvmIoEvents {
    /// Registrar for `vm`.
    pub fn new(vm: Arc<VmFd>) -> Self {
        KvmIoEvents { vm }
    }
}

impl IoEventRegistrar for KvmIoEvents {
    fn register(&self, addr: u64, evt: &EventFd) -> std::io::Result<()> {
        self.vm
            .register_ioevent(evt, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }

    fn unregister(&self, addr: u64, evt: &EventFd) -> std::io::Result<()> {
        self.vm
            .unregister_ioevent(evt, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}
