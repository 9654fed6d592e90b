//! Building the ATA controllers of a machine from its spec: one AHCI function
//! per SATA controller with its drives on their ports, and on Q35 the ICH9
//! AHCI at 00:1f.2 even without drives, as QEMU's q35 always has it; the PIIX3
//! IDE function (00:01.1 by default) with its channels at the legacy ports.

use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;
use machine_spec::{AtaBus, CacheMode, Chipset, DeviceKind, DiskFormat, MachineSpec};
use tracing::{info, warn};
use vmm_sys_util::eventfd::EventFd;

use super::ahci::{Ahci, NCQ_DEPTH, PORTS};
use super::bmdma::BAR_SIZE as BMIDE_PORTS;
use super::device::{AtaDevice, DriveConfig};
use super::ide::{IdeChannel, IdePorts, PiixIde, PORTS as IDE_PORTS};
use crate::devices::bus::Bus;
use crate::pci::chipset::ChipsetFunction;
use crate::pci::{IntxPin, PciError, PciRoot};
use crate::scsi::{DeviceConfig, DeviceKind as ScsiKind, ScsiDevice};
use crate::virtio::attach::{AttachError, PciBackends};
use crate::virtio::block::{open_backend, DiskConfig, ImageLock, OpenFlags};
use crate::virtio::kvm::IrqRouting;
use crate::virtio::GuestMem;

/// The Q35 AHCI's place and QEMU's id for it.
const Q35_AHCI: (u8, u8) = (0x1f, 2);
const Q35_AHCI_ID: &str = "ide";

/// What [`add_controllers`] placed.
#[derive(Default)]
pub struct Placed {
    /// (device id, slot, function) of each controller.
    pub functions: Vec<(String, u8, u8)>,
    /// INTx pins and their resample fds.
    pub pins: Vec<(EventFd, Arc<IntxPin>)>,
}

/// An AHCI function that keeps its drives' image locks while it exists.
pub struct LockedAhci {
    pub ahci: Ahci,
    _locks: Vec<ImageLock>,
}

/// Adds the SATA and IDE controllers of `spec` to `root` (bus 0), the IDE
/// channels to the port-I/O bus `pio` with their ISA interrupts.
pub fn add_controllers(
    spec: &MachineSpec,
    backends: &PciBackends,
    mem: &GuestMem,
    root: &mut PciRoot,
    routing: &Arc<IrqRouting>,
    (pio, vm): (&Bus, &VmFd),
) -> Result<Placed, AttachError> {
    let mut placed = add_ide(spec, backends, mem, root, pio, vm)?;
    // (device id, slot and function if the spec gives them, controller index)
    type Wanted = (String, Option<(u8, u8)>, u32);
    let mut controllers: Vec<Wanted> = Vec::new();
    for d in &spec.devices {
        if let DeviceKind::SataController(c) = &d.kind {
            let at = match d.pci {
                Some(a) if a.domain == 0 && a.bus == 0 => Some((a.slot, a.function)),
                Some(a) => {
                    return Err(AttachError::Pci(
                        d.id.clone(),
                        PciError::NotRootBus {
                            domain: a.domain,
                            bus: a.bus,
                            slot: a.slot,
                            function: a.function,
                        },
                    ))
                }
                None => None,
            };
            controllers.push((d.id.clone(), at, c.index));
        }
    }
    if spec.platform.chipset == Chipset::Q35
        && !controllers.iter().any(|(_, at, _)| *at == Some(Q35_AHCI))
        && root.check_free(Q35_AHCI.0, Q35_AHCI.1).is_ok()
    {
        // An index no drive names: the adapter has empty ports.
        controllers.push((Q35_AHCI_ID.into(), Some(Q35_AHCI), u32::MAX));
    }
    for (id, at, index) in controllers {
        let perr = |e| AttachError::Pci(id.clone(), e);
        let (slot, function) = match at {
            Some(a) => a,
            None => (
                root.free_slot().ok_or(perr(PciError::BadSlot {
                    slot: 32,
                    function: 0,
                }))?,
                0,
            ),
        };
        root.check_free(slot, function).map_err(perr)?;
        let (drives, locks) = drives(spec, backends, AtaBus::Sata, index)?;
        let drives: Vec<Option<AtaDevice>> = drives.into_iter().map(|[d, _]| d).collect();
        let mut ahci = Ahci::new(drives, mem.clone(), root).map_err(perr)?;
        match routing.msi_sink(1) {
            Ok(sink) => ahci.attach_msi(sink),
            Err(e) => warn!(id = %id, "AHCI without MSI: {e}"),
        }
        let gsi = crate::acpi::pci_intx_gsi(slot, 0);
        match routing.intx_line(gsi) {
            Ok((line, resample)) => {
                let pin = ahci.attach_intx(gsi as u8, line);
                placed.pins.push((resample, pin));
            }
            Err(e) => warn!(id = %id, "AHCI without an interrupt line: {e}"),
        }
        info!(id = %id, "AHCI at 00:{slot:02x}.{function}, ABAR {:#x}", ahci.abar());
        root.add_device(
            slot,
            function,
            Box::new(LockedAhci {
                ahci,
                _locks: locks,
            }),
        )
        .map_err(perr)?;
        placed.functions.push((id, slot, function));
    }
    Ok(placed)
}

