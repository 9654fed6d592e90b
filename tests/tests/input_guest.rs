//! Keys and pointer from the host arrive in the guest's PS/2 keyboard and mouse: the
//! oxtest guest's `input` action (tests/guests/oxtest/input.c) prints every byte its
//! i8042 delivers (set-1 scancodes, as translated for the guest, and 3-byte mouse
//! packets), and each test compares them with what the path must produce:
//!
//! * VNC (our RFB client, `oxvirt_tests::rfb_client`): keysym key events, QEMU's
//!   extended key event, pointer positions turned into mouse moves (and QEMU's
//!   pointer-type-change relative motion), buttons;
//! * QMP `send-key` (pressed in order, released in reverse, as QEMU does) and
//!   `input-send-event` (rel, btn), through qemu.qmp;
//! * `virsh send-key` through oxvirtd in each key code set it takes (linux by code and by
//!   name, xt, atset1, xt_kbd, qnum, rfb), on a domain without a video device.
//!
//! The virtio keyboard and tablet are checked with Linux's own drivers in
//! `linux_guest_display.rs` (tier 3).

mod qmp_common;
mod rpc_common;

use std::time::{Duration, Instant};

use machine_spec::{Device, DeviceKind, Graphics, GraphicsListen, SharePolicy, Video, VideoModel};
use oxvirt_tests::rfb_client::{encoding, RfbClient};
use oxvirt_tests::spec::pci_slot;
use oxvirt_tests::{domain_xml, oxtest_spec, test_guests, GUEST_TIMEOUT};
use qmp_common::{PyQmp, QmpVm};
use rpc_common::{Daemon, STEP};
use serde_json::json;

/// How long one step's bytes may take to reach the guest's console.
const BYTES_WAIT: Duration = Duration::from_secs(60);

/// The bytes the guest reported (`kbd=1e`, `aux=08`, …) in `console`, in order.
fn reported(console: &str) -> Vec<String> {
    console
        .lines()
        .filter_map(|l| l.trim_end().strip_prefix("OXTEST input "))
        .filter(|r| r.starts_with("kbd=") || r.starts_with("aux="))
        .map(str::to_string)
        .collect()
}

/// Follows the guest's reports: each step must add exactly the bytes it expects.
struct Reports<'a> {
    console: Box<dyn Fn() -> String + 'a>,
    /// Fails the test with the guest's console and the VMM's or daemon's log.
    fail: Box<dyn Fn(&str) + 'a>,
    seen: usize,
}

