"""From the button to the county database, with every real part:
Mosquitto, the county server, the edge agent and three evaluators running
the firmware under MicroPython. N ratings pressed -> exactly N at the county;
a 差评's reasons and the 事项编码/办件编号 of the ticket called reach it too."""
import datetime
import os
import time

import pytest

from harness import wait_for
from test_agent_support import PahoDevice
from tools.hall import Hall

LEVELS = ["very_satisfied", "satisfied", "basically_satisfied", "dissatisfied", "very_dissatisfied"]


@pytest.fixture
def hall(tmp_path):
    h = Hall(str(tmp_path / "hall"), hall="e2e-hall", devices=3)
    try:
        yield h.start()
    finally:
        h.stop()


def test_every_press_reaches_the_county_exactly_once(hall):
    n = 0
    for round_ in range(5):
        for i, vd in enumerate(hall.devices.values()):
            vd.call("A%03d" % (round_ * 10 + i))
            vd.staff("end")
            vd.press(LEVELS[(round_ + i) % 5])
            if (round_ + i) % 5 >= 3:
                vd.press(LEVELS[4])       # the reason screen (the agent's default): sent, no reason
            n += 1
    hall.wait_county_ratings(n, timeout=120)
    assert sum(vd.stats()["thanks"] for vd in hall.devices.values()) == n
    by_level = hall.county_stats()["ratings"]
    assert sum(by_level.values()) == n


def test_reasons_item_and_case_reach_the_county(hall):
    """An appointment for a 事项 and a 办件 -> its ticket -> the window's call ->
    the session and the 差评 with the reasons chosen on the evaluator -> the county."""
    vd = hall.devices["ev-01"]
    wait_for(lambda: "Welcome" in vd.screen()["lines"], 30, what="the evaluator has its config")
    hall.edge_agent("queue", "add", "B", "不动产登记")
    hall.edge_agent("queue", "serve", "A01", "B")
    at = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))) - datetime.timedelta(minutes=1)
    hall.edge_agent("queue", "appoint", "YY-0042", "--queue", "B", "--at", at.strftime("%Y-%m-%d %H:%M"),
                    "--item", "431100-0007", "--case", "BJ2026-0042")
    key = os.urandom(32)
    hall.edge_agent("devices", "add", "ks-01", "--window", "K01", "--key", key.hex())
    kiosk = PahoDevice(hall.hall, "ks-01", key, hall.broker.port).start()
    try:
        wait_for(lambda: kiosk.configs, 30, what="the kiosk's config")
        kiosk.ask({"op": "ticket", "appointment": "YY-0042"}, 1)
        assert kiosk.reply_to(1)["ticket"] == "B001"
    finally:
        kiosk.stop()
    time.sleep(2)                            # the evaluator's config with `calls`
    vd.staff("start")                        # asks `next`: the agent calls B001 with its item and case
    wait_for(lambda: vd.screen()["lines"][1].startswith("B001"), 20, what="B001 called")
    vd.staff("end")
    vd.press("very_dissatisfied")
    vd.press("very_satisfied")               # 1: 态度不好
    vd.press("dissatisfied")                 # 4: the next page
    vd.press("very_satisfied")               # 1: 多次跑动
    vd.press("very_dissatisfied")            # 5: send
    hall.wait_county_ratings(1, timeout=60)
    [r] = hall.county_events("rating")
    assert (r["level"], r["reasons"], r["item"], r["case"]) == (
        "very_dissatisfied", ["attitude", "repeat"], "431100-0007", "BJ2026-0042")
    [s] = [e for e in hall.county_events("session") if e["action"] == "started"]
    assert (s["ticket"], s["item"], s["case"], s["session"]) == ("B001", "431100-0007", "BJ2026-0042", r["session"])
