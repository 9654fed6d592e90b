//! The unix-socket listeners (read-write and read-only) and who may use them.
//!
//! Socket paths follow libvirt's "direct mode" naming for a driver called `oxvirt`, so
//! Debian's unmodified client finds them for `oxvirt:///system` / `oxvirt:///session`:
//!
//! | mode    | read-write                                   | read-only        |
//! |---------|----------------------------------------------|------------------|
//! | system  | `/run/libvirt/virtoxvirtd-sock`              | `…-sock-ro`      |
//! | session | `$XDG_RUNTIME_DIR/libvirt/virtoxvirtd-sock`  | `…-sock-ro`      |
//!
//! Any other path works with `?socket=PATH` in the URI
//! (`virsh -c 'oxvirt:///system?socket=/path/sock'`).
//!
//! With `qemu_uri` (`oxvirtd --qemu-uri`), the daemon also answers on libvirt's QEMU
//! driver sockets in the same directory ([`CompatSocket`]): `virtqemud-sock` (what
//! libvirt's client tries first for `qemu:///…`), `libvirt-sock` (its fallback, the
//! monolithic libvirtd's name) and, in system mode, their `-ro` twins. Unmodified tools
//! that hard-code `qemu:///system` or `qemu:///session` (Cockpit, virt-manager, GNOME
//! Boxes, scripts) then reach oxvirtd. A socket a running libvirt daemon answers on is
//! never taken over: the daemon refuses to start ([`ListenError::Held`]).
//!
//! Access follows libvirt's default policy, decided from the peer's credentials
//! (SO_PEERCRED) rather than socket modes, so both sockets are world-connectable:
//! the read-write socket admits root, the daemon's own user and members of the
//! configured group; anyone else gets an "access denied" answer to CONNECT_OPEN and
//! may use the read-only socket, which refuses every procedure that changes state.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, warn};

use super::conn::{self, Access};
use super::Shared;

/// The socket file name libvirt's client derives for driver `oxvirt`.
pub const SOCKET_NAME: &str = "virtoxvirtd-sock";

/// Where the listeners live and who may write.
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// Read-write socket.
    pub socket: PathBuf,
    /// Read-only socket.
    pub socket_ro: PathBuf,
    /// Group (besides root and the daemon's user) admitted to the read-write socket.
    pub group: Option<String>,
    /// The canonical URI (CONNECT_GET_URI when the client opened with an empty name).
    pub uri: String,
    /// libvirt's QEMU-driver sockets served too (empty unless `qemu_uri`).
    pub compat: Vec<CompatSocket>,
    /// The URI of a connection opened on a compat socket with an empty name.
    pub compat_uri: String,
}

/// One of libvirt's QEMU-driver sockets, served besides ours with `qemu_uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompatSocket {
    pub path: PathBuf,
    pub read_only: bool,
    /// `FileDescriptorName=` of its socket unit (packaging/systemd/qemu-uri).
    pub fd_name: &'static str,
}

/// libvirt's QEMU-driver socket names: the modular daemon's first (the client's
/// first choice), then the monolithic libvirtd's; `(file, read_only, fd name)`.
const COMPAT_SOCKETS: [(&str, bool, &str); 4] = [
    ("virtqemud-sock", false, "qemu-rw"),
    ("virtqemud-sock-ro", true, "qemu-ro"),
    ("libvirt-sock", false, "libvirt-rw"),
    ("libvirt-sock-ro", true, "libvirt-ro"),
];

/// The `FileDescriptorName=`s systemd may pass for the compat sockets.
pub const COMPAT_FD_NAMES: [&str; 4] = ["qemu-rw", "qemu-ro", "libvirt-rw", "libvirt-ro"];

impl CompatSocket {
    /// The compat sockets of a mode in `dir` (`/run/libvirt` or
    /// `$XDG_RUNTIME_DIR/libvirt`): session daemons have no read-only socket.
    pub fn in_dir(dir: &Path, system: bool) -> Vec<CompatSocket> {
        COMPAT_SOCKETS
            .iter()
            .filter(|(_, ro, _)| system || !ro)
            .map(|&(file, read_only, fd_name)| CompatSocket {
                path: dir.join(file),
                read_only,
                fd_name,
            })
            .collect()
    }
}

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot bind libvirt RPC socket '{path}'")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create directory '{path}' for the libvirt RPC socket")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("session mode needs $XDG_RUNTIME_DIR for the libvirt RPC socket")]
    NoRuntimeDir,
    #[error(
        "libvirt's socket '{path}' is in use by a running daemon (libvirtd or virtqemud): \
         stop it and its socket units (systemctl stop 'virtqemud*.socket' 'libvirtd*.socket' \
         virtqemud libvirtd, or `systemctl --user …` for a session daemon), or run oxvirtd \
         without qemu_uri / --qemu-uri"
    )]
    Held { path: PathBuf },
}

