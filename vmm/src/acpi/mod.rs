//! ACPI tables: RSDP → XSDT → {FADT → (FACS, DSDT), MADT, MCFG}.
//!
//! The platform is a classic (not hardware-reduced) ACPI PC, because that is
//! what gives the guest a *fixed-feature power button* through PM1 events, which
//! every ACPI OS handles without extra drivers:
//!
//! * FADT: PM1a event block at 0x600, control block at 0x604, PM timer at 0x608
//!   (32-bit), SCI on IRQ 9, no SMI command port (always in ACPI mode), reset
//!   register 0xcf9 ← 0x06, CMOS century at 0x32, power button = fixed feature.
//! * DSDT: `\_S5` = Package {5, 5, 0, 0}; `\_SB.PCI0` (PNP0A08/PNP0A03) with bus
//!   0-255, config ports, the 32- and 64-bit MMIO windows and a `_PRT` routing
//!   INTA-D of every slot to GSI 16-23; `\_SB.MRES` (PNP0C02) claiming the ECAM
//!   window; the CMOS RTC (PNP0B00); one ACPI0007 processor device per vCPU;
//!   the COM ports (PNP0501);
//!   pvpanic (QEMU0001) when configured.
//! * MADT: one local APIC per vCPU (x2APIC entries above id 254), the IO-APIC
//!   at 0xfec00000, IRQ 9 overridden to level/active-high, LINT1 = NMI.
//! * MCFG: ECAM at 0xe0000000 for segment 0, buses 0-255.
//!
//! With ACPI PCI hot-plug (`pc` machines, [`AcpiConfig::pci_hotplug_slots`]) the
//! FADT also names the GPE0 block at 0xafe0 and the DSDT describes QEMU's PIIX4
//! hot-plug interface (`pci/acpi_hotplug.rs`): under `\_SB.PCI0` the registers at
//! 0xae00 (PCIU, PCID, B0EJ, BNUM), a mutex, `PCEJ` (eject), one `Sxx` device per
//! hot-pluggable slot (named by devfn as QEMU names them: `_ADR`, `_SUN`, `_EJ0`),
//! `DVNT` and `PCNT` (Notify device check for PCIU's slots, eject request for
//! PCID's), and `\_GPE._E01` calling `PCNT`; PNP0A06 devices claim both port ranges.
//!
//! That is the generic platform; the chipset's [`PlatformLayout`] moves the ECAM
//! window (Q35: 0xb0000000; i440FX has none, so no MCFG and a PNP0A03 bridge) and
//! the 32-bit PCI window (firmware platforms: [0xc0000000, 0xfec00000), where
//! SeaBIOS and OVMF put the BARs), and [`PmKind`] gives `\_S5` (0 on Q35 and
//! i440FX, as QEMU says and OVMF writes).
//!
//! One builder ([`TableSet`]) lays the tables out in one blob: FACS (64-byte
//! aligned), DSDT, FADT, MADT, MCFG, XSDT, each pointer field holding the offset
//! of its target in the blob. Two placements use it:
//!
//! * direct kernel boot ([`write`]): the blob goes to 0xe0040 in the reserved BIOS
//!   area, pointers relocated and checksums computed by the VMM; the RSDP is the
//!   area's first 36 bytes, where a legacy OS scanning 0xe0000-0xfffff finds it too.
//! * firmware boot ([`loader`]): the blob, the RSDP and a table-loader script
//!   become fw_cfg files; the firmware allocates, relocates and checksums them.

use acpi_tables::aml;
use acpi_tables::facs::FACS;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::mcfg::MCFG;
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use acpi_tables::AmlSink;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::devices::cmos::CMOS_PORT;
use crate::devices::legacy::{PVPANIC_PORT, RESET_PORT, RESET_VALUE};
use crate::devices::pm::{self, PmKind};
use crate::devices::serial::{COM_IRQS, COM_PORTS};
use crate::layout::{self, PlatformLayout, RamLayout};

pub mod loader;

/// Errors of table placement.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// The tables do not fit in the BIOS area.
    #[error("ACPI tables need {0} bytes; only {1} are available")]
    TooBig(u64, u64),
    /// Writing to guest memory failed.
    #[error("cannot write ACPI tables into guest memory")]
    Write(#[source] vm_memory::GuestMemoryError),
}

const OEM_ID: [u8; 6] = *b"OXVIRT";
const OEM_TABLE_ID: [u8; 8] = *b"OXVIRTVM";
const OEM_REVISION: u32 = 1;

/// FADT `IAPC_BOOT_ARCH`: legacy ISA devices (COM ports) exist, and an 8042 (the
/// PS/2 keyboard and mouse controller, also in the DSDT as PNP0303/PNP0F13).
const IAPC_LEGACY_DEVICES: u16 = 1;
const IAPC_8042: u16 = 2;

/// The machine as the tables describe it.
#[derive(Debug, Clone)]
pub struct AcpiConfig<'a> {
    /// APIC id of each vCPU, by index.
    pub apic_ids: Vec<u32>,
    /// COM port indexes (0 = COM1) that have a UART.
    pub serial_ports: Vec<u8>,
    /// Whether a pvpanic device is present.
    pub pvpanic: bool,
    /// The TPM's interface, if there is one: a TPM2 table and an MSFT0101 device.
    pub tpm: Option<machine_spec::TpmModel>,
    /// RAM layout (places the 64-bit MMIO window).
    pub ram: &'a RamLayout,
    /// The chipset's ECAM and 32-bit PCI window, and its PM block.
    pub platform: PlatformLayout,
    /// ACPI PCI hot-plug (`pc`): the root-bus slots it offers, a bit each
    /// (`pci::acpi_hotplug::slots_of`); None without it.
    pub pci_hotplug_slots: Option<u32>,
}

