"""Charts for the report pages as inline SVG, drawn here on the server: no
script, no library to fetch, and they print to PDF as they are shown.

Each function takes plain figures and returns one <svg> element; every mark
carries its figure in a data- attribute and a <title> (the tooltip), so a
test or a screen reader finds the numbers without reading pixels.
"""
from html import escape

from protocol import LEVELS

# Level colours from 非常满意 (green) to 非常不满意 (red); also used in the tables' legends.
LEVEL_COLOURS = dict(zip(LEVELS, ("#1a9850", "#91cf60", "#d9ef8b", "#fc8d59", "#d73027")))
INK, GRID, BAR = "#333", "#ddd", "#4575b4"
FONT = 'font-family="Noto Sans CJK SC, WenQuanYi Micro Hei, sans-serif"'


def _svg(width, height, label, body):
    return ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %d %d" width="%d" style="max-width: 100%%; '
            'height: auto" role="img" aria-label="%s" %s font-size="12">%s</svg>' % (
                width, height, width, escape(label), FONT, "".join(body)))


def _nice_max(n):
    """A round axis top at or above n whose quarters are whole numbers."""
    if n <= 4:
        return 4
    step = 10 ** (len(str(int(n))) - 1)
    for m in (1, 2, 4, 8, 10):
        if n <= m * step:
            return m * step
    return 10 * step


def daily_trend(days, label="每日评价与办件"):
    """Bars: ratings per day, their 差评 part in red; a line: services per day."""
    w, h, left, bottom, top = 760, 240, 40, 30, 12
    n = max(len(days), 1)
    peak = _nice_max(max([max(d["rated"], d["services"]) for d in days] + [0]))
    slot = (w - left - 10) / n
    y = (lambda v: top + (h - top - bottom) * (1 - v / peak))
    out = []
    for i in range(5):
        v = peak * i / 4
        out.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/>' % (left, w - 10, y(v), y(v), GRID))
        out.append('<text x="%d" y="%.1f" text-anchor="end" fill="%s">%g</text>' % (left - 4, y(v) + 4, INK, v))
    points = []
    for i, d in enumerate(days):
        x = left + i * slot
        bar_w = max(slot * 0.7, 1)
        good = d["rated"] - d["bad"]
        out.append('<rect class="rated" data-date="%s" data-rated="%d" data-bad="%d" x="%.1f" y="%.1f" width="%.1f" '
                   'height="%.1f" fill="%s"><title>%s 评价 %d, 差评 %d, 办件 %d</title></rect>' % (
                       d["date"], d["rated"], d["bad"], x, y(good), bar_w, y(0) - y(good), BAR,
                       d["date"], d["rated"], d["bad"], d["services"]))
        if d["bad"]:
            out.append('<rect class="bad" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>' % (
                x, y(d["rated"]), bar_w, y(good) - y(d["rated"]), LEVEL_COLOURS["very_dissatisfied"]))
        points.append("%.1f,%.1f" % (x + bar_w / 2, y(d["services"])))
        if i % max(1, n // 10) == 0 or i == n - 1:
            out.append('<text x="%.1f" y="%d" text-anchor="middle" fill="%s">%s</text>' % (
                x + bar_w / 2, h - 10, INK, d["date"][8:]))
    if points:
        out.append('<polyline class="services" points="%s" fill="none" stroke="#fdae61" stroke-width="2"/>'
                   % " ".join(points))
    return _svg(w, h, label, out)


def levels(counts, names, label="评价等级分布"):
    """One horizontal bar per level, with its count and share."""
    total = sum(counts.values())
    w, row, left = 520, 28, 90
    h = row * len(LEVELS) + 10
    peak = max(list(counts.values()) + [1])
    out = []
    for i, lv in enumerate(LEVELS):
        n = counts.get(lv, 0)
        y = 5 + i * row
        bw = (w - left - 120) * n / peak
        share = "%.1f%%" % (100.0 * n / total) if total else "-"
        out.append('<text x="%d" y="%d" text-anchor="end" fill="%s">%s</text>' % (left - 6, y + 17, INK,
                                                                                   escape(names[lv])))
        out.append('<rect class="level" data-level="%s" data-count="%d" x="%d" y="%d" width="%.1f" height="%d" '
                   'fill="%s"><title>%s %d</title></rect>' % (lv, n, left, y + 4, bw, row - 8, LEVEL_COLOURS[lv],
                                                              escape(names[lv]), n))
        out.append('<text x="%.1f" y="%d" fill="%s">%d (%s)</text>' % (left + bw + 6, y + 17, INK, n, share))
    return _svg(w, h, label, out)


def stacked_bars(rows, names, label):
    """Per row (a window, a hall): a bar of its ratings split by level, and
    its satisfaction rate at the end. rows: [(name, levels dict, pct)]."""
    w, row, left = 760, 26, 110
    h = row * max(len(rows), 1) + 34
    peak = max([sum(lv.values()) for _, lv, _ in rows] + [1])
    out = []
    for i, (name, lv, pct) in enumerate(rows):
        y = 5 + i * row
        out.append('<text x="%d" y="%d" text-anchor="end" fill="%s">%s</text>' % (left - 6, y + 16, INK, escape(name)))
        x = left
        for level in LEVELS:
            n = lv.get(level, 0)
            bw = (w - left - 110) * n / peak
            if n:
                out.append('<rect class="part" data-row="%s" data-level="%s" data-count="%d" x="%.1f" y="%d" '
                           'width="%.1f" height="%d" fill="%s"><title>%s %s %d</title></rect>' % (
                               escape(name), level, n, x, y + 3, bw, row - 8, LEVEL_COLOURS[level], escape(name),
                               escape(names[level]), n))
            x += bw
        out.append('<text x="%.1f" y="%d" fill="%s">%d · %s</text>' % (
            x + 6, y + 16, INK, sum(lv.values()), "满意率 %.2f%%" % pct if pct is not None else "无评价"))
    ly = h - 14
    for i, level in enumerate(LEVELS):
        lx = left + i * 110
        out.append('<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d" fill="%s">%s</text>' % (
            lx, ly - 10, LEVEL_COLOURS[level], lx + 16, ly, INK, escape(names[level])))
    return _svg(w, h, label, out)
