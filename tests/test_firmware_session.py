"""The window-side experience, asserted on what a citizen and the staff see
(display rows, service light, buzzer) and on the events the agent gets.

Real firmware under the MicroPython unix port at -X heapsize=64k, the
simulated board, a real Mosquitto, and a test-side agent (tools.vdevice.Acker)."""
import os
import random

import pytest

from harness import Mosquitto, wait_for
from agent_rig import RealAgent
from tools.vdevice import LEVELS, Acker, VirtualDevice

HALL = "fw-hall"
KEY = bytes(range(1, 33))
DEV = "ev-07"
BASE = {"window": "A07", "staff": "张三", "staff_no": "1024",
        "targets": {"default": 900}, "warn_pct": 80, "prompt_s": 2}


@pytest.fixture
def broker(tmp_path):
    b = Mosquitto(str(tmp_path / "broker")).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def font(tmp_path_factory):
    """The Chinese font subset the flashing tool would put on flash (needs fonts-wqy-microhei)."""
    import subprocess
    import sys
    path = str(tmp_path_factory.mktemp("font") / "font.qlf")
    out = subprocess.run([sys.executable, "-m", "tools.fontgen", "-o", path, BASE["staff"]],
                         capture_output=True, text=True)
    return path if out.returncode == 0 else None


_FONT = {}


@pytest.fixture(autouse=True)
def _with_font(font):
    _FONT["path"] = font


def _device(tmp_path, broker, site=None, heap="64k"):
    s = {"long_ms": 150}
    s.update(site or {})
    files = {"font.qlf": _FONT["path"]} if _FONT.get("path") else None
    return VirtualDevice(str(tmp_path / DEV), HALL, DEV, KEY, broker.port, window="A99",
                         heapsize=heap, site=s, files=files)


def _rig(tmp_path, broker, config=None, site=None):
    acker = Acker(broker.port, HALL, {DEV: KEY}, {"*": dict(BASE, **(config or {}))}).start()
    return acker, _device(tmp_path, broker, site)


@pytest.fixture
def rig(tmp_path, broker):
    acker, vd = _rig(tmp_path, broker)
    vd.start()
    wait_for(lambda: vd.screen()["lines"][:2] == ["A07 No.1024", "张三"], 20,
             what="retained config on screen")
    yield acker, vd
    vd.stop()
    acker.stop()


def sessions(acker, action=None):
    return [e for e in acker.of_kind("session") if action in (None, e["action"])]


def test_a_service_from_call_to_thanks(rig):
    acker, vd = rig
    assert vd.screen()["lines"] == ["A07 No.1024", "张三", "Welcome", "欢迎"]
    assert vd.screen()["light"] is None
    assert all(vd.pixels())               # every row is lit on the panel itself
    vd.press("satisfied")                     # nothing to rate yet
    assert vd.stats()["ignored"] == 1
    vd.call("A012")
    s = vd.screen()
    assert s["lines"][2].startswith("Serving 00:0") and s["lines"][3] == "服务中"
    assert s["light"] == "green"
    vd.press("very_satisfied")                # while being served: ignored
    vd.staff("pause")
    assert vd.screen()["lines"][2:] == [vd.screen()["lines"][2], "暂停服务"]
    assert vd.screen()["lines"][2].startswith("Paused")
    vd.staff("resume")
    assert vd.screen()["lines"][3] == "服务中"
    vd.staff("end")
    assert vd.screen()["lines"][2:] == ["Please rate", "请您评价"]
    beeps = vd.screen()["beeps"]
    vd.press("dissatisfied")
    s = vd.screen()
    assert s["lines"][2:] == ["Thank you", "谢谢您的评价"]
    assert s["beeps"] == beeps + 1
    vd.press("very_satisfied")                # 一次一评: the second press is ignored
    st = vd.stats()
    assert st["thanks"] == 1 and st["ignored"] == 3
    wait_for(lambda: vd.stats()["outbox"] == 0, 20, what="all acked")
    ratings = acker.of_kind("rating")
    assert [(r["level"], r["window"], r["staff"], r["channel"]) for r in ratings] == \
        [("dissatisfied", "A07", "1024", "window")]
    steps = [e["action"] for e in sessions(acker)]
    assert steps == ["called", "started", "paused", "resumed", "ended"]
    called, started, ended = sessions(acker, "called")[0], sessions(acker, "started")[0], sessions(acker, "ended")[0]
    assert called["ticket"] == started["ticket"] == "A012"
    assert ratings[0]["session"] == started["session"] == ended["session"]
    assert ended["paused_ms"] >= 150 and ended["service_ms"] >= 0
    assert ended["t"] > 1700000000000         # wall clock from the config beacon
    # The status event counts the ignored presses for the hall manager.
    acker.send_cmd(DEV, {"cmd": "status"})
    wait_for(lambda: any(e.get("ignored") == 3 for e in acker.of_kind("status")), 20,
             what="status with ignored presses")


