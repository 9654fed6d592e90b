#!/usr/bin/env bash
# Tier 4 (full Linux) on a machine without hardware KVM: runs the `linux_full` test suite
# inside a QEMU TCG guest with nested SVM (tests/nested-svm/run; tests/README.md,
# "Tier 4 in a nested SVM guest"). Builds what it needs first: the debug `linux_full`
# test binary (as `cargo test --workspace` builds it), a release `oxvirt-vmm`, the Debian
# kernel and busybox in the harness's cache, and the stock Linux test guest
# (tests/linux-guest/build.sh --stock). Extra arguments go to the test binary (a test
# name filter, --nocapture, ...). The exit status is the suite's; 125 means no status
# came back from the nested guest even after one retry (an infrastructure error).
#
# Knobs: OXVIRT_CACHE (as everywhere), OXVIRT_NESTED_MEM (L1 RAM, default 6G),
# OXVIRT_NESTED_TIMEOUT (seconds for one boot of L1 with the whole suite, default 1200),
# OXVIRT_NESTED_STALL (seconds without L1 heartbeat that count as a stall, default 180,
# 0: off), OXVIRT_NESTED_WATCH=S (print L1's processes and kernel messages every S s).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
export CARGO_TERM_COLOR=never
log() { echo "test-nested-svm: $*" >&2; }

if [ -e /sys/module/kvm_pvm ] || ! [ -e /dev/kvm ]; then
	log "this host's KVM is emulated or absent: tier 4 runs in the nested SVM guest"
else
	log "note: this host has a KVM of its own; tier 4 can also run directly:" \
		"cargo test -p oxvirt-tests --test linux_full"
fi

start=$(date +%s)
target=$(cargo metadata --format-version 1 --no-deps |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
log "building (release oxvirt-vmm, the linux_full test binary, the asset tool)"
cargo build --release -p vmm --bin oxvirt-vmm
cargo build --workspace --bins # a no-op after scripts/test.sh
# All of the workspace's tests, as scripts/test.sh builds them (a no-op after it; with
# `--test linux_full` alone cargo would unify features differently and rebuild).
test_bin=$(cargo test --workspace --no-run --message-format=json |
	python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "linux_full" \
            and m.get("executable"):
        print(m["executable"])')
[ -x "$test_bin" ] || {
	log "error: no linux_full test binary found"
	exit 1
}

# Host-side assets, in the harness's own cache layout; L1 has no apt and no network.
cache=${OXVIRT_CACHE:-$HOME/.cache/oxvirt}
kernel_paths=$("$target/debug/oxvirt-test-assets" kernel) # vmlinuz, then vmlinux
kernel_vmlinuz=${kernel_paths%%$'\n'*}
"$target/debug/oxvirt-test-assets" initramfs >/dev/null # fetches busybox-static
kernel_dir=$(dirname "$kernel_vmlinuz")
stock_dir=$(tests/linux-guest/build.sh --stock | tail -1)
[ -f "$stock_dir/initramfs.cpio" ] || {
	log "error: tests/linux-guest/build.sh --stock gave no guest"
	exit 1
}

# What goes into L1, at the same paths: a small cache for the harness (kernel and
# busybox; it writes its initramfs there), the stock guest, the binaries and the host
# tools the tests run (iproute2's ip: busybox's lacks `ip netns`).
work=$(mktemp -d "${TMPDIR:-/tmp}/oxvirt-tier4.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/cache/linux" "$work/cache/busybox-static"
cp -a "$kernel_dir" "$work/cache/linux/"
cp -a "$cache/busybox-static/busybox" "$work/cache/busybox-static/"
# The oxtest guest (full_hyperv_enlightenments boots it), built here: L1 has no gcc. The
# harness finds it by the hash of tests/guests/, which goes in too.
# sed, not head: head exits after one line and the tool would write its second one
# into a closed pipe (EPIPE, a failed pipeline under pipefail).
guest_elf=$("$target/debug/oxvirt-test-assets" guests | sed -n 1p)
mkdir -p "$work/cache/guests"
cp -a "$(dirname "$guest_elf")" "$work/cache/guests/"
ip=$(command -v ip)
qemu_img=$(command -v qemu-img)
[ "$("$ip" -V 2>&1 | grep -c iproute2)" = 1 ] || {
	log "error: $ip is not iproute2's (apt-get install iproute2)"
	exit 1
}
log "prepared in $(($(date +%s) - start)) s; running linux_full in the nested SVM guest"

printf -v args ' %q' "$@"
"$repo/tests/nested-svm/run" --mem "${OXVIRT_NESTED_MEM:-6G}" \
	--timeout "${OXVIRT_NESTED_TIMEOUT:-1200}" --stall "${OXVIRT_NESTED_STALL:-180}" \
	${OXVIRT_NESTED_WATCH:+--watch "$OXVIRT_NESTED_WATCH"} \
	--bin "$test_bin" --bin "$target/release/oxvirt-vmm" --bin "$ip" --bin "$qemu_img" \
	--add "$work/cache" --add "$stock_dir" --add "$repo/tests/guests" -- "
export OXVIRT_CACHE=$work/cache OXVIRT_BIN_DIR=$target/release
export OXVIRT_DEBIAN_KERNEL_DIR=$work/cache/linux/$(basename "$kernel_dir")
export OXVIRT_LINUX_STOCK_DIR=$stock_dir RUST_BACKTRACE=1
cd /tmp && $test_bin --test-threads=1$args"
