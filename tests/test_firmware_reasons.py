"""The 差评 reason screen (issue 14): after 不满意/非常不满意 the evaluator shows
the reasons the agent's config lists, three a page; buttons 1-3 choose the
reason on their row, 4 turns the page, 5 sends; a timeout or the staff key
sends what was chosen. The press is on flash (its journal) before the screen
shows: a power cut while the citizen chooses loses nothing and counts once.

Real firmware under the MicroPython unix port at -X heapsize=64k (and the
48 KiB run), the simulated board, a real Mosquitto, and the test-side agent."""
import time

import pytest

from harness import Mosquitto, wait_for
from tools.vdevice import Acker, VirtualDevice
from edge_agent import config as agent_config
from edge_agent.registry import reason_choices
from protocol.rules import reason_categories

HALL = "fw-hall"
KEY = bytes(range(3, 35))
DEV = "ev-14"
# The agent's default reason screen: all the county's categories, short labels.
REASONS = reason_choices(agent_config.validate({"hall": HALL})["devices"]["reasons"])
BASE = {"window": "A14", "staff_no": "1414", "targets": {"default": 900}, "warn_pct": 80,
        "prompt_s": 4, "reasons": REASONS}
SHORT = [r["short"] for r in reason_categories()]
CODES = [r["code"] for r in reason_categories()]
HEADER = "%d/3 4翻页 5提交"


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(str(tmp_path / "broker")).start()
    yield b
    b.stop()


def _rig(tmp_path, broker, heap="64k", **config):
    acker = Acker(broker.port, HALL, {DEV: KEY}, {"*": dict(BASE, **config)}).start()
    vd = VirtualDevice(str(tmp_path / DEV), HALL, DEV, KEY, broker.port, window="A99", heapsize=heap,
                       site={"long_ms": 150})
    vd.start()
    wait_for(lambda: vd.screen()["lines"][0] == "A14 No.1414", 20, what="config on screen")
    return acker, vd


@pytest.fixture
def rig(tmp_path, broker):
    acker, vd = _rig(tmp_path, broker)
    yield acker, vd
    vd.stop()
    acker.stop()


def _bad_rating(vd, level="dissatisfied"):
    vd.staff("start")
    session = vd.stats()["session"]
    vd.staff("end")
    vd.press(level, ms=20)
    return session


def _rows(page, chosen=()):
    first = 3 * (page - 1)
    return [HEADER % page] + ["%d%s%s" % (k + 1, "√" if first + k in chosen else " ", SHORT[first + k])
                              for k in range(3)]


def test_choose_page_and_send(rig):
    acker, vd = rig
    session = _bad_rating(vd, "very_dissatisfied")
    # The press is on flash already: thanked (counted), the reasons asked.
    st = vd.stats()
    assert (st["state"], st["thanks"], vd.screen()["lines"]) == ("reasons", 1, _rows(1))
    vd.press("very_satisfied", ms=20)                 # 1: the first row's reason
    vd.press("basically_satisfied", ms=20)            # 3: the third's
    vd.press("very_satisfied", ms=20)                 # 1 again: dropped
    assert vd.screen()["lines"] == _rows(1, {2})
    vd.press("dissatisfied", ms=20)                   # 4: next page
    vd.press("satisfied", ms=20)                      # 2: its second row
    assert vd.screen()["lines"] == _rows(2, {2, 4})
    vd.press("dissatisfied", ms=20)
    vd.press("very_satisfied", ms=20)
    assert vd.screen()["lines"] == _rows(3, {2, 4, 6})
    vd.press("dissatisfied", ms=20)                   # past the last page: the first again
    assert vd.screen()["lines"] == _rows(1, {2, 4, 6})
    assert acker.of_kind("rating") == []              # nothing sent while the citizen chooses
    vd.press("very_dissatisfied", ms=20)              # 5: send
    assert vd.screen()["lines"][-2:] == ["Thank you", "谢谢您的评价"]
    wait_for(lambda: acker.of_kind("rating"), 10, what="the rating")
    time.sleep(0.3)
    [r] = acker.of_kind("rating")
    assert (r["session"], r["level"], r["reasons"]) == (session, "very_dissatisfied",
                                                        [CODES[2], CODES[4], CODES[6]])
    assert vd.stats()["thanks"] == 1 and vd.stats()["refused"] == 0


