//! The PCI root bus: configuration access mechanisms and BAR dispatch.

use std::collections::BTreeMap;

use super::alloc::BarAllocator;
#[cfg(test)]
use super::config::COMMAND_MEMORY;
use super::config::{BarKind, ConfigSpace, PciHeader};
use super::{PciDevice, PciError};

/// First legacy configuration port (CONFIG_ADDRESS); CONFIG_DATA is 0xCFC..0xCFF.
pub const CONFIG_ADDRESS_PORT: u16 = 0xcf8;
/// Number of ports the root decodes from [`CONFIG_ADDRESS_PORT`].
pub const CONFIG_PORTS_LEN: u16 = 8;
/// ECAM size for bus 0..=255 of segment 0 (1 MiB per bus).
pub const ECAM_SIZE: u64 = 256 << 20;
/// Ports the root decodes for I/O BARs: (first port, count). The DSDT's `_CRS`
/// gives PCI 0x0d00-0xffff; legacy devices sit below 0x1000, and firmware
/// (SeaBIOS) and this VMM place I/O BARs from 0xc000, as on QEMU.
pub const IO_WINDOW: (u64, u64) = (0x1000, 0xf000);
/// Where the VMM places I/O BARs itself (direct kernel boot).
const IO_ALLOC: (u64, u64) = (0xc000, 0x4000);

/// Guest-physical windows the VMM's memory layout gives PCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciWindows {
    /// MMIO window below 4 GiB (in the 32-bit PCI hole): (base, size).
    pub mmio32: (u64, u64),
    /// MMIO window above RAM for 64-bit BARs: (base, size); size 0 = none.
    pub mmio64: (u64, u64),
}

/// One function as `query-pci` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    pub slot: u8,
    pub function: u8,
    /// Configuration dwords 0x00-0x3f.
    pub header: [u32; 16],
    /// Memory BARs: (index, address, size).
    pub bars: Vec<(usize, u64, u64)>,
    /// I/O BARs: (index, first port, size).
    pub io_bars: Vec<(usize, u64, u64)>,
}

/// The host bridge at 00.0: a header and nothing else.
#[derive(Debug)]
pub struct HostBridge {
    config: ConfigSpace,
}

