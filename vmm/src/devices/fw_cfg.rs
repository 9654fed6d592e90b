//! QEMU's firmware configuration device (fw_cfg), the way SeaBIOS and OVMF read
//! the machine's description: e820 map, ACPI tables, boot order, SMBIOS, CPU count.
//!
//! The interface follows QEMU's `docs/specs/fw_cfg.rst` (x86 I/O-port flavour):
//!
//! ```text
//! 0x510  selector  16-bit write: selects an item and rewinds its data offset
//! 0x511  data      8-bit reads: the next byte of the item (0 past its end)
//! 0x514  DMA       big-endian address of a FWCfgDmaAccess: 0x514 high 32 bits,
//!                  0x518 low 32 bits (the write to 0x518, or one 64-bit write to
//!                  0x514, starts the transfer); reads give "QEMU CFG"
//! ```
//!
//! Items are addressed by 16-bit keys: 0x0000 signature "QEMU", 0x0001 id (bit 0:
//! the port interface, bit 1: DMA), legacy keys such as 0x0005 (CPU count), and
//! named files: key 0x0019 is the directory (big-endian u32 count, then 64-byte
//! `{BE u32 size, BE u16 select, u16 reserved, char name[56]}` entries), and the
//! files themselves get keys 0x0020 onwards, **sorted by name** as QEMU sorts them;
//! so a file's key is final only once every file is added.
//!
//! A DMA transfer reads `{BE u32 control, BE u32 length, BE u64 address}` from
//! guest memory. Control bits: 0x01 error, 0x02 read, 0x04 skip, 0x08 select (key
//! in the upper 16 bits), 0x10 write. Reads past the end of an item fill zeros,
//! skips move the data offset, writes fail (no item is writable: QEMU's writable
//! files serve vmgenid and SMI features we do not offer). The transfer completes
//! inside the port write, and the device stores `control` back as 0 or, on
//! failure, with the error bit: firmware busy-waits on it.

use std::collections::BTreeMap;

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::bus::BusDevice;
use crate::layout::E820Entry;

/// First port: the selector; data at +1, DMA address at +4.
pub const FW_CFG_PORT: u16 = 0x510;
/// The data port.
pub const FW_CFG_DATA_PORT: u16 = FW_CFG_PORT + 1;
/// The DMA address register (high half; the low half at +4).
pub const FW_CFG_DMA_PORT: u16 = FW_CFG_PORT + 4;
/// Ports the device spans (selector, data, DMA address).
pub const FW_CFG_PORT_LEN: u64 = 0xc;

/// Item keys (QEMU `include/standard-headers/linux/qemu_fw_cfg.h`).
pub mod keys {
    /// "QEMU".
    pub const SIGNATURE: u16 = 0x0000;
    /// Feature bits, LE u32: [`super::ID_TRADITIONAL`] | [`super::ID_DMA`].
    pub const ID: u16 = 0x0001;
    /// The machine's UUID, 16 bytes.
    pub const UUID: u16 = 0x0002;
    /// RAM size in bytes, LE u64.
    pub const RAM_SIZE: u16 = 0x0003;
    /// LE u16: no graphical console (QEMU adds `etc/sercon-port` for SeaBIOS then).
    pub const NOGRAPHIC: u16 = 0x0004;
    /// Number of vCPUs started, LE u16.
    pub const NB_CPUS: u16 = 0x0005;
    /// LE u16: show the boot menu.
    pub const BOOT_MENU: u16 = 0x000e;
    /// Highest APIC id + 1 (QEMU's `apic_id_limit`), LE u16.
    pub const MAX_CPUS: u16 = 0x000f;
    /// The file directory.
    pub const FILE_DIR: u16 = 0x0019;
    /// The first file's key.
    pub const FILE_FIRST: u16 = 0x0020;
    /// Set in a selector write to mean "for writing"; ignored for selection.
    pub const WRITE_CHANNEL: u16 = 0x4000;
    /// Architecture-specific keys have this bit.
    pub const ARCH_LOCAL: u16 = 0x8000;
    /// x86: LE u32, whether IRQ0 is overridden to GSI 2 (MP table, SeaBIOS).
    pub const IRQ0_OVERRIDE: u16 = ARCH_LOCAL | 0x0002;
}

