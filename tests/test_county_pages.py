"""The monthly report for people: the XLSX opened with openpyxl (on SQLite and
PostgreSQL) and the HTML page and county overview opened in real headless
Chromium, each checked against the JSON report's figures. A screenshot and a
PDF of each page are kept under build/artefacts/ for a human to look at.
`county-server report --format xlsx|html` writes the same workbook and page."""
import datetime
import io
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request

import openpyxl
import pytest

from test_county_report import MANAGERS, TOKENS, counties, county, hall_a_events, report  # noqa: F401 (fixtures)
from tools.county.report_text import LEVEL_ZH, width
from tools.county.testing import COUNTY_TOKEN
from tools.procs import ROOT, VENV_BIN

COUNTY = os.path.join(VENV_BIN, "county-server")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTEFACTS = os.path.join(ROOT, "build", "artefacts")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--lang=zh-CN"]
needs_chromium = pytest.mark.skipif(not CHROMIUM, reason="chromium is installed by make (tools/system-deps.sh)")


def fetch(url, token):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.headers, r.read()


def browse(url, tmp_path, *extra):
    out = subprocess.run([CHROMIUM] + FLAGS + ["--user-data-dir=%s" % (tmp_path / "chromium"),
                                               "--virtual-time-budget=5000"] + list(extra) + [url],
                         capture_output=True, text=True, timeout=120)
    return out.stdout


def with_password(url, user, token):
    """The URL a person's browser would send after the password prompt."""
    return url.replace("://", "://%s:%s@" % (user, token), 1)


def keep(tmp_path, url, name):
    """A screenshot and a PDF of the page, as test artefacts."""
    os.makedirs(ARTEFACTS, exist_ok=True)
    shot, pdf = os.path.join(ARTEFACTS, name + ".png"), os.path.join(ARTEFACTS, name + ".pdf")
    for path in (shot, pdf):
        if os.path.exists(path):
            os.remove(path)
    browse(url, tmp_path, "--window-size=1280,2400", "--screenshot=%s" % shot)
    browse(url, tmp_path, "--print-to-pdf=%s" % pdf, "--no-pdf-header-footer")
    assert os.path.getsize(shot) > 20000, "screenshot too small to show the page"
    with open(pdf, "rb") as f:
        assert f.read(5) == b"%PDF-"
    assert os.path.getsize(pdf) > 10000


def figure_row(f):
    """A figures dict in the XLSX's column order."""
    return ([f["services"], f["unrated"], f["rated"], f["participation_pct"], f["satisfaction_pct"], f["bad"]]
            + [f["levels"][lv] for lv in LEVEL_ZH] + [f["service_avg_ms"], f["service_max_ms"]]
            + [f["channels"][c] for c in f["channels"]])


def cell_value(v):
    """What a cell read back holds, in the JSON's units: Excel times -> ms."""
    return round(v.total_seconds() * 1000) if isinstance(v, datetime.timedelta) else v


def test_the_xlsx_holds_the_json_figures_formatted_for_the_office(county):  # noqa: F811
    r = report(county)
    status, headers, data = fetch(county.url + "/v1/halls/hall-a/report.xlsx?month=2026-10", MANAGERS["hall-a"])
    assert status == 200 and headers["Content-Type"].startswith("application/vnd.openxmlformats")
    assert 'filename="hall-a-2026-10.xlsx"' in headers["Content-Disposition"]
    assert_workbook_is_the_report(data, r)


