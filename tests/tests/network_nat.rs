//! The virtual network driver end to end, with no guest: oxvirtd runs inside a
//! private network namespace ("host"), Debian's virsh and python3-libvirt drive it,
//! and two more namespaces stand for a guest (a veth on the network's bridge, busybox
//! `udhcpc` as its DHCP client) and the "outside" (a TCP server behind the host's
//! uplink). All traffic stays in these namespaces; the host's own network is never
//! touched. Skips loudly without root, `ip`, `nft`, `dnsmasq` or busybox.

mod network_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use network_common::*;

#[test]
fn network_default_nat_dhcp_lifecycle() {
    const T: &str = "network_default_nat_dhcp_lifecycle";
    if !require_netns(T) {
        return;
    }
    let ns = Namespaces::new("nat", &["host", "guest", "out"]);
    let (host, guest, out) = (ns.get(0), ns.get(1), ns.get(2));
    // The "outside": 10.200.0.2 behind the host's uplink 10.200.0.1.
    sh(&format!(
        "ip link add up0 netns {host} type veth peer name up1 netns {out} && \
         ip -n {host} addr add 10.200.0.1/24 dev up0 && ip -n {host} link set up0 up && \
         ip -n {out} addr add 10.200.0.2/24 dev up1 && ip -n {out} link set up1 up"
    ));
    let mut d = NsDaemon::start(host);

    // Lifecycle events through python3-libvirt, recorded while virsh works.
    let (mut events, events_out) = listen_events(&d, "events1");

    // Bad input first: libvirt's errors, nothing left behind.
    let bad_range = d.file(
        "bad.xml",
        "<network><name>bad</name><ip address='10.9.0.1' prefix='24'><dhcp>\
         <range start='10.9.1.2' end='10.9.1.9'/></dhcp></ip></network>",
    );
    let r = d.virsh(&["net-define", bad_range.to_str().unwrap()]);
    assert!(
        !r.ok
            && r.stderr
                .contains("is not entirely within network 10.9.0.0/24"),
        "{}",
        r.stderr
    );
    let collide = d.file(
        "collide.xml",
        "<network><name>collide</name><bridge name='brc'/><forward/>\
         <ip address='10.200.0.1' prefix='24'/></network>",
    );
    d.virsh_ok(&["net-define", collide.to_str().unwrap()]);
    let r = d.virsh(&["net-start", "collide"]);
    assert!(
        !r.ok
            && r.stderr
                .contains("Network is already in use by interface up0"),
        "{}",
        r.stderr
    );
    sh(&format!("ip -n {host} link add taken0 type bridge"));
    let taken = d.file(
        "taken.xml",
        "<network><name>taken</name><bridge name='taken0'/><ip address='10.77.0.1' prefix='24'/></network>",
    );
    d.virsh_ok(&["net-define", taken.to_str().unwrap()]);
    let r = d.virsh(&["net-start", "taken"]);
    assert!(
        !r.ok && r.stderr.contains("bridge name 'taken0' already in use"),
        "{}",
        r.stderr
    );
    // dnsmasq cannot start: port 53 is held (no SO_REUSEADDR) in the host namespace.
    let mut port53 = std::process::Command::new("ip")
        .args(["netns", "exec", host, "/usr/bin/python3", "-c"])
        .arg(
            "import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             s.bind(('0.0.0.0',53))\nprint('bound',flush=True)\ntime.sleep(120)\n",
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 holding port 53");
    let mut bound = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(port53.stdout.take().unwrap()),
        &mut bound,
    )
    .unwrap();
    assert_eq!(bound.trim(), "bound");
    let dnsfail = d.file(
        "dnsfail.xml",
        "<network><name>dnsfail</name><bridge name='brdns'/><forward/>\
         <ip address='10.78.0.1' prefix='24'><dhcp><range start='10.78.0.2' end='10.78.0.9'/>\
         </dhcp></ip></network>",
    );
    d.virsh_ok(&["net-define", dnsfail.to_str().unwrap()]);
    let r = d.virsh(&["net-start", "dnsfail"]);
    let _ = port53.kill();
    let _ = port53.wait();
    assert!(
        !r.ok
            && r.stderr
                .contains("dnsmasq for network 'dnsfail' failed to start")
            && r.stderr.contains("Address already in use"),
        "{}",
        r.stderr
    );
    assert!(
        d.in_ns("ip link show brdns").stdout.is_empty(),
        "bridge left after dnsmasq failed"
    );
    let conf = d.dir.path().join("dnsmasq/dnsfail.conf");
    assert!(!conf.exists(), "dnsmasq config left after dnsmasq failed");
    assert!(
        // `[d]`: the pattern must not match the shell running pgrep.
        sh_run(&format!(
            "pgrep -af '[d]nsmasq --conf-file={}'",
            conf.display()
        ))
        .stdout
        .is_empty(),
        "a dnsmasq left running"
    );
    let tables = d.in_ns("nft list tables").stdout;
    assert!(
        !tables.contains("oxvirt_"),
        "stray table after failed starts: {tables}"
    );
    assert!(
        d.in_ns("ip link show brc").stdout.is_empty(),
        "half-made bridge left"
    );
    d.virsh_ok(&["net-undefine", "collide"]);
    d.virsh_ok(&["net-undefine", "taken"]);
    d.virsh_ok(&["net-undefine", "dnsfail"]);

    // Define and start the default network as the package ships it.
    let def = d.file("default.xml", DEFAULT_XML);
    d.virsh_ok(&["net-define", def.to_str().unwrap()]);
    d.virsh_ok(&["net-autostart", "default"]);
    d.virsh_ok(&["net-start", "default"]);
    let list = d.virsh_ok(&["net-list", "--all"]);
    assert!(
        list.lines().any(
            |l| l.split_whitespace().collect::<Vec<_>>() == ["default", "active", "yes", "yes"]
        ),
        "{list}"
    );
    let info = d.virsh_ok(&["net-info", "default"]);
    assert!(info.contains("Bridge:         virbr0"), "{info}");
    let xml = d.virsh_ok(&["net-dumpxml", "default"]);
    assert!(
        xml.contains("<forward mode='nat'>") && xml.contains("stp='on' delay='0'"),
        "{xml}"
    );
    // What we print validates against libvirt's own network schema.
    let dumped = d.file("dumped.xml", &xml);
    let v = Command::new("virt-xml-validate")
        .arg(&dumped)
        .arg("network")
        .output();
    if let Ok(v) = v {
        assert!(
            v.status.success(),
            "net-dumpxml does not validate: {}",
            String::from_utf8_lossy(&v.stderr)
        );
    }
    let link = d.in_ns("ip -d link show virbr0").stdout;
    // STP on; the kernel raises the 0 s delay to STP's 2 s minimum (libvirt's too).
    assert!(link.contains("stp_state 1"), "{link}");
    assert!(d
        .in_ns("ip -br addr show virbr0")
        .stdout
        .contains("192.168.122.1/24"));
    assert_eq!(
        d.in_ns("cat /proc/sys/net/ipv4/ip_forward").stdout.trim(),
        "1"
    );
    assert!(d
        .in_ns("nft list table inet oxvirt_virbr0")
        .stdout
        .contains("masquerade"));

    // A "guest": a veth whose host end is on virbr0; udhcpc gets a lease.
    sh(&format!(
        "ip link add vh0 netns {host} type veth peer name vg0 netns {guest} && \
         ip -n {host} link set vh0 master virbr0 && ip -n {host} link set vh0 up && \
         ip -n {guest} link set vg0 address 52:54:00:aa:00:01 && ip -n {guest} link set vg0 up"
    ));
    let script = d.file("udhcpc.sh", UDHCPC_SCRIPT);
    sh(&format!("chmod +x {}", script.display()));
    let dhcp = sh_run(&format!(
        "ip netns exec {guest} timeout 60 busybox udhcpc -i vg0 -n -q -f -t 20 -T 2 -s {}",
        script.display()
    ));
    assert!(
        dhcp.ok,
        "udhcpc got no lease: {}{}\n{}",
        dhcp.stdout,
        dhcp.stderr,
        d.log()
    );
    let addr = sh(&format!("ip -n {guest} -4 -br addr show vg0"));
    let ip = addr
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string();
    let last: u8 = ip.rsplit('.').next().unwrap_or("0").parse().unwrap_or(0);
    assert!(
        ip.starts_with("192.168.122.") && (2..=254).contains(&last),
        "{addr}"
    );
    let leases = d.virsh_ok(&["net-dhcp-leases", "default"]);
    assert!(
        leases.contains("52:54:00:aa:00:01") && leases.contains(&format!("{ip}/24")),
        "{leases}"
    );
    let one = d.virsh_ok(&["net-dhcp-leases", "default", "--mac", "52:54:00:aa:00:01"]);
    assert!(one.contains(&ip), "{one}");
    // The same lease through D-Bus (libvirt-dbus's GetDHCPLeases).
    let path = d.network_path("default");
    let dbus = d.busctl(&[
        "call",
        "org.libvirt",
        &path,
        "org.libvirt.Network",
        "GetDHCPLeases",
        "su",
        "52:54:00:aa:00:01",
        "0",
    ]);
    assert!(
        dbus.starts_with("a(sxisssuss) 1 \"virbr0\"") && dbus.contains(&format!("\"{ip}\" 24")),
        "{dbus}"
    );
    let active = d.busctl(&[
        "get-property",
        "org.libvirt",
        &path,
        "org.libvirt.Network",
        "Active",
    ]);
    assert_eq!(active.trim(), "b true");
    let none = d.virsh_ok(&["net-dhcp-leases", "default", "--mac", "52:54:00:aa:00:99"]);
    assert!(!none.contains("192.168.122."), "{none}");

    // NAT: the outside server sees the host's uplink address, and answers.
    let peers = d.dir.path().join("peers.txt");
    let mut server = tcp_server(out, "10.200.0.2", 8080, &peers);
    std::thread::sleep(Duration::from_millis(500));
    let reply = tcp_client(guest, "10.200.0.2", 8080);
    assert_eq!(reply.as_deref(), Ok("hello"), "guest → outside through NAT");
    let seen = std::fs::read_to_string(&peers).unwrap_or_default();
    assert_eq!(seen.trim(), "10.200.0.1", "not masqueraded");
    // Inbound from the outside is rejected.
    sh(&format!(
        "ip -n {out} route add 192.168.122.0/24 via 10.200.0.1"
    ));
    let inside = d.dir.path().join("inside.txt");
    let mut guest_server = tcp_server(guest, "0.0.0.0", 9090, &inside);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        tcp_client(out, &ip, 9090).is_err(),
        "inbound connection was not blocked"
    );
    assert!(std::fs::read_to_string(&inside)
        .unwrap_or_default()
        .is_empty());
    let _ = guest_server.kill();
    let _ = server.kill();
    let _ = guest_server.wait();
    let _ = server.wait();

    // net-update: a static host reaches dnsmasq's hosts file.
    d.virsh_ok(&[
        "net-update",
        "default",
        "add",
        "ip-dhcp-host",
        "<host mac='52:54:00:aa:00:02' name='vm2' ip='192.168.122.45'/>",
        "--live",
        "--config",
    ]);
    let hosts = std::fs::read_to_string(d.dir.path().join("dnsmasq/default.hostsfile")).unwrap();
    assert_eq!(hosts, "52:54:00:aa:00:02,192.168.122.45,vm2\n");
    assert!(d
        .virsh_ok(&["net-dumpxml", "default", "--inactive"])
        .contains("name='vm2'"));
    d.virsh_ok(&[
        "net-update",
        "default",
        "add",
        "dns-host",
        "<host ip='192.168.122.46'><hostname>dnsvm</hostname></host>",
        "--live",
        "--config",
    ]);
    let addn = std::fs::read_to_string(d.dir.path().join("dnsmasq/default.addnhosts")).unwrap();
    assert_eq!(addn, "192.168.122.46\tdnsvm\n");
    let r = d.virsh(&[
        "net-update",
        "default",
        "add",
        "ip-dhcp-range",
        "<range start='192.168.122.2' end='192.168.122.3'/>",
    ]);
    assert!(!r.ok && r.stderr.contains("not supported"), "{}", r.stderr);

    // The events so far (0 defined, 2 started); the listener's connection ends with
    // the daemon.
    assert_eq!(
        wait_events(&mut events, &events_out, 2),
        ["default 0", "default 2"],
        "network events"
    );

    // A daemon restart keeps the network running and finds it again.
    let pid_file = d.dir.path().join("run/networks/default.pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    d.stop();
    d.spawn();
    let info = d.virsh_ok(&["net-info", "default"]);
    assert!(info.contains("Active:         yes"), "{info}");
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        pid,
        "dnsmasq was replaced"
    );
    assert!(d.virsh_ok(&["net-dhcp-leases", "default"]).contains(&ip));
    let (mut events, events_out) = listen_events(&d, "events2");

    // net-destroy removes all of it.
    d.virsh_ok(&["net-destroy", "default"]);
    assert!(
        d.in_ns("ip link show virbr0").stdout.is_empty(),
        "bridge left behind"
    );
    assert!(
        !d.in_ns("nft list tables").stdout.contains("oxvirt_"),
        "table left behind"
    );
    let pid: i32 = pid.trim().parse().unwrap();
    wait_until("dnsmasq to exit", Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    });
    assert!(!pid_file.exists());
    d.virsh_ok(&["net-undefine", "default"]);
    assert!(!d.virsh_ok(&["net-list", "--all"]).contains("default"));

    assert_eq!(
        wait_events(&mut events, &events_out, 2),
        ["default 3", "default 1"],
        "network events (3 stopped, 1 undefined)"
    );
}
