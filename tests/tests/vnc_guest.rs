//! The VNC server with the oxtest guest drawing its known picture into the display
//! adapter (tests/guests/oxtest/display.c, as in display_guest.rs): a real RFB client
//! (gtk-vnc's `gvnccapture`, ZRLE) and our small Raw client here must see exactly that
//! picture, the same as QMP `screendump`; the port chosen from 5900 up shows in
//! `query-vnc`; the password is accepted and refused; two clients share the screen;
//! a client sending garbage is dropped while the VM and the other client carry on;
//! `VNC_CONNECTED`/`VNC_INITIALIZED`/`VNC_DISCONNECTED` reach QMP clients; a socket
//! passed with qemu.qmp's `send_fd_scm` + `getfd` becomes a client through
//! `add_client` (with and without `skipauth`), with QEMU's errors for missing fds.

mod qmp_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use machine_spec::{Device, DeviceKind, Graphics, GraphicsListen, SharePolicy, Video, VideoModel};
use oxvirt_tests::spec::pci_slot;
use oxvirt_tests::{oxtest_spec, GUEST_TIMEOUT};
use qmp_common::{PyQmp, QmpVm};
use serde_json::json;

const W: u32 = 640;
const H: u32 = 480;

/// The guest's display_pixel() (the same picture display_guest.rs checks).
fn pixel(x: u32, y: u32) -> u32 {
    const BARS: [u32; 8] = [
        0x000000, 0xff0000, 0x00ff00, 0x0000ff, 0xffffff, 0xffff00, 0x00ffff, 0xff00ff,
    ];
    if y < H / 2 {
        BARS[(x / (W / 8)) as usize]
    } else {
        ((x & 0xff) << 16) | ((y & 0xff) << 8) | ((x ^ y) & 0xff)
    }
}

/// The first few pixels that differ from the guest's picture.
fn differences(w: u32, h: u32, px: &[u32]) -> Vec<String> {
    if (w, h) != (W, H) {
        return vec![format!("size {w}x{h}, want {W}x{H}")];
    }
    (0..H)
        .flat_map(|y| (0..W).map(move |x| (x, y)))
        .filter(|&(x, y)| px[(y * W + x) as usize] != pixel(x, y))
        .take(5)
        .map(|(x, y)| {
            format!(
                "({x},{y}) {:06x} want {:06x}",
                px[(y * W + x) as usize],
                pixel(x, y)
            )
        })
        .collect()
}

fn spec(password: Option<&str>) -> machine_spec::MachineSpec {
    let video = Device {
        id: "video0".into(),
        pci: pci_slot(2),
        boot_index: None,
        kind: DeviceKind::Video(Video {
            model: VideoModel::Bochs,
            vram_bytes: 16 << 20,
            resolution: None,
            requested_model: None,
        }),
    };
    let mut s = oxtest_spec("pci,display", vec![video]);
    s.graphics = Some(Graphics {
        listen: GraphicsListen::Address {
            address: "127.0.0.1".into(),
            port: None,
        },
        password: password.map(str::to_string),
        password_valid_to: None,
        share_policy: SharePolicy::AllowExclusive,
        requested_type: None,
    });
    s
}

/// A minimal RFB 3.8 client: handshake, Raw updates.
struct Client {
    s: TcpStream,
}

impl Client {
    /// Connects and authenticates; `Err` carries the server's failure reason.
    fn connect(port: u16, password: Option<&str>, shared: bool) -> Result<Client, String> {
        let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = Client { s };
        assert_eq!(c.read(12), b"RFB 003.008\n");
        c.s.write_all(b"RFB 003.008\n").unwrap();
        let types = c.read(2);
        assert_eq!(types[0], 1, "one security type");
        let want = if password.is_some() { 2 } else { 1 };
        assert_eq!(types[1], want, "security type");
        c.s.write_all(&[want]).unwrap();
        if let Some(pw) = password {
            let challenge: [u8; 16] = c.read(16).try_into().unwrap();
            c.s.write_all(&rfb::auth::response(pw, &challenge)).unwrap();
        }
        if c.read(4) != [0, 0, 0, 0] {
            let n = u32::from_be_bytes(c.read(4).try_into().unwrap()) as usize;
            return Err(String::from_utf8_lossy(&c.read(n)).into_owned());
        }
        c.s.write_all(&[u8::from(shared)]).unwrap();
        let init = c.read(24);
        let name_len = u32::from_be_bytes(init[20..24].try_into().unwrap()) as usize;
        c.read(name_len);
        let size = (
            u32::from(u16::from_be_bytes([init[0], init[1]])),
            u32::from(u16::from_be_bytes([init[2], init[3]])),
        );
        assert_eq!(size, (W, H), "ServerInit size");
        Ok(c)
    }

    fn read(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.s
            .read_exact(&mut b)
            .expect("reading from the VNC server");
        b
    }

