//! The seeded guest-side device fuzzer (issue #20; tier 2): the oxtest guest's `fuzz`
//! mode (`tests/guests/oxtest/fuzz.c`) on machines with many devices — q35 with virtio
//! blk/net/rng/console/balloon/scsi, AHCI with a disk and a CD, VGA and an e1000; pc
//! with the PIIX IDE CD, bochs-display and the same virtio set — writes random values
//! of random widths to every PCI function's config space and BARs and to the platform's
//! legacy ports, then posts malformed virtqueues to every virtio device.
//!
//! For each seed: the guest reaches `OXTEST FUZZ DONE` (a guest that ended itself is
//! accepted only with a clean exit status, never a signal); the VMM did not panic
//! (no "panicked" in its log), its log did not run away (a device spinning on a bad
//! ring logs without end), and its resident memory stayed within guest RAM + 512 MiB.
//!
//! Seeds: 1, 5, 27 on q35 and 4 on pc (3000 register operations, 16 malformed requests per
//! virtio device, 60 for seed 27), plus one random seed on q35 (printed).
//! By hand: `OXVIRT_FUZZ_SEEDS=7,8,9 OXVIRT_FUZZ_OPS=20000 OXVIRT_FUZZ_VQ=200 cargo test
//! -p oxvirt-tests --test vmm_guest_fuzz -- --nocapture` (or `scripts/guest-fuzz.sh`);
//! `OXVIRT_FUZZ_MACHINE=pc` picks the machine for the seeds given by hand.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use oxvirt_tests::host::require_kvm;
use oxvirt_tests::{test_guests, Vm};

const MEM_MIB: u64 = 128;

fn env_num(key: &str, dflt: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(dflt)
}

