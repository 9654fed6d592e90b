//! IDE: the PIIX3 IDE function (8086:7010, 00:01.1 on i440FX) in compatibility
//! mode, its two channels at the legacy ports (primary 0x1f0-0x1f7 + 0x3f6, IRQ 14;
//! secondary 0x170-0x177 + 0x376, IRQ 15), master and slave on each.
//!
//! A channel is the ATA register file of the selected drive (ATA8-ACS §6, ATA/ATAPI-6
//! for the PIO protocols): the host writes the task file and a command; data moves
//! through the 16/32-bit data port one DRQ block at a time, each block announced by
//! an interrupt (PIO data-in), or after it (PIO data-out); ATAPI's PACKET command
//! takes its 12-byte CDB through the data port and returns data in pieces of at
//! most the byte count the host put in the LBA mid/high registers, with the
//! interrupt reason in the sector count register. The drives are the same
//! [`AtaDevice`]s the AHCI adapter uses.
//!
//! Bus-master DMA ([`super::bmdma`]): the function's BAR4 holds each channel's
//! bus-master registers; READ/WRITE DMA and ATAPI packets with the DMA bit move
//! their data through the PRD table the driver gives, once it sets the start
//! bit. Linux's `ata_piix` uses it (MWDMA2 on PIIX3, as under QEMU); SeaBIOS
//! stays on PIO.

use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{debug, warn};
use vm_memory::{GuestAddress, GuestMemoryBackend, VolatileSlice};
use vmm_sys_util::eventfd::EventFd;

use super::bmdma::{self, Action, BusMaster};
use super::device::{cmd, error, status, AtaDevice, Direction, Outcome, Taskfile};
use crate::devices::bus::BusDevice;
use crate::pci::config::{COMMAND_IO, COMMAND_MEMORY, CONFIG_DWORDS};
use crate::pci::{BarKind, ConfigSpace, PciDevice, PciHeader};
use crate::scsi::Data;
use crate::virtio::GuestMem;

/// Command block and control ports, IRQs of the two channels.
pub const PORTS: [(u16, u16, u32); 2] = [(0x1f0, 0x3f6, 14), (0x170, 0x376, 15)];

/// Device control register bits.
const CTL_NIEN: u8 = 0x02;
const CTL_SRST: u8 = 0x04;
const CTL_HOB: u8 = 0x80;

/// ATAPI interrupt reason (sector count register): C/D and I/O.
const REASON_CD: u8 = 1;
const REASON_IO: u8 = 2;

/// Largest MMC reply other than READ data (allocation lengths are 16-bit).
const MMC_REPLY_MAX: usize = 64 << 10;

/// What the data port is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    /// The host reads `buf[pos..]`, in blocks of `block` bytes.
    PioIn {
        block: usize,
    },
    /// The host writes `buf[pos..]`, in blocks of `block` bytes; then `tf` runs.
    PioOut {
        block: usize,
        tf: Taskfile,
    },
    /// The host writes the 12-byte CDB of a PACKET command (`dma`: its data
    /// goes through the bus master).
    Packet {
        dma: bool,
    },
    /// A DMA command (`cdb`: an ATAPI packet's) waits for the bus master's
    /// start bit.
    Dma {
        tf: Taskfile,
        cdb: [u8; 12],
    },
    /// The host reads ATAPI data in pieces of at most `limit` bytes; `end` is
    /// where the current piece ends, `outcome` the command's final registers.
    AtapiIn {
        limit: usize,
        end: usize,
        status: u8,
        error: u8,
    },
}

/// One IDE channel: two drive positions and the shared register file.
pub struct IdeChannel {
    drives: [Option<AtaDevice>; 2],
    irq: Option<EventFd>,
    features: [u8; 2],
    nsector: [u8; 2],
    lbal: [u8; 2],
    lbam: [u8; 2],
    lbah: [u8; 2],
    select: u8,
    control: u8,
    status: u8,
    error: u8,
    buf: Vec<u8>,
    pos: usize,
    phase: Phase,
    /// No task file register was written since the last reset: the sector
    /// count and LBA registers still show the selected drive's signature.
    since_reset: bool,
    /// The channel's bus-master registers, and the memory it reaches (none:
    /// the function has no BAR4 and DMA commands are aborted).
    bm: BusMaster,
    mem: Option<GuestMem>,
}

