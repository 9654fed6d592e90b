//! Malformed packets on the libvirt RPC socket get an error reply or a closed
//! connection, never a crash: bad lengths, unknown programs, truncated XDR, huge
//! strings and arrays. The daemon keeps serving afterwards, and answers keepalive pings.

mod rpc_common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rpc_common::Daemon;

const REMOTE: u32 = 0x2000_8086;
const CALL: u32 = 0;

fn packet(prog: u32, proc_: u32, kind: u32, serial: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&((28 + payload.len()) as u32).to_be_bytes());
    for w in [prog, 1, proc_, kind, serial, 0] {
        p.extend_from_slice(&w.to_be_bytes());
    }
    p.extend_from_slice(payload);
    p
}

fn xdr_string(s: &str) -> Vec<u8> {
    let mut v = (s.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(s.as_bytes());
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

/// One reply: (proc, serial, status, payload). `None` when the daemon closed.
fn read_reply(s: &mut UnixStream) -> Option<(u32, u32, u32, Vec<u8>)> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let len = u32::from_be_bytes(len) as usize;
    let mut rest = vec![0u8; len - 4];
    s.read_exact(&mut rest).ok()?;
    let w = |i: usize| u32::from_be_bytes(rest[i * 4..i * 4 + 4].try_into().unwrap());
    Some((w(2), w(4), w(5), rest[24..].to_vec()))
}

fn connect(d: &Daemon) -> UnixStream {
    let s = UnixStream::connect(&d.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// AUTH_LIST + CONNECT_OPEN, as a client does.
fn handshake(s: &mut UnixStream) {
    s.write_all(&packet(REMOTE, 66, CALL, 0, &[])).unwrap();
    assert_eq!(read_reply(s).unwrap().2, 0);
    let mut open = vec![0, 0, 0, 1];
    open.extend(xdr_string("oxvirt:///system"));
    open.extend([0, 0, 0, 0]);
    s.write_all(&packet(REMOTE, 1, CALL, 1, &open)).unwrap();
    assert_eq!(read_reply(s).unwrap().2, 0, "CONNECT_OPEN failed");
}

/// The error code in a `remote_error` payload.
fn error_code(payload: &[u8]) -> i32 {
    i32::from_be_bytes(payload[0..4].try_into().unwrap())
}

fn still_serving(d: &Daemon) {
    let mut s = connect(d);
    handshake(&mut s);
    s.write_all(&packet(REMOTE, 59, CALL, 2, &[])).unwrap(); // CONNECT_GET_HOSTNAME
    let (_, serial, status, _) = read_reply(&mut s).expect("daemon answers after abuse");
    assert_eq!((serial, status), (2, 0));
}

#[test]
fn rpc_malformed_packets_are_refused_safely() {
    let d = Daemon::start();

    // Length words that cannot be: too short, and far beyond the 32 MiB maximum.
    for len in [0u32, 4, 27, 0xffff_ffff, 0x0400_0000] {
        let mut s = connect(&d);
        s.write_all(&len.to_be_bytes()).unwrap();
        // The daemon may already have closed after the length word.
        let _ = s.write_all(&[0u8; 24]);
        assert!(read_reply(&mut s).is_none(), "length {len:#x} must close");
    }
    // An unknown message type closes too.
    let mut s = connect(&d);
    s.write_all(&packet(REMOTE, 66, 77, 0, &[])).unwrap();
    assert!(read_reply(&mut s).is_none());

    let mut s = connect(&d);
    handshake(&mut s);
    // Unknown program: error reply, connection stays.
    s.write_all(&packet(0x1234_5678, 1, CALL, 10, &[])).unwrap();
    let (_, serial, status, p) = read_reply(&mut s).unwrap();
    assert_eq!((serial, status), (10, 1));
    assert_eq!(error_code(&p), 39, "VIR_ERR_RPC");
    // Unknown procedure: VIR_ERR_NO_SUPPORT.
    s.write_all(&packet(REMOTE, 9999, CALL, 11, &[])).unwrap();
    let (proc_, serial, status, p) = read_reply(&mut s).unwrap();
    assert_eq!((proc_, serial, status), (9999, 11, 1));
    assert_eq!(error_code(&p), 3, "VIR_ERR_NO_SUPPORT");
    // Truncated XDR: DOMAIN_LOOKUP_BY_NAME with a string longer than the payload.
    s.write_all(&packet(REMOTE, 23, CALL, 12, &[0, 0, 0, 100, b'a', b'b']))
        .unwrap();
    let (_, serial, status, p) = read_reply(&mut s).unwrap();
    assert_eq!((serial, status), (12, 1));
    assert_eq!(error_code(&p), 39);
    // A huge string length (2 GiB) in a tiny packet.
    s.write_all(&packet(REMOTE, 23, CALL, 13, &[0x7f, 0xff, 0xff, 0xff]))
        .unwrap();
    let (_, serial, status, _) = read_reply(&mut s).unwrap();
    assert_eq!((serial, status), (13, 1));
    // A huge array count: CONNECT_GET_ALL_DOMAIN_STATS with 4 billion domains.
    s.write_all(&packet(
        REMOTE,
        344,
        CALL,
        14,
        &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0],
    ))
    .unwrap();
    let (_, serial, status, _) = read_reply(&mut s).unwrap();
    assert_eq!((serial, status), (14, 1));
    // Trailing garbage after valid arguments.
    let mut args = xdr_string("x");
    args.extend([1, 2, 3, 4]);
    s.write_all(&packet(REMOTE, 23, CALL, 15, &args)).unwrap();
    let (_, serial, status, _) = read_reply(&mut s).unwrap();
    assert_eq!((serial, status), (15, 1));
    // Keepalive: a PING (program "keep", type MESSAGE) is answered with a PONG.
    s.write_all(&packet(0x6b65_6570, 1, 2, 0, &[])).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut pong = vec![0u8; u32::from_be_bytes(len) as usize - 4];
    s.read_exact(&mut pong).unwrap();
    let w = |i: usize| u32::from_be_bytes(pong[i * 4..i * 4 + 4].try_into().unwrap());
    assert_eq!((w(0), w(2), w(3)), (0x6b65_6570, 2, 2), "PONG");
    // The same connection still works.
    s.write_all(&packet(REMOTE, 59, CALL, 16, &[])).unwrap();
    let (_, serial, status, _) = read_reply(&mut s).unwrap();
    assert_eq!((serial, status), (16, 0));
    // A call before CONNECT_OPEN is refused, not served.
    let mut s2 = connect(&d);
    s2.write_all(&packet(REMOTE, 273, CALL, 0, &[0, 0, 0, 1, 0, 0, 0, 0]))
        .unwrap();
    let (_, _, status, _) = read_reply(&mut s2).unwrap();
    assert_eq!(status, 1);
    // A client that vanishes mid-packet.
    let mut s3 = connect(&d);
    s3.write_all(&100u32.to_be_bytes()).unwrap();
    s3.write_all(&[0u8; 10]).unwrap();
    drop(s3);

    still_serving(&d);
}
