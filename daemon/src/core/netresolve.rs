//! Where domains meet the network driver ([`crate::network`]): at start, each
//! `<interface type='network'>` is resolved to its network's bridge and the live
//! definition records it as `<source network='default' bridge='virbr0'/>` (libvirt's
//! live XML shows the same), so translation makes a tap on that bridge; and
//! virDomainInterfaceAddresses reads the network's leases (source `lease`) or the
//! host's neighbour table (source `arp`).

use std::net::IpAddr;
use std::path::PathBuf;

use domain_xml::{Interface, InterfaceType};
use uuid::Uuid;

use super::definition::Definition;
use super::{Core, CoreConfig, Error, Result};
use crate::network::{arp, Lease, Networks};

/// Opens the network driver beside the domain store: definitions in `networks/`
/// and dnsmasq's files in `dnsmasq/` next to `domains/` (`/var/lib/oxvirt/…`),
/// runtime files in `RUNTIME/networks/`.
pub(super) fn open_networks(config: &CoreConfig) -> Result<Networks> {
    let base = config
        .domains_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    Ok(Networks::open(
        &base.join("networks"),
        &base.join("dnsmasq"),
        &config.runtime_dir.join("networks"),
        config.autostart,
    )?)
}

/// Whether some `type='network'` interface has no bridge recorded yet.
pub(super) fn unresolved(ifaces: &[Interface]) -> bool {
    ifaces.iter().any(|i| {
        i.interface_type == InterfaceType::Network
            && i.source
                .as_ref()
                .is_some_and(|s| s.get_attr("bridge").is_none())
    })
}

/// Gives every unresolved `type='network'` interface a stand-in bridge, so the rest of
/// the definition can be checked before the network is known (define time: libvirt
/// does not require the network to exist then).
pub(super) fn stand_in_bridges(ifaces: &mut [Interface]) {
    for i in ifaces {
        if i.interface_type != InterfaceType::Network {
            continue;
        }
        if let Some(s) = i.source.as_mut() {
            if s.get_attr("bridge").is_none() {
                s.attrs.push(("bridge".into(), "(network)".into()));
            }
        }
    }
}

/// One interface's addresses from its network's leases.
#[derive(Debug, Clone)]
pub struct InterfaceLeases {
    /// The host-side name (`vnet0`), as libvirt reports it.
    pub name: String,
    pub mac: String,
    pub leases: Vec<Lease>,
}

impl Core {
    /// The network driver.
    pub fn networks(&self) -> &Networks {
        &self.inner.networks
    }

    /// Records the bridge of every `type='network'` interface's network in `def`
    /// (the network must be active).
    pub(super) fn resolve_networks(&self, def: &mut Definition) -> Result<()> {
        for i in 0..def.interfaces().len() {
            let mut iface = def.interfaces()[i].clone();
            if iface.interface_type != InterfaceType::Network {
                continue;
            }
            let Some(source) = iface.source.as_mut() else {
                continue;
            };
            let Some(network) = source.get_attr("network").map(str::to_string) else {
                continue;
            };
            let bridge = self.networks().bridge_for_domain(&network)?;
            source.attrs.retain(|(k, _)| k != "bridge");
            source.attrs.push(("bridge".into(), bridge));
            def.set_interface(i, iface);
        }
        Ok(())
    }

    /// The DHCP leases of a running domain's `type='network'` interfaces
    /// (virDomainInterfaceAddresses, source `lease`).
    pub fn interface_leases(&self, uuid: &Uuid) -> Result<Vec<InterfaceLeases>> {
        let slot = self.slot(uuid)?;
        let live = {
            let r = slot.rec();
            r.require_active()?;
            r.live.clone()
        };
        let Some(live) = live else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for iface in live.interfaces() {
            if iface.interface_type != InterfaceType::Network {
                continue;
            }
            let Some(network) = iface.source.as_ref().and_then(|s| s.get_attr("network")) else {
                continue;
            };
            let leases = self
                .networks()
                .dhcp_leases(network, Some(&iface.mac))
                .unwrap_or_default();
            if leases.is_empty() {
                continue;
            }
            out.push(InterfaceLeases {
                name: iface.target_dev.clone().unwrap_or_default(),
                mac: iface.mac.clone(),
                leases,
            });
        }
        Ok(out)
    }

    /// virDomainInterfaceAddresses as libvirt 9.0's QEMU driver answers it: source 0
    /// (`lease`) from the networks' leases, 2 (`arp`) one entry per neighbour-table
    /// match of a NIC's MAC (IPv4, prefix 0, as libvirt reports them), 1 (`agent`)
    /// libvirt's errors for a domain whose agent is not configured or not answering
    /// (oxvirt talks to no guest agent).
    pub fn interface_addresses(
        &self,
        uuid: &Uuid,
        source: u32,
        flags: u32,
    ) -> Result<Vec<InterfaceAddrs>> {
        Error::check_flags(flags, 0, "virDomainInterfaceAddresses")?;
        let live = {
            let slot = self.slot(uuid)?;
            let r = slot.rec();
            r.require_active()?;
            r.live.clone()
        };
        match source {
            0 => Ok(self
                .interface_leases(uuid)?
                .into_iter()
                .map(|i| InterfaceAddrs {
                    name: i.name,
                    mac: i.mac,
                    addrs: i.leases.iter().map(|l| (l.ip, l.prefix)).collect(),
                })
                .collect()),
            1 => Err(
                if live.as_ref().is_some_and(|d| d.has_guest_agent_channel()) {
                    Error::AgentUnresponsive("QEMU guest agent is not connected".into())
                } else {
                    Error::ArgumentUnsupported("QEMU guest agent is not configured".into())
                },
            ),
            2 => {
                let table = arp::neighbours()
                    .map_err(|e| Error::System(format!("cannot read the host's ARP table: {e}")))?;
                let mut out = Vec::new();
                for iface in live.iter().flat_map(|d| d.interfaces()) {
                    let mac = iface.mac.to_ascii_lowercase();
                    for n in table.iter().filter(|n| n.mac == mac) {
                        out.push(InterfaceAddrs {
                            name: iface.target_dev.clone().unwrap_or_default(),
                            mac: iface.mac.clone(),
                            addrs: vec![(IpAddr::V4(n.ip), 0)],
                        });
                    }
                }
                Ok(out)
            }
            n => Err(Error::ArgumentUnsupported(format!(
                "Unknown IP address data source {n}"
            ))),
        }
    }
}

/// One interface's addresses for virDomainInterfaceAddresses.
#[derive(Debug, Clone)]
pub struct InterfaceAddrs {
    /// The host-side name (`vnet0`), as libvirt reports it.
    pub name: String,
    pub mac: String,
    /// Address and prefix length.
    pub addrs: Vec<(IpAddr, u32)>,
}
