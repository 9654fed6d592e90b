//! virDomainUpdateDeviceFlags for `<interface>`, the way libvirt's QEMU driver does
//! it: the device XML is parsed with the domain-xml parser, the interface it names
//! is found as `virDomainNetFindIdx` finds it (every identifier the XML gives — MAC,
//! PCI address, alias — must match), and then
//!
//! * live (`qemuDomainChangeNet`): only the link state may change (QMP `set_link`);
//!   anything else that differs is refused with libvirt's "cannot modify …" error;
//! * config (`qemuDomainUpdateDeviceConfig`): the interface is replaced.
//!
//! This module holds the parsing, matching and comparing; `Core::update_device`
//! (in `device.rs`) applies the result.

use domain_xml::{Address, Domain, Interface, PciAddr};

use super::{Error, Result};

/// libvirt's `VIR_ERR_DEVICE_MISSING` text for an interface no rule matched.
const NULL: &str = "(<null>)";

/// An `<interface>` from a device XML, and which identifiers the XML itself gave
/// (the parser fills defaults for the others, which must not take part in matching).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInterface {
    pub iface: Interface,
    /// `<mac address>` was given (else libvirt's `mac_generated`: `iface.mac` is a
    /// generated one, which takes no part in matching).
    pub mac_given: bool,
    /// `<address>` was given.
    pub address_given: bool,
    /// `<alias name>`: parsed for a live update, or a user alias (`ua-…`) for config
    /// only (libvirt parses device XML for a config-only update as inactive XML).
    pub alias: Option<String>,
}

/// Parses the device XML of an update. Only `<interface>` can be updated here;
/// other device elements get libvirt's "… update of device 'x' is not supported".
pub fn parse_device(xml: &str, live: bool) -> Result<DeviceInterface> {
    let doc = roxmltree::Document::parse(xml)
        .map_err(|e| Error::Xml(format!("(device_definition):{e}")))?;
    let root = doc.root_element();
    let name = root.tag_name().name();
    if name != "interface" {
        let kind = device_type(name)
            .ok_or_else(|| Error::ConfigUnsupported(format!("unknown device type '{name}'")))?;
        let how = if live { "live" } else { "persistent" };
        return Err(Error::OperationUnsupported(format!(
            "{how} update of device '{kind}' is not supported"
        )));
    }
    let child = |n: &str| {
        root.children()
            .find(|c| c.is_element() && c.has_tag_name(n))
    };
    let mac_given = child("mac").is_some_and(|m| m.attribute("address").is_some());
    let address_given = child("address").is_some();
    let alias = child("alias")
        .and_then(|a| a.attribute("name"))
        .filter(|a| live || a.starts_with("ua-"))
        .map(str::to_string);
    // The domain-xml parser reads a whole domain: put the element (and only it, without
    // an XML declaration) into the smallest domain.
    let element = &xml[root.range()];
    let dom = Domain::parse(&format!(
        "<domain type='kvm'><name>device</name><memory>1024</memory>\
         <os><type>hvm</type></os><devices>{element}</devices></domain>"
    ))?;
    let mut iface = dom
        .devices
        .interfaces
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal("interface element not parsed".into()))?;
    if !address_given {
        iface.address = None;
    }
    iface.alias = alias.clone();
    Ok(DeviceInterface {
        iface,
        mac_given,
        address_given,
        alias,
    })
}

/// libvirt's `virDomainDeviceType` name of a device element.
fn device_type(element: &str) -> Option<&'static str> {
    const TYPES: &[&str] = &[
        "disk",
        "lease",
        "filesystem",
        "interface",
        "input",
        "sound",
        "video",
        "hostdev",
        "watchdog",
        "controller",
        "graphics",
        "hub",
        "redirdev",
        "smartcard",
        "memballoon",
        "nvram",
        "rng",
        "shmem",
        "tpm",
        "panic",
        "memory",
        "iommu",
        "vsock",
        "audio",
        "crypto",
    ];
    match element {
        "serial" | "parallel" | "console" | "channel" => Some("chr"),
        e => TYPES.iter().copied().find(|t| *t == e),
    }
}

fn pci_of(i: &Interface) -> Option<&PciAddr> {
    match &i.address {
        Some(Address::Pci(p)) => Some(p),
        _ => None,
    }
}

