//! IDENTIFY DEVICE and IDENTIFY PACKET DEVICE data (ATA8-ACS §7.16, §7.17): the
//! 256 words an ATA disk or ATAPI CD-ROM describes itself with, filled in as
//! QEMU's `ide-hd` and `ide-cd` do (so guests see the same drive either way).

/// What the identify data says about one drive.
pub struct IdentifyInfo<'a> {
    /// Serial number (20 ASCII characters at most).
    pub serial: &'a str,
    /// Model (40 characters at most).
    pub model: &'a str,
    /// Capacity in 512-byte sectors (disks).
    pub sectors: u64,
    /// Write cache enabled (SET FEATURES 0x02/0x82).
    pub write_cache: bool,
    /// DATA SET MANAGEMENT / TRIM offered (`discard='unmap'`).
    pub trim: bool,
    /// World wide name (words 108-111).
    pub wwn: Option<u64>,
    /// Native command queuing (AHCI only), with this queue depth.
    pub ncq_depth: Option<u8>,
}

/// Firmware revision in the identify data (QEMU's).
const FIRMWARE: &str = "2.5+";

/// Puts `text` into `words` as ATA strings are stored: two characters per word,
/// the first in the high byte, padded with spaces.
fn put_string(words: &mut [u16], text: &str) {
    let mut bytes = vec![b' '; words.len() * 2];
    let n = text.len().min(bytes.len());
    bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
    for (w, pair) in words.iter_mut().zip(bytes.chunks(2)) {
        *w = u16::from(pair[0]) << 8 | u16::from(pair[1]);
    }
}

/// Word 255: signature 0xA5 and a checksum that makes all 512 bytes sum to 0.
fn seal(id: &mut [u16; 256]) {
    id[255] = 0x00a5;
    let sum = id
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .fold(0u8, |a, b| a.wrapping_add(b));
    id[255] |= u16::from(0u8.wrapping_sub(sum)) << 8;
}

/// CHS geometry for a disk of `sectors`: 16 heads, 63 sectors per track, as
/// many cylinders as fit (at most 16383), like QEMU's default.
pub fn geometry(sectors: u64) -> (u16, u16, u16) {
    let cyl = (sectors / (16 * 63)).clamp(1, 16383) as u16;
    (cyl, 16, 63)
}

