"""The kiosk as a citizen meets it: scan or key a case number, see its
state, print a slip, rate the transaction (一次一评, channel kiosk). Real
firmware at -X heapsize=128k on the simulated kiosk board, the simulated
ESC/POS printer and scanner on serial lines, real Mosquitto, the real agent
(its kiosk handlers stood in for: tests/kiosk_agent.py)."""
import os
import random

import pytest

from harness import wait_for
from kiosk_rig import CASES, Hall, drained, ready, wait_state
from protocol import LEVELS
from tools.vdevice import rom_qstr_bytes


@pytest.fixture
def hall(tmp_path):
    h = Hall(tmp_path)
    try:
        h.kiosk.start()
        ready(h.kiosk)
        yield h
    finally:
        h.stop()


def _sessions(agent):
    out = {}
    for ev in agent.of_kind("kiosk_session"):
        out.setdefault(ev["session"], []).append(ev["action"])
    return out


def test_a_case_looked_up_printed_and_rated(hall):
    vk, pr = hall.kiosk, hall.kiosk.printer
    vk.scan("KC2025000123")
    wait_state(vk, "case")
    lines = vk.lines()
    assert "Case KC2025000123" in lines and "Due 2026-01-20" in lines
    assert "in_review 审查中" in lines and "Light yellow 黄灯" in lines
    vk.tap("print")
    wait_for(lambda: vk.stats()["printed"] == 1, 60, what="the slip printed")
    assert "Printed, thank you" in vk.lines() or vk.state() in ("prompt", "message")
    slips = pr.cut_slips()
    assert pr.error is None and len(slips) == 1
    text = slips[0].text
    for part in ("KC2025000123", "in_review 审查中", "2026-01-20", "yellow 黄灯", "食品经营许可"):
        assert part in text, (part, text)
    assert slips[0].qr == [CASES["KC2025000123"]["rate_url"]]
    wait_state(vk, "prompt")
    assert "请您评价" in vk.lines()
    vk.tap("very_satisfied")
    assert "谢谢您的评价" in vk.lines()
    vk.tap("dissatisfied")                      # 一次一评: a second press is ignored
    drained(vk)
    ratings = hall.agent.of_kind("rating")
    assert [(r["level"], r["channel"], r["case"]) for r in ratings] == [("very_satisfied", "kiosk", "KC2025000123")]
    session = ratings[0]["session"]
    assert _sessions(hall.agent) == {session: ["started", "ended"]}
    prints = hall.agent.of_kind("print")
    assert [(p["result"], p["case"]) for p in prints] == [("ok", "KC2025000123")]
    assert [p["state"] for p in hall.agent.of_kind("printer")] == ["ok"]


def test_keyed_in_unknown_and_offline_each_end_in_a_prompt(hall):
    vk = hall.kiosk
    vk.type_in("4401202500042")
    vk.tap("enter")
    wait_state(vk, "case")
    assert "Light red 红灯" in vk.lines()
    vk.tap("back")
    wait_state(vk, "prompt")
    vk.tap("satisfied")
    wait_state(vk, "idle")
    # A number the county does not know: said so, then the prompt; left alone: unrated.
    vk.type_in("123")
    vk.tap("enter")
    wait_for(lambda: "未找到该办件" in vk.lines(), 20, what="unknown case")
    wait_state(vk, "idle", 30)
    # No agent: "cannot look this up now", never an old answer.
    hall.agent.kill()
    vk.scan("KC2025000777")
    wait_for(lambda: "暂时无法查询" in vk.lines(), 20, what="cannot look this up now")
    assert not [l for l in vk.lines() if "2025-12-01" in l]
    wait_state(vk, "prompt", 20)
    vk.tap("basically_satisfied")
    hall.agent.start()
    drained(vk)
    sessions = _sessions(hall.agent)
    assert sorted(sessions.values()) == [["started", "ended"], ["started", "ended"], ["started", "ended", "unrated"]]
    assert sorted(r["level"] for r in hall.agent.of_kind("rating")) == ["basically_satisfied", "satisfied"]


def test_many_transactions_each_rated_or_unrated_once(hall):
    """Each transaction ends in a prompt; each yields one rating or one `unrated`."""
    vk = hall.kiosk
    rnd = random.Random(8)
    n = int(os.environ.get("QL_KIOSK_TRANSACTIONS", "20"))
    thanked, peak = {}, 0
    for i in range(n):
        code = rnd.choice(sorted(CASES))
        vk.scan(code)
        wait_state(vk, "case")
        vk.tap("back")
        wait_state(vk, "prompt")
        session = vk.stats()["session"]
        peak = max(peak, vk.stats()["heap_used"])
        if rnd.random() < 0.8:
            level = rnd.choice(LEVELS)
            vk.tap(level)
            thanked[session] = level
            wait_state(vk, "idle", 10)
        else:
            wait_state(vk, "idle", 20)               # the prompt times out: unrated
    drained(vk)
    sessions = _sessions(hall.agent)
    ratings = {}
    for r in hall.agent.of_kind("rating"):
        ratings.setdefault(r["session"], []).append(r["level"])
    assert len(sessions) == n
    for s, steps in sessions.items():
        if s in thanked:
            assert steps == ["started", "ended"] and ratings[s] == [thanked[s]]
        else:
            assert steps == ["started", "ended", "unrated"] and s not in ratings
    st = vk.stats()
    extra = os.path.getsize(vk.rom) + rom_qstr_bytes(vk.rom, vk.APP_MODULES)
    print("kiosk at -X heapsize=128k after %d transactions: heap used %d bytes, peak %d bytes"
          % (n, st["heap_used"] - extra, peak - extra))
