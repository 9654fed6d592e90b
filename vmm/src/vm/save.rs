//! Saving the running machine into a stream and building one from a saved stream
//! (QMP `migrate` to a descriptor; the spec's `incoming`): see `crate::vmstate` for
//! the format. The devices named here are those of the machines that can be saved
//! today; a machine with any other stateful device refuses by the device's name.

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom};
use std::sync::Mutex;

use machine_spec::{DeviceKind, MachineSpec};

use super::{Built, Machine, PlatformDevices, VmError, Vmm};
use crate::control::RunState;
use crate::devices::serial::SerialDevice;
use crate::vcpu::VcpuContext;
use crate::vmstate::{self, MachineState, StateError, Stateful, VcpuState, VmState};

fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The first device of `spec` whose state lives outside what a save writes: its id.
/// (PCI functions are asked themselves, see `PciRoot::save_state`.)
pub(super) fn blocker(spec: &MachineSpec, firmware: bool) -> Option<String> {
    if firmware {
        // The flash's command state and the firmware's SMM/PAM set-up are not saved.
        return Some("the firmware (<loader>/<nvram>)".into());
    }
    spec.devices.iter().find_map(|d| match &d.kind {
        // swtpm keeps the TPM's volatile state in its own process.
        DeviceKind::Tpm(_) => Some(d.id.clone()),
        _ => None,
    })
}

/// The platform devices' states by name.
fn platform_states(
    serials: &[std::sync::Arc<Mutex<SerialDevice>>],
    pm: &Mutex<crate::devices::pm::PmDevice>,
    p: &PlatformDevices,
) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for (i, s) in serials.iter().enumerate() {
        out.insert(format!("serial{i}"), lock(s).save_state());
    }
    out.insert("pm".into(), lock(pm).save_state());
    out.insert("i8042".into(), lock(&p.i8042).save_state());
    out.insert("cmos".into(), lock(&p.cmos).save_state());
    out.insert("fw_cfg".into(), lock(&p.fw_cfg).save_state());
    out
}

/// Puts the saved state of device `name` into `dev`.
fn restore_one(
    devices: &BTreeMap<String, serde_json::Value>,
    name: &str,
    dev: &mut dyn Stateful,
) -> Result<(), StateError> {
    let v = devices
        .get(name)
        .ok_or_else(|| StateError::Mismatch(format!("no saved state for device '{name}'")))?;
    dev.restore_state(v)
        .map_err(|e| StateError::Device(name.into(), e))
}

impl Vmm {
    /// Writes the machine's state to `out` (QMP `migrate`). A running guest is
    /// paused first (`STOP`) and stays paused, as QEMU leaves it after a migration;
    /// `cont` runs it on. Returns the bytes written.
    pub(super) fn save_machine(&mut self, out: &mut std::fs::File) -> Result<u64, StateError> {
        if let Some(id) = blocker(&self.spec, self.firmware.is_some()) {
            return Err(StateError::Blocked(id));
        }
        let Some(mut m) = self.machine.take() else {
            return Err(StateError::Mismatch("the machine is not running".into()));
        };
        let result = self.save_stopped(&mut m, out);
        self.machine = Some(m);
        result
    }

    fn save_stopped(&self, m: &mut Machine, out: &mut std::fs::File) -> Result<u64, StateError> {
        // A blocker refuses before the guest is touched.
        if let Some(id) = m.pci.save_blocker() {
            return Err(StateError::Blocked(id));
        }
        if self.control.status() == RunState::Running {
            self.control
                .pause()
                .map_err(|e| StateError::Mismatch(e.to_string()))?;
        }
        // Take the vCPUs back from their threads to read them.
        let gate = &self.control.shared().vcpus;
        gate.stop_all();
        let mut contexts: Vec<VcpuContext> = Vec::new();
        let mut lost = false;
        for t in m.threads.drain(..) {
            match t.join() {
                Ok(c) => contexts.push(c),
                Err(_) => lost = true,
            }
        }
        gate.clear();
        let result = if lost {
            Err(StateError::Mismatch("a vCPU thread died".into()))
        } else {
            // The devices stop (completing what is in flight into guest memory)
            // before RAM is written, and serve again after.
            let pci = m.pci.save_state();
            let r = self.write_state(m, &contexts, pci, out);
            m.pci.resume_after_save();
            r
        };
        // The threads again, parked: the guest is paused either way.
        match self.spawn_vcpus(contexts) {
            Ok(threads) => m.threads = threads,
            Err(e) => tracing::error!(error = %e, "cannot restart the vCPU threads after a save"),
        }
        self.control.set_status(RunState::Paused);
        result
    }

