//! `<devices>`: one vector per device kind, in the order libvirt formats them.

use crate::element::Element;
use crate::xmlenum::xml_enum;

use super::{OnOff, YesNo};

/// `<devices>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Devices {
    pub emulator: Option<String>,
    pub disks: Vec<Disk>,
    pub controllers: Vec<Controller>,
    pub leases: Vec<GenericDevice>,
    pub filesystems: Vec<GenericDevice>,
    pub interfaces: Vec<Interface>,
    pub smartcards: Vec<GenericDevice>,
    pub serials: Vec<Chardev>,
    pub parallels: Vec<Chardev>,
    pub consoles: Vec<Chardev>,
    pub channels: Vec<Chardev>,
    pub inputs: Vec<Input>,
    pub tpms: Vec<GenericDevice>,
    pub graphics: Vec<GenericDevice>,
    pub sounds: Vec<GenericDevice>,
    pub audios: Vec<GenericDevice>,
    pub videos: Vec<GenericDevice>,
    pub hostdevs: Vec<GenericDevice>,
    pub redirdevs: Vec<GenericDevice>,
    pub redirfilters: Vec<GenericDevice>,
    pub hubs: Vec<GenericDevice>,
    pub watchdogs: Vec<Watchdog>,
    pub memballoon: Option<Memballoon>,
    pub rngs: Vec<Rng>,
    pub nvram: Option<GenericDevice>,
    pub panics: Vec<Panic>,
    pub shmems: Vec<GenericDevice>,
    pub memories: Vec<GenericDevice>,
    pub iommu: Option<GenericDevice>,
    pub vsock: Option<Vsock>,
    pub cryptos: Vec<GenericDevice>,
}

/// A device whose inside this crate keeps verbatim (graphics, video, sound, hostdev,
/// filesystem, tpm, …): the element without its `<alias>` and `<address>`, which are
/// modelled because defaults assign them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenericDevice {
    pub element: Element,
    pub alias: Option<String>,
    pub address: Option<Address>,
}

impl GenericDevice {
    /// An attribute of the device element (`type`, `model`, …).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.element.get_attr(name)
    }

    /// `<model type=…>` of the device, if any (video, sound use it).
    pub fn model_type(&self) -> Option<&str> {
        self.element
            .get_child("model")
            .and_then(|m| m.get_attr("type"))
    }
}

/// A PCI address as libvirt writes it (`domain='0x0000' bus='0x00' slot='0x03' function='0x0'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciAddr {
    pub domain: u16,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
    pub multifunction: Option<OnOff>,
}

/// `<address type=…>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Pci(PciAddr),
    /// `type='drive' controller bus target unit`.
    Drive {
        controller: u32,
        bus: u32,
        target: u32,
        unit: u32,
    },
    /// `type='virtio-serial' controller bus port`.
    VirtioSerial {
        controller: u32,
        bus: u32,
        port: u32,
    },
    /// Any other address type (`usb`, `ccid`, `isa`, `ccw`, `virtio-mmio`, `dimm`, …), verbatim.
    Other(Element),
}

xml_enum! {
    /// `<disk type>`.
    pub enum DiskType {
        File = "file", Block = "block", Dir = "dir", Network = "network", Volume = "volume",
        Nvme = "nvme", Vhostuser = "vhostuser", Vhostvdpa = "vhostvdpa",
    }
}

xml_enum! {
    /// `<disk device>`.
    pub enum DiskDevice { Disk = "disk", Cdrom = "cdrom", Floppy = "floppy", Lun = "lun" }
}

xml_enum! {
    /// `<target bus>` of a disk.
    pub enum DiskBus {
        Ide = "ide", Fdc = "fdc", Scsi = "scsi", Virtio = "virtio", Xen = "xen", Usb = "usb",
        Uml = "uml", Sata = "sata", Sd = "sd",
    }
}

xml_enum! {
    /// `<driver type>` of a disk (image format).
    pub enum DiskFormat {
        Raw = "raw", Qcow2 = "qcow2", Qcow = "qcow", Qed = "qed", Vmdk = "vmdk", Vdi = "vdi",
        Vpc = "vpc", Vhdx = "vhdx", Iso = "iso", Luks = "luks", Bochs = "bochs", Cloop = "cloop",
        Dmg = "dmg", Ploop = "ploop", Fat = "fat", Dir = "dir", Host = "host", Cow = "cow",
        Aio = "aio",
    }
}