impl IdeChannel {
    /// A channel with `master` and `slave` (either may be absent); `irq` is the
    /// irqfd of its ISA interrupt (edge: each write is one interrupt).
    pub fn new(master: Option<AtaDevice>, slave: Option<AtaDevice>, irq: Option<EventFd>) -> Self {
        let mut c = IdeChannel {
            drives: [master, slave],
            irq,
            features: [0; 2],
            nsector: [0; 2],
            lbal: [0; 2],
            lbam: [0; 2],
            lbah: [0; 2],
            select: 0xa0,
            control: 0,
            status: 0,
            error: 0,
            buf: Vec::new(),
            pos: 0,
            phase: Phase::Idle,
            since_reset: true,
            bm: BusMaster::default(),
            mem: None,
        };
        c.reset();
        c
    }

    /// Gives the channel a bus master that reaches `mem`.
    pub fn with_bus_master(mut self, mem: GuestMem) -> Self {
        self.mem = Some(mem);
        self
    }

    fn selected(&self) -> usize {
        usize::from(self.select >> 4 & 1)
    }

    fn drive(&mut self) -> Option<&mut AtaDevice> {
        let i = self.selected();
        self.drives[i].as_mut()
    }

    /// A reset (power-on or SRST): each drive's signature in the task file.
    fn reset(&mut self) {
        self.phase = Phase::Idle;
        self.buf.clear();
        self.pos = 0;
        self.select = 0xa0;
        self.since_reset = true;
        self.error = 1; // diagnostics passed
        self.nsector = [1, 0];
        self.lbal = [1, 0];
        let sig = self.drives[0]
            .as_ref()
            .or(self.drives[1].as_ref())
            .map_or(0, |d| d.signature());
        self.lbam = [(sig >> 16) as u8, 0];
        self.lbah = [(sig >> 24) as u8, 0];
        self.status = self.drives[0].as_ref().map_or(0, |d| d.reset_status());
    }

    fn interrupt(&mut self) {
        if self.mem.is_some() {
            // The bus master's interrupt bit follows the drive's line (drivers
            // check it to tell their DMA completion from a spurious interrupt).
            self.bm.status |= bmdma::STATUS_INTERRUPT;
        }
        if self.control & CTL_NIEN == 0 {
            if let Some(fd) = &self.irq {
                let _ = fd.write(1);
            }
        }
    }

    /// The task file as the command sees it (LBA48 with the previous contents).
    fn taskfile(&self, command: u8) -> Taskfile {
        Taskfile {
            command,
            features: u16::from(self.features[0]) | u16::from(self.features[1]) << 8,
            count: u16::from(self.nsector[0]) | u16::from(self.nsector[1]) << 8,
            lba: u64::from(self.lbal[0])
                | u64::from(self.lbam[0]) << 8
                | u64::from(self.lbah[0]) << 16
                | u64::from(self.lbal[1]) << 24
                | u64::from(self.lbam[1]) << 32
                | u64::from(self.lbah[1]) << 40,
            device: self.select,
        }
    }

    /// Reads the command block register at `offset` (0-7), or with `control` the
    /// alternate status.
    pub fn read_reg(&mut self, offset: u64, data: &mut [u8]) {
        if offset == 0 {
            self.read_data(data);
            return;
        }
        let absent = self.drives[self.selected()].is_none();
        let hob = usize::from(self.control & CTL_HOB != 0);
        if self.since_reset && (2..=5).contains(&offset) {
            // Each drive shows its own signature after a reset.
            let sig = self.drives[self.selected()]
                .as_ref()
                .map_or(0, |d| d.signature());
            data.fill(0);
            data[0] = (sig >> (8 * (offset - 2))) as u8;
            return;
        }
        let v = match offset {
            1 => self.error,
            2 => self.nsector[hob],
            3 => self.lbal[hob],
            4 => self.lbam[hob],
            5 => self.lbah[hob],
            6 => self.select,
            _ if absent => 0,
            _ => self.status_of_selected(),
        };
        data.fill(0);
        data[0] = if absent && offset == 7 { 0 } else { v };
    }

