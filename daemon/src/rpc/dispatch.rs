//! Procedure dispatch: decode the arguments, check the connection may call it, run it,
//! encode the result. Connection-level procedures are answered here; domain procedures
//! call the core through [`super::domain`].

use super::conn::{Access, Conn};
use super::domain;
use super::error::{code, from, VirError};
use super::host;
use super::network;
use super::packet::{Header, PROGRAM_QEMU};
use super::proto::{
    feature, qemu, remote, AuthListRet, DomainCapsArgs, EmptyListRet, EventRegisterArgs, IntValue,
    ListAllArgs, OpenArgs, OptStringValue, SecurityModelRet, StringValue, U64Value,
};
use super::storage;
use super::xdr::{from_bytes, to_bytes, CharArray, Xdr};
use crate::core::DomainCapsQuery;

/// Decodes call arguments; a payload that does not decode is the caller's error.
pub fn args<T: Xdr>(proc_: i32, payload: &[u8]) -> Result<T, VirError> {
    from_bytes(payload).map_err(|e| VirError::bad_args(proc_, &e))
}

/// What a call produced: the encoded return value, or `None` when the handler already
/// queued its reply itself (DOMAIN_OPEN_CONSOLE, whose reply must precede stream data).
pub type CallResult = Result<Option<Vec<u8>>, VirError>;

/// Encodes a return value.
pub fn ret<T: Xdr>(v: T) -> CallResult {
    Ok(Some(to_bytes(&v)))
}

/// A void return.
pub fn void() -> CallResult {
    Ok(Some(Vec::new()))
}

/// Procedures allowed before CONNECT_OPEN (the handshake).
fn allowed_before_open(proc_: i32) -> bool {
    matches!(
        proc_,
        remote::AUTH_LIST
            | remote::AUTH_POLKIT
            | remote::CONNECT_SUPPORTS_FEATURE
            | remote::CONNECT_OPEN
            | remote::CONNECT_CLOSE
    )
}

/// REMOTE procedures a read-only connection may call: lookups, getters, listings and
/// event registration. Anything else changes state (or, like the console and the QEMU
/// monitor, could) and is refused.
fn read_only_safe(proc_: i32) -> bool {
    use remote::*;
    matches!(
        proc_,
        CONNECT_OPEN
            | CONNECT_CLOSE
            | CONNECT_GET_TYPE
            | CONNECT_GET_VERSION
            | CONNECT_GET_MAX_VCPUS
            | NODE_GET_INFO
            | CONNECT_GET_CAPABILITIES
            | DOMAIN_GET_XML_DESC
            | DOMAIN_GET_AUTOSTART
            | DOMAIN_GET_INFO
            | DOMAIN_GET_MAX_MEMORY
            | DOMAIN_GET_MAX_VCPUS
            | DOMAIN_GET_OS_TYPE
            | CONNECT_LIST_DEFINED_DOMAINS
            | DOMAIN_LOOKUP_BY_ID
            | DOMAIN_LOOKUP_BY_NAME
            | DOMAIN_LOOKUP_BY_UUID
            | CONNECT_NUM_OF_DEFINED_DOMAINS
            | CONNECT_LIST_DOMAINS
            | CONNECT_NUM_OF_DOMAINS
            | DOMAIN_GET_SCHEDULER_TYPE
            | CONNECT_GET_HOSTNAME
            | CONNECT_SUPPORTS_FEATURE
            | AUTH_LIST
            | AUTH_POLKIT
            | NODE_GET_FREE_MEMORY
            | CONNECT_GET_URI
            | DOMAIN_GET_SECURITY_LABEL
            | NODE_GET_SECURITY_MODEL
            | CONNECT_IS_SECURE
            | DOMAIN_IS_ACTIVE
            | DOMAIN_IS_PERSISTENT
            | CONNECT_GET_LIB_VERSION
            | DOMAIN_MEMORY_STATS
            | DOMAIN_HAS_MANAGED_SAVE_IMAGE
            | DOMAIN_SAVE_IMAGE_GET_XML_DESC
            | DOMAIN_SNAPSHOT_NUM
            | DOMAIN_GET_VCPUS_FLAGS
            | DOMAIN_IS_UPDATED
            | CONNECT_GET_SYSINFO
            | DOMAIN_GET_STATE
            | DOMAIN_GET_METADATA
            | CONNECT_LIST_ALL_DOMAINS
            | DOMAIN_LIST_ALL_SNAPSHOTS
            | CONNECT_LIST_ALL_STORAGE_POOLS
            | CONNECT_LIST_ALL_NETWORKS
            | CONNECT_LIST_ALL_INTERFACES
            | CONNECT_LIST_ALL_NODE_DEVICES
            | CONNECT_LIST_ALL_NWFILTERS
            | CONNECT_LIST_ALL_SECRETS
            | CONNECT_NETWORK_EVENT_REGISTER_ANY
            | CONNECT_NETWORK_EVENT_DEREGISTER_ANY
            | CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY
            | CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY
            | CONNECT_GET_DOMAIN_CAPABILITIES
            | CONNECT_GET_ALL_DOMAIN_STATS
            | DOMAIN_INTERFACE_ADDRESSES
            | CONNECT_REGISTER_CLOSE_CALLBACK
            | CONNECT_UNREGISTER_CLOSE_CALLBACK
            | CONNECT_STORAGE_POOL_EVENT_REGISTER_ANY
            | CONNECT_STORAGE_POOL_EVENT_DEREGISTER_ANY
            | CONNECT_NODE_DEVICE_EVENT_REGISTER_ANY
            | CONNECT_NODE_DEVICE_EVENT_DEREGISTER_ANY
            | CONNECT_SECRET_EVENT_REGISTER_ANY
            | CONNECT_SECRET_EVENT_DEREGISTER_ANY
            | DOMAIN_GET_MESSAGES
    )
}

