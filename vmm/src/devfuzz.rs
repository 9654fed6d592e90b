//! Register-level fuzzing of the device models a guest talks to directly: a
//! machine's worth of devices (AHCI with a disk and a CD, PIIX IDE with its bus
//! master, e1000 and e1000e, the standard VGA with its ports and window, fw_cfg
//! with DMA, CMOS, the i8042, TPM CRB and TIS) driven by a byte string read as a
//! program of port, MMIO, PCI configuration and BAR accesses plus guest-memory
//! writes (so DMA descriptors, PRD tables, AHCI command tables and fw_cfg DMA
//! requests are the input's too).
//!
//! The property: no access panics, every DMA stays within guest memory (the disk
//! backends panic on an access beyond the image, which a device must bound-check
//! first), and accesses keep being answered. Used by the cargo-fuzz target
//! `device_registers` (`fuzz/`) and, seeded and bounded, by this module's unit
//! test, so CI checks the property on every run. The guest-side fuzzer (oxtest
//! `fuzz`, tests/vmm_guest_fuzz.rs) covers the same devices through a real VM;
//! this one reaches the models without KVM, fast enough for libFuzzer.
//!
//! Accesses are routed the way the machine routes them: PCI BAR accesses only to
//! BARs as currently programmed and decoding (`bars()`, `io_bars()`), port and
//! MMIO accesses only inside a device's ranges, configuration accesses as the
//! host bridge makes them (1, 2 or 4 bytes, naturally aligned in a dword).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress};

use crate::ata::ahci::Ahci;
use crate::ata::device::{AtaDevice, DriveConfig};
use crate::ata::ide::{IdeChannel, IdePorts, PiixIde, PORTS as IDE_PORTS};
use crate::devices::bus::BusDevice;
use crate::devices::cmos::Cmos;
use crate::devices::fw_cfg::{FwCfg, FW_CFG_PORT, FW_CFG_PORT_LEN};
use crate::devices::legacy::{PortA, Pvpanic, ResetControl, PORT_A, PVPANIC_PORT, RESET_PORT};
use crate::devices::pm::{PmDevice, PmKind, GPE0_BLK, GPE0_LEN, PM_BASE};
use crate::display::dispi::Dispi;
use crate::display::stdvga::{
    StdVgaPci, VgaPorts, VgaState, VgaWindow, DISPI_PORT, DISPI_PORTS, VGA_PORTS_BASE,
    VGA_PORTS_LEN,
};
use crate::display::vga::{VgaRegs, WINDOW_BASE, WINDOW_SIZE};
use crate::display::vram::Vram;
use crate::e1000::device::E1000Function;
use crate::e1000::model::Model;
use crate::input::i8042::I8042;
use crate::lifecycle::ExitSink;
use crate::pci::bridge::{Bridge, BridgeKind};
use crate::pci::{IntxLine, MsiMessage, MsiSink, PciDevice, PciRoot, PciWindows};
use crate::scsi::{DeviceConfig, DeviceKind, ScsiDevice};
use crate::tpm::crb::{Crb, TpmBackend, CRB_SIZE, RC_FAILURE};
use crate::tpm::tis::{Tis, TIS_SIZE};
use crate::virtio::block::backend::{Bufs, DiskBackend};
use crate::virtio::net::{FrameIo, NetControl};
use crate::virtio::GuestMem;

/// Guest RAM the devices DMA to: small, so that input values reach it often.
pub const MEM_SIZE: u64 = 2 << 20;
const DISK_SIZE: usize = 1 << 20;

/// Disk transfers the devices made (reads, writes), for the test to check that
/// the programs reach the data path and not only the registers in front of it.
pub static DISK_TRANSFERS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// A disk image in memory that panics on an access outside it: the device in
/// front of it must have refused such a request.
struct BoundedDisk(Vec<u8>);