    /// Writes the command block register at `offset` (0-7).
    pub fn write_reg(&mut self, offset: u64, data: &[u8]) {
        if offset == 0 {
            self.write_data(data);
            return;
        }
        let v = data[0];
        // Writing a task file register clears HOB and shifts the previous value.
        let shift = |r: &mut [u8; 2]| {
            r[1] = r[0];
            r[0] = v;
        };
        if (1..=5).contains(&offset) {
            self.since_reset = false;
        }
        match offset {
            1 => shift(&mut self.features),
            2 => shift(&mut self.nsector),
            3 => shift(&mut self.lbal),
            4 => shift(&mut self.lbam),
            5 => shift(&mut self.lbah),
            6 => self.select = v | 0xa0,
            _ => self.command(v),
        }
        if offset != 7 {
            self.control &= !CTL_HOB;
        }
    }

    /// The alternate status (no interrupt acknowledge) and device control.
    pub fn read_control(&mut self, data: &mut [u8]) {
        data.fill(0);
        if self.drives[self.selected()].is_some() {
            data[0] = self.status_of_selected();
        }
    }

    /// The status register; right after a reset each drive shows its own.
    fn status_of_selected(&self) -> u8 {
        match &self.drives[self.selected()] {
            Some(d) if self.since_reset => d.reset_status(),
            Some(_) => self.status,
            None => 0,
        }
    }

    pub fn write_control(&mut self, v: u8) {
        let was = self.control;
        self.control = v;
        if was & CTL_SRST != 0 && v & CTL_SRST == 0 {
            self.reset();
        } else if v & CTL_SRST != 0 {
            self.status = status::BSY;
        }
    }

    fn command(&mut self, c: u8) {
        let absent = self.drives[self.selected()].is_none();
        // EXECUTE DEVICE DIAGNOSTIC addresses the channel, everything else a drive.
        if absent && c != cmd::EXECUTE_DEVICE_DIAGNOSTIC {
            return;
        }
        self.phase = Phase::Idle;
        self.buf.clear();
        self.pos = 0;
        self.since_reset = false;
        let tf = self.taskfile(c);
        let i = self.selected();
        let Some(drive) = self.drives[i].as_mut() else {
            self.reset();
            self.interrupt();
            return;
        };
        let dma = matches!(
            c,
            cmd::READ_DMA
                | cmd::READ_DMA_EXT
                | cmd::WRITE_DMA
                | cmd::WRITE_DMA_EXT
                | cmd::READ_FPDMA_QUEUED
                | cmd::WRITE_FPDMA_QUEUED
        );
        if c == cmd::PACKET && drive.is_atapi() {
            let dma = tf.features & 1 != 0;
            if dma && self.mem.is_none() {
                // DMA requested: there is no bus master.
                return self.finish(status::DRDY | status::ERR, error::ABRT);
            }
            self.nsector[0] = REASON_CD;
            self.status = status::DRDY | status::DRQ;
            self.phase = Phase::Packet { dma };
            return;
        }
        if dma {
            let queued = matches!(c, cmd::READ_FPDMA_QUEUED | cmd::WRITE_FPDMA_QUEUED);
            if self.mem.is_none() || queued || drive.is_atapi() {
                return self.finish(status::DRDY | status::ERR, error::ABRT);
            }
            self.status = status::DRDY | status::DSC | status::DRQ;
            self.phase = Phase::Dma { tf, cdb: [0; 12] };
            debug!(command = c, started = self.bm.started(), "IDE DMA command");
            if self.bm.started() {
                self.run_dma();
            }
            return;
        }
        let block = if matches!(
            c,
            cmd::READ_MULTIPLE
                | cmd::READ_MULTIPLE_EXT
                | cmd::WRITE_MULTIPLE
                | cmd::WRITE_MULTIPLE_EXT
        ) {
            usize::from(drive.multiple()) * 512
        } else {
            512
        };
        match drive.data_phase(&tf) {
            (Direction::In, len) if len > 0 => {
                let mut buf = vec![0u8; len as usize];
                let out = {
                    let s = [VolatileSlice::from(&mut buf[..])];
                    drive.execute(&tf, &[], Data::In(&s))
                };
                if out.failed() {
                    return self.finish(out.status, out.error);
                }
                buf.truncate(out.transferred as usize);
                self.buf = buf;
                self.status = status::DRDY | status::DSC | status::DRQ;
                self.phase = Phase::PioIn { block };
                self.interrupt();
            }
            (Direction::Out, len) if len > 0 => {
                self.buf = vec![0u8; len as usize];
                self.status = status::DRDY | status::DSC | status::DRQ;
                self.phase = Phase::PioOut { block, tf };
            }
            _ => {
                let out = drive.execute(&tf, &[], Data::None);
                if c == cmd::CHECK_POWER_MODE && !out.failed() {
                    self.nsector[0] = 0xff;
                }
                self.finish(out.status, out.error);
            }
        }
    }

