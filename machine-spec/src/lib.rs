//! `MachineSpec`: the VMM's only input.
//!
//! Plain serde data with no KVM dependencies. The daemon (and `oxvirt-vmm --xml`)
//! produce it by translating a libvirt `Domain`; the VMM boots exactly what it says.
//! It is written to the runtime dir as `spec.json`, so its JSON form is a contract:
//! `schemas/machine-spec.schema.json` is generated from these types and a test fails
//! when that file is stale.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod ata;
pub mod cpu_models;
pub use ata::{AtaBus, AtaController, AtaDisk, AHCI_PORTS};
mod graphics;
pub use graphics::{Graphics, GraphicsListen, SharePolicy, VNC_PORT_MIN};
mod user_net;
pub use user_net::{PortForward, PortProto, PortRange, UserAddress, UserNet};
mod tpm;
pub use tpm::{Tpm, TpmModel};
mod hyperv;
pub use hyperv::{HvFeature, HyperV};

/// Version of the spec format; bump when a change is not backwards compatible.
pub const SPEC_VERSION: u32 = 1;

/// Everything the VMM needs to build and run one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineSpec {
    /// Format version, [`SPEC_VERSION`].
    pub version: u32,
    /// The libvirt domain name.
    pub name: String,
    /// The libvirt domain UUID, canonical lower-case hyphenated form.
    pub uuid: String,
    pub memory: Memory,
    pub cpus: Cpus,
    pub boot: Boot,
    /// Guest-visible platform features.
    pub platform: Platform,
    /// What to do when the guest powers off, reboots or crashes.
    pub lifecycle: Lifecycle,
    /// Devices in a stable order; ids are unique.
    #[serde(default)]
    pub devices: Vec<Device>,
    /// The graphical console (a VNC server), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graphics: Option<Graphics>,
    /// What of the domain XML runs without effect or differently from libvirt+QEMU
    /// (desktop-comfort devices, SPICE served as VNC, …); the VMM logs each line at
    /// start, so the domain log says it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Files already open in the VMM (inherited descriptors): wherever the VMM would
    /// open one of these paths (a disk image or its backing files, a CD-ROM medium,
    /// kernel, initrd, firmware), it uses the descriptor instead, as QEMU does with
    /// `/dev/fdset/N`. oxvirtd opens them, so the VMM needs no right to the paths.
    /// A path may be listed twice (read-write and `O_DIRECT`, say); the VMM picks
    /// the descriptor whose access mode and `O_DIRECT` fit the open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PassedFile>,
    /// The user and group this domain's VMM runs as, from a static DAC security
    /// label (libvirt `<seclabel type='static' model='dac'><label>USER:GROUP`, names
    /// or `+UID:+GID`): oxvirtd starts the VMM with `--run-as` so. `None`: the
    /// daemon's configured user (`vmm_user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<String>,
    /// Start from a saved machine state instead of booting (QEMU's `-incoming`;
    /// libvirt's restore and managed save): the stream QMP `migrate` wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incoming: Option<Incoming>,
}

/// Where a saved machine state is read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Incoming {
    /// The file (listed in `files` when oxvirtd hands it over open).
    pub path: PathBuf,
    /// Where the VMM's stream starts in it (oxvirtd's save files begin with their
    /// own header and the domain XML).
    #[serde(default)]
    pub offset: u64,
}

/// A file handed to the VMM open: the path it stands for and the descriptor number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PassedFile {
    pub path: PathBuf,
    pub fd: i32,
}

/// Guest RAM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// Boot-time RAM size in bytes (libvirt `<memory>`).
    pub size_bytes: u64,
    /// Back guest RAM with shared memory (libvirt `<memoryBacking><access mode='shared'/>`).
    #[serde(default)]
    pub shared: bool,
    /// Back guest RAM with huge pages (libvirt `<memoryBacking><hugepages/>`).
    #[serde(default)]
    pub hugepages: bool,
}

/// vCPUs, topology and the CPUID the guest sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cpus {
    /// vCPUs started at boot.
    pub count: u32,
    /// Maximum vCPUs (the topology product); `count <= max`.
    pub max: u32,
    pub topology: Topology,
    pub mode: CpuMode,
    /// CPUID feature overrides from `<cpu><feature policy=… name=…/>`.
    #[serde(default)]
    pub features: Vec<CpuFeature>,
    /// The named model of `mode: custom` (`<cpu><model>`), from [`cpu_models`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<CpuModelRef>,
}

/// A named CPU model a custom-mode guest runs (libvirt `<cpu match><model>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CpuModelRef {
    /// A name of [`cpu_models::models`], e.g. `Skylake-Client`.
    pub name: String,
    /// `match='minimum'`: the host's other features are added to the model's.
    #[serde(default)]
    pub minimum: bool,
    /// Refuse to start when the host lacks a feature the model needs (libvirt's
    /// `check='partial|full'`); `false` (`check='none'`) drops such features.
    pub enforce: bool,
}

/// CPU topology; `sockets * dies * cores * threads == Cpus::max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub sockets: u32,
    pub dies: u32,
    pub cores: u32,
    pub threads: u32,
}