impl BoundedDisk {
    fn range(&self, offset: u64, len: u64) -> std::ops::Range<usize> {
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= self.0.len() as u64)
            .unwrap_or_else(|| {
                panic!(
                    "device sent a disk access past the image: {offset:#x}+{len:#x} > {:#x}",
                    self.0.len()
                )
            });
        offset as usize..end as usize
    }
}

impl DiskBackend for BoundedDisk {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()> {
        DISK_TRANSFERS[0].fetch_add(1, Ordering::Relaxed);
        let mut o = offset;
        for b in bufs {
            let r = self.range(o, b.len() as u64);
            b.write_slice(&self.0[r], 0)
                .map_err(|e| io::Error::other(e.to_string()))?;
            o += b.len() as u64;
        }
        Ok(())
    }
    fn write_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()> {
        DISK_TRANSFERS[1].fetch_add(1, Ordering::Relaxed);
        let mut o = offset;
        for b in bufs {
            let r = self.range(o, b.len() as u64);
            b.read_slice(&mut self.0[r], 0)
                .map_err(|e| io::Error::other(e.to_string()))?;
            o += b.len() as u64;
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.range(offset, len);
        Ok(())
    }
    fn write_zeroes(&mut self, offset: u64, len: u64, _unmap: bool) -> io::Result<()> {
        let r = self.range(offset, len);
        self.0[r].fill(0);
        Ok(())
    }
}

/// A TPM that is not there: every command fails, as when swtpm is gone.
struct AbsentTpm;

impl TpmBackend for AbsentTpm {
    fn execute(&mut self, _locality: u8, _command: &[u8]) -> Vec<u8> {
        let mut r = vec![0x80, 0x01, 0, 0, 0, 10];
        r.extend_from_slice(&RC_FAILURE.to_be_bytes());
        r
    }
    fn cancel(&mut self) {}
    fn established(&mut self) -> bool {
        false
    }
    fn reset_established(&mut self, _locality: u8) {}
    fn failed(&self) -> bool {
        false
    }
}

struct CrbBus(Crb<AbsentTpm>);
impl BusDevice for CrbBus {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        self.0.read(offset, data)
    }
    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        self.0.write(offset, data)
    }
}

struct TisBus(Tis<AbsentTpm>);
impl BusDevice for TisBus {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        self.0.read(offset, data)
    }
    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        self.0.write(offset, data)
    }
}

/// Interrupt lines that go nowhere.
struct NoLine;
impl IntxLine for NoLine {
    fn assert(&self) {}
}
impl crate::devices::pm::IrqLine for NoLine {
    fn set_level(&self, _high: bool) {}
}

impl MsiSink for NoLine {
    fn program(&self, _vector: u16, _msg: MsiMessage, _masked: bool) {}
    fn trigger(&self, _vector: u16) {}
}

/// A network peer that never answers and drops what it is sent.
struct Silent(UnixDatagram);
impl FrameIo for Silent {
    fn recv(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
    fn send(&mut self, _frame: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.0.as_raw_fd()
    }
}

/// A device on the port or MMIO bus: its ranges (base, length).
struct OnBus {
    dev: Box<dyn BusDevice>,
    ranges: Vec<(u64, u64)>,
}

/// The devices of one run and the memory they DMA to.
pub struct Machine {
    mem: GuestMem,
    pci: Vec<Box<dyn PciDevice>>,
    bus: Vec<OnBus>,
}

fn unit(kind: DeviceKind) -> Arc<Mutex<ScsiDevice>> {
    let disk = BoundedDisk(vec![0x5a; DISK_SIZE]);
    Arc::new(Mutex::new(ScsiDevice::new(
        DeviceConfig {
            kind,
            readonly: kind == DeviceKind::Cdrom,
            writeback: true,
            serial: Some("FUZZ".into()),
            device_id: "fuzz".into(),
            vendor: None,
            product: None,
            wwn: None,
        },
        Some(Box::new(disk)),
    )))
}

fn drive(kind: DeviceKind) -> AtaDevice {
    AtaDevice::new(
        unit(kind),
        DriveConfig {
            serial: Some("FUZZ".into()),
            discard: true,
            wwn: None,
            ncq_depth: Some(32),
        },
        0,
    )
}

impl Machine {
    /// Builds the devices as a machine would have them after firmware: BARs
    /// placed, decoding on.
    pub fn new() -> Machine {
        let mem =
            GuestMem::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).expect("guest memory");
        let mut root = PciRoot::new(PciWindows {
            mmio32: (0xc000_0000, 0x2000_0000),
            mmio64: (0, 0),
        });
        let mut pci: Vec<Box<dyn PciDevice>> = Vec::new();
        let mut bus = Vec::new();