    /// Ends a command: status and error, interrupt.
    fn finish(&mut self, st: u8, err: u8) {
        self.phase = Phase::Idle;
        self.status = st;
        self.error = err;
        self.interrupt();
    }

    fn read_data(&mut self, data: &mut [u8]) {
        data.fill(0);
        let n = data.len().min(self.buf.len().saturating_sub(self.pos));
        match self.phase {
            Phase::PioIn { .. } | Phase::AtapiIn { .. } => {}
            _ => return,
        }
        data[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        match self.phase {
            Phase::PioIn { block } => {
                if self.pos >= self.buf.len() {
                    self.phase = Phase::Idle;
                    self.status = status::DRDY | status::DSC;
                } else if self.pos.is_multiple_of(block) {
                    self.interrupt();
                }
            }
            Phase::AtapiIn {
                limit,
                end,
                status: st,
                error: err,
            } if self.pos >= end => self.atapi_next(limit, st, err),
            _ => {}
        }
    }

    fn write_data(&mut self, data: &[u8]) {
        match self.phase {
            Phase::PioOut { .. } | Phase::Packet { .. } => {}
            _ => return,
        }
        let room = match self.phase {
            Phase::Packet { .. } => 12usize.saturating_sub(self.buf.len()),
            _ => self.buf.len().saturating_sub(self.pos),
        };
        let n = data.len().min(room);
        match self.phase {
            Phase::Packet { dma } => {
                self.buf.extend_from_slice(&data[..n]);
                if self.buf.len() >= 12 {
                    if dma {
                        self.packet_dma();
                    } else {
                        self.packet();
                    }
                }
            }
            Phase::PioOut { block, tf } => {
                self.buf[self.pos..self.pos + n].copy_from_slice(&data[..n]);
                self.pos += n;
                if self.pos >= self.buf.len() {
                    let mut buf = std::mem::take(&mut self.buf);
                    let out = match self.drive() {
                        Some(d) => {
                            let s = [VolatileSlice::from(&mut buf[..])];
                            d.execute(&tf, &[], Data::Out(&s))
                        }
                        None => return,
                    };
                    self.finish(out.status, out.error);
                } else if self.pos.is_multiple_of(block) {
                    self.interrupt();
                }
            }
            _ => {}
        }
    }

    /// Runs the CDB now in `buf` and starts the data-in phase or completes.
    fn packet(&mut self) {
        let cdb: Vec<u8> = std::mem::take(&mut self.buf);
        let tf = self.taskfile(cmd::PACKET);
        let limit = match usize::from(self.lbam[0]) | usize::from(self.lbah[0]) << 8 {
            0 | 0xffff => 0xfffe,
            n => n & !1,
        };
        // READ(10)/(12) of n blocks bring n × 2048 bytes; everything else fits 64 KiB.
        let len = match cdb[0] {
            0x28 => usize::from(u16::from_be_bytes([cdb[7], cdb[8]])) * 2048,
            0xa8 => u32::from_be_bytes([cdb[6], cdb[7], cdb[8], cdb[9]]) as usize * 2048,
            _ => MMC_REPLY_MAX,
        };
        let mut buf = vec![0u8; len.min(64 << 20)];
        let Some(drive) = self.drive() else {
            return;
        };
        let empty = buf.is_empty();
        let out = {
            let s = [VolatileSlice::from(&mut buf[..])];
            let data = if empty { Data::None } else { Data::In(&s) };
            drive.execute(&tf, &cdb, data)
        };
        buf.truncate(out.transferred as usize);
        debug!(
            op = cdb[0],
            bytes = buf.len(),
            status = out.status,
            "IDE ATAPI packet"
        );
        self.buf = buf;
        self.pos = 0;
        self.atapi_next(limit, out.status, out.error);
    }

    /// An ATAPI packet with the DMA bit: it runs once the bus master starts.
    fn packet_dma(&mut self) {
        let mut cdb = [0u8; 12];
        cdb.copy_from_slice(&self.buf[..12]);
        self.buf.clear();
        let tf = self.taskfile(cmd::PACKET);
        self.status = status::DRDY | status::DSC | status::DRQ;
        self.phase = Phase::Dma { tf, cdb };
        if self.bm.started() {
            self.run_dma();
        }
    }

    /// Runs the pending DMA command through the PRD table: the drive moves the
    /// data between the guest's buffers and the image, then the bus master and
    /// the drive report completion with one interrupt.
    fn run_dma(&mut self) {
        let Phase::Dma { tf, cdb } = self.phase else {
            return;
        };
        let i = self.selected();
        let (Some(mem), Some(drive)) = (self.mem.as_ref(), self.drives[i].as_mut()) else {
            return;
        };
        let packet: &[u8] = if tf.command == cmd::PACKET { &cdb } else { &[] };
        let slices: Option<Vec<VolatileSlice<'_>>> = self.bm.prd_list(mem).and_then(|prds| {
            prds.iter()
                .map(|&(addr, len)| mem.get_slice(GuestAddress(addr), len).ok())
                .collect()
        });
        let (out, bus_error) = match slices {
            Some(s) => {
                let data = match (s.is_empty(), self.bm.to_memory()) {
                    (true, _) => Data::None,
                    (false, true) => Data::In(&s),
                    (false, false) => Data::Out(&s),
                };
                (drive.execute(&tf, packet, data), false)
            }
            None => {
                warn!(
                    prd = self.bm.prd,
                    "IDE: a PRD table or buffer is outside RAM"
                );
                (Outcome::abort(), true)
            }
        };
        debug!(
            command = tf.command,
            op = packet.first().copied(),
            bytes = out.transferred,
            status = out.status,
            "IDE DMA"
        );
        self.bm.complete(bus_error);
        if tf.command == cmd::PACKET {
            self.nsector[0] = REASON_CD | REASON_IO;
        }
        self.finish(out.status, out.error);
    }

    /// Reads the bus-master register byte at `offset` (0-7).
    pub fn read_bus_master(&self, offset: u64) -> u8 {
        self.bm.read(offset)
    }

    /// Writes the bus-master register byte at `offset`; the start bit runs a
    /// DMA command that waits for it.
    pub fn write_bus_master(&mut self, offset: u64, v: u8) {
        tracing::trace!(offset, v, phase = ?self.phase, "IDE bus master write");
        if self.bm.write(offset, v) == Action::Start {
            self.run_dma();
        }
    }

    /// The next piece of ATAPI data, or the completion once all was read.
    fn atapi_next(&mut self, limit: usize, st: u8, err: u8) {
        let left = self.buf.len() - self.pos;
        if left == 0 {
            self.nsector[0] = REASON_CD | REASON_IO;
            return self.finish(st, err);
        }
        let piece = left.min(limit);
        self.lbam[0] = piece as u8;
        self.lbah[0] = (piece >> 8) as u8;
        self.nsector[0] = REASON_IO;
        self.status = status::DRDY | status::DRQ;
        self.phase = Phase::AtapiIn {
            limit,
            end: self.pos + piece,
            status: st,
            error: err,
        };
        self.interrupt();
    }
}

