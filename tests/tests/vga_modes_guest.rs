//! VGA graphics modes end to end: the oxtest guest's `vga13` check programs the std
//! VGA (`<video model='vga'>`) into mode 13h through the legacy ports as a VGA BIOS
//! does, loads a DAC palette and draws a pattern through the 0xA0000 window
//! (tests/guests/oxtest/vga13.c); a VNC client (`oxvirt_tests::rfb_client`, Raw) must
//! see exactly that picture, each mode-13h pixel a 2×2 block of the 640×400 screen,
//! the same as QMP `screendump` gives. The planar 16-colour modes are checked by the
//! renderer's unit tests (vmm/src/display/vga_graphics.rs).

mod qmp_common;

use std::time::{Duration, Instant};

use machine_spec::{Device, DeviceKind, Graphics, GraphicsListen, SharePolicy, Video, VideoModel};
use oxvirt_tests::rfb_client::RfbClient;
use oxvirt_tests::spec::pci_slot;
use oxvirt_tests::{oxtest_spec, GUEST_TIMEOUT};
use qmp_common::{PyQmp, QmpVm};
use serde_json::json;

/// The colour of screen pixel (x, y) of 640×400: mode-13h pixel (x/2, y/2) has colour
/// index (x/2 + 2·y/2) & 0xff, DAC entry i = (i>>2, 3i & 63, 63 - (i>>2)) in 6 bits.
fn colour(x: u32, y: u32) -> u32 {
    let i = (x / 2 + 2 * (y / 2)) & 0xff;
    let six = |v: u32| (v << 2) | (v >> 4);
    six(i >> 2) << 16 | six((3 * i) & 63) << 8 | six(63 - (i >> 2))
}

fn differences(px: &[u32]) -> Vec<String> {
    (0..400u32)
        .flat_map(|y| (0..640u32).map(move |x| (x, y)))
        .filter(|&(x, y)| px[(y * 640 + x) as usize] != colour(x, y))
        .take(5)
        .map(|(x, y)| {
            format!(
                "({x},{y}) {:06x} want {:06x}",
                px[(y * 640 + x) as usize],
                colour(x, y)
            )
        })
        .collect()
}

#[test]
fn mode_13h_drawn_through_the_vga_ports_shows_over_vnc() {
    let mut spec = oxtest_spec(
        "pci,vga13",
        vec![Device {
            id: "video0".into(),
            pci: pci_slot(2),
            boot_index: None,
            kind: DeviceKind::Video(Video {
                model: VideoModel::Vga,
                vram_bytes: 16 << 20,
                resolution: None,
                requested_model: None,
            }),
        }],
    );
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
    q.vm.expect_ok("vga13", GUEST_TIMEOUT);
    let mut qmp = PyQmp::connect(&q.sock);
    let port: u16 = qmp.ok("query-vnc", json!(null))["service"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The screen is re-rendered on the VNC refresh after the last window write: a new
    // client gets a fresh picture; retry until it has the mode's size and pattern.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = RfbClient::connect(port, None, true).unwrap_or_else(|e| q.vm.fail(&e));
        let wrong = if (c.width, c.height) == (640, 400) {
            differences(&c.screen().unwrap_or_else(|e| q.vm.fail(&e)))
        } else {
            vec![format!("size {}x{}, want 640x400", c.width, c.height)]
        };
        if wrong.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            q.vm.fail(&format!(
                "the VNC screen is not the guest's mode-13h picture: {wrong:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // screendump: the same picture.
    let dir = tempfile::tempdir().unwrap();
    let ppm = dir.path().join("screen.ppm");
    qmp.ok(
        "screendump",
        json!({"filename": ppm.to_str().unwrap(), "format": "ppm"}),
    );
    let b = std::fs::read(&ppm).unwrap();
    let header = b"P6\n640 400\n255\n";
    assert_eq!(&b[..header.len()], header, "a 640x400 PPM");
    let px: Vec<u32> = b[header.len()..]
        .chunks_exact(3)
        .map(|c| u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]))
        .collect();
    let wrong = differences(&px);
    if !wrong.is_empty() {
        q.vm.fail(&format!(
            "screendump differs from the guest's picture: {wrong:?}"
        ));
    }
    q.vm.assert_no_failures();
}