impl Reports<'_> {
    /// Waits for `want.len()` new bytes (`"kbd=1e"`, `"aux=08"`) and compares them.
    fn expect(&mut self, what: &str, want: &[&str]) {
        let deadline = Instant::now() + BYTES_WAIT;
        loop {
            let all = reported(&(self.console)());
            if all.len() >= self.seen + want.len() {
                // Give stray extra bytes a moment to show, so they are caught here.
                std::thread::sleep(Duration::from_millis(300));
                let all = reported(&(self.console)());
                let got = &all[self.seen..];
                if got != want {
                    (self.fail)(&format!("{what}: the guest got {got:?}, want {want:?}"));
                    unreachable!("fail returns only by panicking");
                }
                self.seen = all.len();
                eprintln!("{what}: {want:?}");
                return;
            }
            if Instant::now() > deadline {
                (self.fail)(&format!(
                    "{what}: the guest got {:?} within {BYTES_WAIT:?}, want {want:?}",
                    &all[self.seen..]
                ));
                unreachable!("fail returns only by panicking");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn spec() -> machine_spec::MachineSpec {
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
    // `display` sets 640×480, the size VNC pointer positions are relative to.
    let mut s = oxtest_spec("pci,display,input", vec![video]);
    s.graphics = Some(Graphics {
        listen: GraphicsListen::Address {
            address: "127.0.0.1".into(),
            port: None,
        },
        password: None,
        password_valid_to: None,
        share_policy: SharePolicy::AllowExclusive,
        requested_type: None,
    });
    s
}

#[test]
fn vnc_and_qmp_keys_and_pointer_reach_the_ps2_keyboard_and_mouse() {
    let q = QmpVm::start(&spec());
    q.vm.wait_for("OXTEST input ok ready aux_ack=fa", GUEST_TIMEOUT);
    let mut qmp = PyQmp::connect(&q.sock);
    let info = qmp.ok("query-vnc", json!(null));
    let port: u16 = info["service"].as_str().unwrap().parse().unwrap();
    let mut vnc = RfbClient::connect(port, None, true).unwrap_or_else(|e| q.vm.fail(&e));
    assert_eq!((vnc.width, vnc.height), (640, 480), "ServerInit size");
    let mut r = Reports {
        console: Box::new(|| q.vm.console()),
        fail: Box::new(|m| q.vm.fail(m)),
        seen: 0,
    };

    // VNC KeyEvent: keysyms become the en-us keys' scancodes (set 1 after translation).
    vnc.key(true, 'a' as u32);
    vnc.key(false, 'a' as u32);
    r.expect("VNC keysym a", &["kbd=1e", "kbd=9e"]);
    vnc.key(true, 0xffe1); // Shift_L
    vnc.key(true, 'A' as u32);
    vnc.key(false, 'A' as u32);
    vnc.key(false, 0xffe1);
    r.expect("VNC Shift+A", &["kbd=2a", "kbd=1e", "kbd=9e", "kbd=aa"]);
    vnc.key(true, 0xff0d); // Return
    vnc.key(false, 0xff0d);
    r.expect("VNC Return", &["kbd=1c", "kbd=9c"]);
    // QEMU extended key event: the key number wins over the keysym (E0-prefixed
    // Right Ctrl sent with a keysym that would say 'z').
    vnc.set_encodings(&[encoding::RAW, encoding::QEMU_EXTENDED_KEY_EVENT]);
    vnc.ext_key(true, 'z' as u32, 0x9d);
    vnc.ext_key(false, 'z' as u32, 0x9d);
    r.expect(
        "VNC extended key Right Ctrl",
        &["kbd=e0", "kbd=1d", "kbd=e0", "kbd=9d"],
    );

    // VNC pointer without a tablet: positions become moves from the last one (the
    // first only sets it), buttons their own packets; PS/2 y grows upwards.
    vnc.pointer(0, 320, 240);
    vnc.pointer(0, 384, 240);
    r.expect("VNC move right 64", &["aux=08", "aux=40", "aux=00"]);
    vnc.pointer(1, 384, 240);
    r.expect("VNC left button down", &["aux=09", "aux=00", "aux=00"]);
    vnc.pointer(0, 384, 240);
    r.expect("VNC left button up", &["aux=08", "aux=00", "aux=00"]);
    vnc.pointer(0, 384, 208);
    r.expect("VNC move up 32", &["aux=08", "aux=00", "aux=20"]);
    vnc.pointer(4, 384, 208);
    vnc.pointer(0, 384, 208);
    r.expect(
        "VNC right button click",
        &["aux=0a", "aux=00", "aux=00", "aux=08", "aux=00", "aux=00"],
    );
    // A client that knows QEMU's pointer type change sends motion around 0x7fff.
    vnc.set_encodings(&[
        encoding::RAW,
        encoding::QEMU_EXTENDED_KEY_EVENT,
        encoding::QEMU_POINTER_TYPE_CHANGE,
    ]);
    vnc.pointer(0, 0x7fff - 10, 0x7fff + 5);
    r.expect(
        "VNC relative motion (-10, +5)",
        &["aux=38", "aux=f6", "aux=fb"],
    );

    // QMP send-key: pressed in order, released in reverse (QEMU's order).
    qmp.ok(
        "send-key",
        json!({"keys": [
            {"type": "qcode", "data": "ctrl"},
            {"type": "qcode", "data": "alt"},
            {"type": "qcode", "data": "delete"}
        ]}),
    );
    r.expect(
        "QMP send-key ctrl-alt-delete",
        &[
            "kbd=1d", "kbd=38", "kbd=e0", "kbd=53", "kbd=e0", "kbd=d3", "kbd=b8", "kbd=9d",
        ],
    );
    qmp.ok(
        "send-key",
        json!({"keys": [{"type": "number", "data": 0x30}], "hold-time": 50}),
    );
    r.expect("QMP send-key number 0x30", &["kbd=30", "kbd=b0"]);
    // QMP input-send-event: relative motion and a button go to the PS/2 mouse.
    qmp.ok(
        "input-send-event",
        json!({"events": [{"type": "btn", "data": {"down": true, "button": "middle"}}]}),
    );
    r.expect("QMP middle button down", &["aux=0c", "aux=00", "aux=00"]);
    qmp.ok(
        "input-send-event",
        json!({"events": [{"type": "btn", "data": {"down": false, "button": "middle"}}]}),
    );
    r.expect("QMP middle button up", &["aux=08", "aux=00", "aux=00"]);
    qmp.ok(
        "input-send-event",
        json!({"events": [{"type": "rel", "data": {"axis": "x", "value": 7}}]}),
    );
    r.expect("QMP rel x +7", &["aux=08", "aux=07", "aux=00"]);
    qmp.ok(
        "input-send-event",
        json!({"events": [{"type": "key", "data": {"down": true, "key": {"type": "qcode", "data": "esc"}}}]}),
    );
    r.expect("QMP key event esc down", &["kbd=01"]);
    q.vm.assert_no_failures();
}

#[test]
fn virsh_send_key_reaches_the_guest_in_each_code_set() {
    let d = Daemon::start();
    let name = "keys1";
    // The console in a file the test reads (a pty's output is not logged).
    let console = d.dir.path().join("keys1.console");
    let xml = domain_xml(
        name,
        &test_guests().elf,
        "console=ttyS0 oxtest=input",
        64,
        1,
        "restart",
        &oxvirt_tests::spec::serial_xml(&format!("file:{}", console.display())),
    );
    // No <video>: keys still reach the PS/2 keyboard of a headless machine, as with QEMU.
    let read_console = || std::fs::read_to_string(&console).unwrap_or_default();
    d.virsh_ok(&["define", d.xml_file(name, &xml).to_str().unwrap()]);
    d.virsh_ok(&["start", name]);
    let deadline = Instant::now() + STEP;
    while !read_console().contains("OXTEST input ok ready") {
        if Instant::now() > deadline {
            d.fail(&format!(
                "the guest did not get ready:\n{}\n{}",
                read_console(),
                d.domain_log(name)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut r = Reports {
        console: Box::new(read_console),
        fail: Box::new(|m| d.fail(&format!("{m}\n{}\n{}", read_console(), d.domain_log(name)))),
        seen: 0,
    };
    let send = |args: &[&str]| {
        let mut all = vec!["send-key", name];
        all.extend_from_slice(args);
        d.virsh_ok(&all);
    };
    send(&["--codeset", "linux", "30"]);
    r.expect("linux 30 (KEY_A)", &["kbd=1e", "kbd=9e"]);
    send(&["--codeset", "linux", "KEY_LEFTSHIFT", "KEY_B"]);
    r.expect(
        "linux KEY_LEFTSHIFT KEY_B",
        &["kbd=2a", "kbd=30", "kbd=b0", "kbd=aa"],
    );
    send(&["--codeset", "linux", "KEY_RIGHTALT"]);
    r.expect(
        "linux KEY_RIGHTALT",
        &["kbd=e0", "kbd=38", "kbd=e0", "kbd=b8"],
    );
    send(&["--codeset", "xt", "0x2e"]);
    r.expect("xt 0x2e (c)", &["kbd=2e", "kbd=ae"]);
    send(&["--codeset", "atset1", "--holdtime", "50", "0x1d", "0xe053"]);
    r.expect(
        "atset1 0x1d 0xe053 (Ctrl+Delete)",
        &["kbd=1d", "kbd=e0", "kbd=53", "kbd=e0", "kbd=d3", "kbd=9d"],
    );
    send(&["--codeset", "xt_kbd", "0xc8"]);
    r.expect(
        "xt_kbd 0xc8 (Up)",
        &["kbd=e0", "kbd=48", "kbd=e0", "kbd=c8"],
    );
    send(&["--codeset", "qnum", "0x20"]);
    r.expect("qnum 0x20 (d)", &["kbd=20", "kbd=a0"]);
    send(&["--codeset", "rfb", "0x12"]);
    r.expect("rfb 0x12 (e)", &["kbd=12", "kbd=92"]);
    d.virsh_ok(&["destroy", name]);
}
