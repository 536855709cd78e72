"""The published 好差评 figures of a hall's month, by the national
definitions (GB/T 39734-2020 Annex B's indicators), computed here and
nowhere else. API.md, "Figures", writes out each formula.

What is rated is a *service*: a session that ended at a window or kiosk
(一次一评), or a case or ticket rated by QR link (一事一评). Every service
of the month is counted once, so no rate can pass 100 %:

  services  = sessions ended in the month, plus each first rating in the
              month of something that is not such a session (a QR rating
              of a case or ticket, a rating whose session ended earlier)
  active    = services with a first rating given by a person (any channel
              but `default`)                               (主动评价)
  defaulted = services rated only by the system default      (默认评价)

  主动评价率 = active / services         参评率 = (active + defaulted) / services
  未评率     = (services - active) / services
  好评率     = active rated 非常满意, 满意 or 基本满意 / active
  差评率     = active rated 不满意 or 非常不满意 / active
  差评回访率 = 差评 whose follow-up left 待核实 / 差评
  差评整改率 = 差评 whose follow-up reached 已整改 (or later) / (差评 - appeals upheld)
  整改满意率 = 追评 of 满意 or better / 追评

The default rule (the profile's `default_rating`): a session ended
`after_days` natural days ago or more with no rating gets `level` as a
system default, stored in county_ratings with channel `default` - counted
in 参评率, never in 主动评价率, 好评率 or 差评率.
"""
import datetime
import json

from tools.county import followup, tables
from tools.county.report import BAD, SATISFIED, pct

RECTIFIED = ("rectified", "answered", "followed_up")


def apply_defaults(store, rules, hall, now_ms):
    """Give every service unrated for `after_days` its default rating; returns how many."""
    rule = rules.profile.get("default_rating")
    if not rule:
        return 0
    wait_ms = rule["after_days"] * 86400000
    with tables.read(store) as db:
        got = tables.rows(db, store, "SELECT e.session, e.t, e.received_ms, e.\"window\", e.staff, e.item, e.\"case\" "
                                     "FROM events e WHERE e.hall = ? AND e.kind = 'session' AND e.action = 'ended' "
                                     "AND COALESCE(NULLIF(e.t, 0), e.received_ms) <= ? AND NOT EXISTS (SELECT 1 FROM "
                                     "events r WHERE r.hall = e.hall AND r.kind = 'rating' AND r.session = e.session) "
                                     "AND NOT EXISTS (SELECT 1 FROM county_ratings c WHERE c.hall = e.hall AND "
                                     "c.kind = 'session' AND c.ref = e.session)", (hall, now_ms - wait_ms))
    if not got:
        return 0
    with tables.write(store) as db:
        for session, t, received, window, staff, item, case in got:
            db.execute(tables.q(store, "INSERT INTO county_ratings (hall, kind, ref, n, level, channel, reasons, t, "
                                       'item, "case", "window", staff) VALUES (?, \'session\', ?, 1, ?, \'default\', '
                                       "'[]', ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
                       (hall, session, rule["level"], (t or received) + wait_ms, item, case, window, staff))
    return len(got)


def month(store, rules, hall, start_ms, end_ms, rows):
    """The figures of a month; `rows` are report_events() of the same month."""
    services = set()
    first = {}          # service -> (t, level, channel) of its first rating
    for row in rows:
        if row["kind"] == "session" and row["action"] == "ended":
            services.add(("session", json.loads(row["body"])["session"]))
    for row in rows:
        if row["kind"] == "rating":
            key = ("session", json.loads(row["body"])["session"])
            _first(first, key, row["t"] or row["received_ms"], row["level"], row["channel"])
    with tables.read(store) as db:
        county = tables.rows(db, store, "SELECT kind, ref, n, level, channel, t FROM county_ratings WHERE hall = ? "
                                        "AND t >= ? AND t < ?", (hall, start_ms, end_ms))
    second = []
    for kind, ref, n, level, channel, t in county:
        if n == 1:
            _first(first, (kind, ref), t, level, channel)
        else:
            second.append(level)
    services |= set(first)
    active = {k: v for k, v in first.items() if v[2] != "default"}
    defaulted = len(first) - len(active)
    good = sum(1 for v in active.values() if v[1] in SATISFIED)
    bad = sum(1 for v in active.values() if v[1] in BAD)
    f = _followups(store, rules, hall, start_ms, end_ms)
    n = len(services)
    return {
        "services": n, "active": len(active), "defaulted": defaulted, "unrated": n - len(active) - defaulted,
        "good": good, "bad": bad, "bad_called_back": f["called_back"], "bad_appeals_upheld": f["upheld"],
        "bad_rectified": f["rectified"], "second_ratings": f["rerated"], "second_satisfied": f["rerated_ok"],
        "active_pct": pct(len(active), n),                     # 主动评价率
        "participation_pct": pct(len(active) + defaulted, n),  # 参评率
        "unrated_pct": pct(n - len(active), n),                # 未评率
        "good_pct": pct(good, len(active)),                    # 好评率
        "bad_pct": pct(bad, len(active)),                      # 差评率
        "callback_pct": pct(f["called_back"], f["bad"]),       # 差评回访率
        "rectified_pct": pct(f["rectified"], f["bad"] - f["upheld"]),   # 差评整改率
        "rectified_satisfied_pct": pct(f["rerated_ok"], f["rerated"]),  # 整改满意率
    }


def _first(first, key, t, level, channel):
    if key not in first or t < first[key][0]:
        first[key] = (t, level, channel)


def _followups(store, rules, hall, start_ms, end_ms):
    """The month's 差评 follow-ups as they stand (opened from ratings made in the month)."""
    zone = rules.zone
    start = datetime.datetime.fromtimestamp(start_ms / 1000, zone).date()
    end = datetime.datetime.fromtimestamp(end_ms / 1000, zone).date()
    out = dict.fromkeys(("bad", "called_back", "upheld", "rectified", "rerated", "rerated_ok"), 0)
    for m in followup.listing(store, rules, hall, rules.today(), "bad_rating", opened=(start, end)):
        states = [s["state"] for s in m["steps"]]
        out["bad"] += 1
        out["called_back"] += len(states) > 1
        out["upheld"] += "appeal_upheld" in states
        out["rectified"] += any(s in RECTIFIED for s in states)
        for s in m["steps"]:
            if s["state"] == "followed_up":
                out["rerated"] += 1
                out["rerated_ok"] += s["level"] in SATISFIED
    return out
