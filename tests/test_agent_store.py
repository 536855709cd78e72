"""The store and the ingest rules on real SQLite files (no broker): the
front door, classification of a batch, and the committer's promise - PUBACK
in arrival order, and only for what another connection can already read."""
import os
import sqlite3
import threading

import pytest

import protocol
from edge_agent import ingest, registry
from edge_agent.committer import Committer
from edge_agent.inbox import Inbox
from edge_agent.ingest import Inbound
from edge_agent.sealer import Sealer
from edge_agent.store import MIGRATIONS, Store
from test_agent_support import rating, status as status_event

HALL = "h1"


def one(store, sql, params=()):
    row = store.conn.execute(sql, params).fetchone()
    return row[0] if row else None


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "agent.db"))
    yield s
    s.close()


@pytest.fixture
def keys(store):
    return {d: bytes.fromhex(registry.add(store, HALL, d, "A01")) for d in ("ev-01", "ev-02")}


def msg(mid, device, payload, channel="events", retain=False):
    return Inbound(mid, 1, "qinglian/v1/%s/%s/%s" % (HALL, device, channel), payload, retain, 1000 + mid, 1)


def test_front_door(tmp_path):
    path = str(tmp_path / "agent.db")
    s = Store(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert one(s, "PRAGMA journal_mode") == "wal" and one(s, "PRAGMA synchronous") == 2   # FULL
    assert s.migrations() == [m[0] for m in MIGRATIONS]
    Store(path).close()                                           # migrations run once
    assert one(s, "SELECT count(*) FROM _migrations") == len(MIGRATIONS)
    with pytest.raises(ZeroDivisionError):
        with s.atomic():
            s.bump("x", 5)
            1 / 0
    assert s.counters() == {}
    assert not s.conn.in_transaction
    mem = Store(memory=True)
    assert "events" in mem.tables()


def test_a_refused_message_sent_again_is_one_row_with_repeats(store, keys):
    forged = protocol.encode(rating("ev-01", 5), keys["ev-02"])        # signed with the wrong key
    for _ in range(3):
        ingest.commit(store, HALL, [msg(1, "ev-01", forged), msg(2, "ev-01", b"junk")])
    rows = store.conn.execute("SELECT reason, repeats FROM quarantine ORDER BY reason").fetchall()
    assert rows == [("bad_json", 3), ("bad_mac", 3)]
    assert store.counters()["quarantined:bad_mac"] == 3


def test_unsynced_rows_come_in_arrival_order_from_the_partial_index(store, keys):
    batch = [msg(i, "ev-0%d" % (1 + i % 2), protocol.encode(rating("ev-0%d" % (1 + i % 2), 100 - i), keys["ev-0%d" % (1 + i % 2)]))
             for i in range(20)]
    ingest.commit(store, HALL, batch)
    store.conn.execute("UPDATE events SET synced_ms = 1 WHERE seq % 3 = 0")
    store.conn.execute("ANALYZE")
    rows = store.conn.execute("SELECT device, seq FROM events WHERE synced_ms IS NULL ORDER BY rowid").fetchall()
    expect = [(m.topic.split("/")[3], 100 - m.mid) for m in batch if (100 - m.mid) % 3]
    assert rows == expect
    plan = " ".join(r[3] for r in store.conn.execute(
        "EXPLAIN QUERY PLAN SELECT rowid FROM events WHERE synced_ms IS NULL ORDER BY rowid LIMIT 500"))
    assert "events_unsynced" in plan and "TEMP B-TREE" not in plan


def test_one_batch_classifies_everything(store, keys):
    k1 = keys["ev-01"]
    first = protocol.encode(rating("ev-01", 1), k1)
    forged = first[:-66] + b'0' * 64 + b'"}'
    batch = [
        msg(1, "ev-01", first),
        msg(2, "ev-01", first),                                                     # duplicate, same batch
        msg(3, "ev-01", protocol.encode(rating("ev-01", 1, level="dissatisfied"), k1)),  # conflict
        msg(4, "ev-01", forged),                                                    # bad_mac
        msg(5, "ev-01", protocol.encode(rating("ev-02", 9), keys["ev-02"])),        # topic_mismatch
        msg(6, "ev-01", b"\xff\xfe"),                                               # bad_json
        msg(7, "ev-01", b'{"online":true,"fw":"1.2"}', channel="status"),           # presence
        msg(8, "ev-01", protocol.encode(rating("ev-01", 2), k1)),
        Inbound(9, 1, "qinglian/v1/other-hall/ev-01/events", first, False, 9, 1),   # bad_topic
    ]
    out = ingest.commit(store, HALL, batch)
    assert out.stored == 2 and out.duplicates == 1
    assert dict(out.quarantined) == {"conflict": 1, "bad_mac": 1, "topic_mismatch": 1, "bad_json": 1,
                                     "bad_topic": 1}
    assert dict(out.acks) == {"ev-01": {1, 2}}        # not the forged or mismatched ones
    assert out.came_online == {"ev-01"}
    c = store.counters()
    assert c["received"] == 9 and c["committed"] == 2 and c["duplicates"] == 1
    d = store.devices.get("ev-01")
    assert d["hwm"] == 2 and d["online"] == 1 and d["fw"] == "1.2"
    assert one(store, "SELECT body FROM events WHERE device='ev-01' AND seq=1") == first.decode()


class FakeLink:
    """Records PUBACKs and protocol acks; at each PUBACK, checks from a
    second connection that the message's effect is already committed."""

    def __init__(self, path):
        self.inbox = Inbox()
        self.reader = sqlite3.connect(path, check_same_thread=False)
        self.pubacked, self.published, self.visible = [], [], []

    def puback(self, batch):
        for m in batch:
            seq = protocol.parse(m.payload)["seq"] if m.topic.endswith("events") else None
            n = self.reader.execute("SELECT count(*) FROM events WHERE seq = ?", (seq,)).fetchone()[0]
            self.visible.append(n == 1)
            self.pubacked.append(m.mid)

    def publish(self, topic, payload, retain=False):
        self.published.append((topic, payload))


def test_committer_pubacks_in_arrival_order_only_after_commit(store, keys):
    link = FakeLink(store.path)
    c = Committer(store, link, HALL, batch_max=7, batch_ms=5)
    mids = list(range(1, 101))
    for mid in mids:
        link.inbox.put(msg(mid, "ev-02", protocol.encode(rating("ev-02", mid), keys["ev-02"])))
    c.start()
    c.stop()
    c.join(30)
    assert link.pubacked == mids
    assert all(link.visible)
    acked = set()
    for topic, payload in link.published:
        assert topic == "qinglian/v1/h1/ev-02/ack"
        ack = protocol.messages.unseal(keys["ev-02"], "ack", payload, 0)    # sealed with the device's key
        for lo, hi in protocol.messages.parse_ack(ack):
            acked.update(range(lo, hi + 1))
    assert acked == set(mids)


def test_a_failed_commit_acks_nothing_and_is_retried(tmp_path, keys, store):
    slow = Store(store.path, timeout_s=0.05)
    link = FakeLink(store.path)
    sealer = Sealer(store)                                         # the agent makes it at start
    locker = sqlite3.connect(store.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")                              # another writer holds the lock
    c = Committer(slow, link, HALL, sealer=sealer)
    link.inbox.put(msg(1, "ev-01", protocol.encode(rating("ev-01", 1), keys["ev-01"])))
    c.start()
    threading.Event().wait(1.0)
    assert link.pubacked == [] and link.published == []
    locker.execute("COMMIT")
    c.stop()
    c.join(30)
    assert link.pubacked == [1] and link.visible == [True]


def test_light_follows_the_worst_window(store, keys):
    from edge_agent import config, status
    cfg = config.validate({"hall": HALL, "devices": {"targets": {"default": 600}}})
    t0 = 1_800_000_000_000

    def session(seq, action, t):
        return protocol.encode({"v": 1, "device": "ev-01", "seq": seq, "kind": "session", "t": t,
                                "action": action, "session": "ev-01-1-1", "window": "A01"}, keys["ev-01"])
    ingest.commit(store, HALL, [msg(1, "ev-01", session(1, "started", t0)),
                                msg(2, "ev-01", b'{"online":true}', channel="status"),
                                msg(3, "ev-02", b'{"online":true}', channel="status")])

    def light(now, **runtime):
        snap = status.snapshot(store, cfg, runtime, now=now)
        return status.hall_state(snap, status.hall_screen(store, cfg, now, snap), cfg)

    assert light(t0 + 60_000)[0] == "ok"
    assert light(t0 + 500_000) == ("warn", ["window A01 near target"])       # 83% of 600 s
    assert light(t0 + 700_000) == ("alarm", ["window A01 over target"])
    assert light(t0 + 60_000, disk_guard=True)[0] == "alarm"
    assert light(t0 + 60_000, uplink={"failing_since_ms": t0 - 3_600_000})[0] == "alarm"
    ingest.commit(store, HALL, [msg(4, "ev-01", session(2, "ended", t0 + 300_000))])
    assert light(t0 + 700_000)[0] == "ok"
    ingest.commit(store, HALL, [msg(5, "ev-02", b'{"online":false}', channel="status")._replace(
        received_ms=t0 + 690_000)])
    assert light(t0 + 700_000)[0] == "ok"               # a reboot is not an outage yet
    assert light(2_000_000_000_000) == ("warn", ["1 device(s) offline"])


def test_the_lobby_screen_never_shows_a_rating_as_it_happens(store, keys):
    """Rater confidentiality: figures count ratings at least [screen]
    ratings_delay_min old, in steps, so the staff (or the next citizen) cannot
    tell how the citizen just served rated."""
    import datetime
    from edge_agent import config, status
    cfg = config.validate({"hall": HALL})
    assert cfg["screen"]["ratings_delay_min"] == 30                  # the default a hall gets
    noon = int(datetime.datetime(2026, 11, 30, 12, 0).timestamp() * 1000)
    minute = 60_000
    ingest.commit(store, HALL, [msg(1, "ev-01", protocol.encode(
        rating("ev-01", 1, level="very_dissatisfied", t=noon + 5 * minute), keys["ev-01"]))])

    def shown(now, delay=30):
        cfg["screen"]["ratings_delay_min"] = delay
        screen = status.hall_screen(store, cfg, now)
        return {w["device"]: w["ratings_today"] for w in screen["windows"]}.get("ev-01", {}), screen

    for now in (noon + 6 * minute, noon + 34 * minute, noon + 59 * minute):
        assert shown(now)[0] == {}, now                               # not yet: 1 to 54 minutes later
    got, screen = shown(noon + 60 * minute)
    assert got == {"very_dissatisfied": 1} and screen["ratings_until_ms"] == noon + 30 * minute
    assert shown(noon + 6 * minute, delay=0)[0] == {"very_dissatisfied": 1}      # a hall that chose live
    with pytest.raises(config.ConfigError, match="ratings_delay_min"):
        config.validate({"hall": HALL, "screen": {"ratings_delay_min": 721}})


def test_service_time_leaves_out_pauses_and_stands_still_while_paused(store, keys):
    from edge_agent import status
    t0 = 1_800_000_000_000

    def step(seq, action, t):
        ev = {"v": 1, "device": "ev-01", "seq": seq, "kind": "session", "t": t,
              "action": action, "session": "ev-01-1-9", "window": "A01"}
        return msg(seq, "ev-01", protocol.encode(ev, keys["ev-01"]))
    ingest.commit(store, HALL, [step(1, "started", t0), step(2, "paused", t0 + 100_000)])
    paused = status.open_service(store, "ev-01", t0 + 400_000)
    assert paused == {"session": "ev-01-1-9", "elapsed_s": 100, "paused": True}
    ingest.commit(store, HALL, [step(3, "resumed", t0 + 400_000)])
    assert status.open_service(store, "ev-01", t0 + 450_000)["elapsed_s"] == 150   # 300 s paused left out
    ingest.commit(store, HALL, [step(4, "ended", t0 + 500_000)])
    assert status.open_service(store, "ev-01", t0 + 600_000) is None


def health(store, device):
    d = store.devices.get(device)
    return d["health_seq"], d["health_alarm"], d["health_outbox"]


def test_the_newest_status_is_the_devices_health(store, keys):
    k = keys["ev-01"]

    def st(mid, seq, alarm=None, outbox=0):
        return msg(mid, "ev-01", protocol.encode(status_event("ev-01", seq, alarm, outbox), k))
    assert health(store, "ev-01") == (None, None, None)
    ingest.commit(store, HALL, [st(1, 5, "display,outbox_full", 499), msg(2, "ev-01", protocol.encode(rating("ev-01", 6), k))])
    assert health(store, "ev-01") == (5, "display,outbox_full", 499)     # a rating is not health
    # After a reboot the device resends what was not acked: a late, older status changes nothing.
    ingest.commit(store, HALL, [st(3, 3, None, 2), st(4, 5, "display,outbox_full", 499)])
    assert one(store, "SELECT count(*) FROM events WHERE kind = 'status'") == 2
    assert health(store, "ev-01") == (5, "display,outbox_full", 499)
    # In one batch the newest wins whatever the arrival order; no alarm clears it.
    ingest.commit(store, HALL, [st(5, 9, None, 0), st(6, 8, "display", 7)])
    assert health(store, "ev-01") == (9, None, 0)
    assert health(store, "ev-02") == (None, None, None)
    # A batch that fails is rolled back whole, health with it.
    with pytest.raises(sqlite3.Error):
        with store.atomic():
            ingest.Batch(store, HALL).add(st(7, 10, "display", 1))
            store.conn.execute("INSERT INTO nowhere VALUES (1)")
    assert health(store, "ev-01") == (9, None, 0)


def test_upgrading_a_store_takes_health_from_the_stored_status_events(tmp_path, monkeypatch):
    from edge_agent.store import db as store_mod
    path = str(tmp_path / "old.db")
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS[:2])
    old = Store(path)
    k = bytes.fromhex(registry.add(old, HALL, "ev-01", "A01"))
    registry.add(old, HALL, "ev-02", "A02")
    for ev in (status_event("ev-01", 4, "display", 3), status_event("ev-01", 2, None, 0), rating("ev-01", 7)):
        # What an agent before 003 stored (its ingest knew no health).
        old.conn.execute("INSERT INTO events (device, seq, kind, t, body, received_ms) VALUES (?, ?, ?, ?, ?, 1)",
                         (ev["device"], ev["seq"], ev["kind"], ev["t"], protocol.encode(ev, k).decode()))
    old.close()
    monkeypatch.setattr(store_mod, "MIGRATIONS", MIGRATIONS)
    new = Store(path)
    assert health(new, "ev-01") == (4, "display", 3)
    assert health(new, "ev-02") == (None, None, None)
    new.close()


def test_device_alarms_reach_status_metrics_screen_and_light(store, keys):
    from edge_agent import config, status
    cfg = config.validate({"hall": HALL})
    registry.add(store, HALL, "ev-03", "A03")
    registry.retire(store, "ev-03")
    now = 1_800_000_000_000

    def st(mid, device, seq, alarm, outbox):
        return msg(mid, device, protocol.encode(status_event(device, seq, alarm, outbox), keys[device]))
    ingest.commit(store, HALL, [st(1, "ev-01", 1, "display", 0), st(2, "ev-02", 1, "display,outbox_full", 499),
                                msg(3, "ev-01", b'{"online":true}', channel="status"),
                                msg(4, "ev-02", b'{"online":true}', channel="status")])
    store.conn.execute("UPDATE devices SET health_alarm = 'display' WHERE device = 'ev-03'")   # retired: not shown
    snap = status.snapshot(store, cfg, now=now)
    devs = {d["device"]: d for d in snap["devices"]}
    assert (devs["ev-01"]["alarms"], devs["ev-01"]["outbox"]) == (["display"], 0)
    assert (devs["ev-02"]["alarms"], devs["ev-02"]["outbox"]) == (["display", "outbox_full"], 499)
    screen = status.hall_screen(store, cfg, now, snap)
    assert [(w["window"], w["alarms"]) for w in screen["windows"]] == [
        ("A01", ["display"]), ("A01", ["display", "outbox_full"])]
    assert status.hall_state(snap, screen, cfg) == ("alarm", [
        "device ev-01: display fault", "device ev-02: display fault", "device ev-02: outbox full"])
    text = status.metrics(snap)
    assert [l for l in text.splitlines() if l.startswith("qinglian_agent_device_")] == [
        'qinglian_agent_device_alarm{device="ev-01",alarm="display"} 1',
        'qinglian_agent_device_alarm{device="ev-02",alarm="display"} 1',
        'qinglian_agent_device_alarm{device="ev-02",alarm="outbox_full"} 1',
        'qinglian_agent_device_outbox{device="ev-01"} 0',
        'qinglian_agent_device_outbox{device="ev-02"} 499']
    assert "# TYPE qinglian_agent_device_alarm gauge" in text
    assert status.human(snap).splitlines()[-4:-1] == [
        "device alarms:",
        "  ev-01 at window A01: display fault; 0 events in its outbox",
        "  ev-02 at window A01: display fault, outbox full; 499 events in its outbox"]
    # Cleared by the next status; a name this agent does not know is still a fault to look at.
    ingest.commit(store, HALL, [st(5, "ev-01", 2, None, 0), st(6, "ev-02", 2, "printer", 1)])
    snap = status.snapshot(store, cfg, now=now)
    assert status.hall_state(snap, status.hall_screen(store, cfg, now, snap), cfg) == (
        "warn", ["device ev-02: printer"])
    assert 'qinglian_agent_device_alarm{device="ev-02",alarm="printer"} 1' in status.metrics(snap)
    assert "device alarms: none" not in status.human(snap)
    ingest.commit(store, HALL, [st(7, "ev-02", 3, None, 0)])
    snap = status.snapshot(store, cfg, now=now)
    assert "device alarms: none" in status.human(snap)
    assert "device_alarm{" not in status.metrics(snap)


def test_sealed_counters_rise_across_agent_restarts_with_one_write_per_start(tmp_path, keys):
    path = str(tmp_path / "agent.db")
    link = FakeLink(path)

    def sealed(sealer, channel, msg, last):
        sealer.publish(link, HALL, "ev-01", keys["ev-01"].hex(), channel, msg)
        topic, payload = link.published[-1]
        assert topic == "qinglian/v1/%s/ev-01/%s" % (HALL, channel)
        return protocol.messages.unseal(keys["ev-01"], channel, payload, last)

    first = Sealer(Store(path))
    a = [sealed(first, "ack", {"acks": [[1, 1]]}, 0)["n"] for _ in range(3)]
    store = Store(path)
    writes = store.conn.total_changes
    second = Sealer(store)                                         # the agent started again
    assert store.conn.total_changes - writes == 1
    b = sealed(second, "cmd", {"cmd": "status"}, a[-1])
    assert a == sorted(set(a)) and b["n"] > a[-1]
    assert (first.epoch, second.epoch) == (1, 2) and store.meta("link_epoch") == "2"
    assert b["n"] < 2 ** 53
