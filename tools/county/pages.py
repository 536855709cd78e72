"""The reports for people: a hall's month as an HTML page with charts (and as
XLSX), and the county's overview across halls. Pages are plain HTML with
inline SVG (charts.py): no script, printable to PDF from the browser.

A browser asks for a user name and password (HTTP Basic): the hall id and
its token for a hall's pages, `county` and the county token for the
overview (which may open every hall's page too).
"""
import datetime
from html import escape
from zoneinfo import ZoneInfo

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, Response

from tools.county import charts, report, schema, waits, xlsx
from tools.county.app import (COUNTY_SECURITY, DEADLINE, HALL, HALL_SECURITY, MONTH, TZ, answer, need_county,
                              need_reports)
from tools.county.report_text import (CHANNEL_ZH, LEVEL_ZH, NONE, QUEUE_COUNTS, QUEUE_NOTE, QUEUE_SCOPE_ZH,
                                     QUEUE_WAITS, QUEUE_WHEN_ZH, duration, percent, wait)

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PAGE_MONTH = Query(None, pattern=r"^2\d{3}-(0[1-9]|1[0-2])$", description="YYYY-MM; this month when left out")


def routes(app, county):
    @app.get("/v1/halls/{hall}/report.xlsx", responses={**schema.errors(400, 401, 404, 503), 200: {
        "content": {XLSX: {"schema": {"type": "string", "format": "binary"}}},
        "description": "the report as an Excel workbook"}},
        openapi_extra={"security": HALL_SECURITY + COUNTY_SECURITY},
        summary="the hall's monthly report as XLSX (窗口, 经办人, 差评整改清单)")
    def report_xlsx(request: Request, hall: str = HALL, month: str = MONTH, tz: str = TZ,
                    deadline_days: int = DEADLINE):
        need_reports(county, request, hall)
        r = report.build(county.store, hall, month, tz, deadline_days, county.rules)
        name = "%s-%s.xlsx" % (hall, month)
        return Response(xlsx.workbook(r), media_type=XLSX,
                        headers={"Content-Disposition": 'attachment; filename="%s"' % name})

    @app.get("/halls/{hall}/report", response_class=HTMLResponse,
             responses=schema.errors(400, 401, 404, 503),
             openapi_extra={"security": HALL_SECURITY + COUNTY_SECURITY},
             summary="the hall's monthly report as a page with charts, printable to PDF")
    def report_page(request: Request, hall: str = HALL, month: str = PAGE_MONTH, tz: str = TZ,
                    deadline_days: int = DEADLINE):
        need_reports(county, request, hall)
        r = report.build(county.store, hall, month or this_month(tz), tz, deadline_days, county.rules)
        return HTMLResponse(hall_page(r))

    @app.get("/v1/county/report", response_model=schema.Overview, responses=schema.errors(400, 401, 503),
             openapi_extra={"security": COUNTY_SECURITY}, summary="the month across halls (county token)")
    def overview_json(request: Request, month: str = MONTH, tz: str = TZ):
        need_county(county, request)
        return answer(request, 200, report.overview(county.store, halls(county), month, tz))

    @app.get("/county", response_class=HTMLResponse, responses=schema.errors(400, 401, 503),
             openapi_extra={"security": COUNTY_SECURITY}, summary="the county overview page (county token)")
    def overview_page(request: Request, month: str = PAGE_MONTH, tz: str = TZ):
        need_county(county, request)
        return HTMLResponse(county_page(report.overview(county.store, halls(county), month or this_month(tz), tz)))


def halls(county):
    """Every hall with a token or with events: a silent hall shows as zeros."""
    return sorted(set(county.tokens.halls) | set(county.store.halls()))


def this_month(tz):
    try:
        return datetime.datetime.now(ZoneInfo(tz)).strftime("%Y-%m")
    except Exception:                           # report.period() will say what is wrong with tz
        return datetime.date.today().strftime("%Y-%m")


