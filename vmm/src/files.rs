//! Files the VMM was handed open instead of opening them by path, as QEMU's fd
//! sets: oxvirtd opens a domain's images (with their backing chains), CD-ROM media,
//! kernel, initrd and firmware itself and passes the descriptors, so the VMM needs
//! no right to those paths (#20: no CAP_DAC_*, later an unprivileged user in a
//! mount namespace of its own).
//!
//! Every descriptor belongs to an fd set (QMP `add-fd`, `remove-fd`,
//! `query-fdsets`). A set is found by `/dev/fdset/N`, QEMU's form, or — an oxvirt
//! extension — by the absolute path in its `opaque` string: the descriptors the
//! spec lists at start (`files`) are sets named so, and a hot-plugged qcow2's
//! backing files are found by the names in its header without the client
//! rewriting the chain. A path no set stands for is opened as before (`oxvirt-vmm
//! --xml` run by hand).
//!
//! An open picks a descriptor of the set with the access mode and `O_DIRECT`
//! asked for (QEMU matches them the same way) and returns a duplicate, which
//! shares the file description: file offsets are never used (all I/O is
//! positional) and locks are per description, so the duplicates lock as one.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// The prefix of QEMU's fd-set paths.
pub const FDSET_PREFIX: &str = "/dev/fdset/";

/// What an open asks of a descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    /// `O_DIRECT` (cache modes `none` and `directsync`).
    pub direct: bool,
}

impl Access {
    pub const READ: Access = Access {
        write: false,
        direct: false,
    };
}

/// One descriptor of a set.
#[derive(Debug)]
struct SetFd {
    fd: OwnedFd,
    opaque: Option<String>,
}

impl SetFd {
    fn flags(&self) -> OFlag {
        fcntl(self.fd.as_fd(), FcntlArg::F_GETFL)
            .map(OFlag::from_bits_truncate)
            .unwrap_or(OFlag::empty())
    }

    fn fits(&self, want: Access) -> bool {
        let f = self.flags();
        let mode = f & OFlag::O_ACCMODE;
        let mode_ok = if want.write {
            mode == OFlag::O_RDWR
        } else {
            mode == OFlag::O_RDONLY || mode == OFlag::O_RDWR
        };
        mode_ok && f.contains(OFlag::O_DIRECT) == want.direct
    }
}

#[derive(Debug, Default)]
struct FdSets {
    sets: BTreeMap<u64, Vec<SetFd>>,
}

static SETS: Mutex<FdSets> = Mutex::new(FdSets {
    sets: BTreeMap::new(),
});

fn sets() -> std::sync::MutexGuard<'static, FdSets> {
    SETS.lock().unwrap_or_else(|p| p.into_inner())
}

/// `p` with `.` components, repeated and trailing slashes dropped: how the daemon
/// and imago may spell one path differently (`..` is kept: it depends on links).
pub fn normalize(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// N of QEMU's `/dev/fdset/N`.
fn fdset_id(path: &Path) -> Option<u64> {
    path.to_str()
        .and_then(|s| s.strip_prefix(FDSET_PREFIX))
        .and_then(|n| n.parse().ok())
}

impl FdSets {
    /// The set `path` names: `/dev/fdset/N`, or the set whose opaque is `path`.
    fn find(&self, path: &Path) -> Option<u64> {
        if let Some(id) = fdset_id(path) {
            return Some(id);
        }
        if !path.is_absolute() {
            return None;
        }
        let want = normalize(path);
        self.sets.iter().find_map(|(id, fds)| {
            fds.iter()
                .any(|f| f.opaque.as_deref().map(Path::new).map(normalize) == Some(want.clone()))
                .then_some(*id)
        })
    }
}

/// The answer of `add-fd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    pub fdset_id: u64,
    pub fd: i32,
}

/// `add-fd`: puts `fd` in set `fdset_id` (a new set with the lowest free id when
/// `None`). A new set named by a path replaces the sets that path named before
/// (their descriptors close; devices keep their own duplicates): a file handed
/// over again — an image re-attached after it was recreated — is the newest one.
pub fn add(fd: OwnedFd, fdset_id: Option<u64>, opaque: Option<String>) -> Added {
    let mut s = sets();
    let id = fdset_id.unwrap_or_else(|| (0..).find(|i| !s.sets.contains_key(i)).unwrap_or(0));
    if let Some(path) = opaque.as_deref().filter(|o| o.starts_with('/')) {
        let path = Path::new(path);
        while let Some(old) = s.find(path).filter(|old| *old != id) {
            s.sets.remove(&old);
        }
    }
    let raw = fd.as_raw_fd();
    s.sets.entry(id).or_default().push(SetFd { fd, opaque });
    Added {
        fdset_id: id,
        fd: raw,
    }
}

/// Errors of `remove-fd`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RemoveError {
    #[error("File descriptor named 'fdset-id:{0}' not found")]
    NoSet(u64),
    #[error("File descriptor named 'fdset-id:{0}, fd:{1}' not found")]
    NoFd(u64, i32),
}

/// `remove-fd`: closes descriptor `fd` of set `fdset_id`, or the whole set.
pub fn remove(fdset_id: u64, fd: Option<i32>) -> Result<(), RemoveError> {
    let mut s = sets();
    let set = s
        .sets
        .get_mut(&fdset_id)
        .ok_or(RemoveError::NoSet(fdset_id))?;
    match fd {
        None => {
            s.sets.remove(&fdset_id);
        }
        Some(n) => {
            let at = set
                .iter()
                .position(|f| f.fd.as_raw_fd() == n)
                .ok_or(RemoveError::NoFd(fdset_id, n))?;
            set.remove(at);
            if set.is_empty() {
                s.sets.remove(&fdset_id);
            }
        }
    }
    Ok(())
}

