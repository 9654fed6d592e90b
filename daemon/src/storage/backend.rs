//! The pool-type split of the driver: what building, starting, refreshing, stopping
//! and deleting a pool mean for each type (libvirt's `virStorageBackend` table). The
//! `dir` backend is the directory code in the driver itself; the `logical` backend is
//! [`logical`]. Everything here may block.

use std::collections::BTreeSet;

use super::error::{Error, Result};
use super::logical::{self, VgState};
use super::pool_xml::{PoolDef, PoolKind};
use super::{build_dir, scan};

/// What a start or refresh found in a pool.
pub(super) struct Scan {
    /// The volume names.
    pub vols: BTreeSet<String>,
    /// A logical pool's group: sizes and volumes (`None` for a dir pool).
    pub vg: Option<VgState>,
}

impl Scan {
    fn dir(def: &PoolDef) -> Result<Scan> {
        Ok(Scan {
            vols: scan(&def.path)?,
            vg: None,
        })
    }

    fn vg(vg: VgState) -> Scan {
        Scan {
            vols: vg.lvs.keys().cloned().collect(),
            vg: Some(vg),
        }
    }
}

/// virStoragePoolBuild (`flags`: BUILD_OVERWRITE, BUILD_NO_OVERWRITE).
pub(super) fn build(def: &PoolDef, flags: u32) -> Result<()> {
    match &def.kind {
        PoolKind::Dir => build_dir(def),
        PoolKind::Logical(src) => logical::build(src, flags),
    }
}

/// Makes the pool usable and finds what it holds.
pub(super) fn start(def: &PoolDef) -> Result<Scan> {
    match &def.kind {
        PoolKind::Dir => Scan::dir(def),
        PoolKind::Logical(src) => Ok(Scan::vg(logical::start(src)?)),
    }
}

pub(super) fn refresh(def: &PoolDef) -> Result<Scan> {
    match &def.kind {
        PoolKind::Dir => Scan::dir(def),
        PoolKind::Logical(src) => Ok(Scan::vg(logical::refresh(src)?)),
    }
}

/// Undoes [`start`] (a directory needs nothing).
pub(super) fn stop(def: &PoolDef) -> Result<()> {
    match &def.kind {
        PoolKind::Dir => Ok(()),
        PoolKind::Logical(src) => logical::stop(src),
    }
}

/// virStoragePoolDelete: removes what [`build`] made.
pub(super) fn delete(def: &PoolDef, flags: u32) -> Result<()> {
    match &def.kind {
        PoolKind::Dir => std::fs::remove_dir(&def.path)
            .map_err(|e| Error::io("remove pool directory", &def.path, &e)),
        PoolKind::Logical(src) => logical::delete(src, flags),
    }
}

/// `VIR_CONNECT_LIST_STORAGE_POOLS_DIR` / `_LOGICAL`: the type's filter bit.
pub(super) fn list_flag(kind: &PoolKind) -> u32 {
    match kind {
        PoolKind::Dir => super::flags::list::DIR,
        PoolKind::Logical(_) => super::flags::list::LOGICAL,
    }
}
