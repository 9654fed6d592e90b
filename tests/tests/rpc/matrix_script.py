#!/usr/bin/python3
"""The python3-libvirt matrix of issue 19: every everyday call against one running
domain, reduced to the shape of its answer rather than its value, so that the answers
of two daemons (oxvirtd and libvirtd's QEMU driver) can be compared field by field.

Usage: matrix_script.py URI DOMAIN_NAME DISK_TARGET NIC_MAC

Prints one JSON object, one entry per call:
  {"ok": SHAPE}                 the call answered; SHAPE is its shape (below)
  {"err": CODE, "msg": TEXT}    libvirt error code (TEXT is for the reader only)

A SHAPE is the Python type of a value: "int", "float", "str", "bool", "None";
["tuple"|"list", [SHAPE, ...]] for sequences whose length is structural (per vCPU,
per host CPU, the fixed-size answers); ["list*", [SHAPE...]] for sequences whose
length is not (the distinct element shapes, sorted); {"key": SHAPE} for dicts and
typed parameters. Indexes in bulk-stats keys are normalised (block.0.rd.reqs →
block.N.rd.reqs). XML answers are reduced to their root and element names. A few
values that the domain's definition fixes (64 MiB, 2 vCPUs, a 4 MiB disk) are kept
as `units` so that a unit mistake (MiB for KiB, sectors for bytes) shows.
"""
import json
import re
import sys
import xml.etree.ElementTree as ET

import libvirt

uri, name, disk, mac = sys.argv[1:5]
libvirt.registerErrorHandler(lambda *_: None, None)
conn = libvirt.open(uri)
dom = conn.lookupByName(name)
out = {}


def shape(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    if v is None:
        return "None"
    if isinstance(v, tuple):
        return ["tuple", [shape(x) for x in v]]
    if isinstance(v, list):
        return ["list", [shape(x) for x in v]]
    if isinstance(v, dict):
        return {str(k): shape(x) for k, x in v.items()}
    return type(v).__name__


def loose(v):
    """A sequence whose length says nothing about the API (model names, snapshots)."""
    assert isinstance(v, (list, tuple)), type(v).__name__
    kinds = sorted({json.dumps(shape(x), sort_keys=True) for x in v})
    return ["list*", [json.loads(k) for k in kinds]]


def stats_keys(d):
    """Bulk-stats keys with indexes normalised, and their types."""
    return {re.sub(r"\.\d+\.", ".N.", k): shape(x) for k, x in d.items()}


def xml_shape(text):
    """The root element's name and its children's names."""
    root = ET.fromstring(text)
    return [root.tag, sorted({c.tag for c in root})]


def xml_names(text):
    """Every element path of an XML document (sysinfo: which entries, not how many)."""
    root = ET.fromstring(text)
    paths = set()

    def walk(e, p):
        q = f"{p}/{e.tag}" + "".join(f"[@{a}]" for a in sorted(e.attrib))
        paths.add(q)
        for c in e:
            walk(c, q)

    walk(root, "")
    return sorted(paths)


def call(key, f, reduce=shape):
    try:
        out[key] = {"ok": reduce(f())}
    except libvirt.libvirtError as e:
        out[key] = {"err": e.get_error_code(), "msg": e.get_error_message()}


def host_cpu_xml():
    caps = conn.getCapabilities()
    start = caps.index("<cpu>")
    return caps[start:caps.index("</cpu>") + len("</cpu>")]


def records(recs):
    """getAllDomainStats / domainListGetStats: the record list and each key set."""
    assert isinstance(recs, list), type(recs).__name__
    return ["list", [["tuple", [type(d).__name__, stats_keys(s)]] for d, s in recs]]


# The host.
call("node.getInfo", conn.getInfo)
call("node.getCPUStats(all)",
     lambda: conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS))
call("node.getCPUStats(0)", lambda: conn.getCPUStats(0))
call("node.getMemoryStats(all)",
     lambda: conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS))
