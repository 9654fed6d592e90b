//! Volume files: probing what a file is (raw, qcow2 with its virtual size and backing
//! file, ISO 9660, directory) and creating, cloning, resizing and wiping them.
//! Blocking file I/O: callers run these on a blocking thread.
//!
//! qcow2 images are written by imago (what the VMM reads them with; `qemu-img check`
//! accepts them). Probing reads the qcow2 header directly instead: imago's open would
//! also open the backing chain, and a probe needs only four header fields.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::error::{Error, Result};
use super::pool_xml::Perms;
use super::vol_xml::{VolFormat, VolInfo, VolRequest};

const QCOW2_MAGIC: &[u8; 4] = b"QFI\xfb";
/// qcow2 header extension: the backing file's format name.
const EXT_BACKING_FORMAT: u32 = 0xE279_2ACA;
/// The default mode of new volumes (libvirt's `VIR_STORAGE_DEFAULT_VOL_PERM_MODE`).
const DEFAULT_MODE: u32 = 0o600;

/// What the header of a qcow2 file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Header {
    pub version: u32,
    pub size: u64,
    pub backing: Option<String>,
    pub backing_format: Option<String>,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses the first bytes of a file as a qcow2 header (`None` if it is not qcow2).
pub fn parse_qcow2(head: &[u8]) -> Option<Qcow2Header> {
    if head.len() < 72 || &head[..4] != QCOW2_MAGIC {
        return None;
    }
    let version = be32(head, 4);
    let (boff, blen) = (be64(head, 8) as usize, be32(head, 16) as usize);
    let size = be64(head, 24);
    let backing = boff
        .checked_add(blen)
        .filter(|end| boff != 0 && blen != 0 && *end <= head.len())
        .map(|end| String::from_utf8_lossy(&head[boff..end]).into_owned());
    // Header extensions follow the header (72 bytes in v2, header_length in v3).
    let mut at = if version >= 3 && head.len() >= 104 {
        be32(head, 100) as usize
    } else {
        72
    };
    let mut backing_format = None;
    while at + 8 <= head.len() {
        let (kind, len) = (be32(head, at), be32(head, at + 4) as usize);
        if kind == 0 || at + 8 + len > head.len() {
            break;
        }
        if kind == EXT_BACKING_FORMAT {
            backing_format =
                Some(String::from_utf8_lossy(&head[at + 8..at + 8 + len]).into_owned());
        }
        at += 8 + len.div_ceil(8) * 8;
    }
    Some(Qcow2Header {
        version,
        size,
        backing,
        backing_format,
    })
}

fn format_name(name: &str) -> Option<VolFormat> {
    match name {
        "raw" => Some(VolFormat::Raw),
        "qcow2" => Some(VolFormat::Qcow2),
        _ => None,
    }
}

/// Reads what `path` is: format, sizes, owner and times.
pub fn probe(name: &str, path: &Path) -> Result<VolInfo> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("stat", path, &e))?;
    let perms = Perms {
        mode: Some(meta.mode() & 0o7777),
        owner: Some(meta.uid()),
        group: Some(meta.gid()),
        label: None,
    };
    let times = [
        (meta.atime(), meta.atime_nsec()),
        (meta.mtime(), meta.mtime_nsec()),
        (meta.ctime(), meta.ctime_nsec()),
    ];
    let mut info = VolInfo {
        name: name.to_string(),
        path: path.to_path_buf(),
        format: VolFormat::Raw,
        capacity: meta.len(),
        allocation: meta.blocks() * 512,
        physical: meta.len(),
        perms,
        times,
        backing: None,
        compat: None,
        block: None,
    };
    if meta.is_dir() {
        info.format = VolFormat::Dir;
        return Ok(info);
    }
    let mut head = vec![0u8; 64 * 1024];
    let n = read_up_to(path, &mut head)?;
    head.truncate(n);
    if let Some(q) = parse_qcow2(&head) {
        info.format = VolFormat::Qcow2;
        info.capacity = q.size;
        info.compat = Some(if q.version >= 3 { "1.1" } else { "0.10" });
        info.backing = q
            .backing
            .map(|b| (b, q.backing_format.as_deref().and_then(format_name)));
    } else if head.len() >= 0x8006 && &head[0x8001..0x8006] == b"CD001" {
        info.format = VolFormat::Iso;
    }
    Ok(info)
}