STYLE = """
body { font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif; color: #222; margin: 24px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 26px 0 8px; }
.sub { color: #666; margin-bottom: 16px; }
.kpis { display: flex; gap: 12px; flex-wrap: wrap; }
.kpi { border: 1px solid #ccd; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.kpi b { display: block; font-size: 24px; } .kpi span { color: #555; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; margin-top: 6px; }
th, td { border: 1px solid #ccd; padding: 3px 8px; } th { background: #ddebf7; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } tr.total td { font-weight: bold; }
.charts { display: grid; grid-template-columns: 1fr; gap: 8px; max-width: 800px; }
.note { color: #666; font-size: 12px; } a { color: #2458a6; }
form { margin: 8px 0 0; } .noprint { }
@media print {
  body { margin: 0; } .noprint { display: none; }
  h2, .chart, table { break-inside: avoid; }
  @page { size: A4 landscape; margin: 12mm; }
}
"""


def _page(title, body):
    return ('<!doctype html>\n<html lang="zh-CN"><head><meta charset="utf-8"><title>%s</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><style>%s</style></head>'
            '<body>%s</body></html>\n' % (escape(title), STYLE, "".join(body)))


def _kpis(f, events=None):
    items = [("services", "办件数", str(f["services"])), ("rated", "评价数", str(f["rated"])),
             ("participation_pct", "参评率", percent(f["participation_pct"])),
             ("satisfaction_pct", "满意率", percent(f["satisfaction_pct"])), ("bad", "差评", str(f["bad"]))]
    if events is not None:
        items.insert(0, ("events", "记录", str(events)))
    return '<div class="kpis">%s</div>' % "".join(
        '<div class="kpi"><b data-figure="%s">%s</b><span>%s</span></div>' % (k, v, name) for k, name, v in items)


def _figures_table(rows, key, first, totals):
    channels = [c for c in CHANNEL_ZH if totals["channels"][c]]
    head = ([first, "办件数", "未评价", "评价数", "参评率", "满意率", "差评"] + [LEVEL_ZH[lv] for lv in LEVEL_ZH]
            + ["平均时长", "最长时长"] + ["渠道:" + CHANNEL_ZH[c] for c in channels])

    def cells(f):
        return ([f["services"], f["unrated"], f["rated"], percent(f["participation_pct"]),
                 percent(f["satisfaction_pct"]), f["bad"]] + [f["levels"][lv] for lv in LEVEL_ZH]
                + [duration(f["service_avg_ms"]), duration(f["service_max_ms"])] + [f["channels"][c] for c in channels])
    out = ['<table data-table="%s"><tr>%s</tr>' % (key, "".join("<th>%s</th>" % escape(h) for h in head))]
    for r in rows:
        out.append('<tr data-row="%s"><td>%s</td>%s</tr>' % (
            escape(r[key] or ""), escape(r[key] or NONE), "".join('<td class="n">%s</td>' % c for c in cells(r))))
    out.append('<tr class="total" data-row="合计"><td>合计</td>%s</tr></table>' % "".join(
        '<td class="n">%s</td>' % c for c in cells(totals)))
    return "".join(out)


def _bad_table(r):
    if not r["bad"]:
        return '<p>本月无差评</p>'
    head = ["评价时间", "窗口", "经办人编号", "事项编码", "办件编号", "评价", "原因", "设备", "序号", "整改期限"]
    out = ['<table data-table="bad"><tr>%s</tr>' % "".join("<th>%s</th>" % h for h in head)]
    for b in r["bad"]:
        cells = [b["time"] + (" *" if b["no_clock"] else ""), b["window"] or NONE, b["staff"] or NONE,
                 b["item"] or "-", b["case"] or "-", LEVEL_ZH[b["level"]], "、".join(b["reasons"]) or "-",
                 b["device"], b["seq"], b["deadline"]]
        out.append('<tr data-device="%s" data-seq="%d">%s</tr>' % (
            escape(b["device"]), b["seq"], "".join("<td>%s</td>" % escape(str(c)) for c in cells)))
    out.append("</table>")
    if any(b["no_clock"] for b in r["bad"]):
        out.append('<p class="note">* 设备无时钟: 时间为县级平台收到的时间</p>')
    return "".join(out)


