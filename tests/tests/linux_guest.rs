//! Real Linux judges the VMM: the Linux test guest (`tests/linux-guest/`) booted by
//! `oxvirt-vmm` to its busybox user space, with Linux's own ACPI, PCI and virtio
//! drivers. About 25 s per boot on the emulated KVM of the CI machines (under a second
//! on hardware KVM), so each test boots once and checks several things.
//!
//! `OXVIRT_LINUX_GUEST=stock` runs the same tests with Debian's cloud kernel (on
//! hardware KVM; the emulated KVM cannot run it and the tests say so).

#[path = "linux_guest/support.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use machine_spec::{
    exit, Balloon, CacheMode, CharBackend, Console, DeviceKind, Disk, DiskFormat, LifecycleAction,
    Net, NetBackend, Rng,
};
use oxvirt_tests::{skip, Vm};
use support::{
    check, find_sha256, guest, host, pattern, pci_device, sha256_hex, wait_ready, Qmp, Report, EXIT,
};

/// Memory Linux reports for `mib` MiB of RAM: less than that (firmware areas, the kernel,
/// reserved pages), but not much less.
fn check_memory(vm: &Vm, r: &Report, mib: u64) {
    let kib: u64 = r
        .first("memory")
        .map(|l| l.get("total_kib"))
        .unwrap_or("")
        .parse()
        .unwrap_or(0);
    check(
        vm,
        kib <= mib * 1024 && kib >= (mib - 40) * 1024,
        &format!("guest MemTotal {kib} KiB does not fit {mib} MiB of RAM"),
    );
}

fn check_cpus(vm: &Vm, r: &Report, n: u32) {
    let count = r.first("cpus").map(|l| l.get("count")).unwrap_or("");
    check(
        vm,
        count == n.to_string(),
        &format!("guest sees {count:?} online CPUs, expected {n}"),
    );
}

fn wait_poweroff(vm: &Vm) {
    let code = vm.wait_exit(EXIT);
    check(
        vm,
        code == exit::POWEROFF,
        &format!(
            "VMM exit status {code}, expected {} (POWEROFF)",
            exit::POWEROFF
        ),
    );
}

#[test]
fn linux_boots_to_userspace_and_powers_off() {
    let test = "linux_boots_to_userspace_and_powers_off";
    let Some(g) = guest(test) else { return };
    let vm = Vm::start(&g.spec(1, 128, ""));
    let r = wait_ready(&vm, g);
    check_cpus(&vm, &r, 1);
    check_memory(&vm, &r, 128);
    check(
        &vm,
        r.first("kernel")
            .is_some_and(|l| l.get("release").starts_with("6.")),
        "guest reports its kernel release",
    );
    vm.wait_for("OXVIRT-EXIT poweroff", EXIT);
    wait_poweroff(&vm);
}

#[test]
fn linux_sees_two_cpus_and_the_memory() {
    let test = "linux_sees_two_cpus_and_the_memory";
    let Some(g) = guest(test) else { return };
    let vm = Vm::start(&g.spec(2, 192, ""));
    let r = wait_ready(&vm, g);
    check_cpus(&vm, &r, 2);
    check_memory(&vm, &r, 192);
    wait_poweroff(&vm);
}

#[test]
fn linux_acpi_power_button_powers_off() {
    let test = "linux_acpi_power_button_powers_off";
    let Some(g) = guest(test) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let qmp = dir.path().join("qmp.sock");
    let vm = Vm::start_with(
        &g.spec(1, 128, "oxvirt_exit=wait"),
        &["--qmp", qmp.to_str().expect("utf-8 path")],
    );
    let mut q = Qmp::connect(&qmp, &vm);
    let r = wait_ready(&vm, g);
    check(
        &vm,
        r.first("acpi")
            .is_some_and(|l| !matches!(l.get("power_button"), "" | "absent")),
        "the guest's ACPI button driver found no power button (LNXPWRBN or PNP0C0C)",
    );
    check(
        &vm,
        r.first("acpid").is_some_and(|l| !l.get("pid").is_empty()),
        "busybox acpid is not running in the guest",
    );
    vm.wait_for("OXVIRT-EXIT wait", EXIT);
    q.execute(&vm, "system_powerdown");
    vm.wait_for("OXVIRT-ACPI power-button", EXIT);
    wait_poweroff(&vm);
}

