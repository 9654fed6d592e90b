//! SCSI target emulation: disks and CD-ROMs answering as QEMU's `scsi-hd` and
//! `scsi-cd` do, over the VMM's disk backends ([`DiskBackend`]: raw, qcow2,
//! read-only, cache modes).
//!
//! This layer knows nothing of the transport. A [`ScsiDevice`] is one logical
//! unit: [`ScsiDevice::execute`] takes a CDB and the initiator's data buffers
//! (data-in for commands that return data, data-out for writes) and gives a
//! [`Completion`]: the status byte, the sense data of a CHECK CONDITION, and how
//! many bytes moved. A [`ScsiTarget`] groups the LUNs of one target id and
//! answers what the target itself answers (REPORT LUNS, commands to absent
//! LUNs). virtio-scsi (`virtio/scsi.rs`) drives targets; an ATAPI front end
//! (AHCI, IDE) can drive a CD [`ScsiDevice`] the same way, since ATAPI is MMC
//! over ATA packets.
//!
//! Command sets: SPC (TEST UNIT READY, REQUEST SENSE, INQUIRY with VPD pages
//! 0x00/0x80/0x83, MODE SENSE(6)/(10), REPORT LUNS, PREVENT ALLOW MEDIUM
//! REMOVAL), SBC (READ CAPACITY(10)/(16), READ/WRITE(6/10/12/16), VERIFY,
//! SYNCHRONIZE CACHE, START STOP UNIT) and, for CD-ROMs, MMC ([`mmc`]: READ
//! TOC/PMA/ATIP, GET CONFIGURATION, GET EVENT STATUS NOTIFICATION, MECHANISM
//! STATUS, READ DISC INFORMATION, SET CD SPEED). Unknown opcodes get CHECK
//! CONDITION, ILLEGAL REQUEST / INVALID COMMAND OPERATION CODE.
//!
//! Media of a CD-ROM (`research/firmware.md` §5.1): without a medium, or with
//! the tray open, medium-access commands get NOT READY / MEDIUM NOT PRESENT.
//! After a medium is inserted, the first command other than REQUEST SENSE,
//! INQUIRY, GET CONFIGURATION, GET EVENT STATUS NOTIFICATION and REPORT LUNS gets
//! NOT READY / MEDIUM NOT PRESENT once, the next one UNIT ATTENTION / MEDIUM MAY
//! HAVE CHANGED (as QEMU's `ide_atapi_cmd`): guests that do not poll GESN see the
//! change that way; those that poll get a NewMedia event.

pub mod mmc;
pub mod sense;
#[cfg(test)]
mod tests;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tracing::warn;
use vm_memory::{Bytes, VolatileSlice};

use crate::virtio::block::backend::DiskBackend;
use crate::virtio::block::BlockStats;
pub use sense::{status, Sense};

/// The initiator's buffers of one command, in transfer order.
#[derive(Clone, Copy)]
pub enum Data<'a, 'b> {
    /// No data phase.
    None,
    /// Data-in: the device fills these (reads, INQUIRY, …).
    In(&'a [VolatileSlice<'b>]),
    /// Data-out: the device consumes these (writes).
    Out(&'a [VolatileSlice<'b>]),
}

impl Data<'_, '_> {
    fn in_len(&self) -> usize {
        match self {
            Data::In(b) => b.iter().map(|s| s.len()).sum(),
            _ => 0,
        }
    }
    fn out_len(&self) -> usize {
        match self {
            Data::Out(b) => b.iter().map(|s| s.len()).sum(),
            _ => 0,
        }
    }
}

/// The outcome of one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// SCSI status byte ([`status`]).
    pub status: u8,
    /// Sense data, with CHECK CONDITION.
    pub sense: Option<Sense>,
    /// Bytes written into the data-in buffers, or taken from the data-out ones.
    pub transferred: u64,
}

impl Completion {
    fn good(transferred: u64) -> Self {
        Completion {
            status: status::GOOD,
            sense: None,
            transferred,
        }
    }
    fn check(sense: Sense) -> Self {
        Completion {
            status: status::CHECK_CONDITION,
            sense: Some(sense),
            transferred: 0,
        }
    }
}

/// Peripheral device type: what the unit answers as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Direct-access block device (type 0), QEMU `scsi-hd`: 512-byte blocks.
    Disk,
    /// CD/DVD (type 5, removable), QEMU `scsi-cd`: 2048-byte blocks.
    Cdrom,
}

