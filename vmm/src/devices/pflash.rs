//! CFI parallel flash for OVMF's UEFI variable store (libvirt `<nvram>`).
//!
//! What the guest sees is QEMU's `cfi.pflash01` as the q35 machine configures its
//! `system.flash1`: an Intel/Sharp command-set flash, one byte wide, 4 KiB erase
//! sectors, mapped right below the read-only OVMF code image. OVMF's
//! `QemuFlashFvbServicesRuntimeDxe` drives it with a handful of commands, all
//! written as single bytes:
//!
//! ```text
//! write 0xFF / 0xF0 / 0x00   read array: reads return the flash content (the reset state)
//! write 0x10 or 0x40, data   program one byte: new = old & data (bits only go 1 -> 0)
//! write 0x20, 0xD0           erase the 4 KiB sector holding the address (all 0xFF)
//! write 0x50                 clear status (status = 0x00), back to read array
//! write 0x70                 read status: reads return the status register
//! write 0x90                 read identifier: offset 0 manufacturer, 1 device
//! write 0x98                 CFI query: reads return the query table ("QRY" at 0x10)
//! ```
//!
//! After a program or an erase the device stays in read-status mode (status 0x80,
//! "ready") until the next command, as Intel parts and QEMU do; OVMF ends every
//! variable write with 0xFF. Status bit 4 (0x10) reports a failed program, bit 5
//! (0x20) a failed erase, both together an improper command sequence.
//!
//! OVMF tells flash from ROM and RAM with `QemuFlashDetected`: it finds a byte that is
//! none of 0x00, 0x50, 0x70, writes 0x50 there and reads it back (still the old byte:
//! not RAM), then writes 0x70 and reads: **0x00** means flash, the old byte means ROM,
//! 0x70 means RAM. So the status register must read 0x00 after a clear; see the
//! `ovmf_detects_flash` test.
//!
//! # Persistence
//!
//! The whole store is held in memory for reads and every completed program or erase
//! is written through to the per-domain NVRAM file at once (`pwrite` at the offset),
//! so a VMM that dies loses nothing: the kernel already has the bytes. [`Pflash::flush`]
//! (and dropping the device) also syncs them to disk, as QEMU flushes its block
//! layer at shutdown. The file is locked (`flock`, exclusive) while the device holds
//! it, so two VMMs never write one variable store.
//!
//! # Speed
//!
//! Every access traps to the VMM (the device sits on the MMIO bus). QEMU's "ROMD"
//! mode would be faster: a read-only memslot over the store while in read-array mode,
//! so only writes trap, and the slot removed until the next read-array command. Reads
//! of variables are rare after boot, so this can wait for a profile that shows it.
//!
//! [`prepare_vars`] creates the per-domain file from its template before the first
//! start, the way libvirt does.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::bus::BusDevice;

/// Erase sector size (QEMU's `sector-length` for the x86 flash).
pub const SECTOR_SIZE: u64 = 4096;
/// Largest store the CFI geometry can describe (65536 sectors).
pub const MAX_SIZE: u64 = SECTOR_SIZE << 16;
/// Manufacturer code returned by Read Identifier (Intel).
pub const MANUFACTURER_ID: u8 = 0x89;
/// Device code returned by Read Identifier (an Intel 28F-series x8 part).
pub const DEVICE_ID: u8 = 0x18;

const CMD_PROGRAM: u8 = 0x10;
const CMD_PROGRAM_ALT: u8 = 0x40;
const CMD_ERASE_SETUP: u8 = 0x20;
const CMD_CLEAR_STATUS: u8 = 0x50;
const CMD_READ_STATUS: u8 = 0x70;
const CMD_READ_ID: u8 = 0x90;
const CMD_CFI_QUERY: u8 = 0x98;
const CMD_ERASE_CONFIRM: u8 = 0xd0;
const CMD_READ_ARRAY: u8 = 0xff;
const CMD_READ_ARRAY_AMD: u8 = 0xf0;
const CMD_READ_ARRAY_QEMU: u8 = 0x00;