impl RpcConfig {
    /// System-mode defaults (`/run/libvirt/virtoxvirtd-sock`).
    pub fn system() -> Self {
        Self::in_dir(Path::new("/run/libvirt"), "oxvirt:///system")
    }

    /// Session-mode defaults (`$XDG_RUNTIME_DIR/libvirt/virtoxvirtd-sock`).
    pub fn session() -> Result<Self, ListenError> {
        let dir = std::env::var_os("XDG_RUNTIME_DIR").ok_or(ListenError::NoRuntimeDir)?;
        Ok(Self::in_dir(
            &PathBuf::from(dir).join("libvirt"),
            "oxvirt:///session",
        ))
    }

    /// Both sockets in `dir` under libvirt's names.
    pub fn in_dir(dir: &Path, uri: &str) -> Self {
        Self {
            socket: dir.join(SOCKET_NAME),
            socket_ro: dir.join(format!("{SOCKET_NAME}-ro")),
            group: None,
            uri: uri.into(),
            compat: Vec::new(),
            compat_uri: uri.replacen("oxvirt:", "qemu:", 1),
        }
    }

    /// From the daemon's configuration (`rpc_socket`, `group`, mode).
    pub fn from_config(c: &crate::config::Config) -> Self {
        use crate::config::Mode;
        let system = c.mode == Mode::System;
        // libvirt's client looks for both families of sockets in one directory.
        let dir = c.rpc_socket.parent().unwrap_or(Path::new("/"));
        Self {
            socket: c.rpc_socket.clone(),
            socket_ro: Self::ro_path_for(&c.rpc_socket),
            // Session daemons admit only their own user.
            group: system.then(|| c.group.clone()),
            uri: if system {
                "oxvirt:///system"
            } else {
                "oxvirt:///session"
            }
            .into(),
            compat: if c.qemu_uri {
                CompatSocket::in_dir(dir, system)
            } else {
                Vec::new()
            },
            compat_uri: if system {
                "qemu:///system"
            } else {
                "qemu:///session"
            }
            .into(),
        }
    }

    /// The read-only socket path libvirt's client expects next to `socket`.
    pub fn ro_path_for(socket: &Path) -> PathBuf {
        let mut s = socket.as_os_str().to_owned();
        s.push("-ro");
        PathBuf::from(s)
    }
}

/// Binds a socket, replacing a stale file from an earlier run.
pub fn bind(path: &Path) -> Result<UnixListener, ListenError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ListenError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    // A socket file left by a daemon that died; connecting to it would fail anyway.
    if std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    let l = UnixListener::bind(path).map_err(|source| ListenError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    // Access is decided per connection from peer credentials (module docs).
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
    Ok(l)
}

/// Binds a compat socket unless a running daemon answers on it (then [`ListenError::Held`]:
/// taking over another daemon's socket would strand its clients).
pub fn bind_unheld(path: &Path) -> Result<UnixListener, ListenError> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ListenError::Held {
            path: path.to_path_buf(),
        });
    }
    bind(path)
}

