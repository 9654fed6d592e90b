//! Debian's real `virsh` (libvirt 9.0) driving oxvirtd over libvirt's remote protocol:
//! every command of issue 7's list, with its output asserted.

mod rpc_common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oxvirt_tests::host::require_kvm;
use rpc_common::{field, guest_xml, Daemon, STEP};

#[test]
fn rpc_virsh_host_commands() {
    let d = Daemon::start();
    let v = d.virsh_ok(&["version"]);
    assert!(v.contains("Using library: libvirt 9.0.0"), "{v}");
    assert!(v.contains("Running hypervisor: OXVIRT "), "{v}");
    let host = nix::unistd::gethostname().unwrap().into_string().unwrap();
    assert_eq!(d.virsh_ok(&["hostname"]).trim(), host);
    assert_eq!(d.virsh_ok(&["uri"]).trim(), d.uri());
    let n = d.virsh_ok(&["nodeinfo"]);
    let cpus: usize = field(&n, "CPU(s)").parse().unwrap();
    assert_eq!(cpus, std::thread::available_parallelism().unwrap().get());
    assert!(field(&n, "Memory size").ends_with("KiB"), "{n}");
    let caps = d.virsh_ok(&["capabilities"]);
    assert!(caps.contains("<os_type>hvm</os_type>"), "{caps}");
    assert!(caps.contains("<domain type='kvm'/>"), "{caps}");
    // The DAC security model with the user VMMs run as (this root daemon: oxvirt-vmm,
    // where that user exists), as libvirt shows libvirt-qemu's ids.
    let ids = |flag: &str| {
        Command::new("id")
            .args([flag, "oxvirt-vmm"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    if let (Some(uid), Some(gid)) = (ids("-u"), ids("-g")) {
        assert!(
            caps.contains(&format!("<baselabel type='kvm'>+{uid}:+{gid}</baselabel>")),
            "{caps}"
        );
    }
    assert!(caps.contains("<model>dac</model>"), "{caps}");
    let dcaps = d.virsh_ok(&["domcapabilities"]);
    assert!(dcaps.contains("<domain>kvm</domain>"), "{dcaps}");
    assert!(dcaps.contains("host-passthrough"), "{dcaps}");
    // Both documents validate against libvirt's own schemas.
    for (name, text, schema) in [
        ("caps", &caps, "capability"),
        ("dcaps", &dcaps, "domaincaps"),
    ] {
        let p = d.xml_file(name, text);
        let out = Command::new("virt-xml-validate")
            .arg(&p)
            .arg(schema)
            .output()
            .expect("virt-xml-validate (libvirt-clients, libxml2-utils)");
        assert!(
            out.status.success(),
            "{name} does not validate: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Something we do not implement answers "not supported"; the connection survives.
    let filter = d.xml_file("nwfilter", "<filter name='oxvirt-test' chain='root'/>");
    let r = d.virsh(&["nwfilter-define", filter.to_str().unwrap()]);
    assert!(!r.ok);
    assert!(
        r.stderr
            .contains("this function is not supported by the connection driver"),
        "{}",
        r.stderr
    );
    // Objects oxvirt does not have list as empty, like a libvirtd without them.
    assert!(d.virsh_ok(&["net-list", "--all"]).contains("Name"));
    assert!(d.virsh(&["list", "--all"]).ok);
}

/// Validates `text` against libvirt's RNG schema `schema` with `virt-xml-validate`.
fn validate(d: &Daemon, name: &str, text: &str, schema: &str) {
    let p = d.xml_file(name, text);
    let out = Command::new("virt-xml-validate")
        .arg(&p)
        .arg(schema)
        .output()
        .expect("virt-xml-validate (libvirt-clients, libxml2-utils)");
    assert!(
        out.status.success(),
        "{name} does not validate: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `<value>`s of `<enum name='NAME'>` inside the first `<PARENT>` of a document.
fn enum_values(xml: &str, parent: &str, name: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("enum") && n.attribute("name") == Some(name))
        .filter(|n| n.parent().is_some_and(|p| p.has_tag_name(parent)))
        .flat_map(|n| n.children().filter(|c| c.has_tag_name("value")))
        .map(|v| v.text().unwrap_or("").to_string())
        .collect()
}

/// Fails unless a q35 domain with `devices` translates (`oxvirt-xml validate`).
fn must_translate(devices: &str) {
    let xml = format!(
        "<domain type='kvm'><name>caps</name><memory unit='MiB'>64</memory>\
         <os><type arch='x86_64' machine='q35'>hvm</type><kernel>/boot/vmlinux</kernel></os>\
         <devices>{devices}</devices></domain>"
    );
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), &xml).unwrap();
    let out = std::process::Command::new(oxvirt_tests::bin_path("oxvirt-xml"))
        .arg("validate")
        .arg(f.path())
        .output()
        .expect("running oxvirt-xml");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("valid; oxvirt can run it"),
        "domain capabilities offer what does not translate:\n{devices}\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `<loader>` image paths of a domain capabilities document.
fn loader_values(xml: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(xml).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("value"))
        .filter(|n| n.parent().is_some_and(|p| p.has_tag_name("loader")))
        .map(|v| v.text().unwrap_or("").to_string())
        .collect()
}

/// Debian's OVMF without SMM (package `ovmf`), the build oxvirt's UEFI runs.
fn debian_ovmf_installed() -> bool {
    std::path::Path::new("/usr/share/qemu/firmware/60-edk2-x86_64.json").exists()
        && std::path::Path::new("/usr/share/OVMF/OVMF_CODE_4M.fd").exists()
}

/// `virsh domcapabilities` reports the firmware and machine types oxvirt runs:
/// SeaBIOS on both chipsets, OVMF (non-SMM builds only) on Q35, machine names
/// canonical as libvirt prints them; `virsh capabilities` lists q35 and pc.
#[test]
fn rpc_virsh_domcapabilities_report_firmware() {
    let d = Daemon::start();
    let caps = d.virsh_ok(&["capabilities"]);
    for m in [
        "<machine maxCpus='255'>pc-i440fx-7.2</machine>",
        "<machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>",
        "<machine maxCpus='255'>pc-q35-7.2</machine>",
        "<machine canonical='pc-q35-7.2' maxCpus='255'>q35</machine>",
    ] {
        assert!(caps.contains(m), "{m} missing:\n{caps}");
    }

    let ovmf = debian_ovmf_installed();
    let q35 = d.virsh_ok(&["domcapabilities", "--machine", "q35"]);
    validate(&d, "dcaps-q35", &q35, "domaincaps");
    assert!(q35.contains("<machine>pc-q35-7.2</machine>"), "{q35}");
    let (firmware, types) = if ovmf {
        (vec!["bios", "efi"], vec!["rom", "pflash"])
    } else {
        (vec!["bios"], vec!["rom"])
    };
    assert_eq!(enum_values(&q35, "os", "firmware"), firmware, "{q35}");
    assert_eq!(enum_values(&q35, "loader", "type"), types, "{q35}");
    assert_eq!(enum_values(&q35, "loader", "secure"), ["no"], "{q35}");
    assert_eq!(enum_values(&q35, "loader", "readonly"), ["yes"], "{q35}");
    if ovmf {
        // Only the build without SMM: the secure-boot ones are not offered.
        assert_eq!(
            loader_values(&q35),
            ["/usr/share/OVMF/OVMF_CODE_4M.fd"],
            "{q35}"
        );
    }
    // The versioned name gives the same answer.
    let versioned = d.virsh_ok(&["domcapabilities", "--machine", "pc-q35-7.2"]);
    assert_eq!(versioned, q35);

    for args in [
        &["domcapabilities"][..],
        &["domcapabilities", "--machine", "pc"],
        &["domcapabilities", "--virttype", "kvm", "--arch", "x86_64"],
    ] {
        let pc = d.virsh_ok(args);
        validate(&d, "dcaps-pc", &pc, "domaincaps");
        assert!(pc.contains("<machine>pc-i440fx-7.2</machine>"), "{pc}");
        // UEFI runs on Q35 only.
        assert_eq!(enum_values(&pc, "os", "firmware"), ["bios"], "{pc}");
        assert_eq!(enum_values(&pc, "loader", "type"), ["rom"], "{pc}");
        assert!(loader_values(&pc).is_empty(), "{pc}");
        // Devices: every value offered translates (virt-install writes what is offered).
        let buses = enum_values(&pc, "disk", "bus");
        assert!(buses.iter().any(|b| b == "virtio"), "{pc}");
        for bus in &buses {
            for device in enum_values(&pc, "disk", "diskDevice") {
                if device == "cdrom" && bus == "virtio" {
                    continue; // libvirt itself refuses virtio CD-ROMs
                }
                let dev = if bus == "virtio" { "vda" } else { "sda" };
                let (source, ro) = if device == "cdrom" {
                    ("", "<readonly/>")
                } else {
                    ("<source file='/var/lib/x.img'/>", "")
                };
                must_translate(&format!(
                    "<disk type='file' device='{device}'>{source}<target dev='{dev}' bus='{bus}'/>{ro}</disk>{}",
                    if bus == "scsi" { "<controller type='scsi' model='virtio-scsi'/>" } else { "" }
                ));
            }
        }
        for model in enum_values(&pc, "video", "modelType") {
            must_translate(&format!("<video><model type='{model}'/></video>"));
        }
        for ty in enum_values(&pc, "graphics", "type") {
            must_translate(&format!("<graphics type='{ty}'/>"));
        }
    }

    // Arguments libvirt refuses, with libvirt's words.
    for (args, msg) in [
        (
            &["domcapabilities", "--machine", "microvm"][..],
            "invalid argument: the machine 'microvm' is not supported by emulator",
        ),
        (
            &["domcapabilities", "--arch", "aarch64"],
            "unsupported configuration: unable to find any emulator to serve 'aarch64' architecture",
        ),
        (
            &["domcapabilities", "--emulatorbin", "/nonexistent/qemu"],
            "Cannot check QEMU binary /nonexistent/qemu: No such file or directory",
        ),
    ] {
        let r = d.virsh(args);
        assert!(!r.ok, "{args:?} succeeded: {}", r.stdout);
        assert!(r.stderr.contains(msg), "{args:?}: {}", r.stderr);
    }
}

/// `virt-install --boot uefi` reads our domain capabilities and writes XML oxvirt
/// accepts (`<os firmware='efi'>` on q35); on i440FX, where oxvirt has no UEFI, it
/// finds none and says so.
#[test]
fn rpc_virt_install_uefi_xml_is_accepted() {
    let test = "rpc_virt_install_uefi_xml_is_accepted";
    if !std::path::Path::new("/usr/bin/virt-install").exists() {
        oxvirt_tests::skip(test, "virt-install missing (Debian package virtinst)");
        return;
    }
    if !debian_ovmf_installed() {
        oxvirt_tests::skip(test, "Debian's OVMF missing (package ovmf)");
        return;
    }
    let d = Daemon::start();
    let virt_install = |name: &str, extra: &[&str]| {
        let mut c = Command::new("virt-install");
        c.args(["--connect", &d.uri(), "--name", name])
            .args(["--memory", "64", "--vcpus", "1"])
            .args(["--install", "no_install=yes", "--disk", "none"])
            .args(["--network", "none", "--graphics", "none"])
            .args(["--osinfo", "detect=off,require=off", "--print-xml"])
            .args(extra);
        rpc_common::run_with_timeout(c, STEP)
    };
    for boot in ["uefi", "firmware=efi"] {
        let name = format!("rpc-vi-{}", boot.replace('=', "-"));
        let r = virt_install(&name, &["--machine", "q35", "--boot", boot]);
        if !r.ok {
            d.fail(&format!("virt-install failed:\n{}\n{}", r.stdout, r.stderr));
        }
        assert!(r.stdout.contains("<os firmware=\"efi\">"), "{}", r.stdout);
        let f = d.xml_file(&name, &r.stdout);
        d.virsh_ok(&["define", f.to_str().unwrap()]);
        let x = d.virsh_ok(&["dumpxml", &name]);
        assert!(x.contains("<os firmware='efi'>"), "{x}");
        d.virsh_ok(&["undefine", &name, "--nvram"]);
    }
    let r = virt_install("rpc-vi-pc", &["--machine", "pc", "--boot", "uefi"]);
    assert!(!r.ok, "{}", r.stdout);
    assert!(
        r.stderr.contains("Did not find any UEFI binary path"),
        "{}",
        r.stderr
    );
}

#[test]
fn rpc_virsh_read_only_socket() {
    let d = Daemon::start();
    let ro = format!("oxvirt:///system?socket={}-ro", d.socket.display());
    let name = "rpc-ro";
    let f = d.xml_file(name, &guest_xml(name));
    d.virsh_ok(&["define", f.to_str().unwrap()]);
    let r = rpc_common::virsh(&ro, &["list", "--all"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains(name), "{}", r.stdout);
    let r = rpc_common::virsh(&ro, &["start", name]);
    assert!(!r.ok);
    assert!(
        r.stderr.contains("read only access prevents"),
        "{}",
        r.stderr
    );
    let r = rpc_common::virsh(&ro, &["undefine", name]);
    assert!(!r.ok, "undefine through the read-only socket must fail");
    // `virsh -r` on the read-write socket asks for a read-only connection.
    let r = rpc_common::virsh(&d.uri(), &["-r", "start", name]);
    assert!(!r.ok && r.stderr.contains("read only"), "{}", r.stderr);

    // Peer credentials decide: an unprivileged user (nobody, not in the daemon's group)
    // may not use the read-write socket, but may read through the read-only one.
    let mut dir = d.socket.parent().unwrap().to_path_buf();
    loop {
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        if dir == d.dir.path() {
            break;
        }
        dir = dir.parent().unwrap().to_path_buf();
    }
    let as_nobody = |uri: &str, args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "virsh",
            "-c",
            uri,
        ])
        .args(args)
        .env("HOME", "/nonexistent");
        rpc_common::run_with_timeout(c, STEP)
    };
    let r = as_nobody(&d.uri(), &["list", "--all"]);
    assert!(!r.ok, "nobody got read-write access: {}", r.stdout);
    assert!(r.stderr.contains("access denied"), "{}", r.stderr);
    let r = as_nobody(&ro, &["list", "--all"]);
    assert!(r.ok && r.stdout.contains(name), "{}{}", r.stdout, r.stderr);
    d.virsh_ok(&["undefine", name]);
}

/// Splits `virsh list` output into (name, state) rows.
fn list_rows(out: &str) -> Vec<(String, String)> {
    out.lines()
        .skip(2)
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let _id = parts.next()?;
            let name = parts.next()?;
            let state: Vec<&str> = parts.collect();
            Some((name.to_string(), state.join(" ")))
        })
        .collect()
}

