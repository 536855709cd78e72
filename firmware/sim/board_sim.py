"""A simulated evaluator board for the MicroPython unix port.

Flash is a real littlefs2 filesystem on a block device that writes a
host image file straight through, so a SIGKILL in the middle of a
write is a power cut the filesystem and the outbox must survive.

The test harness plays the citizen and the staff over a local TCP socket,
one JSON object per line each way:

    {"op":"press","button":"satisfied","ms":60}   -> {"ok":true} once released
    {"op":"glitch","button":"satisfied"}          -> a one-sample contact bounce
    {"op":"call","ticket":"A012"}                 -> the wired queue system calls
    {"op":"wifi","up":false}                      -> the access point goes away
    {"op":"flash","ok":false}                     -> flash writes fail (EIO) until reboot
    {"op":"clock","jump_ms":-3600000}            -> the wall clock jumps until the next beacon
    {"op":"display","ok":false}                   -> the panel is unplugged: no frame reaches
                                                     it, "display" is in the board's faults
    {"op":"display","ok":true}                    -> plugged back: the next frame sets it up
                                                     again and clears the fault
    {"op":"screen"}  -> {"lines":[...],"light":"green","beeps":3,"frames":9}
    {"op":"pixels"}  -> {"bands":[n,n,n,n]} lit pixels per 16-px row band
                        (refused while the panel is unplugged)
    {"op":"stats"}   -> the evaluator's counters (thanks, ignored, outbox, ...)
                        and the board's faults
    {"op":"heap_block"} -> the largest block the heap can give now (bench)

Strict like the real part: unknown buttons, ops or fields are refused.

Environment: QL_FLASH (image path), QL_CONTROL (harness port),
QL_FLASH_BLOCKS (image size in 4 KiB blocks, used when provisioning).
"""
import os
import sys
import time

import framebuf
import vfs

import lfsblock
from tasks import sleep_ms

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int; no
    const = int         # fallback function, which a device would keep in its heap

from board import Board, TextDisplay
from protocol import LEVELS

# An evaluator board's keys, as hardware/boards/*.json wire them.
BUTTONS = LEVELS + ("staff",)

_BLOCK = const(4096)
_MIN_READS = const(4)      # a held press lasts at least this many samples
_UP = const(8)             # phase of a released key (+ samples read released)
_BOUNCE = const(16)        # phase of a contact bounce (+ samples of it read)
_EXIT_RESET = const(75)    # exit code the runner restarts, as a board reboots
_POLL_MS = const(5)        # the harness link's poll step

MOUNT = "/flash"

# What the harness does to each key, one byte a key (BUTTONS order), so six
# keys cost the firmware's heap one small object each rather than a table
# of six attributes: 0 at rest; 1.. held (1 + samples read while held,
# counted up to _MIN_READS); _UP.. released (+ samples read released, until
# _MIN_READS of them: then 0, and the harness knows the firmware saw both
# edges); _BOUNCE.. a one-sample bounce and the samples of it settling.
_phase = bytearray(len(BUTTONS))
_until = [0] * len(BUTTONS)      # ticks a held key is held until
_REST = bytes(len(BUTTONS))
_OK = {"ok": True}
# Error texts are short, and a long str is written once: each str constant
# over 10 bytes is an object in the heap the firmware gets (short ones are
# names, in flash on a board and outside the measured heap here).
_INTENTIONAL = "intentional"
_NL = b"\n"


def mount(image):
    """Mount the image's littlefs2 at MOUNT and return its block device. Never
    formats: a filesystem that does not mount after a power cut is a bug to
    see, not to wipe."""
    dev = lfsblock.FileBlockDev(image, _BLOCK)
    vfs.mount(vfs.VfsLfs2(dev), MOUNT)
    return dev


def provision(image, files):
    """Copy `files` {name on flash: host path} onto the flash image, creating
    an erased chip and formatting it when new; what the flashing tool does."""
    lfsblock.mount(image, MOUNT, _BLOCK, int(os.getenv("QL_FLASH_BLOCKS") or "256"))
    buf = bytearray(_BLOCK)
    for name in files:
        tmp = MOUNT + "/" + name + ".tmp"
        with open(files[name], "rb") as src, open(tmp, "wb") as f:
            while True:
                n = src.readinto(buf)
                if not n:
                    break
                f.write(memoryview(buf)[:n])
        os.rename(tmp, MOUNT + "/" + name)
    vfs.umount(MOUNT)


