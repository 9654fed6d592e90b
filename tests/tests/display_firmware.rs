//! SeaBIOS on the display adapter: a Q35 domain with `<video><model type='vga'/>` and
//! no disk boots Debian's SeaBIOS, which runs the VGA option ROM (`vgabios-stdvga.bin`)
//! from the device's expansion ROM BAR; the ROM sets text mode 3 and loads its font
//! into plane 2, and SeaBIOS prints its banner there. QMP `screendump` must show it:
//! the test reads the 720×400 picture back into text by matching each 9×16 cell
//! against the glyphs of the ROM's own 8×16 font (found in the ROM file), so what is
//! checked is the rendered picture, not the text memory. QMP `send-key` then presses
//! Esc on the PS/2 keyboard, and SeaBIOS's boot menu must appear on the screen.
//!
//! With `<video><model type='virtio'/>` (virtio-vga) SeaBIOS runs
//! `vgabios-virtio.bin` on the same VGA parts, and the banner must show both in the
//! screendump and over VNC in gtk-vnc's `gvnccapture`, and through oxvirtd in
//! `virsh screenshot` (a PNG streamed over the libvirt protocol).

#[path = "display_common/gvnc.rs"]
mod gvnc;
mod qmp_common;
mod rpc_common;

use std::path::Path;
use std::time::{Duration, Instant};

use oxvirt_tests::host::require_seabios;
use oxvirt_tests::spec::serial_xml;
use oxvirt_tests::Vm;
use qmp_common::PyQmp;
use serde_json::json;

/// The VGA BIOS of Debian's seabios package.
const VGABIOS: &str = "/usr/share/seabios/vgabios-stdvga.bin";
/// SeaBIOS draws its banner in ≈ 6 s under QEMU here; allow for a loaded machine.
const BANNER_TIMEOUT: Duration = Duration::from_secs(120);

fn domain(video: &str) -> String {
    format!(
        "<domain type='kvm'>
  <name>fwvga</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <bootmenu enable='yes' timeout='60000'/>
  </os>
  <features><acpi/><apic/></features>
  <devices>
    {video}
{serial}
  </devices>
</domain>
",
        serial = serial_xml("stdio")
    )
}

/// The 8×16 font inside the VGA BIOS: 256 glyphs of 16 bytes, found by glyph 1 (the
/// smiley) following the all-zero glyph 0.
fn rom_font() -> Vec<[u8; 16]> {
    let rom = std::fs::read(VGABIOS).unwrap();
    let smiley = [
        0, 0, 0x7e, 0x81, 0xa5, 0x81, 0x81, 0xbd, 0x99, 0x81, 0x81, 0x7e, 0, 0, 0, 0,
    ];
    let at = rom
        .windows(32)
        .position(|w| w[..16] == [0; 16] && w[16..] == smiley)
        .expect("the 8x16 font in the VGA BIOS");
    rom[at..at + 4096]
        .chunks_exact(16)
        .map(|g| g.try_into().unwrap())
        .collect()
}

/// Parses a binary PPM: (width, height, 0xRRGGBB pixels).
fn parse_ppm(b: &[u8]) -> (u32, u32, Vec<u32>) {
    let text = String::from_utf8_lossy(&b[..b.len().min(32)]).to_string();
    let mut it = text.split_ascii_whitespace();
    assert_eq!(it.next(), Some("P6"));
    let w: u32 = it.next().unwrap().parse().unwrap();
    let h: u32 = it.next().unwrap().parse().unwrap();
    let header = format!("P6\n{w} {h}\n255\n").len();
    let px = b[header..]
        .chunks_exact(3)
        .map(|c| u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]))
        .collect();
    (w, h, px)
}

/// The text on a 9×16-cell screen: each cell's foreground bits (pixels that differ
/// from the cell's 9th column) matched against the font; `?` where nothing matches.
fn read_text(w: u32, h: u32, px: &[u32], font: &[[u8; 16]]) -> Vec<String> {
    let (cols, rows) = (w / 9, h / 16);
    (0..rows)
        .map(|r| {
            let line: String = (0..cols)
                .map(|c| {
                    let at = |x: u32, y: u32| px[((r * 16 + y) * w + c * 9 + x) as usize];
                    let bg = at(8, 0);
                    let mut glyph = [0u8; 16];
                    for (y, g) in glyph.iter_mut().enumerate() {
                        for x in 0..8 {
                            if at(x, y as u32) != bg {
                                *g |= 0x80 >> x;
                            }
                        }
                    }
                    if glyph == [0; 16] {
                        return ' ';
                    }
                    (32u8..127)
                        .find(|&ch| font[usize::from(ch)] == glyph)
                        .map_or('?', char::from)
                })
                .collect();
            line.trim_end().to_string()
        })
        .collect()
}

/// The text of an 80×25 text screen's picture (a line saying what it is otherwise).
fn screen_text(w: u32, h: u32, px: &[u32], font: &[[u8; 16]]) -> Vec<String> {
    if (w, h) == (720, 400) {
        read_text(w, h, px, font)
    } else {
        vec![format!("({w}x{h} picture, not 80x25 text)")]
    }
}

