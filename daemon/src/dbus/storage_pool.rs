//! `org.libvirt.StoragePool` objects (`<connect path>/storagepool/_<uuid with '-' as
//! '_'>`) and Connect's storage methods, with libvirt-dbus's members. Pool and volume
//! objects follow the storage driver: after each storage call and storage event the
//! exported set is brought in line with the driver's pools and the volumes of active
//! pools. Pool lifecycle events become `Connect.StoragePoolEvent(o, i, i)`, refresh
//! events the pool object's `Refresh` signal.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::OwnedObjectPath;

use super::connect::ConnectIface;
use super::error::{LibvirtError, Result};
use super::storage_vol::StorageVolIface;
use super::Context;
use crate::storage::{self, PoolEvent, PoolRef, VolRef};

impl From<storage::Error> for LibvirtError {
    fn from(e: storage::Error) -> Self {
        LibvirtError::Error(e.to_string())
    }
}

/// libvirt-dbus's `virtDBusUtilEncodeStr`: letters and digits stay, every other byte
/// becomes `_` and two hex digits.
pub fn encode_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The object path of a pool.
pub fn pool_path(base: &str, uuid: &Uuid) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!(
        "{base}/storagepool/_{}",
        uuid.hyphenated().to_string().replace('-', "_")
    ))
    .expect("pool paths are valid object paths")
}

/// The object path of a volume (by its key).
pub fn vol_path(base: &str, key: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{base}/storagevol/{}", encode_key(key)))
        .expect("volume paths are valid object paths")
}

/// The storage objects exported on the bus.
#[derive(Default)]
pub struct Exported {
    pools: Mutex<HashSet<Uuid>>,
    vols: Mutex<HashSet<VolRef>>,
    sync: tokio::sync::Mutex<()>,
}

impl Context {
    fn storage(&self) -> &crate::storage::Storage {
        self.core.storage()
    }

    /// Exports an object for every pool and every volume of an active pool, and
    /// removes the objects of those that are gone.
    pub(super) async fn sync_storage(&self, conn: &zbus::Connection) {
        let ex = &self.storage_objects;
        let _guard = ex.sync.lock().await;
        let s = self.storage();
        let pools: Vec<PoolRef> = s.list_pools(0).into_iter().map(|p| p.pool).collect();
        let want_pools: HashSet<Uuid> = pools.iter().map(|p| p.uuid).collect();
        let want_vols: HashSet<VolRef> = pools
            .iter()
            .flat_map(|p| s.list_vols(&p.name).unwrap_or_default())
            .collect();
        let server = conn.object_server();
        let have = ex.pools.lock().expect("poisoned").clone();
        for uuid in want_pools.difference(&have) {
            let iface = StoragePoolIface {
                ctx: self.clone(),
                uuid: *uuid,
            };
            let path = pool_path(&self.base, uuid);
            if super::properties::export(server, &path, iface)
                .await
                .is_ok()
            {
                ex.pools.lock().expect("poisoned").insert(*uuid);
            }
        }
        for uuid in have.difference(&want_pools) {
            let _ = server
                .remove::<StoragePoolIface, _>(pool_path(&self.base, uuid))
                .await;
            ex.pools.lock().expect("poisoned").remove(uuid);
        }
        let have = ex.vols.lock().expect("poisoned").clone();
        for v in want_vols.difference(&have) {
            let iface = StorageVolIface {
                ctx: self.clone(),
                vol: v.clone(),
            };
            let path = vol_path(&self.base, &v.key);
            // A key seen again under another name (rare): replace the object.
            let _ = server.remove::<StorageVolIface, _>(path.clone()).await;
            if super::properties::export(server, &path, iface)
                .await
                .is_ok()
            {
                ex.vols.lock().expect("poisoned").insert(v.clone());
            }
        }
        for v in have.difference(&want_vols) {
            if !want_vols.iter().any(|w| w.key == v.key) {
                let _ = server
                    .remove::<StorageVolIface, _>(vol_path(&self.base, &v.key))
                    .await;
            }
            ex.vols.lock().expect("poisoned").remove(v);
        }
    }

    /// The path of a pool, after bringing the objects up to date.
    async fn pool_object(&self, conn: &zbus::Connection, p: &PoolRef) -> OwnedObjectPath {
        self.sync_storage(conn).await;
        pool_path(&self.base, &p.uuid)
    }

    /// The path of a volume, after bringing the objects up to date.
    pub(super) async fn vol_object(&self, conn: &zbus::Connection, v: &VolRef) -> OwnedObjectPath {
        self.sync_storage(conn).await;
        vol_path(&self.base, &v.key)
    }
}

