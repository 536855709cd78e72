"""Schema migrations of the county store, on SQLite and PostgreSQL: a database
made by the server before it had migrations (with events, conflicts, invalid
bodies and resent batches in it) is brought up to date in place, its stats
then come from counters that equal a full count, and ingest goes on."""
import os
import subprocess

import pytest

from harness import VENV_BIN
from test_county import county_db  # noqa: F401 (fixture)
from tools.county import migrations
from tools.county.store import open_store
from tools.county.testing import rating, session

COUNTY = os.path.join(VENV_BIN, "county-server")


def connect(url):
    if url.startswith("postgresql://"):
        import psycopg
        return psycopg.connect(url, autocommit=True), "%s"
    import sqlite3
    return sqlite3.connect(url, isolation_level=None), "?"


def old_database(url):
    """The tables as the server made them before migrations (001 is that DDL,
    verbatim), with a hall's history in them."""
    db, p = connect(url)
    for ddl in migrations.INITIAL:
        db.execute(ddl)
    cols = ("hall", "device", "seq", "kind", "t", "level", "channel", "window", "session", "action", "body",
            "batch", "received_ms")
    insert = 'INSERT INTO events (%s) VALUES (%s)' % (", ".join('"%s"' % c for c in cols), ", ".join([p] * len(cols)))
    events = [("hall-a", "ev-1", i + 1, "rating", 1764000000000 + i, lv, "window", None, "s%d" % i, None,
               rating("ev-1", i + 1, lv), "b1", 1)
              for i, lv in enumerate(["satisfied", "satisfied", "very_dissatisfied", "very_satisfied"])]
    events.append(("hall-a", "ev-1", 5, "session", 1764000000000, None, None, "A01", "s9", "ended",
                   session("ev-1", 5, "ended", "s9", "A01", 1764000000000), "b2", 2))
    events.append(("hall-b", "ev-9", 1, "rating", 1764000000000, "dissatisfied", "qr", None, "q1", None,
                   rating("ev-9", 1, "dissatisfied"), "b1", 3))
    for row in events:
        db.execute(insert, row)
    db.execute("INSERT INTO conflicts VALUES (%s)" % ", ".join([p] * 7),
               ("hall-a", "ev-1", 2, "d1", rating("ev-1", 2, "very_satisfied"), "b3", 4))
    db.execute("INSERT INTO invalid VALUES (%s)" % ", ".join([p] * 8),
               ("hall-a", "ev-1", 9, "d2", "{not json", "bad_json", "b3", 4))
    for hall, b, posts in (("hall-a", "b1", 2), ("hall-a", "b2", 1), ("hall-a", "b3", 3), ("hall-b", "b1", 1)):
        db.execute("INSERT INTO batches VALUES (%s)" % ", ".join([p] * 6), (hall, b, 1, 2, posts, 1))
    db.close()


def test_a_database_from_before_migrations_is_upgraded_in_place(county_db):  # noqa: F811
    old_database(county_db)
    store = open_store(county_db)
    try:
        assert store.migrated == [name for name, _ in migrations.MIGRATIONS]
        assert store.stats("hall-a") == {
            "hall": "hall-a", "total": 5, "events": {"rating": 4, "session": 1},
            "ratings": {"satisfied": 2, "very_dissatisfied": 1, "very_satisfied": 1},
            "conflicts": 1, "invalid": 1, "batches": 3, "batch_posts": 6}
        everyone = store.stats()
        assert (everyone["halls"], everyone["total"], everyone["batches"], everyone["batch_posts"]) == (
            {"hall-a": 5, "hall-b": 1}, 6, 4, 7)
        assert everyone["ratings"]["dissatisfied"] == 1
        # Ingest goes on where the old server left off: a resend is a duplicate, new events count.
        items = [{"device": "ev-1", "seq": 1, "body": rating("ev-1", 1, "satisfied")},
                 {"device": "ev-1", "seq": 6, "body": rating("ev-1", 6, "dissatisfied")}]
        got = store.ingest("hall-a", "b1", items, 5)
        assert [r["status"] for r in got] == ["duplicate", "stored"]
        s = store.stats("hall-a")
        assert (s["total"], s["ratings"]["dissatisfied"], s["batches"], s["batch_posts"]) == (6, 1, 3, 7)
    finally:
        store.close()
    again = open_store(county_db)
    try:
        assert again.migrated == [] and again.stats("hall-a")["total"] == 6
    finally:
        again.close()


def test_counters_equal_a_full_count_after_ingest(county_db):  # noqa: F811
    store = open_store(county_db)
    try:
        bodies = [rating("ev-2", i, ("satisfied", "dissatisfied")[i % 2]) for i in range(1, 21)]
        items = [{"device": "ev-2", "seq": i + 1, "body": b} for i, b in enumerate(bodies)]
        store.ingest("hall-a", "x1", items[:12], 1)
        store.ingest("hall-a", "x1", items[:12], 2)                   # resent whole
        forged = {"device": "ev-2", "seq": 3, "body": rating("ev-2", 3, "very_satisfied")}
        store.ingest("hall-a", "x2", items[8:] + [forged], 3)
        store.ingest("hall-a", "x3", [forged,                                           # the same conflict
                                      {"device": "ev-2", "seq": 40, "body": 7}], 4)
        db, _ = connect(county_db)
        try:
            scan = dict(db.execute("SELECT level, count(*) FROM events GROUP BY level").fetchall())
            n_conflicts = db.execute("SELECT count(*) FROM conflicts").fetchone()[0]
            n_invalid = db.execute("SELECT count(*) FROM invalid").fetchone()[0]
            batches, posts = db.execute("SELECT count(*), sum(posts) FROM batches").fetchone()
        finally:
            db.close()
        s = store.stats("hall-a")
        assert s["ratings"] == scan and s["total"] == sum(scan.values()) == 20
        assert (s["conflicts"], s["invalid"], s["batches"], s["batch_posts"]) == (
            n_conflicts, n_invalid, batches, int(posts)) == (1, 1, 3, 4)
    finally:
        store.close()


def test_migrate_command_lists_the_steps(tmp_path):
    db = str(tmp_path / "county.db")
    out = subprocess.run([COUNTY, "migrate", "--db", db], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == [name for name, _ in migrations.MIGRATIONS]
    assert all("(applied now)" in ln for ln in lines)
    out = subprocess.run([COUNTY, "migrate", "--db", db], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "applied now" not in out.stdout and "pending" not in out.stdout
