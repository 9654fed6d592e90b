//! The command set against an in-memory medium.

use std::io;

use vm_memory::{Bytes, VolatileSlice};

use super::*;
use crate::virtio::block::backend::Bufs;

/// An image in a vector.
struct MemDisk(Vec<u8>);

impl DiskBackend for MemDisk {
    fn size(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()> {
        let mut o = offset as usize;
        for b in bufs {
            b.write_slice(&self.0[o..o + b.len()], 0).unwrap();
            o += b.len();
        }
        Ok(())
    }
    fn write_at(&mut self, offset: u64, bufs: Bufs<'_, '_>) -> io::Result<()> {
        let mut o = offset as usize;
        for b in bufs {
            let n = b.len();
            b.read_slice(&mut self.0[o..o + n], 0).unwrap();
            o += n;
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn discard(&mut self, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn write_zeroes(&mut self, _: u64, _: u64, _: bool) -> io::Result<()> {
        Ok(())
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i / 512 + i) as u8).collect()
}

fn disk(blocks: usize) -> ScsiDevice {
    ScsiDevice::new(
        DeviceConfig {
            kind: DeviceKind::Disk,
            readonly: false,
            writeback: true,
            serial: Some("SER123".into()),
            device_id: "scsi0-0-0-0".into(),
            vendor: None,
            product: None,
            wwn: None,
        },
        Some(Box::new(MemDisk(pattern(blocks * 512)))),
    )
}

fn cdrom(blocks: Option<usize>) -> ScsiDevice {
    ScsiDevice::new(
        DeviceConfig {
            kind: DeviceKind::Cdrom,
            readonly: true,
            writeback: true,
            serial: None,
            device_id: "scsi0-0-1-0".into(),
            vendor: None,
            product: None,
            wwn: None,
        },
        blocks.map(|b| Box::new(MemDisk(pattern(b * 2048))) as Box<dyn DiskBackend>),
    )
}

/// Runs `cdb` with a data-in buffer of `len` bytes; returns the completion and
/// the bytes transferred.
fn run_in(dev: &mut ScsiDevice, cdb: &[u8], len: usize) -> (Completion, Vec<u8>) {
    let mut buf = vec![0u8; len];
    let c = {
        let s = [VolatileSlice::from(&mut buf[..])];
        dev.execute(cdb, Data::In(&s))
    };
    buf.truncate(c.transferred as usize);
    (c, buf)
}

fn sense_of(c: &Completion) -> Sense {
    assert_eq!(c.status, status::CHECK_CONDITION, "{c:?}");
    c.sense.unwrap()
}

#[test]
fn disk_inquiry_standard_and_vpd() {
    let mut d = disk(16);
    let (c, b) = run_in(&mut d, &[0x12, 0, 0, 0, 96, 0], 96);
    assert_eq!(c.status, status::GOOD);
    assert_eq!(b.len(), 36);
    assert_eq!(b[0], 0x00);
    assert_eq!(b[1], 0, "disks are not removable");
    assert_eq!(&b[8..16], b"QEMU    ");
    assert_eq!(&b[16..32], b"QEMU HARDDISK   ");

    let (_, b) = run_in(&mut d, &[0x12, 1, 0x00, 0, 255, 0], 255);
    assert_eq!(&b[4..], &[0x00, 0x80, 0x83]);
    let (_, b) = run_in(&mut d, &[0x12, 1, 0x80, 0, 255, 0], 255);
    assert_eq!(&b[4..], b"SER123");
    let (_, b) = run_in(&mut d, &[0x12, 1, 0x83, 0, 255, 0], 255);
    assert_eq!(&b[4..8], &[0x02, 0x00, 0x00, 6]);
    assert_eq!(&b[8..], b"SER123");
    let (c, _) = run_in(&mut d, &[0x12, 1, 0xb9, 0, 255, 0], 255);
    assert_eq!(sense_of(&c), Sense::INVALID_FIELD);
}

#[test]
fn inquiry_respects_allocation_length() {
    let mut d = disk(16);
    let (c, b) = run_in(&mut d, &[0x12, 0, 0, 0, 5, 0], 96);
    assert_eq!(c.transferred, 5);
    assert_eq!(b[4], 31);
}

#[test]
fn cdrom_inquiry_is_removable_type_5() {
    let mut d = cdrom(None);
    let (_, b) = run_in(&mut d, &[0x12, 0, 0, 0, 36, 0], 36);
    assert_eq!((b[0], b[1]), (0x05, 0x80));
    assert_eq!(&b[16..27], b"QEMU CD-ROM");
}

#[test]
fn read_capacity_10_and_16() {
    let mut d = disk(100);
    let (_, b) = run_in(&mut d, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    assert_eq!(b, [0, 0, 0, 99, 0, 0, 2, 0]);
    let mut cdb = [0u8; 16];
    cdb[0] = 0x9e;
    cdb[1] = 0x10;
    cdb[13] = 32;
    let (_, b) = run_in(&mut d, &cdb, 32);
    assert_eq!(&b[0..12], &[0, 0, 0, 0, 0, 0, 0, 99, 0, 0, 2, 0]);
}

#[test]
fn reads_and_writes_blocks() {
    let mut d = disk(64);
    // READ(10) of blocks 3..5.
    let (c, b) = run_in(&mut d, &[0x28, 0, 0, 0, 0, 3, 0, 0, 2, 0], 1024);
    assert_eq!(c.transferred, 1024);
    assert_eq!(b, pattern(64 * 512)[3 * 512..5 * 512]);
    // WRITE(16) of block 7 from two buffers.
    let mut w1 = [0xaau8; 200];
    let mut w2 = [0xbbu8; 312];
    let mut cdb = [0u8; 16];
    cdb[0] = 0x8a;
    cdb[9] = 7;
    cdb[13] = 1;
    let c = {
        let s = [
            VolatileSlice::from(&mut w1[..]),
            VolatileSlice::from(&mut w2[..]),
        ];
        d.execute(&cdb, Data::Out(&s))
    };
    assert_eq!(c, Completion::good(512));
    // READ(12) it back.
    let (_, b) = run_in(&mut d, &[0xa8, 0, 0, 0, 0, 7, 0, 0, 0, 1, 0, 0], 512);
    assert!(b[..200].iter().all(|&x| x == 0xaa) && b[200..].iter().all(|&x| x == 0xbb));
    // READ(16) past the end.
    let mut cdb = [0u8; 16];
    cdb[0] = 0x88;
    cdb[9] = 63;
    cdb[13] = 2;
    let (c, _) = run_in(&mut d, &cdb, 1024);
    assert_eq!(sense_of(&c), Sense::LBA_OUT_OF_RANGE);
    // A data buffer shorter than the transfer.
    let (c, _) = run_in(&mut d, &[0x28, 0, 0, 0, 0, 0, 0, 0, 2, 0], 512);
    assert_eq!(sense_of(&c), Sense::SHORT_BUFFER);
}

#[test]
fn readonly_disk_refuses_writes() {
    let mut d = ScsiDevice::new(
        DeviceConfig {
            kind: DeviceKind::Disk,
            readonly: true,
            writeback: false,
            serial: None,
            device_id: "d".into(),
            vendor: None,
            product: None,
            wwn: None,
        },
        Some(Box::new(MemDisk(vec![0; 4096]))),
    );
    let mut w = vec![0u8; 512];
    let s = [VolatileSlice::from(&mut w[..])];
    let c = d.execute(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], Data::Out(&s));
    assert_eq!(sense_of(&c), Sense::WRITE_PROTECTED);
    // MODE SENSE(6) shows WP and no write cache.
    let (_, b) = run_in(&mut d, &[0x1a, 0x08, 0x08, 0, 255, 0], 255);
    assert_eq!(b[2], 0x80);
    assert_eq!(&b[4..6], &[0x08, 0x12]);
    assert_eq!(b[6] & 0x04, 0);
}

#[test]
fn unknown_opcode_is_illegal_request() {
    let mut d = disk(8);
    let (c, _) = run_in(
        &mut d,
        &[0xe7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        8,
    );
    assert_eq!(sense_of(&c), Sense::INVALID_OPCODE);
    // REQUEST SENSE returns it once, fixed format.
    let (_, b) = run_in(&mut d, &[0x03, 0, 0, 0, 18, 0], 18);
    assert_eq!((b[0], b[2], b[12]), (0x70, 0x05, 0x20));
    let (_, b) = run_in(&mut d, &[0x03, 0, 0, 0, 18, 0], 18);
    assert_eq!((b[2], b[12]), (0, 0));
    // MMC commands are not a disk's.
    let (c, _) = run_in(&mut d, &[0x43, 0, 0, 0, 0, 0, 0, 0, 12, 0], 12);
    assert_eq!(sense_of(&c), Sense::INVALID_OPCODE);
}

#[test]
fn mode_sense_10_caching_and_all_pages() {
    let mut d = disk(2048);
    let (_, b) = run_in(&mut d, &[0x5a, 0, 0x08, 0, 0, 0, 0, 0, 255, 0], 255);
    // Header 8 + block descriptor 8 + caching page 20.
    assert_eq!(b.len(), 36);
    assert_eq!(u16::from_be_bytes([b[0], b[1]]), 34);
    assert_eq!(u16::from_be_bytes([b[6], b[7]]), 8);
    assert_eq!(&b[16..18], &[0x08, 0x12]);
    assert_eq!(b[18] & 0x04, 0x04, "WCE with writeback");
    let (_, b) = run_in(&mut d, &[0x1a, 0x08, 0x3f, 0, 255, 0], 255);
    // Geometry then caching.
    assert_eq!(b[4], 0x04);
    assert_eq!(b[4 + 0x18], 0x08);
    // Saved values are not supported.
    let (c, _) = run_in(&mut d, &[0x1a, 0, 0xc8, 0, 255, 0], 255);
    assert_eq!(sense_of(&c), Sense::SAVING_NOT_SUPPORTED);
}

#[test]
fn empty_cdrom_is_not_ready() {
    let mut d = cdrom(None);
    let (c, _) = run_in(&mut d, &[0, 0, 0, 0, 0, 0], 0);
    assert_eq!(sense_of(&c), Sense::NO_MEDIUM);
    let (c, _) = run_in(&mut d, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    assert_eq!(sense_of(&c), Sense::NO_MEDIUM);
    let (c, _) = run_in(&mut d, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], 2048);
    assert_eq!(sense_of(&c), Sense::NO_MEDIUM);
    // REQUEST SENSE says so too, even without a failed command before.
    let (_, b) = run_in(&mut d, &[0x03, 0, 0, 0, 18, 0], 18);
    assert_eq!((b[2], b[12]), (0x02, 0x3a));
    // GET CONFIGURATION: no current profile.
    let (c, b) = run_in(&mut d, &[0x46, 0, 0, 0, 0, 0, 0, 0, 255, 0], 255);
    assert_eq!(c.status, status::GOOD);
    assert_eq!(&b[6..8], &[0, 0]);
}

#[test]
fn cdrom_reads_2048_byte_blocks() {
    let mut d = cdrom(Some(40));
    let (_, b) = run_in(&mut d, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    assert_eq!(b, [0, 0, 0, 39, 0, 0, 8, 0]);
    let (c, b) = run_in(&mut d, &[0x28, 0, 0, 0, 0, 17, 0, 0, 1, 0], 2048);
    assert_eq!(c.transferred, 2048);
    assert_eq!(b, pattern(40 * 2048)[17 * 2048..18 * 2048]);
    let mut w = vec![0u8; 2048];
    let s = [VolatileSlice::from(&mut w[..])];
    let c = d.execute(&[0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0], Data::Out(&s));
    assert_eq!(sense_of(&c), Sense::WRITE_PROTECTED);
}

#[test]
fn cdrom_toc_lba_and_msf() {
    let mut d = cdrom(Some(1000));
    let (_, b) = run_in(&mut d, &[0x43, 0, 0, 0, 0, 0, 0, 0, 255, 0], 255);
    assert_eq!(b.len(), 20);
    assert_eq!(&b[0..4], &[0, 18, 1, 1]);
    assert_eq!(&b[4..12], &[0, 0x14, 1, 0, 0, 0, 0, 0]);
    assert_eq!(&b[12..20], &[0, 0x14, 0xaa, 0, 0, 0, 0x03, 0xe8]);
    let (_, b) = run_in(&mut d, &[0x43, 2, 0, 0, 0, 0, 0, 0, 255, 0], 255);
    // Track 1 at 00:02:00; lead-out at 1150 frames = 00:15:25.
    assert_eq!(&b[8..12], &[0, 0, 2, 0]);
    assert_eq!(&b[16..20], &[0, 0, 15, 25]);
    let (c, _) = run_in(&mut d, &[0x43, 0, 0, 0, 0, 0, 2, 0, 255, 0], 255);
    assert_eq!(sense_of(&c), Sense::INVALID_FIELD);
    // Session info.
    let (_, b) = run_in(&mut d, &[0x43, 0, 1, 0, 0, 0, 0, 0, 255, 0], 255);
    assert_eq!(&b[0..4], &[0, 10, 1, 1]);
}

#[test]
fn cdrom_configuration_mechanism_disc_info() {
    let mut d = cdrom(Some(1000));
    let (_, b) = run_in(&mut d, &[0x46, 0, 0, 0, 0, 0, 0, 0, 255, 0], 255);
    assert_eq!(&b[6..8], &[0, 0x08], "CD-ROM profile");
    assert_eq!(
        u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize,
        b.len() - 4
    );
    // RT=2: only the feature asked for.
    let (_, b) = run_in(&mut d, &[0x46, 2, 0, 3, 0, 0, 0, 0, 255, 0], 255);
    assert_eq!(b.len(), 8 + 8);
    assert_eq!(&b[8..10], &[0, 3]);
    let (_, b) = run_in(&mut d, &[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], 8);
    assert_eq!(b, [0; 8]);
    let (_, b) = run_in(&mut d, &[0x51, 0, 0, 0, 0, 0, 0, 0, 34, 0], 34);
    assert_eq!(b.len(), 34);
    assert_eq!(b[2], 0x0e);
    let (_, b) = run_in(&mut d, &[0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 255, 0], 255);
    assert_eq!(
        u16::from_be_bytes([b[6], b[7]]),
        0,
        "no block descriptor on a CD"
    );
    assert_eq!(b[8], 0x2a);
}

#[test]
fn media_change_gives_not_ready_then_unit_attention() {
    let mut d = cdrom(None);
    d.change_medium(Some(Box::new(MemDisk(vec![0; 2048 * 10]))));
    // INQUIRY and GESN run through; GESN reports new media once.
    let (c, _) = run_in(&mut d, &[0x12, 0, 0, 0, 36, 0], 36);
    assert_eq!(c.status, status::GOOD);
    let gesn = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0];
    let (_, b) = run_in(&mut d, &gesn, 8);
    assert_eq!(b, [0, 6, 4, 0x10, 2, 2, 0, 0]);
    let (_, b) = run_in(&mut d, &gesn, 8);
    assert_eq!(b[4], 0, "event consumed");
    // Then NOT READY once, UNIT ATTENTION once, then ready.
    let tur = [0u8; 6];
    let (c, _) = run_in(&mut d, &tur, 0);
    assert_eq!(sense_of(&c), Sense::NO_MEDIUM);
    let (c, _) = run_in(&mut d, &tur, 0);
    assert_eq!(sense_of(&c), Sense::MEDIUM_CHANGED);
    let (c, _) = run_in(&mut d, &tur, 0);
    assert_eq!(c.status, status::GOOD);
    let (_, b) = run_in(&mut d, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    assert_eq!(b[3], 9);
}

#[test]
fn eject_and_lock() {
    let mut d = cdrom(Some(10));
    // Locked: eject refused.
    run_in(&mut d, &[0x1e, 0, 0, 0, 1, 0], 0);
    assert!(d.locked());
    let (c, _) = run_in(&mut d, &[0x1b, 0, 0, 0, 0x02, 0], 0);
    assert_eq!(sense_of(&c), Sense::REMOVAL_PREVENTED);
    run_in(&mut d, &[0x1e, 0, 0, 0, 0, 0], 0);
    let (c, _) = run_in(&mut d, &[0x1b, 0, 0, 0, 0x02, 0], 0);
    assert_eq!(c.status, status::GOOD);
    assert!(d.tray_open());
    assert_eq!(d.take_tray_moved(), Some(true));
    let (c, _) = run_in(&mut d, &[0, 0, 0, 0, 0, 0], 0);
    assert_eq!(sense_of(&c), Sense::NO_MEDIUM_TRAY_OPEN);
    let (_, b) = run_in(&mut d, &[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0], 8);
    assert_eq!(b[1], 0x10, "door open");
    // Load again.
    run_in(&mut d, &[0x1b, 0, 0, 0, 0x03, 0], 0);
    assert!(!d.tray_open());
    assert_eq!(d.take_tray_moved(), Some(false));
    let (c, _) = run_in(&mut d, &[0, 0, 0, 0, 0, 0], 0);
    assert_eq!(c.status, status::GOOD);
}

#[test]
fn target_reports_luns_and_answers_for_absent_ones() {
    let mut t = ScsiTarget::new();
    t.insert(0, disk(8));
    t.insert(3, cdrom(Some(4)));
    let mut buf = [0u8; 64];
    let c = {
        let s = [VolatileSlice::from(&mut buf[..])];
        t.execute(1, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], Data::In(&s))
    };
    assert_eq!(c.transferred, 24);
    assert_eq!(&buf[0..4], &[0, 0, 0, 16]);
    assert_eq!(&buf[8..10], &[0, 0]);
    assert_eq!(&buf[16..18], &[0, 3]);
    // LUN 1 is absent: INQUIRY says so, TEST UNIT READY fails.
    let c = {
        let s = [VolatileSlice::from(&mut buf[..])];
        t.execute(1, &[0x12, 0, 0, 0, 36, 0], Data::In(&s))
    };
    assert_eq!(c.status, status::GOOD);
    assert_eq!(buf[0], 0x7f);
    let c = t.execute(1, &[0, 0, 0, 0, 0, 0], Data::None);
    assert_eq!(sense_of(&c), Sense::LUN_NOT_SUPPORTED);
    // LUN 3 is the CD.
    let c = {
        let s = [VolatileSlice::from(&mut buf[..])];
        t.execute(3, &[0x12, 0, 0, 0, 36, 0], Data::In(&s))
    };
    assert_eq!(c.status, status::GOOD);
    assert_eq!(buf[0], 0x05);
}

#[test]
fn report_luns_lists_lun_0_even_when_absent() {
    let mut t = ScsiTarget::new();
    t.insert(2, disk(8));
    let mut buf = [0u8; 64];
    let s = [VolatileSlice::from(&mut buf[..])];
    let c = t.execute(2, &[0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], Data::In(&s));
    assert_eq!(c.transferred, 24);
}

#[test]
fn synchronize_cache_and_stats() {
    let stats = Arc::new(BlockStats::default());
    let mut d = disk(8).with_stats(stats.clone());
    let c = d.execute(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], Data::None);
    assert_eq!(c.status, status::GOOD);
    run_in(&mut d, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], 512);
    assert_eq!(stats.flush_ops.load(Ordering::Relaxed), 1);
    assert_eq!(stats.rd_bytes.load(Ordering::Relaxed), 512);
}

#[test]
fn request_sense_walks_the_media_change_sequence() {
    let mut d = cdrom(Some(4));
    d.change_medium(Some(Box::new(MemDisk(vec![0; 2048 * 8]))));
    let rs = [0x03, 0, 0, 0, 18, 0];
    let (_, b) = run_in(&mut d, &rs, 18);
    assert_eq!((b[2], b[12]), (0x02, 0x3a));
    let (_, b) = run_in(&mut d, &rs, 18);
    assert_eq!((b[2], b[12]), (0x06, 0x28));
    let (_, b) = run_in(&mut d, &rs, 18);
    assert_eq!((b[2], b[12]), (0, 0));
    let (c, _) = run_in(&mut d, &[0, 0, 0, 0, 0, 0], 0);
    assert_eq!(c.status, status::GOOD);
    assert_eq!(d.blocks(), 8);
}

#[test]
fn host_tray_and_removal_change_what_the_guest_sees() {
    let mut d = cdrom(Some(4));
    d.set_tray_open(true);
    let (c, _) = run_in(&mut d, &[0, 0, 0, 0, 0, 0], 0);
    assert_eq!(sense_of(&c), Sense::NO_MEDIUM_TRAY_OPEN);
    let gesn = [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0];
    let (_, b) = run_in(&mut d, &gesn, 8);
    assert_eq!(
        (b[4], b[5]),
        (MediaEvent::MediaRemoval as u8, 1),
        "removal, tray open"
    );
    // Closing the tray over the same medium is a new medium to the guest.
    d.set_tray_open(false);
    let (_, b) = run_in(&mut d, &gesn, 8);
    assert_eq!((b[4], b[5]), (MediaEvent::NewMedia as u8, 2));
    let (c, _) = run_in(&mut d, &[0, 0, 0, 0, 0, 0], 0);
    assert_eq!(sense_of(&c), Sense::NO_MEDIUM);
    let (c, _) = run_in(&mut d, &[0, 0, 0, 0, 0, 0], 0);
    assert_eq!(sense_of(&c), Sense::MEDIUM_CHANGED);
    // Removing the medium: no medium, and no change sequence.
    d.change_medium(None);
    assert!(!d.medium_present());
    let (c, _) = run_in(&mut d, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    assert_eq!(sense_of(&c), Sense::NO_MEDIUM);
}

#[test]
fn short_cdbs_are_invalid_fields() {
    let mut d = disk(8);
    let (c, _) = run_in(&mut d, &[0x28, 0, 0], 512);
    assert_eq!(sense_of(&c), Sense::INVALID_FIELD);
    let (c, _) = run_in(&mut d, &[], 512);
    assert_eq!(sense_of(&c), Sense::INVALID_OPCODE);
}

#[test]
fn vendor_product_and_wwn_as_configured() {
    let mut d = ScsiDevice::new(
        DeviceConfig {
            kind: DeviceKind::Disk,
            readonly: false,
            writeback: true,
            serial: None,
            device_id: "scsi0-0-0-0".into(),
            vendor: Some("ACME".into()),
            product: Some("Spinner".into()),
            wwn: Some(0x5000_c500_1234_5678),
        },
        Some(Box::new(MemDisk(vec![0; 4096]))),
    );
    let (_, b) = run_in(&mut d, &[0x12, 0, 0, 0, 36, 0], 36);
    assert_eq!(&b[8..16], b"ACME    ");
    assert_eq!(&b[16..32], b"Spinner         ");
    let (_, b) = run_in(&mut d, &[0x12, 1, 0x83, 0, 255, 0], 255);
    // The device id descriptor, then the NAA one.
    let first = 4 + 4 + usize::from(b[7]);
    assert_eq!(&b[8..first], b"scsi0-0-0-0");
    assert_eq!(&b[first..first + 4], &[0x01, 0x03, 0x00, 8]);
    assert_eq!(
        &b[first + 4..first + 12],
        &0x5000_c500_1234_5678u64.to_be_bytes()
    );
    assert_eq!(usize::from(u16::from_be_bytes([b[2], b[3]])), b.len() - 4);
}
