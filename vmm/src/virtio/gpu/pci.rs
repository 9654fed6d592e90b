//! `virtio-vga` and `virtio-gpu-pci`: the PCI functions of the virtio-gpu, the
//! primary display adapter.
//!
//! `virtio-vga` is one PCI function (1af4:1050, class VGA) that is also a standard
//! VGA, as QEMU builds it: BAR 0 is the VGA framebuffer, BAR 2 the 1234:1111 MMIO
//! block (EDID, VGA ports, DISPI), the expansion ROM SeaBIOS's
//! `vgabios-virtio.bin`, plus the legacy VGA ports, DISPI ports and the 0xA0000
//! window; the virtio structures (and MSI-X) live in BAR 4. The VGA side is the
//! existing [`StdVgaPci`] model, fed the same configuration writes so its BARs,
//! ROM and memory decoding follow the function's. Until the virtio driver sets a
//! scanout the console shows the VGA side (firmware text, VBE modes).
//!
//! `virtio-gpu-pci` is the plain virtio function (class display-other, no VGA, no
//! ROM): firmware shows nothing on it, as with QEMU.

use std::sync::Arc;

use machine_spec::{Device, Video, VideoModel};

use super::screen::GpuScreen;
use super::VirtioGpu;
use crate::display::attach::{preferred_size, rom_for, vga_state, DisplayError, Legacy};
use crate::display::stdvga::{StdVgaPci, MMIO_BAR_SIZE};
use crate::display::Console;
use crate::pci::{BarKind, PciDevice, PciRoot};
use crate::virtio::pci_transport::PciLayout;
use crate::virtio::{VirtioDevice, VirtioPciDevice};

/// The BAR of the virtio structures on virtio-vga (BAR 0 and 2 are the VGA's).
const VIRTIO_BAR: usize = 4;
/// Expansion ROM register (dword index of offset 0x30).
const ROM_REG: usize = 12;
/// The BARs the VGA side serves: framebuffer, MMIO block, expansion ROM.
const VGA_BARS: [usize; 3] = [0, 2, 6];

/// A virtio display adapter ready to become a PCI function.
pub struct VirtioDisplay {
    /// The device id (from the spec).
    pub id: String,
    pub gpu: Box<dyn VirtioDevice>,
    /// The virtio function's layout (virtio-vga: BARs moved up, class VGA).
    pub layout: PciLayout,
    /// The VGA side of virtio-vga.
    vga: Option<StdVgaPci>,
}

impl VirtioDisplay {
    /// The PCI function: `virtio` (built from `gpu` and `layout`) joined with the
    /// VGA side, if any.
    pub fn function(vga: Option<StdVgaPci>, virtio: VirtioPciDevice) -> Box<dyn PciDevice> {
        match vga {
            Some(vga) => Box::new(VirtioVgaPci { virtio, vga }),
            None => Box::new(virtio),
        }
    }

    /// Splits off the VGA side, for [`VirtioDisplay::function`].
    pub fn take_vga(&mut self) -> Option<StdVgaPci> {
        self.vga.take()
    }
}

/// Builds the GPU of `video` (and for virtio-vga its VGA side, on the buses
/// already) and makes it the picture of `console`.
pub(crate) fn prepare(
    d: &Device,
    video: &Video,
    console: &Arc<Console>,
    root: &mut PciRoot,
    legacy: &Legacy<'_>,
    firmware: bool,
) -> Result<VirtioDisplay, DisplayError> {
    let gpu = VirtioGpu::new(&d.id, preferred_size(video));
    let shared = gpu.shared();
    if video.model == VideoModel::VirtioGpu {
        console.set_source(Some(Box::new(GpuScreen::new(shared, None))));
        tracing::info!(id = %d.id, "virtio-gpu-pci");
        return Ok(VirtioDisplay {
            id: d.id.clone(),
            gpu: Box::new(gpu),
            layout: PciLayout::default(),
            vga: None,
        });
    }
    let state = vga_state(video, legacy.vm, true)?;
    let vram = video.vram_bytes;
    let bar0 = root
        .allocate_bar(vram, BarKind::Mem32)
        .map_err(DisplayError::Pci)?;
    let bar2 = root
        .allocate_bar(MMIO_BAR_SIZE, BarKind::Mem32)
        .map_err(DisplayError::Pci)?;
    let rom = rom_for(VideoModel::VirtioVga, firmware);
    let vga = StdVgaPci::new(state.clone(), true, rom, bar0, bar2);
    legacy.insert(&state, true)?;
    console.set_source(Some(Box::new(GpuScreen::new(shared, Some(state)))));
    tracing::info!(
        id = %d.id,
        "virtio-vga, framebuffer {bar0:#x} ({} MiB)",
        vram >> 20
    );
    Ok(VirtioDisplay {
        id: d.id.clone(),
        gpu: Box::new(gpu),
        layout: PciLayout {
            bar: VIRTIO_BAR,
            class: Some(0x03_0000),
            other_bars: vec![
                (0, vram, BarKind::Mem32, bar0),
                (2, MMIO_BAR_SIZE, BarKind::Mem32, bar2),
            ],
        },
        vga: Some(vga),
    })
}