        let mut ahci = Ahci::new(
            vec![
                Some(drive(DeviceKind::Disk)),
                Some(drive(DeviceKind::Cdrom)),
            ],
            mem.clone(),
            &mut root,
        )
        .expect("AHCI");
        ahci.attach_intx(20, Box::new(NoLine));
        pci.push(Box::new(ahci));

        let primary = Arc::new(Mutex::new(
            IdeChannel::new(
                Some(drive(DeviceKind::Disk)),
                Some(drive(DeviceKind::Cdrom)),
                None,
            )
            .with_bus_master(mem.clone()),
        ));
        let secondary = Arc::new(Mutex::new(
            IdeChannel::new(None, None, None).with_bus_master(mem.clone()),
        ));
        for (ch, (cmd, ctl, _)) in [primary.clone(), secondary.clone()]
            .into_iter()
            .zip(IDE_PORTS)
        {
            bus.push(OnBus {
                dev: Box::new(IdePorts(ch)),
                ranges: vec![(u64::from(cmd), 8), (u64::from(ctl), 1)],
            });
        }
        pci.push(Box::new(PiixIde::with_bus_master(
            vec![primary, secondary],
            0xc000,
        )));

        for model in [Model::I82540EM, Model::I82574L] {
            let (a, _b) = UnixDatagram::pair().expect("socketpair");
            let mut nic = E1000Function::new(
                "net0",
                model,
                [0x52, 0x54, 0, 0x12, 0x34, 0x56],
                Box::new(Silent(a)),
                NetControl::new(true),
                mem.clone(),
                &mut root,
            )
            .expect("e1000");
            nic.attach_intx(21, Box::new(NoLine));
            pci.push(Box::new(nic));
        }

        let vram_size = 4 << 20;
        let state = Arc::new(Mutex::new(VgaState {
            dispi: Dispi::new(vram_size),
            vram: Vram::new(vram_size, None, 0).expect("vram"),
            vga: Some(VgaRegs::new()),
            edid: crate::display::edid::edid(1024, 768),
        }));
        pci.push(Box::new(StdVgaPci::new(
            state.clone(),
            true,
            None,
            0xd000_0000,
            0xd100_0000,
        )));
        bus.push(OnBus {
            dev: Box::new(VgaPorts(state.clone())),
            ranges: vec![
                (u64::from(DISPI_PORT), DISPI_PORTS),
                (u64::from(VGA_PORTS_BASE), VGA_PORTS_LEN),
            ],
        });
        bus.push(OnBus {
            dev: Box::new(VgaWindow(state)),
            ranges: vec![(WINDOW_BASE, WINDOW_SIZE)],
        });

        bus.push(OnBus {
            dev: Box::new(FwCfg::new(mem.clone())),
            ranges: vec![(u64::from(FW_CFG_PORT), FW_CFG_PORT_LEN)],
        });
        bus.push(OnBus {
            dev: Box::new(Cmos::new()),
            ranges: vec![(0x70, 2)],
        });
        bus.push(OnBus {
            dev: Box::new(I8042::new(Box::new(NoLine), Box::new(NoLine), None)),
            ranges: vec![(0x60, 1), (0x64, 1)],
        });
        bus.push(OnBus {
            dev: Box::new(CrbBus(Crb::new(AbsentTpm))),
            ranges: vec![(0xfed4_0000, CRB_SIZE)],
        });
        bus.push(OnBus {
            dev: Box::new(TisBus(Tis::new(AbsentTpm))),
            ranges: vec![(0xfed4_0000, TIS_SIZE)],
        });
        // A PCIe root port with a device behind it and a PCI bridge: their
        // hot-plug slot registers (the scenarios plug and unplug from the host side).
        let mut port = Bridge::new(BridgeKind::PcieRootPort, 1, 1, 0x10).with_msi(Arc::new(NoLine));
        port.set_populated(true);
        pci.push(Box::new(port));
        pci.push(Box::new(Bridge::new(BridgeKind::PciBridge, 2, 0, 0)));

