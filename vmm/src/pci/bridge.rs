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

use std::sync::Arc;

use super::config::{ConfigSpace, PciHeader};
use super::hotplug::{HotplugSlot, SlotError};
use super::msi::Msi;
use super::msix::MsiSink;
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

/// Offsets in the PCI Express capability.
const EXP_LNKSTA: usize = 0x12;
const EXP_SLTCAP: usize = 0x14;
const EXP_SLTCTL: usize = 0x18;
/// Link Status: data link layer link active.
const LNKSTA_DLLLA: u16 = 1 << 13;

/// A root port's hot-plug slot: its registers, where they are, and the port's
/// MSI (the hot-plug interrupt).
struct PortSlot {
    /// Offset of the PCI Express capability.
    cap: usize,
    slot: HotplugSlot,
    msi: Option<Msi>,
    /// The OS powered the occupied slot off: the device behind may go.
    unplug_ready: bool,
}

/// A bridge function.
pub struct Bridge {
    kind: BridgeKind,
    index: u8,
    config: ConfigSpace,
    hotplug: Option<PortSlot>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("kind", &self.kind)
            .field("index", &self.index)
            .finish()
    }
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
            // Slot capabilities: hot-plug as QEMU's root port (`hotplug.rs`),
            // physical slot number = chassis (libvirt's meaning).
            let slotcap = HotplugSlot::capabilities() | u32::from(chassis) << 19;
            cap[EXP_SLTCAP..EXP_SLTCAP + 4].copy_from_slice(&slotcap.to_le_bytes());
            // Writable: device control, link control, root control, device
            // control 2, link control 2. Slot control and status are the hot-plug
            // model's (`PortSlot`).
            let mut w = [0u8; 0x3c];
            w[0x08..0x0a].fill(0xff);
            w[0x10..0x12].fill(0xff);
            w[0x1c..0x1e].fill(0xff);
            w[0x28..0x2a].fill(0xff);
            w[0x30..0x32].fill(0xff);
            let at = config.add_capability(&cap, &w);
            // Empty until a device is placed behind it.
            let mut b = Bridge {
                kind,
                index,
                config,
                hotplug: Some(PortSlot {
                    cap: at,
                    slot: HotplugSlot::new(false),
                    msi: None,
                    unplug_ready: false,
                }),
            };
            b.sync_slot();
            return b;
        }
        // A bridge has no BARs and no interrupt pin of its own.
        Bridge {
            kind,
            index,
            config,
            hotplug: None,
        }
    }

    /// Gives a root port its MSI capability, through which the hot-plug
    /// interrupt goes (QEMU's `ioh3420` way; a conventional bridge has none).
    pub fn with_msi(mut self, sink: Arc<dyn MsiSink>) -> Self {
        if let Some(h) = self.hotplug.as_mut() {
            h.msi = Some(Msi::add(&mut self.config, sink));
        }
        self
    }

    /// Copies the slot model's registers (and link state) into configuration space.
    fn sync_slot(&mut self) {
        let Some(h) = self.hotplug.as_ref() else {
            return;
        };
        let ctl = h.slot.control().to_le_bytes();
        let sta = h.slot.status().to_le_bytes();
        let at = h.cap + EXP_SLTCTL;
        for (i, b) in ctl.iter().chain(sta.iter()).enumerate() {
            self.config.set_byte(at + i, *b);
        }
        let l = h.cap + EXP_LNKSTA;
        let mut lnksta = u16::from_le_bytes([self.config.byte(l), self.config.byte(l + 1)]);
        lnksta &= !LNKSTA_DLLLA;
        if h.slot.link_active() {
            lnksta |= LNKSTA_DLLLA;
        }
        self.config.set_byte(l, lnksta as u8);
        self.config.set_byte(l + 1, (lnksta >> 8) as u8);
    }

    /// After a slot change: copies the registers out and sends the hot-plug
    /// interrupt if an enabled event just became pending.
    fn slot_changed(&mut self) {
        self.sync_slot();
        let Some(h) = self.hotplug.as_mut() else {
            return;
        };
        if h.slot.take_edge() {
            if let Some(m) = h.msi.as_ref().filter(|m| m.enabled(&self.config)) {
                m.trigger();
            }
        }
    }

    /// A device is placed behind the port while the machine is built (no event).
    pub fn set_populated(&mut self, populated: bool) {
        if let Some(h) = self.hotplug.as_mut() {
            h.slot.cold_set(populated);
            self.sync_slot();
        }
    }

    /// Whether this port has a hot-plug slot (a PCIe root port).
    pub fn hotplug_capable(&self) -> bool {
        self.hotplug.is_some()
    }

    /// Hot-add: a device was put behind the port.
    pub fn plug(&mut self) -> Result<(), SlotError> {
        let h = self.hotplug.as_mut().ok_or(SlotError::Occupied)?;
        h.slot.plug()?;
        h.unplug_ready = false;
        self.slot_changed();
        Ok(())
    }

    /// Hot-remove request: presses the attention button. Returns true when the
    /// device can go at once (the guest had powered the slot off already).
    pub fn request_unplug(&mut self) -> Result<bool, SlotError> {
        let h = self.hotplug.as_mut().ok_or(SlotError::Empty)?;
        if h.slot.unplug_now() {
            return Ok(true);
        }
        h.slot.request_unplug()?;
        self.slot_changed();
        Ok(false)
    }

    /// Whether the guest powered the occupied slot off since the last call: the
    /// device behind must be removed now (then call [`Bridge::unplugged`]).
    pub fn take_unplug_ready(&mut self) -> bool {
        self.hotplug
            .as_mut()
            .is_some_and(|h| std::mem::take(&mut h.unplug_ready))
    }

    /// The device behind the port was removed.
    pub fn unplugged(&mut self) {
        if let Some(h) = self.hotplug.as_mut() {
            h.slot.removed();
            self.slot_changed();
        }
    }

    /// A guest write in the slot control/status dword: the hot-plug model takes it.
    fn write_slot(&mut self, reg: usize, offset: u8, data: &[u8]) -> bool {
        let Some(h) = self.hotplug.as_mut() else {
            return false;
        };
        let base = h.cap + EXP_SLTCTL;
        if reg != base / 4 {
            return false;
        }
        // The dword holds control (bytes 0-1) and status (2-3); merge the
        // written bytes into each.
        let mut ctl = h.slot.control().to_le_bytes();
        let mut sta = [0u8; 2];
        let (mut wrote_ctl, mut wrote_sta) = (false, false);
        for (i, &b) in data.iter().enumerate() {
            match usize::from(offset) + i {
                p @ 0..=1 => {
                    ctl[p] = b;
                    wrote_ctl = true;
                }
                p => {
                    sta[p - 2] = b;
                    wrote_sta = true;
                }
            }
        }
        if wrote_sta {
            h.slot.write_status(u16::from_le_bytes(sta));
        }
        if wrote_ctl && h.slot.write_control(u16::from_le_bytes(ctl)).unplug {
            h.unplug_ready = true;
        }
        self.slot_changed();
        true
    }

    /// Sets the bus numbers, as firmware would (direct kernel boot has no firmware).
    pub fn set_bus_numbers(&mut self, primary: u8, secondary: u8, subordinate: u8) {
        self.config.set_byte(PRIMARY_BUS, primary);
        self.config.set_byte(SECONDARY_BUS, secondary);
        self.config.set_byte(SECONDARY_BUS + 1, subordinate);
    }
}

