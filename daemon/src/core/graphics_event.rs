//! The VMM's `VNC_CONNECTED`/`VNC_INITIALIZED`/`VNC_DISCONNECTED` QMP events as
//! libvirt's graphics event, read as libvirt's QEMU driver reads them
//! (`qemuMonitorJSONHandleGraphicsVNC`, `qemuProcessHandleGraphics`).

use serde_json::Value;

use super::event::{graphics, Event, GraphicsAddress};
use super::DomainRef;

/// The graphics event for QMP event `name` with `data`; `None` when the data lacks
/// what libvirt requires (it drops such events with a warning too).
pub(super) fn from_qmp(domain: DomainRef, name: &str, data: &Value) -> Option<Event> {
    let phase = match name {
        "VNC_CONNECTED" => graphics::CONNECT,
        "VNC_INITIALIZED" => graphics::INITIALIZE,
        "VNC_DISCONNECTED" => graphics::DISCONNECT,
        _ => return None,
    };
    let (Some(local), Some(remote)) = (address(&data["server"]), address(&data["client"])) else {
        tracing::warn!(event = name, %data, "VNC event without server or client address");
        return None;
    };
    let client = &data["client"];
    let subject = [
        ("x509dname", "x509_dname"),
        ("saslUsername", "sasl_username"),
    ]
    .iter()
    .filter_map(|(kind, key)| {
        client[key]
            .as_str()
            .map(|v| (kind.to_string(), v.to_string()))
    })
    .collect();
    Some(Event::Graphics {
        domain,
        phase,
        local,
        remote,
        // VNC_CONNECTED carries no auth scheme: libvirt sends "".
        auth_scheme: data["server"]["auth"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        subject,
    })
}

/// A `VncBasicInfo` as a graphics address; unknown families count as IPv4, as in
/// libvirt.
fn address(v: &Value) -> Option<GraphicsAddress> {
    let family = match v["family"].as_str()? {
        "ipv6" => 1,
        "unix" => 2,
        _ => 0,
    };
    Some(GraphicsAddress {
        family,
        node: v["host"].as_str()?.to_string(),
        service: v["service"].as_str().unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dom() -> DomainRef {
        DomainRef {
            name: "g".into(),
            uuid: uuid::Uuid::nil(),
            id: 1,
        }
    }

    #[test]
    fn vnc_events_become_graphics_phases() {
        let server =
            json!({"host": "127.0.0.1", "service": "5900", "family": "ipv4", "websocket": false});
        let client =
            json!({"host": "127.0.0.1", "service": "41234", "family": "ipv4", "websocket": false});
        let ev = from_qmp(
            dom(),
            "VNC_CONNECTED",
            &json!({"server": server, "client": client}),
        )
        .unwrap();
        let Event::Graphics {
            phase,
            local,
            remote,
            auth_scheme,
            subject,
            ..
        } = ev
        else {
            panic!("{ev:?}")
        };
        assert_eq!(phase, graphics::CONNECT);
        assert_eq!(
            (local.family, local.node.as_str(), local.service.as_str()),
            (0, "127.0.0.1", "5900")
        );
        assert_eq!(remote.service, "41234");
        assert_eq!(auth_scheme, "");
        assert!(subject.is_empty());
        // An fd-handed client: unix endpoints with empty host and service.
        let unix = json!({"host": "", "service": "", "family": "unix", "websocket": false, "auth": "none"});
        let ev = from_qmp(
            dom(),
            "VNC_DISCONNECTED",
            &json!({"server": unix, "client": {"host": "", "service": "", "family": "unix", "websocket": false}}),
        )
        .unwrap();
        assert!(matches!(
            ev,
            Event::Graphics { phase: graphics::DISCONNECT, ref local, ref auth_scheme, .. }
                if local.family == 2 && auth_scheme == "none"
        ));
        assert!(from_qmp(dom(), "VNC_INITIALIZED", &json!({"server": {}})).is_none());
    }
}
