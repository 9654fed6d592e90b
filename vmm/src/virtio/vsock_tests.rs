//! vsock connections both ways through real unix sockets, with the guest side
//! driven through mock queues.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::virtio::queue_util::testing::{add_chain, memory, queue, used_idx, CountingInterrupt};

const GUEST_CID: u64 = 3;

struct Guest<'a> {
    mem: &'a GuestMem,
    tx_mock: virtio_queue::mock::MockSplitQueue<'a, GuestMem>,
    tx: ActiveQueue,
    rx_mock: virtio_queue::mock::MockSplitQueue<'a, GuestMem>,
    rx: ActiveQueue,
    tx_n: u16,
    rx_n: u16,
    /// Address of the receive buffer offered and not used yet.
    offered: Option<u64>,
    intr: CountingInterrupt,
}

impl<'a> Guest<'a> {
    fn new(mem: &'a GuestMem) -> Self {
        let (tx_mock, tx) = queue(mem, 0, TXQ);
        let (rx_mock, rx) = queue(mem, 0x8000, RXQ);
        Guest {
            mem,
            tx_mock,
            tx,
            rx_mock,
            rx,
            tx_n: 0,
            rx_n: 0,
            offered: None,
            intr: CountingInterrupt::default(),
        }
    }

    fn send(&mut self, mux: &mut VsockMux, h: Header, payload: &[u8]) {
        let addr = 0x10_0000 + u64::from(self.tx_n) * 0x1000;
        let mut data = h.to_bytes().to_vec();
        data.extend_from_slice(payload);
        self.mem.write_slice(&data, GuestAddress(addr)).unwrap();
        add_chain(
            &self.tx_mock,
            self.tx_n,
            &[(addr, data.len() as u32, false)],
        );
        self.tx_n += 1;
        mux.transmit(&mut self.tx, self.mem, &self.intr);
    }

    /// Offers one receive buffer and returns the packet put in it, if any.
    fn recv(&mut self, mux: &mut VsockMux) -> Option<(Header, Vec<u8>)> {
        let addr = match self.offered {
            Some(a) => a,
            None => {
                let a = 0x40_0000 + u64::from(self.rx_n) * 0x1000;
                add_chain(&self.rx_mock, self.rx_n % 16, &[(a, 0x1000, true)]);
                self.rx_n += 1;
                self.offered = Some(a);
                a
            }
        };
        let before = used_idx(self.mem, &self.rx_mock);
        mux.poll_host();
        mux.receive(&mut self.rx, self.mem, &self.intr);
        if used_idx(self.mem, &self.rx_mock) == before {
            return None;
        }
        self.offered = None;
        let mut hb = [0u8; HDR];
        self.mem.read_slice(&mut hb, GuestAddress(addr)).unwrap();
        let h = Header::from_bytes(&hb);
        let mut p = vec![0u8; h.len as usize];
        self.mem
            .read_slice(&mut p, GuestAddress(addr + HDR as u64))
            .unwrap();
        Some((h, p))
    }

