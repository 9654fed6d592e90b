//! The threaded server over real sockets with a scripted backend: several clients,
//! share policy, password accepted, refused and expired, clients handed over by fd,
//! garbage dropped while the others carry on, input delivered, damage pushed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rfb::{
    auth, Backend, ClientEvent, Framebuffer, Image, Rect, Security, Server, ServerConfig,
    SharePolicy, Stream,
};

#[derive(Default)]
struct Fake {
    frame: Mutex<Option<Arc<Image>>>,
    damage: Mutex<Vec<Rect>>,
    log: Mutex<Vec<String>>,
}

impl Fake {
    fn new(w: u32, h: u32) -> Arc<Fake> {
        let f = Fake::default();
        *f.frame.lock().unwrap() = Some(Arc::new(Image {
            width: w,
            height: h,
            pixels: (0..w * h).map(|i| i & 0xffffff).collect(),
        }));
        Arc::new(f)
    }
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn wait_log(&self, what: &str) {
        let t = Instant::now();
        while !self.log().iter().any(|l| l == what) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "no {what:?} in {:?}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Backend for Fake {
    fn refresh(&self) -> Vec<Rect> {
        std::mem::take(&mut *self.damage.lock().unwrap())
    }
    fn frame(&self) -> Arc<dyn Framebuffer> {
        self.frame.lock().unwrap().clone().unwrap()
    }
    fn key(&self, down: bool, keysym: u32, qnum: Option<u32>) {
        self.log
            .lock()
            .unwrap()
            .push(format!("key {down} {keysym:#x} {qnum:?}"));
    }
    fn pointer_abs(&self, x: u32, y: u32, w: u32, h: u32) {
        self.log
            .lock()
            .unwrap()
            .push(format!("abs {x} {y} {w} {h}"));
    }
    fn pointer_rel(&self, dx: i32, dy: i32) {
        self.log.lock().unwrap().push(format!("rel {dx} {dy}"));
    }
    fn buttons(&self, mask: u8) {
        self.log.lock().unwrap().push(format!("buttons {mask}"));
    }
    fn absolute(&self) -> bool {
        true
    }
    fn leds(&self) -> u8 {
        0
    }
    fn event(&self, e: ClientEvent) {
        let s = match e {
            ClientEvent::Connected(c) => format!("connected {}", c.id),
            ClientEvent::Initialized(c) => format!("initialized {}", c.id),
            ClientEvent::Disconnected(c) => format!("disconnected {}", c.id),
        };
        self.log.lock().unwrap().push(s);
    }
}

fn server(fake: &Arc<Fake>, password: Option<&str>, expires: Option<SystemTime>) -> (Server, u16) {
    let config = ServerConfig {
        name: "test".into(),
        security: if password.is_some() {
            Security::VncAuth
        } else {
            Security::None
        },
        password: password.map(str::to_string),
        password_expires: expires,
        share_policy: SharePolicy::AllowExclusive,
    };
    let s = Server::new(fake.clone(), config).unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    s.listen_tcp(l).unwrap();
    (s, port)
}

fn read_n(s: &mut impl Read, n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    s.read_exact(&mut b).unwrap();
    b
}

/// Handshake as a 3.8 client; returns the stream after ServerInit, or the failure reason.
fn connect<S: Read + Write>(
    mut s: S,
    password: Option<&str>,
    shared: bool,
) -> Result<(S, u16, u16), String> {
    assert_eq!(read_n(&mut s, 12), b"RFB 003.008\n");
    s.write_all(b"RFB 003.008\n").unwrap();
    let types = read_n(&mut s, 2);
    assert_eq!(types[0], 1);
    s.write_all(&[types[1]]).unwrap();
    if types[1] == 2 {
        let c: [u8; 16] = read_n(&mut s, 16).try_into().unwrap();
        s.write_all(&auth::response(password.unwrap_or(""), &c))
            .unwrap();
    }
    let result = read_n(&mut s, 4);
    if result != [0, 0, 0, 0] {
        let len = u32::from_be_bytes(read_n(&mut s, 4).try_into().unwrap()) as usize;
        return Err(String::from_utf8(read_n(&mut s, len)).unwrap());
    }
    s.write_all(&[u8::from(shared)]).unwrap();
    let init = read_n(&mut s, 24);
    let name_len = u32::from_be_bytes(init[20..24].try_into().unwrap()) as usize;
    assert_eq!(read_n(&mut s, name_len), b"test");
    Ok((
        s,
        u16::from_be_bytes([init[0], init[1]]),
        u16::from_be_bytes([init[2], init[3]]),
    ))
}

/// Requests an update and reads one Raw rectangle's pixels.
fn raw_update(s: &mut (impl Read + Write), incremental: bool, w: u16, h: u16) -> (Rect, Vec<u32>) {
    let mut m = vec![3, u8::from(incremental), 0, 0, 0, 0];
    m.extend_from_slice(&w.to_be_bytes());
    m.extend_from_slice(&h.to_be_bytes());
    s.write_all(&m).unwrap();
    let head = read_n(s, 4);
    assert_eq!(head[0], 0);
    assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1);
    let r = read_n(s, 12);
    let f = |o: usize| u32::from(u16::from_be_bytes([r[o], r[o + 1]]));
    let rect = Rect {
        x: f(0),
        y: f(2),
        w: f(4),
        h: f(6),
    };
    assert_eq!(&r[8..12], [0, 0, 0, 0], "raw encoding");
    let px = read_n(s, (rect.w * rect.h * 4) as usize);
    (
        rect,
        px.chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
    )
}

