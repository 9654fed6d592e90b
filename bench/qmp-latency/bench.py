#!/usr/bin/env python3
"""QMP round-trip latency: oxvirt-vmm against QEMU 7.2, in the same run.

Measures `query-status` round trips (send the request, read the whole reply line) on
one negotiated connection per server, alternating blocks between the two servers so
drift on a shared machine hits both alike. Prints median and p99 for each and the
ratio oxvirt / QEMU (below 1 = oxvirt faster).

oxvirt-vmm runs the oxtest guest (halted after one check, so the vCPU is idle);
QEMU runs `-M none` (no guest, no KVM needed): its monitor code path for
query-status is the same either way.

Usage: bench/qmp-latency/bench.py [--n N] [--block B] [--bin-dir DIR] [--kernel ELF]
  DIR holds oxvirt-vmm (default: $CARGO_TARGET_DIR or target/, release then debug).
  ELF is the oxtest guest (default: the newest in ${OXVIRT_CACHE:-~/.cache/oxvirt}/guests,
  built by the tests: cargo test -p oxvirt-tests --test vmm_guest).
Needs: qemu-system-x86 (Debian), /dev/kvm.
"""
import argparse
import glob
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
        sys.exit("no oxtest guest built yet: cargo test -p oxvirt-tests --test vmm_guest")
    return elfs[-1]


def wait_socket(path, proc, what, timeout=30):
    deadline = time.time() + timeout
    while True:
        if os.path.exists(path):
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(path)
                return s
            except OSError:
                pass
        if proc.poll() is not None or time.time() > deadline:
            sys.exit(f"{what}: no QMP socket at {path}")
        time.sleep(0.02)


class Conn:
    def __init__(self, sock):
        self.s = sock
        self.buf = b""
        self.line()  # greeting
        self.ask(b'{"execute":"qmp_capabilities"}\n')

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def ask(self, req):
        self.s.sendall(req)
        while True:
            line = self.line()
            if not line.startswith(b'{"timestamp"'):
                return line


def spec_json(kernel):
    return json.dumps({
        "version": 1, "name": "qmp-bench", "uuid": "5a1e0f00-7e57-4b00-8000-00000000beef",
        "memory": {"size_bytes": 64 << 20, "shared": False, "hugepages": False},
        "cpus": {"count": 1, "max": 1, "topology": {"sockets": 1, "dies": 1, "cores": 1, "threads": 1},
                 "mode": "host-passthrough", "features": []},
        "boot": {"kernel": kernel, "initrd": None, "cmdline": "console=ttyS0 oxtest=cpuid"},
        "platform": {"acpi": True, "apic": True},
        "lifecycle": {"on_poweroff": "destroy", "on_reboot": "restart", "on_crash": "destroy"},
        "devices": [{"id": "serial0", "pci": None,
                     "kind": {"type": "serial", "port": 0, "backend": {"type": "null"}}}],
    })


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000, help="round trips per server")
    ap.add_argument("--block", type=int, default=100, help="round trips per alternation")
    ap.add_argument("--bin-dir")
    ap.add_argument("--kernel")
    a = ap.parse_args()
    vmm = find_vmm(a.bin_dir)
    kernel = find_kernel(a.kernel)
    d = tempfile.mkdtemp(prefix="qmp-bench-")
    with open(os.path.join(d, "spec.json"), "w") as f:
        f.write(spec_json(kernel))
    ox_sock, q_sock = os.path.join(d, "ox.sock"), os.path.join(d, "qemu.sock")
    procs = []
    try:
        ox = subprocess.Popen([vmm, "--spec", os.path.join(d, "spec.json"), "--qmp", ox_sock],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(d, "vmm.log"), "w"))
        procs.append(ox)
        qemu = subprocess.Popen(["qemu-system-x86_64", "-M", "none", "-nographic", "-display", "none",
                                 "-qmp", f"unix:{q_sock},server=on,wait=off"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        procs.append(qemu)
        conns = {"oxvirt-vmm": Conn(wait_socket(ox_sock, ox, "oxvirt-vmm")),
                 "qemu 7.2": Conn(wait_socket(q_sock, qemu, "qemu"))}
        req = b'{"execute":"query-status","id":1}\n'
        for c in conns.values():  # warm up
            for _ in range(200):
                c.ask(req)
        times = {k: [] for k in conns}
        done = 0
        while done < a.n:
            k = min(a.block, a.n - done)
            for name, c in conns.items():
                t = times[name]
                for _ in range(k):
                    t0 = time.perf_counter_ns()
                    c.ask(req)
                    t.append(time.perf_counter_ns() - t0)
            done += k
        print(f"query-status round trip, {a.n} each, alternating blocks of {a.block}")
        print(f"oxvirt-vmm: {vmm}")
        for name, t in times.items():
            print(f"  {name:11} median {statistics.median(t) / 1000:8.1f} us   p99 {pct(t, 0.99) / 1000:8.1f} us")
        o, q = times["oxvirt-vmm"], times["qemu 7.2"]
        print(f"  ratio oxvirt/qemu: median {statistics.median(o) / statistics.median(q):.2f}"
              f"   p99 {pct(o, 0.99) / pct(q, 0.99):.2f}")
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
