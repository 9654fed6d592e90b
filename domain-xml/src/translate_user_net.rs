//! `<interface type='user'>`'s `<ip>`, `<route>` and `<portForward>` → the passt
//! settings of [`ms::UserNet`]: at most one IPv4 and one IPv6 address (IPv6 without a
//! prefix, as passt takes none), default routes only (passt hands out one gateway per
//! family), port forwards with libvirt's `<range>` rules.

use std::net::IpAddr;

use machine_spec as ms;

use crate::element::Element;
use crate::error::{Error, Result};

/// Whether `<interface type='user'>` takes element `name` (into [`user_net`]).
pub(crate) fn is_user_net_element(name: &str) -> bool {
    matches!(name, "ip" | "route" | "portForward")
}

/// The passt settings from the interface's extra elements (`what` names the NIC).
pub(crate) fn user_net(extra: &[Element], what: &str) -> Result<ms::UserNet> {
    let mut user = ms::UserNet::default();
    for e in extra {
        match e.name.as_str() {
            "ip" => user.addresses.push(address(e, what)?),
            "route" => user.gateways.push(route(e, what)?),
            "portForward" => user.port_forwards.push(port_forward(e, what)?),
            _ => {}
        }
    }
    for v4 in [true, false] {
        if user
            .addresses
            .iter()
            .filter(|a| a.address.is_ipv4() == v4)
            .count()
            > 1
        {
            return Err(Error::unsupported(format!(
                "Only one {} address per interface is allowed",
                if v4 { "IPv4" } else { "IPv6" }
            )));
        }
        if user.gateways.iter().filter(|g| g.is_ipv4() == v4).count() > 1 {
            return Err(Error::unsupported(format!(
                "{what}: only one {} default <route> can be given to passt",
                if v4 { "IPv4" } else { "IPv6" }
            )));
        }
    }
    Ok(user)
}

/// Refuses attributes outside `known` and any child element.
fn only(e: &Element, known: &[&str], what: &str) -> Result<()> {
    if let Some((k, _)) = e.attrs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        return Err(Error::unsupported(format!(
            "{what}: <{} {k}> is not supported",
            e.name
        )));
    }
    if let Some(c) = e
        .child_elements()
        .find(|c| c.name != "range" || e.name != "portForward")
    {
        return Err(Error::unsupported(format!(
            "{what}: <{}><{}> is not supported",
            e.name, c.name
        )));
    }
    Ok(())
}

fn ip(value: &str, element: &str) -> Result<IpAddr> {
    value
        .parse()
        .map_err(|_| Error::xml(format!("Invalid address '{value}' in <{element}>")))
}

/// `family`, when given, must match the address.
fn check_family(e: &Element, a: IpAddr, what: &str) -> Result<()> {
    match e.get_attr("family") {
        None => Ok(()),
        Some("ipv4") if a.is_ipv4() => Ok(()),
        Some("ipv6") if a.is_ipv6() => Ok(()),
        Some(f) => Err(Error::xml(format!(
            "{what}: family '{f}' does not match address '{a}' in <{}>",
            e.name
        ))),
    }
}

fn address(e: &Element, what: &str) -> Result<ms::UserAddress> {
    only(e, &["address", "family", "prefix"], what)?;
    let a = ip(
        e.get_attr("address")
            .ok_or_else(|| Error::xml("Missing required address in <ip>"))?,
        "ip",
    )?;
    check_family(e, a, what)?;
    let prefix = match e.get_attr("prefix") {
        None => None,
        Some(p) => {
            let max = if a.is_ipv4() { 32 } else { 128 };
            match p.parse::<u8>() {
                Ok(n) if n <= max => Some(n),
                _ => return Err(Error::xml(format!("Invalid prefix value '{p}' in <ip>"))),
            }
        }
    };
    if a.is_ipv6() && prefix.is_some() {
        return Err(Error::unsupported(format!(
            "{what}: passt takes no prefix for IPv6 address '{a}' in <ip>"
        )));
    }
    Ok(ms::UserAddress { address: a, prefix })
}

