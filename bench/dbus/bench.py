#!/usr/bin/python3
"""D-Bus benchmark: oxvirtd against Debian's libvirt-dbus + libvirtd, one client.

The same dbus-python client code talks to both services (org.libvirt on a private
bus each) and measures, alternating between them:
  * define + start + ready: DomainDefineXML, Domain.Create, then until the guest's
    `OXTEST READY` line is in its serial console file (then Destroy + Undefine,
    untimed);
  * daemon memory with N domains running (default 20): VmRSS of oxvirtd, against
    libvirtd + libvirt-dbus (the two processes that together serve the same interface),
    plus the summed RSS of the per-domain processes (oxvirt-vmm vs qemu-system-x86_64)
    for context.
Prints medians and ratios oxvirt / libvirt (below 1 = oxvirt faster or smaller).

The guest is this repository's test guest (tests/guests, PVH ELF, 64 MiB, 1 vCPU) with
`oxtest=acpibutton`: it prints its ready line and waits for the power button.

Setup, all private in a temporary directory: oxvirtd (as root, --session mode, own
store) on its own dbus-daemon; libvirtd (qemu:///session) and libvirt-dbus --session
as user nobody on another dbus-daemon. As nobody, libvirtd cannot open /dev/kvm (root
only here), so its domains are type 'qemu' (TCG); oxvirt's are 'kvm'. On this machine's
emulated KVM the guest's own work to its ready line is tiny either way, so the latency is
dominated by the daemons and process start-up; say so when quoting the figures.

Usage: bench/dbus/bench.py [--runs K] [--domains N] [--bin-dir DIR]
Needs: dbus, python3-dbus, libvirt-daemon(-driver-qemu), libvirt-dbus, qemu-system-x86,
gcc (the test guest is built by tests/guests/build.sh). Not a test: nothing is asserted.
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

import dbus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("OXVIRT_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "oxvirt"))
MARKER = "OXTEST READY"
NOBODY = 65534


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def find_bin(name, bin_dir):
    dirs = [bin_dir] if bin_dir else []
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    dirs += [os.path.join(target, "release"), os.path.join(target, "debug")]
    for d in dirs:
        p = os.path.join(d, name)
        if os.path.isfile(p):
            return p
    sys.exit(f"{name} not found in {dirs}: cargo build --release --bins")


def guest():
    out = os.path.join(CACHE, "bench-guest")
    elf = os.path.join(out, "oxtest.elf")
    if not os.path.exists(elf):
        log("== tests/guests/build.sh " + out)
        subprocess.run([os.path.join(ROOT, "tests", "guests", "build.sh"), out], check=True)
    return elf


def wait_for(pred, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            sys.exit(f"timed out: {what}")
        time.sleep(0.002)


def start_bus(d):
    """A private bus that every local user may use (libvirt-dbus runs as nobody)."""
    path = os.path.join(d, "bus")
    conf = os.path.join(d, "bus.conf")
    with open(conf, "w") as f:
        f.write(f"""<busconfig><type>session</type><listen>unix:path={path}</listen>
<auth>EXTERNAL</auth><policy context="default"><allow user="*"/><allow own="*"/>
<allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/></policy></busconfig>""")
    p = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: os.path.exists(path), "dbus-daemon socket")
    return f"unix:path={path}", p


def wait_name(address):
    bus = dbus.bus.BusConnection(address)
    wait_for(lambda: bus.name_has_owner("org.libvirt"), "org.libvirt on the bus")
    return bus


def start_oxvirt(tmp, bin_dir):
    d = os.path.join(tmp, "ox")
    os.makedirs(d)
    address, bus_proc = start_bus(d)
    conf = os.path.join(d, "oxvirtd.toml")
    with open(conf, "w") as f:
        f.write(f'domains_dir = "{d}/domains"\nruntime_dir = "{d}/run"\n'
                f'vmm = "{find_bin("oxvirt-vmm", bin_dir)}"\nbus = "{address}"\n'
                f'autostart = false\nrpc_socket = "{d}/rpc-sock"\n')
    daemon = subprocess.Popen([find_bin("oxvirtd", bin_dir), "--session", "--config", conf],
                              stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(d, "log"), "w"),
                              env=dict(os.environ, OXVIRTD_LOG="warn", XDG_RUNTIME_DIR=d))
    return {"name": "oxvirt", "dir": d, "bus": wait_name(address), "type": "kvm",
            "daemons": [daemon.pid], "vmm": "oxvirt-vmm", "procs": [daemon, bus_proc]}


def start_libvirt(tmp):
    d = os.path.join(tmp, "lv")
    for sub in ("run", "home"):
        os.makedirs(os.path.join(d, sub))
    address, bus_proc = start_bus(d)
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", d], check=True)
    env = {"HOME": f"{d}/home", "XDG_RUNTIME_DIR": f"{d}/run",
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DBUS_SESSION_BUS_ADDRESS": address}
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    libvirtd = subprocess.Popen(as_nobody + ["/usr/sbin/libvirtd", "--timeout", "0"],
                                stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(tmp, "libvirtd.log"), "w"), env=env)
    wait_for(lambda: os.path.exists(f"{d}/run/libvirt/libvirt-sock"), "libvirtd socket")
    ldbus = subprocess.Popen(as_nobody + ["/usr/sbin/libvirt-dbus", "--session"],
                             stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(tmp, "libvirt-dbus.log"), "w"), env=env)
    return {"name": "libvirt", "dir": d, "bus": wait_name(address), "type": "qemu",
            "daemons": [libvirtd.pid, ldbus.pid], "vmm": "qemu-system-x86",
            "procs": [ldbus, libvirtd, bus_proc]}


def domain_xml(name, vtype, kernel, console):
    return f"""<domain type='{vtype}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel}</kernel>
      <cmdline>console=ttyS0 oxtest=acpibutton</cmdline></os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot>
  <devices>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <console type='file'><source path='{console}'/><target type='serial' port='0'/></console>
  </devices>
