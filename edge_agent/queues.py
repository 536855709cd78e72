"""The hall's queues (排队叫号): tickets from the kiosks, calls from the
windows, the lobby's call board.

    queues.add(store, "A", "综合受理"); queues.serve(store, "W03", ["A", "B"])
    ops = QueueOps(cfg, link_key=lambda: (key, base)); ops.register(requests)

Each queue has a letter, the first character of its tickets (A012);
numbers start again at 1 each hall-local day ([queue] timezone). A number
is taken in the transaction that records what it went to (an online
ticket, or a block a kiosk reserved for the time it cannot ask), and the
device hears of it only after that commit: a restart of the agent never
gives a number twice, and a number the kiosk never heard of (the agent
died before the reply) is still on record.

A window calls from the queues it serves: 绿色通道 (priority) tickets
first, then appointments whose slot has begun, then by arrival. Requests
are taken one at a time by one thread (edge_agent/requests.py), each in
its own write transaction, so two windows never call the same ticket.

What happens to a ticket goes to the county as `ticket` events of the
agent's own (device `_queue`, protocol/kiosk.py: issued, called with
wait_ms, recalled, no_show, transferred), stored like a device's events and
sent by the uplink; a kiosk's offline tickets arrive as its own `ticket`
events and join their queue here (ingest calls join_offline).
"""
import datetime
import hashlib
import hmac
import secrets
import zoneinfo

import protocol
from protocol.errors import ProtocolError
from protocol.events import check_field
from edge_agent.errors import AgentError
from edge_agent.requests import RequestRefused

QUEUE_DEVICE = "_queue"     # the agent's own device id for its queue events
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_RATE_WINDOW_MS = 30 * 60 * 1000   # calls in the last half hour set the estimate


class QueueError(AgentError):
    """A queue setting a person typed that breaks the rules."""


# -- values, checked where they enter ------------------------------------
def letter(value):
    text = value.strip().upper() if type(value) is str else value
    if type(text) is not str or len(text) != 1 or text not in LETTERS:
        raise QueueError("queue %r: one letter A-Z (the tickets' first character)" % (value,))
    return text


def name(value):
    text = value.strip() if type(value) is str else value
    try:
        return check_field("ticket", "queue", text)
    except ProtocolError:
        raise QueueError("queue name %r: 1-64 characters, no control characters" % (value,))


def window_id(value):
    from edge_agent import registry
    return registry._id("window", value)


def tz(cfg):
    return zoneinfo.ZoneInfo(cfg["queue"]["timezone"])


def day(now_ms, zone):
    """The hall-local day of a time: '2026-11-30'."""
    return datetime.datetime.fromtimestamp(now_ms / 1000, zone).strftime("%Y-%m-%d")


def hall_day(store, now_ms, zone):
    """The day whose numbers tickets take now: the hall-local day of the
    agent's clock, never a day before the latest one numbers were taken
    for. The Pi has no real-time clock: after a power cut it runs on the
    time it last saved until NTP answers, and a clock set back must not
    start a day's numbers again (two citizens holding A012) nor hide the
    tickets waiting today. (A clock set ahead past midnight starts the next
    day early, as midnight would: README 'Limits'.)"""
    return max(day(now_ms, zone), store.queues.latest_day() or "")


def day_start_ms(day_text, zone):
    d = datetime.datetime.strptime(day_text, "%Y-%m-%d").replace(tzinfo=zone)
    return int(d.timestamp() * 1000)


def ticket_name(queue, number):
    return "%s%03d" % (queue, number)


def parse_ticket(text):
    """'A012' -> ('A', 12), or None."""
    if type(text) is not str or len(text) < 2 or text[0] not in LETTERS or not text[1:].isdigit():
        return None
    return text[0], int(text[1:])


def ticket_id(day_text, ticket):
    """The ticket's name in the hall for ever: '20261130-A012'."""
    return day_text.replace("-", "") + "-" + ticket


def rate_url(base, hall, key, tid):
    """The citizen's rating link for a ticket (county: tools/county/links.py)."""
    sig = hmac.new(key, ("ticket:" + tid).encode(), hashlib.sha256).digest()[:16].hex()
    return "%s/r/%s/ticket/%s/%s" % (base.rstrip("/"), hall, tid, sig)


# -- settings (the CLI's) -------------------------------------------------
def add(store, queue, queue_name, now):
    queue, queue_name = letter(queue), name(queue_name)
    with store.atomic():
        if not store.queues.add(queue, queue_name, now):
            raise QueueError("queue %s exists already (`queue rename` changes its name)" % queue)
    return queue, queue_name


def rename(store, queue, queue_name):
    queue, queue_name = letter(queue), name(queue_name)
    with store.atomic():
        if not store.queues.rename(queue, queue_name):
            raise QueueError("no queue %s (see `edge-agent queue list`)" % queue)
    return queue, queue_name


