//! Live hot-plug of virtio disks and NICs behind PCIe root ports (Q35) and in
//! the root bus's ACPI hot-plug slots (`pc`), for QMP `device_add`/`device_del`
//! and `netdev_add`/`netdev_del` as QEMU takes them from libvirt:
//!
//! * a disk's image is a block node named by `blockdev-add` (the media
//!   registry's node table); `device_add {driver: virtio-blk-pci, drive: NODE,
//!   id, bus: pci.N, addr: 0x0}`;
//! * a NIC's backend is a tap named by `netdev_add {type: tap, id, ifname}`
//!   (`br`: the bridge the VMM joins it to, since here the VMM, not libvirt,
//!   makes the tap); `device_add {driver: virtio-net-pci, netdev: ID, mac, id,
//!   bus: pci.N, addr: 0x0}`;
//! * on a `pc` machine the same functions go on the root bus: `device_add {…,
//!   bus: pci.0, addr: 0xS}` puts one in slot S (without `addr`: the lowest free
//!   hot-plug slot), sets its PCIU bit and raises the hot-plug GPE; `device_del`
//!   sets its PCID bit and raises the GPE, and the device goes when the guest's
//!   `_EJ0` writes the slot to B0EJ (`pci/acpi_hotplug.rs`);
//! * `device_del` presses the port's attention button; the device goes when the
//!   guest powers the slot off (`pci/hotplug.rs`), and only then do subscribers
//!   hear its id (the monitor's `DEVICE_DELETED`). A guest that never does so
//!   keeps it, as with QEMU;
//! * a SCSI LUN on a virtio-scsi controller: `device_add {driver: scsi-hd, drive:
//!   NODE, id, bus: scsi0.0, channel: 0, scsi-id: T, lun: L}` (what libvirt sends;
//!   `scsi0` is the controller's id) adds the unit to the controller's
//!   [`ScsiBus`], which tells the guest on its event queue (`virtio/scsi.rs`);
//!   `device_del` of it removes it at once, without the guest's cooperation, and
//!   subscribers hear its id right away, as with QEMU's SCSI bus.
//!
//! Hot-added disks (both kinds) are listed by `query-block` and
//! `query-blockstats` ([`HotplugHub::block_views`]); removed boot-time ones no
//! longer are.
//!
//! The work happens on the VMM's main thread, the one that builds machines (its
//! seccomp filter allows opening images and taps, KVM's irqfd/ioeventfd calls
//! and starting device workers): the monitor queues a job, wakes the main loop
//! and awaits the answer; functions the guest released are dropped there too,
//! not on the vCPU thread whose configuration write released them.
//!
//! The hub outlives machines (one per VMM process, in
//! [`super::attach::PciBackends`]): a rebuilt machine (reset) gets the hot-added
//! devices again and leaves out the cold ones that were removed, as QEMU's
//! device tree does. Hot-added functions use MSI-X only (no INTx pin is routed).

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, OnceLock};

