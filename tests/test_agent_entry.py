"""What a hall manager types reaches a device only if every event can carry
it: `window set` and POST /api/windows/<W> hold staff, staff_no, window ids and
target_s to the protocol's own rules (protocol.check_field) and refuse the rest
with one clear line, changing nothing. Real agent, real broker, a device
listening to its retained config."""
import json
import sqlite3
import time
import urllib.error
import urllib.request

import pytest

from harness import Mosquitto, wait_for
from test_agent_support import PahoDevice, add_devices, edge_agent, free_port, http_json, start_agent, \
    status, write_config

HALL = "h1"


def _start(work, tamper=None):
    """Broker, agent with ev-01 at window A01 (张三, 1024, 600 s), and the device
    listening; `tamper(db)` changes the store before the agent starts."""
    broker = Mosquitto(work + "/broker").start()
    http = free_port()
    config = write_config(work, broker.port, hall=HALL, http_port=http)
    keys = add_devices(config, ["ev-01"])
    edge_agent(config, "window", "set", "A01", "--staff", "张三", "--staff-no", "1024", "--target-s", "600")
    if tamper:
        tamper(work + "/agent.db")
    agent = start_agent(work, config, http)
    dev = PahoDevice(HALL, "ev-01", keys["ev-01"], broker.port).start()
    wait_for(lambda: dev.configs, 10, what="retained config")
    return {"config": config, "http": http, "dev": dev, "db": work + "/agent.db", "agent": agent,
            "broker": broker}


def _stop(h):
    h["dev"].stop()
    h["agent"].stop()
    h["broker"].stop()


@pytest.fixture
def hall(tmp_path):
    h = _start(str(tmp_path))
    yield h
    _stop(h)