/// How the guest CPU model relates to the host's (libvirt `<cpu mode>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CpuMode {
    /// What KVM supports on this host (KVM_GET_SUPPORTED_CPUID), the default.
    HostPassthrough,
    /// The named model closest to the host, with the host's other features.
    HostModel,
    Maximum,
    /// `Cpus::model` (or, without one, the host's CPUID) with the feature policies.
    Custom,
}

/// One CPUID feature override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CpuFeature {
    /// libvirt/QEMU feature name, e.g. `x2apic`, `avx2`, `hypervisor`.
    pub name: String,
    pub policy: FeaturePolicy,
}

/// libvirt feature policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FeaturePolicy {
    Force,
    Require,
    Optional,
    Disable,
    Forbid,
}

/// What the guest is entered with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// Direct kernel boot: an ELF vmlinux with a PVH note, or a bzImage. Absent when
    /// the machine boots through `firmware`; exactly one of the two is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
    #[serde(default)]
    pub initrd: Option<PathBuf>,
    #[serde(default)]
    pub cmdline: String,
    /// Firmware boot (SeaBIOS or OVMF from the reset vector), libvirt `<os>` without
    /// `<kernel>`. Devices to boot from carry a [`Device::boot_index`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<Firmware>,
}

/// Which firmware interface the image implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FirmwareKind {
    /// A legacy BIOS (SeaBIOS `bios-256k.bin`): one image, mapped read-only below 4 GiB
    /// with its last 128 KiB copied to 0xE0000 at every reset.
    Bios,
    /// UEFI (OVMF): a read-only code image and a writable variable store on CFI flash.
    Efi,
}

/// Firmware and what it is told through fw_cfg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    pub kind: FirmwareKind,
    /// The read-only image (libvirt `<loader>`): mapped so that it ends at 4 GiB.
    pub code: PathBuf,
    /// UEFI variable store (libvirt `<nvram>`), the per-domain file the flash writes
    /// through to; mapped right below `code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vars: Option<PathBuf>,
    /// Copied to `vars` when that file does not exist yet (libvirt `<nvram template>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vars_template: Option<PathBuf>,
    /// Interactive boot menu (libvirt `<bootmenu enable='yes' timeout>`): the wait in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_menu_timeout_ms: Option<u32>,
    /// Retry booting after this many ms when nothing booted (libvirt `<bios
    /// rebootTimeout>`); -1: never retry. Absent: the firmware's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_timeout_ms: Option<i32>,
    /// Mirror the firmware's text console to COM1 (libvirt `<bios useserial>`, and any
    /// domain without a video device).
    #[serde(default)]
    pub serial_console: bool,
    /// SMBIOS type 0/1/2/3 strings (libvirt `<sysinfo type='smbios'>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smbios: Option<Smbios>,
}

/// SMBIOS strings; every field is optional, the VMM fills in defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Smbios {
    /// Type 0 (BIOS): vendor, version, date, release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bios: Vec<(String, String)>,
    /// Type 1 (system): manufacturer, product, version, serial, uuid, sku, family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<(String, String)>,
    /// Type 2 (baseboard).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseboard: Vec<(String, String)>,
    /// Type 3 (chassis).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chassis: Vec<(String, String)>,
}

impl Chipset {
    /// The default, direct-kernel-boot platform.
    pub fn is_generic(&self) -> bool {
        *self == Chipset::Generic
    }
}

/// The chipset the guest sees.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Chipset {
    /// oxvirt's minimal PC for direct kernel boot: a generic PCIe host bridge
    /// (1b36:0008), ECAM at 0xE000_0000, ACPI tables placed in RAM by the VMM.
    #[default]
    Generic,
    /// Q35: MCH 8086:29c0 and ICH9 LPC 8086:2918, ECAM at 0xB000_0000 (PCIEXBAR);
    /// what firmware expects (libvirt `machine='q35'`).
    Q35,
    /// i440FX + PIIX3/PIIX4 (libvirt `machine='pc'`, `pc-i440fx-*`).
    I440fx,
}

/// Platform features (libvirt `<features>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// Provide ACPI tables (power button, S5). Without it the guest gets no ACPI.
    pub acpi: bool,
    /// Provide an IO-APIC/local APIC description (MADT).
    pub apic: bool,
    /// The chipset; firmware boot needs Q35 or i440FX.
    #[serde(default, skip_serializing_if = "Chipset::is_generic")]
    pub chipset: Chipset,
    /// ACPI PCI hot-plug of the root bus's slots, as QEMU's PIIX4 PM does it (libvirt
    /// `pc`/`pc-i440fx-*` machines, with ACPI): the hot-plug registers at I/O 0xae00,
    /// a GPE0 block at 0xafe0 and the DSDT's slot devices. Q35 uses PCIe native
    /// hot-plug on its root ports instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub acpi_pci_hotplug: bool,
    /// What the CMOS real-time clock reads at start (libvirt `<clock offset>`).
    #[serde(default, skip_serializing_if = "Rtc::is_utc")]
    pub rtc: Rtc,
    /// Hyper-V enlightenments (`hyperv.rs`); absent: none, and no Hyper-V CPUID leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyperv: Option<HyperV>,
}

