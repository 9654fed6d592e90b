//! The cache directory for built guests and downloaded kernels (outside the source tree).

use std::path::{Path, PathBuf};

/// `${OXVIRT_CACHE:-$HOME/.cache/oxvirt}`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("OXVIRT_CACHE") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    Path::new(&home).join(".cache/oxvirt")
}

/// FNV-1a, 64 bits: a stable hash for cache keys (std's hasher may change between releases).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// Fills `final_dir` by running `fill` on a private temporary directory next to it and
/// renaming that into place, so concurrent test processes never see half a result.
pub fn build_once(
    final_dir: &Path,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if final_dir.is_dir() {
        return Ok(());
    }
    let parent = final_dir.parent().expect("cache entries have a parent");
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".building-")
        .tempdir_in(parent)?;
    fill(tmp.path())?;
    let tmp = tmp.keep();
    if std::fs::rename(&tmp, final_dir).is_err() {
        // Another process won the race; its result is as good as ours.
        let _ = std::fs::remove_dir_all(&tmp);
        anyhow::ensure!(
            final_dir.is_dir(),
            "cannot create cache entry {}",
            final_dir.display()
        );
    }
    Ok(())
}