        // Guest exits (reset, power-off, panic) are recorded and never acted on.
        let exits = ExitSink::new().expect("eventfd");
        for kind in [PmKind::Ich9, PmKind::Piix4] {
            bus.push(OnBus {
                dev: Box::new(
                    PmDevice::with_kind(kind, Box::new(NoLine), exits.clone()).with_gpe(),
                ),
                ranges: vec![
                    (u64::from(PM_BASE), kind.ports()),
                    (u64::from(GPE0_BLK), u64::from(GPE0_LEN)),
                ],
            });
        }
        bus.push(OnBus {
            dev: Box::new(ResetControl::new(exits.clone())),
            ranges: vec![(u64::from(RESET_PORT), 1)],
        });
        bus.push(OnBus {
            dev: Box::new(PortA::new(exits.clone())),
            ranges: vec![(u64::from(PORT_A), 1)],
        });
        bus.push(OnBus {
            dev: Box::new(Pvpanic::new(exits)),
            ranges: vec![(u64::from(PVPANIC_PORT), 1)],
        });

        for d in pci.iter_mut() {
            // I/O and memory decoding and bus mastering on, as firmware leaves them.
            d.write_config(1, 0, &[0x07, 0]);
        }
        Machine { mem, pci, bus }
    }

    fn devices(&self) -> usize {
        self.pci.len() + self.bus.len()
    }

    /// Runs `program` (see [`run`]).
    pub fn run(&mut self, program: &[u8]) {
        let mut ops = program.chunks_exact(OP_LEN);
        for op in &mut ops {
            self.step(op.try_into().expect("OP_LEN bytes"));
        }
    }

    fn step(&mut self, op: &[u8; OP_LEN]) {
        let kind = op[0];
        let target = op[1] as usize % self.devices();
        let at = u32::from_le_bytes([op[2], op[3], op[4], op[5]]) as u64;
        let mut value = u64::from_le_bytes(op[6..14].try_into().expect("8 bytes"));
        // The high bit points a written value into guest memory: DMA addresses
        // then land in RAM often enough to reach the transfers behind them.
        if kind & 0x80 != 0 {
            value %= MEM_SIZE;
        }
        let size = [1usize, 2, 4, 8][(kind as usize >> 4) & 3];
        let data = value.to_le_bytes();
        let mut buf = [0u8; 8];
        match kind & 0x7 {
            // Guest memory: the structures the next accesses make devices read.
            0 => {
                let addr = at % MEM_SIZE;
                let _ = self.mem.write_slice(&data, GuestAddress(addr));
            }
            1 | 2 if target >= self.pci.len() => {
                let b = &mut self.bus[target - self.pci.len()];
                let (base, len) = b.ranges[at as usize % b.ranges.len()];
                let off = (at >> 8) % len;
                let size = size.min((len - off) as usize);
                if kind & 0x7 == 1 {
                    b.dev.read(base, off, &mut buf[..size]);
                } else {
                    b.dev.write(base, off, &data[..size]);
                }
            }
            1 | 2 => {
                let d = &mut self.pci[target];
                let mut bars = Vec::new();
                if d.memory_enabled() {
                    bars.extend(d.bars());
                }
                if d.io_enabled() {
                    bars.extend(d.io_bars());
                }
                if bars.is_empty() {
                    return;
                }
                let (bar, _, len) = bars[at as usize % bars.len()];
                if len == 0 {
                    return;
                }
                let off = (at >> 4) % len;
                let size = size.min((len - off) as usize);
                if kind & 0x7 == 1 {
                    d.bar_read(bar, off, &mut buf[..size]);
                } else {
                    d.bar_write(bar, off, &data[..size]);
                }
            }
            3 | 4 if target < self.pci.len() => {
                let d = &mut self.pci[target];
                let reg = at as usize % 1024;
                let size = size.min(4);
                let offset = (op[5] as usize % 4) & !(size - 1);
                if kind & 0x7 == 3 {
                    let _ = d.read_config(reg);
                } else {
                    d.write_config(reg, offset as u8, &data[..size]);
                }
            }
            // Registers written back-to-back at one place: the FIFO and data
            // ports (ATA PIO data, fw_cfg data, VGA palette) a loop would drive.
            5 | 6 if target >= self.pci.len() => {
                let b = &mut self.bus[target - self.pci.len()];
                let (base, len) = b.ranges[at as usize % b.ranges.len()];
                let off = (at >> 8) % len;
                let size = size.min((len - off) as usize);
                for _ in 0..(op[1] >> 3) as usize * 16 {
                    if kind & 0x7 == 5 {
                        b.dev.read(base, off, &mut buf[..size]);
                    } else {
                        b.dev.write(base, off, &data[..size]);
                    }
                }
            }
            7 => self.scenario(op),
            _ => {}
        }
    }