def test_prompt_timeout_closes_unrated_and_invents_nothing(rig):
    acker, vd = rig
    vd.staff("start")
    vd.staff("end")
    assert vd.screen()["lines"][2] == "Please rate"
    wait_for(lambda: vd.screen()["lines"][2] == "Welcome", 10, what="prompt timed out")
    vd.press("satisfied")                     # too late
    wait_for(lambda: sessions(acker, "unrated"), 10, what="unrated step")
    assert acker.of_kind("rating") == []
    assert vd.stats()["thanks"] == 0 and vd.stats()["ignored"] == 1
    # A new service while a prompt is open closes that prompt as unrated.
    vd.call("A100")
    vd.staff("end")
    vd.call("A101")
    wait_for(lambda: len(sessions(acker, "unrated")) == 2, 10, what="second unrated")
    assert acker.of_kind("rating") == []


def test_contact_bounce_is_not_a_press(rig):
    acker, vd = rig
    vd.call("A001")
    vd.staff("end")
    before = vd.stats()["inputs"]
    for _ in range(5):
        vd.glitch("satisfied")
    assert vd.stats()["inputs"] == before
    assert vd.screen()["lines"][2] == "Please rate"
    vd.press("satisfied")
    assert vd.stats()["thanks"] == 1


def test_the_sim_board_refuses_what_a_board_would_not_do(rig):
    acker, vd = rig
    from tools.vdevice import DeviceError
    for bad in ({"op": "press", "button": "excellent"}, {"op": "press", "button": "staff", "ms": -1},
                {"op": "press", "button": "satisfied", "colour": "red"}, {"op": "fly"}):
        with pytest.raises(DeviceError):
            vd._rpc(bad)
    with pytest.raises(ValueError):
        vd.press("excellent")


def test_service_light_follows_the_time_target(tmp_path, broker):
    acker, vd = _rig(tmp_path, broker, {"targets": {"default": 2}, "warn_pct": 50})
    try:
        vd.start()
        wait_for(lambda: vd.screen()["lines"][0] == "A07 No.1024", 20, what="config")
        vd.call("A001")
        assert vd.screen()["light"] == "green"
        wait_for(lambda: vd.screen()["light"] == "yellow", 10, what="yellow near the limit")
        wait_for(lambda: vd.screen()["light"] == "red", 10, what="red over the limit")
        vd.staff("end")
        vd.press("satisfied")
        assert vd.screen()["light"] is None
    finally:
        vd.stop()
        acker.stop()


def test_full_outbox_refuses_presses_instead_of_dropping_them(tmp_path, broker):
    acker, vd = _rig(tmp_path, broker, site={"segment_bytes": 1024, "max_segments": 4})
    acker.acking = False
    try:
        vd.start()
        refused_at = None
        for i in range(20):
            vd.call("F%02d" % i)
            vd.staff("end")
            vd.press("satisfied")
            st = vd.stats()
            if st["refused"]:
                refused_at = i
                break
        assert refused_at is not None, "the outbox never filled"
        assert vd.screen()["lines"][2:] == ["Busy, sorry", "系统繁忙"]
        thanks = vd.stats()["thanks"]
        acker.acking = True
        wait_for(lambda: vd.stats()["outbox"] == 0, 30, what="drained after acks resume")
        wait_for(lambda: len(acker.of_kind("rating")) == thanks, 10, what="every thanked rating")
        vd.call("G01")
        vd.staff("end")
        vd.press("very_satisfied")
        assert vd.stats()["thanks"] == thanks + 1
        # The alarm goes out with the first status that fits, beside the
        # board's own faults: names sorted, comma-joined.
        vd.display_ok(False)
        acker.send_cmd(DEV, {"cmd": "status"})
        wait_for(lambda: any(e.get("alarm") == "display,outbox_full" for e in acker.of_kind("status")), 20,
                 what="outbox_full alarm in status")
    finally:
        vd.stop()
        acker.stop()


