"""Where the county keeps events: one interface, two databases.

`open_store("county.db")` gives SQLite (a trial, the demo, tests);
`open_store("postgresql://...")` gives PostgreSQL (production). Both run the
same SQL; only connection handling and the placeholder differ.

An event is stored once under (hall, device, seq). A resend with the same
canonical body is a duplicate; a different body is a conflict, kept in its
own table and never overwriting what was stored first.
"""
import contextlib
import os
import queue
import sqlite3
import threading

from tools.county import migrations, records
from tools.county.errors import StoreError

_COLS = ("hall", "device", "seq", "kind", "t") + records.COLUMNS + ("body", "batch", "received_ms")
_INSERT = 'INSERT INTO events (%s) VALUES (%s) ON CONFLICT (hall, device, seq) DO NOTHING RETURNING seq' % (
    ", ".join('"%s"' % c for c in _COLS), ", ".join(["{p}"] * len(_COLS)))
_PLAIN_INSERT = _INSERT.split(" ON CONFLICT")[0].replace("{p}", "?")
_LOOKUP = 500           # seqs per look-up: well inside SQLite's parameter limit
_COUNT = ("INSERT INTO counters (hall, name, value) VALUES ({p}, {p}, {p}) "
          "ON CONFLICT (hall, name) DO UPDATE SET value = counters.value + excluded.value")
_EXISTING = "SELECT body FROM events WHERE hall = {p} AND device = {p} AND seq = {p}"
_REJECT = {
    "conflict": "INSERT INTO conflicts (hall, device, seq, digest, body, batch, received_ms) "
                "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING RETURNING seq",
    "invalid": "INSERT INTO invalid (hall, device, seq, digest, body, reason, batch, received_ms) "
               "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING RETURNING seq",
}
# What a monthly report counts (report.py): ratings and the steps that end a
# service, by device time in [start, end), or by arrival when the device had no clock.
_REPORT_COLS = ("kind", "t", "received_ms", "device", "seq", "level", "channel", "window", "staff",
                "action", "item", "case", "body")
_REPORT = ("SELECT %s FROM events WHERE hall = {p} AND kind IN ('rating', 'session') "
           "AND ((t >= {p} AND t < {p}) OR (t = 0 AND received_ms >= {p} AND received_ms < {p})) "
           "AND (kind = 'rating' OR action IN ('ended', 'unrated'))"
           % ", ".join('"%s"' % c for c in _REPORT_COLS))
# The same rows as _REPORT, counted in the database: the county overview's figures.
_COUNTS = ("SELECT kind, action, level, count(*) FROM events WHERE hall = {p} AND kind IN ('rating', 'session') "
           "AND ((t >= {p} AND t < {p}) OR (t = 0 AND received_ms >= {p} AND received_ms < {p})) "
           "AND (kind = 'rating' OR action IN ('ended', 'unrated')) GROUP BY kind, action, level")
# A month's queue events (tools/county/waits.py), by the same time rule.
_TICKETS = ("SELECT t, received_ms, body FROM events WHERE hall = {p} AND kind = 'ticket' "
            "AND ((t >= {p} AND t < {p}) OR (t = 0 AND received_ms >= {p} AND received_ms < {p})) "
            "ORDER BY t, device, seq")
_BATCH = ("INSERT INTO batches (hall, batch, first_ms, last_ms, posts, events) "
          "VALUES ({p}, {p}, {p}, {p}, 1, {p}) ON CONFLICT (hall, batch) "
          "DO UPDATE SET last_ms = excluded.last_ms, posts = batches.posts + 1 RETURNING posts")


def open_store(db, create=True):
    """A store for a `--db` value: a PostgreSQL URL or an SQLite file path.
    create=False refuses a missing SQLite file instead of making an empty one."""
    if db.startswith(("postgresql://", "postgres://")):
        return PostgresStore(db)
    if not create and not os.path.exists(db):
        raise StoreError("no county database at %s" % db)
    return SqliteStore(db)


