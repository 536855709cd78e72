"""What goes onto a board: firmware modules, the protocol package, the
micropython-lib modules fetched into build/mplib, the board definition."""
import os

from tools.procs import MPLIB, ROOT

FIRMWARE = os.path.join(ROOT, "firmware")
PROTOCOL = os.path.join(ROOT, "protocol")
BOARDS = os.path.join(ROOT, "hardware", "boards")
# Host-only pieces: the simulator and its block device never ship.
HOST_ONLY = ("board_sim.py", "lfsblock.py", "manifest.py")


def board_names():
    return sorted(f[:-5] for f in os.listdir(BOARDS) if f.endswith(".json"))


def files(board):
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
    return out