/// A default route's gateway; passt cannot give the guest any other route.
fn route(e: &Element, what: &str) -> Result<IpAddr> {
    only(
        e,
        &[
            "family", "address", "prefix", "netmask", "gateway", "metric",
        ],
        what,
    )?;
    let gateway = ip(
        e.get_attr("gateway").ok_or_else(|| {
            Error::xml(format!(
                "{what}: Missing required gateway attribute in route definition"
            ))
        })?,
        "route",
    )?;
    check_family(e, gateway, what)?;
    let address = e.get_attr("address").map(|a| ip(a, "route")).transpose()?;
    let default = address.is_none_or(|a| a.is_unspecified() && a.is_ipv4() == gateway.is_ipv4())
        && matches!(e.get_attr("prefix"), None | Some("0"))
        && matches!(e.get_attr("netmask"), None | Some("0.0.0.0"))
        && e.get_attr("metric").is_none();
    if !default {
        return Err(Error::unsupported(format!(
            "{what}: passt can only give the guest a default <route> (address 0.0.0.0 or ::, \
             prefix 0, no metric) with gateway '{gateway}'"
        )));
    }
    Ok(gateway)
}

fn port(value: &str, attr: &str, what: &str) -> Result<u16> {
    match value.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(Error::xml(format!(
            "{what}: invalid port '{value}' in <portForward><range {attr}> (1 to 65535)"
        ))),
    }
}