    fn write_state(
        &self,
        m: &Machine,
        contexts: &[VcpuContext],
        pci: serde_json::Value,
        out: &mut std::fs::File,
    ) -> Result<u64, StateError> {
        let vcpus = contexts
            .iter()
            .map(|c| VcpuState::capture(&c.vcpu, &self.msr_indices))
            .collect::<Result<Vec<_>, _>>()?;
        let mut devices = platform_states(&m.serials, &m.pm, &m.platform);
        devices.insert("pci".into(), pci);
        let state = MachineState {
            regions: vmstate::regions(&m.mem),
            vm: VmState::capture(&m.vm)?,
            vcpus,
            devices,
        };
        let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
        let n = vmstate::write(&mut w, &state, &m.mem)?;
        tracing::info!(bytes = n, "machine state saved");
        Ok(n)
    }

    /// Loads the spec's saved state into a machine just built from the same spec,
    /// before its vCPUs first run: RAM, devices, then KVM's VM and vCPU state (the
    /// interrupt controllers last, so the levels devices assert on restore agree
    /// with what was saved).
    pub(super) fn restore_into(&self, built: &Built) -> Result<(), VmError> {
        let Some(inc) = &self.spec.incoming else {
            return Ok(());
        };
        let e = |source: StateError| VmError::Restore(inc.path.display().to_string(), source);
        let mut f = crate::files::open(
            &inc.path,
            crate::files::Access {
                write: false,
                direct: false,
            },
        )
        .map_err(|io| e(StateError::Io("open", io)))?;
        f.seek(SeekFrom::Start(inc.offset))
            .map_err(|io| e(StateError::Io("read", io)))?;
        let mut r = std::io::BufReader::with_capacity(1 << 20, f);
        let state = vmstate::read_header(&mut r).map_err(e)?;
        let p = &built.populated;
        if state.vcpus.len() != p.contexts.len() {
            return Err(e(StateError::Mismatch(format!(
                "{} vCPUs were saved, this machine has {}",
                state.vcpus.len(),
                p.contexts.len()
            ))));
        }
        vmstate::read_memory(&mut r, &state, &built.mem).map_err(e)?;
        let d = &state.devices;
        for (i, s) in p.serials.iter().enumerate() {
            restore_one(d, &format!("serial{i}"), &mut *lock(s)).map_err(e)?;
        }
        restore_one(d, "pm", &mut *lock(&p.pm)).map_err(e)?;
        restore_one(d, "i8042", &mut *lock(&p.platform.i8042)).map_err(e)?;
        restore_one(d, "cmos", &mut *lock(&p.platform.cmos)).map_err(e)?;
        restore_one(d, "fw_cfg", &mut *lock(&p.platform.fw_cfg)).map_err(e)?;
        let pci = d
            .get("pci")
            .ok_or_else(|| e(StateError::Mismatch("no saved PCI state".into())))?;
        p.pci
            .restore_state(pci)
            .map_err(|m| e(StateError::Device("pci".into(), m)))?;
        state.vm.apply(&built.vm).map_err(e)?;
        for (c, s) in p.contexts.iter().zip(&state.vcpus) {
            s.apply(&c.vcpu).map_err(e)?;
        }
        // Devices with a data path start serving from their rings now.
        p.pci.resume_after_save();
        tracing::info!("machine state restored");
        Ok(())
    }
}