def test_an_unplugged_display_is_an_alarm_until_a_frame_reaches_it_again(tmp_path, broker):
    # alarm_s = 1: an alarm that changes goes out in a status of its own within a second or two,
    # without waiting for the periodic one (status_s = 60 here) or a {"cmd":"status"}.
    acker, vd = _rig(tmp_path, broker, site={"alarm_s": 1})
    try:
        vd.start()
        wait_for(lambda: vd.screen()["lines"][:2] == ["A07 No.1024", "张三"], 20, what="config on screen")
        before = vd.screen()
        vd.display_ok(False)
        vd.call("D01")
        vd.staff("end")
        vd.press("satisfied")                     # the terminal works on without its panel
        s = vd.screen()
        assert s["frames"] == before["frames"] and s["lines"] == before["lines"]   # nothing new reached it
        assert s["beeps"] == before["beeps"] + 1 and vd.stats()["thanks"] == 1
        assert vd.stats()["faults"] == ["display"]
        alarmed = wait_for(lambda: [e["seq"] for e in acker.of_kind("status") if e.get("alarm") == "display"],
                           10, what="display alarm in a status of its own")[0]
        wait_for(lambda: vd.stats()["state"] == "idle", 20, what="back to idle, unseen")
        vd.display_ok(True)
        # Plugged back with nobody at the window: the firmware sends the missed frame again by itself
        # (a panel re-seated under an idle "welcome" must not stay blank), which clears the fault.
        wait_for(lambda: vd.stats()["faults"] == [], 5, what="the panel back without any key pressed")
        assert vd.screen()["lines"][3] == "欢迎"
        wait_for(lambda: [e for e in acker.of_kind("status") if e["seq"] > alarmed and "alarm" not in e], 10,
                 what="a status saying the alarm is over")
        vd.call("D02")
        assert vd.screen()["lines"][3] == "服务中" and vd.stats()["faults"] == []
        assert [r["level"] for r in acker.of_kind("rating")] == ["satisfied"]
        # One status per change, not one a second: the display alarm, then all clear.
        assert len([e for e in acker.of_kind("status") if e["seq"] >= alarmed]) == 2
    finally:
        vd.stop()
        acker.stop()


