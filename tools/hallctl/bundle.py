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
import os

from tools.procs import MPLIB, ROOT

FIRMWARE = os.path.join(ROOT, "firmware")
PROTOCOL = os.path.join(ROOT, "protocol")
BOARDS = os.path.join(ROOT, "hardware", "boards")
# Host-only pieces: the simulator and its block device never ship.
HOST_ONLY = ("board_sim.py", "lfsblock.py", "manifest.py")
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
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(fontgen.build([], size, full=True))
        os.rename(tmp, path)
    return path


def files(board, font=True):
    """[(remote path, local path)] for a board, e.g. 'esp32_devkitc'."""
    if board not in board_names():
        raise ValueError("unknown board %r; known: %s" % (board, ", ".join(board_names())))
    out = []
    for name in sorted(os.listdir(FIRMWARE)):
        if name.endswith(".py") and name not in HOST_ONLY:
            out.append((name, os.path.join(FIRMWARE, name)))
    for name in sorted(os.listdir(PROTOCOL)):
        if name.endswith(".py"):
            out.append(("lib/protocol/" + name, os.path.join(PROTOCOL, name)))
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
