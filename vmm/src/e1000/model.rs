//! Which Intel part the function is: the 82540EM (`e1000`) or the 82574L (`e1000e`).
//! The two share the register file, descriptor rings, PHY behind MDIC and EEPROM
//! image; what differs is kept here, so `device` asks the model rather than
//! carrying two copies. The 82574L facts are what Linux's e1000e driver (82571.c,
//! netdev.c) and QEMU's hw/net/e1000e_core.c rely on.

use super::regs::eerd;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// 82540EM: PCI, Microwire EEPROM, legacy receive descriptors.
    I82540EM,
    /// 82574L: PCIe, EERD in the 82571 layout, software/firmware semaphores,
    /// extended receive descriptors (RFCTL.EXSTEN), INT_ASSERTED in ICR.
    I82574L,
}

impl Model {
    /// The PCI device id (drivers bind on it).
    pub fn device_id(self) -> u16 {
        match self {
            Model::I82540EM => 0x100e,
            Model::I82574L => 0x10d3,
        }
    }

    /// PCI subsystem vendor and id, as QEMU's device of the same name.
    pub fn subsystem(self) -> (u16, u16) {
        match self {
            Model::I82540EM => (0x1af4, 0x1100),
            Model::I82574L => (0x8086, 0x0000),
        }
    }

    /// PHY identifier register 2: a Marvell 88E1011 on the 82540EM, the BM PHY
    /// (BME1000_E_PHY_ID_R2, which e1000e insists on) on the 82574L.
    pub fn phy_id2(self) -> u16 {
        match self {
            Model::I82540EM => 0x0c20,
            Model::I82574L => 0x0cb1,
        }
    }

    /// EERD's start, done and address-shift: the 82571 family moved them.
    pub fn eerd_layout(self) -> (u32, u32, u32) {
        match self {
            Model::I82540EM => (eerd::START, eerd::DONE, eerd::ADDR_SHIFT),
            Model::I82574L => (eerd::START, eerd::DONE_82571, eerd::ADDR_SHIFT_82571),
        }
    }

    /// EEPROM word 0x0F (initialization control 2). On the 82574L bits 13-14 are
    /// the manageability mode, which must read 0 or the driver defers PHY resets
    /// to firmware that is not there; the 82540EM's pause bits sit at 12-13.
    pub fn init_control2(self) -> u16 {
        match self {
            Model::I82540EM => 0x3040,
            Model::I82574L => 0x8058,
        }
    }

    pub fn is_82574(self) -> bool {
        self == Model::I82574L
    }

    /// The name in log lines (QEMU's device name).
    pub fn name(self) -> &'static str {
        match self {
            Model::I82540EM => "e1000",
            Model::I82574L => "e1000e",
        }
    }
}
