//! `<graphics>` → the VMM's VNC server ([`ms::Graphics`]).
//!
//! `type='vnc'` is served as asked; `type='spice'` (what virt-install writes by default
//! on real libvirt) is served by the same VNC server with the same listen address, port
//! rules and password, and the SPICE-only parts are named in the spec's warnings so the VMM
//! can warn in the domain log. Other types (`sdl`, `rdp`, `desktop`, `egl-headless`,
//! `dbus`) and more than one `<graphics>` are refused.

use machine_spec as ms;

use crate::element::Element;
use crate::error::{Error, Result};
use crate::model::Devices;

fn unsupported<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::unsupported(msg))
}

/// Attributes both types share and the server honours.
const COMMON_ATTRS: &[&str] = &[
    "type",
    "port",
    "autoport",
    "listen",
    "passwd",
    "passwdValidTo",
    "connected",
    "keymap",
];
/// VNC-only attributes we honour.
const VNC_ATTRS: &[&str] = &["sharePolicy"];
/// SPICE attributes that mean nothing to a VNC server.
const SPICE_IGNORED_ATTRS: &[&str] = &["tlsPort", "defaultMode"];

/// The spec's graphics from the domain's `<graphics>` elements, and the warning for
/// the domain log when SPICE is served as VNC.
pub(crate) fn graphics(d: &Devices) -> Result<(Option<ms::Graphics>, Vec<String>)> {
    let Some(g) = d.graphics.first() else {
        return Ok((None, Vec::new()));
    };
    if d.graphics.len() > 1 {
        return unsupported("only one <graphics> device is supported");
    }
    let e = &g.element;
    let kind = e.get_attr("type").unwrap_or("");
    let spice = match kind {
        "vnc" => false,
        "spice" => true,
        "" => return Err(Error::xml("missing graphics device type")),
        other => {
            return unsupported(format!(
                "<graphics type='{other}'> is not supported (only 'vnc', and 'spice' served as VNC)"
            ))
        }
    };
    let mut ignored = Vec::new();
    for (name, _) in &e.attrs {
        let n = name.as_str();
        if COMMON_ATTRS.contains(&n) || (!spice && VNC_ATTRS.contains(&n)) {
            continue;
        }
        if spice && SPICE_IGNORED_ATTRS.contains(&n) {
            ignored.push(format!("{n}="));
            continue;
        }
        return unsupported(format!(
            "<graphics type='{kind}'> attribute '{n}' is not supported"
        ));
    }
    if let Some(k) = e.get_attr("keymap") {
        if k != "en-us" {
            return unsupported(format!(
                "<graphics keymap='{k}'> is not supported: the VNC server maps keysyms as 'en-us' \
                 (clients that send key codes, such as virt-viewer, virt-manager and noVNC, work with any layout)"
            ));
        }
    }
    if let Some(c) = e.get_attr("connected") {
        if !matches!(c, "keep" | "disconnect" | "fail") {
            return Err(Error::xml(format!(
                "unknown graphics connected value '{c}'"
            )));
        }
    }
    let mut listen_child = None;
    for c in e.child_elements() {
        match c.name.as_str() {
            "listen" if listen_child.is_none() => listen_child = Some(c),
            "listen" => {
                return unsupported("<graphics> with more than one <listen> is not supported")
            }
            other if spice => ignored.push(format!("<{other}>")),
            other => {
                return unsupported(format!(
                    "<graphics type='vnc'> element <{other}> is not supported"
                ))
            }
        }
    }
    let share_policy = match e.get_attr("sharePolicy") {
        None | Some("allow-exclusive") => ms::SharePolicy::AllowExclusive,
        Some("force-shared") => ms::SharePolicy::ForceShared,
        Some("ignore") => ms::SharePolicy::Ignore,
        Some(o) => {
            return Err(Error::xml(format!(
                "unknown vnc display sharing policy '{o}'"
            )))
        }
    };
    let graphics = ms::Graphics {
        listen: listen(e, listen_child)?,
        password: e.get_attr("passwd").map(str::to_string),
        password_valid_to: e.get_attr("passwdValidTo").map(valid_to).transpose()?,
        share_policy,
        requested_type: spice.then(|| kind.to_string()),
    };
    let mut warnings = Vec::new();
    if spice {
        let mut w = "<graphics type='spice'> is served as VNC (oxvirt has no SPICE server; \
                     the live XML shows type='vnc')"
            .to_string();
        if !ignored.is_empty() {
            w.push_str(&format!("; no effect: {}", ignored.join(", ")));
        }
        warnings.push(w);
    }
    Ok((Some(graphics), warnings))
}

