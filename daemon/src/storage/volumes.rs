//! Volume operations of the storage driver: listing and lookups (by name in an active
//! pool, by key or path across pools), create (from XML, or as a copy of another
//! volume), delete, wipe, resize, and the files behind upload, download and
//! `<disk type='volume'>`. File work runs on blocking threads under the driver's job lock.

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::vol_xml::{VolFormat, VolInfo, VolRequest};
use super::{blocking, flags, image, vol_ref, Storage, VolRef};

impl Storage {
    /// The volumes of an active pool, by name.
    pub fn list_vols(&self, pool: &str) -> Result<Vec<VolRef>> {
        self.with_active(pool, |p| {
            Ok(p.vols.iter().map(|n| vol_ref(&p.def, n)).collect())
        })
    }

    pub fn lookup_vol_by_name(&self, pool: &str, name: &str) -> Result<VolRef> {
        self.with_active(pool, |p| {
            if p.vols.contains(name) {
                Ok(vol_ref(&p.def, name))
            } else {
                Err(Error::NoVol(format!(
                    "no storage vol with matching name '{name}'"
                )))
            }
        })
    }

    fn find_by_path(&self, path: &str) -> Option<VolRef> {
        let want = Path::new(path);
        let canon = std::fs::canonicalize(want).ok();
        self.pools().values().filter(|p| p.active).find_map(|p| {
            p.vols.iter().find_map(|n| {
                let full = p.def.path.join(n);
                let hit = full == want
                    || canon
                        .as_ref()
                        .is_some_and(|c| std::fs::canonicalize(&full).ok().as_ref() == Some(c));
                hit.then(|| vol_ref(&p.def, n))
            })
        })
    }

    pub fn lookup_vol_by_key(&self, key: &str) -> Result<VolRef> {
        self.find_by_path(key)
            .ok_or_else(|| Error::NoVol(format!("no storage vol with matching key {key}")))
    }

    pub fn lookup_vol_by_path(&self, path: &str) -> Result<VolRef> {
        self.find_by_path(path)
            .ok_or_else(|| Error::NoVol(format!("no storage vol with matching path '{path}'")))
    }

    /// The file behind a volume handle (checks the pool is active and has it).
    fn vol_path(&self, pool: &str, name: &str) -> Result<PathBuf> {
        Ok(PathBuf::from(self.lookup_vol_by_name(pool, name)?.key))
    }

    pub fn vol_info(&self, pool: &str, name: &str) -> Result<VolInfo> {
        let path = self.vol_path(pool, name)?;
        image::probe(name, &path)
    }

    pub fn vol_xml(&self, pool: &str, name: &str, flags: u32) -> Result<String> {
        Error::check_flags(flags, 0, "virStorageVolGetXMLDesc")?;
        Ok(self.vol_info(pool, name)?.format_xml())
    }

    /// virStorageVolCreateXML (and, with `from`, virStorageVolCreateXMLFrom).
    pub async fn create_vol(
        &self,
        pool: &str,
        xml: &str,
        from: Option<(&str, &str)>,
        flags: u32,
    ) -> Result<VolRef> {
        Error::check_flags(flags, flags::VOL_CREATE_KNOWN, "virStorageVolCreateXML")?;
        let mut req = VolRequest::parse(xml)?;
        let _job = self.inner.job.lock().await;
        let dir = self.with_active(pool, |p| {
            if p.vols.contains(&req.name) {
                return Err(Error::VolExists(req.name.clone()));
            }
            Ok(p.def.path.clone())
        })?;
        let path = dir.join(&req.name);
        match from {
            None => {
                let (p2, r2) = (path.clone(), req.clone());
                blocking(move || image::create(&p2, &r2)).await?;
            }
            Some((src_pool, src_name)) => {
                let src = self.vol_info(src_pool, src_name)?;
                if req.capacity.is_some_and(|c| c < src.capacity) {
                    req.capacity = None;
                }
                let (p2, r2) = (path.clone(), req.clone());
                blocking(move || image::clone(&src, &p2, r2.perms.mode, r2.capacity)).await?;
            }
        }
        self.with_pool(pool, |p| {
            p.vols.insert(req.name.clone());
            Ok(vol_ref(&p.def, &req.name))
        })
    }

    fn refuse_in_use(&self, name: &str, path: &Path) -> Result<()> {
        if let Some(f) = self.inner.in_use.get() {
            if let Some(dom) = f(path) {
                tracing::info!(volume = name, domain = dom, "volume in use");
                return Err(Error::OperationInvalid(format!(
                    "volume '{name}' is still in use by domain '{dom}'."
                )));
            }
        }
        Ok(())
    }