    /// A whole request as a driver makes it, with fields the input chooses: the
    /// AHCI command list and table (ATA and ATAPI commands, PRDTs), a fw_cfg DMA
    /// request, a PIIX bus-master transfer. Random bytes alone rarely line up
    /// the several registers and structures one transfer needs.
    fn scenario(&mut self, op: &[u8; OP_LEN]) {
        let mut r = Rng::from_op(op);
        match op[1] % 4 {
            0 => self.ahci_command(&mut r),
            1 => self.fw_cfg_dma(&mut r),
            2 => self.ide_dma(&mut r),
            _ => self.hotplug_event(&mut r),
        }
    }

    /// What the monitor does to a bridge's slot: plug, ask for the unplug, see
    /// whether the guest released it, remove the device.
    fn hotplug_event(&mut self, r: &mut Rng) {
        let what = r.below(5);
        for d in self.pci.iter_mut() {
            let Some(b) = d.as_bridge() else { continue };
            match what {
                0 => {
                    let _ = b.plug();
                }
                1 => {
                    let _ = b.request_unplug();
                }
                2 => {
                    let _ = b.take_unplug_ready();
                }
                3 => b.unplugged(),
                _ => b.set_populated(r.below(2) == 0),
            }
        }
    }

    fn put(&self, addr: u64, bytes: &[u8]) {
        let _ = self.mem.write_slice(bytes, GuestAddress(addr));
    }