    fn recv_wait(&mut self, mux: &mut VsockMux) -> (Header, Vec<u8>) {
        for _ in 0..200 {
            if let Some(p) = self.recv(mux) {
                return p;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no packet for the guest");
    }
}

fn hdr(op: u16, src_port: u32, dst_port: u32, len: u32) -> Header {
    Header {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        len,
        type_: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: 65536,
        fwd_cnt: 0,
    }
}

/// The host port the connection tests listen on.
const HOST_PORT: u32 = 1234;

/// A mux on `DIR/v.sock` (the directory lives as long as the returned handle), and
/// the socket path.
fn mux() -> (tempfile::TempDir, PathBuf, VsockMux) {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let mux = VsockMux::new(GUEST_CID, &uds).unwrap();
    (dir, uds, mux)
}

/// The host listening on [`HOST_PORT`] (`<uds>_1234`, where the mux connects).
fn listen(uds: &std::path::Path) -> UnixListener {
    UnixListener::bind(format!("{}_{HOST_PORT}", uds.display())).unwrap()
}

/// The guest connects from `guest_port` to [`HOST_PORT`]: the mux answers RESPONSE
/// and the host accepts. Returns the host's end, reads timing out after 10 s.
fn connect(g: &mut Guest, mux: &mut VsockMux, host: &UnixListener, guest_port: u32) -> UnixStream {
    g.send(mux, hdr(op::REQUEST, guest_port, HOST_PORT, 0), &[]);
    let (h, _) = g.recv_wait(mux);
    assert_eq!(
        (h.op, h.src_port, h.dst_port, h.dst_cid),
        (op::RESPONSE, HOST_PORT, guest_port, GUEST_CID)
    );
    let (s, _) = host.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn guest_connects_to_a_host_port_and_bytes_flow_both_ways() {
    let (_dir, uds, mut mux) = mux();
    let host = listen(&uds);
    let mem = memory();
    let mut g = Guest::new(&mem);
    let mut s = connect(&mut g, &mut mux, &host, 40000);
    g.send(&mut mux, hdr(op::RW, 40000, HOST_PORT, 4), b"ping");
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    s.write_all(b"pong").unwrap();
    let (h, p) = g.recv_wait(&mut mux);
    assert_eq!((h.op, p.as_slice()), (op::RW, &b"pong"[..]));
    assert_eq!(h.fwd_cnt, 4, "host consumed 4 bytes");
    drop(s);
    let (h, _) = g.recv_wait(&mut mux);
    assert_eq!((h.op, h.flags), (op::SHUTDOWN, 3));
    assert!(g.recv(&mut mux).is_none(), "nothing more once reported");
}

#[test]
fn guest_connect_to_a_closed_port_is_reset() {
    let (_dir, _, mut mux) = mux();
    let mem = memory();
    let mut g = Guest::new(&mem);
    g.send(&mut mux, hdr(op::REQUEST, 40001, 9, 0), &[]);
    let (h, _) = g.recv_wait(&mut mux);
    assert_eq!(h.op, op::RST);
    g.send(&mut mux, hdr(op::RW, 40001, 9, 1), b"x");
    assert_eq!(
        g.recv_wait(&mut mux).0.op,
        op::RST,
        "data on no connection is reset"
    );
}

#[test]
fn host_connects_with_connect_line_and_gets_ok() {
    let (_dir, uds, mut mux) = mux();
    let mem = memory();
    let mut g = Guest::new(&mem);
    let mut c = UnixStream::connect(&uds).unwrap();
    c.write_all(b"CONNECT 5000\n").unwrap();
    let (h, _) = g.recv_wait(&mut mux);
    assert_eq!(
        (h.op, h.dst_port, h.dst_cid),
        (op::REQUEST, 5000, GUEST_CID)
    );
    let host_port = h.src_port;
    g.send(&mut mux, hdr(op::RESPONSE, 5000, host_port, 0), &[]);
    let mut line = String::new();
    BufReader::new(c.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, format!("OK {host_port}\n"));
    g.send(&mut mux, hdr(op::RW, 5000, host_port, 5), b"hello");
    let mut b = [0u8; 5];
    c.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hello");
    c.write_all(b"world").unwrap();
    let (h, p) = g.recv_wait(&mut mux);
    assert_eq!((h.op, p.as_slice()), (op::RW, &b"world"[..]));
}

#[test]
fn guest_half_close_keeps_the_host_reply_flowing() {
    let (_dir, uds, mut mux) = mux();
    let host = listen(&uds);
    let mem = memory();
    let mut g = Guest::new(&mem);
    let mut s = connect(&mut g, &mut mux, &host, 40002);
    g.send(&mut mux, hdr(op::RW, 40002, HOST_PORT, 7), b"request");
    // The guest will send no more (shutdown(SHUT_WR), as nc does).
    let sd = Header {
        flags: shutdown::SEND,
        ..hdr(op::SHUTDOWN, 40002, HOST_PORT, 0)
    };
    g.send(&mut mux, sd, &[]);
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"request", "the host sees the bytes, then EOF");
    s.write_all(b"reply").unwrap();
    let (h, p) = g.recv_wait(&mut mux);
    assert_eq!((h.op, p.as_slice()), (op::RW, &b"reply"[..]));
    drop(s);
    let (h, _) = g.recv_wait(&mut mux);
    assert_eq!((h.op, h.flags), (op::SHUTDOWN, shutdown::BOTH));
    // The guest's own full close is answered with RST.
    let sd = Header {
        flags: shutdown::BOTH,
        ..hdr(op::SHUTDOWN, 40002, HOST_PORT, 0)
    };
    g.send(&mut mux, sd, &[]);
    assert_eq!(g.recv_wait(&mut mux).0.op, op::RST);
}

#[test]
fn guest_full_shutdown_is_answered_with_rst_and_closes_the_host_socket() {
    let (_dir, uds, mut mux) = mux();
    let host = listen(&uds);
    let mem = memory();
    let mut g = Guest::new(&mem);
    let mut s = connect(&mut g, &mut mux, &host, 40003);
    let sd = Header {
        flags: shutdown::BOTH,
        ..hdr(op::SHUTDOWN, 40003, HOST_PORT, 0)
    };
    g.send(&mut mux, sd, &[]);
    assert_eq!(g.recv_wait(&mut mux).0.op, op::RST);
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert!(got.is_empty());
    g.send(&mut mux, hdr(op::RW, 40003, HOST_PORT, 1), b"x");
    assert_eq!(
        g.recv_wait(&mut mux).0.op,
        op::RST,
        "the connection is gone"
    );
}