    /// Requests the whole screen and assembles the Raw rectangles of one update.
    fn screen(&mut self) -> Vec<u32> {
        let mut m = vec![3, 0, 0, 0, 0, 0];
        m.extend_from_slice(&(W as u16).to_be_bytes());
        m.extend_from_slice(&(H as u16).to_be_bytes());
        self.s.write_all(&m).unwrap();
        let head = self.read(4);
        assert_eq!(head[0], 0, "FramebufferUpdate");
        let mut px = vec![0u32; (W * H) as usize];
        for _ in 0..u16::from_be_bytes([head[2], head[3]]) {
            let r = self.read(12);
            let f = |o: usize| u32::from(u16::from_be_bytes([r[o], r[o + 1]]));
            let (x, y, w, h) = (f(0), f(2), f(4), f(6));
            assert_eq!(&r[8..12], [0, 0, 0, 0], "Raw encoding");
            let data = self.read((w * h * 4) as usize);
            for row in 0..h {
                for col in 0..w {
                    let i = ((row * w + col) * 4) as usize;
                    px[((y + row) * W + x + col) as usize] =
                        u32::from_le_bytes(data[i..i + 4].try_into().unwrap()) & 0xffffff;
                }
            }
        }
        px
    }
}

/// The guest is up with its picture drawn; the VNC port from `query-vnc`.
fn boot(password: Option<&str>) -> (QmpVm, PyQmp, u16) {
    let q = QmpVm::start(&spec(password));
    q.vm.expect_ok("display", GUEST_TIMEOUT);
    let mut c = PyQmp::connect(&q.sock);
    let info = c.ok("query-vnc", json!(null));
    assert_eq!(info["enabled"], true, "{info}");
    assert_eq!(info["host"], "127.0.0.1", "{info}");
    assert_eq!(info["family"], "ipv4", "{info}");
    assert_eq!(
        info["auth"],
        if password.is_some() { "vnc" } else { "none" },
        "{info}"
    );
    let port: u16 = info["service"].as_str().unwrap().parse().unwrap();
    assert!(port >= 5900, "autoport starts at 5900: {info}");
    (q, c, port)
}

#[test]
fn rfb_client_sees_the_guest_picture_and_events_reach_qmp() {
    let (q, mut qmp, port) = boot(None);
    let mut a = Client::connect(port, None, true).unwrap();
    let ev = qmp.event("VNC_CONNECTED", Duration::from_secs(10));
    assert_eq!(ev["data"]["server"]["service"], port.to_string(), "{ev}");
    assert_eq!(ev["data"]["client"]["family"], "ipv4", "{ev}");
    let ev = qmp.event("VNC_INITIALIZED", Duration::from_secs(10));
    assert_eq!(ev["data"]["server"]["auth"], "none", "{ev}");
    let wrong = differences(W, H, &a.screen());
    if !wrong.is_empty() {
        q.vm.fail(&format!(
            "VNC screen differs from the guest's picture: {wrong:?}"
        ));
    }
    // A second shared client sees the same; query-vnc lists both.
    let mut b = Client::connect(port, None, true).unwrap();
    assert!(differences(W, H, &b.screen()).is_empty());
    let info = qmp.ok("query-vnc", json!(null));
    assert_eq!(info["clients"].as_array().unwrap().len(), 2, "{info}");
    let servers = qmp.ok("query-vnc-servers", json!(null));
    assert_eq!(
        servers[0]["server"][0]["service"],
        port.to_string(),
        "{servers}"
    );
    // Garbage from a third: it is dropped, the others and the VM carry on.
    let mut bad = TcpStream::connect(("127.0.0.1", port)).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\nHost: vnc\r\n\r\n")
        .unwrap();
    let mut sink = Vec::new();
    let _ = bad.read_to_end(&mut sink);
    assert_eq!(
        &sink[..],
        b"RFB 003.008\n",
        "the server only greeted, then closed"
    );
    assert!(differences(W, H, &a.screen()).is_empty());
    assert_eq!(qmp.ok("query-status", json!(null))["status"], "running");
    drop(b);
    let ev = qmp.event("VNC_DISCONNECTED", Duration::from_secs(10));
    assert_eq!(ev["data"]["client"]["host"], "127.0.0.1", "{ev}");
    // set_password without password auth is refused as QEMU refuses it.
    let e = qmp.execute("set_password", json!({"protocol": "vnc", "password": "x"}));
    assert_eq!(e["error"]["desc"], "Could not set password", "{e}");
    q.vm.assert_no_failures();
}