impl DeviceKind {
    /// Logical block size.
    pub fn block_size(self) -> u32 {
        match self {
            DeviceKind::Disk => 512,
            DeviceKind::Cdrom => 2048,
        }
    }
    fn peripheral_type(self) -> u8 {
        match self {
            DeviceKind::Disk => 0x00,
            DeviceKind::Cdrom => 0x05,
        }
    }
}

/// GET EVENT STATUS NOTIFICATION media events (MMC-6 table 150).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    NoChange = 0,
    EjectRequest = 1,
    NewMedia = 2,
    MediaRemoval = 3,
}

/// Where a media change stands in the NOT READY → UNIT ATTENTION sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    /// The next medium-access command gets NOT READY / MEDIUM NOT PRESENT.
    NotReady,
    /// The next one gets UNIT ATTENTION / MEDIUM MAY HAVE CHANGED.
    Attention,
}

/// One logical unit: a disk or a CD-ROM drive.
pub struct ScsiDevice {
    kind: DeviceKind,
    readonly: bool,
    /// Write cache enabled (caching mode page WCE): every cache mode but
    /// writethrough/directsync.
    writeback: bool,
    serial: Option<String>,
    /// VPD 0x83 identifier when there is no serial (the device id).
    device_id: String,
    /// The standard INQUIRY data (vendor and product filled in).
    inquiry: Vec<u8>,
    wwn: Option<u64>,
    medium: Option<Box<dyn DiskBackend>>,
    tray_open: bool,
    locked: bool,
    change: Change,
    media_event: MediaEvent,
    /// Sense of the last CHECK CONDITION, for REQUEST SENSE (ATAPI has no autosense).
    last_sense: Option<Sense>,
    /// The guest asked to open or close the tray (START STOP UNIT); the VMM
    /// reports it (QMP `DEVICE_TRAY_MOVED`) and clears it.
    tray_moved: Option<bool>,
    /// Told at once when the guest moves the tray (the media registry's event).
    tray_listener: Option<TrayListener>,
    stats: Arc<BlockStats>,
}

/// Called with `true` when the guest opens the tray, `false` when it closes it.
pub type TrayListener = Arc<dyn Fn(bool) + Send + Sync>;

/// A unit shared between its transport and the host side (media changes).
pub type SharedDevice = Arc<Mutex<ScsiDevice>>;

/// How a unit is set up.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub kind: DeviceKind,
    /// Writes refused (always for CD-ROMs).
    pub readonly: bool,
    pub writeback: bool,
    /// libvirt `<serial>`: INQUIRY VPD 0x80 and 0x83.
    pub serial: Option<String>,
    /// Identifier in VPD 0x83 when there is no serial.
    pub device_id: String,
    /// INQUIRY vendor (8 characters at most; QEMU's `QEMU` when `None`).
    pub vendor: Option<String>,
    /// INQUIRY product (16 characters at most; QEMU's names when `None`).
    pub product: Option<String>,
    /// libvirt `<wwn>`: an NAA descriptor in VPD 0x83.
    pub wwn: Option<u64>,
}

impl ScsiDevice {
    /// A unit over `medium` (`None`: a CD-ROM with an empty tray).
    pub fn new(cfg: DeviceConfig, medium: Option<Box<dyn DiskBackend>>) -> Self {
        let readonly = cfg.readonly || cfg.kind == DeviceKind::Cdrom;
        let mut inquiry = standard_inquiry(cfg.kind.peripheral_type(), cfg.kind);
        if let Some(v) = &cfg.vendor {
            put_padded(&mut inquiry[8..16], v);
        }
        if let Some(p) = &cfg.product {
            put_padded(&mut inquiry[16..32], p);
        }
        ScsiDevice {
            inquiry,
            wwn: cfg.wwn,
            kind: cfg.kind,
            readonly,
            writeback: cfg.writeback,
            serial: cfg.serial,
            device_id: cfg.device_id,
            medium,
            tray_open: false,
            locked: false,
            change: Change::None,
            media_event: MediaEvent::NoChange,
            last_sense: None,
            tray_moved: None,
            tray_listener: None,
            stats: Arc::new(BlockStats::default()),
        }
    }

    /// Calls `listener` whenever the guest opens or closes the tray.
    pub fn set_tray_listener(&mut self, listener: TrayListener) {
        self.tray_listener = Some(listener);
    }