/// The listen address or socket, with libvirt's rules: `<listen>` wins over the
/// `listen` attribute and they must agree; no address means `127.0.0.1`.
fn listen(e: &Element, child: Option<&Element>) -> Result<ms::GraphicsListen> {
    let attr = e.get_attr("listen");
    let address = match child {
        None => attr.map(str::to_string),
        Some(l) => match l.get_attr("type").unwrap_or("address") {
            "address" => {
                let a = l.get_attr("address");
                if let (Some(a), Some(b)) = (a, attr) {
                    if a != b {
                        return Err(Error::xml(format!(
                            "graphics 'listen' attribute '{b}' must match 'address' attribute of first listen element (found '{a}')"
                        )));
                    }
                }
                a.or(attr).map(str::to_string)
            }
            "socket" => {
                return match l.get_attr("socket") {
                    Some(p) if p.starts_with('/') => Ok(ms::GraphicsListen::Socket { path: p.to_string() }),
                    Some(p) => Err(Error::xml(format!("graphics listen socket '{p}' must be an absolute path"))),
                    None => unsupported(
                        "<listen type='socket'> needs a socket='PATH' attribute (oxvirt does not choose one)",
                    ),
                };
            }
            "none" => return Ok(ms::GraphicsListen::None),
            other => {
                return unsupported(format!(
                    "<graphics><listen type='{other}'> is not supported (only 'address', 'socket' and 'none')"
                ))
            }
        },
    };
    let autoport = match e.get_attr("autoport") {
        None => None,
        Some("yes") => Some(true),
        Some("no") => Some(false),
        Some(o) => return Err(Error::xml(format!("invalid graphics autoport value '{o}'"))),
    };
    let port = match e.get_attr("port") {
        None => None,
        Some(p) => {
            let n: i32 = p
                .parse()
                .map_err(|_| Error::xml(format!("cannot parse graphics port '{p}'")))?;
            match n {
                -1 => None,
                1..=65535 => Some(n as u16),
                _ => return Err(Error::xml(format!("graphics port '{p}' is out of range"))),
            }
        }
    };
    // libvirt: autoport='yes' (the default when no port is given) picks the port.
    let port = if autoport == Some(true) { None } else { port };
    Ok(ms::GraphicsListen::Address {
        address: address.unwrap_or_else(|| "127.0.0.1".to_string()),
        port,
    })
}

