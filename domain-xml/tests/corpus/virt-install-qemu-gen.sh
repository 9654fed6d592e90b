#!/bin/bash
# Regenerates the 110-virt-install-qemu-*.xml corpus files: real `virt-install
# --print-xml` output (Debian 12 virtinst 4.1) against a real libvirtd QEMU driver
# (Debian 12 libvirt 9.0, a private qemu:///session instance run as nobody), for the
# matrix of OS variants and options users start from. Unlike 100-virt-install-*.xml
# (libvirt's test driver, i686), these are x86_64 QEMU domains as libvirt writes them.
# Boot media paths are rewritten to /var/lib/libvirt/images/.
# Run as root from this directory: ./virt-install-qemu-gen.sh
set -u
d=$(mktemp -d /tmp/oxvirt-vi-gen.XXXXXX)
mkdir -p "$d/sock" "$d/run" "$d/home"
cat > "$d/libvirtd.conf" <<CONF
unix_sock_dir = "$d/sock"
unix_sock_rw_perms = "0777"
auth_unix_rw = "none"
auth_unix_ro = "none"
CONF
touch "$d/installer.iso" "$d/import.qcow2"
chown -R 65534:65534 "$d"
chmod 755 "$d"
as_nobody() {
  setpriv --reuid=65534 --regid=65534 --clear-groups env -i HOME="$d/home" \
    XDG_RUNTIME_DIR="$d/run" PATH=/usr/sbin:/usr/bin:/sbin:/bin LIBVIRT_AUTOSTART=0 "$@"
}
as_nobody /usr/sbin/libvirtd --config "$d/libvirtd.conf" --timeout 0 > "$d/log" 2>&1 &
lv=$!
trap 'kill $lv; rm -rf "$d"' EXIT
for _ in $(seq 100); do [ -S "$d/sock/libvirt-sock" ] && break; sleep 0.1; done
V="virt-install --print-xml --connect qemu+unix:///session?socket=$d/sock/libvirt-sock --noautoconsole"
gen() {
  local name=$1; shift
  local out="110-virt-install-qemu-$name.xml"
  if as_nobody timeout 120 $V --name "$name" "$@" > "$out" 2> "$d/err"; then
    # An install (--cdrom) prints two documents, the install-time domain and the one
    # kept afterwards; the first is the one that boots the installer.
    awk '{print} /^<\/domain>/{exit}' "$out" > "$d/first" && cat "$d/first" > "$out"
    sed -i -e "s#$d/installer.iso#/var/lib/libvirt/images/installer.iso#" \
      -e "s#$d/import.qcow2#/var/lib/libvirt/images/import.qcow2#" \
      -e "s#$d/home/.local/share/libvirt/images/#/var/lib/libvirt/images/#" "$out"
    echo "ok $name"
  else
    echo "FAIL $name: $(tail -2 "$d/err")"; rm -f "$out"
  fi
}
iso="--cdrom $d/installer.iso"
imp="--import --disk $d/import.qcow2"
gen debian11-cdrom --memory 512 --disk size=1 $iso --os-variant debian11
gen ubuntu22.04-vnc --memory 2048 --vcpus 2 --disk size=1 $iso --os-variant ubuntu22.04 --graphics vnc
gen fedora37-uefi --memory 2048 $imp --os-variant fedora37 --boot uefi
gen win10-cdrom --memory 4096 --vcpus 2 --disk size=1 $iso --os-variant win10
gen win11-cdrom --memory 4096 --vcpus 2 --disk size=1 $iso --os-variant win11
gen alpine-headless --memory 256 $imp --os-variant alpinelinux3.17 --graphics none
gen generic-import-user --memory 512 $imp --os-variant generic --network user
gen debian11-network-default --memory 512 $imp --os-variant debian11 --network network=default
gen debian11-bridge --memory 512 $imp --os-variant debian11 --network bridge=br0
gen debian11-pc-cdrom --memory 512 --disk size=1 $iso --os-variant debian11 --machine pc
gen debian11-spice --memory 512 $imp --os-variant debian11 --graphics spice