/// Id bit 0: the selector/data port interface.
pub const ID_TRADITIONAL: u32 = 1 << 0;
/// Id bit 1: the DMA interface.
pub const ID_DMA: u32 = 1 << 1;

/// DMA control: the transfer failed.
pub const DMA_CTL_ERROR: u32 = 0x01;
/// DMA control: copy from the item to guest memory.
pub const DMA_CTL_READ: u32 = 0x02;
/// DMA control: advance the data offset.
pub const DMA_CTL_SKIP: u32 = 0x04;
/// DMA control: select the key in bits 16-31 first.
pub const DMA_CTL_SELECT: u32 = 0x08;
/// DMA control: copy from guest memory to the item (refused here).
pub const DMA_CTL_WRITE: u32 = 0x10;

/// What reads of the DMA address register return.
pub const DMA_SIGNATURE: [u8; 8] = *b"QEMU CFG";
/// Longest file name, without its NUL.
pub const FILE_NAME_MAX: usize = 55;
/// Size of one directory entry.
pub const DIR_ENTRY_LEN: usize = 64;

/// Errors of adding items.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FwCfgError {
    /// Two files with one name.
    #[error("fw_cfg file {0:?} is already present")]
    DuplicateFile(String),
    /// Empty, containing NUL, or longer than [`FILE_NAME_MAX`] bytes.
    #[error("fw_cfg file name {0:?} is empty, has a NUL or is longer than 55 bytes")]
    FileName(String),
    /// The key belongs to the directory or to the files.
    #[error("fw_cfg key {0:#06x} is not for plain items")]
    ReservedKey(u16),
    /// An item of 4 GiB or more (sizes are 32-bit).
    #[error("fw_cfg item of {0} bytes is too large")]
    TooLarge(usize),
    /// The file keys ran out.
    #[error("too many fw_cfg files")]
    TooManyFiles,
}

/// The fw_cfg device: its items and the guest's current selection.
pub struct FwCfg {
    mem: GuestMemoryMmap,
    /// Keyed items (signature, id, legacy keys), by key without the write bit.
    items: BTreeMap<u16, Vec<u8>>,
    /// Named files sorted by name; file `i` has key `FILE_FIRST + i`.
    files: Vec<(String, Vec<u8>)>,
    /// The directory as key 0x19 reads it; rebuilt when a file is added.
    dir: Vec<u8>,
    selected: u16,
    offset: usize,
    dma_addr: u64,
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Encodes an e820 map as `etc/e820` holds it: packed LE `{u64 addr, u64 len, u32 type}`.
pub fn e820_bytes(map: &[E820Entry]) -> Vec<u8> {
    let mut v = Vec::with_capacity(map.len() * 20);
    for e in map {
        v.extend_from_slice(&e.addr.to_le_bytes());
        v.extend_from_slice(&e.size.to_le_bytes());
        v.extend_from_slice(&(e.kind as u32).to_le_bytes());
    }
    v
}

impl FwCfg {
    /// A device with the signature and the id (port and DMA interfaces) and no
    /// other item; DMA transfers go to `mem`.
    pub fn new(mem: GuestMemoryMmap) -> Self {
        let mut items = BTreeMap::new();
        items.insert(keys::SIGNATURE, b"QEMU".to_vec());
        items.insert(keys::ID, (ID_TRADITIONAL | ID_DMA).to_le_bytes().to_vec());
        let mut f = FwCfg {
            mem,
            items,
            files: Vec::new(),
            dir: Vec::new(),
            selected: keys::SIGNATURE,
            offset: 0,
            dma_addr: 0,
        };
        f.rebuild_dir();
        f
    }

    /// Sets (or replaces) the item at `key`. The directory and file keys are refused.
    pub fn set_item(&mut self, key: u16, data: Vec<u8>) -> Result<(), FwCfgError> {
        let k = key & !keys::WRITE_CHANNEL;
        if k == keys::FILE_DIR || (keys::FILE_FIRST..keys::WRITE_CHANNEL).contains(&k) {
            return Err(FwCfgError::ReservedKey(key));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(FwCfgError::TooLarge(data.len()));
        }
        self.items.insert(k, data);
        Ok(())
    }

