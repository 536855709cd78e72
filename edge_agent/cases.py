"""The county's cases of this hall, cached for the kiosks (tools/county/API.md,
'Cases'): the agent asks `GET /v1/halls/<hall>/cases?since=<cursor>` every
[kiosk] cases_poll_s with the uplink's url, token and CA, and the day's
红黄牌 counts from `GET /v1/halls/<hall>/cards` for the lobby screen.

    cache = CaseCache(db_path, cfg["uplink"], cfg["kiosk"], hall)
    threading.Thread(target=cache.run, args=(stop,)).start()

Offline-safe: the cache keeps answering from the store; `cases_ok_ms` (in
the store's meta) says when the county last answered, and past [kiosk]
cases_fresh_s the kiosk hears `offline`, never an old state as current
(edge_agent/kiosk.py). A failure backs off as the uplink does.

The county is not trusted to be well-formed: every value is checked where it
enters, by what a slip and a kiosk screen can carry (short printable text,
the known states and lights, real dates, an http(s) link of printable
ASCII). A case that fails is not cached, its older row is dropped (an old
state must not pass for the county's latest), and it is counted
(`cases_refused:<field>`); the rest of the answer is taken. An answer that
is not the documented object is a failure like a network error.
"""
import collections
import datetime
import json
import logging
import random
import re
import sqlite3
import threading
import urllib.parse

from protocol import check_field
from protocol.errors import ProtocolError
from edge_agent.county_client import County, UplinkError
from edge_agent.store import Store, now_ms

log = logging.getLogger("edge_agent.cases")

STATES = ("accepted", "in_review", "suspended", "completed", "ready")
LIGHTS = ("green", "yellow", "red")
MAX_URL = 256
MAX_CARD = 1000000               # open cases of one hall by light: far above any real count
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ASCII = re.compile(r"^[!-~]+$")  # printable ASCII, no spaces
_BACKOFF_FIRST_S = 1.0


class CaseRefused(ValueError):
    """One case from the county that cannot be taken; `field` names why."""

    def __init__(self, field):
        super().__init__(field)
        self.field = field


def _text(name, value):
    # The protocol's rule for short text, then what a printer and a screen need:
    # printable characters only (no bidi overrides, no unassigned code points).
    try:
        check_field("rating", "case", value)
        value.encode("gb18030")
    except (ProtocolError, UnicodeError):
        raise CaseRefused(name)
    if not value.isprintable() or value.strip() != value:
        raise CaseRefused(name)
    return value


def _day(name, value, optional=False):
    if value is None and optional:
        return None
    if type(value) is not str or not _DATE.match(value):
        raise CaseRefused(name)
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise CaseRefused(name)
    if not 2000 <= day.year <= 2199:
        raise CaseRefused(name)
    return value


def check_url(value):
    """A rating link for a QR code: http(s), a host, printable ASCII, at most MAX_URL."""
    if type(value) is not str or not 0 < len(value) <= MAX_URL or not _ASCII.match(value):
        raise CaseRefused("rate_url")
    try:
        parts = urllib.parse.urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise CaseRefused("rate_url")
    if parts.scheme not in ("https", "http") or not host:
        raise CaseRefused("rate_url")
    return value


def check_case(c):
    """One item of the county's `cases` list -> the row to cache; CaseRefused."""
    if type(c) is not dict:
        raise CaseRefused("not_an_object")
    out = {"case": _text("case", c.get("case")), "item": _text("item", c.get("item")),
           "item_name": _text("item_name", c.get("item_name"))}
    if c.get("state") not in STATES or type(c.get("state")) is not str:
        raise CaseRefused("state")
    out["state"] = c["state"]
    out["accepted"] = _day("accepted", c.get("accepted"))
    out["promised"] = _day("promised", c.get("promised"), optional=True)
    light = c.get("light")
    if light is not None and (type(light) is not str or light not in LIGHTS):
        raise CaseRefused("light")
    out["light"] = light
    out["rate_url"] = check_url(c.get("rate_url"))
    return out


def check_cards(a):
    """The county's cards answer -> {date, green, yellow, red}; CaseRefused."""
    if type(a) is not dict:
        raise CaseRefused("cards")
    out = {"date": _day("cards", a.get("date"))}
    for light in LIGHTS:
        n = a.get(light)
        if type(n) is not int or not 0 <= n <= MAX_CARD:
            raise CaseRefused("cards")
        out[light] = n
    return out


