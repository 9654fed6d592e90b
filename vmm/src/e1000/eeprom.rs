//! The NIC's 64-word Microwire EEPROM: the MAC address and the words drivers read at
//! probe, behind the EECD bit-banging interface (82540's drivers clock every bit
//! through EECD: start bit, opcode 110b, six address bits, then 16 data bits out)
//! and EERD's one-access word read.

use super::model::Model;
use super::regs::eecd;

/// Words in the EEPROM (a 1 Kbit part: EECD's size bit reads 0).
pub const WORDS: usize = 64;
/// What the words 0x00..=0x3F must sum to (the driver checks it at probe).
const CHECKSUM_TARGET: u16 = 0xbaba;
/// Microwire READ opcode with its start bit: 1 10.
const READ_WITH_START: u32 = 0b110;

/// The EEPROM contents for `mac` on a `model`.
pub fn image(mac: [u8; 6], model: Model) -> [u16; WORDS] {
    let device_id = model.device_id();
    let mut w = [0xffffu16; WORDS];
    for (word, pair) in w.iter_mut().zip(mac.chunks(2)) {
        *word = u16::from(pair[0]) | u16::from(pair[1]) << 8;
    }
    // Compatibility word: nothing special (no LOM, no server NIC quirks).
    w[0x03] = 0x0000;
    // ID LED settings: 0xFFFF means the driver's defaults.
    w[0x04] = 0xffff;
    // PBA number (printed by drivers; any value).
    w[0x08] = 0x3000;
    w[0x09] = 0x1000;
    // Initialization control 1: the defaults of the part (load PCI ids and
    // subsystem ids from the EEPROM; no flash, no power management bits).
    w[0x0a] = 0x6403;
    w[0x0b] = device_id;
    w[0x0c] = 0x8086;
    w[0x0d] = device_id;
    w[0x0e] = 0x8086;
    // Initialization control 2 (see `Model::init_control2`).
    w[0x0f] = model.init_control2();
    // Initialization control 3 (port A): no wake-on-LAN (APME clear).
    w[0x24] = 0x0000;
    let sum = w[..WORDS - 1]
        .iter()
        .fold(0u16, |acc, &x| acc.wrapping_add(x));
    w[WORDS - 1] = CHECKSUM_TARGET.wrapping_sub(sum);
    w
}

/// The Microwire side of EECD.
#[derive(Debug)]
pub struct Eeprom {
    words: [u16; WORDS],
    /// EECD bits software drives (SK, CS, DI, FWE, REQ), as last written.
    pins: u32,
    /// Bits clocked in since chip select: start bit, opcode, address.
    shift_in: u32,
    bits_in: u32,
    /// During a read: the bit position in the EEPROM of the data bit on DO.
    read_pos: Option<u32>,
}

impl Eeprom {
    pub fn new(words: [u16; WORDS]) -> Self {
        Eeprom {
            words,
            pins: 0,
            shift_in: 0,
            bits_in: 0,
            read_pos: None,
        }
    }

    /// Word `addr` (EERD reads; out-of-range words read as all ones).
    pub fn word(&self, addr: usize) -> u16 {
        self.words.get(addr).copied().unwrap_or(0xffff)
    }

    /// EECD as read: present, access granted, the driven pins, and DO.
    pub fn read_eecd(&self) -> u32 {
        let mut v = eecd::PRES | eecd::GNT | self.pins;
        let out = match self.read_pos {
            // Idle or busy: DO reads high ("ready").
            None => true,
            Some(pos) => {
                let word = self.word((pos / 16) as usize % WORDS);
                word >> (15 - pos % 16) & 1 == 1
            }
        };
        if out {
            v |= eecd::DO;
        }
        v
    }

    /// A write of EECD: chip select and clock edges move the Microwire state.
    pub fn write_eecd(&mut self, v: u32) {
        let old = self.pins;
        self.pins = v & (eecd::SK | eecd::CS | eecd::DI | eecd::FWE | eecd::REQ);
        if v & eecd::CS == 0 {
            return;
        }
        if old & eecd::CS == 0 {
            // Chip select rises: a new command starts.
            self.shift_in = 0;
            self.bits_in = 0;
            self.read_pos = None;
        }
        let (was, now) = (old & eecd::SK != 0, v & eecd::SK != 0);
        if was == now {
            return;
        }
        if !now {
            // Falling clock: the next data bit goes out.
            if let Some(p) = &mut self.read_pos {
                *p = p.wrapping_add(1);
            }
            return;
        }
        // Rising clock: one bit in, until start + opcode + address are complete.
        if self.read_pos.is_some() {
            return;
        }
        self.shift_in = self.shift_in << 1 | u32::from(v & eecd::DI != 0);
        self.bits_in += 1;
        if self.bits_in == 9 && self.shift_in >> 6 == READ_WITH_START {
            // The falling edge that ends the address puts bit 15 of the word
            // on DO: start one before it.
            let addr = self.shift_in & 0x3f;
            self.read_pos = Some((addr * 16).wrapping_sub(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clocks a read of `addr` as Linux's e1000_read_eeprom does for Microwire.
    fn bitbang_read(e: &mut Eeprom, addr: u32) -> u16 {
        let mut v = eecd::CS;
        e.write_eecd(v);
        let mut out = |e: &mut Eeprom, bit: bool| {
            v = if bit { v | eecd::DI } else { v & !eecd::DI };
            e.write_eecd(v);
            e.write_eecd(v | eecd::SK);
            e.write_eecd(v);
        };
        for b in [true, true, false] {
            out(e, b);
        }
        for i in (0..6).rev() {
            out(e, addr >> i & 1 == 1);
        }
        let mut data = 0u16;
        v &= !eecd::DI;
        for _ in 0..16 {
            e.write_eecd(v | eecd::SK);
            data = data << 1 | u16::from(e.read_eecd() & eecd::DO != 0);
            e.write_eecd(v);
        }
        e.write_eecd(0);
        data
    }

    #[test]
    fn image_checksums_to_baba_and_holds_the_mac() {
        let w = image([0x52, 0x54, 0x00, 0x12, 0x34, 0x56], Model::I82540EM);
        let sum = w.iter().fold(0u16, |a, &x| a.wrapping_add(x));
        assert_eq!(sum, 0xbaba);
        assert_eq!(&w[..3], &[0x5452, 0x1200, 0x5634]);
    }

    #[test]
    fn microwire_reads_every_word() {
        let words = image([2, 0, 0, 0, 0, 1], Model::I82540EM);
        let mut e = Eeprom::new(words);
        for a in 0..WORDS as u32 {
            assert_eq!(bitbang_read(&mut e, a), words[a as usize], "word {a}");
        }
    }

    #[test]
    fn the_82574_image_checksums_and_reads_no_manageability_mode() {
        let w = image([2, 0, 0, 0, 0, 1], Model::I82574L);
        assert_eq!(w.iter().fold(0u16, |a, &x| a.wrapping_add(x)), 0xbaba);
        assert_eq!(w[0x0d], 0x10d3);
        // e1000e's e1000_check_mng_mode_82574: word 0x0F & 0x6000.
        assert_eq!(w[0x0f] & 0x6000, 0);
    }

    #[test]
    fn eecd_reports_present_and_granted() {
        let mut e = Eeprom::new([0; WORDS]);
        e.write_eecd(eecd::REQ);
        let v = e.read_eecd();
        assert_ne!(v & eecd::PRES, 0);
        assert_ne!(v & eecd::GNT, 0);
        assert_ne!(v & eecd::REQ, 0);
    }
}
