//! Host devices as libvirt's node device driver lists them (listing only: no
//! detach, reattach or create): the `computer` root, PCI functions, USB devices
//! and network interfaces, read from sysfs. Names, parents and the XML follow
//! libvirt's udev backend (`pci_0000_00_1f_2`, `usb_1_1`, `net_eth0_52_54_00_…`);
//! vendor and product names come from the pci.ids/usb.ids databases when the
//! host has them, as udev's hwdb gives them to libvirt.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::error::{Error, Result};

/// `virConnectListAllNodeDeviceFlags` capability bits this driver can match.
pub mod cap {
    pub const SYSTEM: u32 = 1 << 0;
    pub const PCI_DEV: u32 = 1 << 1;
    pub const USB_DEV: u32 = 1 << 2;
    pub const NET: u32 = 1 << 4;
    /// Every capability bit of libvirt 9.0 (1 << 0 … 1 << 21) plus INACTIVE/ACTIVE.
    pub const KNOWN: u32 = ((1 << 22) - 1) | (1 << 30) | (1 << 31);
    pub const INACTIVE: u32 = 1 << 30;
}

/// What a device is, with the facts its `<capability>` element shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    System(SystemInfo),
    Pci {
        domain: u32,
        bus: u32,
        slot: u32,
        function: u32,
        class: u32,
        vendor: (u32, Option<String>),
        product: (u32, Option<String>),
        iommu_group: Option<u32>,
    },
    UsbDevice {
        bus: u32,
        device: u32,
        vendor: (u32, Option<String>),
        product: (u32, Option<String>),
    },
    Net {
        interface: String,
        address: String,
        state: String,
        speed: Option<u64>,
    },
}

impl Capability {
    /// libvirt's capability name (`virsh nodedev-list --cap`).
    pub fn name(&self) -> &'static str {
        match self {
            Capability::System(_) => "system",
            Capability::Pci { .. } => "pci",
            Capability::UsbDevice { .. } => "usb_device",
            Capability::Net { .. } => "net",
        }
    }

    fn bit(&self) -> u32 {
        match self {
            Capability::System(_) => cap::SYSTEM,
            Capability::Pci { .. } => cap::PCI_DEV,
            Capability::UsbDevice { .. } => cap::USB_DEV,
            Capability::Net { .. } => cap::NET,
        }
    }
}

/// The host's SMBIOS facts (`/sys/class/dmi/id`) for the `computer` device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SystemInfo {
    product: Option<String>,
    hw_vendor: Option<String>,
    hw_version: Option<String>,
    hw_serial: Option<String>,
    /// SMBIOS's system UUID, else the machine id as a UUID (libvirt needs one).
    uuid: String,
    fw_vendor: Option<String>,
    fw_version: Option<String>,
    fw_date: Option<String>,
}

impl SystemInfo {
    fn read(sysfs: &Path) -> SystemInfo {
        let dmi = |f: &str| read(&sysfs.join("class/dmi/id").join(f)).filter(|v| !v.is_empty());
        let machine_id = || {
            let id = read(Path::new("/etc/machine-id"))?;
            uuid::Uuid::try_parse(&id).ok().map(|u| u.to_string())
        };
        SystemInfo {
            product: dmi("product_name"),
            hw_vendor: dmi("sys_vendor"),
            hw_version: dmi("product_version"),
            hw_serial: dmi("product_serial"),
            uuid: dmi("product_uuid")
                .or_else(machine_id)
                .unwrap_or_else(|| uuid::Uuid::nil().to_string()),
            fw_vendor: dmi("bios_vendor"),
            fw_version: dmi("bios_version"),
            fw_date: dmi("bios_date"),
        }
    }

