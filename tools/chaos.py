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
  device_replace  a board swapped: drained, retired, a new one at its window (`devices replace`)

At the end every fault is healed, the citizens stop, the backlog drains,
and the county's ratings are compared with what the citizens were thanked
for: each thanked session once with its level, no session twice, no
conflict, nothing quarantined. The seed and the schedule are printed first:
`python -m tools.chaos --seed N --seconds S --devices D` runs it again.
"""
import argparse
import os
import random
import subprocess
import sys
import threading
import time

from tools.faults import CountyLink, SmallDisk
from tools.procs import Mosquitto, Proc, VENV_BIN, free_port, healthy, wait_for

FAULTS = ("agent_kill", "broker_kill", "county_5xx", "county_hang", "county_slow", "uplink_drop",
          "power_cut", "disk_full", "device_replace")
EDGE_AGENT = os.path.join(VENV_BIN, "edge-agent")
HALL = "chaos-hall"
TOKEN = "tok-chaos-" + "c" * 16


class ChaosFailure(AssertionError):
    pass


def schedule(seed, seconds, devices, kinds=FAULTS, every_s=6.0):
    """[(at_s, kind, target, hold_s)] from the seed: one fault every ~every_s
    seconds over the run (they overlap), at most one device replaced."""
    rng = random.Random(seed)
    out, replaced = [], False
    t = rng.uniform(2, every_s)
    while t < seconds - 5:
        kind = rng.choice(kinds)
        if kind == "device_replace":
            if replaced or len(devices) < 2:
                kind = "power_cut"
            replaced = True
        target = rng.choice(devices) if kind in ("power_cut", "device_replace") else None
        hold = rng.uniform(0.3, 3.0) if kind == "power_cut" else rng.uniform(2.0, 10.0)
        out.append((round(t, 2), kind, target, round(hold, 2)))
        t += rng.uniform(every_s / 2, every_s * 1.5)
    return out


class ChaosHall:
    def __init__(self, work_dir, seed, devices=20, seconds=90, county_db=None, heapsize="64k", kinds=FAULTS,
                 log=print):
        from tools.county.testing import CountyProc
        self.work = os.path.abspath(work_dir)
        os.makedirs(self.work, exist_ok=True)
        self.seed, self.seconds, self.heapsize, self.log = seed, seconds, heapsize, log
        self.rng = random.Random(seed)
        self.names = ["ev-%02d" % (i + 1) for i in range(devices)]
        self.windows = {d: "A%02d" % (i + 1) for i, d in enumerate(self.names)}
        self.keys = {d: self.rng.randbytes(32) for d in self.names}
        self.plan = schedule(seed, seconds, self.names, kinds)
        self.county = CountyProc(self.work, county_db or os.path.join(self.work, "county.db"), {HALL: TOKEN})
        self.link = None
        self.disk = SmallDisk(os.path.join(self.work, "agent-disk"), mib=48) if SmallDisk.available() else None
        store_dir = self.disk.path if self.disk else os.path.join(self.work, "agent-store")
        self.db_path = os.path.join(store_dir, "agent.db")
        self.config = os.path.join(self.work, "agent.toml")
        self.broker_dir = os.path.join(self.work, "broker")
        self.broker = None
        self.http_port = free_port()
        self.agent = Proc("edge-agent", [EDGE_AGENT, "run", "--config", self.config], self.work)
        self.devices = {}          # name at the window -> VirtualDevice (a replaced board's successor too)
        self.thanked = {}          # session -> level the citizen was thanked for
        self.served = 0
        self.paused = set()        # devices whose citizens wait (a board being swapped)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.faults_done = []

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
                "[http]", 'host = "127.0.0.1"', "port = %d" % self.http_port, ""]))
        os.chmod(self.config, 0o600)

    def _broker_config(self):
        self.edge_agent("broker-config", "--out", self.broker_dir, "--data-dir", self.broker_dir + "/data",
                        "--listen", "127.0.0.1", "--port", str(self.broker_port))
        with open(os.path.join(self.broker_dir, "mosquitto.conf")) as f:
            return f.read()

    def start(self):
        from tools.procs import broker_dir
        from tools.vdevice import VirtualDevice
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
        for d in self.names:
            self.edge_agent("devices", "add", d, "--window", self.windows[d], "--key", self.keys[d].hex())
            self.edge_agent("window", "set", self.windows[d], "--staff", "办事员%s" % d[-2:], "--staff-no",
                            "10%s" % d[-2:])
        self.broker = Mosquitto(self.broker_dir, port=self.broker_port, conf=self._broker_config()).start()
        self._start_agent()
        for d in self.names:
            vd = VirtualDevice(os.path.join(self.work, d), HALL, d, self.keys[d], self.broker_port,
                               window=self.windows[d], heapsize=self.heapsize, username=d,
                               password=registry.mqtt_password(self.keys[d]),
                               site={"long_ms": 150, "ack_timeout_s": 5})
            self.devices[d] = vd.start()
        return self

    def _start_agent(self):
        self.agent.start()
        wait_for(lambda: healthy(self.http_port) or not self.agent.alive(), 60, what="agent healthy")

    def close(self):
        self.stop.set()
        for vd in self.devices.values():
            vd.stop()
        for p in (self.agent, self.broker, self.county):
            if p:
                p.stop()
        if self.link:
            self.link.stop()
        if self.disk:
            self.disk.unmount()

    # -- citizens and staff ----------------------------------------------------
    def _citizen(self, name, rng):
        from tools.vdevice import LEVELS, DeviceError
        n = 0
        while not self.stop.is_set():
            vd = self.devices[name]
            if name in self.paused or not vd.alive():
                time.sleep(0.2)
                continue
            n += 1
            try:
                vd.call("C%04d" % n)
                session = vd.stats()["session"]
                time.sleep(rng.uniform(0.1, 0.6))          # the service, compressed
                vd.staff("end")
                level = rng.choice(LEVELS)
                vd.press(level, ms=30)
                if vd.screen()["lines"][2] == "Thank you":
                    with self.lock:
                        self.thanked[session] = level
                        self.served += 1
            except DeviceError:
                time.sleep(0.3)                            # the power went, or the board is being swapped
            time.sleep(rng.uniform(0.3, 1.5))

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
            vd = self.devices[target]
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
        try:
            what = self._apply(kind, target, hold)
        except Exception as e:               # a fault that could not be made is reported, not fatal
            what = "failed: %r" % (e,)
        self.log("  %6.1fs %-14s %-6s %s" % (at, kind, target or "", what))
        self.faults_done.append((at, kind, target, what))

    # -- the run -------------------------------------------------------------------
    def run(self):
        self.log("chaos run: seed %d, %d s, %d devices, county %s; schedule:" % (
            self.seed, self.seconds, len(self.names), self.county.db.split("?")[0]))
        for at, kind, target, hold in self.plan:
            self.log("  %6.1fs %-14s %-6s hold %.1fs" % (at, kind, target or "", hold))
        citizens = [threading.Thread(target=self._citizen, args=(d, random.Random(self.rng.random())), daemon=True)
                    for d in self.names]
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

    def _county_ratings(self):
        from tools.county.store import open_store
        store = open_store(self.county.db, create=False)
        try:
            return [r for r in store.report_events(HALL, 1, 2 ** 53) if r["kind"] == "rating"]
        finally:
            store.close()

    def check(self, timeout=240):
        import sqlite3
        for vd in self.devices.values():
            if not vd.alive():
                vd.start()
        wait_for(lambda: all(vd.stats()["outbox"] == 0 for vd in self.devices.values()), timeout, 1,
                 "every device's outbox drained")
        agent_db = sqlite3.connect(self.db_path, timeout=30)
        try:
            def at_agent():
                return agent_db.execute("SELECT count(*) FROM events WHERE kind = 'rating'").fetchone()[0]
            wait_for(lambda: len(self._county_ratings()) >= at_agent(), timeout, 1, "the county caught up")
            conflicts = agent_db.execute("SELECT count(*) FROM quarantine WHERE reason = 'conflict'").fetchone()[0]
            quarantined = agent_db.execute("SELECT reason, count(*) FROM quarantine GROUP BY reason").fetchall()
        finally:
            agent_db.close()
        ratings = self._county_ratings()
        by_session = {}
        for r in ratings:
            import json
            by_session.setdefault(json.loads(r["body"])["session"], []).append(r["level"])
        problems = []
        for session, level in sorted(self.thanked.items()):
            if by_session.get(session) != [level]:
                problems.append("thanked %s %s, county has %s" % (session, level, by_session.get(session)))
        problems += ["session %s rated %d times at the county" % (s, len(v)) for s, v in by_session.items()
                     if len(v) > 1]
        if conflicts:
            problems.append("%d conflicts at the agent (a seq reused)" % conflicts)
        if quarantined:
            problems.append("quarantined without a fault that explains it: %s" % quarantined)
        self.log("thanked %d, county ratings %d (sessions %d); faults %d" % (
            len(self.thanked), len(ratings), len(by_session), len(self.faults_done)))
        if problems:
            raise ChaosFailure("seed %d: %d problem(s):\n  %s" % (self.seed, len(problems), "\n  ".join(problems[:30])))
        return {"seed": self.seed, "thanked": len(self.thanked), "county": len(ratings),
                "faults": self.faults_done}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.chaos", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=None, help="the run to replay (default: a new one, printed)")
    ap.add_argument("--seconds", type=float, default=90, help="length of the busy part (default 90)")
    ap.add_argument("--devices", type=int, default=20, help="virtual evaluators (default 20)")
    ap.add_argument("--county-db", default=None, help="county database: a PostgreSQL URL or an SQLite path "
                                                          "(default: SQLite in the work dir)")
    ap.add_argument("--work-dir", default=None, help="where the run keeps its state and logs")
    args = ap.parse_args(argv)
    if not 1 <= args.devices <= 200 or not 10 <= args.seconds <= 7 * 86400:
        ap.error("--devices 1..200, --seconds 10..604800")
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(31)
    work = args.work_dir or os.path.join("build", "chaos", "%d-%s" % (seed, time.strftime("%Y%m%d-%H%M%S")))
    hall = ChaosHall(work, seed, args.devices, args.seconds, args.county_db)
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
