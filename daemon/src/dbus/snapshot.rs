//! `org.libvirt.DomainSnapshot` objects, one per snapshot at libvirt-dbus's path
//! (`<connect path>/domainsnapshot/_<uuid>_<encoded name>`, [`super::path`]), and the
//! helpers the Domain methods that return them use. Each calls the core's snapshot
//! methods ([`crate::core::Core::snapshot_create`] …).
//!
//! libvirt-dbus serves the whole `domainsnapshot` subtree and looks a snapshot up
//! on every call; zbus serves registered objects only, so the exported set is
//! brought in line with the core's snapshots whenever a path is handed out or a
//! snapshot goes: every path a method returns is served, deleted ones are not.

use uuid::Uuid;
use zbus::message::Header;
use zbus::OwnedObjectPath;

use super::error::Result;
use super::{path, Context};
use crate::core::Error;

/// The object path of snapshot `name` of domain `uuid`.
pub fn snapshot_path(ctx: &Context, uuid: &Uuid, name: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(path::snapshot_path(&ctx.base, uuid, name))
        .expect("encoded snapshot names make valid object paths")
}

/// Exports an object for every snapshot of every domain and removes those of
/// snapshots (or domains) that are gone.
pub(super) async fn sync(ctx: &Context, conn: &zbus::Connection) {
    let Ok(domains) = ctx.core.list(0) else {
        return;
    };
    let mut want = Vec::new();
    for d in domains {
        let uuid = d.domain.uuid;
        // A domain that went away meanwhile simply has none.
        for name in ctx.core.snapshot_names(&uuid, 0).unwrap_or_default() {
            let p = snapshot_path(ctx, &uuid, &name);
            want.push(((uuid, name), p));
        }
    }
    ctx.snapshot_objects
        .sync(conn.object_server(), want, |(uuid, name)| SnapshotIface {
            ctx: ctx.clone(),
            uuid: *uuid,
            name: name.clone(),
        })
        .await;
}

/// The paths of `names` (snapshots of `uuid`), served.
pub(super) async fn paths(
    ctx: &Context,
    conn: &zbus::Connection,
    uuid: &Uuid,
    names: &[String],
) -> Vec<OwnedObjectPath> {
    sync(ctx, conn).await;
    names.iter().map(|n| snapshot_path(ctx, uuid, n)).collect()
}

/// One snapshot's object.
pub struct SnapshotIface {
    ctx: Context,
    uuid: Uuid,
    name: String,
}

#[zbus::interface(name = "org.libvirt.DomainSnapshot")]
impl SnapshotIface {
    #[zbus(name = "Delete")]
    async fn delete(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        let done = self
            .ctx
            .core
            .snapshot_delete(&self.uuid, &self.name, flags)
            .await;
        // Even a failed delete may have removed some children (CHILDREN).
        sync(&self.ctx, conn).await;
        Ok(done?)
    }

    #[zbus(name = "GetParent", out_args("domainSnapshot"))]
    async fn get_parent(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<OwnedObjectPath> {
        self.ctx.gate.check(conn, &hdr).await?;
        Error::check_flags(flags, 0, "virDomainSnapshotGetParent")?;
        let parent = self.ctx.core.snapshot_parent(&self.uuid, &self.name)?;
        Ok(paths(&self.ctx, conn, &self.uuid, &[parent])
            .await
            .remove(0))
    }

    #[zbus(name = "GetXMLDesc", out_args("xml"))]
    async fn get_xml_desc(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<String> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self.ctx.core.snapshot_xml(&self.uuid, &self.name, flags)?)
    }

    #[zbus(name = "IsCurrent", out_args("domainSnapshot"))]
    async fn is_current(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<bool> {
        self.ctx.gate.check(conn, &hdr).await?;
        Error::check_flags(flags, 0, "virDomainSnapshotIsCurrent")?;
        // A snapshot deleted behind this object is an error, not "not current".
        self.ctx.core.snapshot_lookup(&self.uuid, &self.name)?;
        let current = self.ctx.core.snapshot_current(&self.uuid)?;
        Ok(current.as_deref() == Some(self.name.as_str()))
    }

    #[zbus(name = "ListChildren", out_args("domainSnapshots"))]
    async fn list_children(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<Vec<OwnedObjectPath>> {
        self.ctx.gate.check(conn, &hdr).await?;
        let names = self
            .ctx
            .core
            .snapshot_children(&self.uuid, &self.name, flags)?;
        Ok(paths(&self.ctx, conn, &self.uuid, &names).await)
    }

    #[zbus(name = "Revert")]
    async fn revert(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<()> {
        self.ctx.gate.check(conn, &hdr).await?;
        Ok(self
            .ctx
            .core
            .snapshot_revert(&self.uuid, &self.name, flags)
            .await?)
    }
}
