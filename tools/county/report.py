"""A hall's monthly 好差评 report (每月形成报表): figures per window, per staff
member (经办人编号) and for the whole hall, and the bad-rating follow-up
list (差评整改清单) with a rectification deadline for each 差评.

The month runs from local midnight on the 1st to local midnight on the 1st
of the next month, in the report's time zone. An event whose device had no
clock yet (t = 0) is placed by the time the county received it, and flagged.
The result is plain JSON data; report_text.py prints it for people.
"""
import datetime
import json
import re
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocol import CHANNELS, LEVELS
from tools.county.errors import CountyError

DEFAULT_TZ = "Asia/Shanghai"
DEFAULT_DEADLINE_DAYS = 5
MAX_DEADLINE_DAYS = 60
SATISFIED = LEVELS[:3]      # 非常满意, 满意, 基本满意: what 满意率 counts
BAD = LEVELS[3:]            # 不满意, 非常不满意: 差评, each one followed up
_MONTH = re.compile(r"^(2\d{3})-(0[1-9]|1[0-2])$")


class ReportError(CountyError, ValueError):
    """A report that cannot be asked for: a bad month, an unknown time zone,
    a bad deadline. One line for the operator, HTTP 400 for a client."""


def period(month, tz=DEFAULT_TZ):
    """'YYYY-MM' and an IANA zone name -> (zone, start, end) local datetimes."""
    m = _MONTH.match(month) if type(month) is str else None
    if not m:
        raise ReportError("month must be YYYY-MM, such as 2026-10 (got %r)" % (month,))
    try:
        if type(tz) is not str or not 0 < len(tz) <= 64:
            raise ValueError(tz)
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ReportError("unknown time zone %r: give an IANA name such as Asia/Shanghai" % (tz,))
    year, mon = int(m.group(1)), int(m.group(2))
    start = datetime.datetime(year, mon, 1, tzinfo=zone)
    end = datetime.datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=zone)
    return zone, start, end


def deadline_days(n):
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise ReportError("deadline days must be a whole number (got %r)" % (n,))
    if not 1 <= n <= MAX_DEADLINE_DAYS:
        raise ReportError("deadline days must be 1-%d working days (got %d)" % (MAX_DEADLINE_DAYS, n))
    return n


def working_days_after(day, n):
    """The date n working days (Mon-Fri) after `day`. Public holidays and
    make-up working weekends (调休) are not known here."""
    while n:
        day += datetime.timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day


