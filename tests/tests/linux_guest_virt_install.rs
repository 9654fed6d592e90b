//! The drop-in, end to end, as a desktop user does it: an unmodified `virt-install
//! --connect qemu:///session` against `oxvirtd --session --qemu-uri` (run as an
//! unprivileged user, no real libvirt daemon anywhere), with virt-install's own
//! defaults: q35, SeaBIOS, the installer ISO on a SATA CD-ROM, a qcow2 disk created in
//! the `default` storage pool, VNC graphics (what our domain capabilities offer),
//! user-mode networking (passt), a USB tablet, sound and SPICE channels (no effect,
//! warned). The ISO is a `grub-mkrescue` image holding the
//! Linux test guest: it boots from the CD through SeaBIOS and GRUB to its ready line,
//! read through libvirt's console stream (python3-libvirt). `virsh domdisplay` names
//! the VNC server and gvnccapture (gtk-vnc) captures the screen; `virsh undefine
//! --remove-all-storage` removes the domain and its disk.

#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use oxvirt_tests::session::SessionDaemon;
use oxvirt_tests::skip;
use support::{guest, host, BOOT};

/// Reads the domain's serial console through libvirt's stream API until the guest's
/// ready line (or the end of the stream), printing what it read.
const CONSOLE_PY: &str = r#"
import sys, libvirt
c = libvirt.open('qemu:///session')
d = c.lookupByName(sys.argv[1])
st = c.newStream(0)
d.openConsole(None, st, 0)
buf = b''
while b'OXVIRT-READY' not in buf:
    data = st.recv(4096)
    if not data:
        break
    buf += data
sys.stdout.write(buf.decode('utf-8', 'replace'))
sys.exit(0 if b'OXVIRT-READY' in buf else 1)
"#;

#[test]
fn virt_install_with_its_defaults_on_qemu_session_installs_from_an_iso_shown_over_vnc() {
    let test = "virt_install_with_its_defaults_on_qemu_session_installs_from_an_iso_shown_over_vnc";
    let Some(g) = guest(test) else {
        return;
    };
    let needs = [
        ("/usr/bin/virt-install", "virtinst"),
        ("/usr/bin/grub-mkrescue", "grub-common"),
        ("/usr/lib/grub/i386-pc", "grub-pc-bin"),
        ("/usr/bin/xorriso", "xorriso"),
        (oxvirt_tests::host::SEABIOS, "seabios"),
        ("/usr/bin/gvnccapture", "gvncviewer"),
        ("/usr/bin/passt", "passt"),
    ];
    if let Some((p, pkg)) = needs.iter().find(|(p, _)| !Path::new(p).exists()) {
        skip(test, &format!("{p} missing (Debian package {pkg})"));
        return;
    }
    let s = SessionDaemon::start(&["--qemu-uri"]).unwrap_or_else(|e| panic!("{e}"));

    // The installer ISO: GRUB with the test guest's kernel and initramfs.
    let tree = s.dir.path().join("iso");
    std::fs::create_dir_all(tree.join("boot/grub")).unwrap();
    std::fs::copy(g.dir.join("bzImage"), tree.join("boot/bzImage")).unwrap();
    std::fs::copy(&g.initrd, tree.join("boot/initrd")).unwrap();
    std::fs::write(
        tree.join("boot/grub/grub.cfg"),
        format!(
            "set timeout=0\nserial --unit=0 --speed=115200\nterminal_output serial console\n\
             menuentry linux {{\n  linux /boot/bzImage {}\n  initrd /boot/initrd\n}}\n",
            g.cmdline
        ),
    )
    .unwrap();
    let iso = s.files().join("installer.iso");
    host(
        "grub-mkrescue",
        &["-o", iso.to_str().unwrap(), tree.to_str().unwrap()],
    );
    host("chown", &["65534:65534", iso.to_str().unwrap()]);

    // virt-install exactly as a user types it; everything else is its default.
    let r = s.run(
        "virt-install",
        &[
            "--connect",
            "qemu:///session",
            "--name",
            "vm",
            "--memory",
            "256",
            "--disk",
            "size=1",
            "--cdrom",
            iso.to_str().unwrap(),
            "--os-variant",
            "debian11",
            "--noautoconsole",
        ],
        Duration::from_secs(300),
    );
    assert!(
        r.ok,
        "virt-install failed:\n{}\n{}\n--- oxvirtd log:\n{}",
        r.stdout,
        r.stderr,
        s.log()
    );
    let xml = s.virsh_ok("qemu:///session", &["dumpxml", "--inactive", "vm"]);
    for want in ["machine='q35'", "bus='sata'", "<graphics type='vnc'"] {
        assert!(
            xml.contains(want),
            "virt-install's XML lacks {want}:\n{xml}"
        );
    }
    let disk = s
        .dir
        .path()
        .join("home/.local/share/oxvirt/images/vm.qcow2");
    assert!(
        disk.exists(),
        "the disk is not in the default pool: {disk:?}"
    );

    // The guest boots from the CD through SeaBIOS and GRUB to its ready line.
    let console = s.run("python3", &["-c", CONSOLE_PY, "vm"], BOOT);
    let log = || {
        std::fs::read_to_string(s.dir.path().join("run/oxvirt/domains/vm/log")).unwrap_or_default()
    };
    assert!(
        console.ok,
        "no ready line on the console:\n{}\n{}\n--- domain log:\n{}\n--- oxvirtd log:\n{}",
        console.stdout,
        console.stderr,
        log(),
        s.log()
    );
    assert!(
        console.stdout.contains("OXVIRT block name=sr0"),
        "the installer CD is not /dev/sr0 in the guest:\n{}",
        console.stdout
    );

    // Its screen, through the VNC address libvirt's tools get.
    let display = s.virsh_ok("qemu:///session", &["domdisplay", "vm"]);
    let display = display.trim();
    let port = display
        .strip_prefix("vnc://127.0.0.1:")
        .and_then(|d| d.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("domdisplay gave {display:?}"));
    let shot = s.files().join("screen.png");
    let r = s.run(
        "gvnccapture",
        &[&format!("127.0.0.1:{port}"), shot.to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(r.ok, "gvnccapture: {}{}", r.stdout, r.stderr);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let info = decoder.read_info().unwrap().info().clone();
    assert!(
        info.width >= 640 && info.height >= 400,
        "screen {}x{}",
        info.width,
        info.height
    );
    // Keep the picture for people (the README shows how to get one).
    if let Some(dir) = std::env::var_os("OXVIRT_SCREENSHOT_DIR") {
        let _ = std::fs::copy(&shot, Path::new(&dir).join("virt-install-vnc.png"));
    }

    s.virsh_ok("qemu:///session", &["destroy", "vm"]);
    s.virsh_ok(
        "qemu:///session",
        &["undefine", "vm", "--remove-all-storage"],
    );
    assert!(
        !disk.exists(),
        "undefine --remove-all-storage left {disk:?}"
    );
    let names = s.virsh_ok("qemu:///session", &["list", "--all", "--name"]);
    assert!(names.trim().is_empty(), "{names}");
}
