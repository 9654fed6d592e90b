use super::*;
use std::io::{Read, Write as _};
use std::os::unix::fs::FileExt;

fn temp_with(content: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    std::fs::write(&path, content).unwrap();
    (dir, path)
}

fn open_fd(path: &Path, write: bool) -> OwnedFd {
    OwnedFd::from(
        OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .unwrap(),
    )
}

fn opaque(path: &Path) -> Option<String> {
    Some(path.to_str().unwrap().to_string())
}

#[test]
fn a_path_no_set_stands_for_opens_by_path() {
    let (_d, path) = temp_with(b"by path");
    assert!(!is_given(&path));
    let mut s = String::new();
    open(&path, Access::READ)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "by path");
}

#[test]
fn a_handed_over_file_is_opened_from_its_descriptor_not_its_path() {
    let (d, path) = temp_with(b"original");
    let added = add(open_fd(&path, true), None, opaque(&path));
    // The path is gone (and another file takes its place): the open still gets
    // the file that was handed over.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(d.path().join("img"), b"impostor").unwrap();
    assert!(is_given(&path));
    let mut s = String::new();
    let mut f = open(&path, Access::READ).unwrap();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "original");
    // Every open starts at the beginning, whatever an earlier one read.
    let mut again = String::new();
    open(&path, Access::READ)
        .unwrap()
        .read_to_string(&mut again)
        .unwrap();
    assert_eq!(again, "original");
    // Written through one duplicate, seen through another (one description).
    let w = open(
        &path,
        Access {
            write: true,
            direct: false,
        },
    )
    .unwrap();
    w.write_all_at(b"O", 0).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 0).unwrap();
    assert_eq!(&b, b"O");
    // Also found as /dev/fdset/N, and that path stands for the real one.
    let by_set = PathBuf::from(format!("{FDSET_PREFIX}{}", added.fdset_id));
    assert!(open(&by_set, Access::READ).is_ok());
    assert_eq!(real_path(&by_set), path);
    // Spelt differently, it is the same path.
    let odd = PathBuf::from(format!("{}/./img", d.path().display()).replace('/', "//"));
    assert!(is_given(&odd));
    remove(added.fdset_id, None).unwrap();
    assert!(!is_given(&path));
}

#[test]
fn opens_get_a_descriptor_with_the_access_they_ask_for() {
    let (_d, path) = temp_with(b"ro");
    let added = add(open_fd(&path, false), None, opaque(&path));
    let write = Access {
        write: true,
        direct: false,
    };
    let e = open(&path, write).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("img"), "{e}");
    // No O_DIRECT descriptor: EINVAL, as a filesystem that refuses O_DIRECT says,
    // so the caller falls back to the page cache as it would by path.
    let direct = Access {
        write: false,
        direct: true,
    };
    assert_eq!(
        open(&path, direct).unwrap_err().raw_os_error(),
        Some(libc::EINVAL)
    );
    // A read-write descriptor added to the same set serves writes.
    let second = add(open_fd(&path, true), Some(added.fdset_id), opaque(&path));
    assert_eq!(second.fdset_id, added.fdset_id);
    open(&path, write).unwrap().write_all(b"rw").unwrap();
    let listed = query();
    let set = listed.iter().find(|(id, _)| *id == added.fdset_id).unwrap();
    assert_eq!(set.1.len(), 2);
    assert!(set.1.iter().any(|(fd, _)| *fd == second.fd));
    remove(added.fdset_id, Some(second.fd)).unwrap();
    assert_eq!(
        remove(added.fdset_id, Some(second.fd)),
        Err(RemoveError::NoFd(added.fdset_id, second.fd))
    );
    remove(added.fdset_id, None).unwrap();
    // (An id no test uses: the ids of removed sets are handed out again.)
    assert_eq!(remove(999_999, None), Err(RemoveError::NoSet(999_999)));
}

#[test]
fn an_fdset_path_of_a_set_that_was_never_added_is_not_found() {
    let e = open(Path::new("/dev/fdset/987654"), Access::READ).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().contains("987654"), "{e}");
}

#[test]
fn adopting_a_descriptor_that_is_not_open_names_the_path() {
    let files = [machine_spec::PassedFile {
        path: "/images/gone.qcow2".into(),
        fd: 1_000_000,
    }];
    let e = adopt(&files).unwrap_err().to_string();
    assert!(
        e.contains("/images/gone.qcow2") && e.contains("1000000"),
        "{e}"
    );
}

#[test]
fn adopted_descriptors_become_sets_named_by_their_path() {
    let (_d, path) = temp_with(b"adopted");
    let fd = open_fd(&path, false);
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    adopt(&[machine_spec::PassedFile {
        path: path.clone(),
        fd: raw,
    }])
    .unwrap();
    let mut s = String::new();
    open(&path, Access::READ)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "adopted");
    let set = query()
        .into_iter()
        .find(|(_, fds)| fds.iter().any(|(n, _)| *n == raw))
        .unwrap();
    assert_eq!(set.1[0].1.as_deref(), path.to_str());
    // Close-on-exec: helpers the VMM starts do not inherit images.
    let flags = fcntl(
        // SAFETY: `raw` is owned by the set until the removal below.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) },
        FcntlArg::F_GETFD,
    )
    .unwrap();
    assert_ne!(flags & libc::FD_CLOEXEC, 0);
    remove(set.0, None).unwrap();
}

#[test]
fn a_path_handed_over_again_replaces_the_set_it_named() {
    let (d, path) = temp_with(b"first");
    let first = add(open_fd(&path, false), None, opaque(&path));
    // Recreated under the same name and handed over again.
    std::fs::remove_file(&path).unwrap();
    std::fs::write(d.path().join("img"), b"second").unwrap();
    let second = add(open_fd(&path, false), None, opaque(&path));
    assert_ne!(first.fdset_id, second.fdset_id);
    let mut s = String::new();
    open(&path, Access::READ)
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "second");
    assert!(!query().iter().any(|(id, _)| *id == first.fdset_id));
    // A second descriptor for the same set does not replace it.
    let twin = add(open_fd(&path, true), Some(second.fdset_id), opaque(&path));
    assert_eq!(twin.fdset_id, second.fdset_id);
    let set = query()
        .into_iter()
        .find(|(id, _)| *id == second.fdset_id)
        .unwrap();
    assert_eq!(set.1.len(), 2);
    remove(second.fdset_id, None).unwrap();
}
