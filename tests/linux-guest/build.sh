#!/usr/bin/env bash
# Builds the oxvirt Linux test guest from Debian packages (README.md here).
#
# Usage: build.sh [--stock] [OUTDIR]
#
# Default (the patched guest, boots on the emulated KVM of the CI machines and on
# hardware KVM):
#   vmlinux         PVH-bootable ELF kernel: linux-source-6.1, tinyconfig + config.fragment
#                   + patches/, everything built in
#   bzImage         the same kernel as a bzImage (LZ4)
# --stock (Debian's own kernel; reaches user space on hardware KVM only):
#   bzImage         /boot/vmlinuz of linux-image-cloud-amd64, fetched with apt-get download
#                   (its virtio/vsock/evdev modules go into the initramfs, and this host's
#                   udev the way Debian's initramfs-tools copies it: /dev/disk/by-id)
# Both:
#   initramfs.cpio  uncompressed newc cpio: busybox-static + rootfs/ (our /init, oxcheck)
#                   + oxvsock (oxvsock.c, gcc -static: busybox has no vsock)
#   cmdline         the kernel command line for this guest
#   kernel.config, manifest.txt (input versions, sha256 of every output)
#
# The result lives in ${OXVIRT_CACHE:-$HOME/.cache/oxvirt}/linux-guest[-stock]/<hash of
# all inputs>/, built only when that directory is missing; the last line on stdout is
# its path. The kernel is cached on its own (kernel-<hash of the kernel's inputs>/), so
# a change to rootfs/ costs seconds, not a kernel build. With OUTDIR, the outputs are
# also copied there. Same inputs give the same bytes: fixed KBUILD_BUILD_* and
# SOURCE_DATE_EPOCH, cpio entries sorted with fixed mtimes and owners.
# Environment: OXVIRT_CACHE, OXVIRT_BUILD_JOBS (default: nproc), OXVIRT_KEEP_BUILD=1
# keeps the ~1.6 GiB kernel build tree.
set -euo pipefail

# Bump when the kernel build steps below change (the kernel's cache key).
kernel_recipe=1
here=$(cd "$(dirname "$0")" && pwd)
stock=0
if [ "${1:-}" = --stock ]; then
	stock=1
	shift
fi
outdir=${1:-}
if [ $stock = 1 ]; then
	cache=${OXVIRT_CACHE:-$HOME/.cache/oxvirt}/linux-guest-stock
else
	cache=${OXVIRT_CACHE:-$HOME/.cache/oxvirt}/linux-guest
fi
jobs=${OXVIRT_BUILD_JOBS:-$(nproc)}
# A fixed date for every timestamp that ends up in the outputs (2024-01-01T00:00:00Z).
epoch=1704067200
# What the stock kernel needs as modules for the tests (ours has them built in).
stock_modules=(virtio_pci virtio_mmio virtio_blk virtio_net virtio_console virtio-rng
	virtio_balloon vmw_vsock_virtio_transport evdev button)

