//! Packet framing: a 4-byte big-endian length (counting itself), a 24-byte header and
//! an XDR payload (`src/rpc/virnetprotocol.x` in libvirt).

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::xdr::{Decoder, Encoder};

/// `VIR_NET_MESSAGE_MAX`: the largest packet libvirt sends or accepts (32 MiB).
pub const MAX_PACKET: usize = 32 * 1024 * 1024;
/// Length word + header.
pub const HEADER_LEN: usize = 28;

/// Program numbers.
pub const PROGRAM_REMOTE: u32 = 0x2000_8086;
pub const PROGRAM_QEMU: u32 = 0x2000_8087;
pub const PROGRAM_KEEPALIVE: u32 = 0x6b65_6570;
/// Every program is at version 1.
pub const PROTOCOL_VERSION: u32 = 1;

/// `virNetMessageType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Call = 0,
    Reply = 1,
    Message = 2,
    Stream = 3,
    CallWithFds = 4,
    ReplyWithFds = 5,
    StreamHole = 6,
}

impl MessageType {
    fn from_wire(v: i32) -> Option<Self> {
        Some(match v {
            0 => Self::Call,
            1 => Self::Reply,
            2 => Self::Message,
            3 => Self::Stream,
            4 => Self::CallWithFds,
            5 => Self::ReplyWithFds,
            6 => Self::StreamHole,
            _ => return None,
        })
    }
}

/// `virNetMessageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    Error = 1,
    Continue = 2,
}

impl Status {
    fn from_wire(v: i32) -> Option<Self> {
        Some(match v {
            0 => Self::Ok,
            1 => Self::Error,
            2 => Self::Continue,
            _ => return None,
        })
    }
}

/// `virNetMessageHeader`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub prog: u32,
    pub vers: u32,
    pub proc_: i32,
    pub kind: MessageType,
    pub serial: u32,
    pub status: Status,
}

impl Header {
    /// The reply header for a call: same program, procedure and serial.
    pub fn reply(&self, status: Status) -> Self {
        Self {
            kind: MessageType::Reply,
            status,
            ..*self
        }
    }
}

/// One packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub header: Header,
    pub payload: Vec<u8>,
}

/// Why a packet could not be framed.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("packet length {0} is outside 28..={MAX_PACKET}")]
    BadLength(usize),
    #[error("packet header has unknown message type {0}")]
    BadType(i32),
    #[error("packet header has unknown status {0}")]
    BadStatus(i32),
    #[error("cannot read packet from the client")]
    Io(#[source] std::io::Error),
}

impl Packet {
    /// Parses a complete packet, length word included.
    pub fn parse(bytes: &[u8]) -> Result<Self, FrameError> {
        if bytes.len() < HEADER_LEN || bytes.len() > MAX_PACKET {
            return Err(FrameError::BadLength(bytes.len()));
        }
        let mut d = Decoder::new(bytes);
        let len = d.u32().map_err(|_| FrameError::BadLength(bytes.len()))? as usize;
        if len != bytes.len() {
            return Err(FrameError::BadLength(len));
        }
        Self::parse_body(&bytes[4..])
    }

    /// Parses header + payload (everything after the length word).
    fn parse_body(body: &[u8]) -> Result<Self, FrameError> {
        let mut d = Decoder::new(body);
        let short = |_| FrameError::BadLength(body.len() + 4);
        let prog = d.u32().map_err(short)?;
        let vers = d.u32().map_err(short)?;
        let proc_ = d.i32().map_err(short)?;
        let kind_raw = d.i32().map_err(short)?;
        let serial = d.u32().map_err(short)?;
        let status_raw = d.i32().map_err(short)?;
        let kind = MessageType::from_wire(kind_raw).ok_or(FrameError::BadType(kind_raw))?;
        let status = Status::from_wire(status_raw).ok_or(FrameError::BadStatus(status_raw))?;
        Ok(Self {
            header: Header {
                prog,
                vers,
                proc_,
                kind,
                serial,
                status,
            },
            payload: body[HEADER_LEN - 4..].to_vec(),
        })
    }

    /// Reads one packet. `Ok(None)` at a clean end of stream (between packets).
    pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Self>, FrameError> {
        let mut len = [0u8; 4];
        match r.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(FrameError::Io(e)),
        }
        let len = u32::from_be_bytes(len) as usize;
        // Check before allocating: a bad length must not make us reserve memory.
        if !(HEADER_LEN..=MAX_PACKET).contains(&len) {
            return Err(FrameError::BadLength(len));
        }
        let mut body = vec![0u8; len - 4];
        r.read_exact(&mut body).await.map_err(FrameError::Io)?;
        Self::parse_body(&body).map(Some)
    }
}

/// Encodes a header and payload as one packet, length word included.
pub fn encode(header: &Header, payload: &[u8]) -> Vec<u8> {
    let mut e = Encoder::with_buffer(Vec::with_capacity(HEADER_LEN + payload.len()));
    e.u32((HEADER_LEN + payload.len()) as u32);
    e.u32(header.prog);
    e.u32(header.vers);
    e.i32(header.proc_);
    e.i32(header.kind as i32);
    e.u32(header.serial);
    e.i32(header.status as i32);
    let mut bytes = e.into_bytes();
    bytes.extend_from_slice(payload);
    bytes
}

#[cfg(test)]
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_captured_auth_list_call() {
        let p = Packet::parse(&hex(
            "0000001c 20008086 00000001 00000042 00000000 00000000 00000000",
        ))
        .unwrap();
        assert_eq!(p.header.prog, PROGRAM_REMOTE);
        assert_eq!(p.header.proc_, 66);
        assert_eq!(p.header.kind, MessageType::Call);
        assert!(p.payload.is_empty());
    }

    #[test]
    fn encodes_captured_keepalive_pong() {
        let h = Header {
            prog: PROGRAM_KEEPALIVE,
            vers: 1,
            proc_: 2,
            kind: MessageType::Message,
            serial: 0,
            status: Status::Ok,
        };
        assert_eq!(
            encode(&h, &[]),
            hex("0000001c 6b656570 00000001 00000002 00000002 00000000 00000000")
        );
    }

    #[test]
    fn rejects_bad_lengths_and_types() {
        assert!(Packet::parse(&hex("00000010 20008086 00000001 00000042")).is_err());
        let bad_type = hex("0000001c 20008086 00000001 00000042 00000009 00000000 00000000");
        assert!(matches!(
            Packet::parse(&bad_type),
            Err(FrameError::BadType(9))
        ));
        let lying_len = hex("0000ffff 20008086 00000001 00000042 00000000 00000000 00000000");
        assert!(Packet::parse(&lying_len).is_err());
    }

    #[tokio::test]
    async fn read_refuses_huge_length_without_allocating() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];
        assert!(matches!(
            Packet::read(&mut input).await,
            Err(FrameError::BadLength(_))
        ));
        let mut empty: &[u8] = &[];
        assert!(Packet::read(&mut empty).await.unwrap().is_none());
    }
}
