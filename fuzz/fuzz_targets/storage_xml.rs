//! Fuzzes the storage driver's XML parsers (what `pool-define`, `vol-create` and every
//! client hand oxvirtd) and the qcow2 header probe (what a volume file may hold): any
//! input must parse or give an error, never panic; a pool that parses must format to
//! XML that parses to the same definition.
#![no_main]

use daemon::storage::image::parse_qcow2;
use daemon::storage::{PoolDef, VolRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_qcow2(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = PoolDef::parse(text) {
        let again = PoolDef::parse(&p.format(None, None)).expect("formatted pool XML parses");
        assert_eq!(p, again);
    }
    let _ = VolRequest::parse(text);
});
