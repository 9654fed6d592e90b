//! `oxvirt-vmm`: boots one machine from a machine spec or a libvirt domain XML.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use machine_spec::{exit, MachineSpec};

const EXIT_STATUSES: &str = "\
Exit statuses:
  0  the guest powered off (ACPI S5) and on_poweroff is destroy
  1  the VMM could not start or failed (bad spec, no /dev/kvm, kernel missing, ...)
  2  command-line usage error
  3  the guest reset itself and on_reboot is destroy
  4  the guest crashed: triple fault, KVM internal/emulation error, guest panic
  5  stopped from the host: SIGTERM, SIGINT, SIGHUP or QMP quit

The serial console with a stdio backend is this terminal; the log goes to stderr
(level from OXVIRT_LOG, e.g. OXVIRT_LOG=debug).";

/// Boot a virtual machine on KVM.
#[derive(Parser, Debug)]
#[command(name = "oxvirt-vmm", version, after_help = EXIT_STATUSES)]
#[command(group(clap::ArgGroup::new("machine").required(true).args(["spec", "xml", "probe_cpu", "open_tap"])))]
struct Args {
    /// Machine spec (JSON) to boot.
    #[arg(long, value_name = "FILE")]
    spec: Option<PathBuf>,
    /// libvirt domain XML to translate and boot.
    #[arg(long, value_name = "FILE")]
    xml: Option<PathBuf>,
    /// Serve QMP on this unix socket.
    #[arg(long, value_name = "PATH")]
    qmp: Option<PathBuf>,
    /// Write the process id to this file.
    #[arg(long, value_name = "PATH")]
    pidfile: Option<PathBuf>,
    /// Per-thread seccomp filters: `kill` stops the VMM at a system call its
    /// thread may not make (naming it on stderr), `log` lets the kernel log it,
    /// `none` installs no filters.
    #[arg(long, value_name = "MODE", default_value = "kill")]
    seccomp: vmm::seccomp::Mode,
    /// Print the host CPU as KVM offers it to guests (vendor, signature, libvirt
    /// feature names) as JSON and exit: what oxvirtd's CPU model calls start from.
    #[arg(long)]
    probe_cpu: bool,
    /// Start with the vCPUs stopped until QMP `cont` (QEMU's `-S`).
    #[arg(long, short = 'S')]
    paused: bool,
    /// oxvirtd's tap helper: create (or join) tap NAME with a vnet header, put it on
    /// `--bridge`, bring it up, send its descriptor and name over stdout (a unix
    /// socket) and exit.
    #[arg(long, value_name = "NAME")]
    open_tap: Option<String>,
    /// The bridge for `--open-tap`.
    #[arg(long, value_name = "BRIDGE")]
    bridge: Option<String>,
    /// Queues for `--open-tap`: more than one makes a multiqueue tap, and one
    /// descriptor per queue is sent.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    queues: Option<u16>,
    /// Keep no CAP_NET_ADMIN: every tap comes open (`tap_fds` in the spec, `netdev_add`
    /// with `fd`/`fds`), as oxvirtd starts the VMM; a tap named without a descriptor then
    /// cannot be created or joined to its bridge.
    #[arg(long)]
    no_net_admin: bool,
    /// Keep no CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH: the domain's images, media,
    /// kernel and firmware come open (`files` in the spec, QMP `add-fd` before
    /// `blockdev-add`), as oxvirtd starts the VMM; a file opened by path then needs
    /// the VMM user's own rights.
    #[arg(long)]
    no_dac: bool,
    /// Started as root, take the files handed over (`files` in the spec: images,
    /// kernel, firmware, `/dev/kvm`) and become USER (a name or a uid, with its
    /// groups; `USER:GROUP` as libvirt's DAC labels) before building the machine:
    /// QEMU's `-runas`. What is not handed over is then opened with USER's rights only.
    #[arg(long, value_name = "USER[:GROUP]")]
    run_as: Option<String>,
    /// With `--run-as`: the supplementary groups (numbers, comma-separated) instead
    /// of the user's own from the user database (oxvirtd passes them with `--run-as
    /// +UID:+GID`, so the VMM asks the database nothing).
    #[arg(
        long,
        value_name = "GID,...",
        value_delimiter = ',',
        requires = "run_as"
    )]
    groups: Option<Vec<u32>>,
    /// Run in a private mount namespace where the host's files are read-only, /tmp
    /// is private and /home, /root, /run and the like are empty; only DIR (the
    /// domain's runtime directory) and a TPM's state stay writable. Everything else
    /// must come open (`files` in the spec), as oxvirtd hands it over. Not root: in
    /// a user namespace of its own, where the host allows one.
    #[arg(long, value_name = "DIR")]
    mount_sandbox: Option<PathBuf>,
}

