"""The hall's uplink: unsynced events from the agent's store to the county.

    up = Uplink("agent.db", {"url": "https://county.example", "token": "..."}, hall="h1")
    threading.Thread(target=up.run, args=(stop,)).start()

Delivery (SPEC.md, delivery semantics 4):
- Oldest unsynced rows first, batches bounded by event count and bytes,
  sent by the county client (edge_agent/county_client.py).
- A batch's id and members are committed to `uplink_batches` before the
  first POST; every resend of those rows, also after an agent restart,
  carries the same id.
- Up to `in_flight` batches are at the county at once, each on a kept-alive
  connection of its own (the agent builds and applies batches while the
  county stores others); answers are applied in send order. A failure
  sends nothing new: the batches still out are answered (or fail) first,
  then the backoff. Batches left open by a restart go first, one at a
  time, and new ones only once they are answered.
- A row gets synced_ms only once the county answered `stored` or
  `duplicate` for it. `conflict` rows are marked too (the county keeps both
  versions; resending cannot help) but logged as errors and recorded in
  `uplink_rejects`. `invalid` rows stay unsynced, recorded there and held
  back for `retry_invalid_s`, so a county upgrade picks them up later.
- Any failure (network, TLS, HTTP status, a garbled answer, a busy store)
  is an UplinkError handled in one place: exponential backoff with jitter.
- Plain http:// sends the hall's token and events readable by anyone on
  the way: refused unless `allow_plain_http` says so (edge_agent/config.py).
- Retention deletes only synced rows older than `retention_days`.
"""
import collections
import concurrent.futures
import json
import logging
import secrets
import sqlite3
import threading
import time

from protocol.compact import dumps
from edge_agent import config
from edge_agent.backoff import Backoff
from edge_agent.county_client import BatchTooLarge, County, UplinkError
from edge_agent.store import Store, now_ms

log = logging.getLogger("edge_agent.uplink")

_PURGE_EVERY_S = 3600
_PURGE_CHUNK = 5000               # rows per delete transaction: ingest keeps its turn
_ENVELOPE = 160                   # bytes of the batch object around its events


def open_store(db_path, timeout_s=30.0):
    """The uplink's own connection, for its own thread. The store must exist:
    the agent's store creates it (with its mode and migrations). A lost
    synced mark after a power cut only means a duplicate at the county;
    marking rows synced walks the (device, seq) index: 32 MB keeps it in
    memory on a Pi."""
    return Store(db_path, create=False, synchronous="NORMAL", timeout_s=timeout_s, cache_kib=32768)


