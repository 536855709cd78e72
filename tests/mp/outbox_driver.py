# Drives firmware/outbox.py under the real MicroPython, on a littlefs2 image
# (firmware/lfsblock.py). Used by tests/test_outbox.py:
#   outbox_driver.py scenario IMAGE NAME    run one scenario, print "PASS NAME"
#   outbox_driver.py chaos IMAGE RUN SEED   append/ack forever, logging each step
#   outbox_driver.py dump IMAGE [probe]     print every pending record, "END depth n corrupt";
#                                           probe: then ack all, reopen, "PROBE <next seq>"
import sys
import os
import random
import struct
from binascii import crc32

import lfsblock
from outbox import Outbox, OutboxFull

MNT = "/flash"
ROOT = MNT + "/outbox"
CHAOS_SEG, CHAOS_MAX = 1024, 8


def ev(seq, tag=b"e"):
    return b"%s%d " % (tag, seq) + b"x" * (seq * 7 % 90)


def build(tag=b"e"):
    return lambda seq: ev(seq, tag)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def seqs(ob, limit=1000):
    return [s for s, _ in ob.pending(limit)]


def files():
    return sorted(os.listdir(ROOT))


# ---- scenarios --------------------------------------------------------------

def t_basic():
    ob = Outbox(ROOT, 256, 16)
    check(ob.depth() == 0 and ob.pending(10) == [], "empty")
    got = [ob.append(build()) for _ in range(20)]
    check(got == list(range(1, 21)), "seqs %r" % got)
    check(ob.depth() == 20, "depth")
    p = ob.pending(5)
    check(p == [(s, ev(s)) for s in range(1, 6)], "pending %r" % p)
    check(seqs(ob, 3) and seqs(ob, 100) == list(range(1, 21)), "pending all")
    check([s for s, _ in ob.pending(3, after=10)] == [11, 12, 13], "after")
    nseg = len([f for f in files() if f.endswith(".seg")])
    check(nseg > 3, "rotation made %d segments" % nseg)
    ob.ack([(1, 10)])
    check(ob.depth() == 10 and seqs(ob)[0] == 11, "ack prefix")
    check("1.seg" not in files(), "acked segment deleted: %r" % files())
    ob.close()
    ob = Outbox(ROOT, 256, 16)
    check(seqs(ob) == list(range(11, 21)), "reopen %r" % seqs(ob))
    check(ob.append(build()) == 21, "seq continues")
    for s, p in ob.pending(100):
        check(p == ev(s), "content %d" % s)


def t_out_of_order():
    ob = Outbox(ROOT, 256, 16)
    for _ in range(12):
        ob.append(build())
    ob.ack([(5, 6), (9, 9)])
    check(seqs(ob) == [1, 2, 3, 4, 7, 8, 10, 11, 12], "above %r" % seqs(ob))
    check(ob.depth() == 9, "depth %d" % ob.depth())
    ob.ack([(3, 4)])
    check(ob.depth() == 7, "depth2")
    ob.ack([(2, 2), (1, 1)])  # prefix closes: pointer jumps over 1..6
    check(seqs(ob) == [7, 8, 10, 11, 12] and ob.depth() == 5, "joined %r" % seqs(ob))
    ob.ack([(7, 8), (100, 200)])  # beyond anything stored: ignored
    check(seqs(ob) == [10, 11, 12], "pointer absorbs 9 %r" % seqs(ob))
    ob.ack([(12, 12)])
    check(seqs(ob) == [10, 11] and ob.depth() == 2, "tail acked")
    ob.close()
    ob = Outbox(ROOT, 256, 16)  # acks above the pointer live in RAM only
    check(seqs(ob) == [10, 11, 12], "after reopen %r" % seqs(ob))
    ob.ack([(1, 12)])
    check(ob.depth() == 0 and seqs(ob) == [], "all acked")


def t_raise_floor():
    ob = Outbox(ROOT, 256, 16)
    ob.append(build())
    ob.append(build())
    ob.raise_floor(1)  # below next: nothing changes
    check(ob.append(build()) == 3, "no-op floor")
    ob.raise_floor(1000)
    check(ob.append(build()) == 1001, "floor")
    check(seqs(ob) == [1, 2, 3, 1001], "gap %r" % seqs(ob))
    ob.ack([(1, 3)])
    check(seqs(ob) == [1001], "ack before gap")
    ob.close()
    ob = Outbox(ROOT, 256, 16)
    check(seqs(ob) == [1001] and ob.append(build()) == 1002, "reopen after gap")
    ob.ack([(1002, 1002)])
    ob.ack([(1001, 1001)])
    check(ob.depth() == 0, "acked across gap")
    ob.raise_floor(5000)  # nothing stored: the floor alone must survive
    ob.close()
    ob = Outbox(ROOT, 256, 16)
    check(ob.append(build()) == 5001, "floor survives reopen")


