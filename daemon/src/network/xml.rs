//! libvirt network XML (`network.rng`), the subset issue #17 lists: `<name>`, `<uuid>`,
//! `<forward mode='nat|route|open|bridge' dev>`, `<bridge name stp delay>`, `<mac>`,
//! `<mtu>`, `<domain name>`, `<dns enable>` with `<host ip><hostname/>`, `<ip>` (v4 and
//! v6) with `<dhcp><range>` and `<host mac ip name>`. Anything else is refused with a
//! message naming the element, so nothing is silently dropped.
//!
//! [`Network::parse`] reads what a client sends; [`Network::fill_defaults`] adds what
//! libvirt adds at define time (UUID, `mode='nat'` for a bare `<forward/>`, a bridge
//! `virbrN`, `stp='on' delay='0'`, a `52:54:00` MAC); [`Network::to_xml`] prints
//! libvirt's canonical form (what `net-dumpxml` shows).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use uuid::Uuid;

use super::error::{Error, Result};

/// `<forward mode>`; `None` in [`Network::forward`] is an isolated network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardMode {
    Nat,
    Route,
    Open,
    /// Onto an existing host bridge (`<bridge name>`): no addresses, no DHCP, no rules.
    Bridge,
}

impl ForwardMode {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "nat" => Self::Nat,
            "route" => Self::Route,
            "open" => Self::Open,
            "bridge" => Self::Bridge,
            other => {
                return Err(Error::ConfigUnsupported(format!(
                    "network <forward mode='{other}'> is not supported (nat, route, open, bridge)"
                )))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nat => "nat",
            Self::Route => "route",
            Self::Open => "open",
            Self::Bridge => "bridge",
        }
    }
}

/// `<forward>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub mode: ForwardMode,
    /// `dev`: the only host interface forwarded traffic may leave by.
    pub dev: Option<String>,
}

/// `<dhcp><host mac ip name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpHost {
    pub mac: Option<String>,
    pub ip: Option<IpAddr>,
    pub name: Option<String>,
}

/// `<ip>`: an address of the bridge and its subnet, with optional DHCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpDef {
    pub address: IpAddr,
    /// Prefix length (from `prefix` or `netmask`).
    pub prefix: u8,
    /// Whether the XML gave `netmask` (printed back the same way).
    pub netmask_given: bool,
    /// `<dhcp><range start end>`.
    pub ranges: Vec<(IpAddr, IpAddr)>,
    pub hosts: Vec<DhcpHost>,
    /// `<dhcp>` was present (even empty).
    pub dhcp: bool,
}

impl IpDef {
    pub fn is_v4(&self) -> bool {
        self.address.is_ipv4()
    }

    /// The subnet's network address.
    pub fn network(&self) -> IpAddr {
        mask(self.address, self.prefix)
    }

    /// `a.b.c.d/p` of the subnet.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network(), self.prefix)
    }

    /// Whether `a` lies in this subnet.
    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.is_v4() && mask(a, self.prefix) == self.network()
    }

    /// The IPv4 netmask.
    pub fn netmask_v4(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask32(self.prefix))
    }
}

fn prefix_mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

/// `a` with the bits beyond `prefix` cleared.
pub fn mask(a: IpAddr, prefix: u8) -> IpAddr {
    match a {
        IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(u32::from(v) & prefix_mask32(prefix))),
        IpAddr::V6(v) => {
            let m = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(v) & m))
        }
    }
}

/// `<dns><host ip><hostname>…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsHost {
    pub ip: IpAddr,
    pub names: Vec<String>,
}

/// A network definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub name: String,
    pub uuid: Option<Uuid>,
    pub forward: Option<Forward>,
    pub bridge: Option<String>,
    /// `stp` (default on).
    pub stp: Option<bool>,
    /// `delay` in seconds (default 0).
    pub delay: Option<u32>,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    pub domain: Option<String>,
    /// `<dns enable='no'>`: no DNS server (dnsmasq `port=0`).
    pub dns_enable: Option<bool>,
    pub dns_hosts: Vec<DnsHost>,
    pub ips: Vec<IpDef>,
}

fn xml_err(msg: impl Into<String>) -> Error {
    Error::Xml(msg.into())
}

fn attr<'a>(n: roxmltree::Node<'a, '_>, name: &str) -> Option<&'a str> {
    n.attribute(name)
}

