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
