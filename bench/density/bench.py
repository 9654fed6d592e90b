#!/usr/bin/python3
"""Density: what a host full of small idle VMs costs, oxvirt against libvirt + QEMU.

For each stack in turn (oxvirtd + oxvirt-vmm, then libvirtd + QEMU), in the same run:
  1. define COUNT domains of the oxtest guest (`quiet oxtest=halt`: it prints its lines
     on COM1, then idles in `cli; hlt`), 1 vCPU, MEM MiB, the serial console to a file;
  2. start them one after the other through one python3-libvirt connection and time
     it: until the last `create()` returned (API), and until every console shows the
     guest's `OXTEST DONE` line (guests up);
  3. wait SETTLE seconds, then read /proc/PID/smaps_rollup of every VMM process and of
     the daemon(s): the sum of PSS (proportional set size: a page shared by k processes
     counts 1/k in each, so the sum is what the host really holds) and the anon part;
     daemon memory per running domain = (daemon PSS with COUNT running - daemon PSS with
     COUNT defined, none running) / COUNT;
  4. leave them running and go on with the other stack;
  5. `virsh list` latency with COUNT running on each (a whole virsh process; median
     of RUNS, the stacks alternating), and listAllDomains + state() of each in the
     open connection;
  6. destroy and undefine all, one stack after the other.
Prints a table and the ratios oxvirt / libvirt (below 1: oxvirt costs less).

The two stacks do not run the guest the same way on a machine without hardware KVM:
oxvirt uses <domain type='kvm'> (here an emulated KVM, kvm_pvm, if that is what the
host has), QEMU runs <domain type='qemu'> (TCG), as libvirt does where KVM would not
serve it; the script says which in its output. Both get the same XML otherwise, and
each stack adds its own defaults to it (libvirt's pc machine gets a USB controller and
a memory balloon; QEMU boots the PVH ELF through SeaBIOS and its linuxboot ROM, oxvirt
loads it directly).

Daemons, as bench/rpc: a private oxvirtd as root (--system with its own store,
runtime dir, D-Bus daemon and RPC socket) and a private libvirtd 9.0 (Debian) as user
nobody (session mode, the qemu driver; it spawns its own virtlogd, counted with it).
The private dbus-daemon of oxvirtd is reported but not counted (a host has a system
bus anyway). Everything (domains, VMMs, daemons, the temporary directory) is cleaned
up on exit, Ctrl-C and SIGTERM included.

Usage: bench/density/bench.py [--count 50] [--mem 32] [--runs 20] [--settle 3]
                              [--only oxvirt|libvirt] [--bin-dir DIR] [--no-build]
Needs: root, libvirt-daemon(-driver-qemu) 9.0, libvirt-clients, python3-libvirt,
qemu-system-x86, dbus, gcc (the test guest is built from tests/guests).
Not a test: nothing here is asserted.
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CACHE = os.environ.get("OXVIRT_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "oxvirt"))
NOBODY = 65534


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def target_dir():
    return os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def build():
    log("== cargo build --release -p vmm -p daemon --bins")
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "vmm", "-p", "daemon", "--bins"],
                   cwd=ROOT, check=True)
    return os.path.join(target_dir(), "release")


def find_bin(name, bin_dir):
    p = os.path.join(bin_dir, name)
    if not os.path.isfile(p):
        sys.exit(f"{name} not found in {bin_dir}: cargo build --release -p vmm -p daemon --bins")
    return p


def newest_mtime(d):
    m = 0
    for dp, _, files in os.walk(d):
        for f in files:
            m = max(m, os.path.getmtime(os.path.join(dp, f)))
    return m


def oxtest_guest():
    """tests/guests built into the cache (as bench/boot does)."""
    out = os.path.join(CACHE, "bench-guest")
    elf = os.path.join(out, "oxtest.elf")
    src = os.path.join(ROOT, "tests", "guests")
    if not os.path.exists(elf) or os.path.getmtime(elf) < newest_mtime(src):
        log("== tests/guests/build.sh " + out)
        subprocess.run([os.path.join(src, "build.sh"), out], check=True)
    return elf


def wait_socket(path, what, proc, logfile, timeout=60):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.time() > deadline:
            with open(logfile, errors="replace") as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f"{what} did not create {path} (exit status {proc.poll()}); "
                               f"its log:\n{tail}")
        time.sleep(0.05)


def domain_xml(name, virt_type, kernel, mem_mib, console):
    return f"""<domain type='{virt_type}'>
  <name>{name}</name>
  <memory unit='MiB'>{mem_mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel}</kernel>
      <cmdline>quiet oxtest=halt</cmdline></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices><serial type='file'><source path='{console}'/><target port='0'/></serial></devices>
