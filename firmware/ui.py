"""What the citizen and the staff see: four display rows and the service light.

Rows are 16 px apart so either the 8x8 ASCII font or the 16 px Chinese
bitmap font fits. The screen is redrawn only when a row changes (the timer
changes it once a second while serving).

Service light (时限内亮绿灯、临近时亮黄灯、超时限亮红灯): green within the
target for the window (or the item), yellow from warn_pct of it, red past
it. Targets are seconds, from the agent's retained config.
"""
import time

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int
    const = int

# desk.py's states, as private consts (no globals, no names on the device).
_SERVING = const(1)
_PAUSED = const(2)
_PROMPT = const(3)
_THANKS = const(4)
_REASONS = const(5)
_RETRY_MS = const(1000)    # while the panel is not answering, try a frame this often

# Fixed texts (tools/fontgen.py puts their Chinese into the font subset,
# with the config's). Code, not a table: a dict of tuples of strs would be
# objects the device keeps in its heap for good; these are made when drawn.
def texts(state, busy=False, ready=True):
    """The two state rows: English, then Chinese."""
    if busy:
        return "Busy, sorry", "系统繁忙"
    if not ready:
        return "Connecting", "正在连接"     # a new or reflashed device waits for the agent's config
    if state == _SERVING:
        return "Serving", "服务中"
    if state == _PAUSED:
        return "Paused", "暂停服务"
    if state == _PROMPT:
        return "Please rate", "请您评价"
    if state == _THANKS:
        return "Thank you", "谢谢您的评价"
    return "Welcome", "欢迎"


def light(desk, config, now):
    if desk.state != _SERVING and desk.state != _PAUSED and desk.state != _PROMPT:
        return None
    targets = config.get("targets") or {}
    target = targets.get(desk.item or "", targets.get("default", 900))
    if type(target) is not int or target <= 0:
        target = 900
    s = desk.service(now) // 1000
    if s >= target:
        return "red"
    if s * 100 >= target * config.get("warn_pct", 80):
        return "yellow"
    return "green"


def rows(desk, config, window, now, busy=False, ready=True):
    state = desk.state
    if state == _REASONS and not busy:
        # The 差评 reason screen: three reasons a page, each on the row of the
        # button that chooses it (1-3), √ when chosen; 4 turns the page, 5 sends.
        choices = config.get("reasons") or ()
        first, n = desk.first, len(choices)
        r = ["%d/%d 4翻页 5提交" % (first // 3 + 1, (n + 2) // 3)]
        for j in range(first, first + 3):
            if j < n:
                s = choices[j]
                r.append(str(j - first + 1) + ("√" if desk.reasons >> j & 1 else " ") + s[s.find(" ") + 1:])
            else:
                r.append("")
        return tuple(r)
    head = window
    no = config.get("staff_no")
    if no:
        head = head + " No." + no
    line2, line3 = texts(state, busy, ready)
    staff = config.get("staff") or ""
    if (state == _SERVING or state == _PAUSED) and not busy:
        s = desk.service(now) // 1000
        line2 = "%s %02d:%02d" % (line2, s // 60, s % 60)
        if desk.ticket:           # the number called to this window, for the citizen to check
            staff = desk.ticket + " " + staff
    return (head, staff, line2, line3)


class Screen:
    def __init__(self, board):
        self.board = board
        self.shown = None
        self.color = 0      # never a real colour: the first update sets the light
        self._key = self._sec = -1
        self._config = None
        self._retry = 0     # ticks: when a frame the panel missed is sent again

    def update(self, desk, config, window, now, busy=False, ready=True):
        # Called every 10 ms: build the rows only when something shown can
        # have changed (state, flags, the second, the config), to keep the
        # small heap free of churn.
        key = (desk.state << 3) | (busy << 1) | ready | (desk.first << 8) | (desk.reasons << 12)
        sec = desk.service(now) // 1000
        if key == self._key and sec == self._sec and config is self._config and (
                self.shown is not None or time.ticks_diff(now, self._retry) < 0):
            return
        r = rows(desk, config, window, now, busy, ready)
        if r != self.shown:
            d = self.board.display
            d.fill(0)
            y = 0
            for s in r:
                if s:
                    d.text(s, 0, y, 1)
                y += 16
            d.show()
            # A panel that did not take the frame (loose cable, re-plugged) gets it
            # again in a second: an idle screen would otherwise stay blank for good.
            self.shown = None if "display" in self.board.faults else r
            self._retry = time.ticks_add(now, _RETRY_MS)
        c = light(desk, config, now)
        if c != self.color:
            self.board.set_light(c)
            self.color = c
        # Only now: a draw that failed (MemoryError) is tried again next time.
        self._key, self._sec, self._config = key, sec, config