/// Tables with the guest addresses they are placed at.
#[derive(Debug, Clone)]
pub struct AcpiTables {
    /// `(address, bytes)`: the RSDP, then the blob of every other table.
    pub blobs: Vec<(u64, Vec<u8>)>,
    /// Where the RSDP is.
    pub rsdp: u64,
}

struct Raw(Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

fn bytes_of(a: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    a.to_aml_bytes(&mut v);
    v
}

/// The DSDT's AML body.
pub fn dsdt_aml(cfg: &AcpiConfig<'_>) -> Vec<u8> {
    let mut body = Vec::new();

    // \_S5: the sleep type values the PM1 control block accepts for soft-off.
    let slp_typ = PmKind::of(cfg.platform.chipset).s5_sleep_type() as u8;
    let s5 = aml::Package::new(vec![&slp_typ, &slp_typ, &0u8, &0u8]);
    aml::Name::new("_S5_".into(), &s5).to_aml_bytes(&mut body);

    let mut sb: Vec<Raw> = Vec::new();

    // PCI host bridge.
    let mmio64 = cfg.ram.mmio64_start();
    let (mmio32, mmio32_size) = cfg.platform.mmio32;
    let crs = Raw(bytes_of(&aml::ResourceTemplate::new(vec![
        &aml::AddressSpace::<u16>::new_bus_number(0, u16::from(layout::PCI_ECAM_LAST_BUS)),
        &aml::IO::new(0xcf8, 0xcf8, 1, 8),
        &aml::AddressSpace::<u16>::new_io(0, 0xcf7, None),
        &aml::AddressSpace::<u16>::new_io(0xd00, 0xffff, None),
        &aml::AddressSpace::<u32>::new_memory(
            aml::AddressSpaceCacheable::NotCacheable,
            true,
            mmio32 as u32,
            (mmio32 + mmio32_size - 1) as u32,
            None,
        ),
        &aml::AddressSpace::<u64>::new_memory(
            aml::AddressSpaceCacheable::NotCacheable,
            true,
            mmio64,
            mmio64 + layout::PCI_MMIO64_SIZE - 1,
            None,
        ),
    ])));
    let mut prt_entries = Vec::new();
    for slot in 0..32u32 {
        for pin in 0..4u32 {
            let addr = (slot << 16) | 0xffff;
            let gsi = pci_intx_gsi(slot as u8, pin as u8);
            prt_entries.push(Raw(bytes_of(&aml::Package::new(vec![
                &addr, &pin, &0u8, &gsi,
            ]))));
        }
    }
    let prt = aml::Package::new(prt_entries.iter().map(|r| r as &dyn Aml).collect());
    // PCI Express (PNP0A08, compatible with PCI) where there is an ECAM window.
    let pcie_ids = [
        aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0A08")),
        aml::Name::new("_CID".into(), &aml::EISAName::new("PNP0A03")),
    ];
    let pci_id = [aml::Name::new(
        "_HID".into(),
        &aml::EISAName::new("PNP0A03"),
    )];
    let ids: &[aml::Name] = if cfg.platform.ecam.is_some() {
        &pcie_ids
    } else {
        &pci_id
    };
    let mut pci0_body: Vec<&dyn Aml> = ids.iter().map(|n| n as &dyn Aml).collect();
    let pci0_rest = [
        aml::Name::new("_ADR".into(), &0u8),
        aml::Name::new("_SEG".into(), &0u8),
        aml::Name::new("_UID".into(), &0u8),
        aml::Name::new("_BBN".into(), &0u8),
        aml::Name::new("_CRS".into(), &crs),
        aml::Name::new("_PRT".into(), &prt),
    ];
    pci0_body.extend(pci0_rest.iter().map(|n| n as &dyn Aml));
    // A PCIe root grants the OS every native control it asks for (hot-plug,
    // PME, AER, capability structure): `_OSC` returns its capabilities buffer
    // unchanged, as QEMU's Q35 does without ACPI hot-plug. Without it Linux
    // leaves the root ports' hot-plug slots (`pci/hotplug.rs`) to the platform.
    let osc_ret = aml::Return::new(&aml::Arg(3));
    let osc = aml::Method::new("_OSC".into(), 4, false, vec![&osc_ret]);
    if cfg.platform.ecam.is_some() {
        pci0_body.push(&osc);
    }
    let hotplug = cfg
        .pci_hotplug_slots
        .map(|slots| Raw(pci_hotplug_aml(slots)));
    if let Some(h) = &hotplug {
        pci0_body.push(h);
    }
    sb.push(Raw(bytes_of(&aml::Device::new("PCI0".into(), pci0_body))));
    if hotplug.is_some() {
        // The GPE0 block's ports, claimed as QEMU claims them.
        sb.push(Raw(io_resources(
            "GPE0",
            "GPE0 resources",
            pm::GPE0_BLK,
            pm::GPE0_LEN,
        )));
    }

    // Motherboard resources: the ECAM window.
    if let Some(ecam) = cfg.platform.ecam {
        let mres_crs = Raw(bytes_of(&aml::ResourceTemplate::new(vec![
            &aml::Memory32Fixed::new(false, ecam as u32, layout::PCI_ECAM_SIZE as u32),
        ])));
        sb.push(Raw(bytes_of(&aml::Device::new(
            "MRES".into(),
            vec![
                &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0C02")),
                &aml::Name::new("_UID".into(), &1u8),
                &aml::Name::new("_CRS".into(), &mres_crs),
            ],
        ))));
    }

    // The CMOS RTC (IRQ 8), so the OS's RTC driver finds it by its PNP id.
    let rtc_crs = Raw(bytes_of(&aml::ResourceTemplate::new(vec![
        &aml::IO::new(CMOS_PORT, CMOS_PORT, 1, 2),
        &aml::Interrupt::new(true, true, false, false, 8),
    ])));
    sb.push(Raw(bytes_of(&aml::Device::new(
        "RTC_".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0B00")),
            &aml::Name::new("_CRS".into(), &rtc_crs),
        ],
    ))));

    // The i8042: keyboard on ports 0x60/0x64 with IRQ 1, mouse on IRQ 12.
    let kbd_crs = Raw(bytes_of(&aml::ResourceTemplate::new(vec![
        &aml::IO::new(0x60, 0x60, 1, 1),
        &aml::IO::new(0x64, 0x64, 1, 1),
        &aml::Interrupt::new(true, true, false, false, 1),
    ])));
    sb.push(Raw(bytes_of(&aml::Device::new(
        "KBD_".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0303")),
            &aml::Name::new("_CRS".into(), &kbd_crs),
        ],
    ))));
    let mou_crs = Raw(bytes_of(&aml::ResourceTemplate::new(vec![
        &aml::Interrupt::new(true, true, false, false, 12),
    ])));
    sb.push(Raw(bytes_of(&aml::Device::new(
        "MOU_".into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0F13")),
            &aml::Name::new("_CRS".into(), &mou_crs),
        ],
    ))));

    for (i, _) in cfg.apic_ids.iter().enumerate() {
        let uid = i as u32;
        sb.push(Raw(bytes_of(&aml::Device::new(
            format!("C{i:03X}").as_str().into(),
            vec![
                &aml::Name::new("_HID".into(), &"ACPI0007"),
                &aml::Name::new("_UID".into(), &uid),
            ],
        ))));
    }

    for &port in &cfg.serial_ports {
        let i = usize::from(port);
        let base = COM_PORTS[i];
        let crs = Raw(bytes_of(&aml::ResourceTemplate::new(vec![
            &aml::IO::new(base, base, 1, 8),
            &aml::Interrupt::new(true, true, false, false, COM_IRQS[i]),
        ])));
        let uid = u32::from(port) + 1;
        sb.push(Raw(bytes_of(&aml::Device::new(
            format!("COM{}", port + 1).as_str().into(),
            vec![
                &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0501")),
                &aml::Name::new("_UID".into(), &uid),
                &aml::Name::new("_CRS".into(), &crs),
            ],
        ))));
    }

    if cfg.pvpanic {
        let crs = Raw(bytes_of(&aml::ResourceTemplate::new(vec![&aml::IO::new(
            PVPANIC_PORT,
            PVPANIC_PORT,
            1,
            1,
        )])));
        sb.push(Raw(bytes_of(&aml::Device::new(
            "PEVT".into(),
            vec![
                &aml::Name::new("_HID".into(), &"QEMU0001"),
                &aml::Name::new("_CRS".into(), &crs),
            ],
        ))));
    }

    if let Some(model) = cfg.tpm {
        let mut dev = Vec::new();
        crate::tpm::acpi::dsdt_device(&mut dev, model);
        sb.push(Raw(dev));
    }

    aml::Scope::new("\\_SB_".into(), sb.iter().map(|r| r as &dyn Aml).collect())
        .to_aml_bytes(&mut body);
    if hotplug.is_some() {
        // GPE 1: a hot-plug event (`devices/pm.rs` raises it).
        let acquire = aml::Acquire::new("\\_SB_.PCI0.BLCK".into(), 0xffff);
        let pcnt = aml::MethodCall::new("\\_SB_.PCI0.PCNT".into(), vec![]);
        let release = aml::Release::new("\\_SB_.PCI0.BLCK".into());
        let e01 = aml::Method::new("_E01".into(), 0, false, vec![&acquire, &pcnt, &release]);
        let hid = aml::Name::new("_HID".into(), &"ACPI0006");
        aml::Scope::new("\\_GPE".into(), vec![&hid, &e01]).to_aml_bytes(&mut body);
    }
    body
}