</domain>"""


class Stack:
    """One daemon stack: its processes, its URI, how to find its VMMs."""

    def __init__(self, label, virt_type):
        self.label, self.virt_type = label, virt_type
        self.procs = []       # Popen objects we started, stopped in reverse order
        self.uri = None
        self.dir = None

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def start_oxvirtd(tmp, bin_dir):
    oxvirtd, vmm = find_bin("oxvirtd", bin_dir), find_bin("oxvirt-vmm", bin_dir)
    s = Stack("oxvirt", "kvm")
    d = s.dir = os.path.join(tmp, "ox")
    os.makedirs(os.path.join(d, "console"))
    bus = os.path.join(d, "bus")
    logfile = os.path.join(d, "dbus.log")
    dbus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--nopidfile",
                             f"--address=unix:path={bus}"],
                            stdout=subprocess.DEVNULL, stderr=open(logfile, "w"))
    s.procs.append(dbus)
    wait_socket(bus, "dbus-daemon", dbus, logfile)
    sock = os.path.join(d, "rpc", "virtoxvirtd-sock")
    conf = os.path.join(d, "oxvirtd.toml")
    with open(conf, "w") as f:
        f.write(f'domains_dir = "{d}/domains"\nruntime_dir = "{d}/run"\n'
                f'vmm = "{vmm}"\nbus = "unix:path={bus}"\n'
                f'autostart = false\nrpc_socket = "{sock}"\n')
    logfile = os.path.join(d, "oxvirtd.log")
    daemon = subprocess.Popen([oxvirtd, "--system", "--config", conf],
                              stdout=subprocess.DEVNULL, stderr=open(logfile, "w"),
                              env=dict(os.environ, OXVIRTD_LOG="warn"))
    s.procs.append(daemon)
    wait_socket(sock, "oxvirtd", daemon, logfile)
    s.uri = f"oxvirt:///system?socket={sock}"
    s.daemon_pids = lambda: {"oxvirtd": [daemon.pid]}
    s.extra_pids = lambda: {"dbus-daemon (not counted)": [dbus.pid]}
    s.vmm_exe = os.path.realpath(vmm)
    return s


def start_libvirtd(tmp):
    s = Stack("libvirt", "qemu")
    d = s.dir = os.path.join(tmp, "lv")
    for sub in ("sock", "run", "home", "console"):
        os.makedirs(os.path.join(d, sub))
    conf = os.path.join(d, "libvirtd.conf")
    with open(conf, "w") as f:
        f.write(f'unix_sock_dir = "{d}/sock"\nunix_sock_rw_perms = "0777"\n'
                'auth_unix_rw = "none"\nauth_unix_ro = "none"\n')
    subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", d], check=True)
    logfile = os.path.join(d, "libvirtd.log")
    env = {"HOME": f"{d}/home", "XDG_RUNTIME_DIR": f"{d}/run",
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    daemon = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                               "--clear-groups", "/usr/sbin/libvirtd", "--config", conf,
                               "--pid-file", f"{d}/run/pid", "--timeout", "0"],
                              stdout=subprocess.DEVNULL, stderr=open(logfile, "w"), env=env)
    s.procs.append(daemon)
    wait_socket(os.path.join(d, "sock", "libvirt-sock"), "libvirtd", daemon, logfile)
    s.uri = f"qemu+unix:///session?socket={d}/sock/libvirt-sock"
    # libvirtd (setpriv execs it: same pid) and the virtlogd it spawns for QEMU's output.
    s.daemon_pids = lambda: {"libvirtd": [daemon.pid],
                             "virtlogd": procs_matching(d, exe_name="virtlogd")}
    s.extra_pids = lambda: {}
    s.vmm_exe = None
    return s


def proc_read(pid, what):
    try:
        with open(f"/proc/{pid}/{what}", "rb") as f:
            return f.read()
    except OSError:
        return b""


def procs_matching(path, exe_name=None, exe=None):
    """Pids whose command line or environment mention `path` (our temporary directory),
    optionally only those whose executable has this basename / path."""
    needle = path.encode()
    out = []
    for e in os.listdir("/proc"):
        if not e.isdigit() or int(e) == os.getpid():
            continue
        if needle not in proc_read(e, "cmdline") and needle not in proc_read(e, "environ"):
            continue
        try:
            real = os.readlink(f"/proc/{e}/exe")
        except OSError:
            continue
        real = real.removesuffix(" (deleted)")
        if exe_name and os.path.basename(real) != exe_name:
            continue
        if exe and real != exe:
            continue
        out.append(int(e))
    return sorted(out)


def vmm_pids(s):
    if s.vmm_exe:
        return procs_matching(s.dir, exe=s.vmm_exe)
    return [p for p in procs_matching(s.dir)
            if os.path.basename(os.readlink(f"/proc/{p}/exe")).startswith("qemu-system")]


def mem_kib(pid):
    """Pss, Pss_Anon, Rss of a process (KiB), from smaps_rollup."""
    fields = {}
    for line in proc_read(pid, "smaps_rollup").decode().splitlines()[1:]:
        k, _, v = line.partition(":")
        v = v.split()
        if v and v[0].isdigit():
            fields[k] = int(v[0])
    return fields.get("Pss", 0), fields.get("Pss_Anon", 0), fields.get("Rss", 0)


def sum_mem(pids):
    t = [0, 0, 0]
    for p in pids:
        for i, v in enumerate(mem_kib(p)):
            t[i] += v
    return t


def threads(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def console_done(path):
    try:
        with open(path, "rb") as f:
            return b"OXTEST DONE" in f.read()
    except OSError:
        return False


def virsh_list(uri):
    t = time.perf_counter()
    r = subprocess.run(["virsh", "-c", uri, "list"], capture_output=True, text=True,
                       env=dict(os.environ, LIBVIRT_AUTOSTART="0"))
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise RuntimeError(f"virsh -c {uri} list failed: {r.stderr.strip()}")
    return dt, sum(1 for line in r.stdout.splitlines() if " running" in line)


def run_stack(s, a, kernel):
    """Defines, starts, measures, destroys COUNT domains on one stack; returns results."""
    log(f"== {s.label}: {a.count} domains, {a.mem} MiB, <domain type='{s.virt_type}'>")
    c = libvirt.open(s.uri)
    s.conn = c
    r = {}
    names = [f"dens{i}" for i in range(a.count)]
    consoles = {n: os.path.join(s.dir, "console", f"{n}.log") for n in names}
    doms = [c.defineXML(domain_xml(n, s.virt_type, kernel, a.mem, consoles[n])) for n in names]
    # One domain started and destroyed first: libvirtd probes QEMU on first use, and
    # both fill their caches; then the daemons' baseline with everything defined.
    warm = c.defineXML(domain_xml("denswarm", s.virt_type, kernel, a.mem,
                                  os.path.join(s.dir, "console", "denswarm.log")))
    warm.create()
    warm.destroy()
    warm.undefine()
    time.sleep(a.settle)
    r["daemon_idle"] = {k: sum_mem(v) for k, v in s.daemon_pids().items()}

    per = []
    t0 = time.perf_counter()
    for d in doms:
        t = time.perf_counter()
        d.create()
        per.append(time.perf_counter() - t)
    r["start_api"] = time.perf_counter() - t0
    r["start_one"] = statistics.median(per)
    pending = set(names)
    deadline = time.perf_counter() + a.boot_timeout
    while pending:
        pending = {n for n in pending if not console_done(consoles[n])}
        if not pending:
            break
        if time.perf_counter() > deadline:
            n = sorted(pending)[0]
            with open(consoles[n], errors="replace") as f:
                con = f.read()[-2000:]
            raise RuntimeError(f"{s.label}: {len(pending)} guests did not print OXTEST DONE in "
                               f"{a.boot_timeout} s; console of {n}:\n{con}")
        time.sleep(0.02)
    r["start_up"] = time.perf_counter() - t0
    log(f"   all {a.count} up in {r['start_up']:.2f} s")

    time.sleep(a.settle)
    pids = vmm_pids(s)
    if len(pids) != a.count:
        raise RuntimeError(f"{s.label}: found {len(pids)} VMM processes, expected {a.count}")
    r["vmm"] = sum_mem(pids)
    r["vmm_threads"] = statistics.median(threads(p) for p in pids)
    r["daemon"] = {k: sum_mem(v) for k, v in s.daemon_pids().items()}
    r["extra"] = {k: sum_mem(v) for k, v in s.extra_pids().items()}

    s.doms = doms
    return r


def measure_lists(stacks, res, a):
    """`virsh list` and list+state with every stack's domains running, the stacks
    alternating run by run (the load of a shared machine drifts)."""
    lat = {s.label: [] for s in stacks}
    api = {s.label: [] for s in stacks}
    for _ in range(a.runs):
        for s in stacks:
            dt, running = virsh_list(s.uri)
            if running != a.count:
                raise RuntimeError(f"{s.label}: virsh list shows {running} running, "
                                   f"not {a.count}")
            lat[s.label].append(dt)
            t = time.perf_counter()
            [d.state() for d in s.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
            api[s.label].append(time.perf_counter() - t)
    for s in stacks:
        res[s.label]["virsh_list"] = statistics.median(lat[s.label])
        res[s.label]["api_list"] = statistics.median(api[s.label])


def destroy_all(s, r):
    t0 = time.perf_counter()
    for d in s.doms:
        d.destroy()
    r["destroy"] = time.perf_counter() - t0
    for d in s.doms:
        d.undefine()


def cleanup(stacks, tmp):
    for s in stacks:
        c = getattr(s, "conn", None)
        if c is not None:
            try:
                for d in c.listAllDomains(0):
                    try:
                        if d.isActive():
                            d.destroy()
                        d.undefine()
                    except libvirt.libvirtError:
                        pass
                c.close()
            except libvirt.libvirtError:
                pass
    for s in stacks:
        s.stop()
    # Whatever is left that the daemons started for us (VMMs, QEMUs, virtlogd): by pid.
    for _ in range(50):
        left = procs_matching(tmp)
        if not left:
            break
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    shutil.rmtree(tmp, ignore_errors=True)


def mib(kib):
    return kib / 1024


def report(a, res, stacks):
    host_kvm = "emulated KVM (kvm_pvm)" if os.path.exists("/sys/module/kvm_pvm") else "KVM"
    print(f"\ndensity: {a.count} idle domains, oxtest guest (quiet oxtest=halt), 1 vCPU, "
          f"{a.mem} MiB each; host {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for s in stacks:
        what = (f"oxvirtd + oxvirt-vmm, <domain type='kvm'> on {host_kvm}" if s.label == "oxvirt"
                else "libvirtd 9.0 + QEMU, <domain type='qemu'> (TCG)")
        print(f"  {s.label}: {what}")
    rows = []

    def row(name, fn, fmt, unit):
        vals = {k: fn(v) for k, v in res.items()}
        rows.append((name, vals, fmt, unit))

    row("start all, API (s)", lambda r: r["start_api"], "{:.2f}", "")
    row("start all, guests up (s)", lambda r: r["start_up"], "{:.2f}", "")
    row("start one, median (ms)", lambda r: r["start_one"] * 1000, "{:.1f}", "")
    row("VMMs PSS, sum (MiB)", lambda r: mib(r["vmm"][0]), "{:.1f}", "")
    row("VMMs PSS anon, sum (MiB)", lambda r: mib(r["vmm"][1]), "{:.1f}", "")
    row("VMM PSS, per VMM (MiB)", lambda r: mib(r["vmm"][0]) / a.count, "{:.2f}", "")
    row("VMM RSS, per VMM (MiB)", lambda r: mib(r["vmm"][2]) / a.count, "{:.2f}", "")
    row("VMM threads (median)", lambda r: r["vmm_threads"], "{:.0f}", "")
    row("daemon(s) PSS idle (MiB)", lambda r: mib(sum(v[0] for v in r["daemon_idle"].values())),
        "{:.1f}", "")
    row("daemon(s) PSS running (MiB)", lambda r: mib(sum(v[0] for v in r["daemon"].values())),
        "{:.1f}", "")
    row("daemon PSS per domain (KiB)",
        lambda r: (sum(v[0] for v in r["daemon"].values())
                   - sum(v[0] for v in r["daemon_idle"].values())) / a.count, "{:.0f}", "")
    row("total PSS, VMMs + daemon(s) (MiB)",
        lambda r: mib(r["vmm"][0] + sum(v[0] for v in r["daemon"].values())), "{:.1f}", "")
    row("virsh list, median (ms)", lambda r: r["virsh_list"] * 1000, "{:.1f}", "")
    row("api list+state, median (ms)", lambda r: r["api_list"] * 1000, "{:.2f}", "")
    row("destroy all (s)", lambda r: r["destroy"], "{:.2f}", "")

    both = "oxvirt" in res and "libvirt" in res
    print(f"\n{'measurement':36} {'oxvirt':>9} {'libvirt':>9}" + (f" {'ratio':>6}" if both else ""))
    for name, vals, fmt, _ in rows:
        cells = [fmt.format(vals[k]) if k in vals else "-" for k in ("oxvirt", "libvirt")]
        line = f"{name:36} {cells[0]:>9} {cells[1]:>9}"
        if both and vals["libvirt"]:
            line += f" {vals['oxvirt'] / vals['libvirt']:6.2f}"
        print(line)
    for label, r in res.items():
        parts = [f"{k} {mib(v[0]):.1f}" for k, v in r["daemon"].items()]
        parts += [f"{k} {mib(v[0]):.1f}" for k, v in r["extra"].items()]
        print(f"  {label} daemons with {a.count} running, PSS MiB: " + ", ".join(parts))
    if both:
        print("targets (issue 21): total PSS ratio <= 0.25, start all (guests up) ratio <= 0.2")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=50, help="domains per stack (default 50)")
    ap.add_argument("--mem", type=int, default=32, help="guest MiB (default 32)")
    ap.add_argument("--runs", type=int, default=20, help="virsh list runs (default 20)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds before reading memory")
    ap.add_argument("--boot-timeout", type=float, default=300.0)
    ap.add_argument("--only", choices=["oxvirt", "libvirt"])
    ap.add_argument("--bin-dir", help="oxvirtd and oxvirt-vmm (default: build target/release)")
    ap.add_argument("--no-build", action="store_true", help="use target/release as it is")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (oxvirtd --system, libvirtd as nobody through setpriv)")
    bin_dir = a.bin_dir or (os.path.join(target_dir(), "release") if a.no_build else build())
    guest = oxtest_guest()

    # Ctrl-C and SIGTERM end the run through the finally below.
    def on_signal(sig, _frame):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    tmp = tempfile.mkdtemp(prefix="oxvirt-bench-density-")
    os.chmod(tmp, 0o755)
    stacks, res = [], {}
    try:
        kernel = os.path.join(tmp, "oxtest.elf")
        shutil.copy(guest, kernel)
        os.chmod(kernel, 0o644)
        if a.only != "libvirt":
            stacks.append(start_oxvirtd(tmp, bin_dir))
        if a.only != "oxvirt":
            stacks.append(start_libvirtd(tmp))
        # Each stack starts its domains while the other's (if started first) idle on;
        # then the listings alternate between the two; then each destroys its own.
        for s in stacks:
            res[s.label] = run_stack(s, a, kernel)
        measure_lists(stacks, res, a)
        for s in stacks:
            destroy_all(s, res[s.label])
        report(a, res, stacks)
    finally:
        cleanup(stacks, tmp)


if __name__ == "__main__":
    main()
