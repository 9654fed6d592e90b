//! Firmware images: the read-only code mapped so that it ends at 4 GiB, where the
//! vCPU's reset vector (0xFFFF_FFF0) finds it, and the low BIOS alias.
//!
//! A freshly created vCPU is already in the architectural reset state
//! (CS base 0xFFFF_0000, IP 0xFFF0), so firmware boot sets no registers at all.
//! The image is loaded once per process into an anonymous mapping and registered
//! as a read-only memory slot in every machine (each reset builds a new machine),
//! so it stays pristine; guest writes to it exit as MMIO and are dropped, as on
//! a real flash part in read-array mode.
//!
//! SeaBIOS's first far jump goes to F000:E05B, and it keeps its code and data in
//! 0xC0000-0xFFFFF: the tail of the image must also be writable RAM there (QEMU's
//! PAM shadow). We copy the last 256 KiB (all of SeaBIOS) and the host bridge's PAM0
//! says the shadow is on, so SeaBIOS runs from RAM at once instead of copying its
//! 186 KB of code byte by byte (≈ 70 ms on an emulated KVM). RAM is fresh at every
//! machine start, so copying the tail in when the machine is built is the "re-copy
//! on every reset" firmware expects.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, MmapRegion, VolatileMemory};

use crate::layout::{BIOS_LOW_SIZE, BIOS_LOW_START, FIRMWARE_END};

/// Largest image we map: QEMU's flash area below 4 GiB is 16 MiB as well
/// (0xFF00_0000 up, above the KVM TSS pages).
pub const MAX_FIRMWARE_SIZE: u64 = 16 << 20;

/// Errors of loading firmware.
#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error("cannot read firmware image '{0}'")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("firmware image '{0}' has {1} bytes; it must be a non-empty multiple of 4096 of at most 16 MiB")]
    BadSize(PathBuf, u64),
    #[error("cannot map firmware image '{0}'")]
    Map(PathBuf, #[source] vm_memory::mmap::MmapRegionError),
    #[error("cannot copy the BIOS into guest memory")]
    Copy(#[source] vm_memory::GuestMemoryError),
}

/// A read-only image mapped so that it ends at `end`.
#[derive(Debug, Clone)]
pub struct FirmwareRom {
    region: Arc<MmapRegion>,
    /// Guest address of its first byte.
    pub addr: u64,
}

impl FirmwareRom {
    /// Loads `path` to end at 4 GiB.
    pub fn load(path: &Path) -> Result<Self, FirmwareError> {
        Self::load_ending_at(path, FIRMWARE_END)
    }

    /// Loads `path` so that its last byte is at `end - 1` (a second flash unit
    /// sits below the first).
    pub fn load_ending_at(path: &Path, end: u64) -> Result<Self, FirmwareError> {
        let data = crate::files::open(path, crate::files::Access::READ)
            .and_then(|mut f| {
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut data).map(|_| data)
            })
            .map_err(|e| FirmwareError::Read(path.into(), e))?;
        let len = data.len() as u64;
        if len == 0 || !len.is_multiple_of(4096) || len > MAX_FIRMWARE_SIZE {
            return Err(FirmwareError::BadSize(path.into(), len));
        }
        let region = MmapRegion::new(data.len()).map_err(|e| FirmwareError::Map(path.into(), e))?;
        region
            .as_volatile_slice()
            .write_slice(&data, 0)
            .map_err(|e| FirmwareError::Copy(vm_memory::GuestMemoryError::from(e)))?;
        Ok(FirmwareRom {
            region: Arc::new(region),
            addr: end - len,
        })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.region.size() as u64
    }

    /// The mapping, for the memory slot.
    pub fn region(&self) -> &MmapRegion {
        &self.region
    }

    /// Copies the image's last 256 KiB (or all of a smaller image, ending at 1 MiB)
    /// into guest RAM at the legacy BIOS area.
    pub fn copy_low_alias(&self, mem: &GuestMemoryMmap) -> Result<(), FirmwareError> {
        let n = self.size().min(BIOS_LOW_SIZE) as usize;
        let mut tail = vec![0u8; n];
        self.region
            .as_volatile_slice()
            .read_slice(&mut tail, self.region.size() - n)
            .map_err(|e| FirmwareError::Copy(vm_memory::GuestMemoryError::from(e)))?;
        let at = BIOS_LOW_START + BIOS_LOW_SIZE - n as u64;
        mem.write_slice(&tail, GuestAddress(at))
            .map_err(FirmwareError::Copy)
    }
}

