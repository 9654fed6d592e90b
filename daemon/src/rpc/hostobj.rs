//! Secrets, node devices and host interfaces on the libvirt protocol (`virsh
//! secret-*`, `nodedev-list`/`nodedev-dumpxml`, `iface-list`/`iface-dumpxml`):
//! decode, call the core ([`crate::core::secret`], [`crate::core::nodedev`],
//! [`crate::core::hostiface`]), encode.

use uuid::Uuid;

use super::conn::Conn;
use super::dispatch::{args, ret, void, CallResult};
use super::domain::vir;
use super::packet::Header;
use super::proto::{IntValue, ListAllArgs, OptStringValue, StringListRet, StringValue, UuidArgs};
use super::xdr::{xdr_struct, Decoder, Encoder, Xdr, XdrError};
use crate::core::hostiface::{self, HostInterface};
use crate::core::nodedev;
use crate::core::secret::SecretRef;

/// Procedure numbers (libvirt's `remote_procedure`).
pub mod proc_ {
    pub const NODE_NUM_OF_DEVICES: i32 = 111;
    pub const NODE_LIST_DEVICES: i32 = 112;
    pub const NODE_DEVICE_LOOKUP_BY_NAME: i32 = 113;
    pub const NODE_DEVICE_GET_XML_DESC: i32 = 114;
    pub const NODE_DEVICE_GET_PARENT: i32 = 115;
    pub const NODE_DEVICE_NUM_OF_CAPS: i32 = 116;
    pub const NODE_DEVICE_LIST_CAPS: i32 = 117;
    pub const INTERFACE_LOOKUP_BY_NAME: i32 = 128;
    pub const INTERFACE_LOOKUP_BY_MAC_STRING: i32 = 129;
    pub const INTERFACE_GET_XML_DESC: i32 = 130;
    pub const SECRET_LOOKUP_BY_UUID: i32 = 141;
    pub const SECRET_DEFINE_XML: i32 = 142;
    pub const SECRET_GET_XML_DESC: i32 = 143;
    pub const SECRET_SET_VALUE: i32 = 144;
    pub const SECRET_GET_VALUE: i32 = 145;
    pub const SECRET_UNDEFINE: i32 = 146;
    pub const SECRET_LOOKUP_BY_USAGE: i32 = 147;
    pub const INTERFACE_IS_ACTIVE: i32 = 156;
}
use super::proto::remote::{
    CONNECT_LIST_ALL_INTERFACES, CONNECT_LIST_ALL_NODE_DEVICES, CONNECT_LIST_ALL_SECRETS,
};
use proc_::*;

/// `remote_secret_value`'s limit (`REMOTE_SECRET_VALUE_MAX`).
const SECRET_VALUE_MAX: usize = 65536;

/// `opaque value<REMOTE_SECRET_VALUE_MAX>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecretValue(pub Vec<u8>);

impl Xdr for SecretValue {
    fn encode(&self, e: &mut Encoder) {
        e.opaque(&self.0);
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(Self(d.opaque(SECRET_VALUE_MAX)?.to_vec()))
    }
}

xdr_struct! {
    /// `remote_nonnull_secret`.
    pub struct NonnullSecret { pub uuid: [u8; 16], pub usage_type: i32, pub usage_id: String }
}
xdr_struct! {
    pub struct SecretArg { pub secret: NonnullSecret }
}
xdr_struct! {
    pub struct SecretFlagsArgs { pub secret: NonnullSecret, pub flags: u32 }
}
xdr_struct! {
    pub struct SecretSetValueArgs { pub secret: NonnullSecret, pub value: SecretValue, pub flags: u32 }
}
xdr_struct! {
    pub struct SecretValueRet { pub value: SecretValue }
}
xdr_struct! {
    pub struct SecretDefineArgs { pub xml: String, pub flags: u32 }
}
xdr_struct! {
    pub struct SecretUsageArgs { pub usage_type: i32, pub usage_id: String }
}
xdr_struct! {
    pub struct ListAllSecretsRet { pub secrets: Vec<NonnullSecret>, pub ret: u32 }
}
xdr_struct! {
    /// `remote_nonnull_node_device`.
    pub struct NonnullNodeDevice { pub name: String }
}
xdr_struct! {
    pub struct NodeDeviceArg { pub dev: NonnullNodeDevice }
}
xdr_struct! {
    pub struct NodeDeviceNameArgs { pub name: String }
}
xdr_struct! {
    pub struct NodeDeviceXmlArgs { pub name: String, pub flags: u32 }
}
xdr_struct! {
    pub struct NodeDeviceListCapsArgs { pub name: String, pub maxnames: i32 }
}
xdr_struct! {
    pub struct NodeNumOfDevicesArgs { pub cap: Option<String>, pub flags: u32 }
}
xdr_struct! {
    pub struct NodeListDevicesArgs { pub cap: Option<String>, pub maxnames: i32, pub flags: u32 }
}
xdr_struct! {
    pub struct ListAllNodeDevicesRet { pub devices: Vec<NonnullNodeDevice>, pub ret: u32 }
}
xdr_struct! {
    /// `remote_nonnull_interface`.
    pub struct NonnullInterface { pub name: String, pub mac: String }
}
xdr_struct! {
    pub struct InterfaceArg { pub iface: NonnullInterface }
}
xdr_struct! {
    pub struct InterfaceFlagsArgs { pub iface: NonnullInterface, pub flags: u32 }
}
xdr_struct! {
    pub struct ListAllInterfacesRet { pub ifaces: Vec<NonnullInterface>, pub ret: u32 }
}

