//! `oxvirtd`: serves libvirt's D-Bus interface for domains run by `oxvirt-vmm`.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use daemon::config::{Bus, Config, Mode};
use daemon::core::{Core, CoreConfig};
use daemon::dbus::{self, Gate, ServeOptions};

/// oxvirt domain daemon: libvirt-compatible D-Bus service (org.libvirt) for
/// KVM domains run by oxvirt-vmm.
#[derive(Parser, Debug)]
#[command(name = "oxvirtd", version, about, long_about = None)]
struct Args {
    /// Run as the system instance (root, system bus, /etc, /var/lib, /run).
    #[arg(long, conflicts_with = "session")]
    system: bool,
    /// Run as a user's instance (session bus, XDG directories). The default for non-root.
    #[arg(long)]
    session: bool,
    /// Configuration file (default: /etc/oxvirt/oxvirtd.toml, or
    /// $XDG_CONFIG_HOME/oxvirt/oxvirtd.toml in session mode).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Also answer as libvirt's QEMU driver (`qemu:///system`, `qemu:///session`) on its
    /// sockets (virtqemud-sock, libvirt-sock); refused while a libvirt daemon holds them.
    /// Same as `qemu_uri = true` in the configuration file.
    #[arg(long)]
    qemu_uri: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OXVIRTD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mode = if args.system || (!args.session && nix::unistd::geteuid().is_root()) {
        Mode::System
    } else {
        Mode::Session
    };
    let mut config = Config::load(mode, args.config.as_deref()).context("loading configuration")?;
    config.qemu_uri |= args.qemu_uri;
    // Before the runtime starts threads: this edits the environment.
    let passed = daemon::rpc::activation::Inherited::from_env()
        .context("taking the sockets passed by systemd")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(config, passed))
}

async fn run(config: Config, passed: daemon::rpc::activation::Inherited) -> anyhow::Result<()> {
    tracing::info!(?config, "starting");
    let core = Core::open(CoreConfig {
        domains_dir: config.domains_dir.clone(),
        runtime_dir: config.runtime_dir.clone(),
        vmm: config.vmm.clone(),
        autostart: config.autostart,
        vmm_user: config.vmm_user.clone(),
    })
    .await
    .context("opening the domain store")?;
    let _rpc = daemon::rpc::start_with(
        core.clone(),
        daemon::rpc::RpcConfig::from_config(&config),
        passed,
    )
    .context("serving the libvirt remote protocol")?;
    let (bus, gate) = match &config.bus {
        Bus::System => (
            zbus::connection::Builder::system(),
            Gate::root_or_group(&config.group),
        ),
        Bus::Session => (zbus::connection::Builder::session(), Gate::open()),
        Bus::Address(a) => (
            zbus::connection::Builder::address(a.as_str()),
            match config.mode {
                Mode::System => Gate::root_or_group(&config.group),
                Mode::Session => Gate::open(),
            },
        ),
    };
    let _conn = dbus::serve(
        core.clone(),
        ServeOptions {
            bus,
            bus_name: config.bus_name.clone(),
            object_path: config.object_path.clone(),
            gate,
        },
    )
    .await
    .context("serving on D-Bus")?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(
        bus_name = config.bus_name,
        path = config.object_path,
        "ready"
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    // Running VMMs are left running; the next start finds them again.
    tracing::info!("stopping; running domains keep running");
    Ok(())
}
