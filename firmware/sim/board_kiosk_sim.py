"""A simulated self-service kiosk board (ESP32-S3 kiosk, hardware/boards/
esp32s3_kiosk.json) for the MicroPython unix port: the evaluator's simulated
board (flash, Wi-Fi, watchdog, resets, the harness link) plus what a kiosk
has instead of rating buttons and a light:

- keys: the keypad (0-9, enter, clear, back, print, ticket: 取号 on #) and the five rating
  buttons under the screen, as named key events (`poll_key()`); the real
  board scans and debounces them, so the app sees each press once.
- display: a 320x240 colour panel, here the text drawn into the last frame.
- printer, scanner: UARTs. On the unix port there is no machine.UART: each
  is a `SimUART` on a pseudo-terminal whose other end a host part opens
  (hardware/sim/printer.py, scanner.py). It behaves as the ESP32's UART
  driver does for the kiosk: write() takes what fits in its TX buffer and
  returns the count, the bytes leave at the baud rate (10 bits a byte),
  txdone() says when all have; read()/any() never block.

Harness ops on top of board_sim's (wifi, flash, stats, heap_block):

    {"op":"key","key":"print"}  -> the key pressed; answered once the app took it
    {"op":"screen"}             -> {"lines":[...],"beeps":n,"frames":n}

Environment: QL_PRINTER, QL_SCANNER (the board's ends of the two lines),
QL_PRINTER_BAUD (default 115200), QL_SCANNER_BAUD (default 9600).
"""
import os
import select
import time

import board_sim  # the module, not its class: board.load() takes the one Board subclass here
from protocol import LEVELS
from tasks import sleep_ms

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int
    const = int

# The keys a kiosk board has (board.json "keypad" and "rating"): what poll_key() returns.
KEYS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "enter", "clear", "back", "print", "ticket") + LEVELS
_WIDTH = const(320)
_HEIGHT = const(240)
_BURST_MS = const(20)      # a late pump sends at most this much wire time: never faster than the baud


class SimUART:
    """machine.UART as the kiosk uses it, on a pseudo-terminal."""

    def __init__(self, path, baudrate, txbuf=256):
        self.f = open(path, "r+b")
        self.baud, self.txbuf = baudrate, txbuf
        self._poll = select.poll()
        self._poll.register(self.f, select.POLLIN)
        self._tx = bytearray()
        self._at = time.ticks_ms()
        self._bits = 0          # wire time owed, in bit-milliseconds
        self._one = bytearray(1)

    def pump(self):
        """Move what the wire has carried since the last call onto the line."""
        now = time.ticks_ms()
        ms = min(time.ticks_diff(now, self._at), _BURST_MS)
        self._at = now
        if not self._tx:
            self._bits = 0      # an idle wire owes nothing
            return
        self._bits += ms * self.baud
        n = min(len(self._tx), self._bits // 10000)
        if n:
            self.f.write(self._tx[:n])
            self._tx = self._tx[n:]
            self._bits -= n * 10000

    def write(self, buf):
        self.pump()
        n = min(len(buf), self.txbuf - len(self._tx))
        if n > 0:
            self._tx += buf[:n]
        return n

    def txdone(self):
        self.pump()
        return not self._tx

    def any(self):
        self.pump()
        return 1 if self._poll.poll(0) else 0

    def read(self, n=256):
        self.pump()
        out = None
        while len(out or b"") < n and self._poll.poll(0):
            if not self.f.readinto(self._one):
                break
            out = (out or b"") + bytes(self._one)
        return out


class KioskDisplay:
    """The colour panel: what text is in the frame shown (the citizen's view)."""

    def __init__(self):
        self._drawing = []
        self.lines = []
        self.frames = 0

    def fill(self, c):
        self._drawing = []

    def text(self, s, x, y, c=0xFFFF):
        if x < 0 or y < 0 or x >= _WIDTH or y >= _HEIGHT:
            raise ValueError("text outside the display")
        if type(c) is not int or not 0 <= c <= 0xFFFF:
            raise ValueError("colour is RGB565")
        self._drawing.append((y, x, s))

    def show(self):
        self._drawing.sort()
        self.lines = [t[2] for t in self._drawing]
        self.frames += 1


class KioskSimBoard(board_sim.SimBoard):
    name = "kiosk_sim"
    app = "kiosk"

    def __init__(self):
        board_sim.SimBoard.__init__(self)
        self.buttons = {}
        self.display = KioskDisplay()
        self.keys = []
        p, s = os.getenv("QL_PRINTER"), os.getenv("QL_SCANNER")
        self.printer = SimUART(p, int(os.getenv("QL_PRINTER_BAUD") or "115200")) if p else None
        self.scanner = SimUART(s, int(os.getenv("QL_SCANNER_BAUD") or "9600")) if s else None

    def poll_key(self):
        if self.keys:
            return self.keys.pop(0)
        return None

    def set_light(self, color):
        raise ValueError("a kiosk board has no service light")

    def background(self, stats=None):
        return board_sim.SimBoard.background(self, stats) + (self._wires(),)

    async def _wires(self):
        # The UARTs' wires run on while the app is busy elsewhere.
        while True:
            for u in (self.printer, self.scanner):
                if u is not None:
                    u.pump()
            await sleep_ms(2)

    def _op(self, req):
        # Synchronous, as board_sim's: the harness link answers a `key` once
        # the app took it (board_sim.SimBoard._serve waits while self.keys).
        op = req.get("op")
        if op == "key":
            for k in req:
                if k != "op" and k != "key":
                    raise ValueError("unknown field " + k)
            k = req.get("key")
            if k not in KEYS:
                raise ValueError("unknown key " + str(k))
            self.keys.append(k)
            return board_sim._OK
        if op == "screen":
            for k in req:
                if k != "op":
                    raise ValueError("unknown field " + k)
            d = self.display
            return {"lines": d.lines, "beeps": self.beeps, "frames": d.frames}
        if op in ("press", "glitch", "call", "display", "pixels"):
            raise ValueError("a kiosk board has no " + op)
        return board_sim.SimBoard._op(self, req)
