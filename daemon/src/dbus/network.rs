//! `org.libvirt.Network` objects (`<connect path>/network/_<uuid with '-' as '_'>`)
//! and Connect's network methods, with libvirt-dbus 1.4's members. The exported set
//! follows the network driver ([`crate::network`]): after each network call and
//! network event it is brought in line with the driver's networks; lifecycle events
//! become `Connect.NetworkEvent(o, i)`. Driver calls wait for `ip`, `nft` and
//! `dnsmasq`, so they run on blocking threads.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::OwnedObjectPath;

use super::connect::ConnectIface;
use super::error::{LibvirtError, Result};
use super::Context;
use crate::network::{self, NetRef, Networks};

impl From<network::Error> for LibvirtError {
    fn from(e: network::Error) -> Self {
        LibvirtError::Error(e.to_string())
    }
}

/// The object path of a network.
pub fn network_path(base: &str, uuid: &Uuid) -> OwnedObjectPath {
    OwnedObjectPath::try_from(format!(
        "{base}/network/_{}",
        uuid.hyphenated().to_string().replace('-', "_")
    ))
    .expect("network paths are valid object paths")
}

/// The network objects exported on the bus.
#[derive(Default)]
pub struct Exported {
    nets: Mutex<HashSet<Uuid>>,
    sync: tokio::sync::Mutex<()>,
}

/// Runs a driver call on a blocking thread.
async fn blocking<T: Send + 'static>(
    nets: &Networks,
    f: impl FnOnce(&Networks) -> network::Result<T> + Send + 'static,
) -> Result<T> {
    let nets = nets.clone();
    tokio::task::spawn_blocking(move || f(&nets))
        .await
        .map_err(|e| LibvirtError::Error(format!("internal error: network call failed: {e}")))?
        .map_err(Into::into)
}

impl Context {
    fn networks(&self) -> &Networks {
        self.core.networks()
    }

    /// Exports an object for every network and removes those of networks gone.
    pub(super) async fn sync_networks(&self, conn: &zbus::Connection) {
        let ex = &self.network_objects;
        let _guard = ex.sync.lock().await;
        let want: HashSet<Uuid> = match self.networks().list(0) {
            Ok(l) => l.into_iter().map(|i| i.net.uuid).collect(),
            Err(_) => return,
        };
        let have = ex.nets.lock().expect("poisoned").clone();
        let server = conn.object_server();
        for uuid in want.difference(&have) {
            let iface = NetworkIface {
                ctx: self.clone(),
                uuid: *uuid,
            };
            let path = network_path(&self.base, uuid);
            if super::properties::export(server, &path, iface)
                .await
                .is_ok()
            {
                ex.nets.lock().expect("poisoned").insert(*uuid);
            }
        }
        for uuid in have.difference(&want) {
            let _ = server
                .remove::<NetworkIface, _>(network_path(&self.base, uuid))
                .await;
            ex.nets.lock().expect("poisoned").remove(uuid);
        }
    }

    async fn network_object(&self, conn: &zbus::Connection, r: &NetRef) -> OwnedObjectPath {
        self.sync_networks(conn).await;
        network_path(&self.base, &r.uuid)
    }
}

