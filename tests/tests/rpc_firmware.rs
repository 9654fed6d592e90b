//! Firmware-booted domains through oxvirtd and Debian's real `virsh` and `virt-install`:
//! a Q35 SeaBIOS domain laid out as libvirt lays one out (its disk behind a PCIe root
//! port) is defined, started, boots our boot sector from its disk and powers off.
//! (`virt-install --import` of a disk path needs the storage volume API first:
//! it looks the path up as a volume, procedure 97.)

mod rpc_common;

use std::path::Path;
use std::time::{Duration, Instant};

use oxvirt_tests::guests::boot_disk;
use oxvirt_tests::host::require_seabios;
use rpc_common::{Daemon, STEP};

/// Waits until the console file holds `needle`.
fn wait_file(d: &Daemon, path: &Path, needle: &str, name: &str) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        if Instant::now() > deadline {
            d.fail(&format!(
                "no '{needle}' on {name}'s console:\n{text}\n{}",
                d.domain_log(name)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn rpc_virsh_starts_a_seabios_domain_behind_a_root_port() {
    let test = "rpc_virsh_starts_a_seabios_domain_behind_a_root_port";
    if !require_seabios(test) {
        return;
    }
    let d = Daemon::start();
    let disk = d.dir.path().join("boot.img");
    boot_disk(&disk, "RP").unwrap();
    let console = d.dir.path().join("console.log");
    let name = "rpc-fw";
    let xml = format!(
        "<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </disk>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='pci' index='1' model='pcie-root-port'>
      <model name='pcie-root-port'/>
      <target chassis='1' port='0x10'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0' multifunction='on'/>
    </controller>
    <serial type='file'>
      <source path='{console}'/>
      <target port='0'/>
    </serial>
  </devices>
</domain>
",
        disk = disk.display(),
        console = console.display()
    );
    let file = d.xml_file(name, &xml);
    d.virsh_ok(&["define", &file.display().to_string()]);
    d.virsh_ok(&["start", name]);
    let text = wait_file(&d, &console, "OXBOOT-DATA tag=RP", name);
    assert!(text.contains("SeaBIOS (version"), "{text}");
    // The boot sector powers off; on_poweroff=destroy leaves the domain shut off.
    d.wait_state(name, "shut off");
    // dumpxml still shows the definition as given.
    let dumped = d.virsh_ok(&["dumpxml", name]);
    assert!(dumped.contains("machine='pc-q35-7.2'"), "{dumped}");
    assert!(dumped.contains("model='pcie-root-port'"), "{dumped}");
    d.virsh_ok(&["undefine", name]);
}
