"""What goes onto a board: firmware modules, the protocol package, the
micropython-lib modules fetched into build/mplib, the board definition and
the display font; and the manifest that records it on the board.

The manifest (MANIFEST on the board's flash) names the firmware version
(FW in firmware/evaluator.py, what the device reports in status), the
board definition, and every file hallctl put there with its sha256:

    {"firmware": "ql-eval/0.1", "board": "esp32_devkitc",
     "files": {"board.json": "<sha256 hex>", "evaluator.py": "...", ...}}

`info` reads the version from it; `update` removes only files it lists, so
site.json, the outbox and anything a person put on the board are never
touched. While an update runs it carries "partial": true.
"""
import ast
import hashlib
import json
import os
import threading

from tools.procs import MPLIB, ROOT, own_name

FIRMWARE = os.path.join(ROOT, "firmware")
PROTOCOL = os.path.join(ROOT, "protocol")
BOARDS = os.path.join(ROOT, "hardware", "boards")
MANIFEST = "installed.json"
FONT = "font.qlf"
# On flash, it makes a provisioned board close its serial console (firmware/console.py).
PRODUCTION = "production"
PRODUCTION_NOTE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "production.txt")


def board_names():
    return sorted(f[:-5] for f in os.listdir(BOARDS) if f.endswith(".json"))


FONT_CACHE = os.path.join(ROOT, "build", "font")


def font_file(size=16):
    """The display font for every board: all of GB2312, made once per checkout."""
    from tools import fontgen
    path = os.path.join(FONT_CACHE, "gb2312-%d.qlf" % size)
    if not os.path.exists(path):
        os.makedirs(FONT_CACHE, exist_ok=True)
        tmp = own_name(path)
        with open(tmp, "wb") as f:
            f.write(fontgen.build([], size, full=True))
        os.replace(tmp, path)
    return path


_CWD_LOCK = threading.Lock()


class Manifest:
    """firmware/manifest.py run as MicroPython's makemanifest runs it, recording
    what it freezes: the one list of what a board gets."""

    def __init__(self, port="esp32"):
        self.port = port
        self.modules, self.packages, self.requires = [], [], []
        env = {"options": self, "module": lambda name, **kw: self.modules.append(name),
               "package": lambda name, base_path=".", **kw: self.packages.append((name, base_path)),
               "require": lambda name, **kw: self.requires.append(name), "include": lambda *a, **kw: None}
        # makemanifest runs a manifest in its own directory (it lists "."). The
        # working directory is the process's: under one lock, or two threads
        # (boards booting at once) each restore the other's, and the process
        # is left in firmware/, where MicroPython children then import the
        # sources instead of their compiled modules.
        with _CWD_LOCK:
            here = os.getcwd()
            os.chdir(FIRMWARE)
            try:
                with open("manifest.py") as f:
                    exec(compile(f.read(), os.path.join(FIRMWARE, "manifest.py"), "exec"), env)
            finally:
                os.chdir(here)
        self.on_filesystem = tuple(env["ON_FILESYSTEM"])

    def defaults(self, **kw):
        pass  # port is set by the caller, as makemanifest's include(..., port=...) does


def shipped(port="esp32"):
    """[(name on the board, local path)] of the firmware and protocol modules a
    board of `port` runs, from firmware/manifest.py: frozen, or (hallctl install)
    copied beside main.py. Nothing from firmware/sim/ is ever in it."""
    m = Manifest(port)
    out = [(name, os.path.join(FIRMWARE, name)) for name in m.modules + list(m.on_filesystem)]
    for name, base in m.packages:
        pkg = os.path.normpath(os.path.join(FIRMWARE, base, name))
        for f in sorted(os.listdir(pkg)):
            if f.endswith(".py"):
                out.append(("lib/%s/%s" % (name, f), os.path.join(pkg, f)))
    return sorted(out)


def board_port(board):
    with open(os.path.join(BOARDS, board + ".json")) as f:
        return json.load(f)["port"]


def files(board, font=True):
    """[(remote path, local path)] for a board, e.g. 'esp32_devkitc'."""
    if board not in board_names():
        raise ValueError("unknown board %r; known: %s" % (board, ", ".join(board_names())))
    out = shipped(board_port(board))
    for dirpath, _, names in os.walk(MPLIB):
        for name in sorted(names):
            if name.endswith(".py"):
                local = os.path.join(dirpath, name)
                out.append(("lib/" + os.path.relpath(local, MPLIB), local))
    out.append(("board.json", os.path.join(BOARDS, board + ".json")))
    if font:
        out.append((FONT, font_file()))
    return out


def firmware_version(files):
    """FW from the evaluator.py among `files`: the version those files carry."""
    local = dict(files).get("evaluator.py")
    if local is None:
        return None
    with open(local, "rb") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["FW"]:
            return ast.literal_eval(node.value)
    return None


def manifest(board, files):
    """The manifest for `files`, with each file's bytes: ({...}, {remote: bytes})."""
    data = {}
    for remote, local in files:
        with open(local, "rb") as f:
            data[remote] = f.read()
    return {"firmware": firmware_version(files), "board": board,
            "files": {r: hashlib.sha256(b).hexdigest() for r, b in sorted(data.items())}}, data
