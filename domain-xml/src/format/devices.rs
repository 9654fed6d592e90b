//! `<devices>` formatting, in libvirt's device order.

use crate::element::Element;
use crate::model::*;

/// Prefixes of tap names libvirt generates; such names are live-only state.
const GENERATED_TAP_PREFIXES: &[&str] = &["vnet", "vif", "macvtap", "macvlan"];

pub(super) fn devices(d: &Devices, inactive: bool) -> Element {
    let ctx = Ctx { inactive };
    let mut e = Element::new("devices")
        .opt_child(Element::text_elem("emulator", d.emulator.as_ref()))
        .children(d.disks.iter().map(|x| disk(&ctx, x)))
        .children(d.controllers.iter().map(|x| controller(&ctx, x)))
        .children(d.leases.iter().map(|x| generic(&ctx, x)))
        .children(d.filesystems.iter().map(|x| generic(&ctx, x)))
        .children(d.interfaces.iter().map(|x| interface(&ctx, x)))
        .children(d.smartcards.iter().map(|x| generic(&ctx, x)))
        .children(d.serials.iter().map(|x| chardev(&ctx, "serial", x)))
        .children(d.parallels.iter().map(|x| chardev(&ctx, "parallel", x)))
        .children(
            d.consoles
                .iter()
                .enumerate()
                .map(|(i, x)| chardev(&ctx, "console", &console_view(d, i, x))),
        )
        .children(d.channels.iter().map(|x| chardev(&ctx, "channel", x)))
        .children(d.inputs.iter().map(|x| input(&ctx, x)))
        .children(d.tpms.iter().map(|x| generic(&ctx, x)))
        .children(d.graphics.iter().map(|x| generic(&ctx, x)))
        .children(d.sounds.iter().map(|x| generic(&ctx, x)))
        .children(d.audios.iter().map(|x| generic(&ctx, x)))
        .children(d.videos.iter().map(|x| generic(&ctx, x)))
        .children(d.hostdevs.iter().map(|x| generic(&ctx, x)))
        .children(d.redirdevs.iter().map(|x| generic(&ctx, x)))
        .children(d.redirfilters.iter().map(|x| generic(&ctx, x)))
        .children(d.hubs.iter().map(|x| generic(&ctx, x)))
        .children(d.watchdogs.iter().map(|w| {
            ctx.info(
                Element::new("watchdog")
                    .attr("model", &w.model)
                    .opt_attr("action", w.action.as_ref()),
                &w.alias,
                &w.address,
            )
        }))
        .opt_child(d.memballoon.as_ref().map(|m| memballoon(&ctx, m)))
        .children(d.rngs.iter().map(|x| rng(&ctx, x)))
        .opt_child(d.nvram.as_ref().map(|x| generic(&ctx, x)))
        .children(d.panics.iter().map(|p| {
            ctx.info(
                Element::new("panic").opt_attr("model", p.model.as_ref()),
                &None,
                &p.address,
            )
        }))
        .children(d.shmems.iter().map(|x| generic(&ctx, x)))
        .children(d.memories.iter().map(|x| generic(&ctx, x)))
        .opt_child(d.iommu.as_ref().map(|x| generic(&ctx, x)));
    if let Some(v) = &d.vsock {
        let cid = (v.cid_auto.is_some() || v.cid_address.is_some()).then(|| {
            Element::new("cid")
                .opt_attr("auto", v.cid_auto)
                .opt_attr("address", v.cid_address)
        });
        e = e.child(
            ctx.info(
                Element::new("vsock")
                    .opt_attr("model", v.model.as_ref())
                    .opt_child(cid),
                &v.alias,
                &v.address,
            )
            .opt_child(v.driver.clone()),
        );
    }
    e.children(d.cryptos.iter().map(|x| generic(&ctx, x)))
}

struct Ctx {
    inactive: bool,
}

impl Ctx {
    /// Appends `<alias>` (live form, or a user alias) and `<address>`.
    fn info(&self, e: Element, alias: &Option<String>, address: &Option<Address>) -> Element {
        let alias = alias
            .as_ref()
            .filter(|a| !self.inactive || a.starts_with("ua-"));
        e.opt_child(alias.map(|a| Element::new("alias").attr("name", a)))
            .opt_child(address.as_ref().map(format_address))
    }
}

/// What console `i` is written as. The first console of target type serial shows serial
/// 0's source (libvirt formats it from the serial's definition), so a pty path set on
/// the serial while the domain runs appears on both, with `tty` on the console.
fn console_view(d: &Devices, i: usize, c: &Chardev) -> Chardev {
    let paired = i == 0 && c.target.target_type.as_deref() == Some("serial");
    match d.serials.first() {
        Some(s) if paired => Chardev {
            char_type: s.char_type,
            tty: c.tty.clone().or_else(|| {
                (s.char_type == CharType::Pty)
                    .then(|| s.sources.first().and_then(|x| x.path.clone()))
                    .flatten()
            }),
            sources: s.sources.clone(),
            protocol: s.protocol.clone(),
            target: c.target.clone(),
            log: s.log.clone(),
            alias: c.alias.clone(),
            address: c.address.clone(),
        },
        _ => c.clone(),
    }
}