fn have_passt() -> bool {
    std::process::Command::new("passt")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn disk(path: &Path, dev: &str, bus: &str, cdrom: bool) -> String {
    format!(
        "<disk type='file' device='{}'><driver name='qemu' type='raw'/><source file='{}'/><target dev='{dev}' bus='{bus}'/>{}</disk>",
        if cdrom { "cdrom" } else { "disk" },
        path.display(),
        if cdrom { "<readonly/>" } else { "" }
    )
}

/// The domain XML of a machine with every device model the fuzzer should reach.
fn machine_xml(dir: &Path, machine: &str, cmdline: &str) -> String {
    for (name, len) in [
        ("vda.img", 8 << 20),
        ("sata.img", 8 << 20),
        ("scsi.img", 8 << 20),
    ] {
        std::fs::write(dir.join(name), vec![0u8; len]).unwrap();
    }
    let cd: Vec<u8> = (0..(2u32 << 20)).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(dir.join("cd.iso"), cd).unwrap();
    let mut devs = vec![
        disk(&dir.join("vda.img"), "vda", "virtio", false),
        "<controller type='scsi' index='0' model='virtio-scsi'/>".to_string(),
        disk(&dir.join("scsi.img"), "sdc", "scsi", false),
        "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>".into(),
        "<memballoon model='virtio'/>".into(),
        // A socket, not a pty: Vm::start_xml reads the console from a pty when the XML
        // has one.
        format!(
            "<channel type='unix'><source mode='bind' path='{}'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>",
            dir.join("agent.sock").display()
        ),
    ];
    if machine == "q35" {
        devs.push("<controller type='sata' index='0'/>".into());
        devs.push(disk(&dir.join("sata.img"), "sda", "sata", false));
        devs.push(disk(&dir.join("cd.iso"), "sdb", "sata", true));
        devs.push("<video><model type='vga'/></video>".into());
    } else {
        devs.push(disk(&dir.join("sata.img"), "hda", "ide", false));
        devs.push(disk(&dir.join("cd.iso"), "hdc", "ide", true));
        devs.push("<video><model type='bochs'/></video>".into());
    }
    if have_passt() {
        devs.push("<interface type='user'><model type='virtio'/></interface>".into());
        devs.push("<interface type='user'><model type='e1000'/></interface>".into());
    } else {
        eprintln!(
            "passt is not installed: the machines have no NICs (virtio-net, e1000 not fuzzed)"
        );
    }
    format!(
        "<domain type='kvm'>
  <name>fuzz</name>
  <memory unit='MiB'>{MEM_MIB}</memory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='{machine}'>hvm</type>
    <kernel>{kernel}</kernel>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <cpu mode='host-passthrough'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='stdio'><target port='0'/></serial>
    <console type='stdio'><target type='serial' port='0'/></console>
    {devs}
  </devices>
</domain>
",
        kernel = test_guests().elf.display(),
        devs = devs.join("\n    ")
    )
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Boots `machine` with `seed` and checks the VMM came through it.
fn fuzz_one(machine: &str, seed: u64, ops: u64, vq: u64, within: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let cmdline = format!("console=ttyS0 oxtest=fuzz fuzzseed={seed} fuzzops={ops} fuzzvq={vq}");
    let xml = machine_xml(dir.path(), machine, &cmdline);
    eprintln!("guest fuzz: machine={machine} seed={seed} ops={ops} vq_rounds={vq}");
    let t0 = Instant::now();
    let vm = Vm::start_xml(&xml, &[]);
    let deadline = Instant::now() + within;
    let limit_kib = (MEM_MIB + 512) << 10;
    let mut peak = 0;
    let what = format!("machine={machine} seed={seed} ops={ops}");
    loop {
        if let Some(kib) = rss_kib(vm.pid()) {
            peak = peak.max(kib);
            if kib > limit_kib {
                vm.kill();
                vm.fail(&format!(
                    "{what}: VMM resident memory {kib} KiB, over {limit_kib} KiB"
                ));
            }
        }
        let log_len = vm.log().len();
        if log_len > 8 << 20 {
            vm.kill();
            let log = vm.log();
            let tail = &log[log.len() - 4000..];
            panic!(
                "{what}: the VMM's log ran away ({log_len} bytes); its end:\n{tail}\n--- console\n{}",
                vm.console()
            );
        }
        if vm.console().contains("OXTEST FUZZ DONE") {
            break;
        }
        if let Some(st) = vm.exited() {
            std::thread::sleep(Duration::from_millis(200));
            if vm.log().contains("panicked") || st.code().is_none() {
                vm.fail(&format!("{what}: the VMM died: {st}"));
            }
            // The guest ended itself (a reset or power-off its own writes caused, or a
            // crash the VMM reported): acceptable when the VMM exited cleanly.
            eprintln!(
                "guest fuzz: {what}: the guest ended before FUZZ DONE, VMM exit {st}; console tail:\n{}",
                tail_lines(&vm.console(), 15)
            );
            return;
        }
        if Instant::now() > deadline {
            vm.kill();
            vm.fail(&format!(
                "{what}: no OXTEST FUZZ DONE within {within:?} (guest or VMM hung)"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Still answering after the run: the guest's last line came, the VMM is alive.
    std::thread::sleep(Duration::from_millis(200));
    if let Some(st) = vm.exited() {
        vm.fail(&format!("{what}: the VMM exited after FUZZ DONE: {st}"));
    }
    if vm.log().contains("panicked") {
        vm.fail(&format!("{what}: a VMM thread panicked"));
    }
    let checks = vm.checks();
    let regs = checks.iter().find(|c| c.name == "fuzz-regs");
    let vqs = checks.iter().rfind(|c| c.name == "fuzz-vq");
    if regs.is_none() || vqs.is_none() {
        vm.fail(&format!("{what}: no fuzz-regs/fuzz-vq summary lines"));
    }
    eprintln!(
        "guest fuzz: {what}: done in {:.1} s, peak VMM RSS {} MiB; regs: {}; vq: {}",
        t0.elapsed().as_secs_f64(),
        peak >> 10,
        regs.unwrap().details,
        vqs.unwrap().details
    );
    vm.kill();
}

fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn guest_fuzzer_does_not_break_the_vmm() {
    if !require_kvm("guest_fuzzer_does_not_break_the_vmm") {
        return;
    }
    let ops = env_num("OXVIRT_FUZZ_OPS", 3000);
    let vq = env_num("OXVIRT_FUZZ_VQ", 16);
    let within = Duration::from_secs(env_num("OXVIRT_FUZZ_TIMEOUT", 60));
    if let Ok(seeds) = std::env::var("OXVIRT_FUZZ_SEEDS") {
        let machine = std::env::var("OXVIRT_FUZZ_MACHINE").unwrap_or_else(|_| "q35".into());
        for s in seeds.split(',').filter(|s| !s.is_empty()) {
            fuzz_one(
                &machine,
                s.trim().parse().expect("OXVIRT_FUZZ_SEEDS: numbers"),
                ops,
                vq,
                within,
            );
        }
        return;
    }
    // Seeds 1, 5 and 27 found the bugs fixed in 6ca6847, 129e0e6 and 4e0cda6 (27 with
    // 60 virtqueue rounds).
    for (machine, seed, rounds) in [
        ("q35", 1, vq),
        ("q35", 5, vq),
        ("q35", 27, 60),
        ("pc", 4, vq),
    ] {
        fuzz_one(machine, seed, ops, rounds, within);
    }
    let random = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_007;
    eprintln!("guest fuzz: random seed {random} (rerun: OXVIRT_FUZZ_SEEDS={random})");
    fuzz_one("q35", random, ops, vq, within);
}
