//! libvirt's guest-agent-backed domain calls, answered through the QEMU guest agent
//! on the domain's `org.qemu.guest_agent.0` channel ([`super::agent`] speaks the
//! protocol): interface addresses, filesystems, guest info, time, user passwords,
//! guest vCPUs, shutdown/reboot by the agent, and virsh's `qemu-agent-command`
//! passthrough. Each call maps the agent's answer the way libvirt 9.0's
//! `qemu_agent.c` does, and fails with libvirt's errors: "QEMU guest agent is not
//! configured" without a channel, "Guest agent is not responding: QEMU guest agent is
//! not connected" when no agent answers the handshake.
//!
//! The channel's connected state (`<target state=…>` in the live XML and the
//! AGENT_LIFECYCLE event) follows the guest opening and closing its port (the VMM's
//! `VSERPORT_CHANGE`, as libvirt reads QEMU's), and what the handshakes see: an agent
//! that answers is connected, one that stays silent is not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain_xml::CharType;
use serde_json::{json, Value};
use uuid::Uuid;

use super::agent::{command_name, Agent, AgentError, COMMAND_TIMEOUT};
use super::definition::Definition;
use super::event::Event;
use super::netresolve::InterfaceAddrs;
use super::runtime::RuntimeDir;
use super::stats::StatValue;
use super::{Core, Error, Result};

/// The target name of the QEMU guest agent's channel.
pub const AGENT_CHANNEL: &str = "org.qemu.guest_agent.0";

/// `virConnectDomainEventAgentLifecycleState` / `…Reason`.
pub mod lifecycle {
    pub const CONNECTED: i32 = 1;
    pub const DISCONNECTED: i32 = 2;
    pub const REASON_UNKNOWN: i32 = 0;
}

/// `virDomainGuestInfoTypes`.
pub mod info {
    pub const USERS: u32 = 1 << 0;
    pub const OS: u32 = 1 << 1;
    pub const TIMEZONE: u32 = 1 << 2;
    pub const HOSTNAME: u32 = 1 << 3;
    pub const FILESYSTEM: u32 = 1 << 4;
    pub const DISKS: u32 = 1 << 5;
    pub const INTERFACES: u32 = 1 << 6;
    /// The types answered here.
    pub const SERVED: u32 = USERS | OS | TIMEZONE | HOSTNAME | FILESYSTEM | DISKS | INTERFACES;
}

/// `virDomainQemuAgentCommandTimeoutValues`.
mod timeout {
    pub const BLOCK: i32 = -2;
    pub const DEFAULT: i32 = -1;
}

/// `VIR_DOMAIN_TIME_SYNC`: set the guest clock from its RTC.
const TIME_SYNC: u32 = 1;
/// `VIR_DOMAIN_PASSWORD_ENCRYPTED`.
const PASSWORD_ENCRYPTED: u32 = 1;

/// One mounted filesystem (`virDomainFSInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    pub mountpoint: String,
    pub name: String,
    pub fstype: String,
    /// Target names (`vda`) of the domain's disks the filesystem lives on.
    pub dev_aliases: Vec<String>,
}

/// Gives a unix guest-agent channel without a path (what virt-install writes) its
/// socket in the domain's runtime dir, as libvirt picks one under its channel dir,
/// and marks it disconnected until an agent answers. The path shows in the live XML.
pub(super) fn place_agent_channel(runtime_root: &Path, def: &mut Definition) {
    let dir = RuntimeDir::new(runtime_root, def.name())
        .path()
        .to_path_buf();
    for c in def.channels_mut() {
        if c.char_type != CharType::Unix || c.target.name.as_deref() != Some(AGENT_CHANNEL) {
            continue;
        }
        if c.sources.is_empty() {
            c.sources.push(Default::default());
        }
        let src = &mut c.sources[0];
        if src.path.is_none() {
            src.path = Some(dir.join(AGENT_CHANNEL).display().to_string());
        }
        c.target.state = Some("disconnected".into());
    }
}

/// One agent exchange at a time per channel: the VMM serves one client.
fn channel_lock(path: &Path) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: Mutex<Option<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = Mutex::new(None);
    let mut locks = LOCKS.lock().unwrap_or_else(|e| e.into_inner());
    locks
        .get_or_insert_with(HashMap::new)
        .entry(path.to_path_buf())
        .or_default()
        .clone()
}

fn agent_error(e: AgentError) -> Error {
    match e {
        AgentError::Command { .. } => Error::Internal(e.to_string()),
        AgentError::NotConnected | AgentError::Socket { .. } => {
            tracing::debug!(error = %e, "guest agent handshake failed");
            Error::AgentUnresponsive(AgentError::NotConnected.to_string())
        }
        AgentError::Unavailable => Error::AgentUnresponsive(e.to_string()),
    }
}

