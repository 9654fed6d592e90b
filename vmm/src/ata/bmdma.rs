//! The bus-master IDE registers of one channel (PIIX3/PIIX4 "BMIDE", SFF-8038i):
//! eight ports in the IDE function's BAR4, the first eight for the primary
//! channel and the next eight for the secondary.
//!
//! | offset | register | what the driver does |
//! |---|---|---|
//! | 0 | command | bit 0 starts (1) or stops (0) the transfer, bit 3 its direction (1: device to memory) |
//! | 2 | status | bit 0 active (read-only), bit 1 error and bit 2 interrupt (write 1 to clear), bits 5-6 "drive can DMA" (storage), bit 7 simplex (0) |
//! | 4-7 | PRD table address | a dword-aligned guest-physical address |
//!
//! The PRD table is a list of 8-byte entries: a 32-bit buffer address, a 16-bit
//! byte count (0 means 64 KiB) and, in bit 31 of the second dword, end of table.
//! The channel runs a DMA command when both the command is issued and the start
//! bit is set, whichever comes last (Linux writes the command first, then starts).

use vm_memory::{Bytes, GuestAddress};

use crate::virtio::GuestMem;

/// Command register bits.
pub const CMD_START: u8 = 0x01;
/// Direction: the bus master writes memory (a read from the drive).
pub const CMD_TO_MEMORY: u8 = 0x08;
/// Status register bits.
pub const STATUS_ACTIVE: u8 = 0x01;
pub const STATUS_ERROR: u8 = 0x02;
pub const STATUS_INTERRUPT: u8 = 0x04;
/// Drive 0/1 DMA capable: plain storage for the driver.
const STATUS_DRIVES: u8 = 0x60;
/// Ports per channel in BAR4, and the BAR's size.
pub const PORTS_PER_CHANNEL: u64 = 8;
pub const BAR_SIZE: u64 = 16;
/// Bound on PRD entries walked: a table may not cross a 64 KiB boundary, so at
/// most 8192 entries exist.
const MAX_PRDS: usize = 8192;

/// The registers of one channel's bus master.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BusMaster {
    pub command: u8,
    pub status: u8,
    pub prd: u32,
}

/// What a register write asks of the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    /// The start bit went from 0 to 1: run a pending DMA command.
    Start,
}

impl BusMaster {
    /// Reads the register byte at `offset` (0-7).
    pub fn read(&self, offset: u64) -> u8 {
        match offset {
            0 => self.command,
            2 => self.status,
            4..=7 => (self.prd >> (8 * (offset - 4))) as u8,
            _ => 0,
        }
    }

    /// Writes the register byte at `offset` (0-7).
    pub fn write(&mut self, offset: u64, v: u8) -> Action {
        match offset {
            0 => {
                let was = self.command;
                self.command = v & (CMD_START | CMD_TO_MEMORY);
                if v & CMD_START == 0 {
                    // Stop: the transfer (if any) is abandoned.
                    self.status &= !STATUS_ACTIVE;
                    Action::None
                } else if was & CMD_START == 0 {
                    self.status |= STATUS_ACTIVE;
                    Action::Start
                } else {
                    Action::None
                }
            }
            2 => {
                let clear = v & (STATUS_ERROR | STATUS_INTERRUPT);
                self.status = (self.status & !clear & !STATUS_DRIVES) | (v & STATUS_DRIVES);
                Action::None
            }
            4..=7 => {
                let shift = 8 * (offset - 4);
                self.prd = (self.prd & !(0xff << shift)) | u32::from(v) << shift;
                self.prd &= !3;
                Action::None
            }
            _ => Action::None,
        }
    }

    /// Whether a transfer is started.
    pub fn started(&self) -> bool {
        self.command & CMD_START != 0
    }

    /// Whether the transfer moves data from the drive into memory.
    pub fn to_memory(&self) -> bool {
        self.command & CMD_TO_MEMORY != 0
    }

    /// The end of a transfer: not active, interrupt (and error) raised.
    pub fn complete(&mut self, failed: bool) {
        self.status &= !STATUS_ACTIVE;
        self.status |= STATUS_INTERRUPT;
        if failed {
            self.status |= STATUS_ERROR;
        }
    }

    /// The PRD table's buffers: (guest address, bytes), up to the entry with
    /// end of table. `None` if the table is outside guest memory or has no end.
    pub fn prd_list(&self, mem: &GuestMem) -> Option<Vec<(u64, usize)>> {
        let mut out = Vec::new();
        let mut at = u64::from(self.prd);
        for _ in 0..MAX_PRDS {
            let mut e = [0u8; 8];
            mem.read_slice(&mut e, GuestAddress(at)).ok()?;
            let addr = u32::from_le_bytes(e[0..4].try_into().expect("4 bytes"));
            let count = u16::from_le_bytes([e[4], e[5]]);
            let len = if count == 0 {
                0x1_0000
            } else {
                usize::from(count)
            };
            out.push((u64::from(addr & !1), len & !1));
            if e[7] & 0x80 != 0 {
                return Some(out);
            }
            at += 8;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_stop_and_status_bits() {
        let mut bm = BusMaster::default();
        assert_eq!(bm.write(0, CMD_TO_MEMORY), Action::None);
        assert_eq!(bm.write(0, CMD_TO_MEMORY | CMD_START), Action::Start);
        assert!(bm.started() && bm.to_memory());
        assert_eq!(bm.read(2) & STATUS_ACTIVE, STATUS_ACTIVE);
        assert_eq!(bm.write(0, CMD_TO_MEMORY | CMD_START), Action::None);
        bm.complete(false);
        assert_eq!(bm.read(2), STATUS_INTERRUPT);
        // Drive-capable bits are storage; interrupt is write-1-to-clear.
        bm.write(2, 0x60 | STATUS_INTERRUPT);
        assert_eq!(bm.read(2), 0x60);
        bm.write(0, 0);
        assert!(!bm.started());
    }

    #[test]
    fn prd_address_is_dword_aligned_and_byte_writable() {
        let mut bm = BusMaster::default();
        for (i, b) in 0x0012_3457u32.to_le_bytes().iter().enumerate() {
            bm.write(4 + i as u64, *b);
        }
        assert_eq!(bm.prd, 0x0012_3454);
        assert_eq!(bm.read(5), 0x34);
    }

    #[test]
    fn prd_table_walks_to_end_of_table() {
        let mem = GuestMem::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let table = [
            (0x2000u32, 0x200u16, false),
            (0x4000, 0, false), // 64 KiB
            (0x8000, 0x400, true),
        ];
        for (i, (addr, count, eot)) in table.iter().enumerate() {
            let at = 0x1000 + 8 * i as u64;
            mem.write_obj(*addr, GuestAddress(at)).unwrap();
            let flags = u32::from(*count) | if *eot { 1 << 31 } else { 0 };
            mem.write_obj(flags, GuestAddress(at + 4)).unwrap();
        }
        let bm = BusMaster {
            prd: 0x1000,
            ..Default::default()
        };
        assert_eq!(
            bm.prd_list(&mem).unwrap(),
            vec![(0x2000, 0x200), (0x4000, 0x1_0000), (0x8000, 0x400)]
        );
        let outside = BusMaster {
            prd: 0xfff8,
            ..Default::default()
        };
        assert!(outside.prd_list(&mem).is_none(), "a table without its end");
    }
}
