//! `org.libvirt.NodeDevice` objects (`<connect path>/nodedev/<escaped name>`) for
//! the host devices [`crate::core::nodedev`] lists; listing only: detach,
//! reattach, reset and destroy answer libvirt's "not supported".

use zbus::message::Header;
use zbus::OwnedObjectPath;

use super::error::{unsupported, Result};
use super::storage_pool::encode_key;
use super::Context;
use crate::core::nodedev::{self, NodeDevice};

/// The object path of a node device.
pub fn nodedev_path(base: &str, name: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{base}/nodedev/{}", encode_key(name)))
        .expect("escaped names make valid object paths")
}

/// One device's object.
pub struct NodeDeviceIface {
    ctx: Context,
    name: String,
}

impl NodeDeviceIface {
    fn device(&self) -> Result<NodeDevice> {
        Ok(nodedev::lookup(&self.name)?)
    }
}

async fn sync(ctx: &Context, conn: &zbus::Connection) -> Result<()> {
    let want = nodedev::list(0)?
        .into_iter()
        .map(|d| {
            let path = nodedev_path(&ctx.base, &d.name);
            (d.name, path)
        })
        .collect();
    ctx.nodedev_objects
        .sync(conn.object_server(), want, |name| NodeDeviceIface {
            ctx: ctx.clone(),
            name: name.clone(),
        })
        .await;
    Ok(())
}

/// `Connect.ListNodeDevices`.
pub(super) async fn list(
    ctx: &Context,
    conn: &zbus::Connection,
    hdr: &Header<'_>,
    flags: u32,
) -> Result<Vec<OwnedObjectPath>> {
    ctx.gate.check(conn, hdr).await?;
    let devs = nodedev::list(flags)?;
    sync(ctx, conn).await?;
    Ok(devs
        .iter()
        .map(|d| nodedev_path(&ctx.base, &d.name))
        .collect())
}

/// `Connect.NodeDeviceLookupByName`.
pub(super) async fn lookup(
    ctx: &Context,
    conn: &zbus::Connection,
    hdr: &Header<'_>,
    name: &str,
) -> Result<OwnedObjectPath> {
    ctx.gate.check(conn, hdr).await?;
    let d = nodedev::lookup(name)?;
    sync(ctx, conn).await?;
    Ok(nodedev_path(&ctx.base, &d.name))
}

#[zbus::interface(name = "org.libvirt.NodeDevice")]
impl NodeDeviceIface {
    #[zbus(property(emits_changed_signal = "const"), name = "Name")]
    async fn name_prop(&self) -> Result<String> {
        Ok(self.name.clone())
    }

    #[zbus(property(emits_changed_signal = "const"), name = "Parent")]
    async fn parent(&self) -> Result<String> {
        Ok(self.device()?.parent.unwrap_or_default())
    }

    #[zbus(name = "Destroy")]
    async fn destroy(&self) -> Result<()> {
        Err(unsupported("virNodeDeviceDestroy"))
    }

    #[zbus(name = "Detach")]
    async fn detach(&self, _driver_name: String, _flags: u32) -> Result<()> {
        Err(unsupported("virNodeDeviceDetachFlags"))
    }

    #[zbus(name = "GetXMLDesc", out_args("xml"))]
    async fn get_xml_desc(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<String> {
        self.ctx.gate.check(conn, &hdr).await?;
        crate::core::Error::check_flags(flags, 0, "virNodeDeviceGetXMLDesc")?;
        Ok(self.device()?.to_xml())
    }

    #[zbus(name = "ListCaps", out_args("names"))]
    async fn list_caps(&self) -> Result<Vec<String>> {
        Ok(vec![self.device()?.capability.name().to_string()])
    }

    #[zbus(name = "ReAttach")]
    async fn re_attach(&self) -> Result<()> {
        Err(unsupported("virNodeDeviceReAttach"))
    }

    #[zbus(name = "Reset")]
    async fn reset(&self) -> Result<()> {
        Err(unsupported("virNodeDeviceReset"))
    }
}
