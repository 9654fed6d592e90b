#!/usr/bin/python3
"""python3-libvirt reads a hypervisor's capabilities: getCapabilities() and
getDomainCapabilities() for the default machine, q35, pc and an unknown one.

Usage: domcaps_script.py URI. Prints one JSON object; the Rust test
(rpc_python.rs) runs it against oxvirtd and against libvirtd's QEMU driver.
"""

import json
import sys
import xml.etree.ElementTree as ET

import libvirt


def enum(node, name):
    if node is None:
        return None
    e = node.find("enum[@name='%s']" % name)
    return None if e is None else [v.text for v in e.findall("value")]


def domcaps(conn, machine):
    root = ET.fromstring(conn.getDomainCapabilities(None, None, machine, None, 0))
    os_ = root.find("os")
    loader = os_.find("loader")
    return {
        "machine": root.findtext("machine"),
        "arch": root.findtext("arch"),
        "os_supported": os_.get("supported"),
        "firmware": enum(os_, "firmware"),
        "loader_supported": loader.get("supported"),
        "loaders": [v.text for v in loader.findall("value")],
        "loader_type": enum(loader, "type"),
        "loader_readonly": enum(loader, "readonly"),
        "loader_secure": enum(loader, "secure"),
        # The elements of <os> but values, in document order: the shape libvirt
        # formats.
        "os_shape": [
            e.tag + ("[%s]" % e.get("name") if e.get("name") else "")
            for e in os_.iter()
            if e.tag != "value"
        ],
    }


def main():
    conn = libvirt.open(sys.argv[1])
    out = {}
    caps = ET.fromstring(conn.getCapabilities())
    arch = caps.find("guest/arch[@name='x86_64']")
    out["caps_machines"] = [
        [m.text, m.get("canonical"), m.get("maxCpus")] for m in arch.findall("machine")
    ]
    out["default"] = domcaps(conn, None)
    out["q35"] = domcaps(conn, "q35")
    out["pc"] = domcaps(conn, "pc")
    try:
        conn.getDomainCapabilities(None, None, "no-such-machine", None, 0)
        out["unknown_machine"] = None
    except libvirt.libvirtError as e:
        out["unknown_machine"] = [e.get_error_code(), e.get_error_message()]
    conn.close()
    print(json.dumps(out))


main()
