//! QMP messages: greeting, request envelope, replies and events, in QEMU's shapes.
//!
//! These are plain serde/`Value` types rather than the `qapi-qmp` crate's: that crate
//! cannot build the envelopes a server sends (private `ResponseValue`/`Timestamp`
//! fields, the greeting's `oob` serialises as `null`, see research/crates.md §3c), its
//! schema is QEMU 9.1 rather than the 7.2 we match, it does not reject unknown
//! arguments, and it is the slowest crate of the workspace to build. Argument checking
//! is driven by our own QAPI-style schema instead (`schema.rs`), which also gives
//! QEMU's exact error texts.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::error::{ErrorClass, QmpError};
use crate::json;

/// `query-version`'s and the greeting's `version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// `{"major", "minor", "micro"}`.
    pub qemu: VersionTriple,
    /// Free text naming the build.
    pub package: String,
}

/// A QEMU version number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionTriple {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Micro.
    pub micro: u32,
}

impl VersionInfo {
    /// What oxvirt reports: QEMU 7.2.0 (the QMP dialect it speaks, a version libvirt
    /// accepts) and a package string naming oxvirt.
    pub fn oxvirt() -> Self {
        VersionInfo {
            qemu: VersionTriple {
                major: 7,
                minor: 2,
                micro: 0,
            },
            package: format!("oxvirt {}", env!("CARGO_PKG_VERSION")),
        }
    }

    /// As a JSON value, in QEMU's member order.
    pub fn to_value(&self) -> Value {
        json!({
            "qemu": {"micro": self.qemu.micro, "minor": self.qemu.minor, "major": self.qemu.major},
            "package": self.package,
        })
    }
}

/// The greeting line, `{"QMP": {"version": …, "capabilities": []}}\r\n`. We advertise no
/// capabilities: `oob` would oblige us to implement `exec-oob`.
pub fn greeting(version: &VersionInfo) -> Vec<u8> {
    let v = version;
    let mut out = Vec::with_capacity(160);
    // QEMU 7.2's member order, byte for byte: qemu{micro,minor,major}, package.
    let qemu = json!({"micro": v.qemu.micro, "minor": v.qemu.minor, "major": v.qemu.major});
    let mut version = Vec::new();
    version.extend_from_slice(b"{\"qemu\": ");
    json::write_ordered(
        &mut version,
        &[
            ("micro", &qemu["micro"]),
            ("minor", &qemu["minor"]),
            ("major", &qemu["major"]),
        ],
    );
    version.extend_from_slice(b", \"package\": ");
    json::write_value(&mut version, &Value::String(v.package.clone()));
    version.push(b'}');
    out.extend_from_slice(b"{\"QMP\": {\"version\": ");
    out.extend_from_slice(&version);
    out.extend_from_slice(b", \"capabilities\": []}}\r\n");
    out
}

/// A checked request: `{"execute": NAME, "arguments"?: {…}, "id"?: ANY}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The command name.
    pub execute: String,
    /// The arguments (`{}` when absent).
    pub arguments: Map<String, Value>,
    /// The id to echo, any JSON value.
    pub id: Option<Value>,
}

/// A request that failed the envelope checks: the error and the id to echo (if the
/// input was an object that had one).
#[derive(Debug, Clone, PartialEq)]
pub struct BadRequest {
    /// The id to echo.
    pub id: Option<Value>,
    /// The error.
    pub error: QmpError,
}

impl Request {
    /// Checks a parsed value like QEMU's `qmp_dispatch_check_obj` (same texts; members
    /// are checked in sorted order where QEMU uses hash order).
    pub fn from_value(v: Value) -> Result<Request, BadRequest> {
        let Value::Object(mut obj) = v else {
            return Err(BadRequest {
                id: None,
                error: QmpError::generic("QMP input must be a JSON object"),
            });
        };
        let id = obj.remove("id");
        let fail = |desc: String| {
            Err(BadRequest {
                id: id.clone(),
                error: QmpError::generic(desc),
            })
        };
        for (name, value) in &obj {
            match name.as_str() {
                "execute" if !value.is_string() => {
                    return fail("QMP input member 'execute' must be a string".into())
                }
                "arguments" if !value.is_object() => {
                    return fail("QMP input member 'arguments' must be an object".into())
                }
                "execute" | "arguments" => {}
                other => return fail(format!("QMP input member '{other}' is unexpected")),
            }
        }
        let Some(Value::String(execute)) = obj.remove("execute") else {
            return fail("QMP input lacks member 'execute'".into());
        };
        let arguments = match obj.remove("arguments") {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        };
        Ok(Request {
            execute,
            arguments,
            id,
        })
    }
}

