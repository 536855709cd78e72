"""The store's front door: one way to open the agent's SQLite file, one
`atomic()`, and the store's parts, each a small class of named queries.

    store = Store("/var/lib/qinglian/agent.db")   # or Store(memory=True)
    with store.atomic():
        stored = store.events.add_new(rows)

WAL so the uplink and the HTTP API read while ingest writes;
synchronous=FULL because an event is acked to its device only after COMMIT
returns, and that promise must survive a power cut. Writers take the lock
up front (BEGIN IMMEDIATE): with WAL, a deferred transaction that reads and
then writes fails outright when another connection committed meanwhile.
Each thread opens a Store of its own (one connection each).
"""
import contextlib
import os
import sqlite3
import time
import urllib.parse

from edge_agent.store.devices import Devices, Windows
from edge_agent.store.events import Events
from edge_agent.store.kiosk import Cases, PrintJobs
from edge_agent.store.migrations import MIGRATIONS
from edge_agent.store.ota import Bundles, Updates
from edge_agent.store.quarantine import Quarantined
from edge_agent.store.queues import Queues
from edge_agent.store.uplink import Outbound


def now_ms():
    return int(time.time() * 1000)


def connect(path=None, create=True, synchronous="FULL", timeout_s=30.0, cache_kib=None):
    """The one connection factory. `path` None: in memory. create=False
    opens an existing file only (mode=rw): a typo or a missing mount must
    not give a reader an empty store of its own."""
    if path is None:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    elif create:
        _create_private(path)
        conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    else:
        uri = "file:%s?mode=rw" % urllib.parse.quote(os.path.abspath(path))
        conn = sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    # isolation_level=None: every transaction is opened by atomic(), none implicitly.
    if path is not None:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=%s" % synchronous)
    conn.execute("PRAGMA busy_timeout=%d" % int(timeout_s * 1000))
    if cache_kib:
        conn.execute("PRAGMA cache_size=-%d" % cache_kib)
    return conn


class Store:
    """The agent's store. Its parts: `events`, `devices`, `windows`,
    `quarantine` (refused messages), `uplink` (batches and rejects), `cases`
    (the county's, cached), `print_jobs` (the kiosks'), `queues` (queues,
    tickets, calls), `bundles` and `updates` (over-the-air updates); and here
    the counters and `meta`."""

    def __init__(self, path=None, memory=False, timeout_s=30.0, create=True, synchronous="FULL",
                 cache_kib=None):
        self.path = None if memory else str(path)
        self.conn = connect(self.path, create, synchronous, timeout_s, cache_kib)
        self.events = Events(self.conn)
        self.devices = Devices(self.conn)
        self.windows = Windows(self.conn)
        self.quarantine = Quarantined(self.conn)
        self.uplink = Outbound(self.conn)
        self.cases = Cases(self.conn)
        self.print_jobs = PrintJobs(self.conn)
        self.queues = Queues(self.conn)
        self.bundles = Bundles(self.conn)
        self.updates = Updates(self.conn)
        self.migrate()

    def close(self):
        self.conn.close()

    @contextlib.contextmanager
    def atomic(self):
        """One transaction (a savepoint when nested); rolled back on any error."""
        conn = self.conn
        if conn.in_transaction:
            conn.execute("SAVEPOINT nested")
            try:
                yield self
            except BaseException:
                conn.execute("ROLLBACK TO nested")
                conn.execute("RELEASE nested")
                raise
            conn.execute("RELEASE nested")
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT leaves the transaction open: close it, or every
            # later atomic() would nest inside it and never commit.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def migrate(self):
        self.conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_ms INTEGER)")
        if set(self.migrations()) >= {name for name, _ in MIGRATIONS}:
            return                      # the usual case: no write lock taken
        for name, step in MIGRATIONS:
            with self.atomic():
                # Looked up inside the transaction: another process may be opening the same file.
                if self.conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                    continue
                step(self.conn)
                self.conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, now_ms()))

    def migrations(self):
        """Names of the migrations applied to this file, in order."""
        return [r[0] for r in self.conn.execute("SELECT name FROM _migrations ORDER BY rowid")]

    def tables(self):
        return [r[0] for r in self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]

    # counters: bumped inside the same transaction as the rows they count.
    def bump(self, name, n=1):
        self.bump_all({name: n})

    def bump_all(self, counts):
        """bump() for each {name: n}, in one statement."""
        self.conn.executemany("INSERT INTO counters VALUES (?, ?) ON CONFLICT(name) DO UPDATE "
                              "SET value = value + excluded.value", [(k, n) for k, n in counts.items() if n])

    def counters(self):
        return dict(self.conn.execute("SELECT name, value FROM counters"))

    def meta(self, key, default=None):
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

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