def _month_form(month, action, extra=""):
    return ('<form class="noprint" method="get" action="%s">月份 <input type="month" name="month" value="%s"> '
            '%s<button>查看</button></form>' % (escape(action), escape(month), extra))


def hall_page(r):
    """A hall's month: figures, charts, the tables and the follow-up list."""
    y, m = r["month"].split("-")
    t = r["totals"]
    title = "%s %s年%s月 好差评月报" % (r["hall"], y, int(m))
    windows = [(w["window"] or NONE, w["levels"], w["satisfaction_pct"]) for w in r["windows"]]
    query = "month=%s&tz=%s&deadline_days=%d" % (r["month"], r["tz"], r["deadline_days"])
    body = [
        "<h1>%s</h1>" % escape(title),
        '<div class="sub">%s 至 %s (%s) · 记录 <span data-figure="events">%d</span> 条%s</div>' % (
            escape(r["from"][:10]), escape(r["to"][:10]), escape(r["tz"]), r["events"],
            " · 其中 %d 条设备无时钟, 按收到时间计入" % r["no_clock"] if r["no_clock"] else ""),
        _kpis(t),
        _month_form(r["month"], "/halls/%s/report" % r["hall"]),
        '<p class="noprint"><a href="/v1/halls/%s/report.xlsx?%s">下载 Excel (XLSX)</a> · '
        '<a href="/v1/halls/%s/report?%s">JSON</a></p>' % (escape(r["hall"]), escape(query), escape(r["hall"]),
                                                          escape(query)),
        '<div class="charts">',
        '<h2>每日趋势</h2><div class="chart" id="trend">%s</div>' % charts.daily_trend(r["days"]),
        '<p class="note">柱: 每日评价数 (红色为差评); 线: 每日办件数</p>',
        '<h2>评价等级分布</h2><div class="chart" id="levels">%s</div>' % charts.levels(t["levels"], LEVEL_ZH),
        '<h2>各窗口评价</h2><div class="chart" id="windows">%s</div>' % charts.stacked_bars(
            windows, LEVEL_ZH, "各窗口评价"),
        "</div>",
        "<h2>按窗口</h2>", _figures_table(r["windows"], "window", "窗口", t),
        "<h2>按经办人</h2>", _figures_table(r["staff"], "staff", "经办人编号", t),
    ] + _queues(r) + [
        '<h2>差评整改清单 (<span data-figure="bad_list">%d</span> 条)</h2>' % len(r["bad"]),
        '<p class="note">整改期限 = 评价日起 %d 个工作日, 按国务院公布的节假日与调休安排计工作日</p>' % r["deadline_days"],
        _bad_table(r),
    ] + _overdue_cases(r)
    return _page(title, body)


def _queues(r):
    """排队叫号: per queue for the month, each day and each hour (waits.py's figures)."""
    if not r.get("queues"):
        return []
    out = ["<h2>排队叫号</h2>", '<p class="note">%s</p>' % escape(QUEUE_NOTE)]
    for scope in waits.SCOPES:
        when = QUEUE_WHEN_ZH[scope]
        head = ["队列"] + ([when] if when else []) + [h for h, _ in QUEUE_COUNTS + QUEUE_WAITS]
        out.append('<h3>%s</h3><table data-table="queues-%s"><tr>%s</tr>' % (
            QUEUE_SCOPE_ZH[scope], scope, "".join("<th>%s</th>" % h for h in head)))
        for q, w, f in waits.rows(r["queues"], scope):
            cells = [f[k] for _, k in QUEUE_COUNTS] + [wait(f[k]) for _, k in QUEUE_WAITS]
            out.append('<tr data-row="%s"><td>%s</td>%s%s</tr>' % (
                escape(q + ("/" + w if w else "")), escape(q), "<td>%s</td>" % escape(w) if w else "",
                "".join('<td class="n">%s</td>' % c for c in cells)))
        out.append("</table>")
    return out