/// Whether `uri` names a driver this daemon serves. The client strips the transport and
/// query, so we see `oxvirt:///system`, or `qemu:///system` when the user pointed a
/// `qemu+unix:///system?socket=…` URI (or the virtqemud socket) at us.
fn accepts_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    matches!(scheme, "oxvirt" | "qemu") && rest.starts_with('/')
}

impl Conn {
    /// Runs one CALL and returns its encoded result.
    pub async fn call(&mut self, h: &Header, payload: &[u8]) -> CallResult {
        let p = h.proc_;
        if h.prog == PROGRAM_QEMU {
            return self.call_qemu(p, payload).await;
        }
        if !self.opened && !allowed_before_open(p) {
            return Err(VirError::new(
                code::INTERNAL_ERROR,
                from::RPC,
                "internal error: connection not open",
            ));
        }
        if self.access == Access::ReadOnly
            && !(read_only_safe(p)
                || (storage::handles(p) && storage::read_only_safe(p))
                || super::stats::read_only_safe(p)
                || super::tune::read_only_safe(p)
                || super::hostobj::read_only_safe(p)
                || super::snapshot::read_only_safe(p)
                || super::cpu::read_only_safe(p)
                || network::read_only_safe(p))
        {
            return Err(VirError::read_only(&format!("procedure {p}")));
        }
        if let Some(r) = network::call(self, p, payload).await {
            return r;
        }
        match p {
            remote::AUTH_LIST => ret(AuthListRet { types: vec![0] }),
            remote::AUTH_POLKIT => ret(IntValue { value: 1 }),
            remote::CONNECT_SUPPORTS_FEATURE => {
                let a: IntValue = args(p, payload)?;
                let on = matches!(
                    a.value,
                    feature::TYPED_PARAM_STRING
                        | feature::FD_PASSING
                        | feature::PROGRAM_KEEPALIVE
                        | feature::REMOTE_EVENT_CALLBACK
                        | feature::REMOTE_CLOSE_CALLBACK
                        | network::FEATURE_NETWORK_UPDATE_HAS_CORRECT_ORDER
                );
                ret(IntValue {
                    value: i32::from(on),
                })
            }
            remote::CONNECT_OPEN => self.open(args(p, payload)?),
            remote::CONNECT_CLOSE => {
                self.opened = false;
                self.events.clear();
                self.storage.clear();
                void()
            }
            remote::CONNECT_REGISTER_CLOSE_CALLBACK | remote::CONNECT_UNREGISTER_CLOSE_CALLBACK => {
                void()
            }
            remote::CONNECT_GET_TYPE => ret(StringValue {
                value: host::driver_type(&self.uri).into(),
            }),
            remote::CONNECT_GET_VERSION => ret(U64Value {
                value: host::hypervisor_version(&self.uri),
            }),
            remote::CONNECT_GET_LIB_VERSION => ret(U64Value {
                value: host::LIB_VERSION,
            }),
            remote::CONNECT_GET_HOSTNAME => ret(StringValue {
                value: host::hostname(),
            }),
            remote::CONNECT_GET_URI => ret(StringValue {
                value: self.uri.clone(),
            }),
            remote::CONNECT_IS_SECURE => ret(IntValue { value: 1 }),
            remote::CONNECT_GET_MAX_VCPUS => {
                let _: OptStringValue = args(p, payload)?;
                ret(IntValue { value: 255 })
            }
            remote::NODE_GET_INFO => ret(host::node_info()),
            remote::NODE_GET_FREE_MEMORY => ret(U64Value {
                value: host::mem_free_bytes(),
            }),
            remote::NODE_GET_SECURITY_MODEL => ret(SecurityModelRet {
                model: CharArray::c_string("none"),
                doi: CharArray::c_string("0"),
            }),
            remote::CONNECT_GET_CAPABILITIES => ret(StringValue {
                value: self.shared.core.capabilities(),
            }),
            remote::CONNECT_GET_DOMAIN_CAPABILITIES => {
                let a: DomainCapsArgs = args(p, payload)?;
                let q = DomainCapsQuery {
                    emulatorbin: a.emulatorbin.as_deref(),
                    arch: a.arch.as_deref(),
                    machine: a.machine.as_deref(),
                    virttype: a.virttype.as_deref(),
                };
                ret(StringValue {
                    value: self
                        .shared
                        .core
                        .domain_capabilities(&q, a.flags)
                        .map_err(domain::vir)?,
                })
            }
            remote::CONNECT_LIST_ALL_NWFILTERS => {
                let _: ListAllArgs = args(p, payload)?;
                ret(EmptyListRet { count: 0, ret: 0 })
            }
            remote::CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY => {
                let a: EventRegisterArgs = args(p, payload)?;
                let cb = self.events.register_domain(a.event_id, a.dom.as_ref())?;
                ret(IntValue { value: cb })
            }
            remote::CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY => {
                let a: IntValue = args(p, payload)?;
                self.events.deregister_domain(a.value)?;
                void()
            }
            // `{int eventID; remote_<object> obj (optional)}`: only the event ID matters.
            remote::CONNECT_NODE_DEVICE_EVENT_REGISTER_ANY
            | remote::CONNECT_SECRET_EVENT_REGISTER_ANY => {
                if payload.len() < 8 {
                    return Err(VirError::bad_args(
                        p,
                        &super::xdr::XdrError::Truncated {
                            at: 0,
                            needed: 8,
                            left: payload.len(),
                        },
                    ));
                }
                ret(IntValue {
                    value: self.events.register_other(),
                })
            }
            remote::CONNECT_NODE_DEVICE_EVENT_DEREGISTER_ANY
            | remote::CONNECT_SECRET_EVENT_DEREGISTER_ANY => {
                let a: IntValue = args(p, payload)?;
                self.events.deregister_other(a.value)?;
                void()
            }
            p if super::hostobj::handles(p) => super::hostobj::call(self, h, payload).await,
            p if storage::handles(p) => storage::call(self, h, payload).await,
            p if super::agent::handles(p) => super::agent::call(self, h, payload).await,
            p if super::stats::handles(p) => super::stats::call(self, h, payload).await,
            p if super::tune::handles(p) => super::tune::call(self, h, payload).await,
            p if super::snapshot::handles(p) => super::snapshot::call(self, h, payload).await,
            p if super::cpu::handles(p) => super::cpu::call(self, h, payload).await,
            p if super::display::handles(p) => super::display::call(self, h, payload).await,
            p if super::graphics::handles(p) => super::graphics::call(self, h, payload).await,
            _ => domain::call(self, h, payload).await,
        }
    }

