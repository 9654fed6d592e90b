#!/usr/bin/env python3
"""VNC server cost: oxvirt-vmm against QEMU 7.2's VNC, same guest, same client, same run.

Both run the oxtest guest with its `display` check (a 640x480x32 picture drawn once into
a bochs-display framebuffer, then the vCPU halts): the *idle screen* case. A minimal
RFB client (None security, Raw encoding, as a viewer behaves: after each update it asks
for the next incremental one) takes the first full update, then watches for --secs
seconds. Reported per server: host CPU time of the VMM process during the watch
(utime+stime from /proc), bytes the client received during the watch, and the same CPU
with no client connected; then ratios oxvirt / QEMU (below 1 = oxvirt cheaper).

Not covered yet: a screen the guest redraws continuously (the oxtest guest draws once).

Usage: bench/vnc/bench.py [--secs S] [--bin-dir DIR] [--kernel ELF]
Needs: qemu-system-x86 (Debian), /dev/kvm, the oxtest guest (built by the tests:
cargo test -p oxvirt-tests --test vnc_guest).
"""
import argparse
import glob
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CMDLINE = "console=ttyS0 oxtest=pci,display"


def find_vmm(bin_dir):
    dirs = [bin_dir] if bin_dir else []
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    dirs += [os.path.join(target, "release"), os.path.join(target, "debug")]
    for d in dirs:
        p = os.path.join(d, "oxvirt-vmm")
        if os.path.isfile(p):
            return p
    sys.exit(f"oxvirt-vmm not found in {dirs}: cargo build --release -p vmm --bins")


def find_kernel(kernel):
    if kernel:
        return kernel
    cache = os.environ.get("OXVIRT_CACHE", os.path.expanduser("~/.cache/oxvirt"))
    elfs = sorted(glob.glob(os.path.join(cache, "guests", "*", "oxtest.elf")), key=os.path.getmtime)
    if not elfs:
        sys.exit("no oxtest guest built yet: cargo test -p oxvirt-tests --test vnc_guest")
    return elfs[-1]


def spec_json(kernel, port):
    return json.dumps({
        "version": 1, "name": "vnc-bench", "uuid": "5a1e0f00-7e57-4b00-8000-00000000f001",
        "memory": {"size_bytes": 128 << 20, "shared": False, "hugepages": False},
        "cpus": {"count": 1, "max": 1, "topology": {"sockets": 1, "dies": 1, "cores": 1, "threads": 1},
                 "mode": "host-passthrough", "features": []},
        "boot": {"kernel": kernel, "initrd": None, "cmdline": CMDLINE},
        "platform": {"acpi": True, "apic": True},
        "lifecycle": {"on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "destroy"},
        "devices": [
            {"id": "serial0", "pci": None, "kind": {"type": "serial", "port": 0, "backend": {"type": "null"}}},
            {"id": "video0", "pci": {"domain": 0, "bus": 0, "slot": 2, "function": 0},
             "kind": {"type": "video", "model": "bochs", "vram_bytes": 16 << 20}},
        ],
        "graphics": {"listen": {"type": "address", "address": "127.0.0.1", "port": port}},
    })


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Rfb:
    """None security, Raw encoding only, framing parsed so each update is re-requested."""

    def __init__(self, port, deadline):
        while True:
            try:
                self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        self.received = 0
        self.first = None
        assert self.read(12).startswith(b"RFB 003.")
        self.s.sendall(b"RFB 003.008\n")
        n = self.read(1)[0]
        types = self.read(n)
        assert 1 in types, f"no None security: {types}"
        self.s.sendall(b"\x01")
        assert self.read(4) == b"\0\0\0\0"
        self.s.sendall(b"\x01")  # shared
        init = self.read(24)
        self.w, self.h = struct.unpack(">HH", init[:4])
        self.read(struct.unpack(">I", init[20:24])[0])
        self.s.sendall(struct.pack(">BBHi", 2, 0, 1, 0))  # SetEncodings [Raw]
        self.request(False)

    def read(self, n):
        b = b""
        while len(b) < n:
            c = self.s.recv(n - len(b))
            if not c:
                raise EOFError("server closed")
            b += c
        self.received += n
        return b

    def request(self, incremental):
        self.s.sendall(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, self.w, self.h))

    def update(self):
        """Reads one server message; returns True for a FramebufferUpdate."""
        kind = self.read(1)[0]
        if kind == 0:
            n = struct.unpack(">xH", self.read(3))[0]
            for _ in range(n):
                x, y, w, h, enc = struct.unpack(">HHHHi", self.read(12))
                if enc == 0:
                    data = self.read(w * h * 4)
                    if (x, y, w, h) == (0, 0, self.w, self.h) and self.first is None:
                        self.first = data
                elif enc == -223:
                    self.w, self.h = w, h
            return True
        if kind == 2:
            return False
        if kind == 3:
            self.read(3)
            self.read(struct.unpack(">I", self.read(4))[0])
            return False
        raise ValueError(f"unexpected server message {kind}")


