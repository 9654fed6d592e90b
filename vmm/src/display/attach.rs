//! Building the display side of a machine from its spec: the console (once per
//! VMM process) and, for every machine, the primary video device on the PCI root
//! bus, its ports, its legacy window and the console's picture source.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;
use machine_spec::{DeviceKind, MachineSpec, Video, VideoModel};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::dispi::Dispi;
use super::render::VgaScreen;
use super::stdvga::{
    StdVgaPci, VgaPorts, VgaState, VgaWindow, DISPI_PORT, DISPI_PORTS, MMIO_BAR_SIZE,
    VGA_PORTS_BASE, VGA_PORTS_LEN,
};
use super::vga::{VgaRegs, WINDOW_BASE, WINDOW_SIZE};
use super::vram::{Vram, VramError};
use super::Console;
use crate::devices::bus::{Bus, BusError};
use crate::pci::{BarKind, PciError, PciRoot};

/// Where Debian's `seabios` package puts the VGA option ROMs.
pub const VGABIOS_DIR: &str = "/usr/share/seabios";
/// KVM memory slots of the display: video memory, and the part of low RAM above the
/// legacy VGA window when that window is cut out of the RAM slot.
const VRAM_SLOT: u32 = 32;
const LOW_RAM_TAIL_SLOT: u32 = 31;
/// The preferred mode offered in the EDID when the XML has no `<resolution>`.
const DEFAULT_RESOLUTION: (u32, u32) = (1024, 768);

