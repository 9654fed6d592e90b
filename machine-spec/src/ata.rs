//! ATA storage: AHCI (SATA) and IDE controllers and the disks and CD-ROMs on them
//! (libvirt `<controller type='sata'|'ide'>`, `<disk bus='sata'|'ide'>`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Disk;

/// An ATA controller: AHCI (ICH9 8086:2922; at 00:1f.2 on Q35) or the PIIX3 IDE
/// function (00:01.1 on i440FX).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AtaController {
    /// libvirt's controller index, which disks name in `<address controller>`.
    pub index: u32,
}

/// Which kind of controller an [`AtaDisk`] sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AtaBus {
    /// An AHCI port ([`crate::DeviceKind::SataController`]).
    Sata,
    /// An IDE channel ([`crate::DeviceKind::IdeController`]).
    Ide,
}

/// A disk or CD-ROM on an ATA controller: libvirt `<address type='drive'
/// controller bus unit>` is (controller, AHCI port or IDE channel, IDE
/// master/slave; 0 on SATA).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AtaDisk {
    pub bus_type: AtaBus,
    /// Index of the controller.
    pub controller: u32,
    /// AHCI port (0-5) or IDE channel (0 primary, 1 secondary).
    pub bus: u8,
    /// IDE master (0) or slave (1); 0 on SATA.
    pub unit: u8,
    /// An ATAPI CD-ROM (read-only, removable, 2048-byte blocks) rather than a disk.
    pub cdrom: bool,
    /// The libvirt target name (`sda`, `hdc`), reported by `query-block`.
    pub name: String,
    /// The image; `None` is a CD-ROM with an empty tray. Its `serial` is the
    /// drive's serial number (20 characters at most).
    #[serde(default)]
    pub medium: Option<Disk>,
    /// World wide name (IDENTIFY words 108-111), 64 bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wwn: Option<u64>,
}

/// Ports of an AHCI controller and (channel, unit) pairs of an IDE one.
pub const AHCI_PORTS: u8 = 6;
