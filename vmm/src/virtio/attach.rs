//! Building the PCI side of a machine from its spec: the root bus on the VMM's
//! buses, and one virtio-pci function per disk, NIC, rng, console port,
//! balloon and vsock, at the slot the spec gives (or the first free one).
//!
//! Two lifetimes are involved. [`PciBackends`] is opened once per VMM process
//! (like QEMU's `-chardev`): console character devices keep their pty path and
//! socket clients across guest reboots, and the host-side handles the monitor
//! holds (balloon, link state, block counters, the PCI function list) stay
//! valid. [`PciMachine`] is built for every machine (boot and each reset):
//! devices, image locks, taps, worker threads; dropping it stops the workers
//! and closes the images.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;
use machine_spec::{
    CacheMode, Chipset, Device, DeviceKind, DiskFormat, MachineSpec, NetBackend, NetModel,
    PciControllerModel,
};
use tracing::{info, warn};
use vm_memory::GuestMemoryMmap;

use std::sync::atomic::Ordering;

use super::balloon::{Balloon, BalloonControl};
use super::block::{open_backend, Block, BlockError, BlockStats, DiskConfig, ImageLock, OpenFlags};
use super::console::{Console, ConsoleBackend, InputRead};
use super::gpu::pci::VirtioDisplay;
use super::kvm::{IntxResampler, IrqRouting, KvmIoEvents, KvmIrqError};
use super::net::{
    parse_mac, tap_pairs, vhost, FrameIo, Net, NetControl, PairBackend, PasstLink, Tap, TapError,
    VhostError,
};
use super::pci_transport::PciLayout;
use super::rng::Rng;
use super::scsi::VirtioScsi;
use super::vsock::{Vsock, VsockError};
use super::{VirtioDevice, VirtioPciDevice};
use crate::control::ChardevInfo;
use crate::devices::bus::{Bus, BusDevice, BusError};
use crate::devices::chardev::{Chardev, ChardevError, InputEvent};
use crate::display::attach::Attached;
use crate::e1000::{E1000Error, E1000Function, Model};
use crate::layout::{self, PlatformLayout};
use crate::media::MediaRegistry;
use crate::monitor::{
    BlockCounters, BlockDescription, BlockView, Devices, Nic, PciFunction, PciRegion, PciView,
};
use crate::pci::acpi_hotplug;
use crate::pci::bridge::{Bridge, BridgeKind};
use crate::pci::chipset::ChipsetFunction;
use crate::pci::root::{CONFIG_ADDRESS_PORT, IO_WINDOW};
use crate::pci::{PciError, PciRoot, PciWindows};
use crate::scsi::{DeviceConfig, DeviceKind as ScsiKind, ScsiDevice, ScsiTarget};

