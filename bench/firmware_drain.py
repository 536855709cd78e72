"""How fast an evaluator empties its outbox after an outage, against the
plain way, both measured in this run on this machine:

  umqtt.simple    micropython-lib's blocking client (build/mplib), QoS 1,
                  one publish() after another: each waits for its PUBACK;
  evaluator       the real firmware (tools/vdevice.py, simulated board,
                  littlefs image) booting with N events queued on flash:
                  pipelined QoS 1 over TCP_NODELAY; "delivered" when the
                  agent stand-in has all N, "acked" when the agent's protocol
                  acks have emptied the outbox on flash.

Both run under the MicroPython unix port against a private Mosquitto. The
baseline publishes fewer events (it is slow); its rate is what compares.
Also reports the evaluator's heap in use (after a collection) while draining,
and over a run of sessions at -X heapsize=64k.

    python -m bench.firmware_drain [--events 10000] [--baseline 400] [--heap 1m] [--sessions 100]
"""
import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from protocol import LEVELS  # noqa: E402
from tools.procs import MICROPYTHON, Mosquitto, micropython_path, wait_for  # noqa: E402
from tools.vdevice import Acker, VirtualDevice  # noqa: E402

HALL = "bench-hall"
DEV = "ev-bench"

# Runs on the device's flash before it boots: the events an outage left behind.
_PREFILL = """
import board_sim, outbox, protocol
from binascii import unhexlify
board_sim.mount(%(image)r)
ob = outbox.Outbox("/flash/outbox", %(seg)d, %(maxseg)d)
key = unhexlify(%(key)r)
levels = %(levels)r
for i in range(%(n)d):
    ev = {"v": 1, "device": %(dev)r, "seq": 0, "kind": "rating", "t": 1764000000000 + i * 1000,
          "level": levels[i %% 5], "channel": "window", "session": "%(dev)s-0-%%d" %% i, "window": "A01"}
    def build(seq):
        ev["seq"] = seq
        return protocol.encode(ev, key)
    ob.append(build)
ob.close()
print(ob.depth())
"""

_BASELINE = """
import time
from umqtt.simple import MQTTClient
payloads = open(%(path)r, "rb").read().split(b"\\n")
c = MQTTClient("baseline", "127.0.0.1", %(port)d)
c.connect()
t0 = time.ticks_ms()
for p in payloads:
    c.publish(%(topic)r, p, qos=1)
print(time.ticks_diff(time.ticks_ms(), t0))
c.disconnect()
"""


def _mp(code, timeout, heap=None):
    argv = [MICROPYTHON] + (["-X", "heapsize=" + heap] if heap else []) + ["-c", code]
    env = dict(os.environ, MICROPYPATH=micropython_path(".frozen"))
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit("micropython failed: " + (out.stdout + out.stderr)[-800:])
    return out.stdout.strip()


def baseline(work, broker, key, n):
    import protocol
    from protocol import topics
    path = os.path.join(work, "baseline.bin")
    with open(path, "wb") as f:
        f.write(b"\n".join(protocol.encode(
            {"v": 1, "device": "ev-base", "seq": i + 1, "kind": "rating", "t": 1764000000000,
             "level": LEVELS[i % 5], "channel": "window", "session": "b-%d" % i}, key)
            for i in range(n)))
    ms = int(_mp(_BASELINE % {"path": path, "port": broker.port,
                              "topic": topics.topic(HALL, "ev-base", topics.EVENTS)}, 3600))
    return n, ms / 1000.0