class Uplink:
    def __init__(self, db_path, cfg, hall, retention_days=None):
        """`cfg`: the config's [uplink] table (a partial one gets the defaults);
        `retention_days`: [store] retention_days (its default when None)."""
        self.db_path = str(db_path)
        self.cfg = config.uplink(cfg)
        self.hall = hall
        self.retention_days = (config.section("store")["retention_days"] if retention_days is None
                               else retention_days)
        self._lock = threading.Lock()
        self._stats = {"batches_sent": 0, "events_synced": 0, "conflicts": 0, "invalid": 0}
        self.health = Backoff("uplink", log, self.cfg["backoff_max_s"])
        self._cursor = 0           # rowid up to which unsynced rows were already batched
        self._max_events = int(self.cfg["batch_max_events"])   # halved on each 413, kept until restart
        self._flying = collections.deque()   # (future, county, batch, rows) in send order
        self._mine = set()                   # batches this run opened (their rows are behind the cursor)
        self._error = None                   # the first failure while others were still out
        self._wake = threading.Event()       # set by poke(): events were committed

    # -- the thread -------------------------------------------------------

    def run(self, stop):
        """Thread target: sync until `stop` is set. Never raises on county or
        store trouble; it logs, backs off and tries again."""
        counties = []
        store = None
        pool = None
        next_purge = 0.0
        try:
            while not stop.is_set():
                try:
                    if store is None:
                        store = open_store(self.db_path)
                    if not counties:
                        counties = [County(self.cfg["url"], self.cfg["token"], self.hall,
                                           self.cfg["timeout_s"], self.cfg["ca_file"])
                                    for _ in range(self.cfg["in_flight"])]
                    if len(counties) == 1:
                        sent = self.sync_once(store, counties[0])
                    else:
                        if pool is None:
                            pool = concurrent.futures.ThreadPoolExecutor(len(counties), "uplink-post")
                        sent = self.sync_window(store, pool, counties)
                    if time.monotonic() >= next_purge:
                        self.purge(store)
                        next_purge = time.monotonic() + _PURGE_EVERY_S
                except sqlite3.Error as e:
                    stop.wait(self.health.failed(UplinkError("agent store: %s" % e)))
                    continue
                except UplinkError as e:
                    stop.wait(self.health.failed(e))
                    continue
                except Exception as e:          # a bug must not end the thread silently
                    log.exception("uplink: unexpected error")
                    stop.wait(self.health.failed(UplinkError("unexpected: %r" % e)))
                    continue
                if not sent:                      # after a batch, look again at once
                    # Idle: until the committer stores new events (poke), or
                    # interval_s. Without the poke a press waited up to
                    # interval_s for its batch (BENCHMARKS.md, press to county).
                    self._wake.wait(self.cfg["interval_s"])
                    self._wake.clear()
        finally:
            if pool is not None:
                # Batches still out stay open and go again, same ids, at the next start.
                pool.shutdown(wait=True, cancel_futures=True)
            for county in counties:
                county.close()
            if store is not None:
                store.close()

    def sync_window(self, store, pool, counties):
        """Keep up to len(counties) batches at the county, then apply the
        oldest one's answer. Returns the number of events in it; 0 when all
        is synced. Raises the first failure once no batch is out any more."""
        flying = self._flying
        while self._error is None and len(flying) < len(counties):
            if any(f[2] not in self._mine for f in flying):
                break                    # a batch from before a restart goes alone (its rows may come again)
            batch, rows = self._pending(store, skip={f[2] for f in flying})
            if batch is None:
                batch, rows = self._new_batch(store, restart=not flying)
            elif batch not in self._mine and flying:
                break
            if not rows:
                break
            busy = {f[1] for f in flying}
            county = next(c for c in counties if c not in busy)
            store.uplink.count_post(batch)
            flying.append((pool.submit(county.post, self._payload(batch, rows)), county, batch, rows))
        while flying:
            future, county, batch, rows = flying.popleft()
            try:
                answer = future.result()
            except UplinkError as e:
                if isinstance(e, BatchTooLarge):
                    self._too_large(store, batch, rows)
                self._error = self._error or e
                continue
            self._apply(store, batch, rows, answer)
            self._mine.discard(batch)
            return len(rows)
        error, self._error = self._error, None
        if error is not None:
            raise error
        return 0

    def sync_once(self, store, county):
        """Send one batch (the pending one first) and apply the answer.
        Returns the number of events in it; 0 when all is synced."""
        batch, rows = self._pending(store)
        if batch is None:
            batch, rows = self._new_batch(store)
        if not rows:
            return 0
        store.uplink.count_post(batch)
        try:
            answer = county.post(self._payload(batch, rows))
        except BatchTooLarge:
            self._too_large(store, batch, rows)
            raise
        self._apply(store, batch, rows, answer)
        return len(rows)

    def _payload(self, batch, rows):
        return ('{"batch":%s,"hall":%s,"events":[%s]}' % (
            json.dumps(batch), json.dumps(self.hall), ",".join(r[3] for r in rows))).encode()

    def _too_large(self, store, batch, rows):
        # Nothing was stored; these rows go again in smaller batches with new ids.
        store.uplink.drop_batch(batch)
        self._mine.discard(batch)
        self._cursor = 0
        self._max_events = max(1, min(self._max_events, len(rows) // 2))
        log.warning("county refused a batch of %d events as too large; sending at most %d from now on",
                    len(rows), self._max_events)

    def purge(self, store):
        days = self.retention_days
        if not days or days <= 0:
            return 0
        n = store.events.purge_synced(now_ms() - int(days * 86400000), _PURGE_CHUNK)
        if n:
            log.info("retention: deleted %d synced events older than %s days", n, days)
        return n

    # -- batches ----------------------------------------------------------

    def _pending(self, store, skip=()):
        pending = store.uplink.pending_batch(skip)
        if pending is None:
            return None, []
        batch, members = pending
        rows = []
        for device, seq in members:
            r = store.events.unsynced(device, seq)
            if r is not None:
                rows.append((r[0], device, seq, self._item(device, seq, r[1])))
        if not rows:
            store.uplink.drop_batch(batch)
            return None, []
        return batch, rows

    def _new_batch(self, store, restart=True):
        """`restart`: may start over behind the cursor (not while batches are out:
        their rows are there, unsynced)."""
        now = now_ms()
        held = store.uplink.held(now)
        rows = self._take(store, held)
        if not rows and self._cursor and restart:
            # Rows left behind the cursor (unanswered, released from hold): start over once.
            self._cursor = 0
            rows = self._take(store, held)
        if not rows:
            return None, []
        batch = "%x-%s" % (now, secrets.token_hex(6))
        store.uplink.open_batch(batch, now, [[r[1], r[2]] for r in rows])
        self._mine.add(batch)
        self._cursor = rows[-1][0]
        return batch, rows

    def _take(self, store, held):
        budget = self.cfg["batch_max_bytes"] - _ENVELOPE
        rows = []
        cur = store.events.unsynced_after(self._cursor, self._max_events + len(held))
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
        return '{"device":%s,"seq":%d,"body":%s}' % (dumps(device), seq, dumps(body))

    def _apply(self, store, batch, rows, answer):
        now = now_ms()
        results = {}
        for r in answer["results"]:
            if type(r) is dict:
                results[(r.get("device"), r.get("seq"))] = r
        synced, counts = [], {}
        with store.atomic():
            for rowid, device, seq, item in rows:
                r = results.get((device, seq)) or {}
                status = r.get("status")
                counts[status] = counts.get(status, 0) + 1
                if status in ("stored", "duplicate", "conflict"):
                    synced.append((device, seq))
                if status in ("conflict", "invalid"):
                    self._reject(store, device, seq, status, r.get("reason"), item, now)
            store.events.mark_synced(synced, now)
            store.uplink.drop_batch(batch)
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
        self.health.ok(now)
        log.debug("batch %s: %s", batch, counts)

    def _reject(self, store, device, seq, status, reason, item, now):
        if status == "conflict":
            log.error("CONFLICT at the county for %s seq %d: the county holds a different event under this "
                      "(device, seq); kept in uplink_rejects, not resent", device, seq)
        else:
            log.error("county refused %s seq %d as invalid (%s); held, retried in %ds",
                      device, seq, reason, self.cfg["retry_invalid_s"])
        retry = now + int(self.cfg["retry_invalid_s"] * 1000) if status == "invalid" else None
        store.uplink.reject(device, seq, status, reason, json.loads(item)["body"], now, retry)

    # -- observability ------------------------------------------------------

    def poke(self):
        """New events are committed: send them now, not after interval_s.
        Also wakes the thread to see its stop."""
        self._wake.set()

    def state(self):
        """pending, oldest_unsynced_age_s, last_ok_ms, failing_since_ms,
        batches_sent, last_error (+ events_synced, conflicts, invalid, held)."""
        with self._lock:
            out = dict(self._stats)
        out.update(self.health.state())
        out.update(pending=None, oldest_unsynced_age_s=None, held=None)
        try:
            store = open_store(self.db_path, 5)
            try:
                n, oldest = store.events.backlog()
                out["pending"] = n
                if oldest is not None:
                    out["oldest_unsynced_age_s"] = max(0.0, (now_ms() - oldest) / 1000)
                out["held"] = store.uplink.invalid_count()
            finally:
                store.close()
        except sqlite3.Error as e:
            out["store_error"] = str(e)
        return out