impl Core {
    /// The socket of a running domain's agent channel, or libvirt's errors.
    fn agent_socket(&self, uuid: &Uuid) -> Result<PathBuf> {
        let slot = self.slot(uuid)?;
        let r = slot.rec();
        r.require_active()?;
        let not_configured =
            || Error::ArgumentUnsupported("QEMU guest agent is not configured".into());
        let live = r.live.as_ref().ok_or_else(not_configured)?;
        let chan = live
            .channels()
            .iter()
            .find(|c| c.target.name.as_deref() == Some(AGENT_CHANNEL))
            .ok_or_else(not_configured)?;
        let src = chan.sources.first();
        if chan.char_type != CharType::Unix
            || src.and_then(|s| s.mode.as_deref()) == Some("connect")
        {
            return Err(Error::ArgumentUnsupported(format!(
                "the guest agent channel is a '{}' channel in client mode; oxvirt talks to \
                 the agent through a unix channel in bind mode",
                chan.char_type
            )));
        }
        let path = src
            .and_then(|s| s.path.clone())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(AGENT_CHANNEL));
        Ok(if path.is_relative() {
            RuntimeDir::new(&self.inner.config.runtime_dir, &r.name)
                .path()
                .join(path)
        } else {
            path
        })
    }

    /// QMP `VSERPORT_CHANGE`: the guest opened or closed the port of channel `id`; for
    /// the agent's channel that is the agent connecting or going away, as libvirt
    /// reads it.
    pub(super) fn vserport_changed(&self, uuid: &Uuid, data: &Value) {
        let (Some(id), Some(open)) = (
            data.get("id").and_then(Value::as_str),
            data.get("open").and_then(Value::as_bool),
        ) else {
            return;
        };
        let is_agent = self.slot(uuid).is_ok_and(|slot| {
            slot.rec().live.as_ref().is_some_and(|d| {
                d.channels().iter().any(|c| {
                    c.alias.as_deref() == Some(id)
                        && c.target.name.as_deref() == Some(AGENT_CHANNEL)
                })
            })
        });
        if is_agent {
            self.set_agent_state(uuid, open);
        }
    }

    /// Records the agent's state in the live definition; emits AGENT_LIFECYCLE when it
    /// changed.
    fn set_agent_state(&self, uuid: &Uuid, connected: bool) {
        let Ok(slot) = self.slot(uuid) else { return };
        let word = if connected {
            "connected"
        } else {
            "disconnected"
        };
        let changed = {
            let mut r = slot.rec();
            let Some(live) = r.live.as_mut() else { return };
            let mut changed = false;
            for c in live.channels_mut() {
                if c.target.name.as_deref() == Some(AGENT_CHANNEL)
                    && c.target.state.as_deref() != Some(word)
                {
                    c.target.state = Some(word.into());
                    changed = true;
                }
            }
            changed
        };
        if changed {
            self.emit(Event::AgentLifecycle {
                domain: slot.domain_ref(),
                state: if connected {
                    lifecycle::CONNECTED
                } else {
                    lifecycle::DISCONNECTED
                },
                reason: lifecycle::REASON_UNKNOWN,
            });
        }
    }

    /// Connects and synchronises with the domain's agent; runs `f` on it.
    async fn with_agent<T, F>(&self, uuid: &Uuid, f: F) -> Result<T>
    where
        F: AsyncFnOnce(&mut Agent) -> std::result::Result<T, AgentError>,
    {
        let path = self.agent_socket(uuid)?;
        let lock = channel_lock(&path);
        let _turn = lock.lock().await;
        let mut agent = match Agent::connect(&path).await {
            Ok(a) => a,
            Err(e) => {
                self.set_agent_state(uuid, false);
                return Err(agent_error(e));
            }
        };
        self.set_agent_state(uuid, true);
        f(&mut agent).await.map_err(agent_error)
    }

    /// Runs one agent command and returns its `return` value.
    async fn agent_exec(&self, uuid: &Uuid, cmd: Value) -> Result<Value> {
        self.with_agent(uuid, async |a| a.execute(&cmd, COMMAND_TIMEOUT).await)
            .await
    }

    /// virDomainQemuAgentCommand: `cmd` passed through; the whole reply as JSON text.
    pub async fn agent_command(
        &self,
        uuid: &Uuid,
        cmd: &str,
        secs: i32,
        flags: u32,
    ) -> Result<String> {
        Error::check_flags(flags, 0, "virDomainQemuAgentCommand")?;
        let wait = match secs {
            timeout::BLOCK | timeout::DEFAULT => COMMAND_TIMEOUT,
            s if s >= 0 => Duration::from_secs(s as u64),
            s => {
                return Err(Error::InvalidArg(format!(
                    "guest agent timeout '{s}' is less than the minimum '{}'",
                    timeout::BLOCK
                )))
            }
        };
        let req: Value = serde_json::from_str(cmd)
            .map_err(|e| Error::Internal(format!("cannot parse json {cmd}: {e}")))?;
        if command_name(&req).is_empty() {
            return Err(Error::Internal(format!(
                "unable to execute QEMU agent command: no 'execute' member in {cmd}"
            )));
        }
        let ret = self
            .with_agent(uuid, async |a| a.execute(&req, wait).await)
            .await?;
        Ok(json!({ "return": ret }).to_string())
    }

    /// virDomainInterfaceAddresses with source `agent` (`guest-network-get-interfaces`).
    pub async fn agent_interfaces(&self, uuid: &Uuid) -> Result<Vec<InterfaceAddrs>> {
        let ret = self
            .agent_exec(uuid, json!({"execute": "guest-network-get-interfaces"}))
            .await?;
        Ok(interfaces_from(&ret))
    }

    /// virDomainInterfaceAddresses, every source: the agent here, the others from
    /// [`Core::interface_addresses`].
    pub async fn domain_interface_addresses(
        &self,
        uuid: &Uuid,
        source: u32,
        flags: u32,
    ) -> Result<Vec<InterfaceAddrs>> {
        if source == 1 {
            Error::check_flags(flags, 0, "virDomainInterfaceAddresses")?;
            return self.agent_interfaces(uuid).await;
        }
        self.interface_addresses(uuid, source, flags)
    }

    /// virDomainGetFSInfo (`guest-get-fsinfo`), in mount order.
    pub async fn agent_fsinfo(&self, uuid: &Uuid, flags: u32) -> Result<Vec<FsInfo>> {
        Error::check_flags(flags, 0, "virDomainGetFSInfo")?;
        let ret = self
            .agent_exec(uuid, json!({"execute": "guest-get-fsinfo"}))
            .await?;
        let disks = self.live_disk_pci(uuid);
        Ok(fsinfo_from(&ret, &disks))
    }

    /// virDomainGetTime (`guest-get-time`): seconds and nanoseconds since the epoch.
    pub async fn agent_get_time(&self, uuid: &Uuid, flags: u32) -> Result<(i64, u32)> {
        Error::check_flags(flags, 0, "virDomainGetTime")?;
        let ret = self
            .agent_exec(uuid, json!({"execute": "guest-get-time"}))
            .await?;
        let ns = ret.as_i64().ok_or_else(|| {
            Error::Internal(format!("malformed return value from guest-get-time: {ret}"))
        })?;
        Ok((
            ns.div_euclid(1_000_000_000),
            ns.rem_euclid(1_000_000_000) as u32,
        ))
    }

    /// virDomainSetTime (`guest-set-time`): the given time, or with `VIR_DOMAIN_TIME_SYNC`
    /// the guest's own RTC.
    pub async fn agent_set_time(
        &self,
        uuid: &Uuid,
        secs: i64,
        nsecs: u32,
        flags: u32,
    ) -> Result<()> {
        Error::check_flags(flags, TIME_SYNC, "virDomainSetTime")?;
        let cmd = if flags & TIME_SYNC != 0 {
            json!({"execute": "guest-set-time"})
        } else {
            // libvirt's bound: the nanoseconds must fit the agent's int64.
            let ns = secs
                .checked_mul(1_000_000_000)
                .and_then(|n| n.checked_add(i64::from(nsecs)))
                .filter(|_| nsecs < 1_000_000_000)
                .ok_or_else(|| {
                    Error::InvalidArg(format!("Time '{secs}' is too big for guest agent"))
                })?;
            json!({"execute": "guest-set-time", "arguments": {"time": ns}})
        };
        self.agent_exec(uuid, cmd).await.map(drop)
    }

    /// virDomainSetUserPassword (`guest-set-user-password`).
    pub async fn agent_set_user_password(
        &self,
        uuid: &Uuid,
        user: &str,
        password: &str,
        flags: u32,
    ) -> Result<()> {
        Error::check_flags(flags, PASSWORD_ENCRYPTED, "virDomainSetUserPassword")?;
        let cmd = json!({"execute": "guest-set-user-password", "arguments": {
            "username": user,
            "password": super::secret::base64::encode(password.as_bytes()),
            "crypted": flags & PASSWORD_ENCRYPTED != 0,
        }});
        self.agent_exec(uuid, cmd).await.map(drop)
    }

    /// virDomainGetGuestVcpus (`guest-get-vcpus`): `vcpus`, `online`, `offlinable` as
    /// CPU lists.
    pub async fn agent_guest_vcpus(
        &self,
        uuid: &Uuid,
        flags: u32,
    ) -> Result<Vec<(String, StatValue)>> {
        Error::check_flags(flags, 0, "virDomainGetGuestVcpus")?;
        let ret = self
            .agent_exec(uuid, json!({"execute": "guest-get-vcpus"}))
            .await?;
        let (mut all, mut online, mut offlinable) = (Vec::new(), Vec::new(), Vec::new());
        for v in ret.as_array().into_iter().flatten() {
            let Some(id) = v.get("logical-id").and_then(Value::as_u64) else {
                continue;
            };
            all.push(id);
            if v.get("online").and_then(Value::as_bool) == Some(true) {
                online.push(id);
            }
            if v.get("can-offline").and_then(Value::as_bool) == Some(true) {
                offlinable.push(id);
            }
        }
        Ok(vec![
            ("vcpus".into(), StatValue::String(cpu_list(&all))),
            ("online".into(), StatValue::String(cpu_list(&online))),
            (
                "offlinable".into(),
                StatValue::String(cpu_list(&offlinable)),
            ),
        ])
    }

    /// virDomainFSFreeze (`guest-fsfreeze-freeze`, or `-freeze-list` for the given
    /// mountpoints): how many filesystems the agent froze.
    pub async fn agent_fs_freeze(
        &self,
        uuid: &Uuid,
        mountpoints: &[String],
        flags: u32,
    ) -> Result<u32> {
        Error::check_flags(flags, 0, "virDomainFSFreeze")?;
        let cmd = if mountpoints.is_empty() {
            json!({"execute": "guest-fsfreeze-freeze"})
        } else {
            json!({"execute": "guest-fsfreeze-freeze-list", "arguments": {"mountpoints": mountpoints}})
        };
        let ret = self.agent_exec(uuid, cmd).await?;
        count_of(&ret, "guest-fsfreeze-freeze")
    }

    /// virDomainFSThaw (`guest-fsfreeze-thaw`: the agent thaws every filesystem it
    /// froze; libvirt accepts mountpoints and ignores them the same way).
    pub async fn agent_fs_thaw(&self, uuid: &Uuid, flags: u32) -> Result<u32> {
        Error::check_flags(flags, 0, "virDomainFSThaw")?;
        let ret = self
            .agent_exec(uuid, json!({"execute": "guest-fsfreeze-thaw"}))
            .await?;
        count_of(&ret, "guest-fsfreeze-thaw")
    }

    /// virDomainSetGuestVcpus: brings the guest CPUs of `cpumap` (libvirt's list syntax)
    /// online (`state` 1) or offline (0) through `guest-set-vcpus`, after checking them
    /// against `guest-get-vcpus` as libvirt does.
    pub async fn agent_set_guest_vcpus(
        &self,
        uuid: &Uuid,
        cpumap: &str,
        state: i32,
        flags: u32,
    ) -> Result<()> {
        Error::check_flags(flags, 0, "virDomainSetGuestVcpus")?;
        let wanted = parse_cpu_list(cpumap)
            .ok_or_else(|| Error::InvalidArg(format!("failed to parse vcpu map '{cpumap}'")))?;
        let online = match state {
            0 => false,
            1 => true,
            s => return Err(Error::InvalidArg(format!("invalid vcpu state '{s}'"))),
        };
        // Checks fail with libvirt's invalid-argument errors, inside the agent session.
        self.with_agent(uuid, async |a| {
            let info = a
                .execute(&json!({"execute": "guest-get-vcpus"}), COMMAND_TIMEOUT)
                .await?;
            let known: Vec<&Value> = info.as_array().into_iter().flatten().collect();
            let mut set = Vec::new();
            for id in &wanted {
                let Some(v) = known
                    .iter()
                    .find(|v| v.get("logical-id").and_then(Value::as_u64) == Some(*id))
                else {
                    return Ok(Err(Error::InvalidArg(format!(
                        "vCPU '{id}' is not present in the guest"
                    ))));
                };
                if !online && v.get("can-offline").and_then(Value::as_bool) == Some(false) {
                    return Ok(Err(Error::InvalidArg(format!(
                        "vCPU '{id}' is not offlinable"
                    ))));
                }
                set.push(json!({"logical-id": id, "online": online}));
            }
            let cmd = json!({"execute": "guest-set-vcpus", "arguments": {"vcpus": set}});
            let done = a.execute(&cmd, COMMAND_TIMEOUT).await?;
            Ok(match done.as_u64() {
                Some(n) if n as usize == set.len() => Ok(()),
                _ => Err(Error::OperationFailed(format!(
                    "the guest agent changed the state of {done} of {} vCPUs",
                    set.len()
                ))),
            })
        })
        .await?
    }

    /// Shutdown or reboot through the agent (`guest-shutdown`, mode `powerdown` or
    /// `reboot`), for virDomainShutdownFlags/virDomainReboot with `GUEST_AGENT`.
    pub async fn agent_shutdown(&self, uuid: &Uuid, reboot: bool) -> Result<()> {
        let mode = if reboot { "reboot" } else { "powerdown" };
        let cmd = json!({"execute": "guest-shutdown", "arguments": {"mode": mode}});
        self.with_agent(uuid, async |a| a.execute_no_reply(&cmd).await)
            .await
    }

    /// Whether the agent answered the last handshake (the channel's live state).
    fn agent_connected(&self, uuid: &Uuid) -> bool {
        let Ok(slot) = self.slot(uuid) else {
            return false;
        };
        let r = slot.rec();
        r.live.as_ref().is_some_and(|d| {
            d.channels().iter().any(|c| {
                c.target.name.as_deref() == Some(AGENT_CHANNEL)
                    && c.target.state.as_deref() == Some("connected")
            })
        })
    }

    /// The agent half of virDomainShutdownFlags/virDomainReboot, as libvirt decides
    /// it: with `GUEST_AGENT`, or with no flags while the agent is connected. Returns
    /// whether the agent took the request; a failure is the caller's error only when
    /// the agent was the one method asked for (else the power button follows).
    pub(super) async fn shutdown_by_agent(
        &self,
        uuid: &Uuid,
        flags: u32,
        reboot: bool,
    ) -> Result<bool> {
        use super::flags::shutdown::{ACPI_POWER_BTN, GUEST_AGENT};
        let asked = flags & GUEST_AGENT != 0;
        let by_default = flags == 0 && self.agent_connected(uuid);
        if !asked && !by_default {
            return Ok(false);
        }
        match self.agent_shutdown(uuid, reboot).await {
            Ok(()) => Ok(true),
            Err(e) if asked && flags & ACPI_POWER_BTN == 0 => Err(e),
            Err(e) => {
                tracing::info!(error = %e, "guest agent shutdown failed; pressing the power button");
                Ok(false)
            }
        }
    }

    /// virDomainGetGuestInfo: the typed parameters of the `types` asked for (0: all
    /// served), in libvirt's field names. A type whose command the agent lacks is left
    /// out, as libvirt does.
    pub async fn agent_guest_info(
        &self,
        uuid: &Uuid,
        types: u32,
        flags: u32,
    ) -> Result<Vec<(String, StatValue)>> {
        Error::check_flags(flags, 0, "virDomainGetGuestInfo")?;
        if types & !info::SERVED != 0 {
            return Err(Error::InvalidArg(format!(
                "unsupported guest information types 0x{:x}",
                types & !info::SERVED
            )));
        }
        let types = if types == 0 { info::SERVED } else { types };
        let disks = self.live_disk_pci(uuid);
        self.with_agent(uuid, async |a| {
            let mut out = Vec::new();
            // Commands an older agent lacks are skipped (libvirt: report_unsupported false).
            async fn run(
                a: &mut Agent,
                name: &str,
            ) -> std::result::Result<Option<Value>, AgentError> {
                match a.execute(&json!({"execute": name}), COMMAND_TIMEOUT).await {
                    Ok(v) => Ok(Some(v)),
                    Err(AgentError::Command { desc, .. })
                        if desc.contains("has not been found")
                            || desc.contains("has been disabled") =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            }
            if types & info::USERS != 0 {
                if let Some(v) = run(a, "guest-get-users").await? {
                    users_params(&v, &mut out);
                }
            }
            if types & info::OS != 0 {
                if let Some(v) = run(a, "guest-get-osinfo").await? {
                    os_params(&v, &mut out);
                }
            }
            if types & info::TIMEZONE != 0 {
                if let Some(v) = run(a, "guest-get-timezone").await? {
                    if let Some(z) = v.get("zone").and_then(Value::as_str) {
                        out.push(("timezone.name".into(), StatValue::String(z.into())));
                    }
                    if let Some(o) = v.get("offset").and_then(Value::as_i64) {
                        out.push(("timezone.offset".into(), StatValue::Int(o as i32)));
                    }
                }
            }
            if types & info::HOSTNAME != 0 {
                if let Some(v) = run(a, "guest-get-host-name").await? {
                    if let Some(h) = v.get("host-name").and_then(Value::as_str) {
                        out.push(("hostname".into(), StatValue::String(h.into())));
                    }
                }
            }
            if types & info::FILESYSTEM != 0 {
                if let Some(v) = run(a, "guest-get-fsinfo").await? {
                    fs_params(&v, &disks, &mut out);
                }
            }
            if types & info::DISKS != 0 {
                if let Some(v) = run(a, "guest-get-disks").await? {
                    disk_params(&v, &disks, &mut out);
                }
            }
            if types & info::INTERFACES != 0 {
                if let Some(v) = run(a, "guest-network-get-interfaces").await? {
                    if_params(&interfaces_from(&v), &mut out);
                }
            }
            Ok(out)
        })
        .await
    }

    /// The running domain's disks on their own PCI function (virtio-blk), as
    /// ((domain, bus, slot, function), target dev) — how libvirt finds the disk a
    /// guest filesystem lives on.
    fn live_disk_pci(&self, uuid: &Uuid) -> Vec<((u32, u32, u32, u32), String)> {
        let Ok(slot) = self.slot(uuid) else {
            return Vec::new();
        };
        let r = slot.rec();
        let Some(live) = r.live.as_ref() else {
            return Vec::new();
        };
        live.disks()
            .iter()
            .filter_map(|d| match &d.address {
                Some(domain_xml::Address::Pci(p)) => Some((
                    (
                        u32::from(p.domain),
                        u32::from(p.bus),
                        u32::from(p.slot),
                        u32::from(p.function),
                    ),
                    d.target.dev.clone(),
                )),
                _ => None,
            })
            .collect()
    }
}

