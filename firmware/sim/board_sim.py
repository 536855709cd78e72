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
import tasks
from tasks import sleep_ms

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int; no
    const = int         # fallback function, which a device would keep in its heap

from board import Board, TextDisplay, LIGHTS
from protocol import LEVELS

# An evaluator board's keys, as hardware/boards/*.json wire them.
BUTTONS = LEVELS + ("staff",)

_BLOCK = const(4096)
_MIN_READS = const(4)      # a held press lasts at least this many samples
_EXIT_RESET = const(75)    # exit code the runner restarts, as a board reboots
_POLL_MS = const(5)        # the harness link's poll step

MOUNT = "/flash"


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


class SimButton:
    """An active-low button the harness presses. A press stays down for its
    duration and at least a few samples, as a finger does on a real key;
    `pressing` clears only after a few released samples, so the harness
    knows the firmware has seen both edges."""

    def __init__(self):
        self.down_until = 0
        self.reads = 0
        self.pressing = False
        self.released = False
        self.bounce = 0
        self.tail = 0

    def glitch(self):
        self.bounce = 1
        self.tail = _MIN_READS

    def press(self, ms):
        self.down_until = time.ticks_add(time.ticks_ms(), ms)
        self.reads = 0
        self.released = False
        self.pressing = True

    def __call__(self):
        if self.bounce:
            self.bounce -= 1
            return 0
        if self.tail:
            self.tail -= 1      # the contact settles open again
            return 1
        if not self.pressing:
            return 1
        if not self.released:
            if self.reads < _MIN_READS or time.ticks_diff(self.down_until, time.ticks_ms()) > 0:
                self.reads += 1
                return 0
            self.released = True
            self.reads = 0
        self.reads += 1
        if self.reads >= _MIN_READS:
            self.pressing = False
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
            raise ValueError("text outside the display")
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


