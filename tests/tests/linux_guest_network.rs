//! The Linux test guest on libvirt's `default` network, driven by Debian's virsh
//! against oxvirtd running in a private network namespace: `<interface
//! type='network'><source network='default'/>` becomes a `vnetN` tap on `virbr0`
//! (live XML shows bridge and tap), the guest gets its address from dnsmasq with
//! busybox `udhcpc`, pings the bridge, reaches a TCP server in an "outside"
//! namespace through NAT, and `virsh domifaddr` / `net-dhcp-leases` show the lease
//! (`domifaddr --source arp` the host's neighbour entry). The guest's driver takes the
//! control queue and changes its MAC address through it (the receive filter follows).
//! The NIC has two queue pairs (`<driver queues='2'>`, a multiqueue tap) and the guest
//! two vCPUs: the driver takes both pairs, and a 300 kB TCP round trip from each vCPU
//! (data checked by MD5 on both ends) shows frames on both pairs' receive queues.
//! Skips loudly without KVM, root, nft, dnsmasq or busybox.

#[allow(dead_code)] // shared with linux_guest.rs, which uses other parts
#[path = "linux_guest/support.rs"]
mod support;
use support::base64;

mod network_common;

use std::time::{Duration, Instant};

use network_common::*;

const MAC: &str = "52:54:00:6e:65:74";

/// What the guest runs after boot: DHCP, ping the bridge, TCP to the outside server;
/// each result as an `OXVIRT` line.
const GUEST_SCRIPT: &str = r#"printf '#!/bin/sh\ncase "$1" in bound) ip addr add $ip/$mask dev $interface; ip route add default via $router;; esac\n' >/tmp/u.sh
chmod +x /tmp/u.sh
ip link set eth0 up
if udhcpc -i eth0 -n -q -f -t 10 -T 3 -s /tmp/u.sh >/tmp/udhcpc.log 2>&1; then echo "OXVIRT dhcp ok=1"; else echo "OXVIRT dhcp ok=0"; cat /tmp/udhcpc.log; fi
if ping -c 2 -W 5 192.168.122.1 >/dev/null; then echo "OXVIRT ping ok=1"; else echo "OXVIRT ping ok=0"; fi
for i in 1 2 3; do r=$(echo x | nc -w 30 10.200.0.2 8080); [ -n "$r" ] && break; done
echo "OXVIRT tcp reply=$r"
cd /sys/class/net/eth0
echo "OXVIRT ctrlvq=$(cut -c18 device/features)"
echo "OXVIRT cpus=$(nproc) mq=$(cut -c23 device/features) queues=$(ls queues|tr '\n' ' ')"
head -c 300000 /dev/urandom >/tmp/u
w=$(md5sum </tmp/u|cut -c-32)
for c in 0 1; do taskset -c $c nc -w 30 10.200.0.2 8081 </tmp/u >/tmp/d
echo "OXVIRT bulk cpu=$c want=$w up=$(head -n1 /tmp/d) down=$(tail -c +34 /tmp/d|md5sum|cut -c-32)"; done
echo "OXVIRT rx-irqs $(awk '/input\.[01]/{print $NF"="$2+$3}' /proc/interrupts|tr '\n' ' ')"
if ip link set eth0 address 52:54:00:6e:65:75 && ping -c 2 -W 5 192.168.122.1 >/dev/null; then echo "OXVIRT newmac ok=1"; else echo "OXVIRT newmac ok=0"; fi
ip link set eth0 address 52:54:00:6e:65:74
ping -c 1 -W 5 192.168.122.1 >/dev/null
echo "OXVIRT net-done"
"#;

