"""The monthly report (report.py) for people: aligned terminal tables with the
labels a hall manager uses, and CSV that Excel opens with its Chinese intact.

CSV is one table per file: the figures (one row for the hall, then one per
window, then one per staff member), with `--list bad` the follow-up list, or
with `--list queues` the queue figures (waits.py: per queue, day and hour).
"""
import csv
import io
import unicodedata

from protocol import CHANNELS, LEVELS
from tools.county import waits

LEVEL_ZH = dict(zip(LEVELS, ("非常满意", "满意", "基本满意", "不满意", "非常不满意")))
CHANNEL_ZH = dict(zip(CHANNELS, ("评价器", "自助终端", "二维码", "电脑端", "移动端", "电话", "短信")))
NONE = "(无)"            # a QR rating carries no window, a kiosk no staff
SCOPE_ZH = {"totals": "全厅", "windows": "窗口", "staff": "经办人"}
# The queue figures (waits.py) as every format shows them: (header, key), counts then waits in seconds.
QUEUE_SCOPE_ZH = {"month": "全月", "day": "按日", "hour": "按时段"}
QUEUE_WHEN_ZH = {"month": None, "day": "日期", "hour": "时段"}
QUEUE_COUNTS = [("取号", "issued"), ("叫号", "called"), ("过号", "no_show"), ("重呼", "recalled"),
                ("转移", "transferred")]
QUEUE_WAITS = [("等候 p50", "wait_p50_s"), ("等候 p90", "wait_p90_s"), ("最长等候", "wait_max_s")]
QUEUE_NOTE = "等候 = 取号到首次叫号; p50/p90 为最近秩百分位"


def width(s):
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def table(header, rows, right_from=1):
    """Columns padded to the widest cell; from `right_from` on, right-aligned."""
    widths = [max(width(r[i]) for r in [header] + rows) for i in range(len(header))]
    out = []
    for r in [header] + rows:
        cells = []
        for i, (cell, w) in enumerate(zip(r, widths)):
            pad = " " * (w - width(cell))
            cells.append(pad + cell if i >= right_from else cell + pad)
        out.append("  ".join(cells))
    return out


def duration(ms):
    if ms is None:
        return "-"
    s = (ms + 500) // 1000
    h, m = s // 3600, s // 60 % 60
    return "%d:%02d:%02d" % (h, m, s % 60) if h else "%d:%02d" % (m, s % 60)


def wait(s):
    """A wait in whole seconds (waits.py) as duration() shows it."""
    return duration(None if s is None else s * 1000)


def percent(p):
    return "-" if p is None else "%.2f%%" % p


def _channels_used(report):
    return [c for c in CHANNELS if report["totals"]["channels"][c]]


def _figure_cells(f, channels):
    return ([str(f["services"]), str(f["unrated"]), str(f["rated"]), percent(f["participation_pct"]),
             percent(f["satisfaction_pct"]), str(f["bad"])]
            + [str(f["levels"][lv]) for lv in LEVELS]
            + [duration(f["service_avg_ms"]), duration(f["service_max_ms"])]
            + [str(f["channels"][c]) for c in channels])


def _figures(report, part, key, first):
    channels = _channels_used(report)
    header = ([first, "办件数", "未评价", "评价数", "参评率", "满意率", "差评"]
              + [LEVEL_ZH[lv] for lv in LEVELS] + ["平均时长", "最长时长"]
              + ["渠道:" + CHANNEL_ZH[c] for c in channels])
    rows = [[r[key] or NONE] + _figure_cells(r, channels) for r in report[part]]
    rows.append(["合计"] + _figure_cells(report["totals"], channels))
    return table(header, rows)


def _bad_list(report):
    header = ["评价时间", "窗口", "经办人编号", "事项编码", "办件编号", "评价", "原因", "设备", "序号", "整改期限"]
    rows = [[b["time"] + ("*" if b["no_clock"] else " "), b["window"] or NONE, b["staff"] or NONE,
             b["item"] or "-", b["case"] or "-", LEVEL_ZH[b["level"]], ",".join(b["reasons"]) or "-",
             b["device"], str(b["seq"]), b["deadline"]] for b in report["bad"]]
    return table(header, rows, right_from=len(header))


