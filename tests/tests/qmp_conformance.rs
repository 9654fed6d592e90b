//! Our QMP replies against Debian's QEMU 7.2 (`-M none`, no KVM needed) for the same
//! bytes, where QEMU's answer is deterministic: byte for byte, except that the greeting
//! is compared by shape (version and package differ, and we do not offer `oob`).

mod qmp_common;

use oxvirt_tests::host::require_kvm;
use oxvirt_tests::{spec, test_guests, GUEST_TIMEOUT};
use qmp_common::{Qemu, QmpVm, RawQmp};

/// Requests and how many lines each answers with.
const BEFORE_NEGOTIATION: &[&[u8]] = &[
    b"{\"execute\":\"query-status\",\"id\":5}\n",
    b"{\"execute\":\"no-such-command\"}\n",
    b"{\"id\":[1,{\"a\":null}]}\n",
    b"}\n",
    b"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":5},\"id\":\"x\"}\n",
    b"{\"execute\":\"qmp_capabilities\",\"id\":[1,2]}\n",
];

const AFTER_NEGOTIATION: &[&[u8]] = &[
    b"{\"execute\":\"qmp_capabilities\",\"id\":1}\n",
    // unknown command, the id echoed whatever its type
    b"{\"execute\":\"no-such-command\",\"id\":{\"a\":1}}\n",
    b"{\"execute\":\"no-such-command\",\"id\":\"libvirt-7\"}\n",
    // missing, unexpected and mistyped arguments
    b"{\"execute\":\"balloon\",\"id\":1}\n",
    b"{\"execute\":\"balloon\",\"arguments\":{\"value\":\"x\"},\"id\":1}\n",
    b"{\"execute\":\"balloon\",\"arguments\":{\"value\":1.5},\"id\":1}\n",
    b"{\"execute\":\"balloon\",\"arguments\":{\"value\":1,\"foo\":2},\"id\":1}\n",
    b"{\"execute\":\"query-status\",\"arguments\":{\"foo\":2},\"id\":1}\n",
    b"{\"execute\":\"query-blockstats\",\"arguments\":{\"query-nodes\":1},\"id\":1}\n",
    b"{\"execute\":\"human-monitor-command\",\"id\":1}\n",
    b"{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":5},\"id\":1}\n",
    // no balloon
    b"{\"execute\":\"query-balloon\",\"id\":1}\n",
    b"{\"execute\":\"balloon\",\"arguments\":{\"value\":1000},\"id\":1}\n",
    // HMP's unknown command
    b"{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"foo\"},\"id\":1}\n",
    b"{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info foo\"},\"id\":1}\n",
    b"{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"\"},\"id\":1}\n",
    // envelope errors
    b"{\"execute\":\"query-status\",\"arguments\":null,\"id\":1}\n",
    b"{\"execute\":\"query-status\",\"arguments\":[],\"id\":1}\n",
    b"{\"execute\":5,\"id\":1}\n",
    b"{\"id\":1}\n",
    b"{\"execute\":\"query-status\",\"foo\":1,\"id\":1}\n",
    b"[1,2]\n",
    b"\"str\"\n",
    b"42\n",
    // bad JSON
    b"{\"execute\": bogus}\n",
    b"}\n",
    b"{\"execute\":\"query-status\" \"id\":1}\n",
    b"{\"execute\":\"query-status\",}\n",
    b"\"abc\\q\"\n",
    b"{]\n",
    // ids that need QEMU's number and string formatting
    b"{\"execute\":\"query-target\",\"id\":\"\xc3\xa9\\u00e9\\t\\u0001\\u007f\"}\n",
    b"{\"execute\":\"query-target\",\"id\":18446744073709551615}\n",
    b"{\"execute\":\"query-target\",\"id\":-0}\n",
    b"{\"execute\":\"query-target\",\"id\":1.0}\n",
    b"{'execute':'query-target','id':'single'}\n",
];

/// Two-line answers (a lexical error, then the rest of the input).
const TWO_LINES: &[&[u8]] = &[
    b"\xff\xfe\n",
    b"{\"execute\":\"query-target\",\"id\":True}\n",
    b"{\"a\":1}}\n",
];

fn session(sock: &std::path::Path) -> (String, Vec<String>) {
    let mut c = RawQmp::connect(sock);
    let greeting = c.line();
    let mut out = Vec::new();
    for req in BEFORE_NEGOTIATION.iter().chain(AFTER_NEGOTIATION) {
        out.push(c.ask(req));
    }
    for req in TWO_LINES {
        c.send(req);
        out.push(c.line() + &c.line());
    }
    (greeting, out)
}

fn greeting_shape(g: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(g.trim_end()).unwrap();
    let ver = &v["QMP"]["version"];
    assert!(
        ver["qemu"]["major"].is_u64()
            && ver["qemu"]["minor"].is_u64()
            && ver["qemu"]["micro"].is_u64()
    );
    assert!(ver["package"].is_string());
    assert!(v["QMP"]["capabilities"].is_array());
    // The same bytes once the values are blanked.
    let package = ver["package"].as_str().unwrap();
    let mut s = g.replacen(
        &format!("\"package\": \"{package}\""),
        "\"package\": \"P\"",
        1,
    );
    for k in ["micro", "minor", "major"] {
        let n = ver["qemu"][k].as_u64().unwrap();
        s = s.replacen(&format!("\"{k}\": {n}"), &format!("\"{k}\": N"), 1);
    }
    s.replacen("[\"oob\"]", "[]", 1)
}

#[test]
fn replies_match_qemu_7_2_byte_for_byte() {
    if !require_kvm("replies_match_qemu_7_2_byte_for_byte") {
        return;
    }
    let qemu = Qemu::start();
    let s = spec(&test_guests().elf, "console=ttyS0 oxtest=count", 64, 1);
    let ours = QmpVm::start(&s);
    ours.vm.wait_for("OXTEST tick 1", GUEST_TIMEOUT);

    let (qg, q) = session(&qemu.sock);
    let (og, o) = session(&ours.sock);
    assert_eq!(
        greeting_shape(&og),
        greeting_shape(&qg),
        "greetings:\n{og}{qg}"
    );
    assert!(og.ends_with("\"capabilities\": []}}\r\n"), "{og}");
    assert_eq!(q.len(), o.len());
    let mut diffs = Vec::new();
    let requests = BEFORE_NEGOTIATION
        .iter()
        .chain(AFTER_NEGOTIATION)
        .chain(TWO_LINES);
    for ((req, qa), oa) in requests.zip(&q).zip(&o) {
        if qa != oa {
            diffs.push(format!(
                "request {}\n  qemu: {qa:?}\n  ours: {oa:?}",
                String::from_utf8_lossy(req).trim_end()
            ));
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