    /// The host asks the guest to release the medium (QMP `blockdev-open-tray`
    /// on a locked drive): an EjectRequest media event, as QEMU's
    /// `scsi_cd_eject_request_cb`; `force` also drops the guest's lock.
    pub fn eject_request(&mut self, force: bool) {
        self.media_event = MediaEvent::EjectRequest;
        if force {
            self.locked = false;
        }
    }

    /// Forgets pending media-change notifications: the state the guest finds
    /// at power-on (a drive set up with a medium, or with its tray open).
    pub fn settle_media_state(&mut self) {
        self.change = Change::None;
        self.media_event = MediaEvent::NoChange;
    }

    /// A machine reset: the guest's lock and pending sense go, the medium and
    /// the tray stay where they are.
    pub fn machine_reset(&mut self) {
        self.locked = false;
        self.last_sense = None;
        self.tray_moved = None;
    }

    /// Counts I/O into `stats` (kept by the caller across device resets).
    pub fn with_stats(mut self, stats: Arc<BlockStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Disk or CD-ROM.
    pub fn kind(&self) -> DeviceKind {
        self.kind
    }

    /// Whether the write cache is on (cache modes other than writethrough/directsync).
    pub fn writeback(&self) -> bool {
        self.writeback
    }

    /// Drops `blocks` logical blocks from `lba` (ATA TRIM; the SCSI command set
    /// offers no UNMAP yet).
    pub fn discard(&mut self, lba: u64, blocks: u64) -> Result<(), Sense> {
        if let Some(s) = self.not_ready() {
            return Err(s);
        }
        if self.readonly {
            return Err(Sense::WRITE_PROTECTED);
        }
        if lba
            .checked_add(blocks)
            .is_none_or(|end| end > self.blocks())
        {
            return Err(Sense::LBA_OUT_OF_RANGE);
        }
        let bs = u64::from(self.kind.block_size());
        let m = self.medium.as_mut().expect("checked by not_ready");
        if let Err(e) = m.discard(lba * bs, blocks * bs) {
            warn!("scsi: discard at block {lba}: {e}");
            return Err(Sense::WRITE_ERROR);
        }
        bump(&self.stats.unmap_ops, 1);
        bump(&self.stats.unmap_bytes, blocks * bs);
        Ok(())
    }

    /// Whether a medium is in the closed tray.
    pub fn medium_present(&self) -> bool {
        self.medium.is_some() && !self.tray_open
    }

    /// Whether the tray is open.
    pub fn tray_open(&self) -> bool {
        self.tray_open
    }

    /// Whether the guest locked the door (PREVENT ALLOW MEDIUM REMOVAL).
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// Takes the guest's last tray request, if any: `Some(true)` = opened.
    pub fn take_tray_moved(&mut self) -> Option<bool> {
        self.tray_moved.take()
    }

    /// Size of the accessible medium in logical blocks (0 without one).
    pub fn blocks(&self) -> u64 {
        match &self.medium {
            Some(m) if !self.tray_open => m.size() / u64::from(self.kind.block_size()),
            _ => 0,
        }
    }

    /// Replaces the medium (host side: QMP/virsh media change). A new medium
    /// starts the NOT READY → UNIT ATTENTION sequence and a NewMedia event;
    /// removing it gives a MediaRemoval event.
    pub fn change_medium(&mut self, medium: Option<Box<dyn DiskBackend>>) {
        let inserted = medium.is_some();
        self.medium = medium;
        if inserted {
            self.tray_open = false;
            self.change = Change::NotReady;
            self.media_event = MediaEvent::NewMedia;
        } else {
            self.change = Change::None;
            self.media_event = MediaEvent::MediaRemoval;
        }
    }

    /// Opens or closes the tray from the host side (medium kept).
    pub fn set_tray_open(&mut self, open: bool) {
        if self.tray_open == open {
            return;
        }
        self.tray_open = open;
        if open {
            self.change = Change::None;
            self.media_event = MediaEvent::MediaRemoval;
        } else if self.medium.is_some() {
            self.change = Change::NotReady;
            self.media_event = MediaEvent::NewMedia;
        }
    }

    /// Executes one command.
    pub fn execute(&mut self, cdb: &[u8], data: Data<'_, '_>) -> Completion {
        let Some(&op) = cdb.first() else {
            return self.fail(Sense::INVALID_OPCODE);
        };
        if cdb.len() < cdb_len(op) {
            return self.fail(Sense::INVALID_FIELD);
        }
        if op != op::REQUEST_SENSE {
            self.last_sense = None;
        }
        // The media-change sequence, for commands that may not run past it.
        if !runs_during_attention(op) && self.change != Change::None {
            if self.change == Change::NotReady {
                self.change = Change::Attention;
                return self.fail(Sense::NO_MEDIUM);
            }
            self.change = Change::None;
            return self.fail(Sense::MEDIUM_CHANGED);
        }
        let c = self.dispatch(op, cdb, data);
        if let Some(s) = c.sense {
            self.last_sense = Some(s);
        }
        c
    }

    fn fail(&mut self, sense: Sense) -> Completion {
        self.last_sense = Some(sense);
        Completion::check(sense)
    }

    /// NOT READY with the right qualifier, when no medium can be accessed.
    fn not_ready(&self) -> Option<Sense> {
        if self.medium.is_some() && !self.tray_open {
            None
        } else if self.tray_open {
            Some(Sense::NO_MEDIUM_TRAY_OPEN)
        } else {
            Some(Sense::NO_MEDIUM)
        }
    }

    fn dispatch(&mut self, op: u8, cdb: &[u8], data: Data<'_, '_>) -> Completion {
        let cd = self.kind == DeviceKind::Cdrom;
        match op {
            op::TEST_UNIT_READY => match self.not_ready() {
                Some(s) => Completion::check(s),
                None => Completion::good(0),
            },
            op::REQUEST_SENSE => {
                let sense = self
                    .last_sense
                    .take()
                    .or_else(|| match self.change {
                        Change::None => None,
                        Change::NotReady => {
                            self.change = Change::Attention;
                            Some(Sense::NO_MEDIUM)
                        }
                        Change::Attention => {
                            self.change = Change::None;
                            Some(Sense::MEDIUM_CHANGED)
                        }
                    })
                    .or_else(|| self.not_ready())
                    .unwrap_or(Sense::NONE);
                reply(&sense.fixed(), usize::from(cdb[4]), data)
            }
            op::INQUIRY => self.inquiry(cdb, data),
            op::MODE_SENSE_6 | op::MODE_SENSE_10 => self.mode_sense(cdb, data),
            op::START_STOP_UNIT => self.start_stop(cdb),
            op::PREVENT_ALLOW_MEDIUM_REMOVAL => {
                self.locked = cdb[4] & 1 != 0;
                Completion::good(0)
            }
            op::READ_CAPACITY_10 => {
                if let Some(s) = self.not_ready() {
                    return Completion::check(s);
                }
                let last = self.blocks().saturating_sub(1);
                let mut b = [0u8; 8];
                b[0..4].copy_from_slice(&(last.min(0xffff_ffff) as u32).to_be_bytes());
                b[4..8].copy_from_slice(&self.kind.block_size().to_be_bytes());
                reply(&b, 8, data)
            }
            op::SERVICE_ACTION_IN_16 if cdb[1] & 0x1f == 0x10 => {
                if let Some(s) = self.not_ready() {
                    return Completion::check(s);
                }
                let mut b = [0u8; 32];
                b[0..8].copy_from_slice(&self.blocks().saturating_sub(1).to_be_bytes());
                b[8..12].copy_from_slice(&self.kind.block_size().to_be_bytes());
                reply(&b, be32(&cdb[10..14]) as usize, data)
            }
            op::READ_6 | op::READ_10 | op::READ_12 | op::READ_16 => {
                let (lba, n) = lba_len(cdb);
                self.rw(lba, n, false, data)
            }
            op::WRITE_6 | op::WRITE_10 | op::WRITE_12 | op::WRITE_16 => {
                let (lba, n) = lba_len(cdb);
                self.rw(lba, n, true, data)
            }
            op::VERIFY_10 | op::SEEK_10 => match self.not_ready() {
                Some(s) => Completion::check(s),
                None => Completion::good(0),
            },
            op::SYNCHRONIZE_CACHE_10 | op::SYNCHRONIZE_CACHE_16 => {
                let Some(m) = &mut self.medium else {
                    return Completion::check(Sense::NO_MEDIUM);
                };
                let t = Instant::now();
                let r = m.flush();
                bump(&self.stats.flush_ops, 1);
                bump(&self.stats.flush_ns, t.elapsed().as_nanos() as u64);
                match r {
                    Ok(()) => Completion::good(0),
                    Err(e) => {
                        bump(&self.stats.failed_flush, 1);
                        warn!("scsi: flush: {e}");
                        Completion::check(Sense::WRITE_ERROR)
                    }
                }
            }
            op::REPORT_LUNS => report_luns(&[0], cdb, data),
            _ if cd => mmc::execute(self, op, cdb, data),
            _ => Completion::check(Sense::INVALID_OPCODE),
        }
    }

    fn inquiry(&self, cdb: &[u8], data: Data<'_, '_>) -> Completion {
        let alloc = usize::from(be16(&cdb[3..5]));
        let ptype = self.kind.peripheral_type();
        if cdb[1] & 1 == 0 {
            if cdb[2] != 0 {
                return Completion::check(Sense::INVALID_FIELD);
            }
            return reply(&self.inquiry, alloc, data);
        }
        let mut b = vec![ptype, cdb[2], 0, 0];
        match cdb[2] {
            0x00 => {
                b.push(0x00);
                if self.serial.is_some() {
                    b.push(0x80);
                }
                b.push(0x83);
            }
            0x80 => {
                let Some(s) = &self.serial else {
                    return Completion::check(Sense::INVALID_FIELD);
                };
                b.extend_from_slice(&s.as_bytes()[..s.len().min(252)]);
            }
            0x83 => {
                // One descriptor: ASCII, vendor specific, associated with the LUN.
                let id = self.serial.as_deref().unwrap_or(&self.device_id);
                let id = &id.as_bytes()[..id.len().min(250)];
                b.extend_from_slice(&[0x02, 0x00, 0x00, id.len() as u8]);
                b.extend_from_slice(id);
                // The WWN: binary, NAA, associated with the LUN.
                if let Some(w) = self.wwn {
                    b.extend_from_slice(&[0x01, 0x03, 0x00, 8]);
                    b.extend_from_slice(&w.to_be_bytes());
                }
            }
            _ => return Completion::check(Sense::INVALID_FIELD),
        }
        let n = (b.len() - 4) as u16;
        b[2..4].copy_from_slice(&n.to_be_bytes());
        reply(&b, alloc, data)
    }

    fn mode_sense(&self, cdb: &[u8], data: Data<'_, '_>) -> Completion {
        let ten = cdb[0] == op::MODE_SENSE_10;
        let alloc = if ten {
            usize::from(be16(&cdb[7..9]))
        } else {
            usize::from(cdb[4])
        };
        let page = cdb[2] & 0x3f;
        let control = cdb[2] >> 6;
        if control == 3 {
            return Completion::check(Sense::SAVING_NOT_SUPPORTED);
        }
        if cdb[3] != 0 && !(page == 0x3f && cdb[3] == 0xff) {
            return Completion::check(Sense::INVALID_FIELD);
        }
        let pages: &[u8] = match (self.kind, page) {
            (DeviceKind::Disk, 0x3f) => &[0x04, 0x08],
            (DeviceKind::Cdrom, 0x3f) => &[0x08, 0x2a],
            (DeviceKind::Disk, 0x04 | 0x08) | (DeviceKind::Cdrom, 0x08 | 0x2a) => {
                std::slice::from_ref(&cdb[2])
            }
            _ => return Completion::check(Sense::INVALID_FIELD),
        };
        let mut body = Vec::new();
        for &p in pages {
            let mut pg = self.mode_page(p & 0x3f);
            if control == 1 {
                // Changeable values: none.
                pg[2..].fill(0);
            }
            body.extend_from_slice(&pg);
        }
        // MMC: CD drives have no block descriptors.
        let dbd = cdb[1] & 0x08 != 0 || self.kind == DeviceKind::Cdrom;
        let mut desc = Vec::new();
        if !dbd {
            let blocks = self.blocks();
            desc.push(0);
            desc.extend_from_slice(&(blocks.min(0xff_ffff) as u32).to_be_bytes()[1..]);
            desc.push(0);
            desc.extend_from_slice(&self.kind.block_size().to_be_bytes()[1..]);
        }
        let wp = if self.readonly && self.kind == DeviceKind::Disk {
            0x80
        } else {
            0
        };
        let mut out = Vec::new();
        if ten {
            let len = (6 + desc.len() + body.len()) as u16;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&[0, wp, 0, 0]);
            out.extend_from_slice(&(desc.len() as u16).to_be_bytes());
        } else {
            out.extend_from_slice(&[(3 + desc.len() + body.len()) as u8, 0, wp, desc.len() as u8]);
        }
        out.extend_from_slice(&desc);
        out.extend_from_slice(&body);
        reply(&out, alloc, data)
    }

