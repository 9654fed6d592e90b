//! The files a domain's VMM reads and writes, opened by the daemon and handed to
//! the VMM as inherited descriptors (`files` in the spec; the VMM's `files`
//! module uses them wherever it would open those paths), as libvirt hands QEMU
//! its images through fd sets: disk images with their qcow2 backing chains,
//! CD-ROM media, the kernel and initrd of a direct boot, the firmware and its
//! variable store; and as libvirt prepares QEMU's chardevs, the character devices'
//! output files and the unix sockets the VMM listens on (chardevs, vsock, VNC).
//! The VMM then needs no right to those paths: it runs as an unprivileged user
//! (#20).
//!
//! A file the daemon cannot open is left out: the VMM opens it by path as before
//! and its error (what libvirt users see today) names the path and the reason.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use machine_spec::{
    CacheMode, CharBackend, DeviceKind, Disk, DiskFormat, GraphicsListen, MachineSpec, PassedFile,
};

/// How deep a qcow2 backing chain is followed (QEMU's limit is 16 as well).
const MAX_CHAIN: usize = 16;

/// One open the VMM will make, and so one descriptor to hand over.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Want {
    path: PathBuf,
    write: bool,
    direct: bool,
    dsync: bool,
    kind: Kind,
}

/// What the descriptor for a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Kind {
    /// The file, opened as it is (images, kernel, firmware, `/dev/kvm`).
    #[default]
    Existing,
    /// A character device's output file, created if missing, appended to or
    /// truncated as the VMM would open it.
    Log { append: bool },
    /// A unix socket the VMM listens on (a chardev, vsock, VNC), bound here.
    Listener,
}

/// The opens a disk image takes in the VMM: the image (read-write unless
/// read-only), `O_DIRECT` for cache modes `none`/`directsync` with a page-cache
/// twin (raw disks keep one for unaligned requests; qcow2 opens its data file
/// both ways), `O_DSYNC` on raw images for `writethrough`/`directsync` (imago
/// syncs qcow2 itself), and every backing file read-only.
fn disk_wants(disk: &Disk, out: &mut Vec<Want>) {
    let qcow2 = disk.format == DiskFormat::Qcow2;
    image_wants(&disk.path, qcow2, !disk.readonly, disk.cache, out);
}

fn image_wants(image: &Path, qcow2: bool, writable: bool, cache: CacheMode, out: &mut Vec<Want>) {
    let direct = matches!(cache, CacheMode::None | CacheMode::Directsync);
    let dsync =
        !qcow2 && writable && matches!(cache, CacheMode::Writethrough | CacheMode::Directsync);
    let mut push = |path: &Path, write: bool| {
        let base = Want {
            path: path.to_path_buf(),
            write,
            direct: false,
            dsync: dsync && write,
            kind: Kind::Existing,
        };
        if direct {
            out.push(Want {
                direct: true,
                ..base.clone()
            });
        }
        out.push(base);
    };
    push(image, writable);
    if qcow2 {
        for backing in backing_chain(image) {
            push(&backing, false);
        }
    }
}

/// The backing files of the qcow2 image at `top`, nearest first, as the VMM's
/// imago resolves them (a relative name against the directory of the image that
/// names it). Stops at a raw file, an unreadable one, a loop or [`MAX_CHAIN`].
pub fn backing_chain(top: &Path) -> Vec<PathBuf> {
    let mut chain: Vec<PathBuf> = Vec::new();
    let mut at = top.to_path_buf();
    while chain.len() < MAX_CHAIN {
        let mut head = vec![0u8; 64 * 1024];
        let Ok(n) = crate::storage::image::read_up_to(&at, &mut head) else {
            break;
        };
        head.truncate(n);
        let Some(h) = crate::storage::image::parse_qcow2(&head) else {
            break;
        };
        let Some(name) = h.backing else {
            break;
        };
        // A backing "file" given as a protocol URL (nbd:, json:) is not a file.
        if name.contains(':') && !name.starts_with('/') {
            break;
        }
        let next = match Path::new(&name) {
            p if p.is_absolute() => p.to_path_buf(),
            p => at.parent().unwrap_or(Path::new("/")).join(p),
        };
        if next == top || chain.contains(&next) {
            break;
        }
        chain.push(next.clone());
        if h.backing_format.as_deref() == Some("raw") {
            break;
        }
        at = next;
    }
    chain
}