def _overdue_cases(r):
    """超时办件 by department and window (present when the report was built with the county's rules)."""
    o = r.get("overdue_cases")
    if o is None:
        return []
    out = ['<h2>超时办件 (<span data-figure="overdue_cases">%d</span> 件, 截至 %s)</h2>' % (len(o["cases"]),
                                                                                   escape(o["as_of"]))]
    if not o["cases"]:
        return out + ["<p>本月无超时办件</p>"]
    out.append('<table data-table="overdue_groups"><tr><th>部门</th><th>窗口</th><th>在办超时</th><th>超时办结</th></tr>')
    for g in o["groups"]:
        out.append('<tr><td>%s</td><td>%s</td><td class="n">%d</td><td class="n">%d</td></tr>' % (
            escape(g["department"] or NONE), escape(g["window"] or NONE), g["open"], g["late"]))
    out.append("</table>")
    head = ["部门", "窗口", "办件编号", "事项编码", "事项名称", "状态", "受理日期", "承诺日期", "办结日期", "超期工作日"]
    out.append('<table data-table="overdue_cases"><tr>%s</tr>' % "".join("<th>%s</th>" % h for h in head))
    for c in o["cases"]:
        cells = [c["department"] or NONE, c["window"] or NONE, c["case"], c["item"], c["item_name"] or "-",
                 c["state"], c["accepted"], c["promised"], c["completed"] or "-", c["overdue_days"]]
        out.append('<tr data-case="%s">%s</tr>' % (escape(c["case"]), "".join(
            "<td>%s</td>" % escape(str(x)) for x in cells)))
    out.append("</table>")
    return out


def county_page(o):
    """The county's month: one row and one bar per hall."""
    y, m = o["month"].split("-")
    title = "%s年%s月 全县好差评概况" % (y, int(m))
    head = ["大厅", "记录", "办件数", "未评价", "评价数", "参评率", "满意率", "差评"] + list(LEVEL_ZH.values())
    rows = []
    for h in o["halls"]:
        link = "/halls/%s/report?month=%s&tz=%s" % (h["hall"], o["month"], o["tz"])
        cells = [h["events"], h["services"], h["unrated"], h["rated"], percent(h["participation_pct"]),
                 percent(h["satisfaction_pct"]), h["bad"]] + [h["levels"][lv] for lv in LEVEL_ZH]
        rows.append('<tr data-row="%s"><td><a href="%s">%s</a></td>%s</tr>' % (
            escape(h["hall"]), escape(link), escape(h["hall"]), "".join('<td class="n">%s</td>' % c for c in cells)))
    t = o["totals"]
    total = [t["events"], t["services"], t["unrated"], t["rated"], percent(t["participation_pct"]),
             percent(t["satisfaction_pct"]), t["bad"]] + [t["levels"][lv] for lv in LEVEL_ZH]
    body = [
        "<h1>%s</h1>" % escape(title),
        '<div class="sub">%s 至 %s (%s) · %d 个大厅</div>' % (escape(o["from"][:10]), escape(o["to"][:10]),
                                                            escape(o["tz"]), len(o["halls"])),
        _kpis(t, t["events"]),
        _month_form(o["month"], "/county"),
        '<h2>各大厅评价</h2><div class="chart" id="halls">%s</div>' % charts.stacked_bars(
            [(h["hall"], h["levels"], h["satisfaction_pct"]) for h in o["halls"]], LEVEL_ZH, "各大厅评价"),
        '<h2>评价等级分布</h2><div class="chart" id="levels">%s</div>' % charts.levels(t["levels"], LEVEL_ZH),
        '<h2>各大厅</h2><table data-table="halls"><tr>%s</tr>%s<tr class="total" data-row="合计"><td>全县</td>%s'
        '</tr></table>' % ("".join("<th>%s</th>" % h for h in head), "".join(rows),
                           "".join('<td class="n">%s</td>' % c for c in total)),
    ]
    return _page(title, body)