#[test]
fn linux_reboot_restarts_the_guest() {
    let test = "linux_reboot_restarts_the_guest";
    let Some(g) = guest(test) else { return };
    let mut spec = g.spec(1, 128, "oxvirt_exit=reboot");
    spec.lifecycle.on_reboot = LifecycleAction::Restart;
    let vm = Vm::start(&spec);
    wait_ready(&vm, g);
    vm.wait_for("OXVIRT-EXIT reboot", EXIT);
    // The same process boots the guest again from the start.
    vm.wait_count("OXVIRT-READY", 2, support::BOOT);
    check(
        &vm,
        vm.exited().is_none(),
        "the VMM exited after the reboot",
    );
    vm.signal(nix::sys::signal::Signal::SIGTERM);
    let code = vm.wait_exit(EXIT);
    check(
        &vm,
        code == exit::HOST_STOP,
        &format!(
            "VMM exit status {code} after SIGTERM, expected {} (HOST_STOP)",
            exit::HOST_STOP
        ),
    );
}

/// Host side of the disk tests: a 4 MiB image whose first 256 KiB are a pattern. The
/// guest hashes that region, copies it to 1 MiB and writes a marker at sector 4000, with
/// fsync; the host checks all three after power-off.
const DISK_SIZE: usize = 4 << 20;
const REGION: usize = 256 << 10;
const COPY_AT: usize = 1 << 20;
const MARK_SECTOR: usize = 4000;
const MARK: &str = "OXVIRT-GUEST-WROTE-THIS";
const DISK_CMD: &str = "oxvirt_cmd=\"dd if=/dev/vda bs=65536 count=4 2>/dev/null | sha256sum; \
     dd if=/dev/vda of=/dev/vda bs=65536 count=4 seek=16 conv=fsync 2>/dev/null && \
     echo OXVIRT-GUEST-WROTE-THIS | dd of=/dev/vda bs=512 seek=4000 conv=fsync 2>/dev/null\"";