    fn to_xml(&self) -> String {
        let opt = |tag: &str, v: &Option<String>, indent: &str| {
            v.as_ref()
                .map(|v| format!("{indent}<{tag}>{}</{tag}>\n", escape(v)))
                .unwrap_or_default()
        };
        let mut s = opt("product", &self.product, "    ");
        s += "    <hardware>\n";
        s += &opt("vendor", &self.hw_vendor, "      ");
        s += &opt("version", &self.hw_version, "      ");
        s += &opt("serial", &self.hw_serial, "      ");
        s += &format!(
            "      <uuid>{}</uuid>\n    </hardware>\n    <firmware>\n",
            self.uuid
        );
        s += &opt("vendor", &self.fw_vendor, "      ");
        s += &opt("version", &self.fw_version, "      ");
        s += &opt("release_date", &self.fw_date, "      ");
        s + "    </firmware>\n"
    }
}

/// One node device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDevice {
    pub name: String,
    /// Its sysfs directory (none for `computer`).
    pub path: Option<PathBuf>,
    /// The parent's name (none for `computer`).
    pub parent: Option<String>,
    pub driver: Option<String>,
    pub devnode: Option<String>,
    pub capability: Capability,
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn hex(p: &Path) -> Option<u32> {
    u32::from_str_radix(read(p)?.trim_start_matches("0x"), 16).ok()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

/// libvirt's `udevGenerateDeviceName`: every character that is not a letter or
/// digit becomes `_`.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Vendor and device names from a pci.ids/usb.ids style file.
#[derive(Default)]
struct IdNames {
    vendors: HashMap<u32, String>,
    products: HashMap<(u32, u32), String>,
}

impl IdNames {
    fn load(path: &Path) -> IdNames {
        let mut n = IdNames::default();
        let Ok(text) = std::fs::read(path) else {
            return n;
        };
        let text = String::from_utf8_lossy(&text);
        let mut vendor = None;
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            // Vendor lines start at column 0, their devices one tab in; the
            // class section at the end ("C xx") stops the device list.
            if let Some(rest) = line.strip_prefix('\t') {
                if rest.starts_with('\t') {
                    continue;
                }
                if let (Some(v), Some((id, name))) = (vendor, rest.split_once("  ")) {
                    if let Ok(id) = u32::from_str_radix(id, 16) {
                        n.products.insert((v, id), name.to_string());
                    }
                }
            } else if let Some((id, name)) = line.split_once("  ") {
                vendor = u32::from_str_radix(id, 16).ok();
                if let Some(v) = vendor {
                    n.vendors.insert(v, name.to_string());
                }
            } else {
                vendor = None;
            }
        }
        n
    }

    fn names(&self, vendor: u32, product: u32) -> ((u32, Option<String>), (u32, Option<String>)) {
        (
            (vendor, self.vendors.get(&vendor).cloned()),
            (product, self.products.get(&(vendor, product)).cloned()),
        )
    }
}

fn first_existing(paths: &[&str]) -> PathBuf {
    paths
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(paths[0]))
}

