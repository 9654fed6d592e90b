//! What a machine tells its firmware through fw_cfg, built once per machine (a
//! reset builds it again with the new machine).
//!
//! Every platform has the device, as every QEMU x86 machine has it: the signature
//! and id, the CPU counts, the RAM size and `etc/e820` (the generic platform's
//! map is the one the kernel gets; firmware platforms get QEMU's: RAM plus KVM's
//! reserved pages, the firmware reserves the rest itself). Firmware platforms also
//! get the ACPI tables through the table loader (`crate::acpi::loader`); that is
//! the only part that takes measurable time, so direct kernel boot skips it.

use machine_spec::MachineSpec;
use vm_memory::GuestMemoryMmap;

use super::{has_pvpanic, lap, VmError, Vmm};
use crate::acpi::{self, AcpiConfig};
use crate::arch::x86_64::cpuid;
use crate::devices::fw_cfg::{self, keys, FwCfg};

/// The e820 map file.
pub const E820_FILE: &str = "etc/e820";

impl Vmm {
    /// The machine as its ACPI tables describe it (direct placement and table
    /// loader alike).
    pub(super) fn acpi_config(&self) -> AcpiConfig<'_> {
        let topo = self.spec.cpus.topology;
        AcpiConfig {
            apic_ids: (0..self.spec.cpus.count)
                .map(|i| cpuid::position(&topo, i).apic_id)
                .collect(),
            serial_ports: self.serial_slots.iter().map(|s| s.port).collect(),
            pvpanic: has_pvpanic(&self.spec),
            tpm: crate::tpm::in_spec(&self.spec),
            ram: &self.ram,
            platform: self.platform,
            pci_hotplug_slots: self
                .spec
                .platform
                .acpi_pci_hotplug
                .then(|| crate::pci::acpi_hotplug::slots_of(&self.spec)),
        }
    }
}

/// The fw_cfg device for `spec`, its DMA going to `mem`; `acpi` describes the
/// machine (its RAM layout and platform included).
pub(super) fn build(
    mem: &GuestMemoryMmap,
    spec: &MachineSpec,
    acpi: &AcpiConfig<'_>,
) -> Result<FwCfg, VmError> {
    let mut f = FwCfg::new(mem.clone());
    let cpus = spec.cpus.count;
    // QEMU's max_cpus is its apic_id_limit: the highest APIC id + 1.
    let apic_limit = acpi.apic_ids.iter().max().map_or(0, |&id| id + 1).max(cpus);
    let as_u16 = |n: u32| u16::try_from(n).unwrap_or(u16::MAX);
    f.set_u16(keys::NB_CPUS, as_u16(cpus))?;
    f.set_u16(keys::MAX_CPUS, as_u16(apic_limit))?;
    f.set_item(
        keys::RAM_SIZE,
        spec.memory.size_bytes.to_le_bytes().to_vec(),
    )?;
    f.set_u16(keys::NOGRAPHIC, 0)?;
    f.set_u16(keys::BOOT_MENU, 0)?;
    // The MADT has no IRQ0 → GSI 2 override, so neither has SeaBIOS's MP table.
    f.set_item(keys::IRQ0_OVERRIDE, 0u32.to_le_bytes().to_vec())?;

    let platform = &acpi.platform;
    let e820 = if platform.firmware() {
        acpi.ram.firmware_e820(platform)
    } else {
        acpi.ram.e820()
    };
    f.add_file(E820_FILE, fw_cfg::e820_bytes(&e820))?;

    if platform.firmware() && spec.platform.acpi {
        for (name, data) in acpi::loader::build(acpi).into_files() {
            f.add_file(name, data)?;
        }
    }
    lap("fw_cfg items built");
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::BusDevice;
    use crate::layout::{PlatformLayout, RamLayout};
    use machine_spec::Chipset;
    use vm_memory::GuestAddress;

    fn spec(chipset: Chipset, acpi: bool) -> MachineSpec {
        use machine_spec::*;
        MachineSpec {
            version: SPEC_VERSION,
            name: "t".into(),
            uuid: "c7a5fdbd-cdaf-9455-926a-d65c16db1809".into(),
            memory: Memory {
                size_bytes: 1 << 30,
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
                features: vec![],
                model: None,
            },
            boot: Boot {
                firmware: None,
                kernel: Some("/k".into()),
                initrd: None,
                cmdline: String::new(),
            },
            platform: Platform {
                chipset,
                acpi_pci_hotplug: false,
                rtc: Default::default(),
                acpi,
                apic: true,
                hyperv: None,
            },
            lifecycle: Lifecycle {
                on_poweroff: LifecycleAction::Destroy,
                on_reboot: LifecycleAction::Restart,
                on_crash: LifecycleAction::Destroy,
            },
            devices: vec![],
            graphics: None,
            warnings: Vec::new(),
            files: Vec::new(),
            run_as: None,
            incoming: None,
        }
    }

    fn device(chipset: Chipset, acpi: bool) -> FwCfg {
        let s = spec(chipset, acpi);
        let platform = PlatformLayout::of(chipset);
        let ram = RamLayout::for_platform(s.memory.size_bytes, &platform);
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let cfg = AcpiConfig {
            apic_ids: vec![0, 1],
            serial_ports: vec![0],
            pvpanic: false,
            tpm: None,
            ram: &ram,
            platform,
            pci_hotplug_slots: None,
        };
        build(&mem, &s, &cfg).unwrap()
    }

    fn names(f: &mut FwCfg) -> Vec<String> {
        let mut count = [0u8; 4];
        f.write(0x510, 0, &keys::FILE_DIR.to_le_bytes());
        f.read(0x510, 1, &mut count);
        (0..u32::from_be_bytes(count))
            .map(|_| {
                let mut e = [0u8; 64];
                f.read(0x510, 1, &mut e);
                let end = e[8..].iter().position(|&c| c == 0).unwrap_or(56);
                String::from_utf8_lossy(&e[8..8 + end]).into_owned()
            })
            .collect()
    }

    #[test]
    fn direct_boot_gets_e820_and_cpu_counts_but_no_acpi_files() {
        let mut f = device(Chipset::Generic, true);
        assert_eq!(names(&mut f), [E820_FILE]);
        let ram = RamLayout::new(1 << 30);
        assert_eq!(f.item(0x20), Some(&fw_cfg::e820_bytes(&ram.e820())[..]));
        assert_eq!(f.item(keys::NB_CPUS), Some(&[2u8, 0][..]));
        assert_eq!(f.item(keys::MAX_CPUS), Some(&[2u8, 0][..]));
        assert_eq!(
            f.item(keys::RAM_SIZE),
            Some(&(1u64 << 30).to_le_bytes()[..])
        );
    }

    #[test]
    fn q35_gets_the_firmware_e820_and_the_acpi_loader_files() {
        let mut f = device(Chipset::Q35, true);
        assert_eq!(
            names(&mut f),
            [
                "etc/acpi/rsdp",
                "etc/acpi/tables",
                E820_FILE,
                "etc/table-loader"
            ]
        );
        let platform = PlatformLayout::of(Chipset::Q35);
        let ram = RamLayout::for_platform(1 << 30, &platform);
        let key = f.file_key(E820_FILE).unwrap();
        assert_eq!(
            f.item(key),
            Some(&fw_cfg::e820_bytes(&ram.firmware_e820(&platform))[..])
        );
    }

    #[test]
    fn firmware_without_acpi_gets_no_tables() {
        let mut f = device(Chipset::I440fx, false);
        assert_eq!(names(&mut f), [E820_FILE]);
    }
}
