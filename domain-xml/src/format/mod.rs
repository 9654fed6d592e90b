//! [`Domain`] → libvirt's canonical XML (the layout `virsh dumpxml` prints): elements in
//! libvirt's order, memory in KiB, single-quoted attributes, two-space indentation.
//! The live form adds `id` and device aliases; the inactive form leaves out live-only
//! state (ids, aliases other than `ua-…`, pty paths, generated tap names).

mod devices;

pub(crate) use devices::LIVE_NETWORK_SOURCE_ATTRS;

use crate::element::Element;
use crate::model::*;
use crate::xmlenum::XmlEnum;

/// Formats a domain; `inactive` selects the persistent-config form.
pub(crate) fn format(dom: &Domain, inactive: bool) -> String {
    let mut out = String::new();
    domain(dom, inactive).write(&mut out, 0);
    out
}

fn mem(name: &str, kib: u64) -> Element {
    Element::new(name).attr("unit", "KiB").text(kib)
}

fn extras_named<'a>(dom: &'a Domain, name: &'a str) -> impl Iterator<Item = Element> + 'a {
    dom.extra.iter().filter(move |e| e.name == name).cloned()
}

fn domain(dom: &Domain, inactive: bool) -> Element {
    let mut root = Element::new("domain").attr("type", dom.domain_type);
    if !inactive {
        if let Some(id) = dom.id {
            root = root.attr("id", id);
        }
    }
    root = root
        .child(Element::new("name").text(&dom.name))
        .child(Element::new("uuid").text(&dom.uuid))
        .opt_child(dom.genid.as_ref().map(|g| {
            let e = Element::new("genid");
            if g.is_empty() {
                e
            } else {
                e.text(g)
            }
        }))
        .opt_child(Element::text_elem("title", dom.title.as_ref()))
        .opt_child(Element::text_elem("description", dom.description.as_ref()));
    if !dom.metadata.is_empty() {
        root = root.child(Element::new("metadata").children(dom.metadata.iter().cloned()));
    }
    if let Some(m) = &dom.max_memory {
        root = root.child(
            Element::new("maxMemory")
                .opt_attr("slots", m.slots)
                .attr("unit", "KiB")
                .text(m.kib),
        );
    }
    root = root
        .child(mem("memory", dom.memory))
        .child(mem("currentMemory", dom.current_memory));
    for name in ["blkiotune", "memtune"] {
        root = root.children(extras_named(dom, name));
    }
    root = root.opt_child(dom.memory_backing.as_ref().map(memory_backing));
    root = root.child(
        Element::new("vcpu")
            .attr("placement", dom.vcpu.placement.unwrap_or(Placement::Static))
            .opt_attr("cpuset", dom.vcpu.cpuset.as_ref())
            .opt_attr("current", dom.vcpu.current)
            .text(dom.vcpu.max),
    );
    for name in ["vcpus", "iothreads", "iothreadids", "defaultiothread"] {
        root = root.children(extras_named(dom, name));
    }
    if let Some(t) = &dom.cputune {
        root = root.child(
            Element::new("cputune")
                .children(t.other.iter().filter(|e| e.name == "shares").cloned())
                .children(t.vcpupins.iter().map(|p| {
                    Element::new("vcpupin")
                        .attr("vcpu", p.vcpu)
                        .attr("cpuset", &p.cpuset)
                }))
                .children(t.other.iter().filter(|e| e.name != "shares").cloned()),
        );
    }
    for name in [
        "numatune",
        "resource",
        "sysinfo",
        "bootloader",
        "bootloader_args",
    ] {
        root = root.children(extras_named(dom, name));
    }
    root = root.child(os(&dom.os));
    root = root.children(extras_named(dom, "idmap"));
    if let Some(f) = &dom.features {
        if !f.is_empty() {
            root = root.child(Element::new("features").children(f.iter().cloned()));
        }
    }
    root = root.opt_child(dom.cpu.as_ref().and_then(cpu));
    if let Some(c) = &dom.clock {
        let mut e = Element::new("clock").attr("offset", &c.offset);
        for (k, v) in &c.attrs {
            e = e.attr(k, v);
        }
        root = root.child(e.children(c.timers.iter().map(timer)));
    }
    root = root
        .child(Element::new("on_poweroff").text(dom.on_poweroff))
        .child(Element::new("on_reboot").text(dom.on_reboot))
        .child(Element::new("on_crash").text(dom.on_crash));
    root = root.children(extras_named(dom, "on_lockfailure"));
    if let Some(pm) = &dom.pm {
        if pm.suspend_to_mem.is_some() || pm.suspend_to_disk.is_some() {
            root = root.child(
                Element::new("pm")
                    .opt_child(
                        pm.suspend_to_mem
                            .map(|v| Element::new("suspend-to-mem").attr("enabled", v)),
                    )
                    .opt_child(
                        pm.suspend_to_disk
                            .map(|v| Element::new("suspend-to-disk").attr("enabled", v)),
                    ),
            );
        }
    }
    root = root.children(extras_named(dom, "perf"));
    root = root.child(devices::devices(&dom.devices, inactive));
    for name in [
        "seclabel",
        "keywrap",
        "launchSecurity",
        "qemu:commandline",
        "qemu:capabilities",
        "qemu:override",
        "qemu:deprecation",
    ] {
        root = root.children(extras_named(dom, name));
    }
    root
}

