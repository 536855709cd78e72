"""The quarantine is bounded per device, against the real broker and the
real agent: one registered device floods thousands of distinct junk
messages and someone floods big ones under forged device ids; each bucket
keeps its first rows up to the bound (rows, bytes), the rest is counted in
the store, /metrics and `edge-agent status`, and a valid device's events
keep being committed and acked throughout. Old rows are purged."""
import os
import sqlite3

import pytest

from harness import Mosquitto, wait_for
from protocol import topics
from edge_agent.quarantine import UNREGISTERED
from edge_agent.store import MIGRATIONS, Store, now_ms
from test_agent_support import (PahoDevice, add_devices, edge_agent, free_port, http_json, rating,
                                start_agent, store_count, write_config)

HALL = "h1"
MAX_ROWS, MAX_BYTES = 50, 20000
FLOOD, FORGED = 3000, 600


@pytest.fixture
def hall(tmp_path):
    work = str(tmp_path)
    broker = Mosquitto(work + "/broker").start()
    http = free_port()
    config = write_config(work, broker.port, hall=HALL, http_port=http, extra="\n".join([
        "[quarantine]", "max_rows_per_device = %d" % MAX_ROWS, "max_bytes_per_device = %d" % MAX_BYTES,
        "keep_days = 1"]))
    keys = add_devices(config, ["ev-01", "ev-02"])
    yield {"work": work, "broker": broker, "http": http, "keys": keys, "config": config,
           "db": os.path.join(work, "agent.db")}
    broker.stop()


def bucket(db, name):
    return store_count(db, "SELECT count(*) || ' ' || coalesce(sum(size), 0) FROM quarantine WHERE bucket = ?",
                       (name,))


def test_a_junk_flood_is_bounded_counted_and_never_stops_valid_events(hall):
    db = hall["db"]
    # A row last seen two days ago: the agent's first housekeeping deletes it.
    store = Store(db)
    with store.atomic():
        store.conn.execute("INSERT INTO quarantine (received_ms, topic, payload, reason, digest, last_ms, bucket, "
                           "size) VALUES (1, 't', x'00', 'bad_json', 'old', ?, 'ev-02', 2)",
                           (now_ms() - 2 * 86400000,))
    store.close()
    agent = start_agent(hall["work"], hall["config"], hall["http"])
    flood = PahoDevice(HALL, "ev-01", hall["keys"]["ev-01"], hall["broker"].port, client_id="flood").start()
    good = PahoDevice(HALL, "ev-02", hall["keys"]["ev-02"], hall["broker"].port).start()
    try:
        wait_for(lambda: flood.connected.is_set() and good.connected.is_set(), 10, what="clients connected")
        events = topics.topic(HALL, "ev-01", topics.EVENTS)
        for i in range(FLOOD):
            flood.client.publish(events, b"junk %d " % i + b"x" * 300, qos=1)
            if i % 30 == 0:
                good.send(rating("ev-02", 1 + i // 30))
        for i in range(FORGED):      # a new forged id each time, and big: the shared bucket's byte bound
            flood.client.publish(topics.topic(HALL, "x%05d" % i, topics.EVENTS), b"z%d" % i + b"z" * 1500, qos=1)
        wait_for(lambda: store_count(db, "SELECT coalesce(sum(value), 0) FROM counters WHERE name LIKE "
                                         "'quarantined:%'") == FLOOD + FORGED, 120, 0.5, what="flood ingested")
        wait_for(lambda: good.pending() == 0, 30, what="valid events acked")
        wait_for(lambda: store_count(db, "SELECT count(*) FROM counters WHERE name = 'quarantine_purged'"), 10,
                 what="old rows purged")
    finally:
        flood.stop()
        good.stop()
    try:
        assert store_count(db, "SELECT count(*) FROM events WHERE device = 'ev-02'") == FLOOD // 30
        rows, size = map(int, bucket(db, "ev-01").split())
        assert rows == MAX_ROWS and size <= MAX_BYTES
        shared_rows, shared_size = map(int, bucket(db, UNREGISTERED).split())
        assert 0 < shared_rows < MAX_ROWS and shared_size <= MAX_BYTES     # the byte bound held first
        assert store_count(db, "SELECT count(*) FROM quarantine") == rows + shared_rows   # the old row is purged
        # The first occurrences are the ones kept, with their reason.
        assert store_count(db, "SELECT min(payload) FROM quarantine WHERE bucket = 'ev-01'").startswith(b"junk 0 ")
        assert store_count(db, "SELECT count(DISTINCT reason) FROM quarantine WHERE bucket = 'ev-01'") == 1

        snap = http_json(hall["http"], "/api/status")
        assert snap["quarantine"]["dropped"] == {"ev-01": FLOOD - MAX_ROWS, UNREGISTERED: FORGED - shared_rows}
        assert snap["quarantine"]["rows"] == MAX_ROWS + shared_rows and snap["quarantine"]["purged"] == 1
        assert snap["quarantined"]["bad_json"] == FLOOD
        metrics = _get(hall["http"], "/metrics")
        assert 'qinglian_agent_quarantine_dropped_total{device="ev-01"} %d' % (FLOOD - MAX_ROWS) in metrics
        assert 'qinglian_agent_quarantine_dropped_total{device="%s"} %d' % (
            UNREGISTERED, FORGED - shared_rows) in metrics
        assert "qinglian_agent_quarantine_rows %d" % (MAX_ROWS + shared_rows) in metrics
        out = edge_agent(hall["config"], "status").stdout
        assert "dropped over the bound: %s %d, ev-01 %d" % (UNREGISTERED, FORGED - shared_rows,
                                                             FLOOD - MAX_ROWS) in out
        assert agent.alive() and _get(hall["http"], "/healthz").strip() == "ok"
    finally:
        agent.stop()
    assert agent.p.returncode == 0, agent.log()


def test_migration_004_puts_existing_rows_in_their_buckets(tmp_path):
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_ms INTEGER)")
    for name, step in MIGRATIONS[:3]:          # a store as main left it
        step(db)
        db.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))
    db.execute("INSERT INTO devices (device, hall, key_hex, created_ms) VALUES ('ev-01', 'h1', '00', 0)")
    db.execute("INSERT INTO quarantine (received_ms, topic, payload, reason, device, digest) VALUES "
               "(5, 'qinglian/v1/h1/ev-01/events', x'616263', 'bad_json', 'ev-01', 'a'), "
               "(6, 'qinglian/v1/h1/zz/events', x'64', 'unknown_device', 'zz', 'b')")
    db.commit()
    db.close()
    s = Store(path)
    rows = s.conn.execute("SELECT bucket, size, last_ms FROM quarantine ORDER BY id").fetchall()
    assert rows == [("ev-01", 3 + len("qinglian/v1/h1/ev-01/events"), 5),
                    (UNREGISTERED, 1 + len("qinglian/v1/h1/zz/events"), 6)]


def _get(port, path):
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return r.read().decode()
