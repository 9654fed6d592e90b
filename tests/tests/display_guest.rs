//! The display adapter with the oxtest guest: the guest finds PCI 1234:1111, checks the
//! DISPI identity and the EDID in BAR2, sets 640×480×32 and draws a known picture into
//! the framebuffer (tests/guests/oxtest/display.c); QMP `screendump` (through
//! qemu.qmp, a real client) must give exactly that picture, as PPM and as PNG, for
//! both personalities (bochs-display and std VGA). The framebuffer is a KVM memory
//! slot with dirty logging, so this also checks that guest writes reach the picture.

mod qmp_common;

use machine_spec::{Device, DeviceKind, Video, VideoModel};
use oxvirt_tests::spec::pci_slot;
use oxvirt_tests::{oxtest_spec, GUEST_TIMEOUT};
use qmp_common::{PyQmp, QmpVm};
use serde_json::json;

const W: u32 = 640;
const H: u32 = 480;

/// The guest's display_pixel().
fn pixel(x: u32, y: u32) -> u32 {
    const BARS: [u32; 8] = [
        0x000000, 0xff0000, 0x00ff00, 0x0000ff, 0xffffff, 0xffff00, 0x00ffff, 0xff00ff,
    ];
    if y < H / 2 {
        BARS[(x / (W / 8)) as usize]
    } else {
        (x & 0xff) << 16 | (y & 0xff) << 8 | ((x ^ y) & 0xff)
    }
}

fn video(model: VideoModel) -> Device {
    Device {
        id: "video0".into(),
        pci: pci_slot(2),
        boot_index: None,
        kind: DeviceKind::Video(Video {
            model,
            vram_bytes: 16 << 20,
            resolution: None,
            requested_model: None,
        }),
    }
}

/// Parses a binary PPM: (width, height, 0xRRGGBB pixels).
fn parse_ppm(b: &[u8]) -> (u32, u32, Vec<u32>) {
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while b[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while !b[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&b[start..i]).to_string());
    }
    assert_eq!(fields[0], "P6");
    assert_eq!(fields[3], "255");
    let (w, h): (u32, u32) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let px = b[i + 1..]
        .chunks_exact(3)
        .map(|c| u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]))
        .collect::<Vec<_>>();
    assert_eq!(px.len(), (w * h) as usize, "PPM pixel count");
    (w, h, px)
}

fn screendump_shows_the_guest_picture(model: VideoModel, class: &str) {
    let spec = oxtest_spec("pci,display", vec![video(model)]);
    let q = QmpVm::start(&spec);
    let vm = &q.vm;
    let check = vm.expect_ok("display", GUEST_TIMEOUT);
    let line = check.details.clone();
    for want in [
        &format!("class={class}") as &str,
        "id=0xb0c5",
        "vram64k=256",
        "edid=1024x768",
    ] {
        if !line.contains(want) {
            vm.fail(&format!("display check lacks {want}: {line}"));
        }
    }
    let mut c = PyQmp::connect(&q.sock);
    let dir = tempfile::tempdir().unwrap();
    let ppm = dir.path().join("screen.ppm");
    c.ok(
        "screendump",
        json!({"filename": ppm.to_str().unwrap(), "format": "ppm"}),
    );
    let (w, h, px) = parse_ppm(&std::fs::read(&ppm).unwrap());
    assert_eq!((w, h), (W, H), "screen size");
    let wrong: Vec<String> = (0..H)
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
        .collect();
    if !wrong.is_empty() {
        vm.fail(&format!(
            "screendump differs from the guest's picture: {wrong:?}"
        ));
    }
    // PNG: signature and IHDR size (pixels checked by the VMM's unit tests).
    let png = dir.path().join("screen.png");
    c.ok(
        "screendump",
        json!({"filename": png.to_str().unwrap(), "format": "png"}),
    );
    let b = std::fs::read(&png).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&b[12..16], b"IHDR");
    assert_eq!(u32::from_be_bytes(b[16..20].try_into().unwrap()), W);
    assert_eq!(u32::from_be_bytes(b[20..24].try_into().unwrap()), H);
    // Errors as QEMU words them.
    let e = c.execute(
        "screendump",
        json!({"filename": ppm.to_str().unwrap(), "head": 1}),
    );
    assert_eq!(e["error"]["desc"], "Head '1' does not exist", "{e}");
    let e = c.execute("screendump", json!({"filename": "/nonexistent/dir/x.ppm"}));
    assert_eq!(e["error"]["class"], "GenericError", "{e}");
    vm.assert_no_failures();
}

#[test]
fn bochs_display_framebuffer_in_screendump() {
    screendump_shows_the_guest_picture(VideoModel::Bochs, "0x380");
}

#[test]
fn std_vga_framebuffer_in_screendump() {
    screendump_shows_the_guest_picture(VideoModel::Vga, "0x300");
}

#[test]
fn screendump_without_a_display_is_refused() {
    let spec = oxtest_spec("pci", vec![]);
    let q = QmpVm::start(&spec);
    let mut c = PyQmp::connect(&q.sock);
    let e = c.execute("screendump", json!({"filename": "/tmp/x.ppm"}));
    assert_eq!(
        e["error"]["desc"], "There is no console to take a screendump from",
        "{e}"
    );
}
