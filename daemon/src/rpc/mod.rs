//! libvirt's remote protocol, so Debian's unmodified `virsh`, `python3-libvirt` and every
//! other libvirt client drive oxvirtd.
//!
//! # The protocol, step by step
//!
//! 1. A client connects to one of the unix sockets ([`listener`]): read-write
//!    `/run/libvirt/virtoxvirtd-sock` or read-only `…-sock-ro` (session mode:
//!    `$XDG_RUNTIME_DIR/libvirt/…`). `virsh -c oxvirt:///system` finds them with no
//!    configuration; `?socket=PATH` in a URI picks any other path.
//! 2. Every message is a packet ([`packet`]): length, program (REMOTE, QEMU or
//!    KEEPALIVE), version, procedure, type (CALL, REPLY, MESSAGE, STREAM), serial,
//!    status, then an XDR payload ([`xdr`]).
//! 3. The handshake: AUTH_LIST (we offer "none"; access comes from the peer's
//!    credentials), SUPPORTS_FEATURE (keepalive, event callbacks, close callbacks and
//!    typed-parameter strings: yes), CONNECT_OPEN with the client's URI.
//! 4. Calls ([`dispatch`], [`domain`]) are answered in order with a REPLY of the same
//!    serial: OK with the return structure ([`proto`]) or ERROR with a `remote_error`
//!    ([`error`]). Procedures we do not implement answer VIR_ERR_NO_SUPPORT; the
//!    connection stays up.
//! 5. Asynchronously: keepalive PINGs are answered with PONGs; registered event
//!    callbacks receive MESSAGE packets ([`events`]); a console opened with
//!    DOMAIN_OPEN_CONSOLE streams raw bytes both ways ([`stream`]); QEMU's
//!    DOMAIN_MONITOR_COMMAND is passed to the domain's QMP socket ([`monitor`]).
//!
//! The front end only decodes, calls the shared [`crate::core::Core`] and encodes.

pub mod activation;
pub mod agent;
pub mod conn;
pub mod console;
pub mod cpu;
pub mod dispatch;
pub mod display;
pub mod domain;
pub mod error;
pub mod events;
pub mod graphics;
pub mod host;
pub mod hostobj;
pub mod listener;
pub mod monitor;
pub mod network;
pub mod packet;
pub mod proto;
pub mod snapshot;
pub mod stats;
pub mod stats_proto;
pub mod storage;
pub mod storage_proto;
pub mod storage_stream;
pub mod stream;
pub mod tune;
pub mod xdr;

use std::path::PathBuf;
use std::sync::atomic::AtomicI32;
use std::sync::Arc;

pub use listener::{ListenError, RpcConfig};

use crate::core::Core;

/// What every connection shares.
pub struct Shared {
    pub core: Core,
    pub config: RpcConfig,
    /// Event callback IDs are unique in the daemon, like libvirtd's.
    pub next_callback_id: AtomicI32,
    /// Who holds each domain's console.
    pub consoles: Arc<stream::ConsoleOwners>,
}

/// The running front end. Dropping it removes the socket files, so a client does not
/// find a stale socket of a stopped daemon (libvirt's client would pick it over its
/// fallbacks and fail with "connection refused").
#[must_use = "dropping the server removes its sockets"]
pub struct Server {
    sockets: Vec<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
    }
}

/// Binds the read-write and read-only sockets and serves clients on the current tokio
/// runtime until it shuts down.
pub fn start(core: Core, config: RpcConfig) -> Result<Server, ListenError> {
    start_with(core, config, activation::Inherited::default())
}

/// Like [`start`], but serves on the sockets systemd passed ([`activation`]) where it
/// passed them. Their files belong to the socket units and are not removed on drop.
pub fn start_with(
    core: Core,
    config: RpcConfig,
    passed: activation::Inherited,
) -> Result<Server, ListenError> {
    let shared = Arc::new(Shared {
        core,
        config,
        next_callback_id: AtomicI32::new(1),
        consoles: Arc::default(),
    });
    let sockets = listener::start(shared, passed)?;
    Ok(Server { sockets })
}
