//! Keys and pointer typed over VNC reach Linux's input devices (the Linux test guest,
//! one boot, ≈ 1-2 min on the emulated KVM), read raw from `/dev/input/event*` in the
//! guest: with `virtio_input` bound, a VNC key arrives as `EV_KEY KEY_B` on the virtio
//! keyboard and a VNC pointer position as `EV_ABS ABS_X` on the virtio tablet, scaled
//! from the screen's width to the tablet's 0..0x7fff; then the guest unbinds
//! `virtio_input` and the same VNC events reach the PS/2 devices instead: `KEY_B` from
//! atkbd, `EV_REL REL_X` of the pixels moved from psmouse. (QMP's paths into the
//! virtio devices: `linux_guest_display.rs`; every byte of the PS/2 paths:
//! `input_guest.rs`.)

#[allow(dead_code)]
#[path = "linux_guest/support.rs"]
mod support;

use std::time::{Duration, Instant};

use machine_spec::{
    DeviceKind, Graphics, GraphicsListen, Input, InputKind, SharePolicy, Video, VideoModel,
};
use oxvirt_tests::rfb_client::RfbClient;
use oxvirt_tests::Vm;
use support::{base64, check, guest, pci_device, wait_ready};

const WAIT: Duration = Duration::from_secs(240);

