"""Printing exactly once: paper running out mid-job (held, alarm, resumed,
printed once), power cuts at random points of printing (no job printed
twice, every thanked rating at the agent), scanner garbage (a message,
nothing printed, nothing crashes), and the printer sim itself refusing what
a real printer would choke on."""
import os
import random
import threading
import time

import pytest

from harness import wait_for
from hardware.sim.printer import Printer
from kiosk_rig import Hall, drained, ready, wait_state
from tools.vdevice import DeviceError


@pytest.fixture
def hall(tmp_path):
    # A slow head and a small buffer: the job outruns the paper and flow control matters.
    h = Hall(tmp_path, printer_opts={"print_bps": 800, "buffer": 1024, "xoff_free": 512, "xon_free": 768})
    try:
        h.kiosk.start()
        ready(h.kiosk)
        yield h
    finally:
        h.stop()


def _jobs_on_paper(printer):
    """job id -> number of slips that carry it (the stand-in prints `job <id>`)."""
    count = {}
    for s in printer.cut_slips() + [printer.slip]:
        for line in s.lines:
            if line.startswith("job "):
                count[line[4:]] = count.get(line[4:], 0) + 1
    return count


def test_paper_out_mid_job_is_held_and_printed_once(hall):
    vk, pr = hall.kiosk, hall.kiosk.printer
    pr.paper_after(150)
    vk.scan("KC2025000777")
    wait_state(vk, "case")
    vk.tap("print")
    wait_for(lambda: "缺纸，请稍候" in vk.lines(), 30, what="out of paper on screen")
    wait_for(lambda: vk.stats()["printer"] == "paper_out", 10, what="paper_out reported")
    time.sleep(2)
    assert vk.state() == "printing" and pr.error is None and not pr.cut_slips()
    pr.load_paper()
    wait_for(lambda: vk.stats()["printed"] == 1, 60, what="printed after the paper came back")
    assert pr.error is None
    slips = pr.cut_slips()
    assert len(slips) == 1 and "2025-12-01" in slips[0].text
    assert list(_jobs_on_paper(pr).values()) == [1]
    wait_state(vk, "prompt", 20)
    vk.tap("satisfied")
    drained(vk)
    assert [p["state"] for p in hall.agent.of_kind("printer")] == ["ok", "paper_out", "ok"]
    assert [p["result"] for p in hall.agent.of_kind("print")] == ["ok"]
    assert pr.stalls == 1


def test_power_cuts_while_printing_never_print_a_job_twice(hall):
    vk, pr = hall.kiosk, hall.kiosk.printer
    rnd = random.Random(int(os.environ.get("QL_KIOSK_SEED", "3")))
    thanked, cuts = {}, 0
    for _ in range(int(os.environ.get("QL_KIOSK_CUTS", "12"))):
        if not vk.alive():
            vk.start()
            ready(vk, 60)
        try:
            vk.scan(rnd.choice(["KC2025000123", "KC2025000777", "4401202500042"]))
            wait_state(vk, "case")
            vk.tap("print")
            cut = threading.Timer(rnd.uniform(0.1, 2.0), vk.kill)
            cut.start()
            wait_state(vk, ("prompt", "message"), 30)
            wait_state(vk, "prompt", 30)
            session = vk.stats()["session"]
            level = rnd.choice(["very_satisfied", "satisfied", "dissatisfied"])
            vk.tap(level)
            if "谢谢您的评价" in vk.lines():
                thanked[session] = level
            cut.join()
        except (DeviceError, TimeoutError):
            pass
        cuts += not vk.alive()
    if not vk.alive():
        vk.start()
        ready(vk, 60)
    drained(vk)
    assert pr.error is None
    on_paper = _jobs_on_paper(pr)
    assert all(n == 1 for n in on_paper.values()), on_paper
    prints = {}
    for p in hall.agent.of_kind("print"):
        prints.setdefault(p["job"], []).append(p["result"])
    assert all(len(r) == 1 for r in prints.values()), prints       # one report per job
    for job, n in on_paper.items():
        assert job in prints
    ratings = {}
    for r in hall.agent.of_kind("rating"):
        ratings.setdefault(r["session"], []).append(r["level"])
    for s, level in thanked.items():
        assert ratings.get(s) == [level]
    assert all(len(v) == 1 for v in ratings.values())
    print("power cuts %d, jobs %d, cut short %d"
          % (cuts, len(prints), sum(r == ["cut_short"] for r in prints.values())))


def test_scanner_garbage_says_so_and_prints_nothing(hall):
    vk, pr = hall.kiosk, hall.kiosk.printer
    vk.scanner.noise(300, seed=1)
    wait_for(lambda: vk.stats()["garbage"] >= 1, 20, what="noise seen")
    assert "无法识别，请重扫" in vk.lines() or vk.state() == "idle"
    vk.scanner.long_line(700)
    wait_for(lambda: vk.stats()["garbage"] >= 2, 20, what="an over-long line seen")
    vk.scan("KC 2025")                              # a space: no case number has one
    wait_for(lambda: vk.stats()["garbage"] >= 3, 20, what="a bad code seen")
    wait_state(vk, "idle", 20)
    st = vk.stats()
    assert st["session"] is None and st["printed"] == 0 and vk.alive()
    vk.scan("KC2025000123")                         # and it still works
    wait_state(vk, "case")
    assert pr.received == 0 or not pr.cut_slips()


class _Port:
    def __init__(self):
        self.out = bytearray()

    def write(self, b):
        self.out += b


@pytest.mark.parametrize("data, why", [
    (b"\x1b\x99", "unknown command ESC"),
    (b"\x1ba\x07", "parameter 7 out of range"),
    (b"\x1dV\x05", "cut mode 5"),
    (b"\x1d(k\x04\x001C\x06\x00", "takes 3 bytes"),
    (b"\x1d(k\x03\x001Q0", "nothing stored"),
    (b"\x1d(k\x03\x002A2", "not QR"),
    (b"\xb0\x20", "cannot follow"),
    (b"\x80", "cannot start"),
    (b"abc\x07", "stray control byte"),
    (b"\x10\x05\x01", "not a command"),
])
def test_printer_sim_refuses_malformed_sequences(data, why):
    pr = Printer(_Port(), print_bps=10 ** 9)
    pr._last = time.monotonic()
    for b in data:
        pr._receive(b)
    pr._head(1.0)
    assert pr.error and why in pr.error
    pr._status(1)
    assert pr.port.out[-1] & 0x08                    # offline


def test_printer_sim_status_flow_and_overrun():
    pr = Printer(_Port(), baud=115200, buffer=100, xoff_free=40, xon_free=60, print_bps=1)
    pr._last = time.monotonic()
    for n, want in ((1, 0x12), (2, 0x12), (3, 0x12), (4, 0x12)):
        pr._status(n)
        assert pr.port.out[-1] == want
    for b in b"x" * 60:
        pr._receive(b)
    pr._flow()
    assert pr.port.out[-1] == 0x13                   # XOFF
    for b in b"\x10\x04\x04":                         # real-time: answered even now
        pr._receive(b)
    assert pr.port.out[-1] == 0x12
    for b in b"y" * 50:
        pr._receive(b)
    assert pr.error.startswith("overrun")
    pr.paper, pr.error = False, None
    pr._status(4)
    assert pr.port.out[-1] == 0x7E
