//! XDR (RFC 4506) encoding as libvirt's rpcgen-generated code uses it.
//!
//! Written in-house rather than taken from crates.io: `libvirt-xdr` is young and has a
//! single author, `serde-xdr` is GPL (incompatible with our Apache-2.0 licence), and the
//! subset libvirt needs is small: 4-byte big-endian integers (chars and shorts widened to
//! 4 bytes too), 8-byte hypers and doubles, length-prefixed strings and opaques padded to
//! a multiple of 4, fixed opaques, optional values (`T *`) and counted arrays.
//!
//! Decoding never trusts a length from the wire: every string, opaque and array length is
//! checked against its protocol maximum *and* against the bytes left in the packet before
//! anything is allocated, so a hostile 28-byte packet cannot make us reserve gigabytes.

use thiserror::Error;

/// `REMOTE_STRING_MAX`: the longest string libvirt 9.0 accepts (4 MiB).
pub const STRING_MAX: usize = 4 * 1024 * 1024;
/// Default bound for counted arrays without a tighter protocol limit
/// (`REMOTE_DOMAIN_LIST_MAX` and most other list maxima are 16384).
pub const ARRAY_MAX: usize = 16384;

/// What was wrong with an XDR payload.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum XdrError {
    #[error("XDR array length {len} exceeds the maximum {max}")]
    ArrayTooLong { len: usize, max: usize },
    #[error("XDR boolean/optional discriminant {0} is neither 0 nor 1")]
    BadDiscriminant(u32),
    #[error("XDR string is not valid UTF-8")]
    NotUtf8,
    #[error("XDR string/opaque length {len} exceeds the maximum {max}")]
    TooLong { len: usize, max: usize },
    #[error("XDR payload has {0} bytes left over after the last field")]
    TrailingBytes(usize),
    #[error("XDR payload truncated: needed {needed} bytes at offset {at}, {left} left")]
    Truncated {
        at: usize,
        needed: usize,
        left: usize,
    },
    #[error("XDR union discriminant {0} is not known")]
    UnknownUnionArm(i32),
}

/// Reads XDR values from a byte slice, front to back.
#[derive(Debug)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless every byte was consumed (libvirt rejects trailing garbage too).
    pub fn finish(&self) -> Result<(), XdrError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(XdrError::TrailingBytes(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        if n > self.remaining() {
            return Err(XdrError::Truncated {
                at: self.pos,
                needed: n,
                left: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u32(&mut self) -> Result<u32, XdrError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self) -> Result<i32, XdrError> {
        self.u32().map(|v| v as i32)
    }

    pub fn u64(&mut self) -> Result<u64, XdrError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub fn i64(&mut self) -> Result<i64, XdrError> {
        self.u64().map(|v| v as i64)
    }

    pub fn f64(&mut self) -> Result<f64, XdrError> {
        self.u64().map(f64::from_bits)
    }

    /// XDR `bool` (and the 0/1 "present" word of an optional value).
    pub fn bool(&mut self) -> Result<bool, XdrError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            n => Err(XdrError::BadDiscriminant(n)),
        }
    }

    /// Fixed-length opaque (`opaque x[N]`): N bytes plus padding, no length word.
    pub fn opaque_fixed(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let data = self.take(n)?;
        self.take(pad(n))?;
        Ok(data)
    }

    /// Variable-length opaque (`opaque x<max>`).
    pub fn opaque(&mut self, max: usize) -> Result<&'a [u8], XdrError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        self.opaque_fixed(len)
    }

    /// `string s<max>`; libvirt only ever sends UTF-8.
    pub fn string(&mut self, max: usize) -> Result<String, XdrError> {
        let bytes = self.opaque(max)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| XdrError::NotUtf8)
    }

    /// Array count, checked against `max` and against what the payload can still hold
    /// (every XDR item is at least 4 bytes, `min_item` lets callers be stricter).
    pub fn count(&mut self, max: usize, min_item: usize) -> Result<usize, XdrError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(XdrError::ArrayTooLong { len, max });
        }
        let need = len.saturating_mul(min_item.max(1));
        if need > self.remaining() {
            return Err(XdrError::Truncated {
                at: self.pos,
                needed: need,
                left: self.remaining(),
            });
        }
        Ok(len)
    }
}

