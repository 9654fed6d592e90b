//! virtio-net data path over a datagram socket pair standing in for the tap.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::virtio::queue_util::testing::{
    add_chain, memory, queue, used, used_idx, CountingInterrupt,
};

const RXQ: u16 = 0;
const TXQ: u16 = 1;

struct Dgram(UnixDatagram);

impl FrameIo for Dgram {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.recv(buf)
    }
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.0.send(frame).map(|_| ())
    }
    fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

fn pair() -> (Box<dyn FrameIo>, UnixDatagram) {
    let (a, b) = UnixDatagram::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    (Box::new(Dgram(a)), b)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&[0x52, 0x54, 0, 1, 2, 3]);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn transmitted_frame_reaches_the_backend_whole() {
    let mem = memory();
    let (io, host) = pair();
    let mut core = NetCore::new(io, Arc::new(AtomicBool::new(true)));
    let (mock, mut aq) = queue(&mem, 0, TXQ);
    let f = frame(b"guest to host");
    mem.write_slice(&f[..VNET_HDR_LEN], GuestAddress(0x10_0000))
        .unwrap();
    mem.write_slice(&f[VNET_HDR_LEN..], GuestAddress(0x11_0000))
        .unwrap();
    add_chain(
        &mock,
        0,
        &[
            (0x10_0000, VNET_HDR_LEN as u32, false),
            (0x11_0000, (f.len() - VNET_HDR_LEN) as u32, false),
        ],
    );
    let intr = CountingInterrupt::default();
    core.transmit(&mut aq, &mem, &intr);
    let mut got = [0u8; 128];
    let n = host.recv(&mut got).unwrap();
    assert_eq!(&got[..n], &f[..]);
    assert_eq!(used(&mem, &mock, 0), (0, 0));
}

#[test]
fn link_down_drops_both_ways() {
    let mem = memory();
    let (io, host) = pair();
    let link = Arc::new(AtomicBool::new(false));
    let mut core = NetCore::new(io, link);
    let (mock, mut tx) = queue(&mem, 0, TXQ);
    mem.write_slice(&frame(b"x"), GuestAddress(0x10_0000))
        .unwrap();
    add_chain(&mock, 0, &[(0x10_0000, frame(b"x").len() as u32, false)]);
    let intr = CountingInterrupt::default();
    core.transmit(&mut tx, &mem, &intr);
    host.set_nonblocking(true).unwrap();
    assert!(
        host.recv(&mut [0u8; 64]).is_err(),
        "nothing sent while link is down"
    );
    host.send(&frame(b"in")).unwrap();
    let (mock_rx, mut rx) = queue(&mem, 0x8000, RXQ);
    add_chain(&mock_rx, 0, &[(0x20_0000, 2048, true)]);
    assert!(!core.receive(&mut rx, &mem, &intr));
    assert_eq!(used_idx(&mem, &mock_rx), 0);
    assert_eq!(core.dropped, 2);
}

#[test]
fn received_frame_waits_for_buffers_then_merges() {
    let mem = memory();
    let (io, host) = pair();
    let mut core = NetCore::new(io, Arc::new(AtomicBool::new(true)));
    core.negotiate(features::MRG_RXBUF);
    let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    let f = frame(&payload);
    host.send(&f).unwrap();
    let (mock, mut rx) = queue(&mem, 0, RXQ);
    let intr = CountingInterrupt::default();
    assert!(
        core.receive(&mut rx, &mem, &intr),
        "frame held without buffers"
    );
    add_chain(&mock, 0, &[(0x20_0000, 2048, true)]);
    assert!(
        core.receive(&mut rx, &mem, &intr),
        "one 2 KiB buffer is not enough"
    );
    assert_eq!(used_idx(&mem, &mock), 0, "partial buffers given back");
    add_chain(&mock, 1, &[(0x30_0000, 2048, true)]);
    assert!(!core.receive(&mut rx, &mem, &intr));
    assert_eq!(used_idx(&mem, &mock), 2);
    assert_eq!(used(&mem, &mock, 0), (0, 2048));
    assert_eq!(used(&mem, &mock, 1).1 as usize, f.len() - 2048);
    let nbuf: u16 = mem.read_obj(GuestAddress(0x20_0000 + 10)).unwrap();
    assert_eq!(nbuf, 2, "num_buffers");
    let mut got = vec![0u8; f.len()];
    mem.read_slice(&mut got[..2048], GuestAddress(0x20_0000))
        .unwrap();
    mem.read_slice(&mut got[2048..], GuestAddress(0x30_0000))
        .unwrap();
    assert_eq!(&got[VNET_HDR_LEN..], &f[VNET_HDR_LEN..]);
    assert_eq!(*intr.queues.lock().unwrap(), vec![RXQ]);
}