    fn mode_page(&self, page: u8) -> Vec<u8> {
        match page {
            // Rigid disk geometry: cylinders for 16 heads × 63 sectors, 5400 rpm.
            0x04 => {
                let mut p = vec![0u8; 0x18];
                p[0] = 0x04;
                p[1] = 0x16;
                let cyl = ((self.blocks() / (16 * 63)).min(65535) as u32).to_be_bytes();
                p[2..5].copy_from_slice(&cyl[1..]);
                p[5] = 16;
                p[20..22].copy_from_slice(&5400u16.to_be_bytes());
                p
            }
            // Caching: WCE as the cache mode says.
            0x08 => {
                let mut p = vec![0u8; 0x14];
                p[0] = 0x08;
                p[1] = 0x12;
                if self.writeback {
                    p[2] = 0x04;
                }
                p
            }
            // CD/DVD capabilities and mechanical status (QEMU's values).
            _ => {
                let mut p = vec![0u8; 0x16];
                p[0] = 0x2a;
                p[1] = 0x14;
                p[2] = 0x3b; // reads CD-R, CD-RW, DVD-ROM, …
                p[4] = 0x7f; // audio play, composite, …
                p[5] = 0xff; // CD-DA, …
                p[6] = 0x2d | if self.locked { 0x02 } else { 0 }; // tray, eject, lock
                let speed = 50u16 * 176; // 50x
                p[8..10].copy_from_slice(&speed.to_be_bytes());
                p[10..12].copy_from_slice(&2u16.to_be_bytes());
                p[12..14].copy_from_slice(&2048u16.to_be_bytes());
                p[14..16].copy_from_slice(&speed.to_be_bytes());
                p
            }
        }
    }

