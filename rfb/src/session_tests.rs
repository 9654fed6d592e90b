//! The session against byte vectors: handshakes for each version and security type,
//! messages, updates (Raw and ZRLE decoded back), pseudo-rectangles, bad input.

use crate::auth;
use crate::session::{Event, Security, Session, Version};
use crate::zrle::decode::ZrleDecoder;
use crate::{Image, Rect};

fn image(w: u32, h: u32) -> Image {
    Image {
        width: w,
        height: h,
        pixels: (0..w * h).map(|i| (i * 0x010307) & 0xffffff).collect(),
    }
}

/// A session past ServerInit (3.8, no auth) with the output drained.
fn running(w: u32, h: u32) -> Session {
    let mut s = Session::new(Security::None);
    s.take_output();
    s.feed(b"RFB 003.008\n").unwrap();
    s.feed(&[1]).unwrap();
    assert_eq!(
        s.feed(&[1]).unwrap(),
        vec![Event::ClientInit { shared: true }]
    );
    s.server_init(w, h, "g");
    s.take_output();
    s
}

fn set_encodings(s: &mut Session, list: &[i32]) {
    let mut m = vec![2, 0];
    m.extend_from_slice(&(list.len() as u16).to_be_bytes());
    for e in list {
        m.extend_from_slice(&e.to_be_bytes());
    }
    s.feed(&m).unwrap();
}

fn request(s: &mut Session, incremental: bool, w: u16, h: u16) {
    let mut m = vec![3, u8::from(incremental), 0, 0, 0, 0];
    m.extend_from_slice(&w.to_be_bytes());
    m.extend_from_slice(&h.to_be_bytes());
    s.feed(&m).unwrap();
}

/// Rectangles of one FramebufferUpdate: (x, y, w, h, encoding, payload offset).
fn rects(out: &[u8]) -> Vec<(u16, u16, u16, u16, i32, usize)> {
    assert_eq!(out[0], 0, "not a FramebufferUpdate");
    let n = u16::from_be_bytes([out[2], out[3]]);
    let mut v = Vec::new();
    let mut pos = 4;
    for _ in 0..n {
        let f = |o: usize| u16::from_be_bytes([out[pos + o], out[pos + o + 1]]);
        let enc = i32::from_be_bytes(out[pos + 8..pos + 12].try_into().unwrap());
        let (w, h) = (f(4), f(6));
        v.push((f(0), f(2), w, h, enc, pos + 12));
        pos += 12
            + match enc {
                0 => usize::from(w) * usize::from(h) * 4,
                16 => 4 + u32::from_be_bytes(out[pos + 12..pos + 16].try_into().unwrap()) as usize,
                -261 => 1,
                -308 => 20,
                _ => 0,
            };
    }
    assert_eq!(pos, out.len(), "trailing bytes after the update");
    v
}

#[test]
fn v3_8_none_handshake_bytes() {
    let mut s = Session::new(Security::None);
    assert_eq!(s.take_output(), b"RFB 003.008\n");
    assert!(s.feed(b"RFB 003.008\n").unwrap().is_empty());
    assert_eq!(s.take_output(), [1, 1]); // one type: None
    assert!(s.feed(&[1]).unwrap().is_empty());
    assert_eq!(s.take_output(), [0, 0, 0, 0]); // SecurityResult OK
    assert_eq!(
        s.feed(&[0]).unwrap(),
        vec![Event::ClientInit { shared: false }]
    );
    s.server_init(640, 480, "dom");
    let mut want = vec![0x02, 0x80, 0x01, 0xe0];
    want.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
    want.extend_from_slice(&[0, 0, 0, 3]);
    want.extend_from_slice(b"dom");
    assert_eq!(s.take_output(), want);
    assert!(s.is_running());
}

#[test]
fn v3_3_is_told_the_type_and_gets_no_result_for_none() {
    let mut s = Session::new(Security::None);
    s.take_output();
    s.feed(b"RFB 003.003\n").unwrap();
    assert_eq!(s.version(), Version::V3_3);
    assert_eq!(s.take_output(), [0, 0, 0, 1]);
    assert_eq!(
        s.feed(&[1]).unwrap(),
        vec![Event::ClientInit { shared: true }]
    );
}

#[test]
fn v3_7_none_has_no_security_result() {
    let mut s = Session::new(Security::None);
    s.take_output();
    s.feed(b"RFB 003.007\n").unwrap();
    assert_eq!(s.take_output(), [1, 1]);
    s.feed(&[1]).unwrap();
    assert!(s.take_output().is_empty());
    assert_eq!(
        s.feed(&[1]).unwrap(),
        vec![Event::ClientInit { shared: true }]
    );
}

#[test]
fn versions_other_clients_send() {
    for (line, v) in [
        (&b"RFB 003.889\n"[..], Version::V3_8), // Apple
        (b"RFB 003.006\n", Version::V3_3),      // UltraVNC
        (b"RFB 003.005\n", Version::V3_3),
    ] {
        let mut s = Session::new(Security::None);
        s.feed(line).unwrap();
        assert_eq!(s.version(), v);
    }
    for bad in [&b"RFB 004.000\n"[..], b"HTTP/1.1 200\n", b"RFB 003.00x\n"] {
        let mut s = Session::new(Security::None);
        assert!(s.feed(bad).is_err(), "{bad:?}");
        assert!(s.is_closed());
    }
}

