"""The running agent's behaviour around ingest: disk guard (backpressure),
device configs and the time beacon, presence, the hall screen, the tower
light, SIGTERM, systemd notify and journald logging."""
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

import protocol
from protocol import messages, topics

from edge_agent import config as config_mod
from edge_agent.agent import Agent
from harness import Mosquitto, wait_for
from test_agent_support import (EDGE_AGENT, PahoDevice, add_devices, edge_agent, free_port, http_json,
                                rating, start_agent, status, store_count, write_config)
from test_hall_screen import CHROMIUM, browse

HALL = "h1"


class Usage:
    pct = 99.0

    def __call__(self):
        return self.pct


def _get_status(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=3) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def inproc(tmp_path):
    """An Agent in this process (so the disk and the light can be faked)."""
    from gpiozero.pins.mock import MockFactory
    broker = Mosquitto(str(tmp_path / "broker")).start()
    http = free_port()
    path = write_config(str(tmp_path), broker.port, hall=HALL, http_port=http,
                        extra="beacon_s = 1\n[light]\nenabled = true\n[devices]\noffline_after_s = 1\n"
                              "[screen]\nratings_delay_min = 0")
    keys = add_devices(path, ["ev-01", "ev-02"])
    usage, factory = Usage(), MockFactory()
    agent = Agent(config_mod.load(path), disk_usage=usage, pin_factory=factory)
    stop = threading.Event()
    t = threading.Thread(target=agent.run, args=(stop,))
    t.start()
    wait_for(agent.link.connected.is_set, 10, what="agent connected")
    yield dict(agent=agent, usage=usage, factory=factory, keys=keys, port=broker.port, http=http,
               config=path, db=str(tmp_path / "agent.db"))
    stop.set()
    t.join(30)
    broker.stop()


def test_disk_guard_stops_acking_then_catches_up(inproc):
    a = inproc["agent"]
    assert a.guard.active                          # 99% > 90% from the start
    dev = PahoDevice(HALL, "ev-01", inproc["keys"]["ev-01"], inproc["port"]).start()
    try:
        wait_for(dev.connected.is_set, 10, what="device")
        for seq in range(1, 11):
            dev.send(rating("ev-01", seq))
        wait_for(lambda: a.committer.held >= 10, 10, what="events held by the guard")
        assert store_count(inproc["db"]) == 0 and dev.pending() == 10
        code, body = _get_status(inproc["http"], "/healthz")
        assert code == 503 and "disk" in body
        wait_for(lambda: a.light_state == "alarm", 10, what="light alarm")
        red = inproc["factory"].pin(22)
        assert red.state                               # the red lamp is lit
        assert http_json(inproc["http"], "/api/status")["disk_guard"] is True
        inproc["usage"].pct = 40.0
        wait_for(lambda: dev.pending() == 0, 20, what="acks after the guard")
        assert store_count(inproc["db"]) == 10
        wait_for(lambda: _get_status(inproc["http"], "/healthz")[0] == 200, 10, what="healthy")
    finally:
        dev.stop()


