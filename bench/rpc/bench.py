#!/usr/bin/python3
"""libvirt RPC latency: oxvirtd against libvirtd (qemu driver), same domain count.

Measures, in the same run and alternating between the two daemons:
  * `virsh list --all` and `virsh dominfo NAME` wall time (a whole virsh process:
    connect, handshake, the command's calls, close) -- what a user or script waits for;
  * the same work inside one python3-libvirt connection (listAllDomains + state() of
    each domain; lookupByName + info()) -- the daemons' share without process start-up.
Prints medians and the ratio oxvirtd / libvirtd (below 1 = oxvirtd faster).

Both daemons run privately in a temporary directory: oxvirtd with its own store, runtime
dir, D-Bus daemon and RPC socket; libvirtd as user nobody (an unprivileged session
daemon with the qemu driver). The domains are defined, not started (listing and dominfo
do not depend on guests running, and this keeps KVM out of the measurement).

Usage: bench/rpc/bench.py [--domains N] [--runs K] [--bin-dir DIR]
       (DIR holds oxvirtd and oxvirt-vmm; default: $CARGO_TARGET_DIR or target/, release
       then debug)
Needs: libvirt-clients, libvirt-daemon(-driver-qemu), python3-libvirt, dbus, qemu-system-x86.
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import libvirt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_bin(name, bin_dir):
    dirs = [bin_dir] if bin_dir else []
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    dirs += [os.path.join(target, "release"), os.path.join(target, "debug")]
    for d in dirs:
        p = os.path.join(d, name)
        if os.path.isfile(p):
            return p
    sys.exit(f"{name} not found in {dirs}: cargo build --release --bins")


def wait_socket(path, what, timeout=60):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > deadline:
            sys.exit(f"{what} did not create {path}")
        time.sleep(0.05)


def domain_xml(name, virt_type, kernel):
    return f"""<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel}</kernel>
      <cmdline>console=ttyS0</cmdline></os>
  <devices><serial type='pty'><target port='0'/></serial></devices>
</domain>"""


def start_oxvirtd(tmp, bin_dir):
    # Find the binaries before starting anything, so a missing one leaves nothing behind.
    oxvirtd, vmm = find_bin("oxvirtd", bin_dir), find_bin("oxvirt-vmm", bin_dir)
    d = os.path.join(tmp, "ox")
    os.makedirs(d)
    bus = os.path.join(d, "bus")
    dbus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile",
                             f"--address=unix:path={bus}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_socket(bus, "dbus-daemon")
    sock = os.path.join(d, "rpc", "virtoxvirtd-sock")
    conf = os.path.join(d, "oxvirtd.toml")
    with open(conf, "w") as f:
        f.write(f'domains_dir = "{d}/domains"\nruntime_dir = "{d}/run"\n'
                f'vmm = "{vmm}"\nbus = "unix:path={bus}"\n'
                f'autostart = false\nrpc_socket = "{sock}"\n')
    log = open(os.path.join(d, "log"), "w")
    daemon = subprocess.Popen([oxvirtd, "--system", "--config", conf],
                              stdout=subprocess.DEVNULL, stderr=log,
                              env=dict(os.environ, OXVIRTD_LOG="warn"))
    wait_socket(sock, "oxvirtd")
    return f"oxvirt:///system?socket={sock}", [daemon, dbus]


def start_libvirtd(tmp):
    d = os.path.join(tmp, "lv")
    for sub in ("sock", "run", "home"):
        os.makedirs(os.path.join(d, sub))
    conf = os.path.join(d, "libvirtd.conf")
    with open(conf, "w") as f:
        f.write(f'unix_sock_dir = "{d}/sock"\nunix_sock_rw_perms = "0777"\n'
                'auth_unix_rw = "none"\nauth_unix_ro = "none"\n')
    subprocess.run(["chown", "-R", "65534:65534", d], check=True)
    os.chmod(tmp, 0o755)
    log = open(os.path.join(tmp, "libvirtd.log"), "w")
    env = {"HOME": f"{d}/home", "XDG_RUNTIME_DIR": f"{d}/run",
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    daemon = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "/usr/sbin/libvirtd", "--config", conf,
                               "--pid-file", f"{d}/run/pid", "--timeout", "0"],
                              stdout=subprocess.DEVNULL, stderr=log, env=env)
    sock = os.path.join(d, "sock", "libvirt-sock")
    wait_socket(sock, "libvirtd")
    return f"qemu+unix:///session?socket={sock}", [daemon]


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def virsh(uri, *args):
    subprocess.run(["virsh", "-c", uri, *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   env=dict(os.environ, LIBVIRT_AUTOSTART="0"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--domains", type=int, default=10)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--bin-dir")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="oxvirt-bench-rpc-")
    procs = []
    try:
        kernel = os.path.join(tmp, "vmlinuz")
        open(kernel, "wb").close()
        os.chmod(kernel, 0o644)
        ox_uri, p = start_oxvirtd(tmp, a.bin_dir)
        procs += p
        lv_uri, p = start_libvirtd(tmp)
        procs += p
        targets = {"oxvirtd": (ox_uri, "kvm"), "libvirtd": (lv_uri, "qemu")}
        conns = {}
        for label, (uri, vt) in targets.items():
            c = libvirt.open(uri)
            for i in range(a.domains):
                c.defineXML(domain_xml(f"bench{i}", vt, kernel))
            conns[label] = c
        # Warm-up (libvirtd probes QEMU's capabilities on first use).
        for label, (uri, _) in targets.items():
            virsh(uri, "list", "--all")
            virsh(uri, "dominfo", "bench0")

        results = {k: {"virsh list --all": [], "virsh dominfo": [],
                       "api listAllDomains+state": [], "api lookup+info": []}
                   for k in targets}
        for _ in range(a.runs):
            for label, (uri, _) in targets.items():
                r = results[label]
                c = conns[label]
                r["virsh list --all"].append(timed(lambda: virsh(uri, "list", "--all")))
                r["virsh dominfo"].append(timed(lambda: virsh(uri, "dominfo", "bench0")))
                r["api listAllDomains+state"].append(
                    timed(lambda: [d.state() for d in c.listAllDomains(0)]))
                r["api lookup+info"].append(
                    timed(lambda: c.lookupByName("bench0").info()))

        print(f"libvirt RPC latency, {a.domains} defined domains, median of {a.runs} runs")
        print(f"{'measurement':28} {'oxvirtd ms':>11} {'libvirtd ms':>12} {'ratio':>7}")
        for m in results["oxvirtd"]:
            ox = statistics.median(results["oxvirtd"][m]) * 1000
            lv = statistics.median(results["libvirtd"][m]) * 1000
            print(f"{m:28} {ox:11.2f} {lv:12.2f} {ox / lv:7.2f}")
        for c in conns.values():
            for d in c.listAllDomains(0):
                d.undefine()
            c.close()
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