def assert_workbook_is_the_report(data, r):
    """The XLSX's figures are the JSON report's, formatted for the office."""
    wb = openpyxl.load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["窗口", "经办人", "差评整改清单"]
    for sheet, part, key in (("窗口", "windows", "window"), ("经办人", "staff", "staff")):
        ws = wb[sheet]
        rows = list(ws.iter_rows(values_only=True))
        assert rows[0][:7] == ((("窗口" if part == "windows" else "经办人编号"),) +
                               ("办件数", "未评价", "评价数", "参评率", "满意率", "差评"))
        want = [[x[key] or "(无)"] + figure_row(x) for x in r[part]] + [["合计"] + figure_row(r["totals"])]
        got = [list(row) for row in rows[1:]]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g[0] == w[0]
            assert [cell_value(v) for v in g[1:]] == w[1:], (sheet, g, w)
        assert ws.freeze_panes == "B2" and ws.auto_filter.ref.startswith("A1:")
        assert ws["E2"].number_format == '0.00"%"' and ws["B2"].number_format == "#,##0"
        assert ws["M2"].number_format == "[h]:mm:ss"
        assert ws.cell(ws.max_row, 1).font.b                           # the 合计 row stands out
        for col in range(1, ws.max_column + 1):                        # Chinese headers fit their columns
            letter = openpyxl.utils.get_column_letter(col)
            assert ws.column_dimensions[letter].width >= width(str(ws.cell(1, col).value)), letter
    bad = list(wb["差评整改清单"].iter_rows(values_only=True))
    assert bad[0][0] == "评价时间" and len(bad) == 1 + len(r["bad"]) == 3
    for row, b in zip(bad[1:], r["bad"]):
        assert row[0] == datetime.datetime.strptime(b["time"], "%Y-%m-%d %H:%M:%S")
        assert (row[2], row[3], row[5], row[7], row[9], row[10]) == (
            b["window"], b["staff"], b["case"] or None, b["level"], b["device"], b["seq"])
        assert row[11].date().isoformat() == b["deadline"]
    assert wb["差评整改清单"]["L2"].number_format == "yyyy-mm-dd"


def test_the_cli_writes_the_workbook_and_page_the_api_serves(counties, tmp_path):  # noqa: F811
    def cli(*argv, ok=True):
        out = subprocess.run([COUNTY, "report", "--db", counties["dbs"]["sqlite"], "--hall", "hall-a",
                              "--month", "2026-10"] + list(argv), capture_output=True, timeout=60)
        assert (out.returncode == 0) == ok, out.stderr.decode()
        return out
    r = json.loads(cli("--format", "json").stdout)
    book = tmp_path / "hall-a.xlsx"
    cli("--format", "xlsx", "--out", str(book))
    assert_workbook_is_the_report(book.read_bytes(), r)
    page = tmp_path / "hall-a.html"
    cli("--format", "html", "--out", str(page))
    served = fetch(counties["procs"]["sqlite"].url + "/halls/hall-a/report?month=2026-10", MANAGERS["hall-a"])[2]
    assert page.read_bytes() == served == cli("--format", "html").stdout
    for argv, words in ((["--format", "xlsx"], "needs --out"),
                        (["--format", "xlsx", "--list", "bad", "--out", str(book)], "--list is for")):
        lines = cli(*argv, ok=False).stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("county-server: error:") and words in lines[0], lines


def test_the_xlsx_needs_a_token(counties):  # noqa: F811
    c = counties["procs"]["sqlite"]
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch(c.url + "/v1/halls/hall-a/report.xlsx?month=2026-10", MANAGERS["hall-b"])
    assert e.value.code == 401
    assert fetch(c.url + "/v1/halls/hall-a/report.xlsx?month=2026-10", COUNTY_TOKEN)[0] == 200


def figure(dom, name):
    m = re.search(r'data-figure="%s">([^<]*)<' % name, dom)
    return m and m.group(1)


