//! The graphics console handed over as a socket, and the graphics events, through
//! oxvirtd with real clients:
//!
//! * python3-libvirt's `openGraphicsFD` (virt-manager's local console path: the reply
//!   is a REPLY_WITH_FDS) with and without `VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH` on a
//!   password-protected domain, `openGraphics` with the client's own socket (a
//!   CALL_WITH_FDS), libvirt's errors for a bad index and bad flags;
//! * libvirt-dbus's `OpenGraphicsFD(u idx, u flags) → h` with dbus-python;
//! * the graphics event (connect, initialize, disconnect with both addresses and the
//!   auth scheme) as python3-libvirt's callback gets it for those sockets, as
//!   `virsh event --event graphics` prints it for a TCP client, and as the D-Bus
//!   `Graphics` signal `gdbus monitor` shows.

mod rpc_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use rpc_common::{display_xml, Daemon, Watch};

/// The `port='N'` of the live XML's `<graphics>`.
fn live_port(xml: &str) -> u16 {
    let g = &xml[xml.find("<graphics").expect("a <graphics> in the live XML")..];
    let p = &g[g.find("port='").expect("a port in the live <graphics>") + 6..];
    p[..p.find('\'').unwrap()].parse().unwrap()
}

/// A TCP client through VNC Authentication and ClientInit, then gone.
fn vnc_session(port: u16, password: &str) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut b = [0u8; 12];
    s.read_exact(&mut b).unwrap();
    s.write_all(b"RFB 003.008\n").unwrap();
    let mut t = [0u8; 2];
    s.read_exact(&mut t).unwrap();
    assert_eq!(t, [1, 2], "VNC Authentication offered");
    s.write_all(&[2]).unwrap();
    let mut c = [0u8; 16];
    s.read_exact(&mut c).unwrap();
    s.write_all(&rfb::auth::response(password, &c)).unwrap();
    let mut r = [0u8; 4];
    s.read_exact(&mut r).unwrap();
    assert_eq!(r, [0, 0, 0, 0], "password accepted");
    s.write_all(&[1]).unwrap();
    let mut init = [0u8; 24];
    s.read_exact(&mut init).unwrap();
}

#[test]
fn open_graphics_fd_and_graphics_events_on_every_front_end() {
    if !oxvirt_tests::host::require_kvm("open_graphics_fd_and_graphics_events_on_every_front_end") {
        return;
    }
    let d = Daemon::start();
    let name = "gfx1";
    d.virsh_ok(&[
        "define",
        d.xml_file(
            name,
            &display_xml(name, "<graphics type='vnc' passwd='s3cret'/>"),
        )
        .to_str()
        .unwrap(),
    ]);
    d.virsh_ok(&["start", name]);
    let port = live_port(&d.virsh_ok(&["dumpxml", name]));
    let bus = format!("unix:path={}", d.dir.path().join("bus").display());

    let mut c = Command::new("virsh");
    c.args(["-c", &d.uri(), "event", "--domain", name]).args([
        "--event",
        "graphics",
        "--loop",
        "--timeout",
        "120",
    ]);
    let mut ev = Watch::spawn(c, "virsh event");
    let mut c = Command::new("gdbus");
    c.args(["monitor", "--address", &bus, "--dest", "org.libvirt"]);
    let mut mon = Watch::spawn(c, "gdbus monitor");
    std::thread::sleep(Duration::from_millis(700));

    // virsh event and D-Bus: a TCP client with the password.
    vnc_session(port, "s3cret");
    let local = format!("local[IPv4 127.0.0.1 {port}] remote[IPv4 127.0.0.1 ");
    for phase in ["connect", "initialize", "disconnect"] {
        ev.wait_count(
            &d,
            &format!("event 'graphics' for domain '{name}': {phase} {local}"),
            1,
        );
    }
    assert!(
        ev.text.contains("initialize") && ev.text.contains("] vnc"),
        "the auth scheme after the handshake:\n{}",
        ev.text
    );
    mon.wait_count(&d, "org.libvirt.Domain.Graphics (", 3);
    assert!(
        mon.text
            .contains(&format!("(0, '127.0.0.1', '{port}'), (0, '127.0.0.1'")),
        "{}",
        mon.text
    );

    // python3-libvirt and dbus-python: the sockets handed over.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rpc/graphics_script.py");
    let out = Command::new("timeout")
        .args(["120", "/usr/bin/python3", script, &d.uri(), name, &bus])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let fail = |what: &str| -> ! {
        d.fail(&format!(
            "{what}\n--- script stdout:\n{text}\n--- stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    };
    if !out.status.success() {
        fail("graphics_script.py failed");
    }
    for want in [
        "HANDSHAKE fd-skipauth types=1 size=640x480",
        "HANDSHAKE fd types=2 size=-",
        "HANDSHAKE own-socket types=1 size=640x480",
        "HANDSHAKE dbus types=1 size=640x480",
        "ERROR idx1 internal error: No graphics backend with index 1",
        "ERROR flags invalid argument: unsupported flags (0x4) in function",
    ] {
        if !text.contains(want) {
            fail(&format!("no '{want}'"));
        }
    }
    // Connect, initialize (auth none: skipped) and disconnect of unix sockets; the
    // password socket never got past connect.
    let count = |p: &str| text.lines().filter(|l| l.starts_with(p)).count();
    if count("GRAPHICS 0 2 '' '' 2 '' -") < 4
        || count("GRAPHICS 1 2 '' '' 2 none -") < 3
        || count("GRAPHICS 2 2 '' '' 2 ") < 4
    {
        fail("graphics events of the handed-over sockets missing");
    }
    d.virsh_ok(&["destroy", name]);
}
