"""Rating later by QR link (一事一评, channel `qr`): the phone-sized page at
`/r/<hall>/<kind>/<id>/<sig>` (links.py). The signature names one case or
ticket of one hall; it can be rated once, and once more as the 追评 (second
rating), then the link is spent. A forged signature is refused.

A 追评 of a 差评 whose follow-up is at 已反馈 also closes that follow-up
(the citizen's follow-up rating, followup.py). Plain HTML forms, no script:
it works on any phone browser.
"""
import json
import time
import urllib.parse
from html import escape

from fastapi import Request
from fastapi.responses import HTMLResponse

from tools.county import batch, followup, links, profiles, tables
from tools.county.report_text import LEVEL_ZH

MAX_FORM = 4096
STYLE = """
body { font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif; margin: 0; padding: 16px;
       color: #222; max-width: 480px; }
h1 { font-size: 20px; margin: 0 0 6px; } .sub { color: #666; font-size: 14px; margin-bottom: 14px; }
fieldset { border: 0; padding: 0; margin: 0 0 14px; } legend { font-weight: bold; margin-bottom: 6px; }
label.level { display: block; border: 1px solid #ccd; border-radius: 8px; padding: 12px; margin: 6px 0;
              font-size: 18px; }
label.reason { display: block; padding: 6px 0; font-size: 15px; }
button { width: 100%; font-size: 18px; padding: 14px; border: 0; border-radius: 8px; background: #2458a6;
         color: #fff; }
.note { color: #666; font-size: 12px; margin-top: 14px; }
"""


def routes(app, county):
    def check(hall, kind, rest):
        # The id may hold a "/" (percent-encoded in the link, decoded by the time it is routed).
        ident, _, sig = rest.rpartition("/")
        if ident and county.link_secret and links.valid(county.link_secret, hall, kind, ident, sig):
            return ident
        return None

    @app.get("/r/{hall}/{kind}/{rest:path}", response_class=HTMLResponse, include_in_schema=False)
    def page(request: Request, hall: str, kind: str, rest: str):
        ident = check(hall, kind, rest)
        if ident is None:
            return INVALID()
        n = _count(county.store, hall, kind, ident)
        if n >= 2:
            return _page("已评价", "<h1>已评价</h1><p>此%s已评价并追评过, 感谢您的评价。</p>" % _what(kind), 409)
        return _page("评价", _form(kind, ident, n))

    @app.post("/r/{hall}/{kind}/{rest:path}", response_class=HTMLResponse, include_in_schema=False)
    async def rate(request: Request, hall: str, kind: str, rest: str):
        ident = check(hall, kind, rest)
        if ident is None:
            return INVALID()
        raw = await request.body()
        if len(raw) > MAX_FORM:
            raise batch.Refused(413, "form too large")
        form = urllib.parse.parse_qs(raw.decode("utf-8", "replace"))
        level = (form.get("level") or [None])[0]
        if level not in LEVEL_ZH:
            return _page("评价", "<p>请选择一个评价等级。</p>" + _form(kind, ident, _count(county.store, hall, kind,
                                                                                   ident)), 400)
        known = {r["code"] for r in profiles.reasons()}
        reasons = [r for r in form.get("reasons", []) if r in known][:8] if level in followup.BAD else []
        n = store_rating(county, hall, kind, ident, level, reasons, int(time.time() * 1000))
        if n is None:
            return _page("已评价", "<h1>已评价</h1><p>此%s已评价并追评过, 不能再次评价。</p>" % _what(kind), 409)
        return _page("谢谢", "<h1>感谢您的%s</h1><p>您的评价: %s</p>" % ("追评" if n == 2 else "评价",
                                                                      escape(LEVEL_ZH[level])))


def INVALID():
    return _page("链接无效", "<h1>链接无效</h1><p>这个评价链接无效或已被改动。请扫描办件通知或小票上的二维码。</p>", 404)


def _what(kind):
    return "办件" if kind == "case" else "服务"


def _count(store, hall, kind, ident):
    with tables.read(store) as db:
        return tables.rows(db, store, "SELECT count(*) FROM county_ratings WHERE hall = ? AND kind = ? AND ref = ?",
                           (hall, kind, ident))[0][0]


def store_rating(county, hall, kind, ident, level, reasons, now_ms):
    """The first rating, else the 追评; None when both are given. Returns n."""
    store, rules = county.store, county.rules
    case = item = window = None
    if kind == "case":
        case = ident
        with tables.read(store) as db:
            got = tables.rows(db, store, 'SELECT item, "window" FROM cases WHERE hall = ? AND "case" = ?', (hall, ident))
        if got:
            item, window = got[0]
    for n in (1, 2):
        with tables.write(store) as db:
            cur = db.execute(tables.q(store, "INSERT INTO county_ratings (hall, kind, ref, n, level, channel, reasons, "
                                             't, item, "case", "window", staff) VALUES (?, ?, ?, ?, ?, \'qr\', ?, ?, ?, '
                                             "?, ?, NULL) ON CONFLICT DO NOTHING RETURNING n"),
                             (hall, kind, ident, n, level, json.dumps(reasons), now_ms, item, case, window))
            if cur.fetchone() is None:
                continue
        if n == 2:
            _close_followup(county, hall, kind, ident, level, now_ms)
        return n
    return None


def _close_followup(county, hall, kind, ident, level, now_ms):
    """A 追评 by the link closes its 差评's follow-up when it waits for one (已反馈)."""
    fid = "q:%s:%s" % (kind, ident)
    try:
        followup.sync(county.store, county.rules, hall)
        followup.step(county.store, county.rules, hall, fid, "followed_up", "citizen (qr)", "追评 by the rating link",
                      False, now_ms, level)
    except followup.Refused:
        pass                        # no 差评, or not yet answered: the 追评 stands on its own


def _form(kind, ident, n):
    levels = "".join('<label class="level"><input type="radio" name="level" value="%s" required> %s</label>'
                     % (lv, zh) for lv, zh in LEVEL_ZH.items())
    reasons = "".join('<label class="reason"><input type="checkbox" name="reasons" value="%s"> %s</label>'
                      % (escape(r["code"]), escape(r["zh"])) for r in profiles.reasons())
    return ('<h1>%s</h1><div class="sub">%s %s</div><form method="post">'
            '<fieldset><legend>您对本次服务是否满意?</legend>%s</fieldset>'
            '<fieldset><legend>如不满意, 请选择原因 (可多选)</legend>%s</fieldset>'
            '<button type="submit">提交评价</button></form>'
            '<p class="note">评价匿名: 不记录您的身份信息。</p>' % (
                "追评" if n == 1 else "请您评价", "办件编号" if kind == "case" else "排队号", escape(ident),
                levels, reasons))


def _page(title, body, status=200):
    return HTMLResponse('<!doctype html>\n<html lang="zh-CN"><head><meta charset="utf-8"><title>%s</title>'
                        '<meta name="viewport" content="width=device-width, initial-scale=1"><style>%s</style>'
                        '</head><body>%s</body></html>\n' % (escape(title), STYLE, body), status)