/// A PNP0A06 device claiming `len` ports from `base` (present, decoding, hidden),
/// as QEMU's DSDT has for its hot-plug and GPE ports.
fn io_resources(name: &str, uid: &'static str, base: u16, len: u8) -> Vec<u8> {
    let crs = Raw(bytes_of(&aml::ResourceTemplate::new(vec![&aml::IO::new(
        base, base, 1, len,
    )])));
    bytes_of(&aml::Device::new(
        name.into(),
        vec![
            &aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0A06")),
            &aml::Name::new("_UID".into(), &uid),
            &aml::Name::new("_STA".into(), &0xbu8),
            &aml::Name::new("_CRS".into(), &crs),
        ],
    ))
}

/// The AML name of root-bus slot `slot`'s device: `S` and its devfn in hex, as
/// QEMU names them (`S08_` for slot 1).
pub fn pci_slot_name(slot: u8) -> String {
    format!("S{:02X}_", slot << 3)
}

/// `\_SB.PCI0`'s part of ACPI PCI hot-plug: the register fields, `BLCK`, `PCEJ`,
/// `BSEL`, a device per slot in `slots`, `DVNT`, `PCNT` and the ports' PNP0A06.
fn pci_hotplug_aml(slots: u32) -> Vec<u8> {
    use crate::pci::acpi_hotplug as hp;
    use aml::{FieldAccessType, FieldEntry, FieldLockRule, FieldUpdateRule, OpRegionSpace};
    let mut out = Vec::new();
    let region = |out: &mut Vec<u8>, name: &str, offset: u64, fields: &[&str]| {
        let at = u32::from(hp::BASE) + offset as u32;
        let len = 4 * fields.len() as u8;
        aml::OpRegion::new(name.into(), OpRegionSpace::SystemIO, &at, &len).to_aml_bytes(out);
        let entries = fields
            .iter()
            .map(|f| {
                let mut n = [0u8; 4];
                n.copy_from_slice(f.as_bytes());
                FieldEntry::Named(n, 32)
            })
            .collect();
        aml::Field::new(
            name.into(),
            FieldAccessType::DWord,
            FieldLockRule::NoLock,
            FieldUpdateRule::WriteAsZeroes,
            entries,
        )
        .to_aml_bytes(out);
    };
    region(&mut out, "PCST", hp::PCI_UP, &["PCIU", "PCID"]);
    region(&mut out, "SEJ_", hp::PCI_EJ, &["B0EJ"]);
    region(&mut out, "BNMR", hp::PCI_SEL, &["BNUM"]);
    aml::Mutex::new("BLCK".into(), 0).to_aml_bytes(&mut out);

    // PCEJ(bus, slot): select the bus, write the slot's bit to B0EJ.
    let blck = || aml::Path::new("BLCK");
    let bnum = aml::Path::new("BNUM");
    let b0ej = aml::Path::new("B0EJ");
    let acquire = aml::Acquire::new(blck(), 0xffff);
    let select = aml::Store::new(&bnum, &aml::Arg(0));
    let bit = aml::ShiftLeft::new(&aml::ZERO, &aml::ONE, &aml::Arg(1));
    let eject = aml::Store::new(&b0ej, &bit);
    let release = aml::Release::new(blck());
    let ret = aml::Return::new(&aml::ZERO);
    aml::Method::new(
        "PCEJ".into(),
        2,
        false,
        vec![&acquire, &select, &eject, &release, &ret],
    )
    .to_aml_bytes(&mut out);
    aml::Name::new("BSEL".into(), &aml::ZERO).to_aml_bytes(&mut out);

    let hot: Vec<u8> = (0..32u8).filter(|s| slots & (1 << s) != 0).collect();
    let (bsel, sun) = (aml::Path::new("BSEL"), aml::Path::new("_SUN"));
    let call_pcej = aml::MethodCall::new("PCEJ".into(), vec![&bsel, &sun]);
    let ej0 = aml::Method::new("_EJ0".into(), 1, false, vec![&call_pcej]);
    for &slot in &hot {
        let adr = u32::from(slot) << 16;
        let sun = u32::from(slot);
        aml::Device::new(
            pci_slot_name(slot).as_str().into(),
            vec![
                &aml::Name::new("_ADR".into(), &adr),
                &aml::Name::new("_SUN".into(), &sun),
                &ej0,
            ],
        )
        .to_aml_bytes(&mut out);
    }

    // DVNT(slots, event): Notify each slot device whose bit is set.
    let names: Vec<(aml::Path, u32)> = hot
        .iter()
        .map(|&s| (aml::Path::new(&pci_slot_name(s)), 1u32 << s))
        .collect();
    let tests: Vec<aml::And> = names
        .iter()
        .map(|(_, bit)| aml::And::new(&aml::ZERO, &aml::Arg(0), bit))
        .collect();
    let notifies: Vec<aml::Notify> = names
        .iter()
        .map(|(p, _)| aml::Notify::new(p, &aml::Arg(1)))
        .collect();
    let ifs: Vec<aml::If> = tests
        .iter()
        .zip(&notifies)
        .map(|(t, n)| aml::If::new(t, vec![n]))
        .collect();
    aml::Method::new(
        "DVNT".into(),
        2,
        false,
        ifs.iter().map(|i| i as &dyn Aml).collect(),
    )
    .to_aml_bytes(&mut out);

    // PCNT: bus 0's news, device check (1) for PCIU, eject request (3) for PCID.
    let select = aml::Store::new(&bnum, &aml::ZERO);
    let (pciu, pcid) = (aml::Path::new("PCIU"), aml::Path::new("PCID"));
    let up = aml::MethodCall::new("DVNT".into(), vec![&pciu, &aml::ONE]);
    let down = aml::MethodCall::new("DVNT".into(), vec![&pcid, &3u8]);
    aml::Method::new("PCNT".into(), 0, false, vec![&select, &up, &down]).to_aml_bytes(&mut out);

    out.extend(io_resources(
        "PHPR",
        "PCI Hotplug resources",
        hp::BASE,
        hp::LEN as u8,
    ));
    out
}