/// Errors building the display device.
#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    #[error("cannot place the video device")]
    Pci(#[source] PciError),
    #[error("cannot put the video device's ports or window on the bus")]
    Bus(#[source] BusError),
    #[error(transparent)]
    Vram(#[from] VramError),
    #[error("cannot cut the VGA window out of guest RAM (memory slot {0})")]
    Slot(u32, #[source] kvm_ioctls::Error),
}

/// The console of a machine whose spec has a video device (the first is primary).
pub fn console_for(spec: &MachineSpec) -> Option<Arc<Console>> {
    primary(spec).map(|_| Arc::new(Console::new()))
}

/// The primary video device: its id, PCI address and configuration.
fn primary(spec: &MachineSpec) -> Option<(&machine_spec::Device, &Video)> {
    spec.devices.iter().find_map(|d| match &d.kind {
        DeviceKind::Video(v) => Some((d, v)),
        _ => None,
    })
}

/// The option ROM for `model`, read from [`VGABIOS_DIR`] (None, with a warning,
/// when the file is missing: the device works, firmware just prints nothing).
fn option_rom(model: VideoModel) -> Option<Arc<Vec<u8>>> {
    let name = match model {
        VideoModel::Vga => "vgabios-stdvga.bin",
        VideoModel::Bochs => "vgabios-bochs-display.bin",
        VideoModel::VirtioVga => "vgabios-virtio.bin",
        // QEMU's virtio-gpu-pci has no ROM either: firmware shows nothing on it.
        VideoModel::VirtioGpu => return None,
    };
    let path: PathBuf = Path::new(VGABIOS_DIR).join(name);
    match std::fs::read(&path) {
        Ok(b) => Some(Arc::new(b)),
        Err(e) => {
            tracing::warn!(
                "no VGA option ROM '{}': {e}; firmware will show nothing",
                path.display()
            );
            None
        }
    }
}

/// What [`attach_display`] placed: (device id, slot, function).
pub type Placed = (String, u8, u8);

/// What [`attach_display`] did with the primary video device.
pub enum Attached {
    /// A 1234:1111 function, on the bus already.
    Placed(Placed),
    /// A virtio-gpu: its legacy VGA parts are on the buses; the virtio function
    /// goes on the PCI bus with the other virtio devices.
    Virtio(Box<crate::virtio::gpu::pci::VirtioDisplay>),
}

/// Puts the primary video device of `spec` on `root` (at its PCI address, or the
/// first free slot), its ports on `pio`, for VGA its window on `mmio` (cut out of the
/// RAM slot so that accesses exit), and makes it the picture of `console`.
pub fn attach_display(
    spec: &MachineSpec,
    console: Option<&Arc<Console>>,
    vm: &Arc<VmFd>,
    mem: &GuestMemoryMmap,
    root: &mut PciRoot,
    pio: &Bus,
    mmio: &Bus,
) -> Result<Option<Attached>, DisplayError> {
    let (Some((d, video)), Some(console)) = (primary(spec), console) else {
        return Ok(None);
    };
    if matches!(video.model, VideoModel::VirtioVga | VideoModel::VirtioGpu) {
        let firmware = spec.boot.firmware.is_some();
        let legacy = Legacy { vm, mem, pio, mmio };
        return crate::virtio::gpu::pci::prepare(d, video, console, root, &legacy, firmware)
            .map(|v| Some(Attached::Virtio(Box::new(v))));
    }
    let vga = video.model == VideoModel::Vga;
    let (slot, function) = match d.pci {
        Some(a) if a.bus == 0 && a.domain == 0 => (a.slot, a.function),
        Some(a) => {
            return Err(DisplayError::Pci(PciError::NotRootBus {
                domain: a.domain,
                bus: a.bus,
                slot: a.slot,
                function: a.function,
            }))
        }
        None => (
            root.free_slot()
                .ok_or(DisplayError::Pci(PciError::BadSlot {
                    slot: 32,
                    function: 0,
                }))?,
            0,
        ),
    };
    root.check_free(slot, function).map_err(DisplayError::Pci)?;
    let vram_size = video.vram_bytes;
    let bar0 = root
        .allocate_bar(vram_size, BarKind::Mem32)
        .map_err(DisplayError::Pci)?;
    let bar2 = root
        .allocate_bar(MMIO_BAR_SIZE, BarKind::Mem32)
        .map_err(DisplayError::Pci)?;
    let state = vga_state(video, vm, vga)?;
    let rom = rom_for(video.model, spec.boot.firmware.is_some());
    let dev = StdVgaPci::new(state.clone(), vga, rom, bar0, bar2);
    root.add_device(slot, function, Box::new(dev))
        .map_err(DisplayError::Pci)?;
    Legacy { vm, mem, pio, mmio }.insert(&state, vga)?;
    console.set_source(Some(Box::new(VgaScreen::new(state))));
    tracing::info!(
        id = %d.id,
        "{} at 00:{slot:02x}.{function}, framebuffer {bar0:#x} ({} MiB)",
        if vga { "VGA" } else { "bochs-display" },
        vram_size >> 20
    );
    Ok(Some(Attached::Placed((d.id.clone(), slot, function))))
}

/// The preferred display size of `video` (EDID, virtio-gpu display info).
pub fn preferred_size(video: &Video) -> (u32, u32) {
    video
        .resolution
        .map_or(DEFAULT_RESOLUTION, |r| (r.width, r.height))
}

/// The framebuffer, DISPI and (with `vga`) legacy VGA state of `video`.
pub(crate) fn vga_state(
    video: &Video,
    vm: &Arc<VmFd>,
    vga: bool,
) -> Result<super::stdvga::SharedState, DisplayError> {
    let (w, h) = preferred_size(video);
    let vram_size = video.vram_bytes;
    Ok(Arc::new(Mutex::new(VgaState {
        dispi: Dispi::new(vram_size),
        vram: Vram::new(vram_size, Some(vm.clone()), VRAM_SLOT)?,
        vga: vga.then(VgaRegs::new),
        edid: super::edid::edid(w, h),
    })))
}

/// What the legacy parts of a display adapter are put on.
pub(crate) struct Legacy<'a> {
    pub vm: &'a Arc<VmFd>,
    pub mem: &'a GuestMemoryMmap,
    pub pio: &'a Bus,
    pub mmio: &'a Bus,
}

impl Legacy<'_> {
    /// Puts the DISPI ports and, with `vga`, the VGA ports and the 0xA0000 window
    /// (cut out of the RAM slot) on the buses.
    pub(crate) fn insert(
        &self,
        state: &super::stdvga::SharedState,
        vga: bool,
    ) -> Result<(), DisplayError> {
        let ports = Arc::new(Mutex::new(VgaPorts(state.clone())));
        self.pio
            .insert(ports.clone(), u64::from(DISPI_PORT), DISPI_PORTS)
            .map_err(DisplayError::Bus)?;
        if vga {
            self.pio
                .insert(ports, u64::from(VGA_PORTS_BASE), VGA_PORTS_LEN)
                .map_err(DisplayError::Bus)?;
            cut_vga_window(self.vm, self.mem)?;
            self.mmio
                .insert(
                    Arc::new(Mutex::new(VgaWindow(state.clone()))),
                    WINDOW_BASE,
                    WINDOW_SIZE,
                )
                .map_err(DisplayError::Bus)?;
        }
        Ok(())
    }
}

/// The option ROM of `model` when the machine boots through firmware.
pub(crate) fn rom_for(model: VideoModel, firmware: bool) -> Option<Arc<Vec<u8>>> {
    if firmware {
        option_rom(model)
    } else {
        None
    }
}

/// Re-registers the low RAM slot (slot 0, from address 0) as [0, 0xA0000) and
/// [0xC0000, end) so that the legacy VGA window exits to the VMM, as on a PC where
/// the window decodes to the video card, not to RAM.
fn cut_vga_window(vm: &VmFd, mem: &GuestMemoryMmap) -> Result<(), DisplayError> {
    let Some(low) = mem.iter().next() else {
        return Ok(());
    };
    let end = WINDOW_BASE + WINDOW_SIZE;
    if low.start_addr().0 != 0 || low.len() <= end {
        return Ok(());
    }
    let host = low.as_ptr() as u64;
    let set = |slot: u32, gpa: u64, size: u64, host: u64| {
        let r = kvm_bindings::kvm_userspace_memory_region {
            slot,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host,
            flags: 0,
        };
        // SAFETY: [host, host + size) lies inside guest RAM's first mapping (`low`),
        // which the machine keeps alive for as long as its VM (the VM fd is dropped
        // first); size 0 deletes the slot.
        unsafe { vm.set_user_memory_region(r) }.map_err(|e| DisplayError::Slot(slot, e))
    };
    // Slot 0 is the low RAM region (kvm::register_memory numbers regions in order).
    set(0, 0, 0, host)?;
    set(0, 0, WINDOW_BASE, host)?;
    set(LOW_RAM_TAIL_SLOT, end, low.len() - end, host + end)?;
    Ok(())
}
