"""The agent's store: one SQLite file, one class as its front door.

    store = Store("/var/lib/qinglian/agent.db")   # or Store(memory=True)
    with store.atomic():
        ...

WAL so the uplink and the HTTP API read while ingest writes;
synchronous=FULL because an event is acked to its device only after COMMIT
returns, and that promise must survive a power cut. Writers take the lock
up front (BEGIN IMMEDIATE): with WAL, a deferred transaction that reads and
then writes fails outright when another connection committed meanwhile.

Tables (the uplink reads and updates `events` through its own connection):
  events      one row per (device, seq), body = canonical wire JSON with mac;
              synced_ms is NULL until the county committed it; rowid order is
              arrival order and a partial index finds the unsynced rows.
  quarantine  everything refused, with the ProtocolError code as reason;
              one row per distinct message, `repeats` counts resends;
              bounded per device `bucket` (edge_agent/quarantine.py).
  devices     the registry: key, window binding, status, seq high-water mark,
              presence, and the health its newest status event reported
              (health_seq, health_alarm, health_outbox).
  windows     staff on duty and the service-time target per window.
  counters    received, committed, duplicates, quarantined:<reason>,
              quarantine_dropped:<bucket>, quarantine_purged, ...
  meta        registry_rev, bumped when devices/windows change so a running
              agent republishes device configs.
"""
import contextlib
import os
import sqlite3
import time

import sqlite_utils


def now_ms():
    return int(time.time() * 1000)


def _m001_initial(db):
    db.executescript("""
    CREATE TABLE events (
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        t INTEGER NOT NULL,
        body TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        synced_ms INTEGER,
        PRIMARY KEY (device, seq)
    );
    -- Every entry has synced_ms NULL, so the index is in rowid (arrival) order.
    CREATE INDEX events_unsynced ON events(synced_ms) WHERE synced_ms IS NULL;
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY,
        received_ms INTEGER NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        device TEXT,
        seq INTEGER
    );
    CREATE TABLE devices (
        device TEXT PRIMARY KEY,
        hall TEXT NOT NULL,
        window TEXT,
        key_hex TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
        replaced_by TEXT,
        hwm INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        online INTEGER NOT NULL DEFAULT 0,
        presence_ms INTEGER,
        fw TEXT,
        last_event_ms INTEGER
    );
    CREATE TABLE windows (
        window TEXT PRIMARY KEY,
        staff TEXT,
        staff_no TEXT,
        target_s INTEGER,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """)


def _m002_quarantine_repeats(db):
    # A device with a wrong key resends its whole outbox again and again:
    # keep one row per distinct refused message and count the repeats.
    db.executescript("""
    ALTER TABLE quarantine ADD COLUMN digest TEXT;
    ALTER TABLE quarantine ADD COLUMN repeats INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE quarantine ADD COLUMN last_ms INTEGER;
    CREATE UNIQUE INDEX quarantine_digest ON quarantine(digest);
    """)


def _m003_device_health(db):
    # The hall manager's view of each device: the alarm and outbox depth of its
    # newest status event (by seq, so a late or resent one never rolls it back),
    # taken at once from the status events already stored.
    db.executescript("""
    ALTER TABLE devices ADD COLUMN health_seq INTEGER;
    ALTER TABLE devices ADD COLUMN health_alarm TEXT;
    ALTER TABLE devices ADD COLUMN health_outbox INTEGER;
    UPDATE devices SET (health_seq, health_alarm, health_outbox) = (
        SELECT seq, json_extract(body, '$.alarm'), json_extract(body, '$.outbox') FROM events
        WHERE events.device = devices.device AND kind = 'status' ORDER BY seq DESC LIMIT 1);
    """)


def _m004_quarantine_bounds(db):
    # The quarantine is bounded per device (edge_agent/quarantine.py): each row
    # names the bucket it counts against and its size; purging by age needs
    # last_ms on every row. Ids not in the registry share one bucket.
    db.executescript("""
    ALTER TABLE quarantine ADD COLUMN bucket TEXT;
    ALTER TABLE quarantine ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
    UPDATE quarantine SET last_ms = coalesce(last_ms, received_ms),
        size = length(payload) + length(CAST(topic AS BLOB)) + length(CAST(detail AS BLOB)),
        bucket = CASE WHEN device IN (SELECT device FROM devices) THEN device ELSE '(unregistered)' END;
    CREATE INDEX quarantine_bucket ON quarantine(bucket);
    CREATE INDEX quarantine_last ON quarantine(last_ms);
    """)


# Named, applied in order, each in its own transaction, recorded in _migrations.
MIGRATIONS = [
    ("001_initial", _m001_initial),
    ("002_quarantine_repeats", _m002_quarantine_repeats),
    ("003_device_health", _m003_device_health),
    ("004_quarantine_bounds", _m004_quarantine_bounds),
]


class Store:
    def __init__(self, path=None, memory=False, timeout_s=30.0):
        if memory:
            self.path = None
            self.db = sqlite_utils.Database(memory=True)
        else:
            self.path = str(path)
            _create_private(self.path)
            conn = sqlite3.connect(self.path, timeout=timeout_s, check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            self.db.enable_wal()
        # We open every transaction ourselves (atomic()); no implicit ones.
        self.db.conn.isolation_level = None
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=%d" % int(timeout_s * 1000))
        self.migrate()

    @property
    def conn(self):
        return self.db.conn

    def close(self):
        self.db.close()

    @contextlib.contextmanager
    def atomic(self):
        """One transaction (a savepoint when nested); rolled back on any error."""
        if self.conn.in_transaction:
            with self.db.atomic():
                yield self
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT leaves the transaction open: close it, or every
            # later atomic() would nest inside it and never commit.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def migrate(self):
        self.conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_ms INTEGER)")
        done = {r[0] for r in self.conn.execute("SELECT name FROM _migrations")}
        for name, step in MIGRATIONS:
            if name in done:
                continue
            with self.atomic():
                step(self.db)
                self.conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, now_ms()))

    def one(self, sql, params=()):
        row = self.conn.execute(sql, params).fetchone()
        return row[0] if row else None

    # counters: bumped inside the same transaction as the rows they count.
    def bump(self, name, n=1):
        if n:
            self.conn.execute("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE "
                              "SET value = value + excluded.value", (name, n))

    def counters(self):
        return dict(self.conn.execute("SELECT name, value FROM counters"))

    def meta(self, key, default=None):
        v = self.one("SELECT value FROM meta WHERE key = ?", (key,))
        return default if v is None else v

    def set_meta(self, key, value):
        self.conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                          "SET value = excluded.value", (key, str(value)))

    def bump_registry(self):
        """Tell a running agent that devices or windows changed."""
        self.set_meta("registry_rev", int(self.meta("registry_rev", 0)) + 1)

    def registry_rev(self):
        return int(self.meta("registry_rev", 0))


def _create_private(path):
    # Device keys live in this file: create it 0600 before SQLite opens it
    # (SQLite gives the -wal and -shm files the same mode). Never open and
    # close an existing store here: closing any descriptor of the file drops
    # this process's POSIX locks on it, and another process's SQLite would
    # then take the WAL for unused and delete it under our connections.
    if os.path.exists(path):
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