/// A bridge's registers and its hot-plug slot's.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedBridge {
    regs: Vec<u32>,
    slot: Option<(HotplugSlot, bool)>,
}

impl PciDevice for Bridge {
    fn can_save(&self) -> bool {
        true
    }
    fn save_state(&mut self) -> Option<serde_json::Value> {
        Some(crate::vmstate::to_value(&SavedBridge {
            regs: self.config.save_regs(),
            slot: self
                .hotplug
                .as_ref()
                .map(|h| (h.slot.clone(), h.unplug_ready)),
        }))
    }
    fn restore_state(&mut self, state: &serde_json::Value) -> Result<(), String> {
        let s: SavedBridge = crate::vmstate::from_value(state)?;
        self.config.restore_regs(&s.regs)?;
        match (self.hotplug.as_mut(), s.slot) {
            (Some(h), Some((slot, ready))) => {
                h.slot = slot;
                h.unplug_ready = ready;
                // The MSI message comes from the restored capability.
                if let Some(m) = h.msi.as_mut() {
                    m.config_written(&self.config);
                }
            }
            (None, None) => {}
            _ => return Err("the saved bridge differs in its hot-plug slot".into()),
        }
        Ok(())
    }
    fn state_name(&self) -> String {
        format!("{:?}", self.kind)
    }
    fn read_config(&mut self, reg: usize) -> u32 {
        self.config.read(reg)
    }
    fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]) {
        if self.write_slot(reg, offset, data) {
            return;
        }
        self.config.write(reg, offset, data);
        if let Some(m) = self.hotplug.as_mut().and_then(|h| h.msi.as_mut()) {
            m.config_written(&self.config);
        }
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
    fn as_bridge(&mut self) -> Option<&mut Bridge> {
        Some(self)
    }
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

    /// The root port's slot registers through ECAM: (control, status).
    fn slot_regs(root: &mut super::super::PciRoot, port: u64) -> (u16, u16, u16) {
        let mut d = [0u8; 4];
        root.ecam_read(port + 0x34, &mut d);
        let cap = u64::from(d[0]);
        root.ecam_read(port + cap + EXP_SLTCTL as u64, &mut d);
        let mut l = [0u8; 2];
        root.ecam_read(port + cap + EXP_LNKSTA as u64, &mut l);
        (
            u16::from_le_bytes([d[0], d[1]]),
            u16::from_le_bytes([d[2], d[3]]),
            u16::from_le_bytes(l),
        )
    }

    #[test]
    fn hot_add_and_guest_completed_removal_through_the_root() {
        use std::sync::{Arc, Mutex};
        let mut root = super::super::PciRoot::new(super::super::PciWindows {
            mmio32: (0xc000_0000, 0x1000_0000),
            mmio64: (0, 0),
        });
        let mut port = Bridge::new(BridgeKind::PcieRootPort, 1, 1, 0x10);
        port.set_bus_numbers(0, 1, 1);
        root.add_device(2, 0, Box::new(port)).unwrap();
        let gone = Arc::new(Mutex::new(Vec::new()));
        let g = gone.clone();
        root.set_unplug_listener(Box::new(move |bus, _slot, devs| {
            g.lock().unwrap().push((bus, devs.len()));
        }));
        let port = 2u64 << 15;
        let (ctl, sta, lnk) = slot_regs(&mut root, port);
        assert_eq!(sta & (1 << 6), 0, "empty: no presence");
        assert_eq!(ctl & (1 << 10), 1 << 10, "empty: powered off");
        assert_eq!(lnk & LNKSTA_DLLLA, 0);
        // Hot-add: the function shows on bus 1 and the slot reports it.
        let dev = Bridge::new(BridgeKind::PciBridge, 9, 0, 0);
        root.hotplug_behind(1, Box::new(dev)).unwrap();
        let mut d = [0u8; 4];
        root.ecam_read(1 << 20, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x0001_1b36);
        let (_, sta, _) = slot_regs(&mut root, port);
        assert_eq!(
            sta & 0x148,
            0x148,
            "presence, presence changed, link changed"
        );
        let dev = Bridge::new(BridgeKind::PciBridge, 9, 0, 0);
        assert!(matches!(
            root.hotplug_behind(1, Box::new(dev)),
            Err(super::super::PciError::AddressInUse { .. })
        ));
        // The guest powers the slot on (power indicator on): the link is up.
        let mut cap = [0u8; 1];
        root.ecam_read(port + 0x34, &mut cap);
        let sltctl = port + u64::from(cap[0]) + EXP_SLTCTL as u64;
        root.ecam_write(sltctl, &(0x103fu16).to_le_bytes());
        root.ecam_write(sltctl + 2, &(0x0158u16).to_le_bytes());
        let (_, sta, lnk) = slot_regs(&mut root, port);
        assert_eq!(lnk & LNKSTA_DLLLA, LNKSTA_DLLLA);
        assert_eq!(
            sta & 0x158,
            0x40,
            "events cleared; command completed was also cleared"
        );
        // Unplug request: the attention button; nothing goes yet.
        assert!(root.request_unplug(1).unwrap().is_none());
        let (_, sta, _) = slot_regs(&mut root, port);
        assert_eq!(sta & 1, 1);
        assert!(gone.lock().unwrap().is_empty());
        // The guest powers off, then turns the power indicator off: removed.
        root.ecam_write(sltctl, &(0x153fu16).to_le_bytes());
        assert!(gone.lock().unwrap().is_empty());
        root.ecam_write(sltctl, &(0x173fu16).to_le_bytes());
        assert_eq!(*gone.lock().unwrap(), vec![(1, 1)]);
        root.ecam_read(1 << 20, &mut d);
        assert_eq!(u32::from_le_bytes(d), u32::MAX);
        let (_, sta, _) = slot_regs(&mut root, port);
        assert_eq!(sta & (1 << 6), 0);
        assert!(matches!(
            root.request_unplug(1),
            Err(super::super::PciError::Hotplug { .. })
        ));
    }

    #[test]
    fn conventional_bridge_takes_no_hotplug() {
        let mut root = super::super::PciRoot::new(super::super::PciWindows {
            mmio32: (0xc000_0000, 0x1000_0000),
            mmio64: (0, 0),
        });
        root.add_device(3, 0, Box::new(Bridge::new(BridgeKind::PciBridge, 1, 1, 0)))
            .unwrap();
        let dev = Bridge::new(BridgeKind::PciBridge, 9, 0, 0);
        assert!(matches!(
            root.hotplug_behind(1, Box::new(dev)),
            Err(super::super::PciError::NotHotplug { bus: 1 })
        ));
    }
}
