//! SMBIOS tables for firmware boot, as QEMU hands them to SeaBIOS and OVMF.
//!
//! The VMM builds two fw_cfg files and the firmware does the rest: it copies the
//! structures into guest memory (SeaBIOS into the F-segment, OVMF into an EFI
//! configuration table), writes their address into the entry point and fixes its
//! checksum.
//!
//! * [`ANCHOR_FILE`] — the SMBIOS 3.0 entry point (DMTF DSP0134 §5.2.2), 24 bytes:
//!
//!   ```text
//!   0x00 "_SM3_"   0x05 checksum   0x06 length 0x18   0x07 major 3   0x08 minor 0
//!   0x09 docrev 0  0x0a revision 1  0x0b reserved   0x0c table max size (u32)
//!   0x10 table address (u64): 0 here, the firmware fills it in
//!   ```
//! * [`TABLES_FILE`] — the structures back to back, each a formatted area (type,
//!   length, handle, fields) followed by its string set (NUL-terminated strings, an
//!   extra NUL; two NULs when there are none), ending with type 127.
//!
//! Which structures, following QEMU's choices (`hw/smbios/smbios.c`), with oxvirt's
//! strings where QEMU says "QEMU":
//!
//! | type | what | when |
//! |---|---|---|
//! | 0 BIOS | vendor, version, date, release | only when `<sysinfo><bios>` gives entries: otherwise SeaBIOS and OVMF add their own, which name the real firmware |
//! | 1 system | manufacturer, product, version, serial, UUID, SKU, family | always; the UUID is the domain's |
//! | 2 baseboard | manufacturer, product, version, serial, asset, location | only when given |
//! | 3 chassis | manufacturer, version, serial, asset, SKU | always |
//! | 4 processor | one per vCPU (libvirt's default topology: one socket each) | always |
//! | 16, 17, 19 | memory array, 16 GiB "DIMMs" (as QEMU), one mapped range per RAM range | always |
//! | 32 | system boot information: no errors | always |
//! | 127 | end of table | always |
//!
//! Handles follow QEMU's numbering (type N at 0x100 × N, several of one type count
//! up from there), so two tools comparing against QEMU see the same handles.

use machine_spec::Smbios;

/// fw_cfg file holding the entry point.
pub const ANCHOR_FILE: &str = "etc/smbios/smbios-anchor";
/// fw_cfg file holding the structure table.
pub const TABLES_FILE: &str = "etc/smbios/smbios-tables";
/// Length of the SMBIOS 3.0 entry point.
pub const ANCHOR_LEN: usize = 24;

/// What the default strings say.
const DEFAULT_MANUFACTURER: &str = "oxvirt";
const DEFAULT_PRODUCT: &str = "oxvirt virtual machine";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// QEMU's DIMM size limit: memory is described as devices of at most 16 GiB.
const MAX_DIMM: u64 = 16 << 30;

const T0: u16 = 0x000;
const T1: u16 = 0x100;
const T2: u16 = 0x200;
const T3: u16 = 0x300;
const T4: u16 = 0x400;
const T16: u16 = 0x1000;
const T17: u16 = 0x1100;
const T19: u16 = 0x1300;
const T32: u16 = 0x2000;
const T127: u16 = 0x7f00;

