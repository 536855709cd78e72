"""The window evaluator (评价器): buttons -> session steps and ratings ->
signed events in the durable outbox -> the hall's agent.

Tasks (tasks.py; the buttons and the display never wait on the network):
- input loop, every 10 ms: debounce the keys, run the desk, redraw;
- uplink: Wi-Fi and MQTT, drain the outbox, read acks/config/commands;
- and once a second, in the input loop: a `status` event every status_s
  (droppable when the outbox is full) with the alarms: the board's `faults`
  (a dead display) and `outbox_full`; sooner when the alarms change, but at
  most one per alarm_s (flash wear); and the watchdog, fed only while the
  input loop, the uplink and the flash all make progress.

"Thank you" appears only after the rating's record is on flash. When the
outbox cannot take a rating or a session step, the press is refused with
"busy" on screen and the `outbox_full` alarm goes out in status: ratings
and sessions are never dropped, the citizen is told instead.

A config value that breaks the protocol's rules (a staff name with a tab,
from an old or foreign agent) is left out where the config enters, so the
ratings go on without it; an event that still cannot be built is refused
like "busy", never a crash (a reboot would meet the same retained config).
Both raise the `config` alarm.

差评 reasons (issue 14): after 不满意/非常不满意, when the config lists them,
the reason screen (three a page; keys 1-3 choose, 4 turns the page, 5
sends; a timeout or the next service sends what was chosen). The press is
on flash in a journal before the screen shows, the journal's seq guards
against counting it twice (_flush).

On flash (the board's mount point): site.json (written at provisioning:
hall, device, key, broker, credentials, window), config.json (the agent's
last retained config), boots (boot counter), outbox/, rating (the journal); beside them what
`hallctl install` put there: the modules, board.json, font.qlf and
installed.json (its list of files and their sha256, for `hallctl update`).
"""
import gc
import time

import protocol
from app import App
from desk import Desk, name
from outbox import OutboxFull
from ui import Screen
import tasks

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int; no
    const = int         # fallback function, which a device would keep in its heap

FW = "ql-eval/0.1"          # what hallctl reads as the firmware version (bundle.py)
_POLL_MS = const(10)
_DEBOUNCE = const(3)         # equal samples in a row before a key changes state
_THANKS_MS = const(3000)
_BUSY_MS = const(3000)
_SECOND_MS = const(1000)
_STAFF_I = const(5)          # index of the staff key in BUTTONS
_BAD_I = const(3)            # BUTTONS from here (不满意, 非常不满意) ask for reasons
# The keys an evaluator board has (board.json, hardware/boards.py): a rating
# button per protocol level, best first, then the staff key.
BUTTONS = list(protocol.LEVELS)      # (a list made here: a constant tuple's str would be a heap object)
BUTTONS.append("staff")
_GC_MS = const(500)
# desk.py's states this module looks at, as its own consts: a const named
# with `_` costs nothing at run time, a name imported from desk is a global
# (tests/test_firmware_heap.py checks they stay equal).
_IDLE = const(0)
_SERVING = const(1)
_PAUSED = const(2)
_PROMPT = const(3)
_REASONS = const(5)


