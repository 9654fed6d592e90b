use super::*;
use std::process::Command;

fn qemu_img(args: &[&str]) -> bool {
    match Command::new("qemu-img").args(args).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => panic!("qemu-img {args:?}: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => false,
    }
}

/// A qcow2 at `path` over `backing` (a name as the header keeps it) of `format`.
fn overlay(path: &Path, backing: &str, format: &str) -> bool {
    let path = path.to_str().unwrap();
    qemu_img(&[
        "create", "-q", "-f", "qcow2", "-b", backing, "-F", format, path,
    ])
}

#[test]
fn a_backing_chain_is_followed_as_the_vmm_resolves_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("sub")).unwrap();
    let base = d.join("base.raw");
    std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    // mid names base by an absolute path, top names mid relatively.
    let mid = d.join("sub/mid.qcow2");
    let top = d.join("top.qcow2");
    if !overlay(&mid, &s(&base), "raw") {
        eprintln!("SKIPPED a_backing_chain_is_followed_as_the_vmm_resolves_it: no qemu-img (Debian qemu-utils)");
        return;
    }
    overlay(&top, "sub/mid.qcow2", "qcow2");
    assert_eq!(
        backing_chain(&top),
        vec![d.join("sub/mid.qcow2"), base.clone()]
    );
    assert!(backing_chain(&base).is_empty());
    assert!(backing_chain(&d.join("missing.qcow2")).is_empty());
}

#[test]
fn the_spec_lists_every_file_handed_over_with_its_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let base = d.join("base.qcow2");
    let top = d.join("top.qcow2");
    if !qemu_img(&["create", "-q", "-f", "qcow2", &s(&base), "1M"]) {
        eprintln!("SKIPPED the_spec_lists_every_file_handed_over_with_its_descriptor: no qemu-img (Debian qemu-utils)");
        return;
    }
    overlay(&top, "base.qcow2", "qcow2");
    let kernel = d.join("vmlinux");
    std::fs::write(&kernel, b"kernel").unwrap();
    let xml = format!(
        "<domain type='kvm'><name>h</name><memory unit='MiB'>64</memory>\
         <os><type>hvm</type><kernel>{}</kernel></os><devices>\
         <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
         <source file='{}'/><target dev='vda' bus='virtio'/></disk>\
         <disk type='file' device='disk'><driver name='qemu' type='raw'/>\
         <source file='{}/missing.img'/><target dev='vdb' bus='virtio'/></disk>\
         </devices></domain>",
        kernel.display(),
        top.display(),
        d.display()
    );
    let mut spec = domain_xml::spec_from_xml(&xml).unwrap();
    let fds = open_for_spec(&mut spec, 7, false);
    assert_eq!(fds.len(), spec.files.len());
    let listed: Vec<(&Path, i32)> = spec
        .files
        .iter()
        .map(|f| (f.path.as_path(), f.fd))
        .collect();
    assert_eq!(
        listed,
        vec![
            (kernel.as_path(), 7),
            (top.as_path(), 8),
            (base.as_path(), 9)
        ],
        "a file that cannot be opened is left to the VMM"
    );
    // The descriptors are the files, with the access the VMM will ask for.
    let mode = |fd: &OwnedFd| {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).unwrap() & libc::O_ACCMODE
    };
    assert_eq!(mode(&fds[0]), libc::O_RDONLY);
    assert_eq!(mode(&fds[1]), libc::O_RDWR);
    assert_eq!(mode(&fds[2]), libc::O_RDONLY, "backing files read-only");
    spec.check().unwrap();
}

#[test]
fn chardev_logs_and_listening_sockets_are_made_and_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let log = d.join("serial.log");
    std::fs::write(&log, b"old run\n").unwrap();
    let sock = d.join("channel.sock");
    // A stale socket file from an earlier run is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let xml = format!(
        "<domain type='kvm'><name>c</name><memory unit='MiB'>64</memory>\
         <os><type>hvm</type><kernel>/nonexistent/vmlinux</kernel></os><devices>\
         <serial type='file'><source path='{}'/><target port='0'/></serial>\
         <channel type='unix'><source mode='bind' path='{}'/>\
         <target type='virtio' name='org.example.0'/></channel>\
         <channel type='unix'><source mode='bind' path='relative.sock'/>\
         <target type='virtio' name='org.example.1'/></channel>\
         </devices></domain>",
        log.display(),
        sock.display()
    );
    let mut spec = domain_xml::spec_from_xml(&xml).unwrap();
    let fds = open_for_spec(&mut spec, 3, false);
    let listed: Vec<&Path> = spec.files.iter().map(|f| f.path.as_path()).collect();
    assert_eq!(
        listed,
        vec![log.as_path(), sock.as_path()],
        "a relative socket is the runtime directory's, left to the VMM"
    );
    // The log: truncated (no append='on'), write-only, ours to write through.
    assert_eq!(std::fs::read(&log).unwrap(), b"");
    let mut f = std::fs::File::from(fds[0].try_clone().unwrap());
    std::io::Write::write_all(&mut f, b"guest\n").unwrap();
    assert_eq!(std::fs::read(&log).unwrap(), b"guest\n");
    // The socket: bound and listening, a client gets in.
    let l = std::os::unix::net::UnixListener::from(fds[1].try_clone().unwrap());
    let _client = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    l.accept().unwrap();
    spec.check().unwrap();
}