/// The GSI that PCI slot `slot`'s INTx pin `pin` (0 = INTA) is routed to:
/// the usual swizzle over IO-APIC pins 16-23.
pub fn pci_intx_gsi(slot: u8, pin: u8) -> u32 {
    16 + ((u32::from(slot) + u32::from(pin)) % 8)
}

/// The FADT, its FACS and DSDT pointers left 0 (the placements fill them);
/// with `gpe0`, the GPE0 block of ACPI PCI hot-plug.
fn fadt(gpe0: bool) -> Vec<u8> {
    let io = |width_bytes: u8, access: AccessSize, port: u16| {
        GAS::new(
            AddressSpace::SystemIo,
            width_bytes * 8,
            0,
            access,
            u64::from(port),
        )
    };
    let mut f = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::SlpButton)
        .flag(Flags::TmrValExt)
        .flag(Flags::ResetRegSup);
    f.sci_int = (pm::SCI_IRQ as u16).into();
    f.pm1a_evt_blk = u32::from(pm::PM1A_EVT_BLK).into();
    f.pm1a_cnt_blk = u32::from(pm::PM1A_CNT_BLK).into();
    f.pm_tmr_blk = u32::from(pm::PM_TMR_BLK).into();
    f.pm1_evt_len = pm::PM1_EVT_LEN;
    f.pm1_cnt_len = pm::PM1_CNT_LEN;
    f.pm_tmr_len = pm::PM_TMR_LEN;
    f.x_pm1a_evt_blk = io(pm::PM1_EVT_LEN, AccessSize::WordAccess, pm::PM1A_EVT_BLK);
    f.x_pm1a_cnt_blk = io(pm::PM1_CNT_LEN, AccessSize::WordAccess, pm::PM1A_CNT_BLK);
    f.x_pm_tmr_blk = io(pm::PM_TMR_LEN, AccessSize::DwordAccess, pm::PM_TMR_BLK);
    if gpe0 {
        f = f.gpe_info(u32::from(pm::GPE0_BLK), 0, pm::GPE0_LEN, 0, 0);
        f.x_gpe0_blk = io(pm::GPE0_LEN, AccessSize::ByteAccess, pm::GPE0_BLK);
    }
    f.reset_reg = io(1, AccessSize::ByteAccess, RESET_PORT);
    f.reset_value = RESET_VALUE;
    f.century = crate::devices::cmos::REG_CENTURY as u8;
    f.iapc_boot_arch = (IAPC_LEGACY_DEVICES | IAPC_8042).into();
    bytes_of(&f.finalize())
}