def t_all_acked_reopen():
    ob = Outbox(ROOT, 256, 4)
    for _ in range(30):
        ob.append(build())
        ob.ack([(1, 1000)])
    ob.close()
    ob = Outbox(ROOT, 256, 4)
    check([f for f in files() if f.endswith(".seg")] == [], "segments gone %r" % files())
    check(ob.append(build()) == 31, "seq not reused after full ack")


def t_full_policy():
    ob = Outbox(ROOT, 256, 8)  # reserve: 2 segments for ratings and sessions
    n = 0
    while True:
        s = ob.append(build(b"st"), droppable=True)
        if s is None:
            break
        n += 1
    check(ob.dropped == 1 and n > 0, "dropped %d" % ob.dropped)
    check(not ob.full, "still room for ratings")
    check(ob.append(build(b"st"), droppable=True) is None and ob.dropped == 2, "still dropping")
    kept = []
    try:
        while True:
            kept.append(ob.append(build(b"r")))
    except OutboxFull:
        pass
    check(len(kept) > 0 and ob.full, "ratings used the reserve: %d" % len(kept))
    check(len([f for f in files() if f.endswith(".seg")]) == 8, "bounded")
    depth = ob.depth()
    try:
        ob.append(build(b"r"))
        check(False, "no OutboxFull")
    except OutboxFull:
        pass
    check(ob.depth() == depth, "refused append stored nothing")
    nxt = kept[-1] + 1
    ob.ack([(1, kept[-1] - 5)])  # frees all but the newest segment
    check(not ob.full and ob.append(build(b"r")) == nxt, "room after ack; seq not consumed by refusals")
    check(ob.append(build(b"st"), droppable=True) == nxt + 1, "status accepted again")


def t_torn_tail():
    # A record cut short (as by a power cut on a filesystem without littlefs'
    # atomic sync): ignored, earlier records intact, its seq is handed out again.
    ob = Outbox(ROOT, 1024, 8)
    for _ in range(5):
        ob.append(build())
    ob.close()
    with open(ROOT + "/1.seg", "ab") as f:
        f.write(b"\xa7\x00\x10\x00\x06\x00\x00\x00garb")
    ob = Outbox(ROOT, 1024, 8)
    check(ob.corrupt == 1 and seqs(ob) == [1, 2, 3, 4, 5], "torn tail")
    check(ob.append(build()) == 6 and "6.seg" in files(), "new segment after torn tail")
    with open(ROOT + "/9.seg", "wb") as f:  # created, nothing committed
        pass
    ob.close()
    ob = Outbox(ROOT, 1024, 8)
    check("9.seg" not in files() and seqs(ob) == [1, 2, 3, 4, 5, 6], "empty segment removed")
    ob.ack([(1, 2)])
    ob.ack([(3, 3)])
    ob.close()
    with open(ROOT + "/ptr", "ab") as f:  # a pointer entry cut short
        f.write(b"QLP1\x06\x00")
    ob = Outbox(ROOT, 1024, 8)
    check(seqs(ob) == [4, 5, 6], "torn pointer entry %r" % seqs(ob))
    ob.close()
    # the log was being started over: ptr.tmp complete, the rename cut off
    b = struct.pack("<4sII", b"QLP1", 4, 0)
    with open(ROOT + "/ptr.tmp", "wb") as f:
        f.write(b + struct.pack("<I", crc32(b)))
    ob = Outbox(ROOT, 1024, 8)
    check(seqs(ob) == [5, 6] and "ptr.tmp" not in files(), "finished ptr.tmp %r" % files())


def t_bad_crc():
    ob = Outbox(ROOT, 1024, 8)
    for _ in range(4):
        ob.append(build())
    ob.close()
    with open(ROOT + "/1.seg", "rb") as f:
        b = bytearray(f.read())
    # flip one payload byte of record 3
    off = 0
    for s in (1, 2):
        off += 12 + len(ev(s))
    b[off + 12] ^= 1
    with open(ROOT + "/1.seg", "wb") as f:
        f.write(b)
    ob = Outbox(ROOT, 1024, 8)
    check(seqs(ob) == [1, 2] and ob.corrupt == 1, "crc %r" % seqs(ob))
    check(ob.append(build()) == 3, "next after the last good record")


