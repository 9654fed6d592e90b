//! systemd socket activation of the libvirt RPC sockets.
//!
//! `oxvirtd.socket` and `oxvirtd-ro.socket` (packaging/systemd) hold the read-write and
//! read-only sockets and pass them to the daemon with `FileDescriptorName=rw` / `ro`
//! (`LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`). A socket passed this way is used as
//! is: the daemon neither binds it, nor changes its mode, nor removes its file on exit
//! (the socket unit owns it). A socket that is not passed is bound as without systemd.

use std::os::unix::net::UnixListener;

use tracing::{info, warn};

/// `FileDescriptorName=` of the read-write socket.
pub const RW_NAME: &str = "rw";
/// `FileDescriptorName=` of the read-only socket.
pub const RO_NAME: &str = "ro";

/// Listening sockets the service manager passed, by role.
#[derive(Debug, Default)]
pub struct Inherited {
    pub rw: Option<UnixListener>,
    pub ro: Option<UnixListener>,
    /// libvirt's QEMU-driver sockets (`oxvirt-qemu-uri`'s socket units), by the
    /// `FileDescriptorName=` of [`super::listener::CompatSocket::fd_name`].
    pub compat: std::collections::HashMap<String, UnixListener>,
}

/// Why passed descriptors could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("cannot read the sockets passed by systemd (LISTEN_FDS)")]
    Env(#[source] std::io::Error),
    #[error("socket '{name}' passed by systemd is not a listening unix stream socket")]
    NotUnixListener {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

impl Inherited {
    /// Takes the sockets passed by the service manager, if any.
    ///
    /// Call this before any thread is started: it removes `LISTEN_PID` and
    /// `LISTEN_FDS` from the environment so that VMM children do not see them.
    pub fn from_env() -> Result<Self, ActivationError> {
        // sd-notify pairs each descriptor with its name (and checks LISTEN_PID);
        // listenfd turns the descriptor at the same index into a listener, checking
        // that it is a unix stream socket, and marks it close-on-exec.
        let named: Vec<(i32, String)> = sd_notify::listen_fds_with_names()
            .map_err(ActivationError::Env)?
            .collect();
        let mut fds = listenfd::ListenFd::from_env();
        let mut out = Inherited::default();
        for (idx, (fd, name)) in named.into_iter().enumerate() {
            let listener =
                fds.take_unix_listener(idx)
                    .map_err(|source| ActivationError::NotUnixListener {
                        name: name.clone(),
                        source,
                    })?;
            let Some(listener) = listener else { continue };
            let slot = match name.as_str() {
                RW_NAME => &mut out.rw,
                RO_NAME => &mut out.ro,
                n if super::listener::COMPAT_FD_NAMES.contains(&n) => {
                    info!(fd, name, "using the socket passed by systemd");
                    out.compat.insert(name, listener);
                    continue;
                }
                other => {
                    warn!(
                        fd,
                        name = other,
                        "ignoring a passed socket with an unknown name"
                    );
                    continue;
                }
            };
            info!(fd, name, "using the socket passed by systemd");
            *slot = Some(listener);
        }
        Ok(out)
    }
}
