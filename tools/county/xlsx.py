"""The monthly report (report.py) as an Excel workbook for the office: one
sheet per view (窗口, 经办人, 差评整改清单, and 排队叫号 when the hall has queues), the header frozen and filtered,
columns as wide as their Chinese text, and real numbers: counts as numbers,
rates as percentages with two decimals (the JSON's values, 75.0 = 75 %),
durations as Excel times, dates as dates. The figures are the JSON's.
"""
import datetime
import io

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from protocol import CHANNELS, LEVELS
from tools.county import waits
from tools.county.report_text import (CHANNEL_ZH, LEVEL_ZH, NONE, QUEUE_COUNTS, QUEUE_SCOPE_ZH, QUEUE_WAITS,
                                      width)

COUNT, RATE, DURATION = "#,##0", '0.00"%"', "[h]:mm:ss"
DATETIME, DATE = "yyyy-mm-dd hh:mm:ss", "yyyy-mm-dd"
DAY_MS = 86400000
HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
# (header, key in a figures dict, number format)
FIGURES = ([("办件数", "services", COUNT), ("未评价", "unrated", COUNT), ("评价数", "rated", COUNT),
            ("参评率", "participation_pct", RATE), ("满意率", "satisfaction_pct", RATE), ("差评", "bad", COUNT)]
           + [(LEVEL_ZH[lv], ("levels", lv), COUNT) for lv in LEVELS]
           + [("平均办理时长", "service_avg_ms", DURATION), ("最长办理时长", "service_max_ms", DURATION)]
           + [("渠道:" + CHANNEL_ZH[c], ("channels", c), COUNT) for c in CHANNELS])
BAD = [("评价时间", DATETIME), ("设备无时钟", None), ("窗口", None), ("经办人编号", None), ("事项编码", None),
       ("办件编号", None), ("评价", None), ("评价等级", None), ("原因", None), ("设备", None), ("序号", COUNT),
       ("整改期限", DATE)]


def workbook(report):
    """The report -> .xlsx bytes."""
    wb = Workbook()
    wb.properties.title = "%s %s 好差评月报" % (report["hall"], report["month"])
    wb.properties.creator = "qinglian county-server"
    _figures(wb.active, report, "windows", "window", "窗口")
    _figures(wb.create_sheet(), report, "staff", "staff", "经办人编号")
    _bad(wb.create_sheet(), report)
    if report.get("queues"):
        _queues(wb.create_sheet(), report)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _figures(ws, report, part, key, first):
    ws.title = {"windows": "窗口", "staff": "经办人"}[part]
    rows = [([r[key] or NONE] + [_value(r, k, fmt) for _, k, fmt in FIGURES]) for r in report[part]]
    rows.append(["合计"] + [_value(report["totals"], k, fmt) for _, k, fmt in FIGURES])
    _sheet(ws, [first] + [h for h, _, _ in FIGURES], rows, [None] + [fmt for _, _, fmt in FIGURES], report)
    for cell in ws[ws.max_row]:
        cell.font = Font(bold=True)


def _value(figures, key, fmt):
    v = figures[key[0]][key[1]] if isinstance(key, tuple) else figures[key]
    if v is not None and fmt == DURATION:
        return v / DAY_MS
    return v


def _bad(ws, report):
    ws.title = "差评整改清单"
    rows = [[datetime.datetime.strptime(b["time"], "%Y-%m-%d %H:%M:%S"), "是" if b["no_clock"] else "",
             b["window"] or NONE, b["staff"] or NONE, b["item"] or "", b["case"] or "", LEVEL_ZH[b["level"]],
             b["level"], "、".join(b["reasons"]), b["device"], b["seq"],
             datetime.date.fromisoformat(b["deadline"])] for b in report["bad"]]
    _sheet(ws, [h for h, _ in BAD], rows, [f for _, f in BAD], report)


def _queues(ws, report):
    """排队叫号: one row per queue for the month, then per day and per hour; waits as times."""
    ws.title = "排队叫号"
    rows = [[QUEUE_SCOPE_ZH[scope], q, w or ""] + [f[k] for _, k in QUEUE_COUNTS]
            + [None if f[k] is None else f[k] * 1000 / DAY_MS for _, k in QUEUE_WAITS]
            for scope in waits.SCOPES for q, w, f in waits.rows(report["queues"], scope)]
    _sheet(ws, ["范围", "队列", "日期或时段"] + [h for h, _ in QUEUE_COUNTS + QUEUE_WAITS], rows,
           [None, None, None] + [COUNT] * len(QUEUE_COUNTS) + [DURATION] * len(QUEUE_WAITS), report)


def _sheet(ws, header, rows, formats, report):
    ws.append(header)
    for r in rows:
        ws.append(r)
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = HEADER_FILL
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    for row in ws.iter_rows(min_row=2):
        for cell, fmt in zip(row, formats):
            if fmt:
                cell.number_format = fmt
    for i, h in enumerate(header, 1):
        cells = [h] + [_shown(r[i - 1], formats[i - 1]) for r in rows]
        # CJK characters take two columns (report_text.width); a little air on each side.
        ws.column_dimensions[get_column_letter(i)].width = min(max(width(c) for c in cells) + 3, 60)
    ws.freeze_panes = "B2"
    ws.auto_filter.ref = "A1:%s%d" % (get_column_letter(len(header)), max(len(rows) + 1, 1))
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_title_rows = "1:1"
    ws.oddHeader.center.text = "%s  %s 好差评月报  %s" % (report["hall"], report["month"], ws.title)
    ws.oddFooter.center.text = "第 &P 页, 共 &N 页"


def _shown(v, fmt):
    """Roughly the text Excel shows for a cell: what its column must fit."""
    if v is None:
        return ""
    if fmt == DURATION:
        return "000:00:00"
    if fmt == RATE:
        return "100.00%"
    if isinstance(v, datetime.datetime):
        return "2026-10-31 23:30:00"
    if isinstance(v, datetime.date):
        return "2026-10-31"
    return str(v)