/// Whether this module serves procedure `p`.
pub fn handles(p: i32) -> bool {
    matches!(
        p,
        111..=117 | 128..=130 | 141..=147 | 156 | 284 | 285 | 287
    )
}

/// The procedures a read-only connection may call: everything but changing
/// secrets and reading their values.
pub fn read_only_safe(p: i32) -> bool {
    handles(p)
        && !matches!(
            p,
            SECRET_DEFINE_XML | SECRET_SET_VALUE | SECRET_GET_VALUE | SECRET_UNDEFINE
        )
}

fn wire_secret(s: &SecretRef) -> NonnullSecret {
    NonnullSecret {
        uuid: *s.uuid.as_bytes(),
        usage_type: s.usage_type,
        usage_id: s.usage_id.clone(),
    }
}

fn wire_iface(i: &HostInterface) -> NonnullInterface {
    NonnullInterface {
        name: i.name.clone(),
        mac: i.mac.clone(),
    }
}

/// The devices `virNodeListDevices` names for capability `cap` (all for none).
fn device_names(cap: Option<&str>) -> Result<Vec<String>, super::error::VirError> {
    Ok(nodedev::list(0)
        .map_err(vir)?
        .into_iter()
        .filter(|d| cap.is_none_or(|c| d.capability.name() == c))
        .map(|d| d.name)
        .collect())
}