def post(http, window, body, path="/api/windows/"):
    req = urllib.request.Request("http://127.0.0.1:%d%s%s" % (http, path, window),
                                 data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def window_row(db):
    c = sqlite3.connect(db, timeout=30)
    try:
        return c.execute("SELECT staff, staff_no, target_s FROM windows WHERE window = 'A01'").fetchone()
    finally:
        c.close()


def test_window_set_refuses_what_no_event_can_carry(hall):
    before = window_row(hall["db"])
    cli_cases = [
        (["--staff", "张" * 65], "staff '张张"),                      # over 64 characters
        (["--staff", "张\x01三"], "staff '张\\x01三'"),               # a control character
        (["--staff", "张\t三"], "staff '张\\t三'"),                   # a tab inside
        (["--staff-no", "1" * 65], "staff_no '1111"),
        (["--target-s", "0"], "target_s 0: must be a whole number of seconds 1-86400"),
        (["--target-s", "86401"], "target_s 86401"),
    ]
    for args, words in cli_cases:
        out = edge_agent(hall["config"], "window", "set", "A01", *args, check=False)
        assert out.returncode == 1, args
        assert out.stderr.startswith("edge-agent: ") and words in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
        if "staff" in words:
            assert "1-64 characters, no control characters" in out.stderr
    out = edge_agent(hall["config"], "window", "set", "A 1", "--staff", "x", check=False)
    assert out.returncode == 1 and "window 'A 1' must be 1-32 characters" in out.stderr
    http_cases = [
        ({"staff": "x" * 65}, "staff 'xxxx"),
        ({"staff": "a\u0001b"}, "no control characters"),
        ({"staff_no": "1\t2"}, "staff_no '1\\t2'"),
        ({"staff": "\ud800"}, "staff"),                # a lone surrogate: no UTF-8 can carry it
        ({"staff": 5}, "staff must be text, not 5"),
        ({"target_s": "900"}, "target_s '900'"),
        ({"target_s": True}, "target_s True"),
        ({"target_s": 0}, "target_s 0"),
        ({"target_s": 1.5}, "target_s 1.5"),
        ({"target_s": 10 ** 20}, "target_s 100000000000000000000"),
    ]
    for body, words in http_cases:
        code, reply = post(hall["http"], "A01", body)
        assert code == 400 and words in reply["error"], (body, reply)
    # Nothing changed, and no device heard of any of it.
    time.sleep(1.5)
    assert window_row(hall["db"]) == before == ("张三", "1024", 600)
    assert {(c.get("staff"), c.get("staff_no"), c["targets"]["default"]) for c in hall["dev"].configs} == {
        ("张三", "1024", 600)}
    # A name pasted from a spreadsheet with a tab or a full-width space around it is
    # taken without them (NFC), by either door.
    edge_agent(hall["config"], "window", "set", "A01", "--staff", "李四\t", "--staff-no", " 2048 ")
    wait_for(lambda: hall["dev"].configs[-1].get("staff") == "李四", 10, what="config with the new staff")
    assert hall["dev"].configs[-1]["staff_no"] == "2048"
    assert post(hall["http"], "A01", {"staff": "\u3000王五\t", "staff_no": "Zoe\u0301"})[0] == 200
    wait_for(lambda: hall["dev"].configs[-1].get("staff") == "王五", 10, what="config via HTTP")
    assert hall["dev"].configs[-1]["staff_no"] == "Zo\u00e9"
    assert hall["agent"].alive()


def test_a_bad_staff_an_older_agent_stored_is_left_out_of_the_config(tmp_path):
    def older_agent(db):
        c = sqlite3.connect(db)
        with c:
            c.execute("UPDATE windows SET staff = ? WHERE window = 'A01'", ("张三\t",))
        c.close()
    h = _start(str(tmp_path), older_agent)
    try:
        assert "staff" not in h["dev"].configs[-1] and h["dev"].configs[-1]["staff_no"] == "1024"
        assert "its staff breaks the protocol's rules" in h["agent"].log()
    finally:
        _stop(h)


def test_the_config_alarm_reaches_the_hall_manager(hall, tmp_path):
    from test_hall_screen import CHROMIUM, browse
    hall["dev"].send(status("ev-01", 1, "config"))
    wait_for(lambda: http_json(hall["http"], "/api/hall")["windows"][0]["alarms"] == ["config"], 10,
             what="config alarm on /api/hall")
    assert "  ev-01 at window A01: config error; 0 events in its outbox" in edge_agent(
        hall["config"], "status").stdout.splitlines()
    wait_for(lambda: http_json(hall["http"], "/api/status")["light"] == "alarm", 15, what="the tower light red")
    if CHROMIUM:
        dom = browse("http://127.0.0.1:%d/" % hall["http"], tmp_path, "--dump-dom")
        assert '<span class="alarm" data-alarm="config">配置错误</span>' in dom


def test_ota_writes_refuse_what_is_not_an_offer(hall):
    """POST /api/ota/offer and /withdraw (hallctl ota) hold their bodies to
    their shapes: a clear 400, nothing recorded, the agent serving on."""
    def ota(what, body):
        return post(hall["http"], what, body, path="/api/ota/")
    cases = [
        ("offer", {"devices": ["ev-01"], "version": ["x"]}, "version must be"),
        ("offer", {"devices": "ev-01", "version": "v1"}, "devices must be a list"),
        ("offer", {"devices": ["ev-01"], "version": "v1", "health_s": 5}, "health_s must be"),
        ("offer", {"devices": ["ev-01"], "version": "v1"}, "no bundle 'v1'"),
        ("withdraw", {"devices": "ev-01"}, "devices must be a list"),
        ("withdraw", {}, "devices must be a list"),
        ("bundles", {"not": "a zip"}, "not an update bundle"),
    ]
    for what, body, words in cases:
        code, answer = ota(what, body)
        assert code == 400 and words in answer["error"], (what, body, code, answer)
    code, answer = ota("nothing", {})
    assert code == 404
    with urllib.request.urlopen("http://127.0.0.1:%d/api/ota" % hall["http"], timeout=5) as r:
        assert json.load(r) == {"devices": []}
