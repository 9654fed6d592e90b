//! QMP's VNC surface as QEMU 7.2 has it (`qapi/ui.json`): `query-vnc`,
//! `query-vnc-servers`, `set_password`, `expire_password`, `add_client` (with an fd
//! the client passed: `getfd`), and the `VNC_*` events.

use std::time::{Duration, SystemTime};

use std::os::fd::{AsRawFd, OwnedFd};

use ::qmp::{ClientFds, QmpError};
use rfb::server::Endpoint;
use rfb::{ClientEvent, ClientInfo, Security};
use serde_json::{json, Map, Value};

use super::Vnc;

/// The VNC commands, in the schema's order.
pub const COMMANDS: &[&str] = &[
    "query-vnc",
    "query-vnc-servers",
    "set_password",
    "expire_password",
];

/// Runs one of [`COMMANDS`] (arguments already checked against the schema).
pub fn run(command: &str, vnc: Option<&Vnc>, args: &Map<String, Value>) -> Result<Value, QmpError> {
    match command {
        "query-vnc" => Ok(query_vnc(vnc)),
        "query-vnc-servers" => Ok(query_vnc_servers(vnc)),
        "set_password" => set_password(vnc, args),
        "expire_password" => expire_password(vnc, args),
        other => Err(QmpError::command_not_found(other)),
    }
}

fn auth_name(s: Security) -> &'static str {
    match s {
        Security::None => "none",
        Security::VncAuth => "vnc",
    }
}

fn basic(e: &Endpoint) -> Value {
    json!({"host": e.host, "service": e.service, "family": e.family.as_str(), "websocket": false})
}

/// The server a client came in on; fd-handed clients report an empty unix endpoint.
fn server_of(c: &ClientInfo) -> Endpoint {
    c.server.clone().unwrap_or(Endpoint {
        host: String::new(),
        service: String::new(),
        family: rfb::Family::Unix,
    })
}

/// The event name and data for a client event (`VNC_CONNECTED` carries
/// `VncBasicInfo`s, the other two a `VncServerInfo` with `auth`).
pub fn event(e: &ClientEvent) -> (&'static str, Value) {
    match e {
        ClientEvent::Connected(c) => (
            "VNC_CONNECTED",
            json!({"server": basic(&server_of(c)), "client": basic(&c.peer)}),
        ),
        ClientEvent::Initialized(c) | ClientEvent::Disconnected(c) => {
            let mut server = basic(&server_of(c));
            server["auth"] = json!(auth_name(c.security));
            let name = if matches!(e, ClientEvent::Initialized(_)) {
                "VNC_INITIALIZED"
            } else {
                "VNC_DISCONNECTED"
            };
            (name, json!({"server": server, "client": basic(&c.peer)}))
        }
    }
}

/// `query-vnc` (`VncInfo`).
pub fn query_vnc(vnc: Option<&Vnc>) -> Value {
    let Some(vnc) = vnc else {
        return json!({"enabled": false});
    };
    let s = vnc.server();
    let mut v = json!({
        "enabled": true,
        "auth": auth_name(s.security()),
        "clients": s.clients().iter().map(|c| basic(&c.peer)).collect::<Vec<_>>(),
    });
    if let Some(e) = s.endpoints().first() {
        v["host"] = json!(e.host);
        v["service"] = json!(e.service);
        v["family"] = json!(e.family.as_str());
    }
    v
}

/// `query-vnc-servers` (`[VncInfo2]`).
pub fn query_vnc_servers(vnc: Option<&Vnc>) -> Value {
    let Some(vnc) = vnc else {
        return json!([]);
    };
    let s = vnc.server();
    let auth = auth_name(s.security());
    let servers: Vec<Value> = s
        .endpoints()
        .iter()
        .map(|e| {
            let mut v = basic(e);
            v["auth"] = json!(auth);
            v
        })
        .collect();
    json!([{
        "id": "default",
        "auth": auth,
        "server": servers,
        "clients": s.clients().iter().map(|c| basic(&c.peer)).collect::<Vec<_>>(),
    }])
}

fn no_vnc() -> QmpError {
    QmpError::generic("VNC display not active")
}

fn protocol(args: &Map<String, Value>) -> Result<(), QmpError> {
    match args.get("protocol").and_then(Value::as_str) {
        Some("vnc") => Ok(()),
        Some("spice") => Err(QmpError::generic("SPICE is not in use")),
        Some(other) => Err(QmpError::generic(format!(
            "Parameter 'protocol' does not accept value '{other}'"
        ))),
        None => Err(QmpError::generic("Parameter 'protocol' is missing")),
    }
}