/// The CMOS real-time clock's start: `base` plus `adjustment_s` seconds, taken when the
/// machine starts; it ticks with the host from there (as QEMU's `-rtc base=`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rtc {
    pub base: RtcBase,
    /// libvirt `<clock offset='variable' adjustment>`.
    #[serde(default)]
    pub adjustment_s: i64,
}

impl Rtc {
    /// UTC with no adjustment, libvirt's default.
    pub fn is_utc(&self) -> bool {
        *self == Rtc::default()
    }
}

/// Which wall clock the RTC starts from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RtcBase {
    /// The host's UTC (libvirt `offset='utc'`).
    #[default]
    Utc,
    /// The host's local time (libvirt `offset='localtime'`, what Windows expects).
    Localtime,
    /// The time in an IANA time zone (libvirt `offset='timezone' timezone='Europe/Paris'`).
    Timezone(String),
}

/// Lifecycle actions (libvirt `on_poweroff`, `on_reboot`, `on_crash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    pub on_poweroff: LifecycleAction,
    pub on_reboot: LifecycleAction,
    pub on_crash: LifecycleAction,
}

/// libvirt lifecycle actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LifecycleAction {
    /// End the VMM process.
    Destroy,
    /// Reset the machine in-process and run again.
    Restart,
    /// Keep the process with the vCPUs stopped (for inspection).
    Preserve,
    /// libvirt's rename-restart; the VMM treats it as destroy, the daemon renames.
    RenameRestart,
    /// libvirt's coredump-destroy; the VMM treats it as destroy.
    CoredumpDestroy,
    /// libvirt's coredump-restart; the VMM treats it as restart.
    CoredumpRestart,
}

/// A PCI address on the root bus (libvirt `<address type='pci'>`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
}

/// One device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// Stable id: the libvirt alias (`virtio-disk0`, `net0`, `serial0`, …).
    pub id: String,
    /// PCI placement for PCI devices; `None` for platform devices (serial ports).
    #[serde(default)]
    pub pci: Option<PciAddress>,
    /// Firmware boot priority, lowest first (QEMU `bootindex`, libvirt `<boot
    /// order>`); devices without one are tried after those with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_index: Option<u32>,
    pub kind: DeviceKind,
}

/// The device and its backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum DeviceKind {
    /// 16550 UART at the legacy ISA ports of COM1..COM4.
    Serial(Serial),
    /// virtio-blk.
    Disk(Disk),
    /// virtio-net.
    Net(Net),
    /// virtio-rng.
    Rng(Rng),
    /// virtio-console port (console or channel).
    Console(Console),
    /// virtio-balloon.
    Balloon(Balloon),
    /// virtio-vsock.
    Vsock(Vsock),
    /// pvpanic ISA device (libvirt `<panic model='isa'>`).
    Pvpanic,
    /// A bridge that provides a bus (libvirt `<controller type='pci'>` with model
    /// `pcie-root-port` or `pci-bridge`); devices behind it have `pci.bus = index`.
    PciController(PciController),
    /// An AHCI (SATA) host adapter (libvirt `<controller type='sata'>`); its drives
    /// are the [`DeviceKind::AtaDisk`]s on `bus_type: sata` that name its index.
    SataController(AtaController),
    /// An IDE controller (libvirt `<controller type='ide'>`, PIIX3's IDE function).
    IdeController(AtaController),
    /// A disk or CD-ROM on an ATA controller (libvirt `<disk bus='sata'|'ide'>`);
    /// not a PCI device (`pci` is `None`).
    AtaDisk(AtaDisk),
    /// A virtio-scsi host adapter (libvirt `<controller type='scsi'
    /// model='virtio-scsi'>`); its units are the [`DeviceKind::ScsiDisk`]s that
    /// name its index.
    ScsiController(ScsiController),
    /// A disk or CD-ROM on a SCSI controller (libvirt `<disk bus='scsi'>`); not a
    /// PCI device (`pci` is `None`).
    ScsiDisk(ScsiDisk),
    /// A display adapter (libvirt `<video>`); the first one is the primary display.
    Video(Video),
    /// A virtio-input device (libvirt `<input bus='virtio'>`, and `bus='usb'`
    /// tablets, which the VMM serves with a virtio tablet). The PS/2 keyboard and
    /// mouse are part of the platform and are not listed.
    Input(Input),
    /// A TPM 2.0 (libvirt `<tpm>`), a platform MMIO device (`pci` is `None`); at
    /// most one.
    Tpm(Tpm),
}

/// A display adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Video {
    pub model: VideoModel,
    /// Framebuffer size in bytes (BAR0): a power of two, 4-256 MiB.
    pub vram_bytes: u64,
    /// The mode the device offers the guest first (EDID preferred mode), if set
    /// (libvirt `<resolution x y>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    /// The libvirt model the user asked for when the VMM runs another one in its
    /// place (`qxl` runs as `vga`); the daemon shows `model` in the live XML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_model: Option<String>,
}

