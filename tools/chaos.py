"""A busy hall with everything going wrong at once, on a seed: is every
thanked press at the county exactly once?

The hall is the real thing on one machine: Mosquitto with the config and
ACL `edge-agent broker-config` writes, the edge agent with its store on a
small disk of its own, the county server (PostgreSQL when given, else
SQLite) behind a link that fails, and virtual evaluators running the real
firmware under MicroPython at the board's heap. Simulated citizens and staff
are served and rate, while a schedule made from the seed kills, cuts and
fills things (tools/faults.py does the county link and the disk):

  agent_kill      SIGKILL the agent; started again after the hold
  broker_kill     SIGKILL Mosquitto; started again (its persistence kept)
  county_5xx      every county request answered 503
  county_hang     the county takes requests and never answers
  county_slow     every byte to and from the county delayed
  uplink_drop     every connection to the county cut, open ones too
  power_cut       one device's power cut (SIGKILL) mid-whatever, back after the hold
  disk_full       the agent's disk filled to its last 256 KiB
  device_replace  a board swapped: drained, retired, a new one at its window (`devices replace`);
                  always once in a schedule (at a seeded time) when the hall has two boards
  clock_jump      one device's wall clock jumps by up to a day either way (board_sim's
                  `clock` op) until the agent's next live beacon; its events carry the
                  wrong time and must still be counted once
  pi_clock_jump   the Pi's power cut: the agent SIGKILLed and started again on a clock
                  up to a day behind (a Pi has no real-time clock: it boots on the time
                  it last saved), which NTP steps right ~10 s later (tools/wallclock.c:
                  this process's wall clock only, its sleeps untouched); the devices
                  take the agent's time from its beacons, so theirs jump with it

Beside the evaluators, kiosks (tools/vkiosk.py, as tools/hall.py runs them)
serve citizens who scan a case posted to the county, print its slip and
rate (channel `kiosk`); half the windows serve a queue, their staff key
calling the next ticket (the agent's `next`), now and then marking a
no-show; tickets are taken by a ticket desk (a small paho client with its
own login, the agent's `ticket` request), which also sends a few bad
inputs on purpose: what its ACL allows, on its own topic.

At the end every fault is healed, the citizens stop, the backlog drains,
and: the county's ratings are what the citizens were thanked for (window
and kiosk), each session once with its level; every ticket issued is
called, a no-show or waiting, none called at two windows nor started twice;
every print job is on paper at most once, reported once, at the county;
the quarantine holds exactly the bad inputs sent, nothing else. The seed and the schedule are printed first:
`python -m tools.chaos --seed N --seconds S --every E --devices D` runs it again.
"""
import argparse
import collections
import concurrent.futures
import os
import random
import subprocess
import sys
import threading
import time

from tools.faults import CountyLink, SmallDisk, WallClock
from tools.procs import Mosquitto, Proc, VENV_BIN, free_port, healthy, wait_for

FAULTS = ("agent_kill", "broker_kill", "county_5xx", "county_hang", "county_slow", "uplink_drop",
          "power_cut", "disk_full", "device_replace", "clock_jump", "pi_clock_jump")
PI_CLOCK_HOLD_S = 10.0       # until NTP sets the Pi's clock right
EDGE_AGENT = os.path.join(VENV_BIN, "edge-agent")
HALL = "chaos-hall"
TOKEN = "tok-chaos-" + "c" * 16


QUEUE = "A"
CASES = ["KC2026%06d" % n for n in (123, 777, 42, 900)]
DESK = "tk-01"               # the ticket desk's login (a kiosk's stand-in for tickets)


class ChaosFailure(AssertionError):
    pass


