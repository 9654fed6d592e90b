//! Register offsets and bits of the 82540EM (Intel's "PCI/PCI-X Family of Gigabit
//! Ethernet Controllers Software Developer's Manual", 317453, §13), the ones the
//! Linux `e1000` driver, Windows' inbox driver and iPXE touch.

/// Device control.
pub const CTRL: u64 = 0x0000;
/// Device status (read-only).
pub const STATUS: u64 = 0x0008;
/// EEPROM/flash control (Microwire bit-banging).
pub const EECD: u64 = 0x0010;
/// EEPROM read (82540 and later: a word read in one access).
pub const EERD: u64 = 0x0014;
/// MDI control: PHY register access.
pub const MDIC: u64 = 0x0020;
/// Extended device control (82574L: IAME, interrupt auto-mask on ICR read).
pub const CTRL_EXT: u64 = 0x0018;
/// Interrupt auto-mask (82574L): IMS bits cleared when ICR is read under IAME.
pub const IAM: u64 = 0x00e0;
/// Extended configuration control (82574L): bit 5 is the software MDIO semaphore.
pub const EXTCNF_CTRL: u64 = 0x0f00;
/// Management EEPROM control (82574L): bit 18, configuration of port 0 done.
pub const EEMNGCTL: u64 = 0x1010;
/// Receive filter control (82574L): bit 15 selects extended receive descriptors.
pub const RFCTL: u64 = 0x5008;
/// Interrupt cause read (read to clear).
pub const ICR: u64 = 0x00c0;
/// Interrupt cause set.
pub const ICS: u64 = 0x00c8;
/// Interrupt mask set/read.
pub const IMS: u64 = 0x00d0;
/// Interrupt mask clear.
pub const IMC: u64 = 0x00d8;
/// Receive control.
pub const RCTL: u64 = 0x0100;
/// Transmit control.
pub const TCTL: u64 = 0x0400;
/// VLAN ether type.
pub const VET: u64 = 0x0038;
/// Receive descriptor ring: base low/high, length, head, tail.
pub const RDBAL: u64 = 0x2800;
pub const RDBAH: u64 = 0x2804;
pub const RDLEN: u64 = 0x2808;
pub const RDH: u64 = 0x2810;
pub const RDT: u64 = 0x2818;
/// Transmit descriptor ring: base low/high, length, head, tail.
pub const TDBAL: u64 = 0x3800;
pub const TDBAH: u64 = 0x3804;
pub const TDLEN: u64 = 0x3808;
pub const TDH: u64 = 0x3810;
pub const TDT: u64 = 0x3818;
/// Statistics block (every counter is read-to-clear).
pub const STATS_START: u64 = 0x4000;
pub const STATS_END: u64 = 0x4100;
/// Good packets received/transmitted, good octets (low/high), total packets.
pub const GPRC: u64 = 0x4074;
pub const GPTC: u64 = 0x4080;
pub const GORCL: u64 = 0x4088;
pub const GOTCL: u64 = 0x4090;
pub const TPR: u64 = 0x40d0;
pub const TPT: u64 = 0x40d4;
/// Multicast table array (128 dwords).
pub const MTA: u64 = 0x5200;
/// Receive address pairs (16): low dword = bytes 0-3, high = bytes 4-5 + AV.
pub const RA: u64 = 0x5400;

/// Size of the register BAR.
pub const MMIO_SIZE: u64 = 0x20000;

pub mod ctrl {
    /// Set link up.
    pub const SLU: u32 = 1 << 6;
    /// Device reset (self-clearing).
    pub const RST: u32 = 1 << 26;
    /// VLAN mode enable (tag insertion/stripping).
    pub const VME: u32 = 1 << 30;
    /// PHY reset.
    pub const PHY_RST: u32 = 1 << 31;
}

pub mod status {
    /// Full duplex.
    pub const FD: u32 = 1 << 0;
    /// Link up.
    pub const LU: u32 = 1 << 1;
    /// Speed 1000 Mb/s.
    pub const SPEED_1000: u32 = 1 << 7;
    /// Auto-detected speed 1000 (ASDV).
    pub const ASDV_1000: u32 = 3 << 8;
}

