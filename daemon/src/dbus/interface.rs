//! `org.libvirt.Interface` objects (`<connect path>/interface/<escaped MAC>`) for
//! the host interfaces [`crate::core::hostiface`] lists, read-only: create,
//! destroy and undefine answer libvirt's "not supported".

use zbus::message::Header;
use zbus::OwnedObjectPath;

use super::error::{unsupported, Result};
use super::storage_pool::encode_key;
use super::Context;
use crate::core::hostiface::{self, HostInterface};

/// The object path of a host interface (libvirt-dbus keys it by MAC).
pub fn interface_path(base: &str, mac: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!("{base}/interface/{}", encode_key(mac)))
        .expect("escaped MACs make valid object paths")
}

/// One interface's object.
pub struct InterfaceIface {
    ctx: Context,
    name: String,
}

impl InterfaceIface {
    fn iface(&self) -> Result<HostInterface> {
        Ok(hostiface::lookup_by_name(&self.name)?)
    }
}

async fn sync(ctx: &Context, conn: &zbus::Connection) -> Result<()> {
    let mut want: Vec<(String, OwnedObjectPath)> = Vec::new();
    for i in hostiface::list(0)? {
        // Two interfaces with one MAC share the path; the first one keeps it.
        let path = interface_path(&ctx.base, &i.mac);
        if !want.iter().any(|(_, p)| *p == path) {
            want.push((i.name, path));
        }
    }
    ctx.interface_objects
        .sync(conn.object_server(), want, |name| InterfaceIface {
            ctx: ctx.clone(),
            name: name.clone(),
        })
        .await;
    Ok(())
}

/// `Connect.ListInterfaces`.
pub(super) async fn list(
    ctx: &Context,
    conn: &zbus::Connection,
    hdr: &Header<'_>,
    flags: u32,
) -> Result<Vec<OwnedObjectPath>> {
    ctx.gate.check(conn, hdr).await?;
    let all = hostiface::list(flags)?;
    sync(ctx, conn).await?;
    let mut out: Vec<OwnedObjectPath> = Vec::new();
    for i in all {
        let p = interface_path(&ctx.base, &i.mac);
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// `Connect.InterfaceLookupByName` (`name` given) or `InterfaceLookupByMAC`.
pub(super) async fn lookup(
    ctx: &Context,
    conn: &zbus::Connection,
    hdr: &Header<'_>,
    name: Option<&str>,
    mac: Option<&str>,
) -> Result<OwnedObjectPath> {
    ctx.gate.check(conn, hdr).await?;
    let i = match (name, mac) {
        (Some(n), _) => hostiface::lookup_by_name(n)?,
        (None, Some(m)) => hostiface::lookup_by_mac(m)?,
        (None, None) => unreachable!("a lookup names the interface"),
    };
    sync(ctx, conn).await?;
    Ok(interface_path(&ctx.base, &i.mac))
}

#[zbus::interface(name = "org.libvirt.Interface")]
impl InterfaceIface {
    #[zbus(property(emits_changed_signal = "false"), name = "Active")]
    async fn active(&self) -> Result<bool> {
        Ok(self.iface()?.active)
    }

    #[zbus(property(emits_changed_signal = "const"), name = "MAC")]
    async fn mac(&self) -> Result<String> {
        Ok(self.iface()?.mac)
    }

    #[zbus(property(emits_changed_signal = "const"), name = "Name")]
    async fn name_prop(&self) -> Result<String> {
        Ok(self.name.clone())
    }

    #[zbus(name = "Create")]
    async fn create(&self, _flags: u32) -> Result<()> {
        Err(unsupported("virInterfaceCreate"))
    }

    #[zbus(name = "Destroy")]
    async fn destroy(&self, _flags: u32) -> Result<()> {
        Err(unsupported("virInterfaceDestroy"))
    }

    #[zbus(name = "GetXMLDesc", out_args("xml"))]
    async fn get_xml_desc(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        flags: u32,
    ) -> Result<String> {
        self.ctx.gate.check(conn, &hdr).await?;
        crate::core::Error::check_flags(flags, 1, "virInterfaceGetXMLDesc")?;
        Ok(self.iface()?.to_xml())
    }

    #[zbus(name = "Undefine")]
    async fn undefine(&self) -> Result<()> {
        Err(unsupported("virInterfaceUndefine"))
    }
}
