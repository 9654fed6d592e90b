//! The persistent domain store: one `NAME.xml` per defined domain in the domains
//! dir, and an `autostart/NAME.xml` symlink per autostart domain (libvirt's layout).

use std::fs;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::fsutil;

/// Persistent definitions on disk.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        fsutil::create_dir(dir, 0o700)?;
        fsutil::create_dir(&dir.join("autostart"), 0o700)?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// The definition file of `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.xml"))
    }

    fn autostart_link(&self, name: &str) -> PathBuf {
        self.dir.join("autostart").join(format!("{name}.xml"))
    }

    /// Every stored definition: `(file, xml)`, in name order.
    pub fn load_all(&self) -> Result<Vec<(PathBuf, String)>> {
        let mut out = Vec::new();
        let entries =
            fs::read_dir(&self.dir).map_err(|e| Error::io("read directory", &self.dir, &e))?;
        for entry in entries {
            let path = entry
                .map_err(|e| Error::io("read directory", &self.dir, &e))?
                .path();
            if path.extension().is_some_and(|x| x == "xml") && path.is_file() {
                let xml =
                    fs::read_to_string(&path).map_err(|e| Error::io("read file", &path, &e))?;
                out.push((path, xml));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Writes `name`'s definition atomically.
    pub fn save(&self, name: &str, xml: &str) -> Result<()> {
        fsutil::write_atomic(&self.path(name), xml.as_bytes(), 0o600)
    }

    /// Removes `name`'s definition and autostart link.
    pub fn remove(&self, name: &str) -> Result<()> {
        fsutil::remove_file(&self.autostart_link(name))?;
        fsutil::remove_file(&self.path(name))
    }

    /// Whether `name` starts with the daemon.
    pub fn autostart(&self, name: &str) -> bool {
        self.autostart_link(name).symlink_metadata().is_ok()
    }

    /// Creates or removes `name`'s autostart link.
    pub fn set_autostart(&self, name: &str, on: bool) -> Result<()> {
        let link = self.autostart_link(name);
        if !on {
            return fsutil::remove_file(&link);
        }
        if self.autostart(name) {
            return Ok(());
        }
        std::os::unix::fs::symlink(self.path(name), &link)
            .map_err(|e| Error::io("create symlink", &link, &e))
    }

    /// Moves `old`'s definition (and autostart link) to `new`, writing `xml` as the
    /// new content first so a crash in between leaves a complete definition.
    pub fn rename(&self, old: &str, new: &str, xml: &str) -> Result<()> {
        let autostart = self.autostart(old);
        self.save(new, xml)?;
        self.remove(old)?;
        self.set_autostart(new, autostart)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.save("b", "<domain>b</domain>").unwrap();
        s.save("a", "<domain>a</domain>").unwrap();
        let all = s.load_all().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1, "<domain>a</domain>");
        s.remove("a").unwrap();
        assert_eq!(s.load_all().unwrap().len(), 1);
    }

    #[test]
    fn autostart_is_a_link_that_follows_renames() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.save("a", "x").unwrap();
        assert!(!s.autostart("a"));
        s.set_autostart("a", true).unwrap();
        s.set_autostart("a", true).unwrap();
        assert!(s.autostart("a"));
        s.rename("a", "b", "y").unwrap();
        assert!(s.autostart("b"));
        assert!(!s.autostart("a"));
        assert!(!s.path("a").exists());
        assert_eq!(fs::read_to_string(s.path("b")).unwrap(), "y");
        s.set_autostart("b", false).unwrap();
        assert!(!s.autostart("b"));
    }
}
