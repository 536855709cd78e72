"""The kiosk as a citizen meets it: scan or key a case number, see its
state, print a slip, rate the transaction (一次一评, channel kiosk). Real
firmware at -X heapsize=128k on the simulated kiosk board, the simulated
ESC/POS printer and scanner on serial lines, real Mosquitto, the real agent
with its own kiosk handlers and case cache, the real county server: cases
posted through its case API, ratings arriving there through the uplink."""
import os
import random
import subprocess

import pytest

from harness import wait_for
from kiosk_rig import CASES, Hall, drained, ratings, ready, sessions, wait_state
from protocol import LEVELS
from tools.vdevice import rom_qstr_bytes


@pytest.fixture
def hall(tmp_path, request):
    h = Hall(tmp_path, **getattr(request, "param", {}))
    try:
        ready(h.kiosk)
        yield h
    finally:
        h.stop()


def test_a_case_looked_up_printed_and_rated(hall):
    vk, pr = hall.kiosk, hall.kiosk.printer
    vk.scan("KC2026000123")
    wait_state(vk, "case")
    lines = vk.lines()
    assert "Case KC2026000123" in lines and "Due 2026-09-29" in lines
    assert "in_review 审查中" in lines and "Light yellow 黄灯" in lines and "食品经营许可" in lines
    vk.tap("print")
    wait_for(lambda: vk.stats()["printed"] == 1, 60, what="the slip printed")
    slips = pr.cut_slips()
    assert pr.error is None and len(slips) == 1
    text = slips[0].text
    for part in ("办件状态", "办件编号:KC2026000123", "状态:审查中", "承诺办结:2026-09-29", "时限:黄灯",
                 "事项:食品经营许可", "大厅:ks-hall"):
        assert part in text, (part, text)
    # The QR decoded from the print stream is the county's signed link for this case,
    # and the county's rating page opens from it.
    url = hall.rate_url("KC2026000123")
    assert slips[0].qr == [url] and "/r/ks-hall/case/KC2026000123/" in url
    status, page = hall.open(url)
    assert status == 200 and "KC2026000123" in page and "非常满意" in page
    wait_state(vk, "prompt")
    assert "请您评价" in vk.lines()
    vk.tap("very_satisfied")
    assert "谢谢您的评价" in vk.lines()
    vk.tap("dissatisfied")                      # 一次一评: a second press is ignored
    drained(vk)
    got = hall.of_kind("rating")
    assert [(r["level"], r["channel"], r["case"]) for r in got] == [("very_satisfied", "kiosk", "KC2026000123")]
    session = got[0]["session"]
    assert sessions(hall.of_kind("kiosk_session")) == {session: ["started", "ended"]}
    prints = hall.of_kind("print")
    assert [(p["result"], p["case"]) for p in prints] == [("ok", "KC2026000123")]
    assert "凭条号:%s" % prints[0]["job"] in text             # the slip in the hand is that job
    assert [p["state"] for p in hall.of_kind("printer")] == ["ok"]
    # And at the county, through the uplink: the one rating, the print.
    at = hall.wait_county("rating", 1)
    assert [(r["session"], r["level"], r["channel"]) for r in at] == [(session, "very_satisfied", "kiosk")]
    assert [p["job"] for p in hall.wait_county("print", 1)] == [prints[0]["job"]]


def test_keyed_in_unknown_and_offline_each_end_in_a_prompt(hall):
    vk = hall.kiosk
    vk.type_in("KC2026000042"[2:])               # the keypad has digits only: not a case
    vk.tap("enter")
    wait_for(lambda: "未找到该办件" in vk.lines(), 20, what="unknown case")
    wait_state(vk, "prompt", 20)
    vk.tap("satisfied")
    wait_state(vk, ("thanks", "idle"))
    vk.scan("KC2026000042")
    wait_state(vk, "case")
    assert "Light red 红灯" in vk.lines() and "Due 2026-09-17" in vk.lines()
    vk.tap("back")
    wait_state(vk, "prompt")
    wait_state(vk, "idle", 30)                   # left alone: unrated
    vk.scan("KC2026000900")                      # ready to collect: no light
    wait_state(vk, "case")
    assert "ready 待领取" in vk.lines() and not [l for l in vk.lines() if l.startswith("Light")]
    vk.tap("back")
    wait_state(vk, "prompt")
    vk.tap("very_satisfied")
    # No agent: "cannot look this up now", never an old answer.
    hall.agent.kill()
    vk.scan("KC2026000777")
    wait_for(lambda: "暂时无法查询" in vk.lines(), 20, what="cannot look this up now")
    assert not [l for l in vk.lines() if "2026-10-16" in l]
    wait_state(vk, "prompt", 20)
    vk.tap("basically_satisfied")
    hall.agent.start()
    drained(vk)
    got = sessions(hall.of_kind("kiosk_session"))
    assert sorted(got.values()) == [["started", "ended"]] * 3 + [["started", "ended", "unrated"]]
    assert sorted(r["level"] for r in hall.of_kind("rating")) == ["basically_satisfied", "satisfied",
                                                                   "very_satisfied"]
    hall.wait_county("kiosk_session", 9)
    assert sessions(hall.at_county("kiosk_session")) == got


