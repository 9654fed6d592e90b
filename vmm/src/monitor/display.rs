//! The display and input commands: `screendump` (PPM or PNG of the primary
//! console), `send-key` (QEMU key numbers or qcodes, pressed in order and released
//! in reverse after `hold-time` ms) and `input-send-event` (key, button, relative and
//! absolute pointer events, QEMU's `InputEvent` union).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use qmp::{CommandFuture, QmpError};
use serde_json::{json, Map, Value};

use super::commands::Commands;
use crate::display::input::ABS_MAX;
use crate::display::keycodes::{qcode_to_linux, qnum_to_linux};
use crate::display::{Console, Image};

/// The commands of this module, in the schema's order.
pub const COMMANDS: &[&str] = &["screendump", "send-key", "input-send-event"];

/// QEMU's default `hold-time` for `send-key`.
const DEFAULT_HOLD_MS: u64 = 100;

impl Commands {
    /// Runs one of [`COMMANDS`].
    pub(crate) fn run_display(&self, command: &str, args: &Map<String, Value>) -> CommandFuture {
        // Input works without a video device too (the PS/2 keyboard is always there).
        let console = match command {
            "screendump" => self.devices.display.clone(),
            _ => self.devices.input.clone().or(self.devices.display.clone()),
        };
        let Some(console) = console else {
            return qmp::ready(Err(QmpError::generic(match command {
                "screendump" => "There is no console to take a screendump from",
                _ => "This machine has no display and input devices for the monitor to use",
            })));
        };
        match command {
            "screendump" => qmp::ready(screendump(&console, args)),
            "send-key" => send_key(console, args),
            _ => qmp::ready(input_send_event(&console, args)),
        }
    }
}

fn screendump(console: &Console, args: &Map<String, Value>) -> Result<Value, QmpError> {
    let filename = args["filename"].as_str().unwrap_or_default();
    if let Some(h) = args.get("head").and_then(Value::as_i64) {
        if h != 0 {
            return Err(QmpError::generic(format!("Head '{h}' does not exist")));
        }
    }
    if let Some(d) = args.get("device").and_then(Value::as_str) {
        // One head: the primary video device (libvirt passes its alias, `video0`).
        if !d.starts_with("video") {
            return Err(QmpError::generic(format!("Device '{d}' not found")));
        }
    }
    console.refresh_all();
    let image = console.image();
    let bytes = match args.get("format").and_then(Value::as_str).unwrap_or("ppm") {
        "png" => {
            encode_png(&image).map_err(|e| QmpError::generic(format!("cannot encode PNG: {e}")))?
        }
        _ => encode_ppm(&image),
    };
    let mut f = std::fs::File::create(filename)
        .map_err(|e| QmpError::generic(format!("failed to open file '{filename}': {e}")))?;
    f.write_all(&bytes)
        .map_err(|e| QmpError::generic(format!("failed to write file '{filename}': {e}")))?;
    Ok(json!({}))
}

/// Binary PPM (P6), as QEMU writes it.
pub fn encode_ppm(image: &Image) -> Vec<u8> {
    let mut out = format!("P6\n{} {}\n255\n", image.width, image.height).into_bytes();
    out.reserve(image.pixels.len() * 3);
    for &p in &image.pixels {
        out.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, p as u8]);
    }
    out
}

/// 8-bit RGB PNG.
pub fn encode_png(image: &Image) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, image.width, image.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    let rgb: Vec<u8> = image
        .pixels
        .iter()
        .flat_map(|&p| [(p >> 16) as u8, (p >> 8) as u8, p as u8])
        .collect();
    w.write_image_data(&rgb)?;
    w.finish()?;
    Ok(out)
}

/// A `KeyValue` (`{"type": "number"|"qcode", "data": …}`) as a Linux key code.
fn key_value(v: &Value) -> Result<u16, QmpError> {
    let data = &v["data"];
    let code = match v["type"].as_str() {
        Some("number") => data
            .as_i64()
            .and_then(|n| u16::try_from(n).ok())
            .and_then(qnum_to_linux),
        Some("qcode") => data.as_str().and_then(qcode_to_linux),
        _ => {
            return Err(QmpError::generic(
                "Parameter 'keys' expects KeyValue objects with type 'number' or 'qcode'",
            ))
        }
    };
    code.ok_or_else(|| QmpError::generic(format!("Invalid parameter 'keys': unknown key {data}")))
}