/// Why the PCI devices could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// A disk could not be opened or locked.
    #[error("disk '{0}'")]
    Disk(String, #[source] BlockError),
    /// A NIC's tap could not be set up.
    #[error("interface '{0}'")]
    Tap(String, #[source] TapError),
    /// `<driver name='vhost'>` on a host without a usable vhost-net.
    #[error("interface '{0}': vhost-net requested but could not be initialized")]
    Vhost(String, #[source] VhostError),
    /// passt (user-mode networking) could not be started.
    #[error("interface '{0}': user-mode networking")]
    Passt(String, #[source] Option<std::io::Error>),
    /// A MAC address in the spec is malformed.
    #[error("interface '{0}': invalid MAC address '{1}'")]
    Mac(String, String),
    /// The rng source could not be opened.
    #[error("rng '{0}': cannot open '{1}'")]
    Rng(String, String, #[source] std::io::Error),
    /// A console's character device could not be opened.
    #[error("console '{0}'")]
    Chardev(String, #[source] ChardevError),
    /// The vsock device could not be set up.
    #[error("vsock '{0}'")]
    Vsock(String, #[source] VsockError),
    /// Slot or BAR trouble.
    #[error("device '{0}'")]
    Pci(String, #[source] PciError),
    /// MSI-X or INTx routing could not be set up.
    #[error("device '{0}': interrupt setup")]
    Irq(String, #[source] KvmIrqError),
    /// An ATA controller could not be set up.
    #[error("ATA controller '{0}': {1}")]
    Ata(String, String),
    /// The root bus could not be put on the VMM's buses.
    #[error("PCI root bus")]
    Bus(#[source] BusError),
    /// A virtio input device could not be set up.
    #[error("interface '{0}': emulated NIC")]
    Nic(String, #[source] std::io::Error),
    #[error("input device '{0}'")]
    Input(String, #[source] std::io::Error),
    /// A virtio-scsi controller could not be made.
    #[error("SCSI controller '{0}'")]
    Scsi(String, #[source] std::io::Error),
    /// The video device could not be built.
    #[error("video device")]
    Display(#[source] crate::display::attach::DisplayError),
    /// A CD-ROM's medium could not be opened, or its drive registered.
    #[error("disk '{0}'")]
    Media(String, #[source] crate::media::MediaError),
}

/// A disk as the monitor sees it: its configuration and live counters.
pub(crate) struct DiskView {
    desc: BlockDescription,
    stats: Arc<BlockStats>,
    /// Guest-visible size, known once the image is open.
    size: std::sync::atomic::AtomicU64,
}

impl DiskView {
    /// The counters its device updates.
    pub(crate) fn stats(&self) -> Arc<BlockStats> {
        self.stats.clone()
    }

    /// Notes the guest-visible size once the image is open.
    pub(crate) fn set_size(&self, bytes: u64) {
        self.size.store(bytes, Ordering::Relaxed);
    }
}

/// The monitor's view of disk `id` on image `k` (`removable`: a CD-ROM's).
pub(crate) fn disk_view(id: &str, k: &machine_spec::Disk, removable: bool) -> Arc<DiskView> {
    let desc = BlockDescription {
        qdev: id.to_string(),
        node_name: format!("libvirt-{id}-format"),
        file: k.path.display().to_string(),
        format: match k.format {
            DiskFormat::Raw => "raw".into(),
            DiskFormat::Qcow2 => "qcow2".into(),
        },
        read_only: k.readonly,
        virtual_size: 0,
        actual_size: None,
        writeback: !matches!(k.cache, CacheMode::Writethrough | CacheMode::Directsync),
        direct: false,
        no_flush: matches!(k.cache, CacheMode::Unsafe),
        removable,
        empty: false,
    };
    Arc::new(DiskView {
        desc,
        stats: Arc::new(BlockStats::default()),
        size: Default::default(),
    })
}

impl BlockView for DiskView {
    fn describe(&self) -> BlockDescription {
        let mut d = self.desc.clone();
        if d.empty {
            return d;
        }
        d.virtual_size = self.size.load(Ordering::Relaxed);
        d.actual_size = std::fs::metadata(&d.file)
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512);
        d
    }

    fn counters(&self) -> BlockCounters {
        let s = &self.stats;
        let g = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        BlockCounters {
            rd_bytes: g(&s.rd_bytes),
            wr_bytes: g(&s.wr_bytes),
            unmap_bytes: g(&s.unmap_bytes),
            rd_operations: g(&s.rd_ops),
            wr_operations: g(&s.wr_ops),
            flush_operations: g(&s.flush_ops),
            unmap_operations: g(&s.unmap_ops),
            rd_total_time_ns: g(&s.rd_ns),
            wr_total_time_ns: g(&s.wr_ns),
            flush_total_time_ns: g(&s.flush_ns),
            wr_highest_offset: g(&s.wr_highest_offset),
            failed_rd_operations: g(&s.failed_rd),
            failed_wr_operations: g(&s.failed_wr),
            failed_flush_operations: g(&s.failed_flush),
            ..Default::default()
        }
    }
}

/// The PCI function list of the current machine (`query-pci`).
#[derive(Default)]
struct PciList {
    functions: Mutex<Vec<PciFunction>>,
}

impl PciView for PciList {
    fn functions(&self) -> Vec<PciFunction> {
        self.functions.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// Host-side state of the PCI devices that outlives machine resets.
pub struct PciBackends {
    consoles: Vec<(String, Arc<Mutex<Chardev>>)>,
    balloon: Option<BalloonControl>,
    nets: Vec<(String, NetControl)>,
    /// passt for each `type='user'` NIC, kept across machines (one per VMM).
    passt: Vec<(String, Arc<PasstLink>)>,
    disks: Vec<(String, Arc<DiskView>)>,
    pci: Arc<PciList>,
    /// The primary display's console (kept across machines).
    display: Option<Arc<crate::display::Console>>,
    /// Where host input goes: the display's console, or one of its own on a machine
    /// without a video device (its PS/2 and virtio input still take QMP `send-key`,
    /// as QEMU's do).
    input: Arc<crate::display::Console>,
    /// The removable-media drives (CD-ROMs), whatever their bus.
    media: Arc<MediaRegistry>,
    /// Live hot-plug (`device_add`/`device_del`), across machines.
    hotplug: Arc<super::hotplug::HotplugHub>,
    /// Where named console ports report the guest opening them (`VSERPORT_CHANGE`).
    events: Option<crate::control::VmControl>,
}

impl PciBackends {
    /// Sends the guest's opening and closing of named console ports (a guest agent
    /// starting or stopping) to `control`'s subscribers as `VSERPORT_CHANGE`.
    pub fn with_port_events(mut self, control: crate::control::VmControl) -> Self {
        self.events = Some(control);
        self
    }

    /// Opens the character devices of the virtio consoles in `spec` and sets
    /// up the handles.
    pub fn open(spec: &MachineSpec) -> Result<Self, AttachError> {
        let display = crate::display::attach::console_for(spec);
        let input = display.clone().unwrap_or_default();
        let mut b = PciBackends {
            consoles: Vec::new(),
            balloon: None,
            nets: Vec::new(),
            passt: Vec::new(),
            disks: Vec::new(),
            pci: Arc::new(PciList::default()),
            display,
            input,
            media: MediaRegistry::new(),
            hotplug: super::hotplug::HotplugHub::new(),
            events: None,
        };
        for d in &spec.devices {
            match &d.kind {
                DeviceKind::Console(c) => {
                    let cd = Chardev::open(&d.id, &c.backend)
                        .map_err(|e| AttachError::Chardev(d.id.clone(), e))?;
                    b.consoles.push((d.id.clone(), Arc::new(Mutex::new(cd))));
                }
                DeviceKind::Balloon(_) => {
                    b.balloon = Some(BalloonControl::new(spec.memory.size_bytes));
                }
                DeviceKind::Net(n) => {
                    let control = NetControl::new(n.link_up);
                    if let NetBackend::User(user) = &n.backend {
                        let link = PasstLink::start(&d.id, user, control.clone())
                            .map_err(|e| AttachError::Passt(d.id.clone(), Some(e)))?;
                        b.passt.push((d.id.clone(), Arc::new(link)));
                    }
                    b.nets.push((d.id.clone(), control));
                }
                DeviceKind::Disk(k)
                | DeviceKind::ScsiDisk(machine_spec::ScsiDisk {
                    medium: Some(k), ..
                })
                | DeviceKind::AtaDisk(machine_spec::AtaDisk {
                    medium: Some(k), ..
                }) => {
                    let removable = match &d.kind {
                        DeviceKind::ScsiDisk(u) => u.cdrom,
                        DeviceKind::AtaDisk(u) => u.cdrom,
                        _ => false,
                    };
                    b.disks.push((d.id.clone(), disk_view(&d.id, k, removable)));
                }
                DeviceKind::Serial(_)
                | DeviceKind::Rng(_)
                | DeviceKind::Vsock(_)
                | DeviceKind::Pvpanic
                | DeviceKind::PciController(_)
                | DeviceKind::SataController(_)
                | DeviceKind::IdeController(_)
                | DeviceKind::ScsiController(_)
                | DeviceKind::Video(_)
                | DeviceKind::Input(_)
                | DeviceKind::Tpm(_) => {}
                // A CD-ROM with an empty tray: listed, with nothing inserted.
                DeviceKind::ScsiDisk(_) | DeviceKind::AtaDisk(_) => {
                    let desc = BlockDescription {
                        qdev: d.id.clone(),
                        removable: true,
                        empty: true,
                        read_only: true,
                        ..Default::default()
                    };
                    let view = DiskView {
                        desc,
                        stats: Arc::new(BlockStats::default()),
                        size: Default::default(),
                    };
                    b.disks.push((d.id.clone(), Arc::new(view)));
                }
            }
        }
        crate::media::spec::register_drives(spec, &b.media, |id| {
            b.disks
                .iter()
                .find(|(i, _)| i == id)
                .map(|(_, v)| v.stats.clone())
        })
        .map_err(|(id, e)| AttachError::Media(id, e))?;
        Ok(b)
    }

    /// Live hot-plug, for the main loop to run its jobs.
    pub fn hotplug(&self) -> &Arc<super::hotplug::HotplugHub> {
        &self.hotplug
    }

    /// The removable-media drives.
    pub fn media(&self) -> &Arc<MediaRegistry> {
        &self.media
    }

    /// The unit of CD-ROM `id` for a machine being built: the same unit across
    /// rebuilds (medium and tray kept), with the guest's state of the last
    /// machine dropped.
    pub fn removable_unit(&self, id: &str) -> Option<crate::scsi::SharedDevice> {
        let drive = self.media.by_id(id)?;
        drive.machine_reset();
        Some(drive.unit())
    }

    /// `query-chardev` entries for the console ports.
    pub fn chardev_infos(&self) -> Vec<ChardevInfo> {
        self.consoles
            .iter()
            .filter_map(|(_, c)| {
                let c = c.lock().ok()?;
                Some(ChardevInfo {
                    label: c.label.clone(),
                    filename: c.filename.clone(),
                    frontend_open: true,
                })
            })
            .collect()
    }

    /// The primary display's console, if the spec has a video device.
    pub fn display(&self) -> Option<Arc<crate::display::Console>> {
        self.display.clone()
    }

    /// The console host input goes through (the display's, or a headless one).
    pub fn input(&self) -> Arc<crate::display::Console> {
        self.input.clone()
    }

    /// What the monitor reports on: balloon, disks, the PCI bus, NICs.
    pub fn monitor_devices(&self) -> Devices {
        Devices {
            balloon: self.balloon.clone(),
            blocks: self
                .disks
                .iter()
                .map(|(_, v)| v.clone() as Arc<dyn BlockView>)
                .collect(),
            pci: Some(self.pci.clone() as Arc<dyn PciView>),
            nics: self
                .nets
                .iter()
                .map(|(id, control)| Nic {
                    id: id.clone(),
                    control: control.clone(),
                })
                .collect(),
            display: self.display.clone(),
            input: Some(self.input.clone()),
            media: Some(self.media.clone()),
            vnc: None,
            hotplug: Some(self.hotplug.clone()),
        }
    }

    /// The statistics of disk `id` for the monitor, noting its guest-visible
    /// size (front ends outside this module: ATA drives).
    pub(crate) fn disk_stats(&self, id: &str, size: u64) -> Arc<BlockStats> {
        match self.disks.iter().find(|(i, _)| i == id) {
            Some((_, v)) => {
                v.size.store(size, Ordering::Relaxed);
                v.stats.clone()
            }
            None => Arc::default(),
        }
    }

    /// Link control of NIC `id` (QMP `set_link`).
    /// The passt of a `type='user'` NIC.
    pub fn passt(&self, id: &str) -> Option<Arc<PasstLink>> {
        self.passt
            .iter()
            .find(|(n, _)| n == id)
            .map(|(_, l)| l.clone())
    }

    pub fn net(&self, id: &str) -> Option<NetControl> {
        self.nets
            .iter()
            .find(|(n, _)| n == id)
            .map(|(_, c)| c.clone())
    }
}

/// A console port on a shared [`Chardev`].
struct ChardevPort(Arc<Mutex<Chardev>>);

impl ConsoleBackend for ChardevPort {
    fn output(&mut self, data: &[u8]) {
        use std::io::Write;
        let mut w = match self.0.lock() {
            Ok(c) => c.writer(),
            Err(_) => return,
        };
        let _ = w.write_all(data);
        let _ = w.flush();
    }
    fn input_fd(&self) -> Option<RawFd> {
        self.0.lock().ok()?.poll_fd()
    }
    fn read_input(&mut self) -> InputRead {
        let Ok(mut c) = self.0.lock() else {
            return InputRead::Nothing;
        };
        match c.on_readable(4096) {
            InputEvent::Data(d) => InputRead::Data(d),
            InputEvent::Connected | InputEvent::Closed => InputRead::FdChanged,
            InputEvent::Nothing => InputRead::Nothing,
        }
    }
}

/// CONFIG_DATA, 0xCFC-0xCFF. CONFIG_ADDRESS is decoded at 0xCF8 only: 0xCF9
/// is the reset control register, a device of its own.
const CONFIG_DATA_PORT: u16 = 0xcfc;

/// The root bus as the VMM's buses see it: one device at four ranges.
struct PciHost {
    root: PciRoot,
    /// Where ECAM is on the MMIO bus (none on i440FX).
    ecam: Option<u64>,
}

impl super::hotplug::RootAccess for PciHost {
    fn root(&mut self) -> &mut PciRoot {
        &mut self.root
    }
}

impl BusDevice for PciHost {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        match base {
            b if b == u64::from(CONFIG_ADDRESS_PORT) => self.root.pio_read(offset, data),
            b if b == u64::from(CONFIG_DATA_PORT) => self.root.pio_read(4 + offset, data),
            b if Some(b) == self.ecam => self.root.ecam_read(offset, data),
            b if b == u64::from(acpi_hotplug::BASE) => self.root.acpi_hotplug_read(offset, data),
            b if in_io_window(b) => {
                self.root.io_read(base + offset, data);
            }
            _ => {
                self.root.mmio_read(base + offset, data);
            }
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        match base {
            b if b == u64::from(CONFIG_ADDRESS_PORT) => self.root.pio_write(offset, data),
            b if b == u64::from(CONFIG_DATA_PORT) => self.root.pio_write(4 + offset, data),
            b if Some(b) == self.ecam => self.root.ecam_write(offset, data),
            b if b == u64::from(acpi_hotplug::BASE) => self.root.acpi_hotplug_write(offset, data),
            b if in_io_window(b) => {
                self.root.io_write(base + offset, data);
            }
            _ => {
                self.root.mmio_write(base + offset, data);
            }
        }
    }
}

/// Whether a range the root is mapped at is (a piece of) the I/O BAR window.
fn in_io_window(base: u64) -> bool {
    (IO_WINDOW.0..IO_WINDOW.0 + IO_WINDOW.1).contains(&base)
}

/// The I/O BAR window's pieces: [`IO_WINDOW`] less `holes` (port ranges other
/// devices own), as (first port, length).
fn io_window_pieces(holes: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut holes = holes.to_vec();
    holes.sort_unstable();
    let mut pieces = Vec::new();
    let (mut at, end) = (IO_WINDOW.0, IO_WINDOW.0 + IO_WINDOW.1);
    for (b, n) in holes {
        if b > at {
            pieces.push((at, b - at));
        }
        at = at.max(b + n);
    }
    if at < end {
        pieces.push((at, end - at));
    }
    pieces
}

/// A (slot, function) pair.
pub type DevFn = (u8, u8);

/// The Q35 LPC bridge's slot (00:1f.0), as on real hardware and QEMU.
pub const LPC_SLOT: u8 = 0x1f;

/// The PCI devices of one machine; dropping it stops them.
pub struct PciMachine {
    _host: Arc<Mutex<PciHost>>,
    _intx: Option<IntxResampler>,
    /// (device id, slot, function) of every function placed.
    pub placed: Vec<(String, u8, u8)>,
    /// Devices behind bridges: (device id, the bridge's (slot, function) on bus 0,
    /// the device's (slot, function) behind it).
    pub behind: Vec<(String, DevFn, DevFn)>,
    /// Told when this machine goes, so hot-plug lets go of its root bus.
    hotplug: Arc<super::hotplug::HotplugHub>,
}

impl PciMachine {
    /// The first function that cannot save its state, named by its spec id where
    /// it has one (no side effects).
    pub fn save_blocker(&self) -> Option<String> {
        let host = self._host.lock().unwrap_or_else(|e| e.into_inner());
        let (bus, devfn, what) = host.root.save_blocker()?;
        let (slot, function) = (devfn >> 3, devfn & 7);
        let id = if bus == 0 {
            self.placed
                .iter()
                .find(|p| p.1 == slot && p.2 == function)
                .map(|p| p.0.clone())
        } else {
            None
        };
        Some(match id {
            Some(id) => format!("{id} ({what})"),
            None => format!("{what} at {bus:02x}:{slot:02x}.{function}"),
        })
    }

    /// The state of the PCI bus and its functions (see `PciRoot::save_state`).
    pub fn save_state(&self) -> serde_json::Value {
        self._host
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .root
            .save_state()
    }

    /// The functions serve again after a save.
    pub fn resume_after_save(&self) {
        self._host
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .root
            .resume_after_save();
    }

    /// Puts a saved state back into this (just built) bus.
    pub fn restore_state(&self, state: &serde_json::Value) -> Result<(), String> {
        self._host
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .root
            .restore_state(state)
    }
}

impl Drop for PciMachine {
    fn drop(&mut self) {
        self.hotplug
            .clear_machine(Arc::as_ptr(&self._host) as *const ());
    }
}

fn open_flags(cache: CacheMode) -> OpenFlags {
    OpenFlags::for_cache(cache)
}

/// virtio-blk queues of disk `k`: as many as asked, else one per vCPU (QEMU >= 5.2).
fn disk_queues(spec: &MachineSpec, k: &machine_spec::Disk) -> u16 {
    k.queues
        .unwrap_or_else(|| u16::try_from(spec.cpus.count).unwrap_or(u16::MAX))
        .clamp(1, 256)
}

/// Opens the backend of device `d` as a virtio device; `None` for devices
/// that are not on PCI (serial ports, pvpanic).
fn virtio_device(
    spec: &MachineSpec,
    d: &Device,
    backends: &PciBackends,
    (scsi, scsi_units): (
        &mut Vec<super::hotplug::ScsiAdapter>,
        &mut Vec<super::hotplug::ScsiUnit>,
    ),
) -> Result<Option<Box<dyn VirtioDevice>>, AttachError> {
    Ok(Some(match &d.kind {
        DeviceKind::Disk(k) => {
            let cfg = DiskConfig {
                path: &k.path,
                qcow2: k.format == DiskFormat::Qcow2,
                readonly: k.readonly,
                shareable: k.shareable,
                serial: k.serial.as_deref(),
                discard: k.discard,
                flags: open_flags(k.cache),
            };
            let view = backends
                .disks
                .iter()
                .find(|(id, _)| id == &d.id)
                .map(|(_, v)| v.clone());
            let stats = view.as_ref().map(|v| v.stats.clone()).unwrap_or_default();
            let b = Block::open(&d.id, &cfg, stats)
                .map_err(|e| AttachError::Disk(d.id.clone(), e))?
                .with_queueing(disk_queues(spec, k), k.io.into());
            if let Some(v) = view {
                v.size.store(b.capacity_bytes(), Ordering::Relaxed);
            }
            info!(id = %d.id, path = %k.path.display(), readonly = k.readonly, "virtio-blk");
            Box::new(b)
        }
        DeviceKind::Net(n) => {
            let b = net_backend(d, n, backends, "virtio-net")?;
            let vhost =
                vhost::open_for(&d.id, n).map_err(|e| AttachError::Vhost(d.id.clone(), e))?;
            Box::new(Net::multiqueue(&d.id, b.mac, n.mtu, b.control, b.queues).with_vhost(vhost))
        }
        DeviceKind::Rng(r) => Box::new(
            Rng::open(&d.id, &r.source)
                .map_err(|e| AttachError::Rng(d.id.clone(), r.source.display().to_string(), e))?,
        ),
        DeviceKind::Console(c) => {
            let cd = backends
                .consoles
                .iter()
                .find(|(id, _)| id == &d.id)
                .map(|(_, c)| c.clone());
            let Some(cd) = cd else {
                return Ok(None);
            };
            let con = Console::new(&d.id, Box::new(ChardevPort(cd)), c.name.clone());
            match (&c.name, &backends.events) {
                (Some(_), Some(events)) => {
                    let (events, id) = (events.clone(), d.id.clone());
                    Box::new(con.with_open_hook(Box::new(move |open| {
                        events.emit(crate::control::VmEvent::VserportChange {
                            id: id.clone(),
                            open,
                        })
                    })))
                }
                _ => Box::new(con),
            }
        }
        DeviceKind::Balloon(b) => {
            let Some(control) = &backends.balloon else {
                return Ok(None);
            };
            Box::new(Balloon::with_control(
                &d.id,
                control,
                b.stats_period,
                b.deflate_on_oom,
            ))
        }
        DeviceKind::Vsock(v) => Box::new(
            Vsock::new(&d.id, u64::from(v.guest_cid), &v.uds_path)
                .map_err(|e| AttachError::Vsock(d.id.clone(), e))?,
        ),
        DeviceKind::ScsiController(c) => {
            let (dev, units) = scsi_controller(spec, &d.id, c.index, backends)?;
            scsi.push(super::hotplug::ScsiAdapter {
                id: d.id.clone(),
                index: c.index,
                bus: dev.bus(),
            });
            scsi_units.extend(units);
            Box::new(dev)
        }
        DeviceKind::Serial(_)
        | DeviceKind::Pvpanic
        | DeviceKind::PciController(_)
        | DeviceKind::SataController(_)
        | DeviceKind::IdeController(_)
        | DeviceKind::AtaDisk(_)
        | DeviceKind::ScsiDisk(_)
        | DeviceKind::Video(_)
        | DeviceKind::Tpm(_) => return Ok(None),
        DeviceKind::Input(i) => {
            let dev = crate::input::virtio_input::VirtioInput::new(&d.id, i.kind)
                .map_err(|e| AttachError::Input(d.id.clone(), e))?;
            crate::input::route_virtio(backends.input.router(), dev.shared());
            Box::new(dev)
        }
    }))
}

/// A virtio-scsi adapter with the units of `spec` that name controller `index`
/// (those hot-removed since left out, those hot-added since put in): each
/// image opened and locked as a virtio-blk one would be. Returns the units
/// for live hot-plug's records too.
fn scsi_controller(
    spec: &MachineSpec,
    id: &str,
    index: u32,
    backends: &PciBackends,
) -> Result<(VirtioScsi, Vec<super::hotplug::ScsiUnit>), AttachError> {
    let mut targets: Vec<(u8, ScsiTarget)> = Vec::new();
    let mut records: Vec<(u8, u16, String, Option<ImageLock>)> = Vec::new();
    let mut cold = Vec::new();
    let hub = &backends.hotplug;
    let hot = hub.hot_scsi_devices();
    let mut put = |target: u8, lun: u16, unit: crate::scsi::SharedDevice| match targets
        .iter_mut()
        .find(|(t, _)| *t == target)
    {
        Some((_, t)) => t.insert_shared(lun, unit),
        None => {
            let mut t = ScsiTarget::new();
            t.insert_shared(lun, unit);
            targets.push((target, t));
        }
    };
    for d in spec.devices.iter().chain(&hot) {
        let DeviceKind::ScsiDisk(u) = &d.kind else {
            continue;
        };
        if u.controller != index || hub.was_removed(&d.id) {
            continue;
        }
        let is_hot = hot.iter().any(|h| h.id == d.id);
        if !is_hot {
            cold.push(super::hotplug::ScsiUnit {
                id: d.id.clone(),
                controller: index,
                target: u.target,
                lun: u.lun,
                cdrom: u.cdrom,
                hot: None,
            });
        }
        if let Some(unit) = backends.removable_unit(&d.id) {
            info!(id = %d.id, controller = %id, target = u.target, lun = u.lun, "SCSI CD-ROM");
            put(u.target, u.lun, unit);
            records.push((u.target, u.lun, d.id.clone(), None));
            continue;
        }
        let view = match is_hot {
            true => hub.hot_view(&d.id),
            false => backends
                .disks
                .iter()
                .find(|(i, _)| i == &d.id)
                .map(|(_, v)| v.clone()),
        };
        let (unit, lock) =
            scsi_unit(d, u, view.as_ref()).map_err(|e| AttachError::Disk(d.id.clone(), e))?;
        info!(id = %d.id, controller = %id, target = u.target, lun = u.lun, cdrom = u.cdrom, "SCSI unit");
        put(u.target, u.lun, Arc::new(Mutex::new(unit)));
        records.push((u.target, u.lun, d.id.clone(), lock));
    }
    let mut dev = VirtioScsi::new(id, targets).map_err(|e| AttachError::Scsi(id.to_string(), e))?;
    for (target, lun, unit_id, lock) in records {
        dev = dev.with_unit(target, lun, &unit_id, lock);
    }
    Ok((dev, cold))
}

/// SCSI unit `d` (`u`) over its image, opened and locked as a virtio-blk one
/// would be (none for an empty CD-ROM), counting into `view`'s statistics.
pub(crate) fn scsi_unit(
    d: &Device,
    u: &machine_spec::ScsiDisk,
    view: Option<&Arc<DiskView>>,
) -> Result<(ScsiDevice, Option<ImageLock>), BlockError> {
    let (medium, lock) = match &u.medium {
        Some(k) => {
            let cfg = DiskConfig {
                path: &k.path,
                qcow2: k.format == DiskFormat::Qcow2,
                readonly: k.readonly || u.cdrom,
                shareable: k.shareable,
                serial: k.serial.as_deref(),
                discard: k.discard,
                flags: open_flags(k.cache),
            };
            let (b, lock) = open_backend(&d.id, &cfg)?;
            if let Some(v) = view {
                v.set_size(b.size());
            }
            (Some(b), Some(lock))
        }
        None => (None, None),
    };
    let disk = u.medium.as_ref();
    let cfg = DeviceConfig {
        kind: if u.cdrom {
            ScsiKind::Cdrom
        } else {
            ScsiKind::Disk
        },
        readonly: disk.is_none_or(|k| k.readonly),
        writeback: disk
            .is_none_or(|k| !matches!(k.cache, CacheMode::Writethrough | CacheMode::Directsync)),
        serial: disk.and_then(|k| k.serial.clone()),
        device_id: d.id.clone(),
        vendor: u.vendor.clone(),
        product: u.product.clone(),
        wwn: u.wwn,
    };
    let mut unit = ScsiDevice::new(cfg, medium);
    if let Some(v) = view {
        unit = unit.with_stats(v.stats());
    }
    Ok((unit, lock))
}

/// Builds the root bus and every PCI device of `spec`, and puts the root on
/// the port-I/O bus (0xCF8-0xCFF) and the MMIO bus (ECAM and the 32-bit BAR
/// window). `vm` must have an in-kernel irqchip. With ACPI PCI hot-plug in the
/// spec, the root also serves the hot-plug registers (`pci/acpi_hotplug.rs`) and
/// `hotplug_event` raises the hot-plug GPE; the PM block's GPE0 ports are
/// already on `pio` then (the I/O BAR window leaves them out).
pub fn attach(
    spec: &MachineSpec,
    backends: &PciBackends,
    vm: &Arc<VmFd>,
    mem: &GuestMemoryMmap,
    (pio, mmio): (&Bus, &Bus),
    hotplug_event: Box<dyn FnMut() + Send>,
) -> Result<PciMachine, AttachError> {
    let platform = PlatformLayout::of(spec.platform.chipset);
    let windows = PciWindows {
        mmio32: platform.mmio32,
        mmio64: (0, 0),
    };
    let mut root = match spec.platform.chipset {
        Chipset::Generic => PciRoot::new(windows),
        Chipset::Q35 => {
            let mut r = PciRoot::with_host(windows, Box::new(ChipsetFunction::q35_mch()));
            r.add_device(LPC_SLOT, 0, Box::new(ChipsetFunction::ich9_lpc()))
                .map_err(|e| AttachError::Pci("lpc".into(), e))?;
            r
        }
        Chipset::I440fx => {
            let mut r = PciRoot::with_host(windows, Box::new(ChipsetFunction::i440fx_host()));
            r.add_device(1, 0, Box::new(ChipsetFunction::piix3_isa()))
                .map_err(|e| AttachError::Pci("isa".into(), e))?;
            r.add_device(1, 3, Box::new(ChipsetFunction::piix4_pm()))
                .map_err(|e| AttachError::Pci("pm".into(), e))?;
            r
        }
    };
    let routing = Arc::new(IrqRouting::new(vm.clone()));
    let ioevents: Arc<dyn super::IoEventRegistrar> = Arc::new(KvmIoEvents::new(vm.clone()));
    let mut placed = Vec::new();
    let mut behind = Vec::new();
    let mut intx_pins = Vec::new();
    // Bridges first: the buses they provide must exist before devices go there.
    for d in &spec.devices {
        if let DeviceKind::PciController(c) = &d.kind {
            let perr = |e| AttachError::Pci(d.id.clone(), e);
            let (slot, function) = match d.pci {
                Some(a) if a.bus == 0 && a.domain == 0 => (a.slot, a.function),
                Some(a) => {
                    return Err(perr(PciError::NotRootBus {
                        domain: a.domain,
                        bus: a.bus,
                        slot: a.slot,
                        function: a.function,
                    }))
                }
                None => (
                    root.free_slot().ok_or(perr(PciError::BadSlot {
                        slot: 32,
                        function: 0,
                    }))?,
                    0,
                ),
            };
            let kind = match c.model {
                PciControllerModel::PcieRootPort => BridgeKind::PcieRootPort,
                PciControllerModel::PciBridge => BridgeKind::PciBridge,
            };
            let mut bridge = Bridge::new(kind, c.index, c.chassis, c.port);
            if kind == BridgeKind::PcieRootPort {
                // The port's hot-plug interrupt (`pci/hotplug.rs`).
                let sink = routing
                    .msi_sink(1)
                    .map_err(|e| AttachError::Irq(d.id.clone(), e))?;
                bridge = bridge.with_msi(sink);
            }
            // Numbered as the spec numbers it, as firmware would; firmware and
            // OSes that renumber are followed (`PciRoot` reads the register).
            bridge.set_bus_numbers(0, c.index, c.index);
            root.add_device(slot, function, Box::new(bridge))
                .map_err(perr)?;
            placed.push((d.id.clone(), slot, function));
        }
    }
    // A virtio display goes on the bus below, with the other virtio functions.
    let mut virtio_display = None;
    match crate::display::attach::attach_display(
        spec,
        backends.display.as_ref(),
        vm,
        mem,
        &mut root,
        pio,
        mmio,
    )
    .map_err(AttachError::Display)?
    {
        Some(Attached::Placed(p)) => placed.push(p),
        Some(Attached::Virtio(v)) => virtio_display = Some(v),
        None => {}
    }
    // Devices with an address first, so automatic placement never takes theirs;
    // hot-added devices of the last machine again, hot-removed ones not.
    let hot = backends.hotplug.hot_devices();
    let (mut scsi, mut scsi_units) = (Vec::new(), Vec::new());
    let mut order: Vec<&Device> = spec
        .devices
        .iter()
        .chain(&hot)
        .filter(|d| d.pci.is_some() && !backends.hotplug.was_removed(&d.id))
        .collect();
    order.extend(spec.devices.iter().filter(|d| d.pci.is_none()));
    for d in order {
        if let Some((model, nic)) = e1000_nic(d, backends)? {
            let at = placement(&root, d)?;
            let perr = |e| AttachError::Pci(d.id.clone(), e);
            let mut pci = E1000Function::new(
                &d.id,
                model,
                nic.mac,
                nic.queues
                    .into_iter()
                    .next()
                    .map(|(io, _)| io)
                    .ok_or_else(|| {
                        AttachError::Nic(d.id.clone(), std::io::ErrorKind::NotFound.into())
                    })?,
                nic.control,
                mem.clone(),
                &mut root,
            )
            .map_err(|e| match e {
                E1000Error::Pci(e) => perr(e),
                E1000Error::EventFd(e) => AttachError::Nic(d.id.clone(), e),
            })?;
            match routing.intx_line(at.gsi) {
                Ok((line, resample)) => {
                    intx_pins.push((resample, pci.attach_intx(at.gsi as u8, line)))
                }
                Err(e) => warn!(id = %d.id, "{} without an interrupt: {e}", model.name()),
            }
            info!(id = %d.id, "{} at {:02x}:{:02x}.{}, BAR0 {:#x}", model.name(), at.bus, at.slot, at.function, pci.bar0());
            add_placed(&mut root, d, &at, Box::new(pci), (&mut placed, &mut behind))?;
            continue;
        }
        let (dev, layout, vga) = match virtio_display.take_if(|v| v.id == d.id) {
            Some(mut v) => {
                let vga = v.take_vga();
                (v.gpu, v.layout, vga)
            }
            None => match virtio_device(spec, d, backends, (&mut scsi, &mut scsi_units))? {
                Some(dev) => (dev, PciLayout::default(), None),
                None => continue,
            },
        };
        let perr = |e| AttachError::Pci(d.id.clone(), e);
        let Placement {
            bus,
            slot,
            function,
            bridge,
            gsi,
        } = placement(&root, d)?;
        let vectors = dev.queue_max_sizes().len() as u16 + 1;
        let sink = routing
            .msi_sink(vectors)
            .map_err(|e| AttachError::Irq(d.id.clone(), e))?;
        let mut pci = VirtioPciDevice::with_layout(
            dev,
            mem.clone(),
            &mut root,
            sink,
            Some(ioevents.clone()),
            layout,
        )
        .map_err(perr)?;
        // INTA#, for drivers without MSI-X, on the GSI the DSDT's _PRT gives the slot.
        // Without it (KVM refuses resampling irqfds) the function is MSI-X only.
        match routing.intx_line(gsi) {
            Ok((line, resample)) => {
                let pin = pci.attach_intx(gsi as u8, line);
                intx_pins.push((resample, pin));
            }
            Err(e) => warn!(id = %d.id, "no INTx: {e}"),
        }
        info!(id = %d.id, "{} at {bus:02x}:{slot:02x}.{function}, BAR0 {:#x}", pci.name(), pci.bar0());
        let pci = VirtioDisplay::function(vga, pci);
        let at = Placement {
            bus,
            slot,
            function,
            bridge,
            gsi,
        };
        add_placed(&mut root, d, &at, pci, (&mut placed, &mut behind))?;
    }
    let ata = crate::ata::attach::add_controllers(
        spec,
        backends,
        mem,
        &mut root,
        &routing,
        (pio, vm.as_ref()),
    )?;
    placed.extend(ata.functions);
    intx_pins.extend(ata.pins);
    mark_multifunction(&mut root);
    publish(&mut root, &placed, backends);
    let intx = if intx_pins.is_empty() {
        None
    } else {
        Some(IntxResampler::start(intx_pins).map_err(|e| AttachError::Irq("INTx".into(), e))?)
    };
    root.set_unplug_listener(backends.hotplug.unplug_listener());
    let acpi_slots = acpi_hotplug::slots_of(spec);
    if spec.platform.acpi_pci_hotplug {
        root.enable_acpi_hotplug(acpi_slots, hotplug_event);
    }
    // Devices behind root ports can be unplugged live, the boot-time ones too, and
    // so can virtio disks and NICs in the root bus's ACPI hot-plug slots.
    let cold: Vec<(String, u8, u8)> = spec
        .devices
        .iter()
        .filter_map(|d| Some((d, d.pci?)))
        .filter(|(d, a)| {
            if a.bus != 0 {
                behind.iter().any(|b| b.0 == d.id)
            } else {
                acpi_slots & (1 << (a.slot % 32)) != 0
                    && acpi_hotplug::unpluggable(&d.kind)
                    && placed.iter().any(|p| p.0 == d.id)
            }
        })
        .map(|(d, a)| (d.id.clone(), a.bus, if a.bus == 0 { a.slot } else { 0 }))
        .collect();
    let host = Arc::new(Mutex::new(PciHost {
        root,
        ecam: platform.ecam,
    }));
    backends.hotplug.set_scsi_units(scsi_units);
    backends.hotplug.set_machine(
        super::hotplug::Machine {
            root: host.clone(),
            routing: routing.clone(),
            ioevents: ioevents.clone(),
            mem: mem.clone(),
            scsi,
            disk_queues: u16::try_from(spec.cpus.count)
                .unwrap_or(u16::MAX)
                .clamp(1, 256),
        },
        cold,
    );
    pio.insert(host.clone(), u64::from(CONFIG_ADDRESS_PORT), 1)
        .map_err(AttachError::Bus)?;
    pio.insert(host.clone(), u64::from(CONFIG_DATA_PORT), 4)
        .map_err(AttachError::Bus)?;
    // I/O BARs (the PIIX3 IDE's bus master), wherever firmware puts them; but
    // the ACPI hot-plug registers and the GPE0 block are ports of their own.
    let holes: &[(u64, u64)] = if spec.platform.acpi_pci_hotplug {
        pio.insert(
            host.clone(),
            u64::from(acpi_hotplug::BASE),
            acpi_hotplug::LEN,
        )
        .map_err(AttachError::Bus)?;
        &[
            (u64::from(acpi_hotplug::BASE), acpi_hotplug::LEN),
            (
                u64::from(crate::devices::pm::GPE0_BLK),
                u64::from(crate::devices::pm::GPE0_LEN),
            ),
        ]
    } else {
        &[]
    };
    for (base, len) in io_window_pieces(holes) {
        pio.insert(host.clone(), base, len)
            .map_err(AttachError::Bus)?;
    }
    if let Some(ecam) = platform.ecam {
        mmio.insert(host.clone(), ecam, layout::PCI_ECAM_SIZE)
            .map_err(AttachError::Bus)?;
    }
    mmio.insert(host.clone(), platform.mmio32.0, platform.mmio32.1)
        .map_err(AttachError::Bus)?;
    // 64-bit BARs may go above 4 GiB, where the DSDT's 64-bit window says:
    // firmware puts them there (OVMF, in its 64-bit aperture), and so does Linux
    // for a function hot-added to the root bus (it assigns the BARs of a new
    // device itself, a 64-bit prefetchable one from that window first).
    let ram = layout::RamLayout::for_platform(spec.memory.size_bytes, &platform);
    mmio.insert(host.clone(), ram.mmio64_start(), layout::PCI_MMIO64_SIZE)
        .map_err(AttachError::Bus)?;
    Ok(PciMachine {
        _host: host,
        _intx: intx,
        placed,
        behind,
        hotplug: backends.hotplug.clone(),
    })
}

/// Where a device function goes: its bus, slot and function, the bridge in front
/// of it (its slot and function on bus 0), and the GSI its INTA# reaches.
struct Placement {
    bus: u8,
    slot: u8,
    function: u8,
    bridge: Option<(u8, u8)>,
    gsi: u32,
}

/// The address the spec gives `d` (or the first free slot on bus 0), checked
/// against what is there.
fn placement(root: &PciRoot, d: &Device) -> Result<Placement, AttachError> {
    let perr = |e| AttachError::Pci(d.id.clone(), e);
    let (bus, slot, function) = match d.pci {
        Some(a) => {
            if a.domain != 0 {
                return Err(perr(PciError::NotRootBus {
                    domain: a.domain,
                    bus: a.bus,
                    slot: a.slot,
                    function: a.function,
                }));
            }
            (a.bus, a.slot, a.function)
        }
        None => (
            0,
            root.free_slot().ok_or(perr(PciError::BadSlot {
                slot: 32,
                function: 0,
            }))?,
            0,
        ),
    };
    // The slot on bus 0 that INTx is swizzled to: behind a bridge, the bridge's
    // (device 0 behind it, pin A → the bridge's pin A).
    let bridge = if bus == 0 {
        root.check_free(slot, function).map_err(perr)?;
        None
    } else {
        Some(
            root.bridge_of(bus)
                .ok_or(perr(PciError::NoSuchBus { bus }))?,
        )
    };
    let intx_slot = bridge.map_or(slot, |(s, _)| s);
    let intx_pin = if bridge.is_some() { slot % 4 } else { 0 };
    Ok(Placement {
        bus,
        slot,
        function,
        bridge,
        gsi: crate::acpi::pci_intx_gsi(intx_slot, intx_pin),
    })
}

/// Puts `pci` where `at` says and records it.
fn add_placed(
    root: &mut PciRoot,
    d: &Device,
    at: &Placement,
    pci: Box<dyn crate::pci::PciDevice>,
    (placed, behind): (&mut Vec<(String, u8, u8)>, &mut Vec<Behind>),
) -> Result<(), AttachError> {
    let perr = |e| AttachError::Pci(d.id.clone(), e);
    match at.bridge {
        None => {
            root.add_device(at.slot, at.function, pci).map_err(perr)?;
            placed.push((d.id.clone(), at.slot, at.function));
        }
        Some(b) => {
            root.add_device_behind(at.bus, at.slot, at.function, pci)
                .map_err(perr)?;
            behind.push((d.id.clone(), b, (at.slot, at.function)));
        }
    }
    Ok(())
}

/// A device behind a bridge: its id, the bridge's (slot, function) on bus 0 and
/// its own (slot, function) behind it.
type Behind = (String, (u8, u8), (u8, u8));

/// What a NIC model needs of its interface: the MAC, the frame backend and the
/// host's link control.
struct NicBackend {
    mac: [u8; 6],
    /// One backend per queue pair (one for the Intel models).
    queues: Vec<PairBackend>,
    control: NetControl,
}

/// The Intel part and the MAC, backend and link control of an interface whose
/// model is e1000 or e1000e.
fn e1000_nic(
    d: &Device,
    backends: &PciBackends,
) -> Result<Option<(Model, NicBackend)>, AttachError> {
    let DeviceKind::Net(n) = &d.kind else {
        return Ok(None);
    };
    let model = match n.model {
        NetModel::E1000 => Model::I82540EM,
        NetModel::E1000e => Model::I82574L,
        NetModel::Virtio => return Ok(None),
    };
    net_backend(d, n, backends, model.name()).map(|nic| Some((model, nic)))
}

/// Opens the backend of interface `d`: its tap (made, or joined to a bridge) or its
/// passt link; `what` names the device model in the log.
fn net_backend(
    d: &Device,
    n: &machine_spec::Net,
    backends: &PciBackends,
    what: &str,
) -> Result<NicBackend, AttachError> {
    let mac = parse_mac(&n.mac).ok_or_else(|| AttachError::Mac(d.id.clone(), n.mac.clone()))?;
    let terr = |e| AttachError::Tap(d.id.clone(), e);
    let queues = n.queue_pairs();
    let taps = match (&n.backend, n.tap_fds.as_slice()) {
        // The daemon's tap, on its bridge and up already: one descriptor per queue.
        (NetBackend::Tap { .. } | NetBackend::Bridge { .. }, fds @ [_, ..]) => {
            let taps = fds
                .iter()
                .map(|fd| Tap::from_inherited(*fd))
                .collect::<Result<Vec<_>, _>>()
                .map_err(terr)?;
            info!(id = %d.id, tap = taps[0].name(), ?fds, mac = %n.mac, "{what}");
            taps
        }
        (NetBackend::Tap { name }, []) => {
            let taps = Tap::open_queues(name.as_deref(), queues).map_err(terr)?;
            taps[0].set_up().map_err(terr)?;
            info!(id = %d.id, tap = taps[0].name(), queues, mac = %n.mac, "{what}");
            taps
        }
        (NetBackend::Bridge { bridge, tap }, []) => {
            let taps = Tap::open_queues(tap.as_deref(), queues).map_err(terr)?;
            taps[0].attach_to_bridge(bridge).map_err(terr)?;
            taps[0].set_up().map_err(terr)?;
            info!(id = %d.id, tap = taps[0].name(), bridge, queues, mac = %n.mac, "{what}");
            taps
        }
        (NetBackend::User(_), _) => {
            let link = backends
                .passt(&d.id)
                .ok_or_else(|| AttachError::Passt(d.id.clone(), None))?;
            info!(id = %d.id, mac = %n.mac, "{what} on passt");
            let control = backends
                .net(&d.id)
                .unwrap_or_else(|| NetControl::new(n.link_up));
            let io: Box<dyn FrameIo> = Box::new(link.io());
            return Ok(NicBackend {
                mac,
                queues: vec![(io, None)],
                control,
            });
        }
    };
    let queues = tap_pairs(taps).map_err(terr)?;
    let control = backends
        .net(&d.id)
        .unwrap_or_else(|| NetControl::new(n.link_up));
    Ok(NicBackend {
        mac,
        queues,
        control,
    })
}

impl PciMachine {
    /// Where each device went: its id and the (slot, function) path from bus 0,
    /// one element for devices on bus 0, two for devices behind a bridge.
    pub fn locations(&self) -> Vec<(String, Vec<(u8, u8)>)> {
        self.placed
            .iter()
            .map(|(id, s, f)| (id.clone(), vec![(*s, *f)]))
            .chain(
                self.behind
                    .iter()
                    .map(|(id, b, d)| (id.clone(), vec![*b, *d])),
            )
            .collect()
    }
}

/// Slots with functions besides 0 need the multi-function bit on function 0
/// for the guest to look past it.
fn mark_multifunction(root: &mut PciRoot) {
    let devs = root.devices();
    for &(slot, f) in &devs {
        if f != 0 && devs.contains(&(slot, 0)) {
            root.set_multifunction(slot);
        }
    }
}

/// Updates the monitor's views for the new machine: disk sizes, PCI functions.
fn publish(root: &mut PciRoot, placed: &[(String, u8, u8)], backends: &PciBackends) {
    let functions: Vec<PciFunction> = root
        .snapshot()
        .into_iter()
        .map(|f| {
            let h = f.header;
            let qdev_id = placed
                .iter()
                .find(|(_, s, fun)| (*s, *fun) == (f.slot, f.function))
                .map(|(id, _, _)| id.clone())
                .unwrap_or_default();
            let class = (h[2] >> 16) as u16;
            PciFunction {
                bus: 0,
                slot: f.slot,
                function: f.function,
                class,
                class_desc: match class {
                    0x0100 => Some("SCSI controller".into()),
                    0x0200 => Some("Ethernet controller".into()),
                    0x0300 => Some("VGA controller".into()),
                    0x0380 => Some("Display controller".into()),
                    0x0600 => Some("Host bridge".into()),
                    0x0780 => Some("Communication controller".into()),
                    _ => None,
                },
                vendor: h[0] as u16,
                device: (h[0] >> 16) as u16,
                subsystem_vendor: h[11] as u16,
                subsystem: (h[11] >> 16) as u16,
                irq_pin: (h[15] >> 8) as u8,
                // QEMU reports the Interrupt Line of functions that have a pin.
                irq: (h[15] & 0xff00 != 0).then_some(h[15] as u8),
                qdev_id,
                regions: f
                    .bars
                    .iter()
                    .map(|&(bar, address, size)| PciRegion {
                        bar: bar as u8,
                        io: false,
                        address: address as i64,
                        size,
                        prefetch: false,
                        // The BAR register's type bits (10b: 64-bit); the ROM is 32-bit.
                        mem_type_64: h.get(4 + bar).is_some_and(|v| v & 0x6 == 0x4),
                    })
                    .chain(f.io_bars.iter().map(|&(bar, port, size)| PciRegion {
                        bar: bar as u8,
                        io: true,
                        address: port as i64,
                        size,
                        prefetch: false,
                        mem_type_64: false,
                    }))
                    .collect(),
            }
        })
        .collect();
    if let Ok(mut f) = backends.pci.functions.lock() {
        *f = functions;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_window_leaves_the_acpi_hotplug_and_gpe_ports_out() {
        assert_eq!(io_window_pieces(&[]), vec![IO_WINDOW]);
        let pieces = io_window_pieces(&[(0xafe0, 4), (0xae00, 0x18)]);
        assert_eq!(
            pieces,
            vec![
                (0x1000, 0xae00 - 0x1000),
                (0xae18, 0xafe0 - 0xae18),
                (0xafe4, 0x1_0000 - 0xafe4)
            ]
        );
        assert!(pieces.iter().all(|&(b, _)| in_io_window(b)));
        assert!(!in_io_window(u64::from(CONFIG_ADDRESS_PORT)));
    }
}