/// Reads up to `buf.len()` bytes from the start of `path`; how many were read.
pub(crate) fn read_up_to(path: &Path, buf: &mut [u8]) -> Result<usize> {
    let mut f = File::open(path).map_err(|e| Error::io("open", path, &e))?;
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(Error::io("read", path, &e)),
        }
    }
    Ok(n)
}

/// Creates the volume `req` at `path` (which must not exist). On failure nothing is
/// left behind.
pub fn create(path: &Path, req: &VolRequest) -> Result<()> {
    refuse_existing(path)?;
    let result = create_inner(path, req);
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

fn create_inner(path: &Path, req: &VolRequest) -> Result<()> {
    let mode = req.perms.mode.unwrap_or(DEFAULT_MODE);
    match req.format {
        VolFormat::Dir => {
            std::fs::create_dir(path).map_err(|e| Error::io("create directory", path, &e))?;
            std::fs::set_permissions(
                path,
                std::fs::Permissions::from_mode(req.perms.mode.unwrap_or(0o755)),
            )
            .map_err(|e| Error::io("set permissions on", path, &e))
        }
        VolFormat::Raw | VolFormat::Iso => {
            if req.backing.is_some() {
                return Err(Error::OperationUnsupported(
                    "backing storage not supported for raw volumes".into(),
                ));
            }
            let capacity = req.capacity.unwrap_or(0);
            let f = new_file(path, mode)?;
            let alloc = req.allocation.unwrap_or(0).min(capacity);
            if alloc > 0 {
                nix::fcntl::fallocate(&f, nix::fcntl::FallocateFlags::empty(), 0, alloc as i64)
                    .map_err(|e| Error::io("allocate", path, &e.into()))?;
            }
            f.set_len(capacity)
                .map_err(|e| Error::io("resize", path, &e))?;
            f.sync_all().map_err(|e| Error::io("sync", path, &e))
        }
        VolFormat::Qcow2 => {
            let mut capacity = req.capacity;
            let backing = match &req.backing {
                None => None,
                Some((b, fmt)) => {
                    // libvirt: virStorageBackendCreateQemuImgSetBacking.
                    std::fs::metadata(b).map_err(|e| {
                        Error::System(format!(
                            "inaccessible backing store volume {}: {}",
                            b.display(),
                            super::error::strerror(&e)
                        ))
                    })?;
                    let probed = probe("", b)?;
                    let fmt = fmt.unwrap_or(probed.format);
                    capacity = capacity.or(Some(probed.capacity));
                    Some((b.to_string_lossy().into_owned(), fmt.as_str().to_string()))
                }
            };
            // Fail on an existing file before imago touches anything.
            drop(new_file(path, mode)?);
            create_qcow2(path, capacity.unwrap_or(0), backing)
        }
    }
}

/// libvirt's error for a volume file that is already there (never overwritten).
fn refuse_existing(path: &Path) -> Result<()> {
    if path.symlink_metadata().is_ok() {
        return Err(Error::OperationFailed(format!(
            "storage vol '{}' already exists",
            path.display()
        )));
    }
    Ok(())
}

/// A new, empty file with `mode` (the umask does not apply: set explicitly).
fn new_file(path: &Path, mode: u32) -> Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::OperationFailed(format!("storage vol '{}' already exists", path.display()))
            } else {
                Error::io("create", path, &e)
            }
        })?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("set permissions on", path, &e))?;
    Ok(f)
}

/// Writes a qcow2 image of `size` bytes (compat 1.1, 64 KiB clusters) over the empty
/// file at `path`.
pub fn create_qcow2(path: &Path, size: u64, backing: Option<(String, String)>) -> Result<()> {
    use imago::{FormatCreateBuilder, Storage};
    let file = imago::file::File::create_open(
        imago::StorageCreateOptions::new()
            .filename(path)
            .overwrite(true),
    )
    .map_err(|e| Error::io("create", path, &e))?;
    let mut b = imago::qcow2::Qcow2::<imago::file::File>::create_builder(file).size(size);
    if let Some((file, fmt)) = backing {
        b = b.backing(file, fmt);
    }
    b.create().map_err(|e| {
        Error::Internal(format!(
            "cannot write qcow2 image '{}': {e}",
            path.display()
        ))
    })?;
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io("sync", path, &e))
}

