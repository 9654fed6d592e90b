"""Drives a QMP server with the qemu.qmp library (a real client, as scripts use it).

Usage: qmp_driver.py SOCKET. Reads one JSON request per stdin line, answers one JSON
line on stdout:
  {"execute": NAME, "arguments": {...}}  -> {"return": VALUE} or the raw error reply
  {"event": NAME, "timeout": SECONDS}    -> {"event": {...}} (the first event of that
                                            name, earlier others are kept in order)
  {"disconnect": true}                   -> {"disconnected": true}
The first line out is {"greeting": {...}}.
"""
import asyncio
import json
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
        elif "disconnect" in req:
            await qmp.disconnect()
            out({"disconnected": True})
            break


asyncio.run(main(sys.argv[1]))