class _Key:
    """One key as the evaluator reads it: 0 while pressed (active low). A
    press stays down for its time and at least a few samples, as a finger
    does on a real key (its state: _phase, _until)."""

    def __call__(self):
        i = self.i
        p = _phase[i]
        if not p:
            return 1
        if p >= _BOUNCE:
            # The bounce reads pressed once, then the contact settles open.
            _phase[i] = 0 if p >= _BOUNCE + _MIN_READS else p + 1
            return 0 if p == _BOUNCE else 1
        if p < _UP:
            if p <= _MIN_READS or time.ticks_diff(_until[i], time.ticks_ms()) > 0:
                if p <= _MIN_READS:
                    _phase[i] = p + 1
                return 0
            p = _UP
        _phase[i] = 0 if p + 1 >= _UP + _MIN_READS else p + 1
        return 1


class SimDisplay(TextDisplay):
    """A 128x64 mono framebuffer that also remembers the text drawn into the
    last frame shown, which is what the citizen reads. The harness can unplug
    the panel: frames then go nowhere and the board's `faults` say so."""

    def __init__(self, faults):
        buf = bytearray(128 * 64 // 8)
        TextDisplay.__init__(self, framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_VLSB))
        self._drawing = []
        self.lines = []
        self.frames = 0
        self.faults = faults
        self.plugged = True

    def fill(self, c):
        self.fb.fill(c)
        self._drawing = []

    def text(self, s, x, y, c=1):
        if x < 0 or y < 0 or x >= 128 or y >= 64:
            raise ValueError("off panel")
        TextDisplay.text(self, s, x, y, c)
        self._drawing.append((y, x, s))

    def show(self):
        if not self.plugged:
            return      # no ACK: the panel keeps what it showed
        if "display" in self.faults:
            self.faults.remove("display")   # back: set up again, as board_mcu's flush does
        self._drawing.sort()
        self.lines = [t[2] for t in self._drawing]
        self.frames += 1


def _note_cause(path, cause):
    with open(path, "w") as f:
        f.write(cause)