def test_configs_beacon_presence_and_hall_screen(inproc, tmp_path):
    inproc["usage"].pct = 10.0
    a = inproc["agent"]
    a.guard.check()
    dev = PahoDevice(HALL, "ev-02", inproc["keys"]["ev-02"], inproc["port"]).start()
    cmds = []
    orig = dev._on_message

    def spy(c, u, msg):
        if msg.topic.endswith("/cmd"):
            cmds.append(messages.unseal(dev.key, topics.CMD, msg.payload, 0))
        orig(c, u, msg)
    dev.client.on_message = spy
    try:
        wait_for(lambda: dev.configs, 10, what="retained config")
        assert dev.configs[-1]["window"] == "A02" and dev.configs[-1]["hwm"] == 0
        for seq, level in enumerate(["very_satisfied", "satisfied", "satisfied", "very_dissatisfied"], 1):
            dev.send(rating("ev-02", seq, level=level, t=int(time.time() * 1000)))
        wait_for(lambda: dev.pending() == 0, 10, what="acks")
        # a change of staff reaches the device (CLI writes the store, the agent notices)
        edge_agent(inproc["config"], "window", "set", "A02", "--staff", "李四", "--staff-no", "2048")
        wait_for(lambda: dev.configs[-1].get("staff") == "李四", 10, what="config with the new staff")
        assert dev.configs[-1]["hwm"] == 4
        # and through the HTTP API
        req = urllib.request.Request("http://127.0.0.1:%d/api/windows/A02" % inproc["http"],
                                     data=json.dumps({"staff": "王五", "target_s": 300}).encode(), method="POST")
        urllib.request.urlopen(req, timeout=5).read()
        wait_for(lambda: dev.configs[-1].get("staff") == "王五", 10, what="config via HTTP")
        assert dev.configs[-1]["targets"]["default"] == 300
        wait_for(lambda: cmds, 5, what="time beacon")
        assert cmds[0]["cmd"] == "time" and abs(cmds[0]["t"] - time.time() * 1000) < 60000
        out = edge_agent(inproc["config"], "status", "--json")
        snap = json.loads(out.stdout)
        assert snap["broker_connected"] is True and snap["committed"] == 4
        assert "broker: connected" in edge_agent(inproc["config"], "status").stdout
        screen = http_json(inproc["http"], "/api/hall")
        w = {x["window"]: x for x in screen["windows"]}["A02"]
        assert w["online"] and w["staff"] == "王五"
        assert w["ratings_today"] == {"very_satisfied": 1, "satisfied": 2, "very_dissatisfied": 1}
        assert screen["light"] in ("ok", "warn")
        assert _get_status(inproc["http"], "/")[0] == 200          # the lobby screen
        # The device's alarms reach the hall manager: status, /metrics, the CLI, the lobby screen.
        dev.send(status("ev-02", 5, "display,outbox_full", 499))
        wait_for(lambda: {d["device"]: d["alarms"] for d in http_json(inproc["http"], "/api/status")["devices"]}
                 ["ev-02"] == ["display", "outbox_full"], 10, what="alarms in status")
        assert {x["window"]: x for x in http_json(inproc["http"], "/api/hall")["windows"]}["A02"]["alarms"] == [
            "display", "outbox_full"]
        assert 'qinglian_agent_device_alarm{device="ev-02",alarm="outbox_full"} 1' in _get_status(
            inproc["http"], "/metrics")[1]
        assert "  ev-02 at window A02: display fault, outbox full; 499 events in its outbox" in edge_agent(
            inproc["config"], "status").stdout.splitlines()
        listed = [l.split() for l in edge_agent(inproc["config"], "devices", "list").stdout.splitlines()]
        assert listed[0][5] == "alarm" and [l[5] for l in listed if l[0] == "ev-02"] == ["display,outbox_full"]
        if CHROMIUM:
            dom = browse("http://127.0.0.1:%d/" % inproc["http"], tmp_path, "--dump-dom")
            assert ('<div class="alarms"><span class="alarm" data-alarm="display">显示屏故障</span>'
                    '<span class="alarm stop" data-alarm="outbox_full">存储已满</span></div>') in dom
        dev.send(status("ev-02", 6))
        wait_for(lambda: "device alarms: none" in edge_agent(inproc["config"], "status").stdout, 10,
                 what="alarms cleared by the next status")
    finally:
        dev.client.disconnect()      # clean disconnect: publish the offline presence like a will would
        dev.client.loop_stop()
    # the Last Will says offline (sent explicitly: a clean disconnect drops the will)
    subprocess.run(["mosquitto_pub", "-p", str(inproc["port"]), "-q", "1", "-r",
                    "-t", "qinglian/v1/h1/ev-02/status", "-m", '{"online":false}'], check=True)
    wait_for(lambda: http_json(inproc["http"], "/api/status")["devices_offline"] == 2, 10, what="offline")
    wait_for(lambda: a.light_state == "warn", 10, what="light warn for offline devices")
    assert inproc["factory"].pin(27).state


