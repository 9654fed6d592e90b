//! The QEMU guest agent channel end to end (tier 3, one boot, ≈ 60-110 s): Debian's
//! real `qemu-ga` (package qemu-guest-agent; the binary and its shared libraries are
//! appended to the Linux test guest's initramfs as a second cpio archive) runs in the
//! guest on the virtio-serial port of `<channel type='unix'><source mode='bind'/>
//! <target type='virtio' name='org.qemu.guest_agent.0'/></channel>` (virt-install's
//! form: no path), and Debian's virsh drives oxvirtd's agent calls: before the agent
//! starts, libvirt's "QEMU guest agent is not connected" errors and `state='disconnected'`
//! in the live XML; then the AGENT_LIFECYCLE event and `state='connected'` as qemu-ga
//! opens its port (the VMM's VSERPORT_CHANGE), `qemu-agent-command` guest-ping,
//! `domifaddr --source agent`, `guestinfo` (with `--disk`: /dev/vda named `vda`),
//! python3-libvirt's calls, `domfsinfo` (the same mountpoints as the agent's own
//! `guest-get-fsinfo`), `domtime` and `domtime --now`, D-Bus `GetTime`, `guestvcpus`
//! (and its errors), `domfsfreeze`/`domfsthaw`, the agent's error for
//! `set-user-password` (the guest has no chpasswd) and `shutdown --mode agent` powering
//! the guest off.
//! Skips loudly without qemu-ga or KVM.

mod rpc_common;
#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use oxvirt_tests::cpio::{archive, Entry};
use oxvirt_tests::skip;
use rpc_common::{Daemon, Watch};
use support::base64;

const QEMU_GA: &str = "/usr/sbin/qemu-ga";
const MAC: &str = "52:54:00:61:67:74";

/// The guest: find the agent's port by its name in sysfs (no udev, so no
/// /dev/virtio-ports link), start qemu-ga on it, report.
const GUEST_SCRIPT: &str = r#"hostname agentguest
ip link set lo up
dev=
for p in /sys/class/virtio-ports/*; do read -r n <"$p/name"; [ "$n" = org.qemu.guest_agent.0 ] && dev=/dev/${p##*/}; done
echo "OXVIRT agent dev=$dev"
/usr/bin/qemu-ga -m virtio-serial -p "$dev" -t /tmp -f /tmp/qga.pid -l /tmp/qga.log &
echo "OXVIRT agent-started"
"#;

/// `/sbin/shutdown` as qemu-ga calls it (`shutdown -h -P +0 MESSAGE`, `-r` to reboot).
const SHUTDOWN: &str = "#!/bin/sh\ncase \"$*\" in *-r*) exec /bin/busybox reboot -f;; esac\nexec /bin/busybox poweroff -f\n";

/// `/sbin/hwclock`, which qemu-ga runs after setting the clock: the test guest's kernel
/// has no RTC driver, so there is no hardware clock to write.
const HWCLOCK: &str = "#!/bin/sh\nexit 0\n";

/// qemu-ga and the shared libraries `ldd` names, as an initramfs archive.
fn agent_cpio() -> Vec<u8> {
    let out = Command::new("ldd")
        .arg(QEMU_GA)
        .output()
        .expect("running ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut files: Vec<(String, Vec<u8>)> = vec![(
        "usr/bin/qemu-ga".into(),
        std::fs::read(QEMU_GA).expect("reading qemu-ga"),
    )];
    for line in text.lines() {
        // `libx.so.1 => /lib/…/libx.so.1 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`.
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(str::to_string);
        if let Some(p) = path {
            let data = std::fs::read(&p).unwrap_or_else(|e| panic!("reading {p}: {e}"));
            files.push((p.trim_start_matches('/').to_string(), data));
        }
    }
    let mut dirs: Vec<String> = Vec::new();
    for (p, _) in &files {
        let mut d = Path::new(p).parent();
        while let Some(x) = d.filter(|x| !x.as_os_str().is_empty()) {
            let s = x.display().to_string();
            if !dirs.contains(&s) {
                dirs.push(s);
            }
            d = x.parent();
        }
    }
    dirs.push("sbin".into());
    dirs.sort_by_key(|d| d.matches('/').count());
    let mut entries: Vec<Entry> = dirs.iter().map(|d| Entry::Dir(d)).collect();
    for (p, data) in &files {
        entries.push(Entry::File {
            path: p,
            mode: 0o755,
            data,
        });
    }
    entries.push(Entry::File {
        path: "sbin/shutdown",
        mode: 0o755,
        data: SHUTDOWN.as_bytes(),
    });
    entries.push(Entry::File {
        path: "sbin/hwclock",
        mode: 0o755,
        data: HWCLOCK.as_bytes(),
    });
    archive(&entries)
}