/// One set as `query-fdsets` lists it: its id and each descriptor with its opaque.
pub type SetInfo = (u64, Vec<(i32, Option<String>)>);

/// `query-fdsets`.
pub fn query() -> Vec<SetInfo> {
    sets()
        .sets
        .iter()
        .map(|(id, fds)| {
            let fds = fds
                .iter()
                .map(|f| (f.fd.as_raw_fd(), f.opaque.clone()))
                .collect();
            (*id, fds)
        })
        .collect()
}

/// Takes the descriptors a spec names (inherited from whoever started the VMM):
/// each becomes a set whose opaque is its path. A number that is not an open
/// descriptor is an error naming the path.
pub fn adopt(files: &[machine_spec::PassedFile]) -> io::Result<()> {
    for f in files {
        // SAFETY: F_GETFD only reads the descriptor table; it fails on a closed fd.
        if unsafe { libc::fcntl(f.fd, libc::F_GETFD) } < 0 {
            return Err(io::Error::other(format!(
                "'{}' was to be handed over as descriptor {}, which is not open",
                f.path.display(),
                f.fd
            )));
        }
        // SAFETY: the spec's descriptors were inherited for this process to own; the
        // spec lists each number once (MachineSpec::validate) and it is open (above).
        let owned = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(f.fd) };
        // Helpers the VMM starts (passt, swtpm) must not inherit the images.
        nix::fcntl::fcntl(
            owned.as_fd(),
            FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        let key = normalize(&f.path).to_string_lossy().into_owned();
        let existing = sets().find(&f.path);
        add(owned, existing, Some(key));
    }
    Ok(())
}

/// `path` opened from the descriptors handed over for it (a duplicate whose access
/// mode and `O_DIRECT` fit `want`, rewound), or `None` when no set stands for it —
/// the caller then opens it by path its own way.
pub fn given(path: &Path, want: Access) -> Option<io::Result<File>> {
    let s = sets();
    let id = s.find(path)?;
    let Some(fds) = s.sets.get(&id) else {
        return Some(Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("'{}': no fd set {id} was added", path.display()),
        )));
    };
    let pick = fds.iter().find(|f| f.fits(want));
    Some(match pick {
        // Rewound: readers that read from the start (kernel, firmware) find it
        // there however often the machine is rebuilt.
        Some(f) => f.fd.try_clone().map(File::from).and_then(|mut file| {
            io::Seek::seek(&mut file, io::SeekFrom::Start(0))?;
            Ok(file)
        }),
        // No O_DIRECT descriptor: the filesystem refused it when it was opened for
        // us; EINVAL is what an open by path would have said.
        None if want.direct
            && fds.iter().any(|f| {
                f.fits(Access {
                    direct: false,
                    ..want
                })
            }) =>
        {
            Err(io::Error::from_raw_os_error(libc::EINVAL))
        }
        None => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "'{}' was handed over without {} access",
                path.display(),
                if want.write { "write" } else { "the" }
            ),
        )),
    })
}

/// Opens `path` for `want`: from its fd set if one stands for it, else by path.
pub fn open(path: &Path, want: Access) -> io::Result<File> {
    if let Some(r) = given(path, want) {
        return r;
    }
    let mut o = OpenOptions::new();
    o.read(true).write(want.write);
    if want.direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}

/// The path an fd-set path stands for (its opaque, when that is an absolute
/// path): imago resolves a qcow2's relative backing names against it.
pub fn real_path(path: &Path) -> PathBuf {
    let s = sets();
    let Some(id) = fdset_id(path) else {
        return path.to_path_buf();
    };
    s.sets
        .get(&id)
        .and_then(|fds| {
            fds.iter()
                .filter_map(|f| f.opaque.as_deref())
                .find(|o| o.starts_with('/'))
        })
        .map_or_else(|| path.to_path_buf(), PathBuf::from)
}

/// A duplicate of the descriptor handed over for `path`, as it is (no access-mode
/// check, no rewind): a chardev's log file opened for appending, a listening
/// socket. `None` when no set stands for `path`.
pub fn take(path: &Path) -> Option<io::Result<OwnedFd>> {
    let s = sets();
    let id = s.find(path)?;
    Some(match s.sets.get(&id).and_then(|fds| fds.first()) {
        Some(f) => f.fd.try_clone(),
        None => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("'{}': fd set {id} holds no descriptor", path.display()),
        )),
    })
}

/// A listening unix socket at `path`: the one handed over for it (the daemon
/// bound it where the VMM may not write), else bound here, replacing a stale
/// socket file.
pub fn listen_unix(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    let l = match take(path) {
        Some(fd) => std::os::unix::net::UnixListener::from(fd?),
        None => {
            if std::fs::symlink_metadata(path)
                .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
            {
                let _ = std::fs::remove_file(path);
            }
            std::os::unix::net::UnixListener::bind(path)?
        }
    };
    Ok(l)
}

/// Whether a set stands for `path` (it was handed over).
pub fn is_given(path: &Path) -> bool {
    sets().find(path).is_some()
}

#[cfg(test)]
mod tests;