/// The virtio-vga function: the virtio function's configuration space (header,
/// capabilities, all BAR registers) with the VGA side serving BARs 0 and 2 and the
/// expansion ROM.
struct VirtioVgaPci {
    virtio: VirtioPciDevice,
    vga: StdVgaPci,
}

impl PciDevice for VirtioVgaPci {
    fn state_name(&self) -> String {
        "virtio-vga".into()
    }
    fn read_config(&mut self, reg: usize) -> u32 {
        if reg == ROM_REG {
            self.vga.read_config(reg)
        } else {
            self.virtio.read_config(reg)
        }
    }

    fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]) {
        // The VGA side sees every write: its command register and BARs 0/2 stay
        // the function's, so the framebuffer maps where the guest put BAR 0.
        self.vga.write_config(reg, offset, data);
        if reg != ROM_REG {
            self.virtio.write_config(reg, offset, data);
        }
    }

    fn bars(&self) -> Vec<(usize, u64, u64)> {
        let mut b = self.virtio.bars();
        b.extend(self.vga.bars().into_iter().filter(|b| b.0 == 6));
        b
    }

    fn memory_enabled(&self) -> bool {
        self.virtio.memory_enabled()
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if VGA_BARS.contains(&bar) {
            self.vga.bar_read(bar, offset, data);
        } else {
            self.virtio.bar_read(bar, offset, data);
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if VGA_BARS.contains(&bar) {
            self.vga.bar_write(bar, offset, data);
        } else {
            self.virtio.bar_write(bar, offset, data);
        }
    }

    fn bar_moved(&mut self, bar: usize, old: u64, new: u64) {
        if VGA_BARS.contains(&bar) {
            self.vga.bar_moved(bar, old, new);
        } else {
            self.virtio.bar_moved(bar, old, new);
        }
    }

    fn set_multifunction(&mut self) {
        self.virtio.set_multifunction();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::display::dispi::Dispi;
    use crate::display::stdvga::VgaState;
    use crate::display::vga::VgaRegs;
    use crate::display::vram::Vram;
    use crate::pci::msix::tests::Recorder;
    use crate::pci::PciWindows;
    use crate::virtio::queue_util::testing::memory;

    const SLOT: u64 = 3;
    const VRAM: u64 = 16 << 20;

    /// A virtio-vga function at slot 3, as `prepare` builds it (without KVM).
    fn virtio_vga() -> PciRoot {
        let mut root = PciRoot::new(PciWindows {
            mmio32: (0xc000_0000, 0x2000_0000),
            mmio64: (0, 0),
        });
        let state = Arc::new(Mutex::new(VgaState {
            dispi: Dispi::new(VRAM),
            vram: Vram::new(VRAM, None, 0).unwrap(),
            vga: Some(VgaRegs::new()),
            edid: crate::display::edid::edid(1024, 768),
        }));
        let bar0 = root.allocate_bar(VRAM, BarKind::Mem32).unwrap();
        let bar2 = root.allocate_bar(MMIO_BAR_SIZE, BarKind::Mem32).unwrap();
        let rom = Arc::new(vec![0x55, 0xaa, 1]);
        let vga = StdVgaPci::new(state, true, Some(rom), bar0, bar2);
        let layout = PciLayout {
            bar: VIRTIO_BAR,
            class: Some(0x03_0000),
            other_bars: vec![
                (0, VRAM, BarKind::Mem32, bar0),
                (2, MMIO_BAR_SIZE, BarKind::Mem32, bar2),
            ],
        };
        let gpu = Box::new(VirtioGpu::new("video0", (1024, 768)));
        let rec = Arc::new(Recorder::default());
        let virtio =
            VirtioPciDevice::with_layout(gpu, memory(), &mut root, rec, None, layout).unwrap();
        root.add_device(SLOT as u8, 0, VirtioDisplay::function(Some(vga), virtio))
            .unwrap();
        root
    }

    fn cfg(root: &mut PciRoot, off: u64) -> u32 {
        let mut d = [0u8; 4];
        root.ecam_read((SLOT << 15) + off, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn one_function_with_the_vga_bars_first_and_virtio_in_bar_4() {
        let mut root = virtio_vga();
        assert_eq!(cfg(&mut root, 0), 0x1050_1af4, "virtio-gpu modern id");
        assert_eq!(cfg(&mut root, 8) >> 8, 0x03_0000, "class VGA");
        let bar0 = cfg(&mut root, 0x10);
        let bar2 = cfg(&mut root, 0x18);
        let bar4 = cfg(&mut root, 0x20);
        assert_eq!(bar0 & 0xf, 0, "BAR 0: 32-bit memory (framebuffer)");
        assert_eq!(bar4 & 0x6, 0x4, "BAR 4: 64-bit memory (virtio)");
        // Every virtio capability points into BAR 4, MSI-X too.
        let mut cap = u64::from(cfg(&mut root, 0x34) & 0xff);
        let mut seen = 0;
        while cap != 0 {
            let head = cfg(&mut root, cap);
            match head & 0xff {
                0x09 if (head >> 24) as u8 != 5 => {
                    assert_eq!(cfg(&mut root, cap + 4) & 0xff, 4, "cap at {cap:#x}");
                    seen += 1;
                }
                0x11 => assert_eq!(cfg(&mut root, cap + 4) & 0x7, 4, "MSI-X table BIR"),
                _ => {}
            }
            cap = u64::from(head >> 8) & 0xff;
        }
        assert_eq!(seen, 4, "common, notify, ISR, device capabilities");
        // With memory decoding on: DISPI through BAR 2, the ROM through the ROM BAR,
        // the virtio common configuration through BAR 4.
        root.ecam_write((SLOT << 15) + 4, &[0x02, 0]);
        let mut b = [0u8; 2];
        assert!(root.mmio_read(u64::from(bar2) + 0x500, &mut b));
        assert_eq!(u16::from_le_bytes(b), 0xb0c5, "DISPI id in BAR 2");
        root.ecam_write((SLOT << 15) + 0x30, &0xfeb0_0001u32.to_le_bytes());
        assert_eq!(cfg(&mut root, 0x30), 0xfeb0_0001);
        assert!(root.mmio_read(0xfeb0_0000, &mut b));
        assert_eq!(b, [0x55, 0xaa], "vgabios in the ROM BAR");
        let mut q = [0u8; 2];
        assert!(root.mmio_read(u64::from(bar4 & !0xf) + 0x12, &mut q));
        assert_eq!(u16::from_le_bytes(q), 2, "two queues (control, cursor)");
    }

    #[test]
    fn virtio_gpu_pci_is_a_plain_display_other_function() {
        let mut root = PciRoot::new(PciWindows {
            mmio32: (0xc000_0000, 0x2000_0000),
            mmio64: (0, 0),
        });
        let gpu = Box::new(VirtioGpu::new("video0", (1024, 768)));
        let rec = Arc::new(Recorder::default());
        let virtio =
            VirtioPciDevice::with_layout(gpu, memory(), &mut root, rec, None, PciLayout::default())
                .unwrap();
        root.add_device(SLOT as u8, 0, VirtioDisplay::function(None, virtio))
            .unwrap();
        assert_eq!(cfg(&mut root, 0), 0x1050_1af4);
        assert_eq!(cfg(&mut root, 8) >> 8, 0x03_8000, "class display-other");
        assert_eq!(cfg(&mut root, 0x10) & 0x6, 0x4, "virtio in a 64-bit BAR 0");
        assert_eq!(cfg(&mut root, 0x30), 0, "no expansion ROM");
    }
}
