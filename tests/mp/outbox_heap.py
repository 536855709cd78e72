# The outbox at its largest inside a small board's heap: run as
#   micropython -X heapsize=64k -c "import outbox_heap" IMAGE
# with outbox, lfsblock and this module compiled to .mpy (as frozen on a board).
# Fills a 4096 x 32 outbox with event-sized records until OutboxFull, reopens
# it (full scan), drains it 16 at a time with acks, prints "drained N live_max B".
import sys
import gc

import lfsblock
from outbox import Outbox, OutboxFull

ROOT = "/flash/outbox"


def event(seq):  # a signed event is 250-400 bytes of JSON
    return b'{"v":1,"seq":%d,' % seq + b"x" * (250 + seq % 120) + b"}"


def main(image):
    lfsblock.mount(image, "/flash")
    gc.collect()
    base = gc.mem_alloc()  # code, the mounted filesystem, its caches
    ob = Outbox(ROOT, 4096, 32)
    n = 0
    try:
        while True:
            ob.append(event)
            n += 1
    except OutboxFull:
        pass
    assert ob.full and ob.depth() == n, "full"
    dropped = ob.append(event, droppable=True)
    assert dropped is None and ob.dropped == 1, "status dropped when full"
    print("filled", n)
    ob.close()
    ob = None
    gc.collect()
    ob = Outbox(ROOT, 4096, 32)
    assert ob.depth() == n, "reopened depth %d" % ob.depth()
    got = after = live = 0
    while True:
        p = ob.pending(16, after)
        if not p:
            break
        for s, payload in p:
            assert payload == event(s), "content %d" % s
        got += len(p)
        after = p[-1][0]
        gc.collect()
        live = max(live, gc.mem_alloc())  # with a batch of payloads held
        if got % 64 == 0:
            ob.ack([(1, after)])
        p = None
    ob.ack([(1, after)])
    assert got == n and ob.depth() == 0, "drained %d of %d" % (got, n)
    print("drained", got, "base", base, "live_max", live, "heap", gc.mem_alloc() + gc.mem_free())


main(sys.argv[-1])
