//! The typed libvirt domain model: what `Domain::parse` produces and `Domain::to_xml`
//! formats. Field names follow the XML; memory sizes are in KiB as libvirt keeps them.
//! Content libvirt knows but this crate does not interpret is kept verbatim as
//! [`Element`]s so it survives a round trip (and translation can reject it by name).

mod devices;

pub use devices::*;

use crate::element::Element;
use crate::xmlenum::xml_enum;

xml_enum! {
    /// `<domain type=…>`: the hypervisor driver the domain is meant for.
    pub enum DomainType {
        Qemu = "qemu", Kqemu = "kqemu", Kvm = "kvm", Xen = "xen", Lxc = "lxc", Uml = "uml",
        Openvz = "openvz", Test = "test", Vmware = "vmware", Hyperv = "hyperv", Vbox = "vbox",
        Phyp = "phyp", Vz = "vz", Bhyve = "bhyve",
    }
}

xml_enum! {
    /// `on_poweroff`, `on_reboot`, `on_crash` values.
    pub enum LifecycleAction {
        Destroy = "destroy", Restart = "restart", Preserve = "preserve",
        RenameRestart = "rename-restart", CoredumpDestroy = "coredump-destroy",
        CoredumpRestart = "coredump-restart",
    }
}

xml_enum! {
    /// `on`/`off` attribute values.
    pub enum OnOff { On = "on", Off = "off" }
}

xml_enum! {
    /// `yes`/`no` attribute values.
    pub enum YesNo { Yes = "yes", No = "no" }
}

/// A libvirt domain definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// `<domain type>`.
    pub domain_type: DomainType,
    /// `<domain id>`: only in live XML, set by the daemon while the domain runs.
    pub id: Option<u32>,
    pub name: String,
    /// Canonical lower-case hyphenated UUID (generated when missing).
    pub uuid: String,
    /// `<genid>`: VM generation id (`None`: absent; `Some("")`: auto).
    pub genid: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    /// Children of `<metadata>`, verbatim (each in its own namespace).
    pub metadata: Vec<Element>,
    pub max_memory: Option<MaxMemory>,
    /// `<memory>` in KiB.
    pub memory: u64,
    /// `<currentMemory>` in KiB (defaults to `memory`).
    pub current_memory: u64,
    pub memory_backing: Option<MemoryBacking>,
    pub vcpu: Vcpu,
    pub cputune: Option<Cputune>,
    pub os: Os,
    /// Children of `<features>` in document order (`acpi`, `apic`, `pae`, `hyperv`, …).
    pub features: Option<Vec<Element>>,
    pub cpu: Option<Cpu>,
    pub clock: Option<Clock>,
    pub on_poweroff: LifecycleAction,
    pub on_reboot: LifecycleAction,
    pub on_crash: LifecycleAction,
    pub pm: Option<Pm>,
    pub devices: Devices,
    /// Other top-level libvirt elements kept verbatim (`seclabel`, `resource`,
    /// `iothreads`, `numatune`, `sysinfo`, `qemu:commandline`, …); formatted at their
    /// canonical position.
    pub extra: Vec<Element>,
}

/// `<maxMemory slots>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxMemory {
    pub kib: u64,
    pub slots: Option<u32>,
}

/// `<memoryBacking>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemoryBacking {
    /// `<hugepages>` present; its `<page>` children verbatim.
    pub hugepages: Option<Vec<Element>>,
    pub nosharepages: bool,
    pub locked: bool,
    /// `<source type='file|anonymous|memfd'/>`.
    pub source_type: Option<String>,
    /// `<access mode='shared|private'/>`.
    pub access_mode: Option<String>,
    /// `<allocation mode='immediate|ondemand' threads>`, verbatim.
    pub allocation: Option<Element>,
    pub discard: bool,
}

xml_enum! {
    /// `<vcpu placement>`.
    pub enum Placement { Static = "static", Auto = "auto" }
}

/// `<vcpu placement cpuset current>N</vcpu>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vcpu {
    /// The maximum number of vCPUs (element text).
    pub max: u32,
    /// vCPUs online at boot (`current`); `None` means all.
    pub current: Option<u32>,
    pub placement: Option<Placement>,
    pub cpuset: Option<String>,
}

impl Vcpu {
    /// vCPUs online at boot.
    pub fn online(&self) -> u32 {
        self.current.unwrap_or(self.max)
    }
}

