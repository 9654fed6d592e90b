//! Volume operations of the storage driver: listing and lookups (by name in an active
//! pool, by key or path across pools), create (from XML, or as a copy of another
//! volume), delete, wipe, resize, and the files behind upload, download and
//! `<disk type='volume'>`. File work runs on blocking threads under the driver's job lock.
//! A logical pool's volumes are its LVs ([`logical`]): created and deleted by the LVM
//! tools, block devices otherwise.

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::vol_xml::{VolFormat, VolInfo, VolRequest};
use super::{blocking, flags, image, logical, lvm, Storage, VolRef};

impl Storage {
    /// The volumes of an active pool, by name.
    pub fn list_vols(&self, pool: &str) -> Result<Vec<VolRef>> {
        self.with_active(pool, |p| Ok(p.vols.iter().map(|n| p.vol_ref(n)).collect()))
    }

    pub fn lookup_vol_by_name(&self, pool: &str, name: &str) -> Result<VolRef> {
        self.with_active(pool, |p| {
            if p.vols.contains(name) {
                Ok(p.vol_ref(name))
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
                hit.then(|| p.vol_ref(n))
            })
        })
    }

    /// A logical volume by its LV UUID.
    fn find_by_uuid(&self, key: &str) -> Option<VolRef> {
        self.pools().values().filter(|p| p.active).find_map(|p| {
            let vg = p.vg.as_ref()?;
            let lv = vg.lvs.values().find(|lv| lv.uuid == key)?;
            Some(p.vol_ref(&lv.name))
        })
    }

    pub fn lookup_vol_by_key(&self, key: &str) -> Result<VolRef> {
        self.find_by_uuid(key)
            .or_else(|| self.find_by_path(key))
            .ok_or_else(|| Error::NoVol(format!("no storage vol with matching key {key}")))
    }

    pub fn lookup_vol_by_path(&self, path: &str) -> Result<VolRef> {
        self.find_by_path(path)
            .ok_or_else(|| Error::NoVol(format!("no storage vol with matching path '{path}'")))
    }

    /// The file behind a volume handle (checks the pool is active and has it).
    fn vol_path(&self, pool: &str, name: &str) -> Result<PathBuf> {
        Ok(self.vol_place(pool, name)?.0)
    }

    /// virStorageVolGetPath (a dir volume's key is its path, a logical one's is not).
    pub fn vol_target_path(&self, pool: &str, name: &str) -> Result<String> {
        Ok(self.vol_path(pool, name)?.to_string_lossy().into_owned())
    }

    /// The volume's file and, for a logical volume, what `lvs` said of it.
    fn vol_place(&self, pool: &str, name: &str) -> Result<(PathBuf, Option<lvm::Lv>)> {
        self.lookup_vol_by_name(pool, name)?;
        self.with_active(pool, |p| {
            let lv = p.vg.as_ref().and_then(|vg| vg.lvs.get(name)).cloned();
            Ok((p.def.path.join(name), lv))
        })
    }

    pub fn vol_info(&self, pool: &str, name: &str) -> Result<VolInfo> {
        match self.vol_place(pool, name)? {
            (path, Some(lv)) => logical::vol_info(name, &path, &lv),
            (path, None) => image::probe(name, &path),
        }
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
        let def = self.with_active(pool, |p| {
            if p.vols.contains(&req.name) {
                return Err(Error::VolExists(req.name.clone()));
            }
            Ok(p.def.clone())
        })?;
        if let Some(src) = def.logical() {
            if from.is_some() {
                return Err(Error::OperationUnsupported(
                    "copying a volume into a logical pool is not supported".into(),
                ));
            }
            let (vg, r2) = (src.vg.clone(), req.clone());
            blocking(move || logical::create_vol(&def, &vg, &r2)).await?;
            return self.created_lv(pool, &req.name).await;
        }
        let path = def.path.join(&req.name);
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
            Ok(p.vol_ref(&req.name))
        })
    }

    /// Reads the group again after `lvcreate` (the new LV's UUID is its key; the
    /// group's free space changed); an LV that does not show is removed again.
    async fn created_lv(&self, pool: &str, name: &str) -> Result<VolRef> {
        let path = self.with_active(pool, |p| Ok(p.def.path.join(name)))?;
        let found = self.rescan(pool).await.and_then(|()| {
            self.with_active(pool, |p| Ok(p.vols.contains(name).then(|| p.vol_ref(name))))
        });
        match found {
            Ok(Some(v)) => Ok(v),
            other => {
                let _ = blocking(move || logical::delete_vol(&path)).await;
                Err(other.err().unwrap_or_else(|| {
                    Error::System(format!("cannot find newly created volume '{name}'"))
                }))
            }
        }
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
        let (path, lv) = self.vol_place(pool, name)?;
        self.refuse_in_use(name, &path)?;
        if lv.is_some() {
            blocking(move || logical::delete_vol(&path)).await?;
            return self.rescan(pool).await;
        }
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
        if info.block.as_ref().is_some_and(|b| b.sparse) {
            // Filling a thin snapshot overflows it (libvirt refuses too).
            return Err(Error::NoSupport(format!(
                "logical volume '{}' is sparse, volume wipe not supported",
                info.path.display()
            )));
        }
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
        if info.block.is_some() {
            // libvirt's logical backend has no resize either.
            return Err(Error::NoSupport(
                "storage pool does not support changing of volume capacity".into(),
            ));
        }
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
        // The end, not the length: a block device's length reads 0.
        let size = f
            .seek(SeekFrom::End(0))
            .map_err(|e| Error::io("seek", &path, &e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::io("seek", &path, &e))?;
        let left = size.saturating_sub(offset);
        Ok((f, if length == 0 { left } else { length.min(left) }))
    }

    /// The file, format and whether it is a block device (a logical volume), of
    /// `<disk type='volume'><source pool volume>`.
    pub fn resolve(&self, pool: &str, volume: &str) -> Result<(PathBuf, VolFormat, bool)> {
        let info = self.vol_info(pool, volume)?;
        Ok((info.path, info.format, info.block.is_some()))
    }
}
