//! Network procedures of the REMOTE program (what `virsh net-*`, python3-libvirt and
//! virt-manager call): decode, run the network driver ([`crate::network`]) on a
//! blocking thread (it waits for `ip`, `nft`, `dnsmasq`), encode. Also network
//! lifecycle event callbacks and virDomainInterfaceAddresses from DHCP leases.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::conn::{Conn, Outbox};
use super::dispatch::{args, ret, void, CallResult};
use super::error::VirError;
use super::packet::PROGRAM_REMOTE;
use super::proto::{
    IntValue, InterfaceAddressesArgs, ListAllArgs, NonnullNetwork, StringValue, UuidArgs,
};
use super::xdr::{xdr_struct, XdrError};
use super::Shared;
use crate::network::{self, NetRef, Networks};

/// Procedure numbers (remote_protocol.x, libvirt 9.0).
pub mod procs {
    pub const NETWORK_CREATE: i32 = 39;
    pub const NETWORK_CREATE_XML: i32 = 40;
    pub const NETWORK_DEFINE_XML: i32 = 41;
    pub const NETWORK_DESTROY: i32 = 42;
    pub const NETWORK_GET_XML_DESC: i32 = 43;
    pub const NETWORK_GET_AUTOSTART: i32 = 44;
    pub const NETWORK_GET_BRIDGE_NAME: i32 = 45;
    pub const NETWORK_LOOKUP_BY_NAME: i32 = 46;
    pub const NETWORK_LOOKUP_BY_UUID: i32 = 47;
    pub const NETWORK_SET_AUTOSTART: i32 = 48;
    pub const NETWORK_UNDEFINE: i32 = 49;
    pub const NETWORK_IS_ACTIVE: i32 = 152;
    pub const NETWORK_IS_PERSISTENT: i32 = 153;
    pub const CONNECT_LIST_ALL_NETWORKS: i32 = 283;
    pub const NETWORK_UPDATE: i32 = 291;
    pub const CONNECT_NETWORK_EVENT_REGISTER_ANY: i32 = 313;
    pub const CONNECT_NETWORK_EVENT_DEREGISTER_ANY: i32 = 314;
    pub const NETWORK_EVENT_LIFECYCLE: i32 = 315;
    pub const NETWORK_GET_DHCP_LEASES: i32 = 341;
    pub const NETWORK_DEFINE_XML_FLAGS: i32 = 432;
    pub const NETWORK_CREATE_XML_FLAGS: i32 = 437;
}

/// `VIR_DRV_FEATURE_NETWORK_UPDATE_HAS_CORRECT_ORDER`: answered 1, else virsh swaps
/// `command` and `section` on the wire.
pub const FEATURE_NETWORK_UPDATE_HAS_CORRECT_ORDER: i32 = 16;

