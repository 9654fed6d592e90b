//! Host tap names for the interfaces a definition leaves unnamed, as libvirt names
//! them (`virNetDevGenerateName`): `vnetN` from a counter that only grows while the
//! daemon runs, skipping names the host already has. The name goes into the live
//! definition (`<target dev='vnet0'/>`, what `virsh domiflist` shows and
//! `virsh domif-setlink DOMAIN vnet0` uses) and into the VMM's spec, which creates
//! the tap; the inactive XML leaves `vnet…` names out, as libvirt's does.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use domain_xml::InterfaceType;
use machine_spec::{DeviceKind, MachineSpec, NetBackend};

use super::definition::Definition;

/// libvirt's prefix for generated tap names.
const PREFIX: &str = "vnet";

fn in_use(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The next free `vnetN`.
fn generate(counter: &AtomicU32) -> Option<String> {
    // Bounded: a host with this many vnet devices has other problems.
    (0..65536).find_map(|_| {
        let name = format!("{PREFIX}{}", counter.fetch_add(1, Ordering::SeqCst));
        (!in_use(&name)).then_some(name)
    })
}

/// Names every tap-backed interface of `def` that has no name of its own (or a
/// generated one whose tap no longer exists, kept across a reboot), in `def` and in
/// `spec` (the spec's device id is the interface alias).
pub(super) fn name_taps(counter: &AtomicU32, def: &mut Definition, spec: &mut MachineSpec) {
    for i in 0..def.interfaces().len() {
        let mut iface = def.interfaces()[i].clone();
        if !matches!(
            iface.interface_type,
            InterfaceType::Ethernet | InterfaceType::Bridge | InterfaceType::Network
        ) {
            continue;
        }
        let name = match iface.target_dev.as_deref() {
            Some(t) if !t.starts_with(PREFIX) => continue,
            Some(t) if !in_use(t) => t.to_string(),
            _ => match generate(counter) {
                Some(n) => n,
                None => continue,
            },
        };
        let Some(alias) = iface.alias.clone() else {
            continue;
        };
        let Some(dev) = spec.devices.iter_mut().find(|d| d.id == alias) else {
            continue;
        };
        match &mut dev.kind {
            DeviceKind::Net(net) => match &mut net.backend {
                NetBackend::Tap { name: n } => *n = Some(name.clone()),
                NetBackend::Bridge { tap, .. } => *tap = Some(name.clone()),
                // Not reached: `type='user'` interfaces are skipped above (no tap).
                NetBackend::User(_) => continue,
            },
            _ => continue,
        }
        iface.target_dev = Some(name);
        def.set_interface(i, iface);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnamed_taps_get_vnet_names_in_definition_and_spec() {
        let mut def = Definition::parse(
            "<domain type='kvm'><name>t</name><memory>65536</memory>\
             <os><type>hvm</type><kernel>/k</kernel></os><devices>\
             <interface type='ethernet'><mac address='52:54:00:00:00:01'/></interface>\
             <interface type='ethernet'><mac address='52:54:00:00:00:02'/><target dev='mytap'/></interface>\
             <interface type='ethernet'><mac address='52:54:00:00:00:03'/><target dev='vnet0'/></interface>\
             </devices></domain>",
        )
        .unwrap();
        let mut spec = def.translate().unwrap();
        // Start high, past anything a test host has.
        let counter = AtomicU32::new(60000);
        name_taps(&counter, &mut def, &mut spec);
        let names: Vec<_> = def
            .interfaces()
            .iter()
            .map(|i| i.target_dev.clone().unwrap())
            .collect();
        assert_eq!(names[0], "vnet60000");
        assert_eq!(names[1], "mytap");
        // A generated name whose tap is gone is kept (a reboot), unless the host has it.
        if !in_use("vnet0") {
            assert_eq!(names[2], "vnet0");
        }
        let taps: Vec<_> = spec
            .devices
            .iter()
            .filter_map(|d| match &d.kind {
                DeviceKind::Net(n) => match &n.backend {
                    NetBackend::Tap { name } => name.clone(),
                    NetBackend::Bridge { tap, .. } => tap.clone(),
                    NetBackend::User(_) => None,
                },
                _ => None,
            })
            .collect();
        assert_eq!(taps, names);
        // The inactive XML leaves generated names out, as libvirt's does.
        assert!(!def.to_xml(true).contains("vnet"), "{}", def.to_xml(true));
        assert!(def.to_xml(false).contains("<target dev='vnet60000'/>"));
    }
}