    /// virStorageVolDelete.
    pub async fn delete_vol(&self, pool: &str, name: &str, flags: u32) -> Result<()> {
        Error::check_flags(flags, flags::VOL_DELETE_KNOWN, "virStorageVolDelete")?;
        let _job = self.inner.job.lock().await;
        let path = self.vol_path(pool, name)?;
        self.refuse_in_use(name, &path)?;
        let p2 = path.clone();
        blocking(move || {
            let r = if p2.is_dir() {
                std::fs::remove_dir(&p2)
            } else {
                std::fs::remove_file(&p2)
            };
            match r {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io("remove", &p2, &e)),
            }
        })
        .await?;
        self.with_pool(pool, |p| {
            p.vols.remove(name);
            Ok(())
        })
    }

    /// virStorageVolWipe (algorithm 0, zeros, only).
    pub async fn wipe_vol(&self, pool: &str, name: &str, algorithm: u32, flags: u32) -> Result<()> {
        Error::check_flags(flags, 0, "virStorageVolWipePattern")?;
        if algorithm != 0 {
            return Err(Error::OperationUnsupported(format!(
                "wiping algorithm {algorithm} is not supported (only zero)"
            )));
        }
        let _job = self.inner.job.lock().await;
        let info = self.vol_info(pool, name)?;
        self.refuse_in_use(name, &info.path)?;
        blocking(move || image::wipe(&info)).await
    }

    /// virStorageVolResize.
    pub async fn resize_vol(
        &self,
        pool: &str,
        name: &str,
        capacity: u64,
        flags: u32,
    ) -> Result<()> {
        use flags::{RESIZE_ALLOCATE, RESIZE_DELTA, RESIZE_SHRINK};
        Error::check_flags(
            flags,
            RESIZE_ALLOCATE | RESIZE_DELTA | RESIZE_SHRINK,
            "virStorageVolResize",
        )?;
        let _job = self.inner.job.lock().await;
        let info = self.vol_info(pool, name)?;
        let target = if flags & RESIZE_DELTA != 0 {
            if flags & RESIZE_SHRINK != 0 {
                info.capacity
                    .checked_sub(capacity)
                    .ok_or_else(|| Error::InvalidArg("can't shrink capacity below zero".into()))?
            } else {
                info.capacity.saturating_add(capacity)
            }
        } else {
            capacity
        };
        if target < info.allocation {
            return Err(Error::InvalidArg(
                "can't shrink capacity below existing allocation".into(),
            ));
        }
        if target < info.capacity && flags & RESIZE_SHRINK == 0 {
            return Err(Error::InvalidArg(
                "Can't shrink capacity below current capacity unless shrink flag explicitly specified"
                    .into(),
            ));
        }
        if target > info.capacity && flags & RESIZE_SHRINK != 0 && flags & RESIZE_DELTA == 0 {
            return Err(Error::InvalidArg(
                "Can't expand capacity while shrink flag is specified".into(),
            ));
        }
        if target < info.capacity && info.format == VolFormat::Qcow2 {
            return Err(Error::OperationUnsupported(
                "shrinking a qcow2 volume is not supported".into(),
            ));
        }
        blocking(move || image::resize(&info, target)).await
    }

    /// virStorageVolUpload: the volume's file, opened for writing at `offset`.
    pub fn open_upload(
        &self,
        pool: &str,
        name: &str,
        offset: u64,
        flags: u32,
    ) -> Result<std::fs::File> {
        // VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM: holes arrive as STREAM_HOLE packets.
        Error::check_flags(flags, 1, "virStorageVolUpload")?;
        let path = self.vol_path(pool, name)?;
        self.refuse_in_use(name, &path)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, &e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("seek", &path, &e))?;
        Ok(f)
    }

    /// virStorageVolDownload: the volume's file at `offset` and the bytes to send
    /// (`length` 0: to the end).
    pub fn open_download(
        &self,
        pool: &str,
        name: &str,
        offset: u64,
        length: u64,
        flags: u32,
    ) -> Result<(std::fs::File, u64)> {
        // VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM: holes leave as STREAM_HOLE packets.
        Error::check_flags(flags, 1, "virStorageVolDownload")?;
        let path = self.vol_path(pool, name)?;
        let mut f = std::fs::File::open(&path).map_err(|e| Error::io("open", &path, &e))?;
        let size = f
            .metadata()
            .map_err(|e| Error::io("stat", &path, &e))?
            .len();
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("seek", &path, &e))?;
        let left = size.saturating_sub(offset);
        Ok((f, if length == 0 { left } else { length.min(left) }))
    }

    /// The file and format of `<disk type='volume'><source pool volume>`.
    pub fn resolve(&self, pool: &str, volume: &str) -> Result<(PathBuf, VolFormat)> {
        let info = self.vol_info(pool, volume)?;
        Ok((info.path, info.format))
    }
}
