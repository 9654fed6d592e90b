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
    /// A CD-ROM whose tray starts open (libvirt `<target tray='open'>`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tray_open: bool,
}

/// Ports of an AHCI controller and (channel, unit) pairs of an IDE one.
pub const AHCI_PORTS: u8 = 6;

#[cfg(test)]
mod tests {
    use crate::MachineSpec;

    /// A spec with `devices` (JSON array items).
    fn spec(devices: &str) -> Result<MachineSpec, String> {
        let json = format!(
            r#"{{"version":1,"name":"t","uuid":"c7a5fdbd-cdaf-9455-926a-d65c16db1809",
              "memory":{{"size_bytes":67108864}},"cpus":{{"count":1,"max":1,
              "topology":{{"sockets":1,"dies":1,"cores":1,"threads":1}},"mode":"host-passthrough"}},
              "boot":{{"kernel":"/k"}},"platform":{{"acpi":true,"apic":true}},
              "lifecycle":{{"on_poweroff":"destroy","on_reboot":"restart","on_crash":"destroy"}},
              "devices":[{devices}]}}"#
        );
        MachineSpec::from_json(&json).map_err(|e| e.to_string())
    }

    const SATA: &str = r#"{"id":"sata0","kind":{"type":"sata-controller","index":0}}"#;
    const IDE: &str = r#"{"id":"ide","kind":{"type":"ide-controller","index":0}}"#;

    fn drive(id: &str, bus_type: &str, bus: u8, unit: u8, cdrom: bool) -> String {
        format!(
            r#"{{"id":"{id}","kind":{{"type":"ata-disk","bus_type":"{bus_type}","controller":0,
              "bus":{bus},"unit":{unit},"cdrom":{cdrom},"name":"x"}}}}"#
        )
    }

    #[test]
    fn drives_need_a_controller_of_their_kind_and_an_address_it_has() {
        let cd = drive("sata0-0-5", "sata", 5, 0, true);
        spec(&format!("{SATA},{cd}")).unwrap();
        let e = spec(&format!("{IDE},{cd}")).unwrap_err();
        assert!(e.contains("no SATA controller with index 0"), "{e}");
        let e = spec(&format!("{SATA},{}", drive("d", "sata", 6, 0, true))).unwrap_err();
        assert!(
            e.contains("bus 6 unit 0 does not exist (ports 0-5, unit 0)"),
            "{e}"
        );
        let e = spec(&format!("{IDE},{}", drive("d", "ide", 1, 2, true))).unwrap_err();
        assert!(
            e.contains("bus 1 unit 2 does not exist (buses 0-1, units 0-1)"),
            "{e}"
        );
        spec(&format!("{IDE},{}", drive("ide0-1-1", "ide", 1, 1, true))).unwrap();
    }

    #[test]
    fn a_disk_needs_a_medium_and_an_address_is_used_once() {
        let e = spec(&format!("{SATA},{}", drive("d", "sata", 0, 0, false))).unwrap_err();
        assert!(e.contains("needs a medium"), "{e}");
        let (a, b) = (
            drive("a", "sata", 2, 0, true),
            drive("b", "sata", 2, 0, true),
        );
        let e = spec(&format!("{SATA},{a},{b}")).unwrap_err();
        assert!(e.contains("ATA drive 0:2:0 already in use"), "{e}");
        // The same numbers on the other bus type are another drive.
        spec(&format!(
            "{SATA},{IDE},{a},{}",
            drive("c", "ide", 1, 0, true)
        ))
        .unwrap();
    }
}