/// Changes a volume's capacity (raw: the file length; qcow2: the virtual size).
pub fn resize(info: &VolInfo, capacity: u64) -> Result<()> {
    let path = &info.path;
    match info.format {
        VolFormat::Qcow2 => {
            use imago::FormatDriverBuilder;
            let q = imago::qcow2::Qcow2::<imago::file::File>::builder_path(path)
                .write(true)
                .open(imago::PermissiveImplicitOpenGate::default())
                .map_err(|e| Error::io("open", path, &e))?;
            let mut access = imago::FormatAccess::new(q);
            access
                .resize(capacity, imago::format::PreallocateMode::None)
                .and_then(|()| access.flush())
                .map_err(|e| Error::Internal(format!("cannot resize '{}': {e}", path.display())))
        }
        VolFormat::Raw | VolFormat::Iso => {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io("open", path, &e))?;
            f.set_len(capacity)
                .and_then(|()| f.sync_all())
                .map_err(|e| Error::io("resize", path, &e))
        }
        VolFormat::Dir => Err(Error::OperationUnsupported(
            "cannot resize a directory volume".into(),
        )),
    }
}

/// Overwrites a volume with zeros (libvirt's default wipe algorithm), keeping its
/// length; a qcow2 image becomes an empty image of the same size (libvirt does the same).
pub fn wipe(info: &VolInfo) -> Result<()> {
    let path = &info.path;
    match info.format {
        VolFormat::Qcow2 => {
            std::fs::remove_file(path).map_err(|e| Error::io("remove", path, &e))?;
            drop(new_file(path, info.perms.mode.unwrap_or(DEFAULT_MODE))?);
            let backing = info
                .backing
                .as_ref()
                .map(|(b, f)| (b.clone(), f.map_or("raw", VolFormat::as_str).to_string()));
            create_qcow2(path, info.capacity, backing)
        }
        VolFormat::Raw | VolFormat::Iso => {
            let mut f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io("open", path, &e))?;
            let zeros = vec![0u8; 1 << 20];
            let mut left = info.physical;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])
                    .map_err(|e| Error::io("write", path, &e))?;
                left -= n as u64;
            }
            f.sync_all().map_err(|e| Error::io("sync", path, &e))
        }
        VolFormat::Dir => Err(Error::OperationUnsupported(
            "cannot wipe a directory volume".into(),
        )),
    }
}

