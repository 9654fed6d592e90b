//! The chipset functions firmware looks for on bus 0: Q35 (MCH + ICH9 LPC) and
//! i440FX (host bridge + PIIX3 ISA + PIIX4 PM).
//!
//! SeaBIOS and OVMF pick their platform code by the host bridge's device ID
//! (0x29c0 Q35, 0x1237 i440FX; OVMF refuses anything else), then program a
//! handful of registers: PAM (shadow RAM of 0xC0000-0xFFFFF), PCIEXBAR (where
//! ECAM lives), PMBASE / ACPI_CNTL (the PM block), PIRQ routing, RCBA. In this
//! machine those registers are plain storage: 0xC0000-0xFFFFF is always RAM
//! holding the BIOS tail (copied in at every machine start), ECAM sits where
//! both firmwares put it (0xB000_0000), and the PM block is fixed at 0x600 — the
//! value both firmwares write. A firmware that asks for something else gets a
//! warning in the log, not a silently different machine.

use super::config::{ConfigSpace, PciHeader};
use super::PciDevice;
use crate::devices::pm::PM_BASE;

/// Red Hat's subsystem IDs, as QEMU gives its chipset functions.
const SUBSYSTEM_VENDOR: u16 = 0x1af4;
const SUBSYSTEM: u16 = 0x1100;

/// Q35 MCH: PCIEXBAR (64-bit at 0x60).
const MCH_PCIEXBAR: usize = 0x60;
/// Q35 MCH: PAM0-PAM6.
const MCH_PAM0: usize = 0x90;
/// Q35 MCH: SMRAM and ESMRAMC.
const MCH_SMRAM: usize = 0x9d;
/// i440FX: PAM0-PAM6.
const I440FX_PAM0: usize = 0x59;
/// PAM0 "read enable" for 0xF0000-0xFFFFF (bits 4-5 = 01).
const PAM0_SHADOW_READ: u8 = 0x10;

/// ICH9 LPC: PMBASE, ACPI_CNTL, PIRQA-D, PIRQE-H, GEN_PMCON_1-3, RCBA.
const LPC_PMBASE: usize = 0x40;
const LPC_ACPI_CNTL: usize = 0x44;
const LPC_PIRQ_A: usize = 0x60;
const LPC_PIRQ_E: usize = 0x68;
const LPC_GEN_PMCON: usize = 0xa0;
const LPC_RCBA: usize = 0xf0;

/// PIIX3: PIRQRC[A-D] routing and the top-of-memory/misc bytes after them.
const PIIX3_PIRQRC: usize = 0x60;
/// PIIX4 PM: PMBA, DEVACTB, PMREGMISC, SMBus base and host config.
const PIIX4_PMBA: usize = 0x40;
const PIIX4_DEVACTB: usize = 0x58;
const PIIX4_PMREGMISC: usize = 0x80;
const PIIX4_SMBHSTCFG: usize = 0xd2;
const PIIX4_SMBBA: usize = 0x90;
/// DEVACTB.APMC_EN: SeaBIOS skips its SMM set-up when this is already set, as
/// QEMU presets it without SMM (otherwise it spins on port 0xb3).
const PIIX4_DEVACTB_APMC_EN: u32 = 1 << 25;

/// A chipset function: a header whose chipset registers are writable storage.
pub struct ChipsetFunction {
    name: &'static str,
    config: ConfigSpace,
    /// Byte offsets whose writes are reported (PCIEXBAR, PMBASE) for the check
    /// against the fixed machine.
    watched: &'static [(usize, usize)],
}

impl std::fmt::Debug for ChipsetFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChipsetFunction")
            .field("name", &self.name)
            .finish()
    }
}

impl ChipsetFunction {
    fn new(name: &'static str, vendor: u16, device: u16, revision: u8, class: u32) -> Self {
        ChipsetFunction {
            name,
            config: ConfigSpace::new(PciHeader {
                vendor,
                device,
                revision,
                class,
                subsystem_vendor: SUBSYSTEM_VENDOR,
                subsystem: SUBSYSTEM,
            }),
            watched: &[],
        }
    }