/// Errors of building the tables; each names the input that was wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SmbiosError {
    /// The domain UUID is not 32 hex digits (with or without dashes).
    #[error("invalid domain UUID '{0}' for SMBIOS")]
    BadUuid(String),
    /// `<sysinfo><bios><entry name='release'>` is not `major.minor` (two numbers below 256).
    #[error("invalid SMBIOS BIOS release '{0}': expected 'major.minor'")]
    BadRelease(String),
    /// A string holds a NUL byte, which would cut the string set short.
    #[error("SMBIOS {section} entry '{name}' contains a NUL character")]
    NulInString { section: &'static str, name: String },
    /// More vCPUs, DIMMs or RAM ranges than the handle ranges hold.
    #[error("too many SMBIOS {0} structures")]
    TooMany(&'static str),
    /// An entry name this section does not have.
    #[error("unknown SMBIOS {section} entry '{name}'")]
    UnknownEntry { section: &'static str, name: String },
    /// `<sysinfo><system><entry name='uuid'>` differs from the domain's UUID (libvirt
    /// refuses this too).
    #[error("UUID mismatch between <uuid> and <sysinfo>: '{given}' is not '{domain}'")]
    UuidMismatch { given: String, domain: String },
}

/// Builds the SMBIOS entry point and structure table.
///
/// # Arguments
/// * `uuid` — the domain UUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`); type 1 carries it
///   in SMBIOS byte order (the first three fields little-endian), so the guest's
///   `/sys/class/dmi/id/product_uuid` prints it as the domain has it.
/// * `ram` — guest RAM as `(guest physical address, size)` ranges, as the machine maps
///   them (below and above the PCI hole); one type 19 each.
/// * `cpus` — vCPUs; one type 4 each.
/// * `s` — `<sysinfo type='smbios'>` strings; absent entries get oxvirt's defaults.
///
/// Returns `(anchor, tables)`: the contents of [`ANCHOR_FILE`] and [`TABLES_FILE`].
pub fn tables(
    uuid: &str,
    ram: &[(u64, u64)],
    cpus: u32,
    s: Option<&Smbios>,
) -> Result<(Vec<u8>, Vec<u8>), SmbiosError> {
    let empty = Smbios::default();
    let s = s.unwrap_or(&empty);
    let uuid_bytes = parse_uuid(uuid).ok_or_else(|| SmbiosError::BadUuid(uuid.to_owned()))?;
    let bios = Section::new("bios", &s.bios, &["vendor", "version", "date", "release"])?;
    let system = Section::new(
        "system",
        &s.system,
        &[
            "manufacturer",
            "product",
            "version",
            "serial",
            "uuid",
            "sku",
            "family",
        ],
    )?;
    let baseboard = Section::new(
        "baseboard",
        &s.baseboard,
        &[
            "manufacturer",
            "product",
            "version",
            "serial",
            "asset",
            "location",
        ],
    )?;
    let chassis = Section::new(
        "chassis",
        &s.chassis,
        &["manufacturer", "version", "serial", "asset", "sku"],
    )?;
    if let Some(given) = system.get("uuid") {
        if parse_uuid(given) != Some(uuid_bytes) {
            return Err(SmbiosError::UuidMismatch {
                given: given.to_owned(),
                domain: uuid.to_owned(),
            });
        }
    }

    let mem_total: u64 = ram.iter().map(|&(_, size)| size).sum();
    let dimms = mem_total.div_ceil(MAX_DIMM);
    if cpus > u32::from(T16 - T4) {
        return Err(SmbiosError::TooMany("processor"));
    }
    if dimms > u64::from(T19 - T17) {
        return Err(SmbiosError::TooMany("memory device"));
    }
    if ram.len() > usize::from(T32 - T19) {
        return Err(SmbiosError::TooMany("memory array mapped address"));
    }

    let mut out = Vec::new();
    if !bios.is_empty() {
        type0(&mut out, &bios)?;
    }
    type1(&mut out, &system, uuid_bytes);
    if !baseboard.is_empty() {
        type2(&mut out, &baseboard);
    }
    type3(&mut out, &chassis);
    for i in 0..cpus {
        type4(&mut out, i as u16);
    }
    type16(&mut out, mem_total, dimms as u16);
    let mut left = mem_total;
    for i in 0..dimms as u16 {
        let size = left.min(MAX_DIMM);
        left -= size;
        type17(&mut out, i, size);
    }
    for (i, &(start, size)) in ram.iter().filter(|r| r.1 > 0).enumerate() {
        type19(&mut out, i as u16, start, size);
    }
    type32(&mut out);
    Structure::new(127, T127).finish(&mut out);

    Ok((anchor(out.len() as u32), out))
}

/// The SMBIOS 3.0 entry point for a table of `table_len` bytes, address 0.
fn anchor(table_len: u32) -> Vec<u8> {
    let mut a = Vec::with_capacity(ANCHOR_LEN);
    a.extend_from_slice(b"_SM3_");
    a.push(0); // checksum, below
    a.push(ANCHOR_LEN as u8);
    a.extend_from_slice(&[3, 0, 0]); // SMBIOS 3.0, docrev 0
    a.push(1); // entry point revision: 3.0 format
    a.push(0);
    a.extend_from_slice(&table_len.to_le_bytes());
    a.extend_from_slice(&0u64.to_le_bytes());
    a[5] = checksum(&a);
    a
}

/// The byte that makes `bytes` sum to 0 modulo 256.
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)))
}