/// `guest-network-get-interfaces` as libvirt reports it: aliases (`eth0:1`) merged
/// into their interface, addresses of unknown type left out.
fn interfaces_from(ret: &Value) -> Vec<InterfaceAddrs> {
    let mut out: Vec<InterfaceAddrs> = Vec::new();
    for i in ret.as_array().into_iter().flatten() {
        let Some(name) = i.get("name").and_then(Value::as_str) else {
            continue;
        };
        let base = name.split(':').next().unwrap_or(name).to_string();
        let pos = match out.iter().position(|o| o.name == base) {
            Some(p) => p,
            None => {
                out.push(InterfaceAddrs {
                    name: base,
                    mac: i
                        .get("hardware-address")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    addrs: Vec::new(),
                });
                out.len() - 1
            }
        };
        for a in i
            .get("ip-addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ip = a
                .get("ip-address")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<IpAddr>().ok());
            let prefix = a.get("prefix").and_then(Value::as_u64).unwrap_or(0) as u32;
            if let Some(ip) = ip {
                out[pos].addrs.push((ip, prefix));
            }
        }
    }
    out
}

type DiskPci = [((u32, u32, u32, u32), String)];

/// The target devs of the domain disks a `guest-get-fsinfo` entry lives on.
fn fs_aliases(fs: &Value, disks: &DiskPci) -> Vec<String> {
    let mut out = Vec::new();
    for d in fs
        .get("disk")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(pci) = d.get("pci-controller") else {
            continue;
        };
        let field = |k: &str| pci.get(k).and_then(Value::as_u64).unwrap_or(u64::MAX) as u32;
        let addr = (
            field("domain"),
            field("bus"),
            field("slot"),
            field("function"),
        );
        if let Some((_, dev)) = disks.iter().find(|(a, _)| *a == addr) {
            if !out.contains(dev) {
                out.push(dev.clone());
            }
        }
    }
    out
}