def test_good_ratings_and_an_empty_list_ask_nothing(tmp_path, broker):
    acker, vd = _rig(tmp_path, broker, reasons=[])
    try:
        _bad_rating(vd)                       # no reasons configured: thanks at once
        assert vd.screen()["lines"][-2] == "Thank you"
        acker.send_config(DEV, reasons=REASONS)
        wait_for(lambda: vd.stats()["state"] == "idle", 10, what="thanks over")
        time.sleep(0.5)
        vd.staff("start")
        vd.staff("end")
        vd.press("basically_satisfied", ms=20)   # a good rating: no reasons asked
        assert vd.screen()["lines"][-2] == "Thank you"
        wait_for(lambda: len(acker.of_kind("rating")) == 2, 10, what="both ratings")
        assert all("reasons" not in r for r in acker.of_kind("rating"))
    finally:
        vd.stop()
        acker.stop()


def test_a_timeout_sends_without_reasons(rig):
    acker, vd = rig
    t0 = int(time.time() * 1000)
    session = _bad_rating(vd)
    assert vd.stats()["state"] == "reasons"
    wait_for(lambda: acker.of_kind("rating"), 10, what="the rating after the timeout")
    [r] = acker.of_kind("rating")
    assert (r["session"], r["level"], "reasons" in r) == (session, "dissatisfied", False)
    assert abs(r["t"] - t0) < 2000             # the time of the press, not of the timeout
    assert vd.stats()["state"] in ("thanks", "idle")


def test_the_staff_key_sends_what_was_chosen_and_starts_the_next(rig):
    acker, vd = rig
    session = _bad_rating(vd)
    vd.press("satisfied", ms=20)
    vd.staff("start")                          # the next citizen: the rating goes first
    assert vd.stats()["state"] == "serving" and vd.stats()["session"] != session
    wait_for(lambda: acker.of_kind("rating"), 10, what="the rating")
    [r] = acker.of_kind("rating")
    assert (r["session"], r["reasons"]) == (session, [CODES[1]])


def test_at_most_eight_reasons(rig):
    acker, vd = rig
    _bad_rating(vd)
    for page in range(3):
        for key in ("very_satisfied", "satisfied", "basically_satisfied"):
            vd.press(key, ms=20)
        vd.press("dissatisfied", ms=20)
    assert vd.screen()["lines"] == _rows(1, set(range(8)))    # the ninth was refused (a beep)
    vd.press("very_dissatisfied", ms=20)
    wait_for(lambda: acker.of_kind("rating"), 10, what="the rating")
    assert acker.of_kind("rating")[0]["reasons"] == CODES[:8]


def test_a_power_cut_on_the_reason_screen_loses_nothing_and_counts_once(rig):
    acker, vd = rig
    session = _bad_rating(vd, "very_dissatisfied")
    vd.press("very_satisfied", ms=20)         # chosen, in RAM only
    vd.kill()                                  # the power goes while the citizen chooses
    vd.start()
    wait_for(lambda: acker.of_kind("rating"), 15, what="the rating after the reboot")
    # Another session and more power cuts: the journal is spent, nothing comes twice.
    _bad_rating(vd, "dissatisfied")
    vd.press("very_dissatisfied", ms=20)
    vd.kill()
    vd.start()
    wait_for(lambda: len(acker.of_kind("rating")) == 2, 15, what="the second rating")
    vd.kill()
    vd.start()
    wait_for(lambda: vd.stats()["outbox"] == 0, 15, what="all acked")
    time.sleep(1.5)                            # a pending rating would go out within a second
    ratings = acker.of_kind("rating")
    assert [(r["session"], r["level"], r.get("reasons")) for r in ratings] == [
        (session, "very_dissatisfied", None), (ratings[1]["session"], "dissatisfied", None)]
    assert acker.conflicts == 0