/// The 16 UUID bytes in SMBIOS order (DSP0134 §7.2.1): time_low, time_mid and
/// time_hi_and_version little-endian, the rest as written.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 || s.len() - hex.len() > 4 {
        return None;
    }
    let mut b = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digits = std::str::from_utf8(pair).ok()?;
        b[i] = u8::from_str_radix(digits, 16).ok()?;
    }
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    Some(b)
}

/// One `<sysinfo>` section, checked against the entry names it may have.
struct Section<'a> {
    entries: &'a [(String, String)],
}

impl<'a> Section<'a> {
    fn new(
        section: &'static str,
        entries: &'a [(String, String)],
        known: &[&str],
    ) -> Result<Self, SmbiosError> {
        for (name, value) in entries {
            if !known.contains(&name.as_str()) {
                return Err(SmbiosError::UnknownEntry {
                    section,
                    name: name.clone(),
                });
            }
            if value.contains('\0') {
                return Err(SmbiosError::NulInString {
                    section,
                    name: name.clone(),
                });
            }
        }
        Ok(Section { entries })
    }

    fn is_empty(&self) -> bool {
        self.entries.iter().all(|(_, v)| v.is_empty())
    }

    /// The last non-empty value of `name` (later entries override earlier ones).
    fn get(&self, name: &str) -> Option<&'a str> {
        self.entries
            .iter()
            .rev()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// A structure being built: the formatted area, then the strings it refers to.
struct Structure {
    area: Vec<u8>,
    strings: Vec<u8>,
    count: u8,
}

impl Structure {
    fn new(kind: u8, handle: u16) -> Self {
        let mut area = vec![kind, 0];
        area.extend_from_slice(&handle.to_le_bytes());
        Structure {
            area,
            strings: Vec::new(),
            count: 0,
        }
    }

    fn u8(&mut self, v: u8) -> &mut Self {
        self.area.push(v);
        self
    }

    fn u16(&mut self, v: u16) -> &mut Self {
        self.area.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.area.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.area.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.area.extend_from_slice(v);
        self
    }