/// Which display adapter (QEMU device names in the comments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum VideoModel {
    /// `VGA`: PCI 1234:1111 with the legacy VGA registers, the 0xA0000 window and
    /// its option ROM (libvirt `vga`).
    Vga,
    /// `bochs-display`: PCI 1234:1111, framebuffer and DISPI registers only
    /// (libvirt `bochs`).
    Bochs,
    /// `virtio-vga`: virtio-gpu 2D (PCI 1af4:1050, class VGA) with the `VGA`
    /// compatibility parts (libvirt `virtio` as the primary adapter).
    VirtioVga,
    /// `virtio-gpu-pci`: virtio-gpu 2D alone (class display-other, no VGA; libvirt
    /// `virtio` with `primary='no'`).
    VirtioGpu,
}

/// A screen size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    pub width: u32,
    pub height: u32,
}

/// A virtio input device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub kind: InputKind,
    /// The bus libvirt's XML named (`virtio` or `usb`); the device is virtio either way.
    pub requested_bus: String,
}

/// What a virtio input device reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    /// Keys (virtio-keyboard).
    Keyboard,
    /// Absolute pointer with buttons and wheel (virtio-tablet).
    Tablet,
    /// Relative pointer with buttons and wheel (virtio-mouse).
    Mouse,
}

/// A virtio-scsi host adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScsiController {
    /// libvirt's controller index, which disks name in `<address controller>`.
    pub index: u32,
}

/// A logical unit on a SCSI controller: libvirt `<address type='drive'
/// controller bus='0' target unit>` is (controller, target, lun).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScsiDisk {
    /// Index of the [`ScsiController`].
    pub controller: u32,
    /// SCSI target id (0-255).
    pub target: u8,
    /// Logical unit number (libvirt `unit`).
    pub lun: u16,
    /// A CD-ROM (read-only, removable, 2048-byte blocks) rather than a disk.
    pub cdrom: bool,
    /// The libvirt target name (`sda`), reported by `query-block`.
    pub name: String,
    /// The image; `None` is a CD-ROM with an empty tray. Its `target` is `name`.
    #[serde(default)]
    pub medium: Option<Disk>,
    /// A CD-ROM whose tray starts open (libvirt `<target tray='open'>`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tray_open: bool,
    /// INQUIRY vendor (≤ 8 ASCII characters; `QEMU` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// INQUIRY product (≤ 16 ASCII characters; `QEMU HARDDISK`/`QEMU CD-ROM` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// World wide name (NAA identifier in VPD page 0x83), 64 bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<u64>,
}

/// A PCI controller that provides a bus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PciController {
    pub model: PciControllerModel,
    /// libvirt's controller index: the bus number devices behind it name.
    pub index: u8,
    /// libvirt `<target chassis>` (a root port's physical slot number).
    #[serde(default)]
    pub chassis: u8,
    /// libvirt `<target port>` (a root port's port number).
    #[serde(default)]
    pub port: u8,
}

/// Bridge models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PciControllerModel {
    /// PCIe root port (one device behind it), QEMU's pcie-root-port.
    PcieRootPort,
    /// PCI-to-PCI bridge (32 slots behind it), QEMU's pci-bridge.
    PciBridge,
}

/// A 16550 UART.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Serial {
    /// COM port index: 0 → ttyS0 at 0x3f8 / IRQ 4, 1 → ttyS1 at 0x2f8 / IRQ 3, …
    pub port: u8,
    pub backend: CharBackend,
}

/// Where a character device's bytes go (libvirt `<serial type=…>` and friends).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum CharBackend {
    /// The VMM's own stdin/stdout.
    Stdio,
    /// Output appended to (or truncating) a file; input is discarded.
    File {
        path: PathBuf,
        #[serde(default)]
        append: bool,
    },
    /// A new pseudo-terminal; the VMM reports its path (QMP `query-chardev`, log).
    Pty,
    /// A unix stream socket; `listen` = the VMM creates it and accepts a client.
    Unix { path: PathBuf, listen: bool },
    /// A TCP socket.
    Tcp {
        host: String,
        port: u16,
        listen: bool,
    },
    /// Output discarded, no input.
    Null,
}

/// Disk image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

/// Host cache modes (libvirt `<driver cache=…>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    Default,
    None,
    Writethrough,
    Writeback,
    Directsync,
    Unsafe,
}

/// A disk image as a device uses it (virtio-blk, or a SCSI unit's medium).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// Image file or block device.
    pub path: PathBuf,
    pub format: DiskFormat,
    /// The libvirt target name (`vda`), reported by `query-block`.
    pub target: String,
    pub readonly: bool,
    /// Lifts the image lock that keeps two VMs from opening one writable image.
    pub shareable: bool,
    /// virtio-blk device ID (libvirt `<serial>`), at most 20 bytes.
    #[serde(default)]
    pub serial: Option<String>,
    pub cache: CacheMode,
    /// Pass guest discards to the image (libvirt `discard='unmap'`).
    pub discard: bool,
    /// virtio-blk request queues (libvirt `<driver queues>`); None: one per vCPU,
    /// as QEMU >= 5.2 does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<u16>,
    /// How requests reach the image (libvirt `<driver io>`).
    #[serde(default, skip_serializing_if = "DiskIo::is_default")]
    pub io: DiskIo,
}