/// python3-libvirt's side of the same calls (Debian's /usr/bin/python3 has the
/// bindings): addresses from the agent, guest info, time, the QEMU passthrough.
const PYTHON: &str = r#"import json, sys, libvirt, libvirt_qemu
d = libvirt.open(sys.argv[1]).lookupByName("agentvm")
a = d.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT)
info = d.guestInfo(libvirt.VIR_DOMAIN_GUEST_INFO_HOSTNAME)
r = json.loads(libvirt_qemu.qemuAgentCommand(d, '{"execute":"guest-info"}', 10, 0))
print(json.dumps({"ifaces": sorted(a), "lo": a["lo"]["addrs"], "hostname": info["hostname"],
                  "time": d.getTime()["seconds"], "version": r["return"]["version"]}))
"#;

/// virsh's error text, or the test fails because the call succeeded.
fn virsh_err(d: &Daemon, args: &[&str]) -> String {
    let r = d.virsh(args);
    assert!(!r.ok, "virsh {args:?} succeeded: {}", r.stdout);
    r.stderr
}

#[test]
fn linux_guest_agent_answers_libvirts_agent_calls() {
    const T: &str = "linux_guest_agent_answers_libvirts_agent_calls";
    if !Path::new(QEMU_GA).is_file() {
        skip(T, "no /usr/sbin/qemu-ga (Debian package qemu-guest-agent)");
        return;
    }
    let Some(g) = support::guest(T) else {
        return;
    };
    let d = Daemon::start();
    // The guest's initramfs plus the agent: Linux unpacks concatenated archives.
    let mut initrd = std::fs::read(&g.initrd).expect("reading the guest initramfs");
    initrd.extend(agent_cpio());
    let initrd_path = d.dir.path().join("initrd-agent.cpio");
    std::fs::write(&initrd_path, initrd).unwrap();

    let passt = Path::new("/usr/bin/passt").is_file();
    let (nic, ip) = if passt {
        (
            format!(
                "<interface type='user'><mac address='{MAC}'/><model type='virtio'/></interface>"
            ),
            " oxvirt_ip=10.0.2.15/24",
        )
    } else {
        (String::new(), "")
    };
    // A virtio disk for guestinfo --disk (the guest names it, libvirt's alias is vda).
    let disk = d.dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let console = d.dir.path().join("console.log");
    let cmdline = format!(
        "{}{ip} oxvirt_cmd64={} oxvirt_exit=wait",
        g.cmdline,
        base64(GUEST_SCRIPT.as_bytes())
    );
    let xml = format!(
        "<domain type='kvm'><name>agentvm</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
         <cmdline>{cmdline}</cmdline></os><features><acpi/><apic/></features>\
         <cpu mode='host-passthrough'/><on_poweroff>destroy</on_poweroff><devices>{nic}\
         <disk type='file' device='disk'><source file='{disk}'/><target dev='vda' bus='virtio'/></disk>\
         <channel type='unix'><source mode='bind'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\
         <serial type='file'><source path='{c}'/><target port='0'/></serial></devices></domain>",
        k = g.kernel.display(),
        i = initrd_path.display(),
        c = console.display(),
        disk = disk.display(),
    );
    let file = d.xml_file("agentvm", &xml);
    d.virsh_ok(&["define", file.to_str().unwrap()]);
    d.virsh_ok(&["start", "agentvm"]);

    // Before the guest runs its agent (boot takes ≥ 20 s here): libvirt's errors,
    // bounded by the 5 s handshake.
    let not_connected = "Guest agent is not responding: QEMU guest agent is not connected";
    let e = virsh_err(&d, &["domifaddr", "agentvm", "--source", "agent"]);
    assert!(e.contains(not_connected), "{e}");
    let e = virsh_err(
        &d,
        &[
            "qemu-agent-command",
            "agentvm",
            r#"{"execute":"guest-ping"}"#,
        ],
    );
    assert!(e.contains(not_connected), "{e}");
    // The live XML: the path the daemon picked, and the state.
    let live = d.virsh_ok(&["dumpxml", "agentvm"]);
    let sock = d
        .dir
        .path()
        .join("run/domains/agentvm/org.qemu.guest_agent.0");
    assert!(
        live.contains(&format!("path='{}'", sock.display()))
            && live.contains("state='disconnected'"),
        "{live}"
    );
    assert!(!d
        .virsh_ok(&["dumpxml", "--inactive", "agentvm"])
        .contains("state="));

    let mut events = Watch::spawn(
        {
            let mut c = Command::new("virsh");
            c.args([
                "-c",
                &d.uri(),
                "event",
                "--event",
                "agent-lifecycle",
                "--loop",
            ]);
            c
        },
        "virsh event --event agent-lifecycle",
    );

    // The guest's agent: wait for the guest to start it, then for its first answer.
    let read = || std::fs::read_to_string(&console).unwrap_or_default();
    let deadline = Instant::now() + support::BOOT;
    while !read().contains("OXVIRT agent-started") {
        if Instant::now() > deadline {
            d.fail(&format!(
                "the guest did not start qemu-ga; console:\n{}",
                read()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // qemu-ga opening its port is the VMM's VSERPORT_CHANGE: the agent is connected
    // before the host asks it anything.
    events.wait_count(&d, "connected", 1);
    assert!(
        events.text.contains("agent-lifecycle") && events.text.contains("'agentvm'"),
        "{}",
        events.text
    );
    assert!(d
        .virsh_ok(&["dumpxml", "agentvm"])
        .contains("state='connected'"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let pong = loop {
        let r = d.virsh(&[
            "qemu-agent-command",
            "agentvm",
            r#"{"execute":"guest-ping"}"#,
        ]);
        if r.ok {
            break r.stdout;
        }
        if Instant::now() > deadline {
            d.fail(&format!(
                "qemu-ga never answered: {}\nconsole:\n{}",
                r.stderr,
                read()
            ));
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(pong.trim(), r#"{"return":{}}"#);

    // Addresses as the guest sees them.
    let addrs = d.virsh_ok(&["domifaddr", "agentvm", "--source", "agent"]);
    assert!(
        addrs.contains("lo") && addrs.contains("127.0.0.1/8"),
        "{addrs}"
    );
    if passt {
        let line = addrs
            .lines()
            .find(|l| l.contains(MAC))
            .unwrap_or_else(|| panic!("{addrs}"));
        assert!(
            line.contains("eth0") && line.contains("10.0.2.15/24"),
            "{addrs}"
        );
    } else {
        skip(
            T,
            "no /usr/bin/passt: the guest has no NIC, only lo is checked",
        );
    }

    // Guest info: hostname, OS (kernel release), interfaces.
    let info = d.virsh_ok(&["guestinfo", "agentvm"]);
    let value = |k: &str| {
        info.lines()
            .find_map(|l| {
                let (a, b) = l.split_once(':')?;
                (a.trim() == k).then(|| b.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {k} in guestinfo:\n{info}"))
    };
    assert_eq!(value("hostname"), "agentguest");
    assert!(!value("os.kernel-release").is_empty(), "{info}");
    assert!(value("if.count").parse::<u32>().unwrap() >= 1, "{info}");
    // python3-libvirt: the same answers through the bindings.
    let out = Command::new("/usr/bin/python3")
        .args(["-c", PYTHON, &d.uri()])
        .output()
        .expect("running /usr/bin/python3");
    let py: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        d.fail(&format!(
            "python3-libvirt: {e}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    });
    assert_eq!(py["hostname"], "agentguest", "{py}");
    assert!(
        py["ifaces"].as_array().unwrap().contains(&"lo".into()),
        "{py}"
    );
    assert_eq!(py["lo"][0]["addr"], "127.0.0.1", "{py}");
    assert!(
        py["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{py}"
    );
    assert!(
        py["time"].as_i64().is_some_and(|t| t > 1_600_000_000),
        "{py}"
    );

    // The disk as the guest sees it, named with the domain's target.
    let disks = d.virsh_ok(&["guestinfo", "agentvm", "--disk"]);
    assert!(
        disks.contains("disk.count          : 1")
            && disks.contains("/dev/vda")
            && disks
                .lines()
                .any(|l| l.starts_with("disk.0.alias") && l.ends_with(": vda")),
        "{disks}"
    );
    let host_only = d.virsh_ok(&["guestinfo", "agentvm", "--hostname"]);
    assert!(
        host_only.contains("agentguest") && !host_only.contains("os."),
        "{host_only}"
    );

    // Filesystems: what the agent lists, in mount order.
    let raw = d.virsh_ok(&[
        "qemu-agent-command",
        "agentvm",
        r#"{"execute":"guest-get-fsinfo"}"#,
    ]);
    let v: serde_json::Value = serde_json::from_str(raw.trim()).unwrap();
    let fsinfo = d.virsh_ok(&["domfsinfo", "agentvm"]);
    for fs in v["return"].as_array().unwrap() {
        let mp = fs["mountpoint"].as_str().unwrap();
        assert!(
            fsinfo
                .lines()
                .any(|l| l.split_whitespace().next() == Some(mp)),
            "{mp} missing from domfsinfo:\n{fsinfo}\nagent:\n{raw}"
        );
    }

    // The guest's clock (kvmclock, from the host's) is near the host's.
    let t = d.virsh_ok(&["domtime", "agentvm"]);
    let secs: i64 = t
        .trim()
        .strip_prefix("Time:")
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("{t}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((secs - now).abs() < 3600, "guest time {secs}, host {now}");
    // Setting it: the host's time (qemu-ga's settimeofday, then `hwclock -w`).
    d.virsh_ok(&["domtime", "agentvm", "--now"]);
    // The same clock through libvirt-dbus's GetTime, `(tu)`.
    let uuid = d.virsh_ok(&["domuuid", "agentvm"]);
    let path = format!(
        "/org/libvirt/QEMU/domain/_{}",
        uuid.trim().replace('-', "_")
    );
    let bus = format!("unix:path={}", d.dir.path().join("bus").display());
    let out = Command::new("busctl")
        .args([
            "--address",
            &bus,
            "call",
            "org.libvirt",
            &path,
            "org.libvirt.Domain",
        ])
        .args(["GetTime", "u", "0"])
        .output()
        .expect("running busctl");
    let text = String::from_utf8_lossy(&out.stdout);
    let dbus_secs: i64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GetTime: {text} {}", String::from_utf8_lossy(&out.stderr)));
    assert!((dbus_secs - now).abs() < 3600, "D-Bus GetTime {text}");
    // A read-only connection may not ask the agent (libvirt's check).
    let ro = d.virsh(&["-r", "domifaddr", "agentvm", "--source", "agent"]);
    assert!(
        !ro.ok
            && ro
                .stderr
                .contains("read only access prevents virDomainInterfaceAddresses"),
        "{}",
        ro.stderr
    );

    let vcpus = d.virsh_ok(&["guestvcpus", "agentvm"]);
    assert!(vcpus.contains("vcpus") && vcpus.contains(": 0"), "{vcpus}");
    // Linux cannot take its boot CPU offline: libvirt's check, from the agent's answer.
    let e = virsh_err(
        &d,
        &["guestvcpus", "agentvm", "--cpulist", "0", "--disable"],
    );
    assert!(e.contains("vCPU '0' is not offlinable"), "{e}");
    d.virsh_ok(&["guestvcpus", "agentvm", "--cpulist", "0", "--enable"]);
    let e = virsh_err(&d, &["guestvcpus", "agentvm", "--cpulist", "7", "--enable"]);
    assert!(e.contains("vCPU '7' is not present in the guest"), "{e}");

    // Freeze and thaw: the counts the agent gives.
    let frozen = d.virsh_ok(&["domfsfreeze", "agentvm"]);
    let thawed = d.virsh_ok(&["domfsthaw", "agentvm"]);
    assert!(
        frozen.contains("Froze") && thawed.contains("Thawed"),
        "{frozen}{thawed}"
    );

    // The agent's own error comes back in libvirt's form (the guest has no chpasswd).
    let e = virsh_err(&d, &["set-user-password", "agentvm", "root", "secret"]);
    assert!(
        e.contains(
            "internal error: unable to execute QEMU agent command 'guest-set-user-password'"
        ),
        "{e}"
    );
    // A malformed passthrough command is the caller's error, not the agent's.
    let e = virsh_err(&d, &["qemu-agent-command", "agentvm", "not json"]);
    assert!(e.contains("cannot parse json"), "{e}");

    // Shutdown through the agent: qemu-ga runs /sbin/shutdown, the guest powers off.
    let out = d.virsh_ok(&["shutdown", "agentvm", "--mode", "agent"]);
    assert!(out.contains("is being shutdown"), "{out}");
    d.wait_state("agentvm", "shut off");
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    assert!(log.contains("OXVIRT agent dev=/dev/vport"), "{log}");
}
