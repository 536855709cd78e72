"""The kiosk's ESC/POS printer on its UART: status, flow control, and one
job streamed from flash.

    pp = PrinterPort(board.printer)
    s = await pp.status(4)          # DLE EOT 4: paper; None: no answer
    sent = pp.send(mv, off)         # bytes put on the wire now (0: wait)

Flow control is XON/XOFF (the printer sends XOFF when its buffer is nearly
full): a piece of at most PIECE bytes goes out only while no XOFF stands
and the UART has sent the last one (txdone), so after an XOFF at most one
piece and what the UART holds still arrive: the printer's margin covers it.
Status answers (DLE EOT n) have bit 4 and bit 1 set and bit 0 clear, so
they never look like XON (0x11) or XOFF (0x13); GS r's answer has bit 4
clear. DLE EOT is answered at once, even by a printer that has stopped;
GS r only once everything sent before it is printed: the end of a job.
"""
import time

from tasks import sleep_ms

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int
    const = int

PIECE = const(128)
_XON = const(0x11)
_XOFF = const(0x13)

# What a status byte means (Epson ESC/POS real-time status).
ONLINE = const(1)        # DLE EOT 1: bit 3 offline
CAUSE = const(2)         # DLE EOT 2: bit 2 cover open, bit 5 paper end stop, bit 6 error
PAPER = const(4)         # DLE EOT 4: bits 2-3 near end, bits 5-6 paper end


class PrinterPort:
    def __init__(self, uart):
        self.uart = uart
        self.xoff = False
        self.answer = None      # the last DLE EOT answer
        self.done = None        # the last GS r answer
        self.noise = 0          # bytes that were none of these

    def drain(self):
        """Forget what the line holds (after a boot: an old XOFF or answer)."""
        while self.uart.any():
            self.uart.read(64)
        self.xoff = False

    def poll(self):
        u = self.uart
        while u.any():
            data = u.read(32)
            if not data:
                break
            for b in data:
                if b == _XON:
                    self.xoff = False
                elif b == _XOFF:
                    self.xoff = True
                elif b & 0x93 == 0x12:
                    self.answer = b
                elif b & 0xF0 == 0:
                    self.done = b
                else:
                    self.noise += 1

    def send(self, mv, off):
        """Put the next piece of mv from off on the wire if flow allows; the count sent."""
        self.poll()
        if self.xoff or not self.uart.txdone():
            return 0
        n = self.uart.write(mv[off:off + PIECE])
        return n or 0

    async def status(self, n, wait_ms=600):
        """DLE EOT n's answer, or None when the printer does not answer."""
        u = self.uart
        waited = 0
        while not u.txdone():
            await sleep_ms(5)
            waited += 5
            if waited > wait_ms:
                return None
        self.poll()
        self.answer = None
        u.write(b"\x10\x04" + bytes((n,)))
        t = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), t) < wait_ms:
            await sleep_ms(5)
            self.poll()
            if self.answer is not None:
                return self.answer
        return None

    async def state(self):
        """The printer's state as the protocol names it (`printer` event)."""
        s = await self.status(ONLINE)
        if s is None:
            return "offline"
        p = await self.status(PAPER)
        if p is None:
            return "offline"
        if p & 0x60:
            return "paper_out"
        if s & 0x08:
            c = await self.status(CAUSE)
            if c is not None and c & 0x04:
                return "cover_open"
            if c is not None and c & 0x20:
                return "paper_out"
            return "offline"
        if p & 0x0C:
            return "paper_low"
        return "ok"