#[test]
fn linux_guest_network_default_dhcp_nat() {
    const T: &str = "linux_guest_network_default_dhcp_nat";
    if !require_netns(T) {
        return;
    }
    let Some(g) = support::guest(T) else {
        return;
    };
    let ns = Namespaces::new("lgn", &["host", "out"]);
    let (host, out) = (ns.get(0), ns.get(1));
    uplink(host, out);
    let d = NsDaemon::start(host);
    let def = d.file("default.xml", DEFAULT_XML);
    d.virsh_ok(&["net-define", def.to_str().unwrap()]);
    d.virsh_ok(&["net-start", "default"]);
    let peers = d.dir.path().join("peers.txt");
    let mut server = tcp_server(out, "10.200.0.2", 8080, &peers);
    let mut echo = md5_echo_server(out, "10.200.0.2", 8081);

    let console = d.dir.path().join("console.log");
    let cmdline = format!(
        "{} oxvirt_cmd64={} oxvirt_exit=wait",
        g.cmdline,
        base64(GUEST_SCRIPT.as_bytes())
    );
    // x86 Linux keeps 2047 bytes of its command line: a longer script is cut short.
    assert!(
        cmdline.len() < 2048,
        "the guest script no longer fits the kernel command line ({} bytes)",
        cmdline.len()
    );
    let xml = format!(
        "<domain type='kvm'><name>netguest</name><memory unit='MiB'>256</memory><vcpu>2</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{k}</kernel><initrd>{i}</initrd>\
         <cmdline>{cmdline}</cmdline></os><features><acpi/><apic/></features>\
         <cpu mode='host-passthrough'/><on_poweroff>destroy</on_poweroff><devices>\
         <interface type='network'><mac address='{MAC}'/><source network='default'/><model type='virtio'/><driver queues='2'/></interface>\
         <serial type='file'><source path='{c}'/><target port='0'/></serial></devices></domain>",
        k = g.kernel.display(),
        i = g.initrd.display(),
        c = console.display(),
    );
    let domxml = d.file("netguest.xml", &xml);
    d.virsh_ok(&["define", domxml.to_str().unwrap()]);
    d.virsh_ok(&["start", "netguest"]);

    // Live XML: the bridge and the tap; the tap is on the bridge.
    let live = d.virsh_ok(&["dumpxml", "netguest"]);
    assert!(live.contains("bridge='virbr0'"), "{live}");
    assert!(live.contains("<target dev='vnet"), "{live}");
    let inactive = d.virsh_ok(&["dumpxml", "--inactive", "netguest"]);
    assert!(!inactive.contains("bridge='virbr0'"), "{inactive}");
    let ports = d.in_ns("ip -br link show master virbr0").stdout;
    assert!(ports.contains("vnet"), "no tap on virbr0: {ports}");

    // The guest's report, bounded (boot ≈ 45 s with two vCPUs on the emulated KVM,
    // each bulk round trip ≈ 10 s more).
    let read = || std::fs::read_to_string(&console).unwrap_or_default();
    let deadline = Instant::now() + support::EXIT + Duration::from_secs(120);
    while !read().contains("OXVIRT net-done") {
        if Instant::now() > deadline {
            panic!(
                "the guest did not finish its network checks; console:\n{}\n--- oxvirtd log ---\n{}",
                read(),
                d.log()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let text = read();
    for line in [
        "OXVIRT dhcp ok=1",
        "OXVIRT ping ok=1",
        "OXVIRT tcp reply=hello",
        // The driver took the control queue and set a new MAC address through it;
        // the receive filter let the replies to the new address in.
        "OXVIRT ctrlvq=1",
        "OXVIRT newmac ok=1",
        // Multiqueue: two pairs negotiated (MQ, feature bit 22) and in use.
        "OXVIRT cpus=2 mq=1 queues=rx-0 rx-1 tx-0 tx-1",
    ] {
        assert!(text.contains(line), "missing `{line}`; console:\n{text}");
    }
    assert_eq!(
        std::fs::read_to_string(&peers).unwrap_or_default().trim(),
        "10.200.0.1",
        "the outside server did not see the masqueraded address"
    );
    // 300 kB each way from each vCPU, intact (checksum and segmentation offloads):
    // what the guest sent as the server hashed it, what came back as the guest did.
    for cpu in ["0", "1"] {
        let line = text
            .lines()
            .find_map(|l| l.split(&format!("OXVIRT bulk cpu={cpu} ")).nth(1))
            .unwrap_or_else(|| panic!("no bulk line for cpu {cpu}; console:\n{text}"));
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(k))
                .unwrap_or_default()
        };
        assert!(
            field("want=").len() == 32
                && field("up=") == field("want=")
                && field("down=") == field("want="),
            "bulk transfer from cpu {cpu}: {line}"
        );
    }
    // Frames reached the guest on both receive queues: the tap steers a flow's
    // replies to the queue it came from, and each vCPU transmits on its own pair.
    let irqs = text
        .lines()
        .find_map(|l| l.split("OXVIRT rx-irqs ").nth(1))
        .unwrap_or_else(|| panic!("no rx-irqs line; console:\n{text}"));
    let count = |q: &str| -> u64 {
        irqs.split_whitespace()
            .find_map(|f| f.split_once(q).map(|(_, n)| n))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert!(
        count("input.0=") > 0 && count("input.1=") > 0,
        "both receive queues interrupt: {irqs}; console:\n{text}"
    );

    // domifaddr (source lease) and the network's leases agree.
    let addrs = d.virsh_ok(&["domifaddr", "netguest"]);
    let line = addrs
        .lines()
        .find(|l| l.contains(MAC))
        .unwrap_or_else(|| panic!("{addrs}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert!(f[0].starts_with("vnet") && f[2] == "ipv4", "{addrs}");
    assert!(
        f[3].starts_with("192.168.122.") && f[3].ends_with("/24"),
        "{addrs}"
    );
    let leases = d.virsh_ok(&["net-dhcp-leases", "default", "--mac", MAC]);
    assert!(leases.contains(f[3]), "{leases}");
    // D-Bus: Domain.InterfaceAddresses (source lease).
    let uuid = d.virsh_ok(&["domuuid", "netguest"]);
    let dom = format!(
        "/org/libvirt/QEMU/domain/_{}",
        uuid.trim().replace('-', "_")
    );
    let dbus = d.busctl(&[
        "call",
        "org.libvirt",
        &dom,
        "org.libvirt.Domain",
        "InterfaceAddresses",
        "uu",
        "0",
        "0",
    ]);
    let (addr, prefix) = f[3].split_once('/').unwrap();
    assert!(
        dbus.contains(MAC) && dbus.contains(&format!("0 \"{addr}\" {prefix}")),
        "{dbus}"
    );
    // Source arp: the host's neighbour table knows the guest (it pinged virbr0);
    // libvirt reports such addresses with prefix 0.
    let arp = d.virsh_ok(&["domifaddr", "netguest", "--source", "arp"]);
    let line = arp
        .lines()
        .find(|l| l.contains(MAC))
        .unwrap_or_else(|| panic!("{arp}"));
    let g: Vec<&str> = line.split_whitespace().collect();
    assert!(
        g[0] == f[0] && g[2] == "ipv4" && g[3] == format!("{addr}/0"),
        "{arp}"
    );
    let dbus = d.busctl(&[
        "call",
        "org.libvirt",
        &dom,
        "org.libvirt.Domain",
        "InterfaceAddresses",
        "uu",
        "2",
        "0",
    ]);
    assert!(
        dbus.contains(MAC) && dbus.contains(&format!("0 \"{addr}\" 0")),
        "{dbus}"
    );
    // No agent channel: libvirt's error for an agent that is not configured.
    let r = d.virsh(&["domifaddr", "netguest", "--source", "agent"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("argument unsupported: QEMU guest agent is not configured"),
        "{}",
        r.stderr
    );

    // A stopped network refuses the domain's start with libvirt's error.
    d.virsh_ok(&["destroy", "netguest"]);
    let ports = d.in_ns("ip -br link show master virbr0").stdout;
    assert!(!ports.contains("vnet"), "tap left on the bridge: {ports}");
    d.virsh_ok(&["net-destroy", "default"]);
    let r = d.virsh(&["start", "netguest"]);
    assert!(
        !r.ok && r.stderr.contains("network 'default' is not active"),
        "{}",
        r.stderr
    );
    let _ = server.kill();
    let _ = server.wait();
    let _ = echo.kill();
    let _ = echo.wait();
}

/// A TCP server in `ns` that reads what a client sends until it shuts its side
/// down, then answers with the MD5 of it (32 hex digits and a newline) followed by
/// the same bytes: a bulk transfer each way, checked at both ends.
fn md5_echo_server(ns: &str, addr: &str, port: u16) -> std::process::Child {
    let py = format!(
        "import socket,hashlib\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('{addr}',{port}))\ns.listen(4)\ns.settimeout(600)\n\
         while True:\n  c,a=s.accept()\n  c.settimeout(60)\n  d=b''\n\
         \x20 while True:\n    b=c.recv(65536)\n    if not b: break\n    d+=b\n\
         \x20 c.sendall(hashlib.md5(d).hexdigest().encode()+b'\\n'+d)\n  c.close()\n"
    );
    std::process::Command::new("ip")
        .args(["netns", "exec", ns, "/usr/bin/python3", "-c", &py])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 echo server")
}