use machine_spec::{CacheMode, Device, DeviceKind, DiskFormat, NetBackend, NetModel, PciAddress};
use serde_json::{Map, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tracing::info;

use super::attach::{disk_view, scsi_unit, DiskView};
use super::block::{Block, DiskConfig, OpenFlags};
use super::kvm::IrqRouting;
use super::net::{parse_mac, tap_pairs, Net, NetControl, Tap};
use super::pci_transport::PciLayout;
use super::scsi::{ScsiBus, ScsiBusError, MAX_LUN, MAX_TARGET};
use super::{GuestMem, IoEventRegistrar, VirtioDevice, VirtioPciDevice};
use crate::media::{MediaRegistry, MediumFormat};
use crate::monitor::BlockView;
use crate::pci::{PciDevice, PciRoot};

/// Why a hot-plug request failed; the text is QEMU's where it has one.
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    /// A required property is missing.
    #[error("Parameter '{0}' is missing")]
    Missing(&'static str),
    /// A property's value is malformed.
    #[error("Property '{0}' has an invalid value '{1}'")]
    Invalid(String, String),
    /// No free hot-plug slot on the root bus.
    #[error("PCI: no slot/function available for {0}, all in use or reserved")]
    NoSlot(String),
    /// A `driver` other than the hot-pluggable ones.
    #[error("'{0}' is not a valid device model name for hot-plug (virtio-blk-pci, virtio-net-pci and scsi-hd are)")]
    Driver(String),
    /// A SCSI bus (`scsi0.0`) no controller provides.
    #[error("Bus '{0}' not found")]
    NoBus(String),
    /// The SCSI address is taken.
    #[error(transparent)]
    Scsi(#[from] ScsiBusError),
    /// A device that cannot be unplugged live.
    #[error("device '{0}' cannot be unplugged: {1}")]
    NotUnpluggable(String, &'static str),
    /// An id already in use.
    #[error("Duplicate device ID '{0}' for device")]
    DuplicateId(String),
    /// A netdev id already in use.
    #[error("Duplicate ID '{0}' for netdev")]
    DuplicateNetdev(String),
    /// The netdev type is not a tap.
    #[error("netdev type '{0}' is not supported for hot-plug (tap is)")]
    NetdevType(String),
    /// `drive` names no block node.
    #[error("Cannot find device='' nor node-name='{0}'")]
    NoDrive(String),
    /// `netdev` names no netdev.
    #[error("Property 'virtio-net-pci.netdev' can't find value '{0}'")]
    NoNetdev(String),
    /// The netdev is in use by a NIC.
    #[error("netdev '{0}' is in use")]
    NetdevBusy(String),
    /// `device_del`/`netdev_del` of an unknown id.
    #[error("Device '{0}' not found")]
    NotFound(String),
    /// The machine is not built (yet, or any more).
    #[error("the machine is not running")]
    NoMachine,
    /// The image could not be opened.
    #[error("Could not open '{0}'")]
    Disk(String, #[source] super::block::BlockError),
    /// The tap could not be made.
    #[error("could not configure tap '{0}'")]
    Tap(String, #[source] super::net::TapError),
    /// QEMU's words for `vhost=on` where vhost-net cannot be set up.
    #[error("vhost-net requested but could not be initialized")]
    Vhost(#[source] super::net::VhostError),
    /// Interrupt routes for the function could not be made.
    #[error("cannot route the interrupts of '{0}'")]
    Irq(String, #[source] super::kvm::KvmIrqError),
    /// Bus, slot or BAR trouble.
    #[error("Bus '{0}'")]
    Pci(String, #[source] crate::pci::PciError),
}

/// A tap backend from `netdev_add`.
#[derive(Debug, Clone)]
struct Netdev {
    id: String,
    ifname: Option<String>,
    bridge: Option<String>,
    /// The tap handed over with `fd`, or its queues with `fds` (the daemon's way: no
    /// privilege needed here), checked and configured when a NIC is built on it (on
    /// the main thread, whose filter allows the tap ioctls); empty: opened by
    /// `ifname` then, with `queues` queues.
    taps: Vec<Arc<std::os::fd::OwnedFd>>,
    queues: Option<u16>,
    /// `vhost=on`: the NIC's frames go through vhost-net, or the NIC is refused
    /// (QEMU's default is off; libvirt asks for it where the host has it).
    vhost: bool,
    /// vhost-net instances handed over with `vhostfd`/`vhostfds` (one per queue
    /// pair, opened by the daemon; they imply `vhost=on`, as in QEMU).
    vhost_fds: Vec<Arc<std::os::fd::OwnedFd>>,
}

/// A device behind a hot-plug port.
#[derive(Debug, Clone)]
struct Occupant {
    id: String,
    /// The spec bus index (the root port's libvirt controller index), or 0 for
    /// the root bus.
    bus: u8,
    /// On the root bus, the slot; behind a port, 0.
    slot: u8,
    /// For a hot-added device: what to build again in a rebuilt machine.
    hot: Option<Device>,
    /// The netdev it uses (freed when it goes).
    netdev: Option<String>,
}

/// What the current machine gives hot-plug: its root bus, the means to make
/// a virtio function, its SCSI controllers.
pub(crate) struct Machine {
    pub root: Arc<Mutex<dyn RootAccess>>,
    pub routing: Arc<IrqRouting>,
    pub ioevents: Arc<dyn IoEventRegistrar>,
    pub mem: GuestMem,
    pub scsi: Vec<ScsiAdapter>,
    /// Request queues of a hot-added virtio-blk without `num-queues`: one per vCPU,
    /// as at start (QEMU >= 5.2's default).
    pub disk_queues: u16,
}

/// A virtio-scsi controller of the machine: its device id (libvirt's alias,
/// `scsi0`, whose bus `scsi0.0` `device_add` names), libvirt index and units.
pub(crate) struct ScsiAdapter {
    pub id: String,
    pub index: u32,
    pub bus: Arc<ScsiBus>,
}

/// The root bus behind whatever lock the machine keeps it.
pub(crate) trait RootAccess: Send {
    fn root(&mut self) -> &mut PciRoot;
}

/// Work for the main thread.
enum Job {
    Add(
        Map<String, Value>,
        Arc<MediaRegistry>,
        oneshot::Sender<Result<(), HotplugError>>,
    ),
    Del(String, oneshot::Sender<Result<bool, HotplugError>>),
}

/// Hot-plug state of one VMM process.
#[derive(Default)]
pub struct HotplugHub {
    machine: Mutex<Option<Machine>>,
    jobs: Mutex<VecDeque<Job>>,
    /// Functions the guest released, to drop on the main thread.
    released: Mutex<Vec<Box<dyn PciDevice>>>,
    /// Wakes the main loop (unset: no main loop, work runs where it is asked).
    waker: OnceLock<Box<dyn Fn() + Send + Sync>>,
    netdevs: Mutex<Vec<Netdev>>,
    occupants: Mutex<Vec<Occupant>>,
    /// Ids of boot-time devices removed since: left out of rebuilt machines.
    removed: Mutex<Vec<String>>,
    listeners: Mutex<Vec<UnboundedSender<String>>>,
    /// What the monitor reports of hot-added disks, by device id.
    views: Mutex<Vec<(String, Arc<DiskView>)>>,
    /// The LUNs on virtio-scsi controllers.
    scsi_units: Mutex<Vec<ScsiUnit>>,
}

/// A LUN on a virtio-scsi controller.
#[derive(Debug, Clone)]
pub(crate) struct ScsiUnit {
    pub id: String,
    /// The controller's libvirt index.
    pub controller: u32,
    pub target: u8,
    pub lun: u16,
    /// CD-ROMs stay (their drive belongs to the media registry).
    pub cdrom: bool,
    /// For a hot-added unit: what to build again in a rebuilt machine.
    pub hot: Option<Device>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn str_arg<'a>(args: &'a Map<String, Value>, name: &'static str) -> Option<&'a str> {
    args.get(name).and_then(Value::as_str)
}

/// libvirt's bus name for a PCI controller, `pci.N`: N is the spec bus index.
fn parse_bus(bus: &str) -> Result<u8, HotplugError> {
    bus.strip_prefix("pci.")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| HotplugError::Invalid("bus".into(), bus.into()))
}

/// `addr` (QEMU's `SLOT[.FUNCTION]`, each hex with or without `0x`): the slot;
/// only function 0 is hot-pluggable. Behind a root port only slot 0 exists.
fn parse_addr(addr: &str, bus: u8) -> Result<u8, HotplugError> {
    let bad = || HotplugError::Invalid("addr".into(), addr.into());
    let hex = |t: &str| {
        let t = t.strip_prefix("0x").unwrap_or(t);
        u8::from_str_radix(t, 16).map_err(|_| bad())
    };
    let (slot, function) = match addr.split_once('.') {
        Some((s, f)) => (hex(s)?, hex(f)?),
        None => (hex(addr)?, 0),
    };
    if function != 0 || slot >= 32 || (bus != 0 && slot != 0) {
        return Err(bad());
    }
    Ok(slot)
}

impl HotplugHub {
    /// A hub with no machine yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// How to wake the main loop, which then calls [`HotplugHub::run_pending`].
    pub fn set_waker(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = self.waker.set(wake);
    }

    /// On the main thread: runs the queued jobs, drops released functions.
    pub fn run_pending(&self) {
        drop(std::mem::take(&mut *lock(&self.released)));
        loop {
            let Some(job) = lock(&self.jobs).pop_front() else {
                return;
            };
            match job {
                Job::Add(args, media, tx) => {
                    let _ = tx.send(self.device_add(&args, &media));
                }
                Job::Del(id, tx) => {
                    let _ = tx.send(self.device_del(&id));
                }
            }
        }
    }

    /// `device_add`, done by the main thread.
    pub async fn add_on_main(
        self: &Arc<Self>,
        args: Map<String, Value>,
        media: Arc<MediaRegistry>,
    ) -> Result<(), HotplugError> {
        let Some(wake) = self.waker.get() else {
            return self.device_add(&args, &media);
        };
        let (tx, rx) = oneshot::channel();
        lock(&self.jobs).push_back(Job::Add(args, media, tx));
        wake();
        rx.await.unwrap_or(Err(HotplugError::NoMachine))
    }

    /// `device_del`, done by the main thread.
    pub async fn del_on_main(self: &Arc<Self>, id: String) -> Result<bool, HotplugError> {
        let Some(wake) = self.waker.get() else {
            return self.device_del(&id);
        };
        let (tx, rx) = oneshot::channel();
        lock(&self.jobs).push_back(Job::Del(id, tx));
        wake();
        rx.await.unwrap_or(Err(HotplugError::NoMachine))
    }

    /// The hot-added devices a rebuilt machine must have again.
    pub fn hot_devices(&self) -> Vec<Device> {
        lock(&self.occupants)
            .iter()
            .filter_map(|o| o.hot.clone())
            .collect()
    }

    /// Whether boot-time device `id` was hot-removed.
    pub fn was_removed(&self, id: &str) -> bool {
        lock(&self.removed).iter().any(|r| r == id)
    }

    /// Whether any boot-time device was hot-removed.
    pub fn any_removed(&self) -> bool {
        !lock(&self.removed).is_empty()
    }

    /// The block views of the hot-added disks present now.
    pub fn block_views(&self) -> Vec<Arc<dyn BlockView>> {
        lock(&self.views)
            .iter()
            .map(|(_, v)| v.clone() as Arc<dyn BlockView>)
            .collect()
    }

    /// The block view of hot-added disk `id` (its counters survive a rebuild).
    pub(crate) fn hot_view(&self, id: &str) -> Option<Arc<DiskView>> {
        lock(&self.views)
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, v)| v.clone())
    }

    /// The machine just built: its root and the devices behind hot-plug ports,
    /// (id, spec bus) of those from the spec.
    /// (A root-bus device's bus is 0 and its slot is given; behind a port the
    /// slot is 0.)
    pub(crate) fn set_machine(&self, m: Machine, cold: Vec<(String, u8, u8)>) {
        let mut occ = lock(&self.occupants);
        occ.retain(|o| o.hot.is_some());
        occ.extend(cold.into_iter().map(|(id, bus, slot)| Occupant {
            id,
            bus,
            slot,
            hot: None,
            netdev: None,
        }));
        *lock(&self.machine) = Some(m);
    }

    /// The SCSI units of the machine being built: the boot-time ones (`cold`,
    /// not hot-removed) and the hot-added ones kept.
    pub(crate) fn set_scsi_units(&self, cold: Vec<ScsiUnit>) {
        let mut u = lock(&self.scsi_units);
        u.retain(|u| u.hot.is_some());
        u.extend(cold);
    }

    /// The hot-added SCSI units a rebuilt machine must have again.
    pub(crate) fn hot_scsi_devices(&self) -> Vec<Device> {
        lock(&self.scsi_units)
            .iter()
            .filter_map(|u| u.hot.clone())
            .collect()
    }

    /// The machine whose root bus is `root` is gone (dropped at a rebuild or at
    /// exit); a newer machine's registration stays.
    pub fn clear_machine(&self, root: *const ()) {
        let mut m = lock(&self.machine);
        if m.as_ref()
            .is_some_and(|m| Arc::as_ptr(&m.root) as *const () == root)
        {
            *m = None;
        }
    }

    /// The ids of devices the guest released, from now on.
    pub fn subscribe(&self) -> UnboundedReceiver<String> {
        let (tx, rx) = unbounded_channel();
        lock(&self.listeners).push(tx);
        rx
    }

    /// The root bus's listener for guest-completed unplugs.
    pub fn unplug_listener(self: &Arc<Self>) -> crate::pci::root::UnplugListener {
        let hub = Arc::downgrade(self);
        Box::new(move |bus, slot, gone| {
            if let Some(hub) = hub.upgrade() {
                hub.unplugged(bus, slot, gone);
            }
        })
    }

    /// What was behind port `bus` (or in root-bus `slot`) is gone: have the main
    /// thread drop it, tell the subscribers.
    fn unplugged(&self, bus: u8, slot: u8, gone: Vec<Box<dyn PciDevice>>) {
        lock(&self.released).extend(gone);
        if let Some(wake) = self.waker.get() {
            wake();
        } else {
            drop(std::mem::take(&mut *lock(&self.released)));
        }
        let o = {
            let mut occ = lock(&self.occupants);
            let Some(i) = occ.iter().position(|o| o.bus == bus && o.slot == slot) else {
                return;
            };
            occ.remove(i)
        };
        info!(id = %o.id, bus, slot, "device unplugged");
        self.forget(&o.id, o.hot.is_none());
    }

    /// Device `id` is gone: no longer listed, left out of rebuilt machines if
    /// it was a boot-time one (`cold`); the subscribers hear its id.
    fn forget(&self, id: &str, cold: bool) {
        if cold {
            lock(&self.removed).push(id.to_string());
        }
        lock(&self.views).retain(|(i, _)| i != id);
        let mut l = lock(&self.listeners);
        l.retain(|tx| tx.send(id.to_string()).is_ok());
    }

    /// `netdev_add`.
    /// `netdev_add` of a tap: by `ifname` (and `br`, and `queues` for a multiqueue
    /// tap), opened when a NIC uses it, or `fd`/`fds`, the descriptors the client
    /// passed with `getfd` under those names (`fds` here, one per queue; QEMU's
    /// `netdev_add type=tap,fd=NAME` or `fds=NAME:NAME`), which libvirt sends.
    pub fn netdev_add(
        &self,
        args: &Map<String, Value>,
        fds: Vec<std::os::fd::OwnedFd>,
        vhost_fds: Vec<std::os::fd::OwnedFd>,
    ) -> Result<(), HotplugError> {
        let ty = str_arg(args, "type").ok_or(HotplugError::Missing("type"))?;
        let id = str_arg(args, "id").ok_or(HotplugError::Missing("id"))?;
        if ty != "tap" {
            return Err(HotplugError::NetdevType(ty.into()));
        }
        let queues = match num_arg(args, "queues")? {
            None => None,
            Some(q @ 1..=64) => Some(q as u16),
            Some(q) => return Err(HotplugError::Invalid("queues".into(), q.to_string())),
        };
        let taps: Vec<_> = fds.into_iter().map(Arc::new).collect();
        let tap = !taps.is_empty();
        let mut n = lock(&self.netdevs);
        if n.iter().any(|d| d.id == id) {
            return Err(HotplugError::DuplicateNetdev(id.into()));
        }
        n.push(Netdev {
            id: id.into(),
            ifname: str_arg(args, "ifname").map(str::to_string).filter(|_| !tap),
            bridge: str_arg(args, "br").map(str::to_string).filter(|_| !tap),
            taps,
            queues: queues.filter(|_| !tap),
            vhost: bool_arg(args, "vhost")? || !vhost_fds.is_empty(),
            vhost_fds: vhost_fds.into_iter().map(Arc::new).collect(),
        });
        Ok(())
    }

    /// `netdev_del`: a netdev no NIC uses.
    pub fn netdev_del(&self, id: &str) -> Result<(), HotplugError> {
        if lock(&self.occupants)
            .iter()
            .any(|o| o.netdev.as_deref() == Some(id))
        {
            return Err(HotplugError::NetdevBusy(id.into()));
        }
        let mut n = lock(&self.netdevs);
        let i = n
            .iter()
            .position(|d| d.id == id)
            .ok_or_else(|| HotplugError::NotFound(id.into()))?;
        n.remove(i);
        Ok(())
    }

    /// The spec device `device_add`'s arguments describe.
    fn device_of(
        &self,
        args: &Map<String, Value>,
        media: &MediaRegistry,
    ) -> Result<(Device, Option<String>), HotplugError> {
        let driver = str_arg(args, "driver").ok_or(HotplugError::Missing("driver"))?;
        let id = str_arg(args, "id").ok_or(HotplugError::Missing("id"))?;
        let bus = parse_bus(str_arg(args, "bus").ok_or(HotplugError::Missing("bus"))?)?;
        // On the root bus without `addr`, device_add picks the slot (0 here).
        let slot = match str_arg(args, "addr") {
            Some(a) => parse_addr(a, bus)?,
            None => 0,
        };
        let pci = Some(PciAddress {
            domain: 0,
            bus,
            slot,
            function: 0,
        });
        let (kind, netdev) = match driver {
            "virtio-blk-pci" => {
                let mut disk = drive_disk(args, media, id)?;
                disk.queues = match num_arg(args, "num-queues")? {
                    None => None,
                    Some(n @ 1..=256) => Some(n as u16),
                    Some(n) => {
                        return Err(HotplugError::Invalid("num-queues".into(), n.to_string()))
                    }
                };
                (DeviceKind::Disk(disk), None)
            }
            "virtio-net-pci" => {
                let nd = str_arg(args, "netdev").ok_or(HotplugError::Missing("netdev"))?;
                let n = lock(&self.netdevs)
                    .iter()
                    .find(|n| n.id == nd)
                    .cloned()
                    .ok_or_else(|| HotplugError::NoNetdev(nd.into()))?;
                let mac = str_arg(args, "mac").ok_or(HotplugError::Missing("mac"))?;
                if parse_mac(mac).is_none() {
                    return Err(HotplugError::Invalid("mac".into(), mac.into()));
                }
                let backend = match n.bridge {
                    Some(bridge) => NetBackend::Bridge {
                        bridge,
                        tap: n.ifname,
                    },
                    None => NetBackend::Tap { name: n.ifname },
                };
                // As QEMU: one pair unless `mq=on`, then one per tap queue (the other
                // queues of a multiqueue tap are detached when the NIC is built).
                let queues = match bool_arg(args, "mq")? {
                    true => n.queues.or(Some(n.taps.len() as u16)).filter(|q| *q > 1),
                    false => None,
                };
                let net = machine_spec::Net {
                    mac: mac.into(),
                    backend,
                    link_up: true,
                    mtu: None,
                    model: NetModel::Virtio,
                    queues,
                    tap_fds: n.taps.iter().map(|t| t.as_raw_fd()).collect(),
                    vhost_fds: n.vhost_fds.iter().map(|v| v.as_raw_fd()).collect(),
                    driver: match n.vhost {
                        true => machine_spec::NetDriver::Vhost,
                        false => machine_spec::NetDriver::Qemu,
                    },
                };
                (DeviceKind::Net(net), Some(nd.to_string()))
            }
            other => return Err(HotplugError::Driver(other.into())),
        };
        Ok((
            Device {
                id: id.into(),
                pci,
                boot_index: None,
                kind,
            },
            netdev,
        ))
    }

    /// `device_add`: builds the function and puts it behind the named port, or
    /// the SCSI unit on its controller.
    pub fn device_add(
        &self,
        args: &Map<String, Value>,
        media: &MediaRegistry,
    ) -> Result<(), HotplugError> {
        if str_arg(args, "driver") == Some("scsi-hd") {
            return self.scsi_add(args, media);
        }
        let (mut d, netdev) = self.device_of(args, media)?;
        if lock(&self.occupants).iter().any(|o| o.id == d.id) {
            return Err(HotplugError::DuplicateId(d.id));
        }
        // A netdev's tap descriptor must stay open while the NIC is built on it:
        // `netdev_del` waits for this lock, then sees the NIC and refuses.
        let netdevs = lock(&self.netdevs);
        if let Some(nd) = &netdev {
            if !netdevs.iter().any(|n| &n.id == nd) {
                return Err(HotplugError::NoNetdev(nd.clone()));
            }
        }
        let machine = lock(&self.machine);
        let m = machine.as_ref().ok_or(HotplugError::NoMachine)?;
        let (bus, asked) = d.pci.map_or((0, 0), |a| (a.bus, a.slot));
        let (pci, view) = build(m, &d)?;
        let mut root = m.root.lock().unwrap_or_else(|e| e.into_inner());
        let perr = |e| HotplugError::Pci(format!("pci.{bus}"), e);
        // Behind a root port, or in a root-bus ACPI hot-plug slot (`pc`).
        let slot = if bus == 0 {
            let slot = match (asked, root.root().acpi_hotplug_enabled()) {
                (0, true) => root.root().free_hotplug_slot().ok_or_else(|| {
                    HotplugError::NoSlot(str_arg(args, "driver").unwrap_or_default().into())
                })?,
                (s, _) => s,
            };
            root.root().hotplug_slot(slot, pci).map_err(perr)?;
            if let Some(a) = d.pci.as_mut() {
                a.slot = slot;
            }
            slot
        } else {
            root.root().hotplug_behind(bus, pci).map_err(perr)?;
            0
        };
        info!(id = %d.id, bus, slot, "device hot-added");
        if let Some(v) = view {
            lock(&self.views).push((d.id.clone(), v));
        }
        lock(&self.occupants).push(Occupant {
            id: d.id.clone(),
            bus,
            slot,
            hot: Some(d),
            netdev,
        });
        drop(netdevs);
        Ok(())
    }

    /// `device_add` of a `scsi-hd`: the unit goes on its controller at once and
    /// the controller tells the guest.
    fn scsi_add(
        &self,
        args: &Map<String, Value>,
        media: &MediaRegistry,
    ) -> Result<(), HotplugError> {
        let machine = lock(&self.machine);
        let m = machine.as_ref().ok_or(HotplugError::NoMachine)?;
        let adapters: Vec<(String, u32)> = m.scsi.iter().map(|a| (a.id.clone(), a.index)).collect();
        let d = scsi_device_of(args, media, &adapters)?;
        if lock(&self.occupants).iter().any(|o| o.id == d.id)
            || lock(&self.scsi_units).iter().any(|u| u.id == d.id)
        {
            return Err(HotplugError::DuplicateId(d.id));
        }
        let DeviceKind::ScsiDisk(u) = &d.kind else {
            return Err(HotplugError::Driver(d.id));
        };
        let adapter = m
            .scsi
            .iter()
            .find(|a| a.index == u.controller)
            .ok_or_else(|| HotplugError::NoBus(format!("scsi{}.0", u.controller)))?;
        let k = u.medium.as_ref().ok_or(HotplugError::Missing("drive"))?;
        let view = disk_view(&d.id, k, false);
        let (unit, image_lock) = scsi_unit(&d, u, Some(&view))
            .map_err(|e| HotplugError::Disk(k.path.display().to_string(), e))?;
        adapter.bus.add(
            u.target,
            u.lun,
            &d.id,
            Arc::new(Mutex::new(unit)),
            image_lock,
        )?;
        info!(id = %d.id, controller = %adapter.id, target = u.target, lun = u.lun, "SCSI disk hot-added");
        lock(&self.views).push((d.id.clone(), view));
        lock(&self.scsi_units).push(ScsiUnit {
            id: d.id.clone(),
            controller: u.controller,
            target: u.target,
            lun: u.lun,
            cdrom: false,
            hot: Some(d.clone()),
        });
        Ok(())
    }

    /// `device_del` of a SCSI unit: it goes at once, without the guest's
    /// cooperation (QEMU's SCSI bus), and the subscribers hear it right away.
    fn scsi_del(&self, u: ScsiUnit) -> Result<bool, HotplugError> {
        if u.cdrom {
            return Err(HotplugError::NotUnpluggable(
                u.id,
                "SCSI CD-ROMs stay (change their medium instead)",
            ));
        }
        let machine = lock(&self.machine);
        let m = machine.as_ref().ok_or(HotplugError::NoMachine)?;
        let unit = m
            .scsi
            .iter()
            .find(|a| a.index == u.controller)
            .and_then(|a| a.bus.remove(u.target, u.lun));
        drop(machine);
        // The image closes here, on the main thread.
        drop(unit);
        lock(&self.scsi_units).retain(|x| x.id != u.id);
        info!(id = %u.id, controller = u.controller, target = u.target, lun = u.lun, "SCSI unit unplugged");
        self.forget(&u.id, u.hot.is_none());
        Ok(true)
    }

    /// `device_del`: asks the guest to release the device. Returns whether it
    /// went at once (the guest had powered its slot off).
    pub fn device_del(&self, id: &str) -> Result<bool, HotplugError> {
        let scsi = lock(&self.scsi_units).iter().find(|u| u.id == id).cloned();
        if let Some(u) = scsi {
            return self.scsi_del(u);
        }
        let (bus, slot) = lock(&self.occupants)
            .iter()
            .find(|o| o.id == id)
            .map(|o| (o.bus, o.slot))
            .ok_or_else(|| HotplugError::NotFound(id.into()))?;
        let machine = lock(&self.machine);
        let m = machine.as_ref().ok_or(HotplugError::NoMachine)?;
        let gone = {
            let mut root = m.root.lock().unwrap_or_else(|e| e.into_inner());
            let perr = |e| HotplugError::Pci(format!("pci.{bus}"), e);
            if bus == 0 {
                // ACPI: the guest's _EJ0 removes it (or never does).
                root.root().request_unplug_slot(slot).map_err(perr)?;
                None
            } else {
                root.root().request_unplug(bus).map_err(perr)?
            }
        };
        drop(machine);
        match gone {
            Some(devs) => {
                self.unplugged(bus, slot, devs);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// A hot-added function and, for a disk, its block view.
type Built = (Box<dyn PciDevice>, Option<Arc<DiskView>>);

/// Opens `d`'s backend and wraps it in a virtio-pci function (MSI-X only);
/// a disk's block view with it.
fn build(m: &Machine, d: &Device) -> Result<Built, HotplugError> {
    let mut view = None;
    let dev: Box<dyn VirtioDevice> = match &d.kind {
        DeviceKind::Disk(k) => {
            let cfg = DiskConfig {
                path: &k.path,
                qcow2: k.format == DiskFormat::Qcow2,
                readonly: k.readonly,
                shareable: k.shareable,
                serial: k.serial.as_deref(),
                discard: k.discard,
                flags: OpenFlags::for_cache(k.cache),
            };
            let v = disk_view(&d.id, k, false);
            let b = Block::open(&d.id, &cfg, v.stats())
                .map_err(|e| HotplugError::Disk(k.path.display().to_string(), e))?
                .with_queueing(k.queues.unwrap_or(m.disk_queues), k.io.into());
            v.set_size(b.capacity_bytes());
            view = Some(v);
            Box::new(b)
        }
        DeviceKind::Net(n) => {
            let mac = parse_mac(&n.mac)
                .ok_or_else(|| HotplugError::Invalid("mac".into(), n.mac.clone()))?;
            let (name, bridge) = n
                .backend
                .tap()
                .ok_or_else(|| HotplugError::NetdevType("user".into()))?;
            let shown = name.unwrap_or_default().to_string();
            let terr = |e| HotplugError::Tap(shown.clone(), e);
            let pairs = usize::from(n.queue_pairs());
            let mut taps = match n.tap_fds.as_slice() {
                // The daemon's: on its bridge and up already.
                [] => {
                    let taps = Tap::open_queues(name, pairs as u16).map_err(terr)?;
                    if let Some(b) = bridge {
                        taps[0].attach_to_bridge(b).map_err(terr)?;
                    }
                    taps[0].set_up().map_err(terr)?;
                    taps
                }
                fds => fds
                    .iter()
                    .map(|fd| Tap::from_inherited(*fd))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(terr)?,
            };
            // Queues of a multiqueue netdev the NIC does not use (`mq` off) get no
            // frames steered to them.
            for t in taps.iter().skip(pairs) {
                t.set_queue_enabled(false).map_err(terr)?;
            }
            taps.truncate(pairs);
            if taps.len() < pairs {
                return Err(HotplugError::Invalid(
                    "mq".into(),
                    format!("{pairs} queue pairs on {} tap queues", taps.len()),
                ));
            }
            let vhost = super::net::vhost::open_for(&d.id, n).map_err(HotplugError::Vhost)?;
            info!(id = %d.id, tap = taps[0].name(), pairs, "virtio-net (hot-plug)");
            Box::new(
                Net::multiqueue(
                    &d.id,
                    mac,
                    n.mtu,
                    NetControl::new(n.link_up),
                    tap_pairs(taps).map_err(terr)?,
                )
                .with_vhost(vhost),
            )
        }
        _ => return Err(HotplugError::Driver(d.id.clone())),
    };
    let vectors = dev.queue_max_sizes().len() as u16 + 1;
    let sink = m
        .routing
        .msi_sink(vectors)
        .map_err(|e| HotplugError::Irq(d.id.clone(), e))?;
    let mut root = m.root.lock().unwrap_or_else(|e| e.into_inner());
    let pci = VirtioPciDevice::with_layout(
        dev,
        m.mem.clone(),
        root.root(),
        sink,
        Some(m.ioevents.clone()),
        PciLayout::default(),
    )
    .map_err(|e| HotplugError::Pci(d.id.clone(), e))?;
    Ok((Box::new(pci), view))
}

/// The image behind a disk device's `drive` (a `blockdev-add` node), with the
/// `serial` and `write-cache` that libvirt 9 sends on `virtio-blk-pci` and `scsi-hd`.
fn drive_disk(
    args: &Map<String, Value>,
    media: &MediaRegistry,
    id: &str,
) -> Result<machine_spec::Disk, HotplugError> {
    let drive = str_arg(args, "drive").ok_or(HotplugError::Missing("drive"))?;
    let node = media
        .nodes
        .get(drive)
        .ok_or_else(|| HotplugError::NoDrive(drive.into()))?;
    let cache = match str_arg(args, "write-cache") {
        Some("off") => CacheMode::Writethrough,
        None | Some("on" | "auto") => CacheMode::Default,
        Some(v) => return Err(HotplugError::Invalid("write-cache".into(), v.into())),
    };
    Ok(machine_spec::Disk {
        path: node.path.clone(),
        format: match node.format {
            Some(MediumFormat::Qcow2) => DiskFormat::Qcow2,
            Some(MediumFormat::Raw) | None => DiskFormat::Raw,
        },
        target: id.into(),
        readonly: node.read_only,
        shareable: false,
        serial: str_arg(args, "serial").map(str::to_string),
        cache,
        discard: false,
        queues: None,
        io: Default::default(),
    })
}

/// A boolean argument (QEMU takes `true`/`false`, and `on`/`off` strings); false
/// when absent.
fn bool_arg(args: &Map<String, Value>, name: &'static str) -> Result<bool, HotplugError> {
    match args.get(name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(t)) if matches!(t.as_str(), "on" | "true" | "yes") => Ok(true),
        Some(Value::String(t)) if matches!(t.as_str(), "off" | "false" | "no") => Ok(false),
        Some(v) => Err(HotplugError::Invalid(name.into(), v.to_string())),
    }
}

/// A number argument (QEMU takes numbers; strings of digits too).
fn num_arg(args: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, HotplugError> {
    match args.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| HotplugError::Invalid(name.into(), n.to_string())),
        Some(Value::String(t)) => {
            let parsed = match t.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16),
                None => t.parse(),
            };
            parsed
                .map(Some)
                .map_err(|_| HotplugError::Invalid(name.into(), t.clone()))
        }
        Some(v) => Err(HotplugError::Invalid(name.into(), v.to_string())),
    }
}

/// The spec device of a `scsi-hd` `device_add` (libvirt's arguments: `bus`
/// `ALIAS.0`, `channel`, `scsi-id`, `lun`, `drive`, `id`, `serial`, `wwn`,
/// `vendor`, `product`, `write-cache`), on one of `adapters` (id, index).
fn scsi_device_of(
    args: &Map<String, Value>,
    media: &MediaRegistry,
    adapters: &[(String, u32)],
) -> Result<Device, HotplugError> {
    let id = str_arg(args, "id").ok_or(HotplugError::Missing("id"))?;
    let bus = str_arg(args, "bus").ok_or(HotplugError::Missing("bus"))?;
    let controller = bus
        .strip_suffix(".0")
        .and_then(|alias| adapters.iter().find(|(a, _)| a == alias))
        .map(|(_, index)| *index)
        .ok_or_else(|| HotplugError::NoBus(bus.into()))?;
    if num_arg(args, "channel")?.is_some_and(|c| c != 0) {
        return Err(HotplugError::Invalid(
            "channel".into(),
            args["channel"].to_string(),
        ));
    }
    let target = num_arg(args, "scsi-id")?.unwrap_or(0);
    if target > u64::from(MAX_TARGET) {
        return Err(HotplugError::Invalid("scsi-id".into(), target.to_string()));
    }
    let lun = num_arg(args, "lun")?.unwrap_or(0);
    if lun > u64::from(MAX_LUN) {
        return Err(HotplugError::Invalid("lun".into(), lun.to_string()));
    }
    let wwn = match args.get("wwn") {
        None => None,
        Some(_) => num_arg(args, "wwn")?,
    };
    let disk = drive_disk(args, media, id)?;
    Ok(Device {
        id: id.into(),
        pci: None,
        boot_index: None,
        kind: DeviceKind::ScsiDisk(machine_spec::ScsiDisk {
            controller,
            target: target as u8,
            lun: lun as u16,
            cdrom: false,
            name: id.into(),
            medium: Some(disk),
            vendor: str_arg(args, "vendor").map(str::to_string),
            product: str_arg(args, "product").map(str::to_string),
            wwn,
            tray_open: false,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn device_add_arguments_as_libvirt_sends_them() {
        let hub = HotplugHub::new();
        let media = MediaRegistry::new();
        let img = std::env::temp_dir().join(format!("hp-{}.img", std::process::id()));
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        media
            .nodes
            .add(&args(serde_json::json!({
                "driver": "raw", "node-name": "libvirt-2-format", "read-only": true,
                "file": {"driver": "file", "filename": img.display().to_string()}
            })))
            .unwrap();
        let (d, nd) = hub
            .device_of(
                &args(
                    serde_json::json!({"driver": "virtio-blk-pci", "bus": "pci.5",
                    "addr": "0x0", "drive": "libvirt-2-format", "id": "virtio-disk1"}),
                ),
                &media,
            )
            .unwrap();
        assert_eq!(d.pci.unwrap().bus, 5);
        assert!(nd.is_none());
        match d.kind {
            DeviceKind::Disk(k) => assert!(k.path == img && k.readonly && k.queues.is_none()),
            other => panic!("{other:?}"),
        }
        // <driver queues='N'> arrives as num-queues; 0 or more than 256 is refused.
        let blk = |q: serde_json::Value| {
            hub.device_of(
                &args(
                    serde_json::json!({"driver": "virtio-blk-pci", "bus": "pci.5",
                    "drive": "libvirt-2-format", "id": "virtio-disk1", "num-queues": q}),
                ),
                &media,
            )
        };
        match blk(serde_json::json!(4)).unwrap().0.kind {
            DeviceKind::Disk(k) => assert_eq!(k.queues, Some(4)),
            other => panic!("{other:?}"),
        }
        for bad in [0, 257] {
            let e = blk(serde_json::json!(bad)).unwrap_err();
            assert!(e.to_string().contains("num-queues"), "{e}");
        }
        let _ = std::fs::remove_file(&img);
        hub.netdev_add(
            &args(serde_json::json!({"type": "tap", "id": "hostnet1", "ifname": "vnet7"})),
            Vec::new(),
            Vec::new(),
        )
        .unwrap();
        assert!(matches!(
            hub.netdev_add(
                &args(serde_json::json!({"type": "tap", "id": "hostnet1"})),
                Vec::new(),
                Vec::new()
            ),
            Err(HotplugError::DuplicateNetdev(_))
        ));
        let (d, nd) = hub
            .device_of(
                &args(
                    serde_json::json!({"driver": "virtio-net-pci", "netdev": "hostnet1",
                    "mac": "52:54:00:12:34:56", "bus": "pci.6", "id": "net1"}),
                ),
                &media,
            )
            .unwrap();
        assert_eq!(nd.as_deref(), Some("hostnet1"));
        assert!(
            matches!(d.kind, DeviceKind::Net(ref n) if n.backend == NetBackend::Tap { name: Some("vnet7".into()) })
        );
        // Bad input is named.
        let e = hub
            .device_of(
                &args(serde_json::json!({"driver": "e1000", "bus": "pci.6", "id": "n"})),
                &media,
            )
            .unwrap_err();
        assert!(e.to_string().contains("'e1000'"), "{e}");
        let e = hub
            .device_of(
                &args(
                    serde_json::json!({"driver": "virtio-blk-pci", "bus": "pci.6",
                    "addr": "0x1", "drive": "x", "id": "d"}),
                ),
                &media,
            )
            .unwrap_err();
        assert_eq!(e.to_string(), "Property 'addr' has an invalid value '0x1'");
        // On the root bus (pc: ACPI hot-plug) `addr` names the slot.
        let (d, _) = hub
            .device_of(
                &args(
                    serde_json::json!({"driver": "virtio-net-pci", "netdev": "hostnet1",
                    "mac": "52:54:00:12:34:57", "bus": "pci.0", "addr": "0x7", "id": "net2"}),
                ),
                &media,
            )
            .unwrap();
        assert_eq!((d.pci.unwrap().bus, d.pci.unwrap().slot), (0, 7));
        assert_eq!(parse_addr("0x0a.0x0", 0).unwrap(), 10);
        assert_eq!(parse_addr("1f", 0).unwrap(), 31);
        assert!(parse_addr("0x3.1", 0).is_err(), "function 1");
        assert!(parse_addr("0x20", 0).is_err());
        assert!(parse_addr("zz", 0).is_err());
        let e = hub
            .device_of(
                &args(serde_json::json!({"driver": "virtio-blk-pci", "bus": "pci.6", "drive": "nope", "id": "d"})),
                &media,
            )
            .unwrap_err();
        assert!(e.to_string().contains("node-name='nope'"), "{e}");
        // No machine: refused, and device_del of an unknown id names it.
        assert!(matches!(
            hub.device_del("x"),
            Err(HotplugError::NotFound(_))
        ));
        assert!(hub.netdev_del("hostnet1").is_ok());
    }

    #[test]
    fn scsi_hd_arguments_as_libvirt_sends_them() {
        let media = MediaRegistry::new();
        let img = std::env::temp_dir().join(format!("hp-scsi-{}.img", std::process::id()));
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        media
            .nodes
            .add(&args(serde_json::json!({
                "driver": "raw", "node-name": "libvirt-scsi0-0-0-1-format",
                "file": {"driver": "file", "filename": img.display().to_string()}
            })))
            .unwrap();
        let _ = std::fs::remove_file(&img);
        let adapters = [("scsi0".to_string(), 0u32), ("ua-fast".to_string(), 3)];
        let d = scsi_device_of(
            &args(
                serde_json::json!({"driver": "scsi-hd", "bus": "ua-fast.0", "channel": 0,
                "scsi-id": 2, "lun": 300, "device_id": "drive-scsi3-0-2-300",
                "drive": "libvirt-scsi0-0-0-1-format", "id": "scsi3-0-2-300",
                "write-cache": "off", "serial": "S1", "wwn": 0x5000c50015ea71ac_u64}),
            ),
            &media,
            &adapters,
        )
        .unwrap();
        assert!(d.pci.is_none());
        match d.kind {
            DeviceKind::ScsiDisk(u) => {
                assert_eq!((u.controller, u.target, u.lun, u.cdrom), (3, 2, 300, false));
                assert_eq!(u.wwn, Some(0x5000c50015ea71ac));
                let k = u.medium.unwrap();
                assert_eq!(k.format, DiskFormat::Raw);
                assert_eq!(k.cache, CacheMode::Writethrough);
                assert_eq!(k.serial.as_deref(), Some("S1"));
            }
            other => panic!("{other:?}"),
        }
        // Bad input is named, in QEMU's words where it has them.
        let bad = |v: Value| {
            scsi_device_of(&args(v), &media, &adapters)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad(
                serde_json::json!({"driver": "scsi-hd", "bus": "scsi1.0", "drive": "x", "id": "d"})
            ),
            "Bus 'scsi1.0' not found"
        );
        assert_eq!(
            bad(
                serde_json::json!({"driver": "scsi-hd", "bus": "scsi0.0", "scsi-id": 256,
                "drive": "x", "id": "d"})
            ),
            "Property 'scsi-id' has an invalid value '256'"
        );
        assert_eq!(
            bad(
                serde_json::json!({"driver": "scsi-hd", "bus": "scsi0.0", "lun": 16384,
                "drive": "x", "id": "d"})
            ),
            "Property 'lun' has an invalid value '16384'"
        );
        assert!(bad(
            serde_json::json!({"driver": "scsi-hd", "bus": "scsi0.0", "drive": "nope", "id": "d"})
        )
        .contains("node-name='nope'"));
        // Without a machine, device_add of a scsi-hd is refused as such.
        let hub = HotplugHub::new();
        assert!(matches!(
            hub.device_add(
                &args(serde_json::json!({"driver": "scsi-hd", "bus": "scsi0.0", "drive": "x", "id": "d"})),
                &media
            ),
            Err(HotplugError::NoMachine)
        ));
    }

    #[test]
    fn netdev_add_takes_an_open_tap_and_the_nic_checks_it() {
        let hub = HotplugHub::new();
        let media = MediaRegistry::default();
        let null = std::fs::File::open("/dev/null").unwrap();
        let raw = null.as_raw_fd();
        hub.netdev_add(
            &args(serde_json::json!({"type": "tap", "id": "n0", "fd": "t"})),
            vec![null.into()],
            Vec::new(),
        )
        .unwrap();
        let (d, _) = hub
            .device_of(
                &args(
                    serde_json::json!({"driver": "virtio-net-pci", "netdev": "n0",
                    "mac": "52:54:00:12:34:57", "bus": "pci.6", "id": "net0"}),
                ),
                &media,
            )
            .unwrap();
        let DeviceKind::Net(n) = d.kind else {
            panic!("{:?}", d.kind)
        };
        assert_eq!(
            n.tap_fds,
            vec![raw],
            "the NIC is built on the netdev's descriptor"
        );
        // Building it checks that the descriptor is a tap with a vnet header.
        let e = Tap::from_inherited(raw).unwrap_err();
        assert!(
            format!("{:#}", anyhow::Error::new(e)).contains("not an open tap device"),
            "the error names the descriptor"
        );
        let tap = match Tap::open(None) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("SKIPPED netdev_add with a tap descriptor: {e} (needs CAP_NET_ADMIN)");
                return;
            }
        };
        let dup = Tap::from_inherited(tap.file().as_raw_fd()).unwrap();
        assert_eq!(dup.name(), tap.name());
    }
}
