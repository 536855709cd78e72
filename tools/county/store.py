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

from tools.county import records
from tools.county.errors import StoreError

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        hall TEXT NOT NULL, device TEXT NOT NULL, seq BIGINT NOT NULL,
        kind TEXT NOT NULL, t BIGINT NOT NULL,
        level TEXT, channel TEXT, "window" TEXT, staff TEXT, session TEXT,
        action TEXT, item TEXT, "case" TEXT,
        body TEXT NOT NULL, batch TEXT NOT NULL, received_ms BIGINT NOT NULL,
        PRIMARY KEY (hall, device, seq))""",
    # Monthly reports and screens ask "this hall's ratings in this period".
    "CREATE INDEX IF NOT EXISTS events_report ON events (hall, kind, t)",
    # The losing side of a conflict, once per distinct body.
    """CREATE TABLE IF NOT EXISTS conflicts (
        hall TEXT NOT NULL, device TEXT NOT NULL, seq BIGINT NOT NULL,
        digest TEXT NOT NULL, body TEXT NOT NULL,
        batch TEXT NOT NULL, received_ms BIGINT NOT NULL,
        PRIMARY KEY (hall, device, seq, digest))""",
    # Bodies the county could not parse (a newer protocol, a bug): kept for a human.
    """CREATE TABLE IF NOT EXISTS invalid (
        hall TEXT NOT NULL, device TEXT NOT NULL, seq BIGINT NOT NULL,
        digest TEXT NOT NULL, body TEXT NOT NULL, reason TEXT NOT NULL,
        batch TEXT NOT NULL, received_ms BIGINT NOT NULL,
        PRIMARY KEY (hall, device, seq, digest))""",
    # Every batch id seen and how often it was posted: a resend shows as posts > 1.
    """CREATE TABLE IF NOT EXISTS batches (
        hall TEXT NOT NULL, batch TEXT NOT NULL,
        first_ms BIGINT NOT NULL, last_ms BIGINT NOT NULL,
        posts BIGINT NOT NULL, events BIGINT NOT NULL,
        PRIMARY KEY (hall, batch))""",
)

_COLS = ("hall", "device", "seq", "kind", "t") + records.COLUMNS + ("body", "batch", "received_ms")
_INSERT = 'INSERT INTO events (%s) VALUES (%s) ON CONFLICT (hall, device, seq) DO NOTHING RETURNING seq' % (
    ", ".join('"%s"' % c for c in _COLS), ", ".join(["{p}"] * len(_COLS)))
_EXISTING = "SELECT body FROM events WHERE hall = {p} AND device = {p} AND seq = {p}"
_REJECT = {
    "conflict": "INSERT INTO conflicts (hall, device, seq, digest, body, batch, received_ms) "
                "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING",
    "invalid": "INSERT INTO invalid (hall, device, seq, digest, body, reason, batch, received_ms) "
               "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING",
}
# What a monthly report counts (report.py): ratings and the steps that end a
# service, by device time in [start, end), or by arrival when the device had no clock.
_REPORT_COLS = ("kind", "t", "received_ms", "device", "seq", "level", "channel", "window", "staff",
                "action", "item", "case", "body")
_REPORT = ("SELECT %s FROM events WHERE hall = {p} AND kind IN ('rating', 'session') "
           "AND ((t >= {p} AND t < {p}) OR (t = 0 AND received_ms >= {p} AND received_ms < {p})) "
           "AND (kind = 'rating' OR action IN ('ended', 'unrated'))"
           % ", ".join('"%s"' % c for c in _REPORT_COLS))
_BATCH = ("INSERT INTO batches (hall, batch, first_ms, last_ms, posts, events) "
          "VALUES ({p}, {p}, {p}, {p}, 1, {p}) ON CONFLICT (hall, batch) "
          "DO UPDATE SET last_ms = excluded.last_ms, posts = batches.posts + 1")


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
    that commits) and which placeholder their driver uses."""
    placeholder = "?"

    def __init__(self):
        p = self.placeholder
        self._sql = {name: sql.replace("{p}", p) for name, sql in (
            ("insert", _INSERT), ("existing", _EXISTING), ("batch", _BATCH), ("report", _REPORT),
            ("conflict", _REJECT["conflict"]), ("invalid", _REJECT["invalid"]))}
        with self._connection() as db:
            for ddl in _SCHEMA:
                db.execute(ddl)

    def ingest(self, hall, batch, items, now_ms):
        """Store a batch in one transaction and return one result per item,
        in order. Raises records.Malformed before writing anything, or
        StoreError if the database failed (nothing committed)."""
        keys = [records.key(item) for item in items]
        results = []
        sql = self._sql
        with self._connection() as db:
            cur = db.cursor()
            for (device, seq), item in zip(keys, items):
                res = {"device": device, "seq": seq}
                results.append(res)
                try:
                    row = records.record(device, seq, item.get("body"))
                except records.Invalid as e:
                    body = records.as_stored(item.get("body"))
                    cur.execute(sql["invalid"], (hall, device, seq, records.digest(body), body,
                                                 e.reason, batch, now_ms))
                    res.update(status="invalid", reason=e.reason)
                    continue
                row.update(hall=hall, device=device, seq=seq, batch=batch, received_ms=now_ms)
                cur.execute(sql["insert"], [row[c] for c in _COLS])
                if cur.fetchone() is not None:
                    res["status"] = "stored"
                    continue
                cur.execute(sql["existing"], (hall, device, seq))
                if records.same_event(cur.fetchone()[0], row["body"]):
                    res["status"] = "duplicate"
                else:
                    cur.execute(sql["conflict"], (hall, device, seq, records.digest(row["body"]),
                                                  row["body"], batch, now_ms))
                    res.update(status="conflict", reason="differs from the stored event")
            cur.execute(sql["batch"], (hall, batch, now_ms, now_ms, len(items)))
        return results

    def stats(self, hall=None):
        """Counts for tests, the demo and a quick look: events by kind,
        ratings by level, conflicts, invalid, batches and their posts."""
        where, args = ("WHERE hall = %s" % self.placeholder, (hall,)) if hall else ("", ())
        land = ("AND" if hall else "WHERE")
        with self._connection() as db:
            def rows(q):
                return db.execute(q, args).fetchall()
            out = {
                "hall": hall,
                "events": dict(rows("SELECT kind, count(*) FROM events %s GROUP BY kind ORDER BY kind" % where)),
                "ratings": dict(rows("SELECT level, count(*) FROM events %s %s kind = 'rating' "
                                     "GROUP BY level ORDER BY level" % (where, land))),
                "conflicts": rows("SELECT count(*) FROM conflicts %s" % where)[0][0],
                "invalid": rows("SELECT count(*) FROM invalid %s" % where)[0][0],
            }
            n, posts = rows("SELECT count(*), coalesce(sum(posts), 0) FROM batches %s" % where)[0]
            out.update(batches=n, batch_posts=int(posts))
            if not hall:
                out["halls"] = dict(rows("SELECT hall, count(*) FROM events GROUP BY hall ORDER BY hall"))
        out["total"] = sum(out["events"].values())
        return out

    def report_events(self, hall, start_ms, end_ms):
        """The rows a monthly report counts, as dicts of _REPORT_COLS; the
        same SQL on both databases. start_ms > 0, so t = 0 only matches by
        received_ms."""
        with self._connection() as db:
            rows = db.execute(self._sql["report"], (hall, start_ms, end_ms, start_ms, end_ms)).fetchall()
        return [dict(zip(_REPORT_COLS, r)) for r in rows]

    def ping(self):
        with self._connection() as db:
            db.execute("SELECT 1").fetchall()

    def close(self):
        pass


class SqliteStore(Store):
    """One connection behind a lock: SQLite has one writer anyway."""

    def __init__(self, path):
        self.url = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")   # answered means on disk
            self._db.execute("PRAGMA busy_timeout=10000")
            # The (hall, device, seq) index outgrows the 2 MB default cache within a million events.
            self._db.execute("PRAGMA cache_size=-131072")
        except sqlite3.Error as e:
            raise StoreError("cannot open %s: %s" % (path, e))
        self._lock = threading.Lock()
        super().__init__()

    @contextlib.contextmanager
    def _connection(self):
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise StoreError("sqlite %s: %s" % (self.url, e))

    def close(self):
        with self._lock:
            self._db.close()


class PostgresStore(Store):
    """A few pooled connections, one transaction per request."""
    placeholder = "%s"

    def __init__(self, url, size=4):
        import psycopg                      # only the production store needs it
        self._psycopg = psycopg
        self.url = url
        self._idle = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        super().__init__()

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
                raise StoreError("PostgreSQL: %s" % str(e).strip().splitlines()[0])
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
