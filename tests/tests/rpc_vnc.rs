//! `<graphics>` through oxvirtd with Debian's virsh: the VNC port the VMM chose (from
//! 5900 up) shows in the live XML, so `virsh domdisplay`/`vncdisplay` work and a VNC
//! client connects there; two domains get two ports; a `type='spice'` domain is
//! served as VNC with the live XML saying `vnc` while `dumpxml --inactive` keeps the
//! user's SPICE; the password shows only with `--security-info` and works.

mod rpc_common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rpc_common::{guest_xml, Daemon};

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
