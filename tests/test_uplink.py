"""The uplink against the real county server process: rows sync once, a
county that dies comes back to a drained backlog with no duplicates, a
resend carries the same batch id, conflicts and invalid rows are kept."""
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from harness import ROOT, wait_for
from edge_agent.config import uplink as uplink_config
from edge_agent.errors import ConfigError
from edge_agent.store import Store
from edge_agent.uplink import Uplink
from tools.county.testing import CountyProc, add_events, agent_store, rating

HALL, TOKEN = "hall-up", "tok-" + "u" * 20


@pytest.fixture
def agent_db(tmp_path):
    path = str(tmp_path / "agent.db")
    db = agent_store(path)
    yield path, db
    db.close()


def start_county(tmp_path, *extra, port=None):
    return CountyProc(str(tmp_path / "county"), str(tmp_path / "county.db"), {HALL: TOKEN},
                      port=port, extra=extra).start()


class Running:
    """An Uplink on its thread, as the agent runs it."""

    def __init__(self, path, url, **cfg):
        self.stop = threading.Event()
        self.up = Uplink(path, dict({"url": url, "token": TOKEN, "interval_s": 0.2,
                                     "backoff_max_s": 2, "allow_plain_http": True}, **cfg), HALL)
        self.thread = threading.Thread(target=self.up.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def drained(self, timeout=60):
        return wait_for(lambda: self.up.state()["pending"] == 0, timeout, 0.2, "uplink backlog drained")

    def close(self):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def events(device, n, start=1):
    return [rating(device, s, ["very_satisfied", "satisfied", "dissatisfied"][s % 3]) for s in range(start, start + n)]


def county_rows(county):
    db = sqlite3.connect(county.db)
    try:
        return db.execute("SELECT count(*), count(DISTINCT device || '/' || seq) FROM events").fetchone()
    finally:
        db.close()


def county_stats(county, hall=None):
    # Read the county's store directly: the server may be stopped already.
    from tools.county.store import open_store
    store = open_store(county.db)
    try:
        return store.stats(hall)
    finally:
        store.close()


def county_batches(county):
    db = sqlite3.connect(county.db)
    try:
        return db.execute("SELECT batch, posts, events FROM batches ORDER BY first_ms").fetchall()
    finally:
        db.close()


def test_rows_sync_in_bounded_batches(tmp_path, agent_db):
    path, db = agent_db
    add_events(db, events("ev-1", 700) + events("ev-2", 500))
    county = start_county(tmp_path)
    up = Running(path, county.url)
    try:
        up.drained()
        st = up.up.state()
    finally:
        up.close()
        county.stop()
    assert county_rows(county) == (1200, 1200)
    assert db.execute("SELECT count(*) FROM events WHERE synced_ms IS NULL").fetchone()[0] == 0
    sizes = [n for _, _, n in county_batches(county)]
    assert sum(sizes) == 1200 and max(sizes) <= 500 and len(sizes) >= 3
    assert st["pending"] == 0 and st["oldest_unsynced_age_s"] is None
    assert st["batches_sent"] == len(sizes) and st["last_ok_ms"] and st["failing_since_ms"] is None
    assert db.execute("SELECT count(*) FROM uplink_batches").fetchone()[0] == 0


@pytest.mark.parametrize("in_flight", [1, 4])
def test_batches_in_flight_reach_the_county_once_and_lost_answers_go_again(tmp_path, agent_db, in_flight):
    # Several batches at the county at once; two answers are lost after the county committed.
    path, db = agent_db
    add_events(db, events("ev-7", 95))
    county = start_county(tmp_path, "--fail-after-commit", "2")
    up = Running(path, county.url, batch_max_events=10, in_flight=in_flight)
    try:
        up.drained()
        st = up.up.state()
    finally:
        up.close()
        county.stop()
    assert county_rows(county) == (95, 95)
    batches = county_batches(county)
    assert len(batches) == 10 and sum(posts for _, posts, _ in batches) == 12   # the two went again, same ids
    assert county_stats(county)["total"] == 95
    assert st["events_synced"] == 95 and st["pending"] == 0
    assert db.execute("SELECT count(*) FROM uplink_batches").fetchone()[0] == 0


def test_batches_are_bounded_by_bytes(tmp_path, agent_db):
    path, db = agent_db
    add_events(db, events("ev-3", 60))
    item = len(json.dumps({"device": "ev-3", "seq": 10, "body": rating("ev-3", 10)}))
    county = start_county(tmp_path)
    up = Running(path, county.url, batch_max_bytes=item * 5 + 200)
    try:
        up.drained()
    finally:
        up.close()
        county.stop()
    sizes = [n for _, _, n in county_batches(county)]
    assert sum(sizes) == 60 and max(sizes) <= 5


def soak_or(short, long_):
    return pytest.param(short, id="%ds" % short), pytest.param(long_, id="%ds" % long_, marks=pytest.mark.soak)


# 6 s: past the backoff's cap (backoff_max_s 2, Running) and retried at it a few times.
@pytest.mark.parametrize("down_s", soak_or(6, 300))
def test_county_down_then_back_drains_backlog_without_duplicates(tmp_path, agent_db, down_s):
    path, db = agent_db
    county = start_county(tmp_path)
    up = Running(path, county.url)
    stop_ingest = threading.Event()
    written = [0]

    def ingest():
        # A hall keeps rating while the county is away.
        w = agent_store(path)
        seq = 0
        while not stop_ingest.is_set():
            add_events(w, events("ev-4", 20, seq + 1))
            seq += 20
            written[0] = seq
            time.sleep(0.05)
        w.close()

    t = threading.Thread(target=ingest, daemon=True)
    t.start()
    try:
        wait_for(lambda: county_rows(county)[0] > 0, 30, 0.1, "first events at the county")
        county.kill()                                   # SIGKILL: no goodbye to the hall
        went_down = time.monotonic()
        wait_for(lambda: up.up.state()["failing_since_ms"], 30, 0.1, "the uplink to notice")
        while time.monotonic() - went_down < down_s:
            time.sleep(0.5)
        backlog = up.up.state()
        assert backlog["pending"] > 0 and backlog["last_error"]
        county.start()
        time.sleep(2)
        stop_ingest.set()
        t.join(10)
        up.drained(120)
        st = up.up.state()
    finally:
        stop_ingest.set()
        up.close()
        county.stop()
    assert county_rows(county) == (written[0], written[0])
    s = county_stats(county)
    assert s["total"] == written[0] and s["conflicts"] == 0 and s["invalid"] == 0
    assert st["failing_since_ms"] is None and st["pending"] == 0


def test_an_answer_lost_after_commit_is_resent_with_the_same_batch_id(tmp_path, agent_db):
    path, db = agent_db
    add_events(db, events("ev-5", 30))
    # The county commits the first batch, then drops the connection unanswered.
    county = start_county(tmp_path, "--fail-after-commit", "1")
    up = Running(path, county.url, batch_max_events=10)
    try:
        up.drained()
    finally:
        up.close()
        county.stop()
    batches = county_batches(county)
    assert [posts for _, posts, _ in batches] == [2, 1, 1]     # the first one twice, same id
    assert county_rows(county) == (30, 30)
    assert county_stats(county)["total"] == 30
    assert "drop" in county.log() or "answer dropped" in county.log()


RESTARTABLE_AGENT = """
import sys, threading
from edge_agent.uplink import Uplink
stop = threading.Event()
Uplink(sys.argv[1], {"url": sys.argv[2], "token": sys.argv[3], "batch_max_events": 10,
                     "allow_plain_http": True, "interval_s": 0.2, "backoff_max_s": 0.5}, sys.argv[4]).run(stop)
"""


def pending_batch(db):
    try:
        return db.execute("SELECT batch, members, posts FROM uplink_batches WHERE posts >= 1").fetchone()
    except sqlite3.OperationalError:
        return None                 # the agent has not created its tables yet


def test_a_restarted_agent_resends_its_pending_batch_under_the_same_id(tmp_path, agent_db):
    path, db = agent_db
    add_events(db, events("ev-6", 25))
    port = __import__("harness").free_port()
    url = "http://127.0.0.1:%d" % port
    agent = subprocess.Popen([sys.executable, "-c", RESTARTABLE_AGENT, path, url, TOKEN, HALL], cwd=ROOT)
    try:
        # The county is not there: the agent forms a batch, persists it, fails to send.
        pending = wait_for(lambda: pending_batch(db), 30, 0.1, "a pending batch")
    finally:
        agent.kill()                                    # SIGKILL the agent
        agent.wait()
    batch_id, members = pending[0], json.loads(pending[1])
    assert len(members) == 10
    county = start_county(tmp_path, port=port)
    up = Running(path, url, batch_max_events=10)        # the agent again, a new process's state
    try:
        up.drained()
    finally:
        up.close()
        county.stop()
    batches = county_batches(county)
    assert batches[0][0] == batch_id and batches[0][2] == 10
    assert county_rows(county) == (25, 25)


def test_conflicts_are_marked_synced_recorded_and_counted(tmp_path, agent_db):
    path, db = agent_db
    county = start_county(tmp_path)
    # The county already holds ev-7/2 with another level (a reflashed device reusing seqs).
    county.post(HALL, TOKEN, {"batch": "x", "hall": HALL, "events": [
        {"device": "ev-7", "seq": 2, "body": rating("ev-7", 2, "very_dissatisfied")}]})
    add_events(db, events("ev-7", 5))
    up = Running(path, county.url)
    try:
        up.drained()
        st = up.up.state()
    finally:
        up.close()
        county.stop()
    assert st["conflicts"] == 1
    rej = db.execute("SELECT device, seq, status, body FROM uplink_rejects").fetchall()
    assert [(d, s, st_) for d, s, st_, _ in rej] == [("ev-7", 2, "conflict")]
    assert rej[0][3] == rating("ev-7", 2, "dissatisfied")        # our version, kept for a human
    s = county_stats(county, HALL)
    assert s["total"] == 5 and s["conflicts"] == 1
    assert s["ratings"].get("very_dissatisfied") == 1             # the county's first version stays


def test_rows_the_county_calls_invalid_stay_unsynced_and_are_held(tmp_path, agent_db):
    path, db = agent_db
    add_events(db, events("ev-8", 3))
    bad = rating("ev-8", 4).replace('"level":"satisfied"', '"level":"great"')
    db.execute("INSERT INTO events (device, seq, kind, t, body, received_ms) VALUES ('ev-8', 4, 'rating', 0, ?, 0)",
               (bad,))
    add_events(db, events("ev-8", 3, 5))
    county = start_county(tmp_path)
    up = Running(path, county.url)
    try:
        wait_for(lambda: up.up.state()["pending"] == 1, 30, 0.2, "all but the invalid row synced")
        time.sleep(1.5)                                  # several idle rounds: it is not resent
        st = up.up.state()
    finally:
        up.close()
        county.stop()
    assert st["invalid"] == 1 and st["held"] == 1 and st["pending"] == 1
    assert db.execute("SELECT device, seq, status, reason FROM uplink_rejects").fetchall() == [
        ("ev-8", 4, "invalid", "bad_value")]
    s = county_stats(county, HALL)
    assert s["total"] == 6 and s["invalid"] == 1
    assert sum(p for _, p, _ in county_batches(county)) == 1    # one post, nothing resent


def test_a_wrong_token_is_a_failure_not_a_sync(tmp_path, agent_db):
    path, db = agent_db
    add_events(db, events("ev-9", 3))
    county = start_county(tmp_path)
    up = Running(path, county.url, token="tok-wrong-wrong")
    try:
        st = wait_for(lambda: (lambda s: s if s["last_error"] else None)(up.up.state()), 30, 0.1, "a failure")
    finally:
        up.close()
        county.stop()
    assert "401" in st["last_error"] and st["failing_since_ms"] and st["pending"] == 3
    assert county_stats(county)["total"] == 0


def test_retention_deletes_only_synced_rows_older_than_the_cutoff(agent_db):
    path, db = agent_db
    add_events(db, events("ev-10", 4), received_ms=1000)        # old
    add_events(db, events("ev-10", 2, 5), received_ms=10**13)     # new
    db.execute("UPDATE events SET synced_ms = 5 WHERE seq IN (1, 2, 5)")
    store = Store(path, create=False)
    try:
        assert store.events.purge_synced(older_than_ms=2000, chunk=1) == 2
    finally:
        store.close()
    left = [r[0] for r in db.execute("SELECT seq FROM events ORDER BY seq")]
    assert left == [3, 4, 5, 6]                      # unsynced old rows and new synced rows stay


def test_config_is_checked_in_plain_words():
    # The same checks as the config file's (edge_agent/config.py), defaults from its table.
    with pytest.raises(ConfigError, match="url"):
        uplink_config({"url": "ftp://x", "token": "t"})
    with pytest.raises(ConfigError, match="token"):
        uplink_config({"url": "https://x"})
    with pytest.raises(ConfigError, match="batch_max_events"):
        uplink_config({"url": "https://x", "token": "t", "batch_max_events": 0})
    with pytest.raises(ConfigError, match="ca_file"):
        uplink_config({"url": "http://x", "token": "t", "ca_file": "/ca.pem", "allow_plain_http": True})
    with pytest.raises(ConfigError, match="batch_max_bytes must be a whole number"):
        uplink_config({"url": "https://x", "token": "t", "batch_max_bytes": "big"})
    with pytest.raises(ConfigError, match="did you mean 'timeout_s'"):
        uplink_config({"url": "https://x", "token": "t", "timeout": 5})
    for n in (0, 17):
        with pytest.raises(ConfigError, match="in_flight must be 1-16"):
            uplink_config({"url": "https://x", "token": "t", "in_flight": n})
    cfg = uplink_config({"url": "https://x", "token": "t", "ca_file": None})
    assert cfg["batch_max_events"] == 500 and cfg["retry_invalid_s"] == 3600


def test_a_missing_store_is_reported_not_created(tmp_path):
    path = tmp_path / "typo.db"
    up = Running(str(path), "http://127.0.0.1:9")
    try:
        st = wait_for(lambda: (lambda s: s if s["last_error"] else None)(up.up.state()), 30, 0.1, "a failure")
    finally:
        up.close()
    assert "agent store" in st["last_error"] and st["pending"] is None and "store_error" in st
    assert not path.exists()


def test_a_county_that_takes_smaller_batches_gets_them(tmp_path, agent_db):
    # The reference county refuses more than 10,000 events a batch with 413.
    path, db = agent_db
    add_events(db, events("ev-11", 10050))
    county = start_county(tmp_path)
    up = Running(path, county.url, batch_max_events=20000, batch_max_bytes=64 << 20)
    try:
        up.drained(120)
    finally:
        up.close()
        county.stop()
    sizes = [n for _, _, n in county_batches(county)]
    assert sum(sizes) == 10050 and max(sizes) <= 10000
    assert county_rows(county) == (10050, 10050)


@pytest.mark.parametrize("answer", [
    b"not json",
    b'{"batch":"x"}',
    b'{"results":[{"device":["ev-12"],"seq":1,"status":"stored"}]}',
    b'{"results":[{"device":"ev-12","seq":1,"status":"kept"},{"device":"ev-12","seq":2}]}',
])
def test_a_county_answer_that_makes_no_sense_syncs_nothing(agent_db, answer):
    # A county implementation with a bug (API.md is implemented by county IT too).
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Broken(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    path, db = agent_db
    add_events(db, events("ev-12", 2))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    up = Running(path, "http://127.0.0.1:%d" % srv.server_address[1])
    try:
        time.sleep(1.5)
        assert up.thread.is_alive()
        st = up.up.state()
    finally:
        up.close()
        srv.shutdown()
        srv.server_close()
    assert st["pending"] == 2 and st["events_synced"] == 0
    assert db.execute("SELECT count(*) FROM events WHERE synced_ms IS NOT NULL").fetchone()[0] == 0


def test_the_uplink_into_a_postgresql_county_after_a_lost_answer(tmp_path, agent_db):
    from test_county import pg_url
    conn, schema, url = pg_url()
    path, db = agent_db
    add_events(db, events("ev-13", 30))
    county = CountyProc(str(tmp_path / "county"), url, {HALL: TOKEN}, extra=["--fail-after-commit", "1"]).start()
    up = Running(path, county.url, batch_max_events=10)
    try:
        up.drained()
        s = county.stats(HALL)
    finally:
        up.close()
        county.stop()
        conn.execute("DROP SCHEMA %s CASCADE" % schema)
        conn.close()
    assert s["total"] == 30 and (s["batches"], s["batch_posts"]) == (3, 4)
