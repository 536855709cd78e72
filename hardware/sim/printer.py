"""A strict ESC/POS thermal printer on a serial line (58/80 mm, Chinese
model: GB18030 text mode on from power-up, as printers sold here ship).

    pr = Printer(port, baud=115200).start()      # port: a pyserial port
    pr.slips[-1].text, pr.slips[-1].qr            # what was printed and cut
    pr.paper_after(300); pr.load_paper()          # run out mid-job; reload
    pr.error                                      # None, or why it stopped

Two stages, as in the real part:

- Receive (at the wire): bytes arrive no faster than `baud` allows (10 bits
  a byte; a faster sender is `overspeed`, what a UART sees as framing
  errors) into a receive buffer of `buffer` bytes. DLE EOT n is answered
  here, at once, whatever the printer is doing (a real-time command); its
  bytes go into the buffer only if there is room. Flow control is XON/XOFF:
  XOFF (0x13) when `xoff_free` bytes or fewer are free, XON (0x11) when
  `xon_free` are free again. A byte that finds the buffer full is lost and
  the printer stops (`overrun`): the kiosk must never overrun it.
- Print (the head): takes bytes from the buffer at `print_bps` while it has
  paper, its cover shut and no error, and parses them. What python-escpos
  emits is understood: text (GB18030 while Chinese mode is on, FS & / FS .),
  ESC/GS/FS modes, QR (GS ( k: model, size, error level, store, print),
  raster images, barcodes, GS V cuts, GS r (answered once everything
  before it is printed: the host's way to know a job is out). Anything
  else stops the printer with `error` set: an unknown ESC/GS/FS command,
  a parameter out of range, a QR function with the wrong length, a stray
  control byte, a byte that is not GB18030.

Status bytes (Epson ESC/POS; python-escpos's is_online/paper_status read
them the same way): DLE EOT 1 printer 0x12 (+0x08 offline), 2 offline cause
0x12 (+0x04 cover open, +0x20 stopped by paper end, +0x40 error), 3 error
cause 0x12 (+0x20 unrecoverable), 4 paper 0x12 (+0x0C near end, +0x60 end).
GS r 1 answers 0x00 (paper present) or 0x0C (paper end).
"""
import threading
import time

XON, XOFF = 0x11, 0x13
ESC, GS, FS, DLE, EOT = 0x1B, 0x1D, 0x1C, 0x10, 0x04

# ESC c -> number of parameter bytes, and the values allowed (None: any)
_ESC = {
    0x40: (0, None),                        # @ initialise
    0x21: (1, None),                        # ! print mode
    0x2D: (1, (0, 1, 2, 48, 49, 50)),       # - underline
    0x32: (0, None),                        # 2 default line spacing
    0x33: (1, None),                        # 3 line spacing
    0x45: (1, None),                        # E bold (LSB)
    0x47: (1, None),                        # G double strike (LSB)
    0x4A: (1, None),                        # J feed n dots
    0x4D: (1, (0, 1, 48, 49)),              # M font
    0x52: (1, tuple(range(0, 16))),         # R international set
    0x56: (1, (0, 1, 48, 49)),              # V rotate
    0x61: (1, (0, 1, 2, 48, 49, 50)),       # a justify
    0x64: (1, None),                        # d print and feed n lines
    0x65: (1, None),                        # e reverse feed
    0x70: (3, None),                        # p drawer pulse
    0x74: (1, (0,)),                        # t code page: PC437 only on this model
    0x7B: (1, None),                        # { upside down (LSB)
}
_GS = {
    0x21: (1, None),                        # ! character size (checked below)
    0x42: (1, None),                        # B reverse (LSB)
    0x48: (1, (0, 1, 2, 3, 48, 49, 50, 51)),  # H HRI position
    0x4C: (2, None),                        # L left margin
    0x57: (2, None),                        # W print area width
    0x62: (1, None),                        # b smoothing
    0x66: (1, (0, 1, 48, 49)),              # f HRI font
    0x68: (1, None),                        # h barcode height
    0x77: (1, tuple(range(1, 7))),          # w barcode module width
}
_FS = {
    0x26: (0, None),                        # & Chinese mode on
    0x2E: (0, None),                        # . Chinese mode off
    0x21: (1, None),                        # ! Chinese print mode
    0x2D: (1, (0, 1, 2, 48, 49, 50)),       # - Chinese underline
    0x53: (2, None),                        # S Chinese spacing
    0x57: (1, None),                        # W Chinese quadruple (LSB)
}
# GS ( k, cn 49 (QR): fn -> exact parameter length after pL pH (None: at least 3)
_QR_FN = {65: 4, 67: 3, 69: 3, 80: None, 81: 3, 82: 3}


