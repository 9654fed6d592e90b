//! The virtual network driver (libvirt's `src/network/` beside the domain core):
//! network definitions stored like domains, and starting a network — its bridge,
//! addresses, firewall table and dnsmasq — and tearing all of it down again.
//!
//! | call | libvirt API |
//! |---|---|
//! | `list(flags)` | virConnectListAllNetworks |
//! | `define_xml` / `create_xml` | virNetworkDefineXML / virNetworkCreateXML |
//! | `start` / `destroy` / `undefine` | virNetworkCreate / Destroy / Undefine |
//! | `autostart` / `set_autostart` | virNetworkGet/SetAutostart |
//! | `xml_desc(flags)` / `bridge_name` | virNetworkGetXMLDesc / GetBridgeName |
//! | `dhcp_leases(mac)` | virNetworkGetDHCPLeases |
//! | `update(...)` | virNetworkUpdate (sections ip-dhcp-host and dns-host) |
//! | `subscribe()` | network lifecycle events |
//!
//! Files: the definition `DIR/NAME.xml`, autostart `DIR/autostart/NAME.xml`; dnsmasq's
//! configuration, hosts files and leases in `STATE/` ([`dnsmasq::Files`]); while
//! running, `RUN/NAME.xml` (the live definition: a restarted daemon finds the
//! network again from it) and `RUN/NAME.pid`.
//!
//! Starting follows libvirt's `networkStartNetworkVirtual`: route-collision check,
//! bridge (with MAC, MTU, STP, delay), firewall, addresses and link up, forwarding
//! sysctls, dnsmasq. Any failure undoes the steps already done, so nothing is left
//! behind: no half-made bridge, no stray table, no orphan dnsmasq.
//!
//! Operations are synchronous (they run `ip`, `nft`, `dnsmasq` and wait): front ends
//! call them from `spawn_blocking`.

pub mod arp;
pub mod bridge;
pub mod dnsmasq;
pub mod error;
pub mod firewall;
pub mod leases;
mod netupdate;
pub mod xml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::broadcast;
use uuid::Uuid;

pub use error::{Error, Result};
pub use leases::Lease;
pub use xml::Network;

use crate::core::fsutil;

/// `virNetworkEventLifecycleType`.
pub mod event {
    pub const DEFINED: i32 = 0;
    pub const UNDEFINED: i32 = 1;
    pub const STARTED: i32 = 2;
    pub const STOPPED: i32 = 3;
}

/// `virConnectListAllNetworksFlags`.
pub mod list {
    pub const INACTIVE: u32 = 1;
    pub const ACTIVE: u32 = 2;
    pub const PERSISTENT: u32 = 4;
    pub const TRANSIENT: u32 = 8;
    pub const AUTOSTART: u32 = 16;
    pub const NO_AUTOSTART: u32 = 32;
}

/// `virNetworkUpdateCommand`, `virNetworkUpdateSection`, `virNetworkUpdateFlags`.
pub mod update {
    pub const MODIFY: u32 = 1;
    pub const DELETE: u32 = 2;
    pub const ADD_LAST: u32 = 3;
    pub const ADD_FIRST: u32 = 4;
    pub const SECTION_IP_DHCP_HOST: u32 = 4;
    pub const SECTION_DNS_HOST: u32 = 10;
    pub const AFFECT_LIVE: u32 = 1;
    pub const AFFECT_CONFIG: u32 = 2;
}

/// A client's handle on a network (`remote_nonnull_network`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NetRef {
    pub name: String,
    pub uuid: Uuid,
}

/// A lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetEvent {
    pub net: NetRef,
    pub event: i32,
}

/// What a listing shows about one network.
#[derive(Debug, Clone)]
pub struct NetInfo {
    pub net: NetRef,
    pub active: bool,
    pub persistent: bool,
    pub autostart: bool,
}

#[derive(Debug, Clone)]
struct Entry {
    /// The persistent definition; `None` for a transient network.
    def: Option<Network>,
    /// The running definition; `None` while inactive.
    live: Option<Network>,
    autostart: bool,
}

impl Entry {
    fn current(&self) -> &Network {
        self.live
            .as_ref()
            .or(self.def.as_ref())
            .expect("a network entry has a definition")
    }

    fn net_ref(&self) -> NetRef {
        let n = self.current();
        NetRef {
            name: n.name.clone(),
            uuid: n.uuid.unwrap_or_default(),
        }
    }
}