/// `passwdValidTo='2010-04-09T15:51:00'` (UTC) → seconds since the epoch.
fn valid_to(s: &str) -> Result<u64> {
    let bad = || {
        Error::xml(format!(
            "cannot parse password validity time '{s}', expect YYYY-MM-DDTHH:MM:SS"
        ))
    };
    let b = s.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64> { s[r].parse::<i64>().map_err(|_| bad()) };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + sec).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GenericDevice;

    fn devs(xml: &[&str]) -> Devices {
        let mut d = Devices::default();
        for x in xml {
            d.graphics.push(GenericDevice {
                element: Element::parse(x).unwrap(),
                alias: None,
                address: None,
            });
        }
        d
    }

    fn one(xml: &str) -> Result<Option<ms::Graphics>> {
        graphics(&devs(&[xml])).map(|(g, _)| g)
    }

    #[test]
    fn vnc_defaults_to_loopback_and_autoport() {
        let g = one("<graphics type='vnc'/>").unwrap().unwrap();
        assert_eq!(
            g.listen,
            ms::GraphicsListen::Address {
                address: "127.0.0.1".into(),
                port: None
            }
        );
        assert_eq!(g.password, None);
        assert_eq!(g.requested_type, None);
        assert!(graphics(&devs(&["<graphics type='vnc'/>"]))
            .unwrap()
            .1
            .is_empty());
        assert_eq!(graphics(&devs(&[])).unwrap(), (None, Vec::new()));
    }

    #[test]
    fn vnc_with_everything() {
        let g = one(
            "<graphics type='vnc' port='5907' autoport='no' listen='0.0.0.0' passwd='secret' \
             passwdValidTo='2010-04-09T15:51:00' sharePolicy='force-shared' keymap='en-us'>\
             <listen type='address' address='0.0.0.0'/></graphics>",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            g.listen,
            ms::GraphicsListen::Address {
                address: "0.0.0.0".into(),
                port: Some(5907)
            }
        );
        assert_eq!(g.password.as_deref(), Some("secret"));
        assert_eq!(g.password_valid_to, Some(1_270_828_260)); // date -u -d 2010-04-09T15:51:00 +%s
        assert_eq!(g.share_policy, ms::SharePolicy::ForceShared);
    }

    #[test]
    fn autoport_yes_overrides_a_port_and_minus_one_is_auto() {
        for xml in [
            "<graphics type='vnc' port='5901' autoport='yes'/>",
            "<graphics type='vnc' port='-1'/>",
        ] {
            let g = one(xml).unwrap().unwrap();
            assert_eq!(
                g.listen,
                ms::GraphicsListen::Address {
                    address: "127.0.0.1".into(),
                    port: None
                }
            );
        }
    }

    #[test]
    fn socket_and_none_listens() {
        let g =
            one("<graphics type='vnc'><listen type='socket' socket='/run/x/vnc.sock'/></graphics>")
                .unwrap()
                .unwrap();
        assert_eq!(
            g.listen,
            ms::GraphicsListen::Socket {
                path: "/run/x/vnc.sock".into()
            }
        );
        let g = one("<graphics type='vnc'><listen type='none'/></graphics>")
            .unwrap()
            .unwrap();
        assert_eq!(g.listen, ms::GraphicsListen::None);
        let e = one("<graphics type='vnc'><listen type='socket'/></graphics>").unwrap_err();
        assert!(e.to_string().contains("socket='PATH'"), "{e}");
        let e = one("<graphics type='vnc'><listen type='network' network='default'/></graphics>")
            .unwrap_err();
        assert!(e.to_string().contains("listen type='network'"), "{e}");
    }

    #[test]
    fn spice_is_served_as_vnc_and_lists_what_has_no_effect() {
        // What virt-install writes on real libvirt, plus the usual extras.
        let (g, warnings) = graphics(&devs(&[
            "<graphics type='spice' autoport='yes' tlsPort='-1' passwd='pw'>\
             <listen type='address'/><image compression='off'/><gl enable='no'/>\
             <channel name='main' mode='secure'/></graphics>",
        ]))
        .unwrap();
        let g = g.unwrap();
        assert_eq!(g.requested_type.as_deref(), Some("spice"));
        assert_eq!(
            g.listen,
            ms::GraphicsListen::Address {
                address: "127.0.0.1".into(),
                port: None
            }
        );
        assert_eq!(g.password.as_deref(), Some("pw"));
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].ends_with("no effect: tlsPort=, <image>, <gl>, <channel>"),
            "{warnings:?}"
        );
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let cases = [
            ("<graphics type='sdl'/>", "type='sdl'"),
            ("<graphics type='vnc' websocket='5700'/>", "'websocket'"),
            ("<graphics type='vnc' keymap='de'/>", "keymap='de'"),
            ("<graphics type='vnc' port='70000'/>", "out of range"),
            ("<graphics type='vnc' port='x'/>", "cannot parse graphics port"),
            ("<graphics type='vnc' passwdValidTo='tomorrow'/>", "password validity"),
            ("<graphics type='vnc' sharePolicy='x'/>", "sharing policy"),
            ("<graphics type='vnc' listen='1.2.3.4'><listen type='address' address='127.0.0.1'/></graphics>", "must match"),
            ("<graphics type='vnc'><gl enable='yes'/></graphics>", "<gl>"),
        ];
        for (xml, want) in cases {
            let e = one(xml).unwrap_err().to_string();
            assert!(e.contains(want), "{xml}: {e}");
        }
        let e = graphics(&devs(&[
            "<graphics type='vnc'/>",
            "<graphics type='spice'/>",
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("only one"), "{e}");
    }
}