fn memory_backing(m: &MemoryBacking) -> Element {
    Element::new("memoryBacking")
        .opt_child(
            m.hugepages
                .as_ref()
                .map(|p| Element::new("hugepages").children(p.iter().cloned())),
        )
        .opt_child(m.nosharepages.then(|| Element::new("nosharepages")))
        .opt_child(m.locked.then(|| Element::new("locked")))
        .opt_child(
            m.source_type
                .as_ref()
                .map(|t| Element::new("source").attr("type", t)),
        )
        .opt_child(
            m.access_mode
                .as_ref()
                .map(|t| Element::new("access").attr("mode", t)),
        )
        .opt_child(m.allocation.clone())
        .opt_child(m.discard.then(|| Element::new("discard")))
}

fn os(o: &Os) -> Element {
    let mut e = Element::new("os").opt_attr("firmware", o.firmware.as_ref());
    e = e.child(
        Element::new("type")
            .opt_attr("arch", o.arch.as_ref())
            .opt_attr("machine", o.machine.as_ref())
            .text(&o.os_type),
    );
    e = e.opt_child(o.firmware_features.clone());
    if let Some(l) = &o.loader {
        let mut le = Element::new("loader")
            .opt_attr("readonly", l.readonly)
            .opt_attr("secure", l.secure)
            .opt_attr("type", l.loader_type.as_ref());
        if let Some(p) = &l.path {
            le = le.text(p);
        }
        e = e.child(le);
    }
    e.opt_child(o.nvram.clone())
        .opt_child(Element::text_elem("kernel", o.kernel.as_ref()))
        .opt_child(Element::text_elem("initrd", o.initrd.as_ref()))
        .opt_child(Element::text_elem("cmdline", o.cmdline.as_ref()))
        .opt_child(Element::text_elem("dtb", o.dtb.as_ref()))
        .children(o.boot.iter().map(|b| Element::new("boot").attr("dev", b)))
        .opt_child(o.bootmenu.as_ref().map(|b| {
            Element::new("bootmenu")
                .attr("enable", b.enable)
                .opt_attr("timeout", b.timeout)
        }))
        .opt_child(o.bios.clone())
        .opt_child(
            o.smbios
                .as_ref()
                .map(|m| Element::new("smbios").attr("mode", m)),
        )
        .opt_child(o.acpi.clone())
}

fn cpu(c: &Cpu) -> Option<Element> {
    let e = Element::new("cpu")
        .opt_attr("mode", c.mode)
        .opt_attr("match", c.match_.as_ref())
        .opt_attr("check", c.check.as_ref())
        .opt_attr("migratable", c.migratable);
    let e = e
        .opt_child(c.model.as_ref().map(|m| {
            let me = Element::new("model")
                .opt_attr("fallback", m.fallback.as_ref())
                .opt_attr("vendor_id", m.vendor_id.as_ref());
            match &m.name {
                Some(n) => me.text(n),
                None => me,
            }
        }))
        .opt_child(Element::text_elem("vendor", c.vendor.as_ref()))
        .opt_child(c.topology.map(|t| {
            Element::new("topology")
                .attr("sockets", t.sockets)
                .attr("dies", t.dies)
                .attr("cores", t.cores)
                .attr("threads", t.threads)
        }))
        .opt_child(c.cache.clone())
        .children(c.features.iter().map(|f| {
            Element::new("feature")
                .attr("policy", f.policy.as_str())
                .attr("name", &f.name)
        }))
        .opt_child(c.numa.clone());
    // An empty <cpu/> is not written, as libvirt does not write it.
    (!e.attrs.is_empty() || !e.children.is_empty()).then_some(e)
}

fn timer(t: &Timer) -> Element {
    Element::new("timer")
        .attr("name", &t.name)
        .opt_attr("present", t.present)
        .opt_attr("tickpolicy", t.tickpolicy.as_ref())
        .opt_attr("track", t.track.as_ref())
        .opt_attr("frequency", t.frequency)
        .opt_attr("mode", t.mode.as_ref())
        .opt_child(t.catchup.clone())
}