#[test]
fn config_has_mac_and_link_and_set_link_interrupts() {
    let (io, _host) = pair();
    let mac = parse_mac("52:54:00:ab:cd:ef").unwrap();
    let net = Net::new("net0", mac, Some(9000), true, io);
    let mut c = [0u8; 12];
    net.read_config(0, &mut c);
    assert_eq!(&c[..6], &mac);
    assert_eq!(u16::from_le_bytes([c[6], c[7]]), 1);
    assert_eq!(u16::from_le_bytes([c[10], c[11]]), 9000);
    assert_ne!(net.features() & features::MTU, 0);
    let ctl = net.control();
    let intr = Arc::new(CountingInterrupt::default());
    *ctl.interrupt.lock().unwrap() = Some(intr.clone());
    ctl.set_link(false);
    net.read_config(6, &mut c[..2]);
    assert_eq!(&c[..2], &[0, 0]);
    assert_eq!(intr.config.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(parse_mac("52:54:00:ab:cd").is_none());
    assert!(parse_mac("52:54:00:ab:cd:ef:01").is_none());
}

#[test]
fn tap_open_creates_a_tap_when_permitted() {
    if !std::path::Path::new("/dev/net/tun").exists() {
        eprintln!("SKIPPED tap_open_creates_a_tap_when_permitted: no /dev/net/tun");
        return;
    }
    match Tap::open(None) {
        Ok(t) => {
            assert!(t.name().starts_with("tap"), "{}", t.name());
            t.set_up().unwrap();
            t.set_offload(libc::TUN_F_CSUM | libc::TUN_F_TSO4).unwrap();
        }
        Err(e) => {
            eprintln!("SKIPPED tap_open_creates_a_tap_when_permitted: {e} (needs CAP_NET_ADMIN)")
        }
    }
}

#[test]
fn multiqueue_tap_queues_detach_and_come_back() {
    const T: &str = "multiqueue_tap_queues_detach_and_come_back";
    let taps = match Tap::open_queues(None, 3) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("SKIPPED {T}: {e} (needs /dev/net/tun and CAP_NET_ADMIN)");
            return;
        }
    };
    assert_eq!(taps.len(), 3);
    let name = taps[0].name().to_string();
    assert!(
        taps.iter().all(|t| t.name() == name),
        "one tap, three queues"
    );
    let flags = std::fs::read_to_string(format!("/sys/class/net/{name}/tun_flags")).unwrap();
    let flags = i32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
    assert_ne!(flags & libc::IFF_MULTI_QUEUE, 0, "tun_flags {flags:#x}");
    taps[2].set_queue_enabled(false).unwrap();
    assert!(
        taps[2].set_queue_enabled(false).is_err(),
        "already detached"
    );
    // A detached queue handed over again (a machine rebuilt on the same
    // descriptors) is attached again and checked.
    use std::os::fd::AsFd;
    let again = Tap::from_fd(taps[2].file().as_fd()).unwrap();
    assert_eq!(again.name(), name);
    assert!(taps[2].set_queue_enabled(true).is_err(), "attached again");
    // One queue makes a plain tap, as before.
    let one = Tap::open_queues(None, 1).unwrap();
    let flags = std::fs::read_to_string(format!("/sys/class/net/{}/tun_flags", one[0].name()));
    let flags = i32::from_str_radix(flags.unwrap().trim().trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & libc::IFF_MULTI_QUEUE, 0);
}