def test_sigterm_finishes_acks_and_exits_0_with_systemd_notify(tmp_path):
    broker = Mosquitto(str(tmp_path / "broker")).start()
    http = free_port()
    path = write_config(str(tmp_path), broker.port, hall=HALL, http_port=http)
    keys = add_devices(path, ["ev-01"])
    sock_path = str(tmp_path / "notify.sock")
    notes = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notes.bind(sock_path)
    notes.settimeout(5)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, WATCHDOG_USEC="1000000", JOURNAL_STREAM="8:1234")
    agent = subprocess.Popen([EDGE_AGENT, "run", "--config", path], env=env, stderr=subprocess.PIPE, text=True)
    got = []
    try:
        while "READY=1" not in got:
            got.append(notes.recv(100).decode())
        while "WATCHDOG=1" not in got:
            got.append(notes.recv(100).decode())
        dev = PahoDevice(HALL, "ev-01", keys["ev-01"], broker.port).start()
        wait_for(dev.connected.is_set, 10, what="device")
        for seq in range(1, 301):
            dev.send(rating("ev-01", seq))
        wait_for(lambda: store_count(str(tmp_path / "agent.db")) > 0, 10, what="ingest under way")
        agent.send_signal(signal.SIGTERM)
        rc = agent.wait(30)
        err = agent.stderr.read()
        while "STOPPING=1" not in got:
            got.append(notes.recv(100).decode())
        assert rc == 0, err
        # journald: no timestamps, a priority prefix
        lines = [l for l in err.splitlines() if l]
        assert lines and all(l.startswith("<") for l in lines), lines[:3]
        assert any(l.startswith("<6>edge_agent: stopped") for l in lines)
        # whatever the agent acked is stored; a restart takes the rest
        stored = store_count(str(tmp_path / "agent.db"))
        assert stored >= len(dev.acked)
        agent2 = start_agent(str(tmp_path), path, http)
        dev.resend()
        wait_for(lambda: dev.pending() == 0, 20, what="all acked after restart")
        assert store_count(str(tmp_path / "agent.db")) == 300
        agent2.stop()
        dev.stop()
    finally:
        if agent.poll() is None:
            agent.kill()
        notes.close()
        broker.stop()


def test_a_second_agent_on_the_same_store_refuses_to_start(inproc):
    out = subprocess.run([EDGE_AGENT, "run", "--config", inproc["config"]], capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "another edge-agent is running" in out.stderr.strip().splitlines()[-1]


def test_replaced_device_hands_over_window_and_seq(inproc):
    inproc["usage"].pct = 10.0
    inproc["agent"].guard.check()
    old = PahoDevice(HALL, "ev-01", inproc["keys"]["ev-01"], inproc["port"]).start()
    try:
        wait_for(old.connected.is_set, 10, what="old device")
        for seq in range(1, 6):
            old.send(rating("ev-01", seq))
        wait_for(lambda: old.pending() == 0, 10, what="acks")
    finally:
        old.stop()
    key = secrets.token_bytes(32)
    out = edge_agent(inproc["config"], "devices", "replace", "ev-01", "ev-09", "--key", key.hex())
    assert "above 5" in out.stdout
    new = PahoDevice(HALL, "ev-09", key, inproc["port"]).start()
    try:
        wait_for(lambda: new.configs, 10, what="config for the new board")
        assert new.configs[-1]["window"] == "A01" and new.configs[-1]["hwm"] == 5
        new.send(rating("ev-09", 6))
        wait_for(lambda: new.pending() == 0, 10, what="new board acked")
    finally:
        new.stop()
    # the old board's retained config is cleared, and its events are refused from now on
    sub = subprocess.run(["mosquitto_sub", "-p", str(inproc["port"]), "-t", "qinglian/v1/h1/ev-01/config",
                          "-C", "1", "-W", "2"], capture_output=True, text=True)
    assert sub.stdout == ""
    subprocess.run(["mosquitto_pub", "-p", str(inproc["port"]), "-q", "1", "-t", "qinglian/v1/h1/ev-01/events",
                    "-s"], input=protocol.encode(rating("ev-01", 7), inproc["keys"]["ev-01"]), check=True)
    wait_for(lambda: store_count(inproc["db"], "SELECT count(*) FROM quarantine WHERE reason='unknown_device'") == 1,
             10, what="retired device refused")
