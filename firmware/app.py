"""What every app on the device core shares (the window evaluator, the
kiosk): provisioning and the agent's config on flash, the boot counter,
signed events into the outbox, the uplink, the clock, the status event with
its alarms, and the watchdog. An app subclasses `App` and adds its inputs.

    class Kiosk(App):
        FW = "ql-kiosk/0.1"
    app = Kiosk(board); tasks.run(app.start(console))

"Thank you" only after flash, seqs never reused, the config checked where
it enters: these rules live here once (firmware/README.md, Behaviour), so a
second app cannot get them subtly different.

On flash (the board's mount point): site.json (written at provisioning:
hall, device, key, broker, credentials, window), config.json (the agent's
last retained config), boots (boot counter), outbox/.
"""
import gc
import json
import time

from binascii import unhexlify

import protocol.messages     # binds `protocol`: protocol.messages below, one global less
from clock import Clock
from outbox import Outbox, OutboxFull
from uplink import Uplink
import tasks

_CONFIG = "/config.json"     # the agent's last config, on flash (one str: a long one is a heap object per use)
_ota = None                  # ota.py, while an update runs (ota.json on flash at boot)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    import os
    os.rename(tmp, path)     # littlefs: atomic replace


def _lasting(cfg):
    # A config without what changes on every publish: the beacon, the hwm, the
    # counters (rq: the uplink keeps the request counter in memory).
    # (One by one: each str in a constant tuple is an object in the heap.)
    keep = dict(cfg)
    keep.pop("t", None)
    keep.pop("hwm", None)
    keep.pop("n", None)
    keep.pop("rq", None)
    return keep


class App:
    # Each app names its firmware (status, presence); no default here: it
    # would be one more name in the device's qstr pool.
    FW: str

    def __init__(self, board):
        # Collect early, before the heap fills: fewer, cheaper collections and
        # less fragmentation (scanning a big outbox fails without it).
        gc.collect()
        gc.threshold(gc.mem_free() // 4 + gc.mem_alloc())
        self.board = board
        self.root = root = board.mount_flash()
        # An update under way, or offered (ota.json): its code loads only
        # then, and first, so that what it keeps packs low in the heap.
        try:
            with open(root + "/ota.json") as f:
                if f.read(1):       # empty: an update given up (on_cmd)
                    global _ota
                    _ota = __import__("ota")
        except OSError:
            pass
        site = read_json(root + "/site.json")
        if not site:
            raise RuntimeError("not provisioned: no site.json")
        self.site = site
        # What only the boot needs (the key as hex, the outbox's geometry, the
        # CA's name, the hwm, the topics' hall) is taken out of the site as it
        # is read: out of the small heap, and each name written once (every
        # long str in the code is an object in that heap).
        self.key = unhexlify(site.pop("key"))
        self.config = read_json(root + _CONFIG) or {}
        self.config_bad = bool(protocol.clean_config(self.config))   # fields left out: `config` alarm
        path = root + "/boots"       # the boot counter (inline: one function record less)
        n = 0
        try:
            with open(path) as f:
                n = int(f.read())
        except (OSError, ValueError):
            pass
        self.boot = n + 1
        write(path, str(self.boot).encode())
        self.outbox = Outbox(root + "/outbox", site.pop("segment_bytes", 4096),
                             site.pop("max_segments", 32))
        gc.collect()    # what the scan left behind, before the long-lived objects below
        self.clock = Clock()
        ca = site.pop("tls_ca", None)
        self.uplink = Uplink(site, self.key, self.outbox, board, self.presence, self.on_config,
                             self.on_cmd, self.log, self.config.get("n"), ca and root + "/" + ca)
        self.started = time.ticks_ms()
        self.prompt_ms = 30000
        self.ignored = 0         # presses outside a prompt or repeated
        self.unbuilt = 0         # events the protocol refused to build (bad config or input)
        self.build_alarm = False  # one of those since the last status sent
        self.errors = 0
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
        site.pop("hall", None)      # the uplink made its topics

    # -- persistence and config ----------------------------------------------
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
                # ids made of <device>-<boot>-<n> stay unique too (the app
                # reads self.boot after on_config).
                self.boot = hwm + 1
                write(self.root + "/boots", str(self.boot).encode())
            self.status()    # the boot status waited for the floor

    def _keep_config(self, keep, n):
        keep["n"] = n
        write(self.root + _CONFIG, json.dumps(keep).encode())

    def on_cmd(self, msg):
        """time, status, reset, and what names `ota` (an update); an app
        handles the rest (and its replies) first."""
        if "ota" in msg:
            # ota.py loads only at a boot that finds ota.json: an offer while
            # none runs is kept there and the board restarts into it, where the
            # heap is whole (at 48 KiB, loading it mid-run found no 640 bytes).
            if _ota:
                _ota.take(self, msg)
            elif msg.get("cmd") == "ota":
                # An empty ota.json: an update's boot got no link (ota.py: too
                # little heap here, say) and gave its offer up. The offer
                # that comes again is refused once, saying why; the
                # technician's next rollout offers it afresh.
                try:
                    with open(self.root + "/ota.json") as f:
                        gave_up = not f.read(1)
                except OSError:
                    gave_up = False
                if gave_up:
                    self.uplink.ask({"op": "ota", "ota": msg.get("ota"), "state": "refused", "fw": self.FW,
                                     "detail": "no link during the update"})
                    __import__("os").remove(self.root + "/ota.json")
                    return
                write(self.root + "/ota.json", json.dumps(msg).encode())
                self.board.mark_intentional()
                self.board.reset()
            return
        cmd = msg.get("cmd")
        if cmd == "time":
            self.clock.beacon(msg.get("t"), True)
        elif cmd == "status":
            self.status()
        elif cmd == "reset":
            # Its counter on flash first: replayed after the boot, it is refused.
            if self.config:
                self._keep_config(_lasting(self.config), msg["n"])
            self.board.mark_intentional()
            self.board.reset()

    def presence(self):
        return protocol.messages.encode({"online": True, "fw": self.FW, "boot": self.boot})

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

    def status(self):
        if not self.ready:
            return
        fields = {"fw": self.FW, "uptime_s": time.ticks_diff(time.ticks_ms(), self.started) // 1000,
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

    # -- once a second, from the app's input loop ---------------------------------
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

    # -- what each app defines ----------------------------------------------------
    def stats(self):
        """The app's counters as (name, value) pairs, for the simulator's
        `stats` op and the console; every app overrides it."""
        raise NotImplementedError

    async def _inputs(self):
        """The app's input loop, never returning; every app overrides it."""
        raise NotImplementedError

    def start(self, console=None):
        """Start the background tasks; the input loop is the main one (main()):
        the app's _inputs(), with its stats() for the board's background."""
        if _ota:
            _ota.resume(self, read_json(self.root + "/ota.json"))
        gc.collect()
        gc.threshold(gc.mem_free() // 4 + gc.mem_alloc())
        for coro in self.board.background(self.stats):
            tasks.create_task(coro)
        if console is not None:    # a production board answers its serial console (console.py)
            tasks.create_task(console)
        tasks.create_task(self.uplink.run())
        return self._inputs()