fn tcp(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn is_closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => panic!("still open: {e}"),
        }
    }
}

#[test]
fn screen_input_and_damage_over_tcp() {
    let fake = Fake::new(32, 16);
    let (server, port) = server(&fake, None, None);
    let (mut s, w, h) = connect(tcp(port), None, true).unwrap();
    assert_eq!((w, h), (32, 16));
    let (r, px) = raw_update(&mut s, false, 32, 16);
    assert_eq!(
        r,
        Rect {
            x: 0,
            y: 0,
            w: 32,
            h: 16
        }
    );
    assert_eq!(px, fake.frame().pixels());
    // The guest draws: the damaged part arrives on an incremental request.
    *fake.frame.lock().unwrap() = Some(Arc::new(Image {
        width: 32,
        height: 16,
        pixels: vec![0xabcdef; 512],
    }));
    fake.damage.lock().unwrap().push(Rect {
        x: 3,
        y: 4,
        w: 5,
        h: 6,
    });
    let (r, px) = raw_update(&mut s, true, 32, 16);
    assert_eq!(
        r,
        Rect {
            x: 3,
            y: 4,
            w: 5,
            h: 6
        }
    );
    assert!(px.iter().all(|&p| p == 0xabcdef));
    s.write_all(&[4, 1, 0, 0, 0, 0, 0, 0x61, 5, 1, 0, 7, 0, 9])
        .unwrap();
    fake.wait_log("buttons 1");
    let log = fake.log();
    assert!(log.contains(&"key true 0x61 None".to_string()));
    assert!(log.contains(&"abs 7 9 32 16".to_string()));
    assert_eq!(server.clients().len(), 1);
    drop(s);
    fake.wait_log("disconnected 1");
    assert!(server.clients().is_empty());
    server.shutdown();
}

#[test]
fn password_accepted_refused_and_expired() {
    let fake = Fake::new(8, 8);
    let (server, port) = server(&fake, Some("secret"), None);
    assert!(connect(tcp(port), Some("secret"), true).is_ok());
    assert_eq!(
        connect(tcp(port), Some("wrong"), true).unwrap_err(),
        "Authentication failed"
    );
    server.set_password("other").unwrap();
    assert!(connect(tcp(port), Some("secret"), true).is_err());
    assert!(connect(tcp(port), Some("other"), true).is_ok());
    server
        .expire_password(Some(SystemTime::now() - Duration::from_secs(1)))
        .unwrap();
    assert!(connect(tcp(port), Some("other"), true).is_err());
    server.expire_password(None).unwrap();
    assert!(connect(tcp(port), Some("other"), true).is_ok());
    server.shutdown();
}

#[test]
fn set_password_without_vnc_auth_is_refused() {
    let fake = Fake::new(8, 8);
    let (server, _) = server(&fake, None, None);
    assert_eq!(
        server.set_password("x").unwrap_err().to_string(),
        "Could not set password"
    );
    server.shutdown();
}

#[test]
fn shared_clients_coexist_and_exclusive_one_kicks_them() {
    let fake = Fake::new(8, 8);
    let (server, port) = server(&fake, None, None);
    let (mut a, ..) = connect(tcp(port), None, true).unwrap();
    let (mut b, ..) = connect(tcp(port), None, true).unwrap();
    raw_update(&mut a, false, 8, 8);
    raw_update(&mut b, false, 8, 8);
    assert_eq!(server.clients().len(), 2);
    // gtk-vnc and noVNC ask for exclusive access: the others go.
    let (mut c, ..) = connect(tcp(port), None, false).unwrap();
    assert!(is_closed(&mut a));
    assert!(is_closed(&mut b));
    raw_update(&mut c, false, 8, 8);
    // While it holds the screen, a shared client is refused.
    let mut d = tcp(port);
    assert_eq!(read_n(&mut d, 12), b"RFB 003.008\n");
    d.write_all(b"RFB 003.008\n").unwrap();
    read_n(&mut d, 2);
    d.write_all(&[1]).unwrap();
    read_n(&mut d, 4);
    d.write_all(&[1]).unwrap();
    assert!(is_closed(&mut d));
    raw_update(&mut c, false, 8, 8);
    server.shutdown();
}

#[test]
fn garbage_drops_only_that_client() {
    let fake = Fake::new(8, 8);
    let (server, port) = server(&fake, None, None);
    let (mut good, ..) = connect(tcp(port), None, true).unwrap();
    let mut bad = tcp(port);
    bad.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(is_closed(&mut bad));
    let (mut bad2, ..) = connect(tcp(port), None, true).unwrap();
    bad2.write_all(&[0xee; 64]).unwrap();
    assert!(is_closed(&mut bad2));
    let (_, px) = raw_update(&mut good, false, 8, 8);
    assert_eq!(px.len(), 64);
    server.shutdown();
}

#[test]
fn client_handed_over_by_fd_skips_auth() {
    let fake = Fake::new(4, 4);
    let (server, _) = server(&fake, Some("secret"), None);
    let (ours, theirs) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    server.add_client(Stream::Unix(theirs), true).unwrap();
    let (mut s, w, _) = connect(ours, None, true).unwrap();
    assert_eq!(w, 4);
    raw_update(&mut s, false, 4, 4);
    server.shutdown();
}
