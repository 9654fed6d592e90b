//! Linux's own drivers on the display and input devices (the Linux test guest, one
//! boot, ≈ 30-60 s on the emulated KVM): `bochs-drm` binds the bochs-display adapter
//! and gives `/dev/fb0`; the guest writes 1 MiB of white into it and QMP `screendump`
//! (qemu.qmp) must show those scanlines white and the rest black (the guest sets the
//! mode through sysfs first: without fbcon nothing else does); `virtio_input` binds
//! a virtio keyboard and tablet, the i8042 gives atkbd and psmouse their devices; and a
//! key sent by QMP `send-key` arrives as a Linux input event on the virtio keyboard's
//! `/dev/input/event*` (read raw in the guest), and an absolute position sent by QMP
//! `input-send-event` arrives as `EV_ABS ABS_X` on the virtio tablet's.
//!
//! A second boot does the same with virtio-vga: Linux's `virtio_gpu` DRM driver
//! binds it and its fbdev emulation's writes (TRANSFER_TO_HOST_2D + RESOURCE_FLUSH
//! of the scanout resource) show in `screendump` and over VNC in gtk-vnc's
//! `gvnccapture`, which must see the same picture.

#[path = "display_common/gvnc.rs"]
mod gvnc;
mod qmp_common;
#[allow(dead_code)]
#[path = "linux_guest/support.rs"]
mod support;

use std::time::{Duration, Instant};

use machine_spec::{
    DeviceKind, Graphics, GraphicsListen, Input, InputKind, Resolution, SharePolicy, Video,
    VideoModel,
};
use oxvirt_tests::Vm;
use qmp_common::PyQmp;
use serde_json::json;
use support::{base64, check, guest, pci_device, wait_ready};

const WAIT: Duration = Duration::from_secs(240);
/// Bytes of white the guest writes at the start of /dev/fb0.
const WHITE_BYTES: u32 = 1 << 20;

/// The guest's display part: report the display driver and the framebuffer, set its
/// mode (without fbcon nothing else does: writing a mode to sysfs calls fb_set_par)
/// and paint 1 MiB white. Short: the whole script travels base64 on the kernel
/// command line (at most 2048 bytes).
const DISPLAY_SCRIPT: &str = r#"
for d in /sys/bus/*/drivers/bochs-drm/0* /sys/bus/*/drivers/virtio_gpu/v*; do echo "OXVIRT drv dev=$d"; done
cd /sys/class/graphics/fb0
read -r nm <name; read -r bpp <bits_per_pixel; read -r st <stride; read -r m <modes
echo "OXVIRT fb name=$nm bpp=$bpp stride=$st"
echo "$m" >mode
dd if=/dev/zero bs=4096 count=256 2>/dev/null | tr '\000' '\377' >/dev/fb0
echo "OXVIRT fb written=1048576"
"#;

/// The guest's input devices and their drivers (reported before the painting, which
/// the test waits for).
const INPUT_DEVICES: &str = r#"
for n in /sys/class/input/input*; do read -r nm <$n/name; echo "OXVIRT input name=${nm// /_}"; done
for d in /sys/bus/virtio/drivers/virtio_input/virtio*; do echo "OXVIRT virtiodrv driver=virtio_input dev=${d##*/}"; done
"#;