xml_enum! {
    /// `<driver cache>`.
    pub enum DiskCache {
        Default = "default", None = "none", Writethrough = "writethrough",
        Writeback = "writeback", Directsync = "directsync", Unsafe = "unsafe",
    }
}

/// `<disk>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub disk_type: DiskType,
    pub device: DiskDevice,
    /// `model='virtio|virtio-transitional|virtio-non-transitional'`.
    pub model: Option<String>,
    pub snapshot: Option<String>,
    pub driver: Option<DiskDriver>,
    pub source: Option<DiskSource>,
    /// `<backingStore>`, verbatim (`<backingStore/>` means "no backing file").
    pub backing_store: Option<Element>,
    pub target: DiskTarget,
    pub readonly: bool,
    pub shareable: bool,
    pub transient: bool,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub vendor: Option<String>,
    pub product: Option<String>,
    pub boot_order: Option<u32>,
    /// Known children not modelled (`iotune`, `encryption`, `blockio`, `geometry`,
    /// `mirror`, …), verbatim.
    pub extra: Vec<Element>,
    pub alias: Option<String>,
    pub address: Option<Address>,
}

/// `<driver name type cache io discard …>` of a disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskDriver {
    pub name: Option<String>,
    pub format: Option<DiskFormat>,
    pub cache: Option<DiskCache>,
    /// `io='native|threads|io_uring'`.
    pub io: Option<String>,
    /// `discard='unmap|ignore'`.
    pub discard: Option<String>,
    /// `detect_zeroes`, `error_policy`, `rerror_policy`, `iothread`, `queues`, … in order.
    pub other: Vec<(String, String)>,
}

/// `<source>` of a disk: the attributes for every disk type, plus `<host>` children.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskSource {
    /// Attributes in order (`file`, `dev`, `dir`, `protocol`, `name`, `pool`, `volume`,
    /// `mode`, `startupPolicy`, `index`, …).
    pub attrs: Vec<(String, String)>,
    /// Children (`host`, `auth`, `seclabel`, `reservations`, …), verbatim.
    pub children: Vec<Element>,
}

impl DiskSource {
    /// The value of a `<source>` attribute.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `<target dev bus tray removable rotation_rate>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskTarget {
    pub dev: String,
    pub bus: Option<DiskBus>,
    pub tray: Option<String>,
    pub removable: Option<OnOff>,
    pub rotation_rate: Option<u32>,
}

xml_enum! {
    /// `<controller type>`.
    pub enum ControllerType {
        Ide = "ide", Fdc = "fdc", Scsi = "scsi", Sata = "sata", VirtioSerial = "virtio-serial",
        Ccid = "ccid", Usb = "usb", Pci = "pci", Xenbus = "xenbus", Isa = "isa",
    }
}

/// `<controller type index model>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    pub controller_type: ControllerType,
    pub index: u32,
    pub model: Option<String>,
    /// Other attributes (`ports`, `vectors`, `maxGrantFrames`, …), in order.
    pub attrs: Vec<(String, String)>,
    /// Children other than alias/address (`model name`, `target`, `driver`, `master`), verbatim.
    pub children: Vec<Element>,
    pub alias: Option<String>,
    pub address: Option<Address>,
}

xml_enum! {
    /// `<interface type>`.
    pub enum InterfaceType {
        Ethernet = "ethernet", Vhostuser = "vhostuser", Server = "server", Client = "client",
        Mcast = "mcast", Network = "network", Bridge = "bridge", Internal = "internal",
        Direct = "direct", Hostdev = "hostdev", Udp = "udp", Vdpa = "vdpa", Null = "null",
        Vds = "vds", User = "user",
    }
}