fn req_attr<'a>(n: roxmltree::Node<'a, '_>, name: &str, what: &str) -> Result<&'a str> {
    n.attribute(name)
        .ok_or_else(|| xml_err(format!("missing '{name}' attribute of {what}")))
}

fn yes_no(v: &str, what: &str) -> Result<bool> {
    match v {
        "yes" | "on" => Ok(true),
        "no" | "off" => Ok(false),
        other => Err(xml_err(format!("invalid value '{other}' of {what}"))),
    }
}

fn parse_ip(v: &str, what: &str) -> Result<IpAddr> {
    v.parse()
        .map_err(|_| xml_err(format!("Invalid {what} address '{v}'")))
}

fn elements<'a, 'i>(n: roxmltree::Node<'a, 'i>) -> impl Iterator<Item = roxmltree::Node<'a, 'i>> {
    n.children().filter(|c| c.is_element())
}

fn unsupported(element: &str) -> Error {
    Error::ConfigUnsupported(format!("network element <{element}> is not supported"))
}

/// Whether `name` may be a Linux interface name (`dev_valid_name`).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.contains(['/', ':'])
        && !name.chars().any(char::is_whitespace)
}

/// Whether `mac` is `xx:xx:xx:xx:xx:xx`.
pub fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

impl Network {
    /// Parses network XML; errors name the element or attribute at fault.
    pub fn parse(xml: &str) -> Result<Network> {
        let doc = roxmltree::Document::parse(xml)
            .map_err(|e| xml_err(format!("(network_definition):{e}")))?;
        let root = doc.root_element();
        if root.tag_name().name() != "network" {
            return Err(xml_err(format!(
                "unexpected root element <{}>, expecting <network>",
                root.tag_name().name()
            )));
        }
        let mut n = Network {
            name: String::new(),
            uuid: None,
            forward: None,
            bridge: None,
            stp: None,
            delay: None,
            mac: None,
            mtu: None,
            domain: None,
            dns_enable: None,
            dns_hosts: Vec::new(),
            ips: Vec::new(),
        };
        let mut named = false;
        for c in elements(root) {
            match c.tag_name().name() {
                "name" => {
                    n.name = c.text().unwrap_or("").trim().to_string();
                    named = true;
                }
                "uuid" => {
                    let t = c.text().unwrap_or("").trim();
                    n.uuid = Some(
                        Uuid::parse_str(t)
                            .map_err(|_| xml_err(format!("malformed uuid element '{t}'")))?,
                    );
                }
                "forward" => {
                    let mode = attr(c, "mode").map(ForwardMode::parse).transpose()?;
                    for e in elements(c) {
                        // `<nat><port start='1024' end='65535'/></nat>` is what we
                        // print; other NAT settings are not modelled.
                        let default_nat = e.has_tag_name("nat")
                            && elements(e).all(|p| {
                                p.has_tag_name("port")
                                    && p.attribute("start") == Some("1024")
                                    && p.attribute("end") == Some("65535")
                            });
                        if !default_nat {
                            return Err(unsupported(&format!("forward><{}", e.tag_name().name())));
                        }
                    }
                    n.forward = Some(Forward {
                        mode: mode.unwrap_or(ForwardMode::Nat),
                        dev: attr(c, "dev").map(str::to_string),
                    });
                }
                "bridge" => {
                    n.bridge = attr(c, "name").map(str::to_string);
                    n.stp = attr(c, "stp")
                        .map(|v| yes_no(v, "<bridge stp>"))
                        .transpose()?;
                    n.delay = attr(c, "delay")
                        .map(|v| {
                            v.parse().map_err(|_| {
                                xml_err(format!("Invalid delay value '{v}' in network"))
                            })
                        })
                        .transpose()?;
                }
                "mac" => {
                    let m = req_attr(c, "address", "<mac>")?;
                    if !valid_mac(m) {
                        return Err(xml_err(format!(
                            "Invalid bridge mac address '{m}' in network"
                        )));
                    }
                    n.mac = Some(m.to_ascii_lowercase());
                }
                "mtu" => {
                    let v = req_attr(c, "size", "<mtu>")?;
                    n.mtu = Some(
                        v.parse()
                            .map_err(|_| xml_err(format!("Invalid mtu size '{v}' in network")))?,
                    );
                }
                "domain" => n.domain = Some(req_attr(c, "name", "<domain>")?.to_string()),
                "dns" => n.parse_dns(c)?,
                "ip" => n.ips.push(parse_ip_def(c)?),
                other => return Err(unsupported(other)),
            }
        }
        if !named || n.name.is_empty() {
            return Err(xml_err("missing network name"));
        }
        if n.name.contains('/') {
            return Err(xml_err(format!("name {} cannot contain '/'", n.name)));
        }
        if let Some(b) = &n.bridge {
            if !valid_ifname(b) {
                return Err(xml_err(format!(
                    "Invalid bridge name '{b}' in network '{}'",
                    n.name
                )));
            }
        }
        n.validate()?;
        Ok(n)
    }

