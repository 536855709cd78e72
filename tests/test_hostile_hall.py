"""A whole hall attacked at every door while citizens keep rating.

Real Mosquitto (anonymous, as an attacker on the hall Wi-Fi would wish),
the real agent, the real county server and two evaluators running the real
firmware under MicroPython. Between services, hostile input goes in at each
entry point: MQTT events and status (malformed, oversized, control
characters, boundary integers, lone surrogates, foreign topics), forged and
replayed agent -> device messages (ack, config, cmd), device config through
`edge-agent window set` and POST /api/windows, county batches, hallctl
arguments. Every one is refused with a reason (or kept in quarantine with
one), no service dies, and every thanked press reaches the county once.
"""
import json
import os
import subprocess
import urllib.error
import urllib.request

import paho.mqtt.client as mqtt
import pytest

import protocol
from protocol import topics
from harness import VENV_BIN, wait_for
from tools.hall import Hall

HALL = "hostile-hall"
MAX_INT = 2 ** 53 - 1
# Every reason the SPEC lists for a refused message; anything else (agent_error) is a bug.
REASONS = {"too_large", "bad_json", "bad_version", "unknown_kind", "missing_field", "unknown_field",
           "bad_type", "bad_value", "bad_mac", "bad_topic", "unknown_device", "topic_mismatch",
           "conflict"}


def _signed(key, **fields):
    """A wire event built field by field (bypassing encode's checks), signed with `key`."""
    ev = {"v": 1, "device": "ev-01", "seq": 900000, "kind": "rating", "t": 0,
          "level": "satisfied", "channel": "window", "session": "s-1"}
    ev.update(fields)
    # A lone surrogate can only travel as a JSON escape (\\ud800); the rest as raw UTF-8.
    body = "{" + ",".join('"%s":%s' % (k, json.dumps(v, ensure_ascii="\ud800" in str(v)))
                          for k, v in ev.items()) + "}"
    return (body[:-1] + ',"mac":"%s"}' % protocol.mac.sign(key, body.encode())).encode()


def hostile_events(key):
    """(what, payload) for the events topic of a registered device."""
    return [
        ("not json", b"not json"),
        ("empty", b""),
        ("invalid utf-8", b"\xff\xfe{}"),
        ("array", b"[]"),
        ("deep nesting", b"[" * 100000 + b"]" * 100000),
        ("NaN", b'{"v":NaN}'),
        ("oversized", b'{"v":1,"pad":"' + b"x" * 5000 + b'"}'),
        ("missing fields", b'{"v":1}'),
        ("unknown kind", _signed(key, kind="coffee")),
        ("unknown field", _signed(key, extra="x")),
        ("bool seq", _signed(key, seq=True)),
        ("float t", _signed(key, t=1.5)),
        ("seq 0", _signed(key, seq=0)),
        ("seq past 2^53-1", _signed(key, seq=MAX_INT + 1)),
        ("huge int", _signed(key, seq=10 ** 40)),
        ("negative t", _signed(key, t=-1)),
        ("65-char staff", _signed(key, staff="王" * 65)),
        ("tab in staff", _signed(key, staff="王芳\t")),
        ("escape in staff", _signed(key, staff="\x1b[31m红")),
        ("lone surrogate", _signed(key, staff="\ud800")),
        ("unknown level", _signed(key, level="meh")),
        ("wrong key", _signed(b"\x01" * 32)),
        ("non-hex mac", _signed(key)[:-66] + b'"' + "é".encode() * 64 + b'"}'),
        ("device differs from topic", _signed(key, device="ev-02")),
    ]


HOSTILE_TOPICS = [
    ("qinglian/v1/%s/%s/events" % (HALL, "设备"), b"{}"),
    ("qinglian/v1/%s/ghost-device/events" % HALL, b"{}"),
    ("qinglian/v1/%s/ev-01/status" % HALL, b"\xff"),
    ("qinglian/v1/%s/ev-01/status" % HALL, b'{"online":"yes","fw":"\x1b[2J"}'),
    ("qinglian/v1/%s/ev-01/status" % HALL, b"[" * 50000),
]

