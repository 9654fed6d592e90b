//! XML text → [`Domain`]: well-formedness (roxmltree, no DTDs), then a hand-mapped walk
//! that reads what libvirt reads. Elements libvirt does not know are skipped, as libvirt
//! skips them; [`crate::unknown_content`] reports them.

mod devices;
pub(crate) mod helpers;

use roxmltree::Node;

use crate::element::Element;
use crate::error::{Error, Result};
use crate::model::*;
use crate::units::parse_kib;
use crate::xmlenum::XmlEnum;
use helpers::*;

/// The largest document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 10 << 20;
/// The most XML nodes accepted (real domains have a few thousand).
const MAX_NODES: u32 = 200_000;
/// The most attributes one element may carry. roxmltree's duplicate-attribute check is
/// quadratic in this number, so a cap keeps hostile input cheap to refuse.
const MAX_ATTRIBUTES: usize = 256;
/// The libvirt QEMU namespace (`qemu:commandline` and friends).
pub const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";

/// Parses the text into a roxmltree document with the size limits applied.
pub(crate) fn document(xml: &str) -> Result<roxmltree::Document<'_>> {
    if xml.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::TooLarge(format!(
            "{} bytes, the limit is {MAX_DOCUMENT_BYTES}",
            xml.len()
        )));
    }
    check_attribute_counts(xml)?;
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..Default::default()
    };
    roxmltree::Document::parse_with_options(xml, opts).map_err(|e| {
        if let roxmltree::Error::NodesLimitReached = e {
            return Error::TooLarge(format!("more than {MAX_NODES} XML nodes"));
        }
        let pos = e.pos();
        let mut message = e.to_string();
        // roxmltree appends " at L:C"; the position is reported separately.
        if let Some(i) = message.rfind(" at ") {
            message.truncate(i);
        }
        Error::Malformed {
            line: pos.row,
            column: pos.col,
            message,
        }
    })
}

/// Refuses a document in which one start tag holds more than [`MAX_ATTRIBUTES`]
/// attributes, by counting `=` outside quotes inside tags (comments, CDATA sections and
/// processing instructions are skipped). Malformed input is left to the real parser.
fn check_attribute_counts(xml: &str) -> Result<()> {
    let b = xml.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &b[i..];
        let skip_to = |end: &[u8]| -> usize {
            rest.windows(end.len())
                .position(|w| w == end)
                .map_or(b.len(), |p| i + p + end.len())
        };
        if rest.starts_with(b"<!--") {
            i = skip_to(b"-->");
            continue;
        }
        if rest.starts_with(b"<![CDATA[") {
            i = skip_to(b"]]>");
            continue;
        }
        if rest.starts_with(b"<?") {
            i = skip_to(b"?>");
            continue;
        }
        let mut quote = None;
        let mut count = 0;
        i += 1;
        while i < b.len() {
            match (quote, b[i]) {
                (None, b'>') => break,
                (None, q @ (b'\'' | b'"')) => quote = Some(q),
                (None, b'=') => count += 1,
                (Some(q), c) if c == q => quote = None,
                _ => {}
            }
            i += 1;
        }
        if count > MAX_ATTRIBUTES {
            return Err(Error::TooLarge(format!(
                "an element has more than {MAX_ATTRIBUTES} attributes"
            )));
        }
    }
    Ok(())
}

/// Parses a domain document without post-parse defaults.
pub(crate) fn parse_domain(xml: &str) -> Result<Domain> {
    let doc = document(xml)?;
    let root = doc.root_element();
    if !is(root, "domain") {
        return Err(Error::xml(format!(
            "unexpected root element <{}>, expecting <domain>",
            root.tag_name().name()
        )));
    }
    domain(root)
}

