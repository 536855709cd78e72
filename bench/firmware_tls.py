"""What TLS on the MQTT link costs the evaluator's heap, measured in this run:
the same sessions on the real firmware (MicroPython unix port, simulated
board) over plain MQTT and over TLS to a private Mosquitto, at the heap
budgets given; and the TLS objects alone (context with the hall CA, one
session) in a bare interpreter.

The unix port's mbedTLS takes its record buffers (16 KiB in, 4 KiB out) and
handshake memory from the C heap, as an ESP32's takes them from the IDF heap:
what this measures is the MicroPython heap's share (hardware/README.md).

    python -m bench.firmware_tls [--heaps 64k,68k] [--sessions 40]
"""
import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "tests"))

from protocol import LEVELS  # noqa: E402
from tools.procs import MICROPYTHON, Mosquitto, free_port  # noqa: E402
from tools.vdevice import Acker, DeviceError, VirtualDevice, rom_qstr_bytes  # noqa: E402

HALL = "bench-hall"

# Runs in a bare interpreter: the heap the TLS objects keep, after a collection.
_OBJECTS = """
import gc, socket, ssl
def used():
    gc.collect()
    return gc.mem_alloc()
ca = open(%(ca)r, "rb").read()
base = used()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_verify_locations(cadata=ca)
context = used() - base
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", %(port)d)[0][-1])
s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
s.write(b"\\x10\\x0c\\x00\\x04MQTT\\x04\\x02\\x00\\x1e\\x00\\x00")
assert s.read(4) == b" \\x02\\x00\\x00"
print(len(ca), context, used() - base)
"""


def certs(work):
    from test_agent_broker import make_certs
    ca = make_certs(work)
    subprocess.run(["openssl", "x509", "-in", ca, "-outform", "der", "-out", work + "/ca.der"], check=True)
    return work + "/ca.der"


def sessions(work, name, plain, tls, ca, heap, n):
    """n sessions at -X heapsize=heap; (sessions run, thanked, refused, firmware heap peak,
    least free, what stopped it early)."""
    key = secrets.token_bytes(32)
    site = {"long_ms": 150}
    if tls:
        site.update(tls_ca="ca.der", tls_name="127.0.0.1")
    vd = VirtualDevice(os.path.join(work, name), HALL, name, key, tls or plain, heapsize=heap,
                       site=site, files={"ca.der": ca} if tls else None)
    acker = Acker(plain, HALL, {name: key}, {"*": {"window": "A02", "staff_no": "7", "prompt_s": 5}}).start()
    used, least, ran, st, stopped = 0, 0, 0, {"thanks": 0, "refused": 0}, ""
    try:
        vd.start()
        for i in range(n):
            vd.call("L%04d" % i)
            vd.staff("end")
            vd.press(LEVELS[i % 5], ms=20)
            st = vd.stats()
            ran += 1
            used = max(used, st["heap_used"])
            least = st["heap"] if ran == 1 else min(least, st["heap"])
    except DeviceError as e:     # the heap ran out where the harness needed some too
        stopped = str(e).rsplit(": ", 1)[-1]
    finally:
        vd.stop()
        acker.stop()
    return (ran, st["thanks"], st["refused"], max(0, used - os.path.getsize(vd.rom) - rom_qstr_bytes(vd.rom)),
            least, stopped)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.firmware_tls", description=__doc__.split("\n")[0])
    ap.add_argument("--heaps", default="64k,68k", help="-X heapsize budgets for the firmware (default %(default)s)")
    ap.add_argument("--sessions", type=int, default=40, help="sessions per run (default %(default)s)")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench-fwtls-")
    os.chmod(work, 0o755)        # Mosquitto reads the certificates as its own user
    plain, tls = free_port(), free_port()
    try:
        ca = certs(work)
        broker = Mosquitto(os.path.join(work, "broker"), port=plain)
        conf = broker.default_conf() + "listener %d 127.0.0.1\ncertfile %s/server.pem\nkeyfile %s/server.key\n" % (
            tls, work, work)
        broker = Mosquitto(os.path.join(work, "broker"), port=plain, conf=conf).start()
        try:
            out = subprocess.run([MICROPYTHON, "-c", _OBJECTS % {"ca": ca, "port": tls}],
                                 capture_output=True, text=True, timeout=60)
            ca_bytes, context, session = (int(x) for x in out.stdout.split())
            rows = []
            for heap in args.heaps.split(","):
                for link in ("plain", "TLS"):
                    rows.append((heap, link) + sessions(work, "ev-%s-%s" % (link.lower(), heap), plain,
                                                        tls if link == "TLS" else None, ca, heap, args.sessions))
        finally:
            broker.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("TLS objects in the MicroPython heap: context with the CA (%d bytes DER) %d bytes; "
          "with one session %d bytes" % (ca_bytes, context, session))
    print("%-6s %-6s %9s %8s %8s %16s %11s" % ("heap", "link", "sessions", "thanked", "refused",
                                             "heap peak (gc'd)", "least free"))
    for heap, link, ran, thanks, refused, peak, least, stopped in rows:
        print("%-6s %-6s %4d of %2d %8d %8d %16d %11d %s" % (heap, link, ran, args.sessions, thanks, refused,
                                                            peak, least, stopped and "stopped: " + stopped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
