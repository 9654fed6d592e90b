//! `<graphics>` through oxvirtd with Debian's virsh: the VNC port the VMM chose (from
//! 5900 up) shows in the live XML, so `virsh domdisplay`/`vncdisplay` work and a VNC
//! client connects there; two domains get two ports; a `type='spice'` domain is
//! served as VNC with the live XML saying `vnc` while `dumpxml --inactive` keeps the
//! user's SPICE; the password shows only with `--security-info` and works.
//! `virsh screenshot` streams the guest's picture as PNG (the oxtest guest draws a
//! known one into a bochs-display); `virsh send-key` reaches QMP `send-key`.

mod rpc_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::{domain_xml, test_guests};
use rpc_common::{guest_xml, Daemon, STEP};

fn with_devices(name: &str, devices: &str) -> String {
    guest_xml(name).replace("  </devices>", &format!("{devices}\n  </devices>"))
}

/// The `port='N'` of the live XML's `<graphics>`.
fn live_port(xml: &str) -> u16 {
    let g = &xml[xml.find("<graphics").expect("a <graphics> in the live XML")..];
    let p = &g[g.find("port='").expect("a port in the live <graphics>") + 6..];
    p[..p.find('\'').unwrap()].parse().unwrap()
}

/// RFB 3.8 up to SecurityResult; true when the server accepted.
fn vnc_login(port: u16, password: Option<&str>) -> bool {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut b = [0u8; 12];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"RFB 003.008\n");
    s.write_all(b"RFB 003.008\n").unwrap();
    let mut t = [0u8; 2];
    s.read_exact(&mut t).unwrap();
    s.write_all(&[t[1]]).unwrap();
    if t[1] == 2 {
        let mut c = [0u8; 16];
        s.read_exact(&mut c).unwrap();
        s.write_all(&rfb::auth::response(password.unwrap_or(""), &c))
            .unwrap();
    }
    let mut r = [0u8; 4];
    s.read_exact(&mut r).unwrap();
    r == [0, 0, 0, 0]
}

#[test]
fn vnc_and_spice_domains_show_their_port_and_keep_their_xml() {
    let d = Daemon::start();
    let vnc = with_devices(
        "vnc1",
        "    <graphics type='vnc' port='-1' autoport='yes'/>\n    <video><model type='vga'/></video>",
    );
    let spice = with_devices(
        "spice1",
        "    <graphics type='spice' autoport='yes' passwd='pw12'>\n      <listen type='address'/>\n      <image compression='off'/>\n    </graphics>\n    <video><model type='qxl'/></video>",
    );
    for (name, xml) in [("vnc1", &vnc), ("spice1", &spice)] {
        d.virsh_ok(&["define", d.xml_file(name, xml).to_str().unwrap()]);
        d.virsh_ok(&["start", name]);
    }
    // Live XML: the ports, different, from 5900 up; domdisplay and vncdisplay read them.
    let live1 = d.virsh_ok(&["dumpxml", "vnc1"]);
    let live2 = d.virsh_ok(&["dumpxml", "spice1"]);
    let (p1, p2) = (live_port(&live1), live_port(&live2));
    assert!(p1 >= 5900 && p2 >= 5900 && p1 != p2, "ports {p1} {p2}");
    assert!(
        live1.contains(&format!(
            "<graphics type='vnc' port='{p1}' autoport='yes' listen='127.0.0.1'>"
        )),
        "{live1}"
    );
    assert!(
        live1.contains("<listen type='address' address='127.0.0.1'/>"),
        "{live1}"
    );
    assert_eq!(
        d.virsh_ok(&["domdisplay", "vnc1"]).trim(),
        format!("vnc://127.0.0.1:{}", p1 - 5900)
    );
    assert_eq!(
        d.virsh_ok(&["vncdisplay", "vnc1"]).trim(),
        format!("127.0.0.1:{}", p1 - 5900)
    );
    assert!(vnc_login(p1, None), "no-auth login on vnc1");
    // SPICE: served as VNC, live XML says so, the password is secret but works.
    assert!(
        live2.contains(&format!(
            "<graphics type='vnc' port='{p2}' autoport='yes' listen='127.0.0.1'>"
        )),
        "{live2}"
    );
    assert!(
        !live2.contains("passwd") && !live2.contains("<image"),
        "{live2}"
    );
    let secure = d.virsh_ok(&["dumpxml", "--security-info", "spice1"]);
    assert!(secure.contains("passwd='pw12'"), "{secure}");
    let inactive = d.virsh_ok(&["dumpxml", "--inactive", "spice1"]);
    assert!(
        inactive.contains("<graphics type='spice' autoport='yes'>"),
        "{inactive}"
    );
    assert!(
        inactive.contains("<image compression='off'/>"),
        "{inactive}"
    );
    assert!(inactive.contains("<model type='qxl'"), "{inactive}");
    assert_eq!(
        d.virsh_ok(&["domdisplay", "--include-password", "spice1"])
            .trim(),
        format!("vnc://:pw12@127.0.0.1:{}", p2 - 5900)
    );
    assert!(vnc_login(p2, Some("pw12")), "password accepted");
    assert!(!vnc_login(p2, Some("nope")), "wrong password refused");
    let log = d.domain_log("spice1");
    assert!(
        log.contains("is served as VNC"),
        "no warning in the domain log:\n{log}"
    );
    assert!(log.contains("<image>"), "the warning names <image>:\n{log}");
    for name in ["vnc1", "spice1"] {
        d.virsh_ok(&["destroy", name]);
    }
}

