//! One ATA drive as the controllers (AHCI, IDE) see it: a command in the ATA
//! task file registers, the data in the guest's buffers, and the status and
//! error registers afterwards.
//!
//! Both kinds sit on the SCSI target layer ([`crate::scsi`]) so the block I/O,
//! statistics, read-only checks and CD media rules exist once: an ATA disk's
//! READ/WRITE DMA becomes an SBC READ(16)/WRITE(16) on a [`ScsiDevice`] disk,
//! and an ATAPI CD-ROM's PACKET command carries an MMC CDB that the
//! [`ScsiDevice`] CD-ROM executes as it is (ATAPI is MMC over ATA packets).
//! What is ATA's own lives here: IDENTIFY data, SET FEATURES, the error
//! register, DATA SET MANAGEMENT (TRIM).

use std::sync::{Arc, Mutex, MutexGuard};

use vm_memory::{Bytes, VolatileSlice};

use super::identify::{self, IdentifyInfo};
use crate::scsi::{self, op, Data, ScsiDevice, Sense};

/// Status register bits (ATA8-ACS §6.1).
pub mod status {
    /// Error: see the error register.
    pub const ERR: u8 = 0x01;
    /// Data request: a PIO data block is ready.
    pub const DRQ: u8 = 0x08;
    /// Seek complete (obsolete, set as drives do).
    pub const DSC: u8 = 0x10;
    /// Device fault.
    pub const DF: u8 = 0x20;
    /// Device ready.
    pub const DRDY: u8 = 0x40;
    /// Busy.
    pub const BSY: u8 = 0x80;
}

/// Error register bits.
pub mod error {
    /// Command aborted.
    pub const ABRT: u8 = 0x04;
    /// ID (address) not found.
    pub const IDNF: u8 = 0x10;
    /// Uncorrectable data error.
    pub const UNC: u8 = 0x40;
}

/// ATA command opcodes (ATA8-ACS, and the ATAPI ones of MMC).
pub mod cmd {
    pub const DATA_SET_MANAGEMENT: u8 = 0x06;
    pub const DEVICE_RESET: u8 = 0x08;
    pub const RECALIBRATE: u8 = 0x10;
    pub const READ_SECTORS: u8 = 0x20;
    pub const READ_SECTORS_EXT: u8 = 0x24;
    pub const READ_DMA_EXT: u8 = 0x25;
    pub const READ_MULTIPLE_EXT: u8 = 0x29;
    pub const READ_LOG_EXT: u8 = 0x2f;
    pub const WRITE_SECTORS: u8 = 0x30;
    pub const WRITE_SECTORS_EXT: u8 = 0x34;
    pub const WRITE_DMA_EXT: u8 = 0x35;
    pub const WRITE_MULTIPLE_EXT: u8 = 0x39;
    pub const READ_VERIFY: u8 = 0x40;
    pub const READ_VERIFY_EXT: u8 = 0x42;
    pub const READ_FPDMA_QUEUED: u8 = 0x60;
    pub const WRITE_FPDMA_QUEUED: u8 = 0x61;
    pub const SEEK: u8 = 0x70;
    pub const EXECUTE_DEVICE_DIAGNOSTIC: u8 = 0x90;
    pub const INITIALIZE_DEVICE_PARAMETERS: u8 = 0x91;
    pub const PACKET: u8 = 0xa0;
    pub const IDENTIFY_PACKET_DEVICE: u8 = 0xa1;
    pub const READ_MULTIPLE: u8 = 0xc4;
    pub const WRITE_MULTIPLE: u8 = 0xc5;
    pub const SET_MULTIPLE_MODE: u8 = 0xc6;
    pub const READ_DMA: u8 = 0xc8;
    pub const WRITE_DMA: u8 = 0xca;
    pub const STANDBY_IMMEDIATE: u8 = 0xe0;
    pub const IDLE_IMMEDIATE: u8 = 0xe1;
    pub const STANDBY: u8 = 0xe2;
    pub const IDLE: u8 = 0xe3;
    pub const CHECK_POWER_MODE: u8 = 0xe5;
    pub const SLEEP: u8 = 0xe6;
    pub const FLUSH_CACHE: u8 = 0xe7;
    pub const FLUSH_CACHE_EXT: u8 = 0xea;
    pub const IDENTIFY_DEVICE: u8 = 0xec;
    pub const SET_FEATURES: u8 = 0xef;
}

