//! The Linux tests' bodies, one boot each, for either kernel: `linux_guest.rs` runs them
//! with the patched kernel (here, on the emulated KVM), `linux_full.rs` with Debian's
//! kernel (hardware KVM). The guest side is the same `/init` and `oxcheck` in both.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use machine_spec::{
    exit, Balloon, CacheMode, CharBackend, Console, DeviceKind, Disk, DiskFormat, LifecycleAction,
    Net, NetBackend, NetDriver, Rng, Vsock,
};
use oxvirt_tests::{skip, Vm};

use crate::support::{
    self, check, host, pattern, pci_device, sha256_hex, wait_ready, LinuxGuest, Qmp, Report, EXIT,
};

/// From the ready line to the host end of a guest's network or vsock exchange, or to
/// the end of a guest command: a few forks and a ping on an idle emulated-KVM machine
/// (seconds), four times slower on a loaded CI host. A VMM that exits ends the wait at
/// once; only a hung guest waits this long.
const EXCHANGE: Duration = Duration::from_secs(600);

/// RAM for a test that asks for `mib`: Debian's kernel and its 16 MB initramfs (udev)
/// want more than the patched guest.
fn mem(g: &LinuxGuest, mib: u64) -> u64 {
    if g.stock {
        mib.max(256)
    } else {
        mib
    }
}

