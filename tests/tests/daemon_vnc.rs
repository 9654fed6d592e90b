//! libvirt-dbus's `org.libvirt.Domain.SendKey(u codeset, u holdtime, au keycodes,
//! u flags)` (what Cockpit sends for Ctrl+Alt+Del) on a running domain with VNC
//! graphics, through `busctl`; and `GetXMLDesc` showing the VNC port the VMM chose.

mod daemon_common;

use daemon_common::{guest_xml, BusKind, Daemon, STEP};

#[test]
fn dbus_send_key_and_live_vnc_port() {
    let d = Daemon::start(BusKind::Session);
    let name = "dbus-vnc";
    let xml = guest_xml(name, &d.console(name)).replace(
        "  </devices>",
        "    <graphics type='vnc'/>\n    <video><model type='vga'/></video>\n  </devices>",
    );
    let path = d.define(&xml);
    d.domain(&path, "Create", &["u", "0"]);
    d.wait_console(name, "OXTEST READY", STEP);
    // Ctrl+Alt+Del with Linux key codes, as Cockpit's domainSendKey does.
    d.domain(
        &path,
        "SendKey",
        &["uuauu", "0", "0", "3", "29", "56", "111", "0"],
    );
    let r = d.try_call(
        &path,
        "org.libvirt.Domain",
        "SendKey",
        &["uuauu", "7", "0", "1", "4", "0"],
    );
    assert!(
        !r.ok && r.stderr.contains("keycode set 'usb' is not supported"),
        "{}",
        r.stderr
    );
    let live = d
        .domain(&path, "GetXMLDesc", &["u", "0"])
        .replace("\\'", "'")
        .replace("\\\"", "\"");
    assert!(live.contains("<graphics type='vnc' port='59"), "{live}");
    d.domain(&path, "Destroy", &["u", "0"]);
}