/// The guest's input part: read one event from the virtio keyboard and one from the
/// tablet.
const INPUT_SCRIPT: &str = r#"
kb=
for e in /sys/class/input/event*; do read -r nm <$e/device/name; [ "$nm" = "QEMU Virtio Keyboard" ] && kb=/dev/input/${e##*/}; done
echo "OXVIRT keywait dev=$kb"
b=$(timeout 120 dd if=$kb bs=24 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
echo "OXVIRT key bytes=$b"
tb=
for e in /sys/class/input/event*; do read -r nm <$e/device/name; [ "$nm" = "QEMU Virtio Tablet" ] && tb=/dev/input/${e##*/}; done
echo "OXVIRT tabwait dev=$tb"
b=$(timeout 120 dd if=$tb bs=24 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
echo "OXVIRT tab bytes=$b"
"#;

/// Calls `send` every 2 s until the console has a line containing `needle`; returns it.
fn repeat_until(vm: &Vm, needle: &str, mut send: impl FnMut()) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        // Looked for first: once the guest has its event it goes on (to power off).
        if let Some(l) = vm.console().lines().find(|l| l.contains(needle)) {
            return l.to_string();
        }
        send();
        if Instant::now() > deadline {
            vm.fail(&format!("no `{needle}` within {WAIT:?}"));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn parse_ppm(b: &[u8]) -> (u32, u32, Vec<u32>) {
    let text = String::from_utf8_lossy(&b[..b.len().min(32)]).to_string();
    let mut it = text.split_ascii_whitespace();
    assert_eq!(it.next(), Some("P6"));
    let w: u32 = it.next().unwrap().parse().unwrap();
    let h: u32 = it.next().unwrap().parse().unwrap();
    let header = format!("P6\n{w} {h}\n255\n").len();
    let px = b[header..]
        .chunks_exact(3)
        .map(|c| u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]))
        .collect();
    (w, h, px)
}

/// The `OXVIRT <what> ...` lines the guest printed, as `key=value` maps.
fn lines(vm: &Vm, what: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let prefix = format!("OXVIRT {what} ");
    vm.console()
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix(&prefix))
        .map(|rest| {
            rest.split(' ')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn linux_bochs_drm_fb0_and_virtio_input_keys() {
    let Some(g) = guest("linux_bochs_drm_fb0_and_virtio_input_keys") else {
        return;
    };
    let mut spec = g.spec(
        1,
        128,
        &format!(
            "oxvirt_cmd64={}",
            base64(format!("{INPUT_DEVICES}{DISPLAY_SCRIPT}{INPUT_SCRIPT}").as_bytes())
        ),
    );
    let video = DeviceKind::Video(Video {
        model: VideoModel::Bochs,
        vram_bytes: 16 << 20,
        resolution: None,
        requested_model: None,
    });
    let input = |kind| {
        DeviceKind::Input(Input {
            kind,
            requested_bus: "virtio".into(),
        })
    };
    spec.devices.push(pci_device("video0", 2, video));
    spec.devices
        .push(pci_device("input0", 3, input(InputKind::Keyboard)));
    spec.devices
        .push(pci_device("input1", 4, input(InputKind::Tablet)));
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let vm = Vm::start_with(&spec, &["--qmp", sock.to_str().unwrap()]);
    qmp_common::wait_socket(&sock, Duration::from_secs(60));
    let mut c = PyQmp::connect(&sock);
    wait_ready(&vm, g);
    vm.wait_for("OXVIRT fb written", WAIT);
    let inputs = lines(&vm, "input");
    let names: Vec<&str> = inputs
        .iter()
        .filter_map(|l| l.get("name"))
        .map(String::as_str)
        .collect();
    for want in [
        "QEMU_Virtio_Keyboard",
        "QEMU_Virtio_Tablet",
        "AT_Translated_Set_2_keyboard",
    ] {
        check(
            &vm,
            names.contains(&want),
            &format!("input device {want} in {names:?}"),
        );
    }
    check(
        &vm,
        bound(&vm, "drv", "bochs-drm") == 1,
        "bochs-drm bound the display adapter",
    );
    check(
        &vm,
        bound(&vm, "virtiodrv", "virtio") == 2,
        "virtio_input bound both virtio input devices",
    );
    painted_screen(&vm, &mut c, dir.path(), false);

    // A key through QMP send-key: 'a' goes to the virtio keyboard (its driver is up,
    // so it takes precedence over PS/2) and arrives as EV_KEY KEY_A value 1.
    let line = vm.wait_for("OXVIRT keywait", WAIT);
    check(
        &vm,
        line.contains("/dev/input/event"),
        "virtio keyboard event device found",
    );
    // The guest opens the device some time after saying so (a fork costs seconds on a
    // loaded emulated KVM) and evdev drops events for readers not there yet: send the
    // key until the guest has read one.
    let key = repeat_until(&vm, "OXVIRT key bytes=", || {
        c.ok(
            "send-key",
            json!({"keys": [{"type": "qcode", "data": "a"}]}),
        );
    });
    let bytes = key.split("bytes=").nth(1).unwrap_or("").trim().to_string();
    // struct input_event on x86-64: 16 bytes of time, type, code, value. send-key is
    // a press then a release; a reader that opened the device between the two (a
    // repeat raced the guest's open: CI saw it) reads the release first.
    check(
        &vm,
        bytes.len() == 48
            && (bytes.ends_with("01001e0001000000") || bytes.ends_with("01001e0000000000")),
        &format!(
            "first event is EV_KEY KEY_A (down, or up when the open raced the press): {bytes}"
        ),
    );
    // An absolute position through QMP input-send-event goes to the tablet.
    vm.wait_for("OXVIRT tabwait", WAIT);
    // Each position differs: Linux drops an absolute event that repeats the last value.
    let mut n = 0;
    let tab = repeat_until(&vm, "OXVIRT tab bytes=", || {
        n += 1;
        c.ok(
            "input-send-event",
            json!({"events": [
                {"type": "abs", "data": {"axis": "x", "value": 0x4000 + n}},
                {"type": "abs", "data": {"axis": "y", "value": 0x2000 + n}}
            ]}),
        );
    });
    let bytes = tab.split("bytes=").nth(1).unwrap_or("").trim().to_string();
    check(
        &vm,
        bytes.len() == 48
            && &bytes[32..40] == "03000000"
            && u32::from_str_radix(&bytes[40..48], 16)
                .map(u32::swap_bytes)
                .is_ok_and(|x| (0x4001..0x4100).contains(&x)),
        &format!("first tablet event is EV_ABS ABS_X 0x40nn: {bytes}"),
    );
    vm.wait_for("OXVIRT-EXIT poweroff", WAIT);
}

/// virtio-vga with Linux's virtio_gpu driver: the fbdev emulation's writes travel as
/// TRANSFER_TO_HOST_2D + RESOURCE_FLUSH and show, every row, in screendump and over VNC.
#[test]
fn linux_virtio_gpu_fb0_in_screendump_and_vnc() {
    let Some(g) = guest("linux_virtio_gpu_fb0_in_screendump_and_vnc") else {
        return;
    };
    let mut spec = g.spec(
        1,
        128,
        &format!(
            "oxvirt_cmd64={}",
            base64(format!("{DISPLAY_SCRIPT}sleep 120\n").as_bytes())
        ),
    );
    let video = DeviceKind::Video(Video {
        model: VideoModel::VirtioVga,
        vram_bytes: 16 << 20,
        resolution: Some(Resolution {
            width: 800,
            height: 600,
        }),
        requested_model: None,
    });
    spec.devices.push(pci_device("video0", 2, video));
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
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let vm = Vm::start_with(&spec, &["--qmp", sock.to_str().unwrap()]);
    qmp_common::wait_socket(&sock, Duration::from_secs(60));
    let mut c = PyQmp::connect(&sock);
    wait_ready(&vm, g);
    vm.wait_for("OXVIRT fb written", WAIT);
    check(
        &vm,
        bound(&vm, "drv", "virtio_gpu") == 1,
        "virtio_gpu bound the virtio-vga function",
    );
    let name = lines(&vm, "fb")
        .first()
        .and_then(|l| l.get("name").cloned())
        .unwrap_or_default();
    check(
        &vm,
        name.contains("virtio"),
        &format!("fb0 is virtio_gpu's: {name}"),
    );
    let (w, h, px) = painted_screen(&vm, &mut c, dir.path(), true);
    check(
        &vm,
        (w, h) == (800, 600),
        &format!("the scanout has the <resolution> size: {w}x{h}"),
    );
    if !gvnc::available() {
        eprintln!("SKIPPED (VNC part): gvnccapture not installed (Debian package gvncviewer)");
        return;
    }
    let info = c.ok("query-vnc", json!(null));
    let port: u16 = info["service"].as_str().unwrap().parse().unwrap();
    let (vw, vh, vpx) = gvnc::capture(port).unwrap_or_else(|e| vm.fail(&e));
    check(&vm, (vw, vh) == (w, h), &format!("VNC size {vw}x{vh}"));
    let differ = vpx.iter().zip(&px).filter(|(a, b)| a != b).count();
    check(
        &vm,
        differ == 0,
        &format!("gvnccapture shows the screendump's picture ({differ} pixels differ)"),
    );
}

/// How many `OXVIRT <what>` lines name a bound device whose path has `driver` (an
/// unmatched glob, with its `*`, means none).
fn bound(vm: &Vm, what: &str, driver: &str) -> usize {
    lines(vm, what)
        .iter()
        .filter(|l| {
            l.get("dev")
                .is_some_and(|d| d.contains(driver) && !d.contains('*'))
        })
        .count()
}

/// Checks the guest's painting in QMP `screendump`: rows [0, white_rows) white, the
/// next ones black (the driver cleared the framebuffer when it set its mode). With
/// `exact` every written row must be white, else at least half (see below). Returns
/// the picture.
fn painted_screen(
    vm: &Vm,
    c: &mut PyQmp,
    dir: &std::path::Path,
    exact: bool,
) -> (u32, u32, Vec<u32>) {
    let fb = lines(vm, "fb")
        .into_iter()
        .next()
        .unwrap_or_else(|| vm.fail("no fb line"));
    let field = |k: &str| fb.get(k).cloned().unwrap_or_default();
    check(vm, field("bpp") == "32", "32-bit framebuffer");
    let stride: u32 = field("stride").parse().unwrap_or(0);
    check(vm, stride > 0, "framebuffer stride");
    let white_rows = WHITE_BYTES / stride;
    eprintln!("framebuffer: {stride}-byte stride, {white_rows} rows written white");

    // Deferred I/O flushes within ~a second.
    let file = dir.join("fb.ppm");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last: String;
    loop {
        c.ok(
            "screendump",
            json!({"filename": file.to_str().unwrap(), "format": "ppm"}),
        );
        let (w, h, px) = parse_ppm(&std::fs::read(&file).unwrap());
        let at = |x: u32, y: u32| px[(y.min(h - 1) * w + x.min(w - 1)) as usize];
        // Every pixel is exactly white or black; the rows below the written range (and
        // the partly written row after it) are black; at least half of the written rows are white. (On the emulated KVM of the
        // CI machines a few rows written through bochs-drm's fbdev emulation never reach
        // the framebuffer BAR, with or without the dirty log: the VMM reads the BAR
        // itself for screendump, so the rows are missing in guest memory.)
        let white = (0..white_rows)
            .filter(|&y| (0..w).all(|x| at(x, y) == 0xffffff))
            .count() as u32;
        let clean = h > white_rows + 8
            && px.iter().all(|&p| p == 0 || p == 0xffffff)
            && (WHITE_BYTES.div_ceil(stride)..h).all(|y| (0..w).step_by(16).all(|x| at(x, y) == 0));
        let ok = clean
            && if exact {
                white == white_rows
            } else {
                white * 2 >= white_rows
            };
        last = format!("{white} of {white_rows} rows white, clean={clean}");
        if ok {
            eprintln!("screendump: {last}");
            return (w, h, px);
        }
        if Instant::now() > deadline {
            let _ = std::fs::copy(&file, "/tmp/linux_guest_display-last.ppm");
            let bad = (0..white_rows)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .find(|&(x, y)| at(x, y) != 0xffffff);
            vm.fail(&format!(
                "screendump ({w}x{h}) does not show {white_rows} white rows over black \
                 ({last}): first non-white pixel in them {bad:?} = {:06x}, ({}, {}) = {:06x} \
                 (picture kept in /tmp/linux_guest_display-last.ppm)",
                bad.map_or(0, |(x, y)| at(x, y)),
                w / 2,
                white_rows + 4,
                at(w / 2, white_rows + 4)
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
