//! oxvirtd configuration: mode defaults (DESIGN.md host layout) overlaid by a TOML file.
//!
//! Every key is optional; the documented defaults are:
//!
//! ```toml
//! # /etc/oxvirt/oxvirtd.toml (system) or $XDG_CONFIG_HOME/oxvirt/oxvirtd.toml (session)
//! domains_dir = "/var/lib/oxvirt/domains"   # session: $XDG_DATA_HOME/oxvirt/domains
//! runtime_dir = "/run/oxvirt"               # session: $XDG_RUNTIME_DIR/oxvirt
//! vmm = "oxvirt-vmm"        # path, or a name looked up next to oxvirtd, then in PATH
//! bus = "system"            # "system", "session", or a D-Bus address ("unix:path=…")
//! bus_name = "org.libvirt"
//! object_path = "/org/libvirt/QEMU"
//! group = "oxvirt"          # system bus: callers other than root must be in this group
//! autostart = true          # start autostart domains when the daemon starts
//! rpc_socket = "/run/libvirt/virtoxvirtd-sock"  # libvirt RPC; read-only: same + "-ro"
//!                           # session: $XDG_RUNTIME_DIR/libvirt/virtoxvirtd-sock
//! qemu_uri = false          # also answer qemu:///system|session on libvirt's QEMU
//!                           # sockets (virtqemud-sock, libvirt-sock) next to rpc_socket
//! vmm_user = "oxvirt-vmm"   # system mode: run each VMM as this user, or USER:GROUP
//!                           # (oxvirt-vmm --run-as), its files handed over open;
//!                           # "root": as root. A domain's static DAC <seclabel> wins.
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Which host layout and bus the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// root, system bus, `/etc`, `/var/lib`, `/run`.
    System,
    /// a user, session bus, XDG directories.
    Session,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file '{path}'")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file '{path}' is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("session mode needs ${0} or $HOME to be set")]
    NoHome(&'static str),
}

/// The file's keys, all optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    domains_dir: Option<PathBuf>,
    runtime_dir: Option<PathBuf>,
    vmm: Option<PathBuf>,
    bus: Option<String>,
    bus_name: Option<String>,
    object_path: Option<String>,
    group: Option<String>,
    autostart: Option<bool>,
    rpc_socket: Option<PathBuf>,
    qemu_uri: Option<bool>,
    vmm_user: Option<String>,
}

/// The user a system daemon runs its VMMs as unless the config names another
/// (created by the package's sysusers.d file, `packaging/sysusers/oxvirt.conf`).
pub const DEFAULT_VMM_USER: &str = "oxvirt-vmm";

/// Where the daemon reaches D-Bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bus {
    System,
    Session,
    /// An explicit address (`unix:path=/…`).
    Address(String),
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// Persistent definitions, `NAME.xml`; autostart links in `autostart/`.
    pub domains_dir: PathBuf,
    /// Runtime root; per-domain dirs are `domains/NAME/` below it.
    pub runtime_dir: PathBuf,
    /// The `oxvirt-vmm` executable.
    pub vmm: PathBuf,
    pub bus: Bus,
    pub bus_name: String,
    pub object_path: String,
    /// Group whose members may use the system bus interface (besides root).
    pub group: String,
    pub autostart: bool,
    /// The libvirt RPC read-write socket; the read-only one is this path + `-ro`.
    pub rpc_socket: PathBuf,
    /// Also serve libvirt's QEMU-driver sockets (`qemu:///…`) in `rpc_socket`'s directory.
    pub qemu_uri: bool,
    /// System mode: the user every VMM runs as (`oxvirt-vmm --run-as`; by default
    /// [`DEFAULT_VMM_USER`]); `None`: the daemon's own (`vmm_user = "root"`, or a
    /// session daemon), with the VMM's per-thread capability limits.
    pub vmm_user: Option<String>,
}

impl Config {
    /// The default config file of a mode.
    pub fn default_file(mode: Mode) -> Result<PathBuf, ConfigError> {
        Ok(match mode {
            Mode::System => PathBuf::from("/etc/oxvirt/oxvirtd.toml"),
            Mode::Session => xdg("XDG_CONFIG_HOME", ".config")?.join("oxvirt/oxvirtd.toml"),
        })
    }

