//! Host network interfaces, read-only, as libvirt's udev interface backend shows
//! them (`virsh iface-list`, `org.libvirt.Interface`): every interface in
//! `/sys/class/net`, active while it is administratively up, and its XML with
//! type, MAC and link (bridges with their ports). Defining, starting or
//! stopping host interfaces is not offered.

use std::path::{Path, PathBuf};

use super::error::{Error, Result};

/// `virConnectListAllInterfacesFlags`.
pub mod list {
    pub const INACTIVE: u32 = 1;
    pub const ACTIVE: u32 = 2;
}

/// One host interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInterface {
    pub name: String,
    pub mac: String,
    pub active: bool,
    kind: Kind,
    state: String,
    speed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Ethernet,
    Bridge { ports: Vec<String> },
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

/// Reads the interfaces under `sysfs` (normally `/sys`), sorted by name.
pub fn scan(sysfs: &Path) -> Vec<HostInterface> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(sysfs.join("class/net")) else {
        return out;
    };
    for e in entries.flatten() {
        let dir: PathBuf = e.path();
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        // IFF_UP is bit 0 of the interface flags.
        let flags = read(&dir.join("flags"))
            .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        let kind = if dir.join("bridge").is_dir() {
            let mut ports: Vec<String> = std::fs::read_dir(dir.join("brif"))
                .map(|r| {
                    r.flatten()
                        .filter_map(|p| p.file_name().to_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            ports.sort();
            Kind::Bridge { ports }
        } else {
            Kind::Ethernet
        };
        out.push(HostInterface {
            mac: read(&dir.join("address")).unwrap_or_default(),
            active: flags & 1 != 0,
            kind,
            state: read(&dir.join("operstate")).unwrap_or_else(|| "unknown".into()),
            speed: read(&dir.join("speed"))
                .and_then(|s| s.parse::<i64>().ok())
                .and_then(|s| u64::try_from(s).ok()),
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

impl HostInterface {
    /// The interface's XML as libvirt's `virInterfaceDefFormat` writes it for
    /// what the udev backend knows.
    pub fn to_xml(&self) -> String {
        let kind = match self.kind {
            Kind::Ethernet => "ethernet",
            Kind::Bridge { .. } => "bridge",
        };
        let link = match self.speed {
            Some(sp) => format!("  <link speed='{sp}' state='{}'/>\n", self.state),
            None => format!("  <link state='{}'/>\n", self.state),
        };
        let mut s = format!(
            "<interface type='{kind}' name='{}'>\n  <mac address='{}'/>\n{link}",
            escape(&self.name),
            escape(&self.mac)
        );
        if let Kind::Bridge { ports } = &self.kind {
            s += "  <bridge>\n";
            for p in ports {
                s += &format!("    <interface type='ethernet' name='{}'/>\n", escape(p));
            }
            s += "  </bridge>\n";
        }
        s + "</interface>\n"
    }
}

/// `virConnectListAllInterfaces`.
pub fn list(flags: u32) -> Result<Vec<HostInterface>> {
    Error::check_flags(
        flags,
        list::INACTIVE | list::ACTIVE,
        "virConnectListAllInterfaces",
    )?;
    let want = |i: &HostInterface| match flags & (list::INACTIVE | list::ACTIVE) {
        list::ACTIVE => i.active,
        list::INACTIVE => !i.active,
        _ => true,
    };
    Ok(scan(Path::new("/sys")).into_iter().filter(want).collect())
}

/// `virInterfaceLookupByName`.
pub fn lookup_by_name(name: &str) -> Result<HostInterface> {
    scan(Path::new("/sys"))
        .into_iter()
        .find(|i| i.name == name)
        .ok_or_else(|| Error::NoInterface(format!("couldn't find interface named '{name}'")))
}

/// `virInterfaceLookupByMACString` (the first interface with that MAC).
pub fn lookup_by_mac(mac: &str) -> Result<HostInterface> {
    scan(Path::new("/sys"))
        .into_iter()
        .find(|i| i.mac.eq_ignore_ascii_case(mac))
        .ok_or_else(|| {
            Error::NoInterface(format!("couldn't find interface with MAC address '{mac}'"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_and_bridges_read_from_sysfs() {
        let t = tempfile::tempdir().unwrap();
        let net = t.path().join("class/net");
        for (name, mac, flags) in [
            ("br0", "52:54:00:aa:bb:cc", "0x1003"),
            ("eth1", "52:54:00:00:00:01", "0x1002"),
        ] {
            std::fs::create_dir_all(net.join(name)).unwrap();
            std::fs::write(net.join(name).join("address"), format!("{mac}\n")).unwrap();
            std::fs::write(net.join(name).join("flags"), format!("{flags}\n")).unwrap();
            std::fs::write(net.join(name).join("operstate"), "down\n").unwrap();
        }
        std::fs::create_dir_all(net.join("br0/bridge")).unwrap();
        std::fs::create_dir_all(net.join("br0/brif/eth1")).unwrap();
        let ifs = scan(t.path());
        assert_eq!(ifs.len(), 2);
        assert!(ifs[0].active && !ifs[1].active);
        assert_eq!(
            ifs[0].to_xml(),
            "<interface type='bridge' name='br0'>\n  <mac address='52:54:00:aa:bb:cc'/>\n  \
             <link state='down'/>\n  <bridge>\n    <interface type='ethernet' name='eth1'/>\n  \
             </bridge>\n</interface>\n"
        );
        assert!(ifs[1]
            .to_xml()
            .starts_with("<interface type='ethernet' name='eth1'>"));
    }

    #[test]
    fn lookups_fail_with_libvirt_errors() {
        let e = lookup_by_name("nosuch0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Interface not found: couldn't find interface named 'nosuch0'"
        );
        assert!(list(4).is_err());
    }
}
