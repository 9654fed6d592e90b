//! The AHCI host bus adapter (Serial ATA AHCI 1.3.1), as Intel's ICH9 SATA
//! controller in AHCI mode (8086:2922) that QEMU's q35 has at 00:1f.2.
//!
//! What the guest sees: a PCI function whose BAR5 (ABAR) holds the generic host
//! control registers (CAP, GHC, IS, PI, VS) and, from 0x100, 0x80 bytes of
//! registers per port. A driver gives each port a command list (32 headers
//! of 32 bytes) and a received-FIS area, starts the port (PxCMD.FRE, .ST) and
//! issues commands by setting bits in PxCI (and PxSACT for NCQ). Each header
//! points at a command table: the command FIS (a Register H2D FIS holding the
//! ATA task file), the ATAPI packet, and the PRD table (scatter-gather list).
//!
//! The adapter runs a command when the guest sets its PxCI bit, on the vCPU
//! thread that wrote it: the drive moves the data between the PRD buffers and
//! the image, then the adapter writes the result into the received-FIS area
//! (a D2H Register FIS; a Set Device Bits FIS for NCQ), clears PxCI/PxSACT,
//! and raises PxIS, the port bit in IS and, with GHC.IE, the INTA# line
//! (level-triggered, as long as an enabled PxIS bit is set), or, once the driver
//! enables the MSI capability (Linux's `ahci` does), one MSI per new enabled
//! PxIS bit. Firmware polls.
//!
//! A COMRESET (PxSCTL.DET 1 → 0) or a software reset (a control FIS with SRST)
//! puts the drive's signature in PxSIG and PxTFD, which is how drivers tell a
//! disk from an ATAPI device.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use tracing::{debug, warn};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, VolatileSlice};

use super::device::{cmd, status, AtaDevice, Taskfile};
use crate::pci::config::{COMMAND_MEMORY, CONFIG_DWORDS};
use crate::pci::intx::{IntxLine, IntxPin, PIN_INTA};
use crate::pci::msi::Msi;
use crate::pci::{BarKind, ConfigSpace, MsiSink, PciDevice, PciError, PciHeader, PciRoot};
use crate::scsi::Data;
use crate::virtio::GuestMem;

/// Ports of an ICH9 AHCI controller.
pub const PORTS: usize = 6;
/// The ABAR's size and index.
const ABAR_SIZE: u64 = 0x1000;
const ABAR: usize = 5;
/// Command slots per port.
const SLOTS: u32 = 32;
/// NCQ queue depth offered to the drives.
pub const NCQ_DEPTH: u8 = 32;

/// Generic host control registers.
mod hba {
    pub const CAP: u64 = 0x00;
    pub const GHC: u64 = 0x04;
    pub const IS: u64 = 0x08;
    pub const PI: u64 = 0x0c;
    pub const VS: u64 = 0x10;
    /// GHC bits: HBA reset, interrupt enable, AHCI enable.
    pub const GHC_HR: u32 = 1;
    pub const GHC_IE: u32 = 1 << 1;
    pub const GHC_AE: u32 = 1 << 31;
    /// CAP: 64-bit addressing, NCQ, AHCI only, Gen1 speed, 32 slots.
    pub const CAP_S64A: u32 = 1 << 31;
    pub const CAP_SNCQ: u32 = 1 << 30;
    pub const CAP_SAM: u32 = 1 << 18;
    pub const CAP_ISS_GEN1: u32 = 1 << 20;
    /// AHCI 1.0, as QEMU's.
    pub const VERSION: u32 = 0x0001_0000;
}

/// Port registers (offsets within a port's 0x80 bytes) and their bits.
mod px {
    pub const CLB: u64 = 0x00;
    pub const CLBU: u64 = 0x04;
    pub const FB: u64 = 0x08;
    pub const FBU: u64 = 0x0c;
    pub const IS: u64 = 0x10;
    pub const IE: u64 = 0x14;
    pub const CMD: u64 = 0x18;
    pub const TFD: u64 = 0x20;
    pub const SIG: u64 = 0x24;
    pub const SSTS: u64 = 0x28;
    pub const SCTL: u64 = 0x2c;
    pub const SERR: u64 = 0x30;
    pub const SACT: u64 = 0x34;
    pub const CI: u64 = 0x38;

