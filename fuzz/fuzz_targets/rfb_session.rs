//! Fuzzes the RFB server's protocol state machine (`rfb::Session`) as a network client
//! would drive it: any bytes, in one read or split in two, at each security type, must
//! give events or a protocol error, never a panic; after a successful handshake the
//! session must still write a well-formed update of a small frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rfb::{Event, Image, Security, Session};

fn drive(security: Security, chunks: &[&[u8]]) {
    let mut s = Session::new(security);
    for chunk in chunks {
        let Ok(events) = s.feed(chunk) else { return };
        for e in events {
            match e {
                Event::AuthResponse { .. } => s.auth_result(Ok(())),
                Event::ClientInit { .. } => s.server_init(16, 8, "fuzz"),
                _ => {}
            }
        }
    }
    let frame = Image {
        width: 16,
        height: 8,
        pixels: (0..128).collect(),
    };
    if s.wants_update(16, 8, 0, true) {
        s.write_update(&frame, 0, true);
    }
    let _ = s.take_output();
}

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    for security in [Security::None, Security::VncAuth] {
        drive(security, &[data]);
        drive(security, &[&data[..cut], &data[cut..]]);
    }
});