/// `guest-get-fsinfo` as virDomainGetFSInfo: the agent lists the newest mount first,
/// libvirt reverses it into mount order.
fn fsinfo_from(ret: &Value, disks: &DiskPci) -> Vec<FsInfo> {
    let mut out: Vec<FsInfo> = ret
        .as_array()
        .into_iter()
        .flatten()
        .map(|fs| {
            let s = |k: &str| fs.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            FsInfo {
                mountpoint: s("mountpoint"),
                name: s("name"),
                fstype: s("type"),
                dev_aliases: fs_aliases(fs, disks),
            }
        })
        .collect();
    out.reverse();
    out
}

fn users_params(v: &Value, out: &mut Vec<(String, StatValue)>) {
    let users: Vec<&Value> = v.as_array().into_iter().flatten().collect();
    out.push(("user.count".into(), StatValue::UInt(users.len() as u32)));
    for (i, u) in users.iter().enumerate() {
        if let Some(n) = u.get("user").and_then(Value::as_str) {
            out.push((format!("user.{i}.name"), StatValue::String(n.into())));
        }
        if let Some(d) = u.get("domain").and_then(Value::as_str) {
            out.push((format!("user.{i}.domain"), StatValue::String(d.into())));
        }
        if let Some(t) = u.get("login-time").and_then(Value::as_f64) {
            // Seconds (fractional) from the agent, milliseconds for libvirt.
            out.push((
                format!("user.{i}.login-time"),
                StatValue::ULLong((t * 1000.0) as u64),
            ));
        }
    }
}