@needs_chromium
def test_the_report_page_in_a_browser_shows_the_json_figures(counties, tmp_path):  # noqa: F811
    c = counties["procs"]["sqlite"]
    r = report(c)
    url = c.url + "/halls/hall-a/report?month=2026-10"
    dom = browse(with_password(url, "hall-a", MANAGERS["hall-a"]), tmp_path, "--dump-dom")
    assert "hall-a 2026年10月 好差评月报" in dom, dom[:500]
    t = r["totals"]
    assert (figure(dom, "services"), figure(dom, "rated"), figure(dom, "participation_pct"),
            figure(dom, "satisfaction_pct"), figure(dom, "bad"), figure(dom, "events")) == (
        str(t["services"]), str(t["rated"]), "%.2f%%" % t["participation_pct"], "%.2f%%" % t["satisfaction_pct"],
        str(t["bad"]), str(r["events"]))
    # The charts carry their figures: the daily trend, the levels, the windows.
    days = {d: (int(a), int(b)) for d, a, b in re.findall(
        r'data-date="([\d-]+)" data-rated="(\d+)" data-bad="(\d+)"', dom)}
    assert days == {d["date"]: (d["rated"], d["bad"]) for d in r["days"]} and len(days) == 31
    assert {lv: int(n) for lv, n in re.findall(r'class="level" data-level="(\w+)" data-count="(\d+)"', dom)} \
        == t["levels"]
    parts = re.findall(r'class="part" data-row="([^"]+)" data-level="(\w+)" data-count="(\d+)"', dom)
    a01 = next(w for w in r["windows"] if w["window"] == "A01")
    assert {lv: int(n) for row, lv, n in parts if row == "A01"} == {k: v for k, v in a01["levels"].items() if v}
    assert [(d, s) for d, s in re.findall(r'data-device="([\w-]+)" data-seq="(\d+)"', dom)] == [
        (b["device"], str(b["seq"])) for b in r["bad"]]
    keep(tmp_path, with_password(url, "hall-a", MANAGERS["hall-a"]), "county-report-hall-a-2026-10")


@needs_chromium
def test_the_county_overview_across_halls(counties, tmp_path):  # noqa: F811
    c = counties["procs"]["sqlite"]
    o = c.get("/v1/county/report?month=2026-10", COUNTY_TOKEN)
    assert [h["hall"] for h in o["halls"]] == ["hall-a", "hall-b", "hall-c"]      # hall-c has sent nothing
    for h in o["halls"]:
        t = report(c, h["hall"])["totals"]
        assert {k: h[k] for k in ("services", "unrated", "rated", "participation_pct", "satisfaction_pct",
                                  "bad", "levels")} == {k: t[k] for k in ("services", "unrated", "rated",
                                                                          "participation_pct",
                                                                          "satisfaction_pct", "bad", "levels")}
    assert o["totals"]["rated"] == sum(h["rated"] for h in o["halls"])
    # Hall tokens do not open it; the county token opens every hall's page too.
    with pytest.raises(urllib.error.HTTPError) as e:
        fetch(c.url + "/v1/county/report?month=2026-10", MANAGERS["hall-a"])
    assert e.value.code == 401 and "county token" in e.value.read().decode()
    assert fetch(c.url + "/halls/hall-b/report?month=2026-10", COUNTY_TOKEN)[0] == 200
    url = with_password(c.url + "/county?month=2026-10", "county", COUNTY_TOKEN)
    dom = browse(url, tmp_path, "--dump-dom")
    assert "2026年10月 全县好差评概况" in dom
    assert figure(dom, "rated") == str(o["totals"]["rated"]) and figure(dom, "bad") == str(o["totals"]["bad"])
    assert re.findall(r'<tr data-row="([\w-]+)"><td><a href="/halls/', dom) == ["hall-a", "hall-b", "hall-c"]
    keep(tmp_path, url, "county-overview-2026-10")


@needs_chromium
def test_a_browser_without_the_password_is_refused(counties, tmp_path):  # noqa: F811
    c = counties["procs"]["sqlite"]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(c.url + "/halls/hall-a/report?month=2026-10", timeout=10)
    assert e.value.code == 401 and "Basic" in str(e.value.headers.get_all("WWW-Authenticate"))
    wrong = browse(with_password(c.url + "/halls/hall-a/report?month=2026-10", "hall-b", MANAGERS["hall-b"]),
                   tmp_path, "--dump-dom")
    assert "好差评月报" not in wrong


@needs_chromium
def test_the_api_docs_page_works_offline(counties, tmp_path):  # noqa: F811
    c = counties["procs"]["sqlite"]
    dom = browse(c.url + "/docs", tmp_path, "--dump-dom", "--virtual-time-budget=10000")
    assert "Qinglian county batch API" in dom and "/v1/halls/{hall}/batches" in dom
    assert "cdn" not in fetch(c.url + "/docs", TOKENS["hall-a"])[2].decode().lower()
