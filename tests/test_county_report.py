"""The hall's monthly 好差评 report at the county: a month of signed events posted
through the real batch API (twice), counted exactly, month boundaries in
Asia/Shanghai, the 差评 follow-up list with its deadlines, the same answer on
SQLite and PostgreSQL, over HTTP with the hall's token and from the CLI."""
import csv
import datetime
import io
import json
import os
import re
import subprocess
import zoneinfo

import pytest

import protocol
from harness import VENV_BIN
from test_county import batch, pg_url
from tools.county.report_text import width
from tools.county.testing import CountyProc, rating, session

COUNTY = os.path.join(VENV_BIN, "county-server")
TOKENS = {"hall-a": "tok-" + "a" * 20, "hall-b": "tok-" + "b" * 20, "hall-c": "tok-" + "c" * 20}
MANAGERS = {hall: "mgr-" + token for hall, token in TOKENS.items()}     # who reads the reports
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
LEVELS = ("very_satisfied", "satisfied", "basically_satisfied", "dissatisfied", "very_dissatisfied")


def at(local):
    """'2026-10-31 23:30:00' on a Shanghai wall clock -> Unix ms."""
    return int(datetime.datetime.fromisoformat(local).replace(tzinfo=SHANGHAI).timestamp()) * 1000


class Evaluator:
    """One window's evaluator: numbers its events as the outbox would and
    writes each service as the firmware does (started, paused/resumed,
    ended with service_ms, then a rating or `unrated`)."""

    def __init__(self, name, window, staff):
        self.name, self.window, self.staff = name, window, staff
        self.seq = self.n = 0
        self.events = []

    def _seq(self):
        self.seq += 1
        return self.seq

    def service(self, start, service_s, rated=None, paused_s=0, staff=None, item=None, case=None,
                reasons=None, no_clock=False):
        self.n += 1
        sid = "%s-1-%d" % (self.name, self.n)
        t0 = 0 if no_clock else at(start)
        clock = (lambda s: 0) if no_clock else (lambda s: t0 + s * 1000)
        known = {k: v for k, v in (("staff", staff or self.staff), ("item", item), ("case", case)) if v}

        def step(action, t, **extra):
            self.events.append(session(self.name, self._seq(), action, sid, self.window, t, **known, **extra))

        step("started", clock(0))
        if paused_s:                         # 暂停服务 halfway
            step("paused", clock(service_s // 2))
            step("resumed", clock(service_s // 2 + paused_s))
        end = service_s + paused_s
        step("ended", clock(end), service_ms=service_s * 1000, paused_ms=paused_s * 1000)
        if rated:
            extra = dict(known, **({"reasons": reasons} if reasons else {}))
            self.events.append(rating(self.name, self._seq(), rated, clock(end + 5), session=sid,
                                      window=self.window, **extra))
        else:
            step("unrated", clock(end + 30))


def hall_a_events():
    a1, a2 = Evaluator("ev-a1", "A01", "1024"), Evaluator("ev-a2", "A02", "2048")
    # Outside October in Shanghai: 2026-09-30 23:55 local.
    a1.service("2026-09-30 23:50:00", 300, "satisfied")
    # 2026-10-01 00:10 local is still September 30 in UTC.
    a1.service("2026-10-01 00:10:00", 300, "very_satisfied")
    a1.service("2026-10-10 10:00:00", 600, "satisfied", paused_s=120)
    a1.service("2026-10-15 14:00:00", 200, "dissatisfied", item="431100-001", case="C-2026-0001",
               reasons=["attitude", "slow"])
    a1.service("2026-10-20 11:00:00", 100)                                   # unrated
    # Rated 2026-10-31 23:30:00 +08:00 = 15:30 UTC, a Saturday: October, deadline counted from Monday.
    a1.service("2026-10-31 23:27:25", 150, "very_dissatisfied", item="431100-002")
    # Rated 2026-11-01 00:00:25 local, still October 31 in UTC: November.
    a1.service("2026-11-01 00:00:00", 20, "very_dissatisfied")
    a2.service("2026-10-12 09:00:00", 400, "basically_satisfied")
    a2.service("2026-10-12 09:30:00", 500)                                   # unrated
    a2.service("2026-10-13 15:00:00", 250, "very_satisfied", staff="1024")   # 1024 covers A02
    qr = [rating("qr-1", 1, "satisfied", at("2026-10-14 16:00:00"), channel="qr", session="ev-a2-1-3",
                 window="A02", staff="1024"),
          rating("qr-1", 2, "satisfied", at("2026-10-05 12:00:00"), channel="qr", session="web-77")]
    status = protocol.encode({"v": 1, "device": "ev-a1", "seq": a1.seq + 1, "kind": "status",
                              "t": at("2026-10-02 08:00:00"), "fw": "1.0", "uptime_s": 5,
                              "reset": "power_on", "outbox": 0, "heap": 50000}, bytes(range(32))).decode()
    return a1.events + [status] + a2.events + qr


def hall_b_events():
    """An evaluator that never heard the time: t = 0 throughout."""
    b1 = Evaluator("ev-b1", "B01", "3001")
    b1.service(None, 90, "very_dissatisfied", reasons=["wait"], no_clock=True)
    return b1.events


@pytest.fixture(scope="module")
def counties(tmp_path_factory):
    """Both stores, fed the same events through HTTP; the PostgreSQL one is
    None (with the reason) when the server is absent."""
    work = tmp_path_factory.mktemp("county-report")
    dbs = {"sqlite": str(work / "county.db")}
    pg, skipped = None, None
    try:
        pg = pg_url()
        dbs["postgresql"] = pg[2]
    except pytest.skip.Exception as e:
        skipped = str(e)
    procs, answers = {}, {}
    try:
        for name, db in dbs.items():
            c = procs[name] = CountyProc(str(work / name), db, TOKENS, managers=MANAGERS).start()
            a, b = hall_a_events(), hall_b_events()
            posts = [("hall-a", batch(a, "m1", "hall-a")),
                     ("hall-a", batch(a, "m1", "hall-a")),                    # the answer was lost
                     ("hall-a", batch(a[::2], "m2", "hall-a")),               # re-batched after a restart
                     ("hall-b", batch(b, "b1", "hall-b"))]
            answers[name] = []
            for hall, doc in posts:
                status, ans = c.post(hall, TOKENS[hall], doc)
                assert status == 200, ans
                answers[name].append([r["status"] for r in ans["results"]])
        yield {"procs": procs, "dbs": dbs, "answers": answers, "pg_skipped": skipped}
    finally:
        for c in procs.values():
            c.stop()
        if pg:
            pg[0].execute("DROP SCHEMA %s CASCADE" % pg[1])
            pg[0].close()


@pytest.fixture(params=["sqlite", "postgresql"])
def county(request, counties):
    if request.param not in counties["procs"]:
        pytest.skip(counties["pg_skipped"])
    return counties["procs"][request.param]


def report(county, hall="hall-a", **query):
    status, ans = county.report(hall, MANAGERS[hall], **dict({"month": "2026-10"}, **query))
    assert status == 200, ans
    return ans


def figures(services, unrated, levels, participation, satisfaction, avg_ms, max_ms, channels):
    lv = dict(zip(LEVELS, levels))
    ch = dict.fromkeys(protocol.CHANNELS, 0)
    ch.update(channels)
    return {"services": services, "unrated": unrated, "rated": sum(levels),
            "participation_pct": participation, "satisfaction_pct": satisfaction,
            "bad": lv["dissatisfied"] + lv["very_dissatisfied"], "levels": lv, "channels": ch,
            "service_avg_ms": avg_ms, "service_max_ms": max_ms}


def test_resent_batches_are_duplicates_and_not_counted_twice(county, counties):
    name = "sqlite" if county is counties["procs"]["sqlite"] else "postgresql"
    first, again, rebatched, _ = counties["answers"][name]
    assert set(first) == {"stored"}
    assert set(again) == set(rebatched) == {"duplicate"}
    assert county.stats("hall-a")["total"] == len(hall_a_events())


def test_a_month_is_counted_exactly(county):
    r = report(county)
    assert (r["hall"], r["month"], r["tz"], r["deadline_days"]) == ("hall-a", "2026-10", "Asia/Shanghai", 5)
    assert (r["from"], r["to"]) == ("2026-10-01T00:00:00+08:00", "2026-11-01T00:00:00+08:00")
    # 8 ratings, 8 ended, 2 unrated; not the status, nor started/paused/resumed steps.
    assert (r["events"], r["no_clock"]) == (18, 0)
    # service time from service_ms: the 120 s pause of the 600 s service is left out.
    assert r["windows"] == [
        dict(window="A01", **figures(5, 1, (1, 1, 0, 1, 1), 80.0, 50.0, 270000, 600000, {"window": 4})),
        dict(window="A02", **figures(3, 1, (1, 1, 1, 0, 0), 100.0, 100.0, 383333, 500000,
                                     {"window": 2, "qr": 1})),
        dict(window=None, **figures(0, 0, (0, 1, 0, 0, 0), None, 100.0, None, None, {"qr": 1})),
    ]
    assert r["staff"] == [
        dict(staff="1024", **figures(6, 1, (2, 2, 0, 1, 1), 100.0, 66.67, 266667, 600000,
                                     {"window": 5, "qr": 1})),
        dict(staff="2048", **figures(2, 1, (0, 0, 1, 0, 0), 50.0, 100.0, 450000, 500000, {"window": 1})),
        dict(staff=None, **figures(0, 0, (0, 1, 0, 0, 0), None, 100.0, None, None, {"qr": 1})),
    ]
    assert r["totals"] == figures(8, 2, (2, 3, 1, 1, 1), 100.0, 75.0, 312500, 600000, {"window": 6, "qr": 2})
    assert [f["followup"]["id"] for f in r["bad"]] == ["r:ev-a1:14", "r:ev-a1:20"]
    assert [{k: v for k, v in b.items() if k != "followup"} for b in r["bad"]] == [
        {"time": "2026-10-15 14:03:25", "no_clock": False, "window": "A01", "staff": "1024",
         "item": "431100-001", "case": "C-2026-0001", "level": "dissatisfied",
         "reasons": ["attitude", "slow"],
         "device": "ev-a1", "seq": 14, "deadline": "2026-10-22"},
        {"time": "2026-10-31 23:30:00", "no_clock": False, "window": "A01", "staff": "1024",
         "item": "431100-002", "case": None, "level": "very_dissatisfied", "reasons": [],
         "device": "ev-a1", "seq": 20, "deadline": "2026-11-06"},
    ]


def test_month_boundaries_are_local_midnight(county):
    nov = report(county, month="2026-11")
    assert (nov["totals"]["services"], nov["totals"]["rated"], nov["totals"]["bad"]) == (1, 1, 1)
    assert [(b["time"], b["deadline"]) for b in nov["bad"]] == [("2026-11-01 00:00:25", "2026-11-06")]
    sep = report(county, month="2026-09")
    assert (sep["totals"]["services"], sep["totals"]["levels"]["satisfied"]) == (1, 1)
    # The same month in UTC moves the 00:10 service into September and the 00:00 one into October.
    utc = report(county, tz="UTC")
    assert (utc["from"], utc["to"]) == ("2026-10-01T00:00:00+00:00", "2026-11-01T00:00:00+00:00")
    assert utc["totals"]["levels"] == {"very_satisfied": 1, "satisfied": 3, "basically_satisfied": 1,
                                       "dissatisfied": 1, "very_dissatisfied": 2}
    assert [b["time"] for b in utc["bad"]] == ["2026-10-15 06:03:25", "2026-10-31 15:30:00",
                                               "2026-10-31 16:00:25"]


def test_the_deadline_counts_working_days(county):
    r = report(county, deadline_days=15)
    assert r["deadline_days"] == 15
    assert [b["deadline"] for b in r["bad"]] == ["2026-11-05", "2026-11-20"]


def test_events_without_a_clock_count_by_arrival_and_are_flagged(county):
    now = datetime.datetime.now(SHANGHAI)
    # Posted when the module started; a month boundary in between is near impossible but handled.
    months = sorted({(now - datetime.timedelta(minutes=5)).strftime("%Y-%m"), now.strftime("%Y-%m")})
    rs = [report(county, "hall-b", month=m) for m in months]
    r = max(rs, key=lambda r: r["events"])
    assert (r["events"], r["no_clock"]) == (2, 2)
    assert (r["totals"]["services"], r["totals"]["rated"], r["totals"]["service_avg_ms"]) == (1, 1, 90000)
    [bad] = r["bad"]
    assert bad["no_clock"] is True and bad["reasons"] == ["wait"] and bad["staff"] == "3001"
    received = datetime.datetime.strptime(bad["time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=SHANGHAI)
    assert abs((now - received).total_seconds()) < 600
    assert bad["deadline"] > bad["time"][:10]


def test_sqlite_and_postgresql_give_the_same_report(counties):
    if "postgresql" not in counties["procs"]:
        pytest.skip(counties["pg_skipped"])
    sq, pg = counties["procs"]["sqlite"], counties["procs"]["postgresql"]
    for query in ({}, {"month": "2026-11"}, {"tz": "UTC"}, {"deadline_days": 15}, {"month": "2026-03"}):
        assert report(sq, **query) == report(pg, **query), query
    for fmt in ("text", "csv", "json"):
        outs = [cli("report", "--db", counties["dbs"][n], "--hall", "hall-a", "--month", "2026-10",
                    "--format", fmt).stdout for n in ("sqlite", "postgresql")]
        assert outs[0] == outs[1], fmt


def test_the_report_needs_the_halls_own_token(county):
    assert county.report("hall-a", None, month="2026-10")[0] == 401
    assert county.report("hall-a", "tok-" + "x" * 20, month="2026-10")[0] == 401
    assert county.report("hall-a", MANAGERS["hall-b"], month="2026-10")[0] == 401
    assert county.report("hall-a", TOKENS["hall-a"], month="2026-10")[0] == 401     # the uplink token posts only
    assert county.report("hall-z", MANAGERS["hall-a"], month="2026-10")[0] == 401   # no such hall
    empty = report(county, "hall-c")                     # a hall that has sent nothing yet
    assert (empty["events"], empty["totals"]["rated"], empty["windows"], empty["bad"]) == (0, 0, [], [])
    assert empty["totals"]["satisfaction_pct"] is None


@pytest.mark.parametrize("query, words", [
    ({"month": "2026-13"}, "YYYY-MM"),
    ({"month": "2026-1"}, "YYYY-MM"),
    ({}, "month=YYYY-MM"),
    ({"month": "2026-10", "tz": "Mars/Olympus"}, "unknown time zone"),
    ({"month": "2026-10", "tz": "../../etc/passwd"}, "unknown time zone"),
    ({"month": "2026-10", "deadline_days": "0"}, "deadline"),
    ({"month": "2026-10", "deadline_days": "five"}, "deadline"),
])
def test_a_bad_report_request_is_400(counties, query, words):
    status, ans = counties["procs"]["sqlite"].report("hall-a", MANAGERS["hall-a"], **query)
    assert status == 400 and words in ans["error"], ans


def cli(*argv, ok=True):
    out = subprocess.run([COUNTY] + list(argv), capture_output=True, timeout=30)
    assert (out.returncode == 0) == ok, out.stderr.decode()
    return out


def test_cli_json_is_the_http_answer(counties):
    out = cli("report", "--db", counties["dbs"]["sqlite"], "--hall", "hall-a", "--month", "2026-10",
              "--format", "json")
    assert json.loads(out.stdout) == report(counties["procs"]["sqlite"])
    only_bad = json.loads(cli("report", "--db", counties["dbs"]["sqlite"], "--hall", "hall-a",
                              "--month", "2026-10", "--format", "json", "--list", "bad").stdout)
    assert "totals" not in only_bad and len(only_bad["bad"]) == 2


def field_ends(line):
    """The terminal column where each space-separated field of a line ends."""
    return [width(line[:m.end()]) for m in re.finditer(r"\S+", line)]


def test_cli_text_is_aligned_with_chinese_labels(counties):
    text = cli("report", "--db", counties["dbs"]["sqlite"], "--hall", "hall-a", "--month", "2026-10")
    text = text.stdout.decode()
    for label in ("2026年10月", "满意率", "参评率", "差评", "非常不满意", "差评整改清单", "5 个工作日", "节假日与调休"):
        assert label in text, label
    assert "全厅: 办件 8, 评价 8, 参评率 100.00%, 满意率 75.00%, 差评 2" in text
    blocks = text.split("\n\n")
    windows = next(b for b in blocks if b.startswith("按窗口")).splitlines()[1:]
    assert [ln.split()[0] for ln in windows] == ["窗口", "A01", "A02", "(无)", "合计"]
    assert width("满意率 A01") == 10                          # CJK characters take two columns
    assert len({width(ln) for ln in windows}) == 1           # every row as wide as the header
    a01 = windows[1].split()
    assert a01[1:7] == ["5", "1", "4", "80.00%", "50.00%", "2"] and a01[12:14] == ["4:30", "10:00"]
    # Figures are right-aligned under their headers: every field ends in its header's column.
    assert all(field_ends(ln)[1:] == field_ends(windows[0])[1:] for ln in windows[1:])
    bad = next(b for b in blocks if b.startswith("差评整改清单")).splitlines()[2:]
    assert [ln.split()[:3] for ln in bad] == [["2026-10-15", "14:03:25", "A01"],
                                              ["2026-10-31", "23:30:00", "A01"]]
    assert bad[1].split()[-1] == "2026-11-06"


def test_cli_csv_opens_in_excel(counties, tmp_path):
    db = counties["dbs"]["sqlite"]
    out = tmp_path / "figures.csv"
    cli("report", "--db", db, "--hall", "hall-a", "--month", "2026-10", "--format", "csv", "--out", str(out))
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw        # BOM: Excel reads UTF-8
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert [(r["范围"], r["窗口或经办人编号"]) for r in rows] == [
        ("全厅", ""), ("窗口", "A01"), ("窗口", "A02"), ("窗口", "(无)"),
        ("经办人", "1024"), ("经办人", "2048"), ("经办人", "(无)")]
    staff_1024 = rows[4]
    assert (staff_1024["办件数"], staff_1024["评价数"], staff_1024["满意率(%)"], staff_1024["差评数"],
            staff_1024["平均办理时长(秒)"], staff_1024["渠道:二维码"]) == ("6", "6", "66.67", "2", "267", "1")
    assert rows[3]["参评率(%)"] == ""                                  # no services: no rate
    bad = cli("report", "--db", db, "--hall", "hall-a", "--month", "2026-10", "--format", "csv",
              "--list", "bad").stdout
    bad_rows = list(csv.DictReader(io.StringIO(bad.decode("utf-8-sig"))))
    assert [(r["评价时间"], r["评价"], r["评价等级"], r["原因"], r["序号"], r["整改期限"]) for r in bad_rows] == [
        ("2026-10-15 14:03:25", "不满意", "dissatisfied", "attitude;slow", "14", "2026-10-22"),
        ("2026-10-31 23:30:00", "非常不满意", "very_dissatisfied", "", "20", "2026-11-06")]


@pytest.mark.parametrize("argv, words", [
    (["--month", "2026-13"], "month must be YYYY-MM"),
    (["--month", "Oct"], "month must be YYYY-MM"),
    (["--month", "2026-10", "--tz", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
    (["--month", "2026-10", "--deadline-days", "0"], "deadline days"),
])
def test_cli_errors_are_one_line(counties, argv, words):
    out = cli("report", "--db", counties["dbs"]["sqlite"], "--hall", "hall-a", *argv, ok=False)
    lines = out.stderr.decode().strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1 and lines[0].startswith("county-server: error:"), lines
    assert words in lines[0]


def test_cli_an_unknown_hall_has_no_events(counties):
    text = cli("report", "--db", counties["dbs"]["sqlite"], "--hall", "hall-nobody", "--month", "2026-10")
    assert "no events" in text.stdout.decode()
    doc = json.loads(cli("report", "--db", counties["dbs"]["sqlite"], "--hall", "hall-nobody",
                         "--month", "2026-10", "--format", "json").stdout)
    assert doc["events"] == 0 and doc["totals"]["services"] == 0