xdr_struct! {
    /// `{ remote_nonnull_network net; }`: args of CREATE, DESTROY, UNDEFINE, getters;
    /// ret of lookups, DEFINE_XML, CREATE_XML.
    pub struct NetArgs { pub net: NonnullNetwork }
}
xdr_struct! {
    /// `{ net; unsigned int flags; }`: GET_XML_DESC args.
    pub struct NetFlagsArgs { pub net: NonnullNetwork, pub flags: u32 }
}
xdr_struct! {
    /// `{ net; int autostart; }`: SET_AUTOSTART args.
    pub struct NetSetAutostartArgs { pub net: NonnullNetwork, pub autostart: i32 }
}
xdr_struct! {
    /// `{ string xml; unsigned int flags; }`: DEFINE_XML_FLAGS / CREATE_XML_FLAGS args.
    pub struct NetXmlFlagsArgs { pub xml: String, pub flags: u32 }
}
xdr_struct! {
    /// CONNECT_LIST_ALL_NETWORKS ret.
    pub struct ListAllNetworksRet { pub nets: Vec<NonnullNetwork>, pub ret: u32 }
}
xdr_struct! {
    /// NETWORK_UPDATE args.
    pub struct NetUpdateArgs {
        pub net: NonnullNetwork,
        pub command: u32,
        pub section: u32,
        pub parent_index: i32,
        pub xml: String,
        pub flags: u32,
    }
}
xdr_struct! {
    /// NETWORK_GET_DHCP_LEASES args.
    pub struct DhcpLeasesArgs {
        pub net: NonnullNetwork,
        pub mac: Option<String>,
        pub need_results: i32,
        pub flags: u32,
    }
}
xdr_struct! {
    /// `remote_network_dhcp_lease`.
    pub struct WireLease {
        pub iface: String,
        pub expirytime: i64,
        pub kind: i32,
        pub mac: Option<String>,
        pub iaid: Option<String>,
        pub ipaddr: String,
        pub prefix: u32,
        pub hostname: Option<String>,
        pub clientid: Option<String>,
    }
}
xdr_struct! {
    /// NETWORK_GET_DHCP_LEASES ret.
    pub struct DhcpLeasesRet { pub leases: Vec<WireLease>, pub ret: u32 }
}
xdr_struct! {
    /// CONNECT_NETWORK_EVENT_REGISTER_ANY args.
    pub struct NetEventRegisterArgs { pub event_id: i32, pub net: Option<NonnullNetwork> }
}
xdr_struct! {
    /// NETWORK_EVENT_LIFECYCLE message.
    pub struct NetLifecycleMsg {
        pub callback_id: i32,
        pub net: NonnullNetwork,
        pub event: i32,
        pub detail: i32,
    }
}
xdr_struct! {
    /// `remote_domain_ip_addr`.
    pub struct WireIpAddr { pub kind: i32, pub addr: String, pub prefix: u32 }
}
xdr_struct! {
    /// `remote_domain_interface`.
    pub struct WireInterface {
        pub name: String,
        pub hwaddr: Option<String>,
        pub addrs: Vec<WireIpAddr>,
    }
}
xdr_struct! {
    /// DOMAIN_INTERFACE_ADDRESSES ret.
    pub struct InterfaceAddressesRet { pub ifaces: Vec<WireInterface> }
}

/// Procedures a read-only connection may call.
pub fn read_only_safe(p: i32) -> bool {
    use procs::*;
    matches!(
        p,
        NETWORK_GET_XML_DESC
            | NETWORK_GET_AUTOSTART
            | NETWORK_GET_BRIDGE_NAME
            | NETWORK_LOOKUP_BY_NAME
            | NETWORK_LOOKUP_BY_UUID
            | NETWORK_IS_ACTIVE
            | NETWORK_IS_PERSISTENT
            | NETWORK_GET_DHCP_LEASES
    )
}

/// A network error as the client sees it.
pub fn vir(e: network::Error) -> VirError {
    VirError::new(e.code(), network::error::ORIGIN, e.to_string())
}

fn wire(r: &NetRef) -> NonnullNetwork {
    NonnullNetwork {
        name: r.name.clone(),
        uuid: *r.uuid.as_bytes(),
    }
}

fn net_ret(r: NetRef) -> CallResult {
    ret(NetArgs { net: wire(&r) })
}

/// Runs a driver call on a blocking thread.
async fn blocking<T: Send + 'static>(
    nets: &Networks,
    f: impl FnOnce(&Networks) -> network::Result<T> + Send + 'static,
) -> Result<T, VirError> {
    let nets = nets.clone();
    tokio::task::spawn_blocking(move || f(&nets))
        .await
        .map_err(|e| VirError::internal(format!("network operation panicked: {e}")))?
        .map_err(vir)
}

/// The network a call names (libvirt identifies it by UUID; the name is the
/// client's copy).
fn name_of(nets: &Networks, n: &NonnullNetwork) -> Result<String, VirError> {
    nets.lookup_by_uuid(&Uuid::from_bytes(n.uuid))
        .map(|r| r.name)
        .map_err(vir)
}