    fn start_stop(&mut self, cdb: &[u8]) -> Completion {
        let (loej, start) = (cdb[4] & 2 != 0, cdb[4] & 1 != 0);
        if !loej || self.kind != DeviceKind::Cdrom {
            return Completion::good(0);
        }
        if !start {
            if self.locked {
                return Completion::check(Sense::REMOVAL_PREVENTED);
            }
            if !self.tray_open {
                self.tray_open = true;
                self.change = Change::None;
                self.tray_moved = Some(true);
                self.notify_tray(true);
            }
        } else if self.tray_open {
            self.tray_open = false;
            self.tray_moved = Some(false);
            if self.medium.is_some() {
                self.media_event = MediaEvent::NewMedia;
            }
            self.notify_tray(false);
        }
        Completion::good(0)
    }

    fn notify_tray(&self, open: bool) {
        if let Some(l) = &self.tray_listener {
            l(open);
        }
    }

    fn rw(&mut self, lba: u64, blocks: u64, write: bool, data: Data<'_, '_>) -> Completion {
        if let Some(s) = self.not_ready() {
            return Completion::check(s);
        }
        if write && self.readonly {
            return Completion::check(Sense::WRITE_PROTECTED);
        }
        let bs = u64::from(self.kind.block_size());
        if lba
            .checked_add(blocks)
            .is_none_or(|end| end > self.blocks())
        {
            return Completion::check(Sense::LBA_OUT_OF_RANGE);
        }
        let len = blocks * bs;
        if len == 0 {
            return Completion::good(0);
        }
        let (bufs, have) = match (data, write) {
            (Data::In(b), false) => (b, data.in_len() as u64),
            (Data::Out(b), true) => (b, data.out_len() as u64),
            _ => return Completion::check(Sense::SHORT_BUFFER),
        };
        if have < len {
            return Completion::check(Sense::SHORT_BUFFER);
        }
        let slices = prefix(bufs, len as usize);
        let m = self.medium.as_mut().expect("checked by not_ready");
        let off = lba * bs;
        let t = Instant::now();
        let r = if write {
            m.write_at(off, &slices)
        } else {
            m.read_at(off, &slices)
        };
        let ns = t.elapsed().as_nanos() as u64;
        let st = &self.stats;
        match r {
            Ok(()) if write => {
                bump(&st.wr_ops, 1);
                bump(&st.wr_bytes, len);
                bump(&st.wr_ns, ns);
                st.wr_highest_offset.fetch_max(off + len, Ordering::Relaxed);
                Completion::good(len)
            }
            Ok(()) => {
                bump(&st.rd_ops, 1);
                bump(&st.rd_bytes, len);
                bump(&st.rd_ns, ns);
                Completion::good(len)
            }
            Err(e) => {
                warn!(
                    "scsi: {} at block {lba}: {e}",
                    if write { "write" } else { "read" }
                );
                if write {
                    bump(&st.failed_wr, 1);
                    Completion::check(Sense::WRITE_ERROR)
                } else {
                    bump(&st.failed_rd, 1);
                    Completion::check(Sense::READ_ERROR)
                }
            }
        }
    }
}

