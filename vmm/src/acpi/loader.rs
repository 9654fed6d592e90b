//! ACPI for firmware: the tables as fw_cfg files plus QEMU's table-loader script.
//!
//! SeaBIOS (`src/fw/romfile_loader.c`) and OVMF (`QemuFwCfgAcpi.c`) run the
//! script in `etc/table-loader`: 128-byte little-endian commands.
//!
//! ```text
//! 1 ALLOCATE      file[56], align u32, zone u8 (1 = high memory, 2 = F-segment)
//! 2 ADD_POINTER   dest_file[56], src_file[56], offset u32, size u8
//!                 (the size-byte field at dest+offset += address of src)
//! 3 ADD_CHECKSUM  file[56], result_offset u32, start u32, length u32
//!                 (the byte at result_offset := -sum(start..start+length))
//! ```
//!
//! Our script allocates `etc/acpi/tables` (64-byte aligned, for the FACS) in high
//! memory and `etc/acpi/rsdp` in the F-segment, then relocates every pointer of
//! [`TableSet`], then fixes every table's checksum (after the pointers it covers),
//! then points the RSDP at the XSDT and fixes its two checksums (the 20-byte
//! ACPI 1.0 one first: the extended one covers it). Checksum bytes start at 0, as
//! QEMU leaves them. OVMF hands each pointed-to table to
//! `EFI_ACPI_TABLE_PROTOCOL` and builds its own RSDT/XSDT, so every table must be
//! whole and well formed on its own.

use acpi_tables::rsdp::Rsdp;

use super::{bytes_of, AcpiConfig, FadtPointers, TableSet, OEM_ID};

/// Every table but the RSDP.
pub const TABLES_FILE: &str = "etc/acpi/tables";
/// The RSDP.
pub const RSDP_FILE: &str = "etc/acpi/rsdp";
/// The script.
pub const LOADER_FILE: &str = "etc/table-loader";
/// The TPM's firmware event log (zeroed; the TPM2 table's LASA points at it).
pub const TPM_LOG_FILE: &str = "etc/tpm/log";

/// Size of one command.
pub const COMMAND_LEN: usize = 128;
/// Size of a file name field, NUL included.
pub const FILE_NAME_LEN: usize = 56;
/// Command: allocate and fill a file.
pub const CMD_ALLOCATE: u32 = 1;
/// Command: add a file's address to a pointer field.
pub const CMD_ADD_POINTER: u32 = 2;
/// Command: compute a checksum.
pub const CMD_ADD_CHECKSUM: u32 = 3;
/// ALLOCATE zone: anywhere (SeaBIOS: high memory).
pub const ZONE_HIGH: u8 = 1;
/// ALLOCATE zone: the F-segment (0xf0000-0xfffff), where the RSDP is looked for.
pub const ZONE_FSEG: u8 = 2;

/// RSDP field offsets.
const RSDP_CHECKSUM: u32 = 8;
const RSDP_V1_LEN: u32 = 20;
const RSDP_XSDT: u32 = 24;
const RSDP_EXT_CHECKSUM: u32 = 32;

/// The three fw_cfg files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoaderFiles {
    /// `etc/acpi/tables`.
    pub tables: Vec<u8>,
    /// `etc/acpi/rsdp`.
    pub rsdp: Vec<u8>,
    /// `etc/table-loader`.
    pub loader: Vec<u8>,
    /// `etc/tpm/log`, with a TPM.
    pub tpm_log: Option<Vec<u8>>,
}

impl LoaderFiles {
    /// `(name, contents)` of each file, ready for `FwCfg::add_file`.
    pub fn into_files(self) -> Vec<(&'static str, Vec<u8>)> {
        let mut files = vec![
            (TABLES_FILE, self.tables),
            (RSDP_FILE, self.rsdp),
            (LOADER_FILE, self.loader),
        ];
        files.extend(self.tpm_log.map(|log| (TPM_LOG_FILE, log)));
        files
    }
}

/// One command, zero padded to [`COMMAND_LEN`].
struct Command(Vec<u8>);

impl Command {
    fn new(command: u32) -> Self {
        let mut v = Vec::with_capacity(COMMAND_LEN);
        v.extend_from_slice(&command.to_le_bytes());
        Command(v)
    }

