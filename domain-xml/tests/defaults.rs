//! Post-parse defaults and the live/inactive formatting difference, checked on small
//! domains.

use domain_xml::{Address, Domain, PciAddr};

fn parse(devices: &str) -> Domain {
    parse_with("", devices)
}

fn parse_with(os_type_attrs: &str, devices: &str) -> Domain {
    Domain::parse(&format!(
        "<domain type='kvm'><name>d</name><memory unit='MiB'>64</memory>\
         <os><type {os_type_attrs}>hvm</type><kernel>/k</kernel></os><devices>{devices}</devices></domain>"
    ))
    .unwrap()
}

fn pci_slot(a: &Option<Address>) -> u8 {
    match a {
        Some(Address::Pci(PciAddr {
            slot,
            bus: 0,
            function: 0,
            ..
        })) => *slot,
        other => panic!("not a root-bus PCI address: {other:?}"),
    }
}

#[test]
fn uuid_mac_and_current_memory_are_filled() {
    let d = parse("<interface type='bridge'><source bridge='br0'/></interface>");
    assert_eq!(d.uuid.len(), 36);
    assert!(d.devices.interfaces[0].mac.starts_with("52:54:00:"));
    assert_eq!(d.devices.interfaces[0].model.as_deref(), Some("virtio"));
    assert_eq!(d.current_memory, d.memory);
    assert_eq!(d.memory, 64 * 1024);
    assert_ne!(parse("").uuid, parse("").uuid, "generated UUIDs differ");
}

#[test]
fn serial_and_console_are_paired() {
    let d = parse("<serial type='pty'/>");
    assert_eq!(d.devices.consoles.len(), 1);
    assert_eq!(
        d.devices.consoles[0].target.target_type.as_deref(),
        Some("serial")
    );
    assert_eq!(d.devices.consoles[0].alias.as_deref(), Some("serial0"));
    assert_eq!(
        d.devices.serials[0].target.model.as_deref(),
        Some("isa-serial")
    );

    let d = parse("<console type='file'><source path='/log'/><target type='serial'/></console>");
    assert_eq!(
        d.devices.serials.len(),
        1,
        "a serial is created from the console"
    );
    assert_eq!(
        d.devices.serials[0].sources[0].path.as_deref(),
        Some("/log")
    );
    assert_eq!(d.devices.serials[0].target.port, Some(0));

    // Ports: explicit first, then the next free number.
    let d = parse("<serial type='null'/><serial type='null'><target port='0'/></serial>");
    let ports: Vec<_> = d.devices.serials.iter().map(|s| s.target.port).collect();
    assert_eq!(ports, [Some(1), Some(0)]);
}