/// Reads the devices under `sysfs` (normally `/sys`).
pub fn scan(sysfs: &Path) -> Vec<NodeDevice> {
    // The databases are read once per daemon: every lookup rescans sysfs.
    static PCI_IDS: OnceLock<IdNames> = OnceLock::new();
    static USB_IDS: OnceLock<IdNames> = OnceLock::new();
    let pci_ids = PCI_IDS.get_or_init(|| {
        IdNames::load(&first_existing(&[
            "/usr/share/misc/pci.ids",
            "/usr/share/hwdata/pci.ids",
        ]))
    });
    let usb_ids = USB_IDS.get_or_init(|| {
        IdNames::load(&first_existing(&[
            "/usr/share/misc/usb.ids",
            "/usr/share/hwdata/usb.ids",
        ]))
    });
    let mut devs = vec![NodeDevice {
        name: "computer".into(),
        path: None,
        parent: None,
        driver: None,
        devnode: None,
        capability: Capability::System(SystemInfo::read(sysfs)),
    }];
    // Each device's canonical sysfs directory → its name, to find parents.
    let mut by_path: HashMap<PathBuf, String> = HashMap::new();
    let mut found: Vec<(PathBuf, NodeDevice)> = Vec::new();
    for entry in list_dir(&sysfs.join("bus/pci/devices")) {
        let Ok(dir) = entry.canonicalize() else {
            continue;
        };
        let Some(addr) = entry
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let Some((domain, bus, slot, function)) = parse_pci_addr(&addr) else {
            continue;
        };
        let (vendor, product) = pci_ids.names(
            hex(&dir.join("vendor")).unwrap_or(0),
            hex(&dir.join("device")).unwrap_or(0),
        );
        let name = format!("pci_{domain:04x}_{bus:02x}_{slot:02x}_{function:x}");
        by_path.insert(dir.clone(), name.clone());
        found.push((
            dir.clone(),
            NodeDevice {
                name,
                path: Some(dir.clone()),
                parent: None,
                driver: driver_of(&dir),
                devnode: None,
                capability: Capability::Pci {
                    domain,
                    bus,
                    slot,
                    function,
                    class: hex(&dir.join("class")).unwrap_or(0),
                    vendor,
                    product,
                    iommu_group: std::fs::read_link(dir.join("iommu_group"))
                        .ok()
                        .and_then(|l| l.file_name()?.to_str()?.parse().ok()),
                },
            },
        ));
    }
    for entry in list_dir(&sysfs.join("bus/usb/devices")) {
        let Ok(dir) = entry.canonicalize() else {
            continue;
        };
        // Interfaces ("1-1:1.0") have no device number; only devices are listed.
        let (Some(bus), Some(device)) = (
            read(&dir.join("busnum")).and_then(|v| v.parse().ok()),
            read(&dir.join("devnum")).and_then(|v| v.parse().ok()),
        ) else {
            continue;
        };
        let sysname = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let (mut vendor, mut product) = usb_ids.names(
            hex(&dir.join("idVendor")).unwrap_or(0),
            hex(&dir.join("idProduct")).unwrap_or(0),
        );
        vendor.1 = vendor.1.or_else(|| read(&dir.join("manufacturer")));
        product.1 = product.1.or_else(|| read(&dir.join("product")));
        let name = format!("usb_{}", clean(sysname));
        by_path.insert(dir.clone(), name.clone());
        found.push((
            dir.clone(),
            NodeDevice {
                name,
                path: Some(dir.clone()),
                parent: None,
                driver: driver_of(&dir),
                devnode: Some(format!("/dev/bus/usb/{bus:03}/{device:03}")),
                capability: Capability::UsbDevice {
                    bus,
                    device,
                    vendor,
                    product,
                },
            },
        ));
    }
    for entry in list_dir(&sysfs.join("class/net")) {
        let Ok(dir) = entry.canonicalize() else {
            continue;
        };
        let ifname = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let mac = read(&dir.join("address")).unwrap_or_default();
        let state = read(&dir.join("operstate")).unwrap_or_else(|| "unknown".into());
        // `speed` reads as -1 (or fails) while the link is down.
        let speed = read(&dir.join("speed"))
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|s| u64::try_from(s).ok());
        found.push((
            dir.clone(),
            NodeDevice {
                name: format!("net_{}_{}", clean(ifname), clean(&mac)),
                path: Some(dir.clone()),
                parent: None,
                driver: None,
                devnode: None,
                capability: Capability::Net {
                    interface: ifname.to_string(),
                    address: mac,
                    state,
                    speed,
                },
            },
        ));
    }
    for (dir, mut dev) in found {
        // The nearest listed ancestor, else the computer.
        let parent = dir
            .ancestors()
            .skip(1)
            .find_map(|a| by_path.get(a).cloned())
            .unwrap_or_else(|| "computer".into());
        dev.parent = Some(parent);
        devs.push(dev);
    }
    devs.sort_by(|a, b| a.name.cmp(&b.name));
    devs
}

fn list_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn driver_of(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join("driver"))
        .ok()
        .and_then(|l| Some(l.file_name()?.to_str()?.to_string()))
}

/// `DDDD:BB:SS.F`.
fn parse_pci_addr(s: &str) -> Option<(u32, u32, u32, u32)> {
    let (domain, rest) = s.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (slot, function) = rest.split_once('.')?;
    let h = |v: &str| u32::from_str_radix(v, 16).ok();
    Some((h(domain)?, h(bus)?, h(slot)?, h(function)?))
}

