#!/usr/bin/env bash
# libvirt-dbus's own upstream test suite (v1.4.1 `tests/`, pytest + dbus-python)
# against oxvirtd. The suite starts "libvirt-dbus --session" itself for every test
# and talks to /org/libvirt/Test (libvirt's test driver); here that program is a
# wrapper that starts oxvirtd on the suite's bus at /org/libvirt/Test with a
# fixture store shaped like the test driver's: the domain `test` running (the oxtest
# guest), the network `default` and the pool `default-pool` active. As root, each
# oxvirtd runs in its own network namespace, so no bridge reaches the host.
#
# The source comes from Debian (deb-src through a private apt list, nothing on
# the host's apt configuration changes): the .orig tarball holds tests/.
# Needs: python3-pytest, python3-dbus, python3-gi, dbus-daemon; cargo-built
# oxvirtd/oxvirt-vmm and the oxtest guest ($OXVIRT_SUITE_KERNEL, else
# `cargo run -p oxvirt-tests --bin oxvirt-test-assets`).
# Prints pytest's summary; exits with pytest's status, or 77 when the source cannot be
# fetched. tests/libvirt_dbus_suite.rs runs it in CI and holds the list of the tests
# that cannot pass here, each with its reason.
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
    apt-get "${apt_opts[@]}" update >/dev/null || true
    # Only the upstream tarball is needed; Debian's own parts may be missing on a mirror.
    (cd "$work" && apt-get "${apt_opts[@]}" source --download-only libvirt-dbus=1.4.1-3 >/dev/null 2>&1 || true)
    if [ ! -f "$work/libvirt-dbus_1.4.1.orig.tar.xz" ]; then
        echo "cannot fetch libvirt-dbus 1.4.1's source from deb.debian.org (offline?)" >&2
        exit 77
    fi
    tar -C "$work" -xf "$work/libvirt-dbus_1.4.1.orig.tar.xz"
fi
elf=${OXVIRT_SUITE_KERNEL:-}
[ -f "$elf" ] || elf=$(cargo run -q -p oxvirt-tests --bin oxvirt-test-assets -- guests 2>/dev/null | sed -n 1p || true)
[ -f "$elf" ] || elf=$(ls "${OXVIRT_CACHE:-$HOME/.cache/oxvirt}"/guests/*/oxtest.elf | head -1)
# As root, each oxvirtd gets its own network namespace: the `default` network's bridge,
# NAT rules and dnsmasq (and those the tests create) never touch the host's network.
# /sys is mounted again inside, as oxvirtd reads the bridges it has from /sys/class/net.
netns=()
if [ "$(id -u)" = 0 ] && unshare -n -m true 2>/dev/null; then
    cat > "$work/exe/src/in-netns" <<'EOF'
#!/bin/sh
exec unshare -n -m sh -c 'mount -t sysfs sysfs /sys && exec "$@"' sh "$@"
EOF
    chmod +x "$work/exe/src/in-netns"
    netns=("$work/exe/src/in-netns")
fi
cat > "$work/exe/src/libvirt-dbus" <<EOF
#!/bin/bash
# oxvirtd standing in for libvirt-dbus (written by scripts/libvirt-dbus-suite.sh), with
# what libvirt's test driver starts with: the domain \`test\` running (the oxtest guest,
# 2 vCPUs, shuts down on the ACPI button), the network \`default\` and the pool
# \`default-pool\` active, nothing else (no session default pool).
d=\$(mktemp -d "$work/run.XXXXXX")
mkdir -p \$d/domains/autostart \$d/run \$d/storage/autostart \$d/networks/autostart \$d/pool
cat > \$d/domains/test.xml <<X
<domain type='kvm'><name>test</name><uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
<memory unit='MiB'>64</memory><vcpu>2</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><kernel>$elf</kernel>
<cmdline>console=ttyS0 oxtest=acpi,acpibutton quiet</cmdline></os>
<features><acpi/><apic/></features>
<on_poweroff>destroy</on_poweroff>
<devices><serial type='file'><source path='\$d/console'/></serial></devices></domain>
X
cat > \$d/storage/default-pool.xml <<X
<pool type='dir'><name>default-pool</name><uuid>dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566</uuid>
<target><path>\$d/pool</path></target></pool>
X
: > \$d/storage/.default-pool-created
cat > \$d/networks/default.xml <<X
<network><name>default</name><uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
<bridge name='virbr0'/><ip address='192.168.122.1' netmask='255.255.255.0'/></network>
X
for f in domains/test storage/default-pool networks/default; do
    ln -s "\$d/\$f.xml" "\$d/\${f%/*}/autostart/\${f#*/}.xml"
done
cat > \$d/oxvirtd.toml <<X
domains_dir = "\$d/domains"
runtime_dir = "\$d/run"
vmm = "$root/target/debug/oxvirt-vmm"
bus = "\$DBUS_SESSION_BUS_ADDRESS"
object_path = "/org/libvirt/Test"
rpc_socket = "\$d/rpc-sock"
X
export XDG_RUNTIME_DIR=\$d HOME=\$d
${netns[*]} "$root/target/debug/oxvirtd" --session --config \$d/oxvirtd.toml 2>>\$d/log &
daemon=\$!
# The suite ends each test with SIGTERM: stop the daemon, then what it started that
# outlives it (domains' VMMs, dnsmasq): every process whose command line names this
# fixture's own directory (a VMM caught starting as well as one with a pid file).
stop() {
    kill -TERM \$daemon 2>/dev/null; wait \$daemon
    for p in /proc/[0-9]*; do
        grep -qsF "\$d/" "\$p/cmdline" && kill -KILL "\${p#/proc/}" 2>/dev/null
    done
    exit 0
}
trap stop TERM INT
wait \$daemon
EOF
chmod +x "$work/exe/src/libvirt-dbus"
cd "$work/libvirt-dbus-1.4.1/tests"
# The suite starts its own session bus (conftest.py; Debian's session.conf listens
# on a path, which the daemons' network namespaces reach too).
trap 'rm -rf "$work"/run.*' EXIT
status=0
abs_top_builddir="$work/exe" /usr/bin/python3 -m pytest -q -rfE -p no:cacheprovider . "$@" ||
    status=$?
exit $status