/// Status register: the write state machine is ready.
pub const STATUS_READY: u8 = 0x80;
/// Status register: an erase failed.
pub const STATUS_ERASE_ERROR: u8 = 0x20;
/// Status register: a program failed.
pub const STATUS_PROGRAM_ERROR: u8 = 0x10;

/// Errors opening the flash's backing file or preparing it.
#[derive(Debug, thiserror::Error)]
pub enum PflashError {
    /// Creating the NVRAM file's directory failed.
    #[error("unable to create NVRAM directory '{}'", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing the new NVRAM file (temporary file, sync, rename) failed.
    #[error("unable to create NVRAM file '{}'", path.display())]
    CreateVars {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file's size cannot be a flash of 4 KiB sectors.
    #[error(
        "NVRAM file '{}' has {size} bytes: a flash store must be a non-zero multiple of {SECTOR_SIZE} bytes, at most {MAX_SIZE}",
        path.display()
    )]
    Geometry { path: PathBuf, size: u64 },
    /// Another process holds the file (a second VMM on the same domain's NVRAM).
    #[error("NVRAM file '{}' is in use by another process", path.display())]
    Locked { path: PathBuf },
    /// No template to create a missing NVRAM file from.
    #[error("unable to find any master var store for NVRAM file '{}'", path.display())]
    NoTemplate { path: PathBuf },
    /// Opening the NVRAM file failed.
    #[error("unable to open NVRAM file '{}'", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading the NVRAM file failed.
    #[error("unable to read NVRAM file '{}'", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not the size the firmware's layout needs.
    #[error("NVRAM file '{}' has {size} bytes, the firmware expects {expected}", path.display())]
    Size {
        path: PathBuf,
        size: u64,
        expected: u64,
    },
    /// Syncing the file to disk failed.
    #[error("unable to sync NVRAM file '{}'", path.display())]
    Sync {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The template cannot be opened or read.
    #[error("unable to open NVRAM template '{}'", path.display())]
    Template {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What the next guest access means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Reads return the content.
    ReadArray,
    /// Reads return the status register (after 0x70, a program or an erase).
    ReadStatus,
    /// Reads return the identifier codes.
    ReadId,
    /// Reads return the CFI query table.
    CfiQuery,
    /// 0x10/0x40 seen: the next write is the data byte.
    Program,
    /// 0x20 seen: the next write must be 0xD0 to erase the sector.
    EraseSetup,
}

/// The flash device: the store's bytes, the command state, the backing file.
pub struct Pflash {
    path: PathBuf,
    file: File,
    data: Vec<u8>,
    mode: Mode,
    status: u8,
    /// Written to the file since the last sync.
    unsynced: bool,
    /// A write-through failed already (logged once, not per byte).
    io_failed: bool,
}

impl Pflash {
    /// Opens the NVRAM file at `path` read-write and loads it.
    ///
    /// # Arguments
    /// * `path` — the per-domain variable store (create it with [`prepare_vars`]).
    /// * `size_expected` — the size the firmware's flash layout needs, if known (540672
    ///   for Debian's `OVMF_VARS_4M.fd`); a file of another size is refused rather than
    ///   mapped where OVMF would not find its variables.
    pub fn open(path: &Path, size_expected: Option<u64>) -> Result<Pflash, PflashError> {
        let access = crate::files::Access {
            write: true,
            direct: false,
        };
        let mut file = crate::files::open(path, access).map_err(|source| PflashError::Open {
            path: path.to_owned(),
            source,
        })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(PflashError::Locked {
                    path: path.to_owned(),
                })
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(PflashError::Open {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        let read_err = |source| PflashError::Read {
            path: path.to_owned(),
            source,
        };
        let size = file.metadata().map_err(read_err)?.len();
        if let Some(expected) = size_expected {
            if size != expected {
                return Err(PflashError::Size {
                    path: path.to_owned(),
                    size,
                    expected,
                });
            }
        }
        if size == 0 || !size.is_multiple_of(SECTOR_SIZE) || size > MAX_SIZE {
            return Err(PflashError::Geometry {
                path: path.to_owned(),
                size,
            });
        }
        let mut data = Vec::with_capacity(size as usize);
        file.read_to_end(&mut data).map_err(read_err)?;
        if data.len() as u64 != size {
            // The file changed size under us; refuse rather than guess.
            return Err(PflashError::Geometry {
                path: path.to_owned(),
                size: data.len() as u64,
            });
        }
        Ok(Pflash {
            path: path.to_owned(),
            file,
            data,
            mode: Mode::ReadArray,
            status: STATUS_READY,
            unsynced: false,
            io_failed: false,
        })
    }

    /// Size of the store in bytes (the length of its MMIO range).
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }

    /// The NVRAM file behind the device.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Machine reset: back to read-array mode with a ready status, as the part's
    /// RP# pin does. The content is untouched.
    pub fn reset(&mut self) {
        self.mode = Mode::ReadArray;
        self.status = STATUS_READY;
    }

    /// Syncs what the guest wrote to disk (call at power-off; also done on drop).
    pub fn flush(&mut self) -> Result<(), PflashError> {
        if self.unsynced {
            self.file.sync_data().map_err(|source| PflashError::Sync {
                path: self.path.clone(),
                source,
            })?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Writes `data[start..start + len]` through to the file; false on failure.
    fn write_through(&mut self, start: usize, len: usize) -> bool {
        match self
            .file
            .write_all_at(&self.data[start..start + len], start as u64)
        {
            Ok(()) => {
                self.unsynced = true;
                true
            }
            Err(e) => {
                if !self.io_failed {
                    self.io_failed = true;
                    tracing::error!(
                        path = %self.path.display(),
                        error = %e,
                        "cannot write the UEFI variable store; guest changes are kept in memory only"
                    );
                }
                false
            }
        }
    }

    /// Programs `bytes` at `offset`: bits can only be cleared.
    fn program(&mut self, offset: u64, bytes: &[u8]) {
        self.mode = Mode::ReadStatus;
        self.status |= STATUS_READY;
        let Some(start) = usize::try_from(offset)
            .ok()
            .filter(|&s| s < self.data.len())
        else {
            self.status |= STATUS_PROGRAM_ERROR;
            return;
        };
        let len = bytes.len().min(self.data.len() - start);
        let mut changed = false;
        for (old, new) in self.data[start..start + len].iter_mut().zip(bytes) {
            let v = *old & new;
            changed |= v != *old;
            *old = v;
        }
        if changed && !self.write_through(start, len) {
            self.status |= STATUS_PROGRAM_ERROR;
        }
    }

    /// Erases the sector holding `offset`.
    fn erase(&mut self, offset: u64) {
        self.mode = Mode::ReadStatus;
        self.status |= STATUS_READY;
        let start = offset & !(SECTOR_SIZE - 1);
        if start >= self.size() {
            self.status |= STATUS_ERASE_ERROR;
            return;
        }
        let (start, len) = (start as usize, SECTOR_SIZE as usize);
        self.data[start..start + len].fill(0xff);
        if !self.write_through(start, len) {
            self.status |= STATUS_ERASE_ERROR;
        }
    }

    /// A write while no command is pending: the byte is a command.
    fn command(&mut self, cmd: u8) {
        self.mode = match cmd {
            CMD_READ_ARRAY | CMD_READ_ARRAY_AMD | CMD_READ_ARRAY_QEMU => Mode::ReadArray,
            CMD_PROGRAM | CMD_PROGRAM_ALT => Mode::Program,
            CMD_ERASE_SETUP => Mode::EraseSetup,
            CMD_CLEAR_STATUS => {
                // QEMU (and OVMF's detection) want read-array after a clear.
                self.status = 0;
                Mode::ReadArray
            }
            CMD_READ_STATUS => Mode::ReadStatus,
            CMD_READ_ID => Mode::ReadId,
            CMD_CFI_QUERY => Mode::CfiQuery,
            other => {
                tracing::debug!("pflash: unsupported command {other:#04x}, back to read array");
                Mode::ReadArray
            }
        };
    }

    fn read_byte(&self, offset: u64) -> u8 {
        match self.mode {
            Mode::ReadArray => usize::try_from(offset)
                .ok()
                .and_then(|o| self.data.get(o))
                .copied()
                .unwrap_or(0xff),
            // Mid-command reads return the status, as on the real part.
            Mode::ReadStatus | Mode::Program | Mode::EraseSetup => self.status,
            Mode::ReadId => match offset & 0xff {
                0 => MANUFACTURER_ID,
                1 => DEVICE_ID,
                // 2: block lock configuration, 0 = unlocked; the rest reserved.
                _ => 0,
            },
            Mode::CfiQuery => cfi_query(self.size(), (offset & 0xff) as usize),
        }
    }
}

impl Drop for Pflash {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "UEFI variable store not synced at close");
        }
    }
}

impl BusDevice for Pflash {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        if self.mode == Mode::ReadArray {
            // The common case: one copy, 0xFF past the end (a read straddling it).
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let avail = self.data.get(start..).unwrap_or(&[]);
            let n = avail.len().min(data.len());
            data[..n].copy_from_slice(&avail[..n]);
            data[n..].fill(0xff);
            return;
        }
        for (i, d) in data.iter_mut().enumerate() {
            *d = self.read_byte(offset + i as u64);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let Some(&byte) = data.first() else {
            return;
        };
        match self.mode {
            // A wider data write programs every byte of it.
            Mode::Program => self.program(offset, data),
            Mode::EraseSetup => match byte {
                CMD_ERASE_CONFIRM => self.erase(offset),
                CMD_READ_ARRAY => self.mode = Mode::ReadArray,
                _ => {
                    // Improper command sequence: both error bits, status mode.
                    self.status |= STATUS_READY | STATUS_ERASE_ERROR | STATUS_PROGRAM_ERROR;
                    self.mode = Mode::ReadStatus;
                }
            },
            Mode::ReadArray | Mode::ReadStatus | Mode::ReadId | Mode::CfiQuery => {
                self.command(byte)
            }
        }
    }
}

/// Byte `index` of the CFI query table of a `size`-byte, one-region, x8-only flash
/// with Intel/Sharp commands and no write buffer (JEDEC JESD68, Intel AP-646).
fn cfi_query(size: u64, index: usize) -> u8 {
    let blocks_minus_one = (size / SECTOR_SIZE).saturating_sub(1) as u16;
    let sector_256 = (SECTOR_SIZE / 256) as u16;
    // Device size as a power of two, rounded up (the store need not be one).
    let size_log2 = size.next_power_of_two().trailing_zeros() as u8;
    match index {
        0x10 => b'Q',
        0x11 => b'R',
        0x12 => b'Y',
        0x13 => 0x01, // primary command set: Intel/Sharp extended (0x0001)
        0x14 => 0x00,
        0x15 => 0x31, // primary extended table at 0x31
        0x16 => 0x00,
        0x17..=0x1a => 0x00, // no alternate command set
        0x1b => 0x45,        // Vcc min 4.5 V
        0x1c => 0x55,        // Vcc max 5.5 V
        0x1d | 0x1e => 0x00, // no Vpp
        0x1f => 0x07,        // typical byte program: 2^7 us
        0x20 => 0x00,        // no buffered write
        0x21 => 0x07,        // typical sector erase: 2^7 ms
        0x22 => 0x00,        // no chip erase
        0x23 => 0x04,        // max program: 2^4 x typical
        0x24 => 0x00,
        0x25 => 0x04, // max erase: 2^4 x typical
        0x26 => 0x00,
        0x27 => size_log2,
        0x28 | 0x29 => 0x00, // interface: x8 asynchronous
        0x2a | 0x2b => 0x00, // no multi-byte write
        0x2c => 0x01,        // one erase region
        0x2d => blocks_minus_one as u8,
        0x2e => (blocks_minus_one >> 8) as u8,
        0x2f => sector_256 as u8,
        0x30 => (sector_256 >> 8) as u8,
        0x31 => b'P', // primary extended query table
        0x32 => b'R',
        0x33 => b'I',
        0x34 => b'1', // version 1.0
        0x35 => b'0',
        0x36..=0x3c => 0x00, // no optional features, no block status bits
        0x3d => 0x50,        // Vcc optimum 5.0 V
        _ => 0x00,
    }
}

/// Creates the per-domain variable store `vars` from `template` if it does not exist
/// yet (libvirt does this at every start, `qemuPrepareNVRAMFile`); an existing file is
/// left as it is, whatever its content.
///
/// The copy is atomic: a temporary file in the same directory, written, synced and
/// renamed into place, so a crash never leaves a half-copied store that a later
/// start would take for the real one. A missing directory is created with mode 0700
/// (the store holds the guest's secrets: boot entries, keys).
pub fn prepare_vars(vars: &Path, template: Option<&Path>) -> Result<(), PflashError> {
    if vars.exists() {
        return Ok(());
    }
    let Some(template) = template else {
        return Err(PflashError::NoTemplate {
            path: vars.to_owned(),
        });
    };
    let template_err = |source| PflashError::Template {
        path: template.to_owned(),
        source,
    };
    let mut content = Vec::new();
    File::open(template)
        .and_then(|mut f| f.read_to_end(&mut content))
        .map_err(template_err)?;

    let dir = match vars.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| PflashError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;

    let create_err = |source| PflashError::CreateVars {
        path: vars.to_owned(),
        source,
    };
    let file_name = vars
        .file_name()
        .ok_or_else(|| create_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&content)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, vars));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(create_err(e));
    }
    // Make the rename itself durable.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's `OVMF_VARS_4M.fd` size.
    const VARS_4M: u64 = 0x84000;

    fn store(dir: &tempfile::TempDir, content: &[u8]) -> PathBuf {
        let p = dir.path().join("dom_VARS.fd");
        std::fs::write(&p, content).unwrap();
        p
    }

    fn read(f: &mut Pflash, offset: u64) -> u8 {
        let mut b = [0u8];
        f.read(0, offset, &mut b);
        b[0]
    }

    fn write(f: &mut Pflash, offset: u64, v: u8) {
        f.write(0, offset, &[v]);
    }

    /// `QemuFlashDetected` of edk2-stable202211, step by step; true = "behaves as FLASH".
    fn ovmf_detect(f: &mut Pflash) -> bool {
        let probe = (0..SECTOR_SIZE)
            .find(|&o| ![0x00, CMD_CLEAR_STATUS, CMD_READ_STATUS].contains(&read(f, o)));
        let Some(o) = probe else {
            return false;
        };
        let original = read(f, o);
        write(f, o, CMD_CLEAR_STATUS);
        if original != CMD_CLEAR_STATUS && read(f, o) == CMD_CLEAR_STATUS {
            return false; // RAM
        }
        write(f, o, CMD_READ_STATUS);
        let flash = read(f, o) == 0x00;
        if flash {
            write(f, o, CMD_READ_ARRAY);
        }
        flash
    }

    /// `QemuFlashWrite`: 0x10 + data per byte, then read array at the last byte.
    fn ovmf_write(f: &mut Pflash, offset: u64, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            write(f, offset + i as u64, CMD_PROGRAM);
            write(f, offset + i as u64, b);
        }
        if !bytes.is_empty() {
            write(f, offset + bytes.len() as u64 - 1, CMD_READ_ARRAY);
        }
    }

    /// `QemuFlashEraseBlock`: 0x20, 0xD0 at the block's start, nothing after.
    fn ovmf_erase(f: &mut Pflash, lba: u64) {
        write(f, lba * SECTOR_SIZE, CMD_ERASE_SETUP);
        write(f, lba * SECTOR_SIZE, CMD_ERASE_CONFIRM);
    }

    #[test]
    fn ovmf_detects_flash() {
        // Arrange: a store starting like an FV header (zero vector first).
        let dir = tempfile::tempdir().unwrap();
        let mut content = vec![0xffu8; VARS_4M as usize];
        content[..16].fill(0);
        content[16] = 0x8d;
        let mut f = Pflash::open(&store(&dir, &content), Some(VARS_4M)).unwrap();
        // Act + assert: detection passes and leaves the flash readable and unchanged.
        assert!(ovmf_detect(&mut f));
        assert_eq!(read(&mut f, 16), 0x8d);
        drop(f);
        assert_eq!(
            std::fs::read(dir.path().join("dom_VARS.fd")).unwrap(),
            content
        );
    }

    #[test]
    fn ovmf_sequence_persists_across_reopen() {
        // Arrange: an erased store the size of Debian's.
        let dir = tempfile::tempdir().unwrap();
        let path = store(&dir, &vec![0xff; VARS_4M as usize]);
        let mut f = Pflash::open(&path, Some(VARS_4M)).unwrap();
        assert!(ovmf_detect(&mut f));

        // Act: thousands of byte programs across three sectors (a variable store
        // header and a few variables), then erase the middle sector (what the FTW
        // reclaim does) and rewrite part of it, then read back over the bus.
        let payload: Vec<u8> = (0..3 * SECTOR_SIZE as usize)
            .map(|i| (i * 7 + 3) as u8)
            .collect();
        ovmf_write(&mut f, 0, &payload);
        ovmf_erase(&mut f, 1);
        // Status mode until the next command, ready, no error.
        assert_eq!(read(&mut f, SECTOR_SIZE), STATUS_READY);
        ovmf_write(&mut f, SECTOR_SIZE + 100, b"BootOrder");
        let mut expected = vec![0xffu8; VARS_4M as usize];
        expected[..payload.len()].copy_from_slice(&payload);
        expected[SECTOR_SIZE as usize..2 * SECTOR_SIZE as usize].fill(0xff);
        expected[SECTOR_SIZE as usize + 100..][..9].copy_from_slice(b"BootOrder");
        let mut back = vec![0u8; VARS_4M as usize];
        for (i, chunk) in back.chunks_mut(8).enumerate() {
            f.read(0, i as u64 * 8, chunk);
        }
        assert_eq!(back, expected);

        // Assert: the file has it even before a sync (what a killed VMM leaves) ...
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        // ... and a new VMM sees the same store.
        drop(f);
        let mut f = Pflash::open(&path, Some(VARS_4M)).unwrap();
        assert!(ovmf_detect(&mut f));
        let mut back = vec![0u8; VARS_4M as usize];
        f.read(0, 0, &mut back);
        assert_eq!(back, expected);
    }

    #[test]
    fn program_only_clears_bits() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Pflash::open(&store(&dir, &[0xf0; 4096]), None).unwrap();
        write(&mut f, 5, CMD_PROGRAM_ALT);
        write(&mut f, 5, 0x3c);
        write(&mut f, 0, CMD_READ_ARRAY);
        assert_eq!(read(&mut f, 5), 0x30);
        assert_eq!(read(&mut f, 4), 0xf0);
    }

    #[test]
    fn status_reads_ready_then_zero_after_clear() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Pflash::open(&store(&dir, &[0xff; 4096]), None).unwrap();
        write(&mut f, 0, CMD_READ_STATUS);
        let mut four = [0u8; 4];
        f.read(0, 0, &mut four);
        assert_eq!(four, [STATUS_READY; 4]);
        // Status mode stays until the next command.
        assert_eq!(read(&mut f, 9), STATUS_READY);
        write(&mut f, 0, CMD_CLEAR_STATUS);
        // A clear returns to read array ...
        assert_eq!(read(&mut f, 0), 0xff);
        // ... and the status reads 0 until the next operation.
        write(&mut f, 0, CMD_READ_STATUS);
        assert_eq!(read(&mut f, 0), 0x00);
        write(&mut f, 0, CMD_PROGRAM);
        write(&mut f, 0, 0x00);
        assert_eq!(read(&mut f, 0), STATUS_READY);
    }

    #[test]
    fn bad_erase_confirm_sets_sequence_error_and_erases_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Pflash::open(&store(&dir, &[0x12; 8192]), None).unwrap();
        write(&mut f, 4096, CMD_ERASE_SETUP);
        write(&mut f, 4096, 0x42);
        assert_eq!(
            read(&mut f, 4096),
            STATUS_READY | STATUS_ERASE_ERROR | STATUS_PROGRAM_ERROR
        );
        write(&mut f, 0, CMD_READ_ARRAY);
        assert_eq!(read(&mut f, 4096), 0x12);
        // 0xFF instead of the confirm aborts quietly.
        write(&mut f, 0, CMD_CLEAR_STATUS);
        write(&mut f, 0, CMD_ERASE_SETUP);
        write(&mut f, 0, CMD_READ_ARRAY);
        assert_eq!(read(&mut f, 0), 0x12);
    }

    #[test]
    fn erase_at_any_offset_in_a_sector_erases_that_sector_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = store(&dir, &[0u8; 3 * 4096]);
        let mut f = Pflash::open(&path, None).unwrap();
        write(&mut f, 4096 + 77, CMD_ERASE_SETUP);
        write(&mut f, 4096 + 77, CMD_ERASE_CONFIRM);
        write(&mut f, 0, CMD_READ_ARRAY);
        let on_disk = std::fs::read(&path).unwrap();
        assert!(on_disk[..4096].iter().all(|&b| b == 0));
        assert!(on_disk[4096..8192].iter().all(|&b| b == 0xff));
        assert!(on_disk[8192..].iter().all(|&b| b == 0));
        assert_eq!(read(&mut f, 5000), 0xff);
    }

    #[test]
    fn identifier_and_cfi_query_answer() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Pflash::open(&store(&dir, &vec![0xff; VARS_4M as usize]), None).unwrap();
        write(&mut f, 0, CMD_READ_ID);
        assert_eq!(read(&mut f, 0), MANUFACTURER_ID);
        assert_eq!(read(&mut f, 1), DEVICE_ID);
        assert_eq!(read(&mut f, 2), 0);
        write(&mut f, 0x55, CMD_CFI_QUERY);
        let q: Vec<u8> = (0x10..0x13).map(|o| read(&mut f, o)).collect();
        assert_eq!(q, b"QRY");
        let blocks = u16::from_le_bytes([read(&mut f, 0x2d), read(&mut f, 0x2e)]) as u64 + 1;
        let sector = u16::from_le_bytes([read(&mut f, 0x2f), read(&mut f, 0x30)]) as u64 * 256;
        assert_eq!(blocks * sector, VARS_4M);
        assert!(1u64 << read(&mut f, 0x27) >= VARS_4M);
        write(&mut f, 0, CMD_READ_ARRAY);
        assert_eq!(read(&mut f, 0x10), 0xff);
    }

    #[test]
    fn reads_past_the_end_and_unknown_commands_are_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Pflash::open(&store(&dir, &[0x11; 4096]), None).unwrap();
        let mut b = [0u8; 8];
        f.read(0, 4092, &mut b);
        assert_eq!(b, [0x11, 0x11, 0x11, 0x11, 0xff, 0xff, 0xff, 0xff]);
        f.read(0, u64::MAX, &mut b);
        assert_eq!(b, [0xff; 8]);
        // A program at the very end writes only what fits.
        f.write(0, 4095, &[CMD_PROGRAM]);
        f.write(0, 4095, &[0x01, 0x00, 0x00]);
        write(&mut f, 0, 0xe8); // write-to-buffer: unsupported
        assert_eq!(read(&mut f, 4095), 0x01);
        f.write(0, 0, &[]);
        write(&mut f, 0, CMD_PROGRAM);
        f.write(0, u64::MAX, &[0]);
        assert_eq!(read(&mut f, 0), STATUS_READY | STATUS_PROGRAM_ERROR);
    }

    #[test]
    fn reset_returns_to_read_array() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Pflash::open(&store(&dir, &[0x22; 4096]), None).unwrap();
        write(&mut f, 0, CMD_CLEAR_STATUS);
        write(&mut f, 0, CMD_READ_STATUS);
        f.reset();
        assert_eq!(read(&mut f, 0), 0x22);
        write(&mut f, 0, CMD_READ_STATUS);
        assert_eq!(read(&mut f, 0), STATUS_READY);
    }

    #[test]
    fn open_refuses_bad_sizes_missing_files_and_a_second_user() {
        let dir = tempfile::tempdir().unwrap();
        let p = store(&dir, &[0xff; 4096]);
        assert!(matches!(
            Pflash::open(&p, Some(VARS_4M)),
            Err(PflashError::Size {
                size: 4096,
                expected: VARS_4M,
                ..
            })
        ));
        let odd = dir.path().join("odd.fd");
        std::fs::write(&odd, [0u8; 100]).unwrap();
        let e = Pflash::open(&odd, None).err().unwrap();
        assert!(matches!(e, PflashError::Geometry { size: 100, .. }));
        assert!(e.to_string().contains("odd.fd"));
        let empty = dir.path().join("empty.fd");
        std::fs::write(&empty, []).unwrap();
        assert!(matches!(
            Pflash::open(&empty, None),
            Err(PflashError::Geometry { size: 0, .. })
        ));
        let e = Pflash::open(&dir.path().join("nope.fd"), None)
            .err()
            .unwrap();
        assert!(matches!(e, PflashError::Open { .. }));
        assert!(e.to_string().contains("nope.fd"), "{e}");

        let first = Pflash::open(&p, None).unwrap();
        let e = Pflash::open(&p, None).err().unwrap();
        assert!(matches!(e, PflashError::Locked { .. }), "{e}");
        drop(first);
        assert!(Pflash::open(&p, None).is_ok());
    }

    #[test]
    fn prepare_vars_copies_the_template_once() {
        // Arrange: a template, and a per-domain path in a directory that does not exist.
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("OVMF_VARS_4M.fd");
        std::fs::write(&template, [0x5a; 8192]).unwrap();
        let nvram_dir = dir.path().join("nvram");
        let vars = nvram_dir.join("guest_VARS.fd");

        // Act
        prepare_vars(&vars, Some(&template)).unwrap();

        // Assert: the copy, a private directory, no temporary left behind.
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::read(&vars).unwrap(), vec![0x5a; 8192]);
        let mode = std::fs::metadata(&nvram_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let names: Vec<_> = std::fs::read_dir(&nvram_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("guest_VARS.fd")]);

        // An existing store is kept, even without a template (guest state wins).
        std::fs::write(&vars, [1u8; 4096]).unwrap();
        prepare_vars(&vars, Some(&template)).unwrap();
        prepare_vars(&vars, None).unwrap();
        assert_eq!(std::fs::read(&vars).unwrap(), vec![1u8; 4096]);
    }

    #[test]
    fn prepare_vars_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let vars = dir.path().join("guest_VARS.fd");
        let e = prepare_vars(&vars, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "unable to find any master var store for NVRAM file '{}'",
                vars.display()
            )
        );
        let missing = dir.path().join("missing_VARS.fd");
        let e = prepare_vars(&vars, Some(&missing)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("unable to open NVRAM template '{}'", missing.display())
        );
        assert!(!vars.exists());
        // A directory that cannot be created (its parent is a file).
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"x").unwrap();
        let template = dir.path().join("t.fd");
        std::fs::write(&template, [0u8; 4096]).unwrap();
        let e = prepare_vars(&blocker.join("sub/guest_VARS.fd"), Some(&template)).unwrap_err();
        assert!(matches!(e, PflashError::CreateDir { .. }), "{e}");
    }
}
