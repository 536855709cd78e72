"""Bad input sent with mosquitto_pub lands in quarantine with the right
reason, while valid traffic between the bad messages is all committed;
random garbage never stops the agent."""
import json
import random
import secrets
import subprocess

import pytest

import protocol
from protocol import topics
from harness import Mosquitto, wait_for
from test_agent_support import (PahoDevice, add_devices, edge_agent, free_port, http_json, rating,
                                start_agent, store_count, write_config)

HALL = "h1"


@pytest.fixture(scope="module")
def hall(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("quarantine"))
    broker = Mosquitto(work + "/broker").start()
    http = free_port()
    config = write_config(work, broker.port, hall=HALL, http_port=http)
    keys = add_devices(config, ["ev-01", "ev-02", "ev-old"])
    edge_agent(config, "devices", "retire", "ev-old")
    agent = start_agent(work, config, http)
    yield {"work": work, "broker": broker, "http": http, "keys": keys, "db": work + "/agent.db", "agent": agent}
    agent.stop()
    broker.stop()
    assert agent.p.returncode == 0, agent.log()


def pub(hall, device, payload, channel="events"):
    subprocess.run(["mosquitto_pub", "-p", str(hall["broker"].port), "-q", "1",
                    "-t", topics.topic(HALL, device, channel), "-s"], input=payload, check=True)


def signed(hall, device, seq, key_of=None, **fields):
    ev = rating(device, seq)
    ev.update(fields)
    return protocol.encode(ev, hall["keys"][key_of or device])


def test_each_kind_of_bad_input_is_quarantined_with_its_reason(hall):
    k1 = hall["keys"]["ev-01"]
    valid = iter(range(1, 100))

    def ok():
        pub(hall, "ev-01", signed(hall, "ev-01", next(valid)))

    ok()
    pub(hall, "ev-01", b"not json at all")                                       # malformed
    ok()
    pub(hall, "ev-01", b'{"v":1,"device":"ev-01","pad":"' + b"x" * 2000 + b'"}')  # oversized
    ok()
    first = signed(hall, "ev-01", 1)
    pub(hall, "ev-01", first)                                                    # replayed identical
    ok()
    forged = json.loads(signed(hall, "ev-01", 50))
    forged["mac"] = secrets.token_hex(32)
    pub(hall, "ev-01", protocol.compact.dumps(forged).encode())                  # forged MAC
    ok()
    pub(hall, "ev-01", signed(hall, "ev-01", 2, level="very_dissatisfied"))      # conflicting seq
    ok()
    pub(hall, "ev-01", signed(hall, "ev-02", 1))                                 # ev-02's event on ev-01's topic
    ok()
    pub(hall, "ev-99", protocol.encode(rating("ev-99", 1), k1))                  # unknown device
    ok()
    pub(hall, "ev-old", signed(hall, "ev-old", 1))                               # retired device
    ok()
    pub(hall, "ev-01", b'{"v":1,"device":"ev-01","seq":0,"kind":"rating"}')      # schema: missing field
    ok()
    pub(hall, "ev-01", b'{"online":"maybe"}', channel="status")                  # bad presence
    ok()
    n_valid = next(valid) - 1

    reasons = ["bad_json", "too_large", "bad_mac", "conflict", "topic_mismatch", "unknown_device",
               "unknown_device", "missing_field", "bad_json"]
    db = hall["db"]
    wait_for(lambda: store_count(db, "SELECT count(*) FROM quarantine") == len(reasons), 20, what="quarantine")
    wait_for(lambda: store_count(db, "SELECT count(*) FROM events WHERE device='ev-01'") == n_valid, 20,
             what="valid events")
    got = sorted(r for r, in _rows(db, "SELECT reason FROM quarantine"))
    assert got == sorted(reasons)
    # the conflicting event never overwrote the stored one
    body = _rows(db, "SELECT body FROM events WHERE device='ev-01' AND seq=2")[0][0]
    assert json.loads(body)["level"] == "satisfied"
    snap = http_json(hall["http"], "/api/status")
    assert snap["duplicates"] >= 1
    assert snap["quarantined"]["unknown_device"] == 2 and snap["conflicts"] == 1
    assert snap["committed"] == n_valid
    listing = edge_agent(hall["work"] + "/agent.toml", "quarantine", "list", "--reason", "conflict").stdout
    assert "conflict x1 qinglian/v1/h1/ev-01/events" in listing and "very_dissatisfied" in listing
    metrics = _get(hall["http"], "/metrics")
    assert 'qinglian_agent_quarantined_total{reason="bad_mac"} 1' in metrics
    assert "qinglian_agent_committed_total %d" % n_valid in metrics


def test_garbage_never_stops_ingest(hall):
    rnd = random.Random(7)
    base = signed(hall, "ev-02", 1)
    dev = PahoDevice(HALL, "ev-02", hall["keys"]["ev-02"], hall["broker"].port, client_id="fuzz-ev-02").start()
    try:
        wait_for(dev.connected.is_set, 10, what="device connected")
        for i in range(300):
            b = bytearray(base)
            for _ in range(rnd.randint(1, 6)):
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            if i % 3 == 0:
                b = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 1500)))
            dev.client.publish(topics.topic(HALL, "ev-02", "events"), bytes(b), qos=1)
            if i % 10 == 0:
                dev.send(rating("ev-02", 1000 + i))
        wait_for(lambda: dev.pending() == 0, 30, what="valid events acked")
    finally:
        dev.stop()
    assert hall["agent"].alive()
    seqs = {s for s, in _rows(hall["db"], "SELECT seq FROM events WHERE device='ev-02' AND seq >= 1000")}
    assert seqs == {1000 + i for i in range(0, 300, 10)}
    assert _get(hall["http"], "/healthz").strip() == "ok"


def _rows(db, sql):
    import sqlite3
    c = sqlite3.connect(db)
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()


def _get(port, path):
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return r.read().decode()


BOUNDS = ("seq_over_2_53", "t_huge", "lone_surrogate", "surrogate_field_name", "mac_non_ascii", "mac_non_hex",
          "mac_upper")


def test_protocol_bounds_are_reasons_not_agent_errors(hall):
    # The golden vectors for integers past 2**53 - 1, surrogates and MACs that are not
    # lowercase hex, through the real broker: each quarantined with its own reason
    # (never agent_error with a traceback), valid events around them all committed.
    import os
    from harness import ROOT
    with open(os.path.join(ROOT, "protocol", "vectors.json"), encoding="utf-8") as f:
        vectors = {v["name"]: v for v in json.load(f)["invalid"]}
    db = hall["db"]
    before = store_count(db, "SELECT count(*) FROM events WHERE device='ev-01'")
    for i, name in enumerate(BOUNDS):
        pub(hall, "ev-01", vectors[name]["wire"].encode())
        pub(hall, "ev-01", signed(hall, "ev-01", 200 + i))
    wait_for(lambda: store_count(db, "SELECT count(*) FROM events WHERE device='ev-01'") == before + len(BOUNDS),
             20, what="the valid events between them")
    for name in BOUNDS:
        wire = vectors[name]["wire"].encode()
        got = wait_for(lambda: _reasons(db, wire), 10, what="%s in quarantine" % name)
        assert got == [vectors[name]["error"]], (name, got)
    assert store_count(db, "SELECT count(*) FROM quarantine WHERE reason = 'agent_error'") == 0
    assert hall["agent"].alive()


def _reasons(db, payload):
    import sqlite3
    c = sqlite3.connect(db)
    try:
        return [r for r, in c.execute("SELECT reason FROM quarantine WHERE payload = ?", (payload,))]
    finally:
        c.close()