def serve(store, window, letters):
    window = window_id(window)
    letters = sorted(set(letter(q) for q in letters))
    with store.atomic():
        for q in letters:
            if not store.queues.exists(q):
                raise QueueError("no queue %s (see `edge-agent queue list`)" % q)
        store.queues.serve(window, letters)
        store.bump_registry()          # the window's evaluator learns it calls (config `calls`)
    return window, letters


def item_case(item, case, refuse):
    """A ticket's 事项编码 and 办件编号 (either may be None), by the rule of the
    session and rating fields they end up in; refuse(name) makes the error."""
    for name, v in (("item", item), ("case", case)):
        if v is not None:
            try:
                check_field("session", name, v)
            except ProtocolError:
                raise refuse(name)
    return item, case


def appoint(store, code, queue, slot_ms, minutes, now, item=None, case=None):
    try:
        check_field("ticket", "id", code)
    except ProtocolError:
        raise QueueError("appointment code %r: 1-64 characters, no control characters" % (code,))
    item_case(item, case, lambda name: QueueError("appointment %s: 1-64 characters, no control characters" % name))
    queue = letter(queue)
    if type(minutes) is not int or not 1 <= minutes <= 24 * 60:
        raise QueueError("appointment slot: 1-1440 minutes, not %r" % (minutes,))
    with store.atomic():
        if not store.queues.exists(queue):
            raise QueueError("no queue %s (see `edge-agent queue list`)" % queue)
        if not store.queues.add_appointment(code, queue, slot_ms, slot_ms + minutes * 60000, now, item, case):
            raise QueueError("appointment %s exists already" % code)
    return code, queue


# -- what the agent records for the county ---------------------------------
def emit(store, now, fields):
    """One `ticket` event of the agent's own, in the caller's transaction."""
    seq = int(store.meta("queue_seq", 0)) + 1
    store.set_meta("queue_seq", seq)
    ev = {"v": 1, "device": QUEUE_DEVICE, "seq": seq, "kind": "ticket", "t": now}
    ev.update(fields)
    key = store.meta("queue_key")
    if key is None:       # made with the first: the county checks structure, the agent signs as devices do
        key = secrets.token_hex(32)
        store.set_meta("queue_key", key)
    wire = protocol.encode(ev, bytes.fromhex(key)).decode()
    store.events.add_new([(QUEUE_DEVICE, seq, "ticket", now, wire, now)])


def _ticket_fields(t, action, **more):
    f = {"ticket": t["ticket"], "queue": t["queue"], "action": action, "id": ticket_id(t["day"], t["ticket"])}
    f.update((k, v) for k, v in more.items() if v is not None)
    return f


def join_offline(store, device, ev, received_ms, zone):
    """A kiosk's `ticket` event (one it handed out from its block) joins its
    queue; called by ingest in its transaction, for a new event only.
    Returns the ticket's id, or None (counted) when it is not one of the
    device's blocks."""
    if ev.get("action") not in (None, "issued"):
        store.bump("queue_offline_refused:action")
        return None
    parsed = parse_ticket(ev["ticket"])
    if parsed is None or parsed[0] != ev["queue"]:
        store.bump("queue_offline_refused:ticket")
        return None
    issued = ev["t"] or received_ms
    d = store.queues.block_day(device, parsed[0], parsed[1], day(issued, zone) if ev["t"] else None)
    if d is None:
        store.bump("queue_offline_refused:no_block")
        return None
    tid = store.queues.add_ticket(d, ev["ticket"], parsed[0], "block", device, issued)
    if tid is None:
        store.bump("queue_offline_refused:duplicate")
    return tid


