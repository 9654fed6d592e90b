//! Fuzzes the QMP request path as the server runs it: the byte stream reader (QEMU's
//! lexer/streamer/parser rules, limits, resynchronisation), the request envelope check
//! and the schema's argument check. Any input must give values or QEMU-worded errors,
//! never a panic; every value read must write out as QMP and read back.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use qmp::json::{parse_one, to_line, Limits, Streamer};
use qmp::wire::Request;
use qmp::Schema;

const SCHEMA: &str = include_str!("../../schemas/qmp-schema.json");

fuzz_target!(|data: &[u8]| {
    static SCHEMA_ONCE: OnceLock<Schema> = OnceLock::new();
    let schema = SCHEMA_ONCE.get_or_init(|| Schema::parse(SCHEMA).expect("schema loads"));
    let limits = Limits {
        max_bytes: 4096,
        max_tokens: 512,
        max_nesting: 64,
    };
    // The same bytes in one read and split in two must give the same items.
    let mut whole = Vec::new();
    Streamer::new(limits).feed(data, &mut whole);
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    let mut split = Vec::new();
    let mut s = Streamer::new(limits);
    s.feed(&data[..cut], &mut split);
    s.feed(&data[cut..], &mut split);
    assert_eq!(whole, split, "split at {cut}");
    for item in whole {
        match item {
            Ok(v) => {
                let line = to_line(&v);
                assert!(line.ends_with(b"\r\n") && line.iter().all(|b| b.is_ascii()));
                assert!(!line[..line.len() - 2].contains(&b'\n'));
                let back = parse_one(&line).expect("a value");
                assert!(back.is_ok(), "written value reads back: {back:?}");
                if let Ok(req) = Request::from_value(v) {
                    if let Some(cmd) = schema.command(&req.execute) {
                        let _ = schema.check_args(cmd, &req.arguments);
                    }
                }
            }
            Err(desc) => assert!(desc.starts_with("JSON "), "{desc}"),
        }
    }
});
