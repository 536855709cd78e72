"""install and update: bring a board's firmware files to a bundle.

One routine for both. `update` copies a file only when its sha256 on the
board differs (hashed there, so an unchanged 250 KB font never crosses a
slow UART); `install` copies every file, for a new board or a flash you do
not trust. Both check each written file's sha256 on the board, remove the
files an older bundle installed that this one no longer has (as the
board's manifest lists them; nothing else is ever deleted) and write the
manifest last.
"""
import json

from tools.hallctl.bundle import MANIFEST
from tools.hallctl.device import HallctlError

# The device's own state (firmware/evaluator.py, "On flash") and the manifest:
# never copied or removed as bundle files, whatever a hand-edited manifest says.
DEVICE_STATE = ("site.json", "config.json", "boots", "outbox", MANIFEST)


def _is_state(path):
    return path.split("/")[0] in DEVICE_STATE


def installed(board):
    """The manifest on the board: {} when there is none or it is damaged."""
    try:
        m = board.read_json(MANIFEST)
    except ValueError:
        return {}
    return m if isinstance(m, dict) and isinstance(m.get("files"), dict) else {}


def sync(board, want, data, old, copy_all=False, keep=(), progress=None):
    """Bring `board` to the manifest `want` (bundle.manifest, with the bytes
    in `data`) from `old` (installed()). `keep` names bundle files this run
    leaves as they are (the font under --no-font): they stay in the manifest.
    Returns (changed, unchanged, removed), lists of paths."""
    paths = sorted(want["files"])
    bad = [p for p in paths if _is_state(p)]
    if bad:
        raise HallctlError("the bundle must not carry the device's own state: %s" % ", ".join(bad))
    old_files = old.get("files", {})
    files = dict(want["files"])
    files.update((p, old_files[p]) for p in keep if p in old_files and p not in files)
    new = dict(want, files=files)
    have = {} if copy_all else board.sha256(paths)
    changed = [p for p in paths if have.get(p) != files[p]]
    removed = sorted(p for p in set(old_files) - set(files) if not _is_state(p))
    if changed or removed:
        # Until the last file is in, the board says so and still lists what
        # the older bundle installed: an interrupted update can be finished.
        _write_manifest(board, dict(new, files=dict(old_files, **files), partial=True))
    for i, path in enumerate(changed, 1):
        board.write(path, data[path], progress(i, len(changed), path) if progress else None)
        got = board.sha256([path])[path]
        if got != files[path]:
            raise HallctlError("%s on the board does not match what was sent (sha256 %s, expected %s): "
                               "is the flash full or failing? `hallctl info` shows free space; "
                               "run the update again" % (path, (got or "no file")[:12], files[path][:12]))
    if removed:
        board.remove(removed)
    if new != old:
        _write_manifest(board, new)
    return changed, [p for p in paths if p not in changed], removed


def _write_manifest(board, m):
    board.write_atomic(MANIFEST, json.dumps(m, sort_keys=True, separators=(",", ":")).encode())
