//! `<video>` → the spec's display adapter.
//!
//! `vga` (and a missing model) is QEMU's `VGA`, `bochs` is `bochs-display`, `none`
//! is no adapter. `qxl`, what SPICE-era XML has, runs as `vga` (the guest sees a
//! standard VGA, which Linux and Windows drive with their standard drivers); the spec
//! keeps `requested_model` so the VMM warns and the daemon's live XML can show the
//! device the guest really has. `virtio` is virtio-gpu 2D: `virtio-vga` (with the
//! VGA compatibility, as libvirt makes a primary `virtio`), or `virtio-gpu-pci`
//! when `<model primary='no'>` asks for no VGA. `cirrus`, `vmvga` and `ramfb` are
//! refused with the list of models that exist.

use machine_spec as ms;

use crate::error::{Error, Result};
use crate::model::*;

/// The models oxvirt runs, for messages.
const MODELS: &str = "'vga', 'bochs', 'virtio', 'qxl' (served as 'vga') or 'none'";
/// libvirt's default `vram` for VGA-like devices, in KiB (16 MiB).
const DEFAULT_VRAM_KIB: u64 = 16 << 10;
/// The largest framebuffer BAR offered (bochs-display's limit).
const MAX_VRAM_KIB: u64 = 256 << 10;

fn unsupported<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::unsupported(msg))
}

/// The video devices of `d`: at most one, the primary display.
pub(crate) fn videos(d: &Devices) -> Result<Vec<ms::Device>> {
    let mut out = Vec::new();
    for (i, v) in d.videos.iter().enumerate() {
        let model = v.model_type().unwrap_or("vga");
        if model == "none" {
            if d.videos.len() > 1 {
                return unsupported(
                    "<video><model type='none'> cannot be combined with other video devices",
                );
            }
            continue;
        }
        if i > 0 {
            return unsupported(
                "more than one <video> device is not supported (one display head: the primary video device)",
            );
        }
        out.push(video(v, model)?);
    }
    Ok(out)
}

/// Warnings for the domain log: a `qxl` adapter runs as `vga`.
pub(crate) fn warnings(d: &Devices) -> Vec<String> {
    d.videos
        .iter()
        .filter(|v| v.model_type() == Some("qxl"))
        .map(|_| {
            "<video><model type='qxl'> runs as 'vga': the guest sees a standard VGA \
             adapter (PCI 1234:1111), which Linux and Windows drive with their \
             standard drivers"
                .to_string()
        })
        .collect()
}

fn video(v: &GenericDevice, model: &str) -> Result<ms::Device> {
    let (kind, requested) = match model {
        "vga" => (ms::VideoModel::Vga, None),
        "bochs" => (ms::VideoModel::Bochs, None),
        "qxl" => (ms::VideoModel::Vga, Some("qxl".to_string())),
        "virtio" => {
            let primary = v
                .element
                .get_child("model")
                .and_then(|m| m.get_attr("primary"));
            if primary == Some("no") {
                (ms::VideoModel::VirtioGpu, None)
            } else {
                (ms::VideoModel::VirtioVga, None)
            }
        }
        other => {
            return unsupported(format!(
                "<video><model type='{other}'> is not supported; use {MODELS}"
            ))
        }
    };
    for c in v.element.child_elements() {
        if c.name != "model" && c.name != "driver" {
            return unsupported(format!("<video><{}> is not supported", c.name));
        }
    }
    let m = v.element.get_child("model");
    let attr = |name: &str| m.and_then(|m| m.get_attr(name));
    let kib = |name: &str| -> Result<Option<u64>> {
        attr(name)
            .map(|s| {
                s.parse::<u64>().map_err(|_| {
                    Error::InvalidArg(format!("<video><model {name}='{s}'>: not a number of KiB"))
                })
            })
            .transpose()
    };
    // QEMU's VGA sizes its framebuffer from libvirt's `vram` (vgamem_mb); QXL's VGA
    // part is `vgamem`.
    let vram_kib = if requested.is_some() {
        kib("vgamem")?
    } else {
        kib("vram")?
    }
    .unwrap_or(DEFAULT_VRAM_KIB);
    if vram_kib == 0 || vram_kib > MAX_VRAM_KIB {
        return unsupported(format!(
            "<video><model type='{model}'>: video memory of {vram_kib} KiB is out of range (1 KiB to 256 MiB)"
        ));
    }
    // BARs are powers of two; at least 1 MiB.
    let vram_bytes = (vram_kib * 1024).next_power_of_two().max(1 << 20);
    match attr("heads") {
        None | Some("1") => {}
        Some(h) => {
            return unsupported(format!(
                "<video><model heads='{h}'> is not supported (one head)"
            ))
        }
    }
    if let Some(a) = m.and_then(|m| m.get_child("acceleration")) {
        if a.get_attr("accel3d") == Some("yes") || a.get_attr("accel2d") == Some("yes") {
            return unsupported(
                "<video><model><acceleration accel3d/accel2d='yes'> is not supported",
            );
        }
    }
    let resolution = match m.and_then(|m| m.get_child("resolution")) {
        None => None,
        Some(r) => {
            let num = |n: &str| -> Result<u32> {
                let s = r.get_attr(n).unwrap_or("");
                s.parse().map_err(|_| {
                    Error::InvalidArg(format!(
                        "<video><model><resolution {n}='{s}'>: not a number"
                    ))
                })
            };
            let (width, height) = (num("x")?, num("y")?);
            if width == 0 || height == 0 || width > 16000 || height > 12000 {
                return unsupported(format!(
                    "<video><model><resolution x='{width}' y='{height}'> is out of range (up to 16000×12000)"
                ));
            }
            if u64::from(width) * u64::from(height) * 4 > vram_bytes {
                return unsupported(format!(
                    "<video><model><resolution x='{width}' y='{height}'> does not fit in {} MiB of video memory at 32 bits per pixel",
                    vram_bytes >> 20
                ));
            }
            Some(ms::Resolution { width, height })
        }
    };
    let pci = match &v.address {
        None => None,
        Some(Address::Pci(p)) => Some(ms::PciAddress {
            domain: p.domain,
            bus: p.bus,
            slot: p.slot,
            function: p.function,
        }),
        Some(_) => return unsupported("<video>: only PCI addresses are supported"),
    };
    Ok(ms::Device {
        id: v.alias.clone().unwrap_or_else(|| "video0".into()),
        pci,
        boot_index: None,
        kind: ms::DeviceKind::Video(ms::Video {
            model: kind,
            vram_bytes,
            resolution,
            requested_model: requested,
        }),
    })
}