def pct(part, whole):
    """part / whole in percent, two decimals rounded half up (四舍五入);
    None when there is nothing to divide by."""
    if not whole:
        return None
    q = (Decimal(100 * part) / Decimal(whole)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return float(q)


class Tally:
    """The figures of one window, one staff member or the hall."""

    def __init__(self):
        self.services = 0           # session steps `ended`
        self.unrated = 0            # session steps `unrated`: the prompt timed out
        self.levels = dict.fromkeys(LEVELS, 0)
        self.channels = dict.fromkeys(CHANNELS, 0)
        self.timed = 0              # ended steps that carried service_ms
        self.service_ms = 0
        self.longest_ms = None

    def rating(self, level, channel):
        self.levels[level] += 1
        self.channels[channel] += 1

    def ended(self, service_ms):
        self.services += 1
        if service_ms is not None:
            self.timed += 1
            self.service_ms += service_ms
            self.longest_ms = max(self.longest_ms or 0, service_ms)

    def figures(self):
        rated = sum(self.levels.values())
        return {
            "services": self.services,
            "unrated": self.unrated,
            "rated": rated,
            "participation_pct": pct(rated, self.services),
            "satisfaction_pct": pct(sum(self.levels[lv] for lv in SATISFIED), rated),
            "bad": sum(self.levels[lv] for lv in BAD),
            "levels": dict(self.levels),
            "channels": dict(self.channels),
            "service_avg_ms": (self.service_ms + self.timed // 2) // self.timed if self.timed else None,
            "service_max_ms": self.longest_ms,
        }


def _body(row):
    return json.loads(row["body"])


def build(store, hall, month, tz=DEFAULT_TZ, deadline=DEFAULT_DEADLINE_DAYS, rules=None):
    """The report of `hall` for `month` ('YYYY-MM') in time zone `tz`, as
    JSON-ready data. A hall without events gets a report of zeros. With
    `rules` (profiles.Rules) it also lists the month's 超时 cases."""
    zone, start, end = period(month, tz)
    deadline = deadline_days(deadline)
    if rules is not None:
        from tools.county import figures
        day_end = datetime.datetime.combine(rules.today() + datetime.timedelta(days=1), datetime.time(), rules.zone)
        figures.apply_defaults(store, rules, hall, int(day_end.timestamp()) * 1000)
    rows = store.report_events(hall, int(start.timestamp()) * 1000, int(end.timestamp()) * 1000)
    total, windows, staff, bad = Tally(), {}, {}, []
    days = _month_days(start, end)
    no_clock = 0
    for row in rows:
        if row["t"] == 0:
            no_clock += 1
        day = days[datetime.datetime.fromtimestamp((row["t"] or row["received_ms"]) // 1000, zone).date().isoformat()]
        if row["kind"] == "rating":
            day["rated"] += 1
            day["satisfied"] += row["level"] in SATISFIED
            day["bad"] += row["level"] in BAD
        elif row["action"] == "ended":
            day["services"] += 1
        tallies = (total, windows.setdefault(row["window"], Tally()), staff.setdefault(row["staff"], Tally()))
        if row["kind"] == "rating":
            for tl in tallies:
                tl.rating(row["level"], row["channel"])
            if row["level"] in BAD:
                bad.append(_follow_up(row, zone, deadline, rules))
        elif row["action"] == "ended":
            service_ms = _body(row).get("service_ms")
            for tl in tallies:
                tl.ended(service_ms)
        else:
            for tl in tallies:
                tl.unrated += 1
    bad.sort(key=lambda b: (b[0], b[1]["device"], b[1]["seq"]))

    def listed(tallies, name):
        # Events without a window or staff (a QR rating, say) are listed last, as null.
        return [dict({name: k}, **tallies[k].figures())
                for k in sorted(tallies, key=lambda k: (k is None, k or ""))]

    out = {
        "hall": hall,
        "month": month,
        "tz": tz,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "deadline_days": deadline,
        "events": len(rows),
        "no_clock": no_clock,
        "totals": total.figures(),
        "windows": listed(windows, "window"),
        "staff": listed(staff, "staff"),
        "bad": [b for _, b in bad],
        "days": list(days.values()),
        "queues": _queues(store, hall, month, tz),
    }
    if rules is not None:
        from tools.county import cases, followup
        out["figures"] = figures.month(store, rules, hall, int(start.timestamp()) * 1000,
                                       int(end.timestamp()) * 1000, rows)
        status = {f["id"]: f for f in followup.listing(store, rules, hall, rules.today(), "bad_rating")}
        for b in out["bad"]:
            f = status.get("r:%s:%d" % (b["device"], b["seq"]))
            b["followup"] = {k: f[k] for k in ("id", "state", "state_zh", "since", "deadline", "overdue")} if f else None
        # Lights as they stand today, or on the month's last day for a month gone by.
        as_of = min(rules.today(), end.date() - datetime.timedelta(days=1))
        out["overdue_cases"] = dict(cases.overdue(store, rules, hall, start.date(), end.date(), as_of),
                                    as_of=as_of.isoformat())
    return out


def _queues(store, hall, month, tz):
    # The queue's figures (排队叫号), apart in waits.py.
    from tools.county import waits
    return waits.build(store, hall, month, tz)["queues"]


def overview(store, halls, month, tz=DEFAULT_TZ):
    """The county's month across halls: each hall's totals (the figures of
    its own report, counted in the database), and the county's."""
    _, start, end = period(month, tz)
    county, out = Tally(), []
    for hall in halls:
        tally, events = Tally(), 0
        for kind, action, level, n in store.month_counts(hall, int(start.timestamp()) * 1000,
                                                         int(end.timestamp()) * 1000):
            events += n
            for tl in (tally, county):
                if kind == "rating":
                    tl.levels[level] += n
                elif action == "ended":
                    tl.services += n
                else:
                    tl.unrated += n
        f = tally.figures()
        out.append({"hall": hall, "events": events, **{k: f[k] for k in _OVERVIEW}})
    f = county.figures()
    return {"month": month, "tz": tz, "from": start.isoformat(), "to": end.isoformat(), "halls": out,
            "totals": {"events": sum(h["events"] for h in out), **{k: f[k] for k in _OVERVIEW}}}


# What the overview shows of each hall (durations and channels stay in the hall's report).
_OVERVIEW = ("services", "unrated", "rated", "participation_pct", "satisfaction_pct", "bad", "levels")


def _month_days(start, end):
    """{date: its counts} for every local day of the month, in order."""
    out, day = {}, start.date()
    while day < end.date():
        out[day.isoformat()] = {"date": day.isoformat(), "services": 0, "rated": 0, "satisfied": 0, "bad": 0}
        day += datetime.timedelta(days=1)
    return out


def _follow_up(row, zone, deadline, rules=None):
    """(ms, entry) for one 差评: the entry names the event forever (device, seq)."""
    ms = row["t"] or row["received_ms"]
    when = datetime.datetime.fromtimestamp(ms // 1000, zone)
    return ms, {
        "time": when.strftime("%Y-%m-%d %H:%M:%S"),
        "no_clock": row["t"] == 0,      # time is when the county received it
        "window": row["window"],
        "staff": row["staff"],
        "item": row["item"],
        "case": row["case"],
        "level": row["level"],
        "reasons": _body(row).get("reasons") or [],
        "device": row["device"],
        "seq": row["seq"],
        "deadline": _deadline(when.date(), deadline, rules),
    }


def _deadline(day, n, rules):
    """n working days after `day`: by the holiday calendar when the report has
    the county's rules (None for a year without a schedule), else Mon-Fri."""
    if rules is None:
        return working_days_after(day, n).isoformat()
    from tools.county.workdays import NoCalendar
    try:
        return rules.calendar.add(day, n).isoformat()
    except NoCalendar:
        return None
