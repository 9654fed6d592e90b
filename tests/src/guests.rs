//! Our own test guests, built from `tests/guests/` with the machine's gcc and binutils.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::Context;

use crate::cache::{build_once, cache_dir, Fnv};

/// The oxtest guest in both entry formats (same code, see `tests/guests/guest.c`).
#[derive(Debug, Clone)]
pub struct TestGuests {
    /// ELF64 with a PVH note: the PVH entry path.
    pub elf: PathBuf,
    /// bzImage (boot protocol 2.15, XLF_KERNEL_64): the 64-bit Linux entry path.
    pub bzimage: PathBuf,
    /// A 512-byte BIOS boot sector (`guests/bootsector/boot.S`); see [`boot_disk`].
    pub bootsector: PathBuf,
    /// A UEFI application (PE32+, `guests/efi/oxefi.c`); see [`esp_disk`].
    pub efi: PathBuf,
    /// A 64 KiB firmware image (`guests/flashtest/flashtest.S`) that checks the CFI flash
    /// below it (the UEFI variable store) from the reset vector; see `tests/vmm_flash.rs`.
    pub flashtest: PathBuf,
}

/// Where the guest sources are.
pub fn guest_sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guests")
}

/// Hash of every file under `tests/guests/` (relative paths and contents): the cache key.
fn sources_hash(dir: &Path) -> anyhow::Result<String> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.sort();
    let mut h = Fnv::default();
    for rel in files {
        h.write(rel.as_os_str().as_encoded_bytes());
        h.write(&[0]);
        h.write(&std::fs::read(dir.join(&rel))?);
    }
    Ok(h.hex())
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            collect_files(root, &e.path(), out)?;
        } else if t.is_file() {
            out.push(e.path().strip_prefix(root)?.to_path_buf());
        }
    }
    Ok(())
}

/// Builds the test guests once per source change and returns their paths. Panics with
/// the compiler's output when the build fails (a broken guest is a test failure).
pub fn test_guests() -> &'static TestGuests {
    static GUESTS: OnceLock<TestGuests> = OnceLock::new();
    GUESTS.get_or_init(|| {
        build_guests().unwrap_or_else(|e| panic!("building the test guests: {e:#}"))
    })
}

