#!/usr/bin/env bash
# Runs the seeded guest-side device fuzzer (issue #20) longer than CI does: the oxtest
# guest's `fuzz` mode on the many-device machine of tests/tests/vmm_guest_fuzz.rs.
#
#   scripts/guest-fuzz.sh SEED[,SEED...] [OPS] [VQ_ROUNDS] [q35|pc]
#
# OPS register operations (default 20000) and VQ_ROUNDS malformed virtqueue requests per
# virtio device (default 200) per seed. Each seed must reach OXTEST FUZZ DONE without a
# VMM panic, hang or runaway memory/log; on failure the guest console and the VMM log
# are printed. To find the operation that broke something, boot the same seed with
# `fuzzverbose` on the guest command line (every operation printed before it is made).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:?usage: scripts/guest-fuzz.sh SEED[,SEED...] [OPS] [VQ_ROUNDS] [q35|pc]}"
ops="${2:-20000}"
vq="${3:-200}"
machine="${4:-q35}"
cargo build -p vmm --bins
OXVIRT_FUZZ_SEEDS="$seeds" OXVIRT_FUZZ_OPS="$ops" OXVIRT_FUZZ_VQ="$vq" \
OXVIRT_FUZZ_MACHINE="$machine" OXVIRT_FUZZ_TIMEOUT="${OXVIRT_FUZZ_TIMEOUT:-600}" \
  cargo test -p oxvirt-tests --test vmm_guest_fuzz -- --nocapture