/// Runs one procedure of this module.
pub async fn call(conn: &mut Conn, h: &Header, payload: &[u8]) -> CallResult {
    let core = conn.shared.core.clone();
    let p = h.proc_;
    match p {
        CONNECT_LIST_ALL_SECRETS => {
            let a: ListAllArgs = args(p, payload)?;
            let list = core.secrets(a.flags).map_err(vir)?;
            ret(ListAllSecretsRet {
                ret: list.len() as u32,
                secrets: if a.need_results != 0 {
                    list.iter().map(wire_secret).collect()
                } else {
                    Vec::new()
                },
            })
        }
        SECRET_LOOKUP_BY_UUID => {
            let a: UuidArgs = args(p, payload)?;
            let s = core
                .secret_lookup_by_uuid(&Uuid::from_bytes(a.uuid))
                .map_err(vir)?;
            ret(SecretArg {
                secret: wire_secret(&s),
            })
        }
        SECRET_LOOKUP_BY_USAGE => {
            let a: SecretUsageArgs = args(p, payload)?;
            let s = core
                .secret_lookup_by_usage(a.usage_type, &a.usage_id)
                .map_err(vir)?;
            ret(SecretArg {
                secret: wire_secret(&s),
            })
        }
        SECRET_DEFINE_XML => {
            let a: SecretDefineArgs = args(p, payload)?;
            let s = core.secret_define_xml(&a.xml, a.flags).map_err(vir)?;
            ret(SecretArg {
                secret: wire_secret(&s),
            })
        }
        SECRET_GET_XML_DESC => {
            let a: SecretFlagsArgs = args(p, payload)?;
            let uuid = Uuid::from_bytes(a.secret.uuid);
            ret(StringValue {
                value: core.secret_xml_desc(&uuid, a.flags).map_err(vir)?,
            })
        }
        SECRET_SET_VALUE => {
            let a: SecretSetValueArgs = args(p, payload)?;
            let uuid = Uuid::from_bytes(a.secret.uuid);
            core.secret_set_value(&uuid, &a.value.0, a.flags)
                .map_err(vir)?;
            void()
        }
        SECRET_GET_VALUE => {
            let a: SecretFlagsArgs = args(p, payload)?;
            let uuid = Uuid::from_bytes(a.secret.uuid);
            ret(SecretValueRet {
                value: SecretValue(core.secret_get_value(&uuid, a.flags).map_err(vir)?),
            })
        }
        SECRET_UNDEFINE => {
            let a: SecretArg = args(p, payload)?;
            core.secret_undefine(&Uuid::from_bytes(a.secret.uuid))
                .map_err(vir)?;
            void()
        }
        CONNECT_LIST_ALL_NODE_DEVICES => {
            let a: ListAllArgs = args(p, payload)?;
            let list = nodedev::list(a.flags).map_err(vir)?;
            ret(ListAllNodeDevicesRet {
                ret: list.len() as u32,
                devices: if a.need_results != 0 {
                    list.into_iter()
                        .map(|d| NonnullNodeDevice { name: d.name })
                        .collect()
                } else {
                    Vec::new()
                },
            })
        }
        NODE_NUM_OF_DEVICES => {
            let a: NodeNumOfDevicesArgs = args(p, payload)?;
            crate::core::Error::check_flags(a.flags, 0, "virNodeNumOfDevices").map_err(vir)?;
            ret(IntValue {
                value: device_names(a.cap.as_deref())?.len() as i32,
            })
        }
        NODE_LIST_DEVICES => {
            let a: NodeListDevicesArgs = args(p, payload)?;
            crate::core::Error::check_flags(a.flags, 0, "virNodeListDevices").map_err(vir)?;
            let mut names = device_names(a.cap.as_deref())?;
            names.truncate(a.maxnames.max(0) as usize);
            ret(StringListRet { names })
        }
        NODE_DEVICE_LOOKUP_BY_NAME => {
            let a: NodeDeviceNameArgs = args(p, payload)?;
            let d = nodedev::lookup(&a.name).map_err(vir)?;
            ret(NodeDeviceArg {
                dev: NonnullNodeDevice { name: d.name },
            })
        }
        NODE_DEVICE_GET_XML_DESC => {
            let a: NodeDeviceXmlArgs = args(p, payload)?;
            crate::core::Error::check_flags(a.flags, 0, "virNodeDeviceGetXMLDesc").map_err(vir)?;
            ret(StringValue {
                value: nodedev::lookup(&a.name).map_err(vir)?.to_xml(),
            })
        }
        NODE_DEVICE_GET_PARENT => {
            let a: NodeDeviceNameArgs = args(p, payload)?;
            ret(OptStringValue {
                value: nodedev::lookup(&a.name).map_err(vir)?.parent,
            })
        }
        NODE_DEVICE_NUM_OF_CAPS => {
            let a: NodeDeviceNameArgs = args(p, payload)?;
            nodedev::lookup(&a.name).map_err(vir)?;
            ret(IntValue { value: 1 })
        }
        NODE_DEVICE_LIST_CAPS => {
            let a: NodeDeviceListCapsArgs = args(p, payload)?;
            let d = nodedev::lookup(&a.name).map_err(vir)?;
            let mut names = vec![d.capability.name().to_string()];
            names.truncate(a.maxnames.max(0) as usize);
            ret(StringListRet { names })
        }
        CONNECT_LIST_ALL_INTERFACES => {
            let a: ListAllArgs = args(p, payload)?;
            let list = hostiface::list(a.flags).map_err(vir)?;
            ret(ListAllInterfacesRet {
                ret: list.len() as u32,
                ifaces: if a.need_results != 0 {
                    list.iter().map(wire_iface).collect()
                } else {
                    Vec::new()
                },
            })
        }
        INTERFACE_LOOKUP_BY_NAME => {
            let a: StringValue = args(p, payload)?;
            let i = hostiface::lookup_by_name(&a.value).map_err(vir)?;
            ret(InterfaceArg {
                iface: wire_iface(&i),
            })
        }
        INTERFACE_LOOKUP_BY_MAC_STRING => {
            let a: StringValue = args(p, payload)?;
            let i = hostiface::lookup_by_mac(&a.value).map_err(vir)?;
            ret(InterfaceArg {
                iface: wire_iface(&i),
            })
        }
        INTERFACE_GET_XML_DESC => {
            let a: InterfaceFlagsArgs = args(p, payload)?;
            // VIR_INTERFACE_XML_INACTIVE (1) shows the same: nothing is configured.
            crate::core::Error::check_flags(a.flags, 1, "virInterfaceGetXMLDesc").map_err(vir)?;
            ret(StringValue {
                value: hostiface::lookup_by_name(&a.iface.name)
                    .map_err(vir)?
                    .to_xml(),
            })
        }
        INTERFACE_IS_ACTIVE => {
            let a: InterfaceArg = args(p, payload)?;
            let i = hostiface::lookup_by_name(&a.iface.name).map_err(vir)?;
            ret(IntValue {
                value: i32::from(i.active),
            })
        }
        _ => Err(super::error::VirError::unknown_procedure(
            super::packet::PROGRAM_REMOTE,
            p,
        )),
    }
}
