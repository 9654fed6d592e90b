#!/usr/bin/env python3
"""VNC server cost: oxvirt-vmm against QEMU 7.2's VNC, same guest, same client, same run.

Two cases, each with the oxtest guest in a bochs-display framebuffer (640x480x32):
* idle: its `display` check draws a picture once, then the vCPU halts;
* redraw: after that picture, its `redraw` action repaints one 640x48 band every 20 ms
  (LAPIC tick) in a new colour, cycling down the screen: continuous damage.
A minimal RFB client (None security, Raw encoding, as a viewer behaves: after each
update it asks for the next incremental one) takes the first full update, then watches
for --secs seconds. Reported per server and case: host CPU time of the VMM process
during the watch, all threads but the vCPU's (utime+stime from /proc: the vCPU's time is
the guest's drawing, the same work under both VMMs, and on an emulated KVM much larger
than the rest), bytes the client received during the watch, and the same CPU with no
client connected; then ratios oxvirt / QEMU (below 1 = oxvirt cheaper). The redraw
guest draws at its own pace under each VMM (on an emulated KVM its speed varies), so that
case also prints CPU and bytes per band drawn (the guest's `OXTEST redraw bands=N` lines
on its serial console, a file here) and their ratios.

Usage: bench/vnc/bench.py [--secs S] [--bin-dir DIR] [--kernel ELF] [--case idle|redraw|both]
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
CMDLINES = {
    "idle": "console=ttyS0 oxtest=pci,display",
    "redraw": "console=ttyS0 oxtest=pci,display,redraw",
}


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


def spec_json(kernel, port, cmdline, console):
    return json.dumps({
        "version": 1, "name": "vnc-bench", "uuid": "5a1e0f00-7e57-4b00-8000-00000000f001",
        "memory": {"size_bytes": 128 << 20, "shared": False, "hugepages": False},
        "cpus": {"count": 1, "max": 1, "topology": {"sockets": 1, "dies": 1, "cores": 1, "threads": 1},
                 "mode": "host-passthrough", "features": []},
        "boot": {"kernel": kernel, "initrd": None, "cmdline": cmdline},
        "platform": {"acpi": True, "apic": True},
        "lifecycle": {"on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "destroy"},
        "devices": [
            {"id": "serial0", "pci": None, "kind": {"type": "serial", "port": 0, "backend": {"type": "file", "path": console}}},
            {"id": "video0", "pci": {"domain": 0, "bus": 0, "slot": 2, "function": 0},
             "kind": {"type": "video", "model": "bochs", "vram_bytes": 16 << 20}},
        ],
        "graphics": {"listen": {"type": "address", "address": "127.0.0.1", "port": port}},
    })


def stat_cpu(path):
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def is_vcpu(comm):
    """oxvirt-vmm names its vCPU threads vcpuN, QEMU "CPU N/KVM"."""
    return (comm.startswith("vcpu") and comm[4:].isdigit()) or (comm.startswith("CPU ") and comm.endswith("/KVM"))


def cpu_seconds(pid):
    """CPU time of the process (threads that ended included) less its vCPU threads'."""
    total = stat_cpu(f"/proc/{pid}/stat")
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(f"{task}/comm") as f:
                if is_vcpu(f.read().strip()):
                    total -= stat_cpu(f"{task}/stat")
        except OSError:
            pass
    return total


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


def settle(pid, console, case, limit=120):
    """Waits for the guest's line saying its picture is drawn (and, for redraw, that
    it redraws), then until the process's non-vCPU threads use under 10% of a CPU
    over a second, at most `limit` seconds in all."""
    deadline = time.time() + limit
    want = "OXTEST redraw ok" if case == "redraw" else "OXTEST display ok"
    while time.time() < deadline:
        try:
            with open(console, errors="replace") as f:
                if want in f.read():
                    break
        except OSError:
            pass
        time.sleep(0.2)
    else:
        sys.exit(f"no `{want}` on the guest's console ({console}) within {limit} s")
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


def bands(console):
    """The redraw guest's last `OXTEST redraw bands=N` (bands drawn so far)."""
    n = 0
    with open(console, errors="replace") as f:
        for line in f:
            if line.startswith("OXTEST redraw bands="):
                n = int(line.split("=", 1)[1])
    return n