    fn parse_dns(&mut self, c: roxmltree::Node<'_, '_>) -> Result<()> {
        self.dns_enable = attr(c, "enable")
            .map(|v| yes_no(v, "<dns enable>"))
            .transpose()?;
        for h in elements(c) {
            if h.tag_name().name() != "host" {
                return Err(unsupported(&format!("dns><{}", h.tag_name().name())));
            }
            let ip = parse_ip(req_attr(h, "ip", "<dns><host>")?, "dns host")?;
            let names: Vec<String> = elements(h)
                .filter(|e| e.has_tag_name("hostname"))
                .filter_map(|e| e.text())
                .map(|t| t.trim().to_string())
                .collect();
            if names.is_empty() {
                return Err(xml_err(format!(
                    "Missing hostname in network DNS HOST record for {ip}"
                )));
            }
            self.dns_hosts.push(DnsHost { ip, names });
        }
        Ok(())
    }

    /// libvirt's semantic checks: DHCP ranges and hosts inside their subnet, at most
    /// one DHCP-enabled `<ip>` per family, `mode='bridge'` names a bridge and has no `<ip>`.
    fn validate(&self) -> Result<()> {
        for ip in &self.ips {
            for (s, e) in &ip.ranges {
                for a in [s, e] {
                    if !ip.contains(*a) {
                        return Err(Error::ConfigUnsupported(format!(
                            "range {s} - {e} is not entirely within network {}",
                            ip.cidr()
                        )));
                    }
                }
                if ip_order(*s) > ip_order(*e) {
                    return Err(Error::ConfigUnsupported(format!(
                        "range {s} - {e} is reversed "
                    )));
                }
            }
            for h in &ip.hosts {
                if let Some(a) = h.ip {
                    if !ip.contains(a) {
                        return Err(Error::ConfigUnsupported(format!(
                            "DHCP host entry {a} is not within network {}",
                            ip.cidr()
                        )));
                    }
                }
            }
        }
        for v4 in [true, false] {
            if self
                .ips
                .iter()
                .filter(|i| i.is_v4() == v4 && i.dhcp)
                .count()
                > 1
            {
                return Err(Error::ConfigUnsupported(format!(
                    "Multiple {} dhcp sections found -- dhcp is supported only for a single {} address on each network",
                    if v4 { "IPv4" } else { "IPv6" },
                    if v4 { "IPv4" } else { "IPv6" }
                )));
            }
        }
        if self
            .forward
            .as_ref()
            .is_some_and(|f| f.mode == ForwardMode::Bridge)
        {
            if self.bridge.is_none() {
                return Err(xml_err(format!(
                    "network '{}' has forward mode 'bridge' but no bridge name",
                    self.name
                )));
            }
            if !self.ips.is_empty() || self.domain.is_some() || !self.dns_hosts.is_empty() {
                return Err(xml_err(format!(
                    "Unsupported <ip>, <dns> or <domain> element in network {} with forward mode='bridge'",
                    self.name
                )));
            }
        }
        Ok(())
    }

    /// Whether this network makes its own bridge (every mode but `bridge`).
    pub fn owns_bridge(&self) -> bool {
        !self
            .forward
            .as_ref()
            .is_some_and(|f| f.mode == ForwardMode::Bridge)
    }

    /// What libvirt adds at define time. `taken` says whether a bridge name is in use
    /// (by another network or the host) for picking `virbrN`.
    pub fn fill_defaults(&mut self, taken: impl Fn(&str) -> bool) {
        if self.uuid.is_none() {
            self.uuid = Some(Uuid::new_v4());
        }
        if !self.owns_bridge() {
            return;
        }
        if self.bridge.as_deref().is_none_or(|b| b.contains("%d")) {
            let template = self.bridge.clone().unwrap_or_else(|| "virbr%d".into());
            self.bridge = (0..256)
                .map(|i| template.replace("%d", &i.to_string()))
                .find(|b| !taken(b));
        }
        self.stp.get_or_insert(true);
        self.delay.get_or_insert(0);
        if self.mac.is_none() {
            let r = *Uuid::new_v4().as_bytes();
            self.mac = Some(format!("52:54:00:{:02x}:{:02x}:{:02x}", r[0], r[1], r[2]));
        }
    }

