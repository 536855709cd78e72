"""The self-service kiosk (自助终端): a citizen scans a case's barcode (or
keys its number), sees its state, prints a status slip, and rates the
transaction. On the same core as the window evaluator (app.py: outbox,
uplink, clock, config, status, watchdog).

    idle --scan/keys--> lookup --reply--> case --print--> printing
      (each transaction: kiosk_session started ... ended, then)
    prompt --level--> thanks --> idle        (一次一评: one rating, channel kiosk;
                                              a scan or a digit at thanks starts the next one)
    prompt --timeout--> idle                 (kiosk_session unrated)

    idle --ticket (#, 取号)--> menu --1..n or an appointment scanned-->
      taking --> printing --> prompt         (a ticket: kiosk_tickets.py)

Asking the agent (SPEC 'Requests'): `case` for a case's state, `print` for
a job, `chunk` for each piece of it; `queues` for the ticket menu, `ticket`
(with "print": true: its slip comes as a job) and, while idle, `block` for
the numbers it hands out on its own when it cannot ask (kiosk_ticket.py). No link, or no reply within a few
seconds: "cannot look this up now", never an old answer.

Printing, at most once per job: the job is fetched whole onto flash and its
sha256 checked before the first byte goes out; then `job.json` on flash
says "started"; the printer's status is checked before (DLE EOT) and the
end confirmed after (GS r, answered once printed). A reboot that finds a
started job reports it `cut_short` and never sends it again; reprinting is
a new job the citizen asks for. Paper out mid-job: the job is held, a
`printer` event raises the alarm, and it goes on when paper is back.

Scanner garbage (noise, over-long lines, codes no case number can be) shows
"cannot read that code" and starts nothing.

On flash beside app.py's files: job.bin (the job being printed), job.json
(its journal: job, doc, case; then its result and the seq of its `print`
event while that is being written).
"""
import gc
import hashlib
import json
import time

from binascii import a2b_base64, hexlify

import protocol
import protocol.kiosk  # noqa: F401 (the kiosk's event kinds)
from protocol import LEVELS
from app import App, read_json, write
from kiosk_print import PrinterPort
from kiosk_ticket import Tickets, offline_slip, hhmm
from outbox import OutboxFull
import tasks

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int
    const = int

FW = "ql-kiosk/0.1"
_POLL_MS = const(20)
_ASK_MS = const(4000)      # a reply later than this is no answer: "cannot look this up now"
_MSG_MS = const(3000)
_THANKS_MS = const(3000)
_ENTRY_MS = const(60000)   # a half-typed number left alone ends the transaction
_STALL_MS = const(1500)    # no byte taken this long: ask the printer why
_GC_MS = const(500)
_SECOND_MS = const(1000)
_CODE_MAX = const(32)      # case numbers are shorter; a longer line is garbage
_CHUNK_MAX = const(1536)
_JOB_MAX = const(65536)
_REFRESH_MS = const(60000)  # the menu and the blocks, asked again while idle
_RETRY_MS = const(5000)     # ... sooner when the last try got no answer

IDLE = const(0)
ENTRY = const(1)
LOOKUP = const(2)
CASE = const(3)
PRINTING = const(4)
MESSAGE = const(5)
PROMPT = const(6)
THANKS = const(7)
MENU = const(8)
TAKING = const(9)
NAMES = ("idle", "entry", "lookup", "case", "printing", "message", "prompt", "thanks", "menu", "taking")

CASE_STATES = {"accepted": "受理", "in_review": "审查中", "suspended": "暂停",
               "completed": "办结", "ready": "待领取"}
LIGHTS = {"green": "绿灯", "yellow": "黄灯", "red": "红灯"}
_DIGITS = "0123456789"
_FAIL = (OutboxFull, OSError, MemoryError, ValueError)