def evaluator(work, broker, key, n, heap):
    per_seg = 4096 // 300
    maxseg = n // per_seg + 64
    blocks = maxseg + 256
    vd = VirtualDevice(os.path.join(work, DEV), HALL, DEV, key, broker.port, heapsize=heap,
                       flash_blocks=blocks, site={"max_segments": maxseg})
    vd.provision()
    t = time.monotonic()
    depth = int(_mp(_PREFILL % {"image": vd.image, "seg": 4096, "maxseg": maxseg, "key": key.hex(),
                                "levels": LEVELS, "n": n, "dev": DEV}, 3600))
    prefill_s = time.monotonic() - t
    assert depth == n, depth
    acker = Acker(broker.port, HALL, {DEV: key}, {"*": {"window": "A01", "prompt_s": 30}},
                  ack_ms=100).start()
    peak = 0
    try:
        t0 = time.monotonic()
        vd.start()
        delivered = None
        while True:
            st = vd.stats()
            peak = max(peak, st.get("heap_used", 0))
            got = sum(1 for k in list(acker.events) if k[1] <= n)
            if delivered is None and got >= n:
                delivered = time.monotonic() - t0
            if st["outbox"] == 0 and delivered is not None:
                acked = time.monotonic() - t0
                break
            if time.monotonic() - t0 > 1800:
                raise SystemExit("drain did not finish: %r" % st)
            time.sleep(0.2)
        dup, conflicts = acker.duplicates, acker.conflicts
        ratings = len(acker.of_kind("rating"))
    finally:
        vd.stop()
        acker.stop()
    rom = os.path.getsize(vd.rom)
    from tools.vdevice import rom_qstr_bytes
    return {"prefill_s": prefill_s, "delivered_s": delivered, "acked_s": acked, "ratings": ratings,
            "duplicates": dup, "conflicts": conflicts,
            "heap_peak": peak - rom - rom_qstr_bytes(vd.rom)}


def lifecycle(work, broker, key, n, heap="64k"):
    """n sessions at the small heap; heap in use after each (after a GC)."""
    vd = VirtualDevice(os.path.join(work, "ev-life"), HALL, "ev-life", key, broker.port,
                       heapsize=heap, site={"long_ms": 150})
    acker = Acker(broker.port, HALL, {"ev-life": key}, {"*": {"window": "A02", "staff_no": "7", "prompt_s": 5}}).start()
    from tools.vdevice import rom_qstr_bytes
    from bench.firmware_heap import one_session
    used, least = 0, None
    try:
        vd.start()
        for i in range(n):
            one_session(vd, i)
            st = vd.stats()
            used = max(used, st["heap_used"])
            least = st["heap"] if least is None else min(least, st["heap"])
        thanks = vd.stats()["thanks"]
    finally:
        vd.stop()
        acker.stop()
    return thanks, used - os.path.getsize(vd.rom) - rom_qstr_bytes(vd.rom), least


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.firmware_drain", description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=10000, help="events queued on the device (default 10000)")
    ap.add_argument("--baseline", type=int, default=400, help="events for the umqtt.simple loop (default 400)")
    ap.add_argument("--heap", default="1m",
                    help="-X heapsize for the device (default 1m: the outbox keeps a small list per "
                         "4 KiB segment, and 10,000 events are ~700 segments)")
    ap.add_argument("--sessions", type=int, default=100,
                    help="sessions run at -X heapsize=64k to report the heap (default 100)")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench-fwdrain-")
    key = secrets.token_bytes(32)
    broker = Mosquitto(os.path.join(work, "broker")).start()
    try:
        bn, bs = baseline(work, broker, key, args.baseline)
        ev = evaluator(work, broker, key, args.events, args.heap)
        life = lifecycle(work, broker, key, args.sessions) if args.sessions else None
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    n = args.events
    rows = [
        ("umqtt.simple QoS 1 loop (PUBACK each)", bn, bs, bn / bs),
        ("evaluator: delivered to agent", n, ev["delivered_s"], n / ev["delivered_s"]),
        ("evaluator: acked, off flash", n, ev["acked_s"], n / ev["acked_s"]),
    ]
    print("%-40s %8s %9s %10s" % ("drain after an outage", "events", "seconds", "events/s"))
    for name, k, s, r in rows:
        print("%-40s %8d %9.2f %10.1f" % (name, k, s, r))
    print("speed-up (acked vs umqtt.simple): %.1fx; umqtt.simple would need %.0f s for %d events"
          % ((n / ev["acked_s"]) / (bn / bs), n / (bn / bs), n))
    print("prefill of %d events on flash: %.1f s; ratings stored %d, duplicates absorbed %d, conflicts %d"
          % (n, ev["prefill_s"], ev["ratings"], ev["duplicates"], ev["conflicts"]))
    print("device heap in use while draining (after gc, ROM image excluded): peak %d bytes at -X heapsize=%s"
          % (ev["heap_peak"], args.heap))
    if life:
        print("64 KiB heap: %d sessions, %d thanked; firmware heap in use (after gc) peak %d bytes, "
              "least free %d bytes" % (args.sessions, life[0], life[1], life[2]))
    return 0 if ev["ratings"] == n and ev["conflicts"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
