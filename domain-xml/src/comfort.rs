//! Desktop-comfort devices oxvirt does not model: they start without effect, with a
//! warning, and stay in the XML untouched (the policy table in `domain-xml/README.md`).
//!
//! The rule: a device that holds data or identity (disks, NICs, host devices, TPM,
//! filesystems) is never dropped — it runs or the domain is refused by name. A device
//! that only adds comfort on a desktop (sound, SPICE's USB redirection and agent
//! channel, an empty USB controller) is what virt-install and virt-manager add to every
//! domain; refusing it would refuse nearly every domain users have, while dropping it
//! costs them nothing they rely on.

use crate::model::{CharType, ControllerType, Domain};

/// One warning per comfort device of `dom` that runs without effect, in XML order.
pub(crate) fn warnings(dom: &Domain) -> Vec<String> {
    let d = &dom.devices;
    let mut out = Vec::new();
    for s in &d.sounds {
        out.push(format!(
            "<sound model='{}'> has no effect: oxvirt emulates no sound device",
            s.attr("model").unwrap_or("")
        ));
    }
    for a in &d.audios {
        out.push(format!(
            "<audio type='{}'> has no effect: oxvirt has no audio backend",
            a.attr("type").unwrap_or("")
        ));
    }
    for r in &d.redirdevs {
        out.push(format!(
            "<redirdev bus='{}' type='{}'> has no effect: USB redirection needs SPICE, \
             which oxvirt serves as VNC",
            r.attr("bus").unwrap_or(""),
            r.attr("type").unwrap_or("")
        ));
    }
    for c in d.channels.iter().filter(|c| is_spice_channel(c.char_type)) {
        out.push(format!(
            "<channel type='{}'> (target '{}') has no effect: SPICE's agent channel needs \
             SPICE, which oxvirt serves as VNC",
            c.char_type,
            c.target.name.as_deref().unwrap_or("")
        ));
    }
    for c in d
        .controllers
        .iter()
        .filter(|c| c.controller_type == ControllerType::Usb && c.model.as_deref() != Some("none"))
    {
        out.push(format!(
            "<controller type='usb' model='{}'> has no effect: oxvirt emulates no USB \
             controller (USB inputs: see domain-xml/README.md)",
            c.model.as_deref().unwrap_or("default")
        ));
    }
    out
}

/// Channels that only a SPICE client uses (`com.redhat.spice.0`, spiceport).
pub(crate) fn is_spice_channel(t: CharType) -> bool {
    matches!(t, CharType::Spicevmc | CharType::Spiceport)
}
