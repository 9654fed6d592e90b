#!/usr/bin/python3
"""A libvirt-dbus client written the ordinary way (dbus-python + GLib main loop),
driving oxvirtd through a domain's whole life and checking the DomainEvent signals.

usage: lifecycle.py BUS_ADDRESS DOMAIN_XML_FILE CONSOLE_FILE
Prints one line per step; exits non-zero with the reason on the first failure."""
import os
import sys
import time

import dbus
import dbus.mainloop.glib
from gi.repository import GLib

ADDRESS, XML_FILE, CONSOLE = sys.argv[1:4]
STEP = 120.0
CONNECT = "/org/libvirt/QEMU"

dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
bus = dbus.bus.BusConnection(ADDRESS)
connect = dbus.Interface(bus.get_object("org.libvirt", CONNECT), "org.libvirt.Connect")
events = []


def on_event(path, event, detail):
    events.append((str(path), int(event), int(detail)))


bus.add_signal_receiver(on_event, signal_name="DomainEvent",
                        dbus_interface="org.libvirt.Connect", path=CONNECT)
ctx = GLib.MainContext.default()


def pump(pred, what, timeout=STEP):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            sys.exit(f"FAIL: timed out waiting for {what}; events so far: {events}")
        ctx.iteration(False)
        time.sleep(0.01)


def wait_event(path, event, detail):
    pump(lambda: (path, event, detail) in events, f"DomainEvent({event},{detail})")
    events.remove((path, event, detail))
    print(f"event {event},{detail}", flush=True)


def console_count(needle):
    try:
        with open(CONSOLE, errors="replace") as f:
            return f.read().count(needle)
    except FileNotFoundError:
        return 0


def check(cond, msg):
    if not cond:
        sys.exit(f"FAIL: {msg}")


xml = open(XML_FILE).read()
path = str(connect.DomainDefineXML(xml))
wait_event(path, 0, 0)  # DEFINED/ADDED
dom_obj = bus.get_object("org.libvirt", path)
dom = dbus.Interface(dom_obj, "org.libvirt.Domain")
props = dbus.Interface(dom_obj, "org.freedesktop.DBus.Properties")
p = props.GetAll("org.libvirt.Domain")
check(p["Active"] is not None and not p["Active"], f"inactive after define: {p}")
check(p["Persistent"] and p["Id"] == 0 and p["OSType"] == "hvm", f"properties: {p}")
check(tuple(dom.GetState(0)) == (5, 0), f"state after define {dom.GetState(0)}")
print("defined", path, flush=True)

dom.Create(0)
wait_event(path, 2, 0)  # STARTED/BOOTED
check(tuple(dom.GetState(0)) == (1, 1), f"state after start {tuple(dom.GetState(0))}")
check(bool(props.Get("org.libvirt.Domain", "Active")), "Active after start")
check(int(props.Get("org.libvirt.Domain", "Id")) > 0, "Id after start")
pump(lambda: console_count("OXTEST acpibutton armed") >= 1, "guest ready (acpibutton armed)")
print("running", flush=True)

live = str(dom.GetXMLDesc(0))
check("<name>" in live and " id='" in live, f"live XML: {live[:300]}")
inactive = str(dom.GetXMLDesc(2))
check(" id='" not in inactive, "inactive XML has no id")
stats = dom.GetStats(0, 0)
check(int(stats["state.state"]) == 1, f"stats: {dict(stats)}")
check("balloon.maximum" in stats and "vcpu.current" in stats and "cpu.time" in stats,
      f"stats keys: {sorted(stats.keys())}")
print("xml+stats", flush=True)

dom.Suspend()
wait_event(path, 3, 0)  # SUSPENDED/PAUSED
check(tuple(dom.GetState(0)) == (3, 1), f"state after suspend {tuple(dom.GetState(0))}")
dom.Resume()
wait_event(path, 4, 0)  # RESUMED/UNPAUSED
check(tuple(dom.GetState(0)) == (1, 5), f"state after resume {tuple(dom.GetState(0))}")
print("suspend+resume", flush=True)

dom.Shutdown(0)
wait_event(path, 5, 0)  # STOPPED/SHUTDOWN: the guest handled the power button
check(tuple(dom.GetState(0)) == (5, 1), f"state after shutdown {tuple(dom.GetState(0))}")
check(console_count("OXTEST acpibutton ok") >= 1 or console_count("acpibutton") >= 1,
      "guest saw the power button")
print("shutdown", flush=True)

# The console file is rewritten on each start (libvirt's append='off').
os.remove(CONSOLE)
dom.Create(0)
wait_event(path, 2, 0)
pump(lambda: console_count("OXTEST acpibutton armed") >= 1, "second boot ready")
dom.Destroy(0)
wait_event(path, 5, 1)  # STOPPED/DESTROYED
check(tuple(dom.GetState(0)) == (5, 2), f"state after destroy {tuple(dom.GetState(0))}")
print("destroy", flush=True)

dom.Undefine(0)
wait_event(path, 1, 0)  # UNDEFINED/REMOVED
check(len(connect.ListDomains(0)) == 0, "no domains left")
try:
    connect.DomainLookupByName("lifecycle")
    sys.exit("FAIL: lookup after undefine succeeded")
except dbus.exceptions.DBusException as e:
    check(e.get_dbus_name() == "org.libvirt.Error", f"error name {e.get_dbus_name()}")
    check("Domain not found: no domain with matching name 'lifecycle'" in str(e), str(e))
print("undefine", flush=True)
print("OK", flush=True)
