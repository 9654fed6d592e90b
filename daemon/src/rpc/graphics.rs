//! The graphics console as a socket: `DOMAIN_OPEN_GRAPHICS_FD` (343, the reply is a
//! REPLY_WITH_FDS carrying the new socket; virt-manager's local console) and
//! `DOMAIN_OPEN_GRAPHICS` (249, a CALL_WITH_FDS bringing the client's socket;
//! virt-viewer's `--attach` fallback). The fd passing itself is the connection's
//! (`conn.rs`); the VMM side is `core::graphics_fd`.

use super::conn::Conn;
use super::dispatch::{args, void, CallResult};
use super::domain::vir;
use super::error::{code, from, VirError};
use super::packet::Header;
use super::proto::NonnullDomain;
use super::xdr::xdr_struct;

/// `REMOTE_PROC_DOMAIN_OPEN_GRAPHICS`.
pub const DOMAIN_OPEN_GRAPHICS: i32 = 249;
/// `REMOTE_PROC_DOMAIN_OPEN_GRAPHICS_FD`.
pub const DOMAIN_OPEN_GRAPHICS_FD: i32 = 343;

/// `REMOTE_PROC_DOMAIN_EVENT_CALLBACK_GRAPHICS`.
pub const DOMAIN_EVENT_CALLBACK_GRAPHICS: i32 = 323;

xdr_struct! {
    /// Arguments of both procedures: `{dom, idx, flags}`.
    pub struct OpenGraphicsArgs { pub dom: NonnullDomain, pub idx: u32, pub flags: u32 }
}
xdr_struct! {
    /// `remote_domain_event_graphics_address`.
    pub struct GraphicsAddressMsg { pub family: i32, pub node: String, pub service: String }
}
xdr_struct! {
    /// `remote_domain_event_graphics_identity`.
    pub struct GraphicsIdentityMsg { pub kind: String, pub name: String }
}
xdr_struct! {
    /// DOMAIN_EVENT_CALLBACK_GRAPHICS message: `{callbackID; {dom; phase; local;
    /// remote; authScheme; subject<20>}}` (the nested message flattens to the same
    /// bytes).
    pub struct GraphicsMsg {
        pub callback_id: i32,
        pub dom: NonnullDomain,
        pub phase: i32,
        pub local: GraphicsAddressMsg,
        pub remote: GraphicsAddressMsg,
        pub auth_scheme: String,
        pub subject: Vec<GraphicsIdentityMsg>,
    }
}

impl From<&crate::core::event::GraphicsAddress> for GraphicsAddressMsg {
    fn from(a: &crate::core::event::GraphicsAddress) -> Self {
        GraphicsAddressMsg {
            family: a.family,
            node: a.node.clone(),
            service: a.service.clone(),
        }
    }
}

/// Whether this module serves procedure `p`.
pub fn handles(p: i32) -> bool {
    matches!(p, DOMAIN_OPEN_GRAPHICS | DOMAIN_OPEN_GRAPHICS_FD)
}

/// Runs one of the two procedures.
pub async fn call(conn: &mut Conn, h: &Header, payload: &[u8]) -> CallResult {
    let core = conn.shared.core.clone();
    let p = h.proc_;
    let a: OpenGraphicsArgs = args(p, payload)?;
    let uuid = uuid::Uuid::from_bytes(a.dom.uuid);
    if p == DOMAIN_OPEN_GRAPHICS_FD {
        let fd = core
            .open_graphics_fd(&uuid, a.idx, a.flags)
            .await
            .map_err(vir)?;
        conn.reply_with_fds(h, Vec::new(), vec![fd]).await;
        return Ok(None);
    }
    // libvirtd's virNetMessageDupFD(msg, 0).
    let fd = conn.take_fd().ok_or_else(|| {
        VirError::new(
            code::INTERNAL_ERROR,
            from::RPC,
            "internal error: No file descriptor at index 0",
        )
    })?;
    core.open_graphics(&uuid, a.idx, fd, a.flags)
        .await
        .map_err(vir)?;
    void()
}
