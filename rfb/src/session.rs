//! One client connection as a state machine with no I/O ("sans-IO"): bytes the client
//! sent go in through [`Session::feed`], what the server must send comes out of
//! [`Session::take_output`], and what the server must decide or do (check a password,
//! apply the share policy, deliver input) comes back as [`Event`]s. The threaded server
//! in [`crate::server`] drives it over a socket; the tests drive it with byte vectors.
//!
//! Step by step (RFC 6143 §7):
//! 1. the server sends `RFB 003.008\n`; the client answers with its version (3.3, 3.7,
//!    3.8 and the UltraVNC/Apple variants, which are 3.3 or 3.8 to us);
//! 2. security: 3.7+ gets a list to choose from, 3.3 is told the one type; VNC
//!    Authentication sends a challenge and [`Event::AuthResponse`] asks the server to
//!    check the answer ([`Session::auth_result`]);
//! 3. ClientInit's shared flag comes back as [`Event::ClientInit`]; the server applies
//!    its share policy and calls [`Session::server_init`] (or drops the client);
//! 4. then client messages until the end; the server adds damage
//!    ([`Session::add_damage`]) and, whenever [`Session::wants_update`], writes one
//!    FramebufferUpdate ([`Session::write_update`]).

use crate::auth::{self, CHALLENGE_LEN};
use crate::encoding::{self, Encodings};
use crate::error::ProtocolError;
use crate::pixel::PixelFormat;
use crate::zrle::ZrleEncoder;
use crate::{Framebuffer, Rect};

/// The largest ClientCutText accepted (QEMU's limit too); more drops the client.
pub const MAX_CUT_TEXT: u32 = 1 << 20;
/// At most this many damage rectangles are kept; more merge into their bounding box.
const MAX_DAMAGE_RECTS: usize = 32;

/// The security a session offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// Security type 1.
    None,
    /// Security type 2 (VNC Authentication).
    VncAuth,
}

impl Security {
    fn code(self) -> u8 {
        match self {
            Security::None => 1,
            Security::VncAuth => 2,
        }
    }
}

/// The protocol minor version agreed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// RFB 3.3.
    V3_3,
    /// RFB 3.7.
    V3_7,
    /// RFB 3.8.
    V3_8,
}

/// Something the server has to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The client answered the VNC Authentication challenge: check it with
    /// [`auth::verify`] against the current password and call [`Session::auth_result`].
    AuthResponse {
        /// The challenge sent.
        challenge: [u8; CHALLENGE_LEN],
        /// The client's answer.
        response: [u8; CHALLENGE_LEN],
    },
    /// ClientInit: apply the share policy, then [`Session::server_init`].
    ClientInit {
        /// The client accepts other clients beside it.
        shared: bool,
    },
    /// KeyEvent (message 4).
    Key {
        /// Pressed (true) or released.
        down: bool,
        /// The X keysym.
        keysym: u32,
    },
    /// QEMU Extended Key Event (message 255/0): the keysym and the key's XT scancode
    /// in QEMU's "qnum" form (0x80 | code for E0-prefixed keys).
    ExtendedKey {
        /// Pressed or released.
        down: bool,
        /// The X keysym (may be 0).
        keysym: u32,
        /// The qnum key number.
        qnum: u32,
    },
    /// PointerEvent (message 5), coordinates as the client sent them.
    Pointer {
        /// Button mask: bit 0 left, 1 middle, 2 right, 3 wheel up, 4 wheel down.
        buttons: u8,
        /// X.
        x: u16,
        /// Y.
        y: u16,
    },
    /// ClientCutText (message 6), Latin-1 as RFB says; the clipboard is not shared
    /// with the guest, so the server only logs it.
    CutText(Vec<u8>),
    /// Input or an update request arrived (the server's refresh can speed up).
    Activity,
}

#[derive(Debug)]
enum State {
    /// Waiting for the client's 12-byte ProtocolVersion.
    Version,
    /// 3.7/3.8: waiting for the one-byte security type choice.
    SecurityChoice,
    /// Waiting for the 16-byte challenge answer.
    AuthAnswer([u8; CHALLENGE_LEN]),
    /// The server is checking the answer.
    AuthPending,
    /// Waiting for the one-byte ClientInit.
    ClientInit,
    /// The server is applying its share policy.
    InitPending,
    /// Normal messages.
    Running,
    /// Something was refused; nothing more is read.
    Closed,
}

