"""The hall's uplink: unsynced events from the agent's store to the county.

    up = Uplink("agent.db", {"url": "https://county.example", "token": "..."}, hall="h1")
    threading.Thread(target=up.run, args=(stop,)).start()

Delivery (SPEC.md, delivery semantics 4):
- Oldest unsynced rows first, batches bounded by event count and bytes,
  gzip, `Authorization: Bearer <token>`, HTTPS optionally pinned to one CA.
- A batch's id and members are committed to `uplink_batches` before the
  first POST; every resend of those rows, also after an agent restart,
  carries the same id.
- A row gets synced_ms only once the county answered `stored` or
  `duplicate` for it. `conflict` rows are marked too (the county keeps both
  versions; resending cannot help) but logged as errors and recorded in
  `uplink_rejects`. `invalid` rows stay unsynced, recorded there and held
  back for `retry_invalid_s`, so a county upgrade picks them up later.
- Any failure (network, TLS, HTTP status, a garbled answer, a busy store)
  is an UplinkError handled in one place: exponential backoff with jitter.
- The county is not trusted to be small: an answer is read up to
  MAX_ANSWER_BYTES within a deadline and inflated (gzip or deflate) only up
  to the same bound, so a hostile or broken county cannot exhaust the Pi.
- Plain http:// sends the hall's token and events readable by anyone on
  the way: refused unless `allow_plain_http` says so.
- Retention deletes only synced rows older than `retention_days`.
"""
import gzip
import http.client
import json
import logging
import os
import random
import secrets
import sqlite3
import ssl
import threading
import time
import urllib.parse
import zlib

log = logging.getLogger("edge_agent.uplink")

DEFAULTS = {
    "url": None,
    "token": None,
    "batch_max_events": 500,
    "batch_max_bytes": 262144,     # JSON before gzip
    "interval_s": 2.0,             # idle wait when everything is synced
    "timeout_s": 10.0,
    "backoff_max_s": 60.0,
    "ca_file": None,               # trust only this CA for the county's certificate
    "retention_days": 30,          # synced rows older than this are deleted; 0 keeps all
    "retry_invalid_s": 3600,       # rows the county called invalid wait this long
    "allow_plain_http": False,     # http:// only when the config says so
}
# One result per event (~100 bytes) for up to 10,000 events, with room to spare.
MAX_ANSWER_BYTES = 4 << 20
_READ_CHUNK = 65536
_BACKOFF_FIRST_S = 1.0
_PURGE_EVERY_S = 3600
_PURGE_CHUNK = 5000               # rows per delete transaction: ingest keeps its turn
_ENVELOPE = 160                   # bytes of the batch object around its events

_SCHEMA = (
    # The batch in flight: id and members, so a resend reuses both.
    """CREATE TABLE IF NOT EXISTS uplink_batches (
        batch TEXT PRIMARY KEY, created_ms INTEGER NOT NULL,
        members TEXT NOT NULL, posts INTEGER NOT NULL DEFAULT 0)""",
    # What the county refused, kept for a human (the body too: retention may
    # delete the synced conflict row from events).
    """CREATE TABLE IF NOT EXISTS uplink_rejects (
        device TEXT NOT NULL, seq INTEGER NOT NULL, status TEXT NOT NULL,
        reason TEXT, body TEXT NOT NULL, first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL, retry_ms INTEGER, PRIMARY KEY (device, seq))""",
)


class UplinkError(OSError):
    """The county could not take a batch now; retried after a backoff."""


class BatchTooLarge(UplinkError):
    """HTTP 413: the county takes smaller batches than we sent."""