impl HostBridge {
    /// Red Hat's generic PCIe host bridge ID (QEMU `gpex`), class "host bridge".
    pub fn new() -> Self {
        HostBridge {
            config: ConfigSpace::new(PciHeader {
                vendor: 0x1b36,
                device: 0x0008,
                revision: 0,
                class: 0x06_0000,
                subsystem_vendor: 0x1af4,
                subsystem: 0x1100,
            }),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for HostBridge {
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
    fn can_save(&self) -> bool {
        true
    }
    fn save_state(&mut self) -> Option<serde_json::Value> {
        Some(serde_json::json!(self.config.save_regs()))
    }
    fn restore_state(&mut self, state: &serde_json::Value) -> Result<(), String> {
        self.config
            .restore_regs(&crate::vmstate::from_value::<Vec<u32>>(state)?)
    }
    fn state_name(&self) -> String {
        "host bridge".into()
    }
}

struct Slot {
    dev: Box<dyn PciDevice>,
    /// BARs as last seen decoding (memory enabled): (index, addr, size).
    decoding: Vec<(usize, u64, u64)>,
    /// I/O BARs as last seen decoding (I/O enabled): (index, port, size).
    io_decoding: Vec<(usize, u64, u64)>,
}

impl Slot {
    fn new(dev: Box<dyn PciDevice>) -> Self {
        Slot {
            dev,
            decoding: Vec::new(),
            io_decoding: Vec::new(),
        }
    }
}

/// Bus 0 of segment 0.
pub struct PciRoot {
    /// Keyed by devfn (slot << 3 | function).
    slots: BTreeMap<u8, Slot>,
    /// Functions behind bridges, by the spec's bus index (the bridge's libvirt
    /// controller index), then devfn.
    behind: BTreeMap<u8, BTreeMap<u8, Slot>>,
    config_address: u32,
    mmio32: BarAllocator,
    mmio64: Option<BarAllocator>,
    io: BarAllocator,
    /// Told which bus (spec index) a guest just emptied by powering its
    /// hot-plug slot off, or which root-bus slot it ejected, with the functions
    /// taken from it.
    unplug_listener: Option<UnplugListener>,
    /// ACPI PCI hot-plug of this bus's slots (`pc` machines).
    acpi_hotplug: Option<super::acpi_hotplug::AcpiHotplugRegs>,
    /// Raises the hot-plug GPE (the PM block's; set with `acpi_hotplug`).
    hotplug_event: Option<Box<dyn FnMut() + Send>>,
}

/// Receives the functions a guest let go: (the spec bus index of the port they
/// were behind and slot 0, or bus 0 and the root-bus slot ACPI ejected, the
/// functions).
pub type UnplugListener = Box<dyn FnMut(u8, u8, Vec<Box<dyn PciDevice>>) + Send>;

impl std::fmt::Debug for PciRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciRoot")
            .field("devfns", &self.slots.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PciRoot {
    /// A root bus with the generic host bridge at 00.0.
    pub fn new(windows: PciWindows) -> Self {
        Self::with_host(windows, Box::new(HostBridge::new()))
    }

    /// A root bus with `host` at 00.0 (a chipset's host bridge).
    pub fn with_host(windows: PciWindows, host: Box<dyn PciDevice>) -> Self {
        let mut root = PciRoot {
            slots: BTreeMap::new(),
            behind: BTreeMap::new(),
            config_address: 0,
            mmio32: BarAllocator::new(windows.mmio32.0, windows.mmio32.1),
            mmio64: (windows.mmio64.1 > 0)
                .then(|| BarAllocator::new(windows.mmio64.0, windows.mmio64.1)),
            io: BarAllocator::new(IO_ALLOC.0, IO_ALLOC.1),
            unplug_listener: None,
            acpi_hotplug: None,
            hotplug_event: None,
        };
        root.slots.insert(0, Slot::new(host));
        root
    }

    /// Picks the first port of an I/O BAR of `size` ports.
    pub fn allocate_io_bar(&mut self, size: u64) -> Result<u64, PciError> {
        self.io
            .allocate(size)
            .map_err(|_| PciError::IoSpace { size })
    }

    /// Picks an address for a BAR of `size` bytes: the 64-bit window when the
    /// BAR is 64-bit and there is one, else the 32-bit window.
    pub fn allocate_bar(&mut self, size: u64, kind: BarKind) -> Result<u64, PciError> {
        match (kind, self.mmio64.as_mut()) {
            (BarKind::Mem64, Some(w)) => w.allocate(size).or_else(|_| self.mmio32.allocate(size)),
            _ => self.mmio32.allocate(size),
        }
    }

    /// Whether `slot.function` is free and valid for a device.
    pub fn check_free(&self, slot: u8, function: u8) -> Result<(), PciError> {
        if slot >= 32 || function >= 8 || (slot == 0 && function == 0) {
            return Err(PciError::BadSlot { slot, function });
        }
        if self.slots.contains_key(&(slot << 3 | function)) {
            return Err(PciError::AddressInUse { slot, function });
        }
        Ok(())
    }

    /// Lowest free slot (function 0) from 1 up, for devices without an address.
    pub fn free_slot(&self) -> Option<u8> {
        (1u8..32).find(|s| !self.slots.keys().any(|d| d >> 3 == *s))
    }

    /// Puts `dev` at `slot.function`; its BARs must already be programmed.
    pub fn add_device(
        &mut self,
        slot: u8,
        function: u8,
        dev: Box<dyn PciDevice>,
    ) -> Result<(), PciError> {
        self.check_free(slot, function)?;
        self.slots.insert(slot << 3 | function, Slot::new(dev));
        Ok(())
    }

    /// Puts `dev` at `slot.function` of the bus behind the bridge with spec bus
    /// index `bus` (that bridge must be on bus 0 already).
    pub fn add_device_behind(
        &mut self,
        bus: u8,
        slot: u8,
        function: u8,
        dev: Box<dyn PciDevice>,
    ) -> Result<(), PciError> {
        let bridge = self
            .slots
            .values()
            .find_map(|s| s.dev.bridge().filter(|b| b.index == bus))
            .ok_or(PciError::NoSuchBus { bus })?;
        if slot >= 32 || function >= 8 || (bridge.single_device && slot != 0) {
            return Err(PciError::BadSlot { slot, function });
        }
        let devfns = self.behind.entry(bus).or_default();
        if devfns.contains_key(&(slot << 3 | function)) {
            return Err(PciError::AddressInUse { slot, function });
        }
        devfns.insert(slot << 3 | function, Slot::new(dev));
        if let Some(b) = self.bridge_mut(bus) {
            b.set_populated(true);
        }
        Ok(())
    }

    /// The bridge function that provides spec bus `bus`.
    fn bridge_mut(&mut self, bus: u8) -> Option<&mut super::bridge::Bridge> {
        self.slots
            .values_mut()
            .find(|s| s.dev.bridge().is_some_and(|b| b.index == bus))?
            .dev
            .as_bridge()
    }

    /// Sets who hears of guest-completed hot-unplugs.
    pub fn set_unplug_listener(&mut self, listener: UnplugListener) {
        self.unplug_listener = Some(listener);
    }

    /// Hot-adds `dev` as device 0 behind the hot-plug port providing spec bus
    /// `bus`, and tells the guest (presence detect, link up).
    pub fn hotplug_behind(&mut self, bus: u8, dev: Box<dyn PciDevice>) -> Result<(), PciError> {
        let capable = self
            .bridge_mut(bus)
            .ok_or(PciError::NoSuchBus { bus })?
            .hotplug_capable();
        if !capable {
            return Err(PciError::NotHotplug { bus });
        }
        if self.behind.get(&bus).is_some_and(|f| !f.is_empty()) {
            return Err(PciError::AddressInUse {
                slot: 0,
                function: 0,
            });
        }
        self.behind
            .entry(bus)
            .or_default()
            .insert(0, Slot::new(dev));
        let b = self.bridge_mut(bus).ok_or(PciError::NoSuchBus { bus })?;
        b.plug().map_err(|e| PciError::Hotplug { bus, source: e })
    }

    /// Asks the guest to release what is behind the port providing spec bus
    /// `bus` (attention button). When the guest had powered the slot off
    /// already, the functions go at once and are returned.
    pub fn request_unplug(&mut self, bus: u8) -> Result<Option<Vec<Box<dyn PciDevice>>>, PciError> {
        let b = self.bridge_mut(bus).ok_or(PciError::NoSuchBus { bus })?;
        if b.request_unplug()
            .map_err(|e| PciError::Hotplug { bus, source: e })?
        {
            return Ok(Some(self.remove_behind(bus)));
        }
        Ok(None)
    }

    /// Takes every function from behind the bridge providing spec bus `bus`.
    pub fn remove_behind(&mut self, bus: u8) -> Vec<Box<dyn PciDevice>> {
        let gone: Vec<Box<dyn PciDevice>> = self
            .behind
            .remove(&bus)
            .map(|f| f.into_values().map(|s| s.dev).collect())
            .unwrap_or_default();
        if let Some(b) = self.bridge_mut(bus) {
            b.unplugged();
        }
        gone
    }

    /// Turns on ACPI PCI hot-plug of the slots in `slots` (a bit each;
    /// `acpi_hotplug::slots_of`); `event` raises the hot-plug GPE.
    pub fn enable_acpi_hotplug(&mut self, slots: u32, event: Box<dyn FnMut() + Send>) {
        self.acpi_hotplug = Some(super::acpi_hotplug::AcpiHotplugRegs::new(slots));
        self.hotplug_event = Some(event);
    }

    /// Whether root-bus slots are hot-pluggable through ACPI.
    pub fn acpi_hotplug_enabled(&self) -> bool {
        self.acpi_hotplug.is_some()
    }

    /// The lowest hot-pluggable root-bus slot with nothing in it.
    pub fn free_hotplug_slot(&self) -> Option<u8> {
        let regs = self.acpi_hotplug.as_ref()?;
        (1u8..32).find(|&s| regs.hotpluggable(s) && !self.slots.keys().any(|d| d >> 3 == s))
    }

    /// Checks that `slot` of the root bus is ACPI hot-pluggable.
    fn hotplug_regs(
        &mut self,
        slot: u8,
    ) -> Result<&mut super::acpi_hotplug::AcpiHotplugRegs, PciError> {
        match self.acpi_hotplug.as_mut() {
            None => Err(PciError::NotHotplug { bus: 0 }),
            Some(r) if !r.hotpluggable(slot) => Err(PciError::SlotNotHotplug { slot }),
            Some(r) => Ok(r),
        }
    }

    /// Hot-adds `dev` as function 0 of root-bus `slot` and tells the guest (PCIU,
    /// hot-plug GPE).
    pub fn hotplug_slot(&mut self, slot: u8, dev: Box<dyn PciDevice>) -> Result<(), PciError> {
        self.hotplug_regs(slot)?;
        if self.slots.keys().any(|d| d >> 3 == slot) {
            return Err(PciError::AddressInUse { slot, function: 0 });
        }
        self.slots.insert(slot << 3, Slot::new(dev));
        self.hotplug_regs(slot)?.plug(slot);
        self.raise_hotplug_event();
        Ok(())
    }

    /// Asks the guest to eject root-bus `slot` (PCID, hot-plug GPE); its `_EJ0`
    /// removes the functions later (see [`PciRoot::acpi_hotplug_write`]).
    pub fn request_unplug_slot(&mut self, slot: u8) -> Result<(), PciError> {
        self.hotplug_regs(slot)?;
        if !self.slots.keys().any(|d| d >> 3 == slot) {
            return Err(PciError::Hotplug {
                bus: 0,
                source: super::hotplug::SlotError::Empty,
            });
        }
        self.hotplug_regs(slot)?.request_unplug(slot);
        self.raise_hotplug_event();
        Ok(())
    }

    fn raise_hotplug_event(&mut self) {
        if let Some(e) = self.hotplug_event.as_mut() {
            e();
        }
    }

    /// Guest read of the ACPI hot-plug registers (`offset` from
    /// `acpi_hotplug::BASE`); 32-bit registers, narrower reads see their bytes.
    pub fn acpi_hotplug_read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match self.acpi_hotplug.as_mut() {
            Some(r) => r.read(offset & !3),
            None => 0,
        };
        let bytes = v.to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = bytes.get((offset % 4) as usize + i).copied().unwrap_or(0);
        }
    }

    /// Guest write of the ACPI hot-plug registers: a B0EJ write that ejects a
    /// slot takes its functions out and hands them to the unplug listener.
    pub fn acpi_hotplug_write(&mut self, offset: u64, data: &[u8]) {
        let Some(r) = self.acpi_hotplug.as_mut() else {
            return;
        };
        if !offset.is_multiple_of(4) || data.is_empty() {
            return;
        }
        let mut v = [0u8; 4];
        let n = data.len().min(4);
        v[..n].copy_from_slice(&data[..n]);
        let Some(slot) = r.write(offset, u32::from_le_bytes(v)) else {
            return;
        };
        let devfns: Vec<u8> = self
            .slots
            .keys()
            .copied()
            .filter(|d| d >> 3 == slot)
            .collect();
        if devfns.is_empty() {
            return;
        }
        let gone: Vec<Box<dyn PciDevice>> = devfns
            .iter()
            .filter_map(|d| self.slots.remove(d))
            .map(|s| s.dev)
            .collect();
        if let Some(l) = self.unplug_listener.as_mut() {
            l(0, slot, gone);
        }
    }

    /// The (slot, function) on bus 0 of the bridge that provides spec bus `bus`.
    pub fn bridge_of(&self, bus: u8) -> Option<(u8, u8)> {
        self.slots
            .iter()
            .find(|(_, s)| s.dev.bridge().is_some_and(|b| b.index == bus))
            .map(|(devfn, _)| (devfn >> 3, devfn & 7))
    }

    /// The function at guest bus number `bus`: bus 0, or the secondary bus of a
    /// bridge on bus 0.
    fn function(&mut self, bus: u8, devfn: u8) -> Option<&mut Slot> {
        if bus == 0 {
            return self.slots.get_mut(&devfn);
        }
        let b = self
            .slots
            .values()
            .find_map(|s| s.dev.bridge().filter(|b| b.secondary == bus))?;
        if b.single_device && devfn >> 3 != 0 {
            return None;
        }
        self.behind.get_mut(&b.index)?.get_mut(&devfn)
    }

    /// Marks function 0 of `slot` multi-function.
    pub fn set_multifunction(&mut self, slot: u8) {
        if let Some(s) = self.slots.get_mut(&(slot << 3)) {
            s.dev.set_multifunction();
        }
    }

    /// Identity and BARs of every function, for `query-pci`.
    pub fn snapshot(&mut self) -> Vec<FunctionInfo> {
        self.slots
            .iter_mut()
            .map(|(devfn, s)| {
                let mut header = [0u32; 16];
                for (i, h) in header.iter_mut().enumerate() {
                    *h = s.dev.read_config(i);
                }
                FunctionInfo {
                    slot: devfn >> 3,
                    function: devfn & 7,
                    header,
                    bars: s.dev.bars(),
                    io_bars: s.dev.io_bars(),
                }
            })
            .collect()
    }

    /// Occupied (slot, function) pairs, host bridge included.
    pub fn devices(&self) -> Vec<(u8, u8)> {
        self.slots.keys().map(|d| (d >> 3, d & 7)).collect()
    }

    fn config_read(&mut self, bus: u8, devfn: u8, reg: usize) -> u32 {
        match self.function(bus, devfn) {
            Some(s) => s.dev.read_config(reg),
            None => u32::MAX,
        }
    }

    fn config_write(&mut self, bus: u8, devfn: u8, reg: usize, offset: u8, data: &[u8]) {
        let Some(s) = self.function(bus, devfn) else {
            return;
        };
        s.dev.write_config(reg, offset, data);
        // A hot-plug port whose slot the guest just powered off: what is behind
        // it goes now.
        if let Some(index) = s
            .dev
            .as_bridge()
            .and_then(|b| b.take_unplug_ready().then_some(()))
            .and(s.dev.bridge().map(|b| b.index))
        {
            let gone = self.remove_behind(index);
            if let Some(l) = self.unplug_listener.as_mut() {
                l(index, 0, gone);
            }
            return;
        }
        if let Some(s) = self.function(bus, devfn) {
            s.refresh_decoding();
        }
    }

    /// Every function, bus 0 first: (spec bus index, devfn, slot).
    fn all_slots(&mut self) -> impl Iterator<Item = (u8, u8, &mut Slot)> {
        self.slots.iter_mut().map(|(d, s)| (0u8, *d, s)).chain(
            self.behind
                .iter_mut()
                .flat_map(|(b, m)| m.iter_mut().map(move |(d, s)| (*b, *d, s))),
        )
    }

    /// The first function that cannot save its state: (bus, devfn, what it is).
    pub fn save_blocker(&self) -> Option<(u8, u8, String)> {
        let bus0 = self.slots.iter().map(|(d, s)| (0u8, *d, s));
        let behind = self
            .behind
            .iter()
            .flat_map(|(b, m)| m.iter().map(move |(d, s)| (*b, *d, s)));
        bus0.chain(behind)
            .find(|(_, _, s)| !s.dev.can_save())
            .map(|(b, d, s)| (b, d, s.dev.state_name()))
    }

    /// The state of every function for a saved machine, keyed `BUS:DEVFN` (the
    /// spec's bus index), and the address register. The caller checked
    /// [`PciRoot::save_blocker`]; devices stop serving until
    /// [`PciRoot::resume_after_save`].
    pub fn save_state(&mut self) -> serde_json::Value {
        let mut functions = serde_json::Map::new();
        for (bus, devfn, s) in self.all_slots() {
            if let Some(state) = s.dev.save_state() {
                functions.insert(format!("{bus}:{devfn}"), state);
            }
        }
        serde_json::json!({
            "config_address": self.config_address,
            "acpi_hotplug": self.acpi_hotplug.as_ref().map(crate::vmstate::to_value),
            "functions": functions,
        })
    }

    /// Every function serves again after a save.
    pub fn resume_after_save(&mut self) {
        for (_, _, s) in self.all_slots() {
            s.dev.resume_after_save();
        }
    }

    /// Takes what [`PciRoot::save_state`] gave, on a bus built from the same spec.
    pub fn restore_state(&mut self, state: &serde_json::Value) -> Result<(), String> {
        let functions = state["functions"]
            .as_object()
            .ok_or("no PCI functions in the saved state")?;
        let count = self.slots.len() + self.behind.values().map(|m| m.len()).sum::<usize>();
        if functions.len() != count {
            return Err(format!(
                "{} PCI functions were saved, this machine has {count}",
                functions.len()
            ));
        }
        for (key, v) in functions {
            let (bus, devfn) = key
                .split_once(':')
                .and_then(|(b, d)| Some((b.parse::<u8>().ok()?, d.parse::<u8>().ok()?)))
                .ok_or_else(|| format!("bad PCI function key '{key}'"))?;
            let slot = if bus == 0 {
                self.slots.get_mut(&devfn)
            } else {
                self.behind.get_mut(&bus).and_then(|m| m.get_mut(&devfn))
            }
            .ok_or_else(|| format!("no PCI function {key} in this machine"))?;
            slot.dev
                .restore_state(v)
                .map_err(|e| format!("{}: {e}", slot.dev.state_name()))?;
            slot.refresh_decoding();
        }
        self.config_address = state["config_address"]
            .as_u64()
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0);
        if let (Some(regs), Some(v)) = (self.acpi_hotplug.as_mut(), state.get("acpi_hotplug")) {
            if !v.is_null() {
                *regs = crate::vmstate::from_value(v)?;
            }
        }
        Ok(())
    }
}

impl Slot {
    /// Keeps the decode table current, and tells the device where each BAR now
    /// decodes when that changed (ioeventfds must follow): a BAR moved while
    /// decoding, and one that starts decoding — firmware and a hot-plug driver
    /// program BARs with decoding off, so the first address the device hears of
    /// may differ from the one it bound its ioeventfds to at creation.
    fn refresh_decoding(&mut self) {
        let s = self;
        let now = if s.dev.memory_enabled() {
            s.dev.bars()
        } else {
            Vec::new()
        };
        if now != s.decoding {
            for &(i, new, _) in &now {
                let old = s.decoding.iter().find(|b| b.0 == i).map(|b| b.1);
                if old != Some(new) {
                    s.dev.bar_moved(i, old.unwrap_or(new), new);
                }
            }
            s.decoding = now;
        }
        s.io_decoding = if s.dev.io_enabled() {
            s.dev.io_bars()
        } else {
            Vec::new()
        };
    }
}

impl PciRoot {
    /// Guest read from ports 0xCF8..0xCFF (`offset` relative to 0xCF8).
    pub fn pio_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        match offset {
            0..=3 if data.len() == 4 && offset == 0 => {
                data.copy_from_slice(&self.config_address.to_le_bytes());
            }
            4..=7 => {
                let a = self.config_address;
                if a & 0x8000_0000 == 0 {
                    return;
                }
                let (bus, devfn, reg) =
                    ((a >> 16) as u8, (a >> 8) as u8, ((a >> 2) & 0x3f) as usize);
                let v = self.config_read(bus, devfn, reg).to_le_bytes();
                let o = (offset - 4) as usize;
                if o + data.len() <= 4 {
                    data.copy_from_slice(&v[o..o + data.len()]);
                }
            }
            _ => {}
        }
    }