fn id_element(tag: &str, (id, name): &(u32, Option<String>), width: usize) -> String {
    match name {
        Some(n) => format!("    <{tag} id='0x{id:0width$x}'>{}</{tag}>\n", escape(n)),
        None => format!("    <{tag} id='0x{id:0width$x}'/>\n"),
    }
}

impl NodeDevice {
    /// The device's XML as libvirt's `virNodeDeviceDefFormat` writes it.
    pub fn to_xml(&self) -> String {
        let mut s = format!("<device>\n  <name>{}</name>\n", escape(&self.name));
        if let Some(p) = &self.path {
            s += &format!("  <path>{}</path>\n", escape(&p.display().to_string()));
        }
        if let Some(d) = &self.devnode {
            s += &format!("  <devnode type='dev'>{}</devnode>\n", escape(d));
        }
        if let Some(p) = &self.parent {
            s += &format!("  <parent>{}</parent>\n", escape(p));
        }
        if let Some(d) = &self.driver {
            s += &format!("  <driver>\n    <name>{}</name>\n  </driver>\n", escape(d));
        }
        s += &format!("  <capability type='{}'>\n", self.capability.name());
        match &self.capability {
            Capability::System(info) => s += &info.to_xml(),
            Capability::Pci {
                domain,
                bus,
                slot,
                function,
                class,
                vendor,
                product,
                iommu_group,
            } => {
                s += &format!(
                    "    <class>0x{class:06x}</class>\n    <domain>{domain}</domain>\n    \
                     <bus>{bus}</bus>\n    <slot>{slot}</slot>\n    <function>{function}</function>\n"
                );
                s += &id_element("product", product, 4);
                s += &id_element("vendor", vendor, 4);
                if let Some(g) = iommu_group {
                    s += &format!(
                        "    <iommuGroup number='{g}'>\n      <address domain='0x{domain:04x}' \
                         bus='0x{bus:02x}' slot='0x{slot:02x}' function='0x{function:x}'/>\n    \
                         </iommuGroup>\n"
                    );
                }
            }
            Capability::UsbDevice {
                bus,
                device,
                vendor,
                product,
            } => {
                s += &format!("    <bus>{bus}</bus>\n    <device>{device}</device>\n");
                s += &id_element("product", product, 4);
                s += &id_element("vendor", vendor, 4);
            }
            Capability::Net {
                interface,
                address,
                state,
                speed,
            } => {
                s += &format!(
                    "    <interface>{}</interface>\n    <address>{}</address>\n",
                    escape(interface),
                    escape(address)
                );
                match speed {
                    Some(sp) => s += &format!("    <link speed='{sp}' state='{state}'/>\n"),
                    None => s += &format!("    <link state='{state}'/>\n"),
                }
                s += "    <capability type='80203'/>\n";
            }
        }
        s + "  </capability>\n</device>\n"
    }
}

/// `virConnectListAllNodeDevices`: the devices whose capability is in `flags`
/// (all of them for no capability bit). Every listed device is active.
pub fn list(flags: u32) -> Result<Vec<NodeDevice>> {
    Error::check_flags(flags, cap::KNOWN, "virConnectListAllNodeDevices")?;
    let caps = flags & !(cap::INACTIVE | 1 << 31);
    if flags & cap::INACTIVE != 0 && flags & 1 << 31 == 0 {
        return Ok(Vec::new());
    }
    Ok(scan(Path::new("/sys"))
        .into_iter()
        .filter(|d| caps == 0 || caps & d.capability.bit() != 0)
        .collect())
}