/// The oxtest guest's display_pixel() at 640×480 (tests/guests/oxtest/display.c).
fn pixel(x: u32, y: u32) -> u32 {
    const BARS: [u32; 8] = [
        0x000000, 0xff0000, 0x00ff00, 0x0000ff, 0xffffff, 0xffff00, 0x00ffff, 0xff00ff,
    ];
    if y < 240 {
        BARS[(x / 80) as usize]
    } else {
        ((x & 0xff) << 16) | ((y & 0xff) << 8) | ((x ^ y) & 0xff)
    }
}

/// (width, height, 0xRRGGBB pixels) of a PNG file.
fn read_png(path: &std::path::Path) -> (u32, u32, Vec<u32>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let n = info.color_type.samples();
    let px = buf[..info.buffer_size()]
        .chunks(n)
        .map(|c| (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]))
        .collect();
    (info.width, info.height, px)
}

#[test]
fn virsh_screenshot_and_send_key() {
    let d = Daemon::start();
    let xml = domain_xml(
        "shot1",
        &test_guests().elf,
        "console=ttyS0 oxtest=pci,display",
        64,
        1,
        "restart",
        &serial_xml("pty"),
    )
    .replace(
        "  </devices>",
        "    <graphics type='vnc'/>\n    <video><model type='bochs'/></video>\n  </devices>",
    );
    d.virsh_ok(&["define", d.xml_file("shot1", &xml).to_str().unwrap()]);
    d.virsh_ok(&["start", "shot1"]);
    let png = d.dir.path().join("shot.png");
    let deadline = std::time::Instant::now() + STEP;
    loop {
        let out = d.virsh_ok(&["screenshot", "shot1", png.to_str().unwrap()]);
        assert!(out.contains("with type of image/png"), "{out}");
        let (w, h, px) = read_png(&png);
        let want = (w, h) == (640, 480)
            && (0..h).all(|y| (0..w).all(|x| px[(y * w + x) as usize] == pixel(x, y)));
        if want {
            break;
        }
        if std::time::Instant::now() > deadline {
            d.fail(&format!(
                "virsh screenshot never showed the guest's picture ({w}x{h})"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Ctrl+Alt+Del as Cockpit and virt-manager send it, in two code sets.
    d.virsh_ok(&[
        "send-key",
        "shot1",
        "--codeset",
        "linux",
        "KEY_LEFTCTRL",
        "KEY_LEFTALT",
        "KEY_DELETE",
    ]);
    d.virsh_ok(&[
        "send-key",
        "shot1",
        "--codeset",
        "atset1",
        "--holdtime",
        "50",
        "0x1d",
        "0x38",
        "0xe053",
    ]);
    let r = d.virsh(&["send-key", "shot1", "--codeset", "usb", "0x04"]);
    assert!(
        !r.ok && r.stderr.contains("keycode set 'usb' is not supported"),
        "{}",
        r.stderr
    );
    let r = d.virsh(&[
        "screenshot",
        "shot1",
        "--screen",
        "1",
        png.to_str().unwrap(),
    ]);
    assert!(!r.ok && r.stderr.contains("Screen ID 1"), "{}", r.stderr);
    d.virsh_ok(&["destroy", "shot1"]);
}
