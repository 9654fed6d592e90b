//! The domain log kept after its VMM stops: `<runtime>/log/NAME.log` holds the
//! VMM's stderr (its `log` in the runtime dir) of the domain's last run, as libvirt
//! keeps `/var/log/libvirt/qemu/NAME.log`. It is where a crash's cause stays
//! readable once the runtime dir is gone: a seccomp kill names the forbidden
//! system call there, a failed start its error.

use std::path::{Path, PathBuf};

use crate::core::error::Result;
use crate::core::fsutil;
use crate::core::runtime::RuntimeDir;

/// The kept log of domain `name` under the runtime root.
pub fn path(runtime_root: &Path, name: &str) -> PathBuf {
    runtime_root.join("log").join(format!("{name}.log"))
}

/// Copies the log of the run in `rt` to the kept log (replacing the previous
/// run's) and returns its last line, for the daemon's own log.
pub(in crate::core) fn keep(
    runtime_root: &Path,
    name: &str,
    rt: &RuntimeDir,
) -> Result<Option<String>> {
    let text = std::fs::read(rt.log()).unwrap_or_default();
    let dir = runtime_root.join("log");
    fsutil::create_dir(&dir, 0o700)?;
    fsutil::write_atomic(&path(runtime_root, name), &text, 0o600)?;
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_runs_log_outlives_the_runtime_dir() {
        let root = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::new(root.path(), "vm1");
        rt.create().unwrap();
        std::fs::write(rt.log(), "starting\nkilled: seccomp\n\n").unwrap();
        let last = keep(root.path(), "vm1", &rt).unwrap();
        rt.remove().unwrap();
        assert_eq!(last.as_deref(), Some("killed: seccomp"));
        let kept = std::fs::read_to_string(path(root.path(), "vm1")).unwrap();
        assert_eq!(kept, "starting\nkilled: seccomp\n\n");
        // The next run replaces it.
        rt.create().unwrap();
        std::fs::write(rt.log(), "second run\n").unwrap();
        keep(root.path(), "vm1", &rt).unwrap();
        let kept = std::fs::read_to_string(path(root.path(), "vm1")).unwrap();
        assert_eq!(kept, "second run\n");
    }

    #[test]
    fn a_missing_run_log_keeps_an_empty_one() {
        let root = tempfile::tempdir().unwrap();
        let rt = RuntimeDir::new(root.path(), "vm2");
        assert_eq!(keep(root.path(), "vm2", &rt).unwrap(), None);
        assert!(path(root.path(), "vm2").exists());
    }
}