class SimBoard(Board):
    name = "sim"

    def __init__(self):
        Board.__init__(self)
        self.image = os.getenv("QL_FLASH") or "flash.img"
        self.buttons = {}
        for i in range(len(BUTTONS)):
            k = _Key()
            k.i = i
            self.buttons[BUTTONS[i]] = k
        self.display = SimDisplay(self.faults)
        self.light = None
        self.light_changes = 0
        self.beeps = 0
        self.wifi_up = True
        self.wifi_wanted = False
        self.calls = []
        self.flash = None
        self.wdt_timeout = 0
        self.wdt_last = 0
        self.feeds = 0
        self._stats = None
        # The reset reason survives a reset but not a power cut, like the RTC's.
        try:
            with open(self.image + ".reset") as f:
                cause = f.read().strip()
        except OSError:
            cause = ""
        _note_cause(self.image + ".reset", "running")
        self._cause = "power_on" if cause == "" or cause == "running" else cause

    # -- outputs -------------------------------------------------------
    def set_light(self, color):
        if color != "green" and color != "yellow" and color != "red" and color is not None:
            raise ValueError("light " + str(color))
        if color != self.light:
            self.light = color
            self.light_changes += 1

    def beep(self, ms):
        if not 0 < ms <= 2000:
            raise ValueError("beep ms")
        self.beeps += 1

    # -- storage ---------------------------------------------------------
    def mount_flash(self):
        if self.flash is not None:
            return MOUNT     # main.py looked for the production mark already
        self.flash = mount(self.image)
        try:
            # The Chinese font sits on flash, as on a board; here flash is not the cwd.
            import cjkfont
            cjkfont.use(MOUNT + "/" + cjkfont.FONT_FILE)
        except ImportError:
            pass
        return MOUNT

    # -- network -------------------------------------------------------
    def wifi_connect(self, ssid, password):
        self.wifi_wanted = True

    def wifi_connected(self):
        return self.wifi_wanted and self.wifi_up

    def rssi(self):
        return 58 if self.wifi_connected() else None

    # -- watchdog and resets ----------------------------------------------
    def wdt_start(self, timeout_ms):
        self.wdt_timeout = timeout_ms
        self.wdt_last = time.ticks_ms()

    def wdt_feed(self):
        self.wdt_last = time.ticks_ms()
        self.feeds += 1

    def reset_cause(self):
        return self._cause

    def mark_intentional(self):
        _note_cause(self.image + ".reset", _INTENTIONAL)

    def reset(self, cause="soft"):
        try:
            with open(self.image + ".reset") as f:
                if f.read().strip() == _INTENTIONAL:
                    cause = _INTENTIONAL
        except OSError:
            pass
        _note_cause(self.image + ".reset", cause)
        print("board reset:", cause)
        sys.exit(_EXIT_RESET)

    # -- queue system ----------------------------------------------------
    def poll_call(self):
        if self.calls:
            return self.calls.pop(0)
        return None

    # -- the harness link ------------------------------------------------
    def background(self, stats=None):
        """The harness link and the watchdog check. `stats` is the app's
        callable returning its counters, for the `stats` op."""
        self._stats = stats
        return (self._serve(),)

    async def _serve(self):
        # One task for every harness connection (a test may hold the staff key
        # on one while it presses a rating key on another), non-blocking
        # sockets polled as firmware/mqtt.py does. A poll object tells when a
        # connection waits to be accepted, so an idle link raises no EAGAIN
        # every step (an exception object each: heap churn). The unix port
        # has no hardware watchdog: this task checks the feeds too (a loop
        # that stops entirely is not caught: nothing runs to check).
        import gc
        import json
        import select
        import socket
        port = int(os.getenv("QL_CONTROL") or "0")
        ls = None
        p = select.poll()
        if port:
            ls = socket.socket()
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
            ls.listen(4)
            ls.setblocking(False)
            p.register(ls, select.POLLIN)
        # Three items a connection, flat (a list each would be two more heap
        # blocks): its socket, the bytes read so far, the key its reply waits
        # for (-1: a call; -2: a kiosk's key, board_kiosk_sim; None: none).
        conns = []
        while True:
            if self.wdt_timeout and time.ticks_diff(time.ticks_ms(), self.wdt_last) > self.wdt_timeout:
                self.reset("watchdog")
            for _ in p.ipoll(0):
                try:
                    c = ls.accept()[0]
                    c.setblocking(False)
                    conns.append(c)
                    conns.append(bytes())
                    conns.append(None)
                except OSError:
                    pass
            # A request of each connection per step, all inline: a coroutine
            # per connection or per reply would be frames in the heap the
            # bench measures.
            i = 0
            while i < len(conns):
                c, w, reply = conns[i], conns[i + 2], None
                try:
                    if w is not None:
                        # A press, a bounce or a call is answered once the
                        # firmware took it: that key released, the call taken.
                        if not (self.calls if w == -1 else self.keys if w == -2 else _phase[w]):
                            conns[i + 2], reply = None, _OK
                    else:
                        line = conns[i + 1]
                        if _NL not in line:
                            chunk = c.read(256)
                            if chunk is not None:
                                if not chunk:
                                    raise OSError("closed")
                                line += chunk
                            chunk = None
                        if _NL in line:
                            j = line.index(_NL)
                            req, line = line[:j], line[j + 1:]
                            for attempt in range(10):
                                # The harness link is not part of the firmware: when the
                                # shared heap is tight (a burst of sends), it collects,
                                # lets the firmware finish and tries again rather than
                                # fail a test for memory a real board would not spend.
                                try:
                                    if type(req) is bytes:
                                        req = json.loads(req)
                                    reply = self._op(req)
                                    break
                                except MemoryError:
                                    reply = {"error": "no memory"}
                                    gc.collect()
                                    await sleep_ms(20)
                                except Exception as e:
                                    reply = {"error": str(e) or type(e).__name__}
                                    break
                            op = req.get("op") if reply is _OK else None
                            if op == "press" or op == "glitch":
                                conns[i + 2], reply = BUTTONS.index(req.get("button")), None
                            elif op == "call":
                                conns[i + 2], reply = -1, None
                            elif op == "key":
                                conns[i + 2], reply = -2, None
                            req = None
                        conns[i + 1] = line
                        line = None
                    if reply is not None:
                        # Out a field at a time: the stats are ~700 bytes of JSON, more
                        # than a fragmented heap may have in one piece. A reply is a
                        # dict, or (stats) a generator of (name, value) pairs.
                        sep = "{"       # str pieces: their constants are short names
                        for k, v in (reply.items() if type(reply) is dict else reply):
                            mv = memoryview(sep + json.dumps(k) + ":" + json.dumps(v))
                            sep = ","
                            while mv:
                                n = c.write(mv)
                                if n is None:
                                    await sleep_ms(1)
                                else:
                                    mv = mv[n:]
                            mv = None
                        k = v = reply = None
                        mv = memoryview("{}\n" if sep == "{" else "}\n")
                        while mv:
                            n = c.write(mv)
                            if n is None:
                                await sleep_ms(1)
                            else:
                                mv = mv[n:]
                        mv = None
                    i += 3
                except (OSError, MemoryError):
                    # The harness sees the link drop and connects again (one retry).
                    c.close()
                    conns.pop(i)
                    conns.pop(i)
                    conns.pop(i)
                c = reply = None
            await sleep_ms(_POLL_MS)

    def _op(self, req):
        """Act on one harness request; the reply (a dict, or the stats' pairs)."""
        op = req.get("op")
        # Strict like the real part: a field the op does not take is refused.
        # (Code, not a table of tuples: each tuple a device keeps in its heap.)
        for k in req:
            if not (k == "op" or k == "button" and (op == "press" or op == "glitch")
                    or k == "ms" and op == "press" or k == "ticket" and op == "call"
                    or k == "up" and op == "wifi" or k == "ok" and (op == "flash" or op == "display")
                    or k == "jump_ms" and op == "clock"):
                raise ValueError("field " + k)
        if op == "press" or op == "glitch":
            i = BUTTONS.index(req.get("button")) if req.get("button") in BUTTONS else -1
            if i < 0:
                raise ValueError("button " + str(req.get("button")))
            if _phase[i]:
                raise ValueError("held " + BUTTONS[i])
            if op == "glitch":
                _phase[i] = _BOUNCE
                return _OK
            ms = req.get("ms", 60)
            if type(ms) is not int or not 0 < ms <= 10000:
                raise ValueError("bad ms")
            _until[i] = time.ticks_add(time.ticks_ms(), ms)
            _phase[i] = 1
            return _OK
        if op == "call":
            t = req.get("ticket")
            if type(t) is not str or not 0 < len(t) <= 16:
                raise ValueError("bad ticket")
            self.calls.append(t)     # taken by the evaluator's input loop
            return _OK
        if op == "flash":
            self.flash.broken = not req.get("ok")     # until the next boot
            return _OK
        if op == "display":
            ok = req.get("ok")
            if type(ok) is not bool:
                raise ValueError("bad ok")
            self.display.plugged = ok
            if not ok and "display" not in self.faults:
                self.faults.append("display")   # what board_mcu records on a missing ACK
            return _OK
        if op == "clock":
            # The wall clock jumps (firmware/sim/clock_jump.py, loaded on the first jump).
            __import__("clock_jump").jump(int(req["jump_ms"]))
            return _OK
        if op == "wifi":
            self.wifi_up = bool(req.get("up"))
            return _OK
        if op == "screen":
            d = self.display
            return {"lines": d.lines, "light": self.light, "beeps": self.beeps,
                    "frames": d.frames, "light_changes": self.light_changes}
        if op == "pixels":
            # Lit pixels in each 16-pixel row band: what the panel shows, not what was asked.
            if not self.display.plugged:
                raise ValueError("unplugged")
            fb, bands = self.display.fb, [0, 0, 0, 0]
            for y in range(64):
                for x in range(128):
                    if fb.pixel(x, y):
                        bands[y >> 4] += 1
            return {"bands": bands}
        if op == "stats":
            # The app's counters, then the board's: pairs made as they are sent.
            return self._stat_pairs()
        if op == "heap_block":
            # The largest block the heap can give now: what fragmentation leaves
            # of the free total, found by trying (a bench figure; it collects a
            # dozen times, so the stats do not ask for it).
            import gc
            gc.collect()
            lo, hi = 0, gc.mem_free()
            while lo < hi:
                mid = (lo + hi + 1) // 2
                try:
                    b = bytearray(mid)
                    b = None  # noqa: F841 (freed by the next collection)
                    lo = mid
                except MemoryError:
                    hi = mid - 1
                gc.collect()
            return {"heap_block": lo}
        raise ValueError("op " + str(op))

    def _stat_pairs(self):
        if self._stats:
            yield from self._stats()
        yield "wdt_feeds", self.feeds
        yield "reset", self._cause
        yield "faults", self.faults
