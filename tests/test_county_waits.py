"""Queue figures at the county (tools/county/waits.py): wait p50/p90,
calls and no-shows per queue, day and hour, from the `ticket` events a
hall sends, checked against figures worked out by hand."""
import csv
import datetime
import io
import os
import re
import subprocess
import zoneinfo

import openpyxl

import protocol
from harness import VENV_BIN
from tools.county import report, waits
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
        # The monthly report carries them (every format of it: the test below).
        assert report.build(store, HALL, "2026-11", "Asia/Shanghai")["queues"] == got
    finally:
        store.close()


# The fixture's figures worked out by hand, as every format of the report must show
# them: (scope, queue, day or hour, issued, called, no-show, recalled, transferred,
# wait p50, p90, longest in seconds). Waits by nearest rank: A's month 30 60 120 300 600
# -> the 3rd and the 5th; A's 9 o'clock 60 120 300 -> the 2nd and the 3rd; its 10
# o'clock 600 30 -> the 1st (30) and the 2nd (600) of 30 600.
BY_HAND = [
    ("全月", "A", "", 6, 5, 1, 1, 0, 120, 600, 600),
    ("全月", "B", "", 0, 1, 0, 0, 0, 45, 45, 45),
    ("按日", "A", "2026-11-03", 6, 5, 1, 1, 0, 120, 600, 600),
    ("按日", "B", "2026-11-04", 0, 1, 0, 0, 0, 45, 45, 45),
    ("按时段", "A", "09:00-10:00", 6, 3, 0, 0, 0, 120, 300, 300),
    ("按时段", "A", "10:00-11:00", 0, 2, 1, 1, 0, 30, 600, 600),
    ("按时段", "B", "14:00-15:00", 0, 1, 0, 0, 0, 45, 45, 45),
]


def _clock(s):
    return "%d:%02d" % (s // 60, s % 60)


def test_every_format_of_the_monthly_report_shows_the_hand_worked_queue_figures(tmp_path):
    db = str(tmp_path / "county.db")
    store = open_store(db)
    try:
        store.ingest(HALL, "b1", fixture().items, 1)
    finally:
        store.close()

    def report_cli(*argv):
        out = subprocess.run([os.path.join(VENV_BIN, "county-server"), "report", "--db", db, "--hall", HALL,
                              "--month", "2026-11"] + list(argv), capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr.decode()
        return out.stdout

    # CSV (--list queues): one row per queue, day and hour; waits in seconds.
    rows = list(csv.reader(io.StringIO(report_cli("--format", "csv", "--list", "queues").decode("utf-8-sig"))))
    assert rows[0][:5] == ["大厅", "月份", "范围", "队列", "日期或时段"]
    assert [tuple(r[2:]) for r in rows[1:]] == [tuple(str(x) for x in h) for h in BY_HAND]
    assert {r[0] for r in rows[1:]} == {HALL} and {r[1] for r in rows[1:]} == {"2026-11"}

    # Text: a table for the month, the days and the hours; waits as m:ss.
    text = report_cli().decode()
    lines = [line.split() for line in text.splitlines()]
    for scope, q, when, *counts, p50, p90, longest in BY_HAND:
        want = [q] + ([when] if when else []) + [str(c) for c in counts] + [_clock(p50), _clock(p90), _clock(longest)]
        assert want in lines, (want, text)

    # HTML: the page's three tables.
    html = report_cli("--format", "html").decode()
    for scope, key in (("全月", "month"), ("按日", "day"), ("按时段", "hour")):
        table = re.search(r'<table data-table="queues-%s">(.*?)</table>' % key, html).group(1)
        got = [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr data-row=[^>]*>(.*?)</tr>", table)]
        assert got == [[q] + ([when] if when else []) + [str(c) for c in counts] + [_clock(w) for w in ws]
                       for sc, q, when, *rest in BY_HAND if sc == scope
                       for counts, ws in [(rest[:5], rest[5:])]], (scope, got)

    # XLSX: the 排队叫号 sheet, counts as numbers and waits as Excel times.
    report_cli("--format", "xlsx", "--out", str(tmp_path / "r.xlsx"))
    ws = openpyxl.load_workbook(str(tmp_path / "r.xlsx"))["排队叫号"]
    got = [tuple(c.value for c in row) for row in ws.iter_rows(min_row=2)]
    assert [r[:2] + (r[2] or "",) + r[3:8] for r in got] == [h[:8] for h in BY_HAND]     # (the month: no date)
    # (openpyxl reads a cell of a duration format back as a timedelta)
    assert [tuple(round(v.total_seconds()) for v in r[8:]) for r in got] == [h[8:] for h in BY_HAND]
    assert ws.cell(2, 9).number_format == "[h]:mm:ss"
