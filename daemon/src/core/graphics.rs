//! The live side of `<graphics>`: the VMM's VNC server chooses the port (from 5900 up,
//! as libvirt does) and reports it over QMP `query-vnc`; the live XML carries that port
//! and the listen address so `virsh domdisplay`/`vncdisplay`, virt-viewer and Cockpit
//! find the console. A `type='spice'` domain is served as VNC, so its live XML says
//! `type='vnc'` (and drops what only SPICE has) while the persistent XML keeps the
//! user's SPICE. Passwords appear only with `VIR_DOMAIN_XML_SECURE`, as in libvirt.

use domain_xml::element::Node;
use domain_xml::Element;
use serde_json::Value;

use super::definition::Definition;
use super::supervise::Vm;
use super::Result;

/// Attributes a live VNC `<graphics>` keeps, in the order libvirt writes them.
const VNC_ATTRS: &[&str] = &[
    "type",
    "port",
    "autoport",
    "websocket",
    "listen",
    "keymap",
    "sharePolicy",
    "passwd",
    "passwdValidTo",
    "connected",
];

/// Writes what the VNC server really does into the live definition of a domain that
/// was just started: type, port, listen address.
/// The runtime directory's copy of the live XML (what a restarted daemon reattaches
/// with) is rewritten too.
pub(super) async fn apply_live(vm: &Vm, def: &mut Definition) -> Result<()> {
    if def.graphics().is_empty() {
        return Ok(());
    }
    let info = vm.qmp("query-vnc", None).await?;
    set_live(&mut def.graphics_mut()[0].element, &info);
    super::fsutil::write_atomic(&vm.rt.live_xml(), def.to_xml(false).as_bytes(), 0o600)?;
    Ok(())
}

/// The live form of one `<graphics>` element given the VMM's `query-vnc` answer.
fn set_live(e: &mut Element, info: &Value) {
    if e.get_attr("type") == Some("spice") {
        set_attr(e, "type", "vnc");
        e.attrs.retain(|(k, _)| VNC_ATTRS.contains(&k.as_str()));
        e.children
            .retain(|c| matches!(c, Node::Element(c) if c.name == "listen"));
    }
    let host = info.get("host").and_then(Value::as_str);
    let port = info.get("service").and_then(Value::as_str);
    let (Some(host), Some(port), Some("ipv4" | "ipv6")) =
        (host, port, info.get("family").and_then(Value::as_str))
    else {
        return; // a unix socket or no listener: nothing to add
    };
    set_attr(e, "port", port);
    if e.get_attr("autoport").is_none() {
        set_attr(e, "autoport", "yes");
    }
    set_attr(e, "listen", host);
    e.attrs
        .sort_by_key(|(k, _)| VNC_ATTRS.iter().position(|a| a == k).unwrap_or(usize::MAX));
    let listen = e.children.iter_mut().find_map(|c| match c {
        Node::Element(l) if l.name == "listen" => Some(l),
        _ => None,
    });
    match listen {
        Some(l) => {
            if l.get_attr("type").unwrap_or("address") == "address" {
                set_attr(l, "type", "address");
                set_attr(l, "address", host);
            }
        }
        None => e.children.push(Node::Element(
            Element::new("listen")
                .attr("type", "address")
                .attr("address", host),
        )),
    }
}

fn set_attr(e: &mut Element, name: &str, value: &str) {
    match e.attrs.iter_mut().find(|(k, _)| k == name) {
        Some((_, v)) => *v = value.to_string(),
        None => e.attrs.push((name.to_string(), value.to_string())),
    }
}

/// `def` as `virDomainGetXMLDesc` may show it: without `passwd` unless the caller
/// asked for `VIR_DOMAIN_XML_SECURE`.
pub(super) fn without_secrets(def: &Definition, secure: bool) -> std::borrow::Cow<'_, Definition> {
    let has_secret = def
        .graphics()
        .iter()
        .any(|g| g.element.get_attr("passwd").is_some());
    if secure || !has_secret {
        return std::borrow::Cow::Borrowed(def);
    }
    let mut d = def.clone();
    for g in d.graphics_mut() {
        g.element.attrs.retain(|(k, _)| k != "passwd");
    }
    std::borrow::Cow::Owned(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(xml: &str, info: Value) -> String {
        let mut e = Element::parse(xml).unwrap();
        set_live(&mut e, &info);
        e.to_xml_string()
    }

    #[test]
    fn autoport_gets_the_port_and_listen() {
        let got = live(
            "<graphics type='vnc' port='-1' autoport='yes'/>",
            json!({"enabled": true, "host": "127.0.0.1", "service": "5901", "family": "ipv4"}),
        );
        assert!(
            got.contains("type='vnc' port='5901' autoport='yes' listen='127.0.0.1'"),
            "{got}"
        );
        assert!(
            got.contains("<listen type='address' address='127.0.0.1'/>"),
            "{got}"
        );
    }

    #[test]
    fn spice_becomes_vnc_without_spice_parts() {
        let got = live(
            "<graphics type='spice' autoport='yes' tlsPort='-1'><listen type='address'/><image compression='off'/><gl enable='no'/></graphics>",
            json!({"enabled": true, "host": "127.0.0.1", "service": "5900", "family": "ipv4"}),
        );
        assert!(
            got.starts_with("<graphics type='vnc' port='5900' autoport='yes' listen='127.0.0.1'>"),
            "{got}"
        );
        assert!(
            !got.contains("tlsPort") && !got.contains("image") && !got.contains("<gl"),
            "{got}"
        );
        assert!(
            got.contains("<listen type='address' address='127.0.0.1'/>"),
            "{got}"
        );
    }

    #[test]
    fn socket_listen_is_left_alone() {
        let xml = "<graphics type='vnc'><listen type='socket' socket='/run/v.sock'/></graphics>";
        let got = live(
            xml,
            json!({"enabled": true, "host": "/run/v.sock", "service": "", "family": "unix"}),
        );
        assert!(!got.contains("port="), "{got}");
    }
}
