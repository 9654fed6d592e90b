"""virt-manager's local console path with python3-libvirt: openGraphicsFD (and
openGraphics with our own socket), an RFB handshake on what comes back, the graphics
event callback; and libvirt-dbus's OpenGraphicsFD with dbus-python.

Usage: graphics_script.py URI DOMAIN [DBUS_ADDRESS]. Prints one line per finding:
  HANDSHAKE <how> types=<security types> size=<w>x<h>|-
  ERROR <how> <libvirt message>
  GRAPHICS <phase> <local family> <local node> <local service> <remote family> <auth> <subject>
  DONE
"""
import socket
import struct
import sys
import threading
import time

import libvirt


_OUT = threading.Lock()


def out(*words):
    # The event loop thread prints too: one whole line at a time (print writes the
    # words and the newline separately, and CI saw two lines interleaved).
    line = " ".join(str(w) for w in words) + "\n"
    with _OUT:
        sys.stdout.write(line)
        sys.stdout.flush()


def handshake(sock, how, password_expected):
    """RFB 3.8 up to ServerInit when no password is asked."""
    sock.settimeout(30)

    def read(n):
        got = b""
        while len(got) < n:
            chunk = sock.recv(n - len(got))
            if not chunk:
                raise EOFError(f"{how}: closed after {got!r}")
            got += chunk
        return got

    greeting = read(12)
    assert greeting == b"RFB 003.008\n", greeting
    sock.sendall(b"RFB 003.008\n")
    n = read(1)[0]
    types = list(read(n))
    size = "-"
    if types == [1]:
        sock.sendall(b"\x01")
        assert read(4) == b"\0\0\0\0"
        sock.sendall(b"\x01")
        init = read(24)
        w, h = struct.unpack(">HH", init[:4])
        read(struct.unpack(">I", init[20:24])[0])
        size = f"{w}x{h}"
    out("HANDSHAKE", how, "types=" + ",".join(map(str, types)), "size=" + size)
    sock.close()


def main(uri, name, bus=None):
    libvirt.virEventRegisterDefaultImpl()
    conn = libvirt.open(uri)
    dom = conn.lookupByName(name)
    events = []

    def on_graphics(conn, dom, phase, local, remote, auth, subject, opaque):
        line = ["GRAPHICS", str(phase), str(local["family"]), local["node"] or "''",
                local["service"] or "''", str(remote["family"]), auth or "''",
                ",".join(f"{t}={n}" for t, n in subject) or "-"]
        events.append(line)
        out(*line)

    conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_GRAPHICS, on_graphics, None)

    def loop():
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=loop, daemon=True).start()

    fd = dom.openGraphicsFD(0, libvirt.VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH)
    handshake(socket.socket(fileno=fd), "fd-skipauth", False)
    fd = dom.openGraphicsFD(0, 0)
    handshake(socket.socket(fileno=fd), "fd", True)
    ours, theirs = socket.socketpair()
    dom.openGraphics(0, theirs.fileno(), libvirt.VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH)
    theirs.close()
    handshake(ours, "own-socket", False)
    for how, call in [("idx1", lambda: dom.openGraphicsFD(1, 0)),
                      ("flags", lambda: dom.openGraphicsFD(0, 4))]:
        try:
            call()
            out("ERROR", how, "none")
        except libvirt.libvirtError as e:
            out("ERROR", how, e.get_error_message())

    if bus:
        import dbus
        b = dbus.bus.BusConnection(bus)
        connect = b.get_object("org.libvirt", "/org/libvirt/QEMU")
        path = connect.DomainLookupByName(name, dbus_interface="org.libvirt.Connect")
        d = b.get_object("org.libvirt", path)
        fd = d.OpenGraphicsFD(0, 1, dbus_interface="org.libvirt.Domain")
        handshake(socket.socket(fileno=fd.take()), "dbus", False)

    # Three sockets went through connect, initialize and disconnect; the password
    # one stopped before initialize.
    deadline = time.time() + 60
    want = 3 + 2 + 3 + (3 if bus else 0)
    while len(events) < want and time.time() < deadline:
        time.sleep(0.1)
    out("DONE", len(events))


main(*sys.argv[1:])