#[test]
fn vnc_auth_accepted() {
    let mut s = Session::new(Security::VncAuth);
    s.take_output();
    s.feed(b"RFB 003.008\n").unwrap();
    assert_eq!(s.take_output(), [1, 2]);
    s.feed(&[2]).unwrap();
    let challenge: [u8; 16] = s.take_output().try_into().expect("16-byte challenge");
    let answer = auth::response("secret", &challenge);
    let ev = s.feed(&answer).unwrap();
    assert_eq!(
        ev,
        vec![Event::AuthResponse {
            challenge,
            response: answer
        }]
    );
    assert!(auth::verify("secret", &challenge, &answer));
    s.auth_result(Ok(()));
    assert_eq!(s.take_output(), [0, 0, 0, 0]);
    assert_eq!(
        s.feed(&[1]).unwrap(),
        vec![Event::ClientInit { shared: true }]
    );
}

#[test]
fn vnc_auth_refused_with_reason_on_3_8_and_without_on_3_3() {
    let mut s = Session::new(Security::VncAuth);
    s.feed(b"RFB 003.008\n").unwrap();
    s.feed(&[2]).unwrap();
    s.take_output();
    s.feed(&[0; 16]).unwrap();
    s.auth_result(Err("Authentication failed"));
    let mut want = vec![0, 0, 0, 1, 0, 0, 0, 21];
    want.extend_from_slice(b"Authentication failed");
    assert_eq!(s.take_output(), want);
    assert!(s.is_closed());
    // Nothing after a refusal is read.
    assert!(s.feed(&[1, 2, 3]).unwrap().is_empty());

    let mut s = Session::new(Security::VncAuth);
    s.take_output();
    s.feed(b"RFB 003.003\n").unwrap();
    let out = s.take_output();
    assert_eq!(&out[..4], [0, 0, 0, 2]);
    assert_eq!(out.len(), 20); // type + challenge
    s.feed(&[0; 16]).unwrap();
    s.auth_result(Err("Authentication failed"));
    assert_eq!(s.take_output(), [0, 0, 0, 1]);
}

#[test]
fn choosing_a_type_not_offered_is_refused() {
    let mut s = Session::new(Security::VncAuth);
    s.feed(b"RFB 003.008\n").unwrap();
    s.take_output();
    assert!(s.feed(&[1]).is_err());
    let out = s.take_output();
    assert_eq!(&out[..4], [0, 0, 0, 1]);
    assert!(s.is_closed());
}

#[test]
fn input_messages_split_across_reads() {
    let mut s = running(4, 4);
    let mut bytes = vec![4, 1, 0, 0, 0, 0, 0xff, 0x0d]; // key down Return
    bytes.extend_from_slice(&[5, 0b101, 0, 10, 0, 20]); // pointer
    bytes.extend_from_slice(&[255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 0x1e]); // ext key 'a'
    bytes.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']); // cut text
    let mut events = Vec::new();
    for b in &bytes {
        events.extend(s.feed(&[*b]).unwrap());
    }
    events.retain(|e| *e != Event::Activity);
    assert_eq!(
        events,
        vec![
            Event::Key {
                down: true,
                keysym: 0xff0d
            },
            Event::Pointer {
                buttons: 5,
                x: 10,
                y: 20
            },
            Event::ExtendedKey {
                down: true,
                keysym: 0x61,
                qnum: 0x1e
            },
            Event::CutText(b"hi".to_vec()),
        ]
    );
}