/// Forwards storage events as signals until the bus connection ends.
pub(super) fn spawn_events(ctx: Context, conn: zbus::Connection) {
    let mut rx = ctx.storage().subscribe();
    tokio::spawn(async move {
        ctx.sync_storage(&conn).await;
        loop {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                Err(RecvError::Lagged(_)) => {
                    ctx.sync_storage(&conn).await;
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            // A new pool needs its object before the signal that names it.
            ctx.sync_storage(&conn).await;
            let path = pool_path(&ctx.base, &ev.pool().uuid);
            let result = match &ev {
                PoolEvent::Lifecycle { event, detail, .. } => {
                    match SignalEmitter::new(&conn, &*ctx.base) {
                        Ok(em) => {
                            ConnectIface::storage_pool_event(&em, path, *event, *detail).await
                        }
                        Err(e) => Err(e),
                    }
                }
                PoolEvent::Refresh { .. } => match SignalEmitter::new(&conn, path) {
                    Ok(em) => StoragePoolIface::refresh_signal(&em).await,
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot emit D-Bus storage signal");
            }
        }
    });
}

// ---- Connect's storage members (called from `connect.rs`) ----

pub(super) async fn list_pools(
    ctx: &Context,
    conn: &zbus::Connection,
    flags: u32,
) -> Result<Vec<OwnedObjectPath>> {
    ctx.sync_storage(conn).await;
    Ok(ctx
        .storage()
        .list_pools(flags)
        .iter()
        .map(|p| pool_path(&ctx.base, &p.pool.uuid))
        .collect())
}

pub(super) async fn define_pool(
    ctx: &Context,
    conn: &zbus::Connection,
    hdr: &Header<'_>,
    xml: &str,
    flags: u32,
    create: bool,
) -> Result<OwnedObjectPath> {
    ctx.gate.check(conn, hdr).await?;
    let s = ctx.storage();
    let p = if create {
        s.create_pool_xml(xml, flags).await?
    } else {
        s.define_pool(xml, flags).await?
    };
    Ok(ctx.pool_object(conn, &p).await)
}

pub(super) async fn lookup_pool(
    ctx: &Context,
    conn: &zbus::Connection,
    name: Option<&str>,
    uuid: Option<&str>,
) -> Result<OwnedObjectPath> {
    let s = ctx.storage();
    let p = match (name, uuid) {
        (Some(n), _) => s.lookup_pool_by_name(n)?,
        (None, Some(u)) => {
            let u = Uuid::parse_str(u)
                .map_err(|_| storage::Error::InvalidArg(format!("'{u}' is not a valid UUID")))?;
            s.lookup_pool_by_uuid(&u)?
        }
        (None, None) => return Err(storage::Error::InvalidArg("no pool named".into()).into()),
    };
    Ok(ctx.pool_object(conn, &p).await)
}

pub(super) async fn lookup_vol(
    ctx: &Context,
    conn: &zbus::Connection,
    key: Option<&str>,
    path: Option<&str>,
) -> Result<OwnedObjectPath> {
    let s = ctx.storage();
    let v = match (key, path) {
        (Some(k), _) => s.lookup_vol_by_key(k)?,
        (None, Some(p)) => s.lookup_vol_by_path(p)?,
        (None, None) => return Err(storage::Error::InvalidArg("no volume named".into()).into()),
    };
    Ok(ctx.vol_object(conn, &v).await)
}

/// One pool object.
pub struct StoragePoolIface {
    pub(super) ctx: Context,
    pub(super) uuid: Uuid,
}

impl StoragePoolIface {
    fn name(&self) -> std::result::Result<String, storage::Error> {
        Ok(self.ctx.storage().lookup_pool_by_uuid(&self.uuid)?.name)
    }

    fn status(&self) -> Result<storage::PoolStatus> {
        let s = self.ctx.storage();
        self.name()
            .and_then(|n| s.pool_status(&n))
            .map_err(LibvirtError::from)
    }

    async fn checked(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
    ) -> Result<(String, &crate::storage::Storage)> {
        self.ctx.gate.check(conn, hdr).await?;
        Ok((self.name()?, self.ctx.storage()))
    }
}

#[zbus::interface(name = "org.libvirt.StoragePool")]
impl StoragePoolIface {
    #[zbus(property(emits_changed_signal = "false"), name = "Active")]
    async fn active(&self) -> Result<bool> {
        Ok(self.status()?.active)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "Autostart")]
    async fn autostart(&self) -> Result<bool> {
        Ok(self.status()?.autostart)
    }

    #[zbus(property, name = "Autostart")]
    async fn set_autostart(
        &self,
        value: bool,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Option<Header<'_>>,
    ) -> Result<()> {
        let Some(hdr) = hdr else {
            return Err(LibvirtError::Error("no caller".into()));
        };
        self.ctx.gate.check(conn, &hdr).await?;
        let name = self.name()?;
        self.ctx
            .storage()
            .set_pool_autostart(&name, value)
            .await
            .map_err(LibvirtError::from)
    }

    #[zbus(property(emits_changed_signal = "const"), name = "Name")]
    async fn name_prop(&self) -> Result<String> {
        self.name().map_err(LibvirtError::from)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "Persistent")]
    async fn persistent(&self) -> Result<bool> {
        Ok(self.status()?.persistent)
    }

    #[zbus(property(emits_changed_signal = "const"), name = "UUID")]
    async fn uuid_prop(&self) -> Result<String> {
        Ok(self.uuid.to_string())
    }

    #[zbus(name = "Build")]
    async fn build(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        let (name, s) = self.checked(conn, &hdr).await?;
        Ok(s.build_pool(&name, flags).await?)
    }

    #[zbus(name = "Create")]
    async fn create(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        let (name, s) = self.checked(conn, &hdr).await?;
        s.start_pool(&name, flags).await?;
        self.ctx.sync_storage(conn).await;
        Ok(())
    }

    #[zbus(name = "Delete")]
    async fn delete(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        let (name, s) = self.checked(conn, &hdr).await?;
        Ok(s.delete_pool(&name, flags).await?)
    }

    #[zbus(name = "Destroy")]
    async fn destroy(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<()> {
        let (name, s) = self.checked(conn, &hdr).await?;
        s.destroy_pool(&name).await?;
        self.ctx.sync_storage(conn).await;
        Ok(())
    }

    #[zbus(name = "GetInfo", out_args("info"))]
    async fn get_info(&self) -> Result<((i32, u64, u64, u64),)> {
        let i = self.ctx.storage().pool_info(&self.name()?)?;
        Ok(((
            i.state,
            i.sizes.capacity,
            i.sizes.allocation,
            i.sizes.available,
        ),))
    }

    #[zbus(name = "GetXMLDesc", out_args("xml"))]
    async fn get_xml_desc(&self, flags: u32) -> Result<String> {
        Ok(self.ctx.storage().pool_xml(&self.name()?, flags)?)
    }

    #[zbus(name = "ListStorageVolumes", out_args("storageVols"))]
    async fn list_storage_volumes(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        flags: u32,
    ) -> Result<Vec<OwnedObjectPath>> {
        storage::Error::check_flags(flags, 0, "virStoragePoolListAllVolumes")?;
        let vols = self.ctx.storage().list_vols(&self.name()?)?;
        self.ctx.sync_storage(conn).await;
        Ok(vols
            .iter()
            .map(|v| vol_path(&self.ctx.base, &v.key))
            .collect())
    }

    #[zbus(name = "Refresh")]
    async fn refresh(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        let (name, s) = self.checked(conn, &hdr).await?;
        s.refresh_pool(&name, flags).await?;
        self.ctx.sync_storage(conn).await;
        Ok(())
    }

    #[zbus(name = "StorageVolCreateXML", out_args("storageVol"))]
    async fn storage_vol_create_xml(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml: String,
        flags: u32,
    ) -> Result<OwnedObjectPath> {
        let (name, s) = self.checked(conn, &hdr).await?;
        let v = s.create_vol(&name, &xml, None, flags).await?;
        Ok(self.ctx.vol_object(conn, &v).await)
    }

    #[zbus(name = "StorageVolCreateXMLFrom", out_args("storageVol"))]
    async fn storage_vol_create_xml_from(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        xml: String,
        key: String,
        flags: u32,
    ) -> Result<OwnedObjectPath> {
        let (name, s) = self.checked(conn, &hdr).await?;
        let src = s.lookup_vol_by_key(&key)?;
        let v = s
            .create_vol(&name, &xml, Some((&src.pool, &src.name)), flags)
            .await?;
        Ok(self.ctx.vol_object(conn, &v).await)
    }

    #[zbus(name = "StorageVolLookupByName", out_args("storageVol"))]
    async fn storage_vol_lookup_by_name(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        name: String,
    ) -> Result<OwnedObjectPath> {
        let v = self
            .ctx
            .storage()
            .lookup_vol_by_name(&self.name()?, &name)?;
        Ok(self.ctx.vol_object(conn, &v).await)
    }

    #[zbus(name = "Undefine")]
    async fn undefine(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<()> {
        let (name, s) = self.checked(conn, &hdr).await?;
        s.undefine_pool(&name).await?;
        self.ctx.sync_storage(conn).await;
        Ok(())
    }

    #[zbus(signal, name = "Refresh")]
    pub async fn refresh_signal(emitter: &SignalEmitter<'_>) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_keys_encode_like_libvirt_dbus() {
        assert_eq!(
            encode_key("/var/lib/libvirt/images/a.qcow2"),
            "_2fvar_2flib_2flibvirt_2fimages_2fa_2eqcow2"
        );
        let u = Uuid::parse_str("6a888e3b-2249-45da-a9c2-c6731e2ebde4").unwrap();
        assert_eq!(
            pool_path("/org/libvirt/QEMU", &u).as_str(),
            "/org/libvirt/QEMU/storagepool/_6a888e3b_2249_45da_a9c2_c6731e2ebde4"
        );
    }
}
