//! Machine specs and domain XML for test guests.

use std::path::Path;

use machine_spec::{
    Boot, CacheMode, CharBackend, CpuMode, Cpus, Device, DeviceKind, Disk, DiskFormat, Lifecycle,
    LifecycleAction, MachineSpec, Memory, Net, NetBackend, PciAddress, Platform, Rng, Serial,
    Topology, SPEC_VERSION,
};

use crate::test_guests;

/// The serial console backend a test wants (same as the spec's).
pub type SerialBackend = CharBackend;

/// A spec for `kernel` with `cmdline`, `mem_mib` MiB, `cpus` vCPUs (one socket), ACPI and
/// APIC on, ttyS0 on the VMM's stdout, power-off/crash destroy, reboot restart.
pub fn spec(kernel: &Path, cmdline: &str, mem_mib: u64, cpus: u32) -> MachineSpec {
    MachineSpec {
        version: SPEC_VERSION,
        name: "oxtest".into(),
        uuid: "5a1e0f00-7e57-4b00-8000-00000000cafe".into(),
        memory: Memory {
            size_bytes: mem_mib << 20,
            shared: false,
            hugepages: false,
        },
        cpus: Cpus {
            count: cpus,
            max: cpus,
            topology: Topology {
                sockets: 1,
                dies: 1,
                cores: cpus,
                threads: 1,
            },
            mode: CpuMode::HostPassthrough,
            features: Vec::new(),
            model: None,
        },
        boot: Boot {
            firmware: None,
            kernel: Some(kernel.to_path_buf()),
            initrd: None,
            cmdline: cmdline.into(),
        },
        platform: Platform {
            chipset: Default::default(),
            acpi_pci_hotplug: false,
            rtc: Default::default(),
            acpi: true,
            apic: true,
            hyperv: None,
        },
        lifecycle: Lifecycle {
            on_poweroff: LifecycleAction::Destroy,
            on_reboot: LifecycleAction::Restart,
            on_crash: LifecycleAction::Destroy,
        },
        devices: vec![serial_device(CharBackend::Stdio)],
        graphics: None,
        warnings: Vec::new(),
        files: Vec::new(),
        run_as: None,
        incoming: None,
    }
}

/// The oxtest guest (ELF, PVH entry) with `console=ttyS0 oxtest=ARGS`, 128 MiB, one
/// vCPU, and `devices` after its serial port. `args` is the check list, optionally
/// followed by more command-line words (`"pci,virtio,link link_changes=2"`).
pub fn oxtest_spec(args: &str, devices: Vec<Device>) -> MachineSpec {
    let mut s = spec(
        &test_guests().elf,
        &format!("console=ttyS0 oxtest={args}"),
        128,
        1,
    );
    s.devices.extend(devices);
    s
}

/// PCI address 0000:00:SLOT.0.
pub fn pci_slot(slot: u8) -> Option<PciAddress> {
    Some(PciAddress {
        domain: 0,
        bus: 0,
        slot,
        function: 0,
    })
}

/// A raw, writable, unshared disk `vda` on `path`, cache `writeback`, no serial, no
/// discard: the base a test changes with `Disk { field, ..raw_disk(path) }`.
pub fn raw_disk(path: &Path) -> Disk {
    Disk {
        path: path.to_path_buf(),
        format: DiskFormat::Raw,
        target: "vda".into(),
        readonly: false,
        shareable: false,
        serial: None,
        cache: CacheMode::Writeback,
        discard: false,
        queues: None,
        io: Default::default(),
    }
}

/// Device `id` at PCI slot `slot` holding `disk`.
pub fn disk_device(id: &str, slot: u8, disk: Disk) -> Device {
    Device {
        boot_index: None,
        id: id.into(),
        pci: pci_slot(slot),
        kind: DeviceKind::Disk(disk),
    }
}

/// virtio-rng `id` at `slot`, fed from `/dev/urandom`.
pub fn rng_device(id: &str, slot: u8) -> Device {
    Device {
        boot_index: None,
        id: id.into(),
        pci: pci_slot(slot),
        kind: DeviceKind::Rng(Rng {
            source: "/dev/urandom".into(),
        }),
    }
}

/// virtio-net `id` at `slot` with MAC `mac` on `backend`, link up, default MTU.
pub fn net_device(id: &str, slot: u8, mac: &str, backend: NetBackend) -> Device {
    Device {
        boot_index: None,
        id: id.into(),
        pci: pci_slot(slot),
        kind: DeviceKind::Net(Net {
            mac: mac.into(),
            backend,
            link_up: true,
            mtu: None,
            model: Default::default(),
            queues: None,
            tap_fds: Vec::new(),
            vhost_fds: Vec::new(),
            driver: Default::default(),
        }),
    }
}

/// ttyS0 with `backend`.
pub fn serial_device(backend: CharBackend) -> Device {
    Device {
        boot_index: None,
        id: "serial0".into(),
        pci: None,
        kind: DeviceKind::Serial(Serial { port: 0, backend }),
    }
}

/// Replaces the spec's ttyS0 backend.
pub fn set_serial(spec: &mut MachineSpec, backend: CharBackend) {
    spec.devices.retain(|d| d.id != "serial0");
    spec.devices.insert(0, serial_device(backend));
}

/// A libvirt domain XML for a direct-kernel-boot guest. `serial` is the `<serial>` and
/// `<console>` device XML (see [`serial_xml`]).
pub fn domain_xml(
    name: &str,
    kernel: &Path,
    cmdline: &str,
    mem_mib: u64,
    cpus: u32,
    on_reboot: &str,
    serial: &str,
) -> String {
    format!(
        "<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>{mem_mib}</memory>
  <vcpu placement='static'>{cpus}</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='host-passthrough'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>{on_reboot}</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
{serial}
  </devices>
</domain>
",
        kernel = xml_escape(&kernel.display().to_string()),
        cmdline = xml_escape(cmdline),
    )
}

/// `<serial>` + `<console>` for a libvirt char device type: `stdio`, `pty`,
/// `file:PATH`, `unix:PATH` (the VMM listens).
pub fn serial_xml(kind: &str) -> String {
    let (ty, source) = match kind.split_once(':') {
        Some(("file", p)) => ("file", format!("<source path='{}'/>", xml_escape(p))),
        Some(("unix", p)) => (
            "unix",
            format!("<source mode='bind' path='{}'/>", xml_escape(p)),
        ),
        _ => (kind, String::new()),
    };
    format!(
        "    <serial type='{ty}'>
      {source}
      <target port='0'/>
    </serial>
    <console type='{ty}'>
      {source}
      <target type='serial' port='0'/>
    </console>"
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}
