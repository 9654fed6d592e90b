//! The comfort-device policy (domain-xml/README.md): devices that only add desktop
//! comfort run without effect, each with a warning the VMM logs; devices that hold data
//! or identity are never dropped.

use domain_xml::{spec_from_xml, unknown_content, Domain};

/// What virt-install 4.1 adds to a q35 domain on a `qemu:///` connection whose
/// capabilities offer SPICE (measured; see tests/corpus/100-virt-install-*.xml), around a
/// kernel so nothing else is needed to run it.
fn virt_install_extras(extra: &str) -> String {
    format!(
        "<domain type='kvm'>
  <name>comfort</name>
  <memory unit='MiB'>256</memory>
  <os><type arch='x86_64' machine='q35'>hvm</type><kernel>/boot/vmlinux</kernel></os>
  <devices>
    <controller type='usb' model='qemu-xhci' ports='15'/>
    <channel type='unix'>
      <source mode='bind'/>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <channel type='spicevmc'>
      <target type='virtio' name='com.redhat.spice.0'/>
    </channel>
    <sound model='ich9'/>
    <audio id='1' type='spice'/>
    <redirdev bus='usb' type='spicevmc'/>
    <redirdev bus='usb' type='spicevmc'/>
    {extra}
  </devices>
</domain>"
    )
}

#[test]
fn comfort_devices_run_without_effect_and_say_so() {
    let spec = spec_from_xml(&virt_install_extras("")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        spec.warnings,
        [
            "<sound model='ich9'> has no effect: oxvirt emulates no sound device",
            "<audio type='spice'> has no effect: oxvirt has no audio backend",
            "<redirdev bus='usb' type='spicevmc'> has no effect: USB redirection needs SPICE, which oxvirt serves as VNC",
            "<redirdev bus='usb' type='spicevmc'> has no effect: USB redirection needs SPICE, which oxvirt serves as VNC",
            "<channel type='spicevmc'> (target 'com.redhat.spice.0') has no effect: SPICE's agent channel needs SPICE, which oxvirt serves as VNC",
            "<controller type='usb' model='qemu-xhci'> has no effect: oxvirt emulates no USB controller (USB inputs: see domain-xml/README.md)",
        ]
    );
    // The guest agent channel is real: a virtio-serial port with a socket the VMM makes.
    let devices = serde_json::to_string(&spec.devices).unwrap();
    assert!(devices.contains("org.qemu.guest_agent.0"), "{devices}");
    assert!(!devices.contains("com.redhat.spice.0"), "{devices}");
    // And the XML keeps every device untouched (the user's definition is theirs).
    let dom = Domain::parse(&virt_install_extras("")).unwrap();
    let inactive = dom.to_xml(true);
    for kept in [
        "<sound model=\"ich9\"",
        "<redirdev bus=\"usb\" type=\"spicevmc\"",
        "<channel type=\"spicevmc\"",
        "<audio id=\"1\" type=\"spice\"",
    ] {
        let kept = kept.replace('"', "'");
        assert!(inactive.contains(&kept), "{kept} lost:\n{inactive}");
    }
}

#[test]
fn devices_that_hold_data_or_identity_are_still_refused_by_name() {
    for (xml, named) in [
        (
            "<hostdev mode='subsystem' type='pci'><source><address domain='0' bus='1' slot='0' function='0'/></source></hostdev>",
            "<hostdev>",
        ),
        (
            "<filesystem type='mount'><source dir='/srv'/><target dir='srv'/></filesystem>",
            "<filesystem>",
        ),
    ] {
        let e = spec_from_xml(&virt_install_extras(xml)).unwrap_err();
        assert!(e.to_string().contains(named), "{named}: {e}");
    }
}

#[test]
fn virt_installs_pathless_agent_channel_source_is_known_content() {
    let unknown = unknown_content(&virt_install_extras("")).unwrap();
    assert!(unknown.is_empty(), "{unknown:?}");
    // A genuinely unknown child elsewhere is still reported.
    let unknown = unknown_content(&virt_install_extras(
        "<disk type='file'><source file='/a'/><target dev='vda'/><glitter/></disk>",
    ))
    .unwrap();
    assert_eq!(unknown, ["/domain/devices/disk/glitter"]);
}
