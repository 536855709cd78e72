"""Power cuts and outages, for real: the firmware process is SIGKILLed at
random moments while citizens press and the backlog drains (its flash is a
littlefs2 image written block by block), the broker goes away for a while.

Every press that showed "thank you" must reach the agent exactly once: one
stored rating per thanked session, with the level pressed, and no seq ever
reused for different content (a conflict at the agent). The agent is the
real one (edge-agent run, SQLite), itself SIGKILLed now and then."""
import os
import random
import threading
import time

import pytest

from harness import Mosquitto, wait_for
from agent_rig import RealAgent
from tools.vdevice import LEVELS, DeviceError, VirtualDevice

HALL = "fw-hall"
KEY = bytes(range(2, 34))
DEV = "ev-09"
WINDOW = {"window": "A09", "staff": "李四", "staff_no": "2048"}


def _agent(tmp_path, broker):
    return RealAgent(str(tmp_path), broker.port, HALL, {DEV: KEY}, {DEV: WINDOW}, prompt_s=5).start()


def _device(tmp_path, port):
    return VirtualDevice(str(tmp_path / DEV), HALL, DEV, KEY, port, heapsize="64k",
                         site={"long_ms": 150, "ack_timeout_s": 5})


def _serve_one(vd, rnd, thanked, n):
    """One service with a rating; records it if the citizen saw thanks."""
    vd.call("P%05d" % n)
    session = vd.stats()["session"]
    if rnd.random() < 0.2:
        vd.staff("pause")
        vd.staff("resume")
    vd.staff("end")
    level = rnd.choice(LEVELS)
    vd.press(level, ms=20)
    lines = vd.screen()["lines"]
    # The reason screen (不满意/非常不满意, the agent's default) shows once the
    # press is on flash: a cut while the citizen chooses must lose nothing.
    if lines[2] == "Thank you" or lines[0].endswith("5提交"):
        thanked[session] = level
    if rnd.random() < 0.2:
        vd.press(rnd.choice(LEVELS), ms=20)      # a repeat: ignored, or a key of the reason screen


def _check(agent, thanked):
    ratings = agent.of_kind("rating")
    by_session = {}
    for r in ratings:
        by_session.setdefault(r["session"], []).append(r["level"])
    assert agent.conflicts == 0, "a seq was reused for different content"
    assert not agent.rejected
    for session, level in thanked.items():
        assert by_session.get(session) == [level], (session, by_session.get(session))
    # A rating without thanks is possible (the cut came between flash and
    # screen); two ratings for one session are not.
    assert all(len(v) == 1 for v in by_session.values())


def _power_cuts(tmp_path, kills, seed):
    rnd = random.Random(seed)
    broker = Mosquitto(str(tmp_path / "broker")).start()
    agent = _agent(tmp_path, broker)
    vd = _device(tmp_path, broker.port)
    thanked, n, done = {}, 0, 0
    try:
        while done < kills:
            # Sometimes the agent is down too (SIGKILL), so a backlog is draining when the power goes.
            if rnd.random() < 0.3:
                agent.kill()
            elif not agent.alive():
                agent.start()
            vd.start()
            delay = rnd.uniform(0.02, 1.2)
            cut = threading.Timer(delay, vd.kill)
            cut.start()
            try:
                while vd.alive():
                    n += 1
                    _serve_one(vd, rnd, thanked, n)
            except DeviceError:
                pass                               # the power went mid-press
            cut.join()
            vd.kill()
            done += 1
        if not agent.alive():
            agent.start()
        vd.start()
        wait_for(lambda: vd.stats()["outbox"] == 0, 120, what="backlog drained after the cuts")
        _check(agent, thanked)
        st = vd.stats()
        assert st["boot"] == kills + 1
        assert len(thanked) > kills // 2, "too few presses got through to mean anything"
        return thanked, st
    finally:
        vd.stop()
        agent.stop()
        broker.stop()


def test_50_power_cuts_lose_no_thanked_press(tmp_path):
    _power_cuts(tmp_path, int(os.environ.get("QL_FW_KILLS", "50")), seed=50)


@pytest.mark.soak
def test_300_power_cuts_lose_no_thanked_press(tmp_path):
    _power_cuts(tmp_path, 300, seed=300)


def _outage(tmp_path, seconds, what):
    rnd = random.Random(7)
    broker = Mosquitto(str(tmp_path / "broker")).start()
    agent = _agent(tmp_path, broker)
    vd = _device(tmp_path, broker.port).start()
    thanked, n = {}, 0
    try:
        wait_for(lambda: vd.stats()["connected"], 20, what="first connection")
        if what == "broker":
            broker.kill()
        else:
            vd.wifi(False)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            n += 1
            _serve_one(vd, rnd, thanked, n)
        assert vd.stats()["outbox"] > len(thanked)      # all of it waiting on flash
        if what == "broker":
            broker.start()
        else:
            vd.wifi(True)
        wait_for(lambda: vd.stats()["outbox"] == 0, 120, what="backlog drained after the outage")
        _check(agent, thanked)
        assert vd.stats()["thanks"] == len(thanked) and vd.alive()
        return thanked
    finally:
        vd.stop()
        agent.stop()
        broker.stop()


def test_broker_outage_keeps_every_press(tmp_path):
    _outage(tmp_path, float(os.environ.get("QL_FW_OUTAGE_S", "8")), "broker")


def test_wifi_outage_keeps_every_press(tmp_path):
    _outage(tmp_path, 5, "wifi")


@pytest.mark.soak
def test_broker_outage_of_70s_keeps_every_press(tmp_path):
    _outage(tmp_path, 70, "broker")