/// Forwards network events as `Connect.NetworkEvent` until the bus connection ends.
pub(super) fn spawn_events(ctx: Context, conn: zbus::Connection) {
    let mut rx = ctx.networks().subscribe();
    tokio::spawn(async move {
        ctx.sync_networks(&conn).await;
        loop {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                Err(RecvError::Lagged(_)) => {
                    ctx.sync_networks(&conn).await;
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            // A new network needs its object before the signal that names it; an
            // undefined one keeps its path in the signal.
            ctx.sync_networks(&conn).await;
            let path = network_path(&ctx.base, &ev.net.uuid);
            let result = match SignalEmitter::new(&conn, &*ctx.base) {
                Ok(em) => ConnectIface::network_event(&em, path, ev.event).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot emit D-Bus network signal");
            }
        }
    });
}

// ---- Connect's network members (called from `connect.rs`) ----

pub(super) async fn list(
    ctx: &Context,
    conn: &zbus::Connection,
    flags: u32,
) -> Result<Vec<OwnedObjectPath>> {
    let list = ctx.networks().list(flags)?;
    ctx.sync_networks(conn).await;
    Ok(list
        .iter()
        .map(|i| network_path(&ctx.base, &i.net.uuid))
        .collect())
}

pub(super) async fn define(
    ctx: &Context,
    conn: &zbus::Connection,
    hdr: &Header<'_>,
    xml: String,
    create: bool,
) -> Result<OwnedObjectPath> {
    ctx.gate.check(conn, hdr).await?;
    let r = blocking(ctx.networks(), move |n| {
        if create {
            n.create_xml(&xml)
        } else {
            n.define_xml(&xml)
        }
    })
    .await?;
    Ok(ctx.network_object(conn, &r).await)
}

pub(super) async fn lookup(
    ctx: &Context,
    conn: &zbus::Connection,
    name: Option<&str>,
    uuid: Option<&str>,
) -> Result<OwnedObjectPath> {
    let n = ctx.networks();
    let r = match (name, uuid) {
        (Some(name), _) => n.lookup_by_name(name)?,
        (None, Some(u)) => {
            let u = Uuid::parse_str(u)
                .map_err(|_| network::Error::InvalidArg(format!("'{u}' is not a valid UUID")))?;
            n.lookup_by_uuid(&u)?
        }
        (None, None) => return Err(network::Error::InvalidArg("no network named".into()).into()),
    };
    Ok(ctx.network_object(conn, &r).await)
}

/// One network object.
pub struct NetworkIface {
    ctx: Context,
    uuid: Uuid,
}

impl NetworkIface {
    fn name(&self) -> network::Result<String> {
        Ok(self.ctx.networks().lookup_by_uuid(&self.uuid)?.name)
    }

    fn info(&self) -> Result<network::NetInfo> {
        self.name()
            .and_then(|n| self.ctx.networks().info(&n))
            .map_err(LibvirtError::from)
    }

    /// Checks the caller, then runs `f` on the named network on a blocking thread.
    async fn change(
        &self,
        conn: &zbus::Connection,
        hdr: &Header<'_>,
        f: impl FnOnce(&Networks, &str) -> network::Result<()> + Send + 'static,
    ) -> Result<()> {
        self.ctx.gate.check(conn, hdr).await?;
        let name = self.name()?;
        blocking(self.ctx.networks(), move |n| f(n, &name)).await?;
        self.ctx.sync_networks(conn).await;
        Ok(())
    }
}

/// One lease as libvirt-dbus sends it: `(sxisssuss)` = interface, expiry, type, MAC,
/// IAID, address, prefix, hostname, client id; empty strings for what is absent.
type DbusLease = (
    String,
    i64,
    i32,
    String,
    String,
    String,
    u32,
    String,
    String,
);

#[zbus::interface(name = "org.libvirt.Network")]
impl NetworkIface {
    #[zbus(property(emits_changed_signal = "false"), name = "Active")]
    async fn active(&self) -> Result<bool> {
        Ok(self.info()?.active)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "Autostart")]
    async fn autostart(&self) -> Result<bool> {
        Ok(self.info()?.autostart)
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
            .networks()
            .set_autostart(&name, value)
            .map_err(LibvirtError::from)
    }

    #[zbus(property(emits_changed_signal = "const"), name = "Name")]
    async fn name_prop(&self) -> Result<String> {
        self.name().map_err(LibvirtError::from)
    }

    #[zbus(property(emits_changed_signal = "false"), name = "Persistent")]
    async fn persistent(&self) -> Result<bool> {
        Ok(self.info()?.persistent)
    }

    #[zbus(property(emits_changed_signal = "const"), name = "UUID")]
    async fn uuid_prop(&self) -> Result<String> {
        Ok(self.uuid.to_string())
    }

    #[zbus(name = "Create")]
    async fn create(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<()> {
        self.change(conn, &hdr, |n, name| n.start(name)).await
    }

    #[zbus(name = "Destroy")]
    async fn destroy(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<()> {
        self.change(conn, &hdr, |n, name| n.destroy(name)).await
    }

    #[zbus(name = "GetDHCPLeases", out_args("leases"))]
    async fn get_dhcp_leases(&self, mac: String, flags: u32) -> Result<Vec<DbusLease>> {
        network::Error::check_flags(flags, 0, "virNetworkGetDHCPLeases")?;
        let mac = (!mac.is_empty()).then_some(mac);
        let leases = self
            .ctx
            .networks()
            .dhcp_leases(&self.name()?, mac.as_deref())?;
        Ok(leases
            .into_iter()
            .map(|l| {
                (
                    l.iface,
                    l.expiry,
                    i32::from(l.ip.is_ipv6()),
                    l.mac.unwrap_or_default(),
                    l.iaid.unwrap_or_default(),
                    l.ip.to_string(),
                    l.prefix,
                    l.hostname.unwrap_or_default(),
                    l.clientid.unwrap_or_default(),
                )
            })
            .collect())
    }

    #[zbus(name = "GetXMLDesc", out_args("xml"))]
    async fn get_xml_desc(&self, flags: u32) -> Result<String> {
        Ok(self.ctx.networks().xml_desc(&self.name()?, flags)?)
    }

    #[zbus(name = "Undefine")]
    async fn undefine(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<()> {
        self.change(conn, &hdr, |n, name| n.undefine(name)).await
    }

    // libvirt-dbus's five arguments, plus the caller's connection and header.
    #[allow(clippy::too_many_arguments)]
    #[zbus(name = "Update")]
    async fn update(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] hdr: Header<'_>,
        command: u32,
        section: u32,
        parent_index: i32,
        xml: String,
        flags: u32,
    ) -> Result<()> {
        self.change(conn, &hdr, move |n, name| {
            n.update(name, command, section, parent_index, &xml, flags)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_paths_are_libvirt_dbus_paths() {
        let u = Uuid::parse_str("6a888e3b-2249-45da-a9c2-c6731e2ebde4").unwrap();
        assert_eq!(
            network_path("/org/libvirt/QEMU", &u).as_str(),
            "/org/libvirt/QEMU/network/_6a888e3b_2249_45da_a9c2_c6731e2ebde4"
        );
    }
}