def _run_sessions(tmp_path, broker, n, seed=1, heap="64k"):
    """n sessions with random pauses, repeated presses, stray presses and
    timeouts; the real agent must hold exactly the ratings the citizen was thanked
    for, one per rated session, and an `unrated` step for every other."""
    rnd = random.Random(seed)
    agent = RealAgent(str(tmp_path), broker.port, HALL, {DEV: KEY},
                      {DEV: {k: BASE[k] for k in ("window", "staff", "staff_no")}}, prompt_s=1).start()
    vd = _device(tmp_path, broker, heap=heap)
    expect_rated, expect_unrated, chose = {}, set(), set()
    try:
        vd.start()
        wait_for(lambda: vd.screen()["lines"][0] == "A07 No.1024", 20, what="config")
        for i in range(n):
            if rnd.random() < 0.5:
                vd.call("T%04d" % i)
            else:
                vd.staff("start")
            session = vd.stats()["session"]
            if rnd.random() < 0.1:
                vd.press(rnd.choice(LEVELS), ms=20)          # stray press while served
            if rnd.random() < 0.1:
                vd.staff("pause")
                vd.staff("resume")
            vd.staff("end")
            if rnd.random() < 0.05:
                wait_for(lambda: vd.stats()["state"] == "idle", 10, what="timeout")
                expect_unrated.add(session)
                continue
            level = rnd.choice(LEVELS)
            vd.press(level, ms=20)
            # (No stats call before the press: the harness's replies share the
            # firmware's heap, which a real board does not have to share.)
            if vd.stats()["thanks"] == len(expect_rated) + 1:
                expect_rated[session] = level
            else:
                # The prompt is 1 s here, to keep the timeouts short; on a loaded
                # machine the harness can take longer than that between the
                # staff key and the press. Then the session closed unrated, which
                # the agent must show; a refused press is caught below.
                late = vd.stats()
                assert late["refused"] == 0, late        # "busy": fails at once, not after n sessions
                wait_for(lambda: vd.stats()["state"] == "idle", 10, what="late press: prompt closed (%r)" % late)
                expect_unrated.add(session)
            if level in LEVELS[3:] and session in expect_rated:
                # The agent's default reason screen: sometimes the first reason and
                # 5 (send); else it goes with the next service or the timeout.
                if rnd.random() < 0.5:
                    vd.press(LEVELS[0], ms=20)
                    vd.press(LEVELS[4], ms=20)
                    chose.add(session)
            elif rnd.random() < 0.2:
                vd.press(rnd.choice(LEVELS), ms=20)          # repeated press
        st = vd.stats()
        assert st["refused"] == 0 and st["unbuilt"] == 0, st     # no press was ever "busy"
        assert st["thanks"] == len(expect_rated)
        assert len(expect_rated) > n * 0.8                        # the late-press path stays rare
        wait_for(lambda: vd.stats()["outbox"] == 0, 60, what="all acked")
        got = {r["session"]: r["level"] for r in agent.of_kind("rating")}
        # Reasons only where chosen (the 1 s timeout here may send first, without).
        reasons = {r["session"]: r.get("reasons") for r in agent.of_kind("rating")}
        assert all(reasons[s] in (None, ["attitude"]) for s in chose)
        assert all(reasons[s] is None for s in reasons if s not in chose)
        assert not chose or any(reasons[s] for s in chose)
        assert len(agent.of_kind("rating")) == len(expect_rated)
        assert got == expect_rated
        assert {e["session"] for e in sessions(agent, "unrated")} == expect_unrated
        assert len(sessions(agent, "ended")) == n
        assert agent.conflicts == 0 and not agent.rejected
        assert vd.alive(), vd.log()[-2000:]
        return vd.stats()
    finally:
        vd.stop()
        agent.stop()


def test_many_sessions_at_64k(tmp_path, broker):
    # 30 here: the 150 at 48 KiB below are the stricter proof, and the 1,000
    # at each heap run in `make soak` (make test stays near 20 minutes).
    n = int(os.environ.get("QL_FW_SESSIONS", "30"))
    _run_sessions(tmp_path, broker, n)


@pytest.mark.soak
@pytest.mark.timeout(1800)      # ~10 min: longer than the suite's 600 s per test
def test_1000_sessions_at_64k(tmp_path, broker):
    st = _run_sessions(tmp_path, broker, 1000, seed=1000)
    print("heap free at the end:", st["heap"])


# Issue 8's goal: the evaluator boots and serves at 48 KiB (beside a second
# app's needs), peak in use under 40 KB (python -m bench.firmware_heap --heap 48k).
# `make test` runs QL_FW_SESSIONS (150, ~1.5 min); `make soak` the 1,000
# (~10 min: the harness's presses and staff keys take ~0.6 s a session).
def test_many_sessions_at_48k(tmp_path, broker):
    n = int(os.environ.get("QL_FW_SESSIONS", "150"))
    _run_sessions(tmp_path, broker, n, seed=48, heap="48k")


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_1000_sessions_at_48k(tmp_path, broker):
    st = _run_sessions(tmp_path, broker, 1000, seed=1048, heap="48k")
    print("heap free at the end:", st["heap"])


