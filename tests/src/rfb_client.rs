//! A small RFB 3.8 client for the tests that drive the VNC server as a viewer does:
//! handshake (None or VNC Authentication), SetEncodings, key events (plain and QEMU's
//! extended key event), pointer events and Raw screen reads. gtk-vnc's tools cannot be
//! scripted to send input, so the input tests speak the protocol themselves.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// RFB encoding numbers the tests ask for.
pub mod encoding {
    pub const RAW: i32 = 0;
    /// QEMU pointer type change: the server says whether it wants absolute positions.
    pub const QEMU_POINTER_TYPE_CHANGE: i32 = -257;
    /// QEMU extended key event: the client may send XT key numbers with keysyms.
    pub const QEMU_EXTENDED_KEY_EVENT: i32 = -258;
}

/// One connected client.
pub struct RfbClient {
    stream: TcpStream,
    /// Framebuffer size from ServerInit.
    pub width: u16,
    pub height: u16,
}

impl RfbClient {
    /// Connects to 127.0.0.1:`port`, authenticates and sends ClientInit; `Err` carries
    /// the server's failure reason.
    pub fn connect(port: u16, password: Option<&str>, shared: bool) -> Result<RfbClient, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut c = RfbClient {
            stream,
            width: 0,
            height: 0,
        };
        let version = c.read(12)?;
        if version != b"RFB 003.008\n" {
            return Err(format!(
                "server version {:?}",
                String::from_utf8_lossy(&version)
            ));
        }
        c.send(b"RFB 003.008\n");
        let n = c.read(1)?[0];
        let types = c.read(usize::from(n))?;
        let want = if password.is_some() { 2 } else { 1 };
        if !types.contains(&want) {
            return Err(format!("security types {types:?} lack {want}"));
        }
        c.send(&[want]);
        if let Some(pw) = password {
            let challenge: [u8; 16] = c.read(16)?.try_into().expect("16 bytes");
            c.send(&rfb::auth::response(pw, &challenge));
        }
        if c.read(4)? != [0, 0, 0, 0] {
            let n = u32::from_be_bytes(c.read(4)?.try_into().expect("4 bytes")) as usize;
            return Err(String::from_utf8_lossy(&c.read(n)?).into_owned());
        }
        c.send(&[u8::from(shared)]);
        let init = c.read(24)?;
        c.width = u16::from_be_bytes([init[0], init[1]]);
        c.height = u16::from_be_bytes([init[2], init[3]]);
        let name_len = u32::from_be_bytes(init[20..24].try_into().expect("4 bytes")) as usize;
        c.read(name_len)?;
        Ok(c)
    }

    fn read(&mut self, n: usize) -> Result<Vec<u8>, String> {
        let mut b = vec![0; n];
        self.stream
            .read_exact(&mut b)
            .map_err(|e| format!("reading {n} bytes from the VNC server: {e}"))?;
        Ok(b)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("writing to the VNC server");
    }

    /// SetEncodings (message 2).
    pub fn set_encodings(&mut self, encodings: &[i32]) {
        let mut m = vec![2, 0];
        m.extend_from_slice(&(encodings.len() as u16).to_be_bytes());
        for e in encodings {
            m.extend_from_slice(&e.to_be_bytes());
        }
        self.send(&m);
    }

    /// KeyEvent (message 4): an X keysym down or up.
    pub fn key(&mut self, down: bool, keysym: u32) {
        let mut m = vec![4, u8::from(down), 0, 0];
        m.extend_from_slice(&keysym.to_be_bytes());
        self.send(&m);
    }

    /// QEMU extended key event (message 255, subtype 0): the keysym and the key's XT
    /// number (0x80 | code for E0-prefixed keys).
    pub fn ext_key(&mut self, down: bool, keysym: u32, qnum: u32) {
        let mut m = vec![255, 0];
        m.extend_from_slice(&u16::from(down).to_be_bytes());
        m.extend_from_slice(&keysym.to_be_bytes());
        m.extend_from_slice(&qnum.to_be_bytes());
        self.send(&m);
    }

    /// The whole screen (0x00RRGGBB), from one non-incremental FramebufferUpdate in
    /// Raw; asks for Raw only first (the server's pixel format is kept: 32 bpp, LE).
    pub fn screen(&mut self) -> Result<Vec<u32>, String> {
        self.set_encodings(&[encoding::RAW]);
        let mut m = vec![3, 0, 0, 0, 0, 0];
        m.extend_from_slice(&self.width.to_be_bytes());
        m.extend_from_slice(&self.height.to_be_bytes());
        self.send(&m);
        let head = self.read(4)?;
        if head[0] != 0 {
            return Err(format!("server message {} instead of an update", head[0]));
        }
        let (w, h) = (usize::from(self.width), usize::from(self.height));
        let mut px = vec![0u32; w * h];
        for _ in 0..u16::from_be_bytes([head[2], head[3]]) {
            let r = self.read(12)?;
            let f = |o: usize| usize::from(u16::from_be_bytes([r[o], r[o + 1]]));
            let (x, y, rw, rh) = (f(0), f(2), f(4), f(6));
            let enc = i32::from_be_bytes([r[8], r[9], r[10], r[11]]);
            if enc != encoding::RAW {
                return Err(format!("rectangle in encoding {enc}, not Raw"));
            }
            if x + rw > w || y + rh > h {
                return Err(format!("rectangle {rw}x{rh}+{x}+{y} outside {w}x{h}"));
            }
            let data = self.read(rw * rh * 4)?;
            for row in 0..rh {
                for col in 0..rw {
                    let i = (row * rw + col) * 4;
                    px[(y + row) * w + x + col] =
                        u32::from_le_bytes(data[i..i + 4].try_into().expect("4 bytes")) & 0xff_ffff;
                }
            }
        }
        Ok(px)
    }

    /// PointerEvent (message 5): button mask and position.
    pub fn pointer(&mut self, buttons: u8, x: u16, y: u16) {
        let mut m = vec![5, buttons];
        m.extend_from_slice(&x.to_be_bytes());
        m.extend_from_slice(&y.to_be_bytes());
        self.send(&m);
    }
}