def transactions(hall, n, rnd, rated=0.8):
    """n transactions, each ending in the prompt: rated (a level, thanked) or
    left alone (unrated). Returns ({session: level thanked}, [sessions left
    alone], peak heap used)."""
    vk = hall.kiosk
    thanked, left, peak = {}, [], 0
    for _ in range(n):
        vk.scan(rnd.choice(sorted(CASES)))
        wait_state(vk, "case")
        vk.tap("back")
        wait_state(vk, "prompt")
        st = vk.stats()
        session, peak = st["session"], max(peak, st["heap_used"])
        if rnd.random() < rated:
            level = rnd.choice(LEVELS)
            vk.tap(level)
            if vk.stats()["thanks"] == st["thanks"] + 1:      # in time: thanked
                thanked[session] = level
                continue
        left.append(session)
        wait_state(vk, "idle", 30)               # the prompt times out: unrated
    return thanked, left, peak


def check_once_at_county(hall, n, thanked, left):
    """Every transaction one rating or one `unrated`, at the agent and the county."""
    drained(hall.kiosk)
    steps = sessions(hall.of_kind("kiosk_session"))
    assert len(steps) == n
    for s, actions in steps.items():
        assert actions == (["started", "ended"] if s in thanked else ["started", "ended", "unrated"]), (s, actions)
    assert ratings(hall.of_kind("rating")) == {s: [lv] for s, lv in thanked.items()}
    hall.wait_county("kiosk_session", 2 * n + len(left), 180)
    hall.wait_county("rating", len(thanked), 60)
    assert sessions(hall.at_county("kiosk_session")) == steps
    assert ratings(hall.at_county("rating")) == {s: [lv] for s, lv in thanked.items()}


def heap_report(hall, n, peak):
    vk = hall.kiosk
    extra = os.path.getsize(vk.rom) + rom_qstr_bytes(vk.rom, vk.APP_MODULES)
    used = vk.stats()["heap_used"] - extra
    peak = max(peak - extra, used)
    print("kiosk at -X heapsize=128k after %d transactions: heap used %d bytes, peak %d bytes"
          % (n, used, peak))
    return used, peak


@pytest.mark.parametrize("hall", [{"prompt_s": 1}], indirect=True)
def test_transactions_each_rated_or_unrated_once_at_the_county(hall):
    """Each transaction ends in a prompt; each yields one rating or one `unrated`,
    once, at the county (QL_KIOSK_TRANSACTIONS, default 50: both endings a
    dozen times and more; the soak below runs 1,000). A 1 s prompt: an
    unrated one waits out the prompt, and that wait was half the test."""
    n = int(os.environ.get("QL_KIOSK_TRANSACTIONS", "50"))
    thanked, left, peak = transactions(hall, n, random.Random(8))
    print("%d transactions: %d rated, %d unrated" % (n, len(thanked), len(left)))
    check_once_at_county(hall, n, thanked, left)
    heap_report(hall, n, peak)
    assert hall.kiosk.stats()["errors"] == 0


@pytest.mark.soak
@pytest.mark.parametrize("hall", [{"prompt_s": 2}], indirect=True)
def test_a_thousand_transactions_at_128k(hall):
    """The kiosk app at -X heapsize=128k through 1,000 transactions, its peak heap reported."""
    n = int(os.environ.get("QL_KIOSK_SOAK_TRANSACTIONS", "1000"))
    thanked, left, peak = transactions(hall, n, random.Random(1000), rated=0.95)
    check_once_at_county(hall, n, thanked, left)
    used, peak = heap_report(hall, n, peak)
    assert hall.kiosk.alive() and hall.kiosk.stats()["errors"] == 0


def test_the_kiosk_checks_a_case_answer_and_takes_one_with_no_promised_date():
    """tests/mp/kiosk_case_reply.py under the real MicroPython: `promised` null
    (no deadline the county can count yet) is a case, shown as "Due -"."""
    from harness import MICROPYTHON, ROOT, micropython_path
    out = subprocess.run([MICROPYTHON, os.path.join(ROOT, "tests", "mp", "kiosk_case_reply.py")],
                         env=dict(os.environ, MICROPYPATH=micropython_path()), capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip().endswith("PASS"), out.stdout + out.stderr
