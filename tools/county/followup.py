"""Follow-up work as a workflow: every 差评 (bad rating) is verified, called
back, rectified and answered (or appealed as mistaken or malicious, which
the county must approve), and the citizen may rate again (追评); every 办不成事
report goes 受理, 研判, 交办, 办结, 评价. One machine for both.

A matter's history is its steps, appended with who, when and a note and
never changed; its state is its last step. Each state may have a deadline
in working days (the profile's `workflows`), counted from the day the
matter entered it by the calendar's rule (workdays.py): overdue once more
working days have passed than allowed.

差评 are opened from the ratings themselves (sync()): a device's rating
event, or a rating taken by QR link, whose level is 不满意 or 非常不满意.
"""
import datetime
import json
import re

from tools.county import tables
from tools.county.report import BAD

WORKFLOWS = {
    "bad_rating": {
        "first": "pending",
        "states": {"pending": "待核实", "appealed": "申诉", "appeal_upheld": "申诉通过", "rectifying": "整改中",
                   "rectified": "已整改", "answered": "已反馈", "followed_up": "追评"},
        "next": {"pending": ("rectifying", "appealed"), "appealed": ("appeal_upheld", "rectifying"),
                 "rectifying": ("rectified",), "rectified": ("answered",), "answered": ("followed_up",)},
    },
    "cannot_do": {
        "first": "received",
        "states": {"received": "受理", "assessing": "研判", "assigned": "交办", "done": "办结", "rated": "评价"},
        "next": {"received": ("assessing",), "assessing": ("assigned",), "assigned": ("done",), "done": ("rated",)},
    },
}
# An appeal (申诉) is decided by the county, not by the hall that made it.
COUNTY_ONLY = {("appealed", "appeal_upheld"), ("appealed", "rectifying")}
# A step that carries the citizen's new rating.
RATED = ("followed_up", "rated")
ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")
MAX_NOTE = 2000
_COLS = ("id", "workflow", "opened", "opened_ms", "level", "window", "staff", "item", "case", "reasons", "note")
_STEP_COLS = ("n", "state", "who", "at_ms", "date", "note", "level")


class Refused(ValueError):
    """A step that cannot be taken; `status` 400, 403 or 404."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def sync(store, rules, hall):
    """Open a 差评 follow-up for every bad first rating of the hall that has none yet."""
    with tables.read(store) as db:
        got = tables.rows(db, store, 'SELECT e.device, e.seq, e.t, e.received_ms, e.level, e."window", e.staff, '
                                     'e.item, e."case", e.body FROM events e WHERE e.hall = ? AND e.kind = \'rating\' '
                                     "AND e.level IN ('dissatisfied', 'very_dissatisfied') AND NOT EXISTS "
                                     "(SELECT 1 FROM followups f WHERE f.hall = e.hall AND f.id = "
                                     "'r:' || e.device || ':' || e.seq)", (hall,))
        qr = tables.rows(db, store, 'SELECT c.kind, c.ref, c.t, c.t, c.level, c."window", c.staff, c.item, c."case", '
                                    "c.reasons FROM county_ratings c WHERE c.hall = ? AND c.n = 1 "
                                    "AND c.level IN ('dissatisfied', 'very_dissatisfied') AND NOT EXISTS "
                                    "(SELECT 1 FROM followups f WHERE f.hall = c.hall AND f.id = "
                                    "'q:' || c.kind || ':' || c.ref)", (hall,))
    new = []
    for device, seq, t, received, level, window, staff, item, case, body in got:
        new.append(("r:%s:%d" % (device, seq), t or received, level, window, staff, item, case,
                    json.loads(body).get("reasons") or []))
    for kind, ref, t, _, level, window, staff, item, case, reasons in qr:
        new.append(("q:%s:%s" % (kind, ref), t, level, window, staff, item, case, json.loads(reasons)))
    if not new:
        return 0
    with tables.write(store) as db:
        for fid, ms, level, window, staff, item, case, reasons in new:
            day = _day(ms, rules)
            cur = db.execute(tables.q(store, 'INSERT INTO followups (hall, id, workflow, opened, opened_ms, level, '
                                             '"window", staff, item, "case", reasons, note) VALUES '
                                             "(?, ?, 'bad_rating', ?, ?, ?, ?, ?, ?, ?, ?, NULL) "
                                             "ON CONFLICT (hall, id) DO NOTHING RETURNING id"),
                             (hall, fid, day, ms, level, window, staff, item, case, json.dumps(reasons)))
            if cur.fetchone() is not None:
                _append(db, store, hall, fid, 1, "pending", "system", ms, day, "差评 opened", None)
    return len(new)


def open_report(store, rules, hall, fid, who, note, now_ms, item=None, window=None):
    """A 办不成事 report (受理): opened by the hall manager or the county. Returns False if the id exists."""
    if not ID.match(fid or ""):
        raise Refused(400, "id must be 1-100 of A-Za-z0-9_.:-")
    day = rules.today().isoformat()
    with tables.write(store) as db:
        cur = db.execute(tables.q(store, 'INSERT INTO followups (hall, id, workflow, opened, opened_ms, level, '
                                         '"window", staff, item, "case", reasons, note) VALUES '
                                         "(?, ?, 'cannot_do', ?, ?, NULL, ?, NULL, ?, NULL, '[]', ?) "
                                         "ON CONFLICT (hall, id) DO NOTHING RETURNING id"),
                         (hall, fid, day, now_ms, window, item, note))
        if cur.fetchone() is None:
            return False
        _append(db, store, hall, fid, 1, "received", who, now_ms, day, note, None)
    return True


def step(store, rules, hall, fid, to, who, note, county, now_ms, level=None):
    """Append the step to state `to`; `county`: the actor holds the county's authority."""
    if not who or len(who) > 64 or any(ord(c) < 32 for c in who):
        raise Refused(400, "who: the name of the person taking the step, 1-64 characters")
    if type(note) is not str or not note.strip() or len(note) > MAX_NOTE:
        raise Refused(400, "note: what was done, 1-%d characters" % MAX_NOTE)
    with tables.write(store) as db:
        matter = _matter(db, store, hall, fid)
        flow = WORKFLOWS[matter["workflow"]]
        last = matter["steps"][-1]
        if to not in flow["next"].get(last["state"], ()):
            raise Refused(400, "%s (%s) cannot go to %s; next: %s" % (
                fid, last["state"], to, ", ".join(flow["next"].get(last["state"], ())) or "nothing (closed)"))
        if (last["state"], to) in COUNTY_ONLY and not county:
            raise Refused(403, "an appeal (申诉) is decided by the county: needs the county token")
        if to in RATED:
            if level not in ("very_satisfied", "satisfied", "basically_satisfied", "dissatisfied",
                             "very_dissatisfied"):
                raise Refused(400, "level: the citizen's rating (one of the five level names) is required for %s" % to)
        else:
            level = None
        _append(db, store, hall, fid, last["n"] + 1, to, who, now_ms, rules.today().isoformat(), note, level)


