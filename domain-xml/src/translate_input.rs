//! `<input>` → the spec's virtio input devices.
//!
//! The PS/2 keyboard and mouse (`bus='ps2'`, which libvirt adds to every x86 domain)
//! are part of the platform: the i8042 is always there, so they need no device.
//! `bus='virtio'` keyboards, tablets and mice become virtio-input functions.
//! `<input type='tablet' bus='usb'>`, which virt-install adds to every domain with
//! graphics, is served by a virtio tablet: oxvirt has no USB controller, and an
//! absolute pointer is what the tablet is there for (a documented deviation: the
//! guest sees virtio-input, which Linux drives with `virtio_input`; Windows needs
//! virtio-win's `vioinput` or falls back to the PS/2 mouse). USB keyboards and mice
//! have no effect (the PS/2 pair serves them).

use machine_spec as ms;

use crate::error::{Error, Result};
use crate::model::*;

fn unsupported<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::unsupported(msg))
}

/// The virtio input devices of `d`.
pub(crate) fn inputs(d: &Devices) -> Result<Vec<ms::Device>> {
    let mut out = Vec::new();
    for (n, i) in d.inputs.iter().enumerate() {
        let bus = i.bus.as_deref();
        let what = match bus {
            Some(b) => format!("<input type='{}' bus='{b}'>", i.input_type),
            None => format!("<input type='{}'>", i.input_type),
        };
        let kind = match i.input_type.as_str() {
            "keyboard" => ms::InputKind::Keyboard,
            "tablet" => ms::InputKind::Tablet,
            "mouse" => ms::InputKind::Mouse,
            _ => return unsupported(format!("{what} is not supported")),
        };
        if !i.children.is_empty() {
            return unsupported(format!("{what} with <source> or <driver> is not supported"));
        }
        let pci = match (bus, kind) {
            (Some("ps2"), ms::InputKind::Keyboard | ms::InputKind::Mouse) => continue,
            (Some("usb"), ms::InputKind::Keyboard | ms::InputKind::Mouse) => continue,
            (Some("usb"), ms::InputKind::Tablet) => None,
            (Some("virtio"), _) => match &i.address {
                None => None,
                Some(Address::Pci(p)) => Some(ms::PciAddress {
                    domain: p.domain,
                    bus: p.bus,
                    slot: p.slot,
                    function: p.function,
                }),
                Some(_) => {
                    return unsupported("<input bus='virtio'>: only PCI addresses are supported")
                }
            },
            _ => return unsupported(format!("{what} is not supported")),
        };
        out.push(ms::Device {
            id: i.alias.clone().unwrap_or_else(|| format!("input{n}")),
            pci,
            boot_index: None,
            kind: ms::DeviceKind::Input(ms::Input {
                kind,
                requested_bus: bus.unwrap_or("").to_string(),
            }),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::spec_from_xml;
    use machine_spec::{DeviceKind, InputKind};

    fn inputs(xml: &str) -> Result<Vec<(InputKind, String)>, String> {
        let dom = format!(
            "<domain type='kvm'><name>v</name><memory unit='MiB'>64</memory>\
             <os><type>hvm</type><kernel>/k</kernel></os><devices>{xml}</devices></domain>"
        );
        let spec = spec_from_xml(&dom).map_err(|e| e.to_string())?;
        Ok(spec
            .devices
            .iter()
            .filter_map(|d| match &d.kind {
                DeviceKind::Input(i) => Some((i.kind, i.requested_bus.clone())),
                _ => None,
            })
            .collect())
    }

    #[test]
    fn buses_map_to_platform_or_virtio() {
        assert_eq!(
            inputs("<input type='mouse' bus='ps2'/><input type='keyboard' bus='ps2'/>").unwrap(),
            vec![]
        );
        assert_eq!(
            inputs("<input type='tablet' bus='usb'/><input type='keyboard' bus='usb'/>").unwrap(),
            vec![(InputKind::Tablet, "usb".into())]
        );
        assert_eq!(
            inputs("<input type='keyboard' bus='virtio'/><input type='tablet' bus='virtio'/>")
                .unwrap(),
            vec![
                (InputKind::Keyboard, "virtio".into()),
                (InputKind::Tablet, "virtio".into())
            ]
        );
        let e = inputs(
            "<input type='passthrough' bus='virtio'><source evdev='/dev/input/event1'/></input>",
        )
        .unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        let e = inputs("<input type='tablet' bus='ps2'/>").unwrap_err();
        assert!(e.contains("type='tablet' bus='ps2'"), "{e}");
    }
}
