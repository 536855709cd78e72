"""Cases (办件) and their 红黄牌 lights: business systems post what happens
to a case (accepted with its promised working days, in review, suspended,
resumed, completed, ready to collect); the county keeps the case as it
stands and answers each open case's light for a day:

- green within the promised time, yellow when `yellow_days_left` working
  days or fewer are left (the province profile), red once more working days
  have passed since acceptance than were promised (workdays.py's rule);
- suspended (挂起) working days do not count: they move the promised date;
- null once completed (or ready to collect).

Every accepted change bumps the county-wide revision `cases`; a hall's
cursor is "<day>.<revision>", so a hall that asks again the same day gets
only what changed, and on a new day every open case again (lights move
with the calendar, not only with events).
"""
import datetime
import json
import re

import protocol
from tools.county import links, tables
from tools.county.workdays import NoCalendar

TYPES = ("accepted", "in_review", "suspended", "resumed", "completed", "ready")
# Which states each event may follow (`None`: the case does not exist yet).
FROM = {
    "accepted": (None,),
    "in_review": ("accepted", "in_review"),
    "suspended": ("accepted", "in_review"),
    "resumed": ("suspended",),
    "completed": ("accepted", "in_review", "suspended"),
    "ready": ("completed",),
}
OPEN = ("accepted", "in_review", "suspended")
MAX_EVENTS = 1000
MAX_PROMISED_DAYS = 365
RECENT_DAYS = 30            # a first listing also gives cases closed this recently
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_CURSOR = re.compile(r"^(\d{8})\.(\d{1,18})$")
_COLS = ("case", "item", "item_name", "department", "window", "promised_days", "state", "accepted",
         "completed", "suspended_since", "suspended_days", "rev")


class Bad(ValueError):
    """The request is refused whole (HTTP 400); nothing was stored."""


def _text(name, value, required=False):
    if value is None and not required:
        return None
    if value is None:
        raise Bad("%s is required" % name)
    try:
        # The protocol's rule for short text (1-64 characters, no control characters).
        return protocol.check_field("rating", "case" if name == "case" else "item" if name == "item" else "window",
                                    value)
    except protocol.ProtocolError:
        raise Bad("%s must be text of 1-64 characters without control characters" % name)


def _date(name, value, calendar):
    if type(value) is not str or not _DATE.match(value):
        raise Bad("%s must be a date YYYY-MM-DD" % name)
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        raise Bad("%s: no such date %s" % (name, value))
    try:
        calendar.year(day.year)
    except NoCalendar as e:
        raise Bad(str(e))
    return day


def parse(doc, calendar, hall=None):
    """A POST body -> [(hall, event dict)], every field checked; Bad otherwise.
    `hall` is the URL's hall; on the county-wide path each event names its own."""
    if type(doc) is not dict or type(doc.get("events")) is not list:
        raise Bad("expected an object with an events list")
    if not 1 <= len(doc["events"]) <= MAX_EVENTS:
        raise Bad("1 to %d events per request" % MAX_EVENTS)
    out = []
    for i, ev in enumerate(doc["events"]):
        if type(ev) is not dict:
            raise Bad("event %d is not an object" % i)
        where = ev.get("hall", hall)
        if hall is not None and where != hall:
            raise Bad("event %d: hall differs from the URL" % i)
        if type(where) is not str or not protocol.topics.valid_id(where):
            raise Bad("event %d: hall must be a hall id (1-32 of A-Za-z0-9_-)" % i)
        if ev.get("type") not in TYPES:
            raise Bad("event %d: type must be one of %s" % (i, ", ".join(TYPES)))
        e = {"id": _text("id", ev.get("id"), True), "case": _text("case", ev.get("case"), True),
             "type": ev["type"], "date": _date("date", ev.get("date"), calendar)}
        if ev["type"] == "accepted":
            days = ev.get("promised_days")
            if type(days) is not int or not 1 <= days <= MAX_PROMISED_DAYS:
                raise Bad("event %d: promised_days must be a whole number of working days, 1-%d"
                          % (i, MAX_PROMISED_DAYS))
            e.update(item=_text("item", ev.get("item"), True), item_name=_text("item_name", ev.get("item_name")),
                     department=_text("department", ev.get("department")), window=_text("window", ev.get("window")),
                     promised_days=days)
            try:
                calendar.add(e["date"], days)       # the promised date must be in a known year
            except NoCalendar as err:
                raise Bad("event %d: the promised date falls in a year without a holiday schedule: %s" % (i, err))
        out.append((where, e))
    return out


