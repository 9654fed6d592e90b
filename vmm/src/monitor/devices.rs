//! What the monitor can see of the machine's devices. The VMM hands these views to
//! [`Monitor::start`](super::Monitor::start); devices implement the small traits here
//! so the monitor does not depend on how each device is built.

use std::sync::Arc;

use crate::virtio::balloon::BalloonControl;
use crate::virtio::net::NetControl;

/// The devices the monitor reports on. Empty when the machine has none.
#[derive(Default, Clone)]
pub struct Devices {
    /// The virtio balloon, if any (`query-balloon`, `balloon`, `BALLOON_CHANGE`).
    pub balloon: Option<BalloonControl>,
    /// Block devices (`query-block`, `query-blockstats`, `BLOCK_IO_ERROR`).
    pub blocks: Vec<Arc<dyn BlockView>>,
    /// The PCI bus (`query-pci`).
    pub pci: Option<Arc<dyn PciView>>,
    /// NICs (`set_link`).
    pub nics: Vec<Nic>,
    /// The primary display and input, if the machine has a video device
    /// (`screendump`, `send-key`, `input-send-event`, the VNC server).
    pub display: Option<Arc<crate::display::Console>>,
    /// The console host input goes through (`send-key`, `input-send-event`): the
    /// display's, or a headless one on a machine without a video device.
    pub input: Option<Arc<crate::display::Console>>,
    /// The VNC server (`query-vnc`, `set_password`, `add_client`, the `VNC_*` events).
    pub vnc: Option<Arc<crate::vnc::Vnc>>,
    /// Removable-media drives (the tray commands, `DEVICE_TRAY_MOVED`).
    pub media: Option<Arc<crate::media::MediaRegistry>>,
    /// Live device hot-plug (`device_add`, `device_del`, `DEVICE_DELETED`).
    pub hotplug: Option<Arc<crate::virtio::hotplug::HotplugHub>>,
}

/// A NIC as the monitor sees it: its device id and its link control.
#[derive(Clone)]
pub struct Nic {
    /// The device id (libvirt's alias, `net0`); QMP `set_link` names it so, or by
    /// the netdev id libvirt gives the backend, `host` + alias (`hostnet0`).
    pub id: String,
    /// Link state.
    pub control: NetControl,
}

impl Nic {
    /// Whether `name` designates this NIC in `set_link`.
    pub fn answers_to(&self, name: &str) -> bool {
        name == self.id || name.strip_prefix("host") == Some(self.id.as_str())
    }
}

/// A block device's configuration, as `query-block` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockDescription {
    /// The guest device id (QEMU's `qdev`, libvirt's `virtio-disk0`).
    pub qdev: String,
    /// The node name of the image.
    pub node_name: String,
    /// Image path.
    pub file: String,
    /// `raw` or `qcow2`.
    pub format: String,
    /// Read-only to the guest.
    pub read_only: bool,
    /// Size the guest sees, in bytes.
    pub virtual_size: u64,
    /// Bytes the image occupies on the host, if known.
    pub actual_size: Option<u64>,
    /// Writes are acknowledged before they reach the disk.
    pub writeback: bool,
    /// O_DIRECT.
    pub direct: bool,
    /// Flushes are ignored.
    pub no_flush: bool,
    /// A CD-ROM: `query-block` gives `removable` and `tray_open`.
    pub removable: bool,
    /// No medium (an empty CD-ROM tray): nothing `inserted`.
    pub empty: bool,
}

/// A block device's I/O counters (QEMU's `BlockDeviceStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCounters {
    pub rd_bytes: u64,
    pub wr_bytes: u64,
    pub unmap_bytes: u64,
    pub rd_operations: u64,
    pub wr_operations: u64,
    pub flush_operations: u64,
    pub unmap_operations: u64,
    pub rd_total_time_ns: u64,
    pub wr_total_time_ns: u64,
    pub flush_total_time_ns: u64,
    pub unmap_total_time_ns: u64,
    pub wr_highest_offset: u64,
    pub failed_rd_operations: u64,
    pub failed_wr_operations: u64,
    pub failed_flush_operations: u64,
    pub failed_unmap_operations: u64,
    pub invalid_rd_operations: u64,
    pub invalid_wr_operations: u64,
    pub invalid_flush_operations: u64,
    pub invalid_unmap_operations: u64,
}

/// An I/O error a block device reported to the guest (`BLOCK_IO_ERROR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockIoError {
    /// A write (else a read).
    pub write: bool,
    /// The host error, e.g. "No space left on device".
    pub reason: String,
    /// ENOSPC.
    pub nospace: bool,
}

/// One block device as the monitor sees it.
pub trait BlockView: Send + Sync {
    /// Its configuration.
    fn describe(&self) -> BlockDescription;
    /// Its counters now.
    fn counters(&self) -> BlockCounters;
    /// I/O errors since the last call.
    fn take_io_errors(&self) -> Vec<BlockIoError> {
        Vec::new()
    }
}

/// A BAR of a PCI function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciRegion {
    /// BAR index.
    pub bar: u8,
    /// I/O space (else memory).
    pub io: bool,
    /// Guest address (QEMU reports -1 while unassigned).
    pub address: i64,
    /// Size in bytes.
    pub size: u64,
    /// Prefetchable memory.
    pub prefetch: bool,
    /// 64-bit memory BAR.
    pub mem_type_64: bool,
}

/// One PCI function (`query-pci`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciFunction {
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
    /// Base class and subclass, `0x0100` for SCSI storage.
    pub class: u16,
    /// Human text for the class, when known.
    pub class_desc: Option<String>,
    pub vendor: u16,
    pub device: u16,
    pub subsystem_vendor: u16,
    pub subsystem: u16,
    /// Interrupt pin (0: none, 1: INTA, …).
    pub irq_pin: u8,
    /// Legacy interrupt line, if routed.
    pub irq: Option<u8>,
    /// The device id from the domain (`qdev_id`), empty for built-in functions.
    pub qdev_id: String,
    /// BARs.
    pub regions: Vec<PciRegion>,
}

/// The PCI bus as the monitor sees it.
pub trait PciView: Send + Sync {
    /// Every function on every bus.
    fn functions(&self) -> Vec<PciFunction>;
}
