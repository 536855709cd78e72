"""Text a device controls reaches a technician's terminal escaped: a
malicious device's `fw` or alarm name with an ANSI escape sequence must not
rewrite the screen of whoever runs `edge-agent devices list` or `status`."""
import json

import paho.mqtt.client as mqtt

from harness import Mosquitto, free_port, wait_for
from protocol import topics
from test_agent_support import (PahoDevice, add_devices, broker_dir, edge_agent, start_agent, status,
                                store_count, write_config)
from edge_agent.terminal import dumps, printable

# Clear screen, set the window title, 8-bit CSI, a right-to-left override.
EVIL_FW = "ql\x1b[2J\x1b]0;owned\x07\x9b31m\u202egpj.exe"
EVIL_ALARM = "display\x9b2J\u202e"


def _raw(text):
    return [c for c in text if c in "\x1b\x07\x9b\u202e"]


def test_printable_keeps_chinese_and_escapes_controls():
    assert printable("王芳 A01") == "王芳 A01"
    assert printable(EVIL_FW) == "ql\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\u202egpj.exe"
    assert json.loads(dumps({"fw": EVIL_FW, "staff": "王芳"})) == {"fw": EVIL_FW, "staff": "王芳"}
    assert not _raw(dumps({"fw": EVIL_FW})) and "王芳" in dumps("王芳")


def test_device_strings_reach_the_terminal_escaped(tmp_path):
    work = str(tmp_path)
    broker = Mosquitto(broker_dir()).start()
    http = free_port()
    config = write_config(work, broker.port, hall="h1", http_port=http)
    key = add_devices(config, ["ev-66"])["ev-66"]
    agent = start_agent(work, config, http)
    dev = PahoDevice("h1", "ev-66", key, broker.port).start()
    try:
        assert dev.connected.wait(10)
        # Presence is unsigned: any string the device likes.
        dev.client.publish(topics.topic("h1", "ev-66", topics.STATUS),
                           json.dumps({"online": True, "fw": EVIL_FW}).encode(), qos=1, retain=True)
        dev.send(status("ev-66", 1, alarm=EVIL_ALARM))
        db = work + "/agent.db"
        wait_for(lambda: store_count(db, "SELECT count(*) FROM devices WHERE fw LIKE 'ql%'") == 1
                 and store_count(db, "SELECT count(*) FROM devices WHERE health_alarm IS NOT NULL") == 1,
                 20, what="the device's fw and alarm in the store")
        for argv in (("devices", "list"), ("devices", "show", "ev-66"), ("status",), ("status", "--json")):
            out = edge_agent(config, *argv).stdout
            assert not _raw(out), (argv, out)
            assert "ev-66" in out
        assert "ql\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\u202egpj.exe" in edge_agent(config, "devices", "list").stdout
        assert "display\\x9b2J\\u202e" in edge_agent(config, "status").stdout
        # Junk from anyone on the broker is kept in quarantine, and listed escaped.
        dev.client.publish(topics.topic("h1", "ev-66", topics.EVENTS), ("\x1b[2J" + EVIL_FW).encode(), qos=1)
        wait_for(lambda: store_count(db, "SELECT count(*) FROM quarantine") == 1, 20, what="the junk quarantined")
        out = edge_agent(config, "quarantine", "list").stdout
        assert "bad_json" in out and "\\x1b[2J" in out and not _raw(out), out
        snap = json.loads(edge_agent(config, "status", "--json").stdout)
        assert [d["alarms"] for d in snap["devices"]] == [[EVIL_ALARM]]   # same text, escaped as JSON
    finally:
        dev.stop()
        agent.stop()
        broker.stop()