    /// Makes `len` bytes from `offset` plain writable storage.
    fn storage(mut self, offset: usize, len: usize) -> Self {
        self.config.set_writable(offset, len);
        self
    }

    /// Sets a 32-bit register's reset value.
    fn preset(mut self, offset: usize, value: u32) -> Self {
        for i in 0..4 {
            self.config.set_byte(offset + i, (value >> (i * 8)) as u8);
        }
        self
    }

    /// Q35 MCH, 00:00.0 (8086:29c0).
    pub fn q35_mch() -> Self {
        let mut f = Self::new("q35-mch", 0x8086, 0x29c0, 0, 0x06_0000)
            .storage(MCH_PCIEXBAR, 8)
            .storage(MCH_PAM0, 7)
            .storage(MCH_SMRAM, 2)
            // SMRAM: D_LCK clear, G_SMRAME clear, C_BASE_SEG = 010b (QEMU's reset value).
            .preset(0x9c, 0x0000_0200)
            // PAM0 = 0x10: 0xF0000-0xFFFFF reads from RAM, which holds the BIOS
            // (crate::firmware): SeaBIOS sees its shadow in place.
            .preset(MCH_PAM0, u32::from(PAM0_SHADOW_READ));
        f.watched = &[(MCH_PCIEXBAR, 4)];
        f
    }

    /// ICH9 LPC/ISA bridge, 00:1f.0 (8086:2918), multi-function like QEMU's.
    pub fn ich9_lpc() -> Self {
        let mut f = Self::new("ich9-lpc", 0x8086, 0x2918, 2, 0x06_0100)
            .storage(LPC_PMBASE, 4)
            .storage(LPC_ACPI_CNTL, 1)
            .storage(LPC_PIRQ_A, 4)
            .storage(LPC_PIRQ_E, 4)
            .storage(LPC_GEN_PMCON, 4)
            .storage(LPC_RCBA, 4)
            // PMBASE bit 0: I/O space indicator; PIRQs start disabled (bit 7).
            .preset(LPC_PMBASE, 1)
            .preset(LPC_PIRQ_A, 0x8080_8080)
            .preset(LPC_PIRQ_E, 0x8080_8080);
        f.config.set_multifunction(true);
        f.watched = &[(LPC_PMBASE, 4)];
        f
    }

    /// i440FX host bridge, 00:00.0 (8086:1237).
    pub fn i440fx_host() -> Self {
        // PAM0 is the high byte of the dword at 0x58.
        Self::new("i440fx", 0x8086, 0x1237, 2, 0x06_0000)
            .storage(I440FX_PAM0, 7)
            .preset(I440FX_PAM0 - 1, u32::from(PAM0_SHADOW_READ) << 8)
    }

    /// PIIX3 ISA bridge, 00:01.0 (8086:7000), multi-function.
    pub fn piix3_isa() -> Self {
        let mut f = Self::new("piix3-isa", 0x8086, 0x7000, 0, 0x06_0100)
            .storage(PIIX3_PIRQRC, 4)
            .preset(PIIX3_PIRQRC, 0x8080_8080);
        f.config.set_multifunction(true);
        f
    }

    /// PIIX4 power management, 00:01.3 (8086:7113).
    pub fn piix4_pm() -> Self {
        let mut f = Self::new("piix4-pm", 0x8086, 0x7113, 3, 0x06_8000)
            .storage(PIIX4_PMBA, 4)
            .storage(PIIX4_DEVACTB, 4)
            .storage(PIIX4_PMREGMISC, 1)
            .storage(PIIX4_SMBBA, 4)
            .storage(PIIX4_SMBHSTCFG, 1)
            .preset(PIIX4_PMBA, 1)
            .preset(PIIX4_DEVACTB, PIIX4_DEVACTB_APMC_EN);
        f.watched = &[(PIIX4_PMBA, 4)];
        f
    }

