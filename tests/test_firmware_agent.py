"""The evaluator with the real edge agent and county server (tools.hall):
power cuts and a reflash, judged by what the agent committed to SQLite."""
import json
import os
import random
import threading

import pytest

from harness import wait_for
from tools.vdevice import LEVELS, DeviceError


@pytest.fixture
def hall(evaluator_hall):
    return evaluator_hall


def _agent_rows(hall, kind):
    rows = hall.agent_rows("SELECT seq, body FROM events WHERE kind = ? ORDER BY seq", (kind,))
    conflicts = hall.agent_rows("SELECT count(*) FROM quarantine WHERE reason = 'conflict'")[0][0]
    return [(seq, json.loads(body)) for seq, body in rows], conflicts


def _ready(vd):
    wait_for(lambda: "Welcome" in vd.screen()["lines"], 30, what="device has its config")


def _rate(vd, ticket, level):
    vd.call(ticket)
    session = vd.stats()["session"]
    vd.staff("end")
    vd.press(level, ms=20)
    if level in LEVELS[3:] and vd.stats()["state"] == "reasons":
        vd.press(LEVELS[4], ms=20)     # the agent's default reason screen: 5 sends, none chosen
    return session if "Thank you" in vd.screen()["lines"] else None


def test_power_cuts_with_the_real_agent(hall):
    vd = next(iter(hall.devices.values()))
    rnd = random.Random(5)
    thanked, n = {}, 0
    for _ in range(int(os.environ.get("QL_FW_AGENT_KILLS", "15"))):
        if not vd.alive():
            vd.start()
        cut = threading.Timer(rnd.uniform(0.05, 1.0), vd.kill)
        cut.start()
        try:
            while vd.alive():
                n += 1
                level = rnd.choice(LEVELS)
                session = _rate(vd, "K%04d" % n, level)
                if session:
                    thanked[session] = level
        except DeviceError:
            pass
        cut.join()
    vd.start()
    wait_for(lambda: vd.stats()["outbox"] == 0, 120, what="backlog acked by the agent")
    rows, conflicts = _agent_rows(hall, "rating")
    stored = {}
    for _, ev in rows:
        stored.setdefault(ev["session"], []).append(ev["level"])
    assert conflicts == 0
    assert all(len(v) == 1 for v in stored.values())
    for session, level in thanked.items():
        assert stored.get(session) == [level]
    assert len(thanked) >= 5
    hall.wait_county_ratings(len(rows), timeout=120)


def test_a_reflashed_device_continues_above_the_agents_hwm(hall):
    vd = next(iter(hall.devices.values()))
    _ready(vd)
    for i in range(3):
        assert _rate(vd, "R%02d" % i, LEVELS[i])
    wait_for(lambda: vd.stats()["outbox"] == 0, 60, what="acked")
    before, _ = _agent_rows(hall, "rating")
    top = max(seq for seq, _ in _agent_rows(hall, "session")[0] + before)
    # The technician reflashes: a blank flash, provisioned again.
    vd.stop()
    os.remove(vd.image)
    vd.start()
    _ready(vd)                     # waited for the retained config and its hwm
    for i in range(2):
        assert _rate(vd, "S%02d" % i, LEVELS[4 - i])
    wait_for(lambda: vd.stats()["outbox"] == 0, 60, what="acked after reflash")
    after, conflicts = _agent_rows(hall, "rating")
    assert conflicts == 0
    assert len(after) == 5
    assert min(seq for seq, _ in after[3:]) > top
    assert len({ev["session"] for _, ev in after}) == 5     # session ids not reused either