/// FADT field offsets of the FACS and DSDT pointers.
const FADT_FIRMWARE_CTRL: usize = 36;
const FADT_DSDT: usize = 40;
const FADT_X_FIRMWARE_CTRL: usize = 132;
const FADT_X_DSDT: usize = 140;
/// Offset of the checksum byte in a table header.
const HEADER_CHECKSUM: usize = 9;
/// Size of a table header; the XSDT's entries follow it.
const HEADER_LEN: usize = 36;

fn madt(apic_ids: &[u32]) -> Vec<u8> {
    let mut t = Sdt::new(*b"APIC", 44, 3, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    t.write_u32(36, layout::LAPIC_START as u32);
    t.write_u32(40, 1); // PCAT_COMPAT: there are 8259s (KVM's in-kernel PIC)
    for (uid, &id) in apic_ids.iter().enumerate() {
        if id < 255 {
            t.append_slice(&[0, 8, uid as u8, id as u8, 1, 0, 0, 0]);
        } else {
            let mut e = vec![9, 16, 0, 0];
            e.extend_from_slice(&id.to_le_bytes());
            e.extend_from_slice(&1u32.to_le_bytes());
            e.extend_from_slice(&(uid as u32).to_le_bytes());
            t.append_slice(&e);
        }
    }
    let mut ioapic = vec![1, 12, 0, 0];
    ioapic.extend_from_slice(&(layout::IOAPIC_START as u32).to_le_bytes());
    ioapic.extend_from_slice(&0u32.to_le_bytes());
    t.append_slice(&ioapic);
    // SCI: ISA IRQ 9 → GSI 9, active high (01), level triggered (11 << 2).
    let mut iso = vec![2, 10, 0, pm::SCI_IRQ as u8];
    iso.extend_from_slice(&pm::SCI_IRQ.to_le_bytes());
    iso.extend_from_slice(&0x000du16.to_le_bytes());
    t.append_slice(&iso);
    // LINT1 of every processor is the NMI input.
    t.append_slice(&[4, 6, 0xff, 0, 0, 1]);
    t.as_slice().to_vec()
}

fn mcfg(ecam: u64) -> Vec<u8> {
    let mut m = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    m.add_ecam(ecam, 0, 0, layout::PCI_ECAM_LAST_BUS);
    bytes_of(&m)
}

fn align(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

/// How the FADT points at the FACS and the DSDT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FadtPointers {
    /// The 64-bit fields only (X_FIRMWARE_CTRL, X_DSDT): direct kernel boot.
    Wide,
    /// As QEMU gives firmware: FIRMWARE_CTRL (32-bit; the spec wants X_FIRMWARE_CTRL
    /// 0 then), DSDT and X_DSDT. SeaBIOS reads only the 32-bit fields.
    Firmware,
}

/// A pointer field in a [`TableSet`]'s blob; it holds its target's blob offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pointer {
    /// Where the field is in the blob.
    pub at: usize,
    /// Its width in bytes (4 or 8).
    pub size: u8,
}

/// One table of a [`TableSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table {
    pub signature: [u8; 4],
    /// Offset in the blob.
    pub offset: usize,
    pub len: usize,
    /// Whether it has a header checksum (all but the FACS).
    pub checksummed: bool,
}

/// Every table but the RSDP, laid out in one blob that is to be placed at a
/// 64-byte aligned address, with the pointers between them still to relocate and
/// the checksums still to compute (checksum bytes are 0).
#[derive(Debug, Clone, Default)]
pub struct TableSet {
    pub blob: Vec<u8>,
    /// In blob order: FACS, DSDT, FADT, MADT, MCFG (if any), XSDT.
    pub tables: Vec<Table>,
    /// Every intra-blob pointer.
    pub pointers: Vec<Pointer>,
    /// Blob offset of the XSDT, the RSDP's target.
    pub xsdt: usize,
    /// The TPM2 table's LASA field, when it has an event-log area for the firmware
    /// (the placement points it at the log).
    pub tpm_log: Option<usize>,
}

