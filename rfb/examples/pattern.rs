//! Serves a fixed test pattern over VNC until killed: a quick way to try a VNC client
//! against the protocol crate alone (`cargo run -p rfb --example pattern -- 127.0.0.1:5999
//! [password]`), and what the client-compatibility test in `rfb/tests/clients.rs` runs.

use std::net::TcpListener;
use std::sync::Arc;

use rfb::{
    Backend, ClientEvent, Framebuffer, Image, Rect, Security, Server, ServerConfig, SharePolicy,
};

/// The pattern: 64×64 blocks of distinct colours over a gradient.
pub fn pattern(w: u32, h: u32) -> Image {
    let pixels = (0..w * h)
        .map(|i| {
            let (x, y) = (i % w, i / w);
            if (x / 64 + y / 64) % 2 == 0 {
                ((x * 255 / w) << 16) | ((y * 255 / h) << 8) | 0x40
            } else {
                0x00ff_ffff - (((x / 64) * 40) << 8)
            }
        })
        .collect();
    Image {
        width: w,
        height: h,
        pixels,
    }
}

struct Pattern(Arc<Image>);

impl Backend for Pattern {
    fn refresh(&self) -> Vec<Rect> {
        Vec::new()
    }
    fn frame(&self) -> Arc<dyn Framebuffer> {
        self.0.clone()
    }
    fn key(&self, down: bool, keysym: u32, qnum: Option<u32>) {
        println!("key down={down} keysym={keysym:#x} qnum={qnum:?}");
    }
    fn pointer_abs(&self, x: u32, y: u32, _: u32, _: u32) {
        println!("pointer {x} {y}");
    }
    fn pointer_rel(&self, dx: i32, dy: i32) {
        println!("pointer rel {dx} {dy}");
    }
    fn buttons(&self, mask: u8) {
        println!("buttons {mask}");
    }
    fn absolute(&self) -> bool {
        true
    }
    fn leds(&self) -> u8 {
        0
    }
    fn event(&self, e: ClientEvent) {
        println!("{e:?}");
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:5999".into());
    let password = args.next();
    let config = ServerConfig {
        name: "rfb pattern".into(),
        security: if password.is_some() {
            Security::VncAuth
        } else {
            Security::None
        },
        password,
        password_expires: None,
        share_policy: SharePolicy::AllowExclusive,
    };
    let server =
        Server::new(Arc::new(Pattern(Arc::new(pattern(320, 200)))), config).expect("server");
    server
        .listen_tcp(TcpListener::bind(&addr).expect("bind"))
        .expect("listen");
    println!("listening on {addr}");
    loop {
        std::thread::park();
    }
}