def measure(name, pid, port, secs, case, console):
    settle(pid, console, case)
    if case == "redraw":
        time.sleep(2)  # the guest is past its first picture and redrawing
    c0 = cpu_seconds(pid)
    time.sleep(secs)
    idle_cpu = max(0.0, cpu_seconds(pid) - c0)
    client = Rfb(port, time.time() + 30)
    while not client.update():
        pass
    client.request(True)
    start_bytes = client.received
    b0 = bands(console)
    c0 = cpu_seconds(pid)
    end = time.time() + secs
    client.s.settimeout(0.2)
    while time.time() < end:
        try:
            if client.update():
                client.request(True)
        except socket.timeout:
            pass
    watch_cpu = max(0.0, cpu_seconds(pid) - c0)  # jiffies read apart: no negative noise
    drawn = bands(console) - b0
    watched = client.received - start_bytes
    client.s.close()
    picture = f"redrawn, {drawn} bands of 640x48 drawn" if case == "redraw" else (
        "as drawn" if picture_ok(client.first, client.w, client.h) else "DIFFERENT")
    print(f"{case:6} {name:10} no client: {idle_cpu:.3f} s CPU; watching {secs} s: {watch_cpu:.3f} s CPU, "
          f"{watched} bytes after the first full update ({client.w}x{client.h}, picture {picture})")
    return watch_cpu, watched, idle_cpu, drawn


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=float, default=10.0)
    ap.add_argument("--bin-dir")
    ap.add_argument("--kernel")
    ap.add_argument("--case", choices=["idle", "redraw", "both"], default="both")
    a = ap.parse_args()
    vmm = find_vmm(a.bin_dir)
    kernel = find_kernel(a.kernel)
    cases = ["idle", "redraw"] if a.case == "both" else [a.case]
    ratio = lambda x, y: f"{x / y:.2f}" if y else ("0 / 0" if not x else "inf (QEMU 0)")
    results = []
    for case in cases:
        cmdline = CMDLINES[case]
        with tempfile.TemporaryDirectory() as d:
            spec = os.path.join(d, "spec.json")
            with open(spec, "w") as f:
                f.write(spec_json(kernel, 5990, cmdline, os.path.join(d, "ox.console")))
            ox = subprocess.Popen([vmm, "--spec", spec], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                r_ox = measure("oxvirt-vmm", ox.pid, 5990, a.secs, case, os.path.join(d, "ox.console"))
            finally:
                ox.kill()
                ox.wait()
        qcon = os.path.join(tempfile.gettempdir(), f"vnc-bench-qemu-{os.getpid()}.console")
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-accel", "kvm", "-M", "pc", "-m", "128", "-nodefaults",
             "-name", "vnc-bench,debug-threads=on",  # names the vCPU thread "CPU 0/KVM"
             "-kernel", kernel, "-append", cmdline, "-device", "bochs-display",
             "-vnc", "127.0.0.1:91", "-display", "none", "-serial", f"file:{qcon}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            r_q = measure("QEMU", qemu.pid, 5991, a.secs, case, qcon)
        finally:
            qemu.kill()
            qemu.wait()
            if os.path.exists(qcon):
                os.unlink(qcon)
        results.append((case, r_ox, r_q))
    for case, r_ox, r_q in results:
        print(f"{case:6} ratio oxvirt/QEMU: watching CPU {ratio(r_ox[0], r_q[0])}, "
              f"bytes {ratio(r_ox[1], r_q[1])}, no-client CPU {ratio(r_ox[2], r_q[2])}")
        if r_ox[3] and r_q[3]:
            # The guest draws at its own pace under each VMM: per band drawn.
            per = lambda r: (r[0] / r[3], r[1] / r[3])
            (oc, ob), (qc, qb) = per(r_ox), per(r_q)
            print(f"{case:6} per band drawn: oxvirt {oc * 1e3:.2f} ms CPU, {ob:.0f} bytes; "
                  f"QEMU {qc * 1e3:.2f} ms CPU, {qb:.0f} bytes; ratio CPU {ratio(oc, qc)}, bytes {ratio(ob, qb)}")


if __name__ == "__main__":
    main()
