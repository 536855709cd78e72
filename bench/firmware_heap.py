"""The evaluator's heap at -X heapsize=64k (issue 7, issue 8's 48 KiB goal):
what the firmware holds after boot and after a run of sessions, its peak, and
the largest block the heap can still give (fragmentation: a redraw needs a
~640-byte block, so a heap with KBs free can still fail).

Two real firmwares in the same run, each against a private Mosquitto and
the test-side agent stand-in (tools/vdevice.py: ROMFS image, simulated board,
littlefs image): the baseline (`--baseline`, default main: its firmware/ and
protocol/ exported with `git archive`) and this tree's. The ROM image and its
interned names are excluded from "in use" (a board keeps both in flash;
tools/vdevice.py adds them to the heap it asks for). "peak" is the most in use
after any session's collection (micropython.mem_peak counts every allocation
the unix port ever made, freed or not, so it says nothing here).

    python -m bench.firmware_heap [--heap 64k] [--sessions 30] [--baseline main|none]
"""
import argparse
import os
import secrets
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from protocol import LEVELS  # noqa: E402
from tools.procs import Mosquitto  # noqa: E402
from tools.vdevice import Acker, DeviceError, VirtualDevice, firmware_romfs, rom_qstr_bytes  # noqa: E402
from edge_agent import config  # noqa: E402
from edge_agent.registry import reason_choices  # noqa: E402

HALL = "bench-hall"
DEV = "ev-heap"
CONFIG = {"window": "A02", "staff": "张三", "staff_no": "7", "prompt_s": 5,
          "targets": {"default": 900}, "warn_pct": 80}
# The reason screen the agent configures by default ([devices] reasons): every
# evaluator holds it; a baseline without the screen keeps it in its config too.
_REASONS = config.validate({"hall": HALL})["devices"]["reasons"]
CONFIG["reasons"] = reason_choices(_REASONS)


def _font(work):
    import subprocess
    path = os.path.join(work, "font.qlf")
    out = subprocess.run([sys.executable, "-m", "tools.fontgen", "-o", path, CONFIG["staff"]],
                         capture_output=True, text=True, cwd=HERE)
    return {"font.qlf": path} if out.returncode == 0 else None


def one_session(vd, i):
    """Session i of a bench run: a call, a pause every fifth, the end, a rating;
    after 不满意/非常不满意 the reason screen: a reason chosen, the page turned,
    another chosen, sent (a baseline without the screen ignores these presses)."""
    vd.call("L%04d" % i)
    if i % 5 == 0:
        vd.staff("pause")
        vd.staff("resume")
    vd.staff("end")
    vd.press(LEVELS[i % 5], ms=20)
    if i % 5 >= 3:
        for key in (LEVELS[0], LEVELS[3], LEVELS[1], LEVELS[4]):
            vd.press(key, ms=20)


def _stats(vd):
    st = vd.stats()
    st.update(vd._rpc({"op": "heap_block"}))     # the simulator's bench op
    return st


def baseline_firmware(work, ref):
    """(rom image, romboot.py) of the firmware at git `ref`: its firmware/ (the
    simulator wherever that tree keeps it) and protocol/, built into a ROM image
    the way tools/vdevice.py builds this tree's."""
    tree = os.path.join(work, "baseline")
    os.makedirs(tree)
    archive = subprocess.run(["git", "archive", ref, "firmware", "protocol"], cwd=HERE,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    real_board = ("manifest.py", "romboot.py", "board_mcu.py", "board_esp32.py", "board_rp2.py")
    srcs, romboot = [], None
    for d, _, names in os.walk(os.path.join(tree, "firmware")):
        for name in sorted(names):
            if name == "romboot.py":
                romboot = os.path.join(d, name)
            if name.endswith(".py") and name not in real_board:
                srcs.append((os.path.join(d, name), name))
    pdir = os.path.join(tree, "protocol")
    srcs += [(os.path.join(pdir, n), "protocol/" + n) for n in sorted(os.listdir(pdir)) if n.endswith(".py")]
    return firmware_romfs(srcs), romboot


def measure(work, port, key, heap, sessions, firmware=(None, None)):
    vd = VirtualDevice(os.path.join(work, DEV), HALL, DEV, key, port, heapsize=heap,
                       site={"long_ms": 150}, files=_font(work), rom=firmware[0], romboot=firmware[1])
    acker = Acker(port, HALL, {DEV: key}, {"*": CONFIG}).start()
    try:
        vd.start()
        extra = os.path.getsize(vd.rom) + rom_qstr_bytes(vd.rom)
        boot = _stats(vd)
        least_free = least_block = None
        most_used = boot["heap_used"]
        for i in range(sessions):
            one_session(vd, i)
            st = _stats(vd)
            most_used = max(most_used, st["heap_used"])
            least_free = st["heap"] if least_free is None else min(least_free, st["heap"])
            least_block = st["heap_block"] if least_block is None else min(least_block, st["heap_block"])
        after = _stats(vd)
    finally:
        vd.stop()
        acker.stop()
    return {"boot_free": boot["heap"], "boot_used": boot["heap_used"] - extra,
            "boot_block": boot["heap_block"],
            "after_free": after["heap"], "after_used": after["heap_used"] - extra,
            "after_block": after["heap_block"],
            "least_free": least_free, "least_block": least_block,
            "peak": max(most_used, after["heap_used"]) - extra,
            "thanks": after["thanks"], "errors": after["errors"]}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.firmware_heap", description=__doc__.split("\n")[0])
    ap.add_argument("--heap", default="64k", help="-X heapsize the firmware gets (default 64k)")
    ap.add_argument("--sessions", type=int, default=30, help="sessions run after boot (default 30)")
    ap.add_argument("--baseline", default="main",
                    help="git ref whose firmware is measured first, in the same run (default main; none: skip)")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench-fwheap-")
    key = secrets.token_bytes(32)
    runs = []
    try:
        if args.baseline != "none":
            runs.append((args.baseline, baseline_firmware(work, args.baseline)))
        runs.append(("this tree", (None, None)))
        for i, (name, firmware) in enumerate(runs):
            run = os.path.join(work, "run-%d" % i)
            os.makedirs(run)
            broker = Mosquitto(os.path.join(run, "broker")).start()
            try:
                r = measure(run, broker.port, key, args.heap, args.sessions, firmware)
                ok = report(name, r, args)     # the last run is this tree's
            except DeviceError as e:
                # Too small a heap for this firmware: say so and go on to the next.
                print("%s: did not boot at -X heapsize=%s (%s)\n"
                      % (name, args.heap, str(e).strip().splitlines()[-1]))
                ok = False
            finally:
                broker.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


def report(name, r, args):
    print("%s: evaluator heap at -X heapsize=%s (bytes; ROM image and its names excluded)" % (name, args.heap))
    print("%-34s %8s %8s %14s" % ("", "in use", "free", "largest free"))
    print("%-34s %8d %8d %14d" % ("after boot", r["boot_used"], r["boot_free"], r["boot_block"]))
    print("%-34s %8d %8d %14d" % ("after %d sessions" % args.sessions, r["after_used"],
                                  r["after_free"], r["after_block"]))
    print("%-34s %8s %8d %14d" % ("least over the sessions", "", r["least_free"] or 0,
                                  r["least_block"] or 0))
    print("peak in use: %d; thanked %d of %d sessions; evaluator errors %d\n"
          % (r["peak"], r["thanks"], args.sessions, r["errors"]))
    return r["thanks"] == args.sessions and not r["errors"]


if __name__ == "__main__":
    sys.exit(main())
