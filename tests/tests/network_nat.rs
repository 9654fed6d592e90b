//! The virtual network driver end to end, with no guest: oxvirtd runs inside a
//! private network namespace ("host"), Debian's virsh and python3-libvirt drive it,
//! and two more namespaces stand for a guest (a veth on the network's bridge, busybox
//! `udhcpc` as its DHCP client) and the "outside" (a TCP server behind the host's
//! uplink). All traffic stays in these namespaces; the host's own network is never
//! touched. Skips loudly without root, `ip`, `nft`, `dnsmasq` or busybox.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxvirt_tests::bin_path;
use oxvirt_tests::cmd::Run;
use oxvirt_tests::host::skip;

const DEFAULT_XML: &str = include_str!("../../packaging/networks/default.xml");

/// Whether this host can run the test; prints SKIPPED with the reason if not.
pub fn require_netns(test: &str) -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        skip(
            test,
            "needs root for network namespaces, bridges and nftables",
        );
        return false;
    }
    for (tool, pkg) in [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("dnsmasq", "dnsmasq-base"),
        ("busybox", "busybox-static"),
        ("virsh", "libvirt-clients"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            skip(test, &format!("'{tool}' not found (Debian package {pkg})"));
            return false;
        }
    }
    true
}

/// Network namespaces made for one test, deleted (with everything in them) on drop.
struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    fn new(tag: &str, roles: &[&str]) -> Namespaces {
        let names: Vec<String> = roles
            .iter()
            .map(|r| format!("oxv-{tag}-{r}-{}", std::process::id()))
            .collect();
        for n in &names {
            sh(&format!("ip netns add {n}"));
            sh(&format!("ip -n {n} link set lo up"));
        }
        Namespaces { names }
    }

    fn get(&self, role: usize) -> &str {
        &self.names[role]
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            // Kills what still runs there (dnsmasq after a failed test), then the netns.
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "ip netns pids {n} | xargs -r kill -9; ip netns del {n}"
                ))
                .status();
        }
    }
}

/// Runs a shell command; panics with its output when it fails.
fn sh(cmd: &str) -> String {
    let r = sh_run(cmd);
    assert!(r.ok, "`{cmd}` failed:\n{}{}", r.stdout, r.stderr);
    r.stdout
}

fn sh_run(cmd: &str) -> Run {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("running sh")
        .into()
}

/// oxvirtd (with its own D-Bus daemon) inside namespace `ns`.
struct NsDaemon {
    dir: tempfile::TempDir,
    ns: String,
    daemon: Option<Child>,
    dbus: Child,
}

impl NsDaemon {
    fn start(ns: &str) -> NsDaemon {
        let dir = tempfile::Builder::new()
            .prefix("oxvirt-net-")
            .tempdir()
            .unwrap();
        // dnsmasq drops to `nobody` and rereads its hosts files below here.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let bus = dir.path().join("bus");
        let dbus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address=unix:path={}", bus.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        wait_for(&bus, "dbus-daemon");
        let socket = dir.path().join("sock");
        oxvirt_tests::oxvirtd::write_config(dir.path(), &bus, true, &socket);
        let mut d = NsDaemon {
            dir,
            ns: ns.to_string(),
            daemon: None,
            dbus,
        };
        d.spawn();
        d
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("oxvirtd.log"))
            .unwrap();
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(bin_path("oxvirtd"))
            .arg("--system")
            .arg("--config")
            .arg(self.dir.path().join("oxvirtd.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting oxvirtd");
        self.daemon = Some(child);
        wait_for(&self.socket(), "oxvirtd");
    }

    /// Stops the daemon (SIGTERM: running networks keep running).
    fn stop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    fn uri(&self) -> String {
        format!("qemu+unix:///system?socket={}", self.socket().display())
    }