/// `<address>` as libvirt writes it.
pub(crate) fn format_address(a: &Address) -> Element {
    match a {
        Address::Pci(p) => Element::new("address")
            .attr("type", "pci")
            .attr("domain", format!("{:#06x}", p.domain))
            .attr("bus", format!("{:#04x}", p.bus))
            .attr("slot", format!("{:#04x}", p.slot))
            .attr("function", format!("{:#x}", p.function))
            .opt_attr("multifunction", p.multifunction),
        Address::Drive {
            controller,
            bus,
            target,
            unit,
        } => Element::new("address")
            .attr("type", "drive")
            .attr("controller", controller)
            .attr("bus", bus)
            .attr("target", target)
            .attr("unit", unit),
        Address::VirtioSerial {
            controller,
            bus,
            port,
        } => Element::new("address")
            .attr("type", "virtio-serial")
            .attr("controller", controller)
            .attr("bus", bus)
            .attr("port", port),
        Address::Other(e) => e.clone(),
    }
}

fn generic(ctx: &Ctx, g: &GenericDevice) -> Element {
    ctx.info(g.element.clone(), &g.alias, &g.address)
}

fn extra_named<'a>(extra: &'a [Element], names: &'a [&str]) -> impl Iterator<Item = Element> + 'a {
    extra
        .iter()
        .filter(move |e| names.contains(&e.name.as_str()))
        .cloned()
}

fn disk(ctx: &Ctx, d: &Disk) -> Element {
    let mut e = Element::new("disk")
        .attr("type", d.disk_type)
        .attr("device", d.device)
        .opt_attr("model", d.model.as_ref())
        .opt_attr("snapshot", d.snapshot.as_ref());
    if let Some(dr) = &d.driver {
        let mut de = Element::new("driver")
            .opt_attr("name", dr.name.as_ref())
            .opt_attr("type", dr.format)
            .opt_attr("cache", dr.cache)
            .opt_attr("io", dr.io.as_ref())
            .opt_attr("discard", dr.discard.as_ref());
        for (k, v) in &dr.other {
            de = de.attr(k, v);
        }
        e = e.child(de);
    }
    e = e.children(extra_named(&d.extra, &["auth"]));
    if let Some(s) = &d.source {
        let mut se = Element::new("source");
        // `index` numbers the storage chain of a running domain: live-only.
        for (k, v) in s
            .attrs
            .iter()
            .filter(|(k, _)| !(ctx.inactive && k == "index"))
        {
            se = se.attr(k, v);
        }
        e = e.child(se.children(s.children.iter().cloned()));
    }
    e = e
        .opt_child(d.backing_store.clone())
        .children(extra_named(&d.extra, &["mirror", "geometry", "blockio"]))
        .child(
            Element::new("target")
                .attr("dev", &d.target.dev)
                .opt_attr("bus", d.target.bus)
                .opt_attr("tray", d.target.tray.as_ref())
                .opt_attr("removable", d.target.removable)
                .opt_attr("rotation_rate", d.target.rotation_rate),
        )
        .children(extra_named(&d.extra, &["iotune", "throttlefilters"]))
        .opt_child(d.readonly.then(|| Element::new("readonly")))
        .opt_child(d.shareable.then(|| Element::new("shareable")))
        .opt_child(d.transient.then(|| Element::new("transient")))
        .opt_child(Element::text_elem("serial", d.serial.as_ref()))
        .opt_child(Element::text_elem("wwn", d.wwn.as_ref()))
        .opt_child(Element::text_elem("vendor", d.vendor.as_ref()))
        .opt_child(Element::text_elem("product", d.product.as_ref()))
        .children(extra_named(&d.extra, &["encryption"]))
        .opt_child(d.boot_order.map(|o| Element::new("boot").attr("order", o)));
    ctx.info(e, &d.alias, &d.address)
}

fn controller(ctx: &Ctx, c: &Controller) -> Element {
    let mut e = Element::new("controller")
        .attr("type", c.controller_type)
        .attr("index", c.index)
        .opt_attr("model", c.model.as_ref());
    for (k, v) in &c.attrs {
        e = e.attr(k, v);
    }
    ctx.info(e.children(c.children.iter().cloned()), &c.alias, &c.address)
}

