"""Over-the-air update, the device's side (protocol SPEC 'OTA').

Imported only at a boot that finds `ota.json` on flash: an offer the app
kept there (and restarted for: the heap is whole at boot), or an update
under way. Never part of a plain boot.

    ota.resume(app, job)  # at boot, ota.json on flash: an offer, or an update under way
    ota.take(app, msg)    # then an agent message naming `ota`: an offer, or a reply to us

The agent offers a manifest sealed with this device's key (a `cmd`, so a
manifest sealed for another device is refused like any forged command):
{"cmd": "ota", "ota": version, "files": [["app.rom", size, sha256 hex]],
"c": chunk bytes, "h": health seconds}. Then, one step at a time, each on
flash before the next:

  get     chunk i asked with the `ota_chunk` request (one at a time: the
          reply is the flow control), appended to the spare image file and
          closed (littlefs commits it), so a lost link or a reboot resumes at
          the file's size; when whole, its sha256 checked against the manifest
  switch  the previous image recorded, `app` names the new one on trial
          (slot.py), the board resets
  trial   the new app reports healthy (the `ota` request, after a status
          event and its self-test) and keeps the image; no healthy report
          within `h` seconds, or an app that never gets that far (slot.py
          counts its boots), and the previous image runs again and reports
          `rolled_back`

`ota.json` holds the offer and the step, written whole (rename: atomic); empty,
it says an update's boot got no link and gave the update up (app.py refuses
the offer once when it comes again).
The outbox and site.json are never touched.
"""
import gc
import os
import time
from binascii import a2b_base64

import slot
import tasks
from app import read_json, write

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests)
    const = int

_WAIT_MS = const(3000)       # a reply's wait; then the request goes again
_IDLE_MS = const(1000)       # no link: look again

_BOOT_MS = time.ticks_ms()    # this boot's start (ota.py loads at boot only)
_job = None          # the offer under way (what ota.json holds)
_reply = None        # the last reply naming `ota`
_running = False     # the task is on


def _path(app):
    return app.root + "/ota.json"


def _save(app):
    import json
    write(_path(app), json.dumps(_job).encode())


def _drop(app):
    global _job
    _job = None
    _remove(_path(app))


def _cut(at):
    # Tests: the simulator's power cut at this step (QL_CUT, tools/vdevice.py:
    # the runner SIGKILLs a device that says so). A board has no getenv.
    if getattr(os, "getenv", None) and os.getenv("QL_CUT") == at:
        print("ota: cut at", at)
        while True:
            pass


def _check(msg):
    # The manifest this device can apply: one image, named as the slots are.
    f = msg.get("files")
    if type(f) is not list or len(f) != 1 or type(f[0]) is not list or len(f[0]) != 3:
        return None
    name, size, sha = f[0]
    c, h = msg.get("c"), msg.get("h")
    if name != "app.rom" or type(size) is not int or size <= 0 or type(sha) is not str or len(sha) != 64 \
            or type(c) is not int or not 0 < c <= 512 or type(h) is not int or h <= 0:
        return None
    return {"v": msg["ota"], "z": size, "sha": sha, "c": c, "h": h, "s": "get"}


def take(app, msg):
    """An agent message naming `ota` (App.on_cmd): an offer or a reply."""
    global _reply, _job
    if msg.get("cmd") == "reply":
        _reply = msg
        return
    if msg.get("cmd") != "ota" or type(msg.get("ota")) is not str:
        return
    if _job is not None and _job["v"] == msg["ota"]:
        return                  # under way already (a re-offer after a reconnect)
    if _job is not None and _job["s"] != "get":
        return                  # switching or on trial: one update at a time
    job = _check(msg)
    if job is None:
        app.log("ota", msg["ota"])
        _job = {"v": msg["ota"], "s": "bad"}
    elif msg["ota"] == app.FW:
        job["s"] = "trial"      # runs it already: say so (a report the agent missed)
        _job = job
    else:
        job["i"] = slot.spare(app.root)
        _remove(app.root + "/" + job["i"])
        _job = job
        _save(app)
    _start(app)


def resume(app, job):
    """At boot: ota.json holds an offer (kept by App.on_cmd) or an update under way."""
    global _job
    if job.get("cmd") == "ota":
        take(app, job)
        return
    _job = job
    _start(app)


def _start(app):
    global _running
    if not _running:
        _running = True
        tasks.create_task(_run(app))


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


async def _ask(app, msg):
    """A request and its reply (None: no link, or none came in time)."""
    global _reply
    _reply = None
    n = app.uplink.ask(msg)
    if n is None:
        await tasks.sleep_ms(_IDLE_MS)
        return None
    t = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t) < _WAIT_MS:
        await tasks.sleep_ms(10)
        r = _reply
        if r is not None and r.get("re") == n:
            return r
    return None


async def _report(app, state, why=None):
    """Tell the agent where this device stands; a few tries, then on without."""
    msg = {"op": "ota", "ota": _job["v"], "state": state, "fw": app.FW}
    if why:
        msg["detail"] = why
    for _ in range(5):
        r = await _ask(app, msg)
        if r is not None:
            return r
    return None