/// The fw_cfg `bootorder` file: OpenFirmware device paths of the devices with a boot
/// index, lowest index first, one per line, NUL-terminated (QEMU's format; SeaBIOS
/// and OVMF match the `@slot,function` parts). `placed` is where each device sits:
/// its id and the (slot, function) path from bus 0 (a bridge's, then its own).
pub fn bootorder(spec: &machine_spec::MachineSpec, placed: &[(String, Vec<(u8, u8)>)]) -> Vec<u8> {
    use machine_spec::DeviceKind;
    let mut entries: Vec<(u32, String)> = spec
        .devices
        .iter()
        .filter_map(|d| {
            let index = d.boot_index?;
            // A SCSI unit is reached through its controller's function.
            let function_of = match &d.kind {
                DeviceKind::ScsiDisk(u) => &spec
                    .devices
                    .iter()
                    .find(|c| {
                        matches!(&c.kind, DeviceKind::ScsiController(s) if s.index == u.controller)
                    })?
                    .id,
                // An ATA drive too, through its AHCI or IDE function.
                DeviceKind::AtaDisk(u) => &spec
                    .devices
                    .iter()
                    .find(|c| match (&c.kind, u.bus_type) {
                        (DeviceKind::SataController(s), machine_spec::AtaBus::Sata)
                        | (DeviceKind::IdeController(s), machine_spec::AtaBus::Ide) => {
                            s.index == u.controller
                        }
                        _ => false,
                    })?
                    .id,
                _ => &d.id,
            };
            let (_, path) = placed.iter().find(|(id, _)| id == function_of)?;
            let (&(slot, function), bridges) = path.split_last()?;
            let at = |slot: u8, function: u8| {
                if function == 0 {
                    format!("{slot:x}")
                } else {
                    format!("{slot:x},{function:x}")
                }
            };
            let mut p = String::from("/pci@i0cf8");
            for &(s, f) in bridges {
                p += &format!("/pci-bridge@{}", at(s, f));
            }
            match d.kind {
                DeviceKind::Disk(_) => p += &format!("/scsi@{}/disk@0,0", at(slot, function)),
                DeviceKind::Net(_) => p += &format!("/ethernet@{}", at(slot, function)),
                DeviceKind::ScsiDisk(ref u) => {
                    p += &format!(
                        "/scsi@{}/channel@0/disk@{:x},{:x}",
                        at(slot, function),
                        u.target,
                        u.lun
                    )
                }
                // QEMU's paths: ich9-ahci has no firmware name (vendor,device),
                // piix3-ide is `ide`; SeaBIOS matches the device name with `*`.
                DeviceKind::AtaDisk(ref u) => {
                    let name = match u.bus_type {
                        machine_spec::AtaBus::Sata => "pci8086,2922",
                        machine_spec::AtaBus::Ide => "ide",
                    };
                    p += &format!(
                        "/{name}@{}/drive@{:x}/disk@{:x}",
                        at(slot, function),
                        u.bus,
                        u.unit
                    )
                }
                _ => return None,
            }
            Some((index, p))
        })
        .collect();
    entries.sort();
    let mut out = entries
        .into_iter()
        .map(|(_, p)| p)
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes();
    out.push(0);
    out
}