pub mod eecd {
    /// Clock, chip select, data in (to the EEPROM), data out (from it).
    pub const SK: u32 = 1 << 0;
    pub const CS: u32 = 1 << 1;
    pub const DI: u32 = 1 << 2;
    pub const DO: u32 = 1 << 3;
    /// Flash write enable (2 bits), request and grant of software access.
    pub const FWE: u32 = 3 << 4;
    pub const REQ: u32 = 1 << 6;
    pub const GNT: u32 = 1 << 7;
    /// EEPROM present.
    pub const PRES: u32 = 1 << 8;
    /// 82574L: the NVM was read into the registers after reset.
    pub const AUTO_RD: u32 = 1 << 9;
}

pub mod ctrl_ext {
    /// Interrupt auto-mask enable: reading ICR clears IMS by IAM.
    pub const IAME: u32 = 1 << 27;
}

/// EEMNGCTL: port 0's configuration cycle is done.
pub const EEMNGCTL_CFG_DONE_0: u32 = 1 << 18;

/// RFCTL: extended receive descriptors.
pub const RFCTL_EXSTEN: u32 = 1 << 15;

pub mod eerd {
    pub const START: u32 = 1 << 0;
    pub const DONE: u32 = 1 << 4;
    pub const ADDR_SHIFT: u32 = 8;
    pub const DATA_SHIFT: u32 = 16;
    /// The 82571 family's layout (82574L): done at bit 1, address from bit 2.
    pub const DONE_82571: u32 = 1 << 1;
    pub const ADDR_SHIFT_82571: u32 = 2;
}

pub mod mdic {
    pub const DATA_MASK: u32 = 0xffff;
    pub const REG_SHIFT: u32 = 16;
    pub const PHY_SHIFT: u32 = 21;
    pub const OP_WRITE: u32 = 1 << 26;
    pub const OP_READ: u32 = 2 << 26;
    pub const READY: u32 = 1 << 28;
    pub const ERROR: u32 = 1 << 30;
}

/// Interrupt causes (ICR, ICS, IMS, IMC share the bits).
pub mod icr {
    /// Transmit descriptor written back.
    pub const TXDW: u32 = 1 << 0;
    /// Transmit queue empty.
    pub const TXQE: u32 = 1 << 1;
    /// Link status change.
    pub const LSC: u32 = 1 << 2;
    /// Receive descriptor minimum threshold reached.
    pub const RXDMT0: u32 = 1 << 4;
    /// Receiver overrun.
    pub const RXO: u32 = 1 << 6;
    /// Receive timer (a frame was stored).
    pub const RXT0: u32 = 1 << 7;
    /// 82574L: an enabled cause is pending (e1000e's INTx handler requires it).
    pub const INT_ASSERTED: u32 = 1 << 31;
}

pub mod rctl {
    pub const EN: u32 = 1 << 1;
    /// Unicast and multicast promiscuous.
    pub const UPE: u32 = 1 << 3;
    pub const MPE: u32 = 1 << 4;
    /// Long packets (over 1522 bytes) accepted.
    pub const LPE: u32 = 1 << 5;
    /// Descriptor minimum threshold size (free/2, /4, /8).
    pub const RDMTS_SHIFT: u32 = 8;
    /// Multicast offset: which 12 address bits index the MTA.
    pub const MO_SHIFT: u32 = 12;
    /// Broadcast accept.
    pub const BAM: u32 = 1 << 15;
    pub const BSIZE_SHIFT: u32 = 16;
    /// Descriptor type (82574L): 01b is packet split, not modelled.
    pub const DTYP_MASK: u32 = 3 << 10;
    /// Buffer size extension (sizes x16).
    pub const BSEX: u32 = 1 << 25;
    /// Strip the Ethernet CRC (else the driver expects 4 bytes of it).
    pub const SECRC: u32 = 1 << 26;
}

pub mod tctl {
    pub const EN: u32 = 1 << 1;
}

/// Receive address high: address valid.
pub const RAH_AV: u32 = 1 << 31;
