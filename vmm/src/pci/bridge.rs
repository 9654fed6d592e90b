//! PCI-to-PCI bridges that give a domain's devices buses of their own: PCIe root
//! ports (libvirt `pcie-root-port`, QEMU's 1b36:000c, the way libvirt lays out every
//! Q35 domain) and conventional PCI bridges (`pci-bridge`, 1b36:0001, i440FX).
//!
//! A bridge here is a type-1 configuration header whose bus numbers and windows are
//! plain registers: the firmware (or the OS) numbers the buses and programs the
//! windows, and [`crate::pci::PciRoot`] routes configuration cycles for the
//! secondary bus to the devices behind it. Memory decoding is flat — every BAR is
//! dispatched by address wherever its device sits — so windows need no emulation;
//! they only have to read back what was written.

use super::config::{ConfigSpace, PciHeader};
use super::{BridgeBus, PciDevice};

/// Type-1 header registers.
const PRIMARY_BUS: usize = 0x18;
const SECONDARY_BUS: usize = 0x19;
/// I/O base/limit, secondary status.
const IO_BASE: usize = 0x1c;
/// Memory base/limit, prefetchable base/limit, their upper halves, I/O upper halves.
const MEM_BASE: usize = 0x20;
const IO_UPPER: usize = 0x30;
/// Bridge control.
const BRIDGE_CONTROL: usize = 0x3e;
/// Header type byte.
const HEADER_TYPE: usize = 0x0e;

/// PCI Express capability ID.
const CAP_EXP: u8 = 0x10;
/// PCIe capability register: version 2, device/port type 4 (root port), slot implemented.
const EXP_FLAGS_ROOT_PORT: u16 = 2 | (4 << 4) | (1 << 8);

/// Which kind of bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeKind {
    /// A PCIe root port: one link, so one device (number 0) behind it.
    PcieRootPort,
    /// A conventional PCI-to-PCI bridge with 32 slots behind it.
    PciBridge,
}

/// A bridge function.
#[derive(Debug)]
pub struct Bridge {
    kind: BridgeKind,
    index: u8,
    config: ConfigSpace,
}

impl Bridge {
    /// A bridge providing spec bus `index`; `chassis` and `port` are libvirt's
    /// `<target chassis port>` (a root port's physical slot and port numbers).
    pub fn new(kind: BridgeKind, index: u8, chassis: u8, port: u8) -> Self {
        let device = match kind {
            BridgeKind::PcieRootPort => 0x000c,
            BridgeKind::PciBridge => 0x0001,
        };
        let mut config = ConfigSpace::new(PciHeader {
            vendor: 0x1b36,
            device,
            revision: 0,
            class: 0x06_0400,
            // A type-1 header has no subsystem IDs at 0x2c (that is the
            // prefetchable window's upper half): leave those bytes zero.
            subsystem_vendor: 0,
            subsystem: 0,
        });
        config.set_byte(HEADER_TYPE, 0x01);
        // Bus numbers, windows, upper halves and bridge control are the firmware's.
        config.set_writable(PRIMARY_BUS, 3);
        config.set_writable(IO_BASE, 2);
        config.set_writable(MEM_BASE, 16);
        config.set_writable(IO_UPPER, 4);
        config.set_writable(BRIDGE_CONTROL, 2);
        // I/O base/limit say "16-bit decode"; prefetchable ones "64-bit".
        config.set_byte(IO_BASE, 0x01);
        config.set_byte(IO_BASE + 1, 0x01);
        config.set_byte(MEM_BASE + 4, 0x01);
        config.set_byte(MEM_BASE + 6, 0x01);
        if kind == BridgeKind::PcieRootPort {
            let mut cap = [0u8; 0x3c];
            cap[0] = CAP_EXP;
            cap[2..4].copy_from_slice(&EXP_FLAGS_ROOT_PORT.to_le_bytes());
            // Device capabilities: 128-byte max payload; role-based error reporting.
            cap[4..8].copy_from_slice(&(1u32 << 15).to_le_bytes());
            // Link capabilities: 2.5 GT/s, x1, the port number; link status: same,
            // data link layer active (bit 13).
            let linkcap = 1u32 | (1 << 4) | (1 << 20) | (u32::from(port) << 24);
            cap[0x0c..0x10].copy_from_slice(&linkcap.to_le_bytes());
            let linksta = 1u16 | (1 << 4) | (1 << 13);
            cap[0x12..0x14].copy_from_slice(&linksta.to_le_bytes());
            // Slot capabilities: physical slot number = chassis (libvirt's meaning).
            let slotcap = u32::from(chassis) << 19;
            cap[0x14..0x18].copy_from_slice(&slotcap.to_le_bytes());
            // Slot status: presence detected.
            cap[0x1a..0x1c].copy_from_slice(&(1u16 << 6).to_le_bytes());
            // Writable: device control, link control, slot control, root control,
            // device control 2, link control 2.
            let mut w = [0u8; 0x3c];
            w[0x08..0x0a].fill(0xff);
            w[0x10..0x12].fill(0xff);
            w[0x18..0x1a].fill(0xff);
            w[0x1c..0x1e].fill(0xff);
            w[0x28..0x2a].fill(0xff);
            w[0x30..0x32].fill(0xff);
            config.add_capability(&cap, &w);
        }
        // A bridge has no BARs and no interrupt pin of its own.
        Bridge {
            kind,
            index,
            config,
        }
    }