/// Adds what the domain's `<os>` says about booting to `fw_cfg`: `bootorder`, the
/// boot menu, the retry wait, and the serial console for headless machines (QEMU's
/// `-nographic`: SeaBIOS mirrors its screen to COM1 through `etc/sercon-port`).
pub fn add_boot_items(
    fw_cfg: &mut crate::devices::fw_cfg::FwCfg,
    spec: &machine_spec::MachineSpec,
    placed: &[(String, Vec<(u8, u8)>)],
) -> Result<(), crate::devices::fw_cfg::FwCfgError> {
    use crate::devices::fw_cfg::keys;
    let Some(fw) = &spec.boot.firmware else {
        return Ok(());
    };
    let order = bootorder(spec, placed);
    if order.len() > 1 {
        fw_cfg.add_file("bootorder", order)?;
    }
    if let Some(ms) = fw.boot_menu_timeout_ms {
        fw_cfg.set_u16(keys::BOOT_MENU, 1)?;
        let ms = u16::try_from(ms).unwrap_or(u16::MAX);
        fw_cfg.add_file("etc/boot-menu-wait", ms.to_le_bytes().to_vec())?;
    }
    // QEMU always tells the firmware; -1 (its default) means "do not retry".
    let retry = fw.reboot_timeout_ms.unwrap_or(-1);
    fw_cfg.add_file("etc/boot-fail-wait", retry.to_le_bytes().to_vec())?;
    if fw.serial_console {
        fw_cfg.set_u16(keys::NOGRAPHIC, 1)?;
        let com1 = crate::devices::serial::COM_PORTS[0];
        fw_cfg.add_file("etc/sercon-port", com1.to_le_bytes().to_vec())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::RamLayout;

    #[test]
    fn bootorder_lists_indexed_devices_by_index() {
        let json = r#"{"version":1,"name":"t","uuid":"c7a5fdbd-cdaf-9455-926a-d65c16db1809",
          "memory":{"size_bytes":67108864},"cpus":{"count":1,"max":1,
          "topology":{"sockets":1,"dies":1,"cores":1,"threads":1},"mode":"host-passthrough"},
          "boot":{"firmware":{"kind":"bios","code":"/bios"}},
          "platform":{"acpi":true,"apic":true,"chipset":"q35"},
          "lifecycle":{"on_poweroff":"destroy","on_reboot":"restart","on_crash":"destroy"},
          "devices":[
            {"id":"a","boot_index":2,"kind":{"type":"disk","path":"/a","format":"raw","target":"vda",
              "readonly":false,"shareable":false,"cache":"none","discard":false}},
            {"id":"b","boot_index":1,"kind":{"type":"disk","path":"/b","format":"raw","target":"vdb",
              "readonly":false,"shareable":false,"cache":"none","discard":false}},
            {"id":"c","kind":{"type":"disk","path":"/c","format":"raw","target":"vdc",
              "readonly":false,"shareable":false,"cache":"none","discard":false}}
          ]}"#;
        let spec = machine_spec::MachineSpec::from_json(json).unwrap();
        let placed = vec![
            ("a".to_string(), vec![(2, 1), (0, 0)]),
            ("b".to_string(), vec![(0x1e, 2)]),
            ("c".to_string(), vec![(4, 0)]),
        ];
        assert_eq!(
            bootorder(&spec, &placed),
            b"/pci@i0cf8/scsi@1e,2/disk@0,0\n/pci@i0cf8/pci-bridge@2,1/scsi@0/disk@0,0\0"
        );
    }

    #[test]
    fn bootorder_reaches_ata_drives_through_their_controller() {
        let json = r#"{"version":1,"name":"t","uuid":"c7a5fdbd-cdaf-9455-926a-d65c16db1809",
          "memory":{"size_bytes":67108864},"cpus":{"count":1,"max":1,
          "topology":{"sockets":1,"dies":1,"cores":1,"threads":1},"mode":"host-passthrough"},
          "boot":{"firmware":{"kind":"bios","code":"/bios"}},
          "platform":{"acpi":true,"apic":true,"chipset":"q35"},
          "lifecycle":{"on_poweroff":"destroy","on_reboot":"restart","on_crash":"destroy"},
          "devices":[
            {"id":"ide","kind":{"type":"sata-controller","index":0}},
            {"id":"sata0-0-2","boot_index":1,"kind":{"type":"ata-disk","bus_type":"sata",
              "controller":0,"bus":2,"unit":0,"cdrom":true,"name":"sdc"}}
          ]}"#;
        let spec = machine_spec::MachineSpec::from_json(json).unwrap();
        let placed = vec![("ide".to_string(), vec![(0x1f, 2)])];
        assert_eq!(
            bootorder(&spec, &placed),
            b"/pci@i0cf8/pci8086,2922@1f,2/drive@2/disk@0\0"
        );
    }

    #[test]
    fn bootorder_reaches_scsi_units_through_their_controller() {
        let json = r#"{"version":1,"name":"t","uuid":"c7a5fdbd-cdaf-9455-926a-d65c16db1809",
          "memory":{"size_bytes":67108864},"cpus":{"count":1,"max":1,
          "topology":{"sockets":1,"dies":1,"cores":1,"threads":1},"mode":"host-passthrough"},
          "boot":{"firmware":{"kind":"bios","code":"/bios"}},
          "platform":{"acpi":true,"apic":true,"chipset":"q35"},
          "lifecycle":{"on_poweroff":"destroy","on_reboot":"restart","on_crash":"destroy"},
          "devices":[
            {"id":"scsi0","kind":{"type":"scsi-controller","index":0}},
            {"id":"scsi0-0-0-10","boot_index":1,"kind":{"type":"scsi-disk","controller":0,
              "target":0,"lun":10,"cdrom":true,"name":"sda"}}
          ]}"#;
        let spec = machine_spec::MachineSpec::from_json(json).unwrap();
        let placed = vec![("scsi0".to_string(), vec![(5, 0)])];
        assert_eq!(
            bootorder(&spec, &placed),
            b"/pci@i0cf8/scsi@5/channel@0/disk@0,a\0"
        );
    }

    #[test]
    fn image_ends_at_4g_and_its_tail_lands_below_1m() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bios.bin");
        let mut img = vec![0u8; 256 << 10];
        img[0] = 0x11;
        let n = img.len();
        img[n - (128 << 10)] = 0x22;
        img[n - 16] = 0xea; // the reset vector's far jump
        std::fs::write(&p, &img).unwrap();
        let rom = FirmwareRom::load(&p).unwrap();
        assert_eq!(rom.addr, 0xfffc_0000);
        assert_eq!(rom.size(), 256 << 10);
        let mem = crate::memory::create(&RamLayout::new(2 << 20), Default::default()).unwrap();
        rom.copy_low_alias(&mem).unwrap();
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xc0000)).unwrap(), 0x11);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xe0000)).unwrap(), 0x22);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(0xffff0)).unwrap(), 0xea);
    }

    #[test]
    fn bad_sizes_and_missing_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("odd.bin");
        std::fs::write(&p, [0u8; 100]).unwrap();
        let e = FirmwareRom::load(&p).unwrap_err().to_string();
        assert!(e.contains("odd.bin") && e.contains("100 bytes"), "{e}");
        let e = FirmwareRom::load(&dir.path().join("none.fd"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.fd"), "{e}");
    }
}