/// `virNodeDeviceLookupByName`.
pub fn lookup(name: &str) -> Result<NodeDevice> {
    scan(Path::new("/sys"))
        .into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| Error::NoNodeDevice(format!("no node device with matching name '{name}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small sysfs: a PCI function with a driver and a NIC under it, a virtual NIC.
    fn fake_sysfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let dev = root.join("devices/pci0000:00/0000:00:03.0");
        std::fs::create_dir_all(dev.join("virtio2/net/eth0")).unwrap();
        std::fs::write(dev.join("vendor"), "0x1af4\n").unwrap();
        std::fs::write(dev.join("device"), "0x1000\n").unwrap();
        std::fs::write(dev.join("class"), "0x020000\n").unwrap();
        std::fs::create_dir_all(root.join("bus/pci/drivers/virtio-pci")).unwrap();
        std::os::unix::fs::symlink(root.join("bus/pci/drivers/virtio-pci"), dev.join("driver"))
            .unwrap();
        std::fs::create_dir_all(root.join("bus/pci/devices")).unwrap();
        std::os::unix::fs::symlink(&dev, root.join("bus/pci/devices/0000:00:03.0")).unwrap();
        let eth0 = dev.join("virtio2/net/eth0");
        std::fs::write(eth0.join("address"), "52:54:00:12:34:56\n").unwrap();
        std::fs::write(eth0.join("operstate"), "up\n").unwrap();
        std::fs::write(eth0.join("speed"), "-1\n").unwrap();
        let lo = root.join("devices/virtual/net/lo");
        std::fs::create_dir_all(&lo).unwrap();
        std::fs::write(lo.join("address"), "00:00:00:00:00:00\n").unwrap();
        std::fs::write(lo.join("operstate"), "unknown\n").unwrap();
        std::fs::create_dir_all(root.join("class/net")).unwrap();
        std::os::unix::fs::symlink(&eth0, root.join("class/net/eth0")).unwrap();
        std::os::unix::fs::symlink(&lo, root.join("class/net/lo")).unwrap();
        t
    }

    #[test]
    fn devices_are_named_and_parented_as_libvirt_does() {
        let t = fake_sysfs();
        let devs = scan(t.path());
        let names: Vec<&str> = devs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "computer",
                "net_eth0_52_54_00_12_34_56",
                "net_lo_00_00_00_00_00_00",
                "pci_0000_00_03_0"
            ]
        );
        let eth0 = &devs[1];
        assert_eq!(eth0.parent.as_deref(), Some("pci_0000_00_03_0"));
        assert_eq!(devs[2].parent.as_deref(), Some("computer"));
        let pci = &devs[3];
        assert_eq!(pci.parent.as_deref(), Some("computer"));
        assert_eq!(pci.driver.as_deref(), Some("virtio-pci"));
        let xml = pci.to_xml();
        assert!(xml.contains("<capability type='pci'>\n    <class>0x020000</class>\n    <domain>0</domain>\n    <bus>0</bus>\n    <slot>3</slot>\n    <function>0</function>\n"), "{xml}");
        assert!(
            xml.contains("<driver>\n    <name>virtio-pci</name>\n  </driver>"),
            "{xml}"
        );
        let x = eth0.to_xml();
        assert!(x.contains("<interface>eth0</interface>\n    <address>52:54:00:12:34:56</address>\n    <link state='up'/>\n    <capability type='80203'/>"), "{x}");
        roxmltree::Document::parse(&x).unwrap();
        roxmltree::Document::parse(&xml).unwrap();
    }

    #[test]
    fn ids_files_name_vendors_and_products() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("pci.ids");
        std::fs::write(&p, "# c\n1af4  Red Hat, Inc.\n\t1000  Virtio network device\n\t\t1af4 0001  sub\nC 02  Network\n").unwrap();
        let n = IdNames::load(&p);
        let (v, d) = n.names(0x1af4, 0x1000);
        assert_eq!(v.1.as_deref(), Some("Red Hat, Inc."));
        assert_eq!(d.1.as_deref(), Some("Virtio network device"));
    }

    #[test]
    fn unknown_flags_and_names_are_refused() {
        assert!(list(1 << 25).is_err());
        let e = lookup("pci_ffff_ff_ff_7").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Node device not found: no node device with matching name 'pci_ffff_ff_ff_7'"
        );
    }
}