impl TableSet {
    /// Builds the machine's tables.
    pub fn build(cfg: &AcpiConfig<'_>, fadt_pointers: FadtPointers) -> TableSet {
        let mut set = TableSet::default();
        let facs = set.push(bytes_of(&FACS::new()), 64, false);
        let mut dsdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
        dsdt.append_slice(&dsdt_aml(cfg));
        let dsdt = set.push(dsdt.as_slice().to_vec(), 16, true);
        let fadt = set.push(fadt(cfg.pci_hotplug_slots.is_some()), 16, true);
        match fadt_pointers {
            FadtPointers::Wide => {
                set.point(fadt + FADT_X_FIRMWARE_CTRL, 8, facs);
                set.point(fadt + FADT_X_DSDT, 8, dsdt);
            }
            FadtPointers::Firmware => {
                set.point(fadt + FADT_FIRMWARE_CTRL, 4, facs);
                set.point(fadt + FADT_DSDT, 4, dsdt);
                set.point(fadt + FADT_X_DSDT, 8, dsdt);
            }
        }
        let mut entries = vec![fadt, set.push(madt(&cfg.apic_ids), 16, true)];
        if let Some(ecam) = cfg.platform.ecam {
            entries.push(set.push(mcfg(ecam), 16, true));
        }
        if let Some(model) = cfg.tpm {
            use crate::tpm::acpi::{tpm2_table, LASA_OFFSET, LOG_AREA_SIZE};
            // Only firmware can have an event log (a file the table loader allocates).
            let log = fadt_pointers == FadtPointers::Firmware;
            let len = if log { LOG_AREA_SIZE } else { 0 };
            let tpm2 = set.push(
                tpm2_table(model, OEM_ID, OEM_TABLE_ID, OEM_REVISION, len),
                16,
                true,
            );
            entries.push(tpm2);
            set.tpm_log = log.then_some(tpm2 + LASA_OFFSET);
        }
        let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
        for _ in &entries {
            xsdt.add_entry(0);
        }
        set.xsdt = set.push(bytes_of(&xsdt), 16, true);
        for (i, &e) in entries.iter().enumerate() {
            set.point(set.xsdt + HEADER_LEN + 8 * i, 8, e);
        }
        set
    }

    /// Appends `table` at the next `align`-byte boundary; returns its offset.
    fn push(&mut self, mut table: Vec<u8>, align: usize, checksummed: bool) -> usize {
        let offset = self.blob.len().next_multiple_of(align);
        self.blob.resize(offset, 0);
        if checksummed {
            table[HEADER_CHECKSUM] = 0;
        }
        let mut signature = [0u8; 4];
        signature.copy_from_slice(&table[..4]);
        self.tables.push(Table {
            signature,
            offset,
            len: table.len(),
            checksummed,
        });
        self.blob.extend_from_slice(&table);
        offset
    }

    /// Makes the `size`-byte field at `at` point at blob offset `target`.
    fn point(&mut self, at: usize, size: u8, target: usize) {
        let field = &mut self.blob[at..at + usize::from(size)];
        field.copy_from_slice(&(target as u64).to_le_bytes()[..usize::from(size)]);
        self.pointers.push(Pointer { at, size });
    }

    /// The blob as it is at guest address `base`: pointers relocated, checksums set.
    pub fn placed_at(&self, base: u64) -> Vec<u8> {
        let mut blob = self.blob.clone();
        for p in &self.pointers {
            let field = &mut blob[p.at..p.at + usize::from(p.size)];
            let mut v = [0u8; 8];
            v[..field.len()].copy_from_slice(field);
            let moved = u64::from_le_bytes(v) + base;
            field.copy_from_slice(&moved.to_le_bytes()[..usize::from(p.size)]);
        }
        for t in self.tables.iter().filter(|t| t.checksummed) {
            let table = &mut blob[t.offset..t.offset + t.len];
            table[HEADER_CHECKSUM] = checksum(table);
        }
        blob
    }
}

/// The byte that makes `bytes` sum to 0 (mod 256), given it is 0 in `bytes` now.
pub fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// Builds every table and places it for direct kernel boot: the RSDP at
/// [`layout::ACPI_START`], the rest after it.
pub fn build(cfg: &AcpiConfig<'_>) -> Result<AcpiTables, AcpiError> {
    let rsdp_addr = layout::ACPI_START;
    let base = align(rsdp_addr + Rsdp::len() as u64, 64);
    let set = TableSet::build(cfg, FadtPointers::Wide);
    let end = base + set.blob.len() as u64;
    if end > layout::ACPI_END {
        return Err(AcpiError::TooBig(
            end - layout::ACPI_START,
            layout::ACPI_END - layout::ACPI_START,
        ));
    }
    let rsdp = bytes_of(&Rsdp::new(OEM_ID, base + set.xsdt as u64));
    Ok(AcpiTables {
        blobs: vec![(rsdp_addr, rsdp), (base, set.placed_at(base))],
        rsdp: rsdp_addr,
    })
}