fn port_forward(e: &Element, what: &str) -> Result<ms::PortForward> {
    only(e, &["proto", "address", "dev"], what)?;
    let proto = match e.get_attr("proto") {
        Some("tcp") => ms::PortProto::Tcp,
        Some("udp") => ms::PortProto::Udp,
        Some(p) => {
            return Err(Error::xml(format!(
                "{what}: invalid <portForward proto='{p}'> (tcp or udp)"
            )))
        }
        None => {
            return Err(Error::xml(format!(
                "{what}: <portForward> needs a 'proto' attribute"
            )))
        }
    };
    let address = e
        .get_attr("address")
        .map(|a| ip(a, "portForward"))
        .transpose()?;
    let mut ranges = Vec::new();
    for r in e.child_elements() {
        if let Some((k, _)) = r
            .attrs
            .iter()
            .find(|(k, _)| !["start", "end", "to", "exclude"].contains(&k.as_str()))
        {
            return Err(Error::unsupported(format!(
                "{what}: <portForward><range {k}> is not supported"
            )));
        }
        let start = port(
            r.get_attr("start").ok_or_else(|| {
                Error::xml(
                    "The 'range' of a 'portForward' requires 'start' attribute if 'end', 'to', \
                     or 'exclude' is specified",
                )
            })?,
            "start",
            what,
        )?;
        let end = r
            .get_attr("end")
            .map(|v| port(v, "end", what))
            .transpose()?;
        let to = r.get_attr("to").map(|v| port(v, "to", what)).transpose()?;
        let exclude = match r.get_attr("exclude") {
            None | Some("no") => false,
            Some("yes") => true,
            Some(x) => {
                return Err(Error::xml(format!(
                    "{what}: invalid <range exclude='{x}'> (yes or no)"
                )))
            }
        };
        if end.is_some_and(|end| end < start) {
            return Err(Error::xml(format!(
                "{what}: <portForward><range> end {} is below start {start}",
                end.unwrap_or_default()
            )));
        }
        if exclude && to.is_some() {
            return Err(Error::xml(format!(
                "{what}: an excluded <portForward><range start='{start}'> cannot have 'to'"
            )));
        }
        if let (Some(to), Some(end)) = (to, end) {
            if u32::from(to) + u32::from(end - start) > 65535 {
                return Err(Error::xml(format!(
                    "{what}: <portForward><range start='{start}' end='{end}' to='{to}'> maps \
                     past port 65535"
                )));
            }
        }
        ranges.push(ms::PortRange {
            start,
            end,
            to,
            exclude,
        });
    }
    Ok(ms::PortForward {
        proto,
        address,
        dev: e.get_attr("dev").map(str::to_string),
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Result<ms::UserNet> {
        let e = Element::parse(xml).unwrap();
        let extra: Vec<Element> = e.child_elements().cloned().collect();
        user_net(&extra, "interface 'x'")
    }

    #[test]
    fn addresses_gateway_and_forwards() {
        let u = parse(
            "<interface><ip family='ipv4' address='10.0.2.15' prefix='24'/>\
             <ip address='fd00::15'/>\
             <route family='ipv4' address='0.0.0.0' prefix='0' gateway='10.0.2.2'/>\
             <portForward proto='tcp' address='127.0.0.1' dev='lo'>\
             <range start='2022' to='22'/><range start='5000' end='5010' exclude='yes'/>\
             </portForward><portForward proto='udp'/></interface>",
        )
        .unwrap();
        assert_eq!(
            u.addresses,
            [
                ms::UserAddress {
                    address: "10.0.2.15".parse().unwrap(),
                    prefix: Some(24)
                },
                ms::UserAddress {
                    address: "fd00::15".parse().unwrap(),
                    prefix: None
                }
            ]
        );
        assert_eq!(u.gateways, ["10.0.2.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(u.port_forwards.len(), 2);
        let f = &u.port_forwards[0];
        assert_eq!(f.proto, ms::PortProto::Tcp);
        assert_eq!(f.address, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(f.dev.as_deref(), Some("lo"));
        assert_eq!(
            f.ranges,
            [
                ms::PortRange {
                    start: 2022,
                    end: None,
                    to: Some(22),
                    exclude: false
                },
                ms::PortRange {
                    start: 5000,
                    end: Some(5010),
                    to: None,
                    exclude: true
                }
            ]
        );
        assert!(u.port_forwards[1].ranges.is_empty());
    }

    #[test]
    fn bad_input_is_named() {
        for (xml, want) in [
            (
                "<ip address='10.0.2.15'/><ip address='10.0.2.16'/>",
                "Only one IPv4 address per interface is allowed",
            ),
            (
                "<ip address='10.0.2.300'/>",
                "Invalid address '10.0.2.300' in <ip>",
            ),
            (
                "<ip address='10.0.2.1' prefix='33'/>",
                "Invalid prefix value '33' in <ip>",
            ),
            (
                "<ip address='fd00::1' prefix='64'/>",
                "passt takes no prefix for IPv6",
            ),
            (
                "<ip address='10.0.2.1' peer='10.0.2.9'/>",
                "<ip peer> is not supported",
            ),
            (
                "<route address='192.168.5.0' prefix='24' gateway='10.0.2.2'/>",
                "can only give the guest a default <route>",
            ),
            (
                "<route address='0.0.0.0' prefix='0'/>",
                "Missing required gateway",
            ),
            (
                "<portForward proto='sctp'/>",
                "invalid <portForward proto='sctp'>",
            ),
            (
                "<portForward><range start='1'/></portForward>",
                "needs a 'proto'",
            ),
            (
                "<portForward proto='tcp' address='nope'/>",
                "Invalid address 'nope' in <portForward>",
            ),
            (
                "<portForward proto='tcp'><range end='9'/></portForward>",
                "requires 'start' attribute",
            ),
            (
                "<portForward proto='tcp'><range start='0'/></portForward>",
                "invalid port '0'",
            ),
            (
                "<portForward proto='tcp'><range start='9' end='8'/></portForward>",
                "end 8 is below start 9",
            ),
            (
                "<portForward proto='tcp'><range start='9' to='8' exclude='yes'/></portForward>",
                "cannot have 'to'",
            ),
            (
                "<portForward proto='tcp'><range start='100' end='200' to='65500'/></portForward>",
                "maps past port 65535",
            ),
        ] {
            let e = parse(&format!("<interface>{xml}</interface>")).unwrap_err();
            assert!(e.to_string().contains(want), "{xml}: {e}");
        }
    }
}
