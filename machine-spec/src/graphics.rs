//! The graphical console (libvirt `<graphics>`): a VNC server the VMM runs on the
//! primary display. `type='spice'` domains get the same server (no SPICE is built);
//! `requested_type` keeps what the user asked for so the daemon can show `vnc` in the
//! live XML (the SPICE-only parts with no effect are in the spec's `warnings`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// First port tried when the port is chosen automatically (libvirt's
/// `remote_display_port_min`).
pub const VNC_PORT_MIN: u16 = 5900;

/// A VNC server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Graphics {
    /// Where it listens.
    pub listen: GraphicsListen,
    /// The VNC password (libvirt `passwd`, at most 8 bytes count); `None`: no
    /// authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// When the password stops working, seconds since the Unix epoch (libvirt
    /// `passwdValidTo`, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_valid_to: Option<u64>,
    /// Shared/exclusive session handling (libvirt `sharePolicy`).
    #[serde(default)]
    pub share_policy: SharePolicy,
    /// The libvirt graphics type asked for when it is not `vnc` (`spice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_type: Option<String>,
}

/// Where the VNC server listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum GraphicsListen {
    /// A TCP address (libvirt `<listen type='address'>`).
    Address {
        /// IP address or host name to bind (libvirt's default `127.0.0.1`).
        address: String,
        /// The port; `None` picks the first free one from [`VNC_PORT_MIN`] up
        /// (libvirt `autoport='yes'`/`port='-1'`), reported by QMP `query-vnc`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
    },
    /// A unix socket (libvirt `<listen type='socket'>`).
    Socket {
        /// The socket's path.
        path: String,
    },
    /// No listening socket: clients only come through QMP `add_client` (libvirt
    /// `<listen type='none'>`, virt-manager's OpenGraphicsFD).
    None,
}

/// QEMU's `share=` policies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SharePolicy {
    /// A client asking for exclusive access disconnects the others (QEMU's default).
    #[default]
    AllowExclusive,
    /// Every client shares.
    ForceShared,
    /// The client's shared flag is ignored (everyone shares).
    Ignore,
}