    /// PxIS: D2H register FIS, set device bits FIS, task file error.
    pub const IS_DHRS: u32 = 1;
    pub const IS_SDBS: u32 = 1 << 3;
    pub const IS_TFES: u32 = 1 << 30;
    /// Bits of PxIE that exist.
    pub const IE_MASK: u32 = 0xfdc0_00ff;

    /// PxCMD bits.
    pub const CMD_ST: u32 = 1;
    pub const CMD_SUD: u32 = 1 << 1;
    pub const CMD_POD: u32 = 1 << 2;
    pub const CMD_CLO: u32 = 1 << 3;
    pub const CMD_FRE: u32 = 1 << 4;
    pub const CMD_FR: u32 = 1 << 14;
    pub const CMD_CR: u32 = 1 << 15;
    /// What software may write: ST, SUD, POD, CLO, FRE, and ATAPI/DLAE/ALPE/ASP/ICC.
    pub const CMD_WRITABLE: u32 = 0xff00_001f;

    /// PxSSTS of a port with a device: present and communicating, Gen1, active.
    pub const SSTS_ONLINE: u32 = 0x113;
}

/// FIS types.
mod fis {
    pub const REG_H2D: u8 = 0x27;
    pub const REG_D2H: u8 = 0x34;
    pub const SET_DEVICE_BITS: u8 = 0xa1;
    /// Offsets in the received-FIS area.
    pub const RFIS: u64 = 0x40;
    pub const SDBFIS: u64 = 0x58;
}

/// One port: its registers and the drive behind it. The registers are what a saved
/// machine keeps of an empty port (the drive is not saved).
#[derive(serde::Serialize, serde::Deserialize)]
struct Port {
    #[serde(skip)]
    drive: Option<AtaDevice>,
    clb: u64,
    fb: u64,
    is: u32,
    ie: u32,
    cmd: u32,
    tfd: u32,
    sig: u32,
    sctl: u32,
    serr: u32,
    sact: u32,
    ci: u32,
    /// A control FIS with SRST set was seen; the next without it ends the reset.
    srst: bool,
}

impl Port {
    fn new(drive: Option<AtaDevice>) -> Self {
        let mut p = Port {
            drive,
            clb: 0,
            fb: 0,
            is: 0,
            ie: 0,
            cmd: px::CMD_SUD | px::CMD_POD,
            tfd: 0x7f,
            sig: 0xffff_ffff,
            sctl: 0,
            serr: 0,
            sact: 0,
            ci: 0,
            srst: false,
        };
        p.reset_registers();
        p
    }

    /// The port after an HBA reset: registers to their defaults (the command
    /// list and FIS addresses are kept, as the specification allows) and the
    /// drive's signature in place.
    fn reset_registers(&mut self) {
        self.is = 0;
        self.ie = 0;
        self.cmd = px::CMD_SUD | px::CMD_POD;
        self.sctl = 0;
        self.serr = 0;
        self.sact = 0;
        self.ci = 0;
        self.srst = false;
        self.signature();
    }

    /// The drive reports itself: PxSIG and PxTFD as after a reset.
    fn signature(&mut self) {
        match &self.drive {
            Some(d) => {
                self.sig = d.signature();
                self.tfd = 0x100 | u32::from(d.reset_status());
            }
            None => {
                self.sig = 0xffff_ffff;
                self.tfd = 0x7f;
            }
        }
    }

    fn ssts(&self) -> u32 {
        if self.drive.is_some() {
            px::SSTS_ONLINE
        } else {
            0
        }
    }
}

/// The adapter.
pub struct Ahci {
    config: ConfigSpace,
    mem: GuestMem,
    ports: Vec<Port>,
    ghc: u32,
    is: u32,
    intx: Option<Arc<IntxPin>>,
    /// 1 while the interrupt line should be asserted (shared with the pin).
    level: Arc<AtomicU8>,
    /// The MSI capability (none: INTx only), whether the driver enabled it, and
    /// each port's enabled PxIS bits already signalled by a message.
    msi: Option<Msi>,
    msi_on: bool,
    msi_seen: [u32; PORTS],
}