/// Appends XDR values to a byte buffer.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts after bytes already in `buf` (the packet header).
    pub fn with_buffer(buf: Vec<u8>) -> Self {
        Self { buf }
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }

    pub fn bool(&mut self, v: bool) {
        self.u32(u32::from(v));
    }

    pub fn opaque_fixed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        self.buf.extend(std::iter::repeat_n(0u8, pad(data.len())));
    }

    pub fn opaque(&mut self, data: &[u8]) {
        self.u32(data.len() as u32);
        self.opaque_fixed(data);
    }

    pub fn string(&mut self, s: &str) {
        self.opaque(s.as_bytes());
    }
}

fn pad(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// A value with an XDR representation.
pub trait Xdr: Sized {
    fn encode(&self, e: &mut Encoder);
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError>;
}

/// Decodes a whole payload as one `T`, rejecting trailing bytes.
pub fn from_bytes<T: Xdr>(payload: &[u8]) -> Result<T, XdrError> {
    let mut d = Decoder::new(payload);
    let v = T::decode(&mut d)?;
    d.finish()?;
    Ok(v)
}

/// Encodes one `T` into a fresh buffer.
pub fn to_bytes<T: Xdr>(v: &T) -> Vec<u8> {
    let mut e = Encoder::new();
    v.encode(&mut e);
    e.into_bytes()
}

/// `void`: nothing on the wire.
impl Xdr for () {
    fn encode(&self, _: &mut Encoder) {}
    fn decode(_: &mut Decoder<'_>) -> Result<Self, XdrError> {
        Ok(())
    }
}

macro_rules! xdr_scalar {
    ($t:ty, $m:ident) => {
        impl Xdr for $t {
            fn encode(&self, e: &mut Encoder) {
                e.$m(*self)
            }
            fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
                d.$m()
            }
        }
    };
}
xdr_scalar!(u32, u32);
xdr_scalar!(i32, i32);
xdr_scalar!(u64, u64);
xdr_scalar!(i64, i64);
xdr_scalar!(f64, f64);

/// `remote_nonnull_string` (bounded by `REMOTE_STRING_MAX`).
impl Xdr for String {
    fn encode(&self, e: &mut Encoder) {
        e.string(self)
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        d.string(STRING_MAX)
    }
}

/// `T *` — an optional value: a 0/1 word, then the value when 1.
impl<T: Xdr> Xdr for Option<T> {
    fn encode(&self, e: &mut Encoder) {
        match self {
            None => e.bool(false),
            Some(v) => {
                e.bool(true);
                v.encode(e)
            }
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        if d.bool()? {
            Ok(Some(T::decode(d)?))
        } else {
            Ok(None)
        }
    }
}

/// `T x<ARRAY_MAX>` — a counted array.
impl<T: Xdr> Xdr for Vec<T> {
    fn encode(&self, e: &mut Encoder) {
        e.u32(self.len() as u32);
        for v in self {
            v.encode(e);
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        let n = d.count(ARRAY_MAX, 4)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(T::decode(d)?);
        }
        Ok(out)
    }
}

/// `remote_uuid` = `opaque[16]`.
impl Xdr for [u8; 16] {
    fn encode(&self, e: &mut Encoder) {
        e.opaque_fixed(self)
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        let mut u = [0u8; 16];
        u.copy_from_slice(d.opaque_fixed(16)?);
        Ok(u)
    }
}

/// `char x<MAX>` (security model, label): a counted array of chars, each widened to
/// 4 bytes on the wire. Held as the bytes without the widening.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CharArray(pub Vec<u8>);

/// libvirt's security label/model buffers are 4097 and 256 bytes; take the larger.
const CHAR_ARRAY_MAX: usize = 4097;

impl Xdr for CharArray {
    fn encode(&self, e: &mut Encoder) {
        e.u32(self.0.len() as u32);
        for &c in &self.0 {
            e.i32(i32::from(c as i8));
        }
    }
    fn decode(d: &mut Decoder<'_>) -> Result<Self, XdrError> {
        let n = d.count(CHAR_ARRAY_MAX, 4)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(d.i32()? as u8);
        }
        Ok(Self(out))
    }
}