    /// A string field: its 1-based number in the set, or 0 for "none".
    fn string(&mut self, v: Option<&str>) -> &mut Self {
        match v.filter(|v| !v.is_empty()) {
            Some(v) => {
                self.count += 1;
                self.strings.extend_from_slice(v.as_bytes());
                self.strings.push(0);
                let n = self.count;
                self.u8(n)
            }
            None => self.u8(0),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.area[1] = self.area.len() as u8;
        out.extend_from_slice(&self.area);
        if self.strings.is_empty() {
            out.extend_from_slice(&[0, 0]);
        } else {
            out.extend_from_slice(&self.strings);
            out.push(0);
        }
    }
}

/// Type 0, BIOS information (SMBIOS 2.4+ layout, 24 bytes).
fn type0(out: &mut Vec<u8>, bios: &Section<'_>) -> Result<(), SmbiosError> {
    let (major, minor) = match bios.get("release") {
        Some(r) => {
            let parsed = r
                .split_once('.')
                .and_then(|(a, b)| Some((a.parse::<u8>().ok()?, b.parse::<u8>().ok()?)));
            parsed.ok_or_else(|| SmbiosError::BadRelease(r.to_owned()))?
        }
        None => (0xff, 0xff), // "not supported"
    };
    Structure::new(0, T0)
        .string(bios.get("vendor"))
        .string(bios.get("version"))
        .u16(0xe800) // starting segment
        .string(bios.get("date"))
        .u8(0) // ROM size: 64 KiB
        .u64(0x08) // characteristics: not supported
        .bytes(&[0x00, 0x14]) // ext. 2: targeted content distribution, virtual machine
        .bytes(&[major, minor])
        .bytes(&[0xff, 0xff]) // no embedded controller
        .finish(out);
    Ok(())
}

/// Type 1, system information (2.4+ layout, 27 bytes).
fn type1(out: &mut Vec<u8>, sys: &Section<'_>, uuid: [u8; 16]) {
    Structure::new(1, T1)
        .string(Some(
            sys.get("manufacturer").unwrap_or(DEFAULT_MANUFACTURER),
        ))
        .string(Some(sys.get("product").unwrap_or(DEFAULT_PRODUCT)))
        .string(Some(sys.get("version").unwrap_or(VERSION)))
        .string(sys.get("serial"))
        .bytes(&uuid)
        .u8(0x06) // wake-up type: power switch
        .string(sys.get("sku"))
        .string(sys.get("family"))
        .finish(out);
}

/// Type 2, baseboard information (15 bytes).
fn type2(out: &mut Vec<u8>, board: &Section<'_>) {
    Structure::new(2, T2)
        .string(board.get("manufacturer"))
        .string(board.get("product"))
        .string(board.get("version"))
        .string(board.get("serial"))
        .string(board.get("asset"))
        .u8(0x01) // feature flags: hosting board
        .string(board.get("location"))
        .u16(T3) // chassis
        .u8(0x0a) // motherboard
        .u8(0) // no contained objects
        .finish(out);
}

/// Type 3, system enclosure (2.7+ layout, 22 bytes).
fn type3(out: &mut Vec<u8>, chassis: &Section<'_>) {
    Structure::new(3, T3)
        .string(Some(
            chassis.get("manufacturer").unwrap_or(DEFAULT_MANUFACTURER),
        ))
        .u8(0x01) // type: other
        .string(chassis.get("version"))
        .string(chassis.get("serial"))
        .string(chassis.get("asset"))
        .bytes(&[0x03, 0x03, 0x03]) // boot-up, power supply, thermal state: safe
        .u8(0x02) // security status: unknown
        .u32(0) // OEM-defined
        .bytes(&[0, 0, 0, 0]) // height, power cords, contained elements (count, length)
        .string(chassis.get("sku"))
        .finish(out);
}

/// Type 4, processor information (3.0 layout, 48 bytes): vCPU `i` as a socket with
/// one core and one thread.
fn type4(out: &mut Vec<u8>, i: u16) {
    let socket = format!("CPU {i}");
    Structure::new(4, T4 + i)
        .string(Some(&socket))
        .u8(0x03) // central processor
        .u8(0x01) // family: other
        .string(Some(DEFAULT_MANUFACTURER))
        .u64(0) // processor ID (CPUID 1): not given
        .string(None) // version
        .u8(0) // voltage: unknown
        .u16(0) // external clock: unknown
        .u16(2000) // max speed, MHz (QEMU's figure)
        .u16(2000) // current speed
        .u8(0x41) // socket populated, CPU enabled
        .u8(0x01) // upgrade: other
        .bytes(&[0xff; 6]) // no L1/L2/L3 cache structures
        .string(None) // serial
        .string(None) // asset tag
        .string(None) // part number
        .bytes(&[1, 1, 1]) // cores, enabled cores, threads
        .u16(0x02) // characteristics: unknown
        .u16(0x01) // family 2: other
        .u16(1) // core count 2
        .u16(1) // core enabled 2
        .u16(1) // thread count 2
        .finish(out);
}

/// Type 16, physical memory array (2.7+ layout, 23 bytes).
fn type16(out: &mut Vec<u8>, mem: u64, dimms: u16) {
    let kib = mem.div_ceil(1024);
    let (max, ext) = if kib < 0x8000_0000 {
        (kib as u32, 0)
    } else {
        (0x8000_0000, mem)
    };
    Structure::new(16, T16)
        .u8(0x01) // location: other
        .u8(0x03) // use: system memory
        .u8(0x06) // error correction: multi-bit ECC (as QEMU)
        .u32(max)
        .u16(0xfffe) // no error information structure
        .u16(dimms)
        .u64(ext)
        .finish(out);
}

/// Type 17, memory device (2.8+ layout, 40 bytes): DIMM `i` of `size` bytes.
fn type17(out: &mut Vec<u8>, i: u16, size: u64) {
    let mib = size.div_ceil(1 << 20);
    // Sizes from 32 GiB - 1 MiB up go in the extended field; DIMMs are at most 16 GiB.
    let (size_field, ext) = if mib < 0x7fff {
        (mib as u16, 0)
    } else {
        (0x7fff, mib as u32)
    };
    let locator = format!("DIMM {i}");
    Structure::new(17, T17 + i)
        .u16(T16)
        .u16(0xfffe) // no error information structure
        .u16(0xffff) // total width: unknown
        .u16(0xffff) // data width: unknown
        .u16(size_field)
        .u8(0x09) // form factor: DIMM
        .u8(0) // not in a set
        .string(Some(&locator))
        .string(None) // bank locator
        .u8(0x07) // type: RAM
        .u16(0x02) // type detail: other
        .u16(0) // speed: unknown
        .string(Some(DEFAULT_MANUFACTURER))
        .string(None) // serial
        .string(None) // asset tag
        .string(None) // part number
        .u8(0) // attributes
        .u32(ext)
        .u16(0) // configured speed: unknown
        .bytes(&[0; 6]) // minimum, maximum, configured voltage: unknown
        .finish(out);
}

/// Type 19, memory array mapped address (2.7+ layout, 31 bytes).
fn type19(out: &mut Vec<u8>, i: u16, start: u64, size: u64) {
    let end = start.saturating_add(size - 1);
    let (start_kib, end_kib) = (start / 1024, end / 1024);
    let mut s = Structure::new(19, T19 + i);
    if end_kib < u64::from(u32::MAX) {
        s.u32(start_kib as u32).u32(end_kib as u32);
    } else {
        s.u32(u32::MAX).u32(u32::MAX);
    }
    s.u16(T16).u8(1); // the array; partition width 1
    if end_kib < u64::from(u32::MAX) {
        s.u64(0).u64(0);
    } else {
        s.u64(start).u64(end);
    }
    s.finish(out);
}

/// Type 32, system boot information (11 bytes): no errors.
fn type32(out: &mut Vec<u8>) {
    Structure::new(32, T32).bytes(&[0; 6]).u8(0).finish(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "c7a5fdbd-cdaf-9455-926a-d65c16db1809";

    /// A structure of the table: type, handle, formatted area, strings.
    #[derive(Debug)]
    struct Parsed {
        kind: u8,
        handle: u16,
        area: Vec<u8>,
        strings: Vec<String>,
    }

    impl Parsed {
        /// The string a field at `offset` of the formatted area refers to.
        fn string_at(&self, offset: usize) -> Option<&str> {
            match self.area[offset] {
                0 => None,
                n => Some(self.strings[n as usize - 1].as_str()),
            }
        }
    }

    /// Walks the table as a firmware or dmidecode would; panics on malformed input.
    fn parse(table: &[u8]) -> Vec<Parsed> {
        let mut out = Vec::new();
        let mut p = 0;
        loop {
            let kind = table[p];
            let len = table[p + 1] as usize;
            assert!(len >= 4, "structure at {p} has length {len}");
            let handle = u16::from_le_bytes([table[p + 2], table[p + 3]]);
            let area = table[p..p + len].to_vec();
            let mut q = p + len;
            let mut strings = Vec::new();
            if table[q] == 0 {
                assert_eq!(table[q + 1], 0, "no-string set must be two NULs");
                q += 2;
            } else {
                while table[q] != 0 {
                    let end = q + table[q..].iter().position(|&b| b == 0).unwrap();
                    strings.push(String::from_utf8(table[q..end].to_vec()).unwrap());
                    q = end + 1;
                }
                q += 1;
            }
            out.push(Parsed {
                kind,
                handle,
                area,
                strings,
            });
            p = q;
            if kind == 127 {
                assert_eq!(p, table.len(), "bytes after the end-of-table structure");
                return out;
            }
        }
    }

    fn entries(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn one_gib() -> Vec<(u64, u64)> {
        vec![(0, 1 << 30)]
    }

    #[test]
    fn anchor_is_a_valid_smbios3_entry_point() {
        let (anchor, table) = tables(UUID, &one_gib(), 2, None).unwrap();
        assert_eq!(anchor.len(), ANCHOR_LEN);
        assert_eq!(&anchor[..5], b"_SM3_");
        assert_eq!(anchor.iter().fold(0u8, |s, &b| s.wrapping_add(b)), 0);
        assert_eq!(anchor[6], 24);
        assert_eq!((anchor[7], anchor[8]), (3, 0));
        let max = u32::from_le_bytes(anchor[12..16].try_into().unwrap());
        assert_eq!(max as usize, table.len());
        // The firmware writes the address.
        assert_eq!(&anchor[16..24], &[0; 8]);
    }

    #[test]
    fn default_table_has_the_required_structures_with_unique_handles() {
        let (_, table) = tables(UUID, &one_gib(), 3, None).unwrap();
        let s = parse(&table);
        let kinds: Vec<u8> = s.iter().map(|p| p.kind).collect();
        assert_eq!(kinds, vec![1, 3, 4, 4, 4, 16, 17, 19, 32, 127]);
        let mut handles: Vec<u16> = s.iter().map(|p| p.handle).collect();
        handles.sort();
        handles.dedup();
        assert_eq!(handles.len(), s.len());
        // Formatted-area lengths of the versions we claim.
        for p in &s {
            let want = match p.kind {
                1 => 27,
                3 => 22,
                4 => 48,
                16 => 23,
                17 => 40,
                19 => 31,
                32 => 11,
                127 => 4,
                k => panic!("unexpected type {k}"),
            };
            assert_eq!(p.area.len(), want, "type {}", p.kind);
        }
        let t1 = &s[0];
        assert_eq!(t1.string_at(4), Some("oxvirt"));
        assert_eq!(t1.string_at(7), None); // no serial unless given
        assert_eq!(s[1].string_at(4), Some("oxvirt"));
        assert_eq!(s[4].string_at(4), Some("CPU 2"));
    }

    #[test]
    fn uuid_is_in_smbios_byte_order() {
        let (_, table) = tables(UUID, &one_gib(), 1, None).unwrap();
        let t1 = &parse(&table)[0];
        assert_eq!(
            &t1.area[8..24],
            &[
                0xbd, 0xfd, 0xa5, 0xc7, 0xaf, 0xcd, 0x55, 0x94, 0x92, 0x6a, 0xd6, 0x5c, 0x16, 0xdb,
                0x18, 0x09
            ]
        );
    }

    #[test]
    fn sysinfo_strings_reach_their_fields() {
        let s = Smbios {
            bios: entries(&[
                ("vendor", "LENOVO"),
                ("version", "6FET82WW (3.12 )"),
                ("date", "07/03/2017"),
                ("release", "3.12"),
            ]),
            system: entries(&[
                ("manufacturer", "Fedora"),
                ("product", "Virt-Manager"),
                ("serial", "0xDEADBEEF"),
                ("uuid", &UUID.to_uppercase()),
                ("family", "Virtual Machine"),
            ]),
            baseboard: entries(&[("manufacturer", "LENOVO"), ("location", "slot 1")]),
            chassis: entries(&[("manufacturer", "Dell Inc."), ("asset", "40000101")]),
        };
        let (_, table) = tables(UUID, &one_gib(), 1, Some(&s)).unwrap();
        let p = parse(&table);
        let kinds: Vec<u8> = p.iter().map(|p| p.kind).collect();
        assert_eq!(&kinds[..4], &[0, 1, 2, 3]);
        let (t0, t1, t2, t3) = (&p[0], &p[1], &p[2], &p[3]);
        assert_eq!(t0.area.len(), 24);
        assert_eq!(t0.string_at(4), Some("LENOVO"));
        assert_eq!(t0.string_at(5), Some("6FET82WW (3.12 )"));
        assert_eq!(t0.string_at(8), Some("07/03/2017"));
        assert_eq!((t0.area[20], t0.area[21]), (3, 12));
        assert_eq!(t1.string_at(4), Some("Fedora"));
        assert_eq!(t1.string_at(5), Some("Virt-Manager"));
        assert_eq!(t1.string_at(7), Some("0xDEADBEEF"));
        assert_eq!(t1.string_at(26), Some("Virtual Machine"));
        assert_eq!(t1.string_at(25), None);
        assert_eq!(t2.string_at(4), Some("LENOVO"));
        assert_eq!(t2.string_at(10), Some("slot 1"));
        assert_eq!(u16::from_le_bytes([t2.area[11], t2.area[12]]), t3.handle);
        assert_eq!(t3.string_at(4), Some("Dell Inc."));
        assert_eq!(t3.string_at(8), Some("40000101"));
        // Every string is referenced exactly once: counts match the set.
        assert_eq!(t1.strings.len(), 5);
    }

    #[test]
    fn memory_is_described_as_qemu_does() {
        // 40 GiB: 2 GiB low, 38 GiB from 4 GiB (a Q35 split), three "DIMMs".
        let ram = [(0, 2u64 << 30), (4 << 30, 38u64 << 30)];
        let (_, table) = tables(UUID, &ram, 1, None).unwrap();
        let p = parse(&table);
        let t16 = p.iter().find(|s| s.kind == 16).unwrap();
        assert_eq!(
            u32::from_le_bytes(t16.area[7..11].try_into().unwrap()),
            40 << 20
        );
        assert_eq!(u16::from_le_bytes([t16.area[13], t16.area[14]]), 3);
        let sizes: Vec<u16> = p
            .iter()
            .filter(|s| s.kind == 17)
            .map(|s| u16::from_le_bytes([s.area[12], s.area[13]]))
            .collect();
        assert_eq!(sizes, vec![16384, 16384, 8192]);
        let ranges: Vec<(u32, u32)> = p
            .iter()
            .filter(|s| s.kind == 19)
            .map(|s| {
                (
                    u32::from_le_bytes(s.area[4..8].try_into().unwrap()),
                    u32::from_le_bytes(s.area[8..12].try_into().unwrap()),
                )
            })
            .collect();
        assert_eq!(ranges, vec![(0, (2 << 20) - 1), (4 << 20, (42 << 20) - 1)]);
    }

    #[test]
    fn huge_memory_uses_the_extended_fields() {
        let ram = [(1u64 << 42, 4u64 << 40)]; // 4 TiB at 4 TiB
        let (_, table) = tables(UUID, &ram, 1, None).unwrap();
        let p = parse(&table);
        let t16 = p.iter().find(|s| s.kind == 16).unwrap();
        assert_eq!(&t16.area[7..11], &0x8000_0000u32.to_le_bytes());
        assert_eq!(&t16.area[15..23], &(4u64 << 40).to_le_bytes());
        let t19 = p.iter().find(|s| s.kind == 19).unwrap();
        assert_eq!(&t19.area[4..8], &[0xff; 4]);
        assert_eq!(&t19.area[15..23], &(1u64 << 42).to_le_bytes());
        assert_eq!(
            &t19.area[23..31],
            &((1u64 << 42) + (4 << 40) - 1).to_le_bytes()
        );
    }

    #[test]
    fn bad_input_is_named() {
        let bad = |s: Smbios| tables(UUID, &one_gib(), 1, Some(&s)).unwrap_err();
        assert_eq!(
            tables("not-a-uuid", &one_gib(), 1, None).unwrap_err(),
            SmbiosError::BadUuid("not-a-uuid".into())
        );
        let e = bad(Smbios {
            chassis: entries(&[("product", "x")]),
            ..Default::default()
        });
        assert_eq!(e.to_string(), "unknown SMBIOS chassis entry 'product'");
        let e = bad(Smbios {
            bios: entries(&[("release", "3")]),
            ..Default::default()
        });
        assert!(matches!(e, SmbiosError::BadRelease(_)));
        let e = bad(Smbios {
            system: entries(&[("uuid", "00000000-0000-0000-0000-000000000001")]),
            ..Default::default()
        });
        assert!(matches!(e, SmbiosError::UuidMismatch { .. }), "{e}");
        let e = bad(Smbios {
            system: entries(&[("serial", "a\0b")]),
            ..Default::default()
        });
        assert!(matches!(e, SmbiosError::NulInString { .. }));
    }

    #[test]
    fn empty_strings_are_absent_not_terminators() {
        let s = Smbios {
            system: entries(&[("serial", ""), ("sku", "S1")]),
            ..Default::default()
        };
        let (_, table) = tables(UUID, &one_gib(), 0, Some(&s)).unwrap();
        let t1 = &parse(&table)[0];
        assert_eq!(t1.string_at(7), None);
        assert_eq!(t1.string_at(25), Some("S1"));
    }

    /// Decodes the table with dmidecode (when installed), which checks lengths,
    /// checksums and field values against the SMBIOS spec.
    #[test]
    fn dmidecode_reads_the_tables() {
        let dmidecode = [
            "/usr/sbin/dmidecode",
            "/sbin/dmidecode",
            "/usr/bin/dmidecode",
        ]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
        let Some(dmidecode) = dmidecode else {
            use std::io::Write;
            let bar = "*".repeat(78);
            let _ = std::io::stderr().write_all(
                format!(
                    "\n{bar}\n*** SKIPPED: smbios::dmidecode_reads_the_tables: dmidecode is not installed (apt-get install dmidecode)\n{bar}\n"
                )
                .as_bytes(),
            );
            return;
        };
        // Arrange: a dump as `dmidecode --dump-bin` writes it: the entry point at 0
        // pointing at the table at 0x20.
        let s = Smbios {
            bios: entries(&[
                ("vendor", "SeaBIOS"),
                ("version", "1.16.2"),
                ("date", "04/01/2014"),
                ("release", "1.16"),
            ]),
            system: entries(&[("manufacturer", "Example Corp"), ("serial", "SN-42")]),
            baseboard: entries(&[("product", "Board 9"), ("asset", "A-1")]),
            chassis: entries(&[("sku", "CH-7")]),
        };
        let (mut anchor, table) = tables(UUID, &[(0, 3 << 30)], 2, Some(&s)).unwrap();
        anchor[16..24].copy_from_slice(&0x20u64.to_le_bytes());
        anchor[5] = 0;
        anchor[5] = checksum(&anchor);
        let mut dump = anchor;
        dump.resize(0x20, 0);
        dump.extend_from_slice(&table);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dmi.bin");
        std::fs::write(&file, &dump).unwrap();

        // Act
        let out = std::process::Command::new(dmidecode)
            .arg("--from-dump")
            .arg(&file)
            .output()
            .unwrap();

        // Assert
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}\n{err}");
        for want in [
            "SMBIOS 3.0.0 present.",
            "Vendor: SeaBIOS",
            "Release Date: 04/01/2014",
            "BIOS Revision: 1.16",
            "Product Name: Board 9",
            "Asset Tag: A-1",
            "SKU Number: CH-7",
            "Manufacturer: Example Corp",
            "Serial Number: SN-42",
            &format!("UUID: {UUID}"),
            "Socket Designation: CPU 1",
            "Maximum Capacity: 3 GB",
            "Size: 3 GB",
            "Locator: DIMM 0",
            "Range Size: 3 GB",
            "Status: No errors detected",
            "End Of Table",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        for bad in ["OUT OF SPEC", "Invalid", "Wrong", "Bad", "<BAD INDEX>"] {
            assert!(!text.contains(bad), "{bad:?} in:\n{text}");
        }
        assert!(!err.contains("nvalid") && !err.contains("rong"), "{err}");
    }
}