call("node.getMemoryStats(0)", lambda: conn.getMemoryStats(0))
call("node.getFreeMemory", conn.getFreeMemory)
call("node.getCellsFreeMemory(0,1)", lambda: conn.getCellsFreeMemory(0, 1))
call("node.getCPUMap", conn.getCPUMap)
call("node.getSysinfo", lambda: conn.getSysinfo(0), xml_names)
call("node.getSecurityModel", conn.getSecurityModel)
call("node.getCPUModelNames", lambda: conn.getCPUModelNames("x86_64"), loose)
call("node.baselineHypervisorCPU",
     lambda: conn.baselineHypervisorCPU(None, "x86_64", None, None, [host_cpu_xml()]),
     xml_shape)
call("node.compareHypervisorCPU",
     lambda: conn.compareHypervisorCPU(None, "x86_64", None, None, host_cpu_xml()))
call("node.getCapabilities", conn.getCapabilities, xml_shape)
call("node.getDomainCapabilities", lambda: conn.getDomainCapabilities(), xml_shape)

# The domain.
call("dom.info", dom.info)
call("dom.state", dom.state)
call("dom.vcpus", dom.vcpus)
call("dom.vcpuPinInfo", lambda: dom.vcpuPinInfo(0))
call("dom.emulatorPinInfo", lambda: dom.emulatorPinInfo(0))
call("dom.blockStats", lambda: dom.blockStats(disk))
call("dom.blockStatsFlags", lambda: dom.blockStatsFlags(disk, 0))
call("dom.blockStats(missing)", lambda: dom.blockStats("vdz"))
call("dom.interfaceStats", lambda: dom.interfaceStats(mac))
call("dom.interfaceStats(missing)", lambda: dom.interfaceStats("nosuch0"))
call("dom.memoryStats", dom.memoryStats)
call("dom.getCPUStats(True)", lambda: dom.getCPUStats(True, 0))
call("dom.getCPUStats(False)", lambda: dom.getCPUStats(False, 0))
call("dom.blockInfo", lambda: dom.blockInfo(disk, 0))
call("dom.controlInfo", lambda: dom.controlInfo(0))
call("dom.jobInfo", dom.jobInfo)
call("dom.jobStats", lambda: dom.jobStats(0))
call("dom.getTime", lambda: dom.getTime(0))
call("dom.memoryParameters", lambda: dom.memoryParameters(0))
call("dom.blkioParameters", lambda: dom.blkioParameters(0))
call("dom.numaParameters", lambda: dom.numaParameters(0))
call("dom.schedulerType", dom.schedulerType)
call("dom.schedulerParameters", dom.schedulerParameters)
call("dom.snapshotListNames", lambda: dom.snapshotListNames(0), loose)
call("dom.hasManagedSaveImage", lambda: dom.hasManagedSaveImage(0))
for src in ("LEASE", "ARP", "AGENT"):
    flag = getattr(libvirt, f"VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_{src}")
    call(f"dom.interfaceAddresses({src.lower()})",
         lambda flag=flag: dom.interfaceAddresses(flag))

# Bulk stats: all groups at once, then each group alone.
GROUPS = [g for g in ("STATE", "CPU_TOTAL", "BALLOON", "VCPU", "INTERFACE", "BLOCK",
                      "PERF", "IOTHREAD", "MEMORY", "DIRTYRATE", "VM")
          if hasattr(libvirt, f"VIR_DOMAIN_STATS_{g}")]
call("getAllDomainStats(all)", lambda: conn.getAllDomainStats(0, 0), records)
call("domainListGetStats(all)", lambda: conn.domainListGetStats([dom], 0, 0), records)
for g in GROUPS:
    flag = getattr(libvirt, f"VIR_DOMAIN_STATS_{g}")
    call(f"getAllDomainStats({g.lower()})",
         lambda flag=flag: conn.getAllDomainStats(flag, 0), records)


# Values the definition fixes: the units must agree.
def units():
    s = conn.domainListGetStats([dom], 0, 0)[0][1]
    info = dom.info()
    return {
        "info.maxMem(KiB)": info[1],
        "info.nrVirtCpu": info[3],
        "blockInfo.capacity(bytes)": dom.blockInfo(disk, 0)[0],
        "balloon.maximum(KiB)": s.get("balloon.maximum"),
        "block.0.capacity(bytes)": s.get("block.0.capacity"),
        "vcpu.maximum": s.get("vcpu.maximum"),
        "memoryStats.actual(KiB)": dom.memoryStats().get("actual"),
    }


call("units", units, lambda x: x)

print(json.dumps(out, indent=1, sort_keys=True))