/// The guest's part: for each device in turn, say which event device it waits on,
/// read up to three events (one read: evdev returns what is queued) and print them.
const GUEST_SCRIPT: &str = r#"
dev() { for e in /sys/class/input/event*; do read -r nm <$e/device/name; case "$nm" in $1) echo /dev/input/${e##*/}; return;; esac; done; }
readone() { echo "OXVIRT wait what=$1 dev=$2"; b=$(timeout 120 dd if=$2 bs=72 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n'); echo "OXVIRT got what=$1 bytes=$b"; }
readone kbd "$(dev 'QEMU Virtio Keyboard')"
readone tablet "$(dev 'QEMU Virtio Tablet')"
for d in /sys/bus/virtio/drivers/virtio_input/virtio*; do echo ${d##*/} >/sys/bus/virtio/drivers/virtio_input/unbind; done
echo "OXVIRT unbound"
readone atkbd "$(dev 'AT Translated Set 2 keyboard')"
readone mouse "$(dev '*PS/2*')"
"#;

/// `struct input_event` on x86-64 (16 bytes of time, u16 type, u16 code, i32 value)
/// as (type, code, value), from the guest's hex dump.
fn events(hex: &str) -> Vec<(u16, u16, i32)> {
    let b: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect();
    b.chunks_exact(24)
        .map(|e| {
            (
                u16::from_le_bytes([e[16], e[17]]),
                u16::from_le_bytes([e[18], e[19]]),
                i32::from_le_bytes([e[20], e[21], e[22], e[23]]),
            )
        })
        .collect()
}

/// Waits for `OXVIRT wait what=<what>`, then calls `send` every 2 s (evdev drops events
/// for readers not there yet, and the guest opens the device a little after saying so)
/// until the guest printed what it read; returns the events.
fn read_while(vm: &Vm, what: &str, mut send: impl FnMut(u32)) -> Vec<(u16, u16, i32)> {
    let line = vm.wait_for(&format!("OXVIRT wait what={what} "), WAIT);
    check(
        vm,
        line.contains("dev=/dev/input/event"),
        &format!("{what}: event device found ({line})"),
    );
    let needle = format!("OXVIRT got what={what} bytes=");
    let deadline = Instant::now() + WAIT;
    for n in 0.. {
        if let Some(l) = vm.console().lines().find(|l| l.contains(&needle)) {
            let ev = events(l.split("bytes=").nth(1).unwrap_or("").trim());
            eprintln!("{what}: {ev:?}");
            return ev;
        }
        if Instant::now() > deadline {
            vm.fail(&format!("{what}: nothing read within {WAIT:?}"));
        }
        send(n);
        std::thread::sleep(Duration::from_secs(2));
    }
    unreachable!()
}

const EV_KEY: u16 = 1;
const EV_REL: u16 = 2;
const EV_ABS: u16 = 3;
const KEY_B: u16 = 48;

#[test]
fn vnc_keys_and_pointer_reach_linux_virtio_and_ps2_input() {
    let Some(g) = guest("vnc_keys_and_pointer_reach_linux_virtio_and_ps2_input") else {
        return;
    };
    let mut spec = g.spec(
        1,
        128,
        &format!("oxvirt_cmd64={}", base64(GUEST_SCRIPT.as_bytes())),
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
    spec.graphics = Some(Graphics {
        listen: GraphicsListen::Address {
            address: "127.0.0.1".into(),
            port: None,
        },
        password: None,
        password_valid_to: None,
        share_policy: SharePolicy::ForceShared,
        requested_type: None,
    });
    let vm = Vm::start(&spec);
    wait_ready(&vm, g);
    let port = vnc_port(&vm);
    let key_b = |vnc: &mut RfbClient| {
        vnc.key(true, 'b' as u32);
        vnc.key(false, 'b' as u32);
    };
    let has = |ev: &[(u16, u16, i32)], want: (u16, u16, i32)| ev.contains(&want);

    // virtio keyboard: the key's press.
    let mut vnc = RfbClient::connect(port, None, true).unwrap_or_else(|e| vm.fail(&e));
    let ev = read_while(&vm, "kbd", |_| key_b(&mut vnc));
    check(
        &vm,
        has(&ev, (EV_KEY, KEY_B, 1)),
        "virtio keyboard: EV_KEY KEY_B 1",
    );
    // virtio tablet: x scaled from 0..width-1 to 0..0x7fff (a new x each time: Linux
    // drops an absolute event that repeats the last value).
    let mut vnc = RfbClient::connect(port, None, true).unwrap_or_else(|e| vm.fail(&e));
    let w = u32::from(vnc.width);
    let mut sent = Vec::new();
    let ev = read_while(&vm, "tablet", |n| {
        let x = 100 + n;
        sent.push(x * 0x7fff / (w - 1));
        vnc.pointer(0, x as u16, 50);
    });
    let abs_x = ev
        .iter()
        .find(|e| e.0 == EV_ABS && e.1 == 0)
        .map(|e| e.2 as u32);
    check(
        &vm,
        abs_x.is_some_and(|x| sent.contains(&x)),
        &format!("virtio tablet: EV_ABS ABS_X {abs_x:?} is one of {sent:?} (width {w})"),
    );

    // virtio_input unbound: the same VNC events go to the PS/2 keyboard and mouse.
    vm.wait_for("OXVIRT unbound", WAIT);
    let mut vnc = RfbClient::connect(port, None, true).unwrap_or_else(|e| vm.fail(&e));
    let ev = read_while(&vm, "atkbd", |_| key_b(&mut vnc));
    check(&vm, has(&ev, (EV_KEY, KEY_B, 1)), "atkbd: EV_KEY KEY_B 1");
    let mut vnc = RfbClient::connect(port, None, true).unwrap_or_else(|e| vm.fail(&e));
    // Without a tablet positions become moves: ±40 pixels each time.
    let ev = read_while(&vm, "mouse", |n| {
        vnc.pointer(0, if n % 2 == 0 { 140 } else { 100 }, 50);
    });
    check(
        &vm,
        ev.iter()
            .any(|&(t, c, v)| t == EV_REL && c == 0 && (v == 40 || v == -40)),
        &format!("psmouse: EV_REL REL_X ±40 in {ev:?}"),
    );
}

/// The VNC port the VMM chose (its log names it).
fn vnc_port(vm: &Vm) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = vm.log();
        if let Some(p) = log
            .lines()
            .filter(|l| l.contains("VNC"))
            .find_map(|l| l.split("127.0.0.1:").nth(1))
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
        {
            return p;
        }
        if Instant::now() > deadline {
            vm.fail("no VNC listening line in the VMM's log");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
