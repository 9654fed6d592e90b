//! More of the interface with real clients: transient domains (`DomainCreateXML`)
//! vanish when they stop, autostart at daemon start, reboot through the guest
//! (`Reboot` signal), metadata, memory, host figures and stats.

mod daemon_common;

use std::path::Path;
use std::process::Command;

use daemon_common::{guest_xml, object_path, set_autostart_args, BusKind, Daemon, CONNECT, STEP};
use oxvirt_tests::host::require_kvm;

#[test]
fn transient_domain_vanishes_when_it_stops() {
    if !require_kvm("transient_domain_vanishes_when_it_stops") {
        return;
    }
    let d = Daemon::start(BusKind::Session);
    let xml = guest_xml("fleeting", &d.console("fleeting"));
    let out = d.call(
        CONNECT,
        "org.libvirt.Connect",
        "DomainCreateXML",
        &["su", &xml, "0"],
    );
    let path = object_path(&out);
    assert_eq!(d.state(&path), (1, 1));
    let p = d.property(&path, "org.libvirt.Domain", "Persistent");
    assert_eq!(p, "b false");
    assert!(!d.dir.path().join("domains/fleeting.xml").exists());
    d.wait_console("fleeting", "OXTEST acpibutton armed", STEP);
    // The guest powers off on the button: the domain is gone.
    d.domain(&path, "Shutdown", &["u", "0"]);
    d.wait_undefined("fleeting");
    let list = d.call(CONNECT, "org.libvirt.Connect", "ListDomains", &["u", "0"]);
    assert_eq!(list.trim(), "ao 0");
    assert!(!d.runtime("fleeting").exists(), "runtime dir left behind");
}

#[test]
fn autostart_domains_start_with_the_daemon() {
    if !require_kvm("autostart_domains_start_with_the_daemon") {
        return;
    }
    let mut d = Daemon::start(BusKind::Session);
    let path = d.define_guest("auto");
    let r = d.busctl(&set_autostart_args(&path));
    assert!(r.ok, "{}", r.stderr);
    assert!(d.dir.path().join("domains/autostart/auto.xml").exists());
    let p = d.property(&path, "org.libvirt.Domain", "Autostart");
    assert_eq!(p, "b true");
    let listed = d.call(
        CONNECT,
        "org.libvirt.Connect",
        "ListDomains",
        &["u", "1024"],
    );
    assert!(listed.contains(&path), "ListDomains(AUTOSTART): {listed}");
    d.kill9();
    d.start_daemon();
    assert_eq!(d.state(&path), (1, 1));
    d.wait_console("auto", "OXTEST READY", STEP);
}

#[test]
fn reboot_goes_through_the_guest_and_signals_reboot() {
    if !require_kvm("reboot_goes_through_the_guest_and_signals_reboot") {
        return;
    }
    let d = Daemon::start(BusKind::Session);
    let path = d.start_guest("rebooter", "OXTEST acpibutton armed");
    let monitor = d.monitor("monitor.log");
    std::fs::remove_file(d.console("rebooter")).unwrap();
    d.domain(&path, "Reboot", &["u", "0"]);
    d.wait_console("rebooter", "OXTEST acpibutton armed", STEP);
    monitor.wait_for(&d, "org.libvirt.Domain.Reboot");
    let seen = monitor.stop();
    assert!(
        !seen.contains("DomainEvent"),
        "a reboot is not a stop/start: {seen}"
    );
    assert_eq!(d.state(&path), (1, 1));
}

