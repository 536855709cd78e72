"""Queue figures at the county (tools/county/waits.py): wait p50/p90,
calls and no-shows per queue, day and hour, from the `ticket` events a
hall sends, checked against figures worked out by hand."""
import datetime
import zoneinfo

import protocol
from tools.county import report, report_text, waits
from tools.county.store import open_store
from tools.county.testing import KEY

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
HALL = "hall-q"


def at(local):
    return int(datetime.datetime.fromisoformat(local).replace(tzinfo=SHANGHAI).timestamp()) * 1000


class Hall:
    def __init__(self):
        self.seq = {}
        self.items = []

    def ticket(self, when, ticket, queue, device="_queue", **extra):
        self.seq[device] = self.seq.get(device, 0) + 1
        ev = {"v": 1, "device": device, "seq": self.seq[device], "kind": "ticket", "t": at(when),
              "ticket": ticket, "queue": queue}
        ev.update(extra)
        body = protocol.encode(ev, KEY).decode()
        self.items.append({"device": device, "seq": ev["seq"], "body": body})


def fixture():
    h = Hall()
    # Queue A on 3 November: five tickets from the agent, one from a kiosk's block.
    for i in range(1, 6):
        h.ticket("2026-11-03 09:0%d:00" % i, "A%03d" % i, "A", action="issued", id="20261103-A%03d" % i)
    h.ticket("2026-11-03 09:06:00", "A051", "A", device="ks-01")
    # Their calls: waits of 60, 120, 300 s in the 9 o'clock hour, 600 and 30 s in the 10 o'clock.
    for when, ticket, wait_s in (("09:10", "A001", 60), ("09:20", "A002", 120), ("09:40", "A003", 300),
                                 ("10:05", "A004", 600), ("10:30", "A051", 30)):
        h.ticket("2026-11-03 %s:00" % when, ticket, "A", action="called", window="W01", wait_ms=wait_s * 1000)
    h.ticket("2026-11-03 10:20:00", "A004", "A", action="recalled", window="W01")
    h.ticket("2026-11-03 10:31:00", "A005", "A", action="no_show", window="W01")
    # Queue B the next day, one call; and one call of October (outside the month).
    h.ticket("2026-11-04 14:00:00", "B001", "B", action="called", window="W02", wait_ms=45500)
    h.ticket("2026-10-31 23:59:00", "B009", "B", action="called", window="W02", wait_ms=999000)
    return h


def test_wait_percentiles_calls_and_no_shows_match_the_hand_worked_figures(tmp_path):
    store = open_store(str(tmp_path / "county.db"))
    try:
        h = fixture()
        store.ingest(HALL, "b1", h.items, 1)
        got = waits.build(store, HALL, "2026-11", "Asia/Shanghai")["queues"]
        a, b = got
        # A's waits, sorted: 30 60 120 300 600 s. Nearest rank: p50 = the 3rd, p90 = the 5th.
        assert (a["queue"], a["issued"], a["called"], a["no_show"], a["recalled"]) == ("A", 6, 5, 1, 1)
        assert (a["wait_p50_s"], a["wait_p90_s"], a["wait_max_s"]) == (120, 600, 600)
        assert [d["date"] for d in a["days"]] == ["2026-11-03"]
        hours = {x["hour"]: x for x in a["hours"]}
        # 9 o'clock: issued 6, waits 60 120 300 -> p50 the 2nd (120), p90 the 3rd (300).
        assert (hours[9]["issued"], hours[9]["called"], hours[9]["wait_p50_s"], hours[9]["wait_p90_s"]) == (
            6, 3, 120, 300)
        # 10 o'clock: waits 30 600 -> p50 the 1st (30), p90 the 2nd (600); the no-show.
        assert (hours[10]["called"], hours[10]["wait_p50_s"], hours[10]["wait_p90_s"], hours[10]["no_show"]) == (
            2, 30, 600, 1)
        # B: one call in the month (45.5 s: whole seconds, rounded down); October's is not counted.
        assert (b["queue"], b["called"], b["wait_p50_s"], b["wait_p90_s"]) == ("B", 1, 45, 45)
        assert [(d["date"], d["called"]) for d in b["days"]] == [("2026-11-04", 1)]
        # The monthly report carries them, and its text shows them.
        r = report.build(store, HALL, "2026-11", "Asia/Shanghai")
        assert r["queues"] == got
        text = report_text.text(r)
        assert "排队叫号" in text and any(line.split()[:6] == ["A", "6", "5", "1", "2:00", "10:00"]
                                       for line in text.splitlines())
    finally:
        store.close()