/// Posts one control command (class, command, data) and returns the device's ack.
fn command(
    core: &mut NetCore,
    mem: &GuestMem,
    ctrl: &mut ActiveQueue,
    mock: &virtio_queue::mock::MockSplitQueue<'_, GuestMem>,
    n: u16,
    req: &[u8],
) -> u8 {
    mem.write_slice(req, GuestAddress(0x40_0000)).unwrap();
    mem.write_obj(0xeeu8, GuestAddress(0x41_0000)).unwrap();
    add_chain(
        mock,
        n,
        &[
            (0x40_0000, 2, false),
            (0x40_0002, (req.len() - 2) as u32, false),
            (0x41_0000, 1, true),
        ],
    );
    core.control(ctrl, mem, &CountingInterrupt::default());
    assert_eq!(used(mem, mock, n).1, 1, "the ack byte is the used length");
    mem.read_obj(GuestAddress(0x41_0000)).unwrap()
}

fn frame_to(dest: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = frame(payload);
    f[VNET_HDR_LEN..VNET_HDR_LEN + 6].copy_from_slice(&dest);
    f
}

#[test]
fn control_queue_programs_the_receive_filter_and_the_mac() {
    let mem = memory();
    let (io, host) = pair();
    let mac = parse_mac("52:54:00:00:00:01").unwrap();
    let mut net = Net::new("net0", mac, None, true, io);
    let offered = net.features();
    for f in [
        features::CTRL_VQ,
        features::CTRL_RX,
        features::CTRL_MAC_ADDR,
    ] {
        assert_ne!(offered & f, 0, "feature {f:#x} offered");
    }
    let current = net.filter.clone();
    let mut core = net.cores.remove(0);
    core.negotiate(offered);
    core.negotiate_device(offered);
    let (mock_c, mut ctrl) = queue(&mem, 0x1_0000, CTRLQ);
    let (mock_rx, mut rx) = queue(&mem, 0x2_0000, RXQ);
    let intr = CountingInterrupt::default();
    let other = [0x52, 0x54, 0, 0, 0, 2];
    let deliver = |core: &mut NetCore, rx: &mut ActiveQueue, n: u16, dest: [u8; 6]| {
        host.send(&frame_to(dest, b"x")).unwrap();
        add_chain(
            &mock_rx,
            n,
            &[(0x20_0000 + u64::from(n) * 0x1000, 2048, true)],
        );
        core.receive(rx, &mem, &intr);
        used_idx(&mem, &mock_rx)
    };
    assert_eq!(
        deliver(&mut core, &mut rx, 0, other),
        1,
        "promiscuous at reset"
    );
    // Promiscuous off (class RX, command PROMISC, 0).
    assert_eq!(
        command(&mut core, &mem, &mut ctrl, &mock_c, 0, &[0, 0, 0]),
        0
    );
    assert_eq!(deliver(&mut core, &mut rx, 1, other), 1, "filtered");
    assert_eq!(core.filtered, 1);
    assert_eq!(deliver(&mut core, &mut rx, 1, mac), 2, "our MAC passes");
    // A new MAC address (class MAC, command ADDR_SET): config space shows it.
    let mut req = vec![1, 1];
    req.extend_from_slice(&other);
    assert_eq!(command(&mut core, &mem, &mut ctrl, &mock_c, 1, &req), 0);
    assert_eq!(current.lock().unwrap().mac(), other);
    assert_eq!(deliver(&mut core, &mut rx, 2, other), 3);
    assert_eq!(
        deliver(&mut core, &mut rx, 3, mac),
        3,
        "the old MAC is filtered"
    );
    // Refused: an unknown class, and a command cut short.
    assert_eq!(
        command(&mut core, &mem, &mut ctrl, &mock_c, 2, &[9, 0, 0]),
        1
    );
    assert_eq!(command(&mut core, &mem, &mut ctrl, &mock_c, 3, &[0, 0]), 1);
}