#[test]
fn metadata_memory_stats_and_host_calls() {
    let d = Daemon::start(BusKind::Session);
    let xml = "<domain type='kvm'><name>meta</name><memory unit='MiB'>64</memory>\
               <os><type>hvm</type><kernel>/k</kernel></os></domain>";
    let path = d.define(xml);
    d.domain(
        &path,
        "SetMetadata",
        &["isssu", "1", "My title", "", "", "0"],
    );
    let t = d.domain(&path, "GetMetadata", &["isu", "1", "", "0"]);
    assert_eq!(t.trim(), "s \"My title\"");
    d.domain(
        &path,
        "SetMetadata",
        &[
            "isssu",
            "2",
            "<app><v>7</v></app>",
            "ex",
            "http://example.org/app",
            "0",
        ],
    );
    let m = d.domain(
        &path,
        "GetMetadata",
        &["isu", "2", "http://example.org/app", "0"],
    );
    assert!(m.contains("ex:app") && m.contains("<v>7</v>"), "{m}");
    let x = d.domain(&path, "GetXMLDesc", &["u", "0"]);
    assert!(x.contains("<title>My title</title>"), "{x}");
    // Memory of an inactive domain changes its definition.
    d.domain(&path, "SetMemory", &["tu", "32768", "0"]);
    let x = d
        .domain(&path, "GetXMLDesc", &["u", "0"])
        .replace("\\'", "'");
    assert!(
        x.contains("<currentMemory unit='KiB'>32768</currentMemory>"),
        "{x}"
    );
    let stored = std::fs::read_to_string(d.dir.path().join("domains/meta.xml")).unwrap();
    assert!(stored.contains("32768") && stored.contains("My title"));
    // Rename an inactive domain.
    d.domain(&path, "Rename", &["su", "meta2", "0"]);
    let n = d.property(&path, "org.libvirt.Domain", "Name");
    assert_eq!(n, "s \"meta2\"");

    let stats = d.call(
        CONNECT,
        "org.libvirt.Connect",
        "GetAllDomainStats",
        &["uu", "0", "0"],
    );
    assert!(
        stats.contains("meta2") && stats.contains("state.state"),
        "{stats}"
    );
    let s = d.domain(&path, "GetStats", &["uu", "0", "0"]);
    assert!(
        s.contains("balloon.maximum") && s.contains("state.reason"),
        "{s}"
    );
    let free = d.call(CONNECT, "org.libvirt.Connect", "NodeGetFreeMemory", &[]);
    let free: u64 = free.trim().trim_start_matches("t ").parse().unwrap();
    assert!(free > 0);
    let mem = d.call(
        CONNECT,
        "org.libvirt.Connect",
        "NodeGetMemoryStats",
        &["iu", "-1", "0"],
    );
    assert!(mem.contains("\"total\""), "{mem}");
    let cpu = d.call(
        CONNECT,
        "org.libvirt.Connect",
        "NodeGetCPUStats",
        &["iu", "-1", "0"],
    );
    assert!(cpu.contains("\"idle\""), "{cpu}");
    let map = d.call(CONNECT, "org.libvirt.Connect", "NodeGetCPUMap", &["u", "0"]);
    assert!(map.starts_with("ab ") && map.contains("true"), "{map}");
    let caps = d.call(CONNECT, "org.libvirt.Connect", "GetCapabilities", &[]);
    assert!(
        caps.contains("<os_type>hvm</os_type>") && caps.contains("oxvirt-vmm"),
        "{caps}"
    );
    let dc = d.call(
        CONNECT,
        "org.libvirt.Connect",
        "GetDomainCapabilities",
        &["ssssu", "", "", "", "", "0"],
    );
    assert!(dc.contains("<domain>kvm</domain>"), "{dc}");
    assert!(dc.contains("<machine>pc-i440fx-7.2</machine>"), "{dc}");
    // The firmware of a Q35 domain: SeaBIOS, and OVMF where Debian's non-SMM build
    // is installed (the same one `<os firmware='efi'>` picks).
    let dc = d
        .call(
            CONNECT,
            "org.libvirt.Connect",
            "GetDomainCapabilities",
            &["ssssu", "", "x86_64", "q35", "kvm", "0"],
        )
        .replace("\\n", "\n")
        .replace("\\'", "'");
    assert!(dc.contains("<machine>pc-q35-7.2</machine>"), "{dc}");
    assert!(dc.contains("<enum name='firmware'>"), "{dc}");
    assert!(dc.contains("<value>bios</value>"), "{dc}");
    if Path::new("/usr/share/qemu/firmware/60-edk2-x86_64.json").exists() {
        assert!(dc.contains("<value>efi</value>"), "{dc}");
        assert!(
            dc.contains("<value>/usr/share/OVMF/OVMF_CODE_4M.fd</value>"),
            "{dc}"
        );
        assert!(dc.contains("<value>pflash</value>"), "{dc}");
    }
    // Secure-boot builds need SMM, which oxvirt lacks.
    assert!(!dc.contains("secboot") && !dc.contains(".ms.fd"), "{dc}");
    let bad = d.try_call(
        CONNECT,
        "org.libvirt.Connect",
        "GetDomainCapabilities",
        &["ssssu", "", "", "microvm", "", "0"],
    );
    assert!(!bad.ok);
    assert!(
        bad.stderr
            .contains("the machine 'microvm' is not supported by emulator"),
        "{}",
        bad.stderr
    );
    let nets = d.call(CONNECT, "org.libvirt.Connect", "ListNetworks", &["u", "0"]);
    assert_eq!(nets.trim(), "ao 0");
    let v = d.property(CONNECT, "org.libvirt.Connect", "LibVersion");
    assert_eq!(v, "t 9000000");
}