fn os_params(v: &Value, out: &mut Vec<(String, StatValue)>) {
    for key in [
        "id",
        "name",
        "pretty-name",
        "version",
        "version-id",
        "kernel-release",
        "kernel-version",
        "machine",
        "variant",
        "variant-id",
    ] {
        if let Some(s) = v.get(key).and_then(Value::as_str) {
            out.push((format!("os.{key}"), StatValue::String(s.into())));
        }
    }
}

fn fs_params(v: &Value, disks: &DiskPci, out: &mut Vec<(String, StatValue)>) {
    let all: Vec<&Value> = v.as_array().into_iter().flatten().collect();
    out.push(("fs.count".into(), StatValue::UInt(all.len() as u32)));
    for (i, fs) in all.iter().enumerate() {
        for (key, field) in [
            ("mountpoint", "mountpoint"),
            ("name", "name"),
            ("fstype", "type"),
        ] {
            if let Some(s) = fs.get(field).and_then(Value::as_str) {
                out.push((format!("fs.{i}.{key}"), StatValue::String(s.into())));
            }
        }
        for key in ["total-bytes", "used-bytes"] {
            if let Some(n) = fs.get(key).and_then(Value::as_u64) {
                out.push((format!("fs.{i}.{key}"), StatValue::ULLong(n)));
            }
        }
        let guest_disks: Vec<&Value> = fs
            .get("disk")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect();
        out.push((
            format!("fs.{i}.disk.count"),
            StatValue::UInt(guest_disks.len() as u32),
        ));
        for (j, d) in guest_disks.iter().enumerate() {
            let one = json!([{ "disk": [d] }]);
            if let Some(alias) = fs_aliases(&one[0], disks).first() {
                out.push((
                    format!("fs.{i}.disk.{j}.alias"),
                    StatValue::String(alias.clone()),
                ));
            }
            if let Some(s) = d.get("serial").and_then(Value::as_str) {
                out.push((
                    format!("fs.{i}.disk.{j}.serial"),
                    StatValue::String(s.into()),
                ));
            }
            if let Some(s) = d.get("dev").and_then(Value::as_str) {
                out.push((
                    format!("fs.{i}.disk.{j}.device"),
                    StatValue::String(s.into()),
                ));
            }
        }
    }
}