class Evaluator(App):
    FW = FW

    def __init__(self, board):
        App.__init__(self, board)
        site = self.site
        self.desk = Desk(site["device"], self.boot)
        self._before = Desk(site["device"], self.boot)   # the desk before a transition
        self._unwritten = None   # steps of a transition still to write (after a partial write)
        self.screen = Screen(board)
        self.long_ms = site.get("long_ms", 1000)
        self.thanks = 0          # ratings confirmed to the citizen
        self.refused = 0         # presses refused because the outbox was full
        self.inputs = 0
        self.busy_until = 0
        # True while a bad rating is on flash in its journal (/rating), not yet in
        # the outbox. One from before a reboot goes out as it was (the reasons
        # chosen were in RAM), unless the journal's seq says the outbox took it
        # already (written just before it: a cut after the record and before the
        # journal's removal must not count it twice; the journal is then left,
        # its seq says the same at every boot).
        from app import read_json      # (imported where used: a module global each costs the heap)
        p = read_json(self.root + "/rating")
        self.pending = type(p) is dict and not (type(p.get("seq")) is int and self.outbox._next > p["seq"])

    def on_config(self, cfg, retained=False):
        App.on_config(self, cfg, retained)
        self.desk.boot = self.boot      # restarted above the agent's hwm after a reflash

    def window(self):
        return self.config.get("window") or self.site.get("window") or "-"

    def staff(self):
        s = self.config.get("staff_no") or self.config.get("staff")
        return s or None

    # -- events --------------------------------------------------------------
    def on_cmd(self, msg):
        cmd = msg.get("cmd")
        if "ota" in msg:
            App.on_cmd(self, msg)     # an update's offer or reply (ota.py)
        elif cmd == "call":
            self._call(msg.get("ticket"), msg.get("item"), msg.get("case"))
        elif cmd == "reply":
            err = msg.get("error")
            if err == "empty" or err == "no_queue":
                # `next` with nobody waiting: the staff key starts a service
                # without a ticket, as it does without a queue.
                now = time.ticks_ms()
                self._guarded(now, self.desk.staff_short, now, self.prompt_ms)
            elif err:
                self.board.beep(300)      # nothing to recall, the link refused: the staff hears it
        else:
            App.on_cmd(self, msg)

    def _steps(self, steps):
        """Write a transition's steps in order, each removed once on flash:
        on failure `steps` holds what is still to write."""
        window, staff = self.window(), self.staff()
        while steps:
            step = steps[0]
            step["window"] = window
            if staff:
                step["staff"] = staff
            self._event("session", step)
            steps.pop(0)

    def _transition(self, steps_fn, args):
        """A desk transition happens whole or not at all: every step of it on
        flash, in order, or the desk put back as it was (the press refused,
        "busy"). Moving the desk first and losing its `ended` to a full heap
        would end a service the record never shows ended. If some steps are
        written and the rest fail, the desk keeps the move and the rest are
        written before anything else happens (_poll)."""
        desk = self.desk
        desk.copy_to(self._before)
        steps = steps_fn(*args)
        todo = len(steps)
        try:
            self._steps(steps)
        except (OutboxFull, OSError, MemoryError, ValueError) as e:
            self.log("refused", e)
            if len(steps) == todo:
                self._before.copy_to(desk)
            else:
                if isinstance(e, ValueError):
                    steps.pop(0)     # can never be built (counted, alarmed): skipped
                self._unwritten = steps
            raise

    # -- inputs ----------------------------------------------------------------
    def _refuse(self, now):
        self.refused += 1
        self.busy_until = time.ticks_add(now, _BUSY_MS)
        self.board.beep(300)

    def _guarded(self, now, steps_fn, *args):
        """Run a desk transition, steps_fn(*args) (a Desk method), unless the
        outbox cannot take its steps. A method and its arguments rather than a
        lambda: a lambda's closure would make its variables cells, allocated
        on every call of the function that holds it (_poll: every 10 ms)."""
        if not self.ready:
            self._refuse(now)
            return
        if self.desk.state == _REASONS:
            self._flush(now)       # the staff moves on: the rating goes with the reasons chosen
        if self.outbox.full:
            self.full_alarm = True
            self._refuse(now)
            return
        if self._unwritten:
            self._refuse(now)     # the last transition is not all on flash yet
            return
        try:
            self._transition(steps_fn, args)
        except (OutboxFull, OSError, MemoryError, ValueError):
            self._refuse(now)

    def _call(self, ticket, item=None, case=None):
        if type(ticket) is not str or not ticket:
            return
        now = time.ticks_ms()
        try:
            # Before the desk moves: a ticket no event can carry starts nothing.
            protocol.check_field("session", "ticket", ticket)
            if item is not None:
                protocol.check_field("session", "item", item)
            if case is not None:
                protocol.check_field("session", "case", case)
        except ValueError as e:
            self.unbuilt += 1
            self.build_alarm = True
            self.log("call", e)
            self._refuse(now)
            return
        self._guarded(now, self.desk.start, now, ticket, item, case)

    def _rating(self, i, now):
        desk = self.desk
        if not desk.can_rate(now):
            self.ignored += 1
            return
        fields = {"level": BUTTONS[i], "channel": "window", "session": desk.session,
                  "window": self.window()}
        staff = self.staff()
        if staff:
            fields["staff"] = staff
        if desk.item:
            fields["item"] = desk.item
        if desk.case:
            fields["case"] = desk.case
        try:
            if i >= _BAD_I and self.config.get("reasons"):
                # 不满意/非常不满意: the reason screen, the press on flash first, in
                # its journal (never lost to a power cut while the citizen chooses);
                # the last one still waiting for the outbox, or a full outbox: "busy".
                if self.pending:
                    self._flush(now)
                if self.pending or self.outbox.full:
                    raise OutboxFull()
                fields["t"] = self.clock.now()      # when pressed, not when sent
                import json
                from app import write
                write(self.root + "/rating", json.dumps(fields).encode())
                self.pending = True
                desk.state, desk.first, desk.reasons = _REASONS, 0, 0
                desk.until = time.ticks_add(now, self.prompt_ms)
            else:
                self._event("rating", fields)
                desk.rated(now, _THANKS_MS)
        except (OutboxFull, OSError, MemoryError, ValueError) as e:
            self.log("refused", e)
            self._refuse(now)        # not on flash: "busy", never "thank you"
            return
        # On flash: now, and only now, thank the citizen.
        self.thanks += 1
        self.board.beep(80)

    def _flush(self, now):
        """The pending bad rating into the outbox, once: read from its journal (the
        one copy: nothing of it stays in the heap while the citizen chooses), with
        the reasons chosen when it leaves the reason screen. The seq the append
        takes goes into the journal first (see __init__)."""
        import json
        from app import read_json, write
        desk, path, codes, fields = self.desk, self.root + "/rating", None, None
        if desk.state == _REASONS:
            desk.rated(now, _THANKS_MS)
            self.screen.shown = None     # its rows freed before the event is built
            choices = self.config.get("reasons") or ()
            codes = []
            for j in range(len(choices)):
                if desk.reasons >> j & 1:
                    s = choices[j]
                    codes.append(s[:s.find(" ")])
        gc.collect()        # what the reason screen made is garbage now: room for the event
        try:
            fields = read_json(path)
            if type(fields) is not dict:
                raise ValueError("rating")     # no journal: nothing to send
            if codes:
                fields["reasons"] = codes
            fields["seq"] = self.outbox._next
            write(path, json.dumps(fields).encode())
            try:
                self._event("rating", fields)
            except ValueError:
                if fields.get("reasons") is None:
                    raise
                fields["reasons"] = None         # the reasons break a rule: the rating without them
                self._event("rating", fields)
        except ValueError:
            pass                  # can never be built (counted, alarmed): the journal goes
        except (OutboxFull, OSError, MemoryError) as e:
            self.log("rating", e)
            # Tried again once a second (_poll); the journal must not name a seq
            # that a later event takes (the boot would take this rating as written).
            if type(fields) is dict:
                fields["seq"] = None
                try:
                    write(path, json.dumps(fields).encode())
                except (OSError, MemoryError):
                    pass
            return
        self.pending = False          # in the outbox (or never to be): the journal goes
        import os
        try:
            os.remove(path)
        except OSError:
            pass

    def _key(self, i, down, now):
        self.inputs += 1
        # A window whose config says `calls` asks its queue (SPEC 'Requests'):
        # the staff key calls the next ticket; staff held + the first rating
        # key calls it again (重呼), + the last one marks it 过号 and calls the
        # next. Requests are made when pressed: nothing kept in the heap.
        calls = self.config.get("calls")
        if i == _STAFF_I:
            if down:
                self._staff_since = now
                self._staff_long = False
                return
            short = not self._staff_long  # not a long press, not a combination
            self._staff_since = None      # released (None: the key is up)
            if short:
                st = self.desk.state
                # The agent's `call` command starts the session with the ticket;
                # with no link now, the service starts without one, as before.
                if calls and st != _SERVING and st != _PAUSED and self.uplink.ask({"op": "next"}) is not None:
                    return
                self._guarded(now, self.desk.staff_short, now, self.prompt_ms)
        elif down:
            if calls and self._staff_since is not None and (i == 0 or i == 4):
                self._staff_long = True       # a combination, not a staff press
                if self.uplink.ask({"op": "recall"} if i == 0 else {"op": "noshow", "next": True}) is None:
                    self._refuse(now)
                return
            desk = self.desk
            if desk.state != _REASONS:
                self._rating(i, now)       # a level: i < _STAFF_I
                return
            # The reason screen: 1-3 choose (or drop) the reason on their row,
            # 4 turns the page, 5 sends; each press gives another prompt_s.
            n = len(self.config.get("reasons") or ())
            desk.until = time.ticks_add(now, self.prompt_ms)
            if i == 4:
                self._flush(now)
            elif i == 3:
                desk.first = desk.first + 3 if desk.first + 3 < n else 0
            elif desk.first + i < n:
                bit = 1 << (desk.first + i)
                chosen, m = 0, desk.reasons
                while m:
                    chosen += m & 1
                    m >>= 1
                if desk.reasons & bit or chosen < 8:
                    desk.reasons ^= bit
                else:
                    self.board.beep(300)      # a rating carries 8 reasons at most

    async def _inputs(self):
        pins = []                # (a loop, not a comprehension: one code record less)
        for n in BUTTONS:
            pins.append(self.board.buttons[n])
        down = bytearray(len(BUTTONS))
        same = bytearray(len(BUTTONS))
        self._staff_since = None      # ticks the staff key went down; None while it is up
        self._staff_long = True
        self._gc_at = self._second_at = time.ticks_ms()
        self.board.wdt_start(self.site.get("wdt_ms", 10000))
        while True:
            try:
                self._poll(time.ticks_ms(), pins, down, same)
            except MemoryError as e:
                # Never let the buttons die: collect and go on; the press
                # that needed the memory was refused ("busy"), not lost.
                gc.collect()
                self.log("input loop", e)
            await tasks.sleep_ms(_POLL_MS)

    def _poll(self, now, pins, down, same):
        desk = self.desk
        for i in range(len(pins)):
            v = 1 if pins[i]() == 0 else 0
            if v != down[i]:
                same[i] += 1
                if same[i] >= _DEBOUNCE:
                    down[i] = v
                    same[i] = 0
                    self._key(i, v, now)
            else:
                same[i] = 0
        if down[_STAFF_I] and not self._staff_long and \
                time.ticks_diff(now, self._staff_since) >= self.long_ms:
            self._staff_long = True
            self._guarded(now, desk.staff_long, now)
        ticket = self.board.poll_call()
        if ticket:
            self._call(ticket)
        if self._unwritten:
            try:
                self._steps(self._unwritten)
            except (OutboxFull, OSError, MemoryError):
                pass                      # tried again next poll
            except ValueError:
                self._unwritten.pop(0)    # can never be built: counted, alarmed, skipped
        elif desk.state == _REASONS:
            if time.ticks_diff(now, desk.until) >= 0:
                self._flush(now)         # nobody chose: the rating goes without reasons
        elif desk.state != _IDLE:
            steps = desk.tick(now)      # a prompt's timeout: one `unrated` step
            if steps:
                try:
                    self._steps(steps)
                except (OutboxFull, OSError, MemoryError):
                    desk.state = _PROMPT  # keep the prompt open; retry the unrated step
                except ValueError:
                    pass                  # can never be built: counted, alarmed, not retried
        busy = time.ticks_diff(self.busy_until, now) > 0
        self.screen.update(desk, self.config, self.window(), now, busy, self.ready)
        if time.ticks_diff(now, self._gc_at) >= _GC_MS:
            # Collect while quiet rather than when a big allocation fails:
            # a fragmented small heap fails long before it is full.
            gc.collect()
            self._gc_at = now
        if time.ticks_diff(now, self._second_at) >= _SECOND_MS:
            self._second_at = now
            if self.pending and desk.state != _REASONS and self.ready and not self.outbox.full:
                self._flush(now)         # from before a reboot, or the outbox refused it
            self._second(now)

    def stats(self):
        """The counters as (name, value) pairs, made while they are read (the
        simulator's `stats` op sends each as it comes): a dict of 22 keys kept
        for it held ~600 bytes of a 48 KiB heap between requests."""
        ob, up, desk = self.outbox, self.uplink, self.desk
        yield "thanks", self.thanks
        yield "ignored", self.ignored
        yield "refused", self.refused
        yield "ready", self.ready
        yield "unbuilt", self.unbuilt
        yield "alarm", self.alarm()
        yield "outbox", ob.depth()
        yield "dropped", ob.dropped
        yield "corrupt", ob.corrupt
        yield "state", name(desk.state)
        yield "session", desk.session
        yield "boot", self.boot
        yield "inputs", self.inputs
        yield "errors", self.errors
        yield "connected", up.connected
        yield "published", up.published
        yield "acks", up.acks
        yield "reconnects", up.reconnects
        yield "resends", up.resends
        yield "bad", up.bad
        yield "clock", self.clock.now()
        gc.collect()
        yield "heap", gc.mem_free()
        yield "heap_used", gc.mem_alloc()


def main(board, console=None):
    tasks.run(Evaluator(board).start(console))