fn pci_string(p: &PciAddr) -> String {
    format!(
        "{:04x}:{:02x}:{:02x}.{}",
        p.domain, p.bus, p.slot, p.function
    )
}

fn same_pci(a: &PciAddr, b: &PciAddr) -> bool {
    (a.domain, a.bus, a.slot, a.function) == (b.domain, b.bus, b.slot, b.function)
}

/// `virDomainNetFindIdx`: the one interface of `ifaces` matching every identifier
/// `dev` gives. `def_aliases` says whether the definition's aliases count: a live
/// definition's do; a persistent one has only user aliases (`ua-…`), the others
/// being assigned at start.
pub fn find(ifaces: &[Interface], dev: &DeviceInterface, def_aliases: bool) -> Result<usize> {
    let want_pci = dev.iface.address.as_ref().and_then(|a| match a {
        Address::Pci(p) => Some(p),
        _ => None,
    });
    let mut found = None;
    for (i, n) in ifaces.iter().enumerate() {
        if dev.mac_given && !n.mac.eq_ignore_ascii_case(&dev.iface.mac) {
            continue;
        }
        if let Some(p) = want_pci {
            if !pci_of(n).is_some_and(|q| same_pci(p, q)) {
                continue;
            }
        }
        let def_alias = n
            .alias
            .as_deref()
            .filter(|a| def_aliases || a.starts_with("ua-"));
        if let (Some(want), Some(have)) = (dev.alias.as_deref(), def_alias) {
            if want != have {
                continue;
            }
        }
        if found.is_some() {
            return Err(Error::OperationFailed(if dev.mac_given {
                format!(
                    "multiple devices matching MAC address {} found",
                    dev.iface.mac
                )
            } else {
                "multiple matching devices found".to_string()
            }));
        }
        found = Some(i);
    }
    found.ok_or_else(|| {
        Error::DeviceMissing(format!(
            "no device found at address '{}' matching MAC address '{}' and alias '{}'",
            want_pci.map(pci_string).as_deref().unwrap_or(NULL),
            if dev.mac_given { &dev.iface.mac } else { NULL },
            dev.alias.as_deref().unwrap_or(NULL),
        ))
    })
}

/// `qemuDomainChangeNet` for what a running oxvirt-vmm can change: compares the
/// running interface `old` with the requested `dev` (identifiers the XML left out
/// are taken from `old`) and returns the new `<link state>` when only it changed,
/// `None` when nothing did, or libvirt's error for the first field that cannot
/// change live.
pub fn live_change(old: &Interface, dev: &DeviceInterface) -> Result<Option<Option<String>>> {
    let unsupported = |m: String| Err(Error::OperationUnsupported(m));
    let new = &dev.iface;
    // Without <mac> libvirt compares the one it generated, and refuses, as here.
    if !old.mac.eq_ignore_ascii_case(&new.mac) {
        return unsupported(format!(
            "cannot change network interface mac address from {} to {}",
            old.mac, new.mac
        ));
    }
    // No model means virtio here (the only model oxvirt-vmm has).
    let model = |i: &Interface| i.model.clone().unwrap_or_else(|| "virtio".into());
    if model(old) != model(new) {
        return unsupported(format!(
            "cannot modify network device model from {} to {}",
            model(old),
            model(new)
        ));
    }
    if new.target_dev.is_some() && new.target_dev != old.target_dev {
        return unsupported("cannot modify network device tap name".into());
    }
    if dev.address_given {
        match (&old.address, &new.address) {
            (Some(Address::Pci(a)), Some(Address::Pci(b))) if !same_pci(a, b) => {
                return unsupported("cannot modify network device guest PCI address".into())
            }
            (Some(Address::Pci(_)), Some(Address::Pci(_))) => {}
            (a, b) if a != b => {
                return unsupported("cannot modify network device address type".into())
            }
            _ => {}
        }
    }
    if old.boot_order != new.boot_order {
        return unsupported("cannot modify network device boot index setting".into());
    }
    if old.mtu != new.mtu {
        return unsupported("cannot modify MTU".into());
    }
    // Type, source, host-side attributes and the other children would need the
    // backend reconnected, which libvirt refuses the same way.
    if old.interface_type != new.interface_type
        || old.source != new.source
        || old.attrs != new.attrs
        || old.extra != new.extra
        || (new.target_managed.is_some() && old.target_managed != new.target_managed)
    {
        return unsupported(format!(
            "unable to change config on '{}' network type",
            new.interface_type
        ));
    }
    if old.link_state == new.link_state {
        return Ok(None);
    }
    if let Some(s) = new.link_state.as_deref() {
        if s != "up" && s != "down" {
            return Err(Error::Xml(format!("unknown interface link state '{s}'")));
        }
    }
    Ok(Some(new.link_state.clone()))
}