fn domain(root: Node<'_, '_>) -> Result<Domain> {
    let domain_type = attr_enum::<DomainType>(root, "type")?.ok_or_else(|| {
        Error::xml("Missing required attribute 'type' in element 'domain'".to_string())
    })?;
    let id = match attr(root, "id") {
        None => None,
        // libvirt writes id='-1' for inactive domains in some dumps; it means none.
        Some("-1") => None,
        Some(_) => attr_u32(root, "id")?,
    };
    let name = single_text(root, "name")?
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::xml("missing name information"))?;
    if name.contains('/') {
        return Err(Error::xml(format!("name {name} cannot contain '/'")));
    }
    let uuid = match single_text(root, "uuid")? {
        Some(s) => uuid::Uuid::parse_str(s.trim())
            .map_err(|_| Error::xml(format!("malformed uuid element '{}'", s.trim())))?
            .hyphenated()
            .to_string(),
        None => uuid::Uuid::new_v4().hyphenated().to_string(),
    };
    let genid = match single(root, "genid")? {
        None => None,
        Some(g) => {
            let t = text(g);
            let t = t.trim();
            if t.is_empty() {
                Some(String::new())
            } else {
                Some(
                    uuid::Uuid::parse_str(t)
                        .map_err(|_| Error::xml(format!("malformed genid element '{t}'")))?
                        .hyphenated()
                        .to_string(),
                )
            }
        }
    };
    let title = single_text(root, "title")?.filter(|t| !t.is_empty());
    if title.as_deref().is_some_and(|t| t.contains('\n')) {
        return Err(Error::xml("title can't contain newlines"));
    }
    let description = single_text(root, "description")?.filter(|t| !t.is_empty());
    let metadata = match single(root, "metadata")? {
        None => Vec::new(),
        Some(m) => metadata(m)?,
    };
    let max_memory = match single(root, "maxMemory")? {
        None => None,
        Some(n) => Some(MaxMemory {
            kib: parse_kib(&text(n), attr(n, "unit"), "maxMemory")?,
            slots: attr_u32(n, "slots")?,
        }),
    };
    let memory = match single(root, "memory")? {
        Some(n) => parse_kib(&text(n), attr(n, "unit"), "memory")?,
        None => return Err(Error::xml("missing element memory")),
    };
    if memory == 0 {
        return Err(Error::xml(
            "Memory size must be specified via <memory> or in the <numa> configuration",
        ));
    }
    let current_memory = match single(root, "currentMemory")? {
        Some(n) => parse_kib(&text(n), attr(n, "unit"), "currentMemory")?,
        None => 0,
    };
    let vcpu = vcpu(single(root, "vcpu")?)?;
    let cputune = single(root, "cputune")?.map(cputune).transpose()?;
    let os = os(single(root, "os")?.ok_or_else(|| Error::xml("missing element os"))?)?;
    // Empty containers are not written back (as libvirt), so they are not kept either.
    let features = match single(root, "features")? {
        None => None,
        Some(f) => Some(features(f)?).filter(|f| !f.is_empty()),
    };
    let cpu = single(root, "cpu")?
        .map(cpu)
        .transpose()?
        .filter(|c| *c != Cpu::default());
    let cputune = cputune.filter(|t| *t != Cputune::default());
    let clock = single(root, "clock")?.map(clock).transpose()?;
    // An empty <pm/> is not written back, so it is not kept either.
    let pm = single(root, "pm")?
        .map(pm)
        .transpose()?
        .filter(|p| p.suspend_to_mem.is_some() || p.suspend_to_disk.is_some());
    let devices = match single(root, "devices")? {
        Some(d) => devices::devices(d)?,
        None => Devices::default(),
    };
    let extra = extra_elements(root)?;
    let mut dom = Domain {
        domain_type,
        id,
        name,
        uuid,
        genid,
        title,
        description,
        metadata,
        max_memory,
        memory,
        current_memory,
        memory_backing: single(root, "memoryBacking")?
            .map(memory_backing)
            .transpose()?
            .filter(|m| *m != MemoryBacking::default()),
        vcpu,
        cputune,
        os,
        features,
        cpu,
        clock,
        on_poweroff: lifecycle(root, "on_poweroff", LifecycleAction::Destroy)?,
        on_reboot: lifecycle(root, "on_reboot", LifecycleAction::Restart)?,
        on_crash: lifecycle(root, "on_crash", LifecycleAction::Destroy)?,
        pm,
        devices,
        extra,
    };
    validate(&mut dom)?;
    Ok(dom)
}