/// The task file of one command (LBA48 layout: the "previous" bytes already
/// folded into the high halves).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Taskfile {
    pub command: u8,
    pub features: u16,
    pub count: u16,
    /// 48-bit LBA (28-bit commands use bits 0-27, the top four from `device`).
    pub lba: u64,
    pub device: u8,
}

/// Direction of a command's data phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    None,
    /// Device to host.
    In,
    /// Host to device.
    Out,
}

/// The registers after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub status: u8,
    pub error: u8,
    /// Bytes moved through the data buffers.
    pub transferred: u64,
}

impl Outcome {
    fn ok(transferred: u64) -> Self {
        Outcome {
            status: status::DRDY | status::DSC,
            error: 0,
            transferred,
        }
    }
    /// ABORTED COMMAND.
    pub fn abort() -> Self {
        Outcome {
            status: status::DRDY | status::ERR,
            error: error::ABRT,
            transferred: 0,
        }
    }
    /// Whether the command failed.
    pub fn failed(&self) -> bool {
        self.status & status::ERR != 0
    }
}

/// Signatures a drive leaves in the task file after a reset (ATA8-ACS §9.12):
/// (sector count, LBA low, LBA mid, LBA high) packed as AHCI's PxSIG.
pub const SIGNATURE_ATA: u32 = 0x0000_0101;
/// The ATAPI signature (LBA mid 0x14, high 0xEB).
pub const SIGNATURE_ATAPI: u32 = 0xeb14_0101;

/// How a drive is set up.
#[derive(Debug, Clone)]
pub struct DriveConfig {
    /// Serial number; QEMU's `QM000nn` style when `None`.
    pub serial: Option<String>,
    /// Pass TRIM to the image (`discard='unmap'`).
    pub discard: bool,
    pub wwn: Option<u64>,
    /// NCQ queue depth offered (AHCI); `None` on IDE.
    pub ncq_depth: Option<u8>,
}

/// An ATA disk or an ATAPI CD-ROM.
pub struct AtaDevice {
    /// Shared with the removable-media registry for CD-ROMs.
    unit: Arc<Mutex<ScsiDevice>>,
    atapi: bool,
    cfg: DriveConfig,
    /// Default serial when the domain gives none.
    default_serial: String,
    write_cache: bool,
    /// Sectors per DRQ block of READ/WRITE MULTIPLE.
    multiple: u16,
}

impl AtaDevice {
    /// A drive over `unit` (a [`scsi::DeviceKind::Disk`] or `Cdrom` unit); `index` numbers it
    /// for the default serial.
    pub fn new(unit: Arc<Mutex<ScsiDevice>>, cfg: DriveConfig, index: u32) -> Self {
        let (atapi, write_cache) = {
            let u = unit.lock().unwrap_or_else(|e| e.into_inner());
            (u.kind() == scsi::DeviceKind::Cdrom, u.writeback())
        };
        AtaDevice {
            atapi,
            write_cache,
            unit,
            cfg,
            default_serial: format!("QM{:05}", index + 1),
            multiple: identify::MAX_MULTIPLE,
        }
    }

    /// Whether this is an ATAPI (packet) device.
    pub fn is_atapi(&self) -> bool {
        self.atapi
    }

    /// The signature after a reset.
    pub fn signature(&self) -> u32 {
        if self.atapi {
            SIGNATURE_ATAPI
        } else {
            SIGNATURE_ATA
        }
    }

    /// The status register after a reset: disks ready, ATAPI devices leave
    /// DRDY clear until their first command (as QEMU's `ide_reset`).
    pub fn reset_status(&self) -> u8 {
        if self.atapi {
            0
        } else {
            status::DRDY | status::DSC
        }
    }

