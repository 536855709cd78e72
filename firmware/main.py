"""Boot entry: pick the board, run its app (the evaluator, or the kiosk on a kiosk board).

On a board this file is main.py on flash (or frozen); on a PC,
`micropython -X heapsize=64k firmware/main.py` with QL_BOARD=sim and the
simulator's QL_FLASH / QL_CONTROL set (tools/vdevice.py does this).

A production board (console.py) must never let a serial Ctrl-C in, so
keyboard interrupts are off from the first statement until the flash says
this is not one; and it never falls through to the REPL: if the app
ever stops, the board resets.
"""
import micropython

micropython.kbd_intr(-1)

import gc  # noqa: E402
import os  # noqa: E402

# The modules one by one, collecting after each: what an import leaves
# behind (a module's tables outgrown while it loads) is freed before the next
# one's objects are placed, so what stays packs low and the free heap stays
# in large pieces (a 48 KiB heap has ~8 KB free: fragmented, the MQTT
# connect and an event's ~250 bytes did not fit).
# (Statements, not a loop over a tuple of names: each str in a constant tuple
# would stay in the heap.)
__import__("tasks")
gc.collect()
__import__("protocol")
gc.collect()
__import__("protocol.messages")
gc.collect()
__import__("mqtt")
gc.collect()
__import__("uplink")
gc.collect()
__import__("outbox")
gc.collect()
__import__("app")
gc.collect()
import board  # noqa: E402
gc.collect()

_board = board.load(os.getenv("QL_BOARD") if hasattr(os, "getenv") else None)
gc.collect()
# A production board: hallctl put `production` beside a written site.json
# (console.py says why). Checked here, so that any other board never loads
# console.py into its heap.
_root = _board.mount_flash()
gc.collect()
_console = None
try:
    os.stat(_root + "/production")
    os.stat(_root + "/site.json")
    import console as _console  # noqa: E402
except OSError:
    pass
if _console:
    _console.lock()
else:
    micropython.kbd_intr(3)
try:
    # A kiosk board names its app (`app`, board.py); the others run the
    # evaluator, which never loads the kiosk. The app's own modules the same
    # way, one by one, collected after each. (`app`: a name the device has anyway.)
    app = getattr(_board, "app", "evaluator")
    if app == "evaluator":
        __import__("desk")
        gc.collect()
        __import__("ui")
        gc.collect()
    app = __import__(app)
    gc.collect()
    app.main(_board, _console.answer() if _console else None)
finally:
    if _console:
        _board.reset()