fn metadata(m: Node<'_, '_>) -> Result<Vec<Element>> {
    let mut out = Vec::new();
    for c in m.children().filter(|c| c.is_element()) {
        let Some(ns) = c.tag_name().namespace() else {
            // libvirt requires a namespace for each metadata child and drops the rest.
            continue;
        };
        // One element per namespace: libvirt keeps the last one.
        let el = Element::from_node(c)?;
        out.retain(|e: &Element| e.get_attr(&ns_decl_key(e)) != Some(ns));
        out.push(el);
    }
    Ok(out)
}

/// The `xmlns` or `xmlns:p` attribute name that declares an element's own namespace.
fn ns_decl_key(e: &Element) -> String {
    match e.name.split_once(':') {
        Some((p, _)) => format!("xmlns:{p}"),
        None => "xmlns".to_string(),
    }
}

fn memory_backing(n: Node<'_, '_>) -> Result<MemoryBacking> {
    Ok(MemoryBacking {
        hugepages: match single(n, "hugepages")? {
            None => None,
            Some(h) => Some(kept_children(h, &["page"])?),
        },
        nosharepages: flag(n, "nosharepages")?,
        locked: flag(n, "locked")?,
        source_type: single(n, "source")?.and_then(|s| attr_s(s, "type")),
        access_mode: single(n, "access")?.and_then(|s| attr_s(s, "mode")),
        allocation: kept_single(n, "allocation")?,
        discard: flag(n, "discard")?,
    })
}

fn vcpu(n: Option<Node<'_, '_>>) -> Result<Vcpu> {
    let Some(n) = n else {
        return Ok(Vcpu {
            max: 1,
            current: None,
            placement: None,
            cpuset: None,
        });
    };
    let t = text(n);
    let max = match t.trim() {
        "" => 1,
        s => s
            .parse::<u32>()
            .map_err(|_| Error::xml("maximum vcpus count must be an integer"))?,
    };
    if max == 0 {
        return Err(Error::xml("Invalid number of vCPUs: 0"));
    }
    let current = match attr(n, "current") {
        None => None,
        Some(s) => Some(
            s.trim()
                .parse::<u32>()
                .map_err(|_| Error::xml("current vcpus count must be an integer"))?,
        ),
    };
    if let Some(c) = current {
        if c == 0 || c > max {
            return Err(Error::xml(format!(
                "maxvcpus must not be less than current vcpus ({max} < {c})"
            )));
        }
    }
    let cpuset = attr(n, "cpuset")
        .map(crate::cpuset::canonical)
        .transpose()?;
    Ok(Vcpu {
        max,
        // libvirt omits current when it equals the maximum.
        current: current.filter(|c| *c != max),
        placement: attr_enum(n, "placement")?.or(cpuset.as_ref().map(|_| Placement::Static)),
        cpuset,
    })
}

fn cputune(n: Node<'_, '_>) -> Result<Cputune> {
    let mut t = Cputune::default();
    for c in elements(n) {
        if c.tag_name().name() == "vcpupin" {
            t.vcpupins.push(VcpuPin {
                vcpu: attr_u32(c, "vcpu")?
                    .ok_or_else(|| Error::xml("missing vcpu id in vcpupin".to_string()))?,
                cpuset: crate::cpuset::canonical(req_attr(c, "cpuset")?)?,
            });
        } else if [
            "shares",
            "period",
            "quota",
            "global_period",
            "global_quota",
            "emulator_period",
            "emulator_quota",
            "iothread_period",
            "iothread_quota",
            "emulatorpin",
            "iothreadpin",
            "emulatorsched",
            "vcpusched",
            "iothreadsched",
            "cachetune",
            "memorytune",
        ]
        .contains(&c.tag_name().name())
        {
            t.other.push(Element::from_node(c)?);
        }
    }
    // The formatter writes <shares> first, as libvirt does.
    t.other.sort_by_key(|e| e.name != "shares");
    Ok(t)
}