    /// Sets a little-endian u16 item (the legacy keys' format).
    pub fn set_u16(&mut self, key: u16, v: u16) -> Result<(), FwCfgError> {
        self.set_item(key, v.to_le_bytes().to_vec())
    }

    /// Adds the file `name`. Files are kept sorted by name, so keys are only final
    /// once all files are in: see [`FwCfg::file_key`].
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<(), FwCfgError> {
        if name.is_empty() || name.len() > FILE_NAME_MAX || name.contains('\0') {
            return Err(FwCfgError::FileName(name.to_string()));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(FwCfgError::TooLarge(data.len()));
        }
        if usize::from(keys::FILE_FIRST) + self.files.len() >= usize::from(keys::WRITE_CHANNEL) {
            return Err(FwCfgError::TooManyFiles);
        }
        // QEMU orders the directory with strcmp: byte order, as `str` compares.
        let at = match self.files.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(_) => return Err(FwCfgError::DuplicateFile(name.to_string())),
            Err(at) => at,
        };
        self.files.insert(at, (name.to_string(), data));
        self.rebuild_dir();
        Ok(())
    }

    /// The key the file `name` has now.
    pub fn file_key(&self, name: &str) -> Option<u16> {
        let i = self
            .files
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()?;
        // add_file keeps FILE_FIRST + len below WRITE_CHANNEL.
        Some(keys::FILE_FIRST + i as u16)
    }

    /// The contents of `key` (the directory and files included), if present.
    pub fn item(&self, key: u16) -> Option<&[u8]> {
        let k = key & !keys::WRITE_CHANNEL;
        if k == keys::FILE_DIR {
            return Some(&self.dir);
        }
        if (keys::FILE_FIRST..keys::WRITE_CHANNEL).contains(&k) {
            let i = usize::from(k - keys::FILE_FIRST);
            return self.files.get(i).map(|(_, d)| d.as_slice());
        }
        self.items.get(&k).map(Vec::as_slice)
    }

    fn rebuild_dir(&mut self) {
        let mut dir = Vec::with_capacity(4 + self.files.len() * DIR_ENTRY_LEN);
        dir.extend_from_slice(&(self.files.len() as u32).to_be_bytes());
        for (i, (name, data)) in self.files.iter().enumerate() {
            let mut e = [0u8; DIR_ENTRY_LEN];
            // Sizes and keys were bounded by add_file.
            e[0..4].copy_from_slice(&(data.len() as u32).to_be_bytes());
            e[4..6].copy_from_slice(&(keys::FILE_FIRST + i as u16).to_be_bytes());
            e[8..8 + name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&e);
        }
        self.dir = dir;
    }

    fn select(&mut self, key: u16) {
        self.selected = key;
        self.offset = 0;
    }

    /// Bytes of the selected item left after the data offset.
    fn remaining(&self) -> &[u8] {
        self.item(self.selected)
            .and_then(|d| d.get(self.offset..))
            .unwrap_or(&[])
    }

    fn read_data_byte(&mut self) -> u8 {
        match self.remaining().first().copied() {
            Some(b) => {
                self.offset += 1;
                b
            }
            None => 0,
        }
    }

    /// Runs the DMA request at guest address `at` and stores its status there.
    fn dma(&mut self, at: u64) {
        let mut req = [0u8; 16];
        let status = match self.mem.read_slice(&mut req, GuestAddress(at)) {
            Ok(()) => self.dma_transfer(be32(&req[0..4]), be32(&req[4..8]), be64(&req[8..16])),
            Err(e) => {
                tracing::debug!(at, error = %e, "fw_cfg: DMA request outside guest memory");
                DMA_CTL_ERROR
            }
        };
        if let Err(e) = self
            .mem
            .write_slice(&status.to_be_bytes(), GuestAddress(at))
        {
            tracing::debug!(at, error = %e, "fw_cfg: cannot store the DMA status");
        }
    }