class TicketDesk:
    """What hands out tickets until the kiosk firmware does (issue 9): a
    device with its own login that asks the agent for a ticket (SPEC
    'Requests': sealed with its counter, the reply on its `cmd` topic) and
    keeps the numbers it was given. A request with no reply in time is asked
    again above; a ticket the agent gave whose reply was lost is still the
    agent's, waiting: the end check counts it from the agent's table."""

    def __init__(self, hall, device, key, port, password):
        import paho.mqtt.client as mqtt
        from protocol import topics
        self.hall, self.device, self.key = hall, device, key
        self.n = int(time.time())           # counters only grow, across runs of the desk too
        self.replies, self.given = {}, []
        self.lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device)
        c.username_pw_set(device, password)
        c.on_connect = lambda cl, u, f, rc, p: rc.is_failure or cl.subscribe(
            topics.topic(hall, device, topics.CMD), 1)
        c.on_message = self._on_message
        c.reconnect_delay_set(0.2, 2)
        self.client, self.port = c, port

    def start(self):
        self.client.connect_async("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        return self

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client, userdata, msg):
        from protocol import messages, topics
        try:
            cmd = messages.unseal(self.key, topics.CMD, msg.payload, 0)
        except Exception:
            return
        if cmd.get("cmd") == "reply":
            with self.lock:
                self.replies[cmd["re"]] = cmd

    def take(self, queue, timeout=3.0):
        """A ticket's number, or None when the agent did not answer in time."""
        from protocol import messages, topics
        self.n += 1
        n = self.n
        self.client.publish(topics.topic(self.hall, self.device, topics.REQ),
                            messages.seal(self.key, topics.REQ, {"op": "ticket", "queue": queue}, n), qos=1)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                r = self.replies.pop(n, None)
            if r is not None:
                if r.get("ticket"):
                    self.given.append(r["ticket"])
                return r.get("ticket")
            time.sleep(0.02)
        return None

    def send_bad(self, wrong_key, other, other_key):
        """Inputs the ACL lets this login send, each one the agent must
        quarantine: an event signed with a wrong key, bytes that are no
        event, another device's real event on this desk's topic."""
        import protocol
        from protocol import topics
        t = int(time.time() * 1000)
        bad = [protocol.encode({"v": 1, "device": self.device, "seq": 1, "kind": "status", "t": t,
                                "fw": "desk", "uptime_s": 1, "reset": "power", "outbox": 0, "heap": 0}, wrong_key),
               b"\x00not an event",
               protocol.encode({"v": 1, "device": other, "seq": 999999, "kind": "rating", "t": t,
                                "level": "satisfied", "channel": "window", "session": other + "-forged"},
                               other_key)]
        for wire in bad:
            self.client.publish(topics.topic(self.hall, self.device, topics.EVENTS), wire, qos=1)
        return len(bad)


def schedule(seed, seconds, devices, kinds=FAULTS, every_s=6.0, kiosks=()):
    """[(at_s, kind, target, hold_s)] from the seed: one fault every ~every_s
    seconds over the run (they overlap), every kind before any twice; one
    device replaced (at a seeded time in the first two thirds, when there
    are two evaluators); every other power cut is a kiosk's."""
    rng = random.Random(seed)
    out, deck, cuts = [], [], 0
    replace_at = rng.uniform(5, max(6, seconds * 2 / 3)) if "device_replace" in kinds and len(devices) >= 2 else None
    t = rng.uniform(2, every_s)
    while t < seconds - 5:
        if not deck:      # every kind once before any twice (power cuts twice: a window's and a kiosk's)
            deck = [k for k in kinds if k != "device_replace"] + (["power_cut"] if "power_cut" in kinds else [])
            rng.shuffle(deck)
        kind = deck.pop() if deck else "power_cut"
        if replace_at is not None and t >= replace_at:
            deck.append(kind)
            kind, replace_at = "device_replace", None
        if kind == "power_cut":
            cuts += 1
            target = rng.choice(kiosks) if kiosks and cuts % 2 == 0 else rng.choice(devices)
        elif kind in ("device_replace", "clock_jump"):
            target = rng.choice(devices)
        else:
            target = None
        if kind == "clock_jump":
            hold = rng.choice((-1, 1)) * rng.randint(60, 86400) * 1000     # ms, not a hold
        elif kind == "pi_clock_jump":
            hold = -rng.randint(60, 86400) * 1000
        else:
            hold = round(rng.uniform(0.3, 3.0) if kind == "power_cut" else rng.uniform(2.0, 10.0), 2)
        out.append((round(t, 2), kind, target, hold))
        t += rng.uniform(every_s / 2, every_s * 1.5)
    return out