/// Takes screendumps until `want` appears in the text, or fails with the last text.
fn wait_for_text(vm: &Vm, c: &mut PyQmp, dir: &Path, want: &str) -> Vec<String> {
    let font = rom_font();
    let file = dir.join("screen.ppm");
    let deadline = Instant::now() + BANNER_TIMEOUT;
    loop {
        c.ok(
            "screendump",
            json!({"filename": file.to_str().unwrap(), "format": "ppm"}),
        );
        let (w, h, px) = parse_ppm(&std::fs::read(&file).unwrap());
        let text = screen_text(w, h, &px, &font);
        if text.iter().any(|l| l.contains(want)) {
            return text;
        }
        if Instant::now() > deadline {
            vm.fail(&format!(
                "`{want}` not on the screen within {BANNER_TIMEOUT:?}; screen:\n{}",
                text.join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn seabios_banner_on_the_vga_text_screen() {
    if !require_seabios("seabios_banner_on_the_vga_text_screen") {
        return;
    }
    if !Path::new(VGABIOS).exists() {
        eprintln!("SKIPPED: seabios_banner_on_the_vga_text_screen: {VGABIOS} missing (Debian package seabios)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let vm = Vm::start_xml(
        &domain("<video><model type='vga'/></video>"),
        &["--qmp", sock.to_str().unwrap()],
    );
    qmp_common::wait_socket(&sock, Duration::from_secs(30));
    let mut c = PyQmp::connect(&sock);
    let text = wait_for_text(&vm, &mut c, dir.path(), "Press ESC for boot menu.");
    assert!(
        text[0].starts_with("SeaBIOS (version 1."),
        "banner on the first line: {text:?}"
    );
    // With a video device the banner is not on the serial console (no sercon).
    assert!(!vm.console().contains("Press ESC"), "{}", vm.console());
    // A key through QMP send-key reaches SeaBIOS's PS/2 keyboard driver on the
    // i8042: Esc opens the boot menu, drawn on the same screen.
    c.ok(
        "send-key",
        json!({"keys": [{"type": "qcode", "data": "esc"}]}),
    );
    wait_for_text(&vm, &mut c, dir.path(), "Select boot device");
}

/// virtio-vga before any virtio driver: SeaBIOS's virtio VGA BIOS draws its banner on
/// the VGA side, seen in the screendump and by gtk-vnc over VNC.
#[test]
fn seabios_banner_on_virtio_vga_over_vnc() {
    const NAME: &str = "seabios_banner_on_virtio_vga_over_vnc";
    if !require_seabios(NAME) {
        return;
    }
    if !Path::new("/usr/share/seabios/vgabios-virtio.bin").exists() {
        eprintln!("SKIPPED: {NAME}: vgabios-virtio.bin missing (Debian package seabios)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("qmp.sock");
    let vm = Vm::start_xml(
        &domain(
            "<video><model type='virtio' heads='1' primary='yes'/></video>\n    \
             <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>",
        ),
        &["--qmp", sock.to_str().unwrap()],
    );
    qmp_common::wait_socket(&sock, Duration::from_secs(30));
    let mut c = PyQmp::connect(&sock);
    let text = wait_for_text(&vm, &mut c, dir.path(), "Press ESC for boot menu.");
    assert!(
        text[0].starts_with("SeaBIOS (version 1."),
        "banner on the first line: {text:?}"
    );
    let pci = c.ok("query-pci", json!(null)).to_string();
    assert!(
        pci.contains("\"vendor\":6900") && pci.contains("\"device\":4176"),
        "virtio-vga (1af4:1050) in query-pci: {pci}"
    );
    if !gvnc::available() {
        eprintln!(
            "SKIPPED (VNC part): {NAME}: gvnccapture not installed (Debian package gvncviewer)"
        );
        return;
    }
    let info = c.ok("query-vnc", json!(null));
    let port: u16 = info["service"].as_str().unwrap().parse().unwrap();
    let (w, h, px) = gvnc::capture(port).unwrap_or_else(|e| vm.fail(&e));
    let seen = screen_text(w, h, &px, &rom_font());
    assert!(
        seen.iter().any(|l| l.contains("Press ESC for boot menu.")) && seen == text,
        "gvnccapture shows the same banner: {seen:?}, screendump {text:?}"
    );
}

/// The same virtio-vga domain through oxvirtd: `virsh screenshot` streams the banner.
#[test]
fn virsh_screenshot_of_virtio_vga_shows_the_banner() {
    const NAME: &str = "virsh_screenshot_of_virtio_vga_shows_the_banner";
    if !require_seabios(NAME) {
        return;
    }
    let d = rpc_common::Daemon::start();
    let xml =
        domain("<video><model type='virtio'/></video>\n    <graphics type='vnc' autoport='yes'/>")
            .replace(&serial_xml("stdio"), &serial_xml("pty"));
    d.virsh_ok(&["define", d.xml_file("fwvga", &xml).to_str().unwrap()]);
    d.virsh_ok(&["start", "fwvga"]);
    let live = d.virsh_ok(&["dumpxml", "fwvga"]);
    assert!(live.contains("<model type='virtio'"), "{live}");
    let font = rom_font();
    let png = d.dir.path().join("shot.png");
    let deadline = Instant::now() + BANNER_TIMEOUT;
    loop {
        let out = d.virsh_ok(&["screenshot", "fwvga", png.to_str().unwrap()]);
        assert!(out.contains("with type of image/png"), "{out}");
        let file = std::fs::File::open(&png).unwrap();
        let mut reader = png::Decoder::new(std::io::BufReader::new(file))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let n = info.color_type.samples();
        let px: Vec<u32> = buf[..info.buffer_size()]
            .chunks(n)
            .map(|c| (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]))
            .collect();
        let text = screen_text(info.width, info.height, &px, &font);
        if text.iter().any(|l| l.contains("Press ESC for boot menu.")) {
            break;
        }
        if Instant::now() > deadline {
            d.fail(&format!(
                "virsh screenshot never showed the banner; screen:\n{}",
                text.join("\n")
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    d.virsh_ok(&["destroy", "fwvga"]);
}
