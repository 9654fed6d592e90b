//! Lifecycle operations: start, shutdown, destroy, suspend, resume, reboot, reset,
//! and the daemon start-up work (load the store, reattach, autostart).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;
use uuid::Uuid;

use super::definition::Definition;
use super::event::{detail, kind, Event};
use super::flags;
use super::runtime::{self, RuntimeDir};
use super::slot::{Record, Slot};
use super::state::{paused, running, Change, State, StateReason};
use super::supervise::{classify, ExitInfo};
use super::{Core, Error, Result};

/// How long destroy waits for the VMM to end after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(5);

impl Core {
    /// Starts an inactive domain (virDomainCreateWithFlags).
    pub async fn start(&self, uuid: &Uuid, flags: u32) -> Result<()> {
        Error::check_flags(
            flags,
            flags::create::START_PAUSED,
            "virDomainCreateWithFlags",
        )?;
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let def = {
            let r = slot.rec();
            if r.active() {
                return Err(Error::OperationInvalid("domain is already running".into()));
            }
            r.def
                .clone()
                .or_else(|| r.live.clone())
                .ok_or_else(|| Error::Internal(format!("domain '{}' has no definition", r.name)))?
        };
        let paused = flags & flags::create::START_PAUSED != 0;
        // A managed save image: the domain goes on from it (and the image goes),
        // unless the caller asks for a fresh boot (which discards it, as libvirt).
        let image = self.managed_save_path(&slot.name());
        if image.exists() {
            if flags & flags::create::FORCE_BOOT == 0 {
                return self.restore_managed(&slot, &image, paused).await;
            }
            super::save::remove_image(&image)?;
        }
        self.boot(&slot, def, paused).await
    }

    /// Launches `def` for `slot` (job lock held) and marks it running.
    pub(super) async fn boot(&self, slot: &Arc<Slot>, def: Definition, paused: bool) -> Result<()> {
        self.boot_from(slot, def, paused, None).await
    }

