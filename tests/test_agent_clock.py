"""The Pi's wall clock stepped under a running agent (a Pi has no real-time
clock: it boots on the time it last saved until NTP answers): the devices,
which stamp their events with the agent's time, hear the new time at once,
not at the next beacon. The clock is the agent process's own
(tools/wallclock.c via tools/faults.WallClock), not the machine's."""
import os
import time

import pytest

from harness import Proc, wait_for
from test_agent_support import EDGE_AGENT, PahoDevice, add_devices, free_port, healthy, write_config
from tools.faults import WallClock

HALL = "h1"
DAY_MS = 86400000


@pytest.mark.skipif(not WallClock.available(), reason="no C compiler to build the wall-clock shim (tools/wallclock.c)")
def test_a_clock_step_reaches_the_devices_at_once(tmp_path, broker):
    clock = WallClock(str(tmp_path / "pi-clock"))
    clock.jump(-DAY_MS)                               # booted on yesterday's saved time
    http_port = free_port()
    cfg = write_config(str(tmp_path), broker.port, hall=HALL, http_port=http_port,
                       extra="beacon_s = 3600")      # no routine beacon inside the test
    keys = add_devices(cfg, ["ev-01"])
    agent = Proc("edge-agent", [EDGE_AGENT, "run", "--config", cfg], str(tmp_path), env=clock.env()).start()
    dev = PahoDevice(HALL, "ev-01", keys["ev-01"], broker.port).start()
    try:
        wait_for(lambda: healthy(http_port) or not agent.alive(), 30, what="agent healthy")
        wait_for(lambda: any(c["cmd"] == "time" for c in dev.cmds), 10, what="the beacon at start")
        first = [c for c in dev.cmds if c["cmd"] == "time"][-1]["t"]
        assert abs(first - (time.time() * 1000 - DAY_MS)) < 60000, "the agent runs on its own clock"
        clock.reset()                                   # NTP answers
        wait_for(lambda: [c for c in dev.cmds if c["cmd"] == "time"][-1]["t"] > first + DAY_MS / 2, 5,
                 what="the new time at once")
        assert abs([c for c in dev.cmds if c["cmd"] == "time"][-1]["t"] - time.time() * 1000) < 60000
        assert "clock was set +86400 s" in agent.log()
    finally:
        dev.stop()
        agent.stop()