    /// The canonical XML (`net-dumpxml`).
    pub fn to_xml(&self) -> String {
        let mut s = String::from("<network>\n");
        let _ = writeln!(s, "  <name>{}</name>", esc(&self.name));
        if let Some(u) = &self.uuid {
            let _ = writeln!(s, "  <uuid>{u}</uuid>");
        }
        if let Some(f) = &self.forward {
            let _ = write!(s, "  <forward mode='{}'", f.mode.as_str());
            if let Some(d) = &f.dev {
                let _ = write!(s, " dev='{}'", esc(d));
            }
            if f.mode == ForwardMode::Nat {
                s.push_str(">\n    <nat>\n      <port start='1024' end='65535'/>\n    </nat>\n  </forward>\n");
            } else {
                s.push_str("/>\n");
            }
        }
        if let Some(b) = &self.bridge {
            let _ = write!(s, "  <bridge name='{}'", esc(b));
            if let Some(stp) = self.stp {
                let _ = write!(s, " stp='{}'", if stp { "on" } else { "off" });
            }
            if let Some(d) = self.delay {
                let _ = write!(s, " delay='{d}'");
            }
            s.push_str("/>\n");
        }
        if let Some(m) = self.mtu {
            let _ = writeln!(s, "  <mtu size='{m}'/>");
        }
        if let Some(m) = &self.mac {
            let _ = writeln!(s, "  <mac address='{m}'/>");
        }
        if let Some(d) = &self.domain {
            let _ = writeln!(s, "  <domain name='{}'/>", esc(d));
        }
        if self.dns_enable.is_some() || !self.dns_hosts.is_empty() {
            s.push_str("  <dns");
            if let Some(e) = self.dns_enable {
                let _ = write!(s, " enable='{}'", if e { "yes" } else { "no" });
            }
            if self.dns_hosts.is_empty() {
                s.push_str("/>\n");
            } else {
                s.push_str(">\n");
                for h in &self.dns_hosts {
                    let _ = writeln!(s, "    <host ip='{}'>", h.ip);
                    for n in &h.names {
                        let _ = writeln!(s, "      <hostname>{}</hostname>", esc(n));
                    }
                    s.push_str("    </host>\n");
                }
                s.push_str("  </dns>\n");
            }
        }
        for ip in &self.ips {
            if ip.is_v4() {
                s.push_str("  <ip");
            } else {
                s.push_str("  <ip family='ipv6'");
            }
            let _ = write!(s, " address='{}'", ip.address);
            if ip.netmask_given && ip.is_v4() {
                let _ = write!(s, " netmask='{}'", ip.netmask_v4());
            } else {
                let _ = write!(s, " prefix='{}'", ip.prefix);
            }
            if !ip.dhcp {
                s.push_str("/>\n");
                continue;
            }
            s.push_str(">\n    <dhcp>\n");
            for (a, b) in &ip.ranges {
                let _ = writeln!(s, "      <range start='{a}' end='{b}'/>");
            }
            for h in &ip.hosts {
                s.push_str("      <host");
                if let Some(m) = &h.mac {
                    let _ = write!(s, " mac='{m}'");
                }
                if let Some(n) = &h.name {
                    let _ = write!(s, " name='{}'", esc(n));
                }
                if let Some(a) = &h.ip {
                    let _ = write!(s, " ip='{a}'");
                }
                s.push_str("/>\n");
            }
            s.push_str("    </dhcp>\n  </ip>\n");
        }
        s.push_str("</network>\n");
        s
    }

    /// The `<ip>` DHCP is served on for a family.
    pub fn dhcp_ip(&self, v4: bool) -> Option<&IpDef> {
        self.ips.iter().find(|i| i.is_v4() == v4 && i.dhcp)
    }
}