def check_config(cfg):
    """cfg dict -> complete cfg with defaults; ValueError in plain words."""
    out = dict(DEFAULTS)
    out.update({k: v for k, v in (cfg or {}).items() if v is not None})
    url = out["url"] or ""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("[uplink] url must be https://host[:port][/path], not %r" % url)
    if parts.scheme == "http" and out["allow_plain_http"] is not True:
        raise ValueError("[uplink] url %s is plain http: the hall's token and events would cross the network "
                         "readable; use https://, or set [uplink] allow_plain_http = true for a county on "
                         "this machine or a test" % url)
    if not out["token"]:
        raise ValueError("uplink token is required (the hall's bearer token at the county)")
    for k in ("batch_max_events", "batch_max_bytes", "interval_s", "timeout_s", "backoff_max_s"):
        if not out[k] or out[k] <= 0:
            raise ValueError("uplink %s must be a positive number, not %r" % (k, out[k]))
    if out["ca_file"] and parts.scheme != "https":
        raise ValueError("uplink ca_file pins a CA for HTTPS, but the url is %s" % parts.scheme)
    return out


def now_ms():
    return int(time.time() * 1000)


def _open(db_path, timeout_s):
    # mode=rw: never create an empty store by accident (a typo, a missing mount).
    uri = "file:%s?mode=rw" % urllib.parse.quote(os.path.abspath(db_path))
    return sqlite3.connect(uri, uri=True, timeout=timeout_s, isolation_level=None)


def connect(db_path, busy_timeout_s=30.0):
    """A connection of the uplink's own, for its own thread. The store must
    exist: the agent's store creates it (with its mode and migrations)."""
    db = _open(db_path, busy_timeout_s)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=%d" % int(busy_timeout_s * 1000))
    # A lost synced mark after a power cut only means a duplicate at the county.
    db.execute("PRAGMA synchronous=NORMAL")
    # Marking rows synced walks the (device, seq) index: 32 MB keeps it in memory on a Pi.
    db.execute("PRAGMA cache_size=-32768")
    for ddl in _SCHEMA:
        db.execute(ddl)
    return db


def purge_synced(db, older_than_ms, chunk=_PURGE_CHUNK):
    """Delete synced events received before older_than_ms, in small
    transactions; unsynced rows are never touched. Returns rows deleted."""
    total = 0
    while True:
        n = db.execute("DELETE FROM events WHERE rowid IN (SELECT rowid FROM events "
                       "WHERE synced_ms IS NOT NULL AND received_ms < ? LIMIT ?)",
                       (older_than_ms, chunk)).rowcount
        total += n
        if n < chunk:
            return total


class County:
    """The county's batch endpoint over one kept-alive HTTP(S) connection."""

    def __init__(self, url, token, hall, timeout_s=10.0, ca_file=None):
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.path = parts.path.rstrip("/") + "/v1/halls/%s/batches" % urllib.parse.quote(hall)
        self.timeout = timeout_s
        self.token = token
        self.tls = None
        if self.https:
            # With cafile, create_default_context loads that file and not the system store.
            try:
                self.tls = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
            except (OSError, ssl.SSLError) as e:
                raise UplinkError("cannot load county CA %s: %s" % (ca_file, e))
        self._conn = None

    def _connect(self):
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def post(self, payload):
        """POST a batch (JSON bytes) and return the county's answer dict."""
        body = gzip.compress(payload, 6)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip",
                   "Accept-Encoding": "gzip", "Authorization": "Bearer " + self.token}
        reused = self._conn is not None
        try:
            resp, data = self._exchange(body, headers)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            if not reused:
                raise UplinkError("county unreachable: %s" % (str(e) or type(e).__name__))
            # The county may have closed the idle connection: one fresh try at once.
            try:
                resp, data = self._exchange(body, headers)
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise UplinkError("county unreachable: %s" % (str(e) or type(e).__name__))
        if resp.will_close or data is None:
            self.close()
        if data is None:
            raise UplinkError("county answer over %d bytes or slower than %.0f s: not read"
                              % (MAX_ANSWER_BYTES, self._deadline_s()))
        if resp.status == 413:
            raise BatchTooLarge("county answered 413: batch too large")
        if resp.status != 200:
            raise UplinkError("county answered %d: %r" % (resp.status, data[:200].decode("utf-8", "replace")))
        try:
            answer = json.loads(inflate(data, resp.getheader("Content-Encoding")))
            if type(answer) is not dict or type(answer.get("results")) is not list:
                raise ValueError("no results list")
        except (ValueError, RecursionError) as e:
            raise UplinkError("county answer unreadable: %s" % e)
        return answer

    def _deadline_s(self):
        return self.timeout * 3

    def _exchange(self, body, headers):
        if self._conn is None:
            self._conn = self._connect()
        self._conn.request("POST", self.path, body, headers)
        resp = self._conn.getresponse()
        return resp, read_bounded(resp, MAX_ANSWER_BYTES, self._deadline_s())

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def read_bounded(resp, limit, deadline_s):
    """The response body, or None when it is longer than `limit` or takes
    longer than `deadline_s` (a county dripping bytes); then the connection
    cannot be reused."""
    declared = resp.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    end = time.monotonic() + deadline_s
    parts, size = [], 0
    while True:
        chunk = resp.read1(_READ_CHUNK)
        if not chunk:
            resp.close()        # read whole: as read() does, so the connection takes the next request
            return b"".join(parts)
        size += len(chunk)
        if size > limit or time.monotonic() > end:
            return None
        parts.append(chunk)


