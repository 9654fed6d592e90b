#!/usr/bin/python3
"""python3-libvirt storage walk-through, run against oxvirtd and against a private
libvirtd (qemu:///session, whose storage driver is libvirt's own) by
tests/tests/rpc_python_storage.rs; prints one JSON object of what it saw, with paths
made relative to the pool directory so both runs compare.

Usage: storage_script.py URI POOL_DIR
"""
import json
import os
import sys
import threading
import time

import libvirt

uri, pool_dir = sys.argv[1], sys.argv[2]
out = {}
events = []


def err_code(fn):
    """libvirt's error code and message for a call that must fail."""
    try:
        fn()
    except libvirt.libvirtError as e:
        return [e.get_error_code(), e.get_error_message()]
    return [0, ""]


libvirt.virEventRegisterDefaultImpl()
libvirt.registerErrorHandler(lambda *_: None, None)


def loop():
    while True:
        libvirt.virEventRunDefaultImpl()


threading.Thread(target=loop, daemon=True).start()
conn = libvirt.open(uri)


def on_lifecycle(_conn, pool, event, detail, _opaque):
    if pool.name() == "pypool":
        events.append(["lifecycle", event, detail])


def on_refresh(_conn, pool, _opaque):
    if pool.name() == "pypool":
        events.append(["refresh"])


cb1 = conn.storagePoolEventRegisterAny(None, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE,
                                       on_lifecycle, None)
cb2 = conn.storagePoolEventRegisterAny(None, libvirt.VIR_STORAGE_POOL_EVENT_ID_REFRESH,
                                       on_refresh, None)

pool = conn.storagePoolDefineXML(
    f"<pool type='dir'><name>pypool</name><target><path>{pool_dir}</path></target></pool>", 0)
out["defined_active"] = pool.isActive()
out["defined_persistent"] = pool.isPersistent()
pool.create(0)
pool.setAutostart(1)
out["autostart"] = pool.autostart()
info = pool.info()
out["pool_state"] = info[0]
out["pool_sizes_positive"] = info[1] > 0 and info[3] > 0
out["pool_name_by_uuid"] = conn.storagePoolLookupByUUIDString(pool.UUIDString()).name()
out["pool_in_list"] = "pypool" in [p.name() for p in conn.listAllStoragePools(0)]
out["pool_in_active_list"] = "pypool" in conn.listStoragePools()

vq = pool.createXML("<volume><name>a.qcow2</name><capacity unit='MiB'>16</capacity>"
                    "<target><format type='qcow2'/></target></volume>", 0)
vr = pool.createXML("<volume><name>b.img</name><capacity unit='MiB'>2</capacity></volume>", 0)
out["qcow2_info"] = list(vq.info()[:2])
out["raw_info"] = list(vr.info())
out["key_is_path"] = vr.key() == vr.path()
out["path_rel"] = os.path.relpath(vr.path(), pool_dir)
out["lookup_by_path"] = conn.storageVolLookupByPath(vr.path()).name()
out["lookup_by_key"] = conn.storageVolLookupByKey(vr.key()).name()
out["lookup_by_name"] = pool.storageVolLookupByName("a.qcow2").name()
out["pool_by_volume"] = vr.storagePoolLookupByVolume().name()
out["volumes"] = sorted(v.name() for v in pool.listAllVolumes(0))
out["volume_names"] = sorted(pool.listVolumes())
out["num_volumes"] = pool.numOfVolumes()

# Upload 1.5 MiB at offset 4096, then download all of it.
data = bytes((i * 7 + (i >> 9)) & 0xFF for i in range(1536 * 1024))
st = conn.newStream(0)
vr.upload(st, 4096, len(data), 0)
st.sendAll(lambda _s, n, buf: buf.pop(0) if buf else b"", [data[i:i + 65536] for i in range(0, len(data), 65536)])
st.finish()
st = conn.newStream(0)
vr.download(st, 0, 0, 0)
got = []
st.recvAll(lambda _s, chunk, acc: acc.append(chunk), got)
st.finish()
got = b"".join(got)
out["download_len"] = len(got)
out["download_matches"] = got[4096:4096 + len(data)] == data and got[:4096] == bytes(4096)

vr.resize(4 << 20, 0)
out["resized"] = vr.info()[1]
out["shrink_refused"] = err_code(lambda: vr.resize(1 << 20, 0))
clone = pool.createXMLFrom("<volume><name>c.img</name><capacity>0</capacity></volume>", vr, 0)
out["clone_info"] = clone.info()[1]
vxml = clone.XMLDesc(0)
out["clone_xml_has_format"] = "<format type='raw'/>" in vxml

# libvirt's errors.
out["missing_vol"] = err_code(lambda: pool.storageVolLookupByName("nope"))
out["missing_pool"] = err_code(lambda: conn.storagePoolLookupByName("nope"))
out["missing_path"] = err_code(lambda: conn.storageVolLookupByPath("/nonexistent/x"))
out["duplicate_vol"] = err_code(
    lambda: pool.createXML("<volume><name>b.img</name><capacity>1</capacity></volume>", 0))
out["bad_capacity"] = err_code(
    lambda: pool.createXML("<volume><name>x</name><capacity>1x</capacity></volume>", 0))
out["slash_name"] = err_code(
    lambda: pool.createXML("<volume><name>a/b</name><capacity>1</capacity></volume>", 0))
out["undefine_active"] = err_code(lambda: pool.undefine())
out["files_after_errors"] = sorted(os.listdir(pool_dir))

for v in (vq, vr, clone):
    v.delete(0)
out["files_after_delete"] = sorted(os.listdir(pool_dir))
pool.refresh(0)
pool.destroy()
out["vol_on_inactive_pool"] = err_code(lambda: pool.storageVolLookupByName("a.qcow2"))
pool.undefine()
deadline = time.time() + 10
while time.time() < deadline and ["lifecycle", 1, 0] not in events:
    time.sleep(0.05)
out["events"] = events
conn.storagePoolEventDeregisterAny(cb1)
conn.storagePoolEventDeregisterAny(cb2)
conn.close()
print(json.dumps(out, sort_keys=True))