fn os(n: Node<'_, '_>) -> Result<Os> {
    let ty = single(n, "type")?.ok_or_else(|| Error::xml("an os <type> must be specified"))?;
    let os_type = text(ty).trim().to_string();
    if !["hvm", "xen", "linux", "exe", "xenpvh"].contains(&os_type.as_str()) {
        return Err(Error::xml(format!("unknown OS type '{os_type}'")));
    }
    let loader = match single(n, "loader")? {
        None => None,
        Some(l) => Some(Loader {
            path: Some(text(l).trim().to_string()).filter(|s| !s.is_empty()),
            readonly: attr_enum(l, "readonly")?,
            secure: attr_enum(l, "secure")?,
            loader_type: attr_s(l, "type"),
        }),
    };
    let mut boot = Vec::new();
    for b in elements(n).filter(|c| c.tag_name().name() == "boot") {
        let dev = req_attr(b, "dev")?;
        if !["fd", "cdrom", "hd", "network"].contains(&dev) {
            return Err(Error::xml(format!("unknown boot device '{dev}'")));
        }
        boot.push(dev.to_string());
    }
    let bootmenu = match single(n, "bootmenu")? {
        None => None,
        Some(b) => Some(BootMenu {
            enable: attr_enum(b, "enable")?.unwrap_or(YesNo::No),
            timeout: attr_u32(b, "timeout")?,
        }),
    };
    let firmware = attr_s(n, "firmware");
    if let Some(f) = &firmware {
        if f != "bios" && f != "efi" {
            return Err(Error::xml(format!(
                "Invalid value for attribute 'firmware' in element 'os': '{f}'."
            )));
        }
    }
    Ok(Os {
        firmware,
        os_type,
        arch: attr_s(ty, "arch"),
        machine: attr_s(ty, "machine"),
        firmware_features: kept_single(n, "firmware")?,
        loader,
        nvram: kept_single(n, "nvram")?,
        kernel: single_text(n, "kernel")?.filter(|s| !s.is_empty()),
        initrd: single_text(n, "initrd")?.filter(|s| !s.is_empty()),
        cmdline: single_text(n, "cmdline")?.filter(|s| !s.is_empty()),
        dtb: single_text(n, "dtb")?.filter(|s| !s.is_empty()),
        boot,
        bootmenu,
        smbios: single(n, "smbios")?.and_then(|s| attr_s(s, "mode")),
        bios: kept_single(n, "bios")?,
        acpi: kept_single(n, "acpi")?,
    })
}

/// `<features>` children libvirt knows.
const FEATURES: &[&str] = &[
    "acpi",
    "apic",
    "pae",
    "hap",
    "viridian",
    "privnet",
    "hyperv",
    "kvm",
    "pvspinlock",
    "capabilities",
    "pmu",
    "vmport",
    "gic",
    "smm",
    "ioapic",
    "hpt",
    "vmcoreinfo",
    "htm",
    "nested-hv",
    "msrs",
    "ccf-assist",
    "xen",
    "cfpc",
    "sbbc",
    "ibs",
    "tcg",
    "async-teardown",
    "ras",
    "ps2",
];

fn features(n: Node<'_, '_>) -> Result<Vec<Element>> {
    let mut out: Vec<Element> = Vec::new();
    for c in elements(n) {
        let name = c.tag_name().name();
        if !FEATURES.contains(&name) {
            continue;
        }
        if out.iter().any(|e| e.name == name) {
            return Err(Error::xml(format!(
                "element <{name}> appears more than once in <features>"
            )));
        }
        out.push(Element::from_node(c)?);
    }
    // libvirt writes features in its own fixed order.
    out.sort_by_key(|e| FEATURES.iter().position(|f| *f == e.name));
    Ok(out)
}