def settle(pid, limit=120):
    """Waits until the process uses under 10% of a CPU over a second (guest booted
    and halted), at most `limit` seconds."""
    deadline = time.time() + limit
    while time.time() < deadline:
        c0 = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - c0 < 0.1:
            return
    print(f"warning: pid {pid} still busy after {limit} s", file=sys.stderr)


def picture_ok(raw, w, h):
    """Whether a full Raw frame (32 bpp little-endian) is the oxtest guest's picture."""
    if raw is None or (w, h) != (640, 480):
        return False
    bars = [0x000000, 0xFF0000, 0x00FF00, 0x0000FF, 0xFFFFFF, 0xFFFF00, 0x00FFFF, 0xFF00FF]
    for y in range(0, h, 7):
        for x in range(0, w, 5):
            want = bars[x // 80] if y < 240 else ((x & 0xFF) << 16) | ((y & 0xFF) << 8) | ((x ^ y) & 0xFF)
            i = (y * w + x) * 4
            if (raw[i] | raw[i + 1] << 8 | raw[i + 2] << 16) != want:
                return False
    return True


def measure(name, pid, port, secs):
    settle(pid)
    c0 = cpu_seconds(pid)
    time.sleep(secs)
    idle_cpu = cpu_seconds(pid) - c0
    client = Rfb(port, time.time() + 30)
    while not client.update():
        pass
    client.request(True)
    start_bytes = client.received
    c0 = cpu_seconds(pid)
    end = time.time() + secs
    client.s.settimeout(0.2)
    while time.time() < end:
        try:
            if client.update():
                client.request(True)
        except socket.timeout:
            pass
    watch_cpu = cpu_seconds(pid) - c0
    watched = client.received - start_bytes
    client.s.close()
    print(f"{name:10} no client: {idle_cpu:.3f} s CPU; watching {secs} s: {watch_cpu:.3f} s CPU, "
          f"{watched} bytes after the first full update ({client.w}x{client.h}, "
          f"picture {'as drawn' if picture_ok(client.first, client.w, client.h) else 'DIFFERENT'})")
    return watch_cpu, watched, idle_cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=float, default=10.0)
    ap.add_argument("--bin-dir")
    ap.add_argument("--kernel")
    a = ap.parse_args()
    vmm = find_vmm(a.bin_dir)
    kernel = find_kernel(a.kernel)
    with tempfile.TemporaryDirectory() as d:
        spec = os.path.join(d, "spec.json")
        with open(spec, "w") as f:
            f.write(spec_json(kernel, 5990))
        ox = subprocess.Popen([vmm, "--spec", spec], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            r_ox = measure("oxvirt-vmm", ox.pid, 5990, a.secs)
        finally:
            ox.kill()
            ox.wait()
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "kvm", "-M", "pc", "-m", "128", "-nodefaults",
             "-kernel", kernel, "-append", CMDLINE, "-device", "bochs-display",
             "-vnc", "127.0.0.1:91", "-display", "none", "-serial", "null"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            r_q = measure("QEMU", qemu.pid, 5991, a.secs)
        finally:
            qemu.kill()
            qemu.wait()
    ratio = lambda x, y: f"{x / y:.2f}" if y else ("0 / 0" if not x else "inf (QEMU 0)")
    print(f"ratio oxvirt/QEMU: watching CPU {ratio(r_ox[0], r_q[0])}, bytes {ratio(r_ox[1], r_q[1])}, "
          f"no-client CPU {ratio(r_ox[2], r_q[2])}")


if __name__ == "__main__":
    main()
