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
