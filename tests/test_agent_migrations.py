"""Every table of the agent's store is made by its migrations: a fresh
file gets them all, and a store an earlier agent left (rows in every table,
the uplink's two tables made by the uplink itself) is brought to the same
schema with every row kept."""
import os
import sqlite3

import pytest

from edge_agent.store import MIGRATIONS, Store

OLD_STORE = os.path.join(os.path.dirname(__file__), "fixtures", "agent-store-f40a911.sql")
TABLES = ["_migrations", "appointments", "cases", "counters", "devices", "events", "meta", "ota_bundles",
          "ota_devices", "print_jobs",
          "quarantine", "queue_blocks", "queue_calls", "queue_numbers", "queue_windows", "queues", "tickets",
          "uplink_batches", "uplink_rejects", "windows"]
# Made by later migrations than the store this test upgrades (it has no rows in them).
NEW_TABLES = {"appointments", "cases", "print_jobs", "queue_blocks", "queue_calls", "queue_numbers",
              "queue_windows", "queues", "tickets", "ota_bundles", "ota_devices"}


def schema(conn):
    """Columns and indexes of every table: what the code relies on, not how the DDL was spelt."""
    out = {}
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
        cols = [tuple(r[1:]) for r in conn.execute("PRAGMA table_info(%s)" % table)]
        idx = sorted((r[1], r[2], r[4]) for r in conn.execute("PRAGMA index_list(%s)" % table))
        out[table] = (cols, idx)
    return out


def old_store(path, drop=()):
    db = sqlite3.connect(path)
    with open(OLD_STORE, encoding="utf-8") as f:
        db.executescript(f.read())
    for table in drop:
        db.execute("DROP TABLE %s" % table)
    db.commit()
    db.close()


def columns(conn, table):
    return [r[1] for r in conn.execute("PRAGMA table_info(%s)" % table)]


def rows(conn, table, cols=("*",)):
    """Rows in the given columns: a later migration may add columns, never change old ones."""
    return conn.execute("SELECT %s FROM %s ORDER BY 1, 2" % (", ".join(cols), table)).fetchall()


def test_a_fresh_store_gets_every_table_from_the_migrations(tmp_path):
    s = Store(str(tmp_path / "agent.db"))
    try:
        assert s.tables() == TABLES
        assert s.migrations() == [name for name, _ in MIGRATIONS]
    finally:
        s.close()
    assert Store(memory=True).tables() == TABLES


@pytest.mark.parametrize("drop", [(), ("uplink_batches", "uplink_rejects")],
                         ids=["with-uplink-tables", "uplink-never-ran"])
def test_a_store_the_previous_agent_left_is_upgraded_with_its_rows(tmp_path, drop):
    path = str(tmp_path / "old.db")
    old_store(path, drop)
    before = sqlite3.connect(path)
    kept = {t: (columns(before, t), rows(before, t)) for t in TABLES
            if t not in drop and t != "_migrations" and t not in NEW_TABLES}
    before.close()
    assert all(r for _, r in kept.values()), "the fixture has rows in every table"

    s = Store(path)
    try:
        assert s.migrations() == [name for name, _ in MIGRATIONS]
        assert s.tables() == TABLES
        for table, (cols, old_rows) in kept.items():
            assert rows(s.conn, table, cols) == old_rows, table
        fresh = Store(str(tmp_path / "fresh.db"))
        assert schema(s.conn) == schema(fresh.conn)
        fresh.close()
        # What the old uplink had in flight goes on under the same batch id.
        if not drop:
            assert s.uplink.pending_batch() == ("18b-abc", [["ev-01", 3], ["ev-01", 4]])
            assert s.uplink.held(0) == {("ev-01", 5)}
        assert s.events.backlog()[0] == 4
    finally:
        s.close()


def test_a_migration_that_fails_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    from edge_agent.store import db as store_db
    path = str(tmp_path / "old.db")
    old_store(path, ("uplink_batches", "uplink_rejects"))

    names = [name for name, _ in MIGRATIONS]
    i = names.index("005_uplink_tables")
    real = MIGRATIONS[i][1]

    def broken(conn):
        real(conn)                  # the real step, then a failure before it is recorded
        raise sqlite3.OperationalError("disk I/O error")
    monkeypatch.setattr(store_db, "MIGRATIONS", MIGRATIONS[:i] + [("005_broken", broken)])
    with pytest.raises(sqlite3.OperationalError):
        Store(path)
    db = sqlite3.connect(path)
    assert "uplink_batches" not in [r[0] for r in db.execute("SELECT name FROM sqlite_master")]
    assert db.execute("SELECT count(*) FROM _migrations").fetchone()[0] == 4
    db.close()