    fn ahci_command(&mut self, r: &mut Rng) {
        let port = r.below(2);
        let slot = r.below(32);
        let clb = 0x1000 + port * 0x400;
        let fb = 0x2000 + port * 0x100;
        // The device reads the table 128-byte aligned; so does this.
        let table = r.addr(0x8000 + slot * 0x200) & !0x7f;
        let prdtl = if r.below(16) == 0 { 0xffff } else { r.below(5) };
        const ATA: [u8; 14] = [
            0x25, 0x35, 0x60, 0x61, 0xec, 0xa0, 0xa1, 0xe7, 0xea, 0x06, 0xef, 0x20, 0x40, 0xc8,
        ];
        let cmd = match r.below(8) {
            0 => r.byte(),
            // The CD-ROM speaks PACKET mostly.
            _ if port == 1 && r.below(4) != 0 => 0xa0,
            _ => ATA[r.below(14) as usize],
        };
        // The header's ATAPI and write bits as a driver sets them, now and then not.
        let atapi = (cmd == 0xa0) != (r.below(16) == 0);
        let write = [0x35, 0x61, 0xca, 0x06].contains(&cmd) != (r.below(16) == 0);
        let dw0 = 5 | (atapi as u64) << 5 | (write as u64) << 6 | prdtl << 16;
        let mut header = [0u8; 32];
        header[0..4].copy_from_slice(&(dw0 as u32).to_le_bytes());
        header[8..16].copy_from_slice(&table.to_le_bytes());
        self.put(clb + slot * 32, &header);
        let lba = r.lba((DISK_SIZE / 512) as u64);
        let count = r.count();
        let ncq = cmd == 0x60 || cmd == 0x61;
        let mut fis = [0u8; 20];
        fis[0] = 0x27;
        fis[1] = 0x80;
        fis[2] = cmd;
        fis[3] = match (ncq, cmd) {
            (true, _) => count as u8,
            // PACKET by DMA, as Linux sends it.
            (_, 0xa0) if r.below(4) != 0 => 1,
            _ => r.byte(),
        };
        fis[4..7].copy_from_slice(&lba.to_le_bytes()[..3]);
        fis[7] = 0x40;
        fis[8..11].copy_from_slice(&lba.to_le_bytes()[3..6]);
        fis[11] = if ncq { (count >> 8) as u8 } else { 0 };
        fis[12] = if ncq { (slot << 3) as u8 } else { count as u8 };
        fis[13] = if ncq { 0 } else { (count >> 8) as u8 };
        self.put(table, &fis);
        self.put(table + 0x40, &r.cdb((DISK_SIZE / 2048) as u64));
        // The buffers: mostly as long as the transfer, split over the entries.
        let total = if atapi { 0x1_0000 } else { count.max(1) * 512 };
        let entries = prdtl.clamp(1, 4);
        for i in 0..prdtl.min(4) {
            let mut e = [0u8; 16];
            e[0..8].copy_from_slice(&r.addr(0x10_0000 + i * 0x4_0000).to_le_bytes());
            let dbc = if r.below(16) == 0 {
                r.next() as u32
            } else {
                (total / entries).clamp(2, 0x40_0000) as u32
            };
            e[12..16].copy_from_slice(&(dbc.wrapping_sub(1) & 0x3f_ffff | 1 << 31).to_le_bytes());
            self.put(table + 0x80 + i * 16, &e);
        }

        let Some((bar, _, _)) = self.pci[0].bars().first().copied() else {
            return;
        };
        let regs = 0x100 + port * 0x80;
        let mut tfd = [0u8; 4];
        self.pci[0].bar_read(bar, regs + 0x20, &mut tfd);
        let mut cmd_reg = [0u8; 4];
        self.pci[0].bar_read(bar, regs + 0x18, &mut cmd_reg);
        // Bring the port up when it is not running or reports an error (BSY, DRQ
        // or ERR), and now and then anyway.
        let restart = cmd_reg[0] & 1 == 0 || tfd[0] & 0x89 != 0 || r.below(16) == 0;
        let mut w = |off: u64, v: u32| self.pci[0].bar_write(bar, off, &v.to_le_bytes());
        w(0x04, 1 << 31 | 1 << 1);
        w(regs, clb as u32);
        w(regs + 0x04, 0);
        w(regs + 0x08, fb as u32);
        w(regs + 0x0c, 0);
        if restart {
            // Linux's port bring-up (and error recovery): engine off with the FIS
            // receive, power and spin-up on, COMRESET, errors cleared.
            w(regs + 0x18, 0x16);
            w(regs + 0x2c, 0x301);
            w(regs + 0x2c, 0x300);
            w(regs + 0x30, u32::MAX);
        }
        w(regs + 0x10, u32::MAX);
        w(regs + 0x14, 0xfdc0_00ff);
        w(regs + 0x18, 0x17);
        if ncq {
            w(regs + 0x34, 1 << slot);
        }
        w(regs + 0x38, 1 << slot);
        // Acknowledge, as a driver's interrupt handler would.
        w(regs + 0x10, u32::MAX);
    }