# -- the requests ---------------------------------------------------------
class QueueOps:
    """The queue's request operations (protocol SPEC 'Requests')."""

    def __init__(self, cfg, link_key=None, clock=None, kiosk=None):
        """link_key() -> (key bytes, county base url) or None: signs rate_url.
        kiosk: edge_agent.kiosk.Kiosk, which renders a ticket's slip as a
        print job when the kiosk asks with "print": true."""
        self.cfg, self.hall, self.zone = cfg, cfg["hall"], tz(cfg)
        self.link_key = link_key or (lambda: None)
        self.kiosk = kiosk
        from edge_agent.store import now_ms
        self.clock = clock or now_ms

    def register(self, requests):
        requests.handle("queues", self.op_queues)
        requests.handle("ticket", self.op_ticket)
        requests.handle("block", self.op_block)
        requests.handle("next", self.op_next, after=self._call)
        requests.handle("recall", self.op_recall)
        requests.handle("noshow", self.op_noshow, after=self._call)
        requests.handle("transfer", self.op_transfer)

    def _queue(self, store, msg, field="queue"):
        q = msg.get(field)
        if type(q) is not str or len(q) != 1 or q not in LETTERS or not store.queues.exists(q):
            raise RequestRefused("unknown_queue")
        return q

    def op_queues(self, store, device, msg):
        now = self.clock()
        today = hall_day(store, now, self.zone)
        waiting = store.queues.waiting(today)
        out = []
        for q in store.queues.all():
            n = waiting.get(q["queue"], 0)
            # name_gb: the name as the printer's GB18030 bytes (hex), which a
            # kiosk has no codec for; it prints them on an offline ticket.
            out.append({"queue": q["queue"], "name": q["name"], "waiting": n,
                        "wait_s": estimate_s(store, self.cfg, q["queue"], n, now),
                        "name_gb": q["name"].encode("gb18030").hex()})
        if self.kiosk is not None:
            self.kiosk.warm()        # a ticket with its slip may follow
        return {"queues": out, "hall": self.hall}

    def op_ticket(self, store, device, msg):
        now = self.clock()
        today = hall_day(store, now, self.zone)
        priority = msg.get("priority", False)
        if type(priority) is not bool:
            raise RequestRefused("bad_value", "priority")
        code, slot = msg.get("appointment"), None
        # What the ticket is for, when the asking device knows (a kiosk that looked a case up).
        item, case = item_case(msg.get("item"), msg.get("case"), lambda name: RequestRefused("bad_value", name))
        if code is not None:
            try:
                check_field("ticket", "id", code)
            except ProtocolError:
                raise RequestRefused("bad_value", "appointment")
            a = store.queues.appointment(code)
            if a is None:
                raise RequestRefused("unknown_appointment")
            if a["ticket_id"] is not None:      # asked again (a lost reply): the same ticket
                return self._issued(store, store.queues.ticket(a["ticket_id"]), now)
            if now > a["until_ms"]:
                raise RequestRefused("appointment_expired")
            queue, slot = a["queue"], a["slot_ms"]
            item, case = item or a["item"], case or a["case"]
        else:
            queue = self._queue(store, msg)
        number = store.queues.take(queue, today, 1)[0]
        ticket = ticket_name(queue, number)
        # Its place in the calling order: never before a ticket given earlier,
        # whatever the clock says (one set back would put it first).
        order = max(now, store.queues.last_order(today))
        tid = store.queues.add_ticket(today, ticket, queue, "agent", device["device"], now, priority, code, slot,
                                      item, case, order)
        if tid is None:      # a kiosk's offline ticket with this number: cannot be, blocks are reserved
            raise RequestRefused("number_taken")
        if code is not None:
            store.queues.use_appointment(code, tid)
        t = store.queues.ticket(tid)
        emit(store, now, _ticket_fields(t, "issued", priority=True if priority else None, item=item))
        reply = self._issued(store, t, now)
        if msg.get("print") is True and self.kiosk is not None:
            # The ticket's slip as a print job in this same transaction: the
            # kiosk fetches it by its chunks and prints it at most once.
            names = {q["queue"]: q["name"] for q in store.queues.all()}
            reply.update(self.kiosk.ticket_job(store, device, dict(reply, name=names[t["queue"]])))
        return reply

    def _issued(self, store, t, now):
        ahead = store.queues.ahead(t["id"], t["day"], now) if t["state"] == "waiting" else 0
        reply = {"ticket": t["ticket"], "queue": t["queue"], "ahead": ahead,
                 "wait_s": estimate_s(store, self.cfg, t["queue"], ahead, now), "issued": t["issued_ms"]}
        link = self.link_key()
        if link:
            reply["rate_url"] = rate_url(link[1], self.hall, link[0], ticket_id(t["day"], t["ticket"]))
        return reply

    def op_block(self, store, device, msg):
        now = self.clock()
        queue = self._queue(store, msg)
        today = hall_day(store, now, self.zone)
        lo, hi = store.queues.take(queue, today, self.cfg["queue"]["block_size"])
        store.queues.add_block(device["device"], queue, today, lo, hi, now)
        # until: the hall's next midnight (ms), when the block's day is over: the
        # kiosk knows no time zone, and a block of yesterday must not serve.
        until = day_start_ms((datetime.datetime.strptime(today, "%Y-%m-%d")
                              + datetime.timedelta(days=1)).strftime("%Y-%m-%d"), self.zone)
        return {"queue": queue, "from": lo, "to": hi, "day": today, "until": until}

    def op_next(self, store, device, msg):
        now = self.clock()
        window = device["window"]
        served = store.queues.served_by(window)
        if not served:
            raise RequestRefused("no_queue")       # this window calls from no queue
        t = store.queues.next_waiting(served, hall_day(store, now, self.zone), now)
        if t is None:
            raise RequestRefused("empty")
        return self._called(store, t, window, now)

    def _called(self, store, t, window, now):
        store.queues.called(t["id"], window, now)
        wait = max(0, now - t["issued_ms"])
        emit(store, now, _ticket_fields(t, "called", window=window, wait_ms=wait))
        reply = {"ticket": t["ticket"], "queue": t["queue"], "window": window, "issued": t["issued_ms"],
                 "wait_ms": wait}
        for k in ("item", "case"):       # the session and the rating carry them (issue 14)
            if t[k]:
                reply[k] = t[k]
        return reply

    def _current(self, store, device):
        t = store.queues.current(device["window"])
        if t is None:
            raise RequestRefused("no_ticket")     # nothing called at this window now
        return t

    def op_recall(self, store, device, msg):
        now = self.clock()
        t = self._current(store, device)
        store.queues.called(t["id"], device["window"], now, recall=True)
        emit(store, now, _ticket_fields(t, "recalled", window=device["window"]))
        return {"ticket": t["ticket"], "queue": t["queue"], "calls": t["calls"] + 1}

    def op_noshow(self, store, device, msg):
        """过号: the called ticket did not come; with "next": true the next one
        is called in the same request."""
        now = self.clock()
        t = self._current(store, device)
        store.queues.no_show(t["id"])
        emit(store, now, _ticket_fields(t, "no_show", window=device["window"]))
        reply = {"no_show": t["ticket"]}
        go_on = msg.get("next", False)
        if type(go_on) is not bool:
            raise RequestRefused("bad_value", "next")
        if go_on:
            n = store.queues.next_waiting(store.queues.served_by(device["window"]),
                                          hall_day(store, now, self.zone), now)
            if n is not None:
                reply.update(self._called(store, n, device["window"], now))
        return reply

    def op_transfer(self, store, device, msg):
        """转移: the window's called ticket waits again, in another queue,
        in the place its first issue gave it."""
        now = self.clock()
        t = self._current(store, device)
        queue = self._queue(store, msg)
        store.queues.transfer(t["id"], queue, t["issued_ms"])
        emit(store, now, _ticket_fields(t, "transferred", window=device["window"], to=queue))
        return {"ticket": t["ticket"], "queue": queue}

    def _call(self, requests, device, key_hex, reply):
        # After the reply: the evaluator's session starts with the ticket.
        if "ticket" in reply and "window" in reply:
            call = {"cmd": "call", "ticket": reply["ticket"]}
            for k in ("item", "case"):
                if k in reply:
                    call[k] = reply[k]
            requests.command(device, key_hex, call)


