"""A virtual device's flash on a serial port, for the technician's tools.

socat gives the MicroPython unix port a pseudo-terminal; a small boot
script mounts the device's littlefs image at /flash and makes it the
current directory, so mpremote (and hallctl) write into the same flash the
virtual device boots from, exactly as they would over USB to a board.

With `device` (a provisioned tools.vdevice.VirtualDevice) the port is that
device's console while its firmware runs, as a board's USB serial is: a
Ctrl-C on the line interrupts the firmware (the terminal turns it into
SIGINT, as a board's UART driver does) and leaves the REPL open on the
flash, unless the firmware turned keyboard interrupts off (a production
board, firmware/console.py).
"""
import os
import shutil
import time

from tools.procs import MICROPYTHON, Proc, micropython_path
from tools.vdevice import firmware_romfs

_BOOT = """import os, lfsblock
lfsblock.mount(%r, "/flash", 4096, %d)
os.chdir("/flash")
"""

_FIRMWARE_BOOT = """import os
try:
    import romboot
finally:
    os.chdir("/flash")   # the REPL a Ctrl-C leaves open looks at the flash, as on a board
"""


class VirtualSerial:
    def __init__(self, work_dir, image, blocks=256, device=None):
        self.work_dir = work_dir
        self.tty = os.path.join(work_dir, "ttyQL0")
        boot = os.path.join(work_dir, "serial_boot.py")
        with open(boot, "w") as f:
            f.write(_FIRMWARE_BOOT if device else _BOOT % (image, blocks))
        socat = shutil.which("socat") or "/usr/bin/socat"
        if device:
            device.image = image
            device.rom = firmware_romfs()
            argv, env, pty = device._argv("-i", boot), device._env(), "pty,setsid,ctty,raw,echo=0,isig"
        else:
            argv, env, pty = [MICROPYTHON, "-i", boot], {"MICROPYPATH": micropython_path()}, "pty,raw,echo=0"
        self.device = device
        self.proc = Proc("serial", [socat, "PTY,link=%s,raw,echo=0" % self.tty,
                                    "EXEC:%s,%s" % (" ".join(argv), pty)], work_dir, env=env)

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