/// `guest-get-disks` as libvirt's `disk.*` guest info: the guest's name, whether it
/// is a partition, what it depends on, its serial, the domain disk (by PCI address)
/// and the guest's own alias.
fn disk_params(v: &Value, disks: &DiskPci, out: &mut Vec<(String, StatValue)>) {
    let all: Vec<&Value> = v.as_array().into_iter().flatten().collect();
    out.push(("disk.count".into(), StatValue::UInt(all.len() as u32)));
    for (i, d) in all.iter().enumerate() {
        let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_string);
        out.push((
            format!("disk.{i}.name"),
            StatValue::String(s("name").unwrap_or_default()),
        ));
        out.push((
            format!("disk.{i}.partition"),
            StatValue::Boolean(d.get("partition").and_then(Value::as_bool) == Some(true)),
        ));
        let deps: Vec<&str> = d
            .get("dependencies")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !deps.is_empty() {
            out.push((
                format!("disk.{i}.dependency.count"),
                StatValue::UInt(deps.len() as u32),
            ));
            for (j, dep) in deps.iter().enumerate() {
                out.push((
                    format!("disk.{i}.dependency.{j}.name"),
                    StatValue::String(dep.to_string()),
                ));
            }
        }
        if let Some(addr) = d.get("address") {
            if let Some(serial) = addr.get("serial").and_then(Value::as_str) {
                out.push((format!("disk.{i}.serial"), StatValue::String(serial.into())));
            }
            let one = json!({ "disk": [addr] });
            if let Some(alias) = fs_aliases(&one, disks).first() {
                out.push((format!("disk.{i}.alias"), StatValue::String(alias.clone())));
            }
        }
        if let Some(alias) = s("alias") {
            out.push((format!("disk.{i}.guest_alias"), StatValue::String(alias)));
        }
    }
}