async def _run(app):
    global _running
    try:
        while _job is not None:
            s = _job["s"]
            try:
                if s == "get":
                    await _get(app)
                elif s == "switch":
                    await _switch(app)
                elif s == "trial":
                    await _trial(app)
                else:
                    await _report(app, "refused", s)
                    _drop(app)
            except (OSError, MemoryError, ValueError, KeyError, TypeError) as e:
                # A full heap, a flash hiccup, a reply it cannot read: the step
                # again from its record (a task that ended here left the update
                # stalled for good).
                app.log("ota", e)
                await tasks.sleep_ms(_IDLE_MS)
    finally:
        _running = False


async def _get(app):
    # The chunks, one request at a time, in this one frame: a coroutine
    # called per chunk was a frame allocated per chunk, and at 48 KiB the
    # heap left no room to read a reply (firmware/README.md, Memory).
    global _reply
    job, root = _job, app.root
    path = root + "/" + job["i"]
    size, c = job["z"], job["c"]
    try:
        have = os.stat(path)[6]
    except OSError:
        have = 0
    if have % c and have != size or have > size:
        _remove(path)           # not what this writes: start the file again
        have = 0
    linked = False
    while have < size:
        _reply = None
        d = getattr(app, "desk", None)
        if d is not None and d.state:
            # A citizen first: no chunk while a service or its prompt is open.
            # At 48 KiB a reply, an event and a redraw at once did not fit.
            await tasks.sleep_ms(_IDLE_MS)
            continue
        d = None
        gc.collect()
        n = app.uplink.ask({"op": "ota_chunk", "ota": job["v"], "i": have // c})
        if n is None:
            if not linked and time.ticks_diff(time.ticks_ms(), _BOOT_MS) > job["h"] * 1000:
                # No link at all since this boot, for the health time: an
                # update's boot may lack the heap a connect needs. Back to the
                # plain app, which says so when the offer comes again (app.py).
                write(_path(app), b"")
                app.board.mark_intentional()
                app.board.reset()
            await tasks.sleep_ms(_IDLE_MS)
            continue
        linked = True
        t = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), t) < _WAIT_MS and (_reply is None or _reply.get("re") != n):
            await tasks.sleep_ms(10)
        r, _reply = _reply, None
        if r is None or r.get("re") != n:
            continue            # no reply in time (a lost link, a reply lost): ask again
        if r.get("error"):
            job["s"] = r["error"]       # withdrawn, or the agent knows no such bundle
            return
        data = a2b_base64(r["data"])
        r = None
        if len(data) != min(c, size - have):
            continue
        with open(path, "ab") as f:
            f.write(data)
        have += len(data)
        data = None
        if have * 2 >= size:
            _cut("chunk")
    if not _sha_ok(path, job["sha"]):
        _remove(path)
        job["s"] = "bad_sha"
        return
    _cut("staged")
    # Staged and checked: the switch, recorded before it is made.
    a = slot.read(root)
    job["p"] = a[0] if a else "-"
    job["s"] = "switch"
    _save(app)


def _sha_ok(path, want):
    import hashlib
    from binascii import hexlify
    h = hashlib.sha256()
    buf = bytearray(256)
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(memoryview(buf)[:n])
    return hexlify(h.digest()).decode() == want


async def _switch(app):
    job = _job
    if job["v"] != app.FW:
        await _report(app, "switching")
        _cut("switch")
        slot.write(app.root, job["i"], job["p"], 1)
        _cut("switched")
    job["s"] = "trial"
    job.pop("p", None)
    _save(app)
    if job["v"] != app.FW:
        _cut("trial")
        app.board.mark_intentional()
        app.board.reset()


async def _trial(app):
    if _job["v"] != app.FW:
        # The previous app runs: the new one never said it was healthy.
        await _report(app, "rolled_back")
        _drop(app)
        return
    # The new app: healthy once it is ready (the agent's live config), its
    # status is on flash, and the self-test passes; within h seconds.
    until = time.ticks_add(time.ticks_ms(), _job["h"] * 1000)
    while time.ticks_diff(until, time.ticks_ms()) > 0:
        if app.ready and app.uplink.connected:
            app.status()
            why = _selftest(app)
            if why is None:
                r = await _ask(app, {"op": "ota", "ota": _job["v"], "state": "healthy", "fw": app.FW,
                                     "outbox": app.outbox.depth(), "heap": gc.mem_free()})
                if r is not None and not r.get("error"):
                    _cut("healthy")
                    slot.keep(app.root)
                    _cut("kept")
                    _drop(app)
                    return
        await tasks.sleep_ms(_IDLE_MS)
    slot.back(app.root)
    app.board.mark_intentional()
    app.board.reset()


def _selftest(app):
    """None when the app works: its flash takes a write, its outbox reads, the
    uplink drains it; else what failed."""
    try:
        write(app.root + "/selftest", b"ok")
        os.remove(app.root + "/selftest")
    except OSError:
        return "flash"
    if app.outbox.depth() and not app.uplink.acks:
        return "uplink"
    return None