class ChaosHall:
    def __init__(self, work_dir, seed, devices=20, seconds=90, county_db=None, heapsize="64k", kinds=FAULTS,
                 log=print, kiosks=2, every_s=6.0):
        """`every_s`: a fault about this often (schedule())."""
        from tools.county.testing import CountyProc
        self.work = os.path.abspath(work_dir)
        os.makedirs(self.work, exist_ok=True)
        self.seed, self.seconds, self.every_s, self.heapsize, self.log = seed, seconds, every_s, heapsize, log
        self.rng = random.Random(seed)
        self.names = ["ev-%02d" % (i + 1) for i in range(devices)]
        self.windows = {d: "A%02d" % (i + 1) for i, d in enumerate(self.names)}
        self.kiosk_names = ["ks-%02d" % (i + 1) for i in range(kiosks)]
        self.queued = set(self.names[:len(self.names) // 2])      # windows that call tickets of QUEUE
        self.keys = {d: self.rng.randbytes(32) for d in self.names + self.kiosk_names + [DESK]}
        self.plan = schedule(seed, seconds, self.names, kinds, every_s, kiosks=self.kiosk_names)
        self.system_token = "sys-chaos-" + "s" * 16
        with open(os.path.join(self.work, "link-secret"), "w") as f:
            f.write(self.rng.randbytes(32).hex())
        self.county = CountyProc(self.work, county_db or os.path.join(self.work, "county.db"), {HALL: TOKEN},
                                 extra=["--system-token", self.system_token,
                                        "--link-secret-file", os.path.join(self.work, "link-secret")])
        self.link = None
        # The store grows ~55 MB an hour at this hall's pace (20 busy windows,
        # nothing purged within 30 days): a disk that only the disk_full fault
        # fills, however long the run (an hour's run on 48 MiB filled for good).
        mib = 48 + int(seconds / 3600 * 96)
        self.disk = SmallDisk(os.path.join(self.work, "agent-disk"), mib=mib) if SmallDisk.available() else None
        store_dir = self.disk.path if self.disk else os.path.join(self.work, "agent-store")
        self.db_path = os.path.join(store_dir, "agent.db")
        self.config = os.path.join(self.work, "agent.toml")
        self.broker_dir = os.path.join(self.work, "broker")
        self.broker = None
        self.http_port = free_port()
        self.clock = WallClock(os.path.join(self.work, "pi-clock")) if WallClock.available() else None
        self.agent = Proc("edge-agent", [EDGE_AGENT, "run", "--config", self.config], self.work,
                          env=self.clock.env() if self.clock else None)
        self.devices = {}          # name at the window -> VirtualDevice (a replaced board's successor too)
        self.kiosks = {}           # name -> VirtualKiosk
        self.desk = None           # the TicketDesk
        self.bad_sent = 0          # inputs sent to be quarantined
        self.thanked = {}          # session -> level the citizen was thanked for (windows and kiosks)
        self.pressed = {}          # session -> level pressed, thanked or not (the power may have gone)
        self.no_shows = 0
        self.kiosk_misses = {}     # why a kiosk citizen gave up ("timed out waiting for ...", a power cut)
        self.served = 0
        self.paused = set()        # devices whose citizens wait (a board being swapped)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.faults_done = []
        self._fault_locks = {}

    # -- the hall --------------------------------------------------------------
    def edge_agent(self, *args):
        out = subprocess.run([EDGE_AGENT, "--config", self.config] + list(args), capture_output=True, text=True)
        if out.returncode:
            raise ChaosFailure("edge-agent %s: %s" % (" ".join(args), out.stderr.strip()))
        return out.stdout

    def _write_config(self, broker_port):
        with open(self.config, "w") as f:
            f.write("\n".join([
                'hall = "%s"' % HALL,
                "[mqtt]", 'host = "127.0.0.1"', "port = %d" % broker_port,
                'password = "agent-chaos-secret"',
                "[store]", 'path = "%s"' % self.db_path, "disk_max_pct = 90",
                "[uplink]", 'url = "http://127.0.0.1:%d"' % self.link.port, 'token = "%s"' % TOKEN,
                "allow_plain_http = true", "interval_s = 1", "timeout_s = 5",
                "[http]", 'host = "127.0.0.1"', "port = %d" % self.http_port,
                "[kiosk]", "cases_poll_s = 1.0", ""]))
        os.chmod(self.config, 0o600)

    def _broker_config(self):
        self.edge_agent("broker-config", "--out", self.broker_dir, "--data-dir", self.broker_dir + "/data",
                        "--listen", "127.0.0.1", "--port", str(self.broker_port))
        with open(os.path.join(self.broker_dir, "mosquitto.conf")) as f:
            return f.read()

    def start(self):
        from tools.procs import broker_dir
        from tools.vdevice import VirtualDevice, firmware_romfs
        from edge_agent import registry
        self.broker_dir = broker_dir()
        self.broker_port = free_port()
        self.county.start()
        self.link = CountyLink(self.county.port).start()
        if self.disk:
            self.disk.mount()
        else:
            os.makedirs(os.path.dirname(self.db_path), exist_ok=True)
        self._write_config(self.broker_port)
        self._register()
        self._post_cases()
        self.broker = Mosquitto(self.broker_dir, port=self.broker_port, conf=self._broker_config()).start()
        self._start_agent()
        for d in self.names:
            self.devices[d] = VirtualDevice(os.path.join(self.work, d), HALL, d, self.keys[d], self.broker_port,
                                            window=self.windows[d], heapsize=self.heapsize, username=d,
                                            password=registry.mqtt_password(self.keys[d]),
                                            site={"long_ms": 150, "ack_timeout_s": 5})
        # Powered up together, as a hall's boards are in the morning (each boot waits for its
        # config); the firmware image is built before, once.
        firmware_romfs()
        with concurrent.futures.ThreadPoolExecutor(len(self.devices)) as boot:
            for _ in boot.map(lambda vd: vd.start(), self.devices.values()):
                pass                                # a board that did not boot raises here
        from tools.hall import KIOSK_HEAP
        from tools.vkiosk import VirtualKiosk
        for i, k in enumerate(self.kiosk_names):
            vk = VirtualKiosk(os.path.join(self.work, k), HALL, k, self.keys[k], self.broker_port,
                              window="K%02d" % (i + 1), heapsize=KIOSK_HEAP, username=k,
                              password=registry.mqtt_password(self.keys[k]),
                              site={"status_s": 60, "ack_timeout_s": 5})
            self.kiosks[k] = vk
            vk.start()
        self.desk = TicketDesk(HALL, DESK, self.keys[DESK], self.broker_port,
                               registry.mqtt_password(self.keys[DESK])).start()
        wait_for(lambda: self.desk.client.is_connected(), 30, 0.1, "the ticket desk connected")
        self.bad_sent = self.desk.send_bad(self.rng.randbytes(32), self.names[0], self.keys[self.names[0]])
        return self

    def _register(self):
        """What the technician sets up with `edge-agent devices add`, `window
        set`, `queue add` and `queue serve`, through the functions those
        commands call (edge_agent/cli.py): fifty Python starts were a third
        of the short run's setup."""
        from edge_agent import queues, registry
        from edge_agent.store import Store, now_ms
        store = Store(self.db_path)
        try:
            for d in self.names:
                registry.add(store, HALL, d, self.windows[d], self.keys[d].hex())
                registry.set_window(store, self.windows[d], "办事员%s" % d[-2:], "10%s" % d[-2:])
            for i, k in enumerate(self.kiosk_names):
                registry.add(store, HALL, k, "K%02d" % (i + 1), self.keys[k].hex())
            registry.add(store, HALL, DESK, "K99", self.keys[DESK].hex())
            queues.add(store, QUEUE, "综合受理", now_ms())
            for d in sorted(self.queued):
                queues.serve(store, self.windows[d], [QUEUE])
        finally:
            store.close()

    def _post_cases(self):
        """The cases the kiosks' citizens ask after, as the hall's business
        system posts them to the county (API.md 'Cases')."""
        day = time.strftime("%Y-%m-%d")
        events = [{"id": c + "-1", "case": c, "type": "accepted", "date": day, "item": "431100-%03d" % i,
                   "item_name": "事项%d" % i, "department": "政务服务局", "window": "A01", "promised_days": 5}
                  for i, c in enumerate(CASES)]
        status, got = self.county.call("POST", "/v1/halls/%s/cases" % HALL, self.system_token, {"events": events})
        if status != 200 or any(r["status"] not in ("stored", "duplicate") for r in got["results"]):
            raise ChaosFailure("the county refused the cases: %s %s" % (status, got))

    def _start_agent(self):
        self.agent.start()
        wait_for(lambda: healthy(self.http_port) or not self.agent.alive(), 60, what="agent healthy")

    def close(self):
        self.stop.set()
        for vd in self.devices.values():
            vd.stop()
        for vk in self.kiosks.values():
            vk.close()
        if self.desk:
            self.desk.stop()
        for p in (self.agent, self.broker, self.county):
            if p:
                p.stop()
        if self.link:
            self.link.stop()
        if self.disk:
            self.disk.unmount()

    # -- citizens and staff ----------------------------------------------------
    def _citizen(self, name, rng):
        """Citizens at one window: called (a queue's next ticket by the staff
        key, or a walk-in's number by the wired queue system), served, rated;
        at a queue's window now and then one who is not there (过号)."""
        from tools.vdevice import LEVELS, DeviceError
        n = 0
        while not self.stop.is_set():
            vd = self.devices[name]
            if name in self.paused or not vd.alive():
                time.sleep(0.2)
                continue
            n += 1
            try:
                if name in self.queued:
                    vd.staff("start")                      # `next`: the agent calls a ticket, or a walk-in
                    wait_for(lambda: vd.stats()["state"] == "serving", 10, 0.1, "%s serving" % name)
                    if rng.random() < 0.1:
                        self._no_show(vd)
                else:
                    vd.call("C%04d" % n)
                time.sleep(rng.uniform(0.1, 0.6))          # the service, compressed
                vd.staff("end")
                # The session the press rates, read now: a `next` the agent answers
                # late calls its ticket as a new session in the middle of a walk-in's
                # (the hour-long soak once thanked the walk-in's id, the county had the call's).
                session = vd.stats()["session"]
                level = rng.choice(LEVELS)
                with self.lock:
                    self.pressed[session] = level
                vd.press(level, ms=30)
                if vd.screen()["lines"][2] == "Thank you":
                    with self.lock:
                        self.thanked[session] = level
                        self.served += 1
            except (DeviceError, TimeoutError):
                time.sleep(0.3)                            # the power went, the board is being swapped, no link
            time.sleep(rng.uniform(0.3, 1.5))

    def _no_show(self, vd):
        """Staff held + the last rating key: 过号, and the next one called."""
        import json
        import socket

        def hold():
            try:
                with socket.create_connection(("127.0.0.1", vd.control_port), 10) as c:
                    c.sendall(json.dumps({"op": "press", "button": "staff", "ms": 900}).encode() + b"\n")
                    c.recv(100)
            except OSError:
                pass
        holder = threading.Thread(target=hold, daemon=True)
        holder.start()
        time.sleep(0.3)
        vd.press("very_dissatisfied")
        holder.join(30)
        with self.lock:
            self.no_shows += 1

    def _kiosk_citizen(self, name, rng):
        """Citizens at a kiosk: scan their case, print its slip, rate."""
        from tools.vdevice import LEVELS, DeviceError
        while not self.stop.is_set():
            vk = self.kiosks[name]
            if not vk.alive():
                time.sleep(0.2)
                continue
            try:
                wait_for(lambda: vk.stats().get("ready") and vk.state() == "idle", 30, 0.1, "%s idle" % name)
                vk.scan(rng.choice(CASES))
                wait_for(lambda: vk.state() == "case", 15, 0.05, "%s shows the case" % name)
                vk.tap("print")
                wait_for(lambda: vk.state() == "prompt", 30, 0.05, "%s asks for a rating" % name)
                st = vk.stats()
                level = rng.choice(LEVELS)
                with self.lock:
                    self.pressed[st["session"]] = level
                vk.tap(level)
                if vk.stats()["thanks"] == st["thanks"] + 1:
                    with self.lock:
                        self.thanked[st["session"]] = level
                        self.served += 1
            except (DeviceError, TimeoutError) as e:
                why = str(e).split(":")[0][:60]
                with self.lock:
                    self.kiosk_misses[why] = self.kiosk_misses.get(why, 0) + 1
                time.sleep(0.3)
            time.sleep(rng.uniform(0.5, 2.0))

    def _tickets(self, rng):
        """Citizens taking tickets at the desk, about one a second."""
        while not self.stop.is_set():
            self.desk.take(QUEUE)
            self.stop.wait(rng.uniform(0.5, 1.5))

    # -- faults ------------------------------------------------------------------
    def _apply(self, kind, target, hold):
        if kind == "agent_kill":
            self.agent.kill()
            time.sleep(hold)
            self._start_agent()
        elif kind == "broker_kill":
            self.broker.kill()
            time.sleep(hold)
            self.broker.start()
        elif kind in ("county_5xx", "county_hang", "county_slow", "uplink_drop"):
            self.link.set({"county_5xx": "5xx", "county_hang": "hang", "county_slow": "slow",
                           "uplink_drop": "drop"}[kind])
            time.sleep(hold)
            self.link.set("ok")
        elif kind == "power_cut":
            vd = self.kiosks.get(target) or self.devices[target]
            vd.kill()
            time.sleep(hold)
            vd.start()
        elif kind == "disk_full":
            if not self.disk:
                return "skipped: no small disk (needs root for tmpfs)"
            self.disk.fill()
            time.sleep(hold)
            self.disk.unfill()
        elif kind == "device_replace":
            return self._replace(target)
        elif kind == "clock_jump":
            vd = self.devices[target]
            before = vd.stats()["clock"]
            vd._rpc({"op": "clock", "jump_ms": hold})
            return "clock %d -> %d" % (before, vd.stats()["clock"])
        elif kind == "pi_clock_jump":
            if not self.clock:
                return "skipped: no C compiler for the wall-clock shim"
            self.agent.kill()
            self.clock.jump(hold)
            self._start_agent()
            time.sleep(PI_CLOCK_HOLD_S)
            self.clock.reset()
            return "restarted %+d s behind, set right after %.0f s" % (hold // 1000, PI_CLOCK_HOLD_S)
        return "done"

    def _replace(self, name):
        """A technician swaps a board: its backlog drained first (a board that
        still works), then retired, the new one provisioned above its seq."""
        from edge_agent import registry
        from tools.vdevice import VirtualDevice
        self.paused.add(name)
        try:
            old = self.devices[name]
            try:
                wait_for(lambda: old.alive() and old.stats()["outbox"] == 0, 90, 0.5, "%s drained" % name)
            except (TimeoutError, OSError):
                return "skipped: %s did not drain in 90 s" % name
            old.stop()
            new = old.device + "r"
            key = self.rng.randbytes(32)
            out = self.edge_agent("devices", "replace", old.device, new, "--key", key.hex())
            mark = int(out.split("continues above ")[1].split()[0])
            self._broker_config()
            self.broker._signal(__import__("signal").SIGHUP)     # Mosquitto rereads passwords and ACL
            vd = VirtualDevice(os.path.join(self.work, new), HALL, new, key, self.broker_port,
                               window=self.windows[name], heapsize=self.heapsize, username=new,
                               password=registry.mqtt_password(key),
                               site={"long_ms": 150, "ack_timeout_s": 5, "hwm": mark})
            self.devices[name] = vd.start()
            return "%s replaced by %s above seq %d" % (old.device, new, mark)
        finally:
            self.paused.discard(name)

    def _faults(self, began):
        threads = []
        for at, kind, target, hold in self.plan:
            while time.monotonic() - began < at:
                if self.stop.wait(0.05):
                    return threads
            t = threading.Thread(target=self._fault, args=(at, kind, target, hold), daemon=True)
            t.start()
            threads.append(t)
        return threads

    def _fault(self, at, kind, target, hold):
        # Faults overlap, but two on the same thing take turns: two restarts
        # of the agent at once would leave one running that the harness no
        # longer holds (and kills nothing), two link modes would end each other.
        thing = ("agent" if kind in ("agent_kill", "pi_clock_jump") else "link" if kind.startswith("county_")
                 or kind == "uplink_drop" else kind if target is None else target)
        with self._fault_locks.setdefault(thing, threading.Lock()):
            self._fault_on(at, kind, target, hold)

    def _fault_on(self, at, kind, target, hold):
        try:
            what = self._apply(kind, target, hold)
        except Exception as e:               # a fault that could not be made is reported, not fatal
            what = "failed: %r" % (e,)
        self.log("  %6.1fs %-14s %-6s %s" % (at, kind, target or "", what))
        self.faults_done.append((at, kind, target, what))

    # -- the run -------------------------------------------------------------------
    def run(self):
        self.log("chaos run: seed %d, %d s, a fault every ~%g s, %d devices, county %s; schedule:" % (
            self.seed, self.seconds, self.every_s, len(self.names), self.county.db.split("?")[0]))
        for at, kind, target, hold in self.plan:
            self.log("  %6.1fs %-14s %-6s %s" % (at, kind, target or "", "jump %+d s" % (hold // 1000)
                                                     if kind.endswith("clock_jump") else "hold %.1fs" % hold))
        citizens = [threading.Thread(target=self._citizen, args=(d, random.Random(self.rng.random())), daemon=True)
                    for d in self.names]
        citizens += [threading.Thread(target=self._kiosk_citizen, args=(k, random.Random(self.rng.random())),
                                      daemon=True) for k in self.kiosk_names]
        citizens.append(threading.Thread(target=self._tickets, args=(random.Random(self.rng.random()),),
                                         daemon=True))
        began = time.monotonic()
        for t in citizens:
            t.start()
        faults = self._faults(began)
        while time.monotonic() - began < self.seconds:
            time.sleep(0.2)
        for t in faults:
            t.join(120)                        # every fault healed (each heals itself after its hold)
        self.stop.set()
        for t in citizens:
            t.join(60)
        self.log("citizens stopped: %d thanked; draining" % len(self.thanked))
        return self.check()

    def _county_events(self):
        """What the county stored for the hall: [(device, kind, body dict)]
        (the body with the county's received_ms added as `_received_ms`)."""
        import json
        from tools.county.store import open_store
        store = open_store(self.county.db, create=False)
        try:
            with store._reading() as db:
                rows = db.execute("SELECT device, kind, body, received_ms FROM events WHERE hall = %s"
                                  % store.placeholder, (HALL,)).fetchall()
        finally:
            store.close()
        return [(d, k, dict(json.loads(b), _received_ms=r)) for d, k, b, r in rows]

    def check(self, timeout=240):
        import sqlite3
        for vd in list(self.devices.values()) + list(self.kiosks.values()):
            if not vd.alive():
                vd.start()
        boards = list(self.devices.values()) + list(self.kiosks.values())
        wait_for(lambda: all(vd.stats()["outbox"] == 0 for vd in boards), timeout, 1,
                 "every device's outbox drained")
        agent_db = sqlite3.connect(self.db_path, timeout=30)
        try:
            def at_agent():
                return agent_db.execute("SELECT count(*) FROM events WHERE kind IN ('rating', 'print', 'ticket')"
                                        ).fetchone()[0]
            wait_for(lambda: sum(k in ("rating", "print", "ticket") for _, k, _ in self._county_events())
                     >= at_agent(), timeout, 1, "the county caught up")
            conflicts = agent_db.execute("SELECT count(*) FROM quarantine WHERE reason = 'conflict'").fetchone()[0]
            quarantined = agent_db.execute("SELECT topic, reason FROM quarantine").fetchall()
            # A ticket's name for ever is <yyyymmdd>-<number> (SPEC): an hour's
            # run may cross the hall's midnight, and numbers start again at 1.
            from edge_agent.queues import ticket_id
            tickets = {ticket_id(day, t): (state, w) for day, t, state, w in
                       agent_db.execute("SELECT day, ticket, state, window FROM tickets")}
            started = agent_db.execute("SELECT json_extract(body, '$.ticket') FROM events WHERE kind = 'session' "
                                       "AND json_extract(body, '$.action') = 'started' "
                                       "AND json_extract(body, '$.ticket') IS NOT NULL").fetchall()
            call_windows = [(ticket_id(day, t), n) for day, t, n in agent_db.execute(
                "SELECT t.day, t.ticket, count(DISTINCT c.window) FROM queue_calls c "
                "JOIN tickets t ON t.id = c.ticket_id GROUP BY t.id")]
        finally:
            agent_db.close()
        county = self._county_events()
        problems = []
        # Ratings: every thanked press once, with its level; nothing else.
        by_session, channels, skewed = {}, {}, 0
        for device, kind, body in county:
            if kind == "rating":
                skewed += body["t"] > 0 and abs(body["t"] - body["_received_ms"]) > 300000
                by_session.setdefault(body["session"], []).append(body["level"])
                channels[body["channel"]] = channels.get(body["channel"], 0) + 1
                if device.startswith("ks-") != (body["channel"] == "kiosk"):
                    problems.append("rating from %s on channel %s" % (device, body["channel"]))
        for session, level in sorted(self.thanked.items()):
            if by_session.get(session) != [level]:
                problems.append("thanked %s %s, county has %s" % (session, level, by_session.get(session)))
        problems += ["session %s rated %d times at the county" % (s, len(v)) for s, v in by_session.items()
                     if len(v) > 1]
        # The rest are presses whose thank-you nobody saw (the power went, the
        # board was swapped): each must be a press made, with its level.
        problems += ["the county has %s %s, nobody pressed it" % (s, v) for s, v in by_session.items()
                     if s not in self.thanked and [self.pressed.get(s)] != v]
        # Tickets: issued = called + no-show + waiting, none twice.
        actions = {}
        for device, kind, body in county:
            if kind == "ticket" and device == "_queue":
                actions.setdefault(body["id"], []).append(body["action"])
        numbers = collections.Counter(t.split("-", 1)[1] for t in tickets)
        lost = [t for t in self.desk.given if t not in numbers]
        if lost:
            problems.append("tickets given at the desk the agent does not have: %s" % lost[:10])
        for t, (state, window) in tickets.items():
            a = actions.get(t, [])
            if a.count("issued") != 1 or a.count("called") != (state != "waiting") or \
                    a.count("no_show") != (state == "no_show"):
                problems.append("ticket %s is %s at the agent, the county has %s" % (t, state, a))
        # A session names its ticket's number only: one service per day it was given.
        problems += ["ticket %s started %d services" % (t, n) for t, n in
                     collections.Counter(t for (t,) in started if t in numbers).items()
                     if n > numbers[t]]
        problems += ["ticket %s called at %d windows" % (t, n) for t, n in call_windows if n > 1]
        states = collections.Counter(s for s, _ in tickets.values())
        # Print jobs: on paper at most once, reported once, at the county.
        reports, on_paper = {}, {}
        for device, kind, body in county:
            if kind == "print":
                reports.setdefault(body["job"], []).append(body["result"])
        for name, vk in self.kiosks.items():
            for job, n in _jobs_on_paper(vk.printer).items():
                on_paper[job] = on_paper.get(job, 0) + n
            if vk.printer.error:
                problems.append("%s's printer refused what it was sent: %s" % (name, vk.printer.error))
        problems += ["job %s on paper %d times" % (j, n) for j, n in on_paper.items() if n > 1]
        problems += ["job %s reported %d times: %s" % (j, len(r), r) for j, r in reports.items() if len(r) > 1]
        problems += ["job %s on paper, not reported at the county" % j for j in on_paper if j not in reports]
        # The quarantine: exactly what the desk sent to be refused.
        from protocol import topics
        desk_topic = topics.topic(HALL, DESK, topics.EVENTS)
        if conflicts:
            problems.append("%d conflicts at the agent (a seq reused)" % conflicts)
        unexplained = [r for t, r in quarantined if t != desk_topic]
        if unexplained or len(quarantined) != self.bad_sent:
            problems.append("quarantine: %d of the %d bad inputs sent, and unexplained: %s" % (
                len(quarantined) - len(unexplained), self.bad_sent, quarantined))
        self.log("ratings stamped by a jumped clock (t 5 min or more off the county's time): %d" % skewed)
        self.log("pressed %d, " % len(self.pressed) + "thanked %d (channels at the county %s), county ratings %d (sessions %d); tickets %d (%s), "
                 "no-show presses %d; print jobs %d reported, %d on paper; quarantined %s; kiosk misses %s; faults %d" % (
                     len(self.thanked), channels, sum(channels.values()), len(by_session), len(tickets),
                     dict(states), self.no_shows, len(reports), len(on_paper),
                     sorted(r for _, r in quarantined), self.kiosk_misses, len(self.faults_done)))
        if problems:
            # How many of each kind (the words before the first name), then the first 30.
            kinds = collections.Counter(p.split(" ", 1)[0] + " ..." for p in problems)
            raise ChaosFailure("seed %d: %d problem(s) %s:\n  %s" % (self.seed, len(problems), dict(kinds),
                                                                   "\n  ".join(problems[:30])))
        return {"seed": self.seed, "thanked": len(self.thanked), "county": sum(channels.values()),
                "channels": channels, "skewed": skewed, "tickets": dict(states), "prints": len(reports), "on_paper": len(on_paper),
                "faults": self.faults_done}


def _jobs_on_paper(printer):
    """job id -> slips cut (or on the cutter) that carry it (the slip's 凭条号 is its job)."""
    count = {}
    for slip in printer.cut_slips() + ([printer.slip] if printer.slip else []):
        for line in slip.lines:
            if line.startswith("凭条号:"):
                count[line[len("凭条号:"):]] = count.get(line[len("凭条号:"):], 0) + 1
    return count


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="the run to replay (default: a new one, printed)")
    ap.add_argument("--seconds", type=float, default=90, help="length of the busy part (default 90)")
    ap.add_argument("--every", type=float, default=6.0, help="a fault about every this many seconds (default 6; "
                                                             "make test's run: 4.5)")
    ap.add_argument("--devices", type=int, default=20, help="virtual evaluators (default 20)")
    ap.add_argument("--county-db", default=None, help="county database: a PostgreSQL URL or an SQLite path "
                                                          "(default: SQLite in the work dir)")
    ap.add_argument("--work-dir", default=None, help="where the run keeps its state and logs")
    args = ap.parse_args(argv)
    if not 1 <= args.devices <= 200 or not 10 <= args.seconds <= 7 * 86400 or not 1 <= args.every <= 3600:
        ap.error("--devices 1..200, --seconds 10..604800, --every 1..3600")
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(31)
    work = args.work_dir or os.path.join("build", "chaos", "%d-%s" % (seed, time.strftime("%Y%m%d-%H%M%S")))
    hall = ChaosHall(work, seed, args.devices, args.seconds, args.county_db, every_s=args.every)
    try:
        hall.start()
        report = hall.run()
        print("OK: every thanked press at the county exactly once (%d)" % report["thanked"])
        return 0
    except ChaosFailure as e:
        print("FAILED: %s\nstate and logs in %s" % (e, work), file=sys.stderr)
        return 1
    finally:
        hall.close()


if __name__ == "__main__":
    sys.exit(main())
