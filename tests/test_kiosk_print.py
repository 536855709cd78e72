"""Printing exactly once, on the real parts (tests/kiosk_rig.py: the real
agent renders each job from its templates, the real county's cases and
rating links): paper running out mid-job (held, the alarm on the lobby
screen in Chromium, resumed, printed once), power cuts at random points of
printing (no job printed twice, every thanked rating at the county),
scanner garbage (a message, nothing printed, nothing crashes), and the
printer sim itself: taking what the agent's templates emit, refusing what a
real printer would choke on."""
import os
import random
import threading
import time

import pytest

from edge_agent import slips
from harness import wait_for
from hardware.sim.printer import Printer
from kiosk_rig import CASES, Hall, drained, ratings, ready, wait_state
from test_agent_kiosk_screen import CHROMIUM, dom
from tools.vdevice import DeviceError

SLOW = {"print_bps": 800, "buffer": 1024, "xoff_free": 512, "xon_free": 768}


@pytest.fixture
def hall(tmp_path):
    # A slow head and a small buffer: the job outruns the paper and flow control matters.
    h = Hall(tmp_path, printer_opts=SLOW)
    try:
        ready(h.kiosk)
        yield h
    finally:
        h.stop()


def _jobs_on_paper(printer):
    """job id -> number of slips that carry it (the slip's number, 凭条号, is its job)."""
    count = {}
    for s in printer.cut_slips() + [printer.slip]:
        for line in s.lines:
            if line.startswith("凭条号:"):
                job = line[len("凭条号:"):]
                count[job] = count.get(job, 0) + 1
    return count


def _alarm_on_screen(hall, tmp_path):
    page = dom(hall.whole.screen_url, tmp_path)
    return 'data-window="K01"' in page and 'data-alarm="paper_out"' in page


def test_paper_out_mid_job_is_held_alarmed_and_printed_once(hall, tmp_path):
    vk, pr = hall.kiosk, hall.kiosk.printer
    pr.paper_after(150)
    vk.scan("KC2026000777")
    wait_state(vk, "case")
    vk.tap("print")
    wait_for(lambda: "缺纸，请稍候" in vk.lines(), 30, what="out of paper on screen")
    wait_for(lambda: vk.stats()["printer"] == "paper_out", 10, what="paper_out reported")
    if CHROMIUM:        # the hall manager sees it on the lobby screen, in a real browser
        wait_for(lambda: _alarm_on_screen(hall, tmp_path), 60, 1, what="the paper alarm on the lobby screen")
    assert vk.state() == "printing" and pr.error is None and not pr.cut_slips()
    pr.load_paper()
    wait_for(lambda: vk.stats()["printed"] == 1, 60, what="printed after the paper came back")
    assert pr.error is None
    slips_ = pr.cut_slips()
    assert len(slips_) == 1 and "承诺办结:2026-10-16" in slips_[0].text
    assert list(_jobs_on_paper(pr).values()) == [1]
    wait_state(vk, "prompt", 20)
    vk.tap("satisfied")
    drained(vk)
    assert [p["state"] for p in hall.of_kind("printer")] == ["ok", "paper_out", "ok"]
    assert [p["result"] for p in hall.of_kind("print")] == ["ok"]
    assert pr.stalls == 1
    if CHROMIUM:
        wait_for(lambda: not _alarm_on_screen(hall, tmp_path), 60, 1, what="the alarm gone from the screen")
    assert [p["result"] for p in hall.wait_county("print", 1)] == ["ok"]


def power_cuts(hall, n, seed):
    vk, pr = hall.kiosk, hall.kiosk.printer
    rnd = random.Random(seed)
    thanked, cuts = {}, 0
    for _ in range(n):
        if not vk.alive():
            vk.start()
            ready(vk, 60)
        try:
            vk.scan(rnd.choice(sorted(CASES)))
            wait_state(vk, "case")
            vk.tap("print")
            cut = threading.Timer(rnd.uniform(0.1, 2.0), vk.kill)
            cut.start()
            wait_state(vk, ("prompt", "message"), 30)
            wait_state(vk, "prompt", 30)
            st = vk.stats()
            level = rnd.choice(["very_satisfied", "satisfied", "dissatisfied"])
            vk.tap(level)
            if vk.stats()["thanks"] == st["thanks"] + 1:
                thanked[st["session"]] = level
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
    assert all(c == 1 for c in on_paper.values()), on_paper
    prints = {}
    for p in hall.of_kind("print"):
        prints.setdefault(p["job"], []).append(p["result"])
    assert all(len(r) == 1 for r in prints.values()), prints       # one report per job
    for job in on_paper:
        assert job in prints and job in hall.jobs()
    got = ratings(hall.of_kind("rating"))
    assert all(len(v) == 1 for v in got.values())
    for s, level in thanked.items():
        assert got.get(s) == [level]
    # Every thanked rating at the county, once; every print report too.
    hall.wait_county("rating", len(got), 120)
    assert ratings(hall.at_county("rating")) == got
    hall.wait_county("print", len(prints), 60)
    assert sorted(p["job"] for p in hall.at_county("print")) == sorted(prints)
    print("power cuts %d, jobs %d (on paper %d), cut short %d, thanked %d"
          % (cuts, len(prints), len(on_paper), sum(r == ["cut_short"] for r in prints.values()), len(thanked)))
    return cuts