def text(report):
    """The report as a terminal page; parts missing from `report` (see
    narrow()) are left out."""
    y, m = report["month"].split("-")
    out = ["%s  %s年%s月 好差评月报  (%s, %s 至 %s)" % (
        report["hall"], y, int(m), report["tz"], report["from"][:16].replace("T", " "),
        report["to"][:16].replace("T", " "))]
    if not report["events"]:
        out.append("本月没有评价或办件记录 (no events for this hall and month)")
        if not report.get("queues"):
            return "\n".join(out) + "\n"
    if report["no_clock"]:
        out.append("其中 %d 条记录产生时设备尚无时钟 (t = 0), 按县级平台收到的时间计入本月" % report["no_clock"])
    if "totals" in report:
        t = report["totals"]
        out += ["", "全厅: 办件 %d, 评价 %d, 参评率 %s, 满意率 %s, 差评 %d" % (
            t["services"], t["rated"], percent(t["participation_pct"]),
            percent(t["satisfaction_pct"]), t["bad"])]
        out += ["", "按窗口"] + _figures(report, "windows", "window", "窗口")
        out += ["", "按经办人"] + _figures(report, "staff", "staff", "经办人编号")
    if report.get("queues"):
        out += ["", "排队叫号  (%s)" % QUEUE_NOTE]
        for scope in ("month", "day", "hour"):
            out += ([] if scope == "month" else ["", "排队叫号 " + QUEUE_SCOPE_ZH[scope]]) + _queue_table(
                report["queues"], scope)
    if "bad" in report:
        out += ["", "差评整改清单  (%d 条; 整改期限 = 评价日起 %d 个工作日, 按国务院公布的节假日与调休安排计工作日)"
                % (len(report["bad"]), report["deadline_days"])]
        if report["bad"]:
            out += _bad_list(report)
            if any(b["no_clock"] for b in report["bad"]):
                out.append("* 设备无时钟: 时间为县级平台收到的时间")
        else:
            out.append("本月无差评")
    o = report.get("overdue_cases")
    if o is not None and "bad" in report:
        out += ["", "超时办件  (%d 件, 截至 %s)" % (len(o["cases"]), o["as_of"])]
        if o["cases"]:
            out += table(["部门", "窗口", "在办超时", "超时办结"],
                         [[g["department"] or NONE, g["window"] or NONE, str(g["open"]), str(g["late"])]
                          for g in o["groups"]], right_from=2)
            out += [""] + table(["部门", "窗口", "办件编号", "事项编码", "状态", "受理", "承诺", "办结", "超期"],
                                [[c["department"] or NONE, c["window"] or NONE, c["case"], c["item"], c["state"],
                                  c["accepted"], c["promised"], c["completed"] or "-", str(c["overdue_days"])]
                                 for c in o["cases"]], right_from=8)
        else:
            out.append("本月无超时办件")
    return "\n".join(out) + "\n"


def _queue_table(queues, scope):
    when = QUEUE_WHEN_ZH[scope]
    rows = [[q] + ([w] if when else []) + [str(f[k]) for _, k in QUEUE_COUNTS]
            + [wait(f[k]) for _, k in QUEUE_WAITS]
            for q, w, f in waits.rows(queues, scope)]
    header = ["队列"] + ([when] if when else []) + [h for h, _ in QUEUE_COUNTS + QUEUE_WAITS]
    return table(header, rows, right_from=2 if when else 1)


def _csv(header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def figures_csv(report):
    header = (["大厅", "月份", "范围", "窗口或经办人编号", "办件数", "未评价数", "评价数", "参评率(%)",
               "满意率(%)", "差评数"] + [LEVEL_ZH[lv] for lv in LEVELS]
              + ["平均办理时长(秒)", "最长办理时长(秒)"] + ["渠道:" + CHANNEL_ZH[c] for c in CHANNELS])
    rows = []
    for scope, name in (("totals", None), ("windows", "window"), ("staff", "staff")):
        for f in ([report["totals"]] if name is None else report[scope]):
            seconds = ["" if f[k] is None else (f[k] + 500) // 1000
                       for k in ("service_avg_ms", "service_max_ms")]
            rates = ["" if f[k] is None else "%.2f" % f[k] for k in ("participation_pct", "satisfaction_pct")]
            rows.append([report["hall"], report["month"], SCOPE_ZH[scope], (f[name] or NONE) if name else ""]
                        + [f["services"], f["unrated"], f["rated"]] + rates + [f["bad"]]
                        + [f["levels"][lv] for lv in LEVELS] + seconds
                        + [f["channels"][c] for c in CHANNELS])
    return _csv(header, rows)


def queues_csv(report):
    """The queue figures (排队叫号): the month per queue, then each day, then each hour."""
    header = (["大厅", "月份", "范围", "队列", "日期或时段"] + [h + "数" for h, _ in QUEUE_COUNTS]
              + [h.replace(" ", "") + "(秒)" for h, _ in QUEUE_WAITS])
    rows = [[report["hall"], report["month"], QUEUE_SCOPE_ZH[scope], q, w or ""] + [f[k] for _, k in QUEUE_COUNTS]
            + ["" if f[k] is None else f[k] for _, k in QUEUE_WAITS]
            for scope in waits.SCOPES for q, w, f in waits.rows(report.get("queues") or [], scope)]
    return _csv(header, rows)


def bad_csv(report):
    header = ["大厅", "评价时间", "设备无时钟", "窗口", "经办人编号", "事项编码", "办件编号", "评价",
              "评价等级", "原因", "设备", "序号", "整改期限"]
    rows = [[report["hall"], b["time"], "是" if b["no_clock"] else "", b["window"] or "", b["staff"] or "",
             b["item"] or "", b["case"] or "", LEVEL_ZH[b["level"]], b["level"], ";".join(b["reasons"]),
             b["device"], b["seq"], b["deadline"]] for b in report["bad"]]
    return _csv(header, rows)


def narrow(report, part):
    """Only the figures ('figures', the queues' among them), only the follow-up
    list ('bad') or only the queue figures ('queues')."""
    drop = {"figures": ("bad",), "bad": ("totals", "windows", "staff", "days", "queues"),
            "queues": ("totals", "windows", "staff", "days", "bad", "overdue_cases", "figures")}.get(part, ())
    return {k: v for k, v in report.items() if k not in drop}
