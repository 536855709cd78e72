"""A virtual device's flash on a serial port, for the technician's tools.

socat gives the MicroPython unix port a pseudo-terminal; a small boot
script mounts the device's littlefs image at /flash and makes it the
current directory, so mpremote (and hallctl) write into the same flash the
virtual device boots from, exactly as they would over USB to a board.
"""
import os
import shutil
import time

from tools.procs import MICROPYTHON, Proc, micropython_path

_BOOT = """import os, lfsblock
lfsblock.mount(%r, "/flash", 4096, %d)
os.chdir("/flash")
"""


class VirtualSerial:
    def __init__(self, work_dir, image, blocks=256):
        self.work_dir = work_dir
        self.tty = os.path.join(work_dir, "ttyQL0")
        boot = os.path.join(work_dir, "serial_boot.py")
        with open(boot, "w") as f:
            f.write(_BOOT % (image, blocks))
        socat = shutil.which("socat") or "/usr/bin/socat"
        self.proc = Proc("serial", [
            socat, "PTY,link=%s,raw,echo=0" % self.tty,
            "EXEC:%s -i %s,pty,raw,echo=0" % (MICROPYTHON, boot)],
            work_dir, env={"MICROPYPATH": micropython_path()})

    def start(self, timeout=10):
        self.proc.start()
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.tty):
            if time.monotonic() > deadline or not self.proc.alive():
                raise RuntimeError("socat did not make %s: %s" % (self.tty, self.proc.log()))
            time.sleep(0.05)
        time.sleep(0.3)  # the interpreter's banner and the mount
        return self

    def stop(self):
        # The unix port writes through on every block: no sync needed before the kill.
        self.proc.stop()