/// The IDE controller of `spec` (one: PIIX3 has one IDE function with two
/// channels at fixed ports): its PCI function and the channels.
fn add_ide(
    spec: &MachineSpec,
    backends: &PciBackends,
    mem: &GuestMem,
    root: &mut PciRoot,
    pio: &Bus,
    vm: &VmFd,
) -> Result<Placed, AttachError> {
    let mut placed = Placed::default();
    let mut ides = spec.devices.iter().filter_map(|d| match &d.kind {
        DeviceKind::IdeController(c) => Some((d, c.index)),
        _ => None,
    });
    let Some((d, index)) = ides.next() else {
        return Ok(placed);
    };
    let perr = |e| AttachError::Pci(d.id.clone(), e);
    if let Some((other, _)) = ides.next() {
        return Err(AttachError::Ata(
            other.id.clone(),
            "a second IDE controller: PIIX3 has one, with two channels".into(),
        ));
    }
    let (slot, function) = match d.pci {
        Some(a) if a.domain == 0 && a.bus == 0 => (a.slot, a.function),
        Some(a) => {
            return Err(perr(PciError::NotRootBus {
                domain: a.domain,
                bus: a.bus,
                slot: a.slot,
                function: a.function,
            }))
        }
        None => (1, 1),
    };
    root.check_free(slot, function).map_err(perr)?;
    if function != 0 && root.check_free(slot, 0).is_ok() {
        // Guests scan functions 1-7 of a slot only when function 0 exists: a
        // machine without the PIIX3 (direct kernel boot of a 'pc' domain, whose
        // IDE libvirt puts at 00:01.1) gets the PIIX3's ISA bridge function too.
        root.add_device(slot, 0, Box::new(ChipsetFunction::piix3_isa()))
            .map_err(perr)?;
    }
    let (drives, locks) = drives(spec, backends, AtaBus::Ide, index)?;
    let mut channels = Vec::new();
    for (n, [master, slave]) in drives.into_iter().take(2).enumerate() {
        let (cmd_port, ctl_port, gsi) = IDE_PORTS[n];
        let irq = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).ok();
        if let Some(fd) = &irq {
            if let Err(e) = vm.register_irqfd(fd, gsi) {
                warn!(id = %d.id, "IDE channel {n} without IRQ {gsi}: {e}");
            }
        }
        let channel = Arc::new(Mutex::new(
            IdeChannel::new(master, slave, irq).with_bus_master(mem.clone()),
        ));
        channels.push(channel.clone());
        let ports = Arc::new(Mutex::new(IdePorts(channel)));
        pio.insert(ports.clone(), u64::from(cmd_port), 8)
            .map_err(|e| AttachError::Ata(d.id.clone(), format!("ports {cmd_port:#x}: {e}")))?;
        pio.insert(ports, u64::from(ctl_port), 1)
            .map_err(|e| AttachError::Ata(d.id.clone(), format!("port {ctl_port:#x}: {e}")))?;
    }
    // The bus master's ports, where firmware would put them (SeaBIOS moves them).
    let bmide = root.allocate_io_bar(BMIDE_PORTS).map_err(perr)?;
    root.add_device(
        slot,
        function,
        Box::new(LockedIde {
            ide: PiixIde::with_bus_master(channels, bmide),
            _locks: locks,
        }),
    )
    .map_err(perr)?;
    info!(id = %d.id, "PIIX3 IDE at 00:{slot:02x}.{function}, channels at 0x1f0 and 0x170, bus master at {bmide:#x}");
    placed.functions.push((d.id.clone(), slot, function));
    Ok(placed)
}

/// The PIIX3 IDE function, keeping its drives' image locks.
struct LockedIde {
    ide: PiixIde,
    _locks: Vec<ImageLock>,
}

impl crate::pci::PciDevice for LockedIde {
    fn state_name(&self) -> String {
        "PIIX IDE controller".into()
    }
    fn read_config(&mut self, reg: usize) -> u32 {
        self.ide.read_config(reg)
    }
    fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]) {
        self.ide.write_config(reg, offset, data)
    }
    fn bars(&self) -> Vec<(usize, u64, u64)> {
        Vec::new()
    }
    fn memory_enabled(&self) -> bool {
        self.ide.memory_enabled()
    }
    fn io_bars(&self) -> Vec<(usize, u64, u64)> {
        self.ide.io_bars()
    }
    fn io_enabled(&self) -> bool {
        self.ide.io_enabled()
    }
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        self.ide.bar_read(bar, offset, data)
    }
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        self.ide.bar_write(bar, offset, data)
    }
    fn set_multifunction(&mut self) {
        self.ide.set_multifunction()
    }
}