fn cpu(n: Node<'_, '_>) -> Result<Cpu> {
    let model = single(n, "model")?.map(|m| CpuModel {
        name: Some(text(m).trim().to_string()).filter(|s| !s.is_empty()),
        fallback: attr_s(m, "fallback"),
        vendor_id: attr_s(m, "vendor_id"),
    });
    let topology = match single(n, "topology")? {
        None => None,
        Some(t) => {
            let get = |name: &str, default: Option<u32>| -> Result<u32> {
                let v = attr_u32(t, name)?.or(default).ok_or_else(|| {
                    Error::xml(format!("Missing '{name}' attribute in CPU topology"))
                })?;
                if v == 0 {
                    return Err(Error::xml(format!(
                        "Invalid '{name}' value in CPU topology: must be at least 1"
                    )));
                }
                Ok(v)
            };
            Some(CpuTopology {
                sockets: get("sockets", None)?,
                dies: get("dies", Some(1))?,
                cores: get("cores", None)?,
                threads: get("threads", None)?,
            })
        }
    };
    let mut features: Vec<CpuFeature> = Vec::new();
    for f in elements(n).filter(|c| c.tag_name().name() == "feature") {
        let name = req_attr(f, "name")?.to_string();
        if features.iter().any(|x| x.name == name) {
            return Err(Error::xml(format!(
                "CPU feature '{name}' specified more than once"
            )));
        }
        features.push(CpuFeature {
            policy: attr_enum(f, "policy")?.unwrap_or(FeaturePolicy::Require),
            name,
        });
    }
    let mode = attr_enum(n, "mode")?;
    if attr(n, "migratable").is_some()
        && !matches!(
            mode,
            Some(CpuModeAttr::HostPassthrough | CpuModeAttr::Maximum)
        )
    {
        return Err(Error::unsupported(
            "Attribute migratable is only allowed for 'host-passthrough' / 'maximum' CPU mode",
        ));
    }
    Ok(Cpu {
        mode,
        match_: attr_s(n, "match"),
        check: attr_s(n, "check"),
        migratable: attr_enum(n, "migratable")?,
        model,
        vendor: single_text(n, "vendor")?,
        topology,
        cache: kept_single(n, "cache")?,
        features,
        numa: kept_single(n, "numa")?,
    })
}

fn clock(n: Node<'_, '_>) -> Result<Clock> {
    let offset = attr(n, "offset").unwrap_or("utc");
    if !["utc", "localtime", "timezone", "variable", "absolute"].contains(&offset) {
        return Err(Error::xml(format!(
            "Invalid value for attribute 'offset' in element 'clock': '{offset}'."
        )));
    }
    let mut timers = Vec::new();
    for t in elements(n).filter(|c| c.tag_name().name() == "timer") {
        timers.push(Timer {
            name: req_attr(t, "name")?.to_string(),
            present: attr_enum(t, "present")?,
            tickpolicy: attr_s(t, "tickpolicy"),
            track: attr_s(t, "track"),
            frequency: attr_uint(t, "frequency", u64::MAX)?,
            mode: attr_s(t, "mode"),
            catchup: kept_single(t, "catchup")?,
        });
    }
    Ok(Clock {
        offset: offset.to_string(),
        attrs: other_attrs(n, &["offset"]),
        timers,
    })
}

fn pm(n: Node<'_, '_>) -> Result<Pm> {
    let get = |name: &str| -> Result<Option<YesNo>> {
        match single(n, name)? {
            None => Ok(None),
            Some(c) => attr_enum(c, "enabled"),
        }
    };
    Ok(Pm {
        suspend_to_mem: get("suspend-to-mem")?,
        suspend_to_disk: get("suspend-to-disk")?,
    })
}

fn lifecycle(root: Node<'_, '_>, name: &str, default: LifecycleAction) -> Result<LifecycleAction> {
    match single_text(root, name)? {
        None => Ok(default),
        Some(t) => LifecycleAction::from_xml(t.trim())
            .ok_or_else(|| Error::xml(format!("invalid {name} value: '{}'", t.trim()))),
    }
}

