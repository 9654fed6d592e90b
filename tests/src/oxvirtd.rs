//! Private oxvirtd instances for the daemon tests.

use std::path::{Path, PathBuf};

use crate::bin_path;

/// Writes `dir/oxvirtd.toml` for a daemon that keeps its store (`dir/domains`) and
/// runtime dir (`dir/run`) under `dir`, runs our `oxvirt-vmm`, serves D-Bus on the
/// bus at unix socket `bus` and libvirt RPC on `rpc_socket`; returns its path.
pub fn write_config(dir: &Path, bus: &Path, autostart: bool, rpc_socket: &Path) -> PathBuf {
    let config = dir.join("oxvirtd.toml");
    std::fs::write(
        &config,
        format!(
            "domains_dir = \"{d}/domains\"\nruntime_dir = \"{d}/run\"\nvmm = \"{vmm}\"\n\
             bus = \"unix:path={bus}\"\nautostart = {autostart}\nrpc_socket = \"{sock}\"\n",
            d = dir.display(),
            vmm = bin_path("oxvirt-vmm").display(),
            bus = bus.display(),
            sock = rpc_socket.display(),
        ),
    )
    .expect("writing oxvirtd.toml");
    config
}