fn send_key(console: Arc<Console>, args: &Map<String, Value>) -> CommandFuture {
    let keys: Result<Vec<u16>, QmpError> = args["keys"]
        .as_array()
        .map(|a| a.iter().map(key_value).collect())
        .unwrap_or_else(|| Ok(Vec::new()));
    let keys = match keys {
        Ok(k) if !k.is_empty() => k,
        Ok(_) => return qmp::ready(Err(QmpError::generic("Parameter 'keys' is missing"))),
        Err(e) => return qmp::ready(Err(e)),
    };
    let hold = args
        .get("hold-time")
        .and_then(Value::as_u64)
        .filter(|&h| h > 0)
        .unwrap_or(DEFAULT_HOLD_MS);
    let sink = console.input();
    for &k in &keys {
        sink.key(k, true);
    }
    Box::pin(async move {
        tokio::time::sleep(Duration::from_millis(hold)).await;
        for &k in keys.iter().rev() {
            sink.key(k, false);
        }
        Ok(json!({}))
    })
}

/// Button names of QEMU's `InputButton` and their RFB mask bits.
fn button_bit(name: &str) -> Option<u8> {
    Some(match name {
        "left" => 1,
        "middle" => 2,
        "right" => 4,
        "wheel-up" => 8,
        "wheel-down" => 16,
        _ => return None,
    })
}

fn input_send_event(console: &Console, args: &Map<String, Value>) -> Result<Value, QmpError> {
    let bad = |what: String| QmpError::generic(format!("Invalid parameter 'events': {what}"));
    let events = args["events"].as_array().cloned().unwrap_or_default();
    let sink = console.input();
    let router = console.router();
    let (mut abs_x, mut abs_y, mut rel) = (None, None, (0i32, 0i32));
    for e in &events {
        let data = &e["data"];
        match e["type"].as_str() {
            Some("key") => {
                let code = key_value(&data["key"])?;
                sink.key(code, data["down"].as_bool().unwrap_or(false));
            }
            Some("btn") => {
                let name = data["button"].as_str().unwrap_or_default();
                let bit = button_bit(name).ok_or_else(|| bad(format!("button '{name}'")))?;
                router.button(bit, data["down"].as_bool().unwrap_or(false));
            }
            Some(t @ ("abs" | "rel")) => {
                let value = data["value"].as_i64().unwrap_or(0);
                let axis = data["axis"].as_str().unwrap_or_default();
                match (t, axis) {
                    ("abs", "x") => abs_x = Some(value.clamp(0, i64::from(ABS_MAX)) as u32),
                    ("abs", "y") => abs_y = Some(value.clamp(0, i64::from(ABS_MAX)) as u32),
                    ("rel", "x") => rel.0 += value as i32,
                    ("rel", "y") => rel.1 += value as i32,
                    _ => return Err(bad(format!("axis '{axis}'"))),
                }
            }
            other => return Err(bad(format!("event type {}", other.unwrap_or("(none)")))),
        }
    }
    if abs_x.is_some() || abs_y.is_some() {
        router.pointer_abs_scaled(abs_x.unwrap_or(0), abs_y.unwrap_or(0));
    }
    if rel != (0, 0) {
        sink.pointer_rel(rel.0, rel.1);
    }
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_header_and_pixels() {
        let img = Image {
            width: 2,
            height: 1,
            pixels: vec![0x112233, 0xffffff],
        };
        assert_eq!(encode_ppm(&img), b"P6\n2 1\n255\n\x11\x22\x33\xff\xff\xff");
        let png = encode_png(&img).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let mut dec = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut buf = vec![0; dec.output_buffer_size().unwrap()];
        dec.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[..6], &[0x11, 0x22, 0x33, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn key_values() {
        assert_eq!(
            key_value(&json!({"type": "qcode", "data": "ctrl"})).unwrap(),
            29
        );
        assert_eq!(
            key_value(&json!({"type": "number", "data": 29})).unwrap(),
            29
        );
        assert!(key_value(&json!({"type": "qcode", "data": "nope"})).is_err());
        assert!(key_value(&json!({"type": "x"})).is_err());
    }
}
