//! A graphics console handed over as a socket, as libvirt's QEMU driver does it
//! (`qemuDomainOpenGraphics`, `qemuDomainOpenGraphicsFD`): the VMM gets one end of a
//! socket through QMP `getfd` (the fd rides with the command) and serves it as a VNC
//! client with `add_client`; the caller keeps the other end. This is virt-manager's
//! local console path (`virDomainOpenGraphicsFD`) and virt-viewer's `--attach`.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use uuid::Uuid;

use super::{Core, Error, Result};

/// `VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH`: the client need not give the VNC password.
pub const OPEN_GRAPHICS_SKIPAUTH: u32 = 1;

/// Names each handed-over fd uniquely, so calls running at once cannot take each
/// other's (libvirt uses one fixed name under its per-domain job lock).
static NEXT_FD: AtomicU64 = AtomicU64::new(0);

impl Core {
    /// `virDomainOpenGraphicsFD`: a new socket connected to graphics device `idx`.
    pub async fn open_graphics_fd(&self, uuid: &Uuid, idx: u32, flags: u32) -> Result<OwnedFd> {
        Error::check_flags(flags, OPEN_GRAPHICS_SKIPAUTH, "virDomainOpenGraphicsFD")?;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Error::Internal(format!("cannot create a socket pair: {e}")))?;
        self.open_graphics(uuid, idx, theirs.into(), flags).await?;
        Ok(ours.into())
    }

    /// `virDomainOpenGraphics`: serves the caller's connected socket `fd` as a client
    /// of graphics device `idx`.
    pub async fn open_graphics(
        &self,
        uuid: &Uuid,
        idx: u32,
        fd: OwnedFd,
        flags: u32,
    ) -> Result<()> {
        Error::check_flags(flags, OPEN_GRAPHICS_SKIPAUTH, "virDomainOpenGraphics")?;
        let vm = self.vm_of(uuid)?;
        let graphics = {
            let slot = self.slot(uuid)?;
            let r = slot.rec();
            r.live
                .as_ref()
                .and_then(|d| d.graphics().get(idx as usize))
                .map(|g| g.element.get_attr("type").unwrap_or_default().to_string())
        };
        match graphics.as_deref() {
            // The live XML says vnc for a spice domain too: both are served as VNC.
            Some("vnc" | "spice") => {}
            Some(other) => {
                return Err(Error::ConfigUnsupported(format!(
                    "Can only open VNC or SPICE graphics backends, not {other}"
                )))
            }
            None => {
                return Err(Error::Internal(format!(
                    "No graphics backend with index {idx}"
                )))
            }
        }
        let name = format!("graphicsfd{}", NEXT_FD.fetch_add(1, Ordering::Relaxed));
        vm.qmp_with_fds("getfd", Some(json!({"fdname": name})), &[fd.as_fd()])
            .await?;
        drop(fd);
        let skip = flags & OPEN_GRAPHICS_SKIPAUTH != 0;
        let added = vm
            .qmp(
                "add_client",
                Some(json!({"protocol": "vnc", "fdname": name, "skipauth": skip})),
            )
            .await;
        if added.is_err() {
            // add_client takes the fd before it can fail; closefd is for a VMM that
            // did not get that far.
            let _ = vm.qmp("closefd", Some(json!({"fdname": name}))).await;
        }
        added.map(drop)
    }
}