def test_power_cuts_while_printing_never_print_a_job_twice(hall):
    power_cuts(hall, int(os.environ.get("QL_KIOSK_CUTS", "12")), int(os.environ.get("QL_KIOSK_SEED", "3")))


@pytest.mark.soak
def test_thirty_power_cuts_while_printing(hall):
    assert power_cuts(hall, int(os.environ.get("QL_KIOSK_SOAK_CUTS", "30")), 30) > 0


def test_scanner_garbage_says_so_and_prints_nothing(hall):
    vk, pr = hall.kiosk, hall.kiosk.printer
    vk.scanner.noise(300, seed=1)
    wait_for(lambda: vk.stats()["garbage"] >= 1, 20, what="noise seen")
    assert "无法识别，请重扫" in vk.lines() or vk.state() == "idle"
    vk.scanner.long_line(700)
    wait_for(lambda: vk.stats()["garbage"] >= 2, 20, what="an over-long line seen")
    vk.scan("KC 2026")                              # a space: no case number has one
    wait_for(lambda: vk.stats()["garbage"] >= 3, 20, what="a bad code seen")
    wait_state(vk, "idle", 20)
    st = vk.stats()
    assert st["session"] is None and st["printed"] == 0 and vk.alive()
    vk.scan("KC2026000123")                         # and it still works
    wait_state(vk, "case")
    assert pr.received == 0 or not pr.cut_slips()


def test_a_job_the_agent_no_longer_serves_prints_nothing_and_is_reported_cancelled(hall):
    """job_done (or any refusal) on a chunk: nothing reaches the printer, the job is `cancelled`."""
    vk, pr = hall.kiosk, hall.kiosk.printer
    vk.scan("KC2026000123")
    wait_state(vk, "case")
    # The agent ends every job the moment it is made (as if its print event had
    # come): a trigger in its store, so no chunk is ever served, however fast.
    import sqlite3

    def trigger(sql):
        db = sqlite3.connect(hall.db_path, timeout=30)
        try:
            db.execute(sql)
            db.commit()
        finally:
            db.close()
    trigger("CREATE TRIGGER test_end_jobs AFTER INSERT ON print_jobs BEGIN "
            "UPDATE print_jobs SET done_ms = 1 WHERE job = NEW.job; END")
    try:
        vk.tap("print")
        wait_for(lambda: "暂时无法打印" in vk.lines() or vk.state() == "prompt", 60, 0.05,
                 what="cannot print now, then the prompt")
    finally:
        trigger("DROP TRIGGER test_end_jobs")
    wait_state(vk, "prompt", 20)
    vk.tap("satisfied")
    drained(vk)
    assert [p["result"] for p in hall.of_kind("print")] == ["cancelled"]
    # The printer heard only status questions (DLE EOT n), and printed nothing.
    assert not pr.cut_slips() and not pr.slip.lines and not pr.slip.qr
    assert not bytes(pr.slip.raw).replace(b"\x10\x04\x01", b"").replace(b"\x10\x04\x04", b"")


@pytest.mark.parametrize("doc", slips.DOCS)
@pytest.mark.parametrize("state, light", [("in_review", "yellow"), ("ready", None), ("accepted", "red")])
def test_the_printer_sim_takes_what_the_agents_templates_emit(doc, state, light):
    row = {"case": "KC2026000123", "item": "431100-001", "item_name": "食品经营许可(延续)", "state": state,
           "accepted": "2026-09-21", "promised": "2026-09-29", "light": light,
           "rate_url": "http://127.0.0.1:9/r/ks-hall/case/KC2026000123/" + "0a" * 16}
    data = slips.render(doc, row, "ks-hall", 1790000000000, 1790000000000, job="19a-0123456789ab")
    assert data.startswith(b"\x1b@\x1c&")                # ESC @, FS &: Chinese mode (GB18030)
    pr = Printer(_Port(), print_bps=10 ** 9)
    pr._last = time.monotonic()
    for b in data:
        pr._receive(b)
    pr._head(1.0)
    assert pr.error is None, pr.error
    (slip,) = pr.slips
    assert slip.cut and slip.qr == [row["rate_url"]]
    assert "KC2026000123" in slip.text and "食品经营许可(延续)" in slip.text and "凭条号:19a-0123456789ab" in slip.text
    # The same stream with one byte broken is refused, as the real printer would stop.
    bad = Printer(_Port(), print_bps=10 ** 9)
    bad._last = time.monotonic()
    for b in data.replace(b"\x1ba", b"\x1ba\x07", 1):
        bad._receive(b)
    bad._head(1.0)
    assert bad.error and "out of range" in bad.error


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