    /// One transfer as QEMU's `fw_cfg_dma_transfer` does it; returns the new control.
    fn dma_transfer(&mut self, control: u32, mut length: u32, mut addr: u64) -> u32 {
        if control & DMA_CTL_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        #[derive(PartialEq)]
        enum Op {
            Read,
            Write,
            Skip,
        }
        let op = if control & DMA_CTL_READ != 0 {
            Op::Read
        } else if control & DMA_CTL_WRITE != 0 {
            Op::Write
        } else if control & DMA_CTL_SKIP != 0 {
            Op::Skip
        } else {
            return 0;
        };
        while length > 0 {
            let data = self.remaining();
            // Past the end (or nothing selected): reads give zeros, skips nothing.
            let past_end = data.is_empty();
            let n = if past_end {
                length
            } else {
                length.min(data.len() as u32)
            };
            let ok = match op {
                Op::Write => false,
                Op::Skip => true,
                Op::Read if past_end => zero_fill(&self.mem, addr, n),
                Op::Read => self
                    .mem
                    .write_slice(&data[..n as usize], GuestAddress(addr))
                    .is_ok(),
            };
            if !ok {
                return DMA_CTL_ERROR;
            }
            if !past_end {
                self.offset += n as usize;
            }
            addr = addr.wrapping_add(u64::from(n));
            length -= n;
        }
        0
    }
}

/// Writes `len` zero bytes at `addr`; false if any of it is not guest RAM.
fn zero_fill(mem: &GuestMemoryMmap, addr: u64, len: u32) -> bool {
    const ZEROS: [u8; 4096] = [0; 4096];
    let mut done = 0u64;
    while done < u64::from(len) {
        let n = (u64::from(len) - done).min(ZEROS.len() as u64);
        let Some(at) = addr.checked_add(done) else {
            return false;
        };
        if mem
            .write_slice(&ZEROS[..n as usize], GuestAddress(at))
            .is_err()
        {
            return false;
        }
        done += n;
    }
    true
}

/// Where the guest was in an item (the items themselves are built from the spec).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedFwCfg {
    selected: u16,
    offset: usize,
    dma_addr: u64,
}

impl crate::vmstate::Stateful for FwCfg {
    fn save_state(&self) -> serde_json::Value {
        crate::vmstate::to_value(&SavedFwCfg {
            selected: self.selected,
            offset: self.offset,
            dma_addr: self.dma_addr,
        })
    }

    fn restore_state(&mut self, v: &serde_json::Value) -> Result<(), String> {
        let s: SavedFwCfg = crate::vmstate::from_value(v)?;
        self.selected = s.selected;
        self.offset = s.offset;
        self.dma_addr = s.dma_addr;
        Ok(())
    }
}

impl BusDevice for FwCfg {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match offset {
            1 => data.iter_mut().for_each(|b| *b = self.read_data_byte()),
            4..=11 => {
                for (i, b) in data.iter_mut().enumerate() {
                    let at = offset as usize - 4 + i;
                    *b = DMA_SIGNATURE.get(at).copied().unwrap_or(0);
                }
            }
            _ => data.fill(0),
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (0, 2) => self.select(u16::from_le_bytes([data[0], data[1]])),
            (4, 4) => self.dma_addr = u64::from(be32(data)) << 32,
            (8, 4) => {
                let at = self.dma_addr | u64::from(be32(data));
                self.dma_addr = 0;
                self.dma(at);
            }
            (4, 8) => {
                self.dma_addr = 0;
                self.dma(be64(data));
            }
            // Data port writes do nothing since QEMU 2.4; other widths are invalid.
            _ => tracing::trace!(offset, len = data.len(), "fw_cfg: write ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{E820Type, RamLayout};

    const BASE: u64 = FW_CFG_PORT as u64;
    /// Where the tests put their DMA requests and buffers.
    const REQ: u64 = 0x1000;
    const BUF: u64 = 0x2000;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap()
    }

    fn dev() -> FwCfg {
        FwCfg::new(mem())
    }

    fn select(f: &mut FwCfg, key: u16) {
        f.write(BASE, 0, &key.to_le_bytes());
    }