def t_readonly():
    # hallctl info's look: the count the firmware would see, and not one byte
    # written, tidied or created -- an acked segment, an empty one, a long
    # pointer log and a missing outbox all stay as they are.
    check(Outbox(ROOT + "x", 1024, 8, readonly=True).depth() == 0, "never created")
    check("outboxx" not in os.listdir(MNT), "readonly created the directory")
    ob = Outbox(ROOT, 256, 16)
    for _ in range(12):
        ob.append(build())
    ob.ack([(1, 3)])
    ob.ack([(4, 4)])
    ob.close()
    with open(ROOT + "/40.seg", "wb") as f:  # created just before a cut, nothing in it
        pass

    def snapshot():
        out = {}
        for n in files():
            with open(ROOT + "/" + n, "rb") as f:
                out[n] = f.read()
        return out
    before = snapshot()
    look = Outbox(ROOT, 256, 16, readonly=True)
    check(look.depth() == 8 and seqs(look)[0] == 5, "depth %d" % look.depth())
    for op in (lambda: look.append(build()), lambda: look.ack([(5, 6)])):
        try:
            op()
            check(False, "readonly accepted a write")
        except OSError:
            pass
    check(snapshot() == before, "readonly changed %r -> %r" % (sorted(before), files()))


def t_bookkeeping():
    # What the outbox keeps per segment is allocated once, at open: filling
    # all 32 segments (an outage) takes nothing more from the heap, where a
    # list per segment took ~64 bytes each, allocated as they came.
    import gc

    def held(ob):
        ob.close()      # no open segment or pointer file in the count
        gc.collect()
        return gc.mem_alloc()

    ob = Outbox(ROOT, 256, 32)
    empty = held(ob)
    try:
        while True:
            ob.append(build())
    except OutboxFull:
        pass
    full = held(ob)
    check(ob._n == 32, "32 segments")
    # the filesystem's own small allocations aside: well under 16 bytes a segment
    check(full - empty <= 512, "bookkeeping of 32 segments took %d bytes" % (full - empty))


SCENARIOS = {
    "readonly": t_readonly, "bookkeeping": t_bookkeeping,
    "basic": t_basic, "out_of_order": t_out_of_order, "raise_floor": t_raise_floor,
    "all_acked_reopen": t_all_acked_reopen, "full_policy": t_full_policy,
    "torn_tail": t_torn_tail, "bad_crc": t_bad_crc,
}


# ---- power cuts -------------------------------------------------------------

def chaos(run, seed):
    # Runs take turns: appends only (the outbox fills up and rotates), mixed,
    # acks heavy (pointer writes and segment deletions).
    random.seed(seed)
    tag = b"r%d." % run
    acks = (0, 9, 20)[run % 3]  # of 32
    ob = Outbox(ROOT, CHAOS_SEG, CHAOS_MAX)
    print("READY", ob.depth())
    while True:
        r = random.getrandbits(5)
        if r == 31 and random.getrandbits(2) == 0:
            hwm = ob._next + random.getrandbits(3)
            print("F", hwm)
            ob.raise_floor(hwm)
            print("f")
        elif r < acks:
            p = ob.pending(random.getrandbits(3) + 1)
            ranges = [(s, s) for s, _ in p if random.getrandbits(2)]
            if r < 2 and p:
                ranges = [(1, p[-1][0])]
            for lo, hi in ranges:
                print("K", lo, hi)
            ob.ack(ranges)
            print("k")
        else:
            # (peeking inside) say when this append opens a new segment, to count cuts there
            if ob._rotate or not ob._n or \
                    ob._size[ob._n - 1] + 12 + len(ev(ob._next, tag)) > CHAOS_SEG:
                print("S")
            try:
                s = ob.append(build(tag), r < 6)
            except OutboxFull:
                print("FULL")
                p = ob.pending(random.getrandbits(5) + 1)
                print("K", 1, p[-1][0])
                ob.ack([(1, p[-1][0])])
                print("k")
            else:
                if s is not None:
                    print("A", s)


def dump(probe):
    ob = Outbox(ROOT, CHAOS_SEG, CHAOS_MAX)
    n = after = 0
    while True:
        p = ob.pending(16, after)
        if not p:
            break
        for s, payload in p:
            print("P", s, payload.decode())
            n += 1
        after = p[-1][0]
    print("END", ob.depth(), n, ob.corrupt)
    if probe:
        ob.ack([(1, after)])  # everything: the next seq must still be above all of it
        ob.close()
        ob = Outbox(ROOT, CHAOS_SEG, CHAOS_MAX)
        print("PROBE", ob.append(lambda s: b"probe"))


def main():
    cmd, image = sys.argv[1], sys.argv[2]
    # chaos programs flash in 16-byte pieces, so a cut can also tear a program or an erase
    lfsblock.mount(image, MNT, tear=16 if cmd == "chaos" else 0)
    if cmd == "scenario":
        name = sys.argv[3]
        SCENARIOS[name]()
        print("PASS", name)
    elif cmd == "chaos":
        chaos(int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "dump":
        dump(sys.argv[3:] == ["probe"])


main()