/// Runs procedure `p` if it is a network procedure; `None` otherwise.
pub async fn call(conn: &mut Conn, p: i32, payload: &[u8]) -> Option<CallResult> {
    use procs::*;
    let nets = conn.shared.core.networks().clone();
    let r = match p {
        CONNECT_LIST_ALL_NETWORKS => (|| {
            let a: ListAllArgs = args(p, payload)?;
            let list = nets.list(a.flags).map_err(vir)?;
            ret(ListAllNetworksRet {
                ret: list.len() as u32,
                nets: if a.need_results != 0 {
                    list.iter().map(|i| wire(&i.net)).collect()
                } else {
                    Vec::new()
                },
            })
        })(),
        NETWORK_LOOKUP_BY_NAME => (|| {
            let a: StringValue = args(p, payload)?;
            net_ret(nets.lookup_by_name(&a.value).map_err(vir)?)
        })(),
        NETWORK_LOOKUP_BY_UUID => (|| {
            let a: UuidArgs = args(p, payload)?;
            net_ret(
                nets.lookup_by_uuid(&Uuid::from_bytes(a.uuid))
                    .map_err(vir)?,
            )
        })(),
        NETWORK_GET_XML_DESC => (|| {
            let a: NetFlagsArgs = args(p, payload)?;
            let n = name_of(&nets, &a.net)?;
            ret(StringValue {
                value: nets.xml_desc(&n, a.flags).map_err(vir)?,
            })
        })(),
        NETWORK_GET_AUTOSTART | NETWORK_IS_ACTIVE | NETWORK_IS_PERSISTENT => (|| {
            let a: NetArgs = args(p, payload)?;
            let i = nets.info(&name_of(&nets, &a.net)?).map_err(vir)?;
            let v = match p {
                NETWORK_GET_AUTOSTART => i.autostart,
                NETWORK_IS_ACTIVE => i.active,
                _ => i.persistent,
            };
            ret(IntValue {
                value: i32::from(v),
            })
        })(),
        NETWORK_GET_BRIDGE_NAME => (|| {
            let a: NetArgs = args(p, payload)?;
            ret(StringValue {
                value: nets.bridge_name(&name_of(&nets, &a.net)?).map_err(vir)?,
            })
        })(),
        NETWORK_SET_AUTOSTART => (|| {
            let a: NetSetAutostartArgs = args(p, payload)?;
            nets.set_autostart(&name_of(&nets, &a.net)?, a.autostart != 0)
                .map_err(vir)?;
            void()
        })(),
        NETWORK_DEFINE_XML | NETWORK_DEFINE_XML_FLAGS => {
            let xml = match p {
                NETWORK_DEFINE_XML => args::<StringValue>(p, payload).map(|a| a.value),
                _ => args::<NetXmlFlagsArgs>(p, payload).and_then(|a| {
                    // VIR_NETWORK_DEFINE_VALIDATE (1): we always validate.
                    network::Error::check_flags(a.flags, 1, "virNetworkDefineXMLFlags")
                        .map_err(vir)
                        .map(|()| a.xml)
                }),
            };
            match xml {
                Ok(xml) => blocking(&nets, move |n| n.define_xml(&xml))
                    .await
                    .and_then(net_ret),
                Err(e) => Err(e),
            }
        }
        NETWORK_CREATE_XML | NETWORK_CREATE_XML_FLAGS => {
            let xml = match p {
                NETWORK_CREATE_XML => args::<StringValue>(p, payload).map(|a| a.value),
                _ => args::<NetXmlFlagsArgs>(p, payload).and_then(|a| {
                    network::Error::check_flags(a.flags, 1, "virNetworkCreateXMLFlags")
                        .map_err(vir)
                        .map(|()| a.xml)
                }),
            };
            match xml {
                Ok(xml) => blocking(&nets, move |n| n.create_xml(&xml))
                    .await
                    .and_then(net_ret),
                Err(e) => Err(e),
            }
        }
        NETWORK_CREATE | NETWORK_DESTROY | NETWORK_UNDEFINE => {
            match args::<NetArgs>(p, payload).and_then(|a| name_of(&nets, &a.net)) {
                Ok(name) => blocking(&nets, move |n| match p {
                    NETWORK_CREATE => n.start(&name),
                    NETWORK_DESTROY => n.destroy(&name),
                    _ => n.undefine(&name),
                })
                .await
                .and_then(|()| void()),
                Err(e) => Err(e),
            }
        }
        NETWORK_UPDATE => match args::<NetUpdateArgs>(p, payload) {
            Ok(a) => match name_of(&nets, &a.net) {
                Ok(name) => blocking(&nets, move |n| {
                    n.update(&name, a.command, a.section, a.parent_index, &a.xml, a.flags)
                })
                .await
                .and_then(|()| void()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        NETWORK_GET_DHCP_LEASES => (|| {
            let a: DhcpLeasesArgs = args(p, payload)?;
            network::Error::check_flags(a.flags, 0, "virNetworkGetDHCPLeases").map_err(vir)?;
            let leases = nets
                .dhcp_leases(&name_of(&nets, &a.net)?, a.mac.as_deref())
                .map_err(vir)?;
            ret(DhcpLeasesRet {
                ret: leases.len() as u32,
                leases: if a.need_results != 0 {
                    leases.iter().map(wire_lease).collect()
                } else {
                    Vec::new()
                },
            })
        })(),
        CONNECT_NETWORK_EVENT_REGISTER_ANY => (|| {
            let a: NetEventRegisterArgs = args(p, payload)?;
            if a.event_id != 0 {
                return Err(VirError::invalid_arg(format!(
                    "unsupported network event ID {}",
                    a.event_id
                )));
            }
            let cb = conn
                .net_events
                .register(&conn.shared, &conn.out, a.net.map(|n| n.uuid));
            ret(IntValue { value: cb })
        })(),
        CONNECT_NETWORK_EVENT_DEREGISTER_ANY => (|| {
            let a: IntValue = args(p, payload)?;
            conn.net_events.deregister(a.value)?;
            void()
        })(),
        _ => return None,
    };
    Some(r)
}

/// Decodes the arguments of network procedure `p` without running it (the fuzz
/// target's path through `proto::decode_args`); `None` for other procedures.
pub fn decode_args(p: i32, payload: &[u8]) -> Option<Result<(), XdrError>> {
    use super::xdr::from_bytes as d;
    use procs::*;
    Some(match p {
        NETWORK_LOOKUP_BY_NAME | NETWORK_DEFINE_XML | NETWORK_CREATE_XML => {
            d::<StringValue>(payload).map(drop)
        }
        NETWORK_LOOKUP_BY_UUID => d::<UuidArgs>(payload).map(drop),
        NETWORK_GET_XML_DESC => d::<NetFlagsArgs>(payload).map(drop),
        NETWORK_CREATE
        | NETWORK_DESTROY
        | NETWORK_UNDEFINE
        | NETWORK_GET_AUTOSTART
        | NETWORK_GET_BRIDGE_NAME
        | NETWORK_IS_ACTIVE
        | NETWORK_IS_PERSISTENT => d::<NetArgs>(payload).map(drop),
        NETWORK_SET_AUTOSTART => d::<NetSetAutostartArgs>(payload).map(drop),
        NETWORK_DEFINE_XML_FLAGS | NETWORK_CREATE_XML_FLAGS => {
            d::<NetXmlFlagsArgs>(payload).map(drop)
        }
        NETWORK_UPDATE => d::<NetUpdateArgs>(payload).map(drop),
        NETWORK_GET_DHCP_LEASES => d::<DhcpLeasesArgs>(payload).map(drop),
        CONNECT_NETWORK_EVENT_REGISTER_ANY => d::<NetEventRegisterArgs>(payload).map(drop),
        CONNECT_NETWORK_EVENT_DEREGISTER_ANY => d::<IntValue>(payload).map(drop),
        _ => return None,
    })
}

fn wire_lease(l: &network::Lease) -> WireLease {
    WireLease {
        iface: l.iface.clone(),
        expirytime: l.expiry,
        // VIR_IP_ADDR_TYPE_IPV4 0, IPV6 1.
        kind: i32::from(l.ip.is_ipv6()),
        mac: l.mac.clone(),
        iaid: l.iaid.clone(),
        ipaddr: l.ip.to_string(),
        prefix: l.prefix,
        hostname: l.hostname.clone(),
        clientid: l.clientid.clone(),
    }
}

/// DOMAIN_INTERFACE_ADDRESSES: source `lease`, `agent` or `arp`, from
/// [`crate::core::Core::domain_interface_addresses`].
pub async fn interface_addresses(conn: &Conn, a: InterfaceAddressesArgs) -> CallResult {
    // Asking the guest agent needs a read-write connection (libvirt checks it for
    // source agent only).
    if a.source == 1 && conn.access != super::conn::Access::ReadWrite {
        return Err(VirError::read_only("virDomainInterfaceAddresses"));
    }
    let u = Uuid::from_bytes(a.dom.uuid);
    let ifaces = conn
        .shared
        .core
        .domain_interface_addresses(&u, a.source, a.flags)
        .await
        .map_err(super::domain::vir)?
        .into_iter()
        .map(|i| WireInterface {
            name: i.name,
            hwaddr: Some(i.mac),
            addrs: i
                .addrs
                .iter()
                .map(|(ip, prefix)| WireIpAddr {
                    kind: i32::from(ip.is_ipv6()),
                    addr: ip.to_string(),
                    prefix: *prefix,
                })
                .collect(),
        })
        .collect();
    ret(InterfaceAddressesRet { ifaces })
}

type Registry = Arc<Mutex<Vec<(i32, Option<[u8; 16]>)>>>;

/// The network event callbacks one connection registered; one forwarding task
/// subscribes to the driver's events when the first is registered.
#[derive(Default)]
pub struct NetSubscriptions {
    regs: Registry,
    ids: HashSet<i32>,
    task: Option<JoinHandle<()>>,
}

impl NetSubscriptions {
    fn register(&mut self, shared: &Arc<Shared>, out: &Outbox, net: Option<[u8; 16]>) -> i32 {
        let cb = shared.next_callback_id.fetch_add(1, Ordering::Relaxed);
        self.regs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((cb, net));
        self.ids.insert(cb);
        if self.task.is_none() {
            let rx = shared.core.networks().subscribe();
            self.task = Some(tokio::spawn(forward(rx, self.regs.clone(), out.clone())));
        }
        cb
    }

    fn deregister(&mut self, cb: i32) -> Result<(), VirError> {
        if !self.ids.remove(&cb) {
            return Err(VirError::invalid_arg(format!(
                "callback {cb} not registered"
            )));
        }
        self.regs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _)| *id != cb);
        Ok(())
    }

    /// Drops every registration (connection closing).
    pub fn clear(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.ids.clear();
        self.regs.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

impl Drop for NetSubscriptions {
    fn drop(&mut self) {
        self.clear();
    }
}

async fn forward(
    mut rx: tokio::sync::broadcast::Receiver<network::NetEvent>,
    regs: Registry,
    out: Outbox,
) {
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!("libvirt RPC client missed {n} network events");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let net = wire(&ev.net);
        let targets: Vec<i32> = regs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, u)| u.is_none_or(|u| u == net.uuid))
            .map(|(cb, _)| *cb)
            .collect();
        for cb in targets {
            let m = NetLifecycleMsg {
                callback_id: cb,
                net: net.clone(),
                event: ev.event,
                detail: 0,
            };
            if !out
                .message(PROGRAM_REMOTE, procs::NETWORK_EVENT_LIFECYCLE, &m)
                .await
            {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::xdr::to_bytes;
    use super::*;

    #[test]
    fn network_arguments_decode_and_truncation_is_an_error() {
        let net = NonnullNetwork {
            name: "default".into(),
            uuid: [7; 16],
        };
        let upd = to_bytes(&NetUpdateArgs {
            net: net.clone(),
            command: 3,
            section: 4,
            parent_index: -1,
            xml: "<host mac='52:54:00:00:00:02' ip='192.168.122.45'/>".into(),
            flags: 3,
        });
        assert_eq!(decode_args(procs::NETWORK_UPDATE, &upd), Some(Ok(())));
        assert!(matches!(
            decode_args(procs::NETWORK_UPDATE, &upd[..upd.len() - 2]),
            Some(Err(_))
        ));
        let leases = to_bytes(&DhcpLeasesArgs {
            net,
            mac: None,
            need_results: 1,
            flags: 0,
        });
        assert_eq!(
            decode_args(procs::NETWORK_GET_DHCP_LEASES, &leases),
            Some(Ok(()))
        );
        assert_eq!(decode_args(12345, &leases), None);
    }
}
