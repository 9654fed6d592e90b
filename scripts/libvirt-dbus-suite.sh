#!/usr/bin/env bash
# libvirt-dbus's own upstream test suite (v1.4.1 `tests/`, pytest + dbus-python)
# against oxvirtd. The suite starts "libvirt-dbus --session" itself for every test
# and talks to /org/libvirt/Test (libvirt's test driver); here that program is a
# wrapper that starts oxvirtd on the suite's bus at /org/libvirt/Test with a
# fixture store shaped like the test driver's: a domain `test` (the oxtest guest,
# defined, not started), a `default` network (defined), a `default-pool` pool.
#
# The source comes from Debian (deb-src through a private apt list, nothing on
# the host's apt configuration changes): the .orig tarball holds tests/.
# Needs: python3-pytest, python3-dbus, python3-gi; cargo-built oxvirtd/oxvirt-vmm
# and the oxtest guest (`cargo run -p oxvirt-tests --bin oxvirt-test-assets`).
# Prints pytest's summary; exits with pytest's status.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${OXVIRT_CACHE:-$HOME/.cache/oxvirt}/libvirt-dbus-suite
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/exe/src"
if [ ! -d "$work/libvirt-dbus-1.4.1/tests" ]; then
    cat > "$work/apt/src.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/apt"
        -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache")
    apt-get "${apt_opts[@]}" update >/dev/null
    # Only the upstream tarball is needed; Debian's own parts may be missing on a mirror.
    (cd "$work" && apt-get "${apt_opts[@]}" source --download-only libvirt-dbus=1.4.1-3 >/dev/null 2>&1 || true)
    tar -C "$work" -xf "$work/libvirt-dbus_1.4.1.orig.tar.xz"
fi
elf=$(cargo run -q -p oxvirt-tests --bin oxvirt-test-assets -- guests 2>/dev/null | head -1 || true)
[ -f "$elf" ] || elf=$(ls "${OXVIRT_CACHE:-$HOME/.cache/oxvirt}"/guests/*/oxtest.elf | head -1)
cat > "$work/exe/src/libvirt-dbus" <<EOF
#!/bin/bash
# oxvirtd standing in for libvirt-dbus (written by scripts/libvirt-dbus-suite.sh).
d=\$(mktemp -d "$work/run.XXXXXX")
mkdir -p \$d/domains \$d/run \$d/storage \$d/networks \$d/pool
cat > \$d/domains/test.xml <<X
<domain type='kvm'><name>test</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
<memory unit='MiB'>64</memory><vcpu>2</vcpu>
<os><type>hvm</type><kernel>$elf</kernel><cmdline>console=ttyS0 oxtest=acpibutton</cmdline></os>
<on_poweroff>destroy</on_poweroff>
<devices><serial type='file'><source path='\$d/console'/></serial></devices></domain>
X
cat > \$d/storage/default-pool.xml <<X
<pool type='dir'><name>default-pool</name><uuid>dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566</uuid>
<target><path>\$d/pool</path></target></pool>
X
cat > \$d/networks/default.xml <<X
<network><name>default</name><uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
<bridge name='virbr9'/><ip address='192.168.122.1' netmask='255.255.255.0'/></network>
X
cat > \$d/oxvirtd.toml <<X
domains_dir = "\$d/domains"
runtime_dir = "\$d/run"
vmm = "$root/target/debug/oxvirt-vmm"
bus = "\$DBUS_SESSION_BUS_ADDRESS"
object_path = "/org/libvirt/Test"
rpc_socket = "\$d/rpc-sock"
X
export XDG_RUNTIME_DIR=\$d HOME=\$d
exec "$root/target/debug/oxvirtd" --session --config \$d/oxvirtd.toml 2>>\$d/log
EOF
chmod +x "$work/exe/src/libvirt-dbus"
cd "$work/libvirt-dbus-1.4.1/tests"
status=0
abs_top_builddir="$work/exe" /usr/bin/python3 -m pytest -q -rfE . "$@" || status=$?
rm -rf "$work"/run.*
exit $status