class Slip:
    """One piece of paper: what was printed up to a cut."""

    def __init__(self):
        self.lines = []
        self.qr = []            # QR payloads printed (GS ( k 1 Q after 1 P)
        self.images = 0
        self.raw = bytearray()  # the bytes the head took for it
        self.cut = False

    @property
    def text(self):
        return "\n".join(self.lines)


class Printer:
    def __init__(self, port, baud=115200, buffer=4096, xoff_free=1024, xon_free=2048,
                 print_bps=3000, burst_s=0.25):
        self.port, self.baud = port, baud
        self.capacity, self.xoff_free, self.xon_free = buffer, xoff_free, xon_free
        self.print_bps = print_bps
        self.burst = int(baud / 10 * burst_s) + 256    # bytes the wire may bunch up (host scheduling)
        self.buf = bytearray()
        self.slips = []
        self.slip = Slip()
        self.line = bytearray()
        self.error = None
        self.paper = True
        self.paper_left = None      # bytes the head can still take before the paper ends
        self.cover_open = False
        self.xoff = False
        self.chinese = True
        self.qr_data = None
        self.received = 0
        self.status_asked = 0
        self.stalls = 0             # times the head stopped for want of paper
        self.rx_log = None          # a list: (monotonic time, bytes) of each read is kept (bench)
        self._cmd = bytearray()
        self._rt = bytearray()      # a real-time command being received
        self._tokens = float(self.burst)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    # -- control (the test's hands) --------------------------------------------
    def start(self):
        self._last = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="printer", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def paper_after(self, nbytes):
        """The roll ends after the head has taken `nbytes` more bytes."""
        with self._lock:
            self.paper_left = nbytes

    def load_paper(self):
        with self._lock:
            self.paper, self.paper_left = True, None

    def set_cover(self, open_):
        with self._lock:
            self.cover_open = bool(open_)

    def power_cycle(self):
        """Off and on: the buffer, a half slip's modes and an error are gone."""
        with self._lock:
            self.buf.clear()
            self._cmd.clear()
            self._rt.clear()
            self.error = None
            self.chinese = True
            self.qr_data = None
            self.xoff = False
            self._send(XON)

    def cut_slips(self):
        with self._lock:
            return list(self.slips)

    # -- the line ------------------------------------------------------------------
    def _send(self, byte):
        self.port.write(bytes((byte,)))

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.port.read(4096)
            except (OSError, TypeError):
                data = b""
            with self._lock:
                now = time.monotonic()
                dt, self._last = now - self._last, now
                if data and self.rx_log is not None:
                    self.rx_log.append((now, bytes(data)))
                self._tokens = min(self.burst, self._tokens + dt * self.baud / 10)
                for b in data:
                    self._receive(b)
                self._head(dt)
                self._flow()
            if not data:
                time.sleep(0.002)

    def _receive(self, b):
        self.received += 1
        self._tokens -= 1
        if self._tokens < 0 and self.error is None:
            self.error = "overspeed: bytes faster than %d baud" % self.baud
        rt = self._rt
        if rt or b == DLE:
            rt.append(b)
            if len(rt) == 2 and b != EOT:
                self._rt = bytearray()
                for x in rt:
                    self._store(x)
            elif len(rt) == 3:
                self._rt = bytearray()
                if 1 <= b <= 4:
                    self._status(b)
                    if self.capacity - len(self.buf) >= 3:
                        self.buf += rt
                else:
                    for x in rt:
                        self._store(x)
            return
        self._store(b)

    def _store(self, b):
        if len(self.buf) >= self.capacity:
            if self.error is None:
                self.error = "overrun: a byte came with the buffer full"
            return
        self.buf.append(b)

    def _flow(self):
        free = self.capacity - len(self.buf)
        if not self.xoff and free <= self.xoff_free:
            self.xoff = True
            self._send(XOFF)
        elif self.xoff and free >= self.xon_free:
            self.xoff = False
            self._send(XON)

    def _status(self, n):
        self.status_asked += 1
        out = not self.paper
        offline = out or self.cover_open or self.error is not None
        if n == 1:
            s = 0x12 | (0x08 if offline else 0)
        elif n == 2:
            s = 0x12 | (0x04 if self.cover_open else 0) | (0x20 if out else 0) | (0x40 if self.error else 0)
        elif n == 3:
            s = 0x12 | (0x20 if self.error else 0)
        else:
            s = 0x12 | (0x6C if out else 0)
        self._send(s)

    # -- the head --------------------------------------------------------------------
    def _head(self, dt):
        budget = max(1, int(dt * self.print_bps))
        while budget > 0 and self.buf and self.error is None and not self.cover_open:
            if self.paper_left is not None and self.paper_left <= 0:
                if self.paper:
                    self.stalls += 1
                self.paper = False
            if not self.paper:
                return
            b = self.buf.pop(0)
            budget -= 1
            if self.paper_left is not None:
                self.paper_left -= 1
            self.slip.raw.append(b)
            self._cmd.append(b)
            try:
                if self._parse(self._cmd):
                    self._cmd = bytearray()
            except ValueError as e:
                self.error = "%s at byte %d of slip %d" % (e, len(self.slip.raw), len(self.slips) + 1)
                return

    def _parse(self, c):
        """Act on the command in c if complete: True; False to wait for more."""
        b = c[0]
        if b == 0x0A:
            self._newline()
            return True
        if b in (0x0D, 0x09):
            return True
        if b == ESC:
            return self._table(c, _ESC, "ESC")
        if b == FS:
            return self._table(c, _FS, "FS")
        if b == GS:
            return self._gs(c)
        if b == DLE:
            if len(c) < 3:
                if len(c) == 2 and c[1] != EOT:
                    raise ValueError("DLE %#x is not a command here" % c[1])
                return False
            if not 1 <= c[2] <= 4:
                raise ValueError("DLE EOT %d" % c[2])
            return True                      # answered when it arrived
        if b < 0x20 or b == 0x7F:
            raise ValueError("stray control byte %#04x" % b)
        if b < 0x80:
            self.line.append(b)
            return True
        if not self.chinese:
            self.line += bytes([b]).decode("cp437").encode("gb18030")
            return True
        return self._hanzi(c)

    def _hanzi(self, c):
        # GB18030: 81-FE then 40-7E/80-FE (two bytes) or 30-39 81-FE 30-39 (four).
        if not 0x81 <= c[0] <= 0xFE:
            raise ValueError("byte %#04x cannot start a GB18030 character" % c[0])
        if len(c) < 2:
            return False
        if 0x30 <= c[1] <= 0x39:
            if len(c) < 4:
                return False
            if not (0x81 <= c[2] <= 0xFE and 0x30 <= c[3] <= 0x39):
                raise ValueError("broken four-byte GB18030 character")
        elif not (0x40 <= c[1] <= 0x7E or 0x80 <= c[1] <= 0xFE):
            raise ValueError("byte %#04x cannot follow %#04x in GB18030" % (c[1], c[0]))
        try:
            bytes(c).decode("gb18030")
        except UnicodeDecodeError:
            raise ValueError("not GB18030: %s" % bytes(c).hex()) from None
        self.line += c
        return True

    def _table(self, c, table, name):
        if len(c) < 2:
            return False
        spec = table.get(c[1])
        if spec is None:
            raise ValueError("unknown command %s %#04x" % (name, c[1]))
        n, allowed = spec
        if len(c) < 2 + n:
            return False
        if allowed is not None and c[2] not in allowed:
            raise ValueError("%s %s: parameter %d out of range" % (name, chr(c[1]), c[2]))
        if name == "ESC" and c[1] == 0x40:
            self.line.clear()
            self.chinese = True         # the memory switch's default
        elif name == "ESC" and c[1] == 0x64:
            self._newline()
        elif name == "FS" and c[1] in (0x26, 0x2E):
            self.chinese = c[1] == 0x26
        return True

    def _gs(self, c):
        if len(c) < 2:
            return False
        f = c[1]
        if f == 0x56:                                   # V cut
            if len(c) < 3:
                return False
            if c[2] in (0, 1, 48, 49):
                self._cut()
                return True
            if c[2] in (65, 66):
                if len(c) < 4:
                    return False
                self._cut()
                return True
            raise ValueError("GS V: cut mode %d" % c[2])
        if f == 0x72:                                   # r transmit status, in order
            if len(c) < 3:
                return False
            if c[2] not in (1, 2, 49, 50):
                raise ValueError("GS r %d" % c[2])
            self._send(0x00 if self.paper else 0x0C)
            return True
        if f == 0x28:                                   # ( k
            if len(c) < 5:
                return False
            if c[2] != 0x6B:
                raise ValueError("GS ( %#04x is not supported" % c[2])
            n = c[3] | c[4] << 8
            if len(c) < 5 + n:
                return False
            self._qr(bytes(c[5:5 + n]))
            return True
        if f == 0x76:                                   # v 0 raster image
            if len(c) < 8:
                return False
            if c[2] != 0x30 or c[3] not in (0, 1, 2, 3, 48, 49, 50, 51):
                raise ValueError("GS v: bad raster header")
            size = (c[4] | c[5] << 8) * (c[6] | c[7] << 8)
            if len(c) < 8 + size:
                return False
            self.slip.images += 1
            return True
        if f == 0x6B:                                   # k barcode
            if len(c) < 3:
                return False
            m = c[2]
            if m <= 6:
                return c[-1] == 0 and len(c) > 3
            if 65 <= m <= 73:
                return len(c) >= 4 and len(c) >= 4 + c[3]
            raise ValueError("GS k: barcode system %d" % m)
        if f == 0x21:
            if len(c) < 3:
                return False
            if (c[2] & 0x0F) > 7 or (c[2] >> 4) > 7:
                raise ValueError("GS !: size %#04x" % c[2])
            return True
        return self._table(c, _GS, "GS")

    def _qr(self, p):
        if len(p) < 3 or p[0] != 49:
            raise ValueError("GS ( k: symbol %r is not QR (49)" % (p[:1],))
        fn = p[1]
        if fn not in _QR_FN:
            raise ValueError("GS ( k: QR function %d" % fn)
        want = _QR_FN[fn]
        if want is not None and len(p) != want:
            raise ValueError("GS ( k: QR function %s takes %d bytes, not %d" % (chr(fn), want, len(p)))
        if fn == 65 and p[2] not in (49, 50, 51):
            raise ValueError("GS ( k: QR model %d" % p[2])
        if fn == 67 and not 1 <= p[2] <= 16:
            raise ValueError("GS ( k: QR module size %d" % p[2])
        if fn == 69 and not 48 <= p[2] <= 51:
            raise ValueError("GS ( k: QR error level %d" % p[2])
        if fn == 80:
            if p[2] != 48 or len(p) < 4:
                raise ValueError("GS ( k: QR store without data")
            self.qr_data = bytes(p[3:])
        if fn == 81:
            if self.qr_data is None:
                raise ValueError("GS ( k: QR print with nothing stored")
            self._newline()
            self.slip.qr.append(self.qr_data.decode("utf-8", "replace"))

    def _newline(self):
        if self.line:
            self.slip.lines.append(bytes(self.line).decode("gb18030"))
            self.line = bytearray()

    def _cut(self):
        self._newline()
        self.slip.cut = True
        self.slips.append(self.slip)
        self.slip = Slip()