/// Memory Linux reports for `mib` MiB of RAM: less than that (firmware areas, the kernel,
/// reserved pages), but not much less (Debian's kernel keeps more for itself).
fn check_memory(vm: &Vm, g: &LinuxGuest, r: &Report, mib: u64) {
    let kib: u64 = r
        .first("memory")
        .map(|l| l.get("total_kib"))
        .unwrap_or("")
        .parse()
        .unwrap_or(0);
    let slack = if g.stock { 48 + mib * 3 / 100 } else { 40 };
    check(
        vm,
        kib <= mib * 1024 && kib >= (mib - slack) * 1024,
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

/// The command's end, power-off, and the report including the command's output.
fn finish(vm: &Vm) -> Report {
    vm.wait_for("OXVIRT-CMD-RC=", EXCHANGE);
    wait_poweroff(vm);
    Report::parse(&vm.console())
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub fn boots_to_userspace_and_powers_off(g: &LinuxGuest) {
    let m = mem(g, 128);
    let vm = Vm::start(&g.spec(1, m, ""));
    let r = wait_ready(&vm, g);
    check_cpus(&vm, &r, 1);
    check_memory(&vm, g, &r, m);
    check(
        &vm,
        r.first("kernel")
            .is_some_and(|l| l.get("release").starts_with("6.")),
        "guest reports its kernel release",
    );
    vm.wait_for("OXVIRT-EXIT poweroff", EXIT);
    wait_poweroff(&vm);
}

pub fn sees_two_cpus_and_the_memory(g: &LinuxGuest) {
    let m = mem(g, 192);
    let vm = Vm::start(&g.spec(2, m, ""));
    let r = wait_ready(&vm, g);
    check_cpus(&vm, &r, 2);
    check_memory(&vm, g, &r, m);
    wait_poweroff(&vm);
}

pub fn acpi_power_button_powers_off(g: &LinuxGuest) {
    let dir = tempfile::tempdir().expect("tempdir");
    let qmp = dir.path().join("qmp.sock");
    let vm = Vm::start_with(
        &g.spec(1, mem(g, 128), "oxvirt_exit=wait"),
        &["--qmp", s(&qmp)],
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

pub fn reboot_restarts_the_guest(g: &LinuxGuest) {
    let mut spec = g.spec(1, mem(g, 128), "oxvirt_exit=reboot");
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
/// guest (`oxcheck disk`) hashes that region, copies it to 1 MiB and writes a marker at
/// sector 4000, with fsync; the host checks all three after power-off. A second, raw
/// disk with its own serial checks that each disk's serial reaches the guest (sysfs,
/// and /dev/disk/by-id where the guest runs udev).
const DISK_SIZE: usize = 4 << 20;
const REGION: usize = 256 << 10;
const COPY_AT: usize = 1 << 20;
const MARK_SECTOR: usize = 4000;
const MARK: &str = "OXVIRT-GUEST-WROTE-THIS";
const DISK_CMD: &str = "oxvirt_cmd=\"oxcheck disk /dev/vda && oxcheck ids\"";
const DATA_SERIAL: &str = "oxvirt-data-1";

fn disk(path: &Path, format: DiskFormat, target: &str, serial: &str) -> DeviceKind {
    DeviceKind::Disk(Disk {
        path: path.to_path_buf(),
        format,
        target: target.into(),
        readonly: false,
        shareable: false,
        serial: Some(serial.into()),
        cache: CacheMode::Default,
        discard: false,
        queues: None,
        io: Default::default(),
    })
}

pub fn virtio_blk_read_write(g: &LinuxGuest, format: DiskFormat) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw_path, region) = raw_image(dir.path());
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
    let data_path = dir.path().join("data.raw");
    std::fs::write(&data_path, vec![0u8; 1 << 20]).expect("writing the second disk");
    let serial = format!("oxvirt-{fmt}-0");
    // Two vCPUs: virtio-blk gets a queue per vCPU by default, and Linux uses both.
    let mut spec = g.spec(2, mem(g, 128), DISK_CMD);
    spec.devices.push(pci_device(
        "virtio-disk0",
        4,
        disk(&path, format, "vda", &serial),
    ));
    spec.devices.push(pci_device(
        "virtio-disk1",
        9,
        disk(&data_path, DiskFormat::Raw, "vdb", DATA_SERIAL),
    ));
    let vm = Vm::start(&spec);
    let r = wait_ready(&vm, g);
    let blk = r.all("block");
    let vda = blk.iter().find(|l| l.get("name") == "vda");
    check(
        &vm,
        blk.len() == 2
            && vda.is_some_and(|l| {
                l.get("serial") == serial
                    && l.get("sectors") == (DISK_SIZE / 512).to_string()
                    && l.get("ro") == "0"
                    && l.get("mq") == "2"
            }),
        &format!(
            "guest block devices {blk:?}, expected vda ({serial}, {} sectors, 2 queues) and vdb",
            DISK_SIZE / 512
        ),
    );
    check(
        &vm,
        r.virtio("block")
            .is_some_and(|l| l.get("driver") == "virtio_blk"),
        "virtio_blk did not bind",
    );
    let r = finish(&vm);
    check(
        &vm,
        r.cmd_rc == Some(0),
        &format!("oxcheck disk/ids failed in the guest: {:?}", r.cmd_output),
    );
    check_disk_read(&vm, &r, &region);
    check_ids(&vm, g, &r, &[("vda", &serial), ("vdb", DATA_SERIAL)]);
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
    check_guest_writes(&vm, &after, &region);
}

/// `oxcheck disk`'s read of the region matches what the host wrote.
fn check_disk_read(vm: &Vm, r: &Report, region: &[u8]) {
    check(
        vm,
        r.check_lines("disk-read")
            .first()
            .is_some_and(|l| l.get("sha256") == sha256_hex(region)),
        "the guest read different bytes than the host wrote (sha256 mismatch)",
    );
}

/// `oxcheck hwrng BYTES` read `/dev/hwrng` twice: both full and different.
fn check_hwrng_reads(vm: &Vm, r: &Report, bytes: usize) {
    let reads = r.check_lines("hwrng");
    check(
        vm,
        reads.len() == 2
            && reads.iter().all(|l| l.get("bytes") == bytes.to_string())
            && reads[0].get("sha256").len() == 64
            && reads[0].get("sha256") != reads[1].get("sha256"),
        &format!(
            "two reads of {bytes} bytes from /dev/hwrng gave {reads:?} (want both full \
             and different): {:?}",
            r.cmd_output
        ),
    );
}

/// A raw image of `DISK_SIZE` in `dir` that starts with a known region; returns its
/// path and the region (what `oxcheck disk` reads, copies and marks).
fn raw_image(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let region = pattern(REGION, 0x0516_7a11);
    let mut raw = region.clone();
    raw.resize(DISK_SIZE, 0);
    let path = dir.join("disk.raw");
    std::fs::write(&path, &raw).expect("writing the disk image");
    (path, region)
}

/// The image after `oxcheck disk`: the source region intact, its copy and the marker
/// on the host side.
fn check_guest_writes(vm: &Vm, after: &[u8], region: &[u8]) {
    check(vm, after.len() == DISK_SIZE, "image size changed");
    check(
        vm,
        after[..REGION] == region[..],
        "the guest's write changed the source region",
    );
    check(
        vm,
        after[COPY_AT..COPY_AT + REGION] == region[..],
        "the region the guest copied is not on the host image",
    );
    let mark = &after[MARK_SECTOR * 512..MARK_SECTOR * 512 + MARK.len() + 1];
    check(
        vm,
        mark == format!("{MARK}\n").as_bytes(),
        "the marker the guest wrote is not on the host image",
    );
}

/// Linux with `pci=nomsi` drives virtio-pci devices through INTA#: a disk at slot 4 and
/// an rng at slot 12 share GSI 20 (16 + slot % 8, the DSDT's `_PRT`), so the handler
/// must tell the two apart by each device's ISR. Data must move as with MSI-X.
pub fn virtio_on_intx_with_pci_nomsi(g: &LinuxGuest) {
    const RNG_BYTES: usize = 4096;
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw_path, region) = raw_image(dir.path());
    let mut spec = g.spec(
        1,
        mem(g, 128),
        &format!(
            "pci=nomsi oxvirt_cmd=\"oxcheck disk /dev/vda && oxcheck hwrng {RNG_BYTES} && \
             cat /proc/interrupts\""
        ),
    );
    spec.devices.push(pci_device(
        "virtio-disk0",
        4,
        disk(&raw_path, DiskFormat::Raw, "vda", "oxvirt-intx-0"),
    ));
    spec.devices.push(pci_device(
        "rng0",
        12,
        DeviceKind::Rng(Rng {
            source: "/dev/urandom".into(),
        }),
    ));
    let vm = Vm::start(&spec);
    wait_ready(&vm, g);
    let r = finish(&vm);
    check(
        &vm,
        r.cmd_rc == Some(0),
        &format!("oxcheck disk/hwrng failed in the guest: {:?}", r.cmd_output),
    );
    check_disk_read(&vm, &r, &region);
    check_hwrng_reads(&vm, &r, RNG_BYTES);
    // /proc/interrupts: one IO-APIC line 20 shared by both virtio devices, no MSI.
    let line20 = r
        .cmd_output
        .lines()
        .find(|l| l.trim_start().starts_with("20:"))
        .unwrap_or("");
    check(
        &vm,
        line20.contains("IO-APIC")
            && line20.matches("virtio").count() == 2
            && !r.cmd_output.contains("PCI-MSI"),
        &format!(
            "expected IO-APIC line 20 shared by two virtio devices and no MSI, got:\n{}",
            r.cmd_output
        ),
    );
    let after = std::fs::read(&raw_path).expect("reading the image");
    check_guest_writes(&vm, &after, &region);
}

/// Each disk's serial as the guest sees it: `/sys/block/<name>/serial` always, and the
/// `/dev/disk/by-id/virtio-<serial>` link udev makes where the guest runs udev (Debian's
/// kernel with its initramfs; the patched guest has no udev, and says so).
fn check_ids(vm: &Vm, g: &LinuxGuest, r: &Report, disks: &[(&str, &str)]) {
    let serials = r.check_lines("serial");
    for (name, serial) in disks {
        check(
            vm,
            serials
                .iter()
                .any(|l| l.get("name") == *name && l.get("serial") == *serial),
            &format!("guest sysfs serials {serials:?}, expected {name} = {serial}"),
        );
    }
    let udev = r
        .check_lines("udev")
        .first()
        .is_some_and(|l| l.get("present") == "1");
    check(
        vm,
        udev || !g.stock,
        "the stock guest's initramfs has no udev (build.sh --stock adds it)",
    );
    if !udev {
        eprintln!("note: /dev/disk/by-id not checked: the patched guest has no udev");
        return;
    }
    let links = r.check_lines("by-id");
    for (name, serial) in disks {
        let link = format!("virtio-{serial}");
        check(
            vm,
            links
                .iter()
                .any(|l| l.get("link") == link && l.get("target") == *name),
            &format!("guest /dev/disk/by-id {links:?}, expected {link} -> {name}"),
        );
    }
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

    /// Runs `f` (which spawns the VMM, or opens a socket) with this thread in the
    /// namespace: a child or socket made there stays there, the test thread goes back.
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

/// Bytes each side sends in a network or vsock exchange: the guest sends
/// `GUEST_BYTES` from its /dev/urandom, the host answers with a pattern of
/// `HOST_BYTES` (not a multiple of any buffer size) and closes.
const GUEST_BYTES: usize = 65536;
const HOST_BYTES: usize = 50_001;

/// Accepts one connection (`accept` on a non-blocking listener), within `EXCHANGE`.
fn accept_within<T>(vm: &Vm, what: &str, mut accept: impl FnMut() -> std::io::Result<T>) -> T {
    let deadline = Instant::now() + EXCHANGE;
    loop {
        match accept() {
            Ok(c) => return c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if vm.exited().is_some() || Instant::now() > deadline {
                    vm.fail(&format!("the guest never connected: {what}"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => vm.fail(&format!("{what}: accept: {e}")),
        }
    }
}

/// The host end of `oxcheck`'s exchange: reads the guest's `GUEST_BYTES`, answers with
/// `answer`, closes (that ends the guest's side). Returns what the guest sent.
fn exchange(vm: &Vm, what: &str, mut conn: impl Read + Write, answer: &[u8]) -> Vec<u8> {
    let mut got = vec![0u8; GUEST_BYTES];
    if let Err(e) = conn.read_exact(&mut got) {
        vm.fail(&format!(
            "{what}: reading the guest's {GUEST_BYTES} bytes: {e}"
        ));
    }
    if let Err(e) = conn.write_all(answer) {
        vm.fail(&format!(
            "{what}: sending {} bytes to the guest: {e}",
            answer.len()
        ));
    }
    got
}

/// The guest's `<what>-send` and `<what>-recv` lines match what the host got and sent.
fn check_exchange(vm: &Vm, r: &Report, what: &str, from_guest: &[u8], to_guest: &[u8]) {
    check_exchanges(vm, r, what, &[(from_guest.to_vec(), to_guest.to_vec())]);
}

/// [`check_exchange`] for exchanges made one after the other: the guest's lines, in
/// order, match what the host got and sent in each.
fn check_exchanges(vm: &Vm, r: &Report, what: &str, exchanges: &[(Vec<u8>, Vec<u8>)]) {
    for (dir, side) in [("send", 0), ("recv", 1)] {
        let key = format!("{what}-{dir}");
        let lines = r.check_lines(&key);
        let want: Vec<(usize, String)> = exchanges
            .iter()
            .map(|e| {
                let data = if side == 0 { &e.0 } else { &e.1 };
                (data.len(), sha256_hex(data))
            })
            .collect();
        let matches = lines.len() == want.len()
            && lines
                .iter()
                .zip(&want)
                .all(|(l, (n, sha))| l.get("bytes") == n.to_string() && l.get("sha256") == *sha);
        check(
            vm,
            matches,
            &format!("{key}: the guest reports {lines:?}, the host saw (bytes, sha256) {want:?}"),
        );
    }
}

/// virtio-net on a tap the VMM creates in a network namespace of the test (root): the
/// guest pings the host end, then sends bytes over TCP to a host listener in the
/// namespace and gets the host's answer (busybox nc), checked by sha256 on both sides.
/// `driver` is the NIC's data path: tier 3 leaves it to the host (these machines
/// have no vhost-net: the VMM's own), tier 4 asks for vhost-net (the nested tier's
/// kernel has it, and the test opens one instance per pair and hands it over as
/// oxvirtd does: `vhost_fds`) and the test checks the VMM took it. With `pairs` 2 the guest has
/// two vCPUs and the NIC two queue pairs on a multiqueue tap: the exchange runs once
/// from each vCPU (`taskset`), so each pair carries a flow both ways (the guest
/// transmits on its vCPU's queue, the tap steers the replies to the queue the flow
/// came from), and both receive queues' interrupt counts must move. Then the guest
/// unbinds and binds the driver (a device reset and a new activation) and pings again.
/// `intx`: the guest runs with `pci=nomsi` (INTA#: vhost-net's ring interrupts are
/// relayed by the VMM, there being no MSI-X vector to hand the kernel).
pub fn virtio_net_reaches_a_tap(
    test: &str,
    g: &LinuxGuest,
    driver: NetDriver,
    pairs: u16,
    intx: bool,
) {
    if !nix::unistd::geteuid().is_root() {
        skip(
            test,
            "needs root to create a network namespace and a tap device",
        );
        return;
    }
    let ns = NetNs::new("net");
    let mac = "52:54:00:0a:7e:01";
    let tap = "oxtap0";
    let port = 7001;
    let listener = ns
        .enter(|| TcpListener::bind(("0.0.0.0", port)))
        .expect("TCP listener in the test netns");
    listener.set_nonblocking(true).expect("non-blocking");
    // The guest's /init sets eth0's address; the guest pings the host end of the tap.
    let tcp = format!("oxcheck tcp 10.0.2.2 {port} {GUEST_BYTES}");
    let mut cmd = format!("(ping -c 3 -w 60 10.0.2.2 && {tcp}");
    for cpu in 1..pairs {
        cmd += &format!(" && taskset -c {cpu} {tcp}");
    }
    cmd += "); rc=$?; ";
    if pairs > 1 {
        cmd += "awk '/input\\.[0-9]/{s=0; for (i=2; i<NF-2; i++) s+=$i; print \"RXIRQ\", $NF, s}' \
                /proc/interrupts; ";
    }
    // A device reset and a fresh start: the driver unbound and bound again (with
    // vhost-net the kernel lets go of the old rings and takes the new ones).
    cmd += "p=$(basename $(readlink -f /sys/class/net/eth0/device/..)); \
            echo $p >/sys/bus/pci/drivers/virtio-pci/unbind; \
            echo $p >/sys/bus/pci/drivers/virtio-pci/bind; \
            for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/class/net/eth0 ] && break; sleep 1; done; \
            ip addr add 10.0.2.15/24 dev eth0; ip link set eth0 up; \
            ping -c 2 -w 30 10.0.2.2 >/dev/null && echo REBOUND-PING-OK; (exit $rc)";
    let mut spec = g.spec(
        u32::from(pairs),
        mem(g, 128),
        &format!(
            "{}oxvirt_ip=10.0.2.15/24 oxvirt_cmd64={}",
            if intx { "pci=nomsi " } else { "" },
            super::support::base64(cmd.as_bytes())
        ),
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
            model: Default::default(),
            queues: (pairs > 1).then_some(pairs),
            tap_fds: Vec::new(),
            vhost_fds: Vec::new(),
            driver,
        }),
    ));
    // With vhost-net required, the instances come open as oxvirtd hands them over
    // (`vhost_fds`, one per pair: a VMM without the right to open /dev/vhost-net).
    let handed: Vec<std::os::fd::OwnedFd> = match driver {
        NetDriver::Vhost => (0..pairs)
            .map(|_| {
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/vhost-net")
                    .map(std::os::fd::OwnedFd::from)
                    .expect("/dev/vhost-net")
            })
            .collect(),
        _ => Vec::new(),
    };
    if let Some(DeviceKind::Net(n)) = spec.devices.last_mut().map(|d| &mut d.kind) {
        n.vhost_fds = (3..).take(handed.len()).collect();
    }
    let vm = ns.enter(|| Vm::start_with_files(&spec, &[], handed));
    // The VMM creates the tap in the namespace; give it the host address.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = std::process::Command::new("ip")
            .args(["-n", &ns.0, "link", "show", tap])
            .output()
            .is_ok_and(|o| o.status.success());
        if up {
            break;
        }
        if Instant::now() > deadline || vm.exited().is_some() {
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
    let answer = pattern(HOST_BYTES, 0x7c9_0001);
    let mut exchanges = Vec::new();
    for cpu in 0..pairs {
        let what = format!("TCP from the guest's vCPU {cpu}");
        let (conn, peer) = accept_within(&vm, &what, || listener.accept());
        check(
            &vm,
            peer.ip().to_string() == "10.0.2.15",
            &format!("{what}: from {peer}, expected the guest's 10.0.2.15"),
        );
        conn.set_nonblocking(false).expect("blocking");
        conn.set_read_timeout(Some(EXCHANGE)).expect("timeout");
        exchanges.push((exchange(&vm, &what, &conn, &answer), answer.clone()));
    }
    let r = finish(&vm);
    check(
        &vm,
        r.cmd_output.contains("bytes from 10.0.2.2"),
        &format!(
            "the guest got no ping replies from the tap: {:?}",
            r.cmd_output
        ),
    );
    check(
        &vm,
        r.cmd_rc == Some(0),
        &format!("ping or oxcheck tcp failed: {:?}", r.cmd_output),
    );
    check_exchanges(&vm, &r, "tcp", &exchanges);
    check(
        &vm,
        r.cmd_output.contains("REBOUND-PING-OK"),
        &format!(
            "no ping replies after the driver was unbound and bound again (a device \
             reset and restart): {:?}",
            r.cmd_output
        ),
    );
    if pairs > 1 {
        // `RXIRQ virtio0-input.N COUNT`, one line per receive queue.
        let rx: Vec<(&str, u64)> = r
            .cmd_output
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace().skip_while(|w| *w != "RXIRQ").skip(1);
                Some((w.next()?, w.next()?.parse().ok()?))
            })
            .collect();
        check(
            &vm,
            rx.len() == usize::from(pairs) && rx.iter().all(|(_, n)| *n > 0),
            &format!(
                "receive queue interrupts {rx:?}: each of the {pairs} pairs should have had some"
            ),
        );
    }
    let log = vm.log();
    let vhost = driver == NetDriver::Vhost
        || (driver == NetDriver::Default && std::fs::File::open("/dev/vhost-net").is_ok());
    let want = match vhost {
        true => "virtio-net data path: vhost-net",
        false => "virtio-net data path: the VMM's own",
    };
    check(
        &vm,
        log.contains(want),
        &format!("the VMM log does not say {want:?} ({driver:?})"),
    );
    if vhost {
        // With MSI-X Linux gives each queue a vector: the kernel signals KVM directly.
        // On INTA# the VMM relays every ring's interrupt.
        let want = match intx {
            false => "relayed=0".to_string(),
            true => format!("relayed={}", 2 * pairs),
        };
        check(
            &vm,
            log.contains("vhost-net started") && log.contains(&want),
            &format!("vhost-net's ring interrupts: the VMM log does not say {want}"),
        );
    }
}

/// virtio-rng (two reads of /dev/hwrng: full length, different bytes), virtio-console
/// (hvc0 output reaches the host file), virtio-balloon: Linux's drivers bind.
pub fn virtio_rng_console_balloon(g: &LinuxGuest) {
    const RNG_BYTES: usize = 4096;
    let dir = tempfile::tempdir().expect("tempdir");
    let hvc_out = dir.path().join("hvc0.out");
    let mut spec = g.spec(
        1,
        mem(g, 128),
        &format!("oxvirt_cmd=\"oxcheck hwrng {RNG_BYTES} && echo OXVIRT-HVC-HELLO >/dev/hvc0\""),
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
    let r = finish(&vm);
    check(
        &vm,
        r.cmd_rc == Some(0),
        &format!("oxcheck hwrng failed in the guest: {:?}", r.cmd_output),
    );
    check_hwrng_reads(&vm, &r, RNG_BYTES);
    let out = std::fs::read_to_string(&hvc_out).unwrap_or_default();
    check(
        &vm,
        out.contains("OXVIRT-HVC-HELLO"),
        &format!("hvc0 output did not reach the host file: {out:?}"),
    );
}

/// virtio-vsock with the VMM's unix-socket host side (Firecracker style): the guest
/// connects to the host (CID 2) port 1234, which reaches `<uds>_1234`; then the host
/// connects to the guest's port 5000 through `<uds>` (`CONNECT 5000` / `OK <port>`).
/// Bytes go both ways on both streams, checked by sha256 on both sides.
pub fn virtio_vsock_both_ways(g: &LinuxGuest) {
    const CID: u32 = 42;
    const HOST_PORT: u32 = 1234;
    const GUEST_PORT: u32 = 5000;
    let dir = tempfile::tempdir().expect("tempdir");
    let uds = dir.path().join("vsock.sock");
    let listener = UnixListener::bind(format!("{}_{HOST_PORT}", uds.display()))
        .expect("host vsock port listener");
    listener.set_nonblocking(true).expect("non-blocking");
    let mut spec = g.spec(
        1,
        mem(g, 128),
        &format!(
            "oxvirt_cmd=\"oxcheck vsock-connect 2 {HOST_PORT} {GUEST_BYTES} && \
             oxcheck vsock-listen {GUEST_PORT} {GUEST_BYTES}\""
        ),
    );
    spec.devices.push(pci_device(
        "vsock0",
        10,
        DeviceKind::Vsock(Vsock {
            guest_cid: CID,
            uds_path: uds.clone(),
        }),
    ));
    let vm = Vm::start(&spec);
    let r = wait_ready(&vm, g);
    check(
        &vm,
        r.virtio("vsock")
            .is_some_and(|l| l.get("driver") == "vmw_vsock_virtio_transport"),
        "vmw_vsock_virtio_transport did not bind to the virtio vsock device",
    );

    // Guest to host.
    let (conn, _) = accept_within(&vm, "vsock to host port 1234", || listener.accept());
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(EXCHANGE)).expect("timeout");
    let answer1 = pattern(HOST_BYTES, 0x750c_0001);
    let got1 = exchange(&vm, "vsock to the host", &conn, &answer1);
    drop(conn);

    // Host to guest.
    vm.wait_for(&format!("OXCHECK vsock-listen port={GUEST_PORT}"), EXCHANGE);
    let mut conn = UnixStream::connect(&uds)
        .unwrap_or_else(|e| vm.fail(&format!("connecting to {}: {e}", uds.display())));
    conn.set_read_timeout(Some(EXCHANGE)).expect("timeout");
    conn.write_all(format!("CONNECT {GUEST_PORT}\n").as_bytes())
        .unwrap_or_else(|e| vm.fail(&format!("writing CONNECT: {e}")));
    // The answer line, byte by byte: the stream's data follows it.
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.last() != Some(&b'\n') && line.len() < 64 {
        match conn.read(&mut b) {
            Ok(1) => line.push(b[0]),
            Ok(_) => break,
            Err(e) => vm.fail(&format!("reading the answer to CONNECT {GUEST_PORT}: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&line).into_owned();
    check(
        &vm,
        line.starts_with("OK ") && line.ends_with('\n'),
        &format!("CONNECT {GUEST_PORT} answered {line:?}, expected \"OK <port>\""),
    );
    let answer2 = pattern(HOST_BYTES, 0x750c_0002);
    let got2 = exchange(&vm, "vsock to the guest", &conn, &answer2);
    drop(conn);

    let r = finish(&vm);
    check(
        &vm,
        r.cmd_rc == Some(0),
        &format!("oxcheck vsock failed in the guest: {:?}", r.cmd_output),
    );
    check_exchange(&vm, &r, "vsock-connect", &got1, &answer1);
    check_exchange(&vm, &r, "vsock-listen", &got2, &answer2);
}

/// SeaBIOS on Q35 boots the guest from a disk through a bootloader (GRUB from Debian's
/// packages, on a `grub-mkrescue` image: a hybrid ISO whose MBR boots from a hard
/// disk), every device behind a PCIe root port as libvirt lays out a Q35 domain: the
/// guest's ACPI and PCI probing see the firmware-assigned BARs and bridges, and its
/// virtio-blk driver reads and writes a disk behind a root port (the disk checks of
/// `virtio_blk_read_write`). (SYSLINUX 6.04 cannot run on the emulated KVM: it stops at
/// an `iret` the instruction emulator refuses.)
/// (`linux_full.rs` does not run it yet: the image tools are not in the nested-SVM guest.)
#[allow(dead_code)]
pub fn firmware_boot_through_a_bootloader_behind_root_ports(test: &str, g: &LinuxGuest) {
    use oxvirt_tests::host::SEABIOS;
    let tools = [
        "/usr/bin/grub-mkrescue",
        "/usr/lib/grub/i386-pc",
        "/usr/bin/xorriso",
    ];
    if !Path::new(SEABIOS).exists() || tools.iter().any(|t| !Path::new(t).exists()) {
        skip(
            test,
            "needs seabios, grub-pc-bin, grub-common, xorriso and mtools (apt-get install them)",
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (data_path, region) = raw_image(dir.path());
    // The boot disk: GRUB with the kernel (a bzImage: a bootloader cannot load the PVH
    // ELF), the initramfs and the command line the direct-boot tests use.
    let tree = dir.path().join("iso");
    std::fs::create_dir_all(tree.join("boot/grub")).expect("mkdir");
    std::fs::copy(g.dir.join("bzImage"), tree.join("boot/bzImage")).expect("copying bzImage");
    std::fs::copy(&g.initrd, tree.join("boot/initrd")).expect("copying the initramfs");
    let cmdline = format!("{} {DISK_CMD}", g.cmdline);
    std::fs::write(
        tree.join("boot/grub/grub.cfg"),
        format!(
            "set timeout=0\nserial --unit=0 --speed=115200\nterminal_output serial\n\
             menuentry linux {{\n  linux /boot/bzImage {cmdline}\n  initrd /boot/initrd\n}}\n"
        ),
    )
    .expect("writing grub.cfg");
    let boot = dir.path().join("boot.img");
    host("grub-mkrescue", &["-o", s(&boot), s(&tree)]);

    let mut spec = g.spec(1, mem(g, 128), "");
    spec.boot = machine_spec::Boot {
        kernel: None,
        initrd: None,
        cmdline: String::new(),
        firmware: Some(machine_spec::Firmware {
            kind: machine_spec::FirmwareKind::Bios,
            code: SEABIOS.into(),
            vars: None,
            vars_template: None,
            boot_menu_timeout_ms: None,
            reboot_timeout_ms: None,
            serial_console: true,
            smbios: None,
        }),
    };
    spec.platform.chipset = machine_spec::Chipset::Q35;
    for (i, function) in [(1u8, 0u8), (2, 1)] {
        let mut port = pci_device(
            &format!("pci.{i}"),
            2,
            DeviceKind::PciController(machine_spec::PciController {
                model: machine_spec::PciControllerModel::PcieRootPort,
                index: i,
                chassis: i,
                port: 0x10 + i,
            }),
        );
        port.pci = port.pci.map(|a| machine_spec::PciAddress { function, ..a });
        spec.devices.push(port);
    }
    let behind = |bus: u8| {
        Some(machine_spec::PciAddress {
            domain: 0,
            bus,
            slot: 0,
            function: 0,
        })
    };
    // vda (bus 1, probed first): the data disk; vdb (bus 2): the boot disk.
    let mut vda = pci_device(
        "virtio-disk0",
        0,
        disk(&data_path, DiskFormat::Raw, "vda", "oxvirt-raw-0"),
    );
    vda.pci = behind(1);
    let mut vdb = pci_device(
        "virtio-disk1",
        0,
        disk(&boot, DiskFormat::Raw, "vdb", DATA_SERIAL),
    );
    vdb.pci = behind(2);
    vdb.boot_index = Some(1);
    spec.devices.extend([vda, vdb]);

    let vm = Vm::start(&spec);
    vm.wait_for("SeaBIOS (version", Duration::from_secs(120));
    vm.wait_for("GRUB", Duration::from_secs(300));
    let r = wait_ready(&vm, g);
    // Linux found both disks behind the root ports and bound virtio_blk.
    let blk = r.all("block");
    check(
        &vm,
        blk.len() == 2
            && r.virtio("block")
                .is_some_and(|l| l.get("driver") == "virtio_blk"),
        &format!("guest block devices {blk:?}, expected vda and vdb on virtio_blk"),
    );
    let r = finish(&vm);
    check(
        &vm,
        r.cmd_rc == Some(0),
        &format!("oxcheck disk/ids failed in the guest: {:?}", r.cmd_output),
    );
    check_disk_read(&vm, &r, &region);
    check_ids(&vm, g, &r, &[("vda", "oxvirt-raw-0"), ("vdb", DATA_SERIAL)]);
    let after = std::fs::read(&data_path).expect("reading the image");
    check_guest_writes(&vm, &after, &region);
    // The firmware's PCI bus numbering reached Linux: devices on buses 1 and 2.
    let console = vm.console_lines();
    check(
        &vm,
        console.contains("0000:01:00.0") && console.contains("0000:02:00.0"),
        "Linux did not report devices at 0000:01:00.0 and 0000:02:00.0 (behind the root ports)",
    );
}
