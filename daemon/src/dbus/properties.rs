//! `org.freedesktop.DBus.Properties` as libvirt-dbus answers it, in place of
//! zbus's own on every `org.libvirt` object.
//!
//! Two differences from zbus's: `GetAll` wraps each value in a second variant
//! (libvirt-dbus's `virtDBusGDBusHandlePropertyGetAll` adds
//! `g_variant_new_variant(value)` under a `{sv}` format; Cockpit reads
//! `props.Persistent.v.v`), and a getter's or setter's failure goes out as the
//! error the property handler gave (`org.libvirt.Error`), as libvirt-dbus
//! returns its `GError`. `Get` answers one variant level, as libvirt-dbus does.
//!
//! zbus gives every object node its own Properties interface; [`export`]
//! swaps it for this one right after the object's interface is added.

use std::collections::HashMap;

use zbus::message::Header;
use zbus::names::InterfaceName;
use zbus::object_server::{DispatchResult, Interface, SignalEmitter};
use zbus::{BoxDBusError, Connection, ObjectPath, ObjectServer, OwnedVariant, Variant};

use super::connect::ConnectIface;
use super::domain::DomainIface;
use super::interface::InterfaceIface;
use super::network::NetworkIface;
use super::nodedev::NodeDeviceIface;
use super::secret::SecretIface;
use super::storage_pool::StoragePoolIface;
use super::storage_vol::StorageVolIface;
use super::typed;

/// The replacement Properties interface (stateless: it finds the object's
/// interface on each call).
pub struct LibvirtProperties;

/// Adds `iface` at `path` with libvirt-dbus's Properties behaviour. Returns
/// false when `path` already has an `I` (as [`ObjectServer::at`] does).
pub async fn export<I: Interface>(
    server: &ObjectServer,
    path: &ObjectPath<'_>,
    iface: I,
) -> zbus::Result<bool> {
    if server.at(path.clone(), iface).await?.is_some() {
        return Ok(false);
    }
    replace_properties(server, path).await?;
    Ok(true)
}

/// Swaps zbus's Properties interface at `path` (which must hold another
/// interface, or the node would be pruned) for [`LibvirtProperties`].
pub async fn replace_properties(server: &ObjectServer, path: &ObjectPath<'_>) -> zbus::Result<()> {
    server
        .remove::<zbus::fdo::Properties, _>(path.clone())
        .await?;
    server.at(path.clone(), LibvirtProperties).await?;
    Ok(())
}

fn unknown_interface(name: &InterfaceName<'_>) -> BoxDBusError {
    zbus::fdo::Error::UnknownInterface(format!("Unknown interface '{name}'")).into()
}

fn unknown_property(name: &str) -> BoxDBusError {
    zbus::fdo::Error::UnknownProperty(format!("Unknown property '{name}'")).into()
}

/// What a Properties call does to the target interface.
enum Op<'a> {
    Get(&'a str),
    GetAll,
    Set(&'a str, &'a Variant<'a>),
}

/// What the call answers.
enum Answer {
    One(OwnedVariant),
    All(HashMap<String, OwnedVariant>),
    Done,
}

/// Runs `op` on the `I` at the caller's path.
async fn on<I: Interface>(
    op: Op<'_>,
    server: &ObjectServer,
    conn: &Connection,
    hdr: &Header<'_>,
    emitter: &SignalEmitter<'_>,
) -> Result<Answer, BoxDBusError> {
    let path = hdr.path().ok_or(zbus::Error::MissingField)?;
    let iref = server
        .interface::<_, I>(path)
        .await
        .map_err(|_| unknown_interface(&I::name()))?;
    match op {
        Op::Get(name) => {
            let guard = iref.get().await;
            match guard.get(name, server, conn, Some(hdr), emitter).await {
                Some(r) => r.map(Answer::One),
                None => Err(unknown_property(name)),
            }
        }
        Op::GetAll => {
            let guard = iref.get().await;
            let all = guard.get_all(server, conn, Some(hdr), emitter).await?;
            Ok(Answer::All(all))
        }
        Op::Set(name, value) => {
            let guard = iref.get().await;
            let done = match guard.set(name, value, server, conn, Some(hdr), emitter) {
                DispatchResult::NotFound => Some(Err(unknown_property(name))),
                DispatchResult::Async(f) => Some(f.await.map(|()| Answer::Done)),
                DispatchResult::RequiresMut => None,
            };
            drop(guard);
            if let Some(r) = done {
                return r;
            }
            let mut guard = iref.get_mut().await;
            match guard
                .set_mut(name, value, server, conn, Some(hdr), emitter)
                .await
            {
                Some(r) => r.map(|()| Answer::Done),
                None => Err(unknown_property(name)),
            }
        }
    }
}

/// Runs `op` on the named `org.libvirt` interface.
async fn dispatch(
    interface: &InterfaceName<'_>,
    op: Op<'_>,
    server: &ObjectServer,
    conn: &Connection,
    hdr: &Header<'_>,
    emitter: &SignalEmitter<'_>,
) -> Result<Answer, BoxDBusError> {
    match interface.as_str() {
        "org.libvirt.Connect" => on::<ConnectIface>(op, server, conn, hdr, emitter).await,
        "org.libvirt.Domain" => on::<DomainIface>(op, server, conn, hdr, emitter).await,
        "org.libvirt.Network" => on::<NetworkIface>(op, server, conn, hdr, emitter).await,
        "org.libvirt.StoragePool" => on::<StoragePoolIface>(op, server, conn, hdr, emitter).await,
        "org.libvirt.StorageVol" => on::<StorageVolIface>(op, server, conn, hdr, emitter).await,
        "org.libvirt.Secret" => on::<SecretIface>(op, server, conn, hdr, emitter).await,
        "org.libvirt.NodeDevice" => on::<NodeDeviceIface>(op, server, conn, hdr, emitter).await,
        "org.libvirt.Interface" => on::<InterfaceIface>(op, server, conn, hdr, emitter).await,
        _ => Err(unknown_interface(interface)),
    }
}

#[zbus::interface(name = "org.freedesktop.DBus.Properties", introspection_docs = false)]
impl LibvirtProperties {
    async fn get(
        &self,
        interface_name: InterfaceName<'_>,
        property_name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<OwnedVariant, BoxDBusError> {
        let op = Op::Get(property_name);
        match dispatch(&interface_name, op, server, conn, &hdr, &emitter).await? {
            Answer::One(v) => Ok(v),
            Answer::All(_) | Answer::Done => unreachable!("Get answers one value"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn set(
        &self,
        interface_name: InterfaceName<'_>,
        property_name: &str,
        value: Variant<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BoxDBusError> {
        let op = Op::Set(property_name, &value);
        dispatch(&interface_name, op, server, conn, &hdr, &emitter).await?;
        Ok(())
    }

    async fn get_all(
        &self,
        interface_name: InterfaceName<'_>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(header)] hdr: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<HashMap<String, OwnedVariant>, BoxDBusError> {
        match dispatch(&interface_name, Op::GetAll, server, conn, &hdr, &emitter).await? {
            Answer::All(all) => Ok(typed::to_wire(all)),
            Answer::One(_) | Answer::Done => unreachable!("GetAll answers a map"),
        }
    }

    #[zbus(signal)]
    async fn properties_changed(
        emitter: &SignalEmitter<'_>,
        interface_name: InterfaceName<'_>,
        changed_properties: HashMap<&str, Variant<'_>>,
        invalidated_properties: &[&str],
    ) -> zbus::Result<()>;
}
