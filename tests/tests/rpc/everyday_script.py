#!/usr/bin/python3
"""The everyday python3-libvirt calls (issue 19) against a running domain: what
virt-manager, Cockpit Machines, virt-install and monitoring scripts call.

Usage: everyday_script.py URI DOMAIN_NAME DISK_TARGET TAP_NAME
Prints one JSON object: for each call either {"ok": VALUE} (the value as python3-libvirt
returns it, made JSON-friendly) or {"err": CODE, "msg": MESSAGE}. The caller
(tests/tests/rpc_everyday.rs) checks names, types and the values that must hold.
"""
import json
import sys

import libvirt

uri, name, disk, tap = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
libvirt.registerErrorHandler(lambda *_: None, None)
conn = libvirt.open(uri)
dom = conn.lookupByName(name)
out = {}

HOST_CPU = None


def jsonable(v):
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, libvirt.virDomain):
        return v.name()
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    return repr(v)


def call(key, f):
    try:
        out[key] = {"ok": jsonable(f())}
    except libvirt.libvirtError as e:
        out[key] = {"err": e.get_error_code(), "msg": e.get_error_message()}


def host_cpu_xml():
    caps = conn.getCapabilities()
    start = caps.index("<cpu>")
    return caps[start:caps.index("</cpu>") + len("</cpu>")]


def stats_records(records):
    return [[d.name(), s] for d, s in records]


# Host.
call("getInfo", conn.getInfo)
call("getCPUStats", lambda: conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS))
call("getCPUStats_cpu0", lambda: conn.getCPUStats(0))
call("getMemoryStats", lambda: conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS))
call("getFreeMemory", conn.getFreeMemory)
call("getCellsFreeMemory", lambda: conn.getCellsFreeMemory(0, 1))
call("getCPUMap", conn.getCPUMap)
call("getSysinfo", lambda: conn.getSysinfo(0))
call("getSecurityModel", conn.getSecurityModel)
call("getHostname", conn.getHostname)
call("getMaxVcpus", lambda: conn.getMaxVcpus(None))
call("getCapabilities", lambda: len(conn.getCapabilities()) > 0)
call("getDomainCapabilities", lambda: len(conn.getDomainCapabilities()) > 0)
# CPU models.
call("getCPUModelNames", lambda: conn.getCPUModelNames("x86_64"))
call("baselineCPU", lambda: conn.baselineCPU([host_cpu_xml()]))
call("baselineHypervisorCPU",
     lambda: conn.baselineHypervisorCPU(None, "x86_64", None, "kvm", [host_cpu_xml()]))
call("compareCPU", lambda: conn.compareCPU(host_cpu_xml()))
call("compareHypervisorCPU",
     lambda: conn.compareHypervisorCPU(None, "x86_64", None, "kvm", host_cpu_xml()))
# Listings other front ends call on load.
call("listAllDomains", lambda: [d.name() for d in conn.listAllDomains()])
call("listAllNetworks", lambda: len(conn.listAllNetworks()))
call("listAllStoragePools", lambda: len(conn.listAllStoragePools()))
call("listAllNodeDevices", lambda: len(conn.listAllDevices()))
call("listAllSecrets", lambda: len(conn.listAllSecrets()))
call("listAllInterfaces", lambda: len(conn.listAllInterfaces()))
# Domain.
call("info", dom.info)
call("state", dom.state)
call("maxMemory", dom.maxMemory)
call("maxVcpus", dom.maxVcpus)
call("vcpusFlags", lambda: dom.vcpusFlags(0))
call("vcpus", dom.vcpus)
call("vcpuPinInfo", lambda: dom.vcpuPinInfo(0))
# Pin vCPU 0 and the emulator threads to host CPU 0, read back, then undo.
NCPUS = conn.getCPUMap()[0]
ONLY0 = tuple([True] + [False] * (NCPUS - 1))
ALLC = tuple([True] * NCPUS)
call("pinVcpuFlags", lambda: dom.pinVcpuFlags(0, ONLY0, libvirt.VIR_DOMAIN_AFFECT_LIVE))
call("vcpuPinInfo_pinned", lambda: dom.vcpuPinInfo(0))
call("pinVcpuFlags_config", lambda: dom.pinVcpuFlags(0, ONLY0, libvirt.VIR_DOMAIN_AFFECT_CONFIG))
call("pinVcpu_back", lambda: dom.pinVcpu(0, ALLC))
call("emulatorPinInfo", lambda: dom.emulatorPinInfo(0))
call("pinEmulator", lambda: dom.pinEmulator(ONLY0, libvirt.VIR_DOMAIN_AFFECT_LIVE))
call("emulatorPinInfo_pinned", lambda: dom.emulatorPinInfo(0))
call("pinEmulator_back", lambda: dom.pinEmulator(ALLC, 0))
call("blockStats", lambda: dom.blockStats(disk))
call("blockStatsFlags", lambda: dom.blockStatsFlags(disk, 0))
call("blockInfo", lambda: dom.blockInfo(disk, 0))
call("interfaceStats", lambda: dom.interfaceStats(tap))
call("interfaceStats_missing", lambda: dom.interfaceStats("nosuchtap"))
call("blockStats_missing", lambda: dom.blockStats("vdz"))
call("memoryStats", dom.memoryStats)
call("getCPUStats_total", lambda: dom.getCPUStats(True, 0))
call("getCPUStats_percpu", lambda: dom.getCPUStats(False, 0))
call("controlInfo", lambda: dom.controlInfo(0))
call("jobInfo", dom.jobInfo)
call("jobStats", lambda: dom.jobStats(0))
call("getTime", lambda: dom.getTime(0))
call("memoryParameters", lambda: dom.memoryParameters(0))
call("blkioParameters", lambda: dom.blkioParameters(0))
call("numaParameters", lambda: dom.numaParameters(0))
call("schedulerParameters", dom.schedulerParameters)
call("interfaceAddresses", lambda: dom.interfaceAddresses(0))
call("listAllSnapshots", lambda: len(dom.listAllSnapshots(0)))
call("hasManagedSaveImage", lambda: dom.hasManagedSaveImage(0))
call("securityLabel", dom.securityLabel)
call("getAllDomainStats", lambda: stats_records(conn.getAllDomainStats(0, 0)))
call("domainListGetStats", lambda: stats_records(conn.domainListGetStats([dom], 0, 0)))

print(json.dumps(out, indent=1, sort_keys=True))
