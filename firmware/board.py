"""The hardware layer the evaluator sees: buttons, display, service light,
buzzer, flash, Wi-Fi, watchdog, reset cause.

One interface, several boards: `board_esp32`, `board_rp2` drive real pins;
`board_sim` runs on the unix port for tests and the demo. The firmware
never imports `machine` or `network` itself, so the same evaluator runs on
all of them. `load(name)` picks one; the name comes from the site config or
the platform.
"""
import sys

# The lights (set_light()): "green", "yellow", "red" or None (off); not a
# tuple either, for the same reason as the reset causes below.
# Reset causes (reset_cause()): power_on, watchdog, soft, deep_sleep, brownout,
# intentional. Not a tuple here: each str in a constant tuple is an object
# the device keeps in its heap, and nothing checks against it.


class Board:
    """Base and contract. A board sets `buttons` and `display` and has these
    methods (the real ones in board_mcu.py, the simulated in sim/board_sim.py;
    no defaults here: each is a function object a small heap keeps for good):

        set_light(color)        "green", "yellow", "red" or None
        beep(ms)
        mount_flash() -> root   the flash's mount point, mounted once
        wifi_connect(ssid, password); wifi_connected() -> bool
        rssi() -> dBm or None
        wdt_start(timeout_ms); wdt_feed()
        reset_cause() -> one of the reset causes above
        mark_intentional()      remember across the coming reset that we asked for it
        reset()                 never returns
    """
    name = "none"
    # app = "kiosk": the app module main.py runs on a kiosk board (without
    # it: "evaluator"; not an attribute here, one entry less in a class dict
    # the device keeps)
    buttons = None      # name -> callable() returning 0 while pressed (active low)
    display = None      # TextDisplay over a 128x64 framebuf

    def __init__(self):
        # Parts found broken ("display"), reported as alarms in status. Each
        # board's own list: a class attribute would be one list for all.
        self.faults = []

    def poll_call(self):
        """A ticket called by a wired queue system, or None. Boards without
        one return None; calls then arrive over MQTT `cmd`."""
        return None

    def background(self, stats=None):
        """Coroutines the board needs running (the simulator's harness link).
        `stats`: the app's callable returning its counters as (name, value)
        pairs, for a board that reports them (the simulator's `stats` op);
        the board never calls into the app otherwise."""
        return ()


class TextDisplay:
    """A framebuf display whose text() also draws Chinese.

    ASCII goes through the framebuf 8x8 font; other text through the bitmap
    font subset `cjkfont` (generated for the configured strings), imported
    only when first needed so boards without Chinese text pay nothing."""

    def __init__(self, fb, flush=None):
        self.fb = fb
        self._flush = flush
        self._cjk = None

    def fill(self, c):
        self.fb.fill(c)

    def text(self, s, x, y, c=1):
        if _ascii(s):
            self.fb.text(s, x, y, c)
            return
        if self._cjk is None:
            try:
                import cjkfont
                self._cjk = getattr(cjkfont, "draw", False)
            except ImportError:
                self._cjk = False
        if self._cjk:
            self._cjk(self.fb, s, x, y, c)
        else:
            # No font on this build: keep the ASCII part, box the rest.
            for i, ch in enumerate(s):
                if ord(ch) < 128:
                    self.fb.text(ch, x + 8 * i, y, c)
                else:
                    self.fb.rect(x + 8 * i, y, 7, 8, c)

    def show(self):
        if self._flush is not None:
            self._flush()


def _ascii(s):
    # Over the UTF-8 bytes: iterating the str would intern each Chinese
    # character as a qstr for good (cjkfont.draw says more).
    for b in memoryview(s):
        if b > 126:
            return False
    return True


def load(name=None):
    """Return the Board for `name` ('sim', 'esp32', 'rp2', 'kiosk_sim'); default by platform."""
    if name is None:
        name = {"esp32": "esp32", "rp2": "rp2"}.get(sys.platform, "sim")
    if name != "sim" and name != "esp32" and name != "rp2" and name != "kiosk_sim":
        raise ValueError("unknown board " + name)
    mod = __import__("board_" + name)
    # Each board module defines one Board subclass; take it by type, not by name.
    for attr in dir(mod):
        cls = getattr(mod, attr)
        if isinstance(cls, type) and cls is not Board and issubclass(cls, Board):
            return cls()
    raise ValueError("board_" + name + " defines no Board")