impl Ahci {
    /// An ICH9 AHCI function with `drives` on ports 0..6 (`None`: empty port),
    /// its ABAR placed in `root`'s 32-bit window.
    pub fn new(
        drives: Vec<Option<AtaDevice>>,
        mem: GuestMem,
        root: &mut PciRoot,
    ) -> Result<Self, PciError> {
        let mut config = ConfigSpace::new(PciHeader {
            vendor: 0x8086,
            device: 0x2922,
            revision: 2,
            // Mass storage, SATA, AHCI 1.0.
            class: 0x01_06_01,
            subsystem_vendor: 0x1af4,
            subsystem: 0x1100,
        });
        config.add_bar(ABAR, ABAR_SIZE, BarKind::Mem32);
        let abar = root.allocate_bar(ABAR_SIZE, BarKind::Mem32)?;
        config.set_bar_address(ABAR, abar);
        let mut ports: Vec<Port> = drives.into_iter().take(PORTS).map(Port::new).collect();
        while ports.len() < PORTS {
            ports.push(Port::new(None));
        }
        Ok(Ahci {
            config,
            mem,
            ports,
            ghc: hba::GHC_AE,
            is: 0,
            intx: None,
            level: Arc::new(AtomicU8::new(0)),
            msi: None,
            msi_on: false,
            msi_seen: [0; PORTS],
        })
    }

    /// Gives the function its MSI capability; `sink` routes the vector.
    pub fn attach_msi(&mut self, sink: Arc<dyn MsiSink>) {
        self.msi = Some(Msi::add(&mut self.config, sink));
    }

    /// Gives the function INTA#, routed to `gsi`. Returns the pin for resampling.
    pub fn attach_intx(&mut self, gsi: u8, line: Box<dyn IntxLine>) -> Arc<IntxPin> {
        self.config.set_interrupt(gsi, PIN_INTA);
        let pin = Arc::new(IntxPin::new(u32::from(gsi), self.level.clone(), line));
        self.intx = Some(pin.clone());
        pin
    }

    /// Where the ABAR is now.
    pub fn abar(&self) -> u64 {
        self.config.bar_address(ABAR).unwrap_or(0)
    }

    /// The drive on `port`.
    pub fn drive(&self, port: usize) -> Option<&AtaDevice> {
        self.ports.get(port).and_then(|p| p.drive.as_ref())
    }

    fn cap(&self) -> u32 {
        (PORTS as u32 - 1)
            | (SLOTS - 1) << 8
            | hba::CAP_ISS_GEN1
            | hba::CAP_SAM
            | hba::CAP_SNCQ
            | hba::CAP_S64A
    }