    /// [`Core::boot`], or with `incoming` the domain goes on from a saved state
    /// (restore): the VMM starts paused, runs on unless `paused` or the state was
    /// saved paused, and the events say `restored`.
    pub(super) async fn boot_from(
        &self,
        slot: &Arc<Slot>,
        def: Definition,
        paused: bool,
        incoming: Option<super::save::Incoming>,
    ) -> Result<()> {
        let mut def = def;
        self.resolve_networks(&mut def)?;
        self.resolve_volumes(&mut def)?;
        super::agent_calls::place_agent_channel(&self.inner.config.runtime_dir, &mut def);
        let mut spec = def.translate()?;
        super::tapname::name_taps(&self.inner.next_vnet, &mut def, &mut spec);
        self.live_cpu(def.cpu_mut());
        let name = def.name().to_string();
        let restoring = incoming.is_some();
        let from_snapshot = incoming.as_ref().is_some_and(|i| i.snapshot);
        // A saved paused domain comes back paused (libvirt's `was_running`).
        let paused = paused || incoming.as_ref().is_some_and(|i| !i.running);
        spec.incoming = incoming.map(|i| machine_spec::Incoming {
            path: i.path,
            offset: i.offset,
        });
        let vm = self
            .launch(slot, &name, spec, &def.to_xml(false), paused || restoring)
            .await?;
        if restoring && !paused {
            if let Err(e) = vm.qmp("cont", None).await {
                self.discard(&vm).await;
                return Err(e);
            }
        }
        if paused {
            vm.pause_reason.store(paused::USER, Ordering::SeqCst);
        }
        if let Err(e) = super::graphics::apply_live(&vm, &mut def).await {
            self.discard(&vm).await;
            return Err(e);
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
        {
            let mut r = slot.rec();
            r.id = id;
            r.live = Some(def);
            r.vm = Some(vm.clone());
        }
        let change = match (paused, restoring) {
            (true, _) => Change::BootPaused,
            (false, true) if from_snapshot => Change::Restore(running::FROM_SNAPSHOT),
            (false, true) => Change::Restore(running::RESTORED),
            (false, false) => Change::Boot,
        };
        slot.apply(change)?;
        {
            let r = slot.rec();
            vm.rt.write_status(&vm.status(slot.uuid, &r))?;
        }
        self.emit(Event::Lifecycle {
            domain: slot.domain_ref(),
            event: kind::STARTED,
            detail: if from_snapshot {
                detail::started::FROM_SNAPSHOT
            } else if restoring {
                detail::started::RESTORED
            } else {
                detail::started::BOOTED
            },
        });
        if paused {
            self.emit(Event::Lifecycle {
                domain: slot.domain_ref(),
                event: kind::SUSPENDED,
                detail: detail::suspended::PAUSED,
            });
        }
        Ok(())
    }

    pub(super) fn running_vm(slot: &Slot) -> Result<Arc<super::supervise::Vm>> {
        let r = slot.rec();
        r.require_active()?;
        r.vm.clone()
            .ok_or_else(|| Error::OperationInvalid("domain is not running".into()))
    }

    /// Asks the guest to power off: the ACPI power button (virDomainShutdownFlags).
    /// Returns once the request is delivered; the guest decides.
    pub async fn shutdown(&self, uuid: &Uuid, flags: u32) -> Result<()> {
        Error::check_flags(
            flags,
            flags::shutdown::ACPI_POWER_BTN | flags::shutdown::GUEST_AGENT,
            "virDomainShutdownFlags",
        )?;
        if self.shutdown_by_agent(uuid, flags, false).await? {
            return Ok(());
        }
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let vm = Self::running_vm(&slot)?;
        vm.qmp("system_powerdown", None).await?;
        Ok(())
    }

    /// Reboots through the guest: power button, and a new VMM when it powers off
    /// (libvirt's behaviour without a guest agent).
    pub async fn reboot(&self, uuid: &Uuid, flags: u32) -> Result<()> {
        Error::check_flags(
            flags,
            flags::shutdown::ACPI_POWER_BTN | flags::shutdown::GUEST_AGENT,
            "virDomainReboot",
        )?;
        if self.shutdown_by_agent(uuid, flags, true).await? {
            return Ok(());
        }
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let vm = Self::running_vm(&slot)?;
        vm.rebooting.store(true, Ordering::SeqCst);
        if let Err(e) = vm.qmp("system_powerdown", None).await {
            vm.rebooting.store(false, Ordering::SeqCst);
            return Err(e);
        }
        Ok(())
    }

    /// The second half of [`Core::reboot`]: the guest powered off, boot it again.
    pub(super) async fn restart_after_reboot(&self, slot: &Arc<Slot>) {
        let _job = slot.job.lock().await;
        let def = {
            let mut r = slot.rec();
            r.live.take().or_else(|| r.def.clone())
        };
        let Some(mut def) = def else { return };
        let name = def.name().to_string();
        let result = async {
            self.resolve_networks(&mut def)?;
            super::agent_calls::place_agent_channel(&self.inner.config.runtime_dir, &mut def);
            let mut spec = def.translate()?;
            super::tapname::name_taps(&self.inner.next_vnet, &mut def, &mut spec);
            let vm = self
                .launch(slot, &name, spec, &def.to_xml(false), false)
                .await?;
            if let Err(e) = super::graphics::apply_live(&vm, &mut def).await {
                self.discard(&vm).await;
                return Err(e);
            }
            let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
            {
                let mut r = slot.rec();
                r.id = id;
                r.live = Some(def.clone());
                r.vm = Some(vm.clone());
            }
            slot.apply(Change::Boot)?;
            let r = slot.rec();
            vm.rt.write_status(&vm.status(slot.uuid, &r))
        }
        .await;
        match result {
            Ok(()) => self.emit(Event::Reboot {
                domain: slot.domain_ref(),
            }),
            Err(e) => {
                tracing::error!(domain = name, error = %e, "reboot: cannot start the domain again");
                self.emit(Event::Lifecycle {
                    domain: slot.domain_ref(),
                    event: kind::STOPPED,
                    detail: detail::stopped::FAILED,
                });
            }
        }
    }

    /// Kills the VMM (virDomainDestroyFlags): SIGTERM, SIGKILL after a grace period
    /// unless `GRACEFUL`. Returns when the domain is shut off.
    pub async fn destroy(&self, uuid: &Uuid, flags: u32) -> Result<()> {
        Error::check_flags(flags, flags::destroy::GRACEFUL, "virDomainDestroyFlags")?;
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let vm = Self::running_vm(&slot)?;
        vm.stopping.store(true, Ordering::SeqCst);
        {
            let r = slot.rec();
            let _ = vm.rt.write_status(&vm.status(slot.uuid, &r));
        }
        vm.signal(Signal::SIGTERM);
        if vm.wait_exit(TERM_GRACE).await {
            return Ok(());
        }
        if flags & flags::destroy::GRACEFUL != 0 {
            return Err(Error::OperationTimeout(
                "domain did not stop after SIGTERM".into(),
            ));
        }
        vm.signal(Signal::SIGKILL);
        if vm.wait_exit(Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(Error::OperationFailed(format!(
                "failed to kill VMM process {}",
                vm.pid
            )))
        }
    }

    /// Stops the vCPUs (virDomainSuspend). A paused domain stays paused.
    pub async fn suspend(&self, uuid: &Uuid) -> Result<()> {
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let vm = Self::running_vm(&slot)?;
        if slot.rec().state.state == State::Paused {
            return Ok(());
        }
        vm.pause_reason.store(paused::USER, Ordering::SeqCst);
        vm.qmp("stop", None).await?;
        if slot.apply(Change::Pause(paused::USER))?.is_some() {
            self.emit(Event::Lifecycle {
                domain: slot.domain_ref(),
                event: kind::SUSPENDED,
                detail: detail::suspended::PAUSED,
            });
        }
        Ok(())
    }

    /// Runs the vCPUs again (virDomainResume).
    pub async fn resume(&self, uuid: &Uuid) -> Result<()> {
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let vm = Self::running_vm(&slot)?;
        if slot.rec().state.state == State::Crashed {
            return Err(Error::OperationInvalid("domain has crashed".into()));
        }
        vm.qmp("cont", None).await?;
        if slot.apply(Change::Resume)?.is_some() {
            self.emit(Event::Lifecycle {
                domain: slot.domain_ref(),
                event: kind::RESUMED,
                detail: detail::resumed::UNPAUSED,
            });
        }
        Ok(())
    }

    /// Resets the machine at once (virDomainReset, QMP `system_reset`).
    pub async fn reset(&self, uuid: &Uuid, flags: u32) -> Result<()> {
        Error::check_flags(flags, 0, "virDomainReset")?;
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let vm = Self::running_vm(&slot)?;
        vm.qmp("system_reset", None).await?;
        Ok(())
    }

    /// Changes the memory size (virDomainSetMemoryFlags): live through the balloon,
    /// config in the persistent definition. `kib` in KiB.
    pub async fn set_memory(&self, uuid: &Uuid, kib: u64, flags: u32) -> Result<()> {
        use flags::affect::{CONFIG, LIVE};
        Error::check_flags(
            flags,
            LIVE | CONFIG | flags::memory::MAXIMUM,
            "virDomainSetMemoryFlags",
        )?;
        let slot = self.slot(uuid)?;
        let _job = slot.job.lock().await;
        let (active, persistent) = {
            let r = slot.rec();
            (r.active(), r.persistent())
        };
        let (live, config) = match flags & (LIVE | CONFIG) {
            0 => (active, !active),
            f => (f & LIVE != 0, f & CONFIG != 0),
        };
        if live && !active {
            return Err(Error::OperationInvalid("domain is not running".into()));
        }
        if config && !persistent {
            return Err(Error::OperationInvalid(
                "cannot change persistent config of a transient domain".into(),
            ));
        }
        if flags & flags::memory::MAXIMUM != 0 {
            if live {
                return Err(Error::OperationInvalid(
                    "cannot resize the maximum memory on an active domain".into(),
                ));
            }
            return self
                .update_definition(&slot, |d| d.set_max_memory_kib(kib))
                .await;
        }
        if live {
            let (vm, max) = {
                let r = slot.rec();
                (r.vm.clone(), r.current().max_memory_kib())
            };
            if kib > max {
                return Err(Error::InvalidArg(
                    "cannot set memory higher than max memory".into(),
                ));
            }
            let vm = vm.ok_or_else(|| Error::OperationInvalid("domain is not running".into()))?;
            vm.qmp("balloon", Some(json!({ "value": kib * 1024 })))
                .await?;
            if let Some(live) = slot.rec().live.as_mut() {
                live.set_memory_kib(kib)?;
            }
        }
        if config {
            self.update_definition(&slot, |d| d.set_memory_kib(kib))
                .await?;
        }
        Ok(())
    }

    /// Loads every persistent definition from the store (daemon start).
    pub(super) fn load_store(&self) -> Result<()> {
        for (path, xml) in self.inner.store.load_all()? {
            let def = match Definition::parse(&xml) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "skipping unreadable definition");
                    continue;
                }
            };
            let name = def.name().to_string();
            let uuid = def.uuid();
            let rec = Record {
                autostart: self.inner.store.autostart(&name),
                name,
                def: Some(def),
                live: None,
                state: StateReason::SHUTOFF_UNKNOWN,
                id: -1,
                vm: None,
            };
            self.inner
                .domains
                .write()
                .expect("domain map poisoned")
                .insert(uuid, Slot::new(uuid, rec));
        }
        Ok(())
    }

    /// Finds VMMs that kept running while the daemon was down and takes them back.
    pub(super) async fn reattach(&self) {
        let mut max_id = 0;
        for rt in runtime::scan(&self.inner.config.runtime_dir) {
            if let Err(e) = self.reattach_one(rt.clone(), &mut max_id).await {
                tracing::error!(dir = %rt.path().display(), error = %e, "cannot reattach");
                let _ = rt.remove();
            }
        }
        self.inner.next_id.fetch_max(max_id + 1, Ordering::SeqCst);
    }

    async fn reattach_one(&self, rt: RuntimeDir, max_id: &mut i32) -> Result<()> {
        let status = rt.read_status()?;
        let xml = std::fs::read_to_string(rt.live_xml())
            .map_err(|e| Error::io("read file", &rt.live_xml(), &e))?;
        let live = Definition::parse(&xml)?;
        let existing = self.slot(&status.uuid).ok();
        if !runtime::vmm_alive(status.pid, &rt.qmp()) {
            // It ended while we were away: record how, and clean up.
            let (reason, _) = classify(
                ExitInfo::Gone,
                status.stopping,
                status.shutdown_reason.as_deref(),
            );
            tracing::info!(
                domain = status.name,
                reason,
                "VMM ended while the daemon was down"
            );
            if let Some(slot) = existing {
                slot.rec().state = StateReason::new(State::Shutoff, reason);
            }
            return rt.remove();
        }
        *max_id = (*max_id).max(status.id);
        let slot = match existing {
            Some(s) => s,
            None => {
                let rec = Record {
                    name: status.name.clone(),
                    def: None,
                    live: None,
                    state: StateReason::SHUTOFF_UNKNOWN,
                    id: -1,
                    autostart: false,
                    vm: None,
                };
                let s = Slot::new(status.uuid, rec);
                self.inner
                    .domains
                    .write()
                    .expect("domain map poisoned")
                    .insert(status.uuid, s.clone());
                s
            }
        };
        let vm = match self.adopt(&slot, rt, &status).await {
            Ok(vm) => vm,
            Err(e) => {
                if slot.rec().def.is_none() {
                    self.inner
                        .domains
                        .write()
                        .expect("poisoned")
                        .remove(&status.uuid);
                }
                return Err(e);
            }
        };
        // The VMM's own view decides running vs paused.
        let running = vm
            .qmp("query-status", None)
            .await
            .ok()
            .and_then(|v| v["running"].as_bool());
        let mut r = slot.rec();
        r.id = status.id;
        r.live = Some(live);
        r.vm = Some(vm.clone());
        r.state = match running {
            Some(true) => StateReason::new(State::Running, super::state::running::BOOTED),
            Some(false) if status.state.state == State::Paused => status.state,
            Some(false) => StateReason::new(State::Paused, paused::UNKNOWN),
            None => status.state,
        };
        tracing::info!(domain = r.name, pid = vm.pid, state = ?r.state, "reattached");
        let _ = vm.rt.write_status(&vm.status(slot.uuid, &r));
        Ok(())
    }

    /// Starts every inactive autostart domain (daemon start).
    pub(super) async fn autostart_all(&self) {
        for slot in self.slots() {
            let (go, name) = {
                let r = slot.rec();
                (r.autostart && !r.active() && r.persistent(), r.name.clone())
            };
            if go {
                if let Err(e) = self.start(&slot.uuid, 0).await {
                    tracing::error!(domain = name, error = %e, "autostart failed");
                }
            }
        }
    }
}