    async fn call_qemu(&mut self, p: i32, payload: &[u8]) -> CallResult {
        if !self.opened {
            return Err(VirError::internal("connection not open"));
        }
        if self.access != Access::ReadWrite {
            return Err(VirError::read_only("virDomainQemuMonitorCommand"));
        }
        match p {
            qemu::DOMAIN_MONITOR_COMMAND => domain::monitor_command(self, args(p, payload)?).await,
            super::agent::QEMU_DOMAIN_AGENT_COMMAND => {
                super::agent::agent_command(self, args(p, payload)?).await
            }
            _ => Err(VirError::unknown_procedure(PROGRAM_QEMU, p)),
        }
    }

    fn open(&mut self, a: OpenArgs) -> CallResult {
        if let Access::Denied { uid } = self.access {
            return Err(VirError::new(
                code::AUTH_FAILED,
                from::REMOTE,
                format!(
                    "authentication failed: access denied: uid {uid} may not use the read-write socket (root, the daemon's user or group members only); use the read-only socket (virsh -r)"
                ),
            ));
        }
        match a.name.as_deref() {
            // The socket's own URI (set when the connection was accepted).
            None | Some("") => {}
            Some(u) if accepts_uri(u) => self.uri = u.to_string(),
            Some(u) => {
                return Err(VirError::new(
                    code::NO_CONNECT,
                    from::NONE,
                    format!("no connection driver available for {u}"),
                ))
            }
        }
        // VIR_CONNECT_RO: the client asked for a read-only connection.
        if a.flags & 1 != 0 {
            self.access = Access::ReadOnly;
        }
        self.opened = true;
        void()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_schemes_we_serve() {
        assert!(accepts_uri("oxvirt:///system"));
        assert!(accepts_uri("oxvirt:///session"));
        assert!(accepts_uri("qemu:///system"));
        assert!(!accepts_uri("test:///default"));
        assert!(!accepts_uri("xen:///"));
        assert!(!accepts_uri("garbage"));
    }

    #[test]
    fn read_only_policy_refuses_changes() {
        assert!(read_only_safe(remote::CONNECT_LIST_ALL_DOMAINS));
        assert!(read_only_safe(remote::DOMAIN_GET_STATE));
        assert!(!read_only_safe(remote::DOMAIN_CREATE));
        assert!(!read_only_safe(remote::DOMAIN_DEFINE_XML));
        assert!(!read_only_safe(remote::DOMAIN_OPEN_CONSOLE));
        assert!(!read_only_safe(remote::DOMAIN_SET_METADATA));
        assert!(!read_only_safe(remote::DOMAIN_UPDATE_DEVICE_FLAGS));
    }
}
