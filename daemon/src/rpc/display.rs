//! The display procedures: `DOMAIN_SCREENSHOT` (211, a read stream of the PNG, as
//! libvirtd sends it: the reply carries the MIME type, then STREAM packets, then an
//! empty one; the client's closing OK is echoed) and `DOMAIN_SEND_KEY` (226).

use super::conn::Conn;
use super::dispatch::{args, void, CallResult};
use super::domain::vir;
use super::packet::Header;
use super::proto::{NonnullDomain, OptStringValue};
use super::xdr::{to_bytes, xdr_struct};

/// `REMOTE_PROC_DOMAIN_SCREENSHOT`.
pub const DOMAIN_SCREENSHOT: i32 = 211;
/// `REMOTE_PROC_DOMAIN_SEND_KEY`.
pub const DOMAIN_SEND_KEY: i32 = 226;

xdr_struct! {
    /// DOMAIN_SCREENSHOT args.
    pub struct ScreenshotArgs { pub dom: NonnullDomain, pub screen: u32, pub flags: u32 }
}
xdr_struct! {
    /// DOMAIN_SEND_KEY args.
    pub struct SendKeyArgs {
        pub dom: NonnullDomain,
        pub codeset: u32,
        pub holdtime: u32,
        pub keycodes: Vec<u32>,
        pub flags: u32,
    }
}

fn uuid(d: &NonnullDomain) -> uuid::Uuid {
    uuid::Uuid::from_bytes(d.uuid)
}

/// Whether this module serves procedure `p`.
pub fn handles(p: i32) -> bool {
    matches!(p, DOMAIN_SCREENSHOT | DOMAIN_SEND_KEY)
}

/// Runs one of the display procedures.
pub async fn call(conn: &mut Conn, h: &Header, payload: &[u8]) -> CallResult {
    let core = conn.shared.core.clone();
    let p = h.proc_;
    match p {
        DOMAIN_SCREENSHOT => {
            let a: ScreenshotArgs = args(p, payload)?;
            let (file, mime) = core
                .screenshot(&uuid(&a.dom), a.screen, a.flags)
                .await
                .map_err(vir)?;
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let reply = OptStringValue {
                value: Some(mime.to_string()),
            };
            conn.reply(h, Ok(to_bytes(&reply))).await;
            conn.storage.start_download(file, len, conn.out.clone(), h);
            Ok(None)
        }
        _ => {
            let a: SendKeyArgs = args(p, payload)?;
            core.send_key(&uuid(&a.dom), a.codeset, a.holdtime, &a.keycodes, a.flags)
                .await
                .map_err(vir)?;
            void()
        }
    }
}