#[test]
fn device_reset_restores_the_configured_mac() {
    let (io, _host) = pair();
    let mac = parse_mac("52:54:00:00:00:01").unwrap();
    let mut net = Net::new("net0", mac, None, true, io);
    net.filter
        .lock()
        .unwrap()
        .apply(&ctrl::Command::MacAddr([2; 6]));
    let mut c = [0u8; 6];
    net.read_config(0, &mut c);
    assert_eq!(c, [2; 6]);
    net.reset();
    net.read_config(0, &mut c);
    assert_eq!(c, mac);
}

/// A queue switch that records what it was told.
struct Switch(Arc<std::sync::Mutex<Vec<bool>>>);

impl QueueSwitch for Switch {
    fn set_enabled(&mut self, on: bool) -> io::Result<()> {
        self.0.lock().unwrap().push(on);
        Ok(())
    }
}

fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn multiqueue_pairs_work_apart_and_the_control_queue_switches_them() {
    let mem = memory();
    let (io0, host0) = pair();
    let (io1, host1) = pair();
    let switched = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mac = parse_mac("52:54:00:00:00:01").unwrap();
    let mut net = Net::multiqueue(
        "net0",
        mac,
        None,
        NetControl::new(true),
        vec![(io0, None), (io1, Some(Box::new(Switch(switched.clone()))))],
    );
    // Until a driver asks for two pairs, the second pair's backend queue is off.
    assert_eq!(*switched.lock().unwrap(), vec![false]);
    let offered = net.features();
    assert_ne!(offered & features::MQ, 0, "MQ offered");
    assert_eq!(
        net.queue_max_sizes().len(),
        5,
        "two pairs and the control queue"
    );
    let mut c = [0u8; 2];
    net.read_config(8, &mut c);
    assert_eq!(u16::from_le_bytes(c), 2, "max_virtqueue_pairs");

    // Five queues, the control queue last (index 4 with MQ).
    let (m_rx0, rx0) = queue(&mem, 0x1_0000, 0);
    let (m_tx0, tx0) = queue(&mem, 0x2_0000, 1);
    let (m_rx1, rx1) = queue(&mem, 0x3_0000, 2);
    let (m_tx1, tx1) = queue(&mem, 0x4_0000, 3);
    let (m_ctl, ctl) = queue(&mem, 0x5_0000, 4);
    add_chain(&m_rx0, 0, &[(0x20_0000, 2048, true)]);
    add_chain(&m_rx1, 0, &[(0x21_0000, 2048, true)]);
    let kicks: Vec<_> = [&tx0, &tx1, &ctl]
        .iter()
        .map(|q| q.kick.try_clone().unwrap())
        .collect();
    let intr = Arc::new(CountingInterrupt::default());
    net.activate(Activation {
        mem: mem.clone(),
        features: offered,
        queues: vec![rx0, tx0, rx1, tx1, ctl],
        interrupt: intr.clone(),
    })
    .unwrap();
    assert_eq!(net.workers.len(), 2, "a worker per pair");

    // Each backend queue's frames land in its own pair's receive queue.
    host1.send(&frame(b"to pair 1")).unwrap();
    eventually("pair 1 receives", || used_idx(&mem, &m_rx1) == 1);
    assert_eq!(used_idx(&mem, &m_rx0), 0, "not on pair 0");
    host0.send(&frame(b"to pair 0")).unwrap();
    eventually("pair 0 receives", || used_idx(&mem, &m_rx0) == 1);

    // Each pair transmits on its own backend queue.
    let f = frame(b"from pair 1");
    mem.write_slice(&f, GuestAddress(0x30_0000)).unwrap();
    add_chain(&m_tx1, 0, &[(0x30_0000, f.len() as u32, false)]);
    kicks[1].write(1).unwrap();
    eventually("pair 1 transmits", || used_idx(&mem, &m_tx1) == 1);
    let mut got = [0u8; 128];
    host1
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let n = host1.recv(&mut got).unwrap();
    assert_eq!(&got[..n], &f[..]);
    assert_eq!(used_idx(&mem, &m_tx0), 0);

    // VQ_PAIRS_SET (class MQ, command 0): 2 switches pair 1's queue on, more than
    // the device has is refused, 1 switches it off again.
    let post = |n: u16, pairs: u16| -> u8 {
        let mut req = vec![4, 0];
        req.extend_from_slice(&pairs.to_le_bytes());
        let at = 0x40_0000 + u64::from(n) * 0x100;
        mem.write_slice(&req, GuestAddress(at)).unwrap();
        add_chain(
            &m_ctl,
            n,
            &[(at, 2, false), (at + 2, 2, false), (at + 0x80, 1, true)],
        );
        kicks[2].write(1).unwrap();
        eventually("control command acked", || used_idx(&mem, &m_ctl) == n + 1);
        mem.read_obj(GuestAddress(at + 0x80)).unwrap()
    };
    assert_eq!(post(0, 2), ctrl::ACK_OK);
    assert_eq!(*switched.lock().unwrap(), vec![false, true]);
    assert_eq!(post(1, 3), ctrl::ACK_ERR, "more pairs than the device has");
    assert_eq!(post(2, 1), ctrl::ACK_OK);
    assert_eq!(*switched.lock().unwrap(), vec![false, true, false]);
    assert_eq!(post(3, 2), ctrl::ACK_OK);

    // A device reset gives every backend back and leaves the first pair only.
    net.reset();
    assert_eq!(net.cores.len(), 2);
    assert!(net.workers.is_empty());
    assert_eq!(
        *switched.lock().unwrap(),
        vec![false, true, false, true, false]
    );
}