/// The logical units of one target id.
#[derive(Default)]
pub struct ScsiTarget {
    /// (LUN, unit), sorted by LUN. Units are shared so that removable-media
    /// drives (`crate::media`) can be reached from the host side too.
    luns: Vec<(u16, SharedDevice)>,
}

impl ScsiTarget {
    /// An empty target.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) `lun`.
    pub fn insert(&mut self, lun: u16, dev: ScsiDevice) {
        self.insert_shared(lun, Arc::new(Mutex::new(dev)));
    }

    /// Adds (or replaces) `lun` with a unit the host side also holds.
    pub fn insert_shared(&mut self, lun: u16, dev: SharedDevice) {
        self.luns.retain(|(l, _)| *l != lun);
        self.luns.push((lun, dev));
        self.luns.sort_by_key(|(l, _)| *l);
    }

    /// Unit `lun`, if present.
    pub fn lun(&self, lun: u16) -> Option<&SharedDevice> {
        self.luns.iter().find(|(l, _)| *l == lun).map(|(_, d)| d)
    }

    /// Takes `lun` away (a hot-unplug); its unit, if it was there.
    pub fn remove(&mut self, lun: u16) -> Option<SharedDevice> {
        let i = self.luns.iter().position(|(l, _)| *l == lun)?;
        Some(self.luns.remove(i).1)
    }

