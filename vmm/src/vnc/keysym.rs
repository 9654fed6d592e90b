//! X keysyms (what RFB's KeyEvent carries) → Linux key codes, for the en-us layout
//! (QEMU's `-k en-us`, libvirt's default `keymap`). Shifted and unshifted symbols map
//! to the same key: the client sends Shift itself. Clients that know the physical key
//! (gtk-vnc, noVNC, TigerVNC) send QEMU's extended key event instead and skip this
//! table (see [`super::ConsoleBackend`]).
//!
//! Written from the X11 keysym values (X11/keysymdef.h) and linux/input-event-codes.h.

/// The Linux key code for `keysym`, or `None` for symbols with no en-us key.
pub fn to_linux(keysym: u32) -> Option<u16> {
    if let Some(c) = char::from_u32(keysym).filter(|_| keysym < 0x100) {
        return ascii(c.to_ascii_lowercase());
    }
    Some(match keysym {
        0xff08 => 14,                                     // BackSpace
        0xff09 | 0xfe20 => 15,                            // Tab, ISO_Left_Tab
        0xff0d => 28,                                     // Return
        0xff13 => 119,                                    // Pause
        0xff14 => 70,                                     // Scroll_Lock
        0xff15 | 0xff61 => 99,                            // Sys_Req, Print
        0xff1b => 1,                                      // Escape
        0xff50 => 102,                                    // Home
        0xff51 => 105,                                    // Left
        0xff52 => 103,                                    // Up
        0xff53 => 106,                                    // Right
        0xff54 => 108,                                    // Down
        0xff55 => 104,                                    // Page_Up
        0xff56 => 109,                                    // Page_Down
        0xff57 => 107,                                    // End
        0xff63 => 110,                                    // Insert
        0xff67 => 127,                                    // Menu → KEY_COMPOSE
        0xff7f => 69,                                     // Num_Lock
        0xff8d => 96,                                     // KP_Enter
        0xff95 | 0xffb7 => 71,                            // KP_Home, KP_7
        0xff96 | 0xffb4 => 75,                            // KP_Left, KP_4
        0xff97 | 0xffb8 => 72,                            // KP_Up, KP_8
        0xff98 | 0xffb6 => 77,                            // KP_Right, KP_6
        0xff99 | 0xffb2 => 80,                            // KP_Down, KP_2
        0xff9a | 0xffb9 => 73,                            // KP_Prior, KP_9
        0xff9b | 0xffb3 => 81,                            // KP_Next, KP_3
        0xff9c | 0xffb1 => 79,                            // KP_End, KP_1
        0xff9d | 0xffb5 => 76,                            // KP_Begin, KP_5
        0xff9e | 0xffb0 => 82,                            // KP_Insert, KP_0
        0xff9f | 0xffae => 83,                            // KP_Delete, KP_Decimal
        0xffaa => 55,                                     // KP_Multiply
        0xffab => 78,                                     // KP_Add
        0xffad => 74,                                     // KP_Subtract
        0xffaf => 98,                                     // KP_Divide
        0xffbe..=0xffc7 => 59 + (keysym - 0xffbe) as u16, // F1..F10
        0xffc8 => 87,                                     // F11
        0xffc9 => 88,                                     // F12
        0xffe1 => 42,                                     // Shift_L
        0xffe2 => 54,                                     // Shift_R
        0xffe3 => 29,                                     // Control_L
        0xffe4 => 97,                                     // Control_R
        0xffe5 => 58,                                     // Caps_Lock
        0xffe7 | 0xffeb => 125,                           // Meta_L, Super_L
        0xffe8 | 0xffec => 126,                           // Meta_R, Super_R
        0xffe9 => 56,                                     // Alt_L
        0xffea | 0xfe03 => 100,                           // Alt_R, ISO_Level3_Shift (AltGr)
        0xffff => 111,                                    // Delete
        _ => return None,
    })
}

/// Printable ASCII (lower case) → key.
fn ascii(c: char) -> Option<u16> {
    const LETTERS: [u16; 26] = [
        30, 48, 46, 32, 18, 33, 34, 35, 23, 36, 37, 38, 50, 49, 24, 25, 16, 19, 31, 20, 22, 47, 17,
        45, 21, 44,
    ];
    Some(match c {
        'a'..='z' => LETTERS[(c as u8 - b'a') as usize],
        '1'..='9' => 2 + (c as u8 - b'1') as u16,
        '0' | ')' => 11,
        '!' => 2,
        '@' => 3,
        '#' => 4,
        '$' => 5,
        '%' => 6,
        '^' => 7,
        '&' => 8,
        '*' => 9,
        '(' => 10,
        '-' | '_' => 12,
        '=' | '+' => 13,
        '[' | '{' => 26,
        ']' | '}' => 27,
        ';' | ':' => 39,
        '\'' | '"' => 40,
        '`' | '~' => 41,
        '\\' | '|' => 43,
        ',' | '<' => 51,
        '.' | '>' => 52,
        '/' | '?' => 53,
        ' ' => 57,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_and_their_shifted_forms() {
        assert_eq!(to_linux(u32::from(b'a')), Some(30)); // KEY_A
        assert_eq!(to_linux(u32::from(b'A')), Some(30));
        assert_eq!(to_linux(u32::from(b'q')), Some(16)); // KEY_Q
        assert_eq!(to_linux(u32::from(b'z')), Some(44)); // KEY_Z
        assert_eq!(to_linux(u32::from(b'm')), Some(50)); // KEY_M
        assert_eq!(to_linux(u32::from(b'1')), Some(2));
        assert_eq!(to_linux(u32::from(b'!')), Some(2));
        assert_eq!(to_linux(u32::from(b'0')), Some(11));
        assert_eq!(to_linux(u32::from(b'?')), Some(53)); // KEY_SLASH
        assert_eq!(to_linux(u32::from(b' ')), Some(57));
    }

    #[test]
    fn function_and_modifier_keys() {
        assert_eq!(to_linux(0xff0d), Some(28)); // Return → KEY_ENTER
        assert_eq!(to_linux(0xffbe), Some(59)); // F1
        assert_eq!(to_linux(0xffc7), Some(68)); // F10
        assert_eq!(to_linux(0xffc9), Some(88)); // F12
        assert_eq!(to_linux(0xffe3), Some(29)); // Control_L
        assert_eq!(to_linux(0xffe9), Some(56)); // Alt_L
        assert_eq!(to_linux(0xffff), Some(111)); // Delete
        assert_eq!(to_linux(0xff52), Some(103)); // Up
        assert_eq!(to_linux(0x20ac), None); // EuroSign: no en-us key
        assert_eq!(to_linux(0xe9), None); // eacute
    }
}