/// `{"return": VALUE, "id": …}\r\n` (QEMU's member order).
pub fn reply_ok(value: &Value, id: Option<&Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    match id {
        Some(id) => json::write_ordered(&mut out, &[("return", value), ("id", id)]),
        None => json::write_ordered(&mut out, &[("return", value)]),
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// `{"id": …, "error": {"class": …, "desc": …}}\r\n` (QEMU's member order).
pub fn reply_err(error: &QmpError, id: Option<&Value>) -> Vec<u8> {
    let body = json!({"class": error.class.as_str(), "desc": error.desc});
    let mut out = Vec::with_capacity(96);
    let mut inner = Vec::new();
    json::write_ordered(
        &mut inner,
        &[("class", &body["class"]), ("desc", &body["desc"])],
    );
    out.push(b'{');
    if let Some(id) = id {
        out.extend_from_slice(b"\"id\": ");
        json::write_value(&mut out, id);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(b"\"error\": ");
    out.extend_from_slice(&inner);
    out.extend_from_slice(b"}\r\n");
    out
}

/// An event's `timestamp`: wall-clock time when it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Microseconds within the second.
    pub microseconds: i64,
}

impl Timestamp {
    /// Now, from the system clock.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: d.as_secs() as i64,
            microseconds: i64::from(d.subsec_micros()),
        }
    }
}

/// An event as received or sent: `{"event", "data"?, "timestamp"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event name, e.g. `STOP`.
    pub event: String,
    /// Its data; QEMU omits the member for events without data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// When it happened.
    pub timestamp: Timestamp,
}

impl Event {
    /// The event line, in QEMU's member order (`timestamp`, `event`, `data`).
    pub fn to_line(&self) -> Vec<u8> {
        let ts =
            json!({"seconds": self.timestamp.seconds, "microseconds": self.timestamp.microseconds});
        let mut tsb = Vec::new();
        json::write_ordered(
            &mut tsb,
            &[
                ("seconds", &ts["seconds"]),
                ("microseconds", &ts["microseconds"]),
            ],
        );
        let mut out = Vec::with_capacity(96);
        out.extend_from_slice(b"{\"timestamp\": ");
        out.extend_from_slice(&tsb);
        out.extend_from_slice(b", \"event\": ");
        json::write_value(&mut out, &Value::String(self.event.clone()));
        if let Some(data) = &self.data {
            out.extend_from_slice(b", \"data\": ");
            json::write_value(&mut out, data);
        }
        out.extend_from_slice(b"}\r\n");
        out
    }
}

/// QEMU's errors around capability negotiation.
pub(crate) fn expecting_negotiation() -> QmpError {
    QmpError::new(
        ErrorClass::CommandNotFound,
        "Expecting capabilities negotiation with 'qmp_capabilities'",
    )
}

pub(crate) fn negotiation_done() -> QmpError {
    QmpError::new(
        ErrorClass::CommandNotFound,
        "Capabilities negotiation is already complete, command ignored",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_bytes_match_qemu_shape() {
        let v = VersionInfo {
            qemu: VersionTriple {
                major: 7,
                minor: 2,
                micro: 22,
            },
            package: "Debian 1:7.2+dfsg-7+deb12u18+b3".into(),
        };
        // QEMU 7.2's bytes with "oob" removed from capabilities.
        assert_eq!(
            String::from_utf8(greeting(&v)).unwrap(),
            "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": []}}\r\n"
        );
    }

    #[test]
    fn envelope_checks_like_qemu() {
        let bad = |v: Value| Request::from_value(v).unwrap_err();
        assert_eq!(
            bad(json!([1])).error.desc,
            "QMP input must be a JSON object"
        );
        let e = bad(json!({"id": 1}));
        assert_eq!(e.error.desc, "QMP input lacks member 'execute'");
        assert_eq!(e.id, Some(json!(1)));
        assert_eq!(
            bad(json!({"execute": 5})).error.desc,
            "QMP input member 'execute' must be a string"
        );
        assert_eq!(
            bad(json!({"execute": "x", "arguments": null})).error.desc,
            "QMP input member 'arguments' must be an object"
        );
        assert_eq!(
            bad(json!({"execute": "x", "exec-oob": "y"})).error.desc,
            "QMP input member 'exec-oob' is unexpected"
        );
        let r = Request::from_value(json!({"execute": "x", "id": {"a": [1]}})).unwrap();
        assert_eq!(r.execute, "x");
        assert!(r.arguments.is_empty());
        assert_eq!(r.id, Some(json!({"a": [1]})));
    }

    #[test]
    fn replies_and_events_in_qemu_order() {
        assert_eq!(reply_ok(&json!({}), None), b"{\"return\": {}}\r\n");
        assert_eq!(
            reply_ok(&json!({}), Some(&json!([1, 2]))),
            b"{\"return\": {}, \"id\": [1, 2]}\r\n"
        );
        assert_eq!(
            String::from_utf8(reply_err(&QmpError::command_not_found("no-such"), Some(&json!({"a": 1})))).unwrap(),
            "{\"id\": {\"a\": 1}, \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command no-such has not been found\"}}\r\n"
        );
        let ev = Event {
            event: "SHUTDOWN".into(),
            data: Some(json!({"guest": false, "reason": "host-qmp-quit"})),
            timestamp: Timestamp {
                seconds: 1795549072,
                microseconds: 717843,
            },
        };
        assert_eq!(
            String::from_utf8(ev.to_line()).unwrap(),
            "{\"timestamp\": {\"seconds\": 1795549072, \"microseconds\": 717843}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n"
        );
    }
}