fn if_params(ifaces: &[InterfaceAddrs], out: &mut Vec<(String, StatValue)>) {
    out.push(("if.count".into(), StatValue::UInt(ifaces.len() as u32)));
    for (i, f) in ifaces.iter().enumerate() {
        out.push((format!("if.{i}.name"), StatValue::String(f.name.clone())));
        out.push((format!("if.{i}.hwaddr"), StatValue::String(f.mac.clone())));
        out.push((
            format!("if.{i}.addr.count"),
            StatValue::UInt(f.addrs.len() as u32),
        ));
        for (j, (ip, prefix)) in f.addrs.iter().enumerate() {
            let kind = if ip.is_ipv6() { "ipv6" } else { "ipv4" };
            out.push((
                format!("if.{i}.addr.{j}.type"),
                StatValue::String(kind.into()),
            ));
            out.push((
                format!("if.{i}.addr.{j}.addr"),
                StatValue::String(ip.to_string()),
            ));
            out.push((format!("if.{i}.addr.{j}.prefix"), StatValue::UInt(*prefix)));
        }
    }
}

/// The count a freeze/thaw command returns.
fn count_of(ret: &Value, command: &str) -> Result<u32> {
    ret.as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| Error::Internal(format!("malformed return value from {command}: {ret}")))
}

