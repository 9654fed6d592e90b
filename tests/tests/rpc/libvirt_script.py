#!/usr/bin/python3
"""A python3-libvirt client run by tests/tests/rpc_python.rs against oxvirtd, and against
a real libvirtd's test:///default driver, to prove both behave alike.

Usage: libvirt_script.py URI DOMAIN_XML_FILE
Prints one JSON object: what each API call returned, reduced to its *shape* where the
values legitimately differ between hypervisors (memory sizes, ids, cpu time), and the
lifecycle events received through virEventRegisterDefaultImpl callbacks.
"""
import json
import sys
import threading
import time

import libvirt

uri, xml_file = sys.argv[1], sys.argv[2]
xml = open(xml_file).read()
out = {}
events = []
lock = threading.Lock()

EVENTS = {0: "DEFINED", 1: "UNDEFINED", 2: "STARTED", 3: "SUSPENDED", 4: "RESUMED",
          5: "STOPPED", 6: "SHUTDOWN", 7: "PMSUSPENDED", 8: "CRASHED"}


def lifecycle(conn, dom, event, detail, opaque):
    with lock:
        events.append([dom.name(), EVENTS.get(event, str(event)), detail])


def run_loop():
    while True:
        libvirt.virEventRunDefaultImpl()


def wait_state(dom, want, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if dom.state()[0] == want:
            return True
        time.sleep(0.1)
    return False


def wait_event(name, kind, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with lock:
            if any(e[0] == name and e[1] == kind for e in events):
                return True
        time.sleep(0.05)
    return False


libvirt.virEventRegisterDefaultImpl()
threading.Thread(target=run_loop, daemon=True).start()

conn = libvirt.open(uri)
out["uri"] = conn.getURI()
out["type_is_str"] = isinstance(conn.getType(), str)
out["hostname_nonempty"] = bool(conn.getHostname())
info = conn.getInfo()
out["node_info_shape"] = [type(x).__name__ for x in info]
cb = conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None)

before = [d.name() for d in conn.listAllDomains(0)]
dom = conn.defineXML(xml)
name = dom.name()
out["defined_name"] = name
out["listed_after_define"] = name in [d.name() for d in conn.listAllDomains(0)] and name not in before
out["inactive_listed"] = name in [d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_INACTIVE)]
look = conn.lookupByName(name)
out["lookup_uuid_matches"] = look.UUIDString() == dom.UUIDString()
out["lookup_by_uuid_name"] = conn.lookupByUUIDString(dom.UUIDString()).name() == name
out["state_defined"] = look.state()
out["is_active_defined"] = look.isActive()
out["is_persistent"] = look.isPersistent()
out["xml_has_name"] = ("<name>%s</name>" % name) in look.XMLDesc()
out["os_type"] = look.OSType()
try:
    conn.lookupByName("no-such-domain-xyz")
    out["lookup_missing"] = "found?"
except libvirt.libvirtError as e:
    out["lookup_missing"] = [e.get_error_code(), e.get_error_message()]

look.create()
out["state_started"] = look.state()
out["is_active_started"] = look.isActive()
out["id_positive"] = look.ID() > 0
i = look.info()
out["info_shape"] = [type(x).__name__ for x in i]
out["info_state"] = i[0]
out["info_mem_le_max"] = i[2] <= i[1]
out["started_event"] = wait_event(name, "STARTED")
out["active_listed"] = name in [d.name() for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]

look.suspend()
out["state_suspended"] = look.state()
out["suspended_event"] = wait_event(name, "SUSPENDED")
look.resume()
out["state_resumed"] = look.state()
out["resumed_event"] = wait_event(name, "RESUMED")

try:
    look.create()
    out["start_twice"] = "accepted?"
except libvirt.libvirtError as e:
    out["start_twice"] = e.get_error_code()

# A guest ignores the power button until its OS has armed it: press again until it
# powers off, as scripts do.
deadline = time.time() + 90
while True:
    look.shutdown()
    off = wait_state(look, libvirt.VIR_DOMAIN_SHUTOFF, timeout=3)
    if off or time.time() > deadline:
        break
out["shutdown_reached_shutoff"] = off
out["state_after_shutdown"] = look.state()
out["stopped_event"] = wait_event(name, "STOPPED")

look.create()
look.destroy()
out["state_destroyed"] = look.state()

try:
    look.suspend()
    out["suspend_inactive"] = "accepted?"
except libvirt.libvirtError as e:
    out["suspend_inactive"] = e.get_error_code()

look.undefine()
out["gone_after_undefine"] = name not in [d.name() for d in conn.listAllDomains(0)]
out["undefined_event"] = wait_event(name, "UNDEFINED")
conn.domainEventDeregisterAny(cb)
with lock:
    out["event_kinds"] = sorted({e[1] for e in events if e[0] == name})
conn.close()
print(json.dumps(out, sort_keys=True))