def _body(e):
    return json.dumps({k: (v.isoformat() if isinstance(v, datetime.date) else v) for k, v in e.items()},
                      ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def post(store, calendar, events, now_ms):
    """Apply parsed events in order, in one transaction; one result each:
    stored, duplicate (the same id and body again), conflict (the same id,
    another body) or rejected (not possible in the case's state; `reason`)."""
    results = []
    with tables.write(store) as db:
        # One revision per request; its row lock makes revisions commit in order.
        rev = tables.rows(db, store, "UPDATE revisions SET value = value + 1 WHERE name = 'cases' RETURNING value")[0][0]
        for hall, e in events:
            results.append(dict(_apply(db, store, calendar, hall, e, rev, now_ms), case=e["case"], id=e["id"]))
    return results


def _apply(db, store, calendar, hall, e, rev, now_ms):
    body = _body(e)
    got = tables.rows(db, store, 'SELECT body FROM case_events WHERE hall = ? AND "case" = ? AND id = ?',
                      (hall, e["case"], e["id"]))
    if got:
        return {"status": "duplicate"} if got[0][0] == body else {"status": "conflict",
                                                                  "reason": "event id used with another body"}
    row = tables.rows(db, store, 'SELECT %s FROM cases WHERE hall = ? AND "case" = ?' % _cols(), (hall, e["case"]))
    case = dict(zip(_COLS, row[0])) if row else None
    state = case["state"] if case else None
    if state not in FROM[e["type"]]:
        return {"status": "rejected", "reason": "%s cannot follow %s" % (e["type"], state or "nothing (not accepted)")}
    day = e["date"]
    if case and day < datetime.date.fromisoformat(case["accepted"]):
        return {"status": "rejected", "reason": "dated before the case was accepted"}
    iso = day.isoformat()
    if e["type"] == "accepted":
        db.execute(tables.q(store, 'INSERT INTO cases (hall, "case", item, item_name, department, "window", '
                                   'promised_days, state, accepted, completed, suspended_since, suspended_days, '
                                   'rev, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, 0, ?, ?)'),
                   (hall, e["case"], e["item"], e["item_name"], e["department"], e["window"], e["promised_days"],
                    "accepted", iso, rev, now_ms))
    else:
        since, paused = case["suspended_since"], case["suspended_days"]
        if since and e["type"] in ("resumed", "completed"):
            paused += calendar.elapsed(datetime.date.fromisoformat(since), day)
            since = None
        if e["type"] == "suspended":
            since = iso
        new = {"resumed": "in_review"}.get(e["type"], e["type"])
        db.execute(tables.q(store, 'UPDATE cases SET state = ?, suspended_since = ?, suspended_days = ?, '
                                   'completed = COALESCE(completed, ?), rev = ?, updated_ms = ? '
                                   'WHERE hall = ? AND "case" = ?'),
                   (new, since, paused, iso if e["type"] == "completed" else None, rev, now_ms, hall, e["case"]))
    db.execute(tables.q(store, 'INSERT INTO case_events (hall, "case", id, type, date, body, received_ms) '
                               'VALUES (?, ?, ?, ?, ?, ?, ?)'), (hall, e["case"], e["id"], e["type"], iso, body, now_ms))
    return {"status": "stored"}


def _cols():
    return ", ".join('"%s"' % c for c in _COLS)


def clock(case, rules, today):
    """(promised date, light) of a case row on `today`."""
    calendar = rules.calendar
    accepted = datetime.date.fromisoformat(case["accepted"])
    paused = case["suspended_days"]
    end = today
    if case["completed"]:
        end = datetime.date.fromisoformat(case["completed"])
    if case["suspended_since"]:
        paused += calendar.elapsed(datetime.date.fromisoformat(case["suspended_since"]), end)
    promised = calendar.add(accepted, case["promised_days"] + paused)
    if case["state"] not in OPEN:
        return promised, None
    left = case["promised_days"] - (calendar.elapsed(accepted, today) - paused)
    if left < 0:
        return promised, "red"
    return promised, "yellow" if left <= rules.profile["cases"]["yellow_days_left"] else "green"


def late(case, rules):
    """Was a completed case finished after its promised time (超时办结)?"""
    if not case["completed"]:
        return False
    promised, _ = clock(case, rules, datetime.date.fromisoformat(case["completed"]))
    return datetime.date.fromisoformat(case["completed"]) > promised


def cursor_of(text):
    """A hall's cursor -> (day 'YYYYMMDD', revision), or Bad."""
    m = _CURSOR.match(text or "")
    if not m:
        raise Bad("since must be a cursor this server gave (or left out)")
    return m.group(1), int(m.group(2))


def listing(store, rules, hall, since, today, link):
    """GET /v1/halls/<hall>/cases: the cases that changed since the cursor
    (every open one on a new day), and the next cursor. `link(case)` -> its rating URL."""
    day = today.strftime("%Y%m%d")
    with tables.read(store) as db:
        now = tables.rows(db, store, "SELECT value FROM revisions WHERE name = 'cases'")[0][0]
        if since:
            seen_day, seen = cursor_of(since)
            where, args = "rev > ?", [seen]
            if seen_day != day:
                where += " OR state IN ('accepted', 'in_review', 'suspended')"
        else:
            recent = (today - datetime.timedelta(days=RECENT_DAYS)).isoformat()
            where, args = "state IN ('accepted', 'in_review', 'suspended') OR completed >= ?", [recent]
        got = tables.rows(db, store, 'SELECT %s FROM cases WHERE hall = ? AND (%s) ORDER BY rev, "case"'
                          % (_cols(), where), [hall] + args)
    out = []
    for row in got:
        case = dict(zip(_COLS, row))
        try:
            promised, light = clock(case, rules, today)
            promised = promised.isoformat()
        except NoCalendar:              # the promised date moved into a year not yet published
            promised = light = None
        out.append({"case": case["case"], "item": case["item"], "item_name": case["item_name"],
                    "state": case["state"], "accepted": case["accepted"], "promised": promised, "light": light,
                    "rate_url": link(case["case"])})
    return {"cases": out, "cursor": "%s.%d" % (day, now)}


def open_cases(store, hall):
    with tables.read(store) as db:
        got = tables.rows(db, store, "SELECT %s FROM cases WHERE hall = ? AND state IN ('accepted', 'in_review', "
                                     "'suspended')" % _cols(), (hall,))
    return [dict(zip(_COLS, r)) for r in got]


def cards(store, rules, hall, today):
    """Today's 红黄牌 counts for the lobby screen: open cases by light."""
    out = {"date": today.isoformat(), "green": 0, "yellow": 0, "red": 0}
    for case in open_cases(store, hall):
        try:
            _, light = clock(case, rules, today)
        except NoCalendar:
            continue
        out[light] += 1
    return out


def overdue(store, rules, hall, start, end, today):
    """超时 for the monthly report: cases still open and red on `today`, and
    cases completed in [start, end) after their promised date, grouped by
    department and window."""
    with tables.read(store) as db:
        got = tables.rows(db, store, "SELECT %s FROM cases WHERE hall = ? AND (state IN ('accepted', 'in_review', "
                                     "'suspended') OR (completed >= ? AND completed < ?))" % _cols(),
                          (hall, start.isoformat(), end.isoformat()))
    listed, groups = [], {}
    for row in got:
        case = dict(zip(_COLS, row))
        try:
            promised, light = clock(case, rules, today)
            if not (light == "red" or late(case, rules)):
                continue
        except NoCalendar:
            continue
        over = rules.calendar.elapsed(promised, datetime.date.fromisoformat(case["completed"]) if case["completed"]
                                else today)
        listed.append({"case": case["case"], "item": case["item"], "item_name": case["item_name"],
                       "department": case["department"], "window": case["window"], "state": case["state"],
                       "accepted": case["accepted"], "promised": promised.isoformat(),
                       "completed": case["completed"], "overdue_days": over})
        g = groups.setdefault((case["department"], case["window"]), {"department": case["department"],
                                                                    "window": case["window"], "open": 0, "late": 0})
        g["late" if case["completed"] else "open"] += 1
    listed.sort(key=lambda c: (c["department"] or "", c["window"] or "", c["accepted"], c["case"]))
    return {"groups": [groups[k] for k in sorted(groups, key=lambda k: (k[0] or "", k[1] or ""))], "cases": listed}


def rate_link(base, secret, hall):
    return lambda case: links.url(base, secret, hall, "case", case) if secret else None