class Store:
    """The front door: ingest(), stats(), report_events(), close().
    Subclasses say how to get a connection (`_connection`, a context manager
    that commits; `_reading` for reads that must not wait for writers) and
    which placeholder their driver uses."""
    placeholder = "?"
    attempts = 1            # how often ingest() runs a transaction the database chose to abort
    ingest_threads = 1      # batches a server parses at once (app.py); those that wait commit together

    def __init__(self):
        p = self.placeholder
        self._sql = {name: sql.replace("{p}", p) for name, sql in (
            ("insert", _INSERT), ("existing", _EXISTING), ("batch", _BATCH), ("report", _REPORT), ("counts", _COUNTS),
            ("tickets", _TICKETS),
            ("count", _COUNT), ("conflict", _REJECT["conflict"]), ("invalid", _REJECT["invalid"]))}
        self.migrated = migrations.migrate(self)
        self._group = GroupCommit(self._commit_group)

    def ingest(self, hall, batch, items, now_ms):
        """Store a batch and return one result per item, in order, once it
        is committed. Raises records.Malformed before writing anything, or
        StoreError if the database failed (nothing committed). Batches that
        wait while another transaction runs are committed together in the
        next one (group commit: one commit, one fsync, for all of them);
        each is answered only after that commit, exactly as if alone."""
        keys = [records.key(item) for item in items]
        # Parsing is most of the work and needs no database: done before the
        # transaction, so the write lock (SQLite) or row locks (PostgreSQL) are held briefly.
        parsed = []
        for (device, seq), item in zip(keys, items):
            try:
                row = records.record(device, seq, item.get("body"))
                parsed.append((device, seq, [hall, device, seq, row["kind"], row["t"]]
                               + [row[c] for c in records.COLUMNS] + [row["body"], batch, now_ms], None))
            except records.Invalid as e:
                parsed.append((device, seq, records.as_stored(item.get("body")), e.reason))
        return self._group.commit((hall, batch, parsed, now_ms))

    def _commit_group(self, jobs):
        """One transaction for these batches, in arrival order; their results.
        When a group of several fails, each goes again alone: one batch the
        database refuses must not fail the others."""
        try:
            return self._retrying(jobs)
        except StoreError as e:
            if len(jobs) == 1:
                raise
            out = []
            for job in jobs:
                try:
                    out.append(self._retrying([job])[0])
                except StoreError as alone:
                    out.append(alone)
            if all(isinstance(r, StoreError) for r in out):
                raise e
            return out

    def _retrying(self, jobs):
        for attempt in range(self.attempts):
            try:
                return self._ingest(jobs)
            except Retry:
                if attempt + 1 == self.attempts:
                    raise

    def _ingest(self, jobs):
        out = []
        counts = {}     # (hall, counter name) -> delta, applied at the end in that order (no lock cycles)
        with self._connection() as db:
            cur = db.cursor()
            for hall, batch, parsed, now_ms in jobs:
                out.append(self._store_batch(cur, hall, batch, parsed, now_ms, counts))
            cur.executemany(self._sql["count"], [(hall, name, n) for (hall, name), n in sorted(counts.items())])
        return out

    def _store_batch(self, cur, hall, batch, parsed, now_ms, counts):
        results = []
        sql = self._sql
        kind_at, level_at, body_at = 3, 5, len(_COLS) - 3       # places in an events row (_COLS)

        def count(name):
            counts[hall, name] = counts.get((hall, name), 0) + 1
        stored = iter(self._insert_new(cur, hall, [row for _, _, row, invalid in parsed if not invalid]))
        for device, seq, row, invalid in parsed:
            if invalid:
                cur.execute(sql["invalid"], (hall, device, seq, records.digest(row), row, invalid, batch, now_ms))
                if cur.fetchone() is not None:
                    count("invalid")
                results.append({"device": device, "seq": seq, "status": "invalid", "reason": invalid})
                continue
            if next(stored):
                results.append({"device": device, "seq": seq, "status": "stored"})
                count("events:" + row[kind_at])
                if row[kind_at] == "rating":
                    count("ratings:" + (row[level_at] or ""))
                continue
            body = row[body_at]
            cur.execute(sql["existing"], (hall, device, seq))
            if records.same_event(cur.fetchone()[0], body):
                results.append({"device": device, "seq": seq, "status": "duplicate"})
                continue
            cur.execute(sql["conflict"], (hall, device, seq, records.digest(body), body, batch, now_ms))
            if cur.fetchone() is not None:
                count("conflicts")
            results.append({"device": device, "seq": seq, "status": "conflict",
                            "reason": "differs from the stored event"})
        cur.execute(sql["batch"], (hall, batch, now_ms, now_ms, len(parsed)))
        if cur.fetchone()[0] == 1:
            count("batches")
        count("batch_posts")
        return results

    def _insert_new(self, cur, hall, rows):
        """Insert the rows not stored yet; returns, row by row in order, True
        for each one this transaction stored. One statement per row: with
        other servers on the database, only the insert itself can tell."""
        stored = []
        for row in rows:
            cur.execute(self._sql["insert"], row)
            stored.append(cur.fetchone() is not None)
        return stored

    def stats(self, hall=None):
        """Counts for tests, the demo and a quick look: events by kind,
        ratings by level, conflicts, invalid, batches and their posts. Read
        from the counters that ingest keeps: no scan, whatever the size."""
        with self._reading() as db:
            if hall:
                rows = [(hall, n, v) for n, v in db.execute(
                    "SELECT name, value FROM counters WHERE hall = %s" % self.placeholder, (hall,)).fetchall()]
            else:
                rows = db.execute("SELECT hall, name, value FROM counters").fetchall()
        out = {"hall": hall, "events": {}, "ratings": {}, "conflicts": 0, "invalid": 0,
               "batches": 0, "batch_posts": 0}
        halls = {}
        for h, name, value in rows:
            value = int(value)
            part, _, key = name.partition(":")
            if key:
                out[part][key] = out[part].get(key, 0) + value
                if part == "events":
                    halls[h] = halls.get(h, 0) + value
            else:
                out[part] += value
        for part in ("events", "ratings"):
            out[part] = {k: v for k, v in sorted(out[part].items()) if v}
        if not hall:
            out["halls"] = {h: n for h, n in sorted(halls.items()) if n}
        out["total"] = sum(out["events"].values())
        return out

    def halls(self):
        """Every hall that has posted a batch."""
        with self._reading() as db:
            return [r[0] for r in db.execute(
                "SELECT DISTINCT hall FROM counters WHERE name = 'batch_posts' ORDER BY hall").fetchall()]

    def report_events(self, hall, start_ms, end_ms):
        """The rows a monthly report counts, as dicts of _REPORT_COLS; the
        same SQL on both databases. start_ms > 0, so t = 0 only matches by
        received_ms."""
        with self._reading() as db:
            rows = db.execute(self._sql["report"], (hall, start_ms, end_ms, start_ms, end_ms)).fetchall()
        return [dict(zip(_REPORT_COLS, r)) for r in rows]

    def ticket_events(self, hall, start_ms, end_ms):
        """The month's `ticket` events as dicts of t, received_ms, body."""
        with self._reading() as db:
            rows = db.execute(self._sql["tickets"], (hall, start_ms, end_ms, start_ms, end_ms)).fetchall()
        return [dict(zip(("t", "received_ms", "body"), r)) for r in rows]

    def month_counts(self, hall, start_ms, end_ms):
        """[(kind, action, level, n)] over the rows report_events() would return."""
        with self._reading() as db:
            return db.execute(self._sql["counts"], (hall, start_ms, end_ms, start_ms, end_ms)).fetchall()

    def ping(self):
        with self._reading() as db:
            db.execute("SELECT 1").fetchall()

    def _schema_lock(self, db):
        """Inside a migration's transaction: keep other processes out."""

    def _reading(self):
        return self._connection()

    def close(self):
        pass