    /// Mode defaults, overlaid by `file` when given (a missing default file is fine,
    /// a missing explicit file is an error).
    pub fn load(mode: Mode, file: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, explicit) = match file {
            Some(p) => (p.to_path_buf(), true),
            None => (Self::default_file(mode)?, false),
        };
        let parsed = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<File>(&text)
                .map_err(|source| ConfigError::Parse { path, source })?,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::from_file(mode, parsed)
    }

    fn from_file(mode: Mode, f: File) -> Result<Config, ConfigError> {
        let (domains_dir, runtime_dir, bus) = match mode {
            Mode::System => (
                PathBuf::from("/var/lib/oxvirt/domains"),
                PathBuf::from("/run/oxvirt"),
                Bus::System,
            ),
            Mode::Session => (
                xdg("XDG_DATA_HOME", ".local/share")?.join("oxvirt/domains"),
                runtime_base()?.join("oxvirt"),
                Bus::Session,
            ),
        };
        let bus = match f.bus.as_deref() {
            None => bus,
            Some("system") => Bus::System,
            Some("session") => Bus::Session,
            Some(addr) => Bus::Address(addr.to_string()),
        };
        Ok(Config {
            mode,
            domains_dir: f.domains_dir.unwrap_or(domains_dir),
            runtime_dir: f.runtime_dir.unwrap_or(runtime_dir),
            vmm: resolve_vmm(f.vmm.as_deref().unwrap_or(Path::new("oxvirt-vmm"))),
            bus,
            bus_name: f.bus_name.unwrap_or_else(|| "org.libvirt".into()),
            object_path: f.object_path.unwrap_or_else(|| "/org/libvirt/QEMU".into()),
            group: f.group.unwrap_or_else(|| "oxvirt".into()),
            autostart: f.autostart.unwrap_or(true),
            rpc_socket: match (f.rpc_socket, mode) {
                (Some(p), _) => p,
                (None, Mode::System) => PathBuf::from("/run/libvirt/virtoxvirtd-sock"),
                (None, Mode::Session) => runtime_base()?.join("libvirt/virtoxvirtd-sock"),
            },
            qemu_uri: f.qemu_uri.unwrap_or(false),
            // A session daemon's VMMs run as its user already; "root", as
            // qemu.conf's `user = "root"`, keeps a system daemon's VMMs as root.
            vmm_user: match mode {
                Mode::Session => None,
                Mode::System => Some(f.vmm_user.unwrap_or_else(|| DEFAULT_VMM_USER.into()))
                    .filter(|u| u != "root"),
            },
        })
    }
}

fn home() -> Result<PathBuf, ConfigError> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .ok_or(ConfigError::NoHome("HOME"))
}

fn xdg(var: &'static str, fallback: &str) -> Result<PathBuf, ConfigError> {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => Ok(home()?.join(fallback)),
    }
}

fn runtime_base() -> Result<PathBuf, ConfigError> {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => Err(ConfigError::NoHome("XDG_RUNTIME_DIR")),
    }
}

/// A bare name is looked up next to our own executable, then in `PATH`; a path
/// with a slash is taken as it is.
fn resolve_vmm(vmm: &Path) -> PathBuf {
    if vmm.components().count() > 1 {
        return vmm.to_path_buf();
    }
    if let Some(sibling) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(vmm)))
        .filter(|p| p.is_file())
    {
        return sibling;
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(vmm))
        .find(|p| p.is_file())
        .unwrap_or_else(|| vmm.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_defaults_follow_the_host_layout() {
        let c = Config::from_file(Mode::System, File::default()).unwrap();
        assert_eq!(c.domains_dir, Path::new("/var/lib/oxvirt/domains"));
        assert_eq!(c.runtime_dir, Path::new("/run/oxvirt"));
        assert_eq!(c.bus, Bus::System);
        assert_eq!(c.object_path, "/org/libvirt/QEMU");
        assert_eq!(c.bus_name, "org.libvirt");
    }

    #[test]
    fn file_keys_override_defaults() {
        let f: File = toml::from_str(
            "domains_dir = '/tmp/d'\nbus = 'unix:path=/tmp/bus'\nobject_path = '/x/Y'\nvmm = '/opt/vmm'",
        )
        .unwrap();
        let c = Config::from_file(Mode::System, f).unwrap();
        assert_eq!(c.domains_dir, Path::new("/tmp/d"));
        assert_eq!(c.bus, Bus::Address("unix:path=/tmp/bus".into()));
        assert_eq!(c.object_path, "/x/Y");
        assert_eq!(c.vmm, Path::new("/opt/vmm"));
    }

    #[test]
    fn system_vmms_run_as_their_own_user_unless_root_is_asked_for() {
        let c = Config::from_file(Mode::System, File::default()).unwrap();
        assert_eq!(c.vmm_user.as_deref(), Some(DEFAULT_VMM_USER));
        let f: File = toml::from_str("vmm_user = 'qemu'").unwrap();
        let c = Config::from_file(Mode::System, f).unwrap();
        assert_eq!(c.vmm_user.as_deref(), Some("qemu"));
        let f: File = toml::from_str("vmm_user = 'root'").unwrap();
        assert_eq!(Config::from_file(Mode::System, f).unwrap().vmm_user, None);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<File>("domain_dir = '/x'").is_err());
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = Config::load(Mode::System, Some(Path::new("/nonexistent/oxvirtd.toml")));
        assert!(matches!(e, Err(ConfigError::Read { .. })));
    }
}