HOSTILE_WINDOW_ARGS = [
    ["--staff", "王" * 65],
    ["--staff", "王\t芳"],
    ["--staff", "\x1b[31m王芳"],
    ["--staff-no", "1\x07"],
    ["--target-s", "abc"],
    ["--target-s", "-5"],
    ["--target-s", str(10 ** 20)],
]

HOSTILE_HTTP_BODIES = [
    b"not json",
    b"[]",
    b'"staff"',
    b'{"staff": 1}',
    json.dumps({"staff": "王" * 65}).encode(),
    json.dumps({"staff": "王\u0007芳"}).encode(),
    json.dumps({"target_s": "900"}).encode(),
    json.dumps({"target_s": True}).encode(),
    json.dumps({"target_s": 10 ** 30}).encode(),
    b'{"target_s": NaN}',
    b"[" * 100000,
    b'{"staff": "' + b"x" * 20000 + b'"}',
]


def _publish(port, items, retain=False):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder")
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        for topic, payload in items:
            c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    finally:
        c.loop_stop()
        c.disconnect()


def _post(url, body, headers=None):
    req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _serve(hall, vd, ticket, level):
    vd.call(ticket)
    vd.staff("end")
    vd.press(level)


@pytest.fixture
def hall(tmp_path):
    h = Hall(str(tmp_path), hall=HALL, devices=2).start()
    try:
        for vd in h.devices.values():
            wait_for(lambda: vd.stats()["ready"], 30, what="device ready")
        h.edge_agent("window", "set", "A01", "--staff", "王芳", "--staff-no", "1024")
        yield h
    finally:
        h.stop()