/// The drives at one SATA port or IDE channel: master and slave.
type MasterSlave = [Option<AtaDevice>; 2];

/// The drives of ATA controller `index` on `bus_type`, by port or channel, as
/// [master, slave] pairs (SATA ports have only a master), and their image locks.
fn drives(
    spec: &MachineSpec,
    backends: &PciBackends,
    bus_type: AtaBus,
    index: u32,
) -> Result<(Vec<MasterSlave>, Vec<ImageLock>), AttachError> {
    let mut ports: Vec<MasterSlave> = (0..PORTS).map(|_| [None, None]).collect();
    let mut locks = Vec::new();
    for (n, d) in spec.devices.iter().enumerate() {
        let DeviceKind::AtaDisk(u) = &d.kind else {
            continue;
        };
        if u.bus_type != bus_type || u.controller != index {
            continue;
        }
        // A CD-ROM is the media registry's: one unit per process, its medium
        // and tray kept across machine rebuilds (`crate::media`).
        let shared = backends.removable_unit(&d.id);
        let medium = match &u.medium {
            Some(_) if shared.is_some() => None,
            Some(k) => {
                let cfg = DiskConfig {
                    path: &k.path,
                    qcow2: k.format == DiskFormat::Qcow2,
                    readonly: k.readonly || u.cdrom,
                    shareable: k.shareable,
                    serial: k.serial.as_deref(),
                    discard: k.discard,
                    flags: OpenFlags::for_cache(k.cache),
                };
                let (b, lock) =
                    open_backend(&d.id, &cfg).map_err(|e| AttachError::Disk(d.id.clone(), e))?;
                locks.push(lock);
                Some(b)
            }
            None => None,
        };
        let size = medium.as_ref().map_or(0, |m| m.size());
        let disk = u.medium.as_ref();
        let cfg = DeviceConfig {
            kind: if u.cdrom {
                ScsiKind::Cdrom
            } else {
                ScsiKind::Disk
            },
            readonly: u.cdrom || disk.is_none_or(|k| k.readonly),
            writeback: disk.is_none_or(|k| {
                !matches!(k.cache, CacheMode::Writethrough | CacheMode::Directsync)
            }),
            serial: disk.and_then(|k| k.serial.clone()),
            device_id: d.id.clone(),
            vendor: None,
            product: None,
            wwn: u.wwn,
        };
        let unit = ScsiDevice::new(cfg, medium).with_stats(backends.disk_stats(&d.id, size));
        let drive = AtaDevice::new(
            shared.unwrap_or_else(|| Arc::new(Mutex::new(unit))),
            DriveConfig {
                serial: disk.and_then(|k| k.serial.clone()),
                discard: disk.is_some_and(|k| k.discard) && !u.cdrom,
                wwn: u.wwn,
                ncq_depth: (bus_type == AtaBus::Sata).then_some(NCQ_DEPTH),
            },
            n as u32,
        );
        info!(id = %d.id, controller = index, bus = u.bus, unit = u.unit, cdrom = u.cdrom, "ATA drive");
        let slot = ports
            .get_mut(usize::from(u.bus))
            .and_then(|p| p.get_mut(usize::from(u.unit)))
            .expect("the spec check keeps addresses in range");
        *slot = Some(drive);
    }
    Ok((ports, locks))
}

impl crate::pci::PciDevice for LockedAhci {
    fn read_config(&mut self, reg: usize) -> u32 {
        self.ahci.read_config(reg)
    }
    fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]) {
        self.ahci.write_config(reg, offset, data)
    }
    fn bars(&self) -> Vec<(usize, u64, u64)> {
        self.ahci.bars()
    }
    fn memory_enabled(&self) -> bool {
        self.ahci.memory_enabled()
    }
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        self.ahci.bar_read(bar, offset, data)
    }
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        self.ahci.bar_write(bar, offset, data)
    }
    fn set_multifunction(&mut self) {
        self.ahci.set_multifunction()
    }
    fn state_name(&self) -> String {
        self.ahci.state_name()
    }
    fn can_save(&self) -> bool {
        self.ahci.can_save()
    }
    fn save_state(&mut self) -> Option<serde_json::Value> {
        self.ahci.save_state()
    }
    fn restore_state(&mut self, state: &serde_json::Value) -> Result<(), String> {
        self.ahci.restore_state(state)
    }
}