/// Whether the guest sees the link up with this `<link state>` (libvirt's
/// "default", no element, is up).
pub fn is_up(state: Option<&str>) -> bool {
    state != Some("down")
}

/// `qemuDomainUpdateDeviceConfig` for an interface: the new definition replaces the
/// old one; identifiers the XML left out keep the old values (libvirt would assign
/// new ones, which only makes the guest see a different NIC).
pub fn config_replacement(old: &Interface, dev: &DeviceInterface) -> Interface {
    let mut new = dev.iface.clone();
    if !dev.mac_given {
        new.mac = old.mac.clone();
    }
    if !dev.address_given {
        new.address = old.address.clone();
    }
    if new.alias.is_none() {
        new.alias = old.alias.clone();
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNNING: &str = "<domain type='kvm'><name>d</name><memory>65536</memory>\
        <os><type>hvm</type></os><devices>\
        <interface type='ethernet'><mac address='52:54:00:00:00:01'/><target dev='tap1'/>\
        <model type='virtio'/></interface>\
        <interface type='ethernet'><mac address='52:54:00:00:00:02'/><target dev='tap2'/>\
        <model type='virtio'/><address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/></interface>\
        </devices></domain>";

    fn ifaces() -> Vec<Interface> {
        Domain::parse(RUNNING).unwrap().devices.interfaces
    }

    #[test]
    fn device_xml_keeps_only_given_identifiers() {
        let d = parse_device(
            "<?xml version='1.0'?>\n<interface type='ethernet'><target dev='tap1'/><link state='down'/></interface>",
            true,
        )
        .unwrap();
        assert!(!d.mac_given && !d.address_given);
        assert!(d.iface.mac.starts_with("52:54:00:"), "{}", d.iface.mac);
        assert_eq!(d.iface.address, None);
        assert_eq!(d.iface.alias, None);
        assert_eq!(d.iface.link_state.as_deref(), Some("down"));
        let d = parse_device(
            "<interface type='ethernet'><mac address='52:54:00:00:00:02'/><alias name='net1'/></interface>",
            true,
        )
        .unwrap();
        assert!(d.mac_given);
        assert_eq!(d.alias.as_deref(), Some("net1"));
        // A config-only update parses like inactive XML: only user aliases survive.
        let d = parse_device(
            "<interface type='ethernet'><alias name='net1'/></interface>",
            false,
        )
        .unwrap();
        assert_eq!(d.alias, None);
    }

    #[test]
    fn other_devices_are_refused_as_libvirt_does() {
        let e = parse_device("<disk type='file' device='cdrom'/>", true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Operation not supported: live update of device 'disk' is not supported"
        );
        let e = parse_device("<serial type='pty'/>", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Operation not supported: persistent update of device 'chr' is not supported"
        );
        let e = parse_device("<bogus/>", true).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported configuration: unknown device type 'bogus'"
        );
        assert!(parse_device("<interface", true).is_err());
    }

    #[test]
    fn matching_follows_virdomainnetfindidx() {
        let all = ifaces();
        let by_mac = parse_device(
            "<interface type='ethernet'><mac address='52:54:00:00:00:02'/></interface>",
            true,
        )
        .unwrap();
        assert_eq!(find(&all, &by_mac, true).unwrap(), 1);
        let by_alias = parse_device(
            "<interface type='ethernet'><alias name='net0'/></interface>",
            true,
        )
        .unwrap();
        assert_eq!(find(&all, &by_alias, true).unwrap(), 0);
        // Every given identifier must match.
        let wrong = parse_device(
            "<interface type='ethernet'><mac address='52:54:00:00:00:02'/><alias name='net0'/></interface>",
            true,
        )
        .unwrap();
        let e = find(&all, &wrong, true).unwrap_err();
        assert_eq!(e.code(), 99);
        assert_eq!(
            e.to_string(),
            "device not found: no device found at address '(<null>)' matching MAC address \
             '52:54:00:00:00:02' and alias 'net0'"
        );
        // A persistent definition's generated aliases do not count.
        assert_eq!(find(&all, &wrong, false).unwrap(), 1);
        let by_pci = parse_device(
            "<interface type='ethernet'><address type='pci' domain='0x0000' bus='0x00' slot='0x09' function='0x0'/></interface>",
            true,
        )
        .unwrap();
        assert_eq!(
            find(&all, &by_pci, true).unwrap_err().to_string(),
            "device not found: no device found at address '0000:00:09.0' matching MAC address \
             '(<null>)' and alias '(<null>)'"
        );
        let any = parse_device("<interface type='ethernet'/>", true).unwrap();
        assert_eq!(
            find(&all, &any, true).unwrap_err().to_string(),
            "operation failed: multiple matching devices found"
        );
    }

    #[test]
    fn live_changes_are_the_link_state_only() {
        let old = &ifaces()[0];
        let dev = |xml: &str| parse_device(xml, true).unwrap();
        let down = dev(
            "<interface type='ethernet'><mac address='52:54:00:00:00:01'/><target dev='tap1'/>\
                        <model type='virtio'/><alias name='net0'/><link state='down'/></interface>",
        );
        assert_eq!(live_change(old, &down).unwrap(), Some(Some("down".into())));
        let same = dev("<interface type='ethernet'><mac address='52:54:00:00:00:01'/></interface>");
        assert_eq!(live_change(old, &same).unwrap(), None);
        let up = dev("<interface type='ethernet'><mac address='52:54:00:00:00:01'/><link state='up'/></interface>");
        assert_eq!(live_change(old, &up).unwrap(), Some(Some("up".into())));
        // libvirt 9.0 with QEMU, for an XML without <mac>: "cannot change network
        // interface mac address from 52:54:00:5e:71:01 to 52:54:00:30:03:11".
        let no_mac = dev("<interface type='ethernet'><link state='up'/></interface>");
        let e = live_change(old, &no_mac).unwrap_err().to_string();
        assert!(
            e.starts_with("Operation not supported: cannot change network interface mac address from 52:54:00:00:00:01 to 52:54:00:"),
            "{e}"
        );
        for (child, msg) in [
            (
                "<target dev='other'/>",
                "cannot modify network device tap name",
            ),
            ("<mtu size='9000'/>", "cannot modify MTU"),
            (
                "<boot order='1'/>",
                "cannot modify network device boot index setting",
            ),
            (
                "<model type='e1000'/>",
                "cannot modify network device model from virtio to e1000",
            ),
            (
                "<address type='pci' domain='0x0000' bus='0x00' slot='0x09' function='0x0'/>",
                "cannot modify network device guest PCI address",
            ),
            (
                "<source dev='eth9'/>",
                "unable to change config on 'ethernet' network type",
            ),
        ] {
            let xml = format!(
                "<interface type='ethernet'><mac address='52:54:00:00:00:01'/>{child}</interface>"
            );
            let e = live_change(old, &dev(&xml)).unwrap_err();
            assert_eq!(e.code(), 84, "{xml}");
            assert_eq!(
                e.to_string(),
                format!("Operation not supported: {msg}"),
                "{xml}"
            );
        }
        let bridge = dev("<interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='br0'/></interface>");
        assert_eq!(
            live_change(old, &bridge).unwrap_err().to_string(),
            "Operation not supported: unable to change config on 'bridge' network type"
        );
        let bad = dev("<interface type='ethernet'><mac address='52:54:00:00:00:01'/><link state='sideways'/></interface>");
        assert_eq!(
            live_change(old, &bad).unwrap_err().to_string(),
            "XML error: unknown interface link state 'sideways'"
        );
        assert!(is_up(None) && is_up(Some("up")) && !is_up(Some("down")));
    }

    #[test]
    fn config_replacement_keeps_left_out_identifiers() {
        let old = &ifaces()[1];
        let dev = parse_device(
            "<interface type='ethernet'><target dev='tap2'/><link state='down'/></interface>",
            false,
        )
        .unwrap();
        let new = config_replacement(old, &dev);
        assert_eq!(new.mac, old.mac);
        assert_eq!(new.address, old.address);
        assert_eq!(new.link_state.as_deref(), Some("down"));
        assert_eq!(new.model.as_deref(), Some("virtio"));
    }
}