class GroupCommit:
    """Leader and followers: a caller queues its job and waits for the
    writer's turn; whoever gets it runs every queued job in one go
    (`run(jobs)` -> one result per job, a StoreError instance for a job
    that failed alone) and hands each caller its own result. While one
    group is being written the next one gathers."""

    def __init__(self, run):
        self._run = run
        self._queue = []
        self._queue_lock = threading.Lock()
        self._turn = threading.Lock()

    def commit(self, job):
        slot = [job, None, None]                # job, result, error
        with self._queue_lock:
            self._queue.append(slot)
        with self._turn:
            if slot[0] is not None:             # no one took it while we waited: lead
                with self._queue_lock:
                    group, self._queue = self._queue, []
                try:
                    results = self._run([s[0] for s in group])
                except BaseException as e:
                    results = [e] * len(group)
                for s, r in zip(group, results):
                    s[0] = None
                    s[1 + isinstance(r, BaseException)] = r
        if slot[2] is not None:
            raise slot[2]
        return slot[1]


class Retry(StoreError):
    """The database aborted the transaction to break a deadlock or a
    serialization conflict: running it again is safe."""


class SqliteStore(Store):
    """One writing connection behind a lock (SQLite has one writer anyway),
    and one for reads: in WAL mode a report or stats read does not wait for
    a batch being written, nor hold it up.

    One ingest thread: batches are parsed and written one after another.
    A second thread parsing while the first writes and fsyncs looks like a
    gain, but sqlite3 lets go of the interpreter lock for every row it
    steps, so the two take turns a row at a time: measured on 2 cores, two
    threads drained a hall about 10 % slower than one (BENCHMARKS.md, issue 12, stop 20)."""
    ingest_threads = 1

    def __init__(self, path):
        self.url = path
        self._db = self._open(path)
        self._lock = threading.Lock()
        super().__init__()
        self._reader = self._open(path)
        self._read_lock = threading.Lock()

    @staticmethod
    def _open(path):
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")   # answered means on disk
            db.execute("PRAGMA busy_timeout=10000")
            # The (hall, device, seq) index outgrows the 2 MB default cache within a million events.
            db.execute("PRAGMA cache_size=-131072")
        except sqlite3.Error as e:
            raise StoreError("cannot open %s: %s" % (path, e))
        return db

    @contextlib.contextmanager
    def _connection(self):
        with self._lock:
            with self._transaction(self._db, "BEGIN IMMEDIATE") as db:
                yield db

    def _insert_new(self, cur, hall, rows):
        # This transaction holds SQLite's only write lock (BEGIN IMMEDIATE): what is not
        # there now will not appear before the commit, so one look-up and one bulk insert.
        by_device = {}
        for row in rows:
            by_device.setdefault(row[1], []).append(row[2])
        there = set()
        for device, seqs in by_device.items():       # the primary key's index, one device at a time
            for i in range(0, len(seqs), _LOOKUP):
                chunk = seqs[i:i + _LOOKUP]
                cur.execute("SELECT device, seq FROM events WHERE hall = ? AND device = ? AND seq IN (%s)"
                            % ", ".join("?" * len(chunk)), [hall, device] + chunk)
                there.update(cur.fetchall())
        new, stored = [], []
        for row in rows:
            key = (row[1], row[2])
            stored.append(key not in there)
            if stored[-1]:
                new.append(row)
            there.add(key)                  # the same event twice in one batch: the second is not new
        cur.executemany(_PLAIN_INSERT, new)
        return stored

    @contextlib.contextmanager
    def _reading(self):
        with self._read_lock:
            # One snapshot for the whole read: the figures agree with each other.
            with self._transaction(self._reader, "BEGIN") as db:
                yield db

    @contextlib.contextmanager
    def _transaction(self, db, begin):
        try:
            db.execute(begin)
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise StoreError("sqlite %s: %s" % (self.url, e))

    def close(self):
        with self._lock, self._read_lock:
            self._db.close()
            if hasattr(self, "_reader"):
                self._reader.close()