/// One client's protocol state.
pub struct Session {
    state: State,
    security: Security,
    version: Version,
    input: Vec<u8>,
    output: Vec<u8>,
    /// The client's pixel format.
    pub pixel_format: PixelFormat,
    /// What the client's SetEncodings allowed.
    pub encodings: Encodings,
    zrle: ZrleEncoder,
    /// An update was requested and not yet sent.
    requested: bool,
    damage: Vec<Rect>,
    /// The size the client knows.
    client_size: (u32, u32),
    /// Pseudo-rectangles owed to the client.
    owe_ext_key_ack: bool,
    owe_pointer_type: bool,
    owe_leds: bool,
    owe_desktop_size_reply: Option<u32>,
    sent_leds: Option<u8>,
    sent_absolute: Option<bool>,
}

impl Session {
    /// A new connection: writes the server's ProtocolVersion.
    pub fn new(security: Security) -> Session {
        Session {
            state: State::Version,
            security,
            version: Version::V3_8,
            input: Vec::new(),
            output: b"RFB 003.008\n".to_vec(),
            pixel_format: PixelFormat::SERVER_DEFAULT,
            encodings: Encodings::default(),
            zrle: ZrleEncoder::default(),
            requested: false,
            damage: Vec::new(),
            client_size: (0, 0),
            owe_ext_key_ack: false,
            owe_pointer_type: false,
            owe_leds: false,
            owe_desktop_size_reply: None,
            sent_leds: None,
            sent_absolute: None,
        }
    }

    /// The protocol version agreed (3.8 until the client answered).
    pub fn version(&self) -> Version {
        self.version
    }

    /// The security type in use.
    pub fn security(&self) -> Security {
        self.security
    }

