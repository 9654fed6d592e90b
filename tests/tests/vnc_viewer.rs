//! A window as a person sees it: virt-viewer's `remote-viewer` under Xvfb connects to
//! the VNC server (`vnc://127.0.0.1:PORT`, the port `query-vnc` and the live XML give)
//! and shows the oxtest guest's picture; a screenshot of the X screen (`xwd`) must
//! contain its colour bars. `virt-viewer --attach` does the same through oxvirtd
//! with no port at all: it asks libvirt for a socket (`virDomainOpenGraphicsFD`, the
//! path virt-manager's local console takes). Skipped loudly without remote-viewer /
//! virt-viewer (virt-viewer), Xvfb (xvfb) or xwd (x11-apps).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use machine_spec::{Device, DeviceKind, Graphics, GraphicsListen, SharePolicy, Video, VideoModel};
use oxvirt_tests::spec::pci_slot;
use oxvirt_tests::{oxtest_spec, GUEST_TIMEOUT};

mod qmp_common;
mod rpc_common;
use qmp_common::{PyQmp, QmpVm};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Pixels (0xRRGGBB) of an `xwd` dump of a 24/32-bit TrueColor screen.
fn xwd_pixels(b: &[u8]) -> Vec<u32> {
    let word = |i: usize| u32::from_be_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
    let header = word(0) as usize;
    let (bits_per_pixel, bytes_per_line, ncolors) =
        (word(11), word(12) as usize, word(19) as usize);
    let (width, height) = (word(4) as usize, word(5) as usize);
    let byte_order_msb = word(7) == 1;
    let n = (bits_per_pixel / 8) as usize;
    assert!(n == 3 || n == 4, "xwd with {bits_per_pixel} bits per pixel");
    let data = &b[header + ncolors * 12..];
    let mut px = Vec::with_capacity(width * height);
    for y in 0..height {
        for x in 0..width {
            let p = &data[y * bytes_per_line + x * n..][..n];
            let v = if byte_order_msb {
                p.iter().fold(0u32, |a, &c| (a << 8) | u32::from(c))
            } else {
                p.iter().rev().fold(0u32, |a, &c| (a << 8) | u32::from(c))
            };
            px.push(v & 0xffffff);
        }
    }
    px
}

/// Whether the viewer and X tools are there (else a loud skip).
fn have_tools(test: &str, viewer: &str) -> bool {
    for tool in [viewer, "Xvfb", "xwd"] {
        if !have(tool) {
            oxvirt_tests::skip(
                test,
                &format!("{tool} not installed (packages virt-viewer, xvfb, x11-apps)"),
            );
            return false;
        }
    }
    true
}

/// A private X server; its display name, different for each call (the tests of this
/// file run in parallel in one process).
fn xvfb() -> (Killed, String) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let display = format!(":{}", 90 + (std::process::id() % 100) * 4 + n % 4);
    let x = Killed(
        Command::new("Xvfb")
            .args([&display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(1));
    (x, display)
}

/// Waits until an `xwd` screenshot of `display` holds the guest's colour bars;
/// `Err` with the pixel counts seen when they never show within 90 s.
fn wait_for_bars(display: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = String::new();
    loop {
        let out = Command::new("xwd")
            .args(["-root", "-silent", "-display", display])
            .output()
            .unwrap();
        if out.status.success() && out.stdout.len() > 100 {
            let px = xwd_pixels(&out.stdout);
            let count = |c: u32| px.iter().filter(|&&p| p == c).count();
            let bars = [0xff0000, 0x00ff00, 0x0000ff, 0xffff00, 0xff00ff].map(count);
            seen = format!("{bars:?}");
            if bars.iter().all(|&n| n > 2000) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(seen);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn remote_viewer_window_shows_the_guest_screen() {
    if !have_tools(
        "remote_viewer_window_shows_the_guest_screen",
        "remote-viewer",
    ) {
        return;
    }
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
    let mut spec = oxtest_spec("pci,display", vec![video]);
    spec.graphics = Some(Graphics {
        listen: GraphicsListen::Address {
            address: "127.0.0.1".into(),
            port: None,
        },
        password: None,
        password_valid_to: None,
        share_policy: SharePolicy::AllowExclusive,
        requested_type: None,
    });
    let q = QmpVm::start(&spec);
    q.vm.expect_ok("display", GUEST_TIMEOUT);
    let port: u16 = PyQmp::connect(&q.sock).ok("query-vnc", serde_json::json!(null))["service"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let (_xvfb, display) = xvfb();
    let _viewer = Killed(
        Command::new("remote-viewer")
            .arg(format!("vnc://127.0.0.1:{port}"))
            .env("DISPLAY", &display)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    if let Err(seen) = wait_for_bars(&display) {
        q.vm.fail(&format!(
            "remote-viewer's window never showed the colour bars (pixel counts {seen})"
        ));
    }
    q.vm.assert_no_failures();
}

/// virt-viewer's `--attach`: no VNC port is used; libvirt hands virt-viewer a socket
/// (OpenGraphicsFD with SKIPAUTH, so the domain's password is not asked).
#[test]
fn virt_viewer_attach_shows_the_guest_screen() {
    let test = "virt_viewer_attach_shows_the_guest_screen";
    if !have_tools(test, "virt-viewer") || !oxvirt_tests::host::require_kvm(test) {
        return;
    }
    let d = rpc_common::Daemon::start();
    let name = "attach1";
    let xml = rpc_common::display_xml(name, "<graphics type='vnc' passwd='s3cret'/>");
    d.virsh_ok(&["define", d.xml_file(name, &xml).to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    let (_xvfb, display) = xvfb();
    let _viewer = Killed(
        Command::new("virt-viewer")
            .args(["--attach", "--connect", &d.uri(), name])
            .env("DISPLAY", &display)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    if let Err(seen) = wait_for_bars(&display) {
        d.fail(&format!(
            "virt-viewer --attach never showed the colour bars (pixel counts {seen})"
        ));
    }
    // The VMM logs each client's peer: the handed-over socket, no TCP client.
    let log = d.domain_log(name);
    assert!(
        log.contains("VNC client connected") && log.contains("family: Unix"),
        "no fd-handed VNC client in the domain log:\n{log}"
    );
    assert!(
        !log.contains("family: Ipv4"),
        "virt-viewer went through the TCP port:\n{log}"
    );
    d.virsh_ok(&["destroy", name]);
}
