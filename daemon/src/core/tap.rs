//! The taps of a domain's interfaces, opened by the daemon and handed to the VMM as
//! open descriptors, as libvirt's QEMU driver does (`-netdev tap,fd=N` at start,
//! `getfd` + `netdev_add` with `fd` for hot-plug): creating a tap, joining it to a
//! bridge and bringing it up take CAP_NET_ADMIN, which the VMM then does not keep.
//! The tap ioctls run in `oxvirt-vmm --open-tap`, a helper that sends the descriptor
//! back over a socket (this crate forbids `unsafe` code; QEMU's bridge helper works
//! the same way for libvirt's session mode). The taps are not persistent: the daemon
//! closes its copy once the VMM has one, and a tap goes when its VMM exits, crashes
//! or is killed.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;

use machine_spec::{DeviceKind, MachineSpec, Net, NetDriver, NetModel};

use super::{Error, Result};

/// The first descriptor number the VMM gets its taps on (after stdin/out/err).
pub const FIRST_FD: i32 = 3;

/// A tap opened for the VMM: the interface name, a descriptor per queue.
#[derive(Debug)]
pub struct OpenTap {
    pub name: String,
    pub fds: Vec<OwnedFd>,
}

/// Opens (creating it if needed) tap `name` (or a `vnet%d`-style pattern) with a
/// vnet header and `queues` queues (multiqueue when more than one), on `bridge` and
/// up, through `vmm --open-tap`.
pub async fn open(vmm: &Path, name: &str, bridge: Option<&str>, queues: u16) -> Result<OpenTap> {
    let fail = |why: String| Error::System(format!("cannot create tap device '{name}': {why}"));
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| fail(format!("cannot create a socket pair: {e}")))?;
    let mut cmd = tokio::process::Command::new(vmm);
    cmd.arg("--open-tap").arg(name);
    if let Some(b) = bridge {
        cmd.arg("--bridge").arg(b);
    }
    if queues > 1 {
        cmd.arg("--queues").arg(queues.to_string());
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(OwnedFd::from(theirs)))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot run '{}': {e}", vmm.display())))?;
    ours.set_nonblocking(true)
        .map_err(|e| fail(e.to_string()))?;
    let ours = tokio::net::UnixStream::from_std(ours).map_err(|e| fail(e.to_string()))?;
    let mut buf = [0u8; 64];
    let received = qmp::fdpass::recv(&ours, &mut buf).await;
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| fail(e.to_string()))?;
    match received {
        Ok((n, fds)) if out.status.success() && n > 0 => {
            if fds.len() != usize::from(queues) {
                return Err(fail(format!(
                    "the helper sent {} descriptors for {queues} queues",
                    fds.len()
                )));
            }
            Ok(OpenTap {
                name: String::from_utf8_lossy(&buf[..n]).into_owned(),
                fds,
            })
        }
        _ => {
            // The helper's log line: "ERROR cannot attach to tap device 'x': why".
            let err = String::from_utf8_lossy(&out.stderr);
            let why = err
                .lines()
                .last()
                .map(|l| {
                    l.split_once("ERROR")
                        .map_or(l, |(_, m)| m)
                        .trim()
                        .to_string()
                })
                .unwrap_or_else(|| format!("the helper failed ({})", out.status));
            Err(fail(why))
        }
    }
}

/// Opens the tap of a tap-backed interface (`None` for passt): its own name or
/// `vnet%d`, on its bridge, a queue per queue pair.
pub async fn open_for(vmm: &Path, net: &Net) -> Result<Option<OpenTap>> {
    let Some((name, bridge)) = net.backend.tap() else {
        return Ok(None);
    };
    open(vmm, name.unwrap_or("vnet%d"), bridge, net.queue_pairs())
        .await
        .map(Some)
}

/// Opens the tap of every tap-backed interface of `spec` and records in the spec the
/// descriptor numbers the VMM will find its queues on ([`FIRST_FD`] onwards); the
/// descriptors, in that order, for the spawn to map. On a failure the taps opened so
/// far close (and go) with the returned error.
pub async fn open_for_spec(vmm: &Path, spec: &mut MachineSpec) -> Result<Vec<OwnedFd>> {
    let mut fds = Vec::new();
    for d in &mut spec.devices {
        let DeviceKind::Net(n) = &mut d.kind else {
            continue;
        };
        if let Some(tap) = open_for(vmm, n).await? {
            n.tap_fds = (FIRST_FD + fds.len() as i32..)
                .take(tap.fds.len())
                .collect();
            fds.extend(tap.fds);
            let vhost = open_vhost(n);
            n.vhost_fds = (FIRST_FD + fds.len() as i32..).take(vhost.len()).collect();
            fds.extend(vhost);
        }
    }
    Ok(fds)
}

/// The vhost-net instances of a tap-backed virtio NIC, one per queue pair, opened
/// here as libvirt opens them for QEMU (`vhostfds=`): `/dev/vhost-net` is root's
/// (0600), and a VMM running as its own user could not open it. None where the NIC
/// keeps the VMM's data path (`<driver name='qemu'>`, other models) or the host has
/// no vhost-net (the VMM then falls back, or refuses `name='vhost'`, with the reason).
pub fn open_vhost(n: &Net) -> Vec<OwnedFd> {
    if n.driver == NetDriver::Qemu || n.model != NetModel::Virtio || n.backend.tap().is_none() {
        return Vec::new();
    }
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(VHOST_NET)
            .map(OwnedFd::from)
    };
    match (0..n.queue_pairs()).map(|_| open()).collect() {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(error = %e, "{VHOST_NET} not handed over");
            Vec::new()
        }
    }
}

/// The vhost-net device node.
pub const VHOST_NET: &str = "/dev/vhost-net";