    fn virsh(&self, args: &[&str]) -> Run {
        Command::new("virsh")
            .arg("-c")
            .arg(self.uri())
            .args(args)
            .output()
            .expect("virsh")
            .into()
    }

    fn virsh_ok(&self, args: &[&str]) -> String {
        let r = self.virsh(args);
        assert!(
            r.ok,
            "virsh {args:?} failed: {}{}\n--- oxvirtd log ---\n{}",
            r.stdout,
            r.stderr,
            self.log()
        );
        r.stdout
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("oxvirtd.log")).unwrap_or_default()
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs `cmd` inside the daemon's namespace.
    fn in_ns(&self, cmd: &str) -> Run {
        sh_run(&format!("ip netns exec {} sh -c '{cmd}'", self.ns))
    }
}

impl Drop for NsDaemon {
    fn drop(&mut self) {
        self.stop();
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}

fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{what} did not create {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
}

/// The udhcpc script: configure the lease's address and default route.
const UDHCPC_SCRIPT: &str = "#!/bin/sh\ncase \"$1\" in bound|renew)\n  \
    busybox ip addr add \"$ip/$mask\" dev \"$interface\"\n  \
    busybox ip route replace default via \"$router\" dev \"$interface\";;\nesac\nexit 0\n";

/// A TCP server in `ns` on `addr:port` that writes each client's address to `out`.
fn tcp_server(ns: &str, addr: &str, port: u16, out: &Path) -> Child {
    let py = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('{addr}',{port}))\ns.listen(4)\ns.settimeout(60)\n\
         while True:\n  c,a=s.accept()\n  open('{out}','a').write(a[0]+'\\n')\n  c.sendall(b'hello\\n')\n  c.close()\n",
        out = out.display()
    );
    Command::new("ip")
        .args(["netns", "exec", ns, "/usr/bin/python3", "-c", &py])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 server")
}

/// Connects from `ns` to `addr:port` and returns what the server said, or the error.
fn tcp_client(ns: &str, addr: &str, port: u16) -> Result<String, String> {
    let py = format!(
        "import socket\nc=socket.create_connection(('{addr}',{port}),timeout=5)\n\
         print(c.recv(100).decode().strip())\n"
    );
    let r: Run = Command::new("ip")
        .args(["netns", "exec", ns, "/usr/bin/python3", "-c", &py])
        .output()
        .expect("python3 client")
        .into();
    if r.ok {
        Ok(r.stdout.trim().to_string())
    } else {
        Err(r.stderr)
    }
}

/// A python3-libvirt client recording network lifecycle events of every network in
/// `DIR/name.txt` as `NAME EVENT` lines; returns once it has registered.
fn listen_events(d: &NsDaemon, name: &str) -> (Child, PathBuf) {
    let out = d.dir.path().join(format!("{name}.txt"));
    let script = d.file(
        &format!("{name}.py"),
        &format!(
            "import libvirt, time\nlibvirt.virEventRegisterDefaultImpl()\n\
             c=libvirt.open('{uri}')\nf=open('{out}','w')\n\
             def cb(conn, net, event, detail, opaque):\n  f.write('%s %d\\n' % (net.name(), event)); f.flush()\n\
             c.networkEventRegisterAny(None, libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE, cb, None)\n\
             f.write('ready\\n'); f.flush()\nend=time.time()+120\n\
             while time.time()<end:\n  libvirt.virEventRunDefaultImpl()\n",
            uri = d.uri(),
            out = out.display()
        ),
    );
    let child = Command::new("/usr/bin/python3")
        .arg(&script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3-libvirt event listener");
    wait_until("the event listener", Duration::from_secs(30), || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("ready"))
    });
    (child, out)
}

/// The `default` network's events once `n` have arrived (the listener is stopped).
fn wait_events(child: &mut Child, out: &Path, n: usize) -> Vec<String> {
    let read = || -> Vec<String> {
        std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("default "))
            .map(str::to_string)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while read().len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    read()
}

fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

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