    fn fw_cfg_dma(&mut self, r: &mut Rng) {
        let req = r.addr(0x6000);
        // Selected items: the signature, the id, the file directory, or any key.
        let key = match r.below(4) {
            0 => 0,
            1 => 1,
            2 => 0x19,
            _ => r.byte() as u64 | (r.byte() as u64) << 8,
        };
        let control = (key << 16) as u32 | r.byte() as u32 & 0x1f;
        let mut d = [0u8; 16];
        d[0..4].copy_from_slice(&control.to_be_bytes());
        d[4..8].copy_from_slice(&(r.count() as u32 * 16 + r.below(16) as u32).to_be_bytes());
        d[8..16].copy_from_slice(&r.addr(0x7000).to_be_bytes());
        self.put(req, &d);
        let Some(fw) = self
            .bus
            .iter_mut()
            .find(|b| b.ranges[0].0 == u64::from(FW_CFG_PORT))
        else {
            return;
        };
        let base = u64::from(FW_CFG_PORT);
        fw.dev.write(base, 4, &((req >> 32) as u32).to_be_bytes());
        fw.dev.write(base, 8, &(req as u32).to_be_bytes());
    }

    fn ide_dma(&mut self, r: &mut Rng) {
        let prdt = r.addr(0x9000) & !3;
        let n = r.below(4) + 1;
        for i in 0..n {
            let mut e = [0u8; 8];
            e[0..4].copy_from_slice(&(r.addr(0x10_0000 + i * 0x1_0000) as u32).to_le_bytes());
            e[4..6].copy_from_slice(&(r.count() as u16).wrapping_mul(512).to_le_bytes());
            if i == n - 1 {
                e[6..8].copy_from_slice(&0x8000u16.to_le_bytes());
            }
            self.put(prdt + i * 8, &e);
        }
        let slave = r.below(2) == 1;
        const ATA: [u8; 6] = [0xc8, 0xca, 0x25, 0x35, 0xa0, 0xec];
        let cmd = if r.below(8) == 0 {
            r.byte()
        } else {
            ATA[r.below(6) as usize]
        };
        let lba = r.lba((DISK_SIZE / 512) as u64);
        let count = r.count();
        let cdb = r.cdb((DISK_SIZE / 2048) as u64);
        let Some(ide) = self.pci.iter().position(|d| !d.io_bars().is_empty()) else {
            return;
        };
        let (bar, _, _) = self.pci[ide].io_bars()[0];
        let bm = |m: &mut Machine, off: u64, d: &[u8]| m.pci[ide].bar_write(bar, off, d);
        bm(self, 4, &(prdt as u32).to_le_bytes());
        let Some(tf) = self.bus.iter_mut().find(|b| b.ranges[0].0 == 0x1f0) else {
            return;
        };
        let base = 0x1f0;
        tf.dev.write(
            base,
            6,
            &[0xe0 | (slave as u8) << 4 | (lba >> 24) as u8 & 0xf],
        );
        tf.dev.write(base, 1, &[if cmd == 0xa0 { 1 } else { 0 }]);
        tf.dev.write(base, 2, &[count as u8]);
        tf.dev.write(base, 3, &[lba as u8]);
        tf.dev.write(base, 4, &[(lba >> 8) as u8]);
        tf.dev.write(base, 5, &[(lba >> 16) as u8]);
        tf.dev.write(base, 7, &[cmd]);
        if cmd == 0xa0 {
            for w in cdb.chunks(2) {
                tf.dev.write(base, 0, w);
            }
        }
        let dir = if cmd == 0xca || cmd == 0x35 { 0 } else { 8 };
        bm(self, 0, &[1 | dir]);
        bm(self, 2, &[0x06]);
        bm(self, 0, &[0]);
    }
}

/// The choices of one scenario, drawn from its operation's bytes (xorshift64*).
struct Rng(u64);