#[test]
fn password_accepted_refused_changed_and_expired() {
    let (q, mut qmp, port) = boot(Some("s3cret"));
    let mut c = Client::connect(port, Some("s3cret"), true).unwrap();
    assert!(differences(W, H, &c.screen()).is_empty());
    assert_eq!(
        Client::connect(port, Some("wrong"), true).err().as_deref(),
        Some("Authentication failed")
    );
    qmp.ok(
        "set_password",
        json!({"protocol": "vnc", "password": "n3w"}),
    );
    assert!(Client::connect(port, Some("s3cret"), true).is_err());
    assert!(Client::connect(port, Some("n3w"), true).is_ok());
    qmp.ok("expire_password", json!({"protocol": "vnc", "time": "now"}));
    assert!(Client::connect(port, Some("n3w"), true).is_err());
    qmp.ok(
        "expire_password",
        json!({"protocol": "vnc", "time": "never"}),
    );
    assert!(Client::connect(port, Some("n3w"), true).is_ok());
    let e = qmp.execute(
        "expire_password",
        json!({"protocol": "vnc", "time": "soon"}),
    );
    assert!(
        e["error"]["desc"].as_str().unwrap().contains("'soon'"),
        "{e}"
    );
    add_client_serves_passed_sockets(&mut qmp);
    q.vm.assert_no_failures();
}

/// QMP fd passing on a password-protected server: what libvirt's OpenGraphicsFD does.
fn add_client_serves_passed_sockets(qmp: &mut PyQmp) {
    let desc = |r: serde_json::Value| r["error"]["desc"].as_str().unwrap_or_default().to_string();
    assert_eq!(
        desc(qmp.execute("getfd", json!({"fdname": "vnc"}))),
        "No file descriptor supplied via SCM_RIGHTS"
    );
    assert_eq!(
        desc(qmp.execute("add_client", json!({"protocol": "vnc", "fdname": "vnc"}))),
        "File descriptor named 'vnc' has not been found"
    );
    assert_eq!(
        desc(qmp.execute("closefd", json!({"fdname": "vnc"}))),
        "File descriptor named 'vnc' not found"
    );
    for (sock, skipauth, security) in [("a", true, 1u8), ("b", false, 2u8)] {
        qmp.pass_socket(sock);
        qmp.ok("getfd", json!({"fdname": "vnc"}));
        qmp.ok(
            "add_client",
            json!({"protocol": "vnc", "fdname": "vnc", "skipauth": skipauth}),
        );
        // The TCP clients above left their events queued: skip to the passed one.
        let unix = (0..20)
            .map(|_| qmp.event("VNC_CONNECTED", Duration::from_secs(10)))
            .find(|ev| ev["data"]["client"]["family"] == "unix");
        assert!(unix.is_some(), "no VNC_CONNECTED for the passed socket");
        assert_eq!(qmp.sock_recv(sock, 12), b"RFB 003.008\n");
        qmp.sock_send(sock, b"RFB 003.008\n");
        assert_eq!(
            qmp.sock_recv(sock, 2),
            [1, security],
            "skipauth={skipauth}: the security types offered"
        );
        if skipauth {
            qmp.sock_send(sock, &[1]);
            assert_eq!(qmp.sock_recv(sock, 4), [0, 0, 0, 0], "SecurityResult ok");
            qmp.sock_send(sock, &[1]);
            let init = qmp.sock_recv(sock, 24);
            assert_eq!(&init[..4], [2, 128, 1, 224], "ServerInit 640x480");
        }
    }
    // The name was taken by add_client; a wrong protocol still consumes the fd.
    assert!(desc(qmp.execute("closefd", json!({"fdname": "vnc"}))).contains("not found"));
    qmp.pass_socket("c");
    qmp.ok("getfd", json!({"fdname": "x"}));
    assert_eq!(
        desc(qmp.execute("add_client", json!({"protocol": "rdp", "fdname": "x"}))),
        "Invalid parameter 'rdp'"
    );
    assert_eq!(qmp.sock_recv("c", 1), b"", "the refused socket is closed");
}

/// gtk-vnc (virt-manager's and virt-viewer's VNC library) asks for ZRLE and QEMU's
/// extensions; its capture must be the guest's picture too.
#[test]
fn gvnccapture_sees_the_guest_picture() {
    if Command::new("gvnccapture").arg("--help").output().is_err() {
        eprintln!("SKIPPED: gvnccapture not installed (Debian package gvncviewer)");
        return;
    }
    let (q, _qmp, port) = boot(None);
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("cap.png");
    let out = Command::new("timeout")
        .args(["60", "gvnccapture"])
        .arg(format!("127.0.0.1:{}", port - 5900))
        .arg(&png)
        .output()
        .unwrap();
    if !out.status.success() {
        q.vm.fail(&format!(
            "gvnccapture failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let bpp = info.color_type.samples();
    let px: Vec<u32> = buf[..info.buffer_size()]
        .chunks(bpp)
        .map(|c| (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]))
        .collect();
    let wrong = differences(info.width, info.height, &px);
    if !wrong.is_empty() {
        q.vm.fail(&format!("gvnccapture's picture differs: {wrong:?}"));
    }
    q.vm.assert_no_failures();
}
