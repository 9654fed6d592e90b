#!/usr/bin/python3
"""Compares the wire shape of oxvirtd's answers with Debian's libvirt-dbus (over
libvirt's test driver, /org/libvirt/Test) for the same calls: typed parameters
(GetStats, GetAllDomainStats), Properties.GetAll and Get (SchedulerType included).
dbus-python reports how many variant levels wrap a value (variant_level), so the
comparison is of types and levels, not values.

usage: wire.py OXVIRTD_BUS OXVIRTD_DOMAIN_PATH REFERENCE_BUS
(the reference side's domain is the test driver's own `test`)
Prints one line per check; exits non-zero with the reason on the first failure."""
import sys

import dbus

OX_BUS, OX_DOM, REF_BUS = sys.argv[1:4]
PROPS = "org.freedesktop.DBus.Properties"


def fail(msg):
    sys.exit(f"FAIL: {msg}")


def shape(v):
    """A value's D-Bus type as dbus-python sees it, with its variant level."""
    return (type(v).__name__, getattr(v, "variant_level", 0))


def shapes(d):
    return {str(k): shape(v) for k, v in d.items()}


class Side:
    def __init__(self, address, dom_path):
        self.bus = dbus.bus.BusConnection(address)
        self.dom = self.bus.get_object("org.libvirt", dom_path)
        connect_path = dom_path.split("/domain/")[0]
        self.connect = self.bus.get_object("org.libvirt", connect_path)

    def stats(self):
        return self.dom.GetStats(dbus.UInt32(0), dbus.UInt32(0), dbus_interface="org.libvirt.Domain")

    def all_stats(self):
        return self.connect.GetAllDomainStats(dbus.UInt32(0), dbus.UInt32(0),
                                              dbus_interface="org.libvirt.Connect")

    def get_all(self, obj, iface):
        return obj.GetAll(iface, dbus_interface=PROPS)

    def get(self, obj, iface, name):
        return obj.Get(iface, name, dbus_interface=PROPS)


ox = Side(OX_BUS, OX_DOM)
ref_bus = dbus.bus.BusConnection(REF_BUS)
REF_DOM = ref_bus.get_object("org.libvirt", "/org/libvirt/Test").DomainLookupByName(
    "test", dbus_interface="org.libvirt.Connect")
ref = Side(REF_BUS, str(REF_DOM))


def same_shapes(what, a, b, only=None):
    sa, sb = shapes(a), shapes(b)
    keys = set(sa) & set(sb) if only is None else only
    if not keys:
        fail(f"{what}: no keys in common: oxvirtd {sorted(sa)}, libvirt-dbus {sorted(sb)}")
    for k in sorted(keys):
        if sa.get(k) != sb.get(k):
            fail(f"{what} {k}: oxvirtd {sa.get(k)}, libvirt-dbus {sb.get(k)}")
    print(f"{what}: same shape for {sorted(keys)}", flush=True)


# Typed parameters: every value two variant levels deep, as in libvirt-dbus.
for name, side in (("oxvirtd", ox), ("libvirt-dbus", ref)):
    for k, v in side.stats().items():
        if getattr(v, "variant_level", 0) != 2:
            fail(f"{name} GetStats {k}: variant level {getattr(v, 'variant_level', 0)}, want 2")
same_shapes("GetStats", ox.stats(), ref.stats())

ox_rec = ox.all_stats()
ref_rec = ref.all_stats()
if ox_rec.signature != ref_rec.signature:
    fail(f"GetAllDomainStats signature {ox_rec.signature} vs {ref_rec.signature}")
same_shapes("GetAllDomainStats record", ox_rec[0][1], ref_rec[0][1])

# Properties.GetAll: two variant levels; Get: one.
for iface, ox_obj, ref_obj in (("org.libvirt.Domain", ox.dom, ref.dom),
                               ("org.libvirt.Connect", ox.connect, ref.connect)):
    a = ox.get_all(ox_obj, iface)
    b = ref.get_all(ref_obj, iface)
    missing = set(map(str, b)) - set(map(str, a))
    if missing:
        fail(f"GetAll {iface}: oxvirtd lacks {sorted(missing)}")
    for k, v in a.items():
        if v.variant_level != 2:
            fail(f"oxvirtd GetAll {iface} {k}: variant level {v.variant_level}, want 2")
    same_shapes(f"GetAll {iface}", a, b)
    for k in a:
        ga, gb = ox.get(ox_obj, iface, k), ref.get(ref_obj, iface, k)
        if shape(ga) != shape(gb):
            fail(f"Get {iface} {k}: oxvirtd {shape(ga)}, libvirt-dbus {shape(gb)}")
    print(f"Get {iface}: same shape for every property", flush=True)

print("PASS", flush=True)
