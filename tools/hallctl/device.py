"""A MicroPython board on a serial port, through mpremote's own transport.

Raw REPL without a soft reset (`resume`), so a board keeps its mounts and
a unix-port virtual device keeps running. Every failure becomes one
HallctlError with a sentence a technician can act on.
"""
import os

from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport


class HallctlError(Exception):
    pass


class Board:
    def __init__(self, port, baudrate=115200):
        if not os.path.exists(port):
            raise HallctlError("no serial port %s: is the board plugged in? (`hallctl ports` lists them)" % port)
        try:
            self.t = SerialTransport(port, baudrate=baudrate)
        except TransportError:
            raise HallctlError("cannot open %s: another program holds it (a serial monitor, "
                               "another hallctl?). Close it and try again." % port)
        try:
            self.t.enter_raw_repl(soft_reset=False)
        except TransportError:
            self.t.close()
            raise HallctlError("%s does not answer like a MicroPython board (no raw REPL). "
                               "Flash MicroPython first: hallctl flash %s --firmware FILE" % (port, port))

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

    def read(self, remote):
        try:
            return self.t.fs_readfile(remote)
        except TransportError as e:
            raise HallctlError("reading %s failed: %s" % (remote, _last_line(e)))


def _last_line(e):
    text = " ".join(str(a) for a in e.args if a)
    lines = [ln for ln in text.replace("\\r", "").splitlines() if ln.strip()]
    return lines[-1] if lines else "no answer"