/// Every open the VMM will make of a file named in `spec`, and of `/dev/kvm` when
/// `kvm` (a VMM that runs as a user of its own may not open it).
fn wants(spec: &MachineSpec, kvm: bool) -> Vec<Want> {
    let mut out = Vec::new();
    let read = |p: &Path| Want {
        path: p.to_path_buf(),
        write: false,
        direct: false,
        dsync: false,
        kind: Kind::Existing,
    };
    let listener = |p: &Path| Want {
        kind: Kind::Listener,
        ..read(p)
    };
    if kvm {
        out.push(Want {
            write: true,
            ..read(Path::new("/dev/kvm"))
        });
    }
    out.extend(spec.boot.kernel.as_deref().map(read));
    out.extend(spec.boot.initrd.as_deref().map(read));
    // A saved state to start from (restore, managed save).
    out.extend(spec.incoming.as_ref().map(|i| read(&i.path)));
    if let Some(fw) = &spec.boot.firmware {
        out.push(read(&fw.code));
        // The variable store only once it exists: the VMM creates it from the
        // template the first time (in a directory it may write).
        if let Some(vars) = fw.vars.as_deref().filter(|v| v.exists()) {
            out.push(Want {
                write: true,
                ..read(vars)
            });
        }
    }
    for d in &spec.devices {
        let disk = match &d.kind {
            DeviceKind::Disk(disk) => Some(disk),
            DeviceKind::AtaDisk(u) => u.medium.as_ref(),
            DeviceKind::ScsiDisk(u) => u.medium.as_ref(),
            _ => None,
        };
        if let Some(disk) = disk {
            disk_wants(disk, &mut out);
        }
        let chardev = match &d.kind {
            DeviceKind::Serial(s) => Some(&s.backend),
            DeviceKind::Console(c) => Some(&c.backend),
            _ => None,
        };
        // Relative paths are the runtime directory's (the VMM's working directory),
        // which it may write anyway.
        match chardev {
            Some(CharBackend::File { path, append }) if path.is_absolute() => out.push(Want {
                write: true,
                kind: Kind::Log { append: *append },
                ..read(path)
            }),
            Some(CharBackend::Unix { path, listen: true }) if path.is_absolute() => {
                out.push(listener(path))
            }
            _ => {}
        }
        if let DeviceKind::Vsock(v) = &d.kind {
            if v.uds_path.is_absolute() {
                out.push(listener(&v.uds_path));
            }
        }
    }
    if let Some(GraphicsListen::Socket { path }) = spec.graphics.as_ref().map(|g| &g.listen) {
        if Path::new(path).is_absolute() {
            out.push(listener(Path::new(path)));
        }
    }
    let mut seen = Vec::new();
    out.retain(|w| {
        let new = !seen.contains(w);
        seen.push(w.clone());
        new
    });
    out
}

fn open(w: &Want) -> std::io::Result<OwnedFd> {
    match w.kind {
        Kind::Existing => {}
        Kind::Log { append } => {
            return OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .mode(0o600)
                .open(&w.path)
                .map(OwnedFd::from)
        }
        Kind::Listener => {
            // A socket left by an earlier run is replaced, as the VMM (and QEMU) do.
            if std::fs::symlink_metadata(&w.path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                let _ = std::fs::remove_file(&w.path);
            }
            return std::os::unix::net::UnixListener::bind(&w.path).map(OwnedFd::from);
        }
    }
    let mut flags = 0;
    if w.direct {
        flags |= libc::O_DIRECT;
    }
    if w.dsync {
        flags |= libc::O_DSYNC;
    }
    OpenOptions::new()
        .read(true)
        .write(w.write)
        .custom_flags(flags)
        .open(&w.path)
        .map(OwnedFd::from)
}

/// Opens the files `spec` names and records them in `spec.files` as descriptors
/// `first_fd` onwards; returns the descriptors, in that order, for the spawn to
/// map. Blocking: run it off the async threads.
pub fn open_for_spec(spec: &mut MachineSpec, first_fd: i32, kvm: bool) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    for w in wants(spec, kvm) {
        match open(&w) {
            Ok(f) => {
                spec.files.push(PassedFile {
                    path: w.path.clone(),
                    fd: first_fd + fds.len() as i32,
                });
                fds.push(f);
            }
            // O_DIRECT refused (tmpfs): the VMM falls back to the page cache as it
            // would by path; anything else it reports by path.
            Err(e) => tracing::debug!(path = %w.path.display(), error = %e, "not handed over"),
        }
    }
    fds
}

