//! The machine and the VMM's main loop.
//!
//! Start-up, in order: open `/dev/kvm`, map guest RAM and start making the VM
//! (memory slot, in-kernel irqchip and PIT) on a helper thread (`vm/pending.rs`:
//! these wait in the kernel), open the character devices (they live as long as
//! the process), compute the CPUID, then build a `Machine`: ACPI tables and the
//! kernel into RAM, join the VM, devices on the buses, vCPUs; then start one
//! thread per vCPU. `OXVIRT_LOG=debug` logs each step's time since the process
//! started.
//!
//! The main thread then waits (epoll) for: guest lifecycle exits (power-off,
//! reset, crash), control requests (QMP), SIGTERM/SIGINT/SIGHUP, and input on
//! the character devices. A reset with `on_reboot=restart` throws the machine
//! away and builds a new one — fresh zeroed memory, the kernel loaded again,
//! vCPUs from their reset state — keeping the character devices and the control
//! handle.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use kvm_bindings::{
    kvm_cpuid_entry2, kvm_mp_state, CpuId, KVM_MAX_CPUID_ENTRIES, KVM_MP_STATE_UNINITIALIZED,
};
use kvm_ioctls::VmFd;
use machine_spec::{exit, DeviceKind, LifecycleAction, MachineSpec};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use crate::acpi;
use crate::arch::x86_64::regs::EntryMode;
use crate::arch::x86_64::{cpu_model, cpuid, msrs, regs};
use crate::boot::{self, BootSource};
use crate::control::{
    ChardevInfo, PanicAction, RunState, ShutdownCause, VcpuThreadInfo, VmControl, VmEvent,
};
use crate::devices::chardev::{Chardev, InputEvent};
use crate::devices::cmos::{Cmos, CMOS_PORT};
use crate::devices::legacy::{
    DebugCon, DebugPort, PortA, Pvpanic, ResetControl, DEBUGCON_PORT, DEBUG_PORT,
    I8042_COMMAND_PORT, I8042_DATA_PORT, PORT_A, PVPANIC_PORT, RESET_PORT,
};
use crate::devices::pm::{IrqLine, PmDevice, PM_BASE, SCI_IRQ};
use crate::devices::serial::{SerialDevice, COM_IRQS, COM_PORTS, COM_PORT_LEN};
use crate::devices::{Bus, BusError, SharedDevice};
use crate::firmware::FirmwareRom;
use crate::kvm::{self as kvmsys, KvmError};
use crate::layout::{PlatformLayout, RamLayout};
use crate::lifecycle::{ExitSink, GuestExit};
use crate::memory::{self, MemoryError};
use crate::vcpu::{self, VcpuContext};

mod fw_cfg_items;
mod hyperv;
mod pending;
mod save;
use pending::PendingVm;

static STARTUP_CLOCK: OnceLock<Instant> = OnceLock::new();

/// The instant start-up timings count from: the first call, which `main` makes
/// first thing, so `OXVIRT_LOG=debug` shows each step's microseconds since the
/// process started (bench/boot measures the same span from outside).
pub fn startup_clock() -> Instant {
    *STARTUP_CLOCK.get_or_init(Instant::now)
}

/// Logs (debug) that start-up step `what` is done, with the time since [`startup_clock`].
pub fn lap(what: &'static str) {
    tracing::debug!(
        us = startup_clock().elapsed().as_micros() as u64,
        "start-up: {what}"
    );
}

