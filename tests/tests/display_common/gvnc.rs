//! gtk-vnc's `gvnccapture` (Debian package `gvncviewer`; virt-manager's and
//! virt-viewer's VNC library) as a test client: one capture of a VNC display as
//! 0xRRGGBB pixels.

use std::process::Command;

/// Whether `gvnccapture` is installed (tests print why they skip its part).
pub fn available() -> bool {
    Command::new("gvnccapture").arg("--help").output().is_ok()
}

/// Captures the screen of the VNC server on 127.0.0.1:`port`: (width, height, pixels).
pub fn capture(port: u16) -> Result<(u32, u32, Vec<u32>), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let png = dir.path().join("cap.png");
    let out = Command::new("timeout")
        .args(["60", "gvnccapture"])
        .arg(format!("127.0.0.1:{}", i32::from(port) - 5900))
        .arg(&png)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "gvnccapture failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let file = std::fs::File::open(&png).map_err(|e| e.to_string())?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    let bpp = info.color_type.samples();
    let px = buf[..info.buffer_size()]
        .chunks(bpp)
        .map(|c| (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]))
        .collect();
    Ok((info.width, info.height, px))
}