    /// Whether the target has any unit.
    pub fn is_empty(&self) -> bool {
        self.luns.is_empty()
    }

    /// Executes a command addressed to `lun`: REPORT LUNS is the target's; an
    /// absent LUN answers INQUIRY with "no unit here" (peripheral qualifier 3)
    /// and everything else with LOGICAL UNIT NOT SUPPORTED, as QEMU's SCSI bus.
    pub fn execute(&self, lun: u16, cdb: &[u8], data: Data<'_, '_>) -> Completion {
        if cdb.first() == Some(&op::REPORT_LUNS) {
            if cdb.len() < 12 {
                return Completion::check(Sense::INVALID_FIELD);
            }
            let luns: Vec<u16> = self.luns.iter().map(|(l, _)| *l).collect();
            return report_luns(&luns, cdb, data);
        }
        if let Some(d) = self.lun(lun) {
            return d
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .execute(cdb, data);
        }
        match cdb.first() {
            Some(&op::INQUIRY) if cdb.len() >= 6 && cdb[1] & 1 == 0 => {
                let mut b = standard_inquiry(0x7f, DeviceKind::Disk);
                b[1] = 0;
                reply(&b, usize::from(be16(&cdb[3..5])), data)
            }
            Some(&op::REQUEST_SENSE) if cdb.len() >= 6 => {
                reply(&Sense::LUN_NOT_SUPPORTED.fixed(), usize::from(cdb[4]), data)
            }
            _ => Completion::check(Sense::LUN_NOT_SUPPORTED),
        }
    }
}

/// Operation codes.
pub mod op {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0a;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SENSE_6: u8 = 0x1a;
    pub const START_STOP_UNIT: u8 = 0x1b;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1e;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2a;
    pub const SEEK_10: u8 = 0x2b;
    pub const VERIFY_10: u8 = 0x2f;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const READ_TOC: u8 = 0x43;
    pub const GET_CONFIGURATION: u8 = 0x46;
    pub const GET_EVENT_STATUS_NOTIFICATION: u8 = 0x4a;
    pub const READ_DISC_INFORMATION: u8 = 0x51;
    pub const MODE_SENSE_10: u8 = 0x5a;
    pub const READ_16: u8 = 0x88;
    pub const WRITE_16: u8 = 0x8a;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const REPORT_LUNS: u8 = 0xa0;
    pub const READ_12: u8 = 0xa8;
    pub const WRITE_12: u8 = 0xaa;
    pub const SET_CD_SPEED: u8 = 0xbb;
    pub const MECHANISM_STATUS: u8 = 0xbd;
}

/// CDB length by operation code group (SPC-4 §4.2.5.1).
pub fn cdb_len(op: u8) -> usize {
    match op >> 5 {
        0 => 6,
        1 | 2 => 10,
        4 => 16,
        5 => 12,
        _ => 6,
    }
}