#[test]
fn without_mq_the_control_queue_follows_the_first_pair() {
    let mem = memory();
    let (io0, _h0) = pair();
    let (io1, _h1) = pair();
    let mut net = Net::multiqueue(
        "net0",
        parse_mac("52:54:00:00:00:01").unwrap(),
        None,
        NetControl::new(true),
        vec![(io0, None), (io1, None)],
    );
    // A driver without MQ: one pair, the control queue at index 2.
    let offered = net.features() & !features::MQ;
    let (_m_rx0, rx0) = queue(&mem, 0x1_0000, 0);
    let (_m_tx0, tx0) = queue(&mem, 0x2_0000, 1);
    let (m_ctl, ctl) = queue(&mem, 0x3_0000, 2);
    let kick = ctl.kick.try_clone().unwrap();
    net.activate(Activation {
        mem: mem.clone(),
        features: offered,
        queues: vec![rx0, tx0, ctl],
        interrupt: Arc::new(CountingInterrupt::default()),
    })
    .unwrap();
    assert_eq!(net.workers.len(), 1, "one pair in use");
    assert_eq!(net.cores.len(), 1, "the other pair's backend waits");
    // Promiscuous off, on the control queue at index 2.
    mem.write_slice(&[0, 0, 0], GuestAddress(0x40_0000))
        .unwrap();
    add_chain(
        &m_ctl,
        0,
        &[
            (0x40_0000, 2, false),
            (0x40_0002, 1, false),
            (0x41_0000, 1, true),
        ],
    );
    kick.write(1).unwrap();
    eventually("acked", || used_idx(&mem, &m_ctl) == 1);
    let ack: u8 = mem.read_obj(GuestAddress(0x41_0000)).unwrap();
    assert_eq!(ack, ctrl::ACK_OK);
    net.reset();
    assert_eq!(net.cores.len(), 2);
}