/// Parses libvirt's CPU list syntax (`0-3,^2,5`); `None` when malformed.
fn parse_cpu_list(text: &str) -> Option<Vec<u64>> {
    let mut out: Vec<u64> = Vec::new();
    for part in text.split(',').map(str::trim) {
        if let Some(n) = part.strip_prefix('^') {
            let n: u64 = n.parse().ok()?;
            out.retain(|x| *x != n);
        } else if let Some((a, b)) = part.split_once('-') {
            let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            if a > b || b - a > 4096 {
                return None;
            }
            out.extend(a..=b);
        } else {
            out.push(part.parse().ok()?);
        }
    }
    out.sort_unstable();
    out.dedup();
    (!out.is_empty()).then_some(out)
}

/// A CPU list in libvirt's bitmap syntax (`0-3,5`).
fn cpu_list(ids: &[u64]) -> String {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let start = ids[i];
        while i + 1 < ids.len() && ids[i + 1] == ids[i] + 1 {
            i += 1;
        }
        parts.push(if ids[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", ids[i])
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_merge_aliases_like_libvirt() {
        let ret = json!([
            {"name": "lo", "hardware-address": "00:00:00:00:00:00",
             "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "127.0.0.1", "prefix": 8}]},
            {"name": "eth0", "hardware-address": "52:54:00:aa:bb:cc",
             "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "10.0.2.15", "prefix": 24},
                              {"ip-address-type": "ipv6", "ip-address": "fe80::1", "prefix": 64}]},
            {"name": "eth0:1", "ip-addresses": [{"ip-address-type": "ipv4", "ip-address": "10.0.3.1", "prefix": 24}]}
        ]);
        let got = interfaces_from(&ret);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].name, "eth0");
        assert_eq!(got[1].mac, "52:54:00:aa:bb:cc");
        assert_eq!(got[1].addrs.len(), 3);
        assert_eq!(got[1].addrs[2], ("10.0.3.1".parse().unwrap(), 24));
    }

    #[test]
    fn fsinfo_is_in_mount_order_with_disk_targets() {
        let ret = json!([
            {"name": "vda1", "mountpoint": "/data", "type": "ext4",
             "disk": [{"pci-controller": {"domain": 0, "bus": 0, "slot": 5, "function": 0},
                       "bus-type": "virtio", "bus": 0, "target": 0, "unit": 0, "dev": "/dev/vda1"}]},
            {"name": "rootfs", "mountpoint": "/", "type": "rootfs", "disk": []}
        ]);
        let disks = vec![((0, 0, 5, 0), "vda".to_string())];
        let got = fsinfo_from(&ret, &disks);
        assert_eq!(got[0].mountpoint, "/");
        assert_eq!(got[1].dev_aliases, vec!["vda".to_string()]);
        let mut params = Vec::new();
        fs_params(&ret, &disks, &mut params);
        assert!(params.contains(&("fs.0.disk.0.alias".into(), StatValue::String("vda".into()))));
        assert!(params.contains(&("fs.count".into(), StatValue::UInt(2))));
    }

    #[test]
    fn disks_are_named_with_their_domain_disk() {
        let ret = json!([
            {"name": "/dev/vda1", "partition": true, "dependencies": ["/dev/vda"]},
            {"name": "/dev/vda", "partition": false, "address": {
                "pci-controller": {"domain": 0, "bus": 0, "slot": 5, "function": 0},
                "bus-type": "virtio", "bus": 0, "target": 0, "unit": 0,
                "serial": "S1", "dev": "/dev/vda"}}
        ]);
        let mut out = Vec::new();
        disk_params(&ret, &[((0, 0, 5, 0), "vda".to_string())], &mut out);
        for p in [
            ("disk.count", StatValue::UInt(2)),
            ("disk.0.partition", StatValue::Boolean(true)),
            (
                "disk.0.dependency.0.name",
                StatValue::String("/dev/vda".into()),
            ),
            ("disk.1.serial", StatValue::String("S1".into())),
            ("disk.1.alias", StatValue::String("vda".into())),
        ] {
            assert!(
                out.contains(&(p.0.to_string(), p.1.clone())),
                "{p:?}: {out:?}"
            );
        }
    }

    #[test]
    fn cpu_lists_use_ranges() {
        assert_eq!(cpu_list(&[0, 1, 2, 3, 5, 7, 8]), "0-3,5,7-8");
        assert_eq!(cpu_list(&[]), "");
        assert_eq!(parse_cpu_list("0-3,^2,5"), Some(vec![0, 1, 3, 5]));
        assert_eq!(parse_cpu_list("1"), Some(vec![1]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }
}