</domain>"""


def connect(t):
    return dbus.Interface(t["bus"].get_object("org.libvirt", "/org/libvirt/QEMU"),
                          "org.libvirt.Connect")


def domain(t, path):
    return dbus.Interface(t["bus"].get_object("org.libvirt", path), "org.libvirt.Domain")


def has_marker(console):
    try:
        with open(console, "rb") as f:
            return MARKER.encode() in f.read()
    except OSError:
        return False


def define_start_ready(t, name, kernel):
    console = os.path.join(t["dir"], f"{name}.console")
    if os.path.exists(console):
        os.remove(console)
    xml = domain_xml(name, t["type"], kernel, console)
    t0 = time.perf_counter()
    path = connect(t).DomainDefineXML(xml)
    domain(t, path).Create(0)
    wait_for(lambda: has_marker(console), f"{t['name']}: {name} ready")
    return time.perf_counter() - t0, path


def remove(t, path):
    d = domain(t, path)
    if d.GetState(0)[0] != 5:
        d.Destroy(0)
    d.Undefine(0)


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_rss(t):
    """Summed RSS of the per-domain processes (oxvirt-vmm / qemu-system-x86_64)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if cmd and t["vmm"].encode() in os.path.basename(cmd[0]) and t["dir"].encode() in b" ".join(cmd):
            total += rss_kib(int(pid))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--domains", type=int, default=20)
    ap.add_argument("--bin-dir")
    a = ap.parse_args()
    kernel = guest()
    tmp = tempfile.mkdtemp(prefix="oxvirt-bench-dbus-")
    os.chmod(tmp, 0o755)
    shared_kernel = os.path.join(tmp, "oxtest.elf")
    shutil.copy(kernel, shared_kernel)
    os.chmod(shared_kernel, 0o644)
    targets = []
    try:
        targets.append(start_oxvirt(tmp, a.bin_dir))
        targets.append(start_libvirt(tmp))
        # Warm-up (libvirtd probes QEMU's capabilities on first use).
        for t in targets:
            _, p = define_start_ready(t, "warmup", shared_kernel)
            remove(t, p)
        lat = {t["name"]: [] for t in targets}
        for i in range(a.runs):
            for t in targets:
                dt, p = define_start_ready(t, f"run{i}", shared_kernel)
                lat[t["name"]].append(dt)
                remove(t, p)
        mem = {}
        for t in targets:
            base = sum(rss_kib(p) for p in t["daemons"])
            for i in range(a.domains):
                define_start_ready(t, f"many{i}", shared_kernel)
            time.sleep(1)
            mem[t["name"]] = (base, sum(rss_kib(p) for p in t["daemons"]), children_rss(t))
        ox, lv = targets[0]["name"], targets[1]["name"]
        mo, ml = statistics.median(lat[ox]) * 1000, statistics.median(lat[lv]) * 1000
        print(f"D-Bus: define + start + guest ready line, median of {a.runs} runs")
        print(f"  oxvirtd            {mo:9.1f} ms  (min {min(lat[ox]) * 1000:.1f}, max {max(lat[ox]) * 1000:.1f})")
        print(f"  libvirt-dbus+libvirtd {ml:6.1f} ms  (min {min(lat[lv]) * 1000:.1f}, max {max(lat[lv]) * 1000:.1f})")
        print(f"  ratio oxvirt/libvirt {mo / ml:7.3f}")
        print(f"Daemon RSS, idle -> with {a.domains} domains running (KiB)")
        for n, label in ((ox, "oxvirtd"), (lv, "libvirtd + libvirt-dbus")):
            b, r, c = mem[n]
            print(f"  {label:24} {b:8d} -> {r:8d}   per-domain processes total {c:9d}")
        print(f"  ratio oxvirt/libvirt (daemons, {a.domains} running) {mem[ox][1] / mem[lv][1]:.3f}")
        print(f"  ratio oxvirt/libvirt (per-domain processes) {mem[ox][2] / max(mem[lv][2], 1):.3f}")
    finally:
        for t in targets:
            try:
                c = connect(t)
                for p in c.ListDomains(0):
                    try:
                        remove(t, p)
                    except dbus.exceptions.DBusException:
                        pass
            except dbus.exceptions.DBusException:
                pass
            for p in t["procs"]:
                p.send_signal(signal.SIGTERM)
            for p in t["procs"]:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