log() { echo "linux-guest: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# --- build dependencies (Debian packages); installed when missing and we are root
if [ $stock = 1 ]; then
	packages=(linux-source-6.1 busybox-static gcc libc6-dev udev)
else
	packages=(linux-source-6.1 busybox-static build-essential bc flex bison libelf-dev libssl-dev lz4)
fi
missing=()
for p in "${packages[@]}"; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		log "installing ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
			{ apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; } ||
			die "cannot install ${missing[*]}"
	else
		die "missing Debian packages: ${missing[*]} (apt-get install ${missing[*]})"
	fi
fi

src_tarball=/usr/src/linux-source-6.1.tar.xz
busybox=/bin/busybox
[ -x "$busybox" ] || die "$busybox not found (package busybox-static)"
[ -f "$src_tarball" ] || die "$src_tarball not found (package linux-source-6.1)"
if [ $stock = 1 ]; then
	# The versioned image package behind the linux-image-cloud-amd64 metapackage.
	stock_pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
	[ -n "$stock_pkg" ] || die "apt-cache knows no linux-image-cloud-amd64 (apt-get update?)"
	stock_ver=$(apt-cache policy "$stock_pkg" | sed -n 's/^ *Candidate: //p')
fi

# --- the inputs and their hashes
files_hash() { # path and content of each file, sorted
	(cd "$here" && find "$@" -type f | LC_ALL=C sort |
		while read -r f; do
			mode=644
			[ -x "$f" ] && mode=755
			echo "$f $mode $(sha256sum <"$f" | cut -d' ' -f1)"
		done)
}
kernel_inputs() {
	if [ $stock = 1 ]; then
		echo "package $stock_pkg $stock_ver"
		echo "modules ${stock_modules[*]}"
	else
		echo "kernel recipe $kernel_recipe"
		files_hash config.fragment patches
		for p in linux-source-6.1 gcc-12 binutils lz4; do
			echo "package $p $(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo none)"
		done
		echo "gcc $(gcc -dumpfullversion)"
		echo "tarball $(stat -c %s "$src_tarball")"
	fi
}
kinputs=$(kernel_inputs)
khash=$(sha256sum <<<"$kinputs" | cut -c1-16)
all_inputs=$(
	echo "$kinputs"
	files_hash build.sh rootfs oxvsock.c
	echo "gcc $(gcc -dumpfullversion) libc6-dev $(dpkg-query -W -f='${Version}' libc6-dev)"
	[ $stock = 0 ] || echo "package udev $(dpkg-query -W -f='${Version}' udev)"
	echo "package busybox-static $(dpkg-query -W -f='${Version}' busybox-static)"
	echo "busybox $(sha256sum <"$busybox" | cut -d' ' -f1)"
)
hash=$(sha256sum <<<"$all_inputs" | cut -c1-16)
dest=$cache/$hash
kdest=$cache/kernel-$khash
outputs=(bzImage initramfs.cpio cmdline kernel.config)
[ $stock = 1 ] || outputs=(vmlinux "${outputs[@]}")

copy_out() {
	if [ -n "$outdir" ]; then
		mkdir -p "$outdir"
		for f in "${outputs[@]}" manifest.txt; do
			cp -f "$dest/$f" "$outdir/$f"
		done
	fi
	echo "$dest"
}

mkdir -p "$cache"
if [ -f "$dest/manifest.txt" ]; then
	copy_out
	exit 0
fi

# One build at a time (parallel test processes share the cache).
exec 9>"$cache/.lock"
if ! flock -n 9; then
	log "another build holds $cache/.lock; waiting"
	flock 9
fi
if [ -f "$dest/manifest.txt" ]; then
	copy_out
	exit 0
fi

export KBUILD_BUILD_TIMESTAMP="@$epoch" KBUILD_BUILD_USER=oxvirt KBUILD_BUILD_HOST=oxvirt \
	KBUILD_BUILD_VERSION=1 SOURCE_DATE_EPOCH=$epoch LC_ALL=C TZ=UTC
start=$(date +%s)
build=$cache/build-$hash
stage=$cache/.stage-$hash
rm -rf "$build" "$stage"
mkdir -p "$build" "$stage"
blog=$build/build.log
run() { "$@" >>"$blog" 2>&1 || die "'$*' failed, see $blog"; }
# Take rootfs/ now: it is part of the hash computed above, and may be edited while the
# kernel compiles.
root=$build/initramfs
mkdir -p "$root"
cp -a "$here/rootfs/." "$root/"

# --- the kernel (cached on its own)
if [ ! -f "$kdest/kernel.config" ]; then
	kstage=$cache/.stage-kernel-$khash
	rm -rf "$kstage"
	mkdir -p "$kstage"
	if [ $stock = 1 ]; then
		log "fetching $stock_pkg $stock_ver"
		(cd "$build" && apt-get download "$stock_pkg" >>"$blog" 2>&1) ||
			die "apt-get download $stock_pkg failed, see $blog"
		run dpkg-deb -x "$build"/"$stock_pkg"_*.deb "$build/deb"
		kver=${stock_pkg#linux-image-}
		cp "$build/deb/boot/vmlinuz-$kver" "$kstage/bzImage"
		cp "$build/deb/boot/config-$kver" "$kstage/kernel.config"
		# The modules the tests need with their dependencies, and a modules.dep for them.
		mods=$build/deb/lib/modules/$kver
		run "$busybox" depmod -b "$build/deb" "$kver"
		need=()
		for m in "${stock_modules[@]}"; do
			# modules.dep lines: "kernel/x/y.ko: kernel/dep1.ko kernel/dep2.ko"
			line=$(grep -E "(^|/)(${m//_/[-_]})\.ko:" "$mods/modules.dep" | head -1 || true)
			if [ -z "$line" ]; then
				log "module $m: built into $kver"
				continue
			fi
			read -ra deps <<<"${line/:/}"
			need+=("${deps[@]}")
		done
		mapfile -t need < <(printf '%s\n' "${need[@]}" | LC_ALL=C sort -u)
		kroot=$kstage/modules
		for f in "${need[@]}"; do
			mkdir -p "$kroot/lib/modules/$kver/$(dirname "$f")"
			cp "$mods/$f" "$kroot/lib/modules/$kver/$f"
		done
		cp "$mods/modules.builtin" "$mods/modules.order" "$kroot/lib/modules/$kver/"
		run "$busybox" depmod -b "$kroot" "$kver"
		# What /init loads with one `modprobe -a`.
		mkdir -p "$kroot/etc"
		printf '%s\n' "${stock_modules[@]}" >"$kroot/etc/modules"
	else
		log "building the kernel in $build (log: $blog; about 7 minutes on 2 idle cores)"
		ksrc=$build/linux-source-6.1
		run nice tar -C "$build" -xf "$src_tarball"
		for p in "$here"/patches/*.patch; do
			echo "applying ${p##*/}" >>"$blog"
			run patch -d "$ksrc" -p1 --no-backup-if-mismatch -s -i "$p"
		done
		run nice make -C "$ksrc" -s tinyconfig
		cat "$here/config.fragment" >>"$ksrc/.config"
		run nice make -C "$ksrc" -s olddefconfig

		# Every option of the fragment must survive olddefconfig (a dependency we
		# missed would otherwise drop it silently).
		bad=0
		while read -r line; do
			case $line in
			CONFIG_*=*)
				opt=${line%%=*}
				grep -qxF "$line" "$ksrc/.config" || {
					log "config: wanted $line, got '$(grep -E "^(# )?$opt[= ]" "$ksrc/.config" || echo unset)'"
					bad=1
				}
				;;
			"# CONFIG_"*" is not set")
				opt=${line#\# }
				opt=${opt%% *}
				if grep -q "^$opt=" "$ksrc/.config"; then
					log "config: wanted $opt unset, got $(grep "^$opt=" "$ksrc/.config")"
					bad=1
				fi
				;;
			esac
		done <"$here/config.fragment"
		[ $bad = 0 ] || die "config.fragment does not apply cleanly to tinyconfig"

		log "compiling (make -j$jobs vmlinux bzImage)"
		nice make -C "$ksrc" -j"$jobs" vmlinux bzImage >>"$blog" 2>&1 || {
			tail -30 "$blog" >&2
			die "kernel build failed, see $blog"
		}
		cp "$ksrc/vmlinux" "$kstage/vmlinux"
		cp "$ksrc/arch/x86/boot/bzImage" "$kstage/bzImage"
		cp "$ksrc/.config" "$kstage/kernel.config"
		log "kernel built in $(($(date +%s) - start)) s"
	fi
	echo "$kinputs" >"$kstage/inputs.txt"
	rm -rf "$kdest"
	mv "$kstage" "$kdest"
fi

# --- udev for the stock guest, as Debian's initramfs-tools puts it in every initramfs
# (/usr/share/initramfs-tools/hooks/udev): systemd-udevd, udevadm, blkid and the rules
# that name disks (60-persistent-storage.rules: /dev/disk/by-id/virtio-<serial>), each
# program with the shared libraries it loads (ldd, like copy_exec). /init starts it the
# way initramfs-tools' init-top/udev does. Unlike the hook, no .link files: interfaces
# keep their kernel names (eth0, which the tests use). The patched guest has no udev:
# its kernel lacks epoll, signalfd, inotify and more that udevd needs.
add_udev() {
	local r=$1 f lib rules
	copy_exec() { # FILE DIR: FILE into DIR of the initramfs, with its libraries
		mkdir -p "$r$2"
		cp -L "$1" "$r$2/"
		ldd "$1" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p' |
			while read -r lib; do
				mkdir -p "$r$(dirname "$lib")"
				[ -e "$r$lib" ] || cp -L "$lib" "$r$lib"
			done
	}
	copy_exec /lib/systemd/systemd-udevd /lib/systemd
	copy_exec /bin/udevadm /bin
	copy_exec /sbin/blkid /sbin
	for f in ata_id scsi_id; do
		copy_exec /lib/udev/$f /lib/udev
	done
	mkdir -p "$r/etc/udev" "$r/lib/udev/rules.d"
	cp /etc/udev/udev.conf "$r/etc/udev/"
	for rules in 50-firmware.rules 50-udev-default.rules 60-block.rules \
		60-persistent-storage.rules 61-persistent-storage-android.rules 71-seat.rules \
		73-special-net-names.rules 75-net-description.rules 80-net-setup-link.rules \
		80-drivers.rules; do
		[ ! -e /lib/udev/rules.d/$rules ] || cp /lib/udev/rules.d/$rules "$r/lib/udev/rules.d/"
	done
}

# --- initramfs: busybox-static, rootfs/ (+ the stock kernel's modules), every entry
# with fixed owner and mtime, written by the kernel's gen_init_cpio from a sorted list.
run tar -C "$build" -xf "$src_tarball" linux-source-6.1/usr/gen_init_cpio.c
run gcc -O2 -o "$build/gen_init_cpio" "$build/linux-source-6.1/usr/gen_init_cpio.c"
[ $stock = 0 ] || cp -a "$kdest/modules/." "$root/"
# The vsock end of the guest's tests (busybox has no vsock applet).
run gcc -static -Os -s -Wall -ffile-prefix-map="$here"=. -o "$root/bin/oxvsock" "$here/oxvsock.c"
[ $stock = 0 ] || add_udev "$root"
cp "$busybox" "$build/busybox"
find "$root" "$build/busybox" -exec touch -h -d "@$epoch" {} +
fixed_dirs=" /bin /dev /etc /proc /run /sys /tmp /root /var /var/log /var/run "
{
	for d in $fixed_dirs; do
		echo "dir $d 0755 0 0"
	done
	echo "nod /dev/console 0600 0 0 c 5 1"
	echo "nod /dev/null 0666 0 0 c 1 3"
	echo "file /bin/busybox $build/busybox 0755 0 0"
	echo "slink /bin/sh busybox 0777 0 0"
	(cd "$root" && find . -mindepth 1 | LC_ALL=C sort) |
		while read -r f; do
			p=${f#.}
			if [ -d "$root/$f" ]; then
				case $fixed_dirs in *" $p "*) continue ;; esac
				echo "dir $p 0755 0 0"
			elif [ -x "$root/$f" ]; then
				echo "file $p $root/$f 0755 0 0"
			else
				echo "file $p $root/$f 0644 0 0"
			fi
		done
} >"$build/initramfs.list"
"$build/gen_init_cpio" -t "$epoch" "$build/initramfs.list" >"$stage/initramfs.cpio" 2>>"$blog" ||
	die "gen_init_cpio failed, see $blog"

for f in vmlinux bzImage kernel.config; do
	if [ -f "$kdest/$f" ]; then cp "$kdest/$f" "$stage/$f"; fi
done
if [ $stock = 1 ]; then
	echo "console=ttyS0 quiet panic=-1" >"$stage/cmdline"
else
	# Each option hides a CPU feature whose instructions kvm_pvm's emulator cannot run
	# (xsave/xrstor, cmpxchg16b, popcnt, smap, rdrand, ...) or skips work that is slow
	# when every kernel instruction is emulated. All harmless on hardware KVM.
	echo "console=ttyS0 quiet panic=-1 noxsave nofsgsbase nopcid nopti mitigations=off no_timer_check tsc=reliable rodata=off clearcpuid=popcnt,smap,rdrand,rdseed,rdpid,cx16,erms,fsrm" >"$stage/cmdline"
fi
{
	echo "# oxvirt Linux test guest, built by tests/linux-guest/build.sh"
	echo "# inputs (hash $hash, kernel $khash)"
	echo "$all_inputs"
	echo "# outputs"
	(cd "$stage" && sha256sum "${outputs[@]}")
} >"$stage/manifest.txt.tmp"

[ "${OXVIRT_KEEP_BUILD:-0}" = 1 ] || rm -rf "$build"
mv "$stage/manifest.txt.tmp" "$stage/manifest.txt"
rm -rf "$dest"
mv "$stage" "$dest"
log "built in $(($(date +%s) - start)) s: $dest"
copy_out