    /// Sets the bus numbers, as firmware would (direct kernel boot has no firmware).
    pub fn set_bus_numbers(&mut self, primary: u8, secondary: u8, subordinate: u8) {
        self.config.set_byte(PRIMARY_BUS, primary);
        self.config.set_byte(SECONDARY_BUS, secondary);
        self.config.set_byte(SECONDARY_BUS + 1, subordinate);
    }
}

impl PciDevice for Bridge {
    fn read_config(&mut self, reg: usize) -> u32 {
        self.config.read(reg)
    }
    fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]) {
        self.config.write(reg, offset, data);
    }
    fn bars(&self) -> Vec<(usize, u64, u64)> {
        Vec::new()
    }
    fn memory_enabled(&self) -> bool {
        false
    }
    fn bar_read(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn bar_write(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
    fn set_multifunction(&mut self) {
        // Only bit 7 of the header type changes; the type stays 1.
        self.config.set_multifunction(true);
    }
    fn bridge(&self) -> Option<BridgeBus> {
        Some(BridgeBus {
            index: self.index,
            secondary: self.config.byte(SECONDARY_BUS),
            single_device: self.kind == BridgeKind::PcieRootPort,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_port_header_and_bus_numbers() {
        let mut b = Bridge::new(BridgeKind::PcieRootPort, 3, 3, 0x12);
        assert_eq!(b.read_config(0), 0x000c_1b36);
        assert_eq!(b.read_config(2) >> 8, 0x06_0400);
        assert_eq!((b.read_config(3) >> 16) & 0x7f, 1, "type-1 header");
        assert_eq!(b.bridge().unwrap().secondary, 0);
        // Firmware numbers the bus: primary 0, secondary 2, subordinate 2.
        b.write_config(PRIMARY_BUS / 4, 0, &[0, 2, 2]);
        assert_eq!(
            b.bridge(),
            Some(BridgeBus {
                index: 3,
                secondary: 2,
                single_device: true
            })
        );
        // A PCIe capability says "root port".
        let cap = (b.read_config(0x34 / 4) & 0xff) as usize;
        let v = b.read_config(cap / 4);
        assert_eq!(v & 0xff, u32::from(CAP_EXP));
        assert_eq!((v >> 16 >> 4) & 0xf, 4);
        // Windows read back.
        b.write_config(MEM_BASE / 4, 0, &0xfe00_fe00u32.to_le_bytes());
        assert_eq!(b.read_config(MEM_BASE / 4), 0xfe00_fe00);
    }

    #[test]
    fn pci_bridge_has_no_pcie_capability() {
        let mut b = Bridge::new(BridgeKind::PciBridge, 1, 1, 0);
        assert_eq!(b.read_config(0), 0x0001_1b36);
        assert_eq!(b.read_config(1) & (1 << 20), 0, "no capability list");
        assert!(!b.bridge().unwrap().single_device);
    }
}
