"""A MicroPython board on a serial port, through mpremote's own transport.

Raw REPL without a soft reset (`resume`), so a board keeps its mounts and
a unix-port virtual device keeps running. Every failure becomes one
HallctlError with a sentence a technician can act on.
"""
import contextlib
import io
import json
import os
import time

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport


class HallctlError(Exception):
    pass


class ProductionBoard(HallctlError):
    """The board answered that its serial REPL is off (firmware/console.py)."""


# What a production board answers on its console (console.LOCKED).
_LOCKED = "production board, serial REPL off"


class Board:
    def __init__(self, port, baudrate=115200):
        if not os.path.exists(port):
            raise HallctlError("no serial port %s: is the board plugged in? (`hallctl ports` lists them)" % port)
        try:
            self.t = SerialTransport(port, baudrate=baudrate)
        except TransportError:
            raise HallctlError("cannot open %s: another program holds it (a serial monitor, "
                               "another hallctl?). Close it and try again." % port)
        said = io.StringIO()
        try:
            locked = self._answers_locked()
            if not locked:
                with contextlib.redirect_stdout(said):   # mpremote prints what it got instead
                    self.t.enter_raw_repl(soft_reset=False)
        except TransportError:
            locked = False
        if locked or _LOCKED in said.getvalue():
            self.t.close()
            raise ProductionBoard(
                "%s is a production board: its serial REPL is off, nothing on it can be read or "
                "changed over USB. The way back: hallctl flash %s --firmware FILE (erases the flash, "
                "key and passwords included), then install and provision again" % (port, port))
        if not self.t.in_raw_repl:
            self.t.close()
            raise HallctlError("%s does not answer like a MicroPython board (no raw REPL). "
                               "Flash MicroPython first: hallctl flash %s --firmware FILE" % (port, port))

    def _answers_locked(self, wait=2.0):
        """Ctrl-C and a short look at the answer: a production board says so at once
        (firmware/console.py); any other stops at a REPL prompt, and mpremote takes over."""
        serial = self.t.serial
        serial.write(b"\r\x03")
        seen, deadline = b"", time.monotonic() + wait
        while time.monotonic() < deadline:
            n = serial.in_waiting
            if n:
                seen += serial.read(n)
                if _LOCKED.encode() in seen:
                    return True
                if seen.endswith(b">") or seen.endswith(b">>> "):
                    return False
            else:
                time.sleep(0.02)
        return False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.t.exit_raw_repl()
        except Exception:
            pass  # a board that went away mid-command is already closed for us
        self.t.close()

    def exec(self, code):
        try:
            return self.t.exec(code)
        except TransportError as e:
            raise HallctlError("the board refused: %s" % _last_line(e))

    def makedirs(self, path):
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if not self.t.fs_exists(d):
                self.t.fs_mkdir(d)

    def write(self, remote, data, progress=None):
        d = os.path.dirname(remote)
        try:
            if d:
                self.makedirs(d)
            self.t.fs_writefile(remote, data, progress_callback=progress)
        except TransportError as e:
            raise HallctlError("writing %s failed: %s" % (remote, _last_line(e)))

    def write_atomic(self, remote, data):
        """Written aside and renamed (atomic on littlefs): a cut cable leaves the
        old file or the new one, never half of one."""
        self.write(remote + ".tmp", data)
        try:
            size = self.t.fs_stat(remote + ".tmp").st_size
        except (TransportError, OSError) as e:
            raise HallctlError("writing %s failed: %s" % (remote, _last_line(e)))
        if size != len(data):   # all of it is there before it takes the name
            raise HallctlError("writing %s failed: %d of %d bytes arrived" % (remote, size, len(data)))
        self.rename(remote + ".tmp", remote)

    def read(self, remote):
        try:
            return self.t.fs_readfile(remote)
        except TransportError as e:
            raise HallctlError("reading %s failed: %s" % (remote, _last_line(e)))

    def read_json(self, remote):
        """A JSON file on the board; None when it is not there, ValueError when damaged."""
        out = self.exec("try:\n f=open(%r)\nexcept OSError:\n f=None\nif f:\n with f:\n"
                        "  while 1:\n   b=f.read(256)\n   if not b:break\n   print(b,end='')" % remote)
        return json.loads(out) if out.strip() else None

    def sha256(self, paths):
        """{path: hex sha256 of the file on the board, or None when missing}.
        Hashed on the board in small pieces: only 64 characters a file cross the UART."""
        out = {}
        for i in range(0, len(paths), 16):  # a bounded program on a small heap
            part = paths[i:i + 16]
            lines = self.exec(_SHA256 + "for p in %r:\n _ql_sha(p)\ndel _ql_sha" % (part,)).split()
            if len(lines) != len(part):
                raise HallctlError("the board answered %d hashes for %d files" % (len(lines), len(part)))
            out.update((p, None if h == b"-" else h.decode()) for p, h in zip(part, lines))
        return out

    def remove(self, paths):
        """Delete files (gone already is fine), then their directories if that left them empty."""
        self.exec("import os\nfor p in %r:\n try:\n  os.remove(p)\n except OSError:\n  pass\n"
                  "for d in %r:\n try:\n  os.rmdir(d)\n except OSError:\n  pass" % (
                      list(paths), _parents(paths)))

    def rename(self, old, new):
        self.exec("import os\nos.rename(%r, %r)" % (old, new))


# Runs on the board: one file's sha256, read into a 512-byte buffer.
_SHA256 = """import hashlib, binascii
def _ql_sha(p, b=bytearray(512)):
    try:
        f = open(p, 'rb')
    except OSError:
        print('-')
        return
    h = hashlib.sha256()
    m = memoryview(b)
    with f:
        while 1:
            n = f.readinto(b)
            if not n:
                break
            h.update(m[:n])
    print(binascii.hexlify(h.digest()).decode())
"""


def _parents(paths):
    """Every directory above the paths, deepest first."""
    dirs = set()
    for p in paths:
        d = os.path.dirname(p)
        while d:
            dirs.add(d)
            d = os.path.dirname(d)
    return sorted(dirs, key=lambda d: -d.count("/"))


def _last_line(e):
    text = " ".join(str(a) for a in e.args if a)
    lines = [ln for ln in text.replace("\\r", "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no answer"