    /// Guest write to ports 0xCF8..0xCFF.
    pub fn pio_write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            0 if data.len() == 4 => {
                self.config_address =
                    u32::from_le_bytes(data.try_into().expect("4 bytes")) & 0x80ff_fffc;
            }
            4..=7 => {
                let a = self.config_address;
                if a & 0x8000_0000 == 0 {
                    return;
                }
                let (bus, devfn, reg) =
                    ((a >> 16) as u8, (a >> 8) as u8, ((a >> 2) & 0x3f) as usize);
                let o = (offset - 4) as u8;
                if usize::from(o) + data.len() <= 4 {
                    self.config_write(bus, devfn, reg, o, data);
                }
            }
            _ => {}
        }
    }

    /// Guest read in the ECAM window (`offset` from its base).
    pub fn ecam_read(&mut self, offset: u64, data: &mut [u8]) {
        let (bus, devfn, reg, o) = ecam_decode(offset);
        let v = self.config_read(bus, devfn, reg).to_le_bytes();
        if o + data.len() <= 4 {
            data.copy_from_slice(&v[o..o + data.len()]);
        } else {
            data.fill(0xff);
        }
    }

    /// Guest write in the ECAM window.
    pub fn ecam_write(&mut self, offset: u64, data: &[u8]) {
        let (bus, devfn, reg, o) = ecam_decode(offset);
        if o + data.len() <= 4 {
            self.config_write(bus, devfn, reg, o as u8, data);
        }
    }

    fn find_bar(&mut self, addr: u64) -> Option<(&mut Box<dyn PciDevice>, usize, u64)> {
        self.slots
            .values_mut()
            .chain(self.behind.values_mut().flat_map(|b| b.values_mut()))
            .find_map(|s| {
                let &(i, base, _) = s
                    .decoding
                    .iter()
                    .find(|(_, base, size)| addr >= *base && addr - base < *size)?;
                Some((&mut s.dev, i, addr - base))
            })
    }

    fn find_io_bar(&mut self, port: u64) -> Option<(&mut Box<dyn PciDevice>, usize, u64)> {
        self.slots
            .values_mut()
            .chain(self.behind.values_mut().flat_map(|b| b.values_mut()))
            .find_map(|s| {
                let &(i, base, _) = s
                    .io_decoding
                    .iter()
                    .find(|(_, base, size)| port >= *base && port - base < *size)?;
                Some((&mut s.dev, i, port - base))
            })
    }

    /// Guest read of `port` (in [`IO_WINDOW`]); false if no I/O BAR decodes it.
    pub fn io_read(&mut self, port: u64, data: &mut [u8]) -> bool {
        match self.find_io_bar(port) {
            Some((dev, bar, off)) => {
                dev.bar_read(bar, off, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Guest write to `port`; false if no I/O BAR decodes it.
    pub fn io_write(&mut self, port: u64, data: &[u8]) -> bool {
        match self.find_io_bar(port) {
            Some((dev, bar, off)) => {
                dev.bar_write(bar, off, data);
                true
            }
            None => false,
        }
    }

    /// Guest read at `addr` in a PCI MMIO window; false if no BAR decodes it.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) -> bool {
        match self.find_bar(addr) {
            Some((dev, bar, off)) => {
                dev.bar_read(bar, off, data);
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Guest write at `addr` in a PCI MMIO window; false if no BAR decodes it.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) -> bool {
        match self.find_bar(addr) {
            Some((dev, bar, off)) => {
                dev.bar_write(bar, off, data);
                true
            }
            None => false,
        }
    }
}

/// Splits an ECAM offset into (bus, devfn, dword register, byte in dword).
fn ecam_decode(offset: u64) -> (u8, u8, usize, usize) {
    (
        (offset >> 20) as u8,
        (offset >> 12) as u8,
        ((offset & 0xfff) >> 2) as usize,
        (offset & 3) as usize,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function with one 64-bit BAR that stores what is written to it.
    struct Ram {
        config: ConfigSpace,
        mem: Vec<u8>,
        moved: Vec<(usize, u64, u64)>,
    }

    impl PciDevice for Ram {
        fn read_config(&mut self, reg: usize) -> u32 {
            self.config.read(reg)
        }
        fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]) {
            self.config.write(reg, offset, data);
        }
        fn bars(&self) -> Vec<(usize, u64, u64)> {
            self.config.bars()
        }
        fn memory_enabled(&self) -> bool {
            self.config.command() & COMMAND_MEMORY != 0
        }
        fn bar_read(&mut self, _bar: usize, offset: u64, data: &mut [u8]) {
            let o = offset as usize;
            data.copy_from_slice(&self.mem[o..o + data.len()]);
        }
        fn bar_write(&mut self, _bar: usize, offset: u64, data: &[u8]) {
            let o = offset as usize;
            self.mem[o..o + data.len()].copy_from_slice(data);
        }
        fn bar_moved(&mut self, bar: usize, old: u64, new: u64) {
            self.moved.push((bar, old, new));
        }
    }

    fn ram(root: &mut PciRoot) -> Box<Ram> {
        let mut config = ConfigSpace::new(PciHeader {
            vendor: 0x1af4,
            device: 0x1044,
            revision: 1,
            class: 0xff_0000,
            subsystem_vendor: 0x1af4,
            subsystem: 0x40,
        });
        config.add_bar(0, 0x1000, BarKind::Mem64);
        let addr = root.allocate_bar(0x1000, BarKind::Mem64).unwrap();
        config.set_bar_address(0, addr);
        Box::new(Ram {
            config,
            mem: vec![0; 0x1000],
            moved: Vec::new(),
        })
    }

    fn windows() -> PciWindows {
        PciWindows {
            mmio32: (0xc000_0000, 0x2000_0000),
            mmio64: (0, 0),
        }
    }

    fn cf8(root: &mut PciRoot, slot: u8, reg: u32) -> u32 {
        let a = 0x8000_0000 | u32::from(slot) << 11 | reg << 2;
        root.pio_write(0, &a.to_le_bytes());
        let mut d = [0u8; 4];
        root.pio_read(4, &mut d);
        u32::from_le_bytes(d)
    }

    #[test]
    fn legacy_port_scan_finds_bridge_and_device() {
        let mut root = PciRoot::new(windows());
        let dev = ram(&mut root);
        root.add_device(3, 0, dev).unwrap();
        assert_eq!(cf8(&mut root, 0, 0), 0x0008_1b36);
        assert_eq!(cf8(&mut root, 3, 0), 0x1044_1af4);
        assert_eq!(cf8(&mut root, 4, 0), u32::MAX, "empty slot reads all ones");
        // Byte read of the class code's base class through 0xCFF.
        root.pio_write(0, &(0x8000_0000u32 | 3 << 11 | 2 << 2).to_le_bytes());
        let mut b = [0u8; 1];
        root.pio_read(7, &mut b);
        assert_eq!(b[0], 0xff);
        assert_eq!(root.devices(), vec![(0, 0), (3, 0)]);
    }

    #[test]
    fn ecam_and_bar_dispatch_follow_command_and_moves() {
        let mut root = PciRoot::new(windows());
        let dev = ram(&mut root);
        root.add_device(5, 0, dev).unwrap();
        let base = 5u64 << 15;
        let mut d = [0u8; 4];
        root.ecam_read(base + 0x10, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0xc000_0004);
        // Not decoding until memory space is enabled.
        assert!(!root.mmio_write(0xc000_0010, &[1, 2]));
        root.ecam_write(base + 4, &[0x06, 0]);
        assert!(root.mmio_write(0xc000_0010, &[1, 2]));
        let mut r = [0u8; 2];
        assert!(root.mmio_read(0xc000_0010, &mut r));
        assert_eq!(r, [1, 2]);
        // The guest moves the BAR while decoding.
        root.ecam_write(base + 0x10, &0xd000_0000u32.to_le_bytes());
        assert!(root.mmio_read(0xd000_0010, &mut r));
        assert!(!root.mmio_read(0xc000_0010, &mut r));
    }

    /// A function with one 16-port I/O BAR that answers reads with the offset.
    struct Ports {
        config: ConfigSpace,
        written: Vec<(u64, Vec<u8>)>,
    }

    impl PciDevice for Ports {
        fn read_config(&mut self, reg: usize) -> u32 {
            self.config.read(reg)
        }
        fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]) {
            self.config.write(reg, offset, data);
        }
        fn bars(&self) -> Vec<(usize, u64, u64)> {
            self.config.bars()
        }
        fn memory_enabled(&self) -> bool {
            false
        }
        fn io_bars(&self) -> Vec<(usize, u64, u64)> {
            self.config.io_bars()
        }
        fn io_enabled(&self) -> bool {
            self.config.command() & super::super::config::COMMAND_IO != 0
        }
        fn bar_read(&mut self, _bar: usize, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn bar_write(&mut self, _bar: usize, offset: u64, data: &[u8]) {
            self.written.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn io_bars_decode_once_enabled_and_follow_moves() {
        let mut root = PciRoot::new(windows());
        let mut config = ConfigSpace::new(PciHeader {
            vendor: 0x8086,
            device: 0x7010,
            revision: 0,
            class: 0x01_0180,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        });
        config.add_bar(4, 16, BarKind::Io);
        let port = root.allocate_io_bar(16).unwrap();
        assert_eq!(port, 0xc000);
        config.set_bar_address(4, port);
        root.add_device(
            1,
            1,
            Box::new(Ports {
                config,
                written: Vec::new(),
            }),
        )
        .unwrap();
        let base = (1u64 << 15) | (1 << 12);
        let mut d = [0u8; 1];
        assert!(!root.io_read(0xc002, &mut d), "I/O decoding is off");
        root.ecam_write(base + 4, &[0x01, 0]);
        assert!(root.io_read(0xc002, &mut d));
        assert_eq!(d, [2]);
        assert!(!root.mmio_read(0xc002, &mut d), "not a memory BAR");
        // The firmware moves the BAR (SeaBIOS places I/O BARs itself).
        root.ecam_write(base + 0x20, &0xd040u32.to_le_bytes());
        assert!(!root.io_write(0xc008, &[1]));
        assert!(root.io_write(0xd048, &[1]));
        assert_eq!(root.allocate_io_bar(16).unwrap(), 0xc010);
        // query-pci lists it as an I/O region.
        let f = root.snapshot();
        assert_eq!(
            (f[1].io_bars.clone(), f[1].bars.len()),
            (vec![(4, 0xd040, 16)], 0)
        );
    }

    #[test]
    fn slot_rules() {
        let mut root = PciRoot::new(windows());
        assert!(matches!(
            root.check_free(0, 0),
            Err(PciError::BadSlot { .. })
        ));
        assert!(matches!(
            root.check_free(32, 0),
            Err(PciError::BadSlot { .. })
        ));
        let dev = ram(&mut root);
        root.add_device(1, 0, dev).unwrap();
        let dev = ram(&mut root);
        assert!(matches!(
            root.add_device(1, 0, dev),
            Err(PciError::AddressInUse {
                slot: 1,
                function: 0
            })
        ));
        assert_eq!(root.free_slot(), Some(2));
    }

    #[test]
    fn acpi_hotplug_of_root_slots_follows_the_guest_eject() {
        use super::super::acpi_hotplug::{PCI_DOWN, PCI_EJ, PCI_RMV, PCI_SEL, PCI_UP};
        use std::sync::{Arc, Mutex};
        let mut root = PciRoot::new(windows());
        let dev = ram(&mut root);
        assert!(matches!(
            root.hotplug_slot(3, dev),
            Err(PciError::NotHotplug { bus: 0 })
        ));
        let events = Arc::new(Mutex::new(0));
        let e = events.clone();
        // Slots 0-1 (host bridge, chipset) and 2 (say, video) are not offered.
        root.enable_acpi_hotplug(!0b111, Box::new(move || *e.lock().unwrap() += 1));
        let gone = Arc::new(Mutex::new(Vec::new()));
        let g = gone.clone();
        root.set_unplug_listener(Box::new(move |bus, slot, devs| {
            g.lock().unwrap().push((bus, slot, devs.len()));
        }));
        let read = |root: &mut PciRoot, off: u64| {
            let mut d = [0u8; 4];
            root.acpi_hotplug_read(off, &mut d);
            u32::from_le_bytes(d)
        };
        assert_eq!(read(&mut root, PCI_RMV), !0b111);
        let dev = ram(&mut root);
        assert!(matches!(
            root.hotplug_slot(2, dev),
            Err(PciError::SlotNotHotplug { slot: 2 })
        ));
        assert_eq!(root.free_hotplug_slot(), Some(3));
        let dev = ram(&mut root);
        root.hotplug_slot(3, dev).unwrap();
        assert_eq!(*events.lock().unwrap(), 1, "the GPE is raised");
        assert_eq!(root.free_hotplug_slot(), Some(4));
        assert_eq!(cf8(&mut root, 3, 0), 0x1044_1af4, "the guest finds it");
        assert_eq!(read(&mut root, PCI_UP), 1 << 3);
        assert_eq!(read(&mut root, PCI_UP), 0);
        let dev = ram(&mut root);
        assert!(matches!(
            root.hotplug_slot(3, dev),
            Err(PciError::AddressInUse { slot: 3, .. })
        ));
        // Removal: asked, then nothing happens until the guest's _EJ0.
        assert!(root.request_unplug_slot(4).is_err(), "empty slot");
        root.request_unplug_slot(3).unwrap();
        assert_eq!(*events.lock().unwrap(), 2);
        assert_eq!(read(&mut root, PCI_DOWN), 1 << 3);
        assert_eq!(cf8(&mut root, 3, 0), 0x1044_1af4, "still there");
        assert!(gone.lock().unwrap().is_empty());
        root.acpi_hotplug_write(PCI_SEL, &0u32.to_le_bytes());
        root.acpi_hotplug_write(PCI_EJ, &(1u32 << 3).to_le_bytes());
        assert_eq!(*gone.lock().unwrap(), vec![(0, 3, 1)]);
        assert_eq!(cf8(&mut root, 3, 0), u32::MAX, "gone from the bus");
        assert_eq!(read(&mut root, PCI_DOWN), 0);
        // The chipset's slot cannot be ejected.
        let dev = ram(&mut root);
        root.add_device(1, 0, dev).unwrap();
        root.acpi_hotplug_write(PCI_EJ, &(1u32 << 1).to_le_bytes());
        assert_eq!(cf8(&mut root, 1, 0), 0x1044_1af4);
        assert_eq!(gone.lock().unwrap().len(), 1);
    }
}
