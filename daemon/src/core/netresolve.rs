//! Where domains meet the network driver ([`crate::network`]): at start, each
//! `<interface type='network'>` is resolved to its network's bridge and the live
//! definition records it as `<source network='default' bridge='virbr0'/>` (libvirt's
//! live XML shows the same), so translation makes a tap on that bridge; and
//! virDomainInterfaceAddresses with source `lease` reads the network's leases.

use std::path::PathBuf;

use domain_xml::{Interface, InterfaceType};
use uuid::Uuid;

use super::definition::Definition;
use super::{Core, CoreConfig, Result};
use crate::network::{Lease, Networks};

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
}