def test_time_beacon_and_an_intentional_reset(rig):
    acker, vd = rig
    acker.send_cmd(DEV, {"cmd": "time", "t": 1800000000000})
    wait_for(lambda: 1800000000000 <= vd.stats()["clock"] < 1800000060000, 10, what="clock set by beacon")
    boot = vd.stats()["boot"]
    acker.send_cmd(DEV, {"cmd": "reset"})
    wait_for(lambda: vd.restarts == 1, 20, what="the board reset itself")
    wait_for(lambda: vd.stats()["boot"] == boot + 1, 20, what="booted again")
    assert vd.stats()["reset"] == "intentional"
    wait_for(lambda: any(e["reset"] == "intentional" for e in acker.of_kind("status")), 20,
             what="reset cause in status")
    # The config came from flash: the screen is right before the network is.
    assert vd.screen()["lines"][:2] == ["A07 No.1024", "张三"]


def test_a_failing_flash_starves_the_watchdog_and_the_board_resets(tmp_path, broker):
    acker, vd = _rig(tmp_path, broker, site={"wdt_ms": 3000})
    try:
        vd.start()
        vd.call("W01")
        vd.staff("end")
        vd.flash_ok(False)
        vd.press("satisfied")
        assert "Thank you" not in vd.screen()["lines"]      # not on flash: no thanks
        assert vd.stats()["refused"] == 1
        wait_for(lambda: vd.restarts == 1, 20, what="watchdog reset")
        wait_for(lambda: vd.alive() and vd.stats()["reset"] == "watchdog", 20, what="rebooted")
        vd.call("W02")
        vd.staff("end")
        vd.press("satisfied")
        assert vd.stats()["thanks"] == 1
        wait_for(lambda: [r["session"] for r in acker.of_kind("rating")] == [vd.stats()["session"]], 20,
                 what="the rating after the reset")
    finally:
        vd.stop()
        acker.stop()


def test_a_transition_not_on_flash_leaves_the_desk_where_it_was(tmp_path, broker):
    # The staff ends a service as the flash fails: the press is refused ("busy")
    # and the service goes on, rather than a prompt for a service whose `ended`
    # was never written. (Before: the desk moved first and the step was lost.)
    acker, vd = _rig(tmp_path, broker, site={"wdt_ms": 60000})
    try:
        vd.start()
        vd.call("W01")
        session = vd.stats()["session"]
        vd.flash_ok(False)
        vd.staff("end")
        st = vd.stats()
        assert (st["state"], st["session"], st["refused"]) == ("serving", session, 1)
        vd.press("satisfied")                      # no prompt: nothing to rate
        assert vd.stats()["thanks"] == 0
        vd.flash_ok(True)
        vd.staff("end")
        vd.press("satisfied")
        assert vd.stats()["thanks"] == 1
        wait_for(lambda: [e["action"] for e in acker.of_kind("session") if e["session"] == session]
                 == ["called", "started", "ended"], 20, what="the service's steps, each once")
    finally:
        vd.stop()
        acker.stop()