/// Accepts connections on `listener` until the task is dropped; `uri` is the URI of a
/// connection opened with an empty name.
pub async fn accept_loop(
    shared: Arc<Shared>,
    listener: UnixListener,
    read_only: bool,
    uri: String,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let access = if read_only {
                    Access::ReadOnly
                } else {
                    peer_access(&stream, shared.config.group.as_deref())
                };
                debug!(?access, "libvirt RPC client connected");
                tokio::spawn(conn::serve(shared.clone(), stream, access, uri.clone()));
            }
            Err(e) => {
                warn!("accepting a libvirt RPC client failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Decides what a client of the read-write socket may do.
fn peer_access(stream: &UnixStream, group: Option<&str>) -> Access {
    let Ok(cred) = stream.peer_cred() else {
        return Access::Denied { uid: u32::MAX };
    };
    let uid = cred.uid();
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return Access::ReadWrite;
    }
    let Some(group) = group else {
        return Access::Denied { uid };
    };
    let Ok(Some(g)) = nix::unistd::Group::from_name(group) else {
        return Access::Denied { uid };
    };
    let gid = g.gid.as_raw();
    let in_group = cred.gid() == gid
        || cred
            .pid()
            .is_some_and(|pid| process_groups(pid).contains(&gid));
    if in_group {
        Access::ReadWrite
    } else {
        Access::Denied { uid }
    }
}

/// Supplementary groups of a process (`Groups:` in /proc/PID/status).
fn process_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Groups:")).map(|l| {
                l["Groups:".len()..]
                    .split_whitespace()
                    .filter_map(|g| g.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Uses a socket passed by systemd, or binds `path`.
fn inherited_or_bind(
    passed: Option<std::os::unix::net::UnixListener>,
    path: &Path,
) -> Result<UnixListener, ListenError> {
    let Some(l) = passed else { return bind(path) };
    l.set_nonblocking(true)
        .and_then(|()| UnixListener::from_std(l))
        .map_err(|source| ListenError::Bind {
            path: path.to_path_buf(),
            source,
        })
}

/// Spawns the accept loops on the sockets passed by systemd, binding those not passed;
/// returns the socket files it bound (the caller removes them on shutdown).
pub fn start(
    shared: Arc<Shared>,
    mut passed: super::activation::Inherited,
) -> Result<Vec<PathBuf>, ListenError> {
    let mut bound = Vec::new();
    // The compat sockets first: a refusal ("held by libvirt") must leave nothing behind.
    let mut compat = Vec::new();
    for c in &shared.config.compat {
        let l = match passed.compat.remove(c.fd_name) {
            Some(l) => inherited_or_bind(Some(l), &c.path)?,
            None => {
                let l = bind_unheld(&c.path).inspect_err(|_| {
                    for p in &bound {
                        let _ = std::fs::remove_file(p);
                    }
                })?;
                bound.push(c.path.clone());
                l
            }
        };
        compat.push((l, c.read_only));
    }
    if passed.rw.is_none() {
        bound.push(shared.config.socket.clone());
    }
    if passed.ro.is_none() {
        bound.push(shared.config.socket_ro.clone());
    }
    let rw = inherited_or_bind(passed.rw, &shared.config.socket)?;
    let ro = inherited_or_bind(passed.ro, &shared.config.socket_ro)?;
    info!(
        "libvirt RPC listening on {} (read-only: {})",
        shared.config.socket.display(),
        shared.config.socket_ro.display()
    );
    let uri = shared.config.uri.clone();
    tokio::spawn(accept_loop(shared.clone(), rw, false, uri.clone()));
    tokio::spawn(accept_loop(shared.clone(), ro, true, uri));
    for (c, (l, read_only)) in shared.config.compat.iter().zip(compat) {
        info!(
            "libvirt RPC also listening on {} for {}",
            c.path.display(),
            shared.config.compat_uri
        );
        let uri = shared.config.compat_uri.clone();
        tokio::spawn(accept_loop(shared.clone(), l, read_only, uri));
    }
    // Compat sockets systemd passed without `qemu_uri` in the configuration: the
    // socket units (package oxvirt-qemu-uri) are the administrator's choice.
    for (name, l) in passed.compat {
        let l = inherited_or_bind(Some(l), Path::new(&name))?;
        info!(
            "libvirt RPC also serving {} on the socket systemd passed as '{name}'",
            shared.config.compat_uri
        );
        let uri = shared.config.compat_uri.clone();
        tokio::spawn(accept_loop(shared.clone(), l, name.ends_with("-ro"), uri));
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_paths_match_libvirt_direct_mode() {
        let c = RpcConfig::system();
        assert_eq!(c.socket, Path::new("/run/libvirt/virtoxvirtd-sock"));
        assert_eq!(c.socket_ro, Path::new("/run/libvirt/virtoxvirtd-sock-ro"));
        assert_eq!(
            RpcConfig::ro_path_for(Path::new("/x/sock")),
            Path::new("/x/sock-ro")
        );
    }

    #[test]
    fn own_process_groups_are_read() {
        let me = std::process::id() as i32;
        let groups = process_groups(me);
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
        assert_eq!(groups.len(), line.split_whitespace().count() - 1);
    }
}