/// Commands that run while a media change is pending (§5.1 of the research notes).
fn runs_during_attention(op: u8) -> bool {
    matches!(
        op,
        op::REQUEST_SENSE
            | op::INQUIRY
            | op::GET_CONFIGURATION
            | op::GET_EVENT_STATUS_NOTIFICATION
            | op::REPORT_LUNS
    )
}

/// The 36-byte standard INQUIRY data (vendor "QEMU", as SeaBIOS expects for
/// its geometry query).
fn standard_inquiry(ptype: u8, kind: DeviceKind) -> Vec<u8> {
    let mut b = vec![0u8; 36];
    b[0] = ptype;
    b[1] = if kind == DeviceKind::Cdrom { 0x80 } else { 0 };
    b[2] = 0x05; // SPC-3
    b[3] = 0x12; // HiSup, response data format 2
    b[4] = 36 - 5;
    b[7] = 0x02; // CmdQue
    b[8..16].copy_from_slice(b"QEMU    ");
    b[16..32].copy_from_slice(match kind {
        DeviceKind::Disk => b"QEMU HARDDISK   ",
        DeviceKind::Cdrom => b"QEMU CD-ROM     ",
    });
    b[32..36].copy_from_slice(b"2.5+");
    b
}

/// Copies `text` into `field`, padded with spaces (INQUIRY's ASCII fields).
fn put_padded(field: &mut [u8], text: &str) {
    field.fill(b' ');
    let n = text.len().min(field.len());
    field[..n].copy_from_slice(&text.as_bytes()[..n]);
}

/// REPORT LUNS data for `luns` (LUN 0 always listed, as QEMU does).
fn report_luns(luns: &[u16], cdb: &[u8], data: Data<'_, '_>) -> Completion {
    if cdb[2] > 2 {
        return Completion::check(Sense::INVALID_FIELD);
    }
    let mut list: Vec<u16> = luns.to_vec();
    if !list.contains(&0) {
        list.insert(0, 0);
    }
    let mut b = Vec::with_capacity(8 + 8 * list.len());
    b.extend_from_slice(&((8 * list.len()) as u32).to_be_bytes());
    b.extend_from_slice(&[0; 4]);
    for l in list {
        let mut e = [0u8; 8];
        if l < 256 {
            e[1] = l as u8;
        } else {
            e[0] = 0x40 | (l >> 8) as u8;
            e[1] = l as u8;
        }
        b.extend_from_slice(&e);
    }
    reply(&b, be32(&cdb[6..10]) as usize, data)
}

/// Writes `src`, cut to `alloc` and to the buffers, into the data-in buffers.
pub(crate) fn reply(src: &[u8], alloc: usize, data: Data<'_, '_>) -> Completion {
    let Data::In(bufs) = data else {
        return Completion::good(0);
    };
    let mut left = &src[..src.len().min(alloc)];
    let mut done = 0u64;
    for b in bufs {
        if left.is_empty() {
            break;
        }
        let n = left.len().min(b.len());
        if b.write_slice(&left[..n], 0).is_err() {
            break;
        }
        left = &left[n..];
        done += n as u64;
    }
    Completion::good(done)
}

/// The first `len` bytes of `bufs` (which hold at least that many).
fn prefix<'b>(bufs: &[VolatileSlice<'b>], len: usize) -> Vec<VolatileSlice<'b>> {
    let mut out = Vec::new();
    let mut left = len;
    for b in bufs {
        if left == 0 {
            break;
        }
        let n = left.min(b.len());
        if let Ok(s) = b.subslice(0, n) {
            out.push(s);
        }
        left -= n;
    }
    out
}

/// (LBA, transfer length in blocks) of a READ/WRITE CDB.
fn lba_len(cdb: &[u8]) -> (u64, u64) {
    match cdb_len(cdb[0]) {
        6 => {
            let lba = u64::from(be32(&cdb[0..4]) & 0x1f_ffff);
            // A transfer length of 0 means 256 blocks.
            let n = if cdb[4] == 0 { 256 } else { u64::from(cdb[4]) };
            (lba, n)
        }
        10 => (u64::from(be32(&cdb[2..6])), u64::from(be16(&cdb[7..9]))),
        12 => (u64::from(be32(&cdb[2..6])), u64::from(be32(&cdb[6..10]))),
        _ => (
            u64::from_be_bytes(cdb[2..10].try_into().expect("8 bytes")),
            u64::from(be32(&cdb[10..14])),
        ),
    }
}

pub(crate) fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

pub(crate) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn bump(c: &std::sync::atomic::AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}