/// Host I/O submission (libvirt `<driver io=…>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiskIo {
    /// io_uring where the host has it, else a thread pool.
    #[default]
    Default,
    /// Linux native AIO in QEMU; io_uring here (the kernel's successor to it).
    Native,
    /// A pool of threads doing blocking preadv/pwritev.
    Threads,
    IoUring,
}

impl DiskIo {
    /// Whether this is the default (left out of serialized specs).
    pub fn is_default(&self) -> bool {
        *self == DiskIo::Default
    }
}

/// A network interface: virtio-net, or an emulated Intel NIC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Net {
    /// `52:54:00:xx:xx:xx` form.
    pub mac: String,
    pub backend: NetBackend,
    /// Link state at start (libvirt `<link state>`).
    pub link_up: bool,
    #[serde(default)]
    pub mtu: Option<u16>,
    /// The device the guest sees (libvirt `<model type>`).
    #[serde(default, skip_serializing_if = "NetModel::is_virtio")]
    pub model: NetModel,
    /// Receive/transmit queue pairs (libvirt `<driver queues='N'>`, virtio and a tap
    /// backend only): the tap is opened multiqueue, one queue and one VMM worker
    /// per pair. `None`: one pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<u16>,
    /// The backend's tap, already open in the VMM as these descriptors, one per
    /// queue pair (inherited from the daemon, which created it with a vnet header,
    /// put it on its bridge and brought it up, as libvirt hands QEMU `-netdev
    /// tap,fds=N:M`): the VMM uses them as they are and needs no privilege for them.
    /// Empty: the VMM opens the backend's tap by name itself (`oxvirt-vmm` run by hand).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tap_fds: Vec<i32>,
    /// vhost-net instances already open in the VMM as these descriptors, one per
    /// queue pair (the daemon opens `/dev/vhost-net`, root's, as libvirt hands QEMU
    /// `vhostfds=N:M`). Empty: the VMM opens them itself where `driver` asks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vhost_fds: Vec<i32>,
    /// Who moves a tap-backed virtio NIC's frames (libvirt `<driver name>`).
    #[serde(default, skip_serializing_if = "NetDriver::is_default")]
    pub driver: NetDriver,
}

/// Who moves a virtio NIC's frames between its queues and its tap (libvirt
/// `<driver name>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NetDriver {
    /// The host kernel's vhost-net where `/dev/vhost-net` opens, else the VMM (what
    /// libvirt does with QEMU when `<driver name>` is left out).
    #[default]
    Default,
    /// vhost-net, or the NIC does not start (`name='vhost'`).
    Vhost,
    /// The VMM's own userspace device (`name='qemu'`).
    Qemu,
}

impl NetDriver {
    /// Whether this is the default (left out of serialized specs).
    pub fn is_default(&self) -> bool {
        *self == NetDriver::Default
    }
}

impl Net {
    /// How many receive/transmit queue pairs the NIC has.
    pub fn queue_pairs(&self) -> u16 {
        self.queues.unwrap_or(1).max(1)
    }
}

/// NIC models (libvirt `<model type>`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NetModel {
    /// virtio-net-pci.
    #[default]
    Virtio,
    /// Intel 82540EM (QEMU `e1000`).
    E1000,
    /// Intel 82574L (QEMU `e1000e`), what virt-install gives Windows on q35.
    E1000e,
}

impl NetModel {
    /// Whether this is the default model (left out of serialized specs).
    pub fn is_virtio(&self) -> bool {
        *self == NetModel::Virtio
    }
}

/// virtio-net host side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum NetBackend {
    /// A tap device: an existing one by name, or created (`name: None` → kernel picks).
    Tap { name: Option<String> },
    /// A tap created and attached to the named bridge.
    Bridge {
        bridge: String,
        #[serde(default)]
        tap: Option<String>,
    },
    /// User-mode networking through passt (libvirt `<interface type='user'>`, what
    /// session-mode domains have): the VMM starts `passt` on a socket pair and speaks
    /// its stream framing; no root, no tap. The options set the guest's addresses
    /// and forwarded host ports.
    User(UserNet),
}

impl NetBackend {
    /// A tap backend's tap name (`None`: the kernel picks) and bridge; `None` for
    /// passt.
    pub fn tap(&self) -> Option<(Option<&str>, Option<&str>)> {
        match self {
            NetBackend::Tap { name } => Some((name.as_deref(), None)),
            NetBackend::Bridge { bridge, tap } => Some((tap.as_deref(), Some(bridge))),
            NetBackend::User(_) => None,
        }
    }
}

/// virtio-rng.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rng {
    /// Host entropy source, `/dev/urandom` by default.
    pub source: PathBuf,
}

/// A virtio-console port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Console {
    pub backend: CharBackend,
    /// Port name for `<channel>` (`org.qemu.guest_agent.0`); `None` for a console.
    #[serde(default)]
    pub name: Option<String>,
}

/// virtio-balloon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Balloon {
    /// Guest memory stats polling period in seconds (libvirt `<stats period>`), 0 = off.
    pub stats_period: u32,
    pub deflate_on_oom: bool,
}