impl Rng {
    fn from_op(op: &[u8; OP_LEN]) -> Rng {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for b in op {
            x = (x ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        Rng(x | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    /// A guest address: mostly `usual` (inside RAM), sometimes anywhere in RAM,
    /// near its end (crossing it), or far outside.
    fn addr(&mut self, usual: u64) -> u64 {
        match self.below(32) {
            0 => self.below(MEM_SIZE),
            1 => MEM_SIZE - self.below(0x1000),
            2 => self.next(),
            _ => usual,
        }
    }
    /// A block address on a disk of `blocks`: mostly inside, sometimes at or
    /// past its end, or huge.
    fn lba(&mut self, blocks: u64) -> u64 {
        match self.below(6) {
            0 => blocks - self.below(4),
            1 => blocks + self.below(4),
            2 => self.next() & 0xffff_ffff_ffff,
            _ => self.below(blocks),
        }
    }
    /// A transfer length in blocks: small, zero (which means the maximum to
    /// ATA), or large.
    fn count(&mut self) -> u64 {
        match self.below(12) {
            0 => 0,
            1 => self.below(0x1_0000),
            _ => self.below(16) + 1,
        }
    }
    /// A SCSI CDB for the CD-ROM: common MMC commands with drawn fields.
    fn cdb(&mut self, blocks: u64) -> [u8; 16] {
        const OPS: [u8; 16] = [
            0x28, 0xa8, 0x25, 0x12, 0x5a, 0x03, 0x00, 0x43, 0x46, 0x4a, 0x1b, 0x1e, 0x51, 0xbd,
            0x1a, 0xbe,
        ];
        let mut c = [0u8; 16];
        for b in c.iter_mut() {
            *b = if self.below(2) == 0 { 0 } else { self.byte() };
        }
        c[0] = if self.below(8) == 0 {
            self.byte()
        } else {
            OPS[self.below(16) as usize]
        };
        let lba = self.lba(blocks) as u32;
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        if self.below(4) != 0 {
            // A sane flags byte and a short transfer, as drivers send.
            c[1] = 0;
            c[6..10].copy_from_slice(&[0, 0, self.below(4) as u8 + 1, 0]);
        }
        c
    }
}

impl Default for Machine {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes per operation of a program: kind (bits 0-2 the access, 4-5 its size,
/// 7 "value into guest memory"), target device, a 32-bit place (range, offset,
/// register), a 64-bit value.
pub const OP_LEN: usize = 14;

/// Builds a fresh machine and runs `program` on it.
pub fn run(program: &[u8]) {
    Machine::new().run(program);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: reproducible programs from a seed without a crate; every
    /// fourth operation a whole request (what libFuzzer finds by coverage).
    fn program(seed: u64, ops: usize) -> Vec<u8> {
        let mut x = seed | 1;
        let mut p: Vec<u8> = (0..ops * OP_LEN)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect();
        for op in p.chunks_exact_mut(OP_LEN).step_by(4) {
            op[0] |= 7;
        }
        p
    }

    /// The CI's bounded run of what `fuzz/` runs for hours: seeded programs
    /// (seed printed by the failure) against fresh machines.
    #[test]
    fn random_register_programs_never_panic_or_dma_outside_memory() {
        for seed in 1..=24u64 {
            let p = program(seed, 4000);
            let r = std::panic::catch_unwind(|| run(&p));
            assert!(
                r.is_ok(),
                "device fuzz program with seed {seed} panicked (rerun: devfuzz::run(&program({seed}, 4000)))"
            );
        }
        let [reads, writes] = DISK_TRANSFERS.each_ref().map(|c| c.load(Ordering::Relaxed));
        eprintln!("device fuzz: {reads} disk reads, {writes} disk writes");
        assert!(
            reads > 100 && writes > 50,
            "the programs no longer reach the disks' data path: {reads} reads, {writes} writes"
        );
    }

    #[test]
    fn every_pci_device_decodes_its_bars_after_setup() {
        let m = Machine::new();
        for d in m.pci.iter().filter(|d| d.bridge().is_none()) {
            assert!(
                !d.bars().is_empty() || !d.io_bars().is_empty(),
                "a device without BARs would never be reached"
            );
        }
    }
}