/// Builds the tables and writes them into guest memory; returns the RSDP address.
pub fn write(mem: &GuestMemoryMmap, cfg: &AcpiConfig<'_>) -> Result<u64, AcpiError> {
    let t = build(cfg)?;
    for (addr, bytes) in &t.blobs {
        mem.write_slice(bytes, GuestAddress(*addr))
            .map_err(AcpiError::Write)?;
    }
    Ok(t.rsdp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use machine_spec::Chipset;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    fn tables(n: u32) -> AcpiTables {
        tables_with(n, None)
    }

    fn tables_with(n: u32, pci_hotplug_slots: Option<u32>) -> AcpiTables {
        let ram = RamLayout::new(4 << 30);
        build(&AcpiConfig {
            apic_ids: (0..n).collect(),
            serial_ports: vec![0],
            pvpanic: true,
            tpm: None,
            ram: &ram,
            platform: PlatformLayout::of(Chipset::Generic),
            pci_hotplug_slots,
        })
        .unwrap()
    }

    /// Reads tables the way an OS does: from the RSDP through the XSDT.
    fn walk(t: &AcpiTables) -> Vec<(String, Vec<u8>)> {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        for (a, b) in &t.blobs {
            mem.write_slice(b, GuestAddress(*a)).unwrap();
        }
        let read = |addr: u64| {
            let mut hdr = [0u8; 8];
            mem.read_slice(&mut hdr, GuestAddress(addr)).unwrap();
            let len = u32_at(&hdr, 4) as usize;
            let mut v = vec![0u8; len];
            mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
            v
        };
        let mut rsdp = [0u8; 36];
        mem.read_slice(&mut rsdp, GuestAddress(t.rsdp)).unwrap();
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0, "RSDP v1 checksum");
        assert_eq!(sum(&rsdp), 0, "RSDP extended checksum");
        let xsdt = read(u64_at(&rsdp, 24));
        let mut out = vec![("XSDT".to_string(), xsdt.clone())];
        for i in 0..(xsdt.len() - 36) / 8 {
            let tbl = read(u64_at(&xsdt, 36 + i * 8));
            out.push((String::from_utf8_lossy(&tbl[..4]).into(), tbl));
        }
        let fadt = out.iter().find(|(s, _)| s == "FACP").unwrap().1.clone();
        out.push(("DSDT".into(), read(u64_at(&fadt, 140))));
        let mut facs = vec![0u8; 64];
        mem.read_slice(&mut facs, GuestAddress(u64_at(&fadt, 132)))
            .unwrap();
        out.push(("FACS".into(), facs));
        out
    }

    #[test]
    fn every_table_is_reachable_and_checksummed() {
        let all = walk(&tables(2));
        let names: Vec<&str> = all.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(names, ["XSDT", "FACP", "APIC", "MCFG", "DSDT", "FACS"]);
        for (name, t) in &all {
            if name != "FACS" {
                assert_eq!(sum(t), 0, "{name} checksum");
            }
        }
        assert_eq!(&all[5].1[..4], b"FACS");
    }

    #[test]
    fn fadt_describes_pm_blocks_sci_and_reset() {
        let all = walk(&tables(1));
        let f = &all.iter().find(|(s, _)| s == "FACP").unwrap().1;
        assert_eq!(u16::from_le_bytes([f[46], f[47]]), 9, "SCI_INT");
        assert_eq!(u32_at(f, 48), 0, "no SMI_CMD: always ACPI mode");
        assert_eq!(u32_at(f, 56), 0x600, "PM1a_EVT_BLK");
        assert_eq!(u32_at(f, 64), 0x604, "PM1a_CNT_BLK");
        assert_eq!(u32_at(f, 76), 0x608, "PM_TMR_BLK");
        assert_eq!((f[88], f[89], f[91]), (4, 2, 4), "block lengths");
        let flags = u32_at(f, 112);
        assert_eq!(flags & (1 << 4), 0, "power button is a fixed feature");
        assert_ne!(flags & (1 << 10), 0, "reset register supported");
        assert_eq!(flags & (1 << 20), 0, "not hardware-reduced");
        assert_eq!((f[116], u64_at(f, 120), f[128]), (1, 0xcf9, 6), "reset reg");
        assert_eq!(f[108], 0x32, "century");
    }

    #[test]
    fn madt_lists_every_cpu_the_ioapic_and_the_sci_override() {
        let all = walk(&tables(4));
        let m = &all.iter().find(|(s, _)| s == "APIC").unwrap().1;
        assert_eq!(u32_at(m, 36), 0xfee0_0000);
        let mut off = 44;
        let (mut cpus, mut ioapics, mut isos) = (vec![], 0, vec![]);
        while off < m.len() {
            match m[off] {
                0 => cpus.push(m[off + 3]),
                1 => {
                    ioapics += 1;
                    assert_eq!(u32_at(m, off + 4), 0xfec0_0000);
                }
                2 => isos.push((
                    m[off + 3],
                    u32_at(m, off + 4),
                    u16::from_le_bytes([m[off + 8], m[off + 9]]),
                )),
                _ => {}
            }
            off += usize::from(m[off + 1]);
        }
        assert_eq!(cpus, vec![0, 1, 2, 3]);
        assert_eq!(ioapics, 1);
        assert_eq!(isos, vec![(9, 9, 0xd)]);
    }

    #[test]
    fn large_apic_ids_use_x2apic_entries() {
        let m = madt(&[0, 300]);
        assert_eq!(m[44], 0);
        assert_eq!((m[52], m[53]), (9, 16));
        assert_eq!(u32_at(&m, 56), 300);
    }

    #[test]
    fn dsdt_has_s5_pci_host_bridge_and_devices() {
        let all = walk(&tables(2));
        let d = &all.iter().find(|(s, _)| s == "DSDT").unwrap().1;
        let find = |needle: &[u8]| d.windows(needle.len()).position(|w| w == needle);
        // Name(_S5_, Package(4) {5, 5, 0, 0})
        let s5 = find(b"_S5_").unwrap();
        assert_eq!(
            &d[s5 + 4..s5 + 11],
            &[0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05]
        );
        // EISAID("PNP0A08") = 0x080ad041 little-endian.
        assert!(find(&[0x0c, 0x41, 0xd0, 0x0a, 0x08]).is_some(), "PNP0A08");
        assert!(find(b"PCI0").is_some() && find(b"_PRT").is_some());
        // Method(_OSC, 4) { Return (Arg3) }: native PCIe control granted.
        let osc = find(b"_OSC").expect("_OSC");
        assert_eq!(&d[osc + 4..osc + 7], &[0x04, 0xa4, 0x6b]);
        assert!(find(b"C001").is_some() && find(b"ACPI0007").is_some());
        assert!(find(b"COM1").is_some() && find(b"QEMU0001").is_some());
        // EISAID("PNP0B00") = 0x000bd041 little-endian.
        assert!(find(&[0x0c, 0x41, 0xd0, 0x0b, 0x00]).is_some(), "PNP0B00");
    }

    #[test]
    fn acpi_pci_hotplug_has_slot_devices_gpe_handler_and_fadt_gpe0() {
        // Slots 3-31 but 5 (a device that cannot go sits there).
        let slots = !0b111u32 & !(1 << 5);
        let all = walk(&tables_with(1, Some(slots)));
        let d = &all.iter().find(|(s, _)| s == "DSDT").unwrap().1;
        let find = |needle: &[u8]| d.windows(needle.len()).position(|w| w == needle);
        // Device (S18_) { Name (_ADR, 0x00030000) Name (_SUN, 3) Method (_EJ0, 1) … }
        let s18 = find(b"S18_").expect("slot 3's device");
        assert_eq!(&d[s18 - 3..s18 - 1], &[0x5b, 0x82], "DeviceOp");
        let adr = s18 + find_from(d, s18, b"_ADR");
        assert_eq!(&d[adr + 4..adr + 9], &[0x0c, 0, 0, 3, 0]);
        let sun = s18 + find_from(d, s18, b"_SUN");
        assert_eq!(&d[sun + 4..sun + 6], &[0x0a, 3]);
        assert!(find_from(d, s18, b"_EJ0") < find_from(d, s18, b"S20_"));
        assert!(find(b"SF8_").is_some(), "slot 31");
        assert!(find(b"S10_").is_none(), "slot 2 is not offered");
        assert!(find(b"S28_").is_none(), "slot 5 is not offered");
        assert!(find(b"S08_").is_none(), "nor the chipset's slot 1");
        for name in [
            &b"PCIU"[..],
            b"PCID",
            b"B0EJ",
            b"BNUM",
            b"BLCK",
            b"PCEJ",
            b"DVNT",
        ] {
            assert!(find(name).is_some(), "{}", String::from_utf8_lossy(name));
        }
        // OperationRegion (PCST, SystemIO, 0xAE00, 8)
        let pcst = find(b"PCST").unwrap();
        assert_eq!(&d[pcst - 2..pcst], &[0x5b, 0x80]);
        assert_eq!(
            &d[pcst + 4..pcst + 10],
            &[0x01, 0x0b, 0x00, 0xae, 0x0a, 0x08]
        );
        // Method (PCNT, 0) { BNUM = 0; DVNT (PCIU, 1); DVNT (PCID, 3) }
        let pcnt = find(b"PCNT").unwrap();
        assert_eq!(d[pcnt + 4], 0, "no arguments");
        assert_eq!(
            &d[pcnt + 5..pcnt + 11],
            &[0x70, 0x00, b'B', b'N', b'U', b'M']
        );
        assert_eq!(&d[pcnt + 11..pcnt + 20], b"DVNTPCIU\x01");
        assert_eq!(&d[pcnt + 20..pcnt + 30], b"DVNTPCID\x0a\x03");
        // Scope (\_GPE) { Method (_E01) { Acquire; \_SB.PCI0.PCNT (); Release } }
        let gpe = find(b"\\_GPE").expect("\\_GPE scope");
        let e01 = gpe + find_from(d, gpe, b"_E01");
        assert!(find_from(d, e01, b"PCNT") < 40);
        // PNP0A06 claims of 0xae00-0xae17 and 0xafe0-0xafe3.
        assert!(find(&[0x47, 0x01, 0x00, 0xae, 0x00, 0xae, 0x01, 0x18]).is_some());
        assert!(find(&[0x47, 0x01, 0xe0, 0xaf, 0xe0, 0xaf, 0x01, 0x04]).is_some());
        // FADT: GPE0_BLK 0xafe0, 4 bytes; X_GPE0_BLK the same port.
        let f = &all.iter().find(|(s, _)| s == "FACP").unwrap().1;
        assert_eq!(u32_at(f, 80), 0xafe0, "GPE0_BLK");
        assert_eq!(f[92], 4, "GPE0_BLK_LEN");
        assert_eq!(
            (f[220], f[221], u64_at(f, 224)),
            (1, 32, 0xafe0),
            "X_GPE0_BLK"
        );

        // Without hot-plug: none of it.
        let all = walk(&tables(1));
        let d = &all.iter().find(|(s, _)| s == "DSDT").unwrap().1;
        assert!(!d
            .windows(4)
            .any(|w| w == b"_E01" || w == b"PCNT" || w == b"S18_"));
        let f = &all.iter().find(|(s, _)| s == "FACP").unwrap().1;
        assert_eq!((u32_at(f, 80), f[92]), (0, 0));
    }

    /// Offset of `needle` in `d` from `from` on.
    fn find_from(d: &[u8], from: usize, needle: &[u8]) -> usize {
        d[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .unwrap_or(usize::MAX / 2)
    }

    #[test]
    fn mcfg_points_at_the_ecam_window() {
        let all = walk(&tables(1));
        let m = &all.iter().find(|(s, _)| s == "MCFG").unwrap().1;
        assert_eq!(u64_at(m, 44), layout::PCI_ECAM_START);
        assert_eq!((m[54], m[55]), (0, 0xff));
    }

    #[test]
    fn intx_swizzle_stays_on_ioapic_pins_16_to_23() {
        assert_eq!(pci_intx_gsi(0, 0), 16);
        assert_eq!(pci_intx_gsi(3, 1), 20);
        assert_eq!(pci_intx_gsi(31, 3), 18);
    }

    #[test]
    fn many_cpus_still_fit() {
        let t = tables(255);
        let end = t
            .blobs
            .iter()
            .map(|(a, b)| a + b.len() as u64)
            .max()
            .unwrap();
        assert!(end <= layout::ACPI_END);
    }
}
