"""What a kiosk prints, kept on the agent: the case status slip (办件状态),
a copy of the 受理/办结 notice, and the kiosk's receipt (回执), each with
the case's rating QR code, rendered by python-escpos into the bytes a
58/80 mm ESC/POS thermal printer takes:

    data = slips.render("case_status", case, hall="h1", as_of_ms=..., now_ms=...)

The stream uses only ESC @ (reset), FS & (Chinese mode: text is GB18030),
ESC ! / ESC E / ESC a (size, bold, alignment), LF, GS ( k (the QR code:
model 2, module size, error level M, store, print), ESC d (feed) and
GS V 0 (cut); protocol/SPEC.md 'Print jobs' lists them for the kiosk.

Every value printed was checked where it entered (edge_agent/cases.py:
short text without control characters, enums, dates, an http(s) link), so
nothing here can put a control byte into the printer's stream.
"""
import datetime
import os

DOCS = ("case_status", "form", "receipt")     # for a case (`print`); a ticket's slip comes with its `ticket` reply
STATE_WORDS = {"accepted": "已受理", "in_review": "审查中", "suspended": "暂停计时",
               "completed": "已办结", "ready": "待领取"}
LIGHT_WORDS = {"green": "绿灯 · 正常", "yellow": "黄灯 · 临近时限", "red": "红灯 · 已超期", None: "—"}
_DONE = ("completed", "ready")

_RESET, _CHINESE, _LF = b"\x1b@", b"\x1c&", b"\n"


def _printer(cache_dir):
    # python-escpos caches its printer profiles as a pickle, by default in a new
    # temporary directory per process; one fixed private place instead (under the
    # unit's ProtectSystem=strict only the store's directory is writable).
    if cache_dir:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        os.environ.setdefault("ESCPOS_CAPABILITIES_PICKLE_DIR", cache_dir)
    from escpos.printer import Dummy       # imported at the first job: Pillow and friends cost the Pi RAM
    return Dummy()


def warm(cache_dir=None):
    """Import python-escpos ahead of the first job (seconds on a Pi: the kiosk
    waiting for its reply would give up)."""
    _printer(cache_dir)


def _day(ms):
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M")


class _Slip:
    """Lines of a slip on a python-escpos printer; GB18030 text in Chinese mode."""

    def __init__(self, cache_dir):
        self.p = _printer(cache_dir)
        self.p._raw(_RESET + _CHINESE)

    def title(self, text):
        self.p.set(align="center", bold=True, double_height=True, double_width=True)
        self.line(text)
        self.p.set(align="left", bold=False, normal_textsize=True)
        self.p._raw(_LF)

    def line(self, text=""):
        # text() goes through single-byte code pages only; in Chinese mode the
        # printer reads GB18030, written through the printer's own raw write.
        self.p._raw(text.encode("gb18030") + _LF)

    def field(self, name, value):
        self.line("%s:%s" % (name, value if value is not None else "—"))

    def qr(self, url, caption):
        self.p._raw(_LF)
        self.p.set(align="center")
        self.p.qr(url, native=True, size=6, center=False)
        self.line(caption)
        self.p.set(align="left")

    def end(self):
        self.p.cut()
        return self.p.output


def render(doc, case, hall, as_of_ms, now_ms, cache_dir=None, job=None):
    """The ESC/POS bytes of `doc` (one of DOCS) for `case` (a cached case row);
    `cache_dir`: where python-escpos may keep its profile cache; `job`: the
    print job's id, printed as the slip's number (凭条号) so that a slip in
    the hand matches one `print` event at the hall."""
    s = _Slip(cache_dir)
    done = case["state"] in _DONE
    if doc == "case_status":
        s.title("办件状态")
    elif doc == "form":
        s.title("办结通知书(副本)" if done else "受理通知书(副本)")
    elif doc == "receipt":
        s.title("自助服务回执")
    else:
        raise ValueError("unknown document %r" % doc)
    s.field("办件编号", case["case"])
    s.field("事项", case["item_name"])
    s.field("事项编码", case["item"])
    s.field("受理日期", case["accepted"])
    if doc != "receipt":
        s.field("状态", STATE_WORDS[case["state"]])
        if not done:
            # null: the county cannot date it yet (the date fell in a year without a holiday schedule)
            s.field("承诺办结", case["promised"] or "待定")
            s.field("时限", LIGHT_WORDS[case["light"]])
    if doc == "form":
        s.line()
        s.line("本副本由自助终端打印,仅供查阅;" + ("请凭原件领取结果。" if done else "以原通知书为准。"))
    s.line()
    s.field("数据截至", _day(as_of_ms))
    s.field("打印时间", _day(now_ms))
    s.field("大厅", hall)
    if job is not None:
        s.field("凭条号", job)
    if case["rate_url"]:          # a county without a link secret lists cases without one: no QR
        s.qr(case["rate_url"], "扫码评价本次办件(一事一评)")
    return s.end()


def render_ticket(t, hall, now_ms, cache_dir=None, job=None):
    """The queue ticket's slip (排队凭条): `t` is the `ticket` reply with the
    queue's name (`name`): number, queue, people ahead, estimated wait,
    time, and the ticket's rating QR when the agent holds the link key."""
    s = _Slip(cache_dir)
    s.title("排队凭条")
    s.p.set(align="center", bold=True, double_height=True, double_width=True)
    s.line(t["ticket"])
    s.p.set(align="left", bold=False, normal_textsize=True)
    s.field("业务", t["name"])
    s.field("前面等候", "%d 人" % t["ahead"])
    s.field("预计等候", "约 %d 分钟" % -(-t["wait_s"] // 60))
    s.field("取号时间", _day(t["issued"]))
    s.field("大厅", hall)
    if job is not None:
        s.field("凭条号", job)
    s.line("请留意叫号,过号请重新取号。")
    if t.get("rate_url"):
        s.qr(t["rate_url"], "扫码评价本次服务(一次一评)")
    return s.end()