fn state_in(out: &str, name: &str) -> Option<String> {
    list_rows(out)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
}

#[test]
fn rpc_virsh_domain_commands() {
    if !require_kvm("rpc_virsh_domain_commands") {
        return;
    }
    let d = Daemon::start();
    let name = "rpc-virsh";
    let file = d.xml_file(name, &guest_xml(name));
    let file = file.to_str().unwrap();

    // define / list --all / dominfo / domstate on an inactive domain
    let out = d.virsh_ok(&["define", file]);
    assert!(
        out.contains(&format!("Domain '{name}' defined from {file}")),
        "{out}"
    );
    let all = d.virsh_ok(&["list", "--all"]);
    assert_eq!(state_in(&all, name).as_deref(), Some("shut off"), "{all}");
    assert_eq!(state_in(&d.virsh_ok(&["list"]), name), None);
    assert_eq!(
        state_in(&d.virsh_ok(&["list", "--inactive"]), name).as_deref(),
        Some("shut off")
    );
    assert!(state_in(&d.virsh_ok(&["list", "--all", "--persistent"]), name).is_some());
    assert!(state_in(&d.virsh_ok(&["list", "--all", "--transient"]), name).is_none());
    assert!(state_in(&d.virsh_ok(&["list", "--all", "--state-shutoff"]), name).is_some());
    assert!(state_in(&d.virsh_ok(&["list", "--all", "--state-running"]), name).is_none());
    let info = d.virsh_ok(&["dominfo", name]);
    assert_eq!(field(&info, "Name"), name);
    assert_eq!(field(&info, "Id"), "-");
    assert_eq!(field(&info, "OS Type"), "hvm");
    assert_eq!(field(&info, "State"), "shut off");
    assert_eq!(field(&info, "CPU(s)"), "1");
    assert_eq!(field(&info, "Max memory"), "65536 KiB");
    assert_eq!(field(&info, "Persistent"), "yes");
    assert_eq!(field(&info, "Autostart"), "disable");
    let uuid = field(&info, "UUID").to_string();
    assert_eq!(d.virsh_ok(&["domuuid", name]).trim(), uuid);
    assert_eq!(d.virsh_ok(&["domid", name]).trim(), "-");
    assert_eq!(
        d.virsh_ok(&["domstate", "--reason", name]).trim(),
        "shut off (unknown)"
    );
    let xml = d.virsh_ok(&["dumpxml", "--inactive", name]);
    assert!(xml.contains(&format!("<name>{name}</name>")), "{xml}");
    assert!(xml.contains(&format!("<uuid>{uuid}</uuid>")), "{xml}");
    // A lookup by UUID works like one by name.
    assert_eq!(field(&d.virsh_ok(&["dominfo", &uuid]), "Name"), name);

    // autostart, description, metadata, rename, vcpucount while inactive
    let out = d.virsh_ok(&["autostart", name]);
    assert!(
        out.contains(&format!("Domain '{name}' marked as autostarted")),
        "{out}"
    );
    assert_eq!(
        field(&d.virsh_ok(&["dominfo", name]), "Autostart"),
        "enable"
    );
    assert!(state_in(&d.virsh_ok(&["list", "--all", "--autostart"]), name).is_some());
    let out = d.virsh_ok(&["autostart", "--disable", name]);
    assert!(
        out.contains(&format!("Domain '{name}' unmarked as autostarted")),
        "{out}"
    );
    assert_eq!(
        field(&d.virsh_ok(&["dominfo", name]), "Autostart"),
        "disable"
    );
    let out = d.virsh_ok(&["desc", name, "--new-desc", "hello rpc"]);
    assert!(
        out.contains("Domain description updated successfully"),
        "{out}"
    );
    assert_eq!(d.virsh_ok(&["desc", name]).trim(), "hello rpc");
    let out = d.virsh_ok(&[
        "metadata",
        name,
        "http://example.org/rpc",
        "--key",
        "rpc",
        "--set",
        "<x>1</x>",
    ]);
    assert!(out.contains("Metadata modified"), "{out}");
    // libvirt prints `<x>1</x>`; the element may also carry its namespace prefix.
    let m = d.virsh_ok(&["metadata", name, "http://example.org/rpc"]);
    let m = m.trim();
    assert!(
        m == "<x>1</x>" || m == "<rpc:x xmlns:rpc='http://example.org/rpc'>1</rpc:x>",
        "{m}"
    );
    let renamed = "rpc-virsh-renamed";
    let out = d.virsh_ok(&["domrename", name, renamed]);
    assert!(out.contains("Domain successfully renamed"), "{out}");
    assert!(state_in(&d.virsh_ok(&["list", "--all"]), renamed).is_some());
    d.virsh_ok(&["domrename", renamed, name]);
    let vc = d.virsh_ok(&["vcpucount", name]);
    assert!(vc.contains("maximum      config         1"), "{vc}");
    assert!(vc.contains("current      config         1"), "{vc}");
    let out = d.virsh_ok(&["setmem", name, "49152", "--config"]);
    assert!(out.trim().is_empty(), "{out}");
    assert_eq!(
        field(&d.virsh_ok(&["dominfo", name]), "Used memory"),
        "49152 KiB"
    );
    d.virsh_ok(&["setmem", name, "65536", "--config"]);

    // domblklist / domiflist read the definition's devices (client-side, from dumpxml).
    let dname = "rpc-virsh-devices";
    let disk = d.dir.path().join("disk.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let dev_xml = guest_xml(dname).replace(
        "<devices>",
        &format!(
            "<devices>\n    <disk type='file' device='disk'><driver name='qemu' type='raw'/>\
             <source file='{}'/><target dev='vda' bus='virtio'/></disk>\n    \
             <interface type='ethernet'><mac address='52:54:00:12:34:56'/>\
             <target dev='oxrpc0'/><model type='virtio'/></interface>",
            disk.display()
        ),
    );
    let dfile = d.xml_file(dname, &dev_xml);
    d.virsh_ok(&["define", dfile.to_str().unwrap()]);
    let blk = d.virsh_ok(&["domblklist", dname]);
    let row = blk
        .lines()
        .find(|l| l.trim_start().starts_with("vda"))
        .unwrap_or("");
    assert!(row.contains(&disk.display().to_string()), "{blk}");
    let ifl = d.virsh_ok(&["domiflist", dname]);
    assert!(ifl.contains("52:54:00:12:34:56"), "{ifl}");
    assert!(ifl.contains("ethernet") && ifl.contains("virtio"), "{ifl}");
    d.virsh_ok(&["undefine", dname]);

    // start, and everything about a running domain
    let out = d.virsh_ok(&["start", name]);
    assert!(out.contains(&format!("Domain '{name}' started")), "{out}");
    d.wait_state(name, "running");
    assert_eq!(
        state_in(&d.virsh_ok(&["list"]), name).as_deref(),
        Some("running")
    );
    assert!(state_in(&d.virsh_ok(&["list", "--state-running"]), name).is_some());
    assert_eq!(
        d.virsh_ok(&["domstate", "--reason", name]).trim(),
        "running (booted)"
    );
    let id = d.virsh_ok(&["domid", name]).trim().to_string();
    assert!(id.parse::<u32>().is_ok_and(|i| i > 0), "domid {id}");
    assert_eq!(d.virsh_ok(&["domname", &id]).trim(), name);
    let info = d.virsh_ok(&["dominfo", name]);
    assert_eq!(field(&info, "Id"), id);
    assert_eq!(field(&info, "State"), "running");
    let live = d.virsh_ok(&["dumpxml", name]);
    assert!(live.contains(&format!("id='{id}'")), "{live}");

    // The console: reset while attached, see the guest boot again up to the point
    // where it listens for the power button.
    console_shows_guest_booting(&d, name);

    let blk = d.virsh_ok(&["domblklist", name]);
    assert!(blk.lines().next().unwrap().contains("Target"), "{blk}");
    let ifl = d.virsh_ok(&["domiflist", name]);
    assert!(ifl.lines().next().unwrap().contains("Interface"), "{ifl}");
    let vc = d.virsh_ok(&["vcpucount", name]);
    assert!(vc.contains("current      live           1"), "{vc}");
    let mem = d.virsh_ok(&["dommemstat", name]);
    assert!(mem.lines().any(|l| l.starts_with("actual ")), "{mem}");
    let stats = d.virsh_ok(&["domstats", name]);
    assert!(stats.contains(&format!("Domain: '{name}'")), "{stats}");
    assert!(stats.contains("state.state=1"), "{stats}");
    assert!(stats.contains("balloon.maximum=65536"), "{stats}");
    let q = d.virsh_ok(&[
        "qemu-monitor-command",
        name,
        r#"{"execute":"query-status"}"#,
    ]);
    let v: serde_json::Value = serde_json::from_str(q.trim()).expect("monitor reply is JSON");
    assert_eq!(v["return"]["status"], "running", "{q}");
    assert!(
        v["id"].as_str().is_some_and(|i| i.starts_with("libvirt-")),
        "{q}"
    );

    // suspend / resume / reset / reboot
    let out = d.virsh_ok(&["suspend", name]);
    assert!(out.contains(&format!("Domain '{name}' suspended")), "{out}");
    assert_eq!(
        d.virsh_ok(&["domstate", "--reason", name]).trim(),
        "paused (user)"
    );
    assert_eq!(
        state_in(&d.virsh_ok(&["list", "--all"]), name).as_deref(),
        Some("paused")
    );
    let q = d.virsh_ok(&[
        "qemu-monitor-command",
        name,
        r#"{"execute":"query-status"}"#,
    ]);
    assert!(q.contains("\"paused\""), "{q}");
    let out = d.virsh_ok(&["resume", name]);
    assert!(out.contains(&format!("Domain '{name}' resumed")), "{out}");
    assert_eq!(
        d.virsh_ok(&["domstate", "--reason", name]).trim(),
        "running (unpaused)"
    );
    // reboot: power button, then a new VMM (a new domain id); the console wait above
    // made sure the guest listens for the button.
    let out = d.virsh_ok(&["reboot", name]);
    assert!(
        out.contains(&format!("Domain '{name}' is being rebooted")),
        "{out}"
    );
    let deadline = Instant::now() + STEP;
    loop {
        let now = d.virsh(&["domid", name]).stdout.trim().to_string();
        if now != id && now != "-" && !now.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            d.fail(&format!(
                "{name} did not reboot (id still {id})\n{}",
                d.domain_log(name)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    d.wait_state(name, "running");

    // shutdown: the guest powers off on the ACPI button
    d.shutdown_until_off(name);
    assert_eq!(
        d.virsh_ok(&["domstate", "--reason", name]).trim(),
        "shut off (shutdown)"
    );

    // start again, destroy
    d.virsh_ok(&["start", name]);
    d.wait_state(name, "running");
    let out = d.virsh_ok(&["destroy", name]);
    assert!(out.contains(&format!("Domain '{name}' destroyed")), "{out}");
    assert_eq!(
        d.virsh_ok(&["domstate", "--reason", name]).trim(),
        "shut off (destroyed)"
    );
    let r = d.virsh(&["suspend", name]);
    assert!(
        !r.ok && r.stderr.contains("domain is not running"),
        "{}",
        r.stderr
    );

    // undefine of a running domain (libvirt 9.0): it turns transient and keeps
    // running, and is gone once it stops
    d.virsh_ok(&["start", name]);
    d.wait_state(name, "running");
    let out = d.virsh_ok(&["undefine", name]);
    assert!(
        out.contains(&format!("Domain '{name}' has been undefined")),
        "{out}"
    );
    assert_eq!(field(&d.virsh_ok(&["dominfo", name]), "Persistent"), "no");
    assert_eq!(
        state_in(&d.virsh_ok(&["list", "--transient"]), name).as_deref(),
        Some("running")
    );
    d.virsh_ok(&["destroy", name]);
    assert_eq!(state_in(&d.virsh_ok(&["list", "--all"]), name), None);
    // virsh says only this (as with libvirtd); the library error is NO_DOMAIN, which
    // the python test checks.
    let r = d.virsh(&["dominfo", name]);
    assert!(!r.ok);
    assert!(
        r.stderr
            .contains(&format!("error: failed to get domain '{name}'")),
        "{}",
        r.stderr
    );

    // create: a transient domain, gone once destroyed
    let tname = "rpc-virsh-transient";
    let tfile = d.xml_file(tname, &guest_xml(tname));
    let out = d.virsh_ok(&["create", tfile.to_str().unwrap()]);
    assert!(
        out.contains(&format!("Domain '{tname}' created from")),
        "{out}"
    );
    assert!(state_in(&d.virsh_ok(&["list", "--transient"]), tname).is_some());
    assert_eq!(field(&d.virsh_ok(&["dominfo", tname]), "Persistent"), "no");
    d.virsh_ok(&["destroy", tname]);
    assert_eq!(state_in(&d.virsh_ok(&["list", "--all"]), tname), None);
}

/// `virsh start --paused`: the VMM starts with its vCPUs parked (as libvirt starts
/// QEMU with -S), so the guest prints nothing until `virsh resume`.
#[test]
fn rpc_virsh_start_paused() {
    if !require_kvm("rpc_virsh_start_paused") {
        return;
    }
    let d = Daemon::start();
    let name = "rpc-virsh-paused";
    let log = d.dir.path().join("paused-serial.log");
    let xml = oxvirt_tests::spec::domain_xml(
        name,
        &oxvirt_tests::guests::test_guests().elf,
        rpc_common::CMDLINE,
        64,
        1,
        "destroy",
        &oxvirt_tests::spec::serial_xml(&format!("file:{}", log.display())),
    );
    let file = d.xml_file(name, &xml);
    d.virsh_ok(&["define", file.to_str().unwrap()]);
    let out = d.virsh_ok(&["start", "--paused", name]);
    assert!(out.contains(&format!("Domain '{name}' started")), "{out}");
    assert_eq!(
        d.virsh_ok(&["domstate", "--reason", name]).trim(),
        "paused (user)"
    );
    // Long enough for the guest to have printed its banner had a vCPU run.
    std::thread::sleep(Duration::from_millis(1500));
    let early = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(early.is_empty(), "the guest ran while paused: {early}");
    d.virsh_ok(&["resume", name]);
    d.wait_state(name, "running");
    let deadline = Instant::now() + STEP;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("OXTEST") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no guest output after resume: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    d.virsh_ok(&["destroy", name]);
    d.virsh_ok(&["undefine", name]);
}

/// A start whose machine cannot be built (a disk image that is not there) fails as
/// libvirt's does — the call answers the VMM's reason, naming the file — and leaves the
/// domain shut off and the daemon serving; it did report success, then stop, while the
/// VMM built the machine behind its already-open monitor.
#[test]
fn rpc_virsh_start_with_a_missing_disk_fails() {
    if !require_kvm("rpc_virsh_start_with_a_missing_disk_fails") {
        return;
    }
    let d = Daemon::start();
    let name = "rpc-virsh-nodisk";
    let missing = d.dir.path().join("not-there.img");
    let xml = guest_xml(name).replace(
        "</devices>",
        &format!(
            "<disk type='file' device='disk'><driver name='qemu' type='raw'/>\
             <source file='{}'/><target dev='vda' bus='virtio'/></disk>\n</devices>",
            missing.display()
        ),
    );
    let file = d.xml_file(name, &xml);
    d.virsh_ok(&["define", file.to_str().unwrap()]);
    for _ in 0..2 {
        let r = d.virsh(&["start", name]);
        assert!(!r.ok, "start succeeded: {}", r.stdout);
        assert!(
            r.stderr
                .contains("process exited while connecting to monitor")
                && r.stderr.contains("not-there.img"),
            "{}",
            r.stderr
        );
        assert_eq!(d.virsh_ok(&["domstate", name]).trim(), "shut off");
    }
    d.virsh_ok(&["undefine", name]);
    assert!(d.virsh_ok(&["list", "--all"]).contains("Name"));
}

/// `virsh console` needs a terminal: run it on a pty; once attached, `virsh reset` the
/// guest and watch it boot (ready marker) and arm its power button; detach with Ctrl-].
fn console_shows_guest_booting(d: &Daemon, name: &str) {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = || Stdio::from(pty.slave.try_clone().unwrap());
    let mut child = Command::new("virsh")
        .arg("-c")
        .arg(d.uri())
        .args(["console", name])
        .stdin(slave())
        .stdout(slave())
        .stderr(slave())
        .spawn()
        .expect("virsh console");
    let mut master = std::fs::File::from(pty.master);
    drop(pty.slave);
    // Non-blocking reads so the deadline holds.
    nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + STEP;
    let mut buf = [0u8; 4096];
    let mut reset_done = false;
    let armed = "OXTEST acpibutton armed";
    let done = |seen: &[u8], reset_done: bool| {
        let t = String::from_utf8_lossy(seen);
        reset_done
            && t.rfind("OXTEST READY")
                .is_some_and(|i| t[i..].contains(armed))
    };
    while !done(&seen, reset_done) {
        // Once attached, reset the guest so it boots again while we watch.
        if !reset_done && String::from_utf8_lossy(&seen).contains("Connected to domain") {
            reset_done = true;
            let r = d.virsh(&["reset", name]);
            assert!(r.ok, "reset while the console is attached: {}", r.stderr);
            assert!(
                r.stdout.contains(&format!("Domain '{name}' was reset")),
                "{}",
                r.stdout
            );
        }
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(_) => break,
        }
        if Instant::now() > deadline {
            break;
        }
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    let _ = master.write_all(&[0x1d]); // Ctrl-]
    let deadline = Instant::now() + Duration::from_secs(20);
    let exited = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !done(&seen, reset_done) {
        d.fail(&format!(
            "virsh console did not show the guest booting after a reset; it printed:\n{text}\n{}",
            d.domain_log(name)
        ));
    }
    assert!(
        text.contains(&format!("Connected to domain '{name}'")),
        "{text}"
    );
    assert!(
        exited.is_some_and(|s| s.success()),
        "virsh console did not exit cleanly on Ctrl-]: {exited:?}"
    );
}

/// Debian's virt-install (virtinst 4.1) creates and starts a domain through oxvirtd:
/// version, capabilities and domain capabilities, CREATE_XML then DEFINE_XML of the
/// running domain.
#[test]
fn rpc_virt_install_direct_kernel_boot() {
    if !require_kvm("rpc_virt_install_direct_kernel_boot") {
        return;
    }
    if !std::path::Path::new("/usr/bin/virt-install").exists() {
        oxvirt_tests::skip(
            "rpc_virt_install_direct_kernel_boot",
            "virt-install missing (Debian package virtinst)",
        );
        return;
    }
    let d = Daemon::start();
    let name = "rpc-vi";
    let kernel = oxvirt_tests::test_guests().elf.display().to_string();
    let mut c = Command::new("virt-install");
    c.args([
        "--connect",
        &d.uri(),
        "--name",
        name,
        "--memory",
        "64",
        "--vcpus",
        "1",
    ])
    .args([
        "--install",
        "no_install=yes",
        "--disk",
        "none",
        "--network",
        "none",
    ])
    .args(["--graphics", "none", "--noautoconsole"])
    .args(["--osinfo", "detect=off,require=off"])
    .arg("--boot")
    .arg(format!(
        "kernel={kernel},kernel_args=console=ttyS0 oxtest=acpibutton"
    ));
    let r = rpc_common::run_with_timeout(c, STEP);
    if !r.ok {
        d.fail(&format!("virt-install failed:\n{}\n{}", r.stdout, r.stderr));
    }
    assert!(
        r.stdout.contains("Domain creation completed"),
        "{}",
        r.stdout
    );
    d.wait_state(name, "running");
    let info = d.virsh_ok(&["dominfo", name]);
    assert_eq!(field(&info, "Persistent"), "yes");
    assert_eq!(field(&info, "Max memory"), "65536 KiB");
    d.virsh_ok(&["destroy", name]);
    d.virsh_ok(&["undefine", name]);
}
