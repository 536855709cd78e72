"""Durable appends per second on a littlefs2 flash image, under the real
MicroPython unix port, in one run:

  outbox     firmware/outbox.py: small segment files, a CRC per record,
             committed (synced) per append; acked and freed every --ack-every
             appends, as a draining device would;
  naive      one growing file on the same filesystem: write the record, flush
             (= littlefs sync) per append; nothing is ever freed.

Both on a fresh image of the same size, with the same records (--size bytes,
a signed event is 250-400). Reports appends/s overall and for the first and
last tenth (does one growing file slow down? on this host's image it has not,
up to 6 MB), and flash bytes programmed per append (littlefs copies a file's
partial last block and commits metadata on every sync: wear, and on a real
chip the time that matters). What the outbox buys is not speed: a bounded
size, acked events freed, a CRC per record.

    python -m bench.outbox_append [--events N] [--size B] [--ack-every K]
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(HERE, ".venv", "bin", "micropython")

# Runs inside MicroPython; argv: mode image events size ack_every
SCRIPT = r"""
import sys, time, lfsblock
from outbox import Outbox
mode, image, n, size, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
bdev = lfsblock.mount(image, "/flash", block_count=2048)
rec = b"e" * size
tenth = max(1, n // 10)
marks = []
t0 = time.ticks_us()
if mode == "outbox":
    ob = Outbox("/flash/outbox", 4096, 32)
    for i in range(n):
        if i % tenth == 0:
            marks.append(time.ticks_us())
        s = ob.append(lambda seq: rec)
        if (i + 1) % every == 0:
            ob.ack([(1, s)])
else:
    f = open("/flash/events.log", "ab")
    for i in range(n):
        if i % tenth == 0:
            marks.append(time.ticks_us())
        f.write(rec)
        f.flush()
    f.close()
marks.append(time.ticks_us())
total = time.ticks_diff(marks[-1], t0)
first = time.ticks_diff(marks[1], marks[0])
last = time.ticks_diff(marks[-1], marks[-2])
print("RESULT", mode, n, total, first, last, tenth, n - tenth * (len(marks) - 2), bdev.prog_bytes)
"""


def run(mode, events, size, every, work):
    image = os.path.join(work, mode + ".img")
    env = dict(os.environ, MICROPYPATH=os.path.join(HERE, "firmware", "sim") + ":" + os.path.join(HERE, "firmware"))
    out = subprocess.run([MICROPYTHON, "-c", SCRIPT, mode, image, str(events), str(size),
                          str(every)], env=env, capture_output=True, text=True, timeout=3600)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT"):
            f = line.split()
            n, total, first, last, tenth, _, progs = (int(x) for x in f[2:9])
            last_n = n - tenth * 9
            return {"n": n, "rate": n / (total / 1e6), "first": tenth / (first / 1e6),
                    "last": last_n / (last / 1e6), "prog": progs / n}
    sys.exit("bench %s failed:\n%s" % (mode, out.stdout + out.stderr))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=2000, help="appends per variant (default 2000)")
    ap.add_argument("--size", type=int, default=300, help="bytes per record (default 300)")
    ap.add_argument("--ack-every", type=int, default=100,
                    help="outbox: ack everything every K appends (default 100)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-outbox-") as work:
        rows = [("outbox", run("outbox", a.events, a.size, a.ack_every, work)),
                ("naive", run("naive", a.events, a.size, a.ack_every, work))]
    print("%d appends of %d bytes on littlefs2 (4096-byte blocks), MicroPython unix port"
          % (a.events, a.size))
    print("%-8s %10s %14s %14s %14s" % ("variant", "appends/s", "first 10% /s", "last 10% /s",
                                       "flash B/append"))
    for name, r in rows:
        print("%-8s %10.0f %14.0f %14.0f %14.0f" % (name, r["rate"], r["first"], r["last"], r["prog"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
