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

On flash (the board's mount point): site.json (written at provisioning:
hall, device, key, broker, credentials, window), config.json (the agent's
last retained config), boots (boot counter), outbox/; beside them what
`hallctl install` put there: the modules, board.json, font.qlf and
installed.json (its list of files and their sha256, for `hallctl update`).
"""
import gc
import json
import time

from binascii import unhexlify

import protocol
from protocol import LEVELS, messages
from clock import Clock
from desk import Desk, IDLE, PROMPT, name
from outbox import Outbox, OutboxFull
from ui import Screen
from uplink import Uplink
import tasks

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int; no
    const = int         # fallback function, which a device would keep in its heap

FW = "ql-eval/0.1"
_POLL_MS = const(10)
_DEBOUNCE = const(3)         # equal samples in a row before a key changes state
_THANKS_MS = const(3000)
_BUSY_MS = const(3000)
_SECOND_MS = const(1000)
_STAFF_I = const(5)          # index of the staff key in BUTTONS
# The keys an evaluator board has (board.json, hardware/boards.py): a rating
# button per protocol level, best first, then the staff key.
BUTTONS = LEVELS + ("staff",)
_GC_MS = const(500)
_CONFIG = "/config.json"     # the agent's last config, on flash


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    import os
    os.rename(tmp, path)     # littlefs: atomic replace


def _lasting(cfg):
    # A config without what changes on every publish: the beacon, the hwm, the counter.
    keep = dict(cfg)
    keep.pop("t", None)
    keep.pop("hwm", None)
    keep.pop("n", None)
    return keep


class Evaluator:
    def __init__(self, board):
        # Collect early, before the heap fills: fewer, cheaper collections and
        # less fragmentation (scanning a big outbox fails without it).
        gc.collect()
        gc.threshold(gc.mem_free() // 4 + gc.mem_alloc())
        self.board = board
        self.root = root = board.mount_flash()
        site = _read_json(root + "/site.json")
        if not site:
            raise RuntimeError("not provisioned: no site.json")
        self.site = site
        # What only the boot needs (the key as hex, the outbox's geometry, the
        # CA's name, the hwm, the topics' hall) is taken out of the site as it
        # is read: out of the small heap, and each name written once (every
        # long str in the code is an object in that heap).
        self.key = unhexlify(site.pop("key"))
        self.config = _read_json(root + _CONFIG) or {}
        self.config_bad = bool(protocol.clean_config(self.config))   # fields left out: `config` alarm
        path = root + "/boots"
        n = 0
        try:
            with open(path) as f:
                n = int(f.read())
        except (OSError, ValueError):
            pass
        self.boot = n + 1
        _write(path, str(self.boot).encode())
        self.outbox = Outbox(root + "/outbox", site.pop("segment_bytes", 4096),
                             site.pop("max_segments", 32))
        gc.collect()    # what the scan left behind, before the long-lived objects below
        self.clock = Clock()
        self.desk = Desk(site["device"], self.boot)
        self._before = Desk(site["device"], self.boot)   # the desk before a transition
        self._unwritten = None   # steps of a transition still to write (after a partial write)
        self.screen = Screen(board)
        ca = site.pop("tls_ca", None)
        self.uplink = Uplink(site, self.key, self.outbox, board, self.presence, self.on_config,
                             self.on_cmd, self.log, self.config.get("n"), ca and root + "/" + ca)
        self.started = time.ticks_ms()
        self.prompt_ms = 30000
        self.long_ms = site.get("long_ms", 1000)
        self.thanks = 0          # ratings confirmed to the citizen
        self.ignored = 0         # presses outside a prompt or repeated
        self.refused = 0         # presses refused because the outbox was full
        self.unbuilt = 0         # events the protocol refused to build (bad config or input)
        self.build_alarm = False  # one of those since the last status sent
        self.inputs = 0
        self.errors = 0
        self.busy_until = 0
        self.full_alarm = False  # the outbox refused something since the last status sent
        self.sent_alarm = None   # the alarm names of the last status stored
        self._status_at = None   # ticks of the last status stored
        self._flash_ok = True
        # Seqs are never reused, even after a reflash: a device whose flash
        # has never seen the agent's config (hwm) takes no press until it
        # has, unless provisioning wrote the hwm into site.json.
        hwm = site.pop("hwm", None)
        if type(hwm) is int and hwm > 0:
            self.outbox.raise_floor(hwm)
        self.ready = bool(self.config) or type(hwm) is int
        p = self.config.get("prompt_s")
        if type(p) is int and p > 0:
            self.prompt_ms = p * 1000
        site.pop("hall", None)

    # -- persistence and config ----------------------------------------------
    def window(self):
        return self.config.get("window") or self.site.get("window") or "-"

    def staff(self):
        s = self.config.get("staff_no") or self.config.get("staff")
        return s or None

    def on_config(self, cfg, retained=False):
        if type(cfg) is not dict:
            raise ValueError("config")
        self.config_bad = bool(protocol.clean_config(cfg))
        hwm = cfg.get("hwm")
        if type(hwm) is int and hwm > 0:
            self.outbox.raise_floor(hwm)
        self.clock.beacon(cfg.get("t"), False)
        # Keep what the display needs on flash for the next boot, with the
        # seal's counter: after a reboot no older config (nor command) is
        # taken again. The hwm's floor lives in the outbox.
        keep, old = _lasting(cfg), _lasting(self.config)
        if (self.ready or not retained) and (keep != old or not self.ready):
            self._keep_config(keep, cfg.get("n", 0))
        self.config = cfg
        p = cfg.get("prompt_s")
        if type(p) is int and p > 0:
            self.prompt_ms = p * 1000
        # A retained config may be older than the agent's newest event: a
        # device with no floor yet waits for the live one the agent sends
        # when it sees this device come online.
        if not self.ready and not retained:
            self.ready = True
            if type(hwm) is int and hwm >= self.boot:
                # A reflash also lost the boot counter: restart it above the
                # hwm (every boot sends an event, so boots <= hwm before), so
                # session ids <device>-<boot>-<n> stay unique too.
                self.boot = self.desk.boot = hwm + 1
                _write(self.root + "/boots", str(self.boot).encode())
            self.status()    # the boot status waited for the floor

    def _keep_config(self, keep, n):
        keep["n"] = n
        _write(self.root + _CONFIG, json.dumps(keep).encode())

    def on_cmd(self, msg):
        cmd = msg.get("cmd")
        if cmd == "time":
            self.clock.beacon(msg.get("t"), True)
        elif cmd == "call":
            self._call(msg.get("ticket"), msg.get("item"))
        elif cmd == "status":
            self.status()
        elif cmd == "reset":
            # Its counter on flash first: replayed after the boot, it is refused.
            if self.config:
                self._keep_config(_lasting(self.config), msg["n"])
            self.board.mark_intentional()
            self.board.reset()

    def presence(self):
        return messages.encode({"online": True, "fw": FW, "boot": self.boot})

    def log(self, what, err):
        self.errors += 1
        if self.site.get("debug"):
            print(what, repr(err))

    # -- events --------------------------------------------------------------
    def _event(self, kind, fields, droppable=False):
        ev = {"v": 1, "device": self.site["device"], "seq": 0, "kind": kind, "t": self.clock.now()}
        ev.update(fields)
        key = self.key

        def build(seq):
            ev["seq"] = seq
            return protocol.encode(ev, key)

        try:
            try:
                seq = self.outbox.append(build, droppable)
            except MemoryError:
                # build() failed before anything was written: collect, once more.
                gc.collect()
                seq = self.outbox.append(build, droppable)
        except OutboxFull:
            self.full_alarm = True
            raise
        except ValueError as e:
            # protocol.ProtocolError: a value from outside breaks its rule.
            # Nothing was written; the caller refuses the press.
            self.unbuilt += 1
            self.build_alarm = True
            self.log("event", e)
            raise
        except OSError as e:
            self._flash_ok = False   # flash trouble: stop feeding the watchdog
            self.log("outbox", e)
            raise
        self.uplink.kick()
        return seq

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

    def status(self):
        if not self.ready:
            return
        fields = {"fw": FW, "uptime_s": time.ticks_diff(time.ticks_ms(), self.started) // 1000,
                  "reset": self.board.reset_cause(), "outbox": self.outbox.depth(), "heap": gc.mem_free(),
                  "ignored": self.ignored}
        r = self.board.rssi()
        if r is not None:
            fields["rssi"] = abs(r)
        alarm = self.alarm()
        if alarm:
            fields["alarm"] = alarm
        try:
            seq = self._event("status", fields, True)
        except (OutboxFull, OSError, MemoryError, ValueError):
            seq = None
        if seq is not None:
            self.sent_alarm = alarm
            self.build_alarm = False
            if not self.outbox.full:
                self.full_alarm = False     # reported; a dropped status leaves it for the next

    def alarm(self):
        """Alarm names, sorted and comma-joined (SPEC: status): the board's
        broken parts, a full outbox, a config it cannot use; None when all is well."""
        alarms = list(self.board.faults)
        if self.full_alarm or self.outbox.full:
            alarms.append("outbox_full")
        if self.config_bad or self.build_alarm:
            alarms.append("config")
        if not alarms:
            return None
        alarms.sort()
        return ",".join(alarms)

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

    def _call(self, ticket, item=None):
        if type(ticket) is not str or not ticket:
            return
        now = time.ticks_ms()
        try:
            # Before the desk moves: a ticket no event can carry starts nothing.
            protocol.check_field("session", "ticket", ticket)
            if item is not None:
                protocol.check_field("session", "item", item)
        except ValueError as e:
            self.unbuilt += 1
            self.build_alarm = True
            self.log("call", e)
            self._refuse(now)
            return
        self._guarded(now, self.desk.start, now, ticket, item)

    def _rating(self, level, now):
        desk = self.desk
        if not desk.can_rate(now):
            self.ignored += 1
            return
        fields = {"level": level, "channel": "window", "session": desk.session,
                  "window": self.window()}
        staff = self.staff()
        if staff:
            fields["staff"] = staff
        try:
            self._event("rating", fields)
        except (OutboxFull, OSError, MemoryError, ValueError) as e:
            self.log("refused", e)
            self._refuse(now)        # not on flash: "busy", never "thank you"
            return
        # On flash: now, and only now, thank the citizen.
        desk.rated(now, _THANKS_MS)
        self.thanks += 1
        self.board.beep(80)

    def _key(self, i, down, now):
        self.inputs += 1
        if i == _STAFF_I:
            if down:
                self._staff_since = now
                self._staff_long = False
            elif not self._staff_long:
                self._guarded(now, self.desk.staff_short, now, self.prompt_ms)
        elif down:
            self._rating(LEVELS[i], now)

    async def _inputs(self):
        pins = [self.board.buttons[n] for n in BUTTONS]
        down = bytearray(len(BUTTONS))
        same = bytearray(len(BUTTONS))
        self._staff_since = 0
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
        elif desk.state != IDLE:
            steps = desk.tick(now)      # a prompt's timeout: one `unrated` step
            if steps:
                try:
                    self._steps(steps)
                except (OutboxFull, OSError, MemoryError):
                    desk.state = PROMPT   # keep the prompt open; retry the unrated step
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
            self._second(now)

    # -- once a second, from the input loop ---------------------------------------
    def _second(self, now):
        """The watchdog and the status, on the input loop's own time: a task
        each kept a coroutine's frame in the heap for good. The watchdog is
        fed only while the input loop (this), the uplink and the flash all
        make progress. A status goes out every status_s; sooner when the
        alarms change (a display dies, the outbox fills or empties), but at
        most once per alarm_s; the first as soon as the device is ready."""
        up, site = self.uplink, self.site
        if up.progress and self._flash_ok:
            self.board.wdt_feed()
        up.progress = False
        if not self.ready:
            return
        last = self._status_at
        if last is not None:
            since = time.ticks_diff(now, last)
            if since < site.get("status_s", 300) * 1000 and (
                    since < site.get("alarm_s", 30) * 1000 or self.alarm() == self.sent_alarm):
                return
        self.status()
        self._status_at = time.ticks_ms()

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

    def start(self, console=None):
        """Start the background tasks; the input loop is the main one (main())."""
        gc.collect()
        gc.threshold(gc.mem_free() // 4 + gc.mem_alloc())
        for coro in self.board.background(self.stats):
            tasks.create_task(coro)
        if console is not None:    # a production board answers its serial console (console.py)
            tasks.create_task(console)
        tasks.create_task(self.uplink.run())
        return self._inputs()


def main(board, console=None):
    tasks.run(Evaluator(board).start(console))