fn build_guests() -> anyhow::Result<TestGuests> {
    let src = guest_sources();
    let dir = cache_dir().join("guests").join(sources_hash(&src)?);
    build_once(&dir, |tmp| {
        let out = Command::new("bash")
            .arg(src.join("build.sh"))
            .arg(tmp)
            .output()
            .context("running tests/guests/build.sh (needs bash, gcc, binutils)")?;
        anyhow::ensure!(
            out.status.success(),
            "tests/guests/build.sh failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    })?;
    Ok(TestGuests {
        elf: dir.join("oxtest.elf"),
        bzimage: dir.join("oxtest.bzImage"),
        bootsector: dir.join("bootsector.bin"),
        efi: dir.join("oxefi.efi"),
        flashtest: dir.join("flashtest.rom"),
    })
}

/// Writes a 1 MiB raw disk image at `path` that a BIOS boots: the test boot sector,
/// then `OXBOOT-DATA tag=<tag>` in LBA 1, which the boot sector reads through INT 13h
/// and prints, so a test sees which disk booted and that the firmware's disk I/O works.
pub fn boot_disk(path: &Path, tag: &str) -> anyhow::Result<()> {
    let mut img = std::fs::read(&test_guests().bootsector).context("reading bootsector.bin")?;
    anyhow::ensure!(img.len() == 512, "bootsector.bin is not 512 bytes");
    let mut data = format!("OXBOOT-DATA tag={tag}").into_bytes();
    data.resize(512, 0);
    img.extend_from_slice(&data);
    img.resize(1 << 20, 0);
    std::fs::write(path, img).with_context(|| format!("writing {}", path.display()))
}

/// Writes a raw disk image at `path` that UEFI firmware boots from its removable-media
/// path: an MBR with one EFI system partition (type 0xEF, LBA 2048, 4 MiB, FAT12)
/// holding `\EFI\BOOT\BOOTX64.EFI` = `oxefi.efi` (see `guests/efi/oxefi.c` for what it
/// prints). Written here without tools (so it works inside the nested SVM guest too).
pub fn esp_disk(path: &Path) -> anyhow::Result<()> {
    let app = std::fs::read(&test_guests().efi).context("reading oxefi.efi")?;
    let img = esp_image(&app)?;
    std::fs::write(path, img).with_context(|| format!("writing {}", path.display()))
}

const SECTOR: usize = 512;
/// Where the ESP starts (1 MiB, as partitioning tools align) and its size in sectors.
const ESP_START: u32 = 2048;
const ESP_SECTORS: u32 = 8192;

/// The whole disk image: MBR + the FAT12 ESP holding `bootx64` as the removable-media
/// boot file.
pub fn esp_image(bootx64: &[u8]) -> anyhow::Result<Vec<u8>> {
    let fs = fat12_esp(bootx64)?;
    let mut img = vec![0u8; ESP_START as usize * SECTOR];
    // The MBR: disk signature, one partition entry, 0x55AA. The CHS fields hold the
    // "use the LBA fields" values (0xfe, 0xff, 0xff) partitioning tools write for large
    // disks; UEFI reads only the LBA fields.
    img[440..444].copy_from_slice(&0x4f58_4546u32.to_le_bytes());
    let e = &mut img[446..462];
    e[0] = 0x00; // not active: UEFI does not look
    e[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[4] = 0xef; // EFI system partition
    e[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    e[8..12].copy_from_slice(&ESP_START.to_le_bytes());
    e[12..16].copy_from_slice(&ESP_SECTORS.to_le_bytes());
    img[510] = 0x55;
    img[511] = 0xaa;
    img.extend_from_slice(&fs);
    Ok(img)
}

/// A FAT12 file system of [`ESP_SECTORS`] sectors with `\EFI\BOOT\BOOTX64.EFI`.
/// Layout: boot sector (BPB), two FATs, a 512-entry root directory, then 2 KiB
/// clusters: 2 = `\EFI`, 3 = `\EFI\BOOT`, 4.. = the file.
fn fat12_esp(file: &[u8]) -> anyhow::Result<Vec<u8>> {
    const PER_CLUSTER: usize = 4; // sectors per cluster
    const ROOT_ENTRIES: usize = 512;
    const FAT_SECTORS: usize = 6;
    let root_sectors = ROOT_ENTRIES * 32 / SECTOR;
    let total = ESP_SECTORS as usize;
    let data_start = 1 + 2 * FAT_SECTORS + root_sectors;
    let clusters = (total - data_start) / PER_CLUSTER;
    // FAT12: fewer than 4085 clusters, 1.5 bytes of FAT per cluster (+2 reserved).
    assert!(clusters < 4085 && (clusters + 2) * 3 / 2 <= FAT_SECTORS * SECTOR);
    let cluster_bytes = PER_CLUSTER * SECTOR;
    let file_clusters = file.len().div_ceil(cluster_bytes).max(1);
    anyhow::ensure!(
        2 + file_clusters <= clusters,
        "{} bytes do not fit the ESP",
        file.len()
    );

    let mut fs = vec![0u8; total * SECTOR];
    // Boot sector with the DOS 4.0 extended BPB.
    let b = &mut fs[..SECTOR];
    b[0..3].copy_from_slice(&[0xeb, 0x3c, 0x90]);
    b[3..11].copy_from_slice(b"OXVIRT  ");
    b[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    b[13] = PER_CLUSTER as u8;
    b[14..16].copy_from_slice(&1u16.to_le_bytes()); // reserved sectors
    b[16] = 2; // FATs
    b[17..19].copy_from_slice(&(ROOT_ENTRIES as u16).to_le_bytes());
    b[19..21].copy_from_slice(&(total as u16).to_le_bytes());
    b[21] = 0xf8; // media: fixed disk
    b[22..24].copy_from_slice(&(FAT_SECTORS as u16).to_le_bytes());
    b[24..26].copy_from_slice(&32u16.to_le_bytes()); // sectors per track
    b[26..28].copy_from_slice(&64u16.to_le_bytes()); // heads
    b[28..32].copy_from_slice(&ESP_START.to_le_bytes()); // hidden sectors
    b[36] = 0x80; // drive number
    b[38] = 0x29; // extended boot signature: the next three fields are valid
    b[39..43].copy_from_slice(&0x4f58_4546u32.to_le_bytes()); // volume serial
    b[43..54].copy_from_slice(b"OXEFI      ");
    b[54..62].copy_from_slice(b"FAT12   ");
    b[510] = 0x55;
    b[511] = 0xaa;

    // The FAT: media byte entries, the two directories, the file's chain.
    let mut fat = vec![0u8; FAT_SECTORS * SECTOR];
    let mut set = |n: usize, v: u16| {
        let o = n * 3 / 2;
        if n.is_multiple_of(2) {
            fat[o] = v as u8;
            fat[o + 1] = (fat[o + 1] & 0xf0) | ((v >> 8) as u8 & 0x0f);
        } else {
            fat[o] = (fat[o] & 0x0f) | ((v as u8 & 0x0f) << 4);
            fat[o + 1] = (v >> 4) as u8;
        }
    };
    set(0, 0xff8);
    set(1, 0xfff);
    set(2, 0xfff);
    set(3, 0xfff);
    for i in 0..file_clusters {
        let c = 4 + i;
        set(
            c,
            if i + 1 == file_clusters {
                0xfff
            } else {
                c as u16 + 1
            },
        );
    }
    for copy in 0..2 {
        let at = (1 + copy * FAT_SECTORS) * SECTOR;
        fs[at..at + fat.len()].copy_from_slice(&fat);
    }

    let root = (1 + 2 * FAT_SECTORS) * SECTOR;
    let cluster = |n: usize| (data_start + (n - 2) * PER_CLUSTER) * SECTOR;
    let dirent = |name: &[u8; 11], attr: u8, first: u16, size: u32| {
        let mut d = [0u8; 32];
        d[..11].copy_from_slice(name);
        d[11] = attr;
        // 2026-01-01 00:00 as creation, access and write date.
        let date: u16 = ((2026 - 1980) << 9) | (1 << 5) | 1;
        d[16..18].copy_from_slice(&date.to_le_bytes());
        d[18..20].copy_from_slice(&date.to_le_bytes());
        d[24..26].copy_from_slice(&date.to_le_bytes());
        d[26..28].copy_from_slice(&first.to_le_bytes());
        d[28..32].copy_from_slice(&size.to_le_bytes());
        d
    };
    const DIR: u8 = 0x10;
    const ARCHIVE: u8 = 0x20;
    const VOLUME_ID: u8 = 0x08;
    let entries: [(usize, [u8; 32]); 8] = [
        // The label again, as a root entry (the boot sector's copy alone is stale to fsck).
        (root, dirent(b"OXEFI      ", VOLUME_ID, 0, 0)),
        (root + 32, dirent(b"EFI        ", DIR, 2, 0)),
        (cluster(2), dirent(b".          ", DIR, 2, 0)),
        (cluster(2) + 32, dirent(b"..         ", DIR, 0, 0)),
        (cluster(2) + 64, dirent(b"BOOT       ", DIR, 3, 0)),
        (cluster(3), dirent(b".          ", DIR, 3, 0)),
        (cluster(3) + 32, dirent(b"..         ", DIR, 2, 0)),
        (
            cluster(3) + 64,
            dirent(b"BOOTX64 EFI", ARCHIVE, 4, file.len() as u32),
        ),
    ];
    for (at, d) in entries {
        fs[at..at + 32].copy_from_slice(&d);
    }
    fs[cluster(4)..cluster(4) + file.len()].copy_from_slice(file);
    Ok(fs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ESP checked by the FAT tools (dosfstools' fsck.fat, mtools' mtype), where
    /// they are installed: the file reads back whole at `\EFI\BOOT\BOOTX64.EFI`.
    #[test]
    fn esp_image_is_a_clean_fat_file_system_with_the_boot_file() {
        let file: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 256) as u8).collect();
        let img = esp_image(&file).unwrap();
        assert_eq!(img.len(), (ESP_START + ESP_SECTORS) as usize * SECTOR);
        assert_eq!(&img[510..512], &[0x55, 0xaa]);
        assert_eq!(img[446 + 4], 0xef);
        let fsck = ["/usr/sbin/fsck.fat", "/sbin/fsck.fat"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let mtype = Path::new("/usr/bin/mtype");
        if fsck.is_none() || !mtype.exists() {
            crate::skip(
                "esp_image_is_a_clean_fat_file_system_with_the_boot_file",
                "fsck.fat or mtype missing (apt-get install dosfstools mtools): \
                 the FAT layout was not cross-checked",
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("esp.fat");
        std::fs::write(&part, &img[ESP_START as usize * SECTOR..]).unwrap();
        let out = Command::new(fsck.unwrap())
            .arg("-n")
            .arg(&part)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fsck.fat -n: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // mtools on the whole disk: `@@offset` skips the MBR.
        let disk = dir.path().join("esp.img");
        std::fs::write(&disk, &img).unwrap();
        let out = Command::new(mtype)
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(format!(
                "{}@@{}",
                disk.display(),
                ESP_START as usize * SECTOR
            ))
            .arg("::/EFI/BOOT/BOOTX64.EFI")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mtype: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout == file, "BOOTX64.EFI read back differs");
    }
}