def test_a_bad_retained_config_is_a_config_alarm_not_a_reboot_loop(tmp_path, broker):
    # What an older (or foreign) agent could leave retained on the broker: a staff
    # number with a control character, a name pasted with a tab. Today's firmware
    # copies it into every event, protocol.encode raises and the board resets, again
    # and again. The device leaves the bad fields out and says so (`config`).
    import json
    import subprocess
    from protocol import messages, topics
    from test_agent_support import edge_agent
    agent = RealAgent(str(tmp_path), broker.port, HALL, {DEV: KEY},
                      {DEV: {k: BASE[k] for k in ("window", "staff", "staff_no")}}).start()
    vd = _device(tmp_path, broker, site={"alarm_s": 1})
    try:
        vd.start()
        wait_for(lambda: vd.screen()["lines"][:2] == ["A07 No.1024", "张三"], 20, what="config on screen")
        boot = vd.stats()["boot"]
        # ... and an hwm past what the outbox's 32-bit seqs hold (it would wrap, and seqs repeat).
        bad = dict(BASE, staff="张三\t", staff_no="10\x0124", prompt_s=0, t=1764000000000, hwm=2 ** 32 + 5)
        # Sealed with the device's key (an unsealed one is refused before its
        # fields are read): the counter just above the agent's retained config.
        topic = topics.topic(HALL, DEV, topics.CONFIG)
        live = subprocess.run(["mosquitto_sub", "-p", str(broker.port), "-t", topic, "-C", "1", "-W", "5"],
                              check=True, capture_output=True).stdout
        sealed = messages.seal(KEY, topics.CONFIG, bad, json.loads(live)["n"] + 1)
        subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-q", "1", "-r", "-t", topic,
                        "-m", sealed], check=True)
        wait_for(lambda: vd.screen()["lines"][0] != "A07 No.1024", 10, what="the bad config arrived")
        vd.call("B01")
        vd.staff("end")
        vd.press("satisfied")
        assert "Thank you" in vd.screen()["lines"] and vd.stats()["thanks"] == 1
        assert vd.stats()["alarm"] == "config"
        assert vd.screen()["lines"][0] == "A07" and "张三" not in vd.screen()["lines"]  # bad fields not shown
        wait_for(lambda: agent.of_kind("rating"), 20, what="the rating at the agent, without the staff")
        r = agent.of_kind("rating")[0]
        assert r["window"] == "A07" and "staff" not in r and r["seq"] < 100
        wait_for(lambda: any(e.get("alarm") == "config" for e in agent.of_kind("status")), 10,
                 what="config alarm at the agent")
        assert vd.restarts == 0 and vd.stats()["boot"] == boot and vd.stats()["unbuilt"] == 0
        # The hall manager sets the window again: a good config, the alarm clears.
        edge_agent(agent.config, "window", "set", "A07", "--staff", "张三")
        wait_for(lambda: vd.stats()["alarm"] is None, 10, what="alarm cleared")
        # (The new config may arrive while the 3 s "Thank you" is still up.)
        wait_for(lambda: vd.screen()["lines"][:2] == ["A07 No.1024", "张三"], 10, what="the good config on screen")
        vd.call("B02")
        vd.staff("end")
        vd.press("very_satisfied")
        wait_for(lambda: len(agent.of_kind("rating")) == 2, 20, what="second rating")
        assert agent.of_kind("rating")[1]["staff"] == "1024"
        assert vd.restarts == 0 and vd.alive() and not agent.rejected
    finally:
        vd.stop()
        agent.stop()


def test_an_event_that_cannot_be_built_is_refused_like_busy_and_alarmed(tmp_path, broker):
    # A window id from provisioning that no event can carry (config without one), and a
    # queue ticket too long for the protocol: the press is refused ("busy", not thanked,
    # counted), the `config` alarm goes out, the board does not reset.
    cfg = {k: v for k, v in BASE.items() if k != "window"}
    acker = Acker(broker.port, HALL, {DEV: KEY}, {"*": cfg}).start()
    vd = _device(tmp_path, broker, site={"alarm_s": 1, "window": "W" * 65})
    try:
        vd.start()
        boot = vd.stats()["boot"]
        vd.staff("start")
        assert vd.screen()["lines"][2:] == ["Busy, sorry", "系统繁忙"]
        st = vd.stats()
        assert st["unbuilt"] == 1 and st["refused"] == 1 and st["alarm"] == "config"
        wait_for(lambda: any(e.get("alarm") == "config" for e in acker.of_kind("status")), 10,
                 what="config alarm in status")
        # The agent's config names the window: sessions go on.
        acker.config["*"] = dict(BASE)
        acker.send_config(DEV)
        wait_for(lambda: vd.screen()["lines"][0] == "A07 No.1024", 10, what="window from the agent")
        session = vd.stats()["session"]
        acker.send_cmd(DEV, {"cmd": "call", "ticket": "T" * 65})
        wait_for(lambda: vd.stats()["unbuilt"] == 2, 10, what="the long ticket refused")
        assert vd.stats()["session"] == session and vd.stats()["refused"] == 2   # started nothing
        vd.call("A001")
        vd.staff("end")
        vd.press("satisfied")
        assert vd.stats()["thanks"] == 1
        wait_for(lambda: [r["level"] for r in acker.of_kind("rating")] == ["satisfied"], 20, what="the rating")
        assert [e["ticket"] for e in sessions(acker, "called")] == ["A001"]
        assert vd.restarts == 0 and vd.stats()["boot"] == boot and vd.alive()
    finally:
        vd.stop()
        acker.stop()
