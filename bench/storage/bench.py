#!/usr/bin/python3
"""Volume upload/download throughput: oxvirtd against libvirtd, in the same run.

Starts a private oxvirtd (own store, D-Bus daemon, RPC socket) and a private libvirtd
(Debian's, as user nobody with its own config and socket dirs), gives each a `dir` pool
in a temporary directory with a raw volume of the file's size, then alternates
`virsh vol-upload` (and `virsh vol-download`) of the same file between the two daemons.
A whole virsh process is timed: connect, the stream, close. Prints the median MiB/s of
each and the ratio oxvirtd / libvirtd (above 1: oxvirtd moves more bytes per second).
Each upload is checked afterwards (the volume's bytes equal the file's).

Usage: bench/storage/bench.py [--size-mib N] [--runs K] [--bin-dir DIR]
Needs: libvirt-clients, libvirt-daemon, dbus; run as root.
"""
import argparse
import filecmp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "rpc"))
from bench import start_libvirtd, start_oxvirtd  # noqa: E402  (bench/rpc/bench.py)


def virsh(uri, *args):
    subprocess.run(["virsh", "-c", uri, *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   env=dict(os.environ, LIBVIRT_AUTOSTART="0"))


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin-dir")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="oxvirt-bench-storage-")
    procs = []
    try:
        os.chmod(tmp, 0o755)
        src = os.path.join(tmp, "upload.bin")
        size = a.size_mib << 20
        with open(src, "wb") as f:
            block = os.urandom(1 << 20)
            for i in range(a.size_mib):
                f.write(block[i % 256:] + block[:i % 256])
        os.chmod(src, 0o644)
        ox_uri, p = start_oxvirtd(tmp, a.bin_dir)
        procs += p
        lv_uri, p = start_libvirtd(tmp)
        procs += p
        targets = {"oxvirtd": ox_uri, "libvirtd": lv_uri}
        pools = {}
        for label, uri in targets.items():
            d = os.path.join(tmp, f"pool-{label}")
            os.makedirs(d)
            if label == "libvirtd":
                subprocess.run(["chown", "65534:65534", d], check=True)
            virsh(uri, "pool-create-as", "benchpool", "dir", "--target", d)
            virsh(uri, "vol-create-as", "benchpool", "vol.img", str(size))
            pools[label] = d
        down = os.path.join(tmp, "download.bin")
        results = {k: {"vol-upload": [], "vol-download": []} for k in targets}
        for _ in range(a.runs):
            for label, uri in targets.items():
                t = timed(lambda: virsh(uri, "vol-upload", "--pool", "benchpool", "vol.img", src))
                results[label]["vol-upload"].append(size / t / (1 << 20))
                if not filecmp.cmp(src, os.path.join(pools[label], "vol.img"), shallow=False):
                    sys.exit(f"{label}: the uploaded volume differs from the file")
                t = timed(lambda: virsh(uri, "vol-download", "--pool", "benchpool", "vol.img", down))
                results[label]["vol-download"].append(size / t / (1 << 20))
                os.unlink(down)
        print(f"volume streams, {a.size_mib} MiB raw volume, median of {a.runs} runs (whole virsh process)")
        print(f"{'measurement':14} {'oxvirtd MiB/s':>14} {'libvirtd MiB/s':>15} {'ratio':>7}")
        for m in ("vol-upload", "vol-download"):
            ox = statistics.median(results["oxvirtd"][m])
            lv = statistics.median(results["libvirtd"][m])
            print(f"{m:14} {ox:14.1f} {lv:15.1f} {ox / lv:7.2f}")
        for uri in targets.values():
            virsh(uri, "pool-destroy", "benchpool")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