    /// The SCSI unit underneath (media state of a CD-ROM).
    pub fn unit(&self) -> &Arc<Mutex<ScsiDevice>> {
        &self.unit
    }

    fn lock(&self) -> MutexGuard<'_, ScsiDevice> {
        self.unit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Capacity in 512-byte sectors (a disk's; 0 for CD-ROMs, whose size the
    /// guest learns through READ CAPACITY).
    fn sectors(&self) -> u64 {
        if self.atapi {
            0
        } else {
            self.lock().blocks()
        }
    }

    /// The identify data (IDENTIFY DEVICE for disks, IDENTIFY PACKET DEVICE for CDs).
    pub fn identify(&self) -> [u16; 256] {
        let info = IdentifyInfo {
            serial: self.cfg.serial.as_deref().unwrap_or(&self.default_serial),
            model: if self.atapi {
                "QEMU DVD-ROM"
            } else {
                "QEMU HARDDISK"
            },
            sectors: self.sectors(),
            write_cache: self.write_cache,
            trim: self.cfg.discard,
            wwn: self.cfg.wwn,
            ncq_depth: self.cfg.ncq_depth,
        };
        if self.atapi {
            identify::cdrom(&info)
        } else {
            identify::disk(&info)
        }
    }

    /// Which way the data of `tf` flows (for transports that must know before
    /// executing, like IDE PIO), and how many bytes (0 when unknown: PACKET).
    pub fn data_phase(&self, tf: &Taskfile) -> (Direction, u64) {
        let sectors = |ext: bool| u64::from(sector_count(tf.count, ext)) * 512;
        match tf.command {
            cmd::IDENTIFY_DEVICE | cmd::IDENTIFY_PACKET_DEVICE => (Direction::In, 512),
            cmd::READ_SECTORS | cmd::READ_MULTIPLE | cmd::READ_DMA => {
                (Direction::In, sectors(false))
            }
            cmd::READ_SECTORS_EXT
            | cmd::READ_MULTIPLE_EXT
            | cmd::READ_DMA_EXT
            | cmd::READ_LOG_EXT => (Direction::In, sectors(true)),
            cmd::WRITE_SECTORS | cmd::WRITE_MULTIPLE | cmd::WRITE_DMA => {
                (Direction::Out, sectors(false))
            }
            cmd::WRITE_SECTORS_EXT | cmd::WRITE_MULTIPLE_EXT | cmd::WRITE_DMA_EXT => {
                (Direction::Out, sectors(true))
            }
            cmd::READ_FPDMA_QUEUED => (
                Direction::In,
                u64::from(sector_count(tf.features, true)) * 512,
            ),
            cmd::WRITE_FPDMA_QUEUED => (
                Direction::Out,
                u64::from(sector_count(tf.features, true)) * 512,
            ),
            cmd::DATA_SET_MANAGEMENT => (Direction::Out, u64::from(tf.count.max(1)) * 512),
            cmd::PACKET => (Direction::In, 0),
            _ => (Direction::None, 0),
        }
    }

    /// Executes an ATA command; `packet` is the CDB of a PACKET command.
    pub fn execute(&mut self, tf: &Taskfile, packet: &[u8], data: Data<'_, '_>) -> Outcome {
        if self.atapi {
            return self.execute_atapi(tf, packet, data);
        }
        match tf.command {
            cmd::IDENTIFY_DEVICE => reply(&identify::bytes(&self.identify()), data),
            cmd::READ_DMA | cmd::READ_SECTORS | cmd::READ_MULTIPLE => {
                self.rw(lba28(tf), sector_count(tf.count, false), false, data)
            }
            cmd::READ_DMA_EXT | cmd::READ_SECTORS_EXT | cmd::READ_MULTIPLE_EXT => {
                self.rw(tf.lba, sector_count(tf.count, true), false, data)
            }
            cmd::WRITE_DMA | cmd::WRITE_SECTORS | cmd::WRITE_MULTIPLE => {
                self.rw(lba28(tf), sector_count(tf.count, false), true, data)
            }
            cmd::WRITE_DMA_EXT | cmd::WRITE_SECTORS_EXT | cmd::WRITE_MULTIPLE_EXT => {
                self.rw(tf.lba, sector_count(tf.count, true), true, data)
            }
            // NCQ: the sector count is in the features register.
            cmd::READ_FPDMA_QUEUED if self.cfg.ncq_depth.is_some() => {
                self.rw(tf.lba, sector_count(tf.features, true), false, data)
            }
            cmd::WRITE_FPDMA_QUEUED if self.cfg.ncq_depth.is_some() => {
                self.rw(tf.lba, sector_count(tf.features, true), true, data)
            }
            cmd::FLUSH_CACHE | cmd::FLUSH_CACHE_EXT => {
                let c = self.lock().execute(&sync_cache_cdb(), Data::None);
                outcome_of(c)
            }
            cmd::DATA_SET_MANAGEMENT if self.cfg.discard && tf.features & 1 == 1 => {
                self.trim(tf, data)
            }
            cmd::SET_FEATURES => self.set_features(tf),
            cmd::SET_MULTIPLE_MODE => {
                let n = tf.count & 0xff;
                if n == 0 || n > identify::MAX_MULTIPLE || !n.is_power_of_two() {
                    return Outcome::abort();
                }
                self.multiple = n;
                Outcome::ok(0)
            }
            cmd::READ_VERIFY
            | cmd::READ_VERIFY_EXT
            | cmd::SEEK
            | cmd::RECALIBRATE
            | cmd::INITIALIZE_DEVICE_PARAMETERS
            | cmd::IDLE
            | cmd::IDLE_IMMEDIATE
            | cmd::STANDBY
            | cmd::STANDBY_IMMEDIATE
            | cmd::SLEEP
            | cmd::EXECUTE_DEVICE_DIAGNOSTIC => Outcome::ok(0),
            // Active/idle: count 0xff (the count register is the transport's to report).
            cmd::CHECK_POWER_MODE => Outcome::ok(0),
            // IDENTIFY PACKET DEVICE on a disk, READ LOG EXT (no logs), SMART, …:
            // aborted, as a drive without those features answers.
            _ => Outcome::abort(),
        }
    }

    /// The sectors per block of READ/WRITE MULTIPLE (IDE PIO).
    pub fn multiple(&self) -> u16 {
        self.multiple
    }

    fn execute_atapi(&mut self, tf: &Taskfile, packet: &[u8], data: Data<'_, '_>) -> Outcome {
        match tf.command {
            cmd::PACKET => {
                let c = self.lock().execute(packet, data);
                if c.status == scsi::status::GOOD {
                    Outcome::ok(c.transferred)
                } else {
                    let key = c.sense.map_or(0x05, |s| s.key);
                    Outcome {
                        status: status::DRDY | status::ERR,
                        error: key << 4,
                        transferred: c.transferred,
                    }
                }
            }
            cmd::IDENTIFY_PACKET_DEVICE => reply(&identify::bytes(&self.identify()), data),
            cmd::SET_FEATURES => self.set_features(tf),
            cmd::DEVICE_RESET
            | cmd::CHECK_POWER_MODE
            | cmd::IDLE_IMMEDIATE
            | cmd::STANDBY_IMMEDIATE
            | cmd::EXECUTE_DEVICE_DIAGNOSTIC
            | cmd::SLEEP => Outcome::ok(0),
            // IDENTIFY DEVICE and the disk commands abort on a packet device; the
            // host then finds the ATAPI signature in the task file.
            _ => Outcome::abort(),
        }
    }

    fn set_features(&mut self, tf: &Taskfile) -> Outcome {
        match tf.features & 0xff {
            0x02 => self.write_cache = true,
            0x82 => self.write_cache = false,
            // Transfer mode, read look-ahead, reverting to defaults, SATA features
            // (0x10/0x90), power-up in standby: accepted, nothing to change.
            0x03 | 0x55 | 0xaa | 0x66 | 0xcc | 0x10 | 0x90 | 0x05 | 0x85 | 0x31 => {}
            _ => return Outcome::abort(),
        }
        Outcome::ok(0)
    }

    fn rw(&mut self, lba: u64, sectors: u32, write: bool, data: Data<'_, '_>) -> Outcome {
        let mut cdb = [0u8; 16];
        cdb[0] = if write { op::WRITE_16 } else { op::READ_16 };
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&sectors.to_be_bytes());
        let c = self.lock().execute(&cdb, data);
        if c.status == scsi::status::GOOD && write && !self.write_cache {
            // Write cache off: each write is durable before it completes.
            let f = self.lock().execute(&sync_cache_cdb(), Data::None);
            if f.status != scsi::status::GOOD {
                return outcome_of(f);
            }
        }
        outcome_of(c)
    }