class PostgresStore(Store):
    """A few pooled connections, one transaction per request. Several
    county-server processes may share one database: the primary keys decide
    which insert wins, the loser answers `duplicate`."""
    placeholder = "%s"
    attempts = 3
    # A batch waits on the network for its round trip: meanwhile another can be parsed.
    ingest_threads = 2

    def __init__(self, url, size=4):
        import psycopg                      # only the production store needs it
        self._psycopg = psycopg
        self.url = url
        self._idle = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        super().__init__()

    def _insert_new(self, cur, hall, rows):
        # One round trip for the batch (psycopg pipelines executemany), still one
        # INSERT ... RETURNING per row: the insert decides, whoever else is writing.
        if not rows:
            return []
        cur.executemany(self._sql["insert"], rows, returning=True)
        stored = []
        while True:
            stored.append(cur.fetchone() is not None)
            if not cur.nextset():
                return stored

    def _schema_lock(self, db):
        # Held to the end of the transaction; the number names "the county schema".
        db.execute("SELECT pg_advisory_xact_lock(4711470)")

    @contextlib.contextmanager
    def _connection(self):
        err = self._psycopg.Error
        with self._slots:
            try:
                db = self._idle.get_nowait()
            except queue.Empty:
                try:
                    db = self._psycopg.connect(self.url, connect_timeout=10)
                except err as e:
                    raise StoreError("cannot connect to PostgreSQL: %s" % str(e).strip().splitlines()[0])
            try:
                yield db
                db.commit()
            except err as e:
                db.close()      # a failed connection is not reused
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if getattr(e, "sqlstate", None) in ("40001", "40P01"):
                    raise Retry("PostgreSQL: %s" % first)
                raise StoreError("PostgreSQL: %s" % first)
            except BaseException:
                db.rollback()
                self._idle.put(db)
                raise
            self._idle.put(db)

    def close(self):
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