class Kiosk(App):
    FW = FW

    def __init__(self, board):
        App.__init__(self, board)
        self.pp = PrinterPort(board.printer) if board.printer is not None else None
        self.state = IDLE
        self.n = 0                # transactions this boot: session ids <device>-<boot>-<n>
        self.session = None
        self.code = ""            # the case number keyed or scanned
        self.case = None          # the agent's answer
        self.msg = None
        self.after = IDLE         # where a message goes when it is read
        self.until = 0
        self.pending = []         # kiosk_session steps still to write (the outbox refused them)
        self.asked = None         # the counter of the request waiting for its reply
        self.reply = None
        self.pstate = None        # the printer state last reported (`printer` event)
        self.job = None
        self.journal = root = self.root + "/job.json"
        self.spool = root[:-4] + "bin"
        self.recover = True       # a job journal from before the boot is looked at once ready
        self._scan = bytearray()
        self._skip = False        # inside an over-long line: dropped up to its CR
        self._lines = None
        self.thanks = self.printed = self.cut_short = self.garbage = self.refused = 0
        self.doc = "case_status"  # the document of the job being printed
        self.tickets = Tickets(self.root)
        self.menu = None          # the menu this transaction shows (None: being asked)
        self.ticket = None        # the ticket this transaction handed out
        self.refresh_at = None    # ticks of the next menu and block refresh (None: once ready)
        self.issued = self.issued_offline = 0

    # -- the agent -----------------------------------------------------------------
    def on_cmd(self, msg):
        if "ota" in msg:
            App.on_cmd(self, msg)     # an update's offer or reply (ota.py)
        elif msg.get("cmd") == "reply":
            if msg.get("re") == self.asked:
                self.reply = msg
        else:
            App.on_cmd(self, msg)

    async def _ask(self, req):
        """The agent's reply to req, or None (no link, or none in time)."""
        self.reply = None
        n = self.uplink.ask(req)
        if n is None:
            return None
        self.asked = n
        t = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), t) < _ASK_MS and self.asked == n:
            await tasks.sleep_ms(_POLL_MS)
            r = self.reply
            if r is not None and r.get("re") == n:
                self.reply = self.asked = None
                return r
        if self.asked == n:       # else a newer request took over (the citizen's, over a refresh)
            self.asked = None
        return None

    # -- transactions --------------------------------------------------------------
    def _step(self, action):
        ev = {"action": action, "session": self.session}
        if self.code and action != "started":
            ev["case"] = self.code
        return ev

    def _begin(self, now):
        """A new transaction, its `started` on flash first; False: refused (busy)."""
        if not self.ready or self.pending:
            self._busy(now)
            return False
        self.n += 1
        self.session = "%s-%d-%d" % (self.site["device"], self.boot, self.n)
        self.code, self.case, self.ticket = "", None, None
        try:
            self._event("kiosk_session", self._step("started"))
        except _FAIL as e:
            self.log("started", e)
            self.n -= 1
            self._busy(now)
            return False
        return True

    def _end(self, now):
        """The transaction ends: `ended`, then the rating prompt."""
        self.pending.append(self._step("ended"))
        self._flush()
        self.state, self.until = PROMPT, time.ticks_add(now, self.prompt_ms)

    def _flush(self):
        while self.pending:
            try:
                self._event("kiosk_session", self.pending[0])
            except ValueError:
                pass                  # can never be built: counted, alarmed, skipped
            except (OutboxFull, OSError, MemoryError):
                return                # tried again next poll
            self.pending.pop(0)

    def _busy(self, now):
        self.refused += 1
        self.board.beep(300)
        self._message(("Busy, sorry", "系统繁忙"), self.state, now)

    def _message(self, msg, after, now):
        self.msg, self.after = msg, after
        if self.state != MESSAGE:
            self.state = MESSAGE
        self.until = time.ticks_add(now, _MSG_MS)

    def _rate(self, level, now):
        if self.state != PROMPT or self.pending:
            self.ignored += 1
            return
        fields = {"level": level, "channel": "kiosk", "session": self.session}
        if self.code:
            fields["case"] = self.code
        try:
            self._event("rating", fields)
        except _FAIL as e:
            self.log("refused", e)
            self.refused += 1
            self.board.beep(300)     # not on flash: "busy", never "thank you"
            return
        self.thanks += 1
        self.board.beep(80)
        self.state, self.until = THANKS, time.ticks_add(now, _THANKS_MS)

    # -- inputs ----------------------------------------------------------------------
    def _key(self, k, now):
        st = self.state
        if st == THANKS and (k in _DIGITS or k == "ticket"):
            st = self.state = IDLE    # the next citizen need not wait out the thank-you
        if k in LEVELS:
            self._rate(k, now)
        elif st == MESSAGE:
            self._after(now)          # read: go on
        elif k in _DIGITS and (st == IDLE or st == ENTRY):
            if st == IDLE:
                if not self._begin(now):
                    return
                self.state, self.code = ENTRY, ""
            if len(self.code) < _CODE_MAX:
                self.code += k
            self.until = time.ticks_add(now, _ENTRY_MS)
        elif k == "ticket" and st == IDLE:
            if self._begin(now):
                self._menu(now)
        elif st == MENU and self.menu and k in _DIGITS and 0 < int(k) <= len(self.menu):
            self._take(self.menu[int(k) - 1][0], None)
        elif st == MENU and k == "back":
            self._end(now)
        elif st == ENTRY and k == "clear":
            self.code = ""
        elif st == ENTRY and k == "enter" and self.code:
            self._lookup(self.code)
        elif st == CASE and k == "print":
            self.state = PRINTING
            tasks.create_task(self._print())
        elif (st == ENTRY and k == "back") or (st == CASE and k in ("back", "enter")):
            self._end(now)
        else:
            self.ignored += 1

    def _scanned(self, code, now):
        st = self.state
        if code is None or not _is_code(code):
            self.garbage += 1
            self.board.beep(300)
            if st in (IDLE, ENTRY, CASE, MESSAGE, MENU):
                self._message(("Cannot read that code", "无法识别，请重扫"),
                              self.after if st == MESSAGE else st, now)
            return
        if st == THANKS:
            st = self.state = IDLE    # the next citizen's scan: a new transaction
        if st == MENU:
            self._take(None, code)    # an appointment's code (预约码)
            return
        if st == IDLE:
            if not self._begin(now):
                return
        elif st not in (ENTRY, CASE):
            self.ignored += 1
            return
        self._lookup(code)

    def _read_scanner(self, now):
        u = self.board.scanner
        if u is None or not u.any():
            return
        data = u.read(64)
        for b in data or b"":
            if b == 13 or b == 10:
                if self._skip:
                    self._skip = False
                    self._scanned(None, now)
                elif self._scan:
                    raw = bytes(self._scan)
                    self._scan = bytearray()
                    try:
                        code = raw.decode()
                    except UnicodeError:
                        code = None
                    self._scanned(code, now)
            elif self._skip:
                pass
            elif len(self._scan) >= _CODE_MAX:
                self._scan = bytearray()
                self._skip = True
            else:
                self._scan.append(b)

    # -- lookup -------------------------------------------------------------------------
    def _lookup(self, code):
        self.code, self.case = code, None
        self.state = LOOKUP
        tasks.create_task(self._lookup_task(code))

    async def _lookup_task(self, code):
        r = await self._ask({"op": "case", "case": code})
        now = time.ticks_ms()
        if r is not None and r.get("error") == "unknown_case":
            self._message(("No such case", "未找到该办件"), PROMPT, now)
        elif r is None or not _case_reply(r, code):
            self._message(("Cannot look this up now", "暂时无法查询"), PROMPT, now)
        else:
            self.case = r
            self.state = CASE
            self.until = time.ticks_add(now, _ENTRY_MS)

    # -- tickets ------------------------------------------------------------------------
    def _menu(self, now):
        self.menu = None
        self.state, self.until = MENU, time.ticks_add(now, _ENTRY_MS)
        tasks.create_task(self._menu_task())

    async def _menu_task(self):
        r = await self._ask({"op": "queues"})
        if r is not None and "error" not in r:
            self.tickets.set_menu(r)    # the agent's, kept on flash for offline menus
        now = time.ticks_ms()
        if self.state != MENU:
            return
        if not self.tickets.menu:
            self._message(("No queues now", "暂无可取号业务"), PROMPT, now)
        else:
            self.menu = self.tickets.menu

    def _take(self, letter, appointment):
        self.state = TAKING
        tasks.create_task(self._take_task(letter, appointment))

    async def _take_task(self, letter, appointment):
        """A ticket: the agent's (with its slip as a job), or, when it cannot
        be asked, one of this kiosk's block, on flash before it is printed."""
        pp = self.pp
        ok = False
        if pp is not None:
            st = await pp.state()       # a ticket no one can hold is not handed out
            self._printer_state(st)
            ok = st == "ok" or st == "paper_low"
        if not ok:
            self._message(("Cannot print now", "暂时无法打印"), PROMPT, time.ticks_ms())
            return
        req = {"op": "ticket", "print": True}
        if appointment is not None:
            req["appointment"] = appointment
        else:
            req["queue"] = letter
        r = await self._ask(req)
        now = time.ticks_ms()
        if r is None and appointment is None:
            await self._own_ticket(pp, letter)
            return
        if r is None or not _ticket_reply(r):
            err = r and r.get("error")
            self._message(("No such appointment", "预约码无效或已过期")
                          if err in ("unknown_appointment", "appointment_expired", "bad_value") else
                          ("Cannot take a ticket now", "暂时无法取号"), PROMPT, now)
            return
        self.ticket = (r["ticket"], r["ahead"])
        self.issued += 1
        self.state = PRINTING
        try:
            ok = "job" in r and await self._print_fetched(pp, r, "ticket", None)
        except _FAIL as e:
            self.log("ticket print", e)
            ok = False
            if self.job is not None:
                try:
                    self._finish("printer_error", self.job, None)
                except _FAIL:
                    pass              # the journal stays: the next boot reports it
        self._ticket_done(ok, r["ticket"])

    async def _own_ticket(self, pp, letter):
        now = self.clock.now()
        got = self.tickets.take(letter, now)      # its number on flash first
        if got is None:
            self._message(("Cannot take a ticket now", "暂时无法取号"), PROMPT, time.ticks_ms())
            return
        ticket, day = got
        try:   # the ticket on record (the outbox) before it is printed
            self._event("ticket", {"ticket": ticket, "queue": letter, "id": day.replace("-", "") + "-" + ticket})
        except _FAIL as e:
            self.log("ticket", e)
            self._busy(time.ticks_ms())           # its number stays unused, on record as the block's
            self.after = PROMPT
            return
        self.ticket = (ticket, "?")
        self.issued_offline += 1
        self.state = PRINTING
        q = self.tickets.name(letter)
        b = self.tickets.blocks[letter]
        try:
            ok = await self._print_own(pp, offline_slip(ticket, day, hhmm(now, b[3]), q and q[2], self.tickets.hall),
                                       "%s-t" % self.session)
        except _FAIL as e:
            self.log("ticket print", e)
            ok = False
        self._ticket_done(ok, ticket)

    def _ticket_done(self, ok, t):
        self._message(("Your number " + t, "请取票,您的号码 " + t) if ok else
                      ("Your number " + t + " (not printed)", "您的号码 " + t + ",打印失败"), PROMPT, time.ticks_ms())

    async def _refresh(self):
        """While idle: the menu, and a block for each queue that needs one
        (SPEC 'Requests', `block`), so that tickets go on without the agent."""
        r = await self._ask({"op": "queues"})
        if r is None or "error" in r or not self.tickets.set_menu(r):
            self.refresh_at = time.ticks_add(time.ticks_ms(), _RETRY_MS)
            return
        for letter in self.tickets.wants(self.clock.now()):
            if self.state != IDLE:
                return
            r = await self._ask({"op": "block", "queue": letter})
            if r is None or "error" in r or not self.tickets.add_block(r, letter):
                self.refresh_at = time.ticks_add(time.ticks_ms(), _RETRY_MS)
                return

    # -- printing -----------------------------------------------------------------------
    def _printer_state(self, st):
        if st != self.pstate:
            try:
                self._event("printer", {"state": st})
                self.pstate = st
            except _FAIL as e:
                self.log("printer", e)

    async def _print(self):
        try:
            ok = await self._print_job()
        except _FAIL as e:
            self.log("print", e)
            ok = False
            if self.job is not None:
                try:
                    self._finish("printer_error", self.job, self.code)
                except _FAIL:
                    pass              # the journal stays: the next boot reports it
        now = time.ticks_ms()
        if ok:
            self._message(("Printed, thank you", "打印完成"), PROMPT, now)
        else:
            self._message(("Cannot print now", "暂时无法打印"), PROMPT, now)

    async def _print_job(self):
        pp, case = self.pp, self.code
        if pp is None:
            return False
        st = await pp.state()
        self._printer_state(st)
        if st != "ok" and st != "paper_low":
            return False
        r = await self._ask({"op": "print", "doc": "case_status", "case": case})
        if r is None or "error" in r:
            return False          # no job was made (offline, unknown_case, unknown_doc): nothing to report
        return await self._print_fetched(pp, r, "case_status", case)

    async def _print_fetched(self, pp, r, doc, case):
        """The agent's job r ({job, size, sha, chunks}) fetched, checked and printed once."""
        self.doc = doc
        job, size, sha, chunks = r.get("job"), r.get("size"), r.get("sha"), r.get("chunks")
        protocol.check_field("print", "job", job)
        self.job = job
        # Any answer but the job's bytes (job_done, unknown_job, an error, none in
        # time, a size or sha that cannot be): nothing goes to the printer, and the
        # job is reported cancelled so the agent stops serving it.
        if type(size) is not int or not 0 < size <= _JOB_MAX or type(sha) is not str or len(sha) != 64 \
                or type(chunks) is not int or not 0 < chunks <= size \
                or not await self._fetch(job, size, sha, chunks):
            self._finish("cancelled", job, case)     # never started: nothing was printed
            return False
        # Exactly once: on flash before the first byte goes to the printer.
        write(self.journal, json.dumps({"job": job, "doc": doc, "case": case}).encode())
        result = await self._stream(pp)
        self._finish(result, job, case)
        return result == "ok"

    async def _print_own(self, pp, data, job):
        """A slip the kiosk made itself (an offline ticket), printed once as a job is."""
        self.doc, self.job = "ticket", job
        with open(self.spool, "wb") as f:
            f.write(data)
        write(self.journal, json.dumps({"job": job, "doc": "ticket"}).encode())
        result = await self._stream(pp)
        self._finish(result, job, None)
        return result == "ok"

    async def _fetch(self, job, size, sha, chunks):
        """The job's chunks onto flash (job.bin); True when the sha256 matches."""
        h = hashlib.sha256()
        got = 0
        with open(self.spool, "wb") as f:
            for i in range(chunks):
                r = await self._ask({"op": "chunk", "job": job, "i": i})
                if r is None or r.get("job") != job or r.get("i") != i or type(r.get("data")) is not str:
                    return False
                data = a2b_base64(r["data"])
                r = None
                if len(data) > _CHUNK_MAX or got + len(data) > size:
                    return False
                h.update(data)
                f.write(data)
                got += len(data)
                data = None
                gc.collect()
        return got == size and hexlify(h.digest()).decode() == sha

    async def _stream(self, pp):
        """job.bin to the printer, then GS r: 'ok' once printed, or how it ended."""
        buf = bytearray(512)
        mv = memoryview(buf)
        pp.poll()
        pp.done = None
        last = time.ticks_ms()
        with open(self.spool, "rb") as f:
            tail = b"\x1b@"                      # initialise: no mode left from a stub
            n = len(tail)
            buf[:n] = tail
            off = 0
            end = False
            while True:
                if off >= n:
                    if end:
                        break
                    n = f.readinto(buf)
                    off = 0
                    if not n:
                        buf[:3] = b"\x1dr\x01"   # GS r 1: answered once all before it is printed
                        n, end = 3, True
                sent = pp.send(mv[:n], off)
                if sent:
                    off += sent
                    last = time.ticks_ms()
                elif time.ticks_diff(time.ticks_ms(), last) > _STALL_MS:
                    if not await self._stalled(pp):
                        return "printer_error"
                    last = time.ticks_ms()
                await tasks.sleep_ms(5)
        while pp.done is None:
            await tasks.sleep_ms(10)
            pp.poll()
            if pp.done is None and time.ticks_diff(time.ticks_ms(), last) > _STALL_MS:
                if not await self._stalled(pp):
                    return "printer_error"
                last = time.ticks_ms()
        self._printer_state(await pp.state())     # and after
        return "ok"

    async def _stalled(self, pp):
        """The printer took nothing for a while: find out why, hold while it
        is out of paper or open, True once it can go on; False when it is gone."""
        held = False
        while True:
            st = await pp.state()
            self._printer_state(st)
            if st == "ok" or st == "paper_low":
                if held:
                    self.msg = None
                return True
            if st == "offline":
                return False
            held = True
            self.msg = ("Out of paper, please wait", "缺纸，请稍候") if st == "paper_out" else \
                ("Printer open, please wait", "打印机盖未关，请稍候")
            await tasks.sleep_ms(1000)

    def _finish(self, result, job, case):
        """The `print` event, once: its seq goes into the journal first, so a
        reboot in between sees it was written and does not write it again."""
        seq = self.outbox._next       # the seq the next append takes
        doc = self.doc
        write(self.journal, json.dumps({"job": job, "doc": doc, "case": case,
                                        "result": result, "seq": seq}).encode())
        fields = {"job": job, "doc": doc, "result": result}
        if case:
            fields["case"] = case
        self._event("print", fields)
        if result == "ok":
            self.printed += 1
        elif result == "cut_short":
            self.cut_short += 1
        self._forget_job()

    def _forget_job(self):
        import os
        for p in (self.journal, self.spool):
            try:
                os.remove(p)
            except OSError:
                pass
        self.job = None

    def _recover(self):
        """A job journal from before the boot: a started job is reported
        `cut_short` (never sent again); a result not yet on flash is written."""
        self.recover = False
        j = read_json(self.journal)
        if not j:
            self._forget_job()
            return
        seq = j.get("seq")
        if type(seq) is int and self.outbox._next > seq:
            self._forget_job()            # its event is on flash already
            return
        try:
            self.doc = j.get("doc") or "case_status"
            self._finish(j.get("result") or "cut_short", j.get("job"), j.get("case"))
        except _FAIL as e:
            self.recover = True           # tried again next poll
            self.log("recover", e)

    # -- the loop ---------------------------------------------------------------------------
    async def _inputs(self):
        b = self.board
        b.wdt_start(self.site.get("wdt_ms", 10000))
        if self.pp is not None:
            self.pp.drain()
        if b.scanner is not None:
            while b.scanner.any():
                b.scanner.read(64)
        self._gc_at = self._second_at = time.ticks_ms()
        while True:
            try:
                self._poll(time.ticks_ms())
            except MemoryError as e:
                gc.collect()
                self.log("input loop", e)
            await tasks.sleep_ms(_POLL_MS)

    def _poll(self, now):
        if self.pending:
            self._flush()
        if self.recover and self.ready:
            self._recover()
        k = self.board.poll_key()
        if k:
            self._key(k, now)
        self._read_scanner(now)
        st = self.state
        due = time.ticks_diff(now, self.until) >= 0
        if st == MESSAGE and due:
            self._after(now)
        elif st == PROMPT and due and not self.pending:
            try:
                self._event("kiosk_session", self._step("unrated"))
                self.state = IDLE
            except _FAIL as e:
                self.log("unrated", e)    # kept open; tried again next poll
        elif st == THANKS and due:
            self.state = IDLE
        elif (st == ENTRY or st == CASE or st == MENU) and due:
            self._end(now)
        elif st == IDLE and self.ready and (self.refresh_at is None or time.ticks_diff(now, self.refresh_at) >= 0):
            self.refresh_at = time.ticks_add(now, _REFRESH_MS)
            tasks.create_task(self._refresh())
        self._draw()
        if time.ticks_diff(now, self._gc_at) >= _GC_MS:
            gc.collect()
            self._gc_at = now
        if time.ticks_diff(now, self._second_at) >= _SECOND_MS:
            self._second_at = now
            self._second(now)

    def _after(self, now):
        self.msg = None
        if self.after == PROMPT:
            self._end(now)
        else:
            self.state = self.after
            self.until = time.ticks_add(now, _ENTRY_MS)

    def _draw(self):
        lines = self._screen()
        if lines == self._lines:
            return
        self._lines = lines
        d = self.board.display
        d.fill(0)
        for i, s in enumerate(lines):
            d.text(s, 0, 24 * i)
        d.show()

    def _screen(self):
        st = self.state
        if not self.ready:
            return ("Connecting", "正在连接")
        if self.msg and st in (MESSAGE, PRINTING):
            return self.msg
        if st == IDLE:
            return ("Scan your case number", "请扫描办件编号")
        if st == ENTRY:
            return ("Case number:", self.code or "_", "Enter / Back")
        if st == LOOKUP:
            return ("Looking up " + self.code, "查询中")
        if st == CASE and self.case is not None:
            c = self.case
            light = c.get("light")
            return ("Case " + c["case"], c["item_name"] or "", c["state"] + " " + CASE_STATES[c["state"]],
                    "Due " + (c["promised"] or "-"), ("Light " + light + " " + LIGHTS[light]) if light else "",
                    "Print / Back")
        if st == MENU:
            if self.menu is None:
                return ("Please wait", "请稍候")
            return ("Choose a queue", "请选择业务") + tuple(
                "%d %s %s" % (i + 1, q[0], q[1]) for i, q in enumerate(self.menu)) + ("Back 返回",)
        if st == TAKING:
            return ("Taking a number", "正在取号")
        if st == PRINTING and self.ticket is not None:
            t = self.ticket
            return ("Your number", t[0], "%s ahead 前面 %s 人" % (t[1], t[1]), "Printing 正在打印")
        if st == PRINTING:
            return ("Printing", "正在打印")
        if st == PROMPT:
            return ("Please rate", "请您评价")
        return ("Thank you", "谢谢您的评价")

    def stats(self):
        ob, up = self.outbox, self.uplink
        yield "state", NAMES[self.state]
        yield "session", self.session
        yield "ready", self.ready
        yield "thanks", self.thanks
        yield "printed", self.printed
        yield "issued", self.issued
        yield "issued_offline", self.issued_offline
        yield "ticket", self.ticket and self.ticket[0]
        yield "blocks", self.tickets.blocks
        yield "cut_short", self.cut_short
        yield "garbage", self.garbage
        yield "ignored", self.ignored
        yield "refused", self.refused
        yield "printer", self.pstate
        yield "job", self.job
        yield "case", self.code
        yield "outbox", ob.depth()
        yield "boot", self.boot
        yield "errors", self.errors
        yield "connected", up.connected
        yield "acks", up.acks
        yield "bad", up.bad
        gc.collect()
        yield "heap", gc.mem_free()
        yield "heap_used", gc.mem_alloc()


def _is_code(code):
    # A case number: printable ASCII without spaces, not too long.
    if not 0 < len(code) <= _CODE_MAX:
        return False
    for b in memoryview(code.encode()):
        if not 0x21 <= b <= 0x7E:
            return False
    return True


def _case_reply(r, code):
    # The agent's answer, checked where it enters (SPEC 'Requests', case).
    light = r.get("light")
    promised = r.get("promised")
    name = r.get("item_name")
    return (r.get("case") == code and r.get("state") in CASE_STATES and light in (None, "green", "yellow", "red")
            and (promised is None or type(promised) is str and len(promised) == 10) and (name is None or type(name) is str and len(name) <= 64))


def _ticket_reply(r):
    # The agent's `ticket` answer, checked where it enters (SPEC 'Requests', ticket).
    t, ahead = r.get("ticket"), r.get("ahead")
    return type(t) is str and 1 < len(t) <= 8 and _is_code(t) and type(ahead) is int and ahead >= 0


def main(board, console=None):
    tasks.run(Kiosk(board).start(console))
