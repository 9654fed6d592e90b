#!/usr/bin/env bash
# The project's test command (README, .ci/run): build the binaries that the
# integration tests spawn (oxvirt-vmm, oxvirtd, oxvirt-xml), then run every test.
# Guest images are built by the test harness on first use and cached in
# ${OXVIRT_CACHE:-$HOME/.cache/oxvirt}. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
cargo test --workspace "$@"