def _append(db, store, hall, fid, n, state, who, at_ms, day, note, level):
    db.execute(tables.q(store, "INSERT INTO followup_steps (hall, id, n, state, who, at_ms, date, note, level) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"), (hall, fid, n, state, who, at_ms, day, note or "",
                                                                     level))


def _matter(db, store, hall, fid):
    row = tables.rows(db, store, "SELECT %s FROM followups WHERE hall = ? AND id = ?" % _cols(), (hall, fid))
    if not row:
        raise Refused(404, "no follow-up %s in hall %s" % (fid, hall))
    m = dict(zip(_COLS, row[0]))
    m["reasons"] = json.loads(m["reasons"])
    m["steps"] = [dict(zip(_STEP_COLS, r)) for r in tables.rows(
        db, store, "SELECT %s FROM followup_steps WHERE hall = ? AND id = ? ORDER BY n"
        % ", ".join(_STEP_COLS), (hall, fid))]
    return m


def _cols():
    return ", ".join('"%s"' % c for c in _COLS)


def _day(ms, rules):
    return datetime.datetime.fromtimestamp(ms / 1000, rules.zone).date().isoformat()


def view(m, rules, today):
    """A matter as the lists show it: state, since when, its deadline and the overdue flag."""
    flow = WORKFLOWS[m["workflow"]]
    last = m["steps"][-1]
    entered = datetime.date.fromisoformat(last["date"])
    days = rules.deadline_days(m["workflow"], last["state"])
    deadline = overdue = None
    if days is not None:
        deadline = rules.calendar.add(entered, days).isoformat()
        overdue = rules.calendar.overdue(entered, days, today)
    out = {k: m[k] for k in _COLS if k != "opened_ms"}
    out.update(state=last["state"], state_zh=flow["states"][last["state"]], since=last["date"],
               deadline=deadline, overdue=bool(overdue), closed=last["state"] not in flow["next"])
    return out


def show(store, rules, hall, fid, today):
    sync(store, rules, hall)
    with tables.read(store) as db:
        m = _matter(db, store, hall, fid)
    out = view(m, rules, today)
    out["steps"] = m["steps"]
    return out


def listing(store, rules, hall, today, workflow=None, state=None, overdue=None, opened=None):
    """The hall's follow-ups, oldest first; `opened`: (first day, day after) to keep."""
    sync(store, rules, hall)
    with tables.read(store) as db:
        ids = [r[0] for r in tables.rows(db, store, "SELECT id FROM followups WHERE hall = ? ORDER BY opened_ms, id",
                                         (hall,))]
        matters = [_matter(db, store, hall, i) for i in ids]
    out = []
    for m in matters:
        if workflow and m["workflow"] != workflow:
            continue
        if opened and not opened[0].isoformat() <= m["opened"] < opened[1].isoformat():
            continue
        v = view(m, rules, today)
        if (state and v["state"] != state) or (overdue is not None and v["overdue"] != overdue):
            continue
        v["steps"] = m["steps"]
        out.append(v)
    return out


def is_bad(level):
    return level in BAD