    /// TRIM: ranges of (48-bit LBA, 16-bit count) in 512-byte blocks.
    fn trim(&mut self, tf: &Taskfile, data: Data<'_, '_>) -> Outcome {
        let Data::Out(bufs) = data else {
            return Outcome::abort();
        };
        let len = u64::from(tf.count.max(1)) * 512;
        let mut ranges = vec![0u8; len as usize];
        let mut at = 0usize;
        for b in bufs {
            let n = b.len().min(ranges.len() - at);
            if n == 0 || b.read_slice(&mut ranges[at..at + n], 0).is_err() {
                break;
            }
            at += n;
        }
        for e in ranges[..at].chunks_exact(8) {
            let v = u64::from_le_bytes(e.try_into().expect("8 bytes"));
            let (lba, n) = (v & 0xffff_ffff_ffff, v >> 48);
            if n == 0 {
                continue;
            }
            if let Err(s) = self.lock().discard(lba, n) {
                return outcome_of_sense(s);
            }
        }
        Outcome::ok(at as u64)
    }
}

/// The registers after a SCSI-layer completion.
fn outcome_of(c: scsi::Completion) -> Outcome {
    match c.sense {
        None if c.status == scsi::status::GOOD => Outcome::ok(c.transferred),
        s => outcome_of_sense(s.unwrap_or(Sense::INVALID_FIELD)),
    }
}

