//! Live hot-plug of virtio disks and NICs behind PCIe root ports, for QMP
//! `device_add`/`device_del` and `netdev_add`/`netdev_del` as QEMU takes them
//! from libvirt:
//!
//! * a disk's image is a block node named by `blockdev-add` (the media
//!   registry's node table); `device_add {driver: virtio-blk-pci, drive: NODE,
//!   id, bus: pci.N, addr: 0x0}`;
//! * a NIC's backend is a tap named by `netdev_add {type: tap, id, ifname}`
//!   (`br`: the bridge the VMM joins it to, since here the VMM, not libvirt,
//!   makes the tap); `device_add {driver: virtio-net-pci, netdev: ID, mac, id,
//!   bus: pci.N, addr: 0x0}`;
//! * `device_del` presses the port's attention button; the device goes when the
//!   guest powers the slot off (`pci/hotplug.rs`), and only then do subscribers
//!   hear its id (the monitor's `DEVICE_DELETED`). A guest that never does so
//!   keeps it, as with QEMU.
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
use std::sync::{Arc, Mutex, OnceLock};

use machine_spec::{CacheMode, Device, DeviceKind, DiskFormat, NetBackend, NetModel, PciAddress};
use serde_json::{Map, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tracing::info;

use super::block::{Block, DiskConfig, OpenFlags};
use super::kvm::IrqRouting;
use super::net::{parse_mac, Net, NetControl, Tap};
use super::pci_transport::PciLayout;
use super::{GuestMem, IoEventRegistrar, VirtioDevice, VirtioPciDevice};
use crate::media::{MediaRegistry, MediumFormat};
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
    /// A `driver` other than the two hot-pluggable ones.
    #[error("'{0}' is not a valid device model name for hot-plug (virtio-blk-pci and virtio-net-pci are)")]
    Driver(String),
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
    /// Interrupt routes for the function could not be made.
    #[error("cannot route the interrupts of '{0}'")]
    Irq(String, #[source] super::kvm::KvmIrqError),
    /// Bus, slot or BAR trouble.
    #[error("Bus '{0}'")]
    Pci(String, #[source] crate::pci::PciError),
}

/// A tap backend from `netdev_add`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Netdev {
    id: String,
    ifname: Option<String>,
    bridge: Option<String>,
}

/// A device behind a hot-plug port.
#[derive(Debug, Clone)]
struct Occupant {
    id: String,
    /// The spec bus index (the root port's libvirt controller index).
    bus: u8,
    /// For a hot-added device: what to build again in a rebuilt machine.
    hot: Option<Device>,
    /// The netdev it uses (freed when it goes).
    netdev: Option<String>,
}

/// What the current machine gives hot-plug: its root bus and the means to make
/// a virtio function.
pub(crate) struct Machine {
    pub root: Arc<Mutex<dyn RootAccess>>,
    pub routing: Arc<IrqRouting>,
    pub ioevents: Arc<dyn IoEventRegistrar>,
    pub mem: GuestMem,
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

/// `addr`: behind a root port only device 0, function 0 exists.
fn check_addr(addr: Option<&str>) -> Result<(), HotplugError> {
    match addr {
        None | Some("0" | "0x0" | "0.0" | "0x0.0x0" | "00.0") => Ok(()),
        Some(a) => Err(HotplugError::Invalid("addr".into(), a.into())),
    }
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

    /// The machine just built: its root and the devices behind hot-plug ports,
    /// (id, spec bus) of those from the spec.
    pub(crate) fn set_machine(&self, m: Machine, cold: Vec<(String, u8)>) {
        let mut occ = lock(&self.occupants);
        occ.retain(|o| o.hot.is_some());
        occ.extend(cold.into_iter().map(|(id, bus)| Occupant {
            id,
            bus,
            hot: None,
            netdev: None,
        }));
        *lock(&self.machine) = Some(m);
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
        Box::new(move |bus, gone| {
            if let Some(hub) = hub.upgrade() {
                hub.unplugged(bus, gone);
            }
        })
    }

    /// What was behind port `bus` is gone: have the main thread drop it, tell
    /// the subscribers.
    fn unplugged(&self, bus: u8, gone: Vec<Box<dyn PciDevice>>) {
        lock(&self.released).extend(gone);
        if let Some(wake) = self.waker.get() {
            wake();
        } else {
            drop(std::mem::take(&mut *lock(&self.released)));
        }
        let o = {
            let mut occ = lock(&self.occupants);
            let Some(i) = occ.iter().position(|o| o.bus == bus) else {
                return;
            };
            occ.remove(i)
        };
        info!(id = %o.id, bus, "device unplugged");
        if o.hot.is_none() {
            lock(&self.removed).push(o.id.clone());
        }
        let mut l = lock(&self.listeners);
        l.retain(|tx| tx.send(o.id.clone()).is_ok());
    }

    /// `netdev_add`.
    pub fn netdev_add(&self, args: &Map<String, Value>) -> Result<(), HotplugError> {
        let ty = str_arg(args, "type").ok_or(HotplugError::Missing("type"))?;
        let id = str_arg(args, "id").ok_or(HotplugError::Missing("id"))?;
        if ty != "tap" {
            return Err(HotplugError::NetdevType(ty.into()));
        }
        let mut n = lock(&self.netdevs);
        if n.iter().any(|d| d.id == id) {
            return Err(HotplugError::DuplicateNetdev(id.into()));
        }
        n.push(Netdev {
            id: id.into(),
            ifname: str_arg(args, "ifname").map(str::to_string),
            bridge: str_arg(args, "br").map(str::to_string),
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
        check_addr(str_arg(args, "addr"))?;
        let pci = Some(PciAddress {
            domain: 0,
            bus,
            slot: 0,
            function: 0,
        });
        let (kind, netdev) = match driver {
            "virtio-blk-pci" => {
                let drive = str_arg(args, "drive").ok_or(HotplugError::Missing("drive"))?;
                let node = media
                    .nodes
                    .get(drive)
                    .ok_or_else(|| HotplugError::NoDrive(drive.into()))?;
                let disk = machine_spec::Disk {
                    path: node.path.clone(),
                    format: match node.format {
                        Some(MediumFormat::Qcow2) => DiskFormat::Qcow2,
                        Some(MediumFormat::Raw) | None => DiskFormat::Raw,
                    },
                    target: id.into(),
                    readonly: node.read_only,
                    shareable: false,
                    serial: str_arg(args, "serial").map(str::to_string),
                    cache: CacheMode::Default,
                    discard: false,
                    queues: None,
                    io: Default::default(),
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
                let net = machine_spec::Net {
                    mac: mac.into(),
                    backend,
                    link_up: true,
                    mtu: None,
                    model: NetModel::Virtio,
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

    /// `device_add`: builds the function and puts it behind the named port.
    pub fn device_add(
        &self,
        args: &Map<String, Value>,
        media: &MediaRegistry,
    ) -> Result<(), HotplugError> {
        let (d, netdev) = self.device_of(args, media)?;
        if lock(&self.occupants).iter().any(|o| o.id == d.id) {
            return Err(HotplugError::DuplicateId(d.id));
        }
        let machine = lock(&self.machine);
        let m = machine.as_ref().ok_or(HotplugError::NoMachine)?;
        let bus = d.pci.map_or(0, |a| a.bus);
        let pci = build(m, &d)?;
        let mut root = m.root.lock().unwrap_or_else(|e| e.into_inner());
        root.root()
            .hotplug_behind(bus, pci)
            .map_err(|e| HotplugError::Pci(format!("pci.{bus}"), e))?;
        info!(id = %d.id, bus, "device hot-added");
        lock(&self.occupants).push(Occupant {
            id: d.id.clone(),
            bus,
            hot: Some(d),
            netdev,
        });
        Ok(())
    }

    /// `device_del`: asks the guest to release the device. Returns whether it
    /// went at once (the guest had powered its slot off).
    pub fn device_del(&self, id: &str) -> Result<bool, HotplugError> {
        let bus = lock(&self.occupants)
            .iter()
            .find(|o| o.id == id)
            .map(|o| o.bus)
            .ok_or_else(|| HotplugError::NotFound(id.into()))?;
        let machine = lock(&self.machine);
        let m = machine.as_ref().ok_or(HotplugError::NoMachine)?;
        let gone = {
            let mut root = m.root.lock().unwrap_or_else(|e| e.into_inner());
            root.root()
                .request_unplug(bus)
                .map_err(|e| HotplugError::Pci(format!("pci.{bus}"), e))?
        };
        drop(machine);
        match gone {
            Some(devs) => {
                self.unplugged(bus, devs);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

/// Opens `d`'s backend and wraps it in a virtio-pci function (MSI-X only).
fn build(m: &Machine, d: &Device) -> Result<Box<dyn PciDevice>, HotplugError> {
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
            Box::new(
                Block::open(&d.id, &cfg, Arc::default())
                    .map_err(|e| HotplugError::Disk(k.path.display().to_string(), e))?,
            )
        }
        DeviceKind::Net(n) => {
            let mac = parse_mac(&n.mac)
                .ok_or_else(|| HotplugError::Invalid("mac".into(), n.mac.clone()))?;
            let (name, bridge) = match &n.backend {
                NetBackend::Tap { name } => (name.as_deref(), None),
                NetBackend::Bridge { bridge, tap } => (tap.as_deref(), Some(bridge.as_str())),
                NetBackend::User(_) => return Err(HotplugError::NetdevType("user".into())),
            };
            let shown = name.unwrap_or_default().to_string();
            let terr = |e| HotplugError::Tap(shown.clone(), e);
            let tap = Tap::open(name).map_err(terr)?;
            if let Some(b) = bridge {
                tap.attach_to_bridge(b).map_err(terr)?;
            }
            tap.set_up().map_err(terr)?;
            info!(id = %d.id, tap = tap.name(), "virtio-net (hot-plug)");
            Box::new(Net::with_control(
                &d.id,
                mac,
                n.mtu,
                NetControl::new(n.link_up),
                Box::new(tap),
            ))
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
    Ok(Box::new(pci))
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
            DeviceKind::Disk(k) => assert!(k.path == img && k.readonly),
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_file(&img);
        hub.netdev_add(&args(
            serde_json::json!({"type": "tap", "id": "hostnet1", "ifname": "vnet7"}),
        ))
        .unwrap();
        assert!(matches!(
            hub.netdev_add(&args(serde_json::json!({"type": "tap", "id": "hostnet1"}))),
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
}