def test_every_door_refuses_hostile_input_and_no_thanked_press_is_lost(hall):
    devs = [hall.devices[d] for d in hall.device_ids]
    key = hall.keys["ev-01"]
    n = 0

    def services(rounds):
        nonlocal n
        for _ in range(rounds):
            for vd in devs:
                n += 1
                _serve(hall, vd, "T%03d" % n, "satisfied" if n % 3 else "dissatisfied")

    services(2)

    # MQTT events and status, under a registered device's and foreign topics.
    _publish(hall.broker.port, [(topics.topic(HALL, "ev-01", topics.EVENTS), p) for _, p in hostile_events(key)]
             + HOSTILE_TOPICS)
    services(2)

    # Forged agent -> device messages: an ack that would empty the outbox, a seq
    # poison, a foreign config (retained: it comes back on every reconnect), a reset.
    for d in hall.device_ids:
        _publish(hall.broker.port, [
            (topics.topic(HALL, d, topics.ACK), b'{"acks":[[1,2147483647]]}'),
            (topics.topic(HALL, d, topics.CMD), b'{"cmd":"reset"}'),
            (topics.topic(HALL, d, topics.CMD), b'{"cmd":"time","t":1}'),
        ])
    hall.devices["ev-02"].wifi(False)     # events wait in the outbox while the forged ack is retained
    _serve(hall, hall.devices["ev-02"], "T-offline", "very_satisfied")
    n += 1
    _publish(hall.broker.port, [(topics.topic(HALL, "ev-02", topics.CONFIG),
                                 b'{"window":"X","staff":"\\u001b[2J","hwm":4000000000,"t":1}')], retain=True)
    hall.devices["ev-02"].wifi(True)
    services(2)

    # Device config through the CLI and the HTTP API.
    cli = os.path.join(VENV_BIN, "edge-agent")
    for args in HOSTILE_WINDOW_ARGS + [["--staff", "x"]]:
        window = "A01" if args != ["--staff", "x"] else "A 01"
        out = subprocess.run([cli, "window", "set", window] + args + ["--config", hall.config_path],
                             capture_output=True, text=True, cwd=hall.work_dir)
        assert out.returncode != 0, args
        # One line says what is wrong (argparse puts its usage above it).
        assert "Traceback" not in out.stderr and out.stderr.strip().splitlines()[-1].startswith("edge-agent"), \
            out.stderr
    url = "http://127.0.0.1:%d/api/windows/A01" % hall.http_port
    for body in HOSTILE_HTTP_BODIES:
        code, answer = _post(url, body, {"Content-Type": "application/json"})
        assert 400 <= code < 500, (body[:40], code, answer[:200])
        assert b"Traceback" not in answer
    services(1)

    # County batches from someone without the hall's token, and with it but broken.
    batches = "%s/v1/halls/%s/batches" % (hall.county_url, HALL)
    auth = {"Authorization": "Bearer " + hall.token, "Content-Type": "application/json"}
    junk = [
        (b'{"batch":"x","hall":"%s","events":[]}' % HALL.encode(), {"Authorization": "Bearer nope"}),
        (b"[" * 100000, auth),
        (b"not json", auth),
        (json.dumps({"batch": "b\x00", "hall": HALL, "events": []}).encode(), auth),
        (json.dumps({"batch": "b1", "hall": HALL, "events": [{"device": "ev-01", "seq": MAX_INT + 1,
                                                              "body": "{}"}]}).encode(), auth),
        (json.dumps({"batch": "b2", "hall": HALL, "events": [{"device": "../x", "seq": 1, "body": "{}"}]}).encode(),
         auth),
    ]
    for body, headers in junk:
        code, answer = _post(batches, body, headers)
        assert 400 <= code < 500, (body[:40], code, answer[:200])
        assert b"Traceback" not in answer
    code, answer = _post(batches, json.dumps({"batch": "b3", "hall": HALL, "events": [
        {"device": "ev-01", "seq": 999999, "body": _signed(key, seq=999999, staff="\ud800").decode()}]}).encode(),
        auth)
    assert code == 200 and json.loads(answer)["results"][0]["status"] == "invalid", answer

    # The technician's tool: hostile arguments are one line and a non-zero exit, before any port is opened.
    hallctl = os.path.join(VENV_BIN, "hallctl")
    for args in (["--hall", "h\x1b[2J", "--device", "ev-01", "--key", "00" * 32],
                 ["--hall", "h1", "--device", "ev 01", "--key", "00" * 32],
                 ["--hall", "h1", "--device", "ev-01", "--key", "zz" * 32],
                 ["--hall", "h1", "--device", "ev-01", "--key", "00" * 32, "--window", "王" * 65]):
        out = subprocess.run([hallctl, "provision", "/dev/qinglian-no-such-port", "--broker", "127.0.0.1"] + args,
                             capture_output=True, text=True)
        assert out.returncode != 0 and "Traceback" not in out.stderr, (args, out.stderr)
        assert "\x1b" not in out.stderr

    services(1)

    # Nothing died; every thanked press is at the county, once.
    assert hall.agent.alive() and hall.county.alive() and hall.broker.alive()
    thanked = sum(vd.stats()["thanks"] for vd in devs)
    assert thanked == n
    hall.wait_county_ratings(thanked, timeout=120)
    for vd in devs:
        assert vd.stats()["boot"] == 1, "a forged message rebooted a device"
    # The window kept what the manager set; every refused message has a SPEC reason.
    snap = json.load(urllib.request.urlopen("http://127.0.0.1:%d/api/hall" % hall.http_port, timeout=10))
    a01 = [w for w in snap["windows"] if w["window"] == "A01"][0]
    assert a01["staff"] == "王芳", a01
    import sqlite3
    db = sqlite3.connect(os.path.join(hall.work_dir, "agent.db"))
    reasons = {r for (r,) in db.execute("SELECT DISTINCT reason FROM quarantine")}
    db.close()
    assert reasons and reasons <= REASONS, reasons