    /// Reads the dword register at `offset` (4-byte aligned).
    pub fn read_reg(&self, offset: u64) -> u32 {
        match offset {
            hba::CAP => self.cap(),
            hba::GHC => self.ghc,
            hba::IS => self.is,
            hba::PI => (1 << PORTS) - 1,
            hba::VS => hba::VERSION,
            0x100.. => {
                let (n, reg) = ((offset - 0x100) / 0x80, (offset - 0x100) % 0x80);
                let Some(p) = self.ports.get(n as usize) else {
                    return 0;
                };
                match reg {
                    px::CLB => p.clb as u32,
                    px::CLBU => (p.clb >> 32) as u32,
                    px::FB => p.fb as u32,
                    px::FBU => (p.fb >> 32) as u32,
                    px::IS => p.is,
                    px::IE => p.ie,
                    px::CMD => p.cmd,
                    px::TFD => p.tfd,
                    px::SIG => p.sig,
                    px::SSTS => p.ssts(),
                    px::SCTL => p.sctl,
                    px::SERR => p.serr,
                    px::SACT => p.sact,
                    px::CI => p.ci,
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    /// Writes the dword register at `offset`; `mask` has the bytes written.
    pub fn write_reg(&mut self, offset: u64, value: u32, mask: u32) {
        let merged = (self.read_reg(offset) & !mask) | (value & mask);
        match offset {
            hba::GHC => {
                if value & mask & hba::GHC_HR != 0 {
                    self.reset();
                } else {
                    self.ghc = hba::GHC_AE | (merged & hba::GHC_IE);
                }
            }
            hba::IS => self.is &= !(value & mask),
            0x100.. => {
                let (n, reg) = ((offset - 0x100) / 0x80, (offset - 0x100) % 0x80);
                if (n as usize) < self.ports.len() {
                    self.write_port(n as usize, reg, value & mask, merged);
                }
            }
            _ => {}
        }
        self.update_irq();
    }

    /// GHC.HR: every port back to its reset state, interrupts off.
    fn reset(&mut self) {
        self.ghc = hba::GHC_AE;
        self.is = 0;
        for p in &mut self.ports {
            p.reset_registers();
        }
    }

    fn write_port(&mut self, n: usize, reg: u64, written: u32, merged: u32) {
        let p = &mut self.ports[n];
        match reg {
            px::CLB => p.clb = (p.clb & !0xffff_ffff) | u64::from(merged & !0x3ff),
            px::CLBU => p.clb = (p.clb & 0xffff_ffff) | u64::from(merged) << 32,
            px::FB => p.fb = (p.fb & !0xffff_ffff) | u64::from(merged & !0xff),
            px::FBU => p.fb = (p.fb & 0xffff_ffff) | u64::from(merged) << 32,
            px::IS => p.is &= !written,
            px::IE => p.ie = merged & px::IE_MASK,
            px::CMD => {
                let mut c = (p.cmd & !px::CMD_WRITABLE) | (merged & px::CMD_WRITABLE);
                // Command list override takes effect at once.
                c &= !px::CMD_CLO;
                c = if c & px::CMD_FRE != 0 {
                    c | px::CMD_FR
                } else {
                    c & !px::CMD_FR
                };
                if c & px::CMD_ST != 0 {
                    c |= px::CMD_CR;
                } else {
                    // Stopping the engine drops what was issued.
                    c &= !(px::CMD_CR | 0x1f00);
                    p.ci = 0;
                    p.sact = 0;
                }
                p.cmd = c;
                self.run(n);
            }
            px::SCTL => {
                let was = p.sctl & 0xf;
                p.sctl = merged;
                if was == 1 && merged & 0xf == 0 {
                    self.comreset(n);
                }
            }
            px::SERR => p.serr &= !written,
            px::SACT if p.cmd & px::CMD_ST != 0 => p.sact |= written,
            px::CI if p.cmd & px::CMD_ST != 0 => {
                p.ci |= written;
                self.run(n);
            }
            _ => {}
        }
    }

    /// The end of a COMRESET: the drive sends its signature in a D2H FIS.
    fn comreset(&mut self, n: usize) {
        let p = &mut self.ports[n];
        p.signature();
        p.srst = false;
        if p.drive.is_some() {
            let f = self.signature_fis(n);
            self.post_fis(n, fis::RFIS, &f);
        }
    }

    /// A D2H register FIS with the drive's signature and reset status.
    fn signature_fis(&self, n: usize) -> [u8; 20] {
        let p = &self.ports[n];
        let mut f = [0u8; 20];
        f[0] = fis::REG_D2H;
        f[2] = p.tfd as u8;
        f[3] = (p.tfd >> 8) as u8;
        f[4] = (p.sig >> 8) as u8; // LBA low
        f[5] = (p.sig >> 16) as u8; // LBA mid
        f[6] = (p.sig >> 24) as u8; // LBA high
        f[12] = p.sig as u8; // sector count
        f
    }

    /// Writes a received FIS into the port's FIS area, if the guest enabled it.
    fn post_fis(&self, n: usize, at: u64, f: &[u8]) {
        let p = &self.ports[n];
        if p.cmd & px::CMD_FRE == 0 || p.fb == 0 {
            return;
        }
        if let Err(e) = self.mem.write_slice(f, GuestAddress(p.fb + at)) {
            warn!(
                port = n,
                "AHCI: cannot write a received FIS at {:#x}: {e}",
                p.fb + at
            );
        }
    }

    /// Runs the issued commands of port `n`, lowest slot first.
    fn run(&mut self, n: usize) {
        loop {
            let p = &self.ports[n];
            if p.cmd & px::CMD_ST == 0
                || p.ci == 0
                || p.tfd & u32::from(status::ERR) != 0 && p.is & px::IS_TFES != 0
            {
                return;
            }
            let slot = p.ci.trailing_zeros();
            self.run_slot(n, slot);
            self.ports[n].ci &= !(1 << slot);
        }
    }

    /// Executes the command in `slot` of port `n` and posts its result.
    fn run_slot(&mut self, n: usize, slot: u32) {
        let header_at = self.ports[n].clb + u64::from(slot) * 32;
        let mut header = [0u8; 16];
        if self
            .mem
            .read_slice(&mut header, GuestAddress(header_at))
            .is_err()
        {
            warn!(
                port = n,
                slot, "AHCI: command header at {header_at:#x} is outside RAM"
            );
            return;
        }
        let dw0 = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
        let table = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes")) & !0x7f;
        let mut cfis = [0u8; 20];
        let mut packet = [0u8; 16];
        if self.mem.read_slice(&mut cfis, GuestAddress(table)).is_err()
            || self
                .mem
                .read_slice(&mut packet, GuestAddress(table + 0x40))
                .is_err()
        {
            warn!(
                port = n,
                slot, "AHCI: command table at {table:#x} is outside RAM"
            );
            return;
        }
        if cfis[0] != fis::REG_H2D {
            debug!(
                port = n,
                slot, "AHCI: command FIS type {:#x} ignored", cfis[0]
            );
            return;
        }
        if cfis[1] & 0x80 == 0 {
            self.control_fis(n, cfis[15]);
            return;
        }
        let tf = Taskfile {
            command: cfis[2],
            features: u16::from(cfis[3]) | u16::from(cfis[11]) << 8,
            lba: u64::from(cfis[4])
                | u64::from(cfis[5]) << 8
                | u64::from(cfis[6]) << 16
                | u64::from(cfis[8]) << 24
                | u64::from(cfis[9]) << 32
                | u64::from(cfis[10]) << 40,
            device: cfis[7],
            count: u16::from(cfis[12]) | u16::from(cfis[13]) << 8,
        };
        let prdtl = (dw0 >> 16) as usize;
        let write = dw0 & (1 << 6) != 0;
        let prds = match self.prd_table(table, prdtl) {
            Some(p) => p,
            None => {
                warn!(
                    port = n,
                    slot, "AHCI: PRD table of {prdtl} entries is outside RAM"
                );
                self.finish(n, slot, &tf, status::DRDY | status::ERR, 0x04, 0);
                return;
            }
        };
        let mem = &self.mem;
        let slices: Option<Vec<VolatileSlice<'_>>> = prds
            .iter()
            .map(|&(addr, len)| mem.get_slice(GuestAddress(addr), len).ok())
            .collect();
        let Some(slices) = slices else {
            warn!(port = n, slot, "AHCI: a PRD buffer is outside RAM");
            self.finish(n, slot, &tf, status::DRDY | status::ERR, 0x04, 0);
            return;
        };
        let data = match (slices.is_empty(), write) {
            (true, _) => Data::None,
            (false, false) => Data::In(&slices),
            (false, true) => Data::Out(&slices),
        };
        let Some(drive) = self.ports[n].drive.as_mut() else {
            return;
        };
        let out = drive.execute(&tf, &packet, data);
        drop(slices);
        self.finish(n, slot, &tf, out.status, out.error, out.transferred);
    }

    /// The PRD table of a command: (buffer address, byte count) pairs.
    fn prd_table(&self, table: u64, entries: usize) -> Option<Vec<(u64, usize)>> {
        let mut raw = vec![0u8; entries * 16];
        self.mem
            .read_slice(&mut raw, GuestAddress(table + 0x80))
            .ok()?;
        Some(
            raw.chunks_exact(16)
                .map(|e| {
                    let addr = u64::from_le_bytes(e[0..8].try_into().expect("8 bytes"));
                    let dbc = u32::from_le_bytes(e[12..16].try_into().expect("4 bytes"));
                    (addr & !1, ((dbc & 0x3f_ffff) + 1) as usize)
                })
                .collect(),
        )
    }

    /// A control FIS (C bit clear): SRST set starts a software reset, SRST
    /// clear ends it and the drive reports its signature.
    fn control_fis(&mut self, n: usize, control: u8) {
        const SRST: u8 = 0x04;
        let p = &mut self.ports[n];
        if control & SRST != 0 {
            p.srst = true;
            p.tfd = u32::from(status::BSY);
        } else if p.srst {
            p.srst = false;
            p.signature();
            let f = self.signature_fis(n);
            self.post_fis(n, fis::RFIS, &f);
        }
    }

    /// Posts a command's result: PRDBC, the received FIS, PxTFD, PxIS.
    fn finish(&mut self, n: usize, slot: u32, tf: &Taskfile, st: u8, err: u8, transferred: u64) {
        let ncq = matches!(tf.command, cmd::READ_FPDMA_QUEUED | cmd::WRITE_FPDMA_QUEUED);
        let failed = st & status::ERR != 0;
        let header_at = self.ports[n].clb + u64::from(slot) * 32;
        if !ncq {
            // PRDBC: bytes transferred.
            let _ = self
                .mem
                .write_obj((transferred as u32).to_le(), GuestAddress(header_at + 4));
        }
        self.ports[n].tfd = u32::from(err) << 8 | u32::from(st);
        if ncq {
            let tag = u32::from(tf.count >> 3) & 0x1f;
            let mut f = [0u8; 8];
            f[0] = fis::SET_DEVICE_BITS;
            f[1] = 0x40; // interrupt
            f[2] = st & 0x77;
            f[3] = err;
            f[4..8].copy_from_slice(&(1u32 << tag).to_le_bytes());
            self.post_fis(n, fis::SDBFIS, &f);
            let p = &mut self.ports[n];
            p.sact &= !(1 << tag);
            p.is |= px::IS_SDBS;
        } else {
            let mut f = [0u8; 20];
            f[0] = fis::REG_D2H;
            f[1] = 0x40; // interrupt
            f[2] = st;
            f[3] = err;
            f[4] = tf.lba as u8;
            f[5] = (tf.lba >> 8) as u8;
            f[6] = (tf.lba >> 16) as u8;
            f[7] = tf.device;
            f[8] = (tf.lba >> 24) as u8;
            f[9] = (tf.lba >> 32) as u8;
            f[10] = (tf.lba >> 40) as u8;
            // CHECK POWER MODE answers "active or idle" in the count register;
            // a PACKET command's interrupt reason is I/O + C/D (completion).
            f[12] = match tf.command {
                cmd::CHECK_POWER_MODE => 0xff,
                cmd::PACKET => 0x03,
                _ => tf.count as u8,
            };
            f[13] = (tf.count >> 8) as u8;
            self.post_fis(n, fis::RFIS, &f);
            self.ports[n].is |= px::IS_DHRS;
        }
        if failed {
            self.ports[n].is |= px::IS_TFES;
        }
    }

    /// Recomputes IS from the ports and drives the INTx line.
    fn update_irq(&mut self) {
        for (i, p) in self.ports.iter().enumerate() {
            if p.is & p.ie != 0 {
                self.is |= 1 << i;
            }
        }
        let level = self.ghc & hba::GHC_IE != 0 && self.is != 0;
        let was = self.level.swap(u8::from(level), Ordering::SeqCst);
        if let (true, Some(msi)) = (self.msi_on, &self.msi) {
            // A message per event: a port bit that was not pending at the last
            // message (one the driver cleared and that came back, too), so a
            // completion that lands while the handler runs is never lost.
            let mut new = false;
            for (seen, p) in self.msi_seen.iter_mut().zip(&self.ports) {
                let now = p.is & p.ie;
                new |= now & !*seen != 0;
                *seen = now;
            }
            if level && (new || was == 0) {
                msi.trigger();
            }
        } else if level && was == 0 {
            if let Some(pin) = &self.intx {
                pin.raise();
            }
        }
    }

    fn update_intx_mode(&self) {
        if let Some(pin) = &self.intx {
            pin.set_mode(
                self.msi_on,
                self.config.command() & COMMAND_INTX_DISABLE != 0,
            );
        }
    }
}

/// Command register: INTx disable.
const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status register: interrupt status.
const STATUS_INTERRUPT: u32 = 1 << 19;

/// An AHCI controller without drives: configuration space, HBA and port registers
/// (`P`: the ports, borrowed to save, owned when read back).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedAhci<P> {
    regs: Vec<u32>,
    ghc: u32,
    is: u32,
    msi_seen: Vec<u32>,
    ports: P,
}

impl PciDevice for Ahci {
    fn state_name(&self) -> String {
        "AHCI controller".into()
    }

    /// Only without drives for now (Q35's built-in controller as a machine with no
    /// SATA devices has it): a drive's ATA/ATAPI state is not saved yet. Commands run
    /// whole on the vCPU that issues them, so nothing is in flight at a save.
    fn can_save(&self) -> bool {
        self.ports.iter().all(|p| p.drive.is_none())
    }

    fn save_state(&mut self) -> Option<serde_json::Value> {
        if !self.can_save() {
            return None;
        }
        Some(crate::vmstate::to_value(&SavedAhci {
            regs: self.config.save_regs(),
            ghc: self.ghc,
            is: self.is,
            msi_seen: self.msi_seen.to_vec(),
            ports: &self.ports[..],
        }))
    }

    fn restore_state(&mut self, state: &serde_json::Value) -> Result<(), String> {
        let s: SavedAhci<Vec<Port>> = crate::vmstate::from_value(state)?;
        if s.ports.len() != self.ports.len() || !self.can_save() {
            return Err("the saved AHCI controller differs in its ports".into());
        }
        self.config.restore_regs(&s.regs)?;
        self.ghc = s.ghc;
        self.is = s.is;
        self.msi_seen = s
            .msi_seen
            .try_into()
            .map_err(|_| "AHCI MSI state of the wrong size".to_string())?;
        for (p, mut q) in self.ports.iter_mut().zip(s.ports) {
            // Registers from the stream, the (absent) drive from this machine.
            q.drive = p.drive.take();
            *p = q;
        }
        // The MSI message from the restored capability, then the line as the
        // registers say.
        if let Some(msi) = &mut self.msi {
            self.msi_on = msi.config_written(&self.config);
        }
        self.update_intx_mode();
        self.update_irq();
        Ok(())
    }
    fn read_config(&mut self, reg: usize) -> u32 {
        if reg >= CONFIG_DWORDS {
            return 0;
        }
        let v = self.config.read(reg);
        match &self.intx {
            Some(pin) if reg == 1 && pin.pending() => v | STATUS_INTERRUPT,
            _ => v,
        }
    }

    fn write_config(&mut self, reg: usize, offset: u8, data: &[u8]) {
        if reg >= CONFIG_DWORDS {
            return;
        }
        self.config.write(reg, offset, data);
        if let Some(msi) = &mut self.msi {
            let on = msi.config_written(&self.config);
            if on != self.msi_on {
                self.msi_on = on;
                self.msi_seen = [0; PORTS];
                self.update_intx_mode();
                self.update_irq();
            }
        }
        if reg == 1 {
            self.update_intx_mode();
        }
    }

    fn bars(&self) -> Vec<(usize, u64, u64)> {
        self.config.bars()
    }

    fn memory_enabled(&self) -> bool {
        self.config.command() & COMMAND_MEMORY != 0
    }

    fn bar_read(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar != ABAR || data.len() > 4 {
            data.fill(0);
            return;
        }
        let v = self.read_reg(offset & !3).to_le_bytes();
        let at = (offset & 3) as usize;
        for (i, b) in data.iter_mut().enumerate() {
            *b = v.get(at + i).copied().unwrap_or(0);
        }
    }

    fn bar_write(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != ABAR || data.len() > 4 {
            return;
        }
        let at = (offset & 3) as usize;
        let (mut value, mut mask) = (0u32, 0u32);
        for (i, &b) in data.iter().enumerate() {
            let shift = 8 * (at + i).min(3);
            value |= u32::from(b) << shift;
            mask |= 0xff << shift;
        }
        self.write_reg(offset & !3, value, mask);
    }

    fn set_multifunction(&mut self) {
        self.config.set_multifunction(true);
    }
}
