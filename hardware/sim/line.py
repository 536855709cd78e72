"""A serial line between a simulated board and a simulated part: two linked
pseudo-terminals made by socat (`<name>.dev` for the board's UART, `<name>.host`
for the part's pyserial), both raw, so every byte crosses unchanged, and a
reader that stops reading stops the writer (the kernel's buffers fill)."""
import os
import shutil
import time

import serial

from tools.procs import Proc


class Line:
    def __init__(self, work_dir, name):
        os.makedirs(work_dir, exist_ok=True)
        self.dev = os.path.join(work_dir, name + ".dev")
        self.host = os.path.join(work_dir, name + ".host")
        socat = shutil.which("socat") or "/usr/bin/socat"
        self.proc = Proc("line-" + name, [socat, "PTY,link=%s,raw,echo=0" % self.dev,
                                          "PTY,link=%s,raw,echo=0" % self.host], work_dir)
        self.port = None
        self._hold = None

    def open(self, baud, timeout=10):
        """Start the line; return the host end as a pyserial port (non-blocking reads)."""
        for p in (self.dev, self.host):
            if os.path.lexists(p):
                os.remove(p)
        self.proc.start()
        deadline = time.monotonic() + timeout
        while not (os.path.exists(self.dev) and os.path.exists(self.host)):
            if time.monotonic() > deadline or not self.proc.alive():
                raise RuntimeError("socat made no line: %s" % self.proc.log())
            time.sleep(0.02)
        # Held open for the line's life: a board that loses power closes its end,
        # and socat would take the last close for the end of the line.
        self._hold = os.open(self.dev, os.O_RDWR | os.O_NOCTTY)
        # The baud on a PTY carries nothing: the parts pace the wire themselves.
        self.port = serial.Serial(self.host, baudrate=baud, timeout=0, xonxoff=False, rtscts=False)
        return self.port

    def close(self):
        if self.port is not None:
            self.port.close()
            self.port = None
        if self._hold is not None:
            os.close(self._hold)
            self._hold = None
        self.proc.stop()