#[test]
fn help_and_version() {
    let bin = oxvirt_tests::bin_path("oxvirtd");
    let h = Command::new(&bin).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&h.stdout);
    assert!(
        h.status.success()
            && text.contains("--system")
            && text.contains("--session")
            && text.contains("--config")
    );
    let v = Command::new(&bin).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("oxvirtd "));
}

fn reset_guest_xml(d: &Daemon, name: &str, on_reboot: &str) -> String {
    oxvirt_tests::domain_xml(
        name,
        &oxvirt_tests::test_guests().elf,
        "console=ttyS0 oxtest=reset",
        64,
        1,
        on_reboot,
        &oxvirt_tests::spec::serial_xml(&format!("file:{}", d.console(name).display())),
    )
}

#[test]
fn on_reboot_actions_are_honoured() {
    if !require_kvm("on_reboot_actions_are_honoured") {
        return;
    }
    let d = Daemon::start(BusKind::Session);
    // destroy: the guest's reset ends the domain, shut off (shutdown).
    let gone = d.define(&reset_guest_xml(&d, "resets-destroy", "destroy"));
    d.domain(&gone, "Create", &["u", "0"]);
    assert_eq!(d.wait_state(&gone, 5, STEP), (5, 1));

    // restart: the guest runs again in the same VMM; clients see Reboot signals.
    let path = d.define(&reset_guest_xml(&d, "resets-restart", "restart"));
    let monitor = d.monitor("monitor-restart.log");
    d.domain(&path, "Create", &["u", "0"]);
    let pid = d.vmm_pid("resets-restart");
    // Reboot signals for a guest reset with on_reboot=restart.
    monitor.wait_for(&d, "org.libvirt.Domain.Reboot");
    monitor.stop();
    assert_eq!(d.state(&path), (1, 1));
    assert_eq!(
        d.vmm_pid("resets-restart"),
        pid,
        "restarted in the same VMM"
    );
    d.domain(&path, "Destroy", &["u", "0"]);
}

#[test]
fn jobs_on_one_domain_are_serialised_and_domains_run_in_parallel() {
    if !require_kvm("jobs_on_one_domain_are_serialised_and_domains_run_in_parallel") {
        return;
    }
    let d = Daemon::start(BusKind::Session);
    let a = d.define_guest("para-a");
    let b = d.define_guest("para-b");
    // Two clients start the same domain at once: one wins, the other is told it runs.
    let results: Vec<_> = std::thread::scope(|s| {
        let h: Vec<_> = (0..2)
            .map(|_| s.spawn(|| d.try_call(&a, "org.libvirt.Domain", "Create", &["u", "0"])))
            .collect();
        h.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.ok).count(),
        1,
        "exactly one start"
    );
    let loser = results.iter().find(|r| !r.ok).unwrap();
    assert!(
        loser.stderr.contains("domain is already running"),
        "{}",
        loser.stderr
    );
    assert_eq!(
        std::fs::read_dir(d.dir.path().join("run/domains"))
            .unwrap()
            .count(),
        1,
        "one VMM"
    );
    // Different domains: started and cycled concurrently, all calls succeed.
    d.domain(&b, "Create", &["u", "0"]);
    let dref = &d;
    std::thread::scope(|s| {
        for path in [&a, &b] {
            s.spawn(move || {
                for _ in 0..5 {
                    dref.domain(path, "Suspend", &[]);
                    dref.domain(path, "Resume", &[]);
                }
            });
        }
    });
    assert_eq!(d.state(&a), (1, 5));
    assert_eq!(d.state(&b), (1, 5));
}

