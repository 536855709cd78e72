"""The USB serial console of a production board: no Ctrl-C, no REPL.

On a development board a Ctrl-C on the serial line stops the evaluator and
leaves the REPL open: `mpremote` (and hallctl) read and write every file,
site.json's key and passwords included. A production board (`hallctl
install --production` put PRODUCTION on its flash) that is provisioned
(site.json is there: before that it holds no secret, and provisioning
still needs the REPL) turns keyboard interrupts off, as main.py's first
statement and for good. What arrives on the console is then bytes nobody
runs; it is answered with one line (LOCKED), so hallctl can say what it
met. The way back is a full erase and reflash, which destroys the secrets.
"""
import sys

import micropython

PRODUCTION = "production"      # main.py looks for it (and site.json) before loading this
LOCKED = b"\r\nqinglian: production board, serial REPL off (hallctl flash erases it to reopen)\r\n"
_ANSWER_GAP_MS = 100


def lock():
    micropython.kbd_intr(-1)
    if sys.platform == "linux":
        # The unix port (a simulated board on a pseudo-terminal): there the
        # terminal turns Ctrl-C into a signal; make it a byte, as a board's UART does.
        try:
            import termios
            attrs = termios.tcgetattr(0)
            attrs[3] &= ~1      # ISIG
            termios.tcsetattr(0, termios.TCSANOW, attrs)
        except (ImportError, OSError):
            pass


async def answer():
    """Answer whatever arrives on the console with LOCKED, at most every 100 ms."""
    import select
    from tasks import sleep_ms
    stdin = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
    stdout = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout
    waiting = select.poll()
    waiting.register(stdin, select.POLLIN)
    while True:
        # Polled, as every wait on the device is (tasks.py): a byte is there,
        # or the line closed (POLLHUP), when poll() says so.
        while not waiting.poll(0):
            await sleep_ms(_ANSWER_GAP_MS)
        if not stdin.read(1):
            return           # no console at all (stdin closed)
        await sleep_ms(_ANSWER_GAP_MS)
        while waiting.poll(0):
            # The rest of what came, a byte at a time: a board's stdin.read(n)
            # blocks until n bytes are there.
            if not stdin.read(1):
                return
        stdout.write(LOCKED)