/// The ATA error register for what the SCSI layer reported.
fn outcome_of_sense(s: Sense) -> Outcome {
    let error = match (s.key, s.asc) {
        (_, 0x21) => error::IDNF | error::ABRT,
        (0x03, 0x11) => error::UNC,
        _ => error::ABRT,
    };
    let mut status = status::DRDY | status::ERR;
    if s == Sense::WRITE_ERROR {
        status |= status::DF;
    }
    Outcome {
        status,
        error,
        transferred: 0,
    }
}

/// SYNCHRONIZE CACHE(10) of the whole unit.
fn sync_cache_cdb() -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = op::SYNCHRONIZE_CACHE_10;
    c
}

/// A sector count register: 0 means 256 (28-bit) or 65536 (48-bit). A 28-bit
/// command sees only the low byte: the high one is whatever an earlier command
/// left in the register's "previous" half.
fn sector_count(count: u16, ext: bool) -> u32 {
    match (count, ext) {
        (0, true) => 65536,
        (n, true) => u32::from(n),
        (n, false) if n & 0xff == 0 => 256,
        (n, false) => u32::from(n & 0xff),
    }
}

/// The 28-bit LBA of a command: bits 0-23 from the LBA registers, 24-27 from
/// the device register.
fn lba28(tf: &Taskfile) -> u64 {
    (tf.lba & 0xff_ffff) | u64::from(tf.device & 0x0f) << 24
}

/// Fills the data-in buffers with `src`.
fn reply(src: &[u8], data: Data<'_, '_>) -> Outcome {
    let c = scsi::reply(src, src.len(), data);
    Outcome::ok(c.transferred)
}

/// Guest buffers for one transfer from a host byte vector (unit tests, IDE PIO).
pub fn slice_of(buf: &mut [u8]) -> VolatileSlice<'_> {
    VolatileSlice::from(buf)
}