#[test]
fn live_memory_goes_through_the_balloon() {
    if !require_kvm("live_memory_goes_through_the_balloon") {
        return;
    }
    let d = Daemon::start(BusKind::Session);
    let xml = guest_xml("balloon", &d.console("balloon")).replace(
        "  </devices>",
        "    <memballoon model='virtio'/>\n  </devices>",
    );
    let path = d.define(&xml);
    d.domain(&path, "Create", &["u", "0"]);
    d.wait_console("balloon", "OXTEST READY", STEP);
    // VIR_DOMAIN_AFFECT_LIVE: the balloon target changes, the definition does not.
    d.domain(&path, "SetMemory", &["tu", "32768", "1"]);
    let live = d
        .domain(&path, "GetXMLDesc", &["u", "0"])
        .replace("\\'", "'");
    assert!(
        live.contains("<currentMemory unit='KiB'>32768</currentMemory>"),
        "{live}"
    );
    let inactive = d
        .domain(&path, "GetXMLDesc", &["u", "2"])
        .replace("\\'", "'");
    assert!(
        inactive.contains("<currentMemory unit='KiB'>65536</currentMemory>"),
        "{inactive}"
    );
    // GetStats of a running domain: the core's bulk record (as virsh domstats),
    // each value two variant levels deep as libvirt-dbus sends it.
    let r = d.busctl(&[
        "--json=short",
        "call",
        "org.libvirt",
        &path,
        "org.libvirt.Domain",
        "GetStats",
        "uu",
        "0",
        "0",
    ]);
    assert!(r.ok, "{}", r.stderr);
    for key in [
        "\"cpu.time\":{\"type\":\"v\",\"data\":{\"type\":\"t\"",
        "\"vcpu.current\":{\"type\":\"v\",\"data\":{\"type\":\"u\"",
        "\"balloon.current\":{\"type\":\"v\",\"data\":{\"type\":\"t\"",
    ] {
        assert!(r.stdout.contains(key), "{key} not in {}", r.stdout);
    }
    // No job runs (VIR_DOMAIN_JOB_NONE); the guest clock needs an agent.
    let job = d.domain(&path, "GetJobInfo", &[]);
    assert_eq!(job.trim(), "(ittttttttttt) 0 0 0 0 0 0 0 0 0 0 0 0");
    let r = d.try_call(&path, "org.libvirt.Domain", "GetTime", &["u", "0"]);
    assert!(
        !r.ok && r.stderr.contains("QEMU guest agent is not configured"),
        "{}",
        r.stderr
    );
    let stats = d.domain(&path, "MemoryStats", &["u", "0"]);
    // a{it}: tag 6 = actual balloon (KiB), 7 = RSS.
    assert!(
        stats.starts_with("a{it} ") && stats.contains(" 6 ") && stats.contains(" 7 "),
        "{stats}"
    );
    let too_big = d.try_call(
        &path,
        "org.libvirt.Domain",
        "SetMemory",
        &["tu", "1048576", "1"],
    );
    assert!(
        !too_big.ok
            && too_big
                .stderr
                .contains("cannot set memory higher than max memory")
    );
    let vcpus = d.domain(&path, "GetVcpus", &["u", "0"]);
    assert_eq!(vcpus.trim(), "u 1");
    let ctl = d.domain(&path, "GetControlInfo", &["u", "0"]);
    assert_eq!(ctl.trim(), "(uut) 0 0 0");
}