/// A channel as its two front ends share it: the legacy ports and the bus
/// master in the PCI function's BAR4.
pub type SharedChannel = Arc<Mutex<IdeChannel>>;

fn lock(c: &SharedChannel) -> MutexGuard<'_, IdeChannel> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// One channel's ports on the I/O bus: the command block (8 ports) and the
/// control port.
pub struct IdePorts(pub SharedChannel);

impl BusDevice for IdePorts {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let mut c = lock(&self.0);
        if PORTS.iter().any(|p| u64::from(p.1) == base) {
            c.read_control(data);
        } else {
            c.read_reg(offset, data);
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut c = lock(&self.0);
        if PORTS.iter().any(|p| u64::from(p.1) == base) {
            c.write_control(data[0]);
        } else {
            c.write_reg(offset, data);
        }
    }
}

/// BAR4: the bus-master I/O BAR.
const BMIDE_BAR: usize = 4;

/// The PIIX3 IDE PCI function: identity, the timing registers drivers program
/// and, with channels given, the bus master in BAR4; the channels' task files
/// are at the legacy ports.
pub struct PiixIde {
    config: ConfigSpace,
    channels: Vec<SharedChannel>,
}

impl Default for PiixIde {
    fn default() -> Self {
        Self::new()
    }
}

impl PiixIde {
    /// The function with its bus master over `channels` (primary, secondary),
    /// BAR4 at `port`.
    pub fn with_bus_master(channels: Vec<SharedChannel>, port: u64) -> Self {
        let mut ide = Self::new();
        ide.config.add_bar(BMIDE_BAR, bmdma::BAR_SIZE, BarKind::Io);
        ide.config.set_bar_address(BMIDE_BAR, port);
        ide.channels = channels;
        ide
    }