    fn read_bytes(f: &mut FwCfg, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                let mut b = [0u8; 1];
                f.read(BASE, 1, &mut b);
                b[0]
            })
            .collect()
    }

    /// Writes a request at REQ and starts it through the two 32-bit registers.
    fn dma(f: &mut FwCfg, control: u32, length: u32, addr: u64) -> u32 {
        let mut req = Vec::new();
        req.extend_from_slice(&control.to_be_bytes());
        req.extend_from_slice(&length.to_be_bytes());
        req.extend_from_slice(&addr.to_be_bytes());
        f.mem.write_slice(&req, GuestAddress(REQ)).unwrap();
        f.write(BASE, 4, &((REQ >> 32) as u32).to_be_bytes());
        f.write(BASE, 8, &(REQ as u32).to_be_bytes());
        status(f)
    }

    fn status(f: &FwCfg) -> u32 {
        let mut s = [0u8; 4];
        f.mem.read_slice(&mut s, GuestAddress(REQ)).unwrap();
        u32::from_be_bytes(s)
    }

    fn guest(f: &FwCfg, addr: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        f.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    #[test]
    fn signature_and_id_through_the_ports() {
        let mut f = dev();
        select(&mut f, keys::SIGNATURE);
        assert_eq!(read_bytes(&mut f, 4), b"QEMU");
        select(&mut f, keys::ID);
        assert_eq!(read_bytes(&mut f, 4), [3, 0, 0, 0], "traditional | DMA");
    }

    #[test]
    fn data_port_reads_zero_past_the_end_and_for_absent_keys() {
        let mut f = dev();
        select(&mut f, keys::SIGNATURE);
        assert_eq!(read_bytes(&mut f, 6), b"QEMU\0\0");
        select(&mut f, 0x1234);
        assert_eq!(read_bytes(&mut f, 3), [0, 0, 0]);
        // Re-selecting rewinds.
        select(&mut f, keys::SIGNATURE);
        assert_eq!(read_bytes(&mut f, 2), b"QE");
        select(&mut f, keys::SIGNATURE);
        assert_eq!(read_bytes(&mut f, 1), b"Q");
    }

    #[test]
    fn wide_data_reads_advance_per_byte() {
        let mut f = dev();
        select(&mut f, keys::SIGNATURE);
        let mut b = [0u8; 4];
        f.read(BASE, 1, &mut b);
        assert_eq!(&b, b"QEMU");
    }

    #[test]
    fn write_channel_bit_selects_the_same_item() {
        let mut f = dev();
        select(&mut f, keys::WRITE_CHANNEL | keys::SIGNATURE);
        assert_eq!(read_bytes(&mut f, 4), b"QEMU");
    }

    #[test]
    fn dma_register_reads_the_dma_signature() {
        let mut f = dev();
        let mut hi = [0u8; 4];
        let mut lo = [0u8; 4];
        f.read(BASE, 4, &mut hi);
        f.read(BASE, 8, &mut lo);
        assert_eq!([hi, lo].concat(), b"QEMU CFG");
        let mut b = [0u8; 1];
        f.read(BASE, 0, &mut b);
        assert_eq!(b, [0], "the selector does not read back");
    }

    #[test]
    fn directory_is_byte_exact_and_sorted_by_name() {
        let mut f = dev();
        f.add_file("etc/e820", vec![1; 40]).unwrap();
        f.add_file("bootorder", b"/pci@i0cf8/*@1\n".to_vec())
            .unwrap();
        f.add_file("etc/acpi/tables", vec![2; 300]).unwrap();
        select(&mut f, keys::FILE_DIR);
        let dir = read_bytes(&mut f, 4 + 3 * 64);
        assert_eq!(&dir[..4], &[0, 0, 0, 3]);
        let entry = |i: usize| &dir[4 + i * 64..4 + (i + 1) * 64];
        let expect = |size: u32, key: u16, name: &str| {
            let mut e = vec![0u8; 64];
            e[..4].copy_from_slice(&size.to_be_bytes());
            e[4..6].copy_from_slice(&key.to_be_bytes());
            e[8..8 + name.len()].copy_from_slice(name.as_bytes());
            e
        };
        assert_eq!(entry(0), expect(15, 0x20, "bootorder"));
        assert_eq!(entry(1), expect(300, 0x21, "etc/acpi/tables"));
        assert_eq!(entry(2), expect(40, 0x22, "etc/e820"));
        assert_eq!(read_bytes(&mut f, 2), [0, 0], "past the end");
        assert_eq!(f.file_key("etc/e820"), Some(0x22));
        select(&mut f, 0x22);
        assert_eq!(read_bytes(&mut f, 40), vec![1; 40]);
    }

    #[test]
    fn empty_directory_has_a_zero_count() {
        let mut f = dev();
        select(&mut f, keys::FILE_DIR);
        assert_eq!(read_bytes(&mut f, 5), [0; 5]);
    }

    #[test]
    fn bad_file_names_duplicates_and_reserved_keys_are_refused() {
        let mut f = dev();
        let long = "x".repeat(56);
        assert_eq!(
            f.add_file(&long, vec![]),
            Err(FwCfgError::FileName(long.clone()))
        );
        assert!(f.add_file(&long[..55], vec![]).is_ok());
        assert!(f.add_file("", vec![]).is_err());
        assert!(f.add_file("a\0b", vec![]).is_err());
        f.add_file("etc/e820", vec![]).unwrap();
        assert_eq!(
            f.add_file("etc/e820", vec![1]),
            Err(FwCfgError::DuplicateFile("etc/e820".into()))
        );
        assert_eq!(
            f.set_item(keys::FILE_DIR, vec![]),
            Err(FwCfgError::ReservedKey(0x19))
        );
        assert!(f.set_item(0x20, vec![]).is_err());
        assert!(f.set_item(keys::WRITE_CHANNEL | 0x25, vec![]).is_err());
        assert!(f.set_item(keys::NB_CPUS, vec![2, 0]).is_ok());
        assert!(f.set_item(keys::IRQ0_OVERRIDE, vec![0; 4]).is_ok());
    }

    #[test]
    fn legacy_items_read_back() {
        let mut f = dev();
        f.set_u16(keys::NB_CPUS, 4).unwrap();
        f.set_item(keys::IRQ0_OVERRIDE, 1u32.to_le_bytes().to_vec())
            .unwrap();
        select(&mut f, keys::NB_CPUS);
        assert_eq!(read_bytes(&mut f, 3), [4, 0, 0]);
        select(&mut f, keys::IRQ0_OVERRIDE);
        assert_eq!(read_bytes(&mut f, 4), [1, 0, 0, 0]);
    }

    #[test]
    fn dma_select_and_read_the_signature() {
        let mut f = dev();
        let ctl = (u32::from(keys::SIGNATURE) << 16) | DMA_CTL_SELECT | DMA_CTL_READ;
        assert_eq!(dma(&mut f, ctl, 4, BUF), 0);
        assert_eq!(guest(&f, BUF, 4), b"QEMU");
    }

    #[test]
    fn dma_read_continues_from_the_port_offset_and_zero_fills_past_the_end() {
        let mut f = dev();
        f.add_file("etc/e820", (1..=10).collect()).unwrap();
        f.mem.write_slice(&[0xaa; 16], GuestAddress(BUF)).unwrap();
        select(&mut f, 0x20);
        assert_eq!(read_bytes(&mut f, 2), [1, 2]);
        assert_eq!(dma(&mut f, DMA_CTL_READ, 12, BUF), 0);
        assert_eq!(
            guest(&f, BUF, 14),
            [3, 4, 5, 6, 7, 8, 9, 10, 0, 0, 0, 0, 0xaa, 0xaa]
        );
        assert_eq!(read_bytes(&mut f, 1), [0]);
    }

    #[test]
    fn dma_skip_moves_the_offset() {
        let mut f = dev();
        f.add_file("f", (0..100).collect()).unwrap();
        let key = f.file_key("f").unwrap();
        let ctl = (u32::from(key) << 16) | DMA_CTL_SELECT | DMA_CTL_SKIP;
        assert_eq!(dma(&mut f, ctl, 40, BUF), 0);
        assert_eq!(dma(&mut f, DMA_CTL_READ, 2, BUF), 0);
        assert_eq!(guest(&f, BUF, 2), [40, 41]);
        // Skipping past the end is fine and reads stay zero.
        assert_eq!(dma(&mut f, DMA_CTL_SKIP, 1000, BUF), 0);
        assert_eq!(read_bytes(&mut f, 1), [0]);
    }

    #[test]
    fn dma_select_alone_only_selects() {
        let mut f = dev();
        let ctl = (u32::from(keys::ID) << 16) | DMA_CTL_SELECT;
        assert_eq!(dma(&mut f, ctl, 100, BUF), 0);
        assert_eq!(read_bytes(&mut f, 1), [3]);
    }

    #[test]
    fn dma_write_is_refused_with_the_error_bit() {
        let mut f = dev();
        f.add_file("etc/e820", vec![7; 8]).unwrap();
        f.mem.write_slice(&[9; 8], GuestAddress(BUF)).unwrap();
        let ctl = (0x20 << 16) | DMA_CTL_SELECT | DMA_CTL_WRITE;
        assert_eq!(dma(&mut f, ctl, 8, BUF), DMA_CTL_ERROR);
        assert_eq!(f.item(0x20), Some(&[7u8; 8][..]), "item unchanged");
        // So is a write to an absent key.
        let ctl = (0x3000 << 16) | DMA_CTL_SELECT | DMA_CTL_WRITE;
        assert_eq!(dma(&mut f, ctl, 1, BUF), DMA_CTL_ERROR);
    }

    #[test]
    fn dma_read_to_a_bad_address_sets_the_error_bit() {
        let mut f = dev();
        let ctl = (u32::from(keys::SIGNATURE) << 16) | DMA_CTL_SELECT | DMA_CTL_READ;
        assert_eq!(dma(&mut f, ctl, 4, 0x10_0000), DMA_CTL_ERROR);
        // Zero fill past the end of RAM, too; and across its end.
        select(&mut f, 0x3000);
        assert_eq!(dma(&mut f, DMA_CTL_READ, 4, 0xffff_0000), DMA_CTL_ERROR);
        assert_eq!(dma(&mut f, DMA_CTL_READ, 0x20, 0xfff0), DMA_CTL_ERROR);
        assert_eq!(dma(&mut f, DMA_CTL_READ, 0x10, 0xfff0), 0);
    }

    #[test]
    fn dma_request_outside_ram_is_ignored_without_harm() {
        let mut f = dev();
        f.write(BASE, 4, &0u32.to_be_bytes());
        f.write(BASE, 8, &0x20_0000u32.to_be_bytes());
        // Nothing to report to; the device still works.
        select(&mut f, keys::SIGNATURE);
        assert_eq!(read_bytes(&mut f, 1), b"Q");
    }

    #[test]
    fn one_64_bit_write_starts_a_transfer_and_the_address_resets() {
        let mut f = dev();
        let mut req = Vec::new();
        req.extend_from_slice(&((u32::from(keys::SIGNATURE) << 16) | 0x0a).to_be_bytes());
        req.extend_from_slice(&4u32.to_be_bytes());
        req.extend_from_slice(&BUF.to_be_bytes());
        f.mem.write_slice(&req, GuestAddress(REQ)).unwrap();
        f.write(BASE, 4, &REQ.to_be_bytes());
        assert_eq!(status(&f), 0);
        assert_eq!(guest(&f, BUF, 4), b"QEMU");
        // The high half is per transfer: a lone low write uses high = 0.
        f.write(BASE, 4, &1u32.to_be_bytes());
        f.write(BASE, 8, &(REQ as u32).to_be_bytes());
        f.mem.write_slice(&req, GuestAddress(REQ)).unwrap();
        f.write(BASE, 8, &(REQ as u32).to_be_bytes());
        assert_eq!(status(&f), 0);
    }

    #[test]
    fn no_operation_bits_complete_with_zero() {
        let mut f = dev();
        assert_eq!(dma(&mut f, 0, 16, BUF), 0);
    }

    #[test]
    fn e820_entries_are_20_packed_le_bytes() {
        let map = RamLayout::new(128 << 20).e820();
        let b = e820_bytes(&map);
        assert_eq!(b.len(), map.len() * 20);
        assert_eq!(&b[20..28], &0x9_fc00u64.to_le_bytes());
        assert_eq!(&b[28..36], &0x6_0400u64.to_le_bytes());
        assert_eq!(&b[36..40], &(E820Type::Reserved as u32).to_le_bytes());
    }
}