fn ip_order(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn parse_ip_def(c: roxmltree::Node<'_, '_>) -> Result<IpDef> {
    let family = attr(c, "family");
    let address = parse_ip(req_attr(c, "address", "<ip>")?, "ip")?;
    match (family, address) {
        (None | Some("ipv4"), IpAddr::V4(_)) | (Some("ipv6") | None, IpAddr::V6(_)) => {}
        (Some(f), _) => {
            return Err(xml_err(format!(
                "family '{f}' does not match address {address} in network <ip>"
            )))
        }
    }
    let (prefix, netmask_given) = match (attr(c, "prefix"), attr(c, "netmask")) {
        (Some(_), Some(_)) => {
            return Err(xml_err(format!(
                "Network IP address '{address}' cannot have both a prefix and a netmask"
            )))
        }
        (Some(p), None) => (
            p.parse::<u8>()
                .ok()
                .filter(|p| *p <= if address.is_ipv4() { 32 } else { 128 })
                .ok_or_else(|| xml_err(format!("Invalid prefix '{p}' of network <ip>")))?,
            false,
        ),
        (None, Some(m)) => {
            let m: Ipv4Addr = m
                .parse()
                .map_err(|_| xml_err(format!("Invalid netmask '{m}' of network <ip>")))?;
            let bits = u32::from(m);
            if bits.leading_ones() + bits.trailing_zeros() != 32 || address.is_ipv6() {
                return Err(xml_err(format!("Invalid netmask '{m}' of network <ip>")));
            }
            (bits.leading_ones() as u8, true)
        }
        (None, None) if address.is_ipv4() => {
            // libvirt: the classful default.
            let first = match address {
                IpAddr::V4(v) => v.octets()[0],
                IpAddr::V6(_) => 0,
            };
            (
                match first {
                    0..=127 => 8,
                    128..=191 => 16,
                    _ => 24,
                },
                false,
            )
        }
        (None, None) => (64, false),
    };
    let mut ip = IpDef {
        address,
        prefix,
        netmask_given,
        ranges: Vec::new(),
        hosts: Vec::new(),
        dhcp: false,
    };
    for e in elements(c) {
        match e.tag_name().name() {
            "dhcp" => {
                ip.dhcp = true;
                for d in elements(e) {
                    match d.tag_name().name() {
                        "range" => {
                            let s =
                                parse_ip(req_attr(d, "start", "<dhcp><range>")?, "range start")?;
                            let t = parse_ip(req_attr(d, "end", "<dhcp><range>")?, "range end")?;
                            if let Some(x) = elements(d).next() {
                                return Err(unsupported(&format!(
                                    "range><{}",
                                    x.tag_name().name()
                                )));
                            }
                            ip.ranges.push((s, t));
                        }
                        "host" => {
                            let mac = attr(d, "mac").map(str::to_ascii_lowercase);
                            if let Some(m) = &mac {
                                if !valid_mac(m) {
                                    return Err(xml_err(format!(
                                        "Cannot parse MAC address '{m}' in network"
                                    )));
                                }
                            }
                            let h = DhcpHost {
                                mac,
                                ip: attr(d, "ip").map(|v| parse_ip(v, "host")).transpose()?,
                                name: attr(d, "name").map(str::to_string),
                            };
                            if h.mac.is_none() && h.name.is_none() {
                                return Err(xml_err(
                                    "Static host definition in IPv4 network must have mac or name attribute",
                                ));
                            }
                            ip.hosts.push(h);
                        }
                        other => return Err(unsupported(&format!("dhcp><{other}"))),
                    }
                }
            }
            other => return Err(unsupported(&format!("ip><{other}"))),
        }
    }
    Ok(ip)
}

/// Escapes text for XML content and single-quoted attributes.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

/// The `<dns><host ip><hostname>…` element of NETWORK_UPDATE (section dns-host).
pub fn parse_dns_host(xml: &str) -> Result<DnsHost> {
    let doc =
        roxmltree::Document::parse(xml).map_err(|e| xml_err(format!("(network_update):{e}")))?;
    let h = doc.root_element();
    if h.tag_name().name() != "host" {
        return Err(xml_err(format!(
            "unexpected element <{}>, expecting <host>",
            h.tag_name().name()
        )));
    }
    let ip = parse_ip(req_attr(h, "ip", "<dns><host>")?, "dns host")?;
    let names: Vec<String> = elements(h)
        .filter(|e| e.has_tag_name("hostname"))
        .filter_map(|e| e.text())
        .map(|t| t.trim().to_string())
        .collect();
    if names.is_empty() {
        return Err(xml_err(format!(
            "Missing hostname in network DNS HOST record for {ip}"
        )));
    }
    Ok(DnsHost { ip, names })
}

/// The `<dhcp><host>` element of NETWORK_UPDATE (section ip-dhcp-host).
pub fn parse_dhcp_host(xml: &str) -> Result<DhcpHost> {
    let doc =
        roxmltree::Document::parse(xml).map_err(|e| xml_err(format!("(network_update):{e}")))?;
    let d = doc.root_element();
    if d.tag_name().name() != "host" {
        return Err(xml_err(format!(
            "unexpected element <{}>, expecting <host>",
            d.tag_name().name()
        )));
    }
    let mac = attr(d, "mac").map(str::to_ascii_lowercase);
    if mac.as_deref().is_some_and(|m| !valid_mac(m)) {
        return Err(xml_err("Cannot parse MAC address in <host>"));
    }
    Ok(DhcpHost {
        mac,
        ip: attr(d, "ip").map(|v| parse_ip(v, "host")).transpose()?,
        name: attr(d, "name").map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libvirt-daemon-config-network's `default.xml`.
    pub const DEFAULT_XML: &str = include_str!("../../../packaging/networks/default.xml");

    #[test]
    fn default_network_gets_libvirts_defaults() {
        let mut n = Network::parse(DEFAULT_XML).unwrap();
        assert_eq!(n.forward.as_ref().unwrap().mode, ForwardMode::Nat);
        n.fill_defaults(|_| false);
        let x = n.to_xml();
        assert!(x.contains("<forward mode='nat'>"), "{x}");
        assert!(
            x.contains("<bridge name='virbr0' stp='on' delay='0'/>"),
            "{x}"
        );
        assert!(x.contains("<mac address='52:54:00:"), "{x}");
        assert!(
            x.contains("<ip address='192.168.122.1' netmask='255.255.255.0'>"),
            "{x}"
        );
        assert!(
            x.contains("<range start='192.168.122.2' end='192.168.122.254'/>"),
            "{x}"
        );
        // Round trip: what we print parses back to the same network.
        assert_eq!(Network::parse(&x).unwrap(), n);
    }

    #[test]
    fn free_bridge_name_is_picked() {
        let mut n = Network::parse("<network><name>x</name></network>").unwrap();
        n.fill_defaults(|b| b == "virbr0" || b == "virbr1");
        assert_eq!(n.bridge.as_deref(), Some("virbr2"));
        assert!(n.forward.is_none());
    }

    #[test]
    fn bad_input_names_what_is_wrong() {
        let e = Network::parse(
            "<network><name>x</name><ip address='10.0.0.1' prefix='24'><dhcp>\
             <range start='10.0.1.2' end='10.0.1.9'/></dhcp></ip></network>",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("not entirely within network 10.0.0.0/24"),
            "{e}"
        );
        let e =
            Network::parse("<network><name>x</name><portgroup name='a'/></network>").unwrap_err();
        assert!(e.to_string().contains("<portgroup>"), "{e}");
        let e =
            Network::parse("<network><name>x</name><forward mode='vepa'/></network>").unwrap_err();
        assert!(e.to_string().contains("'vepa'"), "{e}");
        let e =
            Network::parse("<network><name>x</name><bridge name='a b'/></network>").unwrap_err();
        assert!(e.to_string().contains("Invalid bridge name"), "{e}");
        assert!(Network::parse("<network/>").is_err());
        assert!(Network::parse("<network><name>x</name>").is_err());
    }

    #[test]
    fn full_network_round_trips() {
        let x = "<network>\n  <name>t</name>\n  <uuid>8f6b6e4e-2c7b-4b39-a6ba-5b4a2ba0a001</uuid>\n  \
                 <forward mode='route' dev='eth0'/>\n  <bridge name='br9' stp='off' delay='2'/>\n  \
                 <mtu size='9000'/>\n  <mac address='52:54:00:aa:bb:cc'/>\n  <domain name='example.test'/>\n  \
                 <dns enable='no'>\n    <host ip='10.9.0.5'>\n      <hostname>h5</hostname>\n    </host>\n  </dns>\n  \
                 <ip address='10.9.0.1' prefix='24'>\n    <dhcp>\n      <range start='10.9.0.10' end='10.9.0.20'/>\n      \
                 <host mac='52:54:00:00:00:01' name='a' ip='10.9.0.11'/>\n    </dhcp>\n  </ip>\n  \
                 <ip family='ipv6' address='fd00:9::1' prefix='64'/>\n</network>\n";
        let n = Network::parse(x).unwrap();
        assert_eq!(n.to_xml(), x);
    }
}