    /// The function without a bus master (PIO only).
    pub fn new() -> Self {
        let mut config = ConfigSpace::new(PciHeader {
            vendor: 0x8086,
            device: 0x7010,
            revision: 0,
            // Mass storage, IDE, compatibility mode on both channels, bus-master capable.
            class: 0x01_01_80,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        });
        // IDETIM, SIDETIM, UDMA control and timing: storage for the driver.
        config.set_writable(0x40, 0x18);
        // Both channels decoded (IDETIM bit 15), as SeaBIOS sets them up.
        config.set_byte(0x41, 0x80);
        config.set_byte(0x43, 0x80);
        PiixIde {
            config,
            channels: Vec::new(),
        }
    }

    /// The channel and register a BAR4 port offset falls on.
    fn bus_master_reg(&self, offset: u64) -> Option<(&SharedChannel, u64)> {
        let c = self
            .channels
            .get((offset / bmdma::PORTS_PER_CHANNEL) as usize)?;
        Some((c, offset % bmdma::PORTS_PER_CHANNEL))
    }
}

impl PciDevice for PiixIde {
    fn state_name(&self) -> String {
        "PIIX IDE controller".into()
    }
    fn read_config(&mut self, reg: usize) -> u32 {
        if reg >= CONFIG_DWORDS {
            return 0;
        }
        self.config.read(reg)
    }
    fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]) {
        if reg < CONFIG_DWORDS {
            self.config.write(reg, offset, data);
        }
    }
    fn bars(&self) -> Vec<(usize, u64, u64)> {
        Vec::new()
    }
    fn memory_enabled(&self) -> bool {
        self.config.command() & COMMAND_MEMORY != 0
    }
    fn io_bars(&self) -> Vec<(usize, u64, u64)> {
        self.config.io_bars()
    }
    fn io_enabled(&self) -> bool {
        self.config.command() & COMMAND_IO != 0
    }
    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if bar != BMIDE_BAR {
            return;
        }
        for (i, b) in data.iter_mut().enumerate() {
            if let Some((c, reg)) = self.bus_master_reg(offset + i as u64) {
                *b = lock(c).read_bus_master(reg);
            }
        }
    }
    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != BMIDE_BAR {
            return;
        }
        for (i, &b) in data.iter().enumerate() {
            if let Some((c, reg)) = self.bus_master_reg(offset + i as u64) {
                lock(c).write_bus_master(reg, b);
            }
        }
    }
    fn set_multifunction(&mut self) {
        self.config.set_multifunction(true);
    }
}