def _case_id(c):
    # The id of a refused case, when it is one we could have cached.
    try:
        return _text("case", c.get("case")) if type(c) is dict else None
    except CaseRefused:
        return None


class CaseCache:
    def __init__(self, db_path, uplink_cfg, kiosk_cfg, hall):
        self.db_path, self.up, self.kiosk, self.hall = str(db_path), uplink_cfg, kiosk_cfg, hall
        self._lock = threading.Lock()
        self._stats = {"last_ok_ms": None, "failing_since_ms": None, "last_error": None, "polls": 0}
        self._failures = 0

    def run(self, stop):
        """Thread target: poll until `stop` is set; never raises."""
        store = county = None
        try:
            while not stop.is_set():
                try:
                    if store is None:
                        store = Store(self.db_path, create=False)
                    if county is None:
                        county = County(self.up["url"], self.up["token"], self.hall, self.up["timeout_s"],
                                        self.up["ca_file"])
                    self.poll(store, county)
                    wait = self.kiosk["cases_poll_s"]
                except sqlite3.Error as e:
                    wait = self._failed(UplinkError("agent store: %s" % e))
                except UplinkError as e:
                    wait = self._failed(e)
                except Exception as e:          # a bug must not end the thread silently
                    log.exception("cases: unexpected error")
                    wait = self._failed(UplinkError("unexpected: %r" % e))
                stop.wait(wait)
        finally:
            if county is not None:
                county.close()
            if store is not None:
                store.close()

    def poll(self, store, county):
        """One round: the cases changed since the cursor, then the cards.
        Returns {field: count} of the cases refused."""
        cursor = store.meta("cases_cursor")
        answer = county.get("cases", {"since": cursor} if cursor else None)
        cases, new_cursor = answer.get("cases"), answer.get("cursor")
        if type(cases) is not list:
            raise UplinkError("county cases answer unreadable: no cases list")
        if type(new_cursor) is not str or not 0 < len(new_cursor) <= 64 or not _ASCII.match(new_cursor):
            raise UplinkError("county cases answer unreadable: cursor must be 1-64 printable ASCII characters")
        try:
            cards = check_cards(county.get("cards"))
        except (UplinkError, CaseRefused) as e:     # the cases still count; the screen hides old cards
            log.warning("county cards not taken: %s", e)
            cards = None
        now = now_ms()
        refused = collections.Counter()
        with store.atomic():
            for c in cases:
                try:
                    store.cases.put(check_case(c), now)
                except CaseRefused as e:
                    refused[e.field] += 1
                    bad = _case_id(c)
                    if bad is not None:
                        store.cases.forget(bad)
            store.set_meta("cases_cursor", new_cursor)
            store.set_meta("cases_ok_ms", now)
            if cards is not None:
                store.set_meta("cards", json.dumps(dict(cards, as_of_ms=now)))
            store.bump_all({"cases_refused:" + f: n for f, n in refused.items()})
            store.cases.purge(now - self.kiosk["cases_keep_days"] * 86400000)
        if refused:
            log.error("county sent %d case(s) that cannot be shown or printed (%s); not cached",
                      sum(refused.values()), ", ".join("%s %d" % kv for kv in sorted(refused.items())))
        with self._lock:
            if self._stats["failing_since_ms"]:
                log.info("county cases reachable again")
            self._stats.update(last_ok_ms=now, failing_since_ms=None, last_error=None)
            self._stats["polls"] += 1
            self._failures = 0
        return dict(refused)

    def _failed(self, err):
        with self._lock:
            self._failures += 1
            s = self._stats
            first = s["failing_since_ms"] is None
            if first:
                s["failing_since_ms"] = now_ms()
            s["last_error"] = str(err)
            n = self._failures
        delay = min(self.up["backoff_max_s"], self.kiosk["cases_poll_s"], _BACKOFF_FIRST_S * 2 ** min(n - 1, 30))
        delay = random.uniform(delay / 2, delay)
        (log.warning if first or n % 10 == 0 else log.info)("cases poll failure %d: %s; retry in %.1f s",
                                                            n, err, delay)
        return delay

    def state(self):
        with self._lock:
            return dict(self._stats)


def cached_as_of(store):
    """When the county last answered for the cache (ms), or None."""
    v = store.meta("cases_ok_ms")
    return int(v) if v else None


def cards(store):
    """The last 红黄牌 counts taken, with their as_of_ms, or None."""
    v = store.meta("cards")
    return json.loads(v) if v else None

