//! `--mount-sandbox DIR`: the VMM in a private mount namespace of its own, laid out as
//! Firecracker's jailer lays out its chroot, but over the host's tree so that the
//! helpers it starts (swtpm, passt) still find their programs and libraries:
//!
//! * every mount is read-only (`/usr`, `/etc`, `/var`, `/dev` and the rest);
//! * `/tmp` is a private, empty tmpfs; `/home`, `/root`, `/run`, `/var/tmp`,
//!   `/mnt`, `/media` and `/srv` are empty and read-only — the host's files there
//!   cannot be read at all;
//! * writable: DIR (the domain's runtime directory: QMP socket, pid file, helper
//!   sockets) and what the spec says the domain writes by path (a TPM's state
//!   directory and log), bound back where they were.
//!
//! Everything else the VMM uses came open from oxvirtd ([`crate::files`]: images,
//! media, kernel, firmware, chardev logs, listening sockets, `/dev/kvm`, taps).
//! Run as root (system mode) the namespace is the mount namespace alone, made before
//! `--run-as`; run as a user (session mode) it lives in a new user namespace mapping
//! only that user, and the capabilities that namespace grants are dropped once the
//! mounts are made. Mount changes stay in the namespace (its root is private), and the
//! namespace ends with the VMM.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Directories whose host contents are hidden (an empty tmpfs over each).
const HIDDEN: [&str; 7] = [
    "/home", "/root", "/run", "/var/tmp", "/mnt", "/media", "/srv",
];

/// The private `/tmp`: room for what a helper may put there, not for filling the
/// host's memory.
const TMP_OPTIONS: &str = "mode=1777,size=16m,nr_inodes=4096";
/// The empty stand-ins for [`HIDDEN`]: only the mount points of writable paths.
const HIDDEN_OPTIONS: &str = "mode=0755,size=1m,nr_inodes=1024";

/// Why the sandbox could not be made; the VMM does not start without it.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot create a private mount namespace ({what})")]
    Namespace {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot {what} '{path}' in the VMM's mount namespace")]
    Mount {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The writable paths the sandbox of `spec` keeps besides the runtime directory.
pub fn writable_paths(spec: &machine_spec::MachineSpec) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in &spec.devices {
        if let machine_spec::DeviceKind::Tpm(t) = &d.kind {
            out.push(t.state_dir.clone());
            out.extend(t.log.clone());
        }
    }
    out
}

/// Enters the sandbox: a new mount namespace (and, not run as root, a user
/// namespace) where only `runtime_dir` and `writable` stay writable. A writable
/// path that does not exist is left out (the VMM's own error names it later).
/// Call from `main` before other threads exist.
pub fn enter(runtime_dir: &Path, writable: &[PathBuf]) -> Result<(), MountError> {
    let as_user = !nix::unistd::geteuid().is_root();
    let ns = |what| {
        move |e: nix::Error| MountError::Namespace {
            what,
            source: e.into(),
        }
    };
    if as_user {
        let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
        if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS) {
            // A host that denies unprivileged user namespaces (a sysctl, a
            // distribution's policy) still runs its users' VMMs, as before.
            tracing::warn!(
                "no private mount namespace: this host refuses a user namespace ({e}); \
                 the VMM sees the host's files with its user's rights"
            );
            return Ok(());
        }
        map_ids(uid.as_raw(), gid.as_raw()).map_err(|source| MountError::Namespace {
            what: "user namespace id maps",
            source,
        })?;
    } else {
        unshare(CloneFlags::CLONE_NEWNS).map_err(ns("unshare"))?;
    }
    let fail = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source: io::Error| MountError::Mount { what, path, source }
    };
    // Nothing done below reaches the host's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| fail("make private", Path::new("/"))(e.into()))?;
    // The paths to keep, held open before anything hides them.
    let mut keep: Vec<(PathBuf, File)> = Vec::new();
    for p in std::iter::once(runtime_dir.to_path_buf()).chain(writable.iter().cloned()) {
        match File::options()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(&p)
        {
            Ok(f) => keep.push((p, f)),
            Err(e) => tracing::warn!(path = %p.display(), "not kept writable in the sandbox: {e}"),
        }
    }
    set_attr(Path::new("/"), libc::MOUNT_ATTR_RDONLY, 0, true)
        .map_err(fail("make read-only", Path::new("/")))?;
    mount_tmpfs(Path::new("/tmp"), TMP_OPTIONS)
        .map_err(fail("mount a tmpfs on", Path::new("/tmp")))?;
    let hidden: Vec<&Path> = HIDDEN
        .iter()
        .map(Path::new)
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect();
    for h in &hidden {
        mount_tmpfs(h, HIDDEN_OPTIONS).map_err(fail("hide", h))?;
    }
    for (path, file) in &keep {
        let is_dir = file.metadata().map(|m| m.is_dir()).unwrap_or(false);
        mount_point(path, is_dir).map_err(fail("make a mount point for", path))?;
        let source = format!("/proc/self/fd/{}", file.as_raw_fd());
        mount(
            Some(source.as_str()),
            path.as_path(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| fail("bind", path)(e.into()))?;
        set_attr(path, 0, libc::MOUNT_ATTR_RDONLY, false).map_err(fail("make writable", path))?;
    }
    // The stand-ins take no files of their own once their mount points exist.
    for h in &hidden {
        set_attr(h, libc::MOUNT_ATTR_RDONLY, 0, false).map_err(fail("make read-only", h))?;
    }
    // A working directory left in a hidden tree would still reach it.
    std::env::set_current_dir(runtime_dir).map_err(fail("enter", runtime_dir))?;
    if as_user {
        // The user namespace made this process root over it; nothing later needs that.
        crate::capabilities::restrict_thread(0).map_err(|source| MountError::Namespace {
            what: "drop the user namespace's capabilities",
            source,
        })?;
    }
    tracing::info!(runtime = %runtime_dir.display(), writable = keep.len(), user_ns = as_user,
        "in a private mount namespace: host read-only, /tmp private, /home /root /run hidden");
    Ok(())
}

/// Maps only our own uid and gid into the new user namespace (setgroups denied, as an
/// unprivileged process must before writing a gid map).
fn map_ids(uid: u32, gid: u32) -> io::Result<()> {
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))
}

fn mount_tmpfs(at: &Path, options: &str) -> io::Result<()> {
    mount(
        Some("tmpfs"),
        at,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(options),
    )
    .map_err(io::Error::from)
}

/// Creates `path` (a directory or an empty file) and its parents where they are
/// missing — inside a stand-in tmpfs; elsewhere they exist already.
fn mount_point(path: &Path, dir: bool) -> io::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(if dir { path } else { parent })?;
    if !dir {
        File::options().create(true).append(true).open(path)?;
    }
    Ok(())
}

/// `mount_setattr(2)`: the kernel's own recursive read-only (5.12 and later); the
/// older `MS_REMOUNT|MS_BIND|MS_RDONLY` changes one mount at a time and would have
/// to repeat each mount's locked flags.
fn set_attr(path: &Path, set: u64, clear: u64, recursive: bool) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: 0,
    };
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: `c` is a NUL-terminated path and `attr` a mount_attr of the size
    // passed; the kernel only reads both during the call. The result is checked.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            flags as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