def inflate(data, encoding, limit=MAX_ANSWER_BYTES):
    """Undo a gzip or deflate Content-Encoding, never past `limit` bytes
    (a small gzip bomb inflates to gigabytes); ValueError in plain words."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return data
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise ValueError("unsupported Content-Encoding %r" % encoding)
    # 47: gzip or zlib header; deflate is zlib-wrapped by the RFC, raw by some servers.
    tries = (47,) if encoding != "deflate" else (47, -15)
    for wbits in tries:
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(data, limit + 1)
        except zlib.error as e:
            err = e
            continue
        if len(out) > limit:
            raise ValueError("answer inflates past %d bytes" % limit)
        if not d.eof:
            raise ValueError("%s answer cut short" % encoding)
        return out
    raise ValueError("bad %s answer: %s" % (encoding, err))


class Uplink:
    def __init__(self, db_path, cfg, hall):
        self.db_path = str(db_path)
        self.cfg = check_config(cfg)
        self.hall = hall
        self._lock = threading.Lock()
        self._stats = {"last_ok_ms": None, "failing_since_ms": None, "batches_sent": 0,
                       "events_synced": 0, "conflicts": 0, "invalid": 0, "last_error": None}
        self._failures = 0
        self._cursor = 0           # rowid up to which unsynced rows were already batched
        self._max_events = int(self.cfg["batch_max_events"])   # halved on each 413, kept until restart

    # -- the thread -------------------------------------------------------

    def run(self, stop):
        """Thread target: sync until `stop` is set. Never raises on county or
        store trouble; it logs, backs off and tries again."""
        county = None
        db = None
        next_purge = 0.0
        try:
            while not stop.is_set():
                try:
                    if db is None:
                        db = connect(self.db_path)
                    if county is None:
                        county = County(self.cfg["url"], self.cfg["token"], self.hall,
                                        self.cfg["timeout_s"], self.cfg["ca_file"])
                    sent = self.sync_once(db, county)
                    if time.monotonic() >= next_purge:
                        self.purge(db)
                        next_purge = time.monotonic() + _PURGE_EVERY_S
                except sqlite3.Error as e:
                    stop.wait(self._failed(UplinkError("agent store: %s" % e)))
                    continue
                except UplinkError as e:
                    stop.wait(self._failed(e))
                    continue
                except Exception as e:          # a bug must not end the thread silently
                    log.exception("uplink: unexpected error")
                    stop.wait(self._failed(UplinkError("unexpected: %r" % e)))
                    continue
                if not sent:                      # after a batch, look again at once
                    stop.wait(self.cfg["interval_s"])
        finally:
            if county is not None:
                county.close()
            if db is not None:
                db.close()

    def sync_once(self, db, county):
        """Send one batch (the pending one first) and apply the answer.
        Returns the number of events in it; 0 when all is synced."""
        batch, rows = self._pending(db)
        if batch is None:
            batch, rows = self._new_batch(db)
        if not rows:
            return 0
        items = [r[3] for r in rows]
        payload = ('{"batch":%s,"hall":%s,"events":[%s]}' % (
            json.dumps(batch), json.dumps(self.hall), ",".join(items))).encode()
        db.execute("UPDATE uplink_batches SET posts = posts + 1 WHERE batch = ?", (batch,))
        try:
            answer = county.post(payload)
        except BatchTooLarge:
            # Nothing was stored; these rows go again in smaller batches with new ids.
            db.execute("DELETE FROM uplink_batches WHERE batch = ?", (batch,))
            self._cursor = 0
            self._max_events = max(1, len(rows) // 2)
            log.warning("county refused a batch of %d events as too large; sending at most %d from now on",
                        len(rows), self._max_events)
            raise
        self._apply(db, batch, rows, answer)
        return len(rows)

    def purge(self, db):
        days = self.cfg["retention_days"]
        if not days or days <= 0:
            return 0
        n = purge_synced(db, now_ms() - int(days * 86400000))
        if n:
            log.info("retention: deleted %d synced events older than %s days", n, days)
        return n

    # -- batches ----------------------------------------------------------

    def _pending(self, db):
        row = db.execute("SELECT batch, members FROM uplink_batches ORDER BY created_ms LIMIT 1").fetchone()
        if row is None:
            return None, []
        batch, members = row[0], json.loads(row[1])
        rows = []
        for device, seq in members:
            r = db.execute("SELECT rowid, body FROM events WHERE device = ? AND seq = ? AND synced_ms IS NULL",
                           (device, seq)).fetchone()
            if r is not None:
                rows.append((r[0], device, seq, self._item(device, seq, r[1])))
        if not rows:
            db.execute("DELETE FROM uplink_batches WHERE batch = ?", (batch,))
            return None, []
        return batch, rows

    def _new_batch(self, db):
        now = now_ms()
        held = set(db.execute("SELECT device, seq FROM uplink_rejects WHERE status = 'invalid' AND retry_ms > ?",
                              (now,)).fetchall())
        rows = self._take(db, held)
        if not rows and self._cursor:
            # Rows left behind the cursor (unanswered, released from hold): start over once.
            self._cursor = 0
            rows = self._take(db, held)
        if not rows:
            return None, []
        batch = "%x-%s" % (now, secrets.token_hex(6))
        db.execute("INSERT INTO uplink_batches (batch, created_ms, members) VALUES (?, ?, ?)",
                   (batch, now, json.dumps([[r[1], r[2]] for r in rows])))
        self._cursor = rows[-1][0]
        return batch, rows

    def _take(self, db, held):
        budget = self.cfg["batch_max_bytes"] - _ENVELOPE
        rows = []
        cur = db.execute("SELECT rowid, device, seq, body FROM events WHERE synced_ms IS NULL AND rowid > ? "
                         "ORDER BY rowid LIMIT ?", (self._cursor, self._max_events + len(held)))
        for rowid, device, seq, body in cur:
            if (device, seq) in held:
                continue
            item = self._item(device, seq, body)
            size = len(item.encode()) + 1
            if rows and size > budget:
                break
            budget -= size
            rows.append((rowid, device, seq, item))
            if len(rows) >= self._max_events:
                break
        cur.close()
        return rows

    @staticmethod
    def _item(device, seq, body):
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        return '{"device":%s,"seq":%d,"body":%s}' % (json.dumps(device), seq, json.dumps(body, ensure_ascii=False))

    def _apply(self, db, batch, rows, answer):
        now = now_ms()
        results = {}
        for r in answer["results"]:
            if type(r) is dict:
                results[(r.get("device"), r.get("seq"))] = r
        synced, counts = [], {}
        db.execute("BEGIN IMMEDIATE")
        try:
            for rowid, device, seq, item in rows:
                r = results.get((device, seq)) or {}
                status = r.get("status")
                counts[status] = counts.get(status, 0) + 1
                if status in ("stored", "duplicate", "conflict"):
                    synced.append((now, device, seq))
                if status in ("conflict", "invalid"):
                    self._reject(db, device, seq, status, r.get("reason"), item, now)
            db.executemany("UPDATE events SET synced_ms = ? WHERE device = ? AND seq = ?", synced)
            db.execute("DELETE FROM uplink_batches WHERE batch = ?", (batch,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        unanswered = len(rows) - sum(n for s, n in counts.items() if s in ("stored", "duplicate", "conflict", "invalid"))
        if unanswered:
            log.warning("batch %s: county gave no usable result for %d of %d events; they go again",
                        batch, unanswered, len(rows))
        with self._lock:
            s = self._stats
            s["batches_sent"] += 1
            s["events_synced"] += len(synced)
            s["conflicts"] += counts.get("conflict", 0)
            s["invalid"] += counts.get("invalid", 0)
            if s["failing_since_ms"]:
                log.info("county reachable again after %.0f s", (now - s["failing_since_ms"]) / 1000)
            s.update(last_ok_ms=now, failing_since_ms=None, last_error=None)
            self._failures = 0
        log.debug("batch %s: %s", batch, counts)

    def _reject(self, db, device, seq, status, reason, item, now):
        if status == "conflict":
            log.error("CONFLICT at the county for %s seq %d: the county holds a different event under this "
                      "(device, seq); kept in uplink_rejects, not resent", device, seq)
        else:
            log.error("county refused %s seq %d as invalid (%s); held, retried in %ds",
                      device, seq, reason, self.cfg["retry_invalid_s"])
        retry = now + int(self.cfg["retry_invalid_s"] * 1000) if status == "invalid" else None
        db.execute("INSERT INTO uplink_rejects (device, seq, status, reason, body, first_ms, last_ms, retry_ms) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, seq) DO UPDATE SET "
                   "status = excluded.status, reason = excluded.reason, last_ms = excluded.last_ms, "
                   "retry_ms = excluded.retry_ms",
                   (device, seq, status, reason, json.loads(item)["body"], now, now, retry))

    def _failed(self, err):
        """Record a failure; return how long to wait (exponential, jittered)."""
        with self._lock:
            self._failures += 1
            s = self._stats
            first = s["failing_since_ms"] is None
            if first:
                s["failing_since_ms"] = now_ms()
            s["last_error"] = str(err)
            n = self._failures
        delay = min(self.cfg["backoff_max_s"], _BACKOFF_FIRST_S * 2 ** min(n - 1, 30))
        delay = random.uniform(delay / 2, delay)      # halls do not retry in lockstep
        (log.warning if first or n % 10 == 0 else log.info)(
            "uplink failure %d: %s; retry in %.1f s", n, err, delay)
        return delay

    # -- observability ------------------------------------------------------

    def state(self):
        """pending, oldest_unsynced_age_s, last_ok_ms, failing_since_ms,
        batches_sent, last_error (+ events_synced, conflicts, invalid, held)."""
        with self._lock:
            out = dict(self._stats)
        out.update(pending=None, oldest_unsynced_age_s=None, held=None)
        try:
            db = _open(self.db_path, 5)
            try:
                n, oldest = db.execute("SELECT count(*), min(received_ms) FROM events "
                                       "WHERE synced_ms IS NULL").fetchone()
                out["pending"] = n
                if oldest is not None:
                    out["oldest_unsynced_age_s"] = max(0.0, (now_ms() - oldest) / 1000)
                try:
                    out["held"] = db.execute("SELECT count(*) FROM uplink_rejects WHERE status = 'invalid'"
                                             ).fetchone()[0]
                except sqlite3.OperationalError:
                    out["held"] = 0        # the uplink has not run yet
            finally:
                db.close()
        except sqlite3.Error as e:
            out["store_error"] = str(e)
        return out