fn extra_elements(root: Node<'_, '_>) -> Result<Vec<Element>> {
    let mut out = Vec::new();
    for c in root.children().filter(|c| c.is_element()) {
        let local = c.tag_name().name();
        let keep = match c.tag_name().namespace() {
            None => EXTRA_ELEMENTS.contains(&local),
            Some(ns) => ns == QEMU_NS && EXTRA_ELEMENTS.contains(&format!("qemu:{local}").as_str()),
        };
        if keep {
            let mut el = Element::from_node(c)?;
            if c.tag_name().namespace() == Some(QEMU_NS) {
                // Normalise the prefix so the canonical form always says qemu:.
                el.name = format!("qemu:{local}");
                rename_prefix(&mut el, QEMU_NS);
            }
            out.push(el);
        }
    }
    // Kept in the canonical order the formatter writes them in.
    out.sort_by_key(|e| EXTRA_ELEMENTS.iter().position(|x| *x == e.name));
    Ok(out)
}

/// Rewrites an element copied from foreign prefixes to use `qemu:` throughout. Every
/// prefix bound to `ns` is renamed: libvirt's own test input binds the namespace twice
/// (`<ns0:commandline xmlns:ns0=…><ns1:arg xmlns:ns1=…/>`), and a child left with its
/// old prefix would be written without a declaration (the output would not parse).
fn rename_prefix(el: &mut Element, ns: &str) {
    let old: Vec<String> = el
        .attrs
        .iter()
        .filter(|(k, v)| k.starts_with("xmlns") && v == ns)
        .map(|(k, _)| {
            k.trim_start_matches("xmlns")
                .trim_start_matches(':')
                .to_string()
        })
        .collect();
    el.attrs
        .retain(|(k, v)| !(k.starts_with("xmlns") && v == ns));
    el.attrs
        .insert(0, ("xmlns:qemu".to_string(), ns.to_string()));
    fn renamed(name: &str, old: &[String], element: bool) -> Option<String> {
        old.iter().find_map(|o| {
            if o.is_empty() {
                // The default namespace applies to unprefixed elements, not attributes.
                (element && !name.contains(':')).then(|| format!("qemu:{name}"))
            } else {
                name.strip_prefix(&format!("{o}:"))
                    .map(|local| format!("qemu:{local}"))
            }
        })
    }
    fn walk(e: &mut Element, old: &[String], top: bool) {
        if !top {
            if let Some(n) = renamed(&e.name, old, true) {
                e.name = n;
            }
        }
        for (k, _) in &mut e.attrs {
            if let Some(n) = renamed(k, old, false) {
                *k = n;
            }
        }
        for c in &mut e.children {
            if let crate::element::Node::Element(ch) = c {
                walk(ch, old, false);
            }
        }
    }
    if !old.is_empty() {
        walk(el, &old, true);
    }
}

/// Checks libvirt performs when a definition is parsed (`virDomainDefValidate`).
fn validate(dom: &mut Domain) -> Result<()> {
    let device_boot = dom.devices.disks.iter().any(|d| d.boot_order.is_some())
        || dom
            .devices
            .interfaces
            .iter()
            .any(|i| i.boot_order.is_some());
    if device_boot && !dom.os.boot.is_empty() {
        return Err(Error::unsupported(
            "per-device boot elements cannot be used together with os/boot elements",
        ));
    }
    if let Some(t) = dom.cpu.as_ref().and_then(|c| c.topology) {
        let product =
            u64::from(t.sockets) * u64::from(t.dies) * u64::from(t.cores) * u64::from(t.threads);
        if product != u64::from(dom.vcpu.max) {
            return Err(Error::xml(format!(
                "CPU topology doesn't match maximum vcpu count ({}x{}x{}x{} != {})",
                t.sockets, t.dies, t.cores, t.threads, dom.vcpu.max
            )));
        }
    }
    if let Some(m) = &dom.max_memory {
        if m.kib < dom.memory {
            return Err(Error::xml(
                "maximum memory size must be equal or greater than the actual memory size",
            ));
        }
    }
    Ok(())
}