    /// Whether the session refused the client (failed authentication, bad input): the
    /// server sends what output is left and closes.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Whether ClientInit/ServerInit are done.
    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running)
    }

    /// Bytes to send now (and forgets them).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Whether bytes are waiting to be sent.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Takes bytes from the client; returns what the server must act on. An error
    /// means the client is to be dropped (output queued before it, such as a 3.8
    /// failure reason, should still be sent).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, ProtocolError> {
        let mut input = std::mem::take(&mut self.input);
        input.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut pos = 0;
        let result = loop {
            match self.step(&input[pos..], &mut events) {
                Ok(0) => break Ok(()),
                Ok(n) => pos += n,
                Err(e) => break Err(e),
            }
        };
        input.drain(..pos);
        self.input = input;
        if result.is_err() {
            self.state = State::Closed;
        }
        result.map(|()| events)
    }

    /// Parses one unit of input; returns the bytes it used (0: need more, or waiting
    /// for the server).
    fn step(&mut self, buf: &[u8], events: &mut Vec<Event>) -> Result<usize, ProtocolError> {
        match self.state {
            State::Version => {
                if buf.len() < 12 {
                    return Ok(0);
                }
                self.version = parse_version(&buf[..12])?;
                match self.version {
                    Version::V3_3 => {
                        self.output
                            .extend_from_slice(&u32::from(self.security.code()).to_be_bytes());
                        self.after_security_chosen();
                    }
                    Version::V3_7 | Version::V3_8 => {
                        self.output.extend_from_slice(&[1, self.security.code()]);
                        self.state = State::SecurityChoice;
                    }
                }
                Ok(12)
            }
            State::SecurityChoice => {
                let Some(&chosen) = buf.first() else {
                    return Ok(0);
                };
                if chosen != self.security.code() {
                    if self.version == Version::V3_8 {
                        self.fail_security("security type not offered");
                    }
                    self.state = State::Closed;
                    return Err(ProtocolError::SecurityType(chosen));
                }
                self.after_security_chosen();
                Ok(1)
            }
            State::AuthAnswer(challenge) => {
                if buf.len() < CHALLENGE_LEN {
                    return Ok(0);
                }
                let response: [u8; CHALLENGE_LEN] =
                    buf[..CHALLENGE_LEN].try_into().expect("length checked");
                events.push(Event::AuthResponse {
                    challenge,
                    response,
                });
                self.state = State::AuthPending;
                Ok(CHALLENGE_LEN)
            }
            State::ClientInit => {
                let Some(&shared) = buf.first() else {
                    return Ok(0);
                };
                events.push(Event::ClientInit {
                    shared: shared != 0,
                });
                self.state = State::InitPending;
                Ok(1)
            }
            State::AuthPending | State::InitPending | State::Closed => Ok(0),
            State::Running => self.message(buf, events),
        }
    }

    fn after_security_chosen(&mut self) {
        match self.security {
            Security::None => {
                // 3.8 always sends SecurityResult; 3.3 and 3.7 do not for None.
                if self.version == Version::V3_8 {
                    self.output.extend_from_slice(&0u32.to_be_bytes());
                }
                self.state = State::ClientInit;
            }
            Security::VncAuth => {
                let challenge = auth::challenge();
                self.output.extend_from_slice(&challenge);
                self.state = State::AuthAnswer(challenge);
            }
        }
    }

    /// SecurityResult failed; 3.8 carries a reason string.
    fn fail_security(&mut self, reason: &str) {
        self.output.extend_from_slice(&1u32.to_be_bytes());
        if self.version == Version::V3_8 {
            self.output
                .extend_from_slice(&(reason.len() as u32).to_be_bytes());
            self.output.extend_from_slice(reason.as_bytes());
        }
    }

    /// The server's verdict on [`Event::AuthResponse`]: `Err(reason)` refuses (the
    /// reason reaches 3.8 clients) and closes the session.
    pub fn auth_result(&mut self, result: Result<(), &str>) {
        if !matches!(self.state, State::AuthPending) {
            return;
        }
        match result {
            Ok(()) => {
                self.output.extend_from_slice(&0u32.to_be_bytes());
                self.state = State::ClientInit;
            }
            Err(reason) => {
                self.fail_security(reason);
                self.state = State::Closed;
            }
        }
    }

    /// Answers ClientInit with ServerInit for a `width`×`height` screen named `name`.
    pub fn server_init(&mut self, width: u32, height: u32, name: &str) {
        if !matches!(self.state, State::InitPending) {
            return;
        }
        self.output.extend_from_slice(&(width as u16).to_be_bytes());
        self.output
            .extend_from_slice(&(height as u16).to_be_bytes());
        self.output
            .extend_from_slice(&PixelFormat::SERVER_DEFAULT.to_bytes());
        self.output
            .extend_from_slice(&(name.len() as u32).to_be_bytes());
        self.output.extend_from_slice(name.as_bytes());
        self.client_size = (width, height);
        self.state = State::Running;
    }

    /// One client message; 0 when it is not complete yet.
    fn message(&mut self, buf: &[u8], events: &mut Vec<Event>) -> Result<usize, ProtocolError> {
        let Some(&kind) = buf.first() else {
            return Ok(0);
        };
        let need = |n: usize| buf.len() >= n;
        let be16 = |o: usize| u16::from_be_bytes([buf[o], buf[o + 1]]);
        let be32 = |o: usize| u32::from_be_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]);
        match kind {
            // SetPixelFormat
            0 => {
                if !need(20) {
                    return Ok(0);
                }
                let pf: [u8; 16] = buf[4..20].try_into().expect("length checked");
                self.pixel_format = PixelFormat::parse(&pf)?;
                // Everything must be re-sent in the new format.
                self.add_damage(&[Rect {
                    x: 0,
                    y: 0,
                    w: self.client_size.0,
                    h: self.client_size.1,
                }]);
                Ok(20)
            }
            // SetEncodings
            2 => {
                if !need(4) {
                    return Ok(0);
                }
                let n = usize::from(be16(2));
                if !need(4 + 4 * n) {
                    return Ok(0);
                }
                let list: Vec<i32> = (0..n).map(|i| be32(4 + 4 * i) as i32).collect();
                self.encodings = Encodings::from_list(&list);
                self.owe_ext_key_ack = self.encodings.qemu_ext_key;
                self.owe_pointer_type = self.encodings.pointer_type_change;
                self.sent_absolute = None;
                self.owe_leds = self.encodings.led_state;
                self.sent_leds = None;
                Ok(4 + 4 * n)
            }
            // FramebufferUpdateRequest
            3 => {
                if !need(10) {
                    return Ok(0);
                }
                let incremental = buf[1] != 0;
                let r = Rect {
                    x: u32::from(be16(2)),
                    y: u32::from(be16(4)),
                    w: u32::from(be16(6)),
                    h: u32::from(be16(8)),
                };
                if !incremental {
                    self.add_damage(&[r]);
                }
                self.requested = true;
                events.push(Event::Activity);
                Ok(10)
            }
            // KeyEvent
            4 => {
                if !need(8) {
                    return Ok(0);
                }
                events.push(Event::Key {
                    down: buf[1] != 0,
                    keysym: be32(4),
                });
                events.push(Event::Activity);
                Ok(8)
            }
            // PointerEvent
            5 => {
                if !need(6) {
                    return Ok(0);
                }
                events.push(Event::Pointer {
                    buttons: buf[1],
                    x: be16(2),
                    y: be16(4),
                });
                events.push(Event::Activity);
                Ok(6)
            }
            // ClientCutText
            6 => {
                if !need(8) {
                    return Ok(0);
                }
                let len = be32(4);
                // A negative length is the extended clipboard (not offered): refuse like
                // an oversize one.
                if len > MAX_CUT_TEXT {
                    return Err(ProtocolError::CutTextTooLong(len));
                }
                if !need(8 + len as usize) {
                    return Ok(0);
                }
                events.push(Event::CutText(buf[8..8 + len as usize].to_vec()));
                Ok(8 + len as usize)
            }
            // SetDesktopSize (ExtendedDesktopSize): the guest decides its size; refuse.
            251 => {
                if !need(8) {
                    return Ok(0);
                }
                let screens = usize::from(buf[6]);
                if !need(8 + 16 * screens) {
                    return Ok(0);
                }
                self.owe_desktop_size_reply = Some(encoding::EXT_DESKTOP_PROHIBITED);
                self.requested = true;
                Ok(8 + 16 * screens)
            }
            // QEMU client messages
            255 => {
                if !need(2) {
                    return Ok(0);
                }
                match buf[1] {
                    0 => {
                        if !need(12) {
                            return Ok(0);
                        }
                        events.push(Event::ExtendedKey {
                            down: be16(2) != 0,
                            keysym: be32(4),
                            qnum: be32(8),
                        });
                        events.push(Event::Activity);
                        Ok(12)
                    }
                    // Audio: enable/disable (4 bytes) or set format (10); no audio
                    // device, so nothing is ever sent back.
                    1 => {
                        if !need(4) {
                            return Ok(0);
                        }
                        match be16(2) {
                            0 | 1 => Ok(4),
                            2 if need(10) => Ok(10),
                            2 => Ok(0),
                            _ => Err(ProtocolError::UnknownQemuMessage(1)),
                        }
                    }
                    other => Err(ProtocolError::UnknownQemuMessage(other)),
                }
            }
            other => Err(ProtocolError::UnknownMessage(other)),
        }
    }

    /// Marks part of the screen as changed.
    pub fn add_damage(&mut self, rects: &[Rect]) {
        for r in rects {
            if r.w == 0 || r.h == 0 {
                continue;
            }
            if self.damage.iter().any(|d| d.contains(r)) {
                continue;
            }
            self.damage.retain(|d| !r.contains(d));
            self.damage.push(*r);
        }
        if self.damage.len() > MAX_DAMAGE_RECTS {
            let b = self
                .damage
                .iter()
                .skip(1)
                .fold(self.damage[0], |a, r| a.union(r));
            self.damage = vec![b];
        }
    }

    /// Whether an update should be written now: one was requested and there is
    /// something to say (damage, a pending pseudo-rectangle or a change of `leds`,
    /// `absolute` or the frame size).
    pub fn wants_update(&self, width: u32, height: u32, leds: u8, absolute: bool) -> bool {
        self.is_running()
            && self.requested
            && (!self.damage.is_empty()
                || self.owe_ext_key_ack
                || self.owe_desktop_size_reply.is_some()
                || (self.owe_leds && self.sent_leds != Some(leds))
                || (self.owe_pointer_type && self.sent_absolute != Some(absolute))
                || self.client_size != (width, height))
    }

    /// Writes one FramebufferUpdate with the pending pseudo-rectangles and the damaged
    /// part of `fb`, and clears both. `leds` is the guest's keyboard LED state
    /// (bit 0 scroll, 1 num, 2 caps); `absolute` whether the pointer is absolute.
    pub fn write_update(&mut self, fb: &dyn Framebuffer, leds: u8, absolute: bool) {
        let (w, h) = (fb.width(), fb.height());
        let mut rects: Vec<(Rect, i32, Vec<u8>)> = Vec::new();
        if self.client_size != (w, h) {
            self.client_size = (w, h);
            self.damage = vec![Rect { x: 0, y: 0, w, h }];
            if self.encodings.ext_desktop_size {
                rects.push(encoding::ext_desktop_size(w, h, 0, 0));
            } else if self.encodings.desktop_size {
                rects.push((
                    Rect { x: 0, y: 0, w, h },
                    encoding::DESKTOP_SIZE,
                    Vec::new(),
                ));
            }
        }
        if let Some(status) = self.owe_desktop_size_reply.take() {
            if self.encodings.ext_desktop_size {
                rects.push(encoding::ext_desktop_size(w, h, 1, status));
            }
        }
        if std::mem::take(&mut self.owe_ext_key_ack) {
            rects.push((
                Rect { x: 0, y: 0, w, h },
                encoding::QEMU_EXT_KEY,
                Vec::new(),
            ));
        }
        if self.owe_pointer_type && self.sent_absolute != Some(absolute) {
            self.sent_absolute = Some(absolute);
            rects.push((
                Rect {
                    x: u32::from(absolute),
                    y: 0,
                    w,
                    h,
                },
                encoding::POINTER_TYPE_CHANGE,
                Vec::new(),
            ));
        }
        if self.owe_leds && self.sent_leds != Some(leds) {
            self.sent_leds = Some(leds);
            rects.push((
                Rect {
                    x: 0,
                    y: 0,
                    w: 1,
                    h: 1,
                },
                encoding::LED_STATE,
                vec![leds],
            ));
        }
        let damage: Vec<Rect> = std::mem::take(&mut self.damage)
            .into_iter()
            .filter_map(|r| r.clip(w, h))
            .collect();
        self.output.extend_from_slice(&[0, 0]);
        self.output
            .extend_from_slice(&((rects.len() + damage.len()) as u16).to_be_bytes());
        for (r, enc, data) in rects {
            put_rect_header(&mut self.output, r, enc);
            self.output.extend_from_slice(&data);
        }
        let pixels = fb.pixels();
        for r in damage {
            match self.encodings.preferred {
                encoding::Preferred::Zrle => {
                    put_rect_header(&mut self.output, r, encoding::ZRLE);
                    self.zrle
                        .encode(pixels, w, r, &self.pixel_format, &mut self.output);
                }
                encoding::Preferred::Raw => {
                    put_rect_header(&mut self.output, r, encoding::RAW);
                    encoding::raw(pixels, w, r, &self.pixel_format, &mut self.output);
                }
            }
        }
        self.requested = false;
    }
}