fn load_spec(args: &Args) -> anyhow::Result<MachineSpec> {
    if let Some(p) = &args.spec {
        let text = std::fs::read_to_string(p)
            .with_context(|| format!("cannot read machine spec '{}'", p.display()))?;
        return MachineSpec::from_json(&text).with_context(|| format!("in '{}'", p.display()));
    }
    let p = args.xml.as_ref().expect("clap requires --spec or --xml");
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("cannot read domain XML '{}'", p.display()))?;
    domain_xml::spec_from_xml(&text).with_context(|| format!("in '{}'", p.display()))
}

fn write_pidfile(path: &PathBuf) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))
        .and_then(|_| std::fs::rename(&tmp, path))
        .with_context(|| format!("cannot write pid file '{}'", path.display()))
}

fn run(args: Args) -> anyhow::Result<i32> {
    if args.probe_cpu {
        let host = vmm::arch::x86_64::cpu_model::probe_host()
            .context("cannot read KVM's supported CPUID from /dev/kvm")?;
        println!("{}", serde_json::to_string(&host)?);
        return Ok(0);
    }
    let spec = load_spec(&args)?;
    vmm::files::adopt(&spec.files).context("cannot take the files handed over")?;
    if let Some(dir) = &args.mount_sandbox {
        vmm::mounts::enter(dir, &vmm::mounts::writable_paths(&spec))?;
        vmm::vm::lap("mount sandbox entered");
    }
    if let Some(user) = &args.run_as {
        let groups: Option<Vec<nix::unistd::Gid>> = args
            .groups
            .as_ref()
            .map(|g| g.iter().map(|n| nix::unistd::Gid::from_raw(*n)).collect());
        vmm::privilege::run_as(user, groups.as_deref())?;
    }
    // What the domain XML asked for that runs without effect or differently (the
    // domain log is where a libvirt user looks for it).
    for w in &spec.warnings {
        tracing::warn!("{w}");
    }
    let machine_info = vmm::monitor::MachineInfo::from_spec(&spec);
    let mut vmm = vmm::Vmm::new(spec)?;
    if args.paused {
        vmm.control().start_paused();
    }
    let monitor = match &args.qmp {
        Some(path) => {
            // The monitor starts (schema, runtime, socket) while the machine is
            // built; no guest code runs before both are done.
            let (path, control, devices) = (path.clone(), vmm.control(), vmm.monitor_devices());
            let starting = std::thread::Builder::new()
                .name("qmp-start".into())
                .spawn(move || vmm::monitor::Monitor::start(&path, machine_info, control, devices))
                .context("cannot spawn the monitor start-up thread")?;
            let built = vmm.prepare();
            let monitor = starting
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))?;
            vmm::vm::lap("QMP monitor started");
            if let Err(e) = built {
                monitor.shutdown();
                return Err(e.into());
            }
            Some(monitor)
        }
        None => None,
    };
    if let Some(p) = &args.pidfile {
        write_pidfile(p)?;
    }
    let outcome = vmm.run();
    // Clients get their last replies and events (quit's reply, SHUTDOWN) first.
    if let Some(m) = monitor {
        m.shutdown();
    }
    let outcome = outcome?;
    tracing::info!("{}", outcome.message);
    drop(vmm);
    if let Some(p) = &args.pidfile {
        let _ = std::fs::remove_file(p);
    }
    Ok(outcome.status)
}

fn main() -> ExitCode {
    let _ = vmm::vm::startup_clock();
    // Before any thread exists, so every thread inherits the mask.
    let _ = vmm::block_host_signals();
    // clap does not check `requires` against a member of the required group.
    let parsed = Args::try_parse().and_then(|a| match (&a.bridge, &a.queues, &a.open_tap) {
        (Some(_), _, None) | (_, Some(_), None) => Err(<Args as clap::CommandFactory>::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--bridge and --queues go with --open-tap",
            )),
        _ => Ok(a),
    });
    let args = match parsed {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE as u8 } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OXVIRT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    vmm::vm::lap("arguments parsed, log initialised");
    if let Some(name) = &args.open_tap {
        use std::os::fd::AsFd;
        return match vmm::virtio::net::Tap::hand_over(
            name,
            args.bridge.as_deref(),
            args.queues.unwrap_or(1),
            std::io::stdout().as_fd(),
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{:#}", anyhow::Error::new(e));
                ExitCode::from(exit::VMM_ERROR as u8)
            }
        };
    }
    if args.no_net_admin {
        vmm::seccomp::drop_net_admin();
    }
    if args.no_dac {
        vmm::seccomp::drop_dac();
    }
    if let Err(e) = vmm::seccomp::init(args.seccomp) {
        tracing::error!("{:#}", anyhow::Error::new(e));
        return ExitCode::from(exit::VMM_ERROR as u8);
    }
    match run(args) {
        Ok(status) => ExitCode::from(status as u8),
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(exit::VMM_ERROR as u8)
        }
    }
}