#[test]
fn garbage_is_an_error() {
    let mut s = running(4, 4);
    assert!(s.feed(&[77, 1, 2, 3]).is_err());
    assert!(s.is_closed());
    let mut s = running(4, 4);
    assert!(s.feed(&[6, 0, 0, 0, 0xff, 0xff, 0xff, 0xf0]).is_err()); // negative/huge cut text
    let mut s = running(4, 4);
    assert!(s.feed(&[255, 9]).is_err());
    let mut s = running(4, 4);
    // A colour-map pixel format.
    assert!(s
        .feed(&[0, 0, 0, 0, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        .is_err());
}

#[test]
fn qemu_audio_messages_are_skipped() {
    let mut s = running(4, 4);
    assert!(s
        .feed(&[255, 1, 0, 0, 255, 1, 0, 2, 3, 2, 0, 0, 0xac, 0x44])
        .unwrap()
        .is_empty());
    assert!(s.feed(&[4, 1, 0, 0, 0, 0, 0, 0x61]).is_ok());
}

#[test]
fn full_raw_update_then_nothing_until_damage() {
    let img = image(5, 3);
    let mut s = running(5, 3);
    request(&mut s, false, 5, 3);
    assert!(s.wants_update(5, 3, 0, false));
    s.write_update(&img, 0, false);
    let out = s.take_output();
    let r = rects(&out);
    assert_eq!(r, vec![(0, 0, 5, 3, 0, 16)]);
    let first = &out[16..20];
    assert_eq!(first, &img.pixels[0].to_le_bytes());
    // Incremental request with no damage: nothing to send.
    request(&mut s, true, 5, 3);
    assert!(!s.wants_update(5, 3, 0, false));
    s.add_damage(&[Rect {
        x: 1,
        y: 1,
        w: 2,
        h: 1,
    }]);
    assert!(s.wants_update(5, 3, 0, false));
    s.write_update(&img, 0, false);
    let out = s.take_output();
    assert_eq!(rects(&out), vec![(1, 1, 2, 1, 0, 16)]);
    assert_eq!(&out[16..20], &img.pixels[6].to_le_bytes());
}

#[test]
fn zrle_update_decodes_to_the_frame_in_the_clients_format() {
    let img = image(130, 70);
    let mut s = running(130, 70);
    set_encodings(&mut s, &[16, 0]);
    request(&mut s, false, 130, 70);
    s.write_update(&img, 0, false);
    let out = s.take_output();
    let r = rects(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].4, 16);
    let mut dec = ZrleDecoder::new();
    let (px, _) = dec.decode(&out[r[0].5..], 130, 70, 3);
    assert_eq!(px, img.pixels);
    // A second, damaged part through the same zlib stream.
    request(&mut s, true, 130, 70);
    s.add_damage(&[Rect {
        x: 60,
        y: 10,
        w: 70,
        h: 50,
    }]);
    s.write_update(&img, 0, false);
    let out = s.take_output();
    let r = rects(&out);
    let (px, _) = dec.decode(&out[r[0].5..], 70, 50, 3);
    for y in 0..50 {
        assert_eq!(
            px[y * 70..(y + 1) * 70],
            img.pixels[(10 + y) * 130 + 60..(10 + y) * 130 + 130]
        );
    }
}

#[test]
fn set_pixel_format_changes_the_raw_bytes() {
    let img = Image {
        width: 1,
        height: 1,
        pixels: vec![0x00ff_0000],
    };
    let mut s = running(1, 1);
    // RGB565 big-endian.
    s.feed(&[
        0, 0, 0, 0, 16, 16, 1, 1, 0, 31, 0, 63, 0, 31, 11, 5, 0, 0, 0, 0,
    ])
    .unwrap();
    request(&mut s, true, 1, 1); // SetPixelFormat damaged the whole screen
    s.write_update(&img, 0, false);
    let out = s.take_output();
    assert_eq!(&out[4..16], [0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]);
    assert_eq!(&out[16..], [0xf8, 0x00]);
}

#[test]
fn qemu_pseudo_encodings_are_acknowledged_once() {
    let img = image(8, 8);
    let mut s = running(8, 8);
    set_encodings(&mut s, &[0, -258, -257, -261]);
    request(&mut s, true, 8, 8);
    assert!(s.wants_update(8, 8, 0b100, true));
    s.write_update(&img, 0b100, true);
    let out = s.take_output();
    let r = rects(&out);
    assert_eq!(
        r.iter().map(|r| (r.0, r.4)).collect::<Vec<_>>(),
        vec![(0, -258), (1, -257), (0, -261)]
    );
    assert_eq!(out[r[2].5], 0b100); // caps lock
    request(&mut s, true, 8, 8);
    assert!(!s.wants_update(8, 8, 0b100, true));
    // Num lock goes on and the pointer becomes relative: both are told.
    assert!(s.wants_update(8, 8, 0b110, false));
    s.write_update(&img, 0b110, false);
    let r = rects(&s.take_output());
    assert_eq!(
        r.iter().map(|r| (r.0, r.4)).collect::<Vec<_>>(),
        vec![(0, -257), (0, -261)]
    );
}

#[test]
fn resize_sends_desktop_size_and_the_whole_new_screen() {
    let mut s = running(8, 8);
    set_encodings(&mut s, &[0, -223]);
    request(&mut s, true, 8, 8);
    let big = image(16, 4);
    assert!(s.wants_update(16, 4, 0, false));
    s.write_update(&big, 0, false);
    let r = rects(&s.take_output());
    assert_eq!(r, vec![(0, 0, 16, 4, -223, 16), (0, 0, 16, 4, 0, 28)]);
}

#[test]
fn extended_desktop_size_answers_set_desktop_size_with_prohibited() {
    let img = image(8, 8);
    let mut s = running(8, 8);
    set_encodings(&mut s, &[0, -308]);
    let mut m = vec![251, 0, 0, 32, 0, 32, 1, 0];
    m.extend_from_slice(&[0; 16]);
    s.feed(&m).unwrap();
    assert!(s.wants_update(8, 8, 0, false));
    s.write_update(&img, 0, false);
    let out = s.take_output();
    let r = rects(&out);
    assert_eq!(r[0].0, 1); // reason 1: this client asked
    assert_eq!((r[0].1, r[0].2, r[0].3, r[0].4), (1, 8, 8, -308)); // status 1: prohibited
    assert_eq!(&out[r[0].5..r[0].5 + 4], [1, 0, 0, 0]); // one screen
}
