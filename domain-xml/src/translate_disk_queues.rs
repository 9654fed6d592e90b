//! A disk's data-path settings: `<driver queues='N' io='…' iothread='N'>` and the
//! domain's `<iothreads>N</iothreads>`.
//!
//! oxvirt-vmm serves each virtio-blk queue on its own worker thread, so an
//! `<iothread>` adds no thread of its own: `iothread='N'` is checked against
//! `<iothreads>` (as libvirt does) and otherwise has no effect.

use machine_spec as ms;

use crate::error::{Error, Result};
use crate::model::*;

/// Most queues per disk: a queue is a worker thread here, and more queues than
/// the 255 vCPUs a guest may have serve nobody.
pub const MAX_QUEUES: u16 = 255;

/// `queues` and `io` of `dr` for disk `dev` on `bus`; `iothread` is validated by
/// [`check_iothreads`].
pub(crate) fn queueing(
    dev: &str,
    dr: &DiskDriver,
    virtio: bool,
) -> Result<(Option<u16>, ms::DiskIo)> {
    let io = match dr.io.as_deref() {
        None => ms::DiskIo::Default,
        Some("native") => ms::DiskIo::Native,
        Some("threads") => ms::DiskIo::Threads,
        Some("io_uring") => ms::DiskIo::IoUring,
        Some(x) => {
            return Err(Error::xml(format!(
                "disk '{dev}': unknown <driver io='{x}'> (native, threads, io_uring)"
            )))
        }
    };
    // `iothread` is checked against <iothreads> by check_iothreads.
    let mut queues = None;
    if let Some((_, v)) = dr.other.iter().find(|(k, _)| k == "queues") {
        let n: u16 = v
            .parse()
            .ok()
            .filter(|n| (1..=MAX_QUEUES).contains(n))
            .ok_or_else(|| {
                Error::xml(format!(
                    "disk '{dev}': <driver queues='{v}'> must be a number from 1 to {MAX_QUEUES}"
                ))
            })?;
        if !virtio {
            return Err(Error::unsupported(format!(
                "disk '{dev}': <driver queues> needs bus='virtio'"
            )));
        }
        queues = Some(n);
    }
    Ok((queues, io))
}

/// The `<driver>` attributes [`queueing`] handles, besides `io`.
pub(crate) fn handles(attr: &str) -> bool {
    matches!(attr, "queues" | "iothread")
}

/// `<iothreads>N</iothreads>`: a count (0 when absent).
fn iothread_count(dom: &Domain) -> Result<u32> {
    let Some(e) = dom.extra.iter().find(|e| e.name == "iothreads") else {
        return Ok(0);
    };
    let t = e.text_content();
    t.trim()
        .parse()
        .map_err(|_| Error::xml(format!("<iothreads>{t}</iothreads> is not a number")))
}

/// Every disk's `iothread='N'` names one of the domain's `<iothreads>` (1..=N),
/// on a virtio disk.
pub(crate) fn check_iothreads(dom: &Domain) -> Result<()> {
    let count = iothread_count(dom)?;
    for d in &dom.devices.disks {
        let Some(dr) = &d.driver else { continue };
        let Some((_, v)) = dr.other.iter().find(|(k, _)| k == "iothread") else {
            continue;
        };
        let dev = &d.target.dev;
        let id: u32 = v.parse().map_err(|_| {
            Error::xml(format!(
                "disk '{dev}': <driver iothread='{v}'> is not a number"
            ))
        })?;
        if id == 0 || id > count {
            return Err(Error::xml(format!(
                "disk '{dev}': <driver iothread='{id}'> names no iothread (the domain has \
                 <iothreads>{count}</iothreads>)"
            )));
        }
        if d.target.bus.unwrap_or(DiskBus::Virtio) != DiskBus::Virtio {
            return Err(Error::unsupported(format!(
                "disk '{dev}': <driver iothread> needs bus='virtio'"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    fn translate(top: &str, driver: &str) -> crate::Result<machine_spec::MachineSpec> {
        crate::spec_from_xml(&format!(
            "<domain type='kvm'><name>q</name><memory unit='MiB'>64</memory>{top}\
             <os><type>hvm</type><kernel>/k</kernel></os><devices>\
             <disk type='file'><driver {driver}/><source file='/a'/><target dev='vda'/></disk>\
             </devices></domain>"
        ))
    }

    #[test]
    fn bad_values_are_xml_errors_naming_the_disk() {
        let cases = [
            ("", "queues='0'", "XML error: disk 'vda': <driver queues='0'> must be a number from 1 to 255"),
            ("", "queues='x'", "XML error: disk 'vda': <driver queues='x'> must be a number from 1 to 255"),
            ("", "io='aio'", "XML error: disk 'vda': unknown <driver io='aio'> (native, threads, io_uring)"),
            ("<iothreads>1</iothreads>", "iothread='2'", "XML error: disk 'vda': <driver iothread='2'> names no iothread (the domain has <iothreads>1</iothreads>)"),
            ("", "iothread='1'", "XML error: disk 'vda': <driver iothread='1'> names no iothread (the domain has <iothreads>0</iothreads>)"),
            ("<iothreads>two</iothreads>", "", "XML error: <iothreads>two</iothreads> is not a number"),
        ];
        for (top, driver, want) in cases {
            let e = translate(top, driver).expect_err(driver);
            assert_eq!(e.to_string(), want, "{top} {driver}");
        }
    }

    #[test]
    fn queues_default_to_none_and_io_reaches_the_spec() {
        let spec = translate(
            "<iothreads>1</iothreads>",
            "queues='3' io='threads' iothread='1'",
        )
        .unwrap();
        let machine_spec::DeviceKind::Disk(d) = &spec.devices[0].kind else {
            panic!("{:?}", spec.devices[0]);
        };
        assert_eq!((d.queues, d.io), (Some(3), machine_spec::DiskIo::Threads));
        let spec = translate("", "cache='none'").unwrap();
        let machine_spec::DeviceKind::Disk(d) = &spec.devices[0].kind else {
            panic!();
        };
        assert_eq!((d.queues, d.io), (None, machine_spec::DiskIo::Default));
    }
}