# -- figures ----------------------------------------------------------------
def estimate_s(store, cfg, queue, ahead, now):
    """Seconds until `ahead` more tickets of a queue are called: the
    configured service time shared by the windows serving it, or less when
    the last half hour called faster (a quiet half hour called few because
    few came, which says nothing of how fast the windows are)."""
    if ahead <= 0:
        return 0
    windows = store.queues.windows_serving().get(queue, 0) or 1
    per = cfg["queue"]["service_s"] / windows
    n = store.queues.first_calls_since(queue, now - _RATE_WINDOW_MS)
    if n:
        per = min(per, _RATE_WINDOW_MS / 1000 / n)
    return int(ahead * per)


def percentile(values, p):
    """The p-th percentile (nearest rank) of a non-empty list: what a
    person can check by hand, and what the county's report uses."""
    v = sorted(values)
    k = max(1, -(-len(v) * p // 100))
    return v[k - 1]


def board(store, cfg, now, calls=8):
    """The lobby's call board: the newest calls, and per queue the people
    waiting, the estimated wait, today's wait p50/p90 and no-shows."""
    today = hall_day(store, now, tz(cfg))
    waiting = store.queues.waiting(today)
    no_shows = store.queues.no_shows(today)
    waits = {}
    for q, issued, called in store.queues.waits(today):
        waits.setdefault(q, []).append(max(0, called - issued) // 1000)
    out = []
    for q in store.queues.all():
        n = waiting.get(q["queue"], 0)
        w = waits.get(q["queue"])
        out.append({"queue": q["queue"], "name": q["name"], "windows": q["windows"], "waiting": n,
                    "wait_s": estimate_s(store, cfg, q["queue"], n, now),
                    "called_today": len(w or ()), "no_show_today": no_shows.get(q["queue"], 0),
                    "wait_p50_s": percentile(w, 50) if w else None,
                    "wait_p90_s": percentile(w, 90) if w else None})
    return {"day": today, "calls": store.queues.last_calls(calls), "queues": out}


def summary(store, cfg, now):
    """What `status` shows of the queues."""
    b = board(store, cfg, now, calls=1)
    return {"day": b["day"], "queues": [{k: q[k] for k in ("queue", "name", "windows", "waiting", "wait_s",
                                                            "called_today", "no_show_today")}
                                        for q in b["queues"]]}