/// Creates `dst` as a copy of the volume `src` (vol-clone, vol-create-from): the same
/// format, holes kept, grown to `capacity` when that is larger. On failure nothing is
/// left behind.
pub fn clone(src: &VolInfo, dst: &Path, mode: Option<u32>, capacity: Option<u64>) -> Result<()> {
    refuse_existing(dst)?;
    let result = (|| {
        let mut out = new_file(dst, mode.unwrap_or(DEFAULT_MODE))?;
        let mut input = File::open(&src.path).map_err(|e| Error::io("open", &src.path, &e))?;
        copy_sparse(&mut input, &mut out, src.physical)
            .map_err(|e| Error::io("copy to", dst, &e))?;
        out.sync_all().map_err(|e| Error::io("sync", dst, &e))?;
        drop(out);
        if let Some(c) = capacity.filter(|c| *c > src.capacity) {
            let mut grown = probe("", dst)?;
            grown.format = src.format;
            resize(&grown, c)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

/// Copies `len` bytes, seeking over all-zero blocks so the copy stays sparse.
fn copy_sparse(input: &mut File, out: &mut File, len: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|b| *b == 0) {
            out.seek(SeekFrom::Current(n as i64))?;
        } else {
            out.write_all(&buf[..n])?;
        }
        done += n as u64;
    }
    out.set_len(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn qemu_img(args: &[&str]) -> Option<String> {
        let out = Command::new("qemu-img").args(args).output().ok()?;
        assert!(
            out.status.success(),
            "qemu-img {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn req(name: &str, format: VolFormat, cap: Option<u64>) -> VolRequest {
        VolRequest {
            name: name.into(),
            capacity: cap,
            allocation: None,
            format,
            perms: Perms::default(),
            backing: None,
        }
    }

    #[test]
    fn qcow2_volumes_pass_qemu_img_check_and_report_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.qcow2");
        create(&p, &req("a.qcow2", VolFormat::Qcow2, Some(1 << 30))).unwrap();
        let info = probe("a.qcow2", &p).unwrap();
        assert_eq!(info.format, VolFormat::Qcow2);
        assert_eq!(info.capacity, 1 << 30);
        assert_eq!(info.compat, Some("1.1"));
        assert!(info.allocation < 1 << 20, "sparse: {}", info.allocation);
        let Some(json) = qemu_img(&["info", "--output=json", p.to_str().unwrap()]) else {
            eprintln!("SKIPPED: qemu-img checks: qemu-img is not installed (qemu-utils)");
            return;
        };
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["format"], "qcow2");
        assert_eq!(v["virtual-size"], 1u64 << 30);
        qemu_img(&["check", p.to_str().unwrap()]).unwrap();

        // A qcow2 on top of it, capacity taken from the backing image.
        let top = dir.path().join("top.qcow2");
        let mut r = req("top.qcow2", VolFormat::Qcow2, None);
        r.backing = Some((p.clone(), Some(VolFormat::Qcow2)));
        create(&top, &r).unwrap();
        let t = probe("top.qcow2", &top).unwrap();
        assert_eq!(t.capacity, 1 << 30);
        assert_eq!(
            t.backing,
            Some((p.to_string_lossy().into_owned(), Some(VolFormat::Qcow2)))
        );
        let json = qemu_img(&["info", "--output=json", top.to_str().unwrap()]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["backing-filename"], p.to_str().unwrap());
        assert_eq!(v["backing-filename-format"], "qcow2");
        qemu_img(&["check", top.to_str().unwrap()]).unwrap();

        // Grow it; qemu-img sees the new size and a clean image.
        resize(&t, 2 << 30).unwrap();
        let json = qemu_img(&["info", "--output=json", top.to_str().unwrap()]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["virtual-size"], 2u64 << 30);
        qemu_img(&["check", top.to_str().unwrap()]).unwrap();
    }

    #[test]
    fn hostile_qcow2_headers_are_not_trusted() {
        let mut h = vec![0u8; 104];
        h[..4].copy_from_slice(QCOW2_MAGIC);
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        // Backing file offset near the end of the address space, extension length huge.
        h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
        h[16..20].copy_from_slice(&16u32.to_be_bytes());
        h[100..104].copy_from_slice(&96u32.to_be_bytes());
        let q = parse_qcow2(&h).unwrap();
        assert_eq!(q.backing, None);
        assert_eq!(parse_qcow2(&h[..50]), None);
    }

    #[test]
    fn a_missing_backing_file_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.qcow2");
        let mut r = req("t.qcow2", VolFormat::Qcow2, None);
        r.backing = Some((dir.path().join("nope"), None));
        let e = create(&p, &r).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("inaccessible backing store volume "),
            "{e}"
        );
        assert!(e.to_string().ends_with("No such file or directory"), "{e}");
        assert!(!p.exists());
    }

    #[test]
    fn raw_volumes_are_sparse_unless_allocated_and_clone_keeps_holes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.img");
        create(&p, &req("r.img", VolFormat::Raw, Some(64 << 20))).unwrap();
        let info = probe("r.img", &p).unwrap();
        assert_eq!((info.format, info.capacity), (VolFormat::Raw, 64 << 20));
        assert_eq!(info.allocation, 0);
        assert_eq!(info.perms.mode, Some(0o600));
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .write_all(b"hello")
            .unwrap();
        let c = dir.path().join("c.img");
        clone(&probe("r.img", &p).unwrap(), &c, None, None).unwrap();
        let ci = probe("c.img", &c).unwrap();
        assert_eq!(ci.capacity, 64 << 20);
        assert!(ci.allocation <= 1 << 20, "{}", ci.allocation);
        assert_eq!(&std::fs::read(&c).unwrap()[..5], b"hello");
        let mut full = req("f.img", VolFormat::Raw, Some(1 << 20));
        full.allocation = Some(1 << 20);
        let f = dir.path().join("f.img");
        create(&f, &full).unwrap();
        assert_eq!(probe("f.img", &f).unwrap().allocation, 1 << 20);
        // An existing name is refused and the file is kept.
        assert!(create(&f, &full).is_err());
        assert!(f.exists());
    }
}