def test_a_call_with_item_and_case_carries_them_to_the_rating(rig):
    acker, vd = rig
    acker.send_cmd(DEV, {"cmd": "call", "ticket": "B007", "item": "431100-001", "case": "C2026-0042"})
    wait_for(lambda: vd.stats()["state"] == "serving", 10, what="the call")
    session = vd.stats()["session"]
    vd.staff("end")
    vd.press("very_satisfied", ms=20)
    wait_for(lambda: acker.of_kind("rating"), 10, what="the rating")
    [r] = acker.of_kind("rating")
    [s] = [e for e in acker.of_kind("session") if e["action"] == "started"]
    assert (r["session"], r["item"], r["case"]) == (session, "431100-001", "C2026-0042")
    assert (s["ticket"], s["item"], s["case"]) == ("B007", "431100-001", "C2026-0042")
    # A case no event can carry starts nothing (refused like busy, alarmed).
    acker.send_cmd(DEV, {"cmd": "call", "ticket": "B008", "case": "C\t1"})
    wait_for(lambda: vd.stats()["unbuilt"] == 1, 10, what="the bad call refused")
    assert vd.stats()["session"] == session


def test_the_reason_screen_at_48k(tmp_path, broker):
    """Issue 8's budget holds with the screen: 30 bad ratings with reasons at 48 KiB."""
    acker, vd = _rig(tmp_path, broker, heap="48k")
    try:
        for i in range(30):
            _bad_rating(vd, ("dissatisfied", "very_dissatisfied")[i % 2])
            for key in ("very_satisfied", "dissatisfied", "satisfied", "very_dissatisfied"):
                vd.press(key, ms=20)
        wait_for(lambda: len(acker.of_kind("rating")) == 30, 20, what="30 ratings")
        assert all(r["reasons"] == [CODES[0], CODES[4]] for r in acker.of_kind("rating"))
        st = vd.stats()
        # (At 48 KiB a rating's event now and then cannot get its ~200-byte block
        # as the screen closes: logged in `errors`, sent by the retry a second
        # later, as the ratings above show; no press was refused.)
        assert (st["thanks"], st["refused"], st["unbuilt"]) == (30, 0, 0), st
    finally:
        vd.stop()
        acker.stop()


def test_a_journal_from_before_the_boot_goes_out_once(rig, tmp_path):
    """The boot's side of the journal, written onto the flash as a cut would leave it:
    with a seq the outbox has passed (cut between the record and the journal's
    removal) it is not sent again; without one it goes out, once."""
    import json
    acker, vd = rig
    _bad_rating(vd)
    vd.press("very_dissatisfied", ms=20)
    wait_for(lambda: acker.of_kind("rating"), 10, what="the first rating")
    used = acker.of_kind("rating")[0]["seq"]
    path = str(tmp_path / "rating.json")

    def boot_with_journal(seq):
        vd.stop()
        with open(path, "w") as f:
            json.dump({"level": "very_dissatisfied", "channel": "window", "session": "ev-14-1-99",
                       "window": "A14", "t": 1764000000000, "seq": seq}, f)
        vd.provision(files={"rating": path})
        vd.start()
        time.sleep(2.5)         # a pending rating goes out within a second of ready

    def mine():
        return [(r["level"], r["t"]) for r in acker.of_kind("rating") if r["session"] == "ev-14-1-99"]

    boot_with_journal(used)
    assert mine() == []
    boot_with_journal(None)
    wait_for(mine, 10, what="the journal's rating")
    vd.stop()
    vd.start()                  # the journal is gone: nothing more
    time.sleep(2.5)
    assert mine() == [("very_dissatisfied", 1764000000000)]
    assert len(acker.of_kind("rating")) == 2 and acker.conflicts == 0