/// IDENTIFY DEVICE data of an ATA disk.
pub fn disk(info: &IdentifyInfo<'_>) -> [u16; 256] {
    let mut id = [0u16; 256];
    let (cyl, heads, spt) = geometry(info.sectors);
    id[0] = 0x0040; // fixed disk
    id[1] = cyl;
    id[3] = heads;
    id[4] = 512 * spt; // obsolete, QEMU fills it
    id[5] = 512;
    id[6] = spt;
    put_string(&mut id[10..20], info.serial);
    id[20] = 3; // buffer type (obsolete)
    id[21] = 512; // buffer size in sectors (obsolete)
    id[22] = 4; // ECC bytes (obsolete)
    put_string(&mut id[23..27], FIRMWARE);
    put_string(&mut id[27..47], info.model);
    id[47] = 0x8000 | MAX_MULTIPLE;
    id[48] = 1; // dword I/O
    id[49] = (1 << 11) | (1 << 9) | (1 << 8); // IORDY, LBA, DMA
    id[51] = 0x200; // PIO transfer cycle
    id[52] = 0x200; // DMA transfer cycle
    id[53] = 1 | (1 << 1) | (1 << 2); // words 54-58, 64-70, 88 valid
    id[54] = cyl;
    id[55] = heads;
    id[56] = spt;
    let chs = u32::from(cyl) * u32::from(heads) * u32::from(spt);
    id[57] = chs as u16;
    id[58] = (chs >> 16) as u16;
    id[59] = 0x100 | MAX_MULTIPLE; // multiple sector setting valid
    let lba28 = info.sectors.min(0x0fff_ffff) as u32;
    id[60] = lba28 as u16;
    id[61] = (lba28 >> 16) as u16;
    id[62] = 0x07; // single word DMA 0-2
    id[63] = 0x07; // multiword DMA 0-2
    id[64] = 0x03; // PIO 3 and 4
    id[65] = 120;
    id[66] = 120;
    id[67] = 120;
    id[68] = 120;
    if info.trim {
        id[69] = 1 << 14; // deterministic read after TRIM
    }
    if let Some(depth) = info.ncq_depth {
        id[75] = u16::from(depth.max(1) - 1);
        id[76] = (1 << 8) | (1 << 2) | (1 << 1); // NCQ, SATA 3.0 and 1.5 Gb/s
    }
    id[80] = 0xf0; // ATA/ATAPI-4 to -7
    id[81] = 0x16;
    id[82] = (1 << 14) | (1 << 5) | 1; // NOP, write cache, SMART
    id[83] = (1 << 14) | (1 << 13) | (1 << 12) | (1 << 10); // FLUSH EXT, FLUSH, LBA48
    id[84] = (1 << 14) | if info.wwn.is_some() { 1 << 8 } else { 0 };
    id[85] = (1 << 14) | if info.write_cache { 1 << 5 } else { 0 } | 1;
    id[86] = (1 << 13) | (1 << 12) | (1 << 10);
    id[87] = (1 << 14) | if info.wwn.is_some() { 1 << 8 } else { 0 };
    id[88] = 0x3f | (1 << 13); // UDMA 0-5, mode 5 selected
    id[93] = 1 | (1 << 14) | 0x2000; // 80-wire cable
    for (i, w) in id[100..104].iter_mut().enumerate() {
        *w = (info.sectors >> (16 * i)) as u16;
    }
    if info.trim {
        id[105] = 1; // DSM: one 512-byte block of ranges per command
    }
    if let Some(wwn) = info.wwn {
        for (i, w) in id[108..112].iter_mut().enumerate() {
            *w = (wwn >> (48 - 16 * i)) as u16;
        }
    }
    if info.trim {
        id[169] = 1; // TRIM supported
    }
    seal(&mut id);
    id
}

/// IDENTIFY PACKET DEVICE data of an ATAPI CD-ROM.
pub fn cdrom(info: &IdentifyInfo<'_>) -> [u16; 256] {
    let mut id = [0u16; 256];
    // ATAPI, CD-ROM, removable, DRQ within 50 µs, 12-byte packets.
    id[0] = (2 << 14) | (5 << 8) | (1 << 7) | (2 << 5);
    put_string(&mut id[10..20], info.serial);
    id[20] = 3;
    id[21] = 512;
    id[22] = 4;
    put_string(&mut id[23..27], FIRMWARE);
    put_string(&mut id[27..47], info.model);
    id[48] = 1;
    id[49] = (1 << 9) | (1 << 8); // LBA, DMA
    id[53] = 7;
    id[62] = 7;
    id[63] = 7;
    id[64] = 3;
    id[65] = 0xb4;
    id[66] = 0xb4;
    id[67] = 0x12c;
    id[68] = 0xb4;
    id[71] = 30;
    id[72] = 30;
    id[80] = 0x1e; // ATA/ATAPI-1 to -4
    id[88] = 0x3f | (1 << 13);
    id[93] = 1 | (1 << 14) | 0x2000;
    seal(&mut id);
    id
}

/// Sectors per READ/WRITE MULTIPLE block.
pub const MAX_MULTIPLE: u16 = 16;

/// The identify words as the 512 bytes the guest reads (little-endian words).
pub fn bytes(id: &[u16; 256]) -> [u8; 512] {
    let mut b = [0u8; 512];
    for (i, w) in id.iter().enumerate() {
        b[2 * i..2 * i + 2].copy_from_slice(&w.to_le_bytes());
    }
    b
}