#[cfg(test)]
mod tests {
    use crate::spec_from_xml;
    use machine_spec::{DeviceKind, VideoModel};

    fn domain(video: &str) -> String {
        format!(
            "<domain type='kvm'><name>v</name><memory unit='MiB'>64</memory>\
             <os><type>hvm</type><kernel>/k</kernel></os><devices>{video}</devices></domain>"
        )
    }

    fn video(xml: &str) -> Result<machine_spec::Video, String> {
        let spec = spec_from_xml(&domain(xml)).map_err(|e| e.to_string())?;
        spec.devices
            .iter()
            .find_map(|d| match &d.kind {
                DeviceKind::Video(v) => Some(v.clone()),
                _ => None,
            })
            .ok_or_else(|| "no video device".into())
    }

    #[test]
    fn models_map_to_the_two_personalities() {
        let v = video("<video/>").unwrap();
        assert_eq!((v.model, v.vram_bytes), (VideoModel::Vga, 16 << 20));
        let v = video("<video><model type='bochs' vram='8192'/></video>").unwrap();
        assert_eq!((v.model, v.vram_bytes), (VideoModel::Bochs, 8 << 20));
        let v = video(
            "<video><model type='qxl' ram='65536' vram='65536' vgamem='16384' heads='1' primary='yes'/></video>",
        )
        .unwrap();
        assert_eq!(v.model, VideoModel::Vga);
        assert_eq!(v.requested_model.as_deref(), Some("qxl"));
        let spec = spec_from_xml(&domain("<video><model type='qxl'/></video>")).unwrap();
        assert!(
            spec.warnings.iter().any(|w| w.contains("runs as 'vga'")),
            "{:?}",
            spec.warnings
        );
        assert_eq!(v.vram_bytes, 16 << 20);
        let v = video(
            "<video><model type='vga' vram='16384'><resolution x='1280' y='800'/></model></video>",
        )
        .unwrap();
        assert_eq!(v.resolution.map(|r| (r.width, r.height)), Some((1280, 800)));
        assert_eq!(
            video("<video><model type='none'/></video>").unwrap_err(),
            "no video device"
        );
    }

    #[test]
    fn virtio_is_virtio_vga_unless_primary_no() {
        let v = video(
            "<video><model type='virtio' heads='1' primary='yes'><resolution x='1280' y='800'/></model></video>",
        )
        .unwrap();
        assert_eq!(v.model, VideoModel::VirtioVga);
        assert_eq!(v.resolution.map(|r| (r.width, r.height)), Some((1280, 800)));
        assert_eq!(v.vram_bytes, 16 << 20);
        let v = video("<video><model type='virtio' primary='no'/></video>").unwrap();
        assert_eq!(v.model, VideoModel::VirtioGpu);
        let e = video("<video><model type='virtio' heads='2'/></video>").unwrap_err();
        assert!(e.contains("heads='2'"), "{e}");
    }

    #[test]
    fn unsupported_models_and_options_are_named() {
        for m in ["cirrus", "vmvga", "ramfb"] {
            let e = video(&format!("<video><model type='{m}'/></video>")).unwrap_err();
            assert!(
                e.contains(&format!("'{m}'")) && e.contains("'vga', 'bochs'"),
                "{e}"
            );
        }
        let e = video("<video><model type='virtio'><acceleration accel3d='yes'/></model></video>")
            .unwrap_err();
        assert!(e.contains("accel3d"), "{e}");
        let e = video("<video><model type='vga' heads='2'/></video>").unwrap_err();
        assert!(e.contains("heads='2'"), "{e}");
        let e = video(
            "<video><model type='vga' vram='4096'><resolution x='4000' y='3000'/></model></video>",
        )
        .unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
        let e = video("<video><model type='vga'/></video><video><model type='bochs'/></video>")
            .unwrap_err();
        assert!(e.contains("more than one"), "{e}");
    }
}
