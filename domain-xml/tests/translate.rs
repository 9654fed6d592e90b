//! Golden translation tests, table-driven: each accepted feature reaches the spec (checked
//! at a JSON pointer into the spec), each rejected feature fails with its error text, and
//! every corpus file's outcome matches its golden file in `tests/golden/`
//! (regenerate with `OXVIRT_BLESS=1 cargo test -p domain-xml --test translate`).

use std::path::Path;

use domain_xml::{spec_from_xml, Error};
use serde_json::{json, Value};

/// A domain around the given pieces. `top` goes after `<memory>`, `os` inside `<os>`,
/// `devices` inside `<devices>`.
fn domain(top: &str, os: &str, devices: &str) -> String {
    format!(
        "<domain type='kvm'>
  <name>golden</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <memory unit='MiB'>256</memory>
  {top}
  <os><type arch='x86_64'>hvm</type><kernel>/boot/vmlinux</kernel>{os}</os>
  <devices>{devices}</devices>
</domain>"
    )
}

fn spec_json(xml: &str) -> Value {
    match spec_from_xml(xml) {
        Ok(spec) => serde_json::from_str(&spec.to_json()).unwrap(),
        Err(e) => panic!("translation failed: {e}\n{xml}"),
    }
}

/// (feature, top-level XML, os XML, devices XML, JSON pointer, expected value)
type Accepted = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Value,
);