    fn file(mut self, name: &str) -> Self {
        let mut f = [0u8; FILE_NAME_LEN];
        // Our names are constants well below 56 bytes.
        f[..name.len()].copy_from_slice(name.as_bytes());
        self.0.extend_from_slice(&f);
        self
    }

    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }

    fn finish(mut self, script: &mut Vec<u8>) {
        self.0.resize(COMMAND_LEN, 0);
        script.extend_from_slice(&self.0);
    }
}

fn allocate(script: &mut Vec<u8>, file: &str, align: u32, zone: u8) {
    Command::new(CMD_ALLOCATE)
        .file(file)
        .u32(align)
        .u8(zone)
        .finish(script);
}

fn add_pointer(script: &mut Vec<u8>, dest: &str, src: &str, offset: u32, size: u8) {
    Command::new(CMD_ADD_POINTER)
        .file(dest)
        .file(src)
        .u32(offset)
        .u8(size)
        .finish(script);
}

fn add_checksum(script: &mut Vec<u8>, file: &str, result: u32, start: u32, len: u32) {
    Command::new(CMD_ADD_CHECKSUM)
        .file(file)
        .u32(result)
        .u32(start)
        .u32(len)
        .finish(script);
}

/// Builds the tables and the script that places them.
pub fn build(cfg: &AcpiConfig<'_>) -> LoaderFiles {
    let set = TableSet::build(cfg, FadtPointers::Firmware);
    // Offsets and lengths are bounded by the blob, far below 4 GiB.
    let off = |x: usize| x as u32;

    let mut rsdp = bytes_of(&Rsdp::new(OEM_ID, set.xsdt as u64));
    rsdp[RSDP_CHECKSUM as usize] = 0;
    rsdp[RSDP_EXT_CHECKSUM as usize] = 0;

    let mut script = Vec::new();
    allocate(&mut script, TABLES_FILE, 64, ZONE_HIGH);
    allocate(&mut script, RSDP_FILE, 16, ZONE_FSEG);
    if set.tpm_log.is_some() {
        // As QEMU: byte-aligned, in high memory.
        allocate(&mut script, TPM_LOG_FILE, 1, ZONE_HIGH);
    }
    for p in &set.pointers {
        add_pointer(&mut script, TABLES_FILE, TABLES_FILE, off(p.at), p.size);
    }
    if let Some(lasa) = set.tpm_log {
        add_pointer(&mut script, TABLES_FILE, TPM_LOG_FILE, off(lasa), 8);
    }
    for t in set.tables.iter().filter(|t| t.checksummed) {
        let result = off(t.offset + super::HEADER_CHECKSUM);
        add_checksum(&mut script, TABLES_FILE, result, off(t.offset), off(t.len));
    }
    add_pointer(&mut script, RSDP_FILE, TABLES_FILE, RSDP_XSDT, 8);
    add_checksum(&mut script, RSDP_FILE, RSDP_CHECKSUM, 0, RSDP_V1_LEN);
    add_checksum(
        &mut script,
        RSDP_FILE,
        RSDP_EXT_CHECKSUM,
        0,
        off(rsdp.len()),
    );

    let tpm_log = set
        .tpm_log
        .map(|_| vec![0u8; crate::tpm::acpi::LOG_AREA_SIZE as usize]);
    LoaderFiles {
        tables: set.blob,
        rsdp,
        loader: script,
        tpm_log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{PlatformLayout, RamLayout, PCI_ECAM_START, Q35_ECAM_START};
    use machine_spec::Chipset;
    use std::collections::BTreeMap;

    /// A table-loader interpreter, as strict as SeaBIOS and OVMF together: files
    /// are allocated at made-up addresses in a flat fake memory.
    struct Loaded {
        /// name → (address, bytes)
        files: BTreeMap<String, (u64, Vec<u8>)>,
        /// Allocation zone of each file.
        zones: BTreeMap<String, u8>,
    }

    fn name(b: &[u8]) -> String {
        let end = b.iter().position(|&c| c == 0).expect("NUL-terminated name");
        String::from_utf8(b[..end].to_vec()).unwrap()
    }

    fn le(b: &[u8]) -> u64 {
        let mut v = [0u8; 8];
        v[..b.len()].copy_from_slice(b);
        u64::from_le_bytes(v)
    }

    fn run(files: &LoaderFiles) -> Loaded {
        let mut source: BTreeMap<&str, &Vec<u8>> = [
            (TABLES_FILE, &files.tables),
            (RSDP_FILE, &files.rsdp),
            (LOADER_FILE, &files.loader),
        ]
        .into_iter()
        .collect();
        if let Some(log) = &files.tpm_log {
            source.insert(TPM_LOG_FILE, log);
        }
        let mut l = Loaded {
            files: BTreeMap::new(),
            zones: BTreeMap::new(),
        };
        let (mut high, mut fseg) = (0x7ff0_0000u64, 0xf_0000u64);
        assert_eq!(files.loader.len() % COMMAND_LEN, 0);
        for cmd in files.loader.chunks(COMMAND_LEN) {
            let u32_at = |o: usize| le(&cmd[o..o + 4]);
            match u32_at(0) as u32 {
                CMD_ALLOCATE => {
                    let file = name(&cmd[4..60]);
                    let align = u32_at(60);
                    assert!(align.is_power_of_two());
                    let zone = cmd[64];
                    let next = match zone {
                        ZONE_HIGH => &mut high,
                        ZONE_FSEG => &mut fseg,
                        z => panic!("zone {z}"),
                    };
                    // An odd start, so that only the requested alignment holds.
                    let at = (*next + 8).next_multiple_of(align);
                    let data = source[file.as_str()].clone();
                    *next = at + data.len() as u64;
                    assert!(l.files.insert(file.clone(), (at, data)).is_none());
                    l.zones.insert(file, zone);
                }
                CMD_ADD_POINTER => {
                    let dest = name(&cmd[4..60]);
                    let src = name(&cmd[60..116]);
                    let offset = u32_at(116) as usize;
                    let size = usize::from(cmd[120]);
                    assert!(matches!(size, 1 | 2 | 4 | 8));
                    let src_addr = l.files[&src].0;
                    let src_len = l.files[&src].1.len() as u64;
                    let d = &mut l.files.get_mut(&dest).expect("dest allocated").1;
                    let field = &mut d[offset..offset + size];
                    // OVMF: the pointer must stay inside the source file.
                    assert!(le(field) < src_len, "pointer out of {src}");
                    let v = le(field) + src_addr;
                    field.copy_from_slice(&v.to_le_bytes()[..size]);
                }
                CMD_ADD_CHECKSUM => {
                    let file = name(&cmd[4..60]);
                    let result = u32_at(60) as usize;
                    let start = u32_at(64) as usize;
                    let len = u32_at(68) as usize;
                    let d = &mut l.files.get_mut(&file).expect("allocated").1;
                    assert!(result >= start && result < start + len);
                    // SeaBIOS subtracts, OVMF overwrites: the same only from 0.
                    assert_eq!(d[result], 0, "checksum byte starts at 0");
                    d[result] = super::super::checksum(&d[start..start + len]);
                }
                c => panic!("unexpected command {c}"),
            }
        }
        l
    }

    impl Loaded {
        /// The bytes at `addr`, which must lie in one file.
        fn at(&self, addr: u64, len: usize) -> &[u8] {
            for (a, d) in self.files.values() {
                if addr >= *a && addr + len as u64 <= a + d.len() as u64 {
                    let o = (addr - a) as usize;
                    return &d[o..o + len];
                }
            }
            panic!("{addr:#x}+{len} is in no allocated file")
        }

        fn table(&self, addr: u64) -> &[u8] {
            let len = le(&self.at(addr + 4, 4)[..4]) as usize;
            self.at(addr, len)
        }

        /// The RSDP, checked the way SeaBIOS finds it.
        fn rsdp(&self) -> &[u8] {
            let (addr, d) = &self.files[RSDP_FILE];
            assert_eq!(self.zones[RSDP_FILE], ZONE_FSEG);
            assert_eq!(addr % 16, 0);
            assert_eq!(&d[..8], b"RSD PTR ");
            assert_eq!(sum(&d[..20]), 0, "RSDP 1.0 checksum");
            assert_eq!(sum(d), 0, "RSDP extended checksum");
            d
        }

        /// Signature → address of every XSDT entry.
        fn xsdt_tables(&self) -> Vec<(String, u64)> {
            let xsdt = self.table(le(&self.rsdp()[24..32]));
            assert_eq!(&xsdt[..4], b"XSDT");
            assert_eq!(sum(xsdt), 0, "XSDT checksum");
            xsdt[36..]
                .chunks(8)
                .map(|e| {
                    let addr = le(e);
                    let t = self.table(addr);
                    assert_eq!(sum(t), 0, "checksum of the table at {addr:#x}");
                    (String::from_utf8_lossy(&t[..4]).into_owned(), addr)
                })
                .collect()
        }

        fn find(&self, sig: &str) -> Option<&[u8]> {
            let (_, addr) = self.xsdt_tables().into_iter().find(|(s, _)| s == sig)?;
            Some(self.table(addr))
        }
    }

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn files_for(chipset: Chipset, ram_size: u64, cpus: u32) -> LoaderFiles {
        let platform = PlatformLayout::of(chipset);
        let ram = RamLayout::for_platform(ram_size, &platform);
        build(&AcpiConfig {
            apic_ids: (0..cpus).collect(),
            serial_ports: vec![0],
            pvpanic: false,
            tpm: None,
            ram: &ram,
            platform,
            pci_hotplug_slots: None,
        })
    }

    fn q35() -> Loaded {
        run(&files_for(Chipset::Q35, 1 << 30, 2))
    }

    #[test]
    fn rsdp_leads_to_fadt_madt_and_mcfg_with_valid_checksums() {
        let l = q35();
        let sigs: Vec<String> = l.xsdt_tables().into_iter().map(|(s, _)| s).collect();
        assert_eq!(sigs, ["FACP", "APIC", "MCFG"]);
        assert_eq!(l.rsdp()[15], 2, "ACPI 2.0+ RSDP");
        assert_eq!(le(&l.rsdp()[16..20]), 0, "no RSDT");
        assert_eq!(l.zones[TABLES_FILE], ZONE_HIGH);
    }

    #[test]
    fn fadt_points_at_dsdt_through_both_fields_and_at_an_aligned_facs() {
        let l = q35();
        let f = l.find("FACP").unwrap();
        let dsdt32 = le(&f[40..44]);
        assert_eq!(le(&f[140..148]), dsdt32, "X_DSDT = DSDT");
        let dsdt = l.table(dsdt32);
        assert_eq!(&dsdt[..4], b"DSDT");
        assert_eq!(sum(dsdt), 0, "DSDT checksum");
        let facs_addr = le(&f[36..40]);
        assert_eq!(
            le(&f[132..140]),
            0,
            "X_FIRMWARE_CTRL 0 when FIRMWARE_CTRL is set"
        );
        assert_eq!(facs_addr % 64, 0, "FACS 64-byte aligned");
        let facs = l.at(facs_addr, 64);
        assert_eq!(&facs[..4], b"FACS");
        assert_eq!(le(&facs[4..8]), 64);
    }

    #[test]
    fn mcfg_has_the_platform_ecam_base() {
        let l = q35();
        let m = l.find("MCFG").unwrap();
        assert_eq!(le(&m[44..52]), Q35_ECAM_START);
        assert_eq!((m[54], m[55]), (0, 0xff));
        let g = run(&files_for(Chipset::Generic, 1 << 30, 1));
        assert_eq!(le(&g.find("MCFG").unwrap()[44..52]), PCI_ECAM_START);
    }

    #[test]
    fn i440fx_has_no_mcfg_and_a_plain_pci_bridge() {
        let l = run(&files_for(Chipset::I440fx, 1 << 30, 1));
        let sigs: Vec<String> = l.xsdt_tables().into_iter().map(|(s, _)| s).collect();
        assert_eq!(sigs, ["FACP", "APIC"]);
        let f = l.find("FACP").unwrap();
        let d = l.table(le(&f[40..44]));
        let has = |n: &[u8]| d.windows(n.len()).any(|w| w == n);
        assert!(!has(b"MRES"), "no ECAM to reserve");
        // EISAID("PNP0A03") and not PNP0A08.
        assert!(has(&[0x0c, 0x41, 0xd0, 0x0a, 0x03]));
        assert!(!has(&[0x0c, 0x41, 0xd0, 0x0a, 0x08]));
    }

    #[test]
    fn q35_dsdt_has_s5_zero_the_firmware_window_and_the_ecam_reservation() {
        let l = q35();
        let f = l.find("FACP").unwrap();
        let d = l.table(le(&f[40..44]));
        let find = |n: &[u8]| d.windows(n.len()).position(|w| w == n);
        // Name(_S5_, Package(4) {0, 0, 0, 0}): ZeroOp for each 0.
        let s5 = find(b"_S5_").unwrap();
        assert_eq!(&d[s5 + 4..s5 + 10], &[0x12, 0x06, 0x04, 0x00, 0x00, 0x00]);
        // DWordMemory: minimum 0xc0000000, maximum 0xfebfffff.
        let window = [0x00, 0x00, 0x00, 0xc0, 0xff, 0xff, 0xbf, 0xfe];
        assert!(find(&window).is_some(), "32-bit window in _CRS");
        // Memory32Fixed(ReadOnly, 0xb0000000, 0x10000000) in MRES.
        let mres = [
            0x86, 0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb0, 0x00, 0x00, 0x00, 0x10,
        ];
        assert!(find(&mres).is_some(), "ECAM reserved");
    }

    #[test]
    fn script_order_is_allocations_pointers_checksums_then_the_rsdp() {
        let f = files_for(Chipset::Q35, 1 << 30, 1);
        let cmds: Vec<(u32, String)> = f
            .loader
            .chunks(COMMAND_LEN)
            .map(|c| (le(&c[..4]) as u32, name(&c[4..60])))
            .collect();
        let kinds: Vec<u32> = cmds.iter().map(|c| c.0).collect();
        // 2 allocations; FADT 3 + XSDT 3 pointers; 5 checksums; RSDP 1 + 2.
        assert_eq!(kinds[..2], [CMD_ALLOCATE, CMD_ALLOCATE]);
        assert!(kinds[2..8].iter().all(|&k| k == CMD_ADD_POINTER));
        assert!(kinds[8..13].iter().all(|&k| k == CMD_ADD_CHECKSUM));
        assert_eq!(
            kinds[13..],
            [CMD_ADD_POINTER, CMD_ADD_CHECKSUM, CMD_ADD_CHECKSUM]
        );
        assert_eq!(cmds[13].1, RSDP_FILE);
        assert_eq!(f.loader.len(), 16 * COMMAND_LEN);
    }

    #[test]
    fn same_tables_as_the_direct_placement_but_for_the_fadt_pointers() {
        let platform = PlatformLayout::of(Chipset::Generic);
        let ram = RamLayout::new(1 << 30);
        let cfg = AcpiConfig {
            apic_ids: vec![0, 1],
            serial_ports: vec![0],
            pvpanic: true,
            tpm: Some(machine_spec::TpmModel::Crb),
            ram: &ram,
            platform,
            pci_hotplug_slots: None,
        };
        let direct = super::super::build(&cfg).unwrap();
        let (base, blob) = &direct.blobs[1];
        let l = run(&build(&cfg));
        let (tables_at, _) = l.files[TABLES_FILE];
        // Relocated to the loader's address, the direct blob differs only in the FADT
        // pointer fields and checksum, and the TPM2 table's log area and checksum.
        let set = TableSet::build(&cfg, FadtPointers::Wide);
        let moved = set.placed_at(tables_at);
        let loaded = &l.files[TABLES_FILE].1;
        assert_eq!(moved.len(), loaded.len());
        assert_eq!(set.placed_at(*base), *blob);
        let at = |sig: &[u8; 4]| {
            set.tables
                .iter()
                .find(|t| &t.signature == sig)
                .unwrap()
                .offset
        };
        let (fadt, tpm2) = (at(b"FACP"), at(b"TPM2"));
        let differ: Vec<usize> = (0..moved.len())
            .filter(|&i| moved[i] != loaded[i])
            .collect();
        assert!(
            differ.iter().all(|&i| {
                let f = i as i64 - fadt as i64;
                let t = i as i64 - tpm2 as i64;
                f == 9
                    || (36..44).contains(&f)
                    || (132..140).contains(&f)
                    || t == 9
                    || (64..76).contains(&t)
            }),
            "{differ:?}"
        );
    }

    #[test]
    fn tpm2_log_area_is_the_allocated_etc_tpm_log() {
        let ram = RamLayout::new(1 << 30);
        let cfg = AcpiConfig {
            apic_ids: vec![0],
            serial_ports: vec![],
            pvpanic: false,
            tpm: Some(machine_spec::TpmModel::Crb),
            ram: &ram,
            platform: PlatformLayout::of(Chipset::Q35),
            pci_hotplug_slots: None,
        };
        let l = run(&build(&cfg));
        let tpm2 = l.find("TPM2").expect("a TPM2 table in the XSDT");
        assert_eq!(le(&tpm2[64..68]), 0x10000, "LAML");
        let (log_at, log) = &l.files[TPM_LOG_FILE];
        assert_eq!(le(&tpm2[68..76]), *log_at, "LASA");
        assert_eq!(log.len(), 0x10000);
        assert_eq!(l.zones[TPM_LOG_FILE], ZONE_HIGH);
    }
}
