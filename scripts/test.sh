#!/usr/bin/env bash
# The project's test command (README, .ci/run): build the binaries that the
# integration tests spawn (oxvirt-vmm, oxvirtd, oxvirt-xml), then run every test.
# Guest images are built by the test harness on first use and cached in
# ${OXVIRT_CACHE:-$HOME/.cache/oxvirt}. Extra arguments go to `cargo test`.
# --no-fail-fast: one failing test binary must not hide the rest (cargo would stop
# there and skip every later package, the VMM's own tests included); the exit status
# still fails if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
# Run as root, the daemon tests start system daemons, which run their VMMs as the
# package's own user (vmm_user, default oxvirt-vmm): create it as the package does.
if [[ $(id -u) == 0 ]] && ! getent passwd oxvirt-vmm >/dev/null; then
  systemd-sysusers "$PWD/packaging/sysusers/oxvirt.conf"
fi
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@"
