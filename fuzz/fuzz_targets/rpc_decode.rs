//! Fuzzes oxvirtd's libvirt RPC decoding as a connection runs it: packet framing (length
//! word, header, message type and status) and the XDR argument decoder of every
//! procedure the dispatcher serves. Any input must give a packet or a framing error and
//! decoded arguments or an XDR error, never a panic or an allocation beyond the input's
//! size; a packet that parses must encode back to the same bytes.
#![no_main]

use daemon::rpc::packet::{encode, Packet, PROGRAM_QEMU, PROGRAM_REMOTE};
use daemon::rpc::proto::decode_args;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The bytes as a whole packet.
    if let Ok(p) = Packet::parse(data) {
        assert_eq!(encode(&p.header, &p.payload), data);
        let _ = decode_args(p.header.prog, p.header.proc_, &p.payload);
    }
    // The bytes as the arguments of a procedure picked by the first two bytes, so every
    // decoder sees arbitrary payloads without needing a valid header first.
    if data.len() >= 2 {
        let proc_ = i32::from(u16::from_be_bytes([data[0], data[1]]) % 512);
        let prog = if data[0] & 0x80 != 0 {
            PROGRAM_QEMU
        } else {
            PROGRAM_REMOTE
        };
        let _ = decode_args(prog, proc_, &data[2..]);
    }
});