fn put_rect_header(out: &mut Vec<u8>, r: Rect, enc: i32) {
    for v in [r.x, r.y, r.w, r.h] {
        out.extend_from_slice(&(v as u16).to_be_bytes());
    }
    out.extend_from_slice(&enc.to_be_bytes());
}

/// `RFB 003.00x\n` → the version we speak with that client (as QEMU decides: 3.3 for
/// 3.3–3.6, 3.7, and 3.8 for 3.8 and anything newer such as Apple's 3.889).
fn parse_version(b: &[u8]) -> Result<Version, ProtocolError> {
    let bad = || ProtocolError::Version(String::from_utf8_lossy(b).into_owned());
    if &b[..4] != b"RFB " || b[7] != b'.' || b[11] != b'\n' {
        return Err(bad());
    }
    let num = |s: &[u8]| -> Option<u32> {
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| s.iter().fold(0, |a, d| a * 10 + u32::from(d - b'0')))
    };
    let (major, minor) = (
        num(&b[4..7]).ok_or_else(bad)?,
        num(&b[8..11]).ok_or_else(bad)?,
    );
    match (major, minor) {
        (3, 3..=6) => Ok(Version::V3_3),
        (3, 7) => Ok(Version::V3_7),
        (3, m) if m >= 8 => Ok(Version::V3_8),
        _ => Err(bad()),
    }
}