/// What the VMM writes by path besides its runtime directory, made ready by the
/// daemon as libvirt's does for QEMU — the VMM's mount sandbox keeps these paths
/// writable but cannot create them in the read-only host tree: a TPM's state
/// directory (swtpm, which the VMM starts, keeps the TPM there) and its log, and a
/// UEFI variable store that does not exist yet, copied from its template (then
/// handed over with the other files). With `owner` (a VMM running as its own user),
/// the TPM's directory and log are given to that user. Blocking.
pub fn prepare(
    spec: &MachineSpec,
    owner: Option<(nix::unistd::Uid, nix::unistd::Gid)>,
) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let give = |p: &Path| match owner {
        Some((uid, gid)) => {
            nix::unistd::chown(p, Some(uid), Some(gid)).map_err(std::io::Error::from)
        }
        None => Ok(()),
    };
    for d in &spec.devices {
        let DeviceKind::Tpm(t) = &d.kind else {
            continue;
        };
        if let Some(parent) = t.state_dir.parent() {
            // Reachable, not listable: one directory per domain UUID below.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(parent)?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&t.state_dir)?;
        if owner.is_some() {
            // swtpm, as the user, reaches the state by path: the two directories
            // above it (`swtpm/` and the state root) are made searchable, not
            // listable, as libvirt's /var/lib/libvirt/swtpm is (they may have been
            // made 0700 before a VMM user was configured).
            for dir in t.state_dir.ancestors().skip(1).take(2) {
                let mode = std::fs::metadata(dir)?.permissions().mode();
                if mode & 0o011 != 0o011 {
                    std::fs::set_permissions(
                        dir,
                        std::fs::Permissions::from_mode((mode & 0o7777) | 0o011),
                    )?;
                }
            }
        }
        give_tree(&t.state_dir, &give)?;
        if let Some(log) = &t.log {
            if let Some(dir) = log.parent() {
                std::fs::create_dir_all(dir)?;
            }
            OpenOptions::new().create(true).append(true).open(log)?;
            give(log)?;
        }
    }
    if let Some(fw) = &spec.boot.firmware {
        if let (Some(vars), Some(template)) = (&fw.vars, &fw.vars_template) {
            if !vars.exists() {
                if let Some(dir) = vars.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let tmp = vars.with_extension("tmp-oxvirtd");
                std::fs::copy(template, &tmp)?;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
                std::fs::rename(&tmp, vars)?;
            }
        }
    }
    Ok(())
}

/// `give` to `dir` and everything below it (no links followed).
fn give_tree(dir: &Path, give: &dyn Fn(&Path) -> std::io::Result<()>) -> std::io::Result<()> {
    give(dir)?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            give_tree(&e.path(), give)?;
        } else if !e.file_type()?.is_symlink() {
            give(&e.path())?;
        }
    }
    Ok(())
}

/// Hands a running VMM the files of an image it is about to open by path
/// (`blockdev-add` of a hot-plugged disk or a new CD-ROM medium): each goes with
/// QMP `add-fd`, in a set named by its path (`opaque`), which the VMM's opens of
/// that path take. The sets stay while the VMM runs (a machine rebuilt at reset
/// opens the disk again); handing a path over again replaces its set. A file the
/// daemon cannot open is left to the VMM, whose error names it.
pub(super) async fn add_fdsets(
    vm: &super::supervise::Vm,
    image: &Path,
    qcow2: bool,
    writable: bool,
    cache: CacheMode,
) -> super::Result<()> {
    let mut wants = Vec::new();
    let image = image.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || {
        image_wants(&image, qcow2, writable, cache, &mut wants);
        wants
            .into_iter()
            .filter_map(|w| match open(&w) {
                Ok(f) => Some((w.path, f)),
                Err(e) => {
                    tracing::debug!(path = %w.path.display(), error = %e, "not handed over");
                    None
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| super::Error::Internal(format!("cannot open the image's files: {e}")))?;
    let mut set_of: Vec<(PathBuf, u64)> = Vec::new();
    for (path, file) in opened {
        let mut args = serde_json::json!({"opaque": path.to_string_lossy()});
        if let Some((_, id)) = set_of.iter().find(|(p, _)| *p == path) {
            args["fdset-id"] = serde_json::json!(id);
        }
        let r = vm
            .qmp_with_fds("add-fd", Some(args), &[std::os::fd::AsFd::as_fd(&file)])
            .await?;
        if let Some(id) = r["fdset-id"].as_u64() {
            set_of.push((path, id));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