/// virtio-vsock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vsock {
    pub guest_cid: u32,
    /// Host side: a unix socket (Firecracker-style); connections to port P use `PATH_P`.
    pub uds_path: PathBuf,
}

impl MachineSpec {
    /// Parses a spec from JSON, rejecting unknown fields and other versions.
    pub fn from_json(text: &str) -> Result<Self, SpecError> {
        let spec: MachineSpec = serde_json::from_str(text).map_err(SpecError::Json)?;
        if spec.version != SPEC_VERSION {
            return Err(SpecError::Version(spec.version));
        }
        spec.check()?;
        Ok(spec)
    }

    /// Pretty JSON, as written to `spec.json`.
    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).expect("MachineSpec serialises")
    }

    /// Internal consistency: what a hand-written spec could get wrong.
    pub fn check(&self) -> Result<(), SpecError> {
        let c = &self.cpus;
        let t = c.topology;
        if c.count == 0 {
            return Err(SpecError::Invalid("cpus.count must be at least 1".into()));
        }
        if c.count > c.max {
            return Err(SpecError::Invalid(format!(
                "cpus.count {} exceeds cpus.max {}",
                c.count, c.max
            )));
        }
        let product =
            u64::from(t.sockets) * u64::from(t.dies) * u64::from(t.cores) * u64::from(t.threads);
        if product != u64::from(c.max) {
            return Err(SpecError::Invalid(format!(
                "topology {}x{}x{}x{} does not match cpus.max {}",
                t.sockets, t.dies, t.cores, t.threads, c.max
            )));
        }
        let mut fds: Vec<i32> = self.files.iter().map(|f| f.fd).collect();
        fds.extend(self.devices.iter().flat_map(|d| match &d.kind {
            DeviceKind::Net(n) => [n.tap_fds.as_slice(), n.vhost_fds.as_slice()].concat(),
            _ => Vec::new(),
        }));
        fds.sort_unstable();
        if let Some(w) = fds.windows(2).find(|w| w[0] == w[1]) {
            return Err(SpecError::Invalid(format!(
                "descriptor {} is handed over twice (files, tap_fds, vhost_fds)",
                w[0]
            )));
        }
        if let Some(f) = self
            .files
            .iter()
            .find(|f| f.fd < 3 || !f.path.is_absolute())
        {
            return Err(SpecError::Invalid(format!(
                "files: '{}' as descriptor {}: the path must be absolute and the \
                 descriptor 3 or above",
                f.path.display(),
                f.fd
            )));
        }
        if self.memory.size_bytes < 1 << 20 {
            return Err(SpecError::Invalid(
                "memory.size_bytes must be at least 1 MiB".into(),
            ));
        }
        match (&self.boot.kernel, &self.boot.firmware) {
            (Some(_), Some(_)) => {
                return Err(SpecError::Invalid(
                    "boot: give either a kernel or firmware, not both".into(),
                ))
            }
            (None, None) => {
                return Err(SpecError::Invalid(
                    "boot: neither a kernel nor firmware to boot".into(),
                ))
            }
            (None, Some(_)) if self.platform.chipset == Chipset::Generic => {
                return Err(SpecError::Invalid(
                    "boot: firmware needs the q35 or i440fx chipset".into(),
                ))
            }
            _ => {}
        }
        let mut ids = std::collections::HashSet::new();
        let mut slots = std::collections::HashSet::new();
        let mut units = std::collections::HashSet::new();
        let mut ata_units = std::collections::HashSet::new();
        let mut tpms = 0;
        for d in &self.devices {
            if !ids.insert(d.id.as_str()) {
                return Err(SpecError::Invalid(format!(
                    "duplicate device id '{}'",
                    d.id
                )));
            }
            if let DeviceKind::ScsiDisk(u) = &d.kind {
                self.check_scsi_unit(&d.id, u, d.pci.is_some())?;
                if !units.insert((u.controller, u.target, u.lun)) {
                    return Err(SpecError::Invalid(format!(
                        "device '{}': SCSI unit {}:0:{}:{} already in use",
                        d.id, u.controller, u.target, u.lun
                    )));
                }
            }
            if let DeviceKind::AtaDisk(u) = &d.kind {
                self.check_ata_unit(&d.id, u, d.pci.is_some())?;
                if !ata_units.insert((u.bus_type, u.controller, u.bus, u.unit)) {
                    return Err(SpecError::Invalid(format!(
                        "device '{}': ATA drive {}:{}:{} already in use",
                        d.id, u.controller, u.bus, u.unit
                    )));
                }
            }
            if matches!(d.kind, DeviceKind::Tpm(_)) {
                tpms += 1;
                if tpms > 1 || d.pci.is_some() {
                    return Err(SpecError::Invalid(format!(
                        "device '{}': one TPM at most, and not on PCI",
                        d.id
                    )));
                }
            }
            if let Some(a) = d.pci {
                if !slots.insert(a) {
                    return Err(SpecError::Invalid(format!(
                        "device '{}': PCI address {:04x}:{:02x}:{:02x}.{} already in use",
                        d.id, a.domain, a.bus, a.slot, a.function
                    )));
                }
            }
        }
        Ok(())
    }

    /// A SCSI unit names an existing controller, is not on PCI, and has a
    /// medium unless it is a CD-ROM.
    fn check_scsi_unit(&self, id: &str, u: &ScsiDisk, on_pci: bool) -> Result<(), SpecError> {
        let invalid = |what: String| Err(SpecError::Invalid(format!("device '{id}': {what}")));
        if on_pci {
            return invalid("a SCSI unit has no PCI address".into());
        }
        let controller = self
            .devices
            .iter()
            .any(|c| matches!(&c.kind, DeviceKind::ScsiController(s) if s.index == u.controller));
        if !controller {
            return invalid(format!("no SCSI controller with index {}", u.controller));
        }
        if u.medium.is_none() && !u.cdrom {
            return invalid("a SCSI disk needs a medium (only CD-ROMs may be empty)".into());
        }
        Ok(())
    }

    /// An ATA drive names an existing controller of its kind, sits at an address
    /// that controller has, is not on PCI, and has a medium unless it is a CD-ROM.
    fn check_ata_unit(&self, id: &str, u: &AtaDisk, on_pci: bool) -> Result<(), SpecError> {
        let invalid = |what: String| Err(SpecError::Invalid(format!("device '{id}': {what}")));
        if on_pci {
            return invalid("an ATA drive has no PCI address".into());
        }
        let controller = self.devices.iter().any(|c| match (&c.kind, u.bus_type) {
            (DeviceKind::SataController(s), AtaBus::Sata)
            | (DeviceKind::IdeController(s), AtaBus::Ide) => s.index == u.controller,
            _ => false,
        });
        let kind = match u.bus_type {
            AtaBus::Sata => "SATA",
            AtaBus::Ide => "IDE",
        };
        if !controller {
            return invalid(format!("no {kind} controller with index {}", u.controller));
        }
        let fits = match u.bus_type {
            AtaBus::Sata => u.bus < AHCI_PORTS && u.unit == 0,
            AtaBus::Ide => u.bus < 2 && u.unit < 2,
        };
        if !fits {
            return invalid(format!(
                "{kind} drive address bus {} unit {} does not exist ({})",
                u.bus,
                u.unit,
                match u.bus_type {
                    AtaBus::Sata => "ports 0-5, unit 0",
                    AtaBus::Ide => "buses 0-1, units 0-1",
                }
            ));
        }
        if u.medium.is_none() && !u.cdrom {
            return invalid("an ATA disk needs a medium (only CD-ROMs may be empty)".into());
        }
        Ok(())
    }

    /// The JSON Schema of the spec, as stored in `schemas/machine-spec.schema.json`.
    pub fn json_schema() -> String {
        let schema = schemars::schema_for!(MachineSpec);
        let mut text = serde_json::to_string_pretty(&schema).expect("schema serialises");
        text.push('\n');
        text
    }
}