impl CharArray {
    /// A NUL-terminated C string, as libvirtd sends it (`strlen + 1` chars).
    pub fn c_string(s: &str) -> Self {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        Self(v)
    }
}

/// Declares a struct whose XDR form is its fields in order (what rpcgen generates for
/// a `.x` struct).
macro_rules! xdr_struct {
    ($(#[$m:meta])* pub struct $name:ident { $( $(#[$fm:meta])* pub $f:ident : $t:ty ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name { $( $(#[$fm])* pub $f: $t ),* }

        impl $crate::rpc::xdr::Xdr for $name {
            #[allow(unused_variables)]
            fn encode(&self, e: &mut $crate::rpc::xdr::Encoder) {
                $( self.$f.encode(e); )*
            }
            #[allow(unused_variables)]
            fn decode(
                d: &mut $crate::rpc::xdr::Decoder<'_>,
            ) -> Result<Self, $crate::rpc::xdr::XdrError> {
                Ok(Self { $( $f: $crate::rpc::xdr::Xdr::decode(d)?, )* })
            }
        }
    };
}
pub(crate) use xdr_struct;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_is_length_prefixed_and_padded() {
        let bytes = to_bytes(&"probe1".to_string());
        assert_eq!(bytes, b"\0\0\0\x06probe1\0\0");
        assert_eq!(from_bytes::<String>(&bytes).unwrap(), "probe1");
    }

    #[test]
    fn optional_string_encodes_presence_word() {
        assert_eq!(to_bytes(&None::<String>), [0, 0, 0, 0]);
        let some = to_bytes(&Some("ab".to_string()));
        assert_eq!(some, b"\0\0\0\x01\0\0\0\x02ab\0\0");
    }

    #[test]
    fn huge_string_length_is_rejected_before_allocation() {
        let bytes = [0xff, 0xff, 0xff, 0xf0];
        assert!(matches!(
            from_bytes::<String>(&bytes),
            Err(XdrError::TooLong { .. })
        ));
    }

    #[test]
    fn array_count_larger_than_payload_is_rejected() {
        let bytes = [0, 0, 0x10, 0, 0, 0, 0, 1];
        assert!(matches!(
            from_bytes::<Vec<u32>>(&bytes),
            Err(XdrError::Truncated { .. })
        ));
        let bytes = [0, 1, 0, 0];
        assert!(matches!(
            from_bytes::<Vec<u32>>(&bytes),
            Err(XdrError::ArrayTooLong { .. })
        ));
    }

    #[test]
    fn truncated_and_trailing_payloads_fail() {
        assert!(from_bytes::<u64>(&[0, 0, 0, 1]).is_err());
        assert_eq!(
            from_bytes::<u32>(&[0, 0, 0, 1, 0, 0, 0, 0]),
            Err(XdrError::TrailingBytes(4))
        );
    }

    #[test]
    fn char_array_widens_each_char() {
        let bytes = to_bytes(&CharArray::c_string("no"));
        assert_eq!(
            bytes,
            [0, 0, 0, 3, 0, 0, 0, b'n', 0, 0, 0, b'o', 0, 0, 0, 0]
        );
        assert_eq!(from_bytes::<CharArray>(&bytes).unwrap().0, b"no\0");
    }

    #[test]
    fn hyper_and_double_are_big_endian() {
        assert_eq!(
            to_bytes(&870000000u64),
            [0, 0, 0, 0, 0x33, 0xdb, 0x25, 0x80]
        );
        assert_eq!(from_bytes::<f64>(&to_bytes(&1.5f64)).unwrap(), 1.5);
    }
}
