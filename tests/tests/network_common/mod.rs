//! Shared harness of the network tests: network namespaces made for one test,
//! oxvirtd running inside one of them, TCP and DHCP helpers. All traffic stays in the
//! namespaces; the host's own network is never touched.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxvirt_tests::bin_path;
use oxvirt_tests::cmd::Run;
use oxvirt_tests::host::skip;

pub const DEFAULT_XML: &str = include_str!("../../../packaging/networks/default.xml");

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
pub struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    pub fn new(tag: &str, roles: &[&str]) -> Namespaces {
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

    pub fn get(&self, role: usize) -> &str {
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
pub fn sh(cmd: &str) -> String {
    let r = sh_run(cmd);
    assert!(r.ok, "`{cmd}` failed:\n{}{}", r.stdout, r.stderr);
    r.stdout
}

pub fn sh_run(cmd: &str) -> Run {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("running sh")
        .into()
}

/// oxvirtd (with its own D-Bus daemon) inside namespace `ns`.
pub struct NsDaemon {
    pub dir: tempfile::TempDir,
    pub ns: String,
    daemon: Option<Child>,
    dbus: Child,
}

impl NsDaemon {
    pub fn start(ns: &str) -> NsDaemon {
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

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    pub fn spawn(&mut self) {
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
    pub fn stop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
    }

    pub fn uri(&self) -> String {
        format!("qemu+unix:///system?socket={}", self.socket().display())
    }

    pub fn virsh(&self, args: &[&str]) -> Run {
        Command::new("virsh")
            .arg("-c")
            .arg(self.uri())
            .args(args)
            .output()
            .expect("virsh")
            .into()
    }

    pub fn virsh_ok(&self, args: &[&str]) -> String {
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

    /// `busctl` on the daemon's private bus; panics with its output on failure.
    pub fn busctl(&self, args: &[&str]) -> String {
        let r: Run = Command::new("busctl")
            .arg(format!(
                "--address=unix:path={}",
                self.dir.path().join("bus").display()
            ))
            .args(args)
            .output()
            .expect("busctl")
            .into();
        assert!(r.ok, "busctl {args:?} failed: {}{}", r.stdout, r.stderr);
        r.stdout
    }

    /// The D-Bus object path of a network (libvirt-dbus's form).
    pub fn network_path(&self, name: &str) -> String {
        let uuid = self.virsh_ok(&["net-uuid", name]);
        format!(
            "/org/libvirt/QEMU/network/_{}",
            uuid.trim().replace('-', "_")
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("oxvirtd.log")).unwrap_or_default()
    }

    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs `cmd` inside the daemon's namespace.
    pub fn in_ns(&self, cmd: &str) -> Run {
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

pub fn wait_for(path: &Path, what: &str) {
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
pub const UDHCPC_SCRIPT: &str = "#!/bin/sh\ncase \"$1\" in bound|renew)\n  \
    busybox ip addr add \"$ip/$mask\" dev \"$interface\"\n  \
    busybox ip route replace default via \"$router\" dev \"$interface\";;\nesac\nexit 0\n";

/// A TCP server in `ns` on `addr:port` that writes each client's address to `out`.
pub fn tcp_server(ns: &str, addr: &str, port: u16, out: &Path) -> Child {
    let py = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('{addr}',{port}))\ns.listen(4)\ns.settimeout(600)\n\
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
pub fn tcp_client(ns: &str, addr: &str, port: u16) -> Result<String, String> {
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
pub fn listen_events(d: &NsDaemon, name: &str) -> (Child, PathBuf) {
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
pub fn wait_events(child: &mut Child, out: &Path, n: usize) -> Vec<String> {
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

pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Links namespace `host` to `out` by a veth: the host's uplink `up0` is 10.200.0.1/24,
/// the outside's `up1` 10.200.0.2/24 (where the tests' TCP servers listen).
pub fn uplink(host: &str, out: &str) {
    sh(&format!(
        "ip link add up0 netns {host} type veth peer name up1 netns {out} && \
         ip -n {host} addr add 10.200.0.1/24 dev up0 && ip -n {host} link set up0 up && \
         ip -n {out} addr add 10.200.0.2/24 dev up1 && ip -n {out} link set up1 up"
    ));
}