fn interface(ctx: &Ctx, i: &Interface) -> Element {
    let mut e = Element::new("interface").attr("type", i.interface_type);
    for (k, v) in &i.attrs {
        e = e.attr(k, v);
    }
    let target_dev = i
        .target_dev
        .as_ref()
        .filter(|d| !(ctx.inactive && GENERATED_TAP_PREFIXES.iter().any(|p| d.starts_with(p))));
    let target = (target_dev.is_some() || i.target_managed.is_some()).then(|| {
        Element::new("target")
            .opt_attr("dev", target_dev)
            .opt_attr("managed", i.target_managed)
    });
    e = e
        .child(Element::new("mac").attr("address", &i.mac))
        .opt_child(i.source.as_ref().map(|s| interface_source(ctx, i, s)))
        .children(extra_named(
            &i.extra,
            &[
                "vlan",
                "virtualport",
                "bandwidth",
                "port",
                "ip",
                "route",
                "portForward",
                "script",
                "downscript",
                "backenddomain",
            ],
        ))
        .opt_child(target)
        .children(extra_named(&i.extra, &["guest"]))
        .opt_child(
            i.model
                .as_ref()
                .map(|m| Element::new("model").attr("type", m)),
        )
        .children(extra_named(
            &i.extra,
            &["driver", "backend", "filterref", "tune", "teaming"],
        ))
        .opt_child(
            i.link_state
                .as_ref()
                .map(|s| Element::new("link").attr("state", s)),
        )
        .opt_child(i.mtu.map(|m| Element::new("mtu").attr("size", m)))
        .children(extra_named(&i.extra, &["coalesce"]))
        .opt_child(i.boot_order.map(|o| Element::new("boot").attr("order", o)))
        .children(extra_named(&i.extra, &["rom", "acpi"]));
    ctx.info(e, &i.alias, &i.address)
}

/// Attributes of a `type='network'` interface's `<source>` that libvirt fills in while
/// the domain runs.
pub(crate) const LIVE_NETWORK_SOURCE_ATTRS: &[&str] = &["portid", "bridge"];

fn interface_source(ctx: &Ctx, i: &Interface, s: &Element) -> Element {
    let mut s = s.clone();
    if ctx.inactive && i.interface_type == InterfaceType::Network {
        s.attrs
            .retain(|(k, _)| !LIVE_NETWORK_SOURCE_ATTRS.contains(&k.as_str()));
    }
    s
}

fn chardev(ctx: &Ctx, name: &str, c: &Chardev) -> Element {
    let live_only_source = c.char_type == CharType::Pty && ctx.inactive;
    let mut e = Element::new(name).attr("type", c.char_type);
    if !ctx.inactive {
        e = e.opt_attr("tty", c.tty.as_ref());
    }
    if !live_only_source {
        for s in &c.sources {
            let mut se = Element::new("source")
                .opt_attr("mode", s.mode.as_ref())
                .opt_attr("path", s.path.as_ref())
                .opt_attr("host", s.host.as_ref())
                .opt_attr("service", s.service.as_ref())
                .opt_attr("append", s.append)
                .opt_attr("channel", s.channel.as_ref());
            for (k, v) in &s.other {
                se = se.attr(k, v);
            }
            e = e.child(se.children(s.children.iter().cloned()));
        }
    }
    e = e
        .opt_child(
            c.protocol
                .as_ref()
                .map(|p| Element::new("protocol").attr("type", p)),
        )
        .opt_child(c.log.clone());
    let t = &c.target;
    let has_target = t.target_type.is_some()
        || t.port.is_some()
        || t.name.is_some()
        || t.address.is_some()
        || t.model.is_some();
    if has_target {
        e = e.child(
            Element::new("target")
                .opt_attr("type", t.target_type.as_ref())
                .opt_attr("address", t.address.as_ref())
                .opt_attr("port", t.guestfwd_port.as_ref())
                .opt_attr("port", t.port)
                .opt_attr("name", t.name.as_ref())
                .opt_attr("state", t.state.as_ref().filter(|_| !ctx.inactive))
                .opt_child(
                    t.model
                        .as_ref()
                        .map(|m| Element::new("model").attr("name", m)),
                ),
        );
    }
    ctx.info(e, &c.alias, &c.address)
}

fn input(ctx: &Ctx, i: &Input) -> Element {
    let e = Element::new("input")
        .attr("type", &i.input_type)
        .opt_attr("bus", i.bus.as_ref())
        .opt_attr("model", i.model.as_ref())
        .children(i.children.iter().cloned());
    ctx.info(e, &i.alias, &i.address)
}

fn memballoon(ctx: &Ctx, m: &Memballoon) -> Element {
    let e = Element::new("memballoon")
        .attr("model", &m.model)
        .opt_attr("autodeflate", m.autodeflate)
        .opt_attr("freePageReporting", m.free_page_reporting)
        .opt_child(
            m.stats_period
                .map(|p| Element::new("stats").attr("period", p)),
        );
    ctx.info(e, &m.alias, &m.address)
        .opt_child(m.driver.clone())
}

fn rng(ctx: &Ctx, r: &Rng) -> Element {
    let mut b = Element::new("backend")
        .attr("model", &r.backend_model)
        .opt_attr("type", r.backend_type.as_ref())
        .children(r.backend_children.iter().cloned());
    if let Some(p) = &r.backend_path {
        b = b.text(p);
    }
    let e = Element::new("rng")
        .attr("model", &r.model)
        .opt_child(r.rate.clone())
        .child(b)
        .opt_child(r.driver.clone());
    ctx.info(e, &r.alias, &r.address)
}