/// `add_client {protocol, fdname, skipauth?, tls?}`: the fd named `fdname` (taken
/// first, as QEMU does, so it is closed whatever follows) becomes a VNC client;
/// `skipauth` lets it in without the password (libvirt's OpenGraphicsFD SKIPAUTH).
/// QEMU ignores `tls` for VNC and so do we. Unlike QEMU, which drops the fd silently
/// when no VNC display runs, this says so.
pub fn add_client(
    vnc: Option<&Vnc>,
    args: &Map<String, Value>,
    fds: &mut ClientFds,
) -> Result<Value, QmpError> {
    let fd = fds.take(
        args.get("fdname")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )?;
    match args
        .get("protocol")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "vnc" => {}
        "spice" => return Err(QmpError::generic("SPICE is not in use")),
        other => return Err(QmpError::generic(format!("Invalid parameter '{other}'"))),
    }
    let vnc = vnc.ok_or_else(no_vnc)?;
    let skip_auth = args
        .get("skipauth")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    vnc.server()
        .add_client(stream_of(fd)?, skip_auth)
        .map_err(|e| QmpError::generic(e.to_string()))?;
    Ok(json!({}))
}

/// The passed socket as the RFB server's stream: TCP when it is an inet socket (a
/// client accepted elsewhere), else unix (libvirt's socketpair).
fn stream_of(fd: OwnedFd) -> Result<rfb::server::Stream, QmpError> {
    use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};
    let family = getsockname::<SockaddrStorage>(fd.as_raw_fd())
        .map_err(|e| QmpError::generic(format!("the passed fd is not a socket: {e}")))?
        .family();
    Ok(match family {
        Some(AddressFamily::Inet | AddressFamily::Inet6) => {
            rfb::server::Stream::Tcp(std::net::TcpStream::from(fd))
        }
        _ => rfb::server::Stream::Unix(std::os::unix::net::UnixStream::from(fd)),
    })
}

/// `set_password {protocol: vnc, password, connected?}`.
pub fn set_password(vnc: Option<&Vnc>, args: &Map<String, Value>) -> Result<Value, QmpError> {
    protocol(args)?;
    let vnc = vnc.ok_or_else(no_vnc)?;
    if let Some(c) = args.get("connected").and_then(Value::as_str) {
        if c != "keep" {
            return Err(QmpError::generic(
                "VNC protocol doesn't support 'connected'",
            ));
        }
    }
    let password = args
        .get("password")
        .and_then(Value::as_str)
        .unwrap_or_default();
    vnc.server()
        .set_password(password)
        .map_err(|e| QmpError::generic(e.to_string()))?;
    Ok(json!({}))
}

/// `expire_password {protocol: vnc, time}`: `now`, `never`, `+SECONDS` from now, or
/// `SECONDS` since the epoch.
pub fn expire_password(vnc: Option<&Vnc>, args: &Map<String, Value>) -> Result<Value, QmpError> {
    protocol(args)?;
    let vnc = vnc.ok_or_else(no_vnc)?;
    let time = args.get("time").and_then(Value::as_str).unwrap_or_default();
    let at = parse_expiry(time, SystemTime::now()).ok_or_else(|| {
        QmpError::generic(format!(
            "Parameter 'time' is '{time}': expected 'now', 'never', '+SECONDS' or 'SECONDS' (since the epoch)"
        ))
    })?;
    vnc.server()
        .expire_password(at)
        .map_err(|_| QmpError::generic("Could not set password expire time."))?;
    Ok(json!({}))
}

/// `Some(None)` for never, `Some(Some(t))` for a time, `None` when malformed.
fn parse_expiry(time: &str, now: SystemTime) -> Option<Option<SystemTime>> {
    match time {
        "now" => Some(Some(now)),
        "never" => Some(None),
        t => match t.strip_prefix('+') {
            Some(rel) => rel
                .parse::<u64>()
                .ok()
                .map(|s| Some(now + Duration::from_secs(s))),
            None => t
                .parse::<u64>()
                .ok()
                .map(|s| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(s))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(parse_expiry("now", now), Some(Some(now)));
        assert_eq!(parse_expiry("never", now), Some(None));
        assert_eq!(
            parse_expiry("+60", now),
            Some(Some(now + Duration::from_secs(60)))
        );
        assert_eq!(
            parse_expiry("5", now),
            Some(Some(SystemTime::UNIX_EPOCH + Duration::from_secs(5)))
        );
        assert_eq!(parse_expiry("soon", now), None);
        assert_eq!(parse_expiry("+x", now), None);
    }

    #[test]
    fn event_shapes_match_qemu() {
        let c = ClientInfo {
            id: 1,
            peer: Endpoint {
                host: "127.0.0.1".into(),
                service: "40000".into(),
                family: rfb::Family::Ipv4,
            },
            server: Some(Endpoint {
                host: "127.0.0.1".into(),
                service: "5900".into(),
                family: rfb::Family::Ipv4,
            }),
            security: Security::VncAuth,
        };
        let (n, d) = event(&ClientEvent::Connected(c.clone()));
        assert_eq!(n, "VNC_CONNECTED");
        assert_eq!(
            d,
            json!({"server": {"host": "127.0.0.1", "service": "5900", "family": "ipv4", "websocket": false},
                   "client": {"host": "127.0.0.1", "service": "40000", "family": "ipv4", "websocket": false}})
        );
        let (n, d) = event(&ClientEvent::Disconnected(c));
        assert_eq!(n, "VNC_DISCONNECTED");
        assert_eq!(d["server"]["auth"], "vnc");
    }
}