class SimBoard(Board):
    name = "sim"

    def __init__(self):
        Board.__init__(self)
        self.image = os.getenv("QL_FLASH") or "flash.img"
        self.control_port = int(os.getenv("QL_CONTROL") or "0")
        self.buttons = {}
        for name in BUTTONS:
            self.buttons[name] = SimButton()
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
        self._cause = self._read_cause()

    # -- outputs -------------------------------------------------------
    def set_light(self, color):
        if color not in LIGHTS:
            raise ValueError("no such light " + str(color))
        if color != self.light:
            self.light = color
            self.light_changes += 1

    def beep(self, ms):
        if not 0 < ms <= 2000:
            raise ValueError("beep length")
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

    def _cause_path(self):
        return self.image + ".reset"

    def _read_cause(self):
        # Survives a reset but not a power cut, like the RTC's reset reason.
        try:
            with open(self._cause_path()) as f:
                cause = f.read().strip()
        except OSError:
            cause = ""
        self._write_cause("running")
        return "power_on" if cause in ("", "running") else cause

    def _write_cause(self, cause):
        with open(self._cause_path(), "w") as f:
            f.write(cause)

    def reset_cause(self):
        return self._cause

    def mark_intentional(self):
        self._write_cause("intentional")

    def reset(self, cause="soft"):
        try:
            with open(self._cause_path()) as f:
                if f.read().strip() == "intentional":
                    cause = "intentional"
        except OSError:
            pass
        self._write_cause(cause)
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
        # A non-blocking socket polled from this task, as firmware/mqtt.py does
        # (the firmware has no asyncio: tasks.py). The unix port has no hardware
        # watchdog: this task checks the feeds too (a loop that stops entirely
        # is not caught: nothing runs to check).
        ls = None
        if self.control_port:
            import socket
            ls = socket.socket()
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(socket.getaddrinfo("127.0.0.1", self.control_port)[0][-1])
            ls.listen(4)
            ls.setblocking(False)
        while True:
            if self.wdt_timeout and time.ticks_diff(time.ticks_ms(), self.wdt_last) > self.wdt_timeout:
                self.reset("watchdog")
            try:
                c = ls.accept()[0] if ls else None
            except OSError:
                c = None
            if c is None:
                await sleep_ms(_POLL_MS)
                continue
            c.setblocking(False)
            tasks.create_task(self._client(c))

    async def _client(self, c):
        import gc
        import json
        line = b""
        try:
            while True:
                chunk = c.read(256)
                if chunk is None:
                    await sleep_ms(_POLL_MS)
                    continue
                if not chunk:
                    break
                line += chunk
                chunk = None
                while b"\n" in line:
                    i = line.index(b"\n")
                    req, line = line[:i], line[i + 1:]
                    for attempt in range(10):
                        # The harness link is not part of the firmware: when the
                        # shared heap is tight (a burst of sends), it collects,
                        # lets the firmware finish and tries again rather than
                        # fail a test for memory a real board would not spend.
                        try:
                            reply = await self._op(json.loads(req))
                            break
                        except MemoryError:
                            reply = {"error": "MemoryError"}
                            gc.collect()
                            await sleep_ms(20)
                        except Exception as e:
                            reply = {"error": str(e) or type(e).__name__}
                            break
                    req = None
                    # Out a field at a time: the stats are ~700 bytes of JSON, more
                    # than a fragmented heap may have in one piece. A reply is a
                    # dict, or (stats) a generator of (name, value) pairs.
                    sep = b"{"
                    for k, v in (reply.items() if type(reply) is dict else reply):
                        await _send(c, sep + json.dumps(k).encode() + b":" + json.dumps(v).encode())
                        sep = b","
                    k = v = None
                    reply = None
                    await _send(c, b"{}\n" if sep == b"{" else b"}\n")
        except OSError:
            pass
        c.close()

    async def _op(self, req):
        op = req.get("op")
        if op == "press":
            _only(req, ("op", "button", "ms"))
            b = self._button(req.get("button"))
            ms = req.get("ms", 60)
            if type(ms) is not int or not 0 < ms <= 10000:
                raise ValueError("bad ms")
            b.press(ms)
            while b.pressing:
                await sleep_ms(5)
            return {"ok": True}
        if op == "glitch":
            _only(req, ("op", "button"))
            b = self._button(req.get("button"))
            b.glitch()
            while b.bounce or b.tail:
                await sleep_ms(5)
            return {"ok": True}
        if op == "call":
            _only(req, ("op", "ticket"))
            t = req.get("ticket")
            if type(t) is not str or not 0 < len(t) <= 16:
                raise ValueError("bad ticket")
            self.calls.append(t)
            while self.calls:      # taken by the evaluator's input loop
                await sleep_ms(5)
            return {"ok": True}
        if op == "flash":
            _only(req, ("op", "ok"))
            self.flash.broken = not req.get("ok")     # until the next boot
            return {"ok": True}
        if op == "display":
            _only(req, ("op", "ok"))
            ok = req.get("ok")
            if type(ok) is not bool:
                raise ValueError("bad ok")
            self.display.plugged = ok
            if not ok and "display" not in self.faults:
                self.faults.append("display")   # what board_mcu records on a missing ACK
            return {"ok": True}
        if op == "clock":
            _only(req, ("op", "jump_ms"))
            __import__("clock_jump").jump(int(req.get("jump_ms")))
            return {"ok": True}
        if op == "wifi":
            _only(req, ("op", "up"))
            self.wifi_up = bool(req.get("up"))
            return {"ok": True}
        if op == "screen":
            _only(req, ("op",))
            d = self.display
            return {"lines": d.lines, "light": self.light, "beeps": self.beeps,
                    "frames": d.frames, "light_changes": self.light_changes}
        if op == "pixels":
            # Lit pixels in each 16-pixel row band: what the panel shows, not what was asked.
            _only(req, ("op",))
            if not self.display.plugged:
                raise ValueError("display unplugged")
            fb, bands = self.display.fb, [0, 0, 0, 0]
            for y in range(64):
                for x in range(128):
                    if fb.pixel(x, y):
                        bands[y >> 4] += 1
            return {"bands": bands}
        if op == "stats":
            _only(req, ("op",))
            return self._stat_pairs()
        if op == "heap_block":
            # The largest block the heap can give (a bench figure; it collects
            # a dozen times, so the stats do not ask for it).
            _only(req, ("op",))
            return {"heap_block": _largest_free()}
        raise ValueError("unknown op " + str(op))

    def _stat_pairs(self):
        # The app's counters, then the board's: pairs made as they are sent.
        if self._stats:
            yield from self._stats()
        yield "wdt_feeds", self.feeds
        yield "reset", self._cause
        yield "faults", self.faults

    def _button(self, name):
        b = self.buttons.get(name)
        if b is None:
            raise ValueError("unknown button " + str(name))
        if b.pressing:
            raise ValueError("button already held " + name)
        return b


def _largest_free():
    """The largest block the heap can give now (bytes): what fragmentation
    leaves of the free total. Found by trying; only the simulator asks."""
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
    return lo


async def _send(c, data):
    """All of data out on the non-blocking socket c."""
    mv, off = memoryview(data), 0
    while off < len(data):
        n = c.write(mv[off:])
        if n is None:
            await sleep_ms(1)
        else:
            off += n


def _only(req, allowed):
    for k in req:
        if k not in allowed:
            raise ValueError("unknown field " + k)