/// Why a spec was refused.
#[derive(Debug)]
pub enum SpecError {
    Json(serde_json::Error),
    Version(u32),
    Invalid(String),
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpecError::Json(e) => write!(f, "machine spec: {e}"),
            SpecError::Version(v) => write!(
                f,
                "machine spec: version {v} is not supported (this build reads version {SPEC_VERSION})"
            ),
            SpecError::Invalid(m) => write!(f, "machine spec: {m}"),
        }
    }
}

impl std::error::Error for SpecError {}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> MachineSpec {
        MachineSpec {
            version: SPEC_VERSION,
            name: "demo".into(),
            uuid: "c7a5fdbd-cdaf-9455-926a-d65c16db1809".into(),
            memory: Memory {
                size_bytes: 128 << 20,
                shared: false,
                hugepages: false,
            },
            cpus: Cpus {
                count: 2,
                max: 2,
                topology: Topology {
                    sockets: 1,
                    dies: 1,
                    cores: 2,
                    threads: 1,
                },
                mode: CpuMode::HostPassthrough,
                features: vec![CpuFeature {
                    name: "x2apic".into(),
                    policy: FeaturePolicy::Disable,
                }],
                model: None,
            },
            boot: Boot {
                kernel: Some("/boot/vmlinux".into()),
                initrd: None,
                cmdline: "console=ttyS0".into(),
                firmware: None,
            },
            platform: Platform {
                acpi: true,
                apic: true,
                chipset: Chipset::Generic,
                acpi_pci_hotplug: false,
                rtc: Default::default(),
                hyperv: None,
            },
            lifecycle: Lifecycle {
                on_poweroff: LifecycleAction::Destroy,
                on_reboot: LifecycleAction::Restart,
                on_crash: LifecycleAction::Destroy,
            },
            devices: vec![
                Device {
                    id: "serial0".into(),
                    pci: None,
                    boot_index: None,
                    kind: DeviceKind::Serial(Serial {
                        port: 0,
                        backend: CharBackend::Pty,
                    }),
                },
                Device {
                    id: "virtio-disk0".into(),
                    pci: Some(PciAddress {
                        domain: 0,
                        bus: 0,
                        slot: 4,
                        function: 0,
                    }),
                    boot_index: Some(1),
                    kind: DeviceKind::Disk(Disk {
                        path: "/var/lib/images/a.qcow2".into(),
                        format: DiskFormat::Qcow2,
                        target: "vda".into(),
                        readonly: false,
                        shareable: false,
                        serial: Some("disk-a".into()),
                        cache: CacheMode::None,
                        discard: true,
                        queues: None,
                        io: Default::default(),
                    }),
                },
            ],
            graphics: None,
            warnings: Vec::new(),
            files: Vec::new(),
            run_as: None,
            incoming: None,
        }
    }

    #[test]
    fn json_round_trip() {
        let s = sample();
        assert_eq!(MachineSpec::from_json(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn rejects_bad_topology_and_duplicates() {
        let mut s = sample();
        s.cpus.max = 3;
        assert!(s.check().unwrap_err().to_string().contains("topology"));
        let mut s = sample();
        s.devices.push(s.devices[1].clone());
        assert!(s
            .check()
            .unwrap_err()
            .to_string()
            .contains("duplicate device id"));
    }

    #[test]
    fn scsi_units_need_their_controller_and_a_free_address() {
        let unit = |id: &str, cdrom: bool, medium: bool| Device {
            id: id.into(),
            pci: None,
            boot_index: None,
            kind: DeviceKind::ScsiDisk(ScsiDisk {
                controller: 0,
                target: 0,
                lun: 0,
                cdrom,
                name: "sda".into(),
                vendor: None,
                product: None,
                wwn: None,
                tray_open: false,
                medium: medium.then(|| match &sample().devices[1].kind {
                    DeviceKind::Disk(d) => d.clone(),
                    _ => unreachable!(),
                }),
            }),
        };
        let mut s = sample();
        s.devices.push(unit("scsi0-0-0-0", true, false));
        let e = s.check().unwrap_err().to_string();
        assert!(e.contains("no SCSI controller with index 0"), "{e}");
        s.devices.push(Device {
            id: "scsi0".into(),
            pci: None,
            boot_index: None,
            kind: DeviceKind::ScsiController(ScsiController { index: 0 }),
        });
        s.check().unwrap();
        assert_eq!(MachineSpec::from_json(&s.to_json()).unwrap(), s);
        s.devices.push(unit("scsi0-0-0-1", false, true));
        let e = s.check().unwrap_err().to_string();
        assert!(e.contains("SCSI unit 0:0:0:0 already in use"), "{e}");
        s.devices.pop();
        s.devices.push(unit("scsi0-0-0-1", false, false));
        let e = s.check().unwrap_err().to_string();
        assert!(e.contains("needs a medium"), "{e}");
    }

    #[test]
    fn one_tpm_off_pci() {
        let tpm = |id: &str| Device {
            id: id.into(),
            pci: None,
            boot_index: None,
            kind: DeviceKind::Tpm(Tpm {
                model: TpmModel::Crb,
                state_dir: "/var/lib/oxvirt/swtpm/u".into(),
                log: None,
            }),
        };
        let mut s = sample();
        s.devices.push(tpm("tpm0"));
        s.check().unwrap();
        assert_eq!(MachineSpec::from_json(&s.to_json()).unwrap(), s);
        s.devices.push(tpm("tpm1"));
        let e = s.check().unwrap_err().to_string();
        assert!(e.contains("device 'tpm1': one TPM at most"), "{e}");
    }

    #[test]
    fn rejects_unknown_fields_and_versions() {
        let s = sample()
            .to_json()
            .replacen("\"name\"", "\"bogus\": 1, \"name\"", 1);
        assert!(MachineSpec::from_json(&s).is_err());
        let s = sample()
            .to_json()
            .replacen("\"version\": 1", "\"version\": 99", 1);
        assert!(MachineSpec::from_json(&s)
            .unwrap_err()
            .to_string()
            .contains("version 99"));
    }

    /// The checked-in schema must match the types; regenerate with
    /// `OXVIRT_BLESS=1 cargo test -p machine-spec`.
    #[test]
    fn schema_file_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../schemas/machine-spec.schema.json"
        );
        let want = MachineSpec::json_schema();
        if std::env::var_os("OXVIRT_BLESS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "schemas/machine-spec.schema.json is stale: run OXVIRT_BLESS=1 cargo test -p machine-spec"
        );
    }
}

/// `oxvirt-vmm` exit statuses: the contract that lets the daemon tell a guest
/// power-off from a crash without parsing logs. `oxvirt-vmm --help` lists them.
pub mod exit {
    /// The guest powered off (ACPI S5) and `on_poweroff` ended the process.
    pub const POWEROFF: i32 = 0;
    /// The VMM could not start or failed: bad spec, host problem (no /dev/kvm, …).
    pub const VMM_ERROR: i32 = 1;
    /// Command-line usage error.
    pub const USAGE: i32 = 2;
    /// The guest reset itself and `on_reboot` says destroy.
    pub const REBOOT: i32 = 3;
    /// The guest crashed: triple fault, KVM internal/emulation error, guest panic.
    pub const CRASH: i32 = 4;
    /// Stopped from the host: SIGTERM/SIGINT or QMP `quit`.
    pub const HOST_STOP: i32 = 5;
}
