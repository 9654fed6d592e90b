//! The MMC-6 commands of a CD/DVD drive that firmware, Linux's `sr` and
//! installers send, answered as QEMU's `scsi-cd` and ATAPI CD do: a single
//! data track starting at LBA 0, a finalised disc, profile DVD-ROM or CD-ROM
//! by size.

use super::{be16, op, reply, Completion, Data, MediaEvent, ScsiDevice, Sense};

/// Largest CD-ROM in 2048-byte blocks (QEMU's `CD_MAX_SECTORS`, 80 minutes);
/// a bigger medium is a DVD.
const CD_MAX_BLOCKS: u64 = 80 * 60 * 75;

/// MMC profiles (MMC-6 §5.3.1).
const PROFILE_CD_ROM: u16 = 0x0008;
const PROFILE_DVD_ROM: u16 = 0x0010;

/// Executes an MMC command on a CD-ROM unit; unknown ones get INVALID COMMAND
/// OPERATION CODE.
pub(super) fn execute(dev: &mut ScsiDevice, op: u8, cdb: &[u8], data: Data<'_, '_>) -> Completion {
    match op {
        op::READ_TOC => read_toc(dev, cdb, data),
        op::GET_CONFIGURATION => get_configuration(dev, cdb, data),
        op::GET_EVENT_STATUS_NOTIFICATION => event_status(dev, cdb, data),
        op::MECHANISM_STATUS => {
            let mut b = [0u8; 8];
            if dev.tray_open() {
                b[1] = 0x10;
            }
            reply(&b, usize::from(be16(&cdb[8..10])), data)
        }
        op::READ_DISC_INFORMATION => {
            if cdb[1] & 7 != 0 {
                return Completion::check(Sense::INVALID_FIELD);
            }
            if let Some(s) = dev.not_ready() {
                return Completion::check(s);
            }
            let mut b = [0u8; 34];
            b[0..2].copy_from_slice(&32u16.to_be_bytes());
            b[2] = 0x0e; // last session complete, disc finalised
            b[3] = 1; // first track on disc
            b[4] = 1; // sessions
            b[5] = 1; // first track of the last session
            b[6] = 1; // last track of the last session
            b[7] = 0x20; // unrestricted use
            reply(&b, usize::from(be16(&cdb[7..9])), data)
        }
        op::SET_CD_SPEED => Completion::good(0),
        _ => Completion::check(Sense::INVALID_OPCODE),
    }
}

fn profile(dev: &ScsiDevice) -> u16 {
    match dev.blocks() {
        0 => 0,
        n if n > CD_MAX_BLOCKS => PROFILE_DVD_ROM,
        _ => PROFILE_CD_ROM,
    }
}

/// An address as READ TOC gives it: LBA, or MSF (with the 2-second lead-in).
fn address(lba: u64, msf: bool) -> [u8; 4] {
    if !msf {
        return (lba as u32).to_be_bytes();
    }
    let x = lba + 150;
    [
        0,
        (x / 4500).min(255) as u8,
        ((x / 75) % 60) as u8,
        (x % 75) as u8,
    ]
}

fn read_toc(dev: &ScsiDevice, cdb: &[u8], data: Data<'_, '_>) -> Completion {
    if let Some(s) = dev.not_ready() {
        return Completion::check(s);
    }
    let msf = cdb[1] & 2 != 0;
    // Format: bits 0-3 of byte 2, or the old place in the control byte.
    let format = match cdb[2] & 0x0f {
        0 => cdb[9] >> 6,
        f => f,
    };
    let alloc = usize::from(be16(&cdb[7..9]));
    let track = cdb[6];
    let mut b = vec![0u8, 0, 1, 1];
    match format {
        0 => {
            if track > 1 && track != 0xaa {
                return Completion::check(Sense::INVALID_FIELD);
            }
            if track <= 1 {
                b.extend_from_slice(&[0, 0x14, 1, 0]);
                b.extend_from_slice(&address(0, msf));
            }
            b.extend_from_slice(&[0, 0x14, 0xaa, 0]);
            b.extend_from_slice(&address(dev.blocks(), msf));
        }
        // Session information: one session, starting at track 1, LBA 0.
        1 => {
            b.extend_from_slice(&[0, 0x14, 1, 0]);
            b.extend_from_slice(&address(0, msf));
        }
        _ => return Completion::check(Sense::INVALID_FIELD),
    }
    let n = (b.len() - 2) as u16;
    b[0..2].copy_from_slice(&n.to_be_bytes());
    reply(&b, alloc, data)
}

fn get_configuration(dev: &ScsiDevice, cdb: &[u8], data: Data<'_, '_>) -> Completion {
    let rt = cdb[1] & 3;
    if rt == 3 {
        return Completion::check(Sense::INVALID_FIELD);
    }
    let start = be16(&cdb[2..4]);
    let alloc = usize::from(be16(&cdb[7..9]));
    let current = profile(dev);
    let cur = |p: u16| u8::from(current == p);
    // (feature code, current, version and flags, data)
    let features: [(u16, bool, u8, Vec<u8>); 3] = [
        // Profile list: DVD-ROM, CD-ROM.
        (
            0x0000,
            true,
            0x03,
            vec![
                0x00,
                0x10,
                cur(PROFILE_DVD_ROM),
                0,
                0x00,
                0x08,
                cur(PROFILE_CD_ROM),
                0,
            ],
        ),
        // Core: ATAPI physical interface, DBE.
        (0x0001, true, 0x0b, vec![0, 0, 0, 2, 1, 0, 0, 0]),
        // Removable medium: tray loading, eject, lock.
        (0x0003, true, 0x03, vec![0x29, 0, 0, 0]),
    ];
    let mut b = vec![0u8; 8];
    b[6..8].copy_from_slice(&current.to_be_bytes());
    for (code, is_current, flags, body) in features {
        let wanted = match rt {
            0 => code >= start,
            1 => code >= start && is_current,
            _ => code == start,
        };
        if !wanted {
            continue;
        }
        b.extend_from_slice(&code.to_be_bytes());
        b.push(flags);
        b.push(body.len() as u8);
        b.extend_from_slice(&body);
    }
    let n = (b.len() - 4) as u32;
    b[0..4].copy_from_slice(&n.to_be_bytes());
    reply(&b, alloc, data)
}

fn event_status(dev: &mut ScsiDevice, cdb: &[u8], data: Data<'_, '_>) -> Completion {
    // Only the polled form exists (no asynchronous notification).
    if cdb[1] & 1 == 0 {
        return Completion::check(Sense::INVALID_FIELD);
    }
    let alloc = usize::from(be16(&cdb[7..9]));
    const MEDIA_CLASS: u8 = 1 << 4;
    if cdb[4] & MEDIA_CLASS == 0 {
        // No event available for the classes asked (NEA).
        return reply(&[0, 2, 0x80, MEDIA_CLASS], alloc, data);
    }
    let event = std::mem::replace(&mut dev.media_event, MediaEvent::NoChange);
    let mut status = 0u8;
    if dev.tray_open() {
        status |= 1;
    }
    if dev.medium_present() {
        status |= 2;
    }
    reply(
        &[0, 6, 4, MEDIA_CLASS, event as u8, status, 0, 0],
        alloc,
        data,
    )
}