fn disk_test(test: &str, format: DiskFormat) {
    let Some(g) = guest(test) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let region = pattern(REGION, 0x0516_7a11);
    let mut raw = region.clone();
    raw.resize(DISK_SIZE, 0);
    let raw_path = dir.path().join("disk.raw");
    std::fs::write(&raw_path, &raw).expect("writing the disk image");
    let (path, fmt) = match format {
        DiskFormat::Raw => (raw_path.clone(), "raw"),
        DiskFormat::Qcow2 => {
            let p = dir.path().join("disk.qcow2");
            host(
                "qemu-img",
                &["convert", "-f", "raw", "-O", "qcow2", s(&raw_path), s(&p)],
            );
            (p, "qcow2")
        }
    };
    let serial = format!("oxvirt-{fmt}-0");
    let mut spec = g.spec(1, 128, DISK_CMD);
    spec.devices.push(pci_device(
        "virtio-disk0",
        4,
        DeviceKind::Disk(Disk {
            path: path.clone(),
            format,
            target: "vda".into(),
            readonly: false,
            shareable: false,
            serial: Some(serial.clone()),
            cache: CacheMode::Default,
            discard: false,
        }),
    ));
    let vm = Vm::start(&spec);
    let r = wait_ready(&vm, g);
    let blk = r.all("block");
    check(
        &vm,
        blk.len() == 1
            && blk[0].get("name") == "vda"
            && blk[0].get("serial") == serial
            && blk[0].get("sectors") == (DISK_SIZE / 512).to_string()
            && blk[0].get("ro") == "0",
        &format!(
            "guest block devices {blk:?}, expected vda, {serial}, {} sectors",
            DISK_SIZE / 512
        ),
    );
    check(
        &vm,
        r.virtio("block")
            .is_some_and(|l| l.get("driver") == "virtio_blk"),
        "virtio_blk did not bind",
    );
    vm.wait_for("OXVIRT-CMD-RC=", EXIT);
    wait_poweroff(&vm);
    let r = Report::parse(&vm.console());
    check(
        &vm,
        r.cmd_rc == Some(0),
        &format!("the guest's dd commands failed: {:?}", r.cmd_output),
    );
    check(
        &vm,
        find_sha256(&r.cmd_output) == Some(sha256_hex(&region)),
        "the guest read different bytes than the host wrote (sha256 mismatch)",
    );
    let after = match format {
        DiskFormat::Raw => std::fs::read(&raw_path).expect("reading the image"),
        DiskFormat::Qcow2 => {
            host("qemu-img", &["check", s(&path)]);
            let out = dir.path().join("after.raw");
            host(
                "qemu-img",
                &["convert", "-f", "qcow2", "-O", "raw", s(&path), s(&out)],
            );
            std::fs::read(&out).expect("reading the converted image")
        }
    };
    check(&vm, after.len() == DISK_SIZE, "image size changed");
    check(
        &vm,
        after[..REGION] == region[..],
        "the guest's write changed the source region",
    );
    check(
        &vm,
        after[COPY_AT..COPY_AT + REGION] == region[..],
        "the region the guest copied is not on the host image",
    );
    let mark = &after[MARK_SECTOR * 512..MARK_SECTOR * 512 + MARK.len() + 1];
    check(
        &vm,
        mark == format!("{MARK}\n").as_bytes(),
        "the marker the guest wrote is not on the host image",
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn linux_virtio_blk_raw_read_write() {
    disk_test("linux_virtio_blk_raw_read_write", DiskFormat::Raw);
}

#[test]
fn linux_virtio_blk_qcow2_read_write() {
    disk_test("linux_virtio_blk_qcow2_read_write", DiskFormat::Qcow2);
}

/// A network namespace for one test, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn new(tag: &str) -> NetNs {
        let name = format!("oxvirt-{tag}-{}", std::process::id());
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .output();
        host("ip", &["netns", "add", &name]);
        host("ip", &["-n", &name, "link", "set", "lo", "up"]);
        NetNs(name)
    }

    /// Runs `f` (which spawns the VMM) with this thread in the namespace: the child
    /// inherits it, the test thread goes back.
    fn enter<T>(&self, f: impl FnOnce() -> T) -> T {
        use nix::sched::{setns, CloneFlags};
        let home = std::fs::File::open("/proc/thread-self/ns/net").expect("own netns");
        let ns = std::fs::File::open(format!("/run/netns/{}", self.0)).expect("test netns");
        setns(&ns, CloneFlags::CLONE_NEWNET).expect("entering the test netns");
        let out = f();
        setns(&home, CloneFlags::CLONE_NEWNET).expect("leaving the test netns");
        out
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

#[test]
fn linux_virtio_net_reaches_a_tap() {
    let test = "linux_virtio_net_reaches_a_tap";
    if !nix::unistd::geteuid().is_root() {
        skip(
            test,
            "needs root to create a network namespace and a tap device",
        );
        return;
    }
    let Some(g) = guest(test) else { return };
    let ns = NetNs::new("net");
    let mac = "52:54:00:0a:7e:01";
    let tap = "oxtap0";
    // The guest's /init sets eth0's address; the guest pings the host end of the tap.
    let mut spec = g.spec(
        1,
        128,
        "oxvirt_ip=10.0.2.15/24 oxvirt_cmd=\"ping -c 3 -w 30 10.0.2.2\"",
    );
    spec.devices.push(pci_device(
        "net0",
        5,
        DeviceKind::Net(Net {
            mac: mac.into(),
            backend: NetBackend::Tap {
                name: Some(tap.into()),
            },
            link_up: true,
            mtu: None,
        }),
    ));
    let vm = ns.enter(|| Vm::start(&spec));
    // The VMM creates the tap in the namespace; give it the host address.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let up = std::process::Command::new("ip")
            .args(["-n", &ns.0, "link", "show", tap])
            .output()
            .is_ok_and(|o| o.status.success());
        if up {
            break;
        }
        if std::time::Instant::now() > deadline || vm.exited().is_some() {
            vm.fail(&format!("the VMM created no tap {tap} in netns {}", ns.0));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    host(
        "ip",
        &["-n", &ns.0, "addr", "add", "10.0.2.2/24", "dev", tap],
    );
    host("ip", &["-n", &ns.0, "link", "set", tap, "up"]);
    let r = wait_ready(&vm, g);
    let nets = r.all("net");
    check(
        &vm,
        nets.len() == 1 && nets[0].get("name") == "eth0" && nets[0].get("mac") == mac,
        &format!("guest interfaces {nets:?}, expected eth0 with {mac}"),
    );
    check(
        &vm,
        r.virtio("net")
            .is_some_and(|l| l.get("driver") == "virtio_net"),
        "virtio_net did not bind",
    );
    vm.wait_for("OXVIRT-CMD-RC=", EXIT);
    wait_poweroff(&vm);
    let r = Report::parse(&vm.console());
    check(
        &vm,
        r.cmd_rc == Some(0) && r.cmd_output.contains("bytes from 10.0.2.2"),
        &format!(
            "the guest got no ping replies from the tap: {:?}",
            r.cmd_output
        ),
    );
}

#[test]
fn linux_virtio_rng_console_balloon_bind() {
    let test = "linux_virtio_rng_console_balloon_bind";
    let Some(g) = guest(test) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let hvc_out = dir.path().join("hvc0.out");
    let mut spec = g.spec(
        1,
        128,
        "oxvirt_cmd=\"dd if=/dev/hwrng bs=32 count=1 2>/dev/null | od -An -tx1 && \
         echo OXVIRT-HVC-HELLO >/dev/hvc0\"",
    );
    spec.devices.push(pci_device(
        "rng0",
        6,
        DeviceKind::Rng(Rng {
            source: "/dev/urandom".into(),
        }),
    ));
    spec.devices.push(pci_device(
        "console1",
        7,
        DeviceKind::Console(Console {
            backend: CharBackend::File {
                path: hvc_out.clone(),
                append: false,
            },
            name: None,
        }),
    ));
    spec.devices.push(pci_device(
        "balloon0",
        8,
        DeviceKind::Balloon(Balloon {
            stats_period: 0,
            deflate_on_oom: false,
        }),
    ));
    let vm = Vm::start(&spec);
    let r = wait_ready(&vm, g);
    for (kind, driver) in [
        ("rng", "virtio_rng"),
        ("console", "virtio_console"),
        ("balloon", "virtio_balloon"),
    ] {
        check(
            &vm,
            r.virtio(kind).is_some_and(|l| l.get("driver") == driver),
            &format!("{driver} did not bind to the virtio {kind} device"),
        );
    }
    check(
        &vm,
        r.first("rng")
            .is_some_and(|l| l.get("current").starts_with("virtio_rng")),
        "hw_random does not use virtio_rng",
    );
    check(
        &vm,
        r.all("vport").len() == 1 && r.all("vport")[0].get("port").is_empty(),
        &format!(
            "guest virtio-console ports {:?}, expected one console port",
            r.all("vport")
        ),
    );
    vm.wait_for("OXVIRT-CMD-RC=", EXIT);
    wait_poweroff(&vm);
    let r = Report::parse(&vm.console());
    let hex: String = r.cmd_output.split_whitespace().take(32).collect();
    check(
        &vm,
        r.cmd_rc == Some(0) && hex.len() == 64 && hex.chars().any(|c| c != '0'),
        &format!("reading /dev/hwrng gave {:?}", r.cmd_output),
    );
    let out = std::fs::read_to_string(&hvc_out).unwrap_or_default();
    check(
        &vm,
        out.contains("OXVIRT-HVC-HELLO"),
        &format!("hvc0 output did not reach the host file: {out:?}"),
    );
}
