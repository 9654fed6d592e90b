//! virtio devices on the modern (1.x) PCI transport.
//!
//! Layers, from the guest inwards:
//! * [`pci_transport::VirtioPciDevice`] is the PCI function: configuration space with
//!   the virtio vendor capabilities and MSI-X, and BAR 0 holding the common
//!   configuration, ISR, device configuration, notification area and MSI-X table.
//!   It runs feature negotiation and queue setup and, on DRIVER_OK, activates the
//!   device; a status write of 0 resets it.
//! * A [`VirtioDevice`] (block, scsi, net, rng, console, balloon, vsock) owns its backend.
//!   Activation hands it the negotiated features, the queues (from `virtio-queue`)
//!   with their notification eventfds (ioeventfds once KVM is wired) and a
//!   [`VirtioInterrupt`]; it starts a worker thread ([`worker`]) that serves the
//!   queues. Reset stops the worker and takes the backend back, ready for the next
//!   activation.
//! * Each device's request handling is a plain struct driven by tests with mock
//!   guest memory and mock queues.

pub mod attach;
pub mod balloon;
pub mod block;
pub mod console;
pub mod gpu;
pub mod hotplug;
pub mod kvm;
pub mod net;
pub mod pci_transport;
pub mod queue_util;
pub mod rng;
pub mod scsi;
#[cfg(test)]
mod transport_tests;
pub mod vsock;
pub mod worker;

use std::sync::Arc;

use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

pub use pci_transport::{IoEventRegistrar, VirtioPciDevice};

/// Guest memory as devices see it.
pub type GuestMem = vm_memory::GuestMemoryMmap;

/// Feature bit: the device conforms to virtio 1.x (mandatory on the modern transport).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Feature bit: indirect descriptors.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// Feature bit: used/avail event index notification suppression.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;

/// virtio device IDs (virtio 1.2 §5).
pub mod device_type {
    pub const NET: u32 = 1;
    pub const BLOCK: u32 = 2;
    pub const CONSOLE: u32 = 3;
    pub const RNG: u32 = 4;
    pub const BALLOON: u32 = 5;
    pub const SCSI: u32 = 8;
    pub const GPU: u32 = 16;
    pub const VSOCK: u32 = 19;
}

/// How a device signals the driver: a used-buffer notification for a queue, or a
/// configuration change. The PCI transport maps them to MSI-X vectors, or to the
/// INTx pin when the driver left MSI-X off.
pub trait VirtioInterrupt: Send + Sync {
    /// Queue `queue` has new used buffers.
    fn notify_queue(&self, queue: u16);
    /// The device configuration changed.
    fn notify_config(&self);
    /// An eventfd whose writes raise queue `queue`'s interrupt with no exit to the VMM
    /// (its MSI-X vector's KVM irqfd), for a backend in the host kernel (vhost-net) to
    /// signal; `None` where there is none (INTx, no vector, no KVM): relay instead.
    fn queue_irqfd(&self, _queue: u16) -> Option<EventFd> {
        None
    }
}

/// One queue the driver enabled, as handed to the device on activation.
pub struct ActiveQueue {
    /// Queue index within the device.
    pub index: u16,
    pub queue: Queue,
    /// Signalled when the driver notifies this queue.
    pub kick: EventFd,
}

/// Everything a device needs to start serving the driver.
pub struct Activation {
    pub mem: GuestMem,
    /// Features the driver acknowledged.
    pub features: u64,
    /// Enabled queues, in index order.
    pub queues: Vec<ActiveQueue>,
    pub interrupt: Arc<dyn VirtioInterrupt>,
}

impl Activation {
    /// Takes the queues out, leaving what the device's workers share.
    pub fn take_queues(&mut self) -> Vec<ActiveQueue> {
        std::mem::take(&mut self.queues)
    }

    /// One worker's activation: `queues`, with the same memory, features and interrupt.
    pub fn part(&self, queues: Vec<ActiveQueue>) -> Activation {
        Activation {
            mem: self.mem.clone(),
            features: self.features,
            queues,
            interrupt: self.interrupt.clone(),
        }
    }
}

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver did not enable a queue the device needs.
    #[error("virtio {device}: queue {queue} was not enabled by the driver")]
    MissingQueue { device: &'static str, queue: u16 },
    /// The backend is gone (a previous activation failed to give it back).
    #[error("virtio {device}: backend unavailable")]
    NoBackend { device: &'static str },
    /// The backend refused to start (vhost-net).
    #[error("virtio {device}: the backend did not start: {reason}")]
    Backend {
        device: &'static str,
        reason: String,
    },
    /// The worker thread could not be started.
    #[error("virtio {device}: cannot start the worker thread")]
    Worker {
        device: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A virtio device type, independent of the transport.
pub trait VirtioDevice: Send {
    /// virtio device ID ([`device_type`]).
    fn device_type(&self) -> u32;
    /// Short name for logs (`virtio-blk`).
    fn name(&self) -> &'static str;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> Vec<u16>;
    /// Features the device offers (transport bits included).
    fn features(&self) -> u64;
    /// Reads the device-specific configuration at `offset`.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration (most fields are read-only).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Starts serving the queues.
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;
    /// Stops serving and returns to the pre-activation state (backend kept).
    fn reset(&mut self);
    /// Whether [`VirtioDevice::reset_for_save`] would succeed (no side effects).
    fn can_save(&self) -> bool {
        false
    }
    /// Stops serving for a machine save (the transport activates it again after,
    /// or in the restored machine, from the used rings): every chain taken from a
    /// queue is completed onto its used ring first, so none is in flight. `false`
    /// (the default): this device cannot be saved yet and nothing was done.
    fn reset_for_save(&mut self) -> bool {
        false
    }
}

/// Copies `src[offset..]` into `data`, zero-filling what lies beyond `src`:
/// device configuration reads at any offset and width.
pub fn read_config_bytes(src: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let o = offset as usize;
    if o < src.len() {
        let n = data.len().min(src.len() - o);
        data[..n].copy_from_slice(&src[o..o + n]);
    }
}