/// Errors of building or running the machine.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Kvm(#[from] KvmError),
    #[error("KVM rejected {0}")]
    KvmIoctl(&'static str, #[source] kvm_ioctls::Error),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    #[error(transparent)]
    Cpuid(#[from] cpuid::CpuidError),
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
    #[error(transparent)]
    Chardev(#[from] crate::devices::chardev::ChardevError),
    #[error("cannot place device on the bus")]
    Bus(#[source] BusError),
    #[error("serial device '{0}': COM port index {1} is out of range (0-3)")]
    SerialPort(String, u8),
    #[error("{0}")]
    Os(&'static str, #[source] std::io::Error),
    #[error("cannot spawn vCPU thread {0}")]
    Spawn(u32, #[source] std::io::Error),
    #[error("vCPU count {0} exceeds what KVM supports on this host ({1})")]
    TooManyVcpus(u32, usize),
    #[error(transparent)]
    Pci(#[from] crate::virtio::attach::AttachError),
    #[error(transparent)]
    Firmware(#[from] crate::firmware::FirmwareError),
    #[error(transparent)]
    Rtc(#[from] crate::devices::cmos::RtcError),
    #[error(transparent)]
    Flash(#[from] crate::devices::pflash::PflashError),
    #[error(transparent)]
    Smbios(#[from] crate::smbios::SmbiosError),
    #[error("cannot build the fw_cfg items")]
    FwCfg(#[from] crate::devices::fw_cfg::FwCfgError),
    #[error(transparent)]
    Vnc(#[from] crate::vnc::VncError),
    #[error("cannot start the TPM")]
    Tpm(#[from] crate::tpm::TpmError),
    #[error(transparent)]
    Hyperv(#[from] crate::arch::x86_64::hyperv::HypervError),
    #[error("cannot restore the machine state saved in {0}")]
    Restore(String, #[source] crate::vmstate::StateError),
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> VmError {
    move |e| VmError::Os(what, e)
}

fn nix_err(what: &'static str) -> impl FnOnce(nix::Error) -> VmError {
    move |e| VmError::Os(what, std::io::Error::from_raw_os_error(e as i32))
}

/// The SCI as a KVM IRQ line.
struct KvmIrqLine {
    vm: Arc<VmFd>,
    gsi: u32,
}

impl IrqLine for KvmIrqLine {
    fn set_level(&self, high: bool) {
        if let Err(e) = self.vm.set_irq_line(self.gsi, high) {
            tracing::warn!(gsi = self.gsi, error = %e, "cannot set IRQ line");
        }
    }
}

/// One serial port: its COM index and which chardev backs it.
struct SerialSlot {
    port: u8,
    chardev: usize,
}

/// What [`Vmm::populate`] made.
struct Populated {
    contexts: Vec<VcpuContext>,
    serials: Vec<Arc<Mutex<SerialDevice>>>,
    pm: Arc<Mutex<PmDevice>>,
    pci: crate::virtio::attach::PciMachine,
    platform: PlatformDevices,
}

/// The platform devices with state a saved machine keeps (besides the serial
/// ports and the PM block, which the main loop uses too).
struct PlatformDevices {
    i8042: Arc<Mutex<crate::input::i8042::I8042>>,
    cmos: Arc<Mutex<Cmos>>,
    fw_cfg: Arc<Mutex<crate::devices::fw_cfg::FwCfg>>,
}

/// A machine that is built but not started. Field order is drop order: devices
/// and vCPUs, then the VM, then its memory.
struct Built {
    populated: Populated,
    vm: Arc<VmFd>,
    mem: GuestMemoryMmap,
}

/// One boot of the guest. Dropping it (after the vCPU threads are joined)
/// releases the VM, its vCPUs and its memory.
struct Machine {
    /// Each gives its vCPU back when it ends (a save reads the vCPUs, then starts
    /// their threads again).
    threads: Vec<JoinHandle<VcpuContext>>,
    /// By serial slot.
    serials: Vec<Arc<Mutex<SerialDevice>>>,
    pm: Arc<Mutex<PmDevice>>,
    platform: PlatformDevices,
    /// PCI root and virtio devices; dropped (workers stopped) before the VM and memory.
    pci: crate::virtio::attach::PciMachine,
    // Field order is drop order: the VM goes before the memory it maps.
    vm: Arc<VmFd>,
    mem: GuestMemoryMmap,
}

/// How a run ended: the process exit status and the message to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: i32,
    pub message: String,
}

/// Process-lifetime VMM state.
pub struct Vmm {
    spec: MachineSpec,
    platform: PlatformLayout,
    ram: RamLayout,
    /// Firmware code, loaded once, mapped read-only into every machine.
    firmware: Option<FirmwareRom>,
    /// UEFI variable store (CFI flash on the per-domain NVRAM file), right below the
    /// code; opened once (it holds the file's lock), reset with every machine.
    flash: Option<(u64, Arc<Mutex<crate::devices::pflash::Pflash>>)>,
    control: VmControl,
    exits: ExitSink,
    chardevs: Vec<Chardev>,
    serial_slots: Vec<SerialSlot>,
    rx_space: EventFd,
    base_cpuid: Vec<kvm_cpuid_entry2>,
    start: Instant,
    /// The first machine's VM, being made since [`Vmm::new`].
    pending: Option<PendingVm>,
    /// The first machine, built by [`Vmm::prepare`].
    built: Option<Built>,
    machine: Option<Machine>,
    /// Host side of the PCI devices that outlives resets (console chardevs, handles).
    pci_backends: crate::virtio::attach::PciBackends,
    /// The screen and input of the primary video device (None without one); each
    /// machine's devices plug into it, clients keep it across resets.
    console: Option<Arc<crate::display::Console>>,
    /// The VNC server (`<graphics>`), serving `console`.
    vnc: Option<Arc<crate::vnc::Vnc>>,
    /// swtpm behind the TPM (`<tpm>`), kept across machines like the NVRAM.
    tpm: Option<crate::tpm::swtpm::SwtpmHandle>,
    /// The MSRs KVM saves and restores (`KVM_GET_MSR_INDEX_LIST`), for a save.
    msr_indices: Vec<u32>,
    /// The spec's saved state is still to be loaded (into the first machine only;
    /// a reset boots afresh).
    restore_pending: bool,
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and every thread it
/// creates later; the main loop receives them through a signalfd. Call first
/// thing in `main`.
pub fn block_host_signals() -> nix::Result<()> {
    host_signals().thread_block()
}

fn host_signals() -> SigSet {
    let mut s = SigSet::empty();
    s.add(Signal::SIGTERM);
    s.add(Signal::SIGINT);
    s.add(Signal::SIGHUP);
    s
}

/// What the lifecycle actions boil down to for the VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Destroy,
    Restart,
    Preserve,
}

fn action(a: LifecycleAction) -> Action {
    match a {
        LifecycleAction::Destroy
        | LifecycleAction::RenameRestart
        | LifecycleAction::CoredumpDestroy => Action::Destroy,
        LifecycleAction::Restart | LifecycleAction::CoredumpRestart => Action::Restart,
        LifecycleAction::Preserve => Action::Preserve,
    }
}

/// How guest RAM is backed, from the spec.
fn backing(spec: &MachineSpec) -> memory::Backing {
    memory::Backing {
        shared: spec.memory.shared,
        hugepages: spec.memory.hugepages,
    }
}

fn has_pvpanic(spec: &MachineSpec) -> bool {
    spec.devices
        .iter()
        .any(|d| matches!(d.kind, DeviceKind::Pvpanic))
}

const TOKEN_EXIT: u64 = 1;
const TOKEN_CONTROL: u64 = 2;
const TOKEN_SIGNAL: u64 = 3;
const TOKEN_RX_SPACE: u64 = 4;
const TOKEN_CHARDEV: u64 = 100;

impl Vmm {
    /// Opens KVM and the character devices; does not build the machine yet.
    pub fn new(spec: MachineSpec) -> Result<Vmm, VmError> {
        let start = startup_clock();
        lap("spec loaded");
        let spec_incoming = spec.incoming.is_some();
        let kvm = kvmsys::open_kvm()?;
        lap("/dev/kvm opened");
        let msr_indices = kvm
            .get_msr_index_list()
            .map(|l| l.as_slice().to_vec())
            .unwrap_or_default();
        let max_vcpus = kvm.get_max_vcpus();
        if spec.cpus.count as usize > max_vcpus {
            return Err(VmError::TooManyVcpus(spec.cpus.count, max_vcpus));
        }
        if let Some(hv) = &spec.platform.hyperv {
            // Refused by name here, before the monitor, swtpm, VNC or any device starts.
            hyperv::check_early(hv, &kvm)?;
        }
        kvmsys::install_kick_handler()?;
        let platform = PlatformLayout::of(spec.platform.chipset);
        let ram = RamLayout::for_platform(spec.memory.size_bytes, &platform);
        let firmware = match &spec.boot.firmware {
            Some(fw) => Some(FirmwareRom::load(&fw.code)?),
            None => None,
        };
        // The VM is made while the rest of start-up goes on.
        let pending = PendingVm::start(&ram, backing(&spec), &platform, firmware.as_ref())?;
        let flash = match (&spec.boot.firmware, &firmware) {
            (Some(fw), Some(rom)) => match &fw.vars {
                Some(vars) => {
                    use crate::devices::pflash::{prepare_vars, Pflash};
                    prepare_vars(vars, fw.vars_template.as_deref())?;
                    let flash = Pflash::open(vars, None)?;
                    let base = rom.addr - flash.size();
                    lap("NVRAM flash opened");
                    Some((base, Arc::new(Mutex::new(flash))))
                }
                None => None,
            },
            _ => None,
        };
        let control =
            VmControl::new(spec.memory.size_bytes).map_err(io_err("cannot create an eventfd"))?;
        let exits = ExitSink::new().map_err(io_err("cannot create an eventfd"))?;
        let rx_space = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
            .map_err(io_err("cannot create an eventfd"))?;

        let mut chardevs = Vec::new();
        let mut serial_slots = Vec::new();
        for d in &spec.devices {
            match &d.kind {
                DeviceKind::Serial(s) => {
                    if usize::from(s.port) >= COM_PORTS.len() {
                        return Err(VmError::SerialPort(d.id.clone(), s.port));
                    }
                    chardevs.push(Chardev::open(&d.id, &s.backend)?);
                    serial_slots.push(SerialSlot {
                        port: s.port,
                        chardev: chardevs.len() - 1,
                    });
                }
                DeviceKind::Pvpanic => {}
                other => {
                    // PCI devices are plugged by the PCI/virtio layer.
                    tracing::debug!(id = %d.id, kind = ?std::mem::discriminant(other), "device left to the PCI layer");
                }
            }
        }
        lap("character devices opened");
        let pci_backends =
            crate::virtio::attach::PciBackends::open(&spec)?.with_port_events(control.clone());
        {
            // The main loop runs the monitor's hot-plug jobs when woken.
            let c = control.clone();
            pci_backends.hotplug().set_waker(Box::new(move || {
                let _ = c.shared().wake.write(1);
            }));
        }
        let console = pci_backends.display();
        let vnc = crate::vnc::start_for(&spec, console.clone())?;
        lap("PCI device backends opened");
        let tpm = crate::tpm::start_for(&spec)?;
        control.set_chardevs(
            chardevs
                .iter()
                .map(|c| ChardevInfo {
                    label: c.label.clone(),
                    filename: c.filename.clone(),
                    frontend_open: true,
                })
                .chain(pci_backends.chardev_infos())
                .collect(),
        );

        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| VmError::KvmIoctl("KVM_GET_SUPPORTED_CPUID", e))?;
        let base_cpuid = cpu_model::base_cpuid(supported.as_slice(), &spec.cpus)?;
        lap("CPUID computed; VMM initialised");

        Ok(Vmm {
            spec,
            platform,
            ram,
            firmware,
            flash,
            control,
            exits,
            chardevs,
            serial_slots,
            rx_space,
            base_cpuid,
            start,
            pending: Some(pending),
            built: None,
            machine: None,
            pci_backends,
            console,
            vnc,
            tpm,
            msr_indices,
            restore_pending: spec_incoming,
        })
    }

    /// What the monitor reports on: balloon, disks, the PCI bus.
    pub fn monitor_devices(&self) -> crate::monitor::Devices {
        let mut d = self.pci_backends.monitor_devices();
        d.display = self.console.clone();
        d.vnc = self.vnc.clone();
        d
    }

    /// The primary display head and its input (None without a video device).
    pub fn console(&self) -> Option<Arc<crate::display::Console>> {
        self.console.clone()
    }

    /// The control handle (for a monitor).
    pub fn control(&self) -> VmControl {
        self.control.clone()
    }

    /// Everything of a machine but its vCPU threads.
    fn build_machine(&self, pending: PendingVm) -> Result<Built, VmError> {
        // A machine restored from a saved state gets all of its RAM from the stream,
        // which skips zero pages: nothing may be loaded into it first.
        let entry = if self.restore_pending {
            Ok(None)
        } else {
            self.load_guest(pending.memory())
        };
        let (vm, mem) = pending.finish()?;
        lap("VM, memory slot, irqchip and PIT ready");

        let populated = self.populate(&vm, &mem, entry?)?;
        Ok(Built { populated, vm, mem })
    }

    /// Starts the vCPU threads of a built machine.
    fn launch(&self, built: Built) -> Result<Machine, VmError> {
        let Built {
            populated:
                Populated {
                    contexts,
                    serials,
                    pm,
                    pci,
                    platform,
                },
            vm,
            mem,
        } = built;
        let threads = self.spawn_vcpus(contexts)?;
        Ok(Machine {
            threads,
            serials,
            pm,
            platform,
            pci,
            vm,
            mem,
        })
    }

    /// Starts one thread per vCPU (parked at once while paused) and returns when
    /// every one has registered.
    fn spawn_vcpus(
        &self,
        contexts: Vec<VcpuContext>,
    ) -> Result<Vec<JoinHandle<VcpuContext>>, VmError> {
        // The state is `running` before any guest code runs, so a guest's
        // first output never races a `prelaunch` status.
        let paused = self.control.shared().vcpus.is_paused();
        self.control.set_status(if paused {
            RunState::Paused
        } else {
            RunState::Running
        });
        let mut threads = Vec::new();
        for ctx in contexts {
            let index = ctx.index;
            let control = self.control.clone();
            let h = std::thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || {
                    crate::seccomp::enter_or_exit(crate::seccomp::Thread::Vcpu);
                    vcpu::run_vcpu(ctx, &control.shared().vcpus)
                })
                .map_err(|e| VmError::Spawn(index, e))?;
            threads.push(h);
        }
        // Every vCPU thread is known (thread ids for the monitor) before we return.
        let n = threads.len();
        if !self
            .control
            .shared()
            .vcpus
            .wait_registered(n, std::time::Duration::from_secs(10))
        {
            tracing::warn!("not every vCPU thread started within 10 s");
        }
        lap("vCPU threads started");
        Ok(threads)
    }

    /// Writes the ACPI tables and loads the kernel, initrd and boot
    /// information into guest memory; returns how the boot vCPU enters the kernel,
    /// or `None` for firmware boot (the vCPU starts at the reset vector; ACPI goes
    /// through fw_cfg, and the BIOS tail is copied below 1 MiB).
    fn load_guest(&self, mem: &GuestMemoryMmap) -> Result<Option<EntryMode>, VmError> {
        let spec = &self.spec;
        if let Some(rom) = &self.firmware {
            rom.copy_low_alias(mem)?;
            lap("BIOS alias copied");
            return Ok(None);
        }
        let Some(kernel) = spec.boot.kernel.as_deref() else {
            return Ok(None);
        };
        let rsdp = if spec.platform.acpi {
            let rsdp = acpi::write(mem, &self.acpi_config())?;
            lap("ACPI tables written");
            Some(rsdp)
        } else {
            None
        };
        let src = BootSource {
            kernel,
            initrd: spec.boot.initrd.as_deref(),
            cmdline: &spec.boot.cmdline,
        };
        let entry = boot::load(mem, &self.ram, &src, rsdp)?;
        tracing::debug!(?entry, "kernel loaded");
        lap("kernel loaded");
        Ok(Some(entry))
    }

    /// Devices and vCPUs of a new machine whose memory is loaded.
    fn populate(
        &self,
        vm: &Arc<VmFd>,
        mem: &GuestMemoryMmap,
        entry: Option<EntryMode>,
    ) -> Result<Populated, VmError> {
        let spec = &self.spec;
        let pio = Arc::new(Bus::new());
        let mmio = Arc::new(Bus::new());
        let put = |dev: SharedDevice, base: u16, len: u64| {
            pio.insert(dev, u64::from(base), len).map_err(VmError::Bus)
        };

        let mut serials = Vec::new();
        for slot in &self.serial_slots {
            let i = usize::from(slot.port);
            let irq = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
                .map_err(io_err("cannot create an eventfd"))?;
            vm.register_irqfd(&irq, COM_IRQS[i])
                .map_err(|e| VmError::KvmIoctl("KVM_IRQFD", e))?;
            let space = self
                .rx_space
                .try_clone()
                .map_err(io_err("cannot clone an eventfd"))?;
            let dev = Arc::new(Mutex::new(SerialDevice::new(
                irq,
                space,
                self.chardevs[slot.chardev].writer(),
            )));
            put(dev.clone(), COM_PORTS[i], COM_PORT_LEN)?;
            serials.push(dev);
        }
        // The PS/2 keyboard and mouse; the console's input goes to them (and to
        // virtio input devices, which take precedence once their driver is up).
        let i8042 = crate::input::i8042(vm, self.exits.clone());
        let ps2 = Arc::new(crate::input::Ps2(i8042.clone()));
        self.pci_backends
            .input()
            .router()
            .set_devices(vec![ps2.clone()], vec![ps2]);
        put(i8042.clone(), I8042_DATA_PORT, 1)?;
        put(i8042.clone(), I8042_COMMAND_PORT, 1)?;
        let rtc_offset = crate::devices::cmos::start_offset(&spec.platform.rtc)?;
        let cmos = Arc::new(Mutex::new(Cmos::with_offset(rtc_offset)));
        put(cmos.clone(), CMOS_PORT, 2)?;
        put(
            Arc::new(Mutex::new(ResetControl::new(self.exits.clone()))),
            RESET_PORT,
            1,
        )?;
        put(
            Arc::new(Mutex::new(DebugPort::new(self.start))),
            DEBUG_PORT,
            1,
        )?;
        let pm_kind = crate::devices::pm::PmKind::of(spec.platform.chipset);
        let mut pm = PmDevice::with_kind(
            pm_kind,
            Box::new(KvmIrqLine {
                vm: vm.clone(),
                gsi: SCI_IRQ,
            }),
            self.exits.clone(),
        );
        if spec.platform.acpi_pci_hotplug {
            pm = pm.with_gpe();
        }
        let pm = Arc::new(Mutex::new(pm));
        put(pm.clone(), PM_BASE, pm_kind.ports())?;
        if spec.platform.acpi_pci_hotplug {
            use crate::devices::pm::{GPE0_BLK, GPE0_LEN};
            put(pm.clone(), GPE0_BLK, u64::from(GPE0_LEN))?;
        }
        let fw_cfg = Arc::new(Mutex::new(fw_cfg_items::build(
            mem,
            spec,
            &self.acpi_config(),
        )?));
        put(
            fw_cfg.clone(),
            crate::devices::fw_cfg::FW_CFG_PORT,
            crate::devices::fw_cfg::FW_CFG_PORT_LEN,
        )?;
        lap("platform devices created");
        if let Some((base, flash)) = &self.flash {
            flash.lock().unwrap_or_else(|e| e.into_inner()).reset();
            mmio.insert(
                flash.clone(),
                *base,
                flash.lock().unwrap_or_else(|e| e.into_inner()).size(),
            )
            .map_err(VmError::Bus)?;
        }
        if self.platform.firmware() {
            put(
                Arc::new(Mutex::new(PortA::new(self.exits.clone()))),
                PORT_A,
                1,
            )?;
            put(Arc::new(Mutex::new(DebugCon::default())), DEBUGCON_PORT, 1)?;
        }
        if has_pvpanic(spec) {
            put(
                Arc::new(Mutex::new(Pvpanic::new(self.exits.clone()))),
                PVPANIC_PORT,
                1,
            )?;
        }

        if let (Some(tpm), Some(model)) = (&self.tpm, crate::tpm::in_spec(spec)) {
            let (base, len) = crate::tpm::mmio_range(model);
            mmio.insert(crate::tpm::device(tpm, model)?, base, len)
                .map_err(VmError::Bus)?;
        }

        // ACPI PCI hot-plug events (`pc`) raise the PM block's hot-plug GPE.
        let gpe_pm = pm.clone();
        let hotplug_event = Box::new(move || {
            gpe_pm
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .raise_gpe(crate::devices::pm::GPE_PCI_HOTPLUG);
        });
        let pci = crate::virtio::attach::attach(
            spec,
            &self.pci_backends,
            vm,
            mem,
            (&pio, &mmio),
            hotplug_event,
        )?;
        lap("PCI root and devices attached");
        // Boot order names PCI slots, known now.
        {
            let mut f = fw_cfg.lock().unwrap_or_else(|e| e.into_inner());
            crate::firmware::add_boot_items(&mut f, spec, &pci.locations())?;
            if self.platform.firmware() {
                let ram: Vec<(u64, u64)> = self.ram.ranges.iter().map(|&(a, n)| (a.0, n)).collect();
                let fw = spec.boot.firmware.as_ref();
                let (anchor, tables) = crate::smbios::tables(
                    &spec.uuid,
                    &ram,
                    spec.cpus.count,
                    fw.and_then(|f| f.smbios.as_ref()),
                )?;
                f.add_file(crate::smbios::ANCHOR_FILE, anchor)?;
                f.add_file(crate::smbios::TABLES_FILE, tables)?;
            }
        }

        let topo = spec.cpus.topology;

        let mut contexts = Vec::new();
        // Built from vCPU 0's KVM_GET_SUPPORTED_HV_CPUID (vm/hyperv.rs).
        let mut hv_leaves = None;
        for index in 0..spec.cpus.count {
            let vcpu = vm
                .create_vcpu(u64::from(index))
                .map_err(|e| VmError::KvmIoctl("KVM_CREATE_VCPU", e))?;
            let mut entries = cpuid::for_vcpu(&self.base_cpuid, &topo, index);
            if let Some(hv) = &spec.platform.hyperv {
                hyperv::prepare_vcpu(hv, vm, &vcpu, &mut hv_leaves)?;
                let leaves = hv_leaves.as_deref().unwrap_or(&[]);
                crate::arch::x86_64::hyperv::merge(&mut entries, leaves);
            }
            let cpuid = CpuId::from_entries(&entries).map_err(|_| {
                VmError::KvmIoctl("KVM_SET_CPUID2", kvm_ioctls::Error::new(libc::E2BIG))
            })?;
            vcpu.set_cpuid2(&cpuid)
                .map_err(|e| VmError::KvmIoctl("KVM_SET_CPUID2", e))?;
            if let Some(hv) = &spec.platform.hyperv {
                hyperv::finish_vcpu(hv, vm, &vcpu, index)?;
            }
            if entry.is_some() {
                // What firmware would have left behind; firmware itself starts
                // from the reset state.
                vcpu.set_msrs(&msrs::boot_msrs())
                    .map_err(|e| VmError::KvmIoctl("KVM_SET_MSRS", e))?;
                vcpu.set_fpu(&regs::boot_fpu())
                    .map_err(|e| VmError::KvmIoctl("KVM_SET_FPU", e))?;
            }
            let mut lapic = vcpu
                .get_lapic()
                .map_err(|e| VmError::KvmIoctl("KVM_GET_LAPIC", e))?;
            regs::set_lint(&mut lapic);
            vcpu.set_lapic(&lapic)
                .map_err(|e| VmError::KvmIoctl("KVM_SET_LAPIC", e))?;
            if let (0, Some(entry)) = (index, entry) {
                let mut sregs = vcpu
                    .get_sregs()
                    .map_err(|e| VmError::KvmIoctl("KVM_GET_SREGS", e))?;
                regs::setup_sregs(mem, entry, &mut sregs)?;
                vcpu.set_sregs(&sregs)
                    .map_err(|e| VmError::KvmIoctl("KVM_SET_SREGS", e))?;
                vcpu.set_regs(&regs::boot_regs(entry))
                    .map_err(|e| VmError::KvmIoctl("KVM_SET_REGS", e))?;
            } else if index != 0 {
                // Application processors wait for INIT/SIPI from the guest.
                vcpu.set_mp_state(kvm_mp_state {
                    mp_state: KVM_MP_STATE_UNINITIALIZED,
                })
                .map_err(|e| VmError::KvmIoctl("KVM_SET_MP_STATE", e))?;
            }
            let pos = cpuid::position(&topo, index);
            contexts.push(VcpuContext {
                index,
                vcpu,
                pio: pio.clone(),
                mmio: mmio.clone(),
                exits: self.exits.clone(),
                mem: mem.clone(),
                info: VcpuThreadInfo {
                    cpu_index: index,
                    thread_id: 0,
                    socket_id: pos.socket,
                    die_id: pos.die,
                    core_id: pos.core,
                    thread_id_in_core: pos.thread,
                },
            });
        }

        lap("vCPUs created and set up");
        Ok(Populated {
            contexts,
            serials,
            pm,
            pci,
            platform: PlatformDevices {
                i8042,
                cmos,
                fw_cfg,
            },
        })
    }

    /// Builds and starts a machine, keeping the pause state.
    fn start_machine(&mut self) -> Result<(), VmError> {
        let built = match self.built.take() {
            Some(b) => b,
            None => {
                let pending = match self.pending.take() {
                    Some(p) => p,
                    None => PendingVm::start(
                        &self.ram,
                        backing(&self.spec),
                        &self.platform,
                        self.firmware.as_ref(),
                    )?,
                };
                self.build_machine(pending)?
            }
        };
        if std::mem::take(&mut self.restore_pending) {
            self.restore_into(&built)?;
        }
        self.machine = Some(self.launch(built)?);
        Ok(())
    }

    /// Builds the first machine without starting it, so that the caller can do
    /// other start-up work (the QMP monitor) on another thread meanwhile;
    /// [`Vmm::run`] starts it. Calling this is optional.
    pub fn prepare(&mut self) -> Result<(), VmError> {
        if let Some(pending) = self.pending.take() {
            self.built = Some(self.build_machine(pending)?);
        }
        Ok(())
    }

    /// Stops and joins the vCPU threads and drops the machine.
    fn stop_machine(&mut self) {
        if let Some(mut m) = self.machine.take() {
            let gate = &self.control.shared().vcpus;
            gate.stop_all();
            for t in m.threads.drain(..) {
                let _ = t.join();
            }
            gate.clear();
            drop(m);
        }
        // Anything reported by the old machine after the fact is moot.
        let _ = self.exits.take();
    }

    /// Reset: a new machine from scratch.
    fn restart(&mut self) -> Result<(), VmError> {
        self.stop_machine();
        self.start_machine()
    }

    /// Builds the machine and runs until the guest or the host ends it.
    pub fn run(&mut self) -> Result<Outcome, VmError> {
        let epoll = Epoll::new().map_err(io_err("cannot create epoll"))?;
        let add = |fd: RawFd, token: u64| {
            epoll
                .ctl(
                    ControlOperation::Add,
                    fd,
                    EpollEvent::new(EventSet::IN, token),
                )
                .map_err(io_err("cannot watch a file descriptor"))
        };
        let signals = SignalFd::with_flags(
            &host_signals(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .map_err(nix_err("cannot create a signalfd"))?;
        add(self.exits.eventfd().as_raw_fd(), TOKEN_EXIT)?;
        add(self.control.shared().wake.as_raw_fd(), TOKEN_CONTROL)?;
        add(signals.as_raw_fd(), TOKEN_SIGNAL)?;
        add(self.rx_space.as_raw_fd(), TOKEN_RX_SPACE)?;
        let mut watched: Vec<Option<RawFd>> = vec![None; self.chardevs.len()];
        let mut throttled = vec![false; self.chardevs.len()];
        for (i, c) in self.chardevs.iter().enumerate() {
            if let Some(fd) = c.poll_fd() {
                // Regular files and /dev/null cannot be polled: no input from those.
                match add(fd, TOKEN_CHARDEV + i as u64) {
                    Ok(()) => watched[i] = Some(fd),
                    Err(e) => {
                        tracing::debug!(chardev = %c.label, error = %e, "input not pollable; ignored")
                    }
                }
            }
        }

        self.start_machine()?;
        tracing::info!(
            name = %self.spec.name,
            us = self.start.elapsed().as_micros() as u64,
            "guest started"
        );
        // Everything this thread opens from here on is for a reset (see seccomp).
        crate::seccomp::enter_or_exit(crate::seccomp::Thread::Main);

        let mut events = vec![EpollEvent::default(); 16];
        loop {
            let n = match epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(VmError::Os("epoll_wait failed", e)),
            };
            for ev in &events[..n] {
                let token = ev.data();
                let outcome = match token {
                    TOKEN_EXIT => match self.exits.take() {
                        Some(exit) => self.on_guest_exit(exit)?,
                        None => None,
                    },
                    TOKEN_CONTROL => self.on_requests()?,
                    TOKEN_SIGNAL => {
                        let sig = signals.read_signal().ok().flatten().map(|s| s.ssi_signo);
                        let name = sig
                            .and_then(|s| Signal::try_from(s as i32).ok())
                            .map(|s| s.as_str())
                            .unwrap_or("a signal");
                        self.control.emit(VmEvent::Shutdown {
                            guest: false,
                            reason: ShutdownCause::HostSignal,
                        });
                        self.stop_machine();
                        self.control.set_status(RunState::Shutdown);
                        Some(Outcome {
                            status: exit::HOST_STOP,
                            message: format!("terminating on {name}"),
                        })
                    }
                    TOKEN_RX_SPACE => {
                        let _ = self.rx_space.read();
                        for (i, t) in throttled.iter_mut().enumerate() {
                            if *t {
                                *t = false;
                                if let Some(fd) = watched[i] {
                                    let _ = add(fd, TOKEN_CHARDEV + i as u64);
                                }
                            }
                        }
                        None
                    }
                    t => {
                        let i = (t - TOKEN_CHARDEV) as usize;
                        self.on_chardev_input(i, &epoll, &mut watched, &mut throttled);
                        None
                    }
                };
                if let Some(o) = outcome {
                    return Ok(o);
                }
            }
        }
    }

    /// Feeds backend input to the UART behind chardev `i`.
    fn on_chardev_input(
        &mut self,
        i: usize,
        epoll: &Epoll,
        watched: &mut [Option<RawFd>],
        throttled: &mut [bool],
    ) {
        let serial = self
            .serial_slots
            .iter()
            .position(|s| s.chardev == i)
            .and_then(|slot| self.machine.as_ref().map(|m| m.serials[slot].clone()));
        let room = serial
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).rx_capacity())
            .unwrap_or(64);
        if room == 0 {
            // The guest has not drained the FIFO: stop polling until it does.
            if let Some(fd) = watched[i] {
                let _ = epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
            }
            throttled[i] = true;
            return;
        }
        match self.chardevs[i].on_readable(room) {
            InputEvent::Data(bytes) => {
                if let Some(s) = serial {
                    s.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .enqueue_input(&bytes);
                }
            }
            InputEvent::Connected | InputEvent::Closed => {
                if let Some(fd) = watched[i].take() {
                    let _ = epoll.ctl(ControlOperation::Delete, fd, EpollEvent::default());
                }
                if let Some(fd) = self.chardevs[i].poll_fd() {
                    let ev = EpollEvent::new(EventSet::IN, TOKEN_CHARDEV + i as u64);
                    if epoll.ctl(ControlOperation::Add, fd, ev).is_ok() {
                        watched[i] = Some(fd);
                    }
                }
            }
            InputEvent::Nothing => {}
        }
    }

    /// Applies the lifecycle action for a guest exit.
    fn on_guest_exit(&mut self, exit: GuestExit) -> Result<Option<Outcome>, VmError> {
        let lc = self.spec.lifecycle;
        match exit {
            GuestExit::PowerOff => {
                self.control.emit(VmEvent::Shutdown {
                    guest: true,
                    reason: ShutdownCause::GuestShutdown,
                });
                self.after_shutdown(
                    action(lc.on_poweroff),
                    exit::POWEROFF,
                    "guest powered off".into(),
                )
            }
            GuestExit::Reset => match action(lc.on_reboot) {
                Action::Restart => {
                    tracing::info!("guest reset; restarting the machine");
                    self.restart()?;
                    self.control.emit(VmEvent::Reset {
                        guest: true,
                        reason: ShutdownCause::GuestReset,
                    });
                    Ok(None)
                }
                a => {
                    self.control.emit(VmEvent::Shutdown {
                        guest: true,
                        reason: ShutdownCause::GuestReset,
                    });
                    self.after_shutdown(a, exit::REBOOT, "guest reset (on_reboot=destroy)".into())
                }
            },
            GuestExit::Crash(msg) => {
                tracing::error!("guest crashed: {msg}");
                match action(lc.on_crash) {
                    Action::Restart => {
                        self.restart()?;
                        self.control.emit(VmEvent::Reset {
                            guest: true,
                            reason: ShutdownCause::GuestReset,
                        });
                        Ok(None)
                    }
                    Action::Preserve => {
                        self.stop_machine();
                        self.control.set_status(RunState::InternalError);
                        self.control.emit(VmEvent::Stop);
                        Ok(None)
                    }
                    Action::Destroy => {
                        self.control.emit(VmEvent::Shutdown {
                            guest: false,
                            reason: ShutdownCause::HostError,
                        });
                        self.stop_machine();
                        self.control.set_status(RunState::InternalError);
                        Ok(Some(Outcome {
                            status: exit::CRASH,
                            message: format!("guest crashed: {msg}"),
                        }))
                    }
                }
            }
            GuestExit::Panicked => {
                tracing::error!("guest reported a panic (pvpanic)");
                match action(lc.on_crash) {
                    Action::Restart => {
                        self.control.emit(VmEvent::GuestPanicked {
                            action: PanicAction::Run,
                        });
                        self.restart()?;
                        self.control.emit(VmEvent::Reset {
                            guest: true,
                            reason: ShutdownCause::GuestPanic,
                        });
                        Ok(None)
                    }
                    Action::Preserve => {
                        self.control.emit(VmEvent::GuestPanicked {
                            action: PanicAction::Pause,
                        });
                        self.stop_machine();
                        self.control.set_status(RunState::GuestPanicked);
                        Ok(None)
                    }
                    Action::Destroy => {
                        self.control.emit(VmEvent::GuestPanicked {
                            action: PanicAction::Poweroff,
                        });
                        self.control.emit(VmEvent::Shutdown {
                            guest: true,
                            reason: ShutdownCause::GuestPanic,
                        });
                        self.stop_machine();
                        self.control.set_status(RunState::GuestPanicked);
                        Ok(Some(Outcome {
                            status: exit::CRASH,
                            message: "guest panicked".into(),
                        }))
                    }
                }
            }
        }
    }

    /// After a power-off or a reset that is not a restart.
    fn after_shutdown(
        &mut self,
        a: Action,
        status: i32,
        message: String,
    ) -> Result<Option<Outcome>, VmError> {
        match a {
            Action::Restart => {
                self.restart()?;
                Ok(None)
            }
            Action::Preserve => {
                self.stop_machine();
                self.control.set_status(RunState::Shutdown);
                tracing::info!("{message}; keeping the process (preserve)");
                Ok(None)
            }
            Action::Destroy => {
                self.stop_machine();
                self.control.set_status(RunState::Shutdown);
                Ok(Some(Outcome { status, message }))
            }
        }
    }

    fn on_requests(&mut self) -> Result<Option<Outcome>, VmError> {
        // Hot-plug work the monitor queued (`virtio/hotplug.rs`).
        self.pci_backends.hotplug().run_pending();
        for req in self.control.take_requests() {
            match req {
                crate::control::Request::Quit => {
                    self.control.emit(VmEvent::Shutdown {
                        guest: false,
                        reason: ShutdownCause::HostQmpQuit,
                    });
                    self.stop_machine();
                    self.control.set_status(RunState::Shutdown);
                    return Ok(Some(Outcome {
                        status: exit::HOST_STOP,
                        message: "quit requested by the monitor".into(),
                    }));
                }
                crate::control::Request::Reset => {
                    self.restart()?;
                    self.control.emit(VmEvent::Reset {
                        guest: false,
                        reason: ShutdownCause::HostQmpSystemReset,
                    });
                }
                crate::control::Request::Save => {
                    for mut job in self.control.take_saves() {
                        let r = self.save_machine(&mut job.out).map_err(|e| {
                            let mut msg = e.to_string();
                            let mut src = std::error::Error::source(&e);
                            while let Some(s) = src {
                                msg.push_str(&format!(": {s}"));
                                src = s.source();
                            }
                            msg
                        });
                        let _ = job.reply.send(r);
                    }
                }
                crate::control::Request::PowerButton => {
                    if let Some(m) = &self.machine {
                        m.pm.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .press_power_button();
                        self.control.emit(VmEvent::Powerdown);
                    }
                }
            }
        }
        Ok(None)
    }
}

impl Drop for Vmm {
    fn drop(&mut self) {
        self.stop_machine();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libvirt_actions_map_to_three_behaviours() {
        assert_eq!(action(LifecycleAction::Destroy), Action::Destroy);
        assert_eq!(action(LifecycleAction::RenameRestart), Action::Destroy);
        assert_eq!(action(LifecycleAction::CoredumpDestroy), Action::Destroy);
        assert_eq!(action(LifecycleAction::Restart), Action::Restart);
        assert_eq!(action(LifecycleAction::CoredumpRestart), Action::Restart);
        assert_eq!(action(LifecycleAction::Preserve), Action::Preserve);
    }
}