/// `<interface>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub interface_type: InterfaceType,
    /// `managed` (hostdev interfaces) and `trustGuestRxFilters`, in order.
    pub attrs: Vec<(String, String)>,
    /// `<mac address>`; generated (`52:54:00:…`) when missing.
    pub mac: String,
    /// `<source>` attributes (`network`, `bridge`, `dev`, `mode`, `portgroup`, `type`,
    /// `path`, `address`, `port`), in order, and its children verbatim.
    pub source: Option<Element>,
    /// `<target dev managed>`.
    pub target_dev: Option<String>,
    pub target_managed: Option<YesNo>,
    /// `<model type>`.
    pub model: Option<String>,
    /// `<link state='up|down'>`.
    pub link_state: Option<String>,
    /// `<mtu size>`.
    pub mtu: Option<u32>,
    /// `<boot order>`.
    pub boot_order: Option<u32>,
    /// Known children not modelled (`backend`, `driver`, `virtualport`, `bandwidth`,
    /// `vlan`, `filterref`, `ip`, `route`, `script`, `rom`, `tune`, `coalesce`, …), verbatim.
    pub extra: Vec<Element>,
    pub alias: Option<String>,
    pub address: Option<Address>,
}

xml_enum! {
    /// Character device source types (`<serial type>` etc.).
    pub enum CharType {
        Null = "null", Vc = "vc", Pty = "pty", Dev = "dev", File = "file", Pipe = "pipe",
        Stdio = "stdio", Udp = "udp", Tcp = "tcp", Unix = "unix", Spicevmc = "spicevmc",
        Spiceport = "spiceport", Nmdm = "nmdm", QemuVdagent = "qemu-vdagent", Dbus = "dbus",
    }
}

/// `<source>` of a character device (several for `udp`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CharSource {
    pub mode: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub service: Option<String>,
    pub append: Option<OnOff>,
    pub channel: Option<String>,
    /// Remaining attributes (`tls`, `master`, `slave`), in order.
    pub other: Vec<(String, String)>,
    /// Children (`seclabel`, `reconnect`), verbatim.
    pub children: Vec<Element>,
}

/// `<target type port name state>` of a character device, with its `<model name>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CharTarget {
    pub target_type: Option<String>,
    pub port: Option<u32>,
    pub name: Option<String>,
    pub state: Option<String>,
    /// guestfwd `address`, `port` as text.
    pub address: Option<String>,
    pub guestfwd_port: Option<String>,
    /// `<model name>` (serial: `isa-serial`, `pci-serial`, …).
    pub model: Option<String>,
}

/// `<serial>`, `<parallel>`, `<console>` or `<channel>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chardev {
    pub char_type: CharType,
    /// `<console tty=…>`: live form only.
    pub tty: Option<String>,
    pub sources: Vec<CharSource>,
    /// `<protocol type='raw|telnet|telnets|tls'>`.
    pub protocol: Option<String>,
    pub target: CharTarget,
    /// `<log file append>`, verbatim.
    pub log: Option<Element>,
    pub alias: Option<String>,
    pub address: Option<Address>,
}

/// `<input type bus model>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub input_type: String,
    pub bus: Option<String>,
    pub model: Option<String>,
    /// Children (`source`, `driver`), verbatim.
    pub children: Vec<Element>,
    pub alias: Option<String>,
    pub address: Option<Address>,
}

/// `<watchdog model action>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watchdog {
    pub model: String,
    pub action: Option<String>,
    pub alias: Option<String>,
    pub address: Option<Address>,
}

/// `<memballoon model autodeflate freePageReporting>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memballoon {
    pub model: String,
    pub autodeflate: Option<OnOff>,
    pub free_page_reporting: Option<OnOff>,
    /// `<stats period>`.
    pub stats_period: Option<u32>,
    /// `<driver>`, verbatim.
    pub driver: Option<Element>,
    pub alias: Option<String>,
    pub address: Option<Address>,
}

/// `<rng model>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    pub model: String,
    /// `<rate bytes period>`.
    pub rate: Option<Element>,
    /// `<backend model>`: `random`, `egd` or `builtin`.
    pub backend_model: String,
    /// The `random` backend's device (element text).
    pub backend_path: Option<String>,
    /// The `egd` backend's `type` attribute and children, verbatim.
    pub backend_type: Option<String>,
    pub backend_children: Vec<Element>,
    pub driver: Option<Element>,
    pub alias: Option<String>,
    pub address: Option<Address>,
}

/// `<panic model>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panic {
    pub model: Option<String>,
    pub address: Option<Address>,
}

/// `<vsock model>` with `<cid auto address>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vsock {
    pub model: Option<String>,
    pub cid_auto: Option<YesNo>,
    pub cid_address: Option<u32>,
    pub driver: Option<Element>,
    pub alias: Option<String>,
    pub address: Option<Address>,
}
