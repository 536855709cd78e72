"""The county's cases of this hall, cached for the kiosks (tools/county/API.md,
'Cases'): the agent asks `GET /v1/halls/<hall>/cases?since=<cursor>` every
[kiosk] cases_poll_s with the uplink's url, token and CA, and the day's
红黄牌 counts from `GET /v1/halls/<hall>/cards` for the lobby screen.
While the hall has no key for its tickets' rating links ([queue] link_key
unset, none taken yet) it also asks `GET /v1/halls/<hall>/link-key`,
hourly until the county has one: what the kiosks read of the county comes
through this one thread, its connection and its backoff.

    cache = CaseCache(db_path, cfg["uplink"], cfg["kiosk"], hall, on_link_key=took)
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
import re
import sqlite3
import time
import urllib.parse

from protocol import check_field
from protocol.errors import ProtocolError
from edge_agent.backoff import Backoff
from edge_agent.county_client import County, UplinkError
from edge_agent.store import Store, now_ms

log = logging.getLogger("edge_agent.cases")

STATES = ("accepted", "in_review", "suspended", "completed", "ready")
LIGHTS = ("green", "yellow", "red")
MAX_URL = 256
MAX_CARD = 1000000               # open cases of one hall by light: far above any real count
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ASCII = re.compile(r"^[!-~]+$")  # printable ASCII, no spaces
LINK_KEY_EVERY_S = 3600          # a county without a link secret is asked again this often


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
    name = c.get("item_name")       # absent or null: a county that does not know it
    out = {"case": _text("case", c.get("case")), "item": _text("item", c.get("item")),
           "item_name": None if name is None else _text("item_name", name)}
    if c.get("state") not in STATES or type(c.get("state")) is not str:
        raise CaseRefused("state")
    out["state"] = c["state"]
    out["accepted"] = _day("accepted", c.get("accepted"))
    out["promised"] = _day("promised", c.get("promised"), optional=True)
    light = c.get("light")
    if light is not None and (type(light) is not str or light not in LIGHTS):
        raise CaseRefused("light")
    out["light"] = light
    url = c.get("rate_url")         # null: the county has no link secret; the slip has no QR code
    out["rate_url"] = None if url is None else check_url(url)
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


def check_link_key(answer, url):
    """The county's link-key answer -> (32-byte key, base URL of the rating
    links; the county's `url` when it names none); CaseRefused."""
    try:
        key = bytes.fromhex(answer.get("key"))
    except (TypeError, ValueError):
        raise CaseRefused("link_key")
    if len(key) != 32:
        raise CaseRefused("link_key")
    base = answer.get("base") or url
    try:
        return key, check_url(base)
    except CaseRefused:
        raise CaseRefused("link_base")


class CaseCache:
    def __init__(self, db_path, uplink_cfg, kiosk_cfg, hall, on_link_key=None):
        """`on_link_key(key, base)`: the hall wants the county's link key
        (None: it has one); called once, when it is taken and stored."""
        self.db_path, self.up, self.kiosk, self.hall = str(db_path), uplink_cfg, kiosk_cfg, hall
        self.on_link_key = on_link_key
        self._link_key_due = 0.0        # monotonic
        self.health = Backoff("cases poll", log, min(uplink_cfg["backoff_max_s"], kiosk_cfg["cases_poll_s"]))
        self._polls = 0

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
                    self.take_link_key(store, county)
                    wait = self.kiosk["cases_poll_s"]
                except sqlite3.Error as e:
                    wait = self.health.failed(UplinkError("agent store: %s" % e))
                except UplinkError as e:
                    wait = self.health.failed(e)
                except Exception as e:          # a bug must not end the thread silently
                    log.exception("cases: unexpected error")
                    wait = self.health.failed(UplinkError("unexpected: %r" % e))
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
        self._polls += 1
        self.health.ok(now)
        return dict(refused)

    def take_link_key(self, store, county):
        """Ask the county for the hall's link key while on_link_key wants it,
        at most every LINK_KEY_EVERY_S: kept in the store's meta, then handed
        over. A county without one (404) or a key that is not one is no
        failure of the cases: tickets go without rate_url meanwhile."""
        if self.on_link_key is None or time.monotonic() < self._link_key_due:
            return
        self._link_key_due = time.monotonic() + LINK_KEY_EVERY_S
        try:
            key, base = check_link_key(county.get("link-key"), self.up["url"])
        except (UplinkError, CaseRefused) as e:
            log.info("no link key from the county yet (%s): tickets go without rate_url", e)
            return
        with store.atomic():
            store.set_meta("link_key", key.hex())
            store.set_meta("link_base", base)
        took, self.on_link_key = self.on_link_key, None
        took(key, base)

    def state(self):
        return dict(self.health.state(), polls=self._polls)


def cached_as_of(store):
    """When the county last answered for the cache (ms), or None."""
    v = store.meta("cases_ok_ms")
    return int(v) if v else None


def cards(store):
    """The last 红黄牌 counts taken, with their as_of_ms, or None."""
    v = store.meta("cards")
    return json.loads(v) if v else None

