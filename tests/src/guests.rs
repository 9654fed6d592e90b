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
    })
}