/// `<cputune>`: `<vcpupin>` modelled, the rest (`shares`, `period`, `emulatorpin`, …) verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cputune {
    pub vcpupins: Vec<VcpuPin>,
    pub other: Vec<Element>,
}

/// `<vcpupin vcpu cpuset>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuPin {
    pub vcpu: u32,
    pub cpuset: String,
}

/// `<os>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Os {
    /// `<os firmware='bios|efi'>`.
    pub firmware: Option<String>,
    /// `<type>` text (`hvm`).
    pub os_type: String,
    pub arch: Option<String>,
    pub machine: Option<String>,
    /// `<firmware>` child (firmware feature list), verbatim.
    pub firmware_features: Option<Element>,
    pub loader: Option<Loader>,
    pub nvram: Option<Element>,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub cmdline: Option<String>,
    pub dtb: Option<String>,
    /// `<boot dev>` in order.
    pub boot: Vec<String>,
    pub bootmenu: Option<BootMenu>,
    /// `<smbios mode>`.
    pub smbios: Option<String>,
    /// `<bios useserial rebootTimeout>`, verbatim.
    pub bios: Option<Element>,
    /// `<acpi><table>` children, verbatim.
    pub acpi: Option<Element>,
}

/// `<loader readonly secure type stateless>PATH</loader>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Loader {
    pub path: Option<String>,
    pub readonly: Option<YesNo>,
    pub secure: Option<YesNo>,
    pub loader_type: Option<String>,
}

/// `<bootmenu enable timeout>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootMenu {
    pub enable: YesNo,
    pub timeout: Option<u32>,
}

xml_enum! {
    /// `<cpu mode>`.
    pub enum CpuModeAttr {
        Custom = "custom", HostModel = "host-model", HostPassthrough = "host-passthrough",
        Maximum = "maximum",
    }
}

xml_enum! {
    /// `<feature policy>`.
    pub enum FeaturePolicy {
        Force = "force", Require = "require", Optional = "optional", Disable = "disable",
        Forbid = "forbid",
    }
}

/// `<cpu>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cpu {
    pub mode: Option<CpuModeAttr>,
    /// `match='minimum|exact|strict'`.
    pub match_: Option<String>,
    /// `check='none|partial|full'`.
    pub check: Option<String>,
    pub migratable: Option<OnOff>,
    pub model: Option<CpuModel>,
    pub vendor: Option<String>,
    pub topology: Option<CpuTopology>,
    /// `<cache>`, verbatim.
    pub cache: Option<Element>,
    pub features: Vec<CpuFeature>,
    /// `<numa>`, verbatim.
    pub numa: Option<Element>,
}

/// `<model fallback vendor_id>NAME</model>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuModel {
    pub name: Option<String>,
    pub fallback: Option<String>,
    pub vendor_id: Option<String>,
}

/// `<topology sockets dies cores threads>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTopology {
    pub sockets: u32,
    pub dies: u32,
    pub cores: u32,
    pub threads: u32,
}

/// `<feature policy name>`; policy defaults to `require` as libvirt does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuFeature {
    pub policy: FeaturePolicy,
    pub name: String,
}

/// `<clock offset>` with its timers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Clock {
    /// `utc`, `localtime`, `timezone`, `variable`, `absolute`.
    pub offset: String,
    /// The other attributes (`timezone`, `adjustment`, `basis`, `start`), in order.
    pub attrs: Vec<(String, String)>,
    pub timers: Vec<Timer>,
}

/// `<timer name present tickpolicy track frequency mode>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timer {
    pub name: String,
    pub present: Option<YesNo>,
    pub tickpolicy: Option<String>,
    pub track: Option<String>,
    pub frequency: Option<u64>,
    pub mode: Option<String>,
    /// `<catchup>` child, verbatim.
    pub catchup: Option<Element>,
}

/// `<pm>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pm {
    pub suspend_to_mem: Option<YesNo>,
    pub suspend_to_disk: Option<YesNo>,
}

/// The top-level elements kept verbatim in [`Domain::extra`], in libvirt's output order.
pub const EXTRA_ELEMENTS: &[&str] = &[
    "blkiotune",
    "memtune",
    "vcpus",
    "iothreads",
    "iothreadids",
    "defaultiothread",
    "numatune",
    "resource",
    "sysinfo",
    "bootloader",
    "bootloader_args",
    "idmap",
    "on_lockfailure",
    "perf",
    "seclabel",
    "keywrap",
    "launchSecurity",
    "qemu:commandline",
    "qemu:capabilities",
    "qemu:override",
    "qemu:deprecation",
];
