"""Drives a QMP server with the qemu.qmp library (a real client, as scripts use it).

Usage: qmp_driver.py SOCKET. Reads one JSON request per stdin line, answers one JSON
line on stdout:
  {"execute": NAME, "arguments": {...}}  -> {"return": VALUE} or the raw error reply
  {"event": NAME, "timeout": SECONDS}    -> {"event": {...}} (the first event of that
                                            name, earlier others are kept in order)
  {"disconnect": true}                   -> {"disconnected": true}
  {"pass_socket": NAME}                  -> {"passed": NAME}: one end of a new socket
                                            pair goes to the server (send_fd_scm, for
                                            getfd), the driver keeps the other as NAME
  {"pass_file": PATH}                    -> {"passed": PATH}: PATH opened for writing
                                            (created 0600, truncated) goes to the
                                            server for the next getfd, as libvirt
                                            passes a save file
  {"sock_send": NAME, "hex": HEX}        -> {"sent": N}
  {"sock_recv": NAME, "n": N, "timeout": SECONDS}
                                         -> {"hex": HEX} (N bytes, fewer at EOF)
The first line out is {"greeting": {...}}.
"""
import asyncio
import json
import os
import socket
import sys

from qemu.qmp import EventListener, ExecuteError, QMPClient


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(path):
    qmp = QMPClient("oxvirt-test")
    listener = EventListener()
    qmp.register_listener(listener)
    await qmp.connect(path)
    out({"greeting": qmp.greeting._asdict()})
    seen = []
    socks = {}
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        req = json.loads(line)
        if "execute" in req:
            try:
                ret = await qmp.execute(req["execute"], req.get("arguments"))
                out({"return": ret})
            except ExecuteError as e:
                out(dict(e.received))
        elif "event" in req:
            want = req["event"]
            found = next((e for e in seen if e["event"] == want), None)
            try:
                while found is None:
                    ev = await asyncio.wait_for(listener.get(), req.get("timeout", 30))
                    ev = dict(ev)
                    if ev["event"] == want:
                        found = ev
                    else:
                        seen.append(ev)
                if found in seen:
                    seen.remove(found)
                out({"event": found})
            except asyncio.TimeoutError:
                out({"timeout": want, "other_events": seen})
        elif "pass_socket" in req:
            ours, theirs = socket.socketpair()
            qmp.send_fd_scm(theirs.fileno())
            theirs.close()
            socks[req["pass_socket"]] = ours
            out({"passed": req["pass_socket"]})
        elif "pass_file" in req:
            fd = os.open(req["pass_file"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            qmp.send_fd_scm(fd)
            os.close(fd)
            out({"passed": req["pass_file"]})
        elif "sock_send" in req:
            s = socks[req["sock_send"]]
            s.sendall(bytes.fromhex(req["hex"]))
            out({"sent": len(req["hex"]) // 2})
        elif "sock_recv" in req:
            s = socks[req["sock_recv"]]
            s.settimeout(req.get("timeout", 30))
            got = b""
            try:
                while len(got) < req["n"]:
                    chunk = s.recv(req["n"] - len(got))
                    if not chunk:
                        break
                    got += chunk
            except socket.timeout:
                pass
            out({"hex": got.hex()})
        elif "disconnect" in req:
            await qmp.disconnect()
            out({"disconnected": True})
            break


asyncio.run(main(sys.argv[1]))