/// The network driver. Cheap to clone.
#[derive(Clone)]
pub struct Networks {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    state: PathBuf,
    run: PathBuf,
    nets: Mutex<BTreeMap<String, Entry>>,
    events: broadcast::Sender<NetEvent>,
}

impl Networks {
    /// Loads the definitions in `dir`, finds networks still running from `run`
    /// (after a daemon restart) and, with `autostart`, starts the autostart ones.
    /// dnsmasq's files go to `state`.
    pub fn open(dir: &Path, state: &Path, run: &Path, autostart: bool) -> Result<Networks> {
        let mk =
            |d: &Path, mode| fsutil::create_dir(d, mode).map_err(|e| Error::System(e.to_string()));
        mk(dir, 0o700)?;
        mk(&dir.join("autostart"), 0o700)?;
        // dnsmasq, running as nobody, rereads its hosts files here on SIGHUP.
        mk(state, 0o755)?;
        mk(run, 0o700)?;
        let (events, _) = broadcast::channel(256);
        let n = Networks {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                state: state.to_path_buf(),
                run: run.to_path_buf(),
                nets: Mutex::default(),
                events,
            }),
        };
        n.load()?;
        if autostart {
            let names: Vec<String> = n
                .lock()
                .iter()
                .filter(|(_, e)| e.autostart && e.live.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            for name in names {
                if let Err(e) = n.start(&name) {
                    tracing::warn!(network = name, error = %e, "autostart failed");
                }
            }
        }
        Ok(n)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.inner.nets.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn load(&self) -> Result<()> {
        let mut nets = self.lock();
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::io("read", p, &e));
        for e in std::fs::read_dir(&self.inner.dir)
            .map_err(|e| Error::io("read", &self.inner.dir, &e))?
        {
            let p = e
                .map_err(|e| Error::io("read", &self.inner.dir, &e))?
                .path();
            if p.extension().is_none_or(|x| x != "xml") {
                continue;
            }
            match Network::parse(&read(&p)?) {
                Ok(mut def) => {
                    // A definition installed by the package (libvirt's default.xml)
                    // gets its UUID, MAC and bridge defaults on first load.
                    if def.uuid.is_none() || (def.owns_bridge() && def.mac.is_none()) {
                        let name = def.name.clone();
                        def.fill_defaults(|b| Self::bridge_taken(&nets, &name, b));
                        Self::write(&p, &def.to_xml(), 0o600)?;
                    }
                    let autostart = self.autostart_link(&def.name).exists();
                    nets.insert(
                        def.name.clone(),
                        Entry {
                            def: Some(def),
                            live: None,
                            autostart,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "skipping network definition")
                }
            }
        }
        // Running networks: status files from before a daemon restart.
        for e in std::fs::read_dir(&self.inner.run)
            .map_err(|e| Error::io("read", &self.inner.run, &e))?
        {
            let p = e
                .map_err(|e| Error::io("read", &self.inner.run, &e))?
                .path();
            if p.extension().is_none_or(|x| x != "xml") {
                continue;
            }
            let Ok(live) = Network::parse(&read(&p)?) else {
                continue;
            };
            let alive = !live.owns_bridge() || live.bridge.as_deref().is_some_and(bridge::exists);
            if !alive {
                tracing::info!(
                    network = live.name,
                    "network went away while the daemon was down"
                );
                self.teardown(&live);
                continue;
            }
            // dnsmasq may have died meanwhile: start it again.
            if dnsmasq::needed(&live) && self.dnsmasq_pid(&live).is_none() {
                if let Err(e) = self.start_dnsmasq(&live) {
                    tracing::warn!(network = live.name, error = %e, "restarting dnsmasq failed");
                }
            }
            tracing::info!(network = live.name, "found running network");
            let name = live.name.clone();
            match nets.get_mut(&name) {
                Some(e) => e.live = Some(live),
                None => {
                    nets.insert(
                        name,
                        Entry {
                            def: None,
                            live: Some(live),
                            autostart: false,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Network events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NetEvent> {
        self.inner.events.subscribe()
    }

    fn emit(&self, net: NetRef, event: i32) {
        let _ = self.inner.events.send(NetEvent { net, event });
    }

    fn config_file(&self, name: &str) -> PathBuf {
        self.inner.dir.join(format!("{name}.xml"))
    }

    fn autostart_link(&self, name: &str) -> PathBuf {
        self.inner.dir.join("autostart").join(format!("{name}.xml"))
    }

    fn status_file(&self, name: &str) -> PathBuf {
        self.inner.run.join(format!("{name}.xml"))
    }

    fn files(&self, name: &str) -> dnsmasq::Files {
        dnsmasq::Files::new(&self.inner.state, &self.inner.run, name)
    }

    fn write(path: &Path, text: &str, mode: u32) -> Result<()> {
        fsutil::write_atomic(path, text.as_bytes(), mode).map_err(|e| Error::System(e.to_string()))
    }

    // ---- lookups and listing ----

    /// Every network matching libvirt's listing `flags`.
    pub fn list(&self, flags: u32) -> Result<Vec<NetInfo>> {
        use list::*;
        Error::check_flags(
            flags,
            INACTIVE | ACTIVE | PERSISTENT | TRANSIENT | AUTOSTART | NO_AUTOSTART,
            "virConnectListAllNetworks",
        )?;
        let pick = |on: u32, off: u32, v: bool| {
            let f = flags & (on | off);
            f == 0 || f == (on | off) || (v && f == on) || (!v && f == off)
        };
        Ok(self
            .lock()
            .values()
            .map(|e| NetInfo {
                net: e.net_ref(),
                active: e.live.is_some(),
                persistent: e.def.is_some(),
                autostart: e.autostart,
            })
            .filter(|i| {
                pick(ACTIVE, INACTIVE, i.active)
                    && pick(PERSISTENT, TRANSIENT, i.persistent)
                    && pick(AUTOSTART, NO_AUTOSTART, i.autostart)
            })
            .collect())
    }

    pub fn lookup_by_name(&self, name: &str) -> Result<NetRef> {
        self.lock()
            .get(name)
            .map(Entry::net_ref)
            .ok_or_else(|| Error::no_network_name(name))
    }

    pub fn lookup_by_uuid(&self, uuid: &Uuid) -> Result<NetRef> {
        self.lock()
            .values()
            .map(Entry::net_ref)
            .find(|r| r.uuid == *uuid)
            .ok_or_else(|| Error::no_network_uuid(uuid))
    }

    fn with<T>(&self, name: &str, f: impl FnOnce(&mut Entry) -> Result<T>) -> Result<T> {
        let mut nets = self.lock();
        let e = nets
            .get_mut(name)
            .ok_or_else(|| Error::no_network_name(name))?;
        f(e)
    }

    /// The info of one network.
    pub fn info(&self, name: &str) -> Result<NetInfo> {
        self.with(name, |e| {
            Ok(NetInfo {
                net: e.net_ref(),
                active: e.live.is_some(),
                persistent: e.def.is_some(),
                autostart: e.autostart,
            })
        })
    }

    /// virNetworkGetXMLDesc: the live definition, or with flag 1 (INACTIVE) the
    /// persistent one.
    pub fn xml_desc(&self, name: &str, flags: u32) -> Result<String> {
        Error::check_flags(flags, 1, "virNetworkGetXMLDesc")?;
        self.with(name, |e| {
            let n = if flags & 1 != 0 {
                e.def.as_ref().unwrap_or(e.current())
            } else {
                e.current()
            };
            Ok(n.to_xml())
        })
    }

    pub fn bridge_name(&self, name: &str) -> Result<String> {
        self.with(name, |e| {
            e.current().bridge.clone().ok_or_else(|| {
                Error::Internal(format!("network '{name}' does not have a bridge name."))
            })
        })
    }

    pub fn autostart(&self, name: &str) -> Result<bool> {
        self.with(name, |e| Ok(e.autostart))
    }

    // ---- catalog ----

    fn bridge_taken(nets: &BTreeMap<String, Entry>, except: &str, br: &str) -> bool {
        nets.values().any(|e| {
            let n = e.current();
            n.name != except && n.owns_bridge() && n.bridge.as_deref() == Some(br)
        })
    }

    /// Checks a new definition against the others and fills its defaults.
    fn admit(nets: &BTreeMap<String, Entry>, mut def: Network) -> Result<Network> {
        if let Some(old) = nets.get(&def.name) {
            let old_uuid = old.net_ref().uuid;
            match def.uuid {
                Some(u) if u != old_uuid => {
                    return Err(Error::OperationFailed(format!(
                        "network '{}' is already defined with uuid {old_uuid}",
                        def.name
                    )))
                }
                _ => def.uuid = Some(old_uuid),
            }
            // A redefinition keeps the generated parts of the old one.
            let cur = old.def.as_ref().unwrap_or(old.current());
            if def.bridge.is_none() && def.owns_bridge() {
                def.bridge = cur.bridge.clone();
            }
            if def.mac.is_none() {
                def.mac = cur.mac.clone();
            }
        } else if let Some(u) = def.uuid {
            if let Some(other) = nets.values().find(|e| e.net_ref().uuid == u) {
                return Err(Error::OperationFailed(format!(
                    "network '{}' is already defined with uuid {u}",
                    other.net_ref().name
                )));
            }
        }
        if def.owns_bridge() {
            if let Some(b) = &def.bridge {
                if !b.contains("%d") && Self::bridge_taken(nets, &def.name, b) {
                    return Err(Error::OperationFailed(format!(
                        "bridge name '{b}' already in use."
                    )));
                }
            }
        }
        let name = def.name.clone();
        def.fill_defaults(|b| Self::bridge_taken(nets, &name, b) || bridge::exists(b));
        if def.owns_bridge() && def.bridge.is_none() {
            return Err(Error::Internal("no free bridge name (virbr0-255)".into()));
        }
        Ok(def)
    }

    /// virNetworkDefineXML.
    pub fn define_xml(&self, xml: &str) -> Result<NetRef> {
        let def = Network::parse(xml)?;
        let mut nets = self.lock();
        let def = Self::admit(&nets, def)?;
        Self::write(&self.config_file(&def.name), &def.to_xml(), 0o600)?;
        let r = NetRef {
            name: def.name.clone(),
            uuid: def.uuid.unwrap_or_default(),
        };
        match nets.get_mut(&def.name) {
            Some(e) => e.def = Some(def),
            None => {
                nets.insert(
                    def.name.clone(),
                    Entry {
                        def: Some(def),
                        live: None,
                        autostart: false,
                    },
                );
            }
        }
        drop(nets);
        self.emit(r.clone(), event::DEFINED);
        Ok(r)
    }

    /// virNetworkCreateXML: a transient network, started at once.
    pub fn create_xml(&self, xml: &str) -> Result<NetRef> {
        let def = Network::parse(xml)?;
        let mut nets = self.lock();
        if nets.contains_key(&def.name) {
            return Err(Error::OperationFailed(format!(
                "network '{}' already exists",
                def.name
            )));
        }
        let def = Self::admit(&nets, def)?;
        self.bring_up(&def)?;
        let r = NetRef {
            name: def.name.clone(),
            uuid: def.uuid.unwrap_or_default(),
        };
        nets.insert(
            def.name.clone(),
            Entry {
                def: None,
                live: Some(def),
                autostart: false,
            },
        );
        drop(nets);
        self.emit(r.clone(), event::STARTED);
        Ok(r)
    }

    /// virNetworkUndefine: an active network becomes transient.
    pub fn undefine(&self, name: &str) -> Result<()> {
        let mut nets = self.lock();
        let e = nets
            .get_mut(name)
            .ok_or_else(|| Error::no_network_name(name))?;
        if e.def.is_none() {
            return Err(Error::OperationInvalid(format!(
                "network '{name}' is not persistent"
            )));
        }
        let r = e.net_ref();
        fsutil::remove_file(&self.config_file(name)).map_err(|e| Error::System(e.to_string()))?;
        fsutil::remove_file(&self.autostart_link(name))
            .map_err(|e| Error::System(e.to_string()))?;
        e.def = None;
        e.autostart = false;
        if e.live.is_none() {
            nets.remove(name);
        }
        drop(nets);
        self.emit(r, event::UNDEFINED);
        Ok(())
    }

    /// virNetworkSetAutostart.
    pub fn set_autostart(&self, name: &str, on: bool) -> Result<()> {
        let link = self.autostart_link(name);
        let target = self.config_file(name);
        self.with(name, |e| {
            if e.def.is_none() {
                return Err(Error::OperationInvalid(
                    "cannot set autostart for transient network".into(),
                ));
            }
            if on && !e.autostart {
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&target, &link)
                    .map_err(|err| Error::io("create symlink", &link, &err))?;
            } else if !on {
                fsutil::remove_file(&link).map_err(|e| Error::System(e.to_string()))?;
            }
            e.autostart = on;
            Ok(())
        })
    }

    // ---- lifecycle ----

    /// virNetworkCreate.
    pub fn start(&self, name: &str) -> Result<()> {
        let mut nets = self.lock();
        let e = nets
            .get_mut(name)
            .ok_or_else(|| Error::no_network_name(name))?;
        if e.live.is_some() {
            return Err(Error::OperationInvalid("network is already active".into()));
        }
        let def = e.def.clone().expect("an inactive network is persistent");
        if def.owns_bridge() {
            if let Some(b) = &def.bridge {
                if Self::bridge_taken(&nets, name, b) {
                    return Err(Error::OperationFailed(format!(
                        "bridge name '{b}' already in use."
                    )));
                }
            }
        }
        self.bring_up(&def)?;
        let e = nets.get_mut(name).expect("entry still there");
        e.live = Some(def);
        let r = e.net_ref();
        drop(nets);
        self.emit(r, event::STARTED);
        Ok(())
    }

    /// virNetworkDestroy.
    pub fn destroy(&self, name: &str) -> Result<()> {
        let mut nets = self.lock();
        let e = nets
            .get_mut(name)
            .ok_or_else(|| Error::no_network_name(name))?;
        let Some(live) = e.live.take() else {
            return Err(Error::OperationInvalid(format!(
                "network '{name}' is not active"
            )));
        };
        let r = e.net_ref_of(&live);
        if e.def.is_none() {
            nets.remove(name);
        }
        drop(nets);
        self.teardown(&live);
        self.emit(r, event::STOPPED);
        Ok(())
    }

    /// Makes everything a running network has; on failure undoes what was made.
    fn bring_up(&self, def: &Network) -> Result<()> {
        if !def.owns_bridge() {
            let b = def.bridge.as_deref().unwrap_or_default();
            if !bridge::exists(b) {
                return Err(Error::OperationFailed(format!(
                    "bridge '{b}' of network '{}' does not exist on this host",
                    def.name
                )));
            }
            return Self::write(&self.status_file(&def.name), &def.to_xml(), 0o644);
        }
        bridge::check_route_collision(def)?;
        bridge::create(def)?;
        let br = def.bridge.clone().unwrap_or_default();
        let undo = |e: Error| {
            let _ = firewall::remove(&br);
            let _ = bridge::remove(&br);
            self.remove_files(&def.name);
            e
        };
        firewall::add(def).map_err(undo)?;
        if def.forward.is_some() {
            bridge::enable_forwarding(def).map_err(undo)?;
        }
        if dnsmasq::needed(def) {
            self.start_dnsmasq(def).map_err(undo)?;
        }
        Self::write(&self.status_file(&def.name), &def.to_xml(), 0o644).map_err(|e| {
            self.stop_dnsmasq(def);
            undo(e)
        })
    }

    /// Removes everything a running network has; best effort (each step logs).
    fn teardown(&self, live: &Network) {
        if live.owns_bridge() {
            self.stop_dnsmasq(live);
            if let Some(br) = &live.bridge {
                if let Err(e) = firewall::remove(br) {
                    tracing::warn!(network = live.name, error = %e, "removing the firewall table");
                }
                if let Err(e) = bridge::remove(br) {
                    tracing::warn!(network = live.name, error = %e, "removing the bridge");
                }
            }
        }
        self.remove_files(&live.name);
    }

    fn remove_files(&self, name: &str) {
        let f = self.files(name);
        for p in [
            f.conf,
            f.pid,
            f.hostsfile,
            f.addnhosts,
            f.leases,
            self.status_file(name),
        ] {
            let _ = std::fs::remove_file(p);
        }
    }

    fn write_hosts(&self, def: &Network) -> Result<()> {
        let f = self.files(&def.name);
        Self::write(&f.hostsfile, &dnsmasq::hostsfile(def), 0o644)?;
        Self::write(&f.addnhosts, &dnsmasq::addnhosts(def), 0o644)
    }

    fn start_dnsmasq(&self, def: &Network) -> Result<()> {
        let f = self.files(&def.name);
        self.write_hosts(def)?;
        Self::write(&f.conf, &dnsmasq::conf(def, &f), 0o644)?;
        let _ = std::fs::remove_file(&f.pid);
        // dnsmasq forks into the background once it is set up: its exit status says
        // whether it started, its stderr why not.
        let out = Command::new("dnsmasq")
            .arg(format!("--conf-file={}", f.conf.display()))
            .env("VIR_BRIDGE_NAME", def.bridge.as_deref().unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| {
                Error::System(format!(
                    "cannot run dnsmasq (Debian package dnsmasq-base): {e}"
                ))
            })?;
        if !out.status.success() {
            return Err(Error::System(format!(
                "dnsmasq for network '{}' failed to start: {}",
                def.name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // The pid file is written before the parent exits.
        if self.dnsmasq_pid(def).is_none() {
            return Err(Error::Internal(format!(
                "dnsmasq for network '{}' started but left no pid in '{}'",
                def.name,
                f.pid.display()
            )));
        }
        Ok(())
    }

    /// The pid of the network's running dnsmasq (its command line names our conf).
    fn dnsmasq_pid(&self, def: &Network) -> Option<i32> {
        let f = self.files(&def.name);
        let pid: i32 = std::fs::read_to_string(&f.pid).ok()?.trim().parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let conf = format!("--conf-file={}", f.conf.display());
        String::from_utf8_lossy(&cmdline)
            .split('\0')
            .any(|a| a == conf)
            .then_some(pid)
    }

    fn stop_dnsmasq(&self, def: &Network) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        if let Some(pid) = self.dnsmasq_pid(def) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            for _ in 0..50 {
                if kill(Pid::from_raw(pid), None).is_err() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }

    // ---- leases, updates, domains ----

    /// virNetworkGetDHCPLeases, optionally for one MAC.
    pub fn dhcp_leases(&self, name: &str, mac: Option<&str>) -> Result<Vec<Lease>> {
        let live = self.with(name, |e| Ok(e.live.clone()))?;
        let Some(live) = live else {
            return Ok(Vec::new());
        };
        let text = std::fs::read_to_string(self.files(name).leases).unwrap_or_default();
        let br = live.bridge.clone().unwrap_or_default();
        let mut v = leases::parse(&text, &br, |a| {
            live.ips
                .iter()
                .find(|i| i.contains(a))
                .map_or(0, |i| u32::from(i.prefix))
        });
        if let Some(m) = mac {
            v.retain(|l| l.mac.as_deref().is_some_and(|x| x.eq_ignore_ascii_case(m)));
        }
        Ok(v)
    }

    /// The bridge a domain's `<interface type='network'>` joins; the network must
    /// be active (libvirt: "network 'x' is not active").
    pub fn bridge_for_domain(&self, name: &str) -> Result<String> {
        self.with(name, |e| {
            let live = e.live.as_ref().ok_or_else(|| {
                Error::OperationInvalid(format!("network '{name}' is not active"))
            })?;
            live.bridge
                .clone()
                .ok_or_else(|| Error::Internal(format!("network '{name}' has no bridge")))
        })
    }

    /// virNetworkUpdate for `<dhcp><host>` (section 4) and `<dns><host>` (section
    /// 10): add, delete or modify a static host in the live and/or persistent
    /// definition; dnsmasq rereads its hosts files (SIGHUP). Other sections answer
    /// "not supported".
    pub fn update(
        &self,
        name: &str,
        command: u32,
        section: u32,
        parent: i32,
        xml: &str,
        flags: u32,
    ) -> Result<()> {
        use update::*;
        Error::check_flags(flags, AFFECT_LIVE | AFFECT_CONFIG, "virNetworkUpdate")?;
        let change = netupdate::Change::parse(section, xml)?;
        let mut nets = self.lock();
        let e = nets
            .get_mut(name)
            .ok_or_else(|| Error::no_network_name(name))?;
        // AFFECT_CURRENT (0): live when active, else config.
        let (live, config) = match flags {
            0 => (e.live.is_some(), e.live.is_none()),
            f => (f & AFFECT_LIVE != 0, f & AFFECT_CONFIG != 0),
        };
        if live && e.live.is_none() {
            return Err(Error::OperationInvalid("network is not running".into()));
        }
        if config && e.def.is_none() {
            return Err(Error::OperationInvalid(
                "cannot change persistent config of a transient network".into(),
            ));
        }
        let mut new_def = e.def.clone();
        let mut new_live = e.live.clone();
        if config {
            change.apply(new_def.as_mut().expect("checked"), command, parent, xml)?;
        }
        if live {
            change.apply(new_live.as_mut().expect("checked"), command, parent, xml)?;
        }
        if config {
            let d = new_def.as_ref().expect("checked");
            Self::write(&self.config_file(name), &d.to_xml(), 0o600)?;
        }
        if live {
            let l = new_live.as_ref().expect("checked");
            Self::write(&self.status_file(name), &l.to_xml(), 0o644)?;
            self.write_hosts(l)?;
            if let Some(pid) = self.dnsmasq_pid(l) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGHUP,
                );
            }
        }
        e.def = new_def;
        e.live = new_live;
        Ok(())
    }
}

impl Entry {
    fn net_ref_of(&self, n: &Network) -> NetRef {
        NetRef {
            name: n.name.clone(),
            uuid: n.uuid.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests;
