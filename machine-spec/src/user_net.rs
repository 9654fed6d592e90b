//! User-mode networking options (libvirt `<interface type='user'>`): what passt hands
//! the guest and which host ports it forwards, from the interface's `<ip>`, `<route>`
//! and `<portForward>` elements.

use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// passt's settings for one NIC; all empty means passt's defaults (the host's own
/// address and gateway, no forwarded ports).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserNet {
    /// The guest's addresses, handed out by passt's DHCP/NDP (libvirt `<ip>`): at most
    /// one IPv4 and one IPv6.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<UserAddress>,
    /// The guest's default gateways (libvirt `<route>` to `0.0.0.0/0` or `::/0`): at
    /// most one per family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<IpAddr>,
    /// Host ports forwarded to the guest (libvirt `<portForward>`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_forwards: Vec<PortForward>,
}

/// A guest address: IPv4 with an optional prefix length, or IPv6 (passt takes no
/// IPv6 prefix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserAddress {
    pub address: IpAddr,
    #[serde(default)]
    pub prefix: Option<u8>,
}

/// Transport of a forwarded port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PortProto {
    Tcp,
    Udp,
}

/// One `<portForward>`: ports of the host (optionally only on one address and/or
/// interface) forwarded to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    pub proto: PortProto,
    /// Host address the forward listens on; `None` for all.
    #[serde(default)]
    pub address: Option<IpAddr>,
    /// Host interface the forward listens on; `None` for all.
    #[serde(default)]
    pub dev: Option<String>,
    /// Ranges in order; empty forwards every port.
    #[serde(default)]
    pub ranges: Vec<PortRange>,
}

/// One `<range>` of a `<portForward>`: host ports `start..=end` to guest ports
/// starting at `to` (the same numbers when `None`), or excluded from the forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    pub start: u16,
    #[serde(default)]
    pub end: Option<u16>,
    #[serde(default)]
    pub to: Option<u16>,
    #[serde(default)]
    pub exclude: bool,
}
