"""Queue figures of a hall's month (排队叫号): per queue, tickets issued,
calls, no-shows (过号) and the wait from ticket to first call, p50 and
p90, for the month, each day and each hour of the day.

From the `ticket` events the hall sends (protocol/kiosk.py): the agent's
own (device `_queue`: issued, called with wait_ms, recalled, no_show,
transferred) and a kiosk's offline tickets (no action: issued). A wait is
the `wait_ms` of a `called` event, placed at the call's local day and
hour; percentiles are nearest-rank (the value below which p % of the
waits lie, one of the waits themselves: what a person checks by hand).

Every format of the monthly report (text, CSV, HTML, XLSX) shows these
figures as rows(): nothing is computed again on the way to a person.
"""
import datetime
import json

from tools.county.report import period


def percentile(values, p):
    v = sorted(values)
    k = max(1, -(-len(v) * p // 100))
    return v[k - 1]


class _Tally:
    def __init__(self):
        self.issued = self.called = self.no_show = self.recalled = self.transferred = 0
        self.waits = []

    def add(self, action, wait_ms):
        if action in (None, "issued"):
            self.issued += 1
        elif action == "called":
            self.called += 1
            if type(wait_ms) is int:
                self.waits.append(wait_ms)
        elif action == "no_show":
            self.no_show += 1
        elif action == "recalled":
            self.recalled += 1
        elif action == "transferred":
            self.transferred += 1

    def figures(self):
        w = self.waits
        return {"issued": self.issued, "called": self.called, "no_show": self.no_show,
                "recalled": self.recalled, "transferred": self.transferred,
                "wait_p50_s": percentile(w, 50) // 1000 if w else None,
                "wait_p90_s": percentile(w, 90) // 1000 if w else None,
                "wait_max_s": max(w) // 1000 if w else None}


def build(store, hall, month, tz):
    """{"queues": [{queue, <figures>, days: [{date, <figures>}], hours: [{hour, <figures>}]}]}:
    only days and hours with a ticket event are listed."""
    zone, start, end = period(month, tz)
    queues = {}
    for row in store.ticket_events(hall, int(start.timestamp()) * 1000, int(end.timestamp()) * 1000):
        ev = json.loads(row["body"])
        when = datetime.datetime.fromtimestamp((row["t"] or row["received_ms"]) // 1000, zone)
        q = queues.setdefault(ev["queue"], (_Tally(), {}, {}))
        for tally in (q[0], q[1].setdefault(when.date().isoformat(), _Tally()),
                      q[2].setdefault(when.hour, _Tally())):
            tally.add(ev.get("action"), ev.get("wait_ms"))
    out = []
    for name in sorted(queues):
        total, days, hours = queues[name]
        out.append(dict(queue=name, **total.figures(),
                        days=[dict(date=d, **days[d].figures()) for d in sorted(days)],
                        hours=[dict(hour=h, **hours[h].figures()) for h in sorted(hours)]))
    return {"queues": out}


# The three views of the figures: the month per queue, each day, each hour of the day.
SCOPES = ("month", "day", "hour")


def rows(queues, scope):
    """[(queue, when, figures)] of one scope, queue by queue: `when` is None
    for the month, the date for a day, "09:00-10:00" for an hour."""
    out = []
    for q in queues:
        if scope == "month":
            out.append((q["queue"], None, q))
        elif scope == "day":
            out += [(q["queue"], d["date"], d) for d in q["days"]]
        else:
            out += [(q["queue"], "%02d:00-%02d:00" % (h["hour"], h["hour"] + 1), h) for h in q["hours"]]
    return out