    fn check(&self, reg: usize) {
        for &(off, len) in self.watched {
            if !(off / 4..(off + len).div_ceil(4)).contains(&reg) {
                continue;
            }
            let value = self.config.read(off / 4);
            match off {
                MCH_PCIEXBAR if self.name == "q35-mch" => {
                    let base = u64::from(value & 0xf000_0000);
                    if value & 1 != 0 && base != crate::layout::Q35_ECAM_START {
                        tracing::warn!(
                            "firmware asked for ECAM at {base:#x}; this machine keeps it at {:#x}",
                            crate::layout::Q35_ECAM_START
                        );
                    }
                }
                _ => {
                    let base = (value & 0xff80) as u16;
                    if base != 0 && base != PM_BASE {
                        tracing::warn!(
                            "firmware asked for the PM block at {base:#x}; this machine keeps it at {PM_BASE:#x}"
                        );
                    }
                }
            }
        }
    }
}

impl PciDevice for ChipsetFunction {
    fn read_config(&mut self, reg: usize) -> u32 {
        self.config.read(reg)
    }
    fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]) {
        self.config.write(reg, offset, data);
        self.check(reg);
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
        self.config.set_multifunction(true);
    }
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
        self.name.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn byte(f: &mut ChipsetFunction, off: usize) -> u8 {
        (f.read_config(off / 4) >> ((off % 4) * 8)) as u8
    }

    #[test]
    fn q35_ids_and_registers_firmware_programs() {
        let mut mch = ChipsetFunction::q35_mch();
        assert_eq!(mch.read_config(0), 0x29c0_8086);
        assert_eq!(mch.read_config(2) >> 8, 0x06_0000);
        // PCIEXBAR as OVMF writes it: low 0, high 0, low base|EN.
        mch.write_config(MCH_PCIEXBAR / 4, 0, &0u32.to_le_bytes());
        mch.write_config(MCH_PCIEXBAR / 4 + 1, 0, &0u32.to_le_bytes());
        mch.write_config(MCH_PCIEXBAR / 4, 0, &0xb000_0001u32.to_le_bytes());
        assert_eq!(mch.read_config(MCH_PCIEXBAR / 4), 0xb000_0001);
        // PAM bytes are stored (SeaBIOS writes 0x33/0x30, later 0x11/0x10).
        mch.write_config(MCH_PAM0 / 4, 0, &[0x30, 0x33, 0x33, 0x33]);
        assert_eq!(byte(&mut mch, 0x90), 0x30);
        assert_eq!(byte(&mut mch, 0x93), 0x33);
        // The vendor ID stays read-only.
        mch.write_config(0, 0, &[0, 0]);
        assert_eq!(mch.read_config(0) & 0xffff, 0x8086);

        let mut lpc = ChipsetFunction::ich9_lpc();
        assert_eq!(lpc.read_config(0), 0x2918_8086);
        assert_eq!(lpc.read_config(3) >> 16 & 0x80, 0x80, "multi-function");
        assert_eq!(lpc.read_config(LPC_PMBASE / 4), 1);
        lpc.write_config(LPC_PMBASE / 4, 0, &0x601u32.to_le_bytes());
        assert_eq!(lpc.read_config(LPC_PMBASE / 4), 0x601);
        lpc.write_config(LPC_ACPI_CNTL / 4, 0, &[0x80]);
        assert_eq!(byte(&mut lpc, LPC_ACPI_CNTL), 0x80);
        assert_eq!(byte(&mut lpc, LPC_PIRQ_A), 0x80);
    }

    #[test]
    fn i440fx_ids_and_apmc_preset() {
        let mut host = ChipsetFunction::i440fx_host();
        assert_eq!(host.read_config(0), 0x1237_8086);
        host.write_config(I440FX_PAM0 / 4, 1, &[0x30]);
        assert_eq!(byte(&mut host, I440FX_PAM0), 0x30);
        let mut isa = ChipsetFunction::piix3_isa();
        assert_eq!(isa.read_config(0), 0x7000_8086);
        let mut pm = ChipsetFunction::piix4_pm();
        assert_eq!(pm.read_config(0), 0x7113_8086);
        assert_ne!(pm.read_config(PIIX4_DEVACTB / 4) & PIIX4_DEVACTB_APMC_EN, 0);
    }
}
