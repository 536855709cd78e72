"""Presses on a virtual evaluator (real firmware, MicroPython unix port,
simulated board) reach a real Mosquitto, are verified by a test-side agent
(tools.vdevice.Acker: decode, keep by (device, seq), send the protocol ack)
and leave the device's flash outbox only when acked."""
import os

import pytest

from harness import Mosquitto, wait_for
from tools.vdevice import Acker, VirtualDevice

HALL = "fw-hall"
KEY = bytes(range(32))
CONFIG = {"*": {"window": "A07", "staff": "张三", "staff_no": "1024",
                "targets": {"default": 900}, "warn_pct": 80, "prompt_s": 30}}


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(str(tmp_path / "broker")).start()
    yield b
    b.stop()


@pytest.fixture
def device(tmp_path, broker):
    vd = VirtualDevice(str(tmp_path / "ev-01"), HALL, "ev-01", KEY, broker.port)
    yield vd
    vd.stop()


def test_ratings_reach_the_agent_and_leave_the_outbox_only_on_ack(broker, device):
    acker = Acker(broker.port, HALL, {"ev-01": KEY}, CONFIG)
    acker.acking = False
    acker.start()
    try:
        device.start()
        levels = ["very_satisfied", "dissatisfied", "satisfied"]
        for i, level in enumerate(levels):
            device.call("B%03d" % i)
            device.staff("end")
            device.press(level)
        got = wait_for(lambda: len(acker.of_kind("rating")) == 3 and acker.of_kind("rating"),
                       30, what="3 ratings at the agent")
        assert [e["level"] for e in got] == levels
        assert all(e["window"] == "A07" and e["staff"] == "1024" for e in got)
        # Published and PUBACKed, but no protocol ack yet: still on flash.
        assert device.stats()["outbox"] >= 3 + 3 * 3
        acker.acking = True
        wait_for(lambda: device.stats()["outbox"] == 0, 30, what="outbox emptied by acks")
        assert device.stats()["thanks"] == 3
        assert acker.conflicts == 0 and not acker.rejected
        assert acker.presence["ev-01"]["online"] is True
    finally:
        acker.stop()
