"""What the device does every second or every event must not grow its heap
for good. MicroPython interns a one-character str (iterating or indexing a
str makes them) as a qstr that is never freed, and when a qstr pool is full
the next one is a fresh block of kilobytes: on the 64 KiB evaluator that
was the redraw's MemoryError ("allocating 640 bytes") and a 7 KB pool
started by the first sealed config the device checked.

Runs the firmware's text, validation and MAC code under the real MicroPython
unix port and counts the qstrs before and after."""
import os
import re
import subprocess

from harness import MICROPYTHON, micropython_path

_SNIPPET = r"""
import framebuf, micropython
import cjkfont
from board import TextDisplay
from protocol import events, mac, topics
import desk, ui

def qstrs():
    micropython.qstr_info()

fb = framebuf.FrameBuffer(bytearray(1024), 128, 64, framebuf.MONO_VLSB)
d = TextDisplay(fb)
cjkfont.use(FONT)
ev = {"v": 1, "device": "ev-qx", "seq": 1, "kind": "rating", "t": 0, "level": "satisfied",
      "channel": "window", "session": "ev-qx-1-1", "window": "A07"}
key = bytes(32)
# The reason screen (issue 14): the config's rule, its rows, the codes sent.
choices = ["attitude \u6001\u5ea6\u4e0d\u597d", "slow \u529e\u4e8b\u592a\u6162", "wait \u6392\u961f",
           "other \u5176\u4ed6"]
cfg = {"reasons": choices}
dk = desk.Desk("ev-qx", 1)
dk.state = 5
def reasons(first, chosen):
    events.clean_config(cfg)
    dk.first, dk.reasons = first, chosen
    for s in ui.rows(dk, cfg, "A07", 0):
        d.text(s, 0, 32)
    for s in choices:
        s[:s.find(" ")]
def work(name):
    reasons(0, 5)
    reasons(3, 8)
    d.text(name, 0, 0)
    d.text("A07 " + name + " No.1024", 0, 16)
    cjkfont.width(name)
    events.encode(ev, key)
    topics.valid_id("ev-qx-hjkpqwyz")
    m = mac.sign(key, b"x")
    mac.equal(m, mac.sign(key, b"y"))
qstrs()
for name in ("\u5f20\u4e09", "\u674e\u56db", "\u738b\u4e94\u516d", "\u8d75\u94b1\u5b59\u674e"):
    ev["staff"] = name
    work(name)
qstrs()
"""


def test_text_validation_and_macs_intern_no_qstrs(tmp_path):
    import sys
    font = str(tmp_path / "font.qlf")
    subprocess.run([sys.executable, "-m", "tools.fontgen", "-o", font,
                    "\u5f20\u4e09\u674e\u56db\u738b\u4e94\u516d\u8d75\u94b1\u5b59"],
                   check=True, capture_output=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    code = "FONT = %r\n" % font + _SNIPPET
    out = subprocess.run([MICROPYTHON, "-c", code], env=dict(os.environ, MICROPYPATH=micropython_path()),
                         capture_output=True, text=True, timeout=60)
    counts = [int(n) for n in re.findall(r"n_qstr=(\d+)", out.stdout)]
    assert out.returncode == 0 and len(counts) == 2, out.stdout + out.stderr
    assert counts[1] == counts[0], "new names, new device ids and MACs interned %d qstrs" % (
        counts[1] - counts[0])


def test_state_consts_match_the_desk():
    # The evaluator and the screen name the desk's states as its own `_X = const(n)` (no
    # global on the device); they must stay desk.py's numbers.
    import ast

    def consts(name):
        with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "firmware", name)) as f:
            tree = ast.parse(f.read())
        return {n.targets[0].id.lstrip("_"): n.value.args[0].value for n in tree.body
                if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
                and getattr(n.value.func, "id", None) == "const"}

    desk = consts("desk.py")
    for mod in ("evaluator.py", "ui.py"):
        mine = consts(mod)
        states = [k for k in mine if k in ("IDLE", "SERVING", "PAUSED", "PROMPT", "THANKS", "REASONS")]
        assert states, mod
        for k in states:
            assert mine[k] == desk[k], (mod, k)
