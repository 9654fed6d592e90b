//! An interface's `<driver>`: `queues='N'` (multiqueue virtio-net on a tap, one
//! queue pair per queue), `name` (who moves the frames: `vhost`, the host kernel's
//! vhost-net, required; `qemu`, the VMM's userspace device; left out, vhost-net where
//! the host has it, as libvirt does with QEMU), and the attributes that name what the
//! device does anyway (`ioeventfd='on'`, `event_idx='on'`). Everything else is
//! refused by name rather than ignored.

use machine_spec as ms;

use crate::error::{Error, Result};
use crate::model::Interface;

/// Most queue pairs per NIC: a pair is a worker thread and a tap queue here.
pub(crate) const MAX_QUEUES: u16 = 64;

/// The queue pairs `<driver queues>` asks for (`None` without it) and the data path
/// `<driver name>` names on NIC `what`, checked against the model and backend they
/// go with.
pub(crate) fn driver(
    n: &Interface,
    what: &str,
    model: ms::NetModel,
    backend: &ms::NetBackend,
) -> Result<(Option<u16>, ms::NetDriver)> {
    let Some(dr) = n.extra.iter().find(|e| e.name == "driver") else {
        return Ok((None, ms::NetDriver::Default));
    };
    if let Some(c) = dr.child_elements().next() {
        return Err(Error::unsupported(format!(
            "{what}: <driver><{}> is not supported",
            c.name
        )));
    }
    let mut queues = None;
    let mut driver = ms::NetDriver::Default;
    for (k, v) in &dr.attrs {
        match (k.as_str(), v.as_str()) {
            ("queues", v) => {
                let q = v
                    .parse::<u16>()
                    .ok()
                    .filter(|q| (1..=MAX_QUEUES).contains(q));
                queues = Some(q.ok_or_else(|| {
                    Error::xml(format!(
                        "{what}: <driver queues='{v}'> must be a number from 1 to {MAX_QUEUES}"
                    ))
                })?);
            }
            ("name", "qemu") => driver = ms::NetDriver::Qemu,
            ("name", "vhost") => driver = ms::NetDriver::Vhost,
            ("ioeventfd", "on") | ("event_idx", "on") => {}
            (k, v) => {
                return Err(Error::unsupported(format!(
                    "{what}: <driver {k}='{v}'> is not supported"
                )))
            }
        }
    }
    if queues.is_some_and(|q| q > 1) {
        if model != ms::NetModel::Virtio {
            return Err(Error::unsupported(format!(
                "{what}: multiqueue network is only supported for model 'virtio'"
            )));
        }
        if backend.tap().is_none() {
            return Err(Error::unsupported(format!(
                "{what}: Multiqueue network is not supported for: user"
            )));
        }
    }
    if driver == ms::NetDriver::Vhost {
        if model != ms::NetModel::Virtio {
            return Err(Error::unsupported(format!(
                "{what}: vhost-net (<driver name='vhost'>) is only supported for model 'virtio'"
            )));
        }
        if backend.tap().is_none() {
            return Err(Error::unsupported(format!(
                "{what}: vhost-net (<driver name='vhost'>) is not supported for interface \
                 type 'user'"
            )));
        }
    }
    Ok((queues, driver))
}

#[cfg(test)]
mod tests {
    fn translate(ty: &str, inner: &str) -> crate::Result<machine_spec::MachineSpec> {
        crate::spec_from_xml(&format!(
            "<domain type='kvm'><name>q</name><memory unit='MiB'>64</memory>\
             <os><type>hvm</type><kernel>/k</kernel></os><devices>\
             <interface type='{ty}'><mac address='52:54:00:00:00:01'/>{inner}</interface>\
             </devices></domain>"
        ))
    }

    fn nic(spec: &machine_spec::MachineSpec) -> &machine_spec::Net {
        spec.devices
            .iter()
            .find_map(|d| match &d.kind {
                machine_spec::DeviceKind::Net(n) => Some(n),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn queues_reach_the_spec() {
        let s = translate(
            "ethernet",
            "<model type='virtio'/><driver name='qemu' queues='4'/>",
        )
        .unwrap();
        assert_eq!((nic(&s).queues, nic(&s).queue_pairs()), (Some(4), 4));
        let s = translate(
            "bridge",
            "<source bridge='br0'/><driver ioeventfd='on' event_idx='on'/>",
        )
        .unwrap();
        assert_eq!((nic(&s).queues, nic(&s).queue_pairs()), (None, 1));
        assert_eq!(nic(&s).driver, machine_spec::NetDriver::Default);
        // One queue is what any model and backend has.
        translate("user", "<driver queues='1'/>").unwrap();
    }

    #[test]
    fn name_chooses_the_data_path() {
        use machine_spec::NetDriver;
        for (inner, want) in [
            ("<driver name='vhost' queues='2'/>", NetDriver::Vhost),
            ("<driver name='qemu'/>", NetDriver::Qemu),
            ("", NetDriver::Default),
        ] {
            let s = translate("ethernet", inner).unwrap();
            assert_eq!(nic(&s).driver, want, "{inner}");
        }
        // passt has no vhost; left out, the default stays the VMM's own device.
        let s = translate("user", "<driver name='qemu'/>").unwrap();
        assert_eq!(nic(&s).driver, NetDriver::Qemu);
    }

    #[test]
    fn refusals_name_the_interface_and_what_was_wrong() {
        let i = "interface '52:54:00:00:00:01'";
        let cases = [
            ("ethernet", "<driver queues='0'/>", format!("XML error: {i}: <driver queues='0'> must be a number from 1 to 64")),
            ("ethernet", "<driver queues='65'/>", format!("XML error: {i}: <driver queues='65'> must be a number from 1 to 64")),
            ("ethernet", "<driver queues='x'/>", format!("XML error: {i}: <driver queues='x'> must be a number from 1 to 64")),
            ("ethernet", "<model type='e1000'/><driver name='vhost'/>", format!("unsupported configuration: {i}: vhost-net (<driver name='vhost'>) is only supported for model 'virtio'")),
            ("user", "<driver name='vhost'/>", format!("unsupported configuration: {i}: vhost-net (<driver name='vhost'>) is not supported for interface type 'user'")),
            ("ethernet", "<driver name='tun'/>", format!("unsupported configuration: {i}: <driver name='tun'> is not supported")),
            ("ethernet", "<driver txmode='timer'/>", format!("unsupported configuration: {i}: <driver txmode='timer'> is not supported")),
            ("ethernet", "<driver><host csum='off'/></driver>", format!("unsupported configuration: {i}: <driver><host> is not supported")),
            ("ethernet", "<model type='e1000'/><driver queues='2'/>", format!("unsupported configuration: {i}: multiqueue network is only supported for model 'virtio'")),
            ("user", "<driver queues='2'/>", format!("unsupported configuration: {i}: Multiqueue network is not supported for: user")),
        ];
        for (ty, inner, want) in cases {
            let e = translate(ty, inner).expect_err(inner);
            assert_eq!(e.to_string(), want, "{inner}");
        }
    }
}
