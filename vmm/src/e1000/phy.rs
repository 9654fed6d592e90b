//! The copper PHY behind MDIC: a Marvell 88E1011 as on 82540EM boards, or the
//! Marvell-derived BM PHY of the 82574L (the Linux drivers refuse other PHY ids for
//! these MACs; both share the M88 register layout), auto-negotiated to 1000 Mb/s full
//! duplex the moment it is asked, link following the host's link state.

/// MII registers.
const CONTROL: u8 = 0x00;
const STATUS: u8 = 0x01;
const ID1: u8 = 0x02;
const ID2: u8 = 0x03;
const AUTONEG_ADV: u8 = 0x04;
const LP_ABILITY: u8 = 0x05;
const AUTONEG_EXP: u8 = 0x06;
const GIG_CONTROL: u8 = 0x09;
const GIG_STATUS: u8 = 0x0a;
const EXT_STATUS: u8 = 0x0f;
/// Marvell specific control and status.
const M88_SPEC_CONTROL: u8 = 0x10;
const M88_SPEC_STATUS: u8 = 0x11;
const M88_EXT_SPEC_CONTROL: u8 = 0x14;

/// MII control: reset (self-clearing), restart auto-negotiation (self-clearing).
const CONTROL_RESET: u16 = 1 << 15;
const CONTROL_RESTART_AN: u16 = 1 << 9;
/// MII status: link up, auto-negotiation complete.
const STATUS_LINK: u16 = 1 << 2;
const STATUS_AN_COMPLETE: u16 = 1 << 5;
/// M88 specific status: link up.
const M88_STATUS_LINK: u16 = 1 << 10;

/// The PHY address the MAC's PHY answers on.
pub const ADDRESS: u32 = 1;

#[derive(Debug)]
pub struct Phy {
    regs: [u16; 32],
}

impl Phy {
    /// The PHY after reset, answering `id2` in identifier register 2. Register 22
    /// (the BM PHY's page select, which e1000e writes before registers above 15)
    /// just holds its value: every page reads as page 0.
    pub fn new(id2: u16) -> Self {
        let mut regs = [0u16; 32];
        // Auto-negotiation on, full duplex, 1000 Mb/s selected.
        regs[CONTROL as usize] = 0x1140;
        // 100/10 full/half, extended status, preamble suppression; link and
        // auto-negotiation bits follow the link (see `read`).
        regs[STATUS as usize] = 0x794d;
        regs[ID1 as usize] = 0x0141;
        regs[ID2 as usize] = id2;
        regs[AUTONEG_ADV as usize] = 0x0de1;
        // The partner: 10/100 full/half, pause, acknowledge.
        regs[LP_ABILITY as usize] = 0x45e1;
        regs[AUTONEG_EXP as usize] = 0x0001;
        regs[GIG_CONTROL as usize] = 0x0e00;
        // Partner 1000 full duplex capable, local and remote receivers OK.
        regs[GIG_STATUS as usize] = 0x3c00;
        regs[EXT_STATUS as usize] = 0x3000;
        regs[M88_SPEC_CONTROL as usize] = 0x0360;
        // 1000 Mb/s, full duplex, speed and duplex resolved, MDI.
        regs[M88_SPEC_STATUS as usize] = 0xa000 | 0x2000 | 0x0800;
        regs[M88_EXT_SPEC_CONTROL as usize] = 0x0d60;
        Phy { regs }
    }

    /// Register `reg` with the link bits for `link_up`.
    pub fn read(&self, reg: u8, link_up: bool) -> u16 {
        let v = self.regs[reg as usize & 31];
        match reg {
            STATUS if link_up => v | STATUS_LINK | STATUS_AN_COMPLETE,
            STATUS => v & !(STATUS_LINK | STATUS_AN_COMPLETE),
            M88_SPEC_STATUS if link_up => v | M88_STATUS_LINK,
            M88_SPEC_STATUS => v & !M88_STATUS_LINK,
            _ => v,
        }
    }

    /// A write of `reg`; read-only registers keep their value.
    pub fn write(&mut self, reg: u8, v: u16) {
        match reg {
            // Reset and restart complete at once.
            CONTROL => self.regs[0] = v & !(CONTROL_RESET | CONTROL_RESTART_AN),
            STATUS | ID1 | ID2 | LP_ABILITY | AUTONEG_EXP | GIG_STATUS | EXT_STATUS
            | M88_SPEC_STATUS => {}
            r => self.regs[r as usize & 31] = v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_the_88e1011_and_link_follows_the_host() {
        let p = Phy::new(0x0c20);
        assert_eq!((p.read(ID1, true), p.read(ID2, true)), (0x0141, 0x0c20));
        assert_ne!(p.read(STATUS, true) & STATUS_LINK, 0);
        assert_eq!(p.read(STATUS, false) & STATUS_LINK, 0);
    }

    #[test]
    fn restart_and_reset_self_clear() {
        let mut p = Phy::new(0x0c20);
        p.write(CONTROL, 0x1140 | CONTROL_RESTART_AN | CONTROL_RESET);
        assert_eq!(p.read(CONTROL, true), 0x1140);
        p.write(ID1, 0);
        assert_eq!(p.read(ID1, true), 0x0141);
    }
}
