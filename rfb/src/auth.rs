//! VNC Authentication (RFC 6143 §7.2.2): the server sends 16 random bytes, the client
//! returns them DES-encrypted (ECB, two blocks) with the password as key — at most 8
//! bytes, zero-padded, each byte bit-reversed (the historic quirk every client has).

use des::cipher::{BlockCipherEncrypt, KeyInit};
use des::Des;

/// Length of the challenge and the response.
pub const CHALLENGE_LEN: usize = 16;

/// The DES key a password makes.
fn key(password: &str) -> [u8; 8] {
    let mut k = [0u8; 8];
    for (dst, src) in k.iter_mut().zip(password.as_bytes()) {
        *dst = src.reverse_bits();
    }
    k
}

/// What a client holding `password` answers to `challenge`.
pub fn response(password: &str, challenge: &[u8; CHALLENGE_LEN]) -> [u8; CHALLENGE_LEN] {
    let cipher = Des::new(&key(password).into());
    let mut out = *challenge;
    for block in out.chunks_exact_mut(8) {
        let mut b: [u8; 8] = block.try_into().expect("8-byte chunk");
        let mut arr = b.into();
        cipher.encrypt_block(&mut arr);
        b = arr.into();
        block.copy_from_slice(&b);
    }
    out
}

/// Whether `answer` proves knowledge of `password`. Compared in constant time.
pub fn verify(
    password: &str,
    challenge: &[u8; CHALLENGE_LEN],
    answer: &[u8; CHALLENGE_LEN],
) -> bool {
    let want = response(password, challenge);
    want.iter()
        .zip(answer)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// 16 unpredictable bytes from the kernel.
pub fn challenge() -> [u8; CHALLENGE_LEN] {
    let mut c = [0u8; CHALLENGE_LEN];
    // getrandom(2) never fails for 16 bytes once the pool is initialised; if it did we
    // fall back to /dev/urandom, and a read failure there still leaves a time-mixed value.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut c))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        c.copy_from_slice(&t.to_le_bytes());
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bits_are_reversed_and_padded() {
        assert_eq!(key("ab"), [0x86, 0x46, 0, 0, 0, 0, 0, 0]);
        // Only the first eight characters count.
        assert_eq!(key("abcdefghij"), key("abcdefgh"));
    }

    #[test]
    fn response_matches_openssl_des_ecb() {
        // printf 0123456789abcdef | openssl enc -des-ecb -nopad -K 8646c626a666e616
        //   -provider legacy -provider default   (the key is "abcdefgh" bit-reversed)
        let challenge: [u8; 16] = *b"0123456789abcdef";
        let r = response("abcdefgh", &challenge);
        assert_eq!(r, EXPECTED_ABCDEFGH);
        assert!(verify("abcdefgh", &challenge, &r));
        assert!(!verify("abcdefgi", &challenge, &r));
    }

    /// Computed independently with `openssl enc -des-ecb` (see the test above).
    const EXPECTED_ABCDEFGH: [u8; 16] = [
        0x2f, 0xf8, 0x41, 0x4e, 0xb7, 0xe9, 0x72, 0x29, 0xe7, 0x2e, 0xa9, 0xd2, 0x6a, 0xfa, 0xfe,
        0xb0,
    ];
}