#[test]
fn virtio_channels_get_ports_and_a_controller() {
    let d = parse(
        "<channel type='unix'><source mode='bind'/><target type='virtio' name='a'/></channel>\
         <channel type='pty'><target type='virtio' name='b'/></channel>",
    );
    let ports: Vec<_> = d
        .devices
        .channels
        .iter()
        .map(|c| match c.address {
            Some(Address::VirtioSerial { port, .. }) => port,
            ref other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ports, [1, 2]);
    assert!(d
        .devices
        .controllers
        .iter()
        .any(|c| c.controller_type == domain_xml::ControllerType::VirtioSerial));
}

#[test]
fn implicit_controllers_and_drive_addresses() {
    let d = parse("<disk type='file'><source file='/a'/><target dev='hdc'/></disk>");
    assert_eq!(
        d.devices.disks[0].address,
        Some(Address::Drive {
            controller: 0,
            bus: 1,
            target: 0,
            unit: 0
        })
    );
    assert_eq!(d.devices.disks[0].alias.as_deref(), Some("ide0-1-0"));
    let types: Vec<_> = d
        .devices
        .controllers
        .iter()
        .map(|c| (c.controller_type.to_string(), c.model.clone()))
        .collect();
    assert!(
        types.contains(&("pci".into(), Some("pci-root".into()))),
        "{types:?}"
    );
    assert!(types.contains(&("ide".into(), None)), "{types:?}");
    let q35 = parse_with("machine='q35'", "");
    assert_eq!(
        q35.devices.controllers[0].model.as_deref(),
        Some("pcie-root")
    );
    assert_eq!(q35.devices.controllers[0].alias.as_deref(), Some("pcie.0"));
}

#[test]
fn pci_addresses_fill_free_slots_in_libvirt_order() {
    let d = parse(
        "<disk type='file'><source file='/a'/><target dev='vdb'/></disk>\
         <disk type='file'><source file='/b'/><target dev='vda'/>\
           <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></disk>\
         <interface type='bridge'><source bridge='br0'/></interface>\
         <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>\
         <memballoon model='virtio'/>",
    );
    // Disks are kept sorted by bus and name, as libvirt keeps them.
    assert_eq!(d.devices.disks[0].target.dev, "vda");
    // pc: slots 0 (host bridge) and 1 (PIIX3) are taken; slot 3 is given in the XML.
    assert_eq!(pci_slot(&d.devices.interfaces[0].address), 2);
    assert_eq!(pci_slot(&d.devices.disks[0].address), 3);
    assert_eq!(pci_slot(&d.devices.disks[1].address), 4);
    assert_eq!(pci_slot(&d.devices.memballoon.as_ref().unwrap().address), 5);
    assert_eq!(pci_slot(&d.devices.rngs[0].address), 6);
    assert_eq!(d.devices.disks[0].alias.as_deref(), Some("virtio-disk0"));
    assert_eq!(d.devices.disks[1].alias.as_deref(), Some("virtio-disk1"));
}

#[test]
fn pci_slots_run_out_with_an_error() {
    let disks: String = (0..40)
        .map(|i| {
            format!(
                "<disk type='file'><source file='/{i}'/><target dev='vd{}{}'/></disk>",
                (b'a' + (i / 26) as u8) as char,
                (b'a' + (i % 26) as u8) as char
            )
        })
        .collect();
    let e = Domain::parse(&format!(
        "<domain type='kvm'><name>d</name><memory unit='MiB'>64</memory>\
         <os><type>hvm</type></os><devices>{disks}</devices></domain>"
    ))
    .unwrap_err();
    assert_eq!(e.to_string(), "XML error: No more available PCI slots");
}

#[test]
fn live_form_has_id_aliases_and_pty_paths_inactive_does_not() {
    let mut d = parse(
        "<serial type='pty'><source path='/dev/pts/7'/></serial>\
         <interface type='ethernet'><target dev='vnet4'/></interface>\
         <disk type='file'><source file='/a'/><target dev='vda'/><alias name='ua-root'/></disk>",
    );
    d.id = Some(12);
    let live = d.to_xml(false);
    assert!(live.starts_with("<domain type='kvm' id='12'>"), "{live}");
    assert!(live.contains("<alias name='serial0'/>"));
    assert!(live.contains("<source path='/dev/pts/7'/>"));
    assert!(live.contains("<console type='pty' tty='/dev/pts/7'>"));
    assert!(live.contains("<target dev='vnet4'/>"));
    let inactive = d.to_xml(true);
    assert!(inactive.starts_with("<domain type='kvm'>"), "{inactive}");
    assert!(!inactive.contains("<alias name='serial0'/>"));
    assert!(
        inactive.contains("<alias name='ua-root'/>"),
        "user aliases stay"
    );
    assert!(!inactive.contains("/dev/pts/7"));
    assert!(!inactive.contains("vnet4"));
    // Both are stable under a second round trip.
    assert_eq!(Domain::parse(&live).unwrap().to_xml(false), live);
    assert_eq!(Domain::parse(&inactive).unwrap().to_xml(true), inactive);
}

#[test]
fn unknown_content_is_reported() {
    let xml = "<domain type='kvm' x='1'><name>d</name><memory>1024</memory><os><type>hvm</type></os>\
               <devices><disk type='file'><source file='/a'/><target dev='vda'/><glitter/></disk></devices></domain>";
    let unknown = domain_xml::unknown_content(xml).unwrap();
    assert_eq!(unknown, ["/domain/@x", "/domain/devices/disk/glitter"]);
}

#[test]
fn disk_name_index_follows_libvirt() {
    use domain_xml::disk_name_index as idx;
    assert_eq!(idx("vda"), Some(0));
    assert_eq!(idx("sdz"), Some(25));
    assert_eq!(idx("hdaa"), Some(26));
    assert_eq!(idx("vdab"), Some(27));
    assert_eq!(idx("vd"), None);
    assert_eq!(idx("vda1"), None);
    assert_eq!(idx("nvme0n1"), None);
}

#[test]
fn metadata_elements_parse_and_print_like_libvirt() {
    let e =
        domain_xml::Element::parse("<a:x xmlns:a='urn:a' k=\"it's\"><a:y>t</a:y></a:x>").unwrap();
    assert_eq!(e.name, "a:x");
    assert_eq!(
        e.to_xml_string_libxml(),
        "<a:x xmlns:a=\"urn:a\" k=\"it's\">\n  <a:y>t</a:y>\n</a:x>\n"
    );
    assert!(domain_xml::Element::parse("<a:x>").is_err());
}

#[test]
fn a_pty_path_set_on_serial0_shows_on_the_paired_console() {
    let mut d = parse("<serial type='pty'/>");
    d.devices.serials[0].sources = vec![domain_xml::CharSource {
        path: Some("/dev/pts/9".into()),
        ..Default::default()
    }];
    let live = d.to_xml(false);
    assert!(
        live.contains("<console type='pty' tty='/dev/pts/9'>"),
        "{live}"
    );
    assert_eq!(
        live.matches("<source path='/dev/pts/9'/>").count(),
        2,
        "{live}"
    );
    assert!(!d.to_xml(true).contains("/dev/pts/9"));
}