fn accepted() -> Vec<Accepted> {
    vec![
        ("name", "", "", "", "/name", json!("golden")),
        ("uuid", "", "", "", "/uuid", json!("11111111-2222-3333-4444-555555555555")),
        ("memory", "", "", "", "/memory/size_bytes", json!(268435456)),
        ("memoryBacking shared", "<memoryBacking><access mode='shared'/></memoryBacking>", "", "", "/memory/shared", json!(true)),
        ("memoryBacking memfd", "<memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>", "", "", "/memory/shared", json!(true)),
        ("memoryBacking hugepages", "<memoryBacking><hugepages/></memoryBacking>", "", "", "/memory/hugepages", json!(true)),
        ("vcpu", "<vcpu>3</vcpu>", "", "", "/cpus", json!({"count": 3, "max": 3, "topology": {"sockets": 3, "dies": 1, "cores": 1, "threads": 1}, "mode": "host-passthrough", "features": []})),
        ("vcpu current", "<vcpu current='1'>4</vcpu>", "", "", "/cpus/count", json!(1)),
        ("cpu topology", "<vcpu>8</vcpu><cpu><topology sockets='2' dies='1' cores='2' threads='2'/></cpu>", "", "", "/cpus/topology", json!({"sockets": 2, "dies": 1, "cores": 2, "threads": 2})),
        ("cpu mode host-model", "<cpu mode='host-model'/>", "", "", "/cpus/mode", json!("host-model")),
        ("cpu mode maximum", "<cpu mode='maximum'/>", "", "", "/cpus/mode", json!("maximum")),
        ("cpu custom model", "<cpu mode='custom' match='exact'><model fallback='allow'>Skylake-Client</model></cpu>", "", "", "/cpus/mode", json!("custom")),
        ("cpu custom model name", "<cpu mode='custom' match='exact'><model fallback='allow'>Skylake-Client</model><vendor>Intel</vendor></cpu>", "", "", "/cpus/model", json!({"name": "Skylake-Client", "minimum": false, "enforce": true})),
        ("cpu minimum check none", "<cpu mode='custom' match='minimum' check='none'><model>qemu64</model><vendor>AMD</vendor></cpu>", "", "", "/cpus/model", json!({"name": "qemu64", "minimum": true, "enforce": false})),
        ("tpm crb emulator 2.0", "", "", "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>", "/devices/0/kind/model", json!("crb")),
        ("tpm tis emulator 2.0", "", "", "<tpm model='tpm-tis'><backend type='emulator' version='2.0'/></tpm>", "/devices/0/kind/model", json!("tis")),
        ("tpm default model is tis", "", "", "<tpm><backend type='emulator'/></tpm>", "/devices/0/kind/model", json!("tis")),
        ("cpu feature policies", "<cpu mode='host-passthrough'><feature policy='disable' name='x2apic'/><feature policy='force' name='hypervisor'/><feature name='avx2'/></cpu>", "", "", "/cpus/features", json!([{"name": "x2apic", "policy": "disable"}, {"name": "hypervisor", "policy": "force"}, {"name": "avx2", "policy": "require"}])),
        ("hyperv virt-install windows set", "<features><hyperv mode='custom'><relaxed state='on'/><vapic state='on'/><spinlocks state='on' retries='8191'/></hyperv></features><clock offset='localtime'><timer name='hypervclock' present='yes'/></clock>", "", "", "/platform/hyperv", json!({"features": ["relaxed", "vapic", "spinlocks", "time"], "spinlock_retries": 8191})),
        ("hyperv all off", "<features><hyperv><relaxed state='off'/></hyperv></features>", "", "", "/platform/hyperv", Value::Null),
        ("kernel", "", "", "", "/boot/kernel", json!("/boot/vmlinux")),
        ("initrd", "", "<initrd>/boot/initrd.img</initrd>", "", "/boot/initrd", json!("/boot/initrd.img")),
        ("cmdline", "", "<cmdline>console=ttyS0 quiet</cmdline>", "", "/boot/cmdline", json!("console=ttyS0 quiet")),
        ("features acpi apic (pc: ACPI PCI hot-plug)", "<features><acpi/><apic/><pae/></features>", "", "", "/platform", json!({"acpi": true, "apic": true, "acpi_pci_hotplug": true})),
        ("no features: no acpi", "", "", "", "/platform", json!({"acpi": false, "apic": false})),
        ("on_poweroff", "<on_poweroff>restart</on_poweroff>", "", "", "/lifecycle/on_poweroff", json!("restart")),
        ("on_reboot", "<on_reboot>destroy</on_reboot>", "", "", "/lifecycle/on_reboot", json!("destroy")),
        ("on_crash", "<on_crash>preserve</on_crash>", "", "", "/lifecycle/on_crash", json!("preserve")),
        ("on_crash coredump", "<on_crash>coredump-restart</on_crash>", "", "", "/lifecycle/on_crash", json!("coredump-restart")),
        ("default lifecycle", "", "", "", "/lifecycle", json!({"on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "destroy"})),
        ("disk file qcow2", "", "", "<disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none' io='native' discard='unmap'/><source file='/img/a.qcow2'/><target dev='vda' bus='virtio'/><serial>SER1</serial></disk>", "/devices/0", json!({"id": "virtio-disk0", "pci": {"domain": 0, "bus": 0, "slot": 2, "function": 0}, "kind": {"type": "disk", "path": "/img/a.qcow2", "format": "qcow2", "target": "vda", "readonly": false, "shareable": false, "serial": "SER1", "cache": "none", "discard": true, "io": "native"}})),
        ("disk block raw readonly shareable", "", "", "<disk type='block' device='disk'><source dev='/dev/vg/lv'/><target dev='vdb'/><readonly/><shareable/></disk>", "/devices/0/kind", json!({"type": "disk", "path": "/dev/vg/lv", "format": "raw", "target": "vdb", "readonly": true, "shareable": true, "serial": null, "cache": "default", "discard": false})),
        ("disk cache writeback", "", "", "<disk type='file'><driver type='raw' cache='writeback'/><source file='/a'/><target dev='vda'/></disk>", "/devices/0/kind/cache", json!("writeback")),
        ("disk explicit pci address", "", "", "<disk type='file'><source file='/a'/><target dev='vda'/><address type='pci' domain='0x0000' bus='0x00' slot='0x0a' function='0x0'/></disk>", "/devices/0/pci/slot", json!(10)),
        ("interface ethernet", "", "", "<interface type='ethernet'><mac address='52:54:00:01:02:03'/><target dev='tap7' managed='no'/><model type='virtio'/><mtu size='9000'/></interface>", "/devices/0", json!({"id": "net0", "pci": {"domain": 0, "bus": 0, "slot": 2, "function": 0}, "kind": {"type": "net", "mac": "52:54:00:01:02:03", "backend": {"type": "tap", "name": "tap7"}, "link_up": true, "mtu": 9000}})),
        ("interface bridge", "", "", "<interface type='bridge'><mac address='52:54:00:01:02:04'/><source bridge='br0'/><link state='down'/></interface>", "/devices/0/kind", json!({"type": "net", "mac": "52:54:00:01:02:04", "backend": {"type": "bridge", "bridge": "br0", "tap": null}, "link_up": false, "mtu": null})),
        ("interface network resolved by the daemon", "", "", "<interface type='network'><mac address='52:54:00:01:02:06'/><source network='default' portid='0b1e6a8c-3d4c-4b9e-8d2a-8f3f0d0c5a11' bridge='virbr0'/><target dev='vnet4'/></interface>", "/devices/0/kind/backend", json!({"type": "bridge", "bridge": "virbr0", "tap": null})),
        ("interface model e1000", "", "", "<interface type='bridge'><source bridge='br0'/><model type='e1000'/></interface>", "/devices/0/kind/model", json!("e1000")),
        ("interface model e1000e", "", "", "<interface type='bridge'><source bridge='br0'/><model type='e1000e'/></interface>", "/devices/0/kind/model", json!("e1000e")),
        ("interface generated tap name is not kept", "", "", "<interface type='ethernet'><mac address='52:54:00:01:02:05'/><target dev='vnet3'/></interface>", "/devices/0/kind/backend", json!({"type": "tap", "name": null})),
        ("serial pty", "", "", "<serial type='pty'/>", "/devices/0", json!({"id": "serial0", "pci": null, "kind": {"type": "serial", "port": 0, "backend": {"type": "pty"}}})),
        ("serial file append", "", "", "<serial type='file'><source path='/var/log/s.log' append='on'/><target port='1'/></serial>", "/devices/0/kind", json!({"type": "serial", "port": 1, "backend": {"type": "file", "path": "/var/log/s.log", "append": true}})),
        ("serial unix listen", "", "", "<serial type='unix'><source mode='bind' path='/run/s.sock'/></serial>", "/devices/0/kind/backend", json!({"type": "unix", "path": "/run/s.sock", "listen": true})),
        ("serial unix connect", "", "", "<serial type='unix'><source mode='connect' path='/run/s.sock'/></serial>", "/devices/0/kind/backend", json!({"type": "unix", "path": "/run/s.sock", "listen": false})),
        ("serial tcp", "", "", "<serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555'/><protocol type='raw'/></serial>", "/devices/0/kind/backend", json!({"type": "tcp", "host": "127.0.0.1", "port": 4555, "listen": true})),
        ("serial stdio", "", "", "<serial type='stdio'/>", "/devices/0/kind/backend", json!({"type": "stdio"})),
        ("serial null", "", "", "<serial type='null'/>", "/devices/0/kind/backend", json!({"type": "null"})),
        ("console serial creates serial0", "", "", "<console type='pty'><target type='serial'/></console>", "/devices", json!([{"id": "serial0", "pci": null, "kind": {"type": "serial", "port": 0, "backend": {"type": "pty"}}}])),
        ("console virtio", "", "", "<console type='pty'><target type='virtio'/></console>", "/devices/0", json!({"id": "console0", "pci": {"domain": 0, "bus": 0, "slot": 2, "function": 0}, "kind": {"type": "console", "backend": {"type": "pty"}, "name": null}})),
        ("channel unix named", "", "", "<channel type='unix'><source mode='bind' path='/run/qga.sock'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>", "/devices/0/kind", json!({"type": "console", "backend": {"type": "unix", "path": "/run/qga.sock", "listen": true}, "name": "org.qemu.guest_agent.0"})),
        ("channel unix without path", "", "", "<channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>", "/devices/0/kind/backend/path", json!("org.qemu.guest_agent.0.sock")),
        ("channel pty", "", "", "<channel type='pty'><target type='virtio' name='org.example.pty'/></channel>", "/devices/0/kind/backend", json!({"type": "pty"})),
        ("rng urandom", "", "", "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>", "/devices/0", json!({"id": "rng0", "pci": {"domain": 0, "bus": 0, "slot": 2, "function": 0}, "kind": {"type": "rng", "source": "/dev/urandom"}})),
        ("rng random", "", "", "<rng model='virtio'><backend model='random'>/dev/random</backend></rng>", "/devices/0/kind/source", json!("/dev/random")),
        ("rng builtin", "", "", "<rng model='virtio'><backend model='builtin'/></rng>", "/devices/0/kind/source", json!("/dev/urandom")),
        ("memballoon virtio", "", "", "<memballoon model='virtio' autodeflate='on'><stats period='10'/></memballoon>", "/devices/0", json!({"id": "balloon0", "pci": {"domain": 0, "bus": 0, "slot": 2, "function": 0}, "kind": {"type": "balloon", "stats_period": 10, "deflate_on_oom": true}})),
        ("memballoon none", "", "", "<memballoon model='none'/>", "/devices", json!([])),
        ("vsock cid auto", "", "", "<vsock model='virtio'><cid auto='yes'/></vsock>", "/devices/0", json!({"id": "vsock0", "pci": {"domain": 0, "bus": 0, "slot": 2, "function": 0}, "kind": {"type": "vsock", "guest_cid": 3, "uds_path": "vsock.sock"}})),
        ("vsock cid address", "", "", "<vsock model='virtio'><cid auto='no' address='42'/></vsock>", "/devices/0/kind/guest_cid", json!(42)),
        ("panic isa", "", "", "<panic model='isa'/>", "/devices/0", json!({"id": "panic0", "pci": null, "kind": {"type": "pvpanic"}})),
        ("disk queues", "", "", "<disk type='file'><driver queues='4' io='io_uring'/><source file='/a'/><target dev='vda' bus='virtio'/></disk>", "/devices/0/kind/queues", json!(4)),
        ("disk io threads", "", "", "<disk type='file'><driver io='threads'/><source file='/a'/><target dev='vda'/></disk>", "/devices/0/kind/io", json!("threads")),
        ("disk iothread", "<iothreads>2</iothreads>", "", "<disk type='file'><driver iothread='2'/><source file='/a'/><target dev='vda'/></disk>", "/devices/0/kind/path", json!("/a")),
        ("sata disk", "", "", "<disk type='file'><driver type='raw' discard='unmap'/><source file='/a'/><target dev='sda' bus='sata'/><serial>S1</serial><wwn>5000c50012345678</wwn></disk>", "/devices/0", json!({"id": "sata0-0-0", "pci": null, "kind": {"type": "ata-disk", "bus_type": "sata", "controller": 0, "bus": 0, "unit": 0, "cdrom": false, "name": "sda", "medium": {"path": "/a", "format": "raw", "target": "sda", "readonly": false, "shareable": false, "serial": "S1", "cache": "default", "discard": true}, "wwn": 0x5000_c500_1234_5678_u64}})),
        ("sata empty cdrom on port 3", "", "", "<disk type='file' device='cdrom'><target dev='sdd' bus='sata'/><readonly/></disk>", "/devices/0", json!({"id": "sata0-0-3", "pci": null, "kind": {"type": "ata-disk", "bus_type": "sata", "controller": 0, "bus": 3, "unit": 0, "cdrom": true, "name": "sdd", "medium": null}})),
        ("sata cdrom with its tray open", "", "", "<disk type='file' device='cdrom'><source file='/a.iso'/><target dev='sda' bus='sata' tray='open'/></disk>", "/devices/0/kind/tray_open", json!(true)),
        ("scsi cdrom with its tray open", "", "", "<disk type='file' device='cdrom'><source file='/a.iso'/><target dev='sda' bus='scsi' tray='open'/></disk>", "/devices/0/kind/tray_open", json!(true)),
        ("sata controller", "", "", "<disk type='file' device='cdrom'><source file='/a.iso'/><target dev='sda' bus='sata'/></disk>", "/devices/1", json!({"id": "sata0", "pci": {"domain": 0, "bus": 0, "slot": 2, "function": 0}, "kind": {"type": "sata-controller", "index": 0}})),
        ("ide cdrom hdc", "", "", "<disk type='file' device='cdrom'><source file='/a.iso'/><target dev='hdc' bus='ide'/></disk>", "/devices/0", json!({"id": "ide0-1-0", "pci": null, "kind": {"type": "ata-disk", "bus_type": "ide", "controller": 0, "bus": 1, "unit": 0, "cdrom": true, "name": "hdc", "medium": {"path": "/a.iso", "format": "raw", "target": "hdc", "readonly": true, "shareable": false, "serial": null, "cache": "default", "discard": false}}})),
        ("ide slave disk hdb and its controller", "", "", "<disk type='file'><source file='/a'/><target dev='hdb' bus='ide'/></disk>", "/devices/1", json!({"id": "ide", "pci": {"domain": 0, "bus": 0, "slot": 1, "function": 1}, "kind": {"type": "ide-controller", "index": 0}})),
        // Accepted with no effect (documented in README.md): the spec is unchanged.
        ("no effect: emulator, usb/pci controllers, ps2 inputs, video none", "", "<boot dev='hd'/>", "<emulator>/usr/bin/qemu-system-x86_64</emulator><controller type='usb' model='none'/><controller type='pci' model='pci-root'/><input type='mouse' bus='ps2'/><input type='keyboard' bus='ps2'/><input type='keyboard' bus='usb'/><video><model type='none'/></video>", "/devices", json!([])),
        ("video virtio (virtio-vga)", "", "", "<video><model type='virtio' heads='1' primary='yes'/></video>", "/devices/0/kind/model", json!("virtio-vga")),
        ("video virtio primary='no' (virtio-gpu-pci)", "", "", "<video><model type='virtio' primary='no'/></video>", "/devices/0/kind/model", json!("virtio-gpu")),
        ("interface user (passt)", "", "", "<interface type='user'><mac address='52:54:00:00:00:09'/><model type='virtio'/></interface>", "/devices/0/kind/backend", json!({"type": "user"})),
        ("interface user, backend passt", "", "", "<interface type='user'><mac address='52:54:00:00:00:09'/><backend type='passt'/></interface>", "/devices/0/kind/backend", json!({"type": "user"})),
        ("interface user with ip, route and portForward", "", "", "<interface type='user'><mac address='52:54:00:00:00:09'/><ip family='ipv4' address='10.0.2.15' prefix='24'/><route family='ipv4' address='0.0.0.0' prefix='0' gateway='10.0.2.2'/><backend type='passt'/><portForward proto='tcp' address='127.0.0.1'><range start='2022' to='22'/></portForward></interface>", "/devices/0/kind/backend", json!({"type": "user", "addresses": [{"address": "10.0.2.15", "prefix": 24}], "gateways": ["10.0.2.2"], "port_forwards": [{"proto": "tcp", "address": "127.0.0.1", "dev": null, "ranges": [{"start": 2022, "end": null, "to": 22, "exclude": false}]}]})),
        ("clock localtime (Windows)", "<clock offset='localtime'/>", "", "", "/platform/rtc", json!({"base": "localtime", "adjustment_s": 0})),
        ("clock timezone", "<clock offset='timezone' timezone='Europe/Paris'/>", "", "", "/platform/rtc", json!({"base": {"timezone": "Europe/Paris"}, "adjustment_s": 0})),
        ("clock variable", "<clock offset='variable' adjustment='-3600' basis='localtime'/>", "", "", "/platform/rtc", json!({"base": "localtime", "adjustment_s": -3600})),
        ("no effect: clock timers, pm off, pae, vmport off, resource", "<resource><partition>/machine</partition></resource><features><pae/><vmport state='off'/></features><clock offset='utc'><timer name='rtc' tickpolicy='catchup'/><timer name='pit' tickpolicy='delay'/><timer name='hpet' present='no'/></clock><pm><suspend-to-mem enabled='no'/><suspend-to-disk enabled='no'/></pm>", "", "", "/platform", json!({"acpi": false, "apic": false})),
        ("no effect: title, description, metadata", "<title>t</title><description>d</description><metadata><a:x xmlns:a='urn:a'/></metadata>", "", "", "/name", json!("golden")),
    ]
}

#[test]
fn each_accepted_feature_reaches_the_spec() {
    let mut failures = Vec::new();
    for (feature, top, os, devices, pointer, want) in accepted() {
        let spec = spec_json(&domain(top, os, devices));
        let got = spec.pointer(pointer).cloned().unwrap_or(Value::Null);
        if got != want {
            failures.push(format!(
                "{feature}: at {pointer}\n  want {want}\n  got  {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// (feature, top-level XML, os XML, devices XML, error text)
type Rejected = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

fn rejected() -> Vec<Rejected> {
    vec![
        ("loader", "", "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader>", "", "unsupported configuration: <kernel> together with firmware (<loader>, <nvram>, <os firmware>) is not supported: oxvirt boots a <kernel> directly"),
        ("nvram", "", "<nvram>/var/lib/nvram.fd</nvram>", "", "unsupported configuration: <kernel> together with firmware (<loader>, <nvram>, <os firmware>) is not supported: oxvirt boots a <kernel> directly"),
        ("smbios", "", "<smbios mode='sysinfo'/>", "", "unsupported configuration: <os><smbios mode='sysinfo'> is not supported with direct kernel boot (SMBIOS comes from firmware)"),
        ("maxMemory", "<maxMemory slots='2' unit='GiB'>4</maxMemory>", "", "", "unsupported configuration: <maxMemory> (memory hotplug) is not supported"),
        ("hugepage sizes", "<memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages></memoryBacking>", "", "", "unsupported configuration: <memoryBacking><hugepages><page> (explicit page sizes) is not supported"),
        ("locked memory", "<memoryBacking><locked/></memoryBacking>", "", "", "unsupported configuration: <memoryBacking><locked/> is not supported"),
        ("vcpu cpuset", "<vcpu cpuset='0-1'>2</vcpu>", "", "", "unsupported configuration: <vcpu cpuset> (host CPU pinning) is not supported"),
        ("vcpu placement auto", "<vcpu placement='auto'>2</vcpu>", "", "", "unsupported configuration: <vcpu placement='auto'> (numad placement) is not supported"),
        ("too many vcpus", "<vcpu>300</vcpu>", "", "", "unsupported configuration: <vcpu> 300 exceeds the maximum of 255 vCPUs"),
        ("cputune", "<vcpu>1</vcpu><cputune><vcpupin vcpu='0' cpuset='1'/></cputune>", "", "", "unsupported configuration: <cputune><vcpupin> is not supported"),
        ("cpu numa", "<cpu><numa><cell id='0' cpus='0' memory='256' unit='MiB'/></numa></cpu>", "", "", "unsupported configuration: <cpu><numa> (guest NUMA topology) is not supported"),
        ("cpu vendor", "<cpu mode='custom'><model>Skylake-Client</model><vendor>AMD</vendor></cpu>", "", "", "unsupported configuration: <cpu><vendor> other than the model's vendor is not supported"),
        ("cpu vendor without model", "<cpu mode='host-passthrough'><vendor>Intel</vendor></cpu>", "", "", "unsupported configuration: <cpu><vendor> other than the model's vendor is not supported"),
        ("cpu unknown model", "<cpu mode='custom'><model>Pentium9</model></cpu>", "", "", "unsupported configuration: CPU model 'Pentium9' is not supported by hypervisor"),
        ("features hyperv passthrough", "<features><hyperv mode='passthrough'/></features>", "", "", "unsupported configuration: <features><hyperv mode='passthrough'> is not supported (only 'custom': name each enlightenment)"),
        ("hyperv stimer without hypervclock", "<features><hyperv><vpindex state='on'/><synic state='on'/><stimer state='on'/></hyperv></features>", "", "", "unsupported configuration: Hyper-V enlightenment 'stimer' requires 'hypervclock' (hv-stimer needs hv-time)"),
        ("hyperv xmm_input", "<features><hyperv><xmm_input state='on'/></hyperv></features>", "", "", "unsupported configuration: <features><hyperv><xmm_input> is not supported"),
        ("features smm on", "<features><smm state='on'/></features>", "", "", "unsupported configuration: <features><smm> is not supported"),
        ("clock absolute", "<clock offset='absolute' start='1000'/>", "", "", "unsupported configuration: <clock offset='absolute'> is not supported (only 'utc', 'localtime', 'timezone' and 'variable')"),
        ("hpet present", "<clock offset='utc'><timer name='hpet' present='yes'/></clock>", "", "", "unsupported configuration: <clock><timer name='hpet' present='yes'> is not supported"),
        ("suspend to mem", "<pm><suspend-to-mem enabled='yes'/></pm>", "", "", "unsupported configuration: <pm><suspend-to-mem enabled='yes'> is not supported"),
        ("genid", "<genid/>", "", "", "unsupported configuration: <genid> (VM generation ID device) is not supported"),
        ("ide drive bus 2", "", "", "<disk type='file'><source file='/a'/><target dev='hda' bus='ide'/><address type='drive' controller='0' bus='2' target='0' unit='0'/></disk>", "unsupported configuration: disk 'hda': IDE drive address bus 2 target 0 unit 0 does not exist (bus 0-1, target 0, unit 0-1)"),
        ("floppy", "", "", "<disk type='file' device='floppy'><source file='/f.img'/><target dev='fda'/></disk>", "unsupported configuration: disk device 'floppy' is not supported (target 'fda'): oxvirt emulates no floppy controller; use a CD-ROM (device='cdrom') or a disk instead"),
        ("lun", "", "", "<disk type='block' device='lun'><source dev='/dev/sdb'/><target dev='sda' bus='scsi'/></disk>", "unsupported configuration: disk device 'lun' is not supported (target 'sda')"),
        ("second ide controller", "", "", "<controller type='ide' index='1'/>", "unsupported configuration: <controller type='ide' index='1'> is not supported (one IDE controller, index 0)"),
        ("sata port 6", "", "", "<disk type='file'><source file='/a'/><target dev='sdg' bus='sata'/><address type='drive' controller='0' bus='0' target='0' unit='6'/></disk>", "unsupported configuration: disk 'sdg': SATA unit 6 does not exist (an AHCI controller has ports 0-5)"),
        ("sata vendor", "", "", "<disk type='file'><source file='/a'/><target dev='sda' bus='sata'/><vendor>X</vendor></disk>", "unsupported configuration: disk 'sda': <vendor> is not supported on bus 'sata' (SCSI only)"),
        ("ide readonly disk", "", "", "<disk type='file'><source file='/a'/><target dev='hda' bus='ide'/><readonly/></disk>", "unsupported configuration: readonly ide disks are not supported"),
        ("sata readonly disk", "", "", "<disk type='file'><source file='/a'/><target dev='sda' bus='sata'/><readonly/></disk>", "unsupported configuration: readonly sata disks are not supported"),
        ("sata controller model", "", "", "<controller type='sata' index='0' model='ahci'/>", "unsupported configuration: <controller type='sata' model='ahci'> is not supported (the ICH9 AHCI has no model)"),
        ("cdrom on virtio", "", "", "<disk type='file' device='cdrom'><source file='/a.iso'/><target dev='vdb' bus='virtio'/></disk>", "unsupported configuration: disk device 'cdrom' on bus 'virtio' is not supported (target 'vdb'): put CD-ROMs on bus 'scsi'"),
        ("scsi bus 1", "", "", "<disk type='file'><source file='/a'/><target dev='sda' bus='scsi'/><address type='drive' controller='0' bus='1' target='0' unit='0'/></disk>", "unsupported configuration: disk 'sda': SCSI bus 1 is not supported (virtio-scsi has bus 0 only)"),
        ("scsi disk without source", "", "", "<disk type='file'><target dev='sda' bus='scsi'/></disk>", "unsupported configuration: disk 'sda' has no <source>: empty disks are not supported"),
        ("disk tray open", "", "", "<disk type='file'><source file='/a'/><target dev='vda' tray='open'/></disk>", "unsupported configuration: disk 'vda': <target tray|removable|rotation_rate> is not supported"),
        ("disk bus usb", "", "", "<disk type='file'><source file='/a'/><target dev='sda' bus='usb'/></disk>", "unsupported configuration: disk bus 'usb' is not supported (target 'sda')"),
        ("disk type network", "", "", "<disk type='network'><source protocol='nbd' name='x'><host name='h'/></source><target dev='vda'/></disk>", "unsupported configuration: disk type 'network' is not supported (target 'vda')"),
        ("disk type volume", "", "", "<disk type='volume'><source pool='p' volume='v'/><target dev='vda'/></disk>", "unsupported configuration: disk type 'volume' is not supported (target 'vda')"),
        ("disk format vmdk", "", "", "<disk type='file'><driver type='vmdk'/><source file='/a'/><target dev='vda'/></disk>", "unsupported configuration: disk 'vda': format 'vmdk' is not supported (raw, qcow2)"),
        ("disk iotune", "", "", "<disk type='file'><source file='/a'/><target dev='vda'/><iotune><total_iops_sec>10</total_iops_sec></iotune></disk>", "unsupported configuration: disk 'vda': <iotune> is not supported"),
        ("disk without source", "", "", "<disk type='file'><target dev='vda'/></disk>", "unsupported configuration: disk 'vda' has no <source>: empty disks are not supported"),
        ("disk rotation_rate", "", "", "<disk type='file'><source file='/a'/><target dev='vda' rotation_rate='1'/></disk>", "unsupported configuration: disk 'vda': <target tray|removable|rotation_rate> is not supported"),
        ("disk queues on sata", "", "", "<disk type='file'><driver queues='2'/><source file='/a'/><target dev='sda' bus='sata'/></disk>", "unsupported configuration: disk 'sda': <driver queues> needs bus='virtio'"),
        ("disk error_policy", "", "", "<disk type='file'><driver error_policy='stop'/><source file='/a'/><target dev='vda'/></disk>", "unsupported configuration: disk 'vda': <driver error_policy='stop'> is not supported"),
        ("interface network", "", "", "<interface type='network'><source network='default'/></interface>", "unsupported configuration: interface type 'network' (network 'default') needs oxvirtd's network driver to find its bridge"),
        ("interface network portgroup", "", "", "<interface type='network'><source network='default' portgroup='a' bridge='virbr0'/></interface>", "unsupported configuration: <interface type='network'><source portgroup> (network 'default') is not supported"),
        ("interface ethernet with a portForward", "", "", "<interface type='ethernet'><portForward proto='tcp'><range start='2022' to='22'/></portForward></interface>", "unsupported configuration: <interface><portForward> is not supported"),
        ("interface user with a non-default route", "", "", "<interface type='user'><mac address='52:54:00:00:00:01'/><route address='192.168.5.0' prefix='24' gateway='10.0.2.2'/></interface>", "unsupported configuration: interface '52:54:00:00:00:01': passt can only give the guest a default <route> (address 0.0.0.0 or ::, prefix 0, no metric) with gateway '10.0.2.2'"),
        ("interface user on another backend", "", "", "<interface type='user'><backend type='default'/></interface>", "unsupported configuration: <interface><backend> is not supported"),
        ("interface direct", "", "", "<interface type='direct'><source dev='eth0' mode='vepa'/></interface>", "unsupported configuration: interface type 'direct' is not supported (only 'ethernet', 'bridge', 'network' and 'user')"),
        ("interface vhostuser", "", "", "<interface type='vhostuser'><source type='unix' path='/s' mode='client'/><model type='virtio'/></interface>", "unsupported configuration: interface type 'vhostuser' is not supported (only 'ethernet', 'bridge', 'network' and 'user')"),
        ("interface model rtl8139", "", "", "<interface type='bridge'><source bridge='br0'/><model type='rtl8139'/></interface>", "unsupported configuration: interface model 'rtl8139' is not supported (only 'virtio', 'e1000' and 'e1000e')"),
        ("interface bandwidth", "", "", "<interface type='bridge'><source bridge='br0'/><bandwidth><inbound average='10'/></bandwidth></interface>", "unsupported configuration: <interface><bandwidth> is not supported"),
        ("graphics sdl", "", "", "<graphics type='sdl'/>", "unsupported configuration: <graphics type='sdl'> is not supported (only 'vnc', and 'spice' served as VNC)"),
        ("video", "", "", "<video><model type='cirrus'/></video>", "unsupported configuration: <video><model type='cirrus'> is not supported; use 'vga', 'bochs', 'virtio', 'qxl' (served as 'vga') or 'none'"),
        ("hostdev", "", "", "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source></hostdev>", "unsupported configuration: <hostdev> devices are not supported"),
        ("filesystem", "", "", "<filesystem type='mount'><source dir='/srv'/><target dir='srv'/></filesystem>", "unsupported configuration: <filesystem> devices are not supported"),
        ("tpm spapr", "", "", "<tpm model='tpm-spapr'><backend type='emulator' version='2.0'/></tpm>", "unsupported configuration: <tpm model='tpm-spapr'> is not supported (only 'tpm-crb' and 'tpm-tis')"),
        ("tpm 1.2", "", "", "<tpm model='tpm-crb'><backend type='emulator' version='1.2'/></tpm>", "unsupported configuration: <tpm><backend version='1.2'> is not supported (only TPM '2.0')"),
        ("tpm passthrough", "", "", "<tpm model='tpm-crb'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>", "unsupported configuration: <tpm><backend type='passthrough'> is not supported (only 'emulator', through swtpm)"),
        ("tpm encryption", "", "", "<tpm model='tpm-crb'><backend type='emulator' version='2.0'><encryption secret='6dd3e4a5-1d76-44ce-961f-f119f5aad935'/></backend></tpm>", "unsupported configuration: <tpm><backend><encryption> is not supported"),
        ("smartcard", "", "", "<smartcard mode='host'/>", "unsupported configuration: <smartcard> devices are not supported"),
        ("shmem", "", "", "<shmem name='m'><model type='ivshmem-plain'/></shmem>", "unsupported configuration: <shmem> devices are not supported"),
        ("iommu", "", "", "<iommu model='intel'/>", "unsupported configuration: <iommu> devices are not supported"),
        ("watchdog", "", "", "<watchdog model='i6300esb'/>", "unsupported configuration: <watchdog> devices are not supported"),
        ("hub", "", "", "<hub type='usb'/>", "unsupported configuration: <hub> devices are not supported"),
        ("parallel", "", "", "<parallel type='pty'/>", "unsupported configuration: <parallel> devices are not supported"),
        ("memory device", "", "", "<memory model='dimm'><target><size unit='MiB'>128</size><node>0</node></target></memory>", "unsupported configuration: <memory> devices are not supported"),
        ("scsi controller lsilogic", "", "", "<controller type='scsi' model='lsilogic'/>", "unsupported configuration: <controller type='scsi' model='lsilogic'> is not supported (only 'virtio-scsi')"),
        ("scsi controller queues", "", "", "<controller type='scsi' model='virtio-scsi'><driver queues='4'/></controller>", "unsupported configuration: <controller type='scsi'><driver> is not supported"),
        ("evdev input", "", "", "<input type='evdev'><source dev='/dev/input/event2'/></input>", "unsupported configuration: <input type='evdev'> is not supported"),
        ("serial spicevmc", "", "", "<serial type='spicevmc'/>", "unsupported configuration: <serial type='spicevmc'> is not supported"),
        ("serial udp", "", "", "<serial type='udp'><source mode='connect' host='h' service='1'/></serial>", "unsupported configuration: <serial type='udp'> is not supported"),
        ("serial port 4", "", "", "<serial type='pty'><target port='4'/></serial>", "unsupported configuration: <serial><target port='4'> is not supported (COM1..COM4 are ports 0..3)"),
        ("serial pci-serial", "", "", "<serial type='pty'><target type='pci-serial'><model name='pci-serial'/></target></serial>", "unsupported configuration: <serial><target type='pci-serial'><model name='pci-serial'> is not supported (only isa-serial)"),
        ("serial telnet", "", "", "<serial type='tcp'><source mode='bind' host='0.0.0.0' service='23'/><protocol type='telnet'/></serial>", "unsupported configuration: <serial type='tcp'><protocol type='telnet'> is not supported (only 'raw')"),
        ("serial log", "", "", "<serial type='pty'><log file='/var/log/x.log'/></serial>", "unsupported configuration: <serial><log> is not supported"),
        ("channel guestfwd", "", "", "<channel type='tcp'><source mode='connect' host='h' service='1'/><target type='guestfwd' address='10.0.2.1' port='1'/></channel>", "unsupported configuration: <channel><target type='guestfwd'> is not supported (only 'virtio')"),
        ("rng egd", "", "", "<rng model='virtio'><backend model='egd' type='tcp'><source mode='connect' host='h' service='1'/></backend></rng>", "unsupported configuration: <rng><backend model='egd'> is not supported"),
        ("rng rate", "", "", "<rng model='virtio'><rate bytes='1234' period='2000'/><backend model='random'>/dev/urandom</backend></rng>", "unsupported configuration: <rng><rate> is not supported"),
        ("panic hyperv", "", "", "<panic model='hyperv'/>", "unsupported configuration: <panic model='hyperv'> is not supported (only 'isa')"),
        ("memballoon xen", "", "", "<memballoon model='xen'/>", "unsupported configuration: <memballoon model='xen'> is not supported"),
        ("pcie switch", "", "", "<controller type='pci' index='1' model='pcie-switch-upstream-port'/>", "unsupported configuration: <controller type='pci' model='pcie-switch-upstream-port'> is not supported (only pcie-root-port and pci-bridge)"),
    ]
}

#[test]
fn each_rejected_feature_gives_its_error() {
    let mut failures = Vec::new();
    for (feature, top, os, devices, want) in rejected() {
        let xml = domain(top, os, devices);
        match spec_from_xml(&xml) {
            Ok(_) => failures.push(format!("{feature}: accepted, want `{want}`")),
            Err(e) => {
                if e.to_string() != want {
                    failures.push(format!("{feature}:\n  want {want}\n  got  {e}"));
                }
                if !matches!(e, Error::Unsupported(_)) {
                    failures.push(format!("{feature}: error kind {e:?} is not Unsupported"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rejected_top_level_and_boot_choices() {
    let cases: &[(&str, &str)] = &[
        (
            "<domain type='xen'><name>a</name><memory>1024</memory><os><type>hvm</type><kernel>/k</kernel></os></domain>",
            "unsupported configuration: domain type 'xen' is not supported (use 'kvm')",
        ),
        (
            "<domain type='kvm'><name>a</name><memory unit='MiB'>64</memory><os><type>hvm</type><kernel>/k</kernel></os><devices><disk type='file'><source file='/a'/><target dev='vda'/><address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></disk></devices></domain>",
            "XML error: device 'virtio-disk0': PCI address 0000:01:00.0 is on bus 0x01, which no PCI controller provides",
        ),
        (
            "<domain type='kvm'><name>a</name><memory unit='MiB'>64</memory><os><type machine='microvm'>hvm</type><boot dev='hd'/></os></domain>",
            "unsupported configuration: machine type 'microvm' is not supported for firmware boot (use 'q35' or 'pc')",
        ),
        (
            "<domain type='kvm'><name>a</name><memory unit='MiB'>64</memory><os firmware='efi'><type>hvm</type><kernel>/k</kernel></os></domain>",
            "unsupported configuration: <kernel> together with firmware (<loader>, <nvram>, <os firmware>) is not supported: oxvirt boots a <kernel> directly",
        ),
        (
            "<domain type='kvm'><name>a</name><memory unit='MiB'>64</memory><os><type machine='q35'>hvm</type><loader secure='yes' type='pflash'>/c.fd</loader></os></domain>",
            "unsupported configuration: <loader secure='yes'>: secure boot requires SMM, which oxvirt does not provide yet",
        ),
        (
            "<domain type='kvm'><name>a</name><memory unit='MiB'>64</memory><os><type machine='q35'>hvm</type><bios rebootTimeout='70000'/></os></domain>",
            "XML error: invalid value for rebootTimeout '70000', must be in range [-1,65535]",
        ),
        (
            "<domain type='kvm'><name>a</name><memory unit='MiB'>64</memory><os><type arch='aarch64'>hvm</type><kernel>/k</kernel></os></domain>",
            "unsupported configuration: <os><type arch='aarch64'> is not supported (only 'x86_64')",
        ),
        (
            "<domain type='kvm'><name>a</name><memory unit='MiB'>64</memory><os><type>hvm</type><kernel>/k</kernel></os><seclabel type='dynamic' model='selinux'/></domain>",
            "unsupported configuration: <seclabel model='selinux'>: security driver 'selinux' is not available (oxvirt's is dac: the VMM runs as its own user, sandboxed)",
        ),
        (
            "<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><name>a</name><memory unit='MiB'>64</memory><os><type>hvm</type><kernel>/k</kernel></os><qemu:commandline><qemu:arg value='-s'/></qemu:commandline></domain>",
            "unsupported configuration: <qemu:commandline> is not supported",
        ),
    ];
    for (xml, want) in cases {
        let got = spec_from_xml(xml).expect_err(xml).to_string();
        assert_eq!(&got, want);
    }
}

/// Normalises identifiers the XML did not fix (generated UUIDs and MACs).
fn normalise(xml: &str, mut spec: Value) -> Value {
    if !xml.contains("<uuid>") {
        spec["uuid"] = json!("<generated>");
    }
    if let Some(devs) = spec["devices"].as_array_mut() {
        for d in devs {
            if let Some(mac) = d["kind"]["mac"].as_str() {
                if !xml.to_lowercase().contains(mac) {
                    d["kind"]["mac"] = json!("<generated>");
                }
            }
        }
    }
    spec
}

#[test]
fn corpus_translations_match_golden_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let bless = std::env::var_os("OXVIRT_BLESS").is_some();
    let mut failures = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(root.join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "xml"))
        .collect();
    entries.sort();
    for path in entries {
        let mut xml = std::fs::read_to_string(&path).unwrap();
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        if stem.contains("virt-install") {
            // Generated against libvirt's test driver (i686 only): translate them as the
            // KVM x86_64 domains they would be on a real host.
            xml = xml
                .replace("<domain type=\"test\">", "<domain type=\"kvm\">")
                .replace("arch=\"i686\"", "arch=\"x86_64\"");
        }
        let got = match spec_from_xml(&xml) {
            Ok(spec) => {
                let v = normalise(&xml, serde_json::from_str(&spec.to_json()).unwrap());
                serde_json::to_string_pretty(&v).unwrap() + "\n"
            }
            Err(e) => format!("{e}\n"),
        };
        let golden = root.join("golden").join(format!("{stem}.txt"));
        if bless {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &got).unwrap();
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if want != got {
            failures.push(format!(
                "{stem}: translation differs from {}:\n{got}",
                golden.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(regenerate with OXVIRT_BLESS=1 after checking the change)",
        failures.join("\n")
    );
}

/// `<os firmware='efi'>` picks Debian's OVMF build without SMM from the firmware
/// descriptors, as libvirt's auto-selection does, and a per-domain NVRAM file.
#[test]
fn efi_auto_selection_picks_ovmf_without_smm() {
    let descriptor = "/usr/share/qemu/firmware/60-edk2-x86_64.json";
    if !std::path::Path::new(descriptor).exists() {
        eprintln!("*** SKIPPED: efi_auto_selection_picks_ovmf_without_smm: {descriptor} is missing (apt-get install ovmf)");
        return;
    }
    let xml = "<domain type='kvm'><name>uefi</name><memory unit='MiB'>256</memory>\
        <os firmware='efi'><type machine='q35'>hvm</type><nvram>/vm/uefi_VARS.fd</nvram></os></domain>";
    let spec = spec_from_xml(xml).unwrap();
    let fw = spec.boot.firmware.unwrap();
    assert_eq!(fw.kind, machine_spec::FirmwareKind::Efi);
    assert_eq!(
        fw.code,
        std::path::PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.fd")
    );
    assert_eq!(
        fw.vars_template,
        Some(std::path::PathBuf::from("/usr/share/OVMF/OVMF_VARS_4M.fd"))
    );
    assert_eq!(fw.vars, Some(std::path::PathBuf::from("/vm/uefi_VARS.fd")));
    assert_eq!(spec.platform.chipset, machine_spec::Chipset::Q35);

    // Without <nvram>, the default per-domain path (libvirt's NAME_VARS.fd rule).
    let xml = xml.replace("<nvram>/vm/uefi_VARS.fd</nvram>", "");
    let fw = spec_from_xml(&xml).unwrap().boot.firmware.unwrap();
    let vars = fw.vars.unwrap();
    assert!(vars.ends_with("nvram/uefi_VARS.fd"), "{}", vars.display());

    // Secure boot needs SMM, which no build oxvirt can run without.
    let xml = "<domain type='kvm'><name>sb</name><memory unit='MiB'>256</memory>\
        <os firmware='efi'><type machine='q35'>hvm</type><firmware><feature enabled='yes' name='secure-boot'/></firmware></os></domain>";
    let e = spec_from_xml(xml).unwrap_err().to_string();
    assert!(e.contains("secure boot requires SMM"), "{e}");
    // UEFI on i440FX is refused for now.
    let xml = "<domain type='kvm'><name>pc</name><memory unit='MiB'>256</memory>\
        <os firmware='efi'><type machine='pc'>hvm</type></os></domain>";
    let e = spec_from_xml(xml).unwrap_err().to_string();
    assert!(e.contains("'pc'"), "{e}");
}
