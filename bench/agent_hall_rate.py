"""The edge agent at a realistic hall rate: CPU per event and memory with
200 devices, against another revision of the agent (main by default)
measured in the same run on the same machine:

  broker     Mosquitto as `edge-agent broker-config` writes it: ACL, and a
             login per device (its id, the password derived from its key);
  devices    N paho clients in this process, each with its real key and
             login, online (retained presence, config, beacons), together
             sending R events/s (one device after the other, so each sends
             R/N per second) for S seconds; each waits for its sealed acks;
  CPU        the agent process's user + system time (/proc/<pid>/stat) from
             the first event sent to the last ack received, per event: every
             thread and chore of the agent is in it;
  RSS        VmRSS with no device connected (idle), then with the N devices
             connected after the last ack, and VmHWM (peak).

The baseline is `git archive REV` of this repository, run with the same
venv and the same config. Rounds alternate baseline and this tree; medians
are reported. `--profile OUT` runs this tree once more under cProfile (every
thread). Exit 1 if any run does not store and ack every event.

    python -m bench.agent_hall_rate [--devices 200] [--rate 200] [--seconds 30]
        [--runs 5] [--baseline main] [--profile OUT]
"""
import argparse
import json
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

import protocol
from protocol import messages, topics
from bench._hall import HALL, BenchHall
from bench._trees import tree_of
from tools.procs import ROOT, wait_for

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    """(user, system) CPU seconds of a process, all its threads."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def rss_mib(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                out[k] = int(v.split()[0]) / 1024.0
    return out


class Device:
    """One device on paho with its own login; counts the seqs its acks cover."""

    def __init__(self, name, key, port):
        self.name, self.key = name, key
        self.acked, self.lock = set(), threading.Lock()
        self.ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
        from edge_agent import registry
        c.username_pw_set(name, registry.mqtt_password(key))
        c.will_set(topics.topic(HALL, name, topics.STATUS), b'{"online":false}', qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        # 200 logins at once keep the broker busy hashing passwords past paho's
        # connect timeout: retry soon, not after paho's default backoff of minutes.
        c.reconnect_delay_set(0.2, 2)
        c.connect_async("127.0.0.1", port, keepalive=60)
        c.loop_start()
        self.client = c

    def _on_connect(self, c, u, f, rc, p):
        if rc.is_failure:
            return
        c.subscribe([(topics.topic(HALL, self.name, ch), 1) for ch in (topics.ACK, topics.CONFIG, topics.CMD)])
        c.publish(topics.topic(HALL, self.name, topics.STATUS), b'{"online":true,"fw":"bench"}', qos=1, retain=True)

    def _on_message(self, c, u, msg):
        if msg.topic.endswith("/config") and msg.payload:
            self.ready.set()
        elif msg.topic.endswith("/ack"):
            ranges = messages.parse_ack(messages.unseal(self.key, topics.ACK, msg.payload, 0))
            with self.lock:
                for lo, hi in ranges:
                    self.acked.update(range(lo, hi + 1))

    def send(self, seq):
        ev = {"v": 1, "device": self.name, "seq": seq, "kind": "rating", "t": int(time.time() * 1000),
              "level": protocol.LEVELS[seq % 5], "channel": "window", "session": "%s-1-%d" % (self.name, seq),
              "window": "W" + self.name[-3:], "staff": "窗口工作人员"}
        self.client.publish(topics.topic(HALL, self.name, topics.EVENTS), protocol.encode(ev, self.key), qos=1)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


def one_run(tree, names, keys, args, profile=None):
    """CPU seconds per event and RSS figures of the agent from `tree`."""
    with BenchHall(tree, {d: keys[d] for d in names}, "bench-hall-rate-") as hall:
        hall.start(mqtt=args.mqtt, profile=profile)
        pid = hall.agent.p.pid
        time.sleep(2)
        idle = rss_mib(pid)
        devices = hall.connect(Device, 300)
        time.sleep(2)
        total = int(args.rate * args.seconds)
        cpu0, t0 = cpu_s(pid), time.monotonic()
        for i in range(total):
            due = t0 + i / args.rate
            left = due - time.monotonic()
            if left > 0:
                time.sleep(left)
            devices[i % len(devices)].send(i // len(devices) + 1)
        per = {d.name: (total - i + len(devices) - 1) // len(devices) for i, d in enumerate(devices)}
        wait_for(lambda: all(len(d.acked) >= per[d.name] for d in devices), 120, 0.1, "every ack")
        cpu1 = cpu_s(pid)
        connected = rss_mib(pid)
        c = sqlite3.connect(hall.db)
        stored = c.execute("SELECT count(*) FROM events").fetchone()[0]
        c.close()
    if stored != total:
        raise SystemExit("FAIL: stored %d of %d" % (stored, total))
    return {"cpu_us": 1e6 * (sum(cpu1) - sum(cpu0)) / total, "sys_us": 1e6 * (cpu1[1] - cpu0[1]) / total, "idle": idle["VmRSS"], "rss": connected["VmRSS"],
            "peak": connected["VmHWM"]}


def in_child(tree, argv, profile=None):
    """one_run() in a process of its own: 200 paho clients leave file
    descriptors behind, and past 1024 paho's select() cannot take new ones."""
    given, argv = list(sys.argv[1:] if argv is None else argv), []
    while given:                            # the same options, less --profile
        a = given.pop(0)
        if a == "--profile":
            given.pop(0)
        elif not a.startswith("--profile="):
            argv.append(a)
    out = subprocess.run([sys.executable, "-m", "bench.agent_hall_rate", "--one-run", tree]
                         + (["--profile", profile] if profile else []) + argv,
                         cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--rate", type=float, default=200.0, help="events per second, all devices together")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--runs", type=int, default=5, help="rounds (each: baseline, then this tree)")
    ap.add_argument("--baseline", default="main", help="git revision to compare with (default: main)")
    ap.add_argument("--profile", metavar="OUT", help="also run this tree's agent under cProfile, profile to OUT")
    ap.add_argument("--mqtt", metavar="KEY=VALUE", action="append", default=[],
                    help="an [mqtt] setting for both agents, e.g. batch_ms=50 (TOML value)")
    ap.add_argument("--no-baseline", action="store_true", help="measure this tree only")
    ap.add_argument("--one-run", metavar="TREE", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    names = ["ev-%03d" % i for i in range(args.devices)]
    keys = {d: secrets.token_bytes(32) for d in names}
    if args.one_run:
        print(json.dumps(one_run(args.one_run, names, keys, args, args.profile)))
        return 0
    trees = tempfile.mkdtemp(prefix="bench-hall-trees-")
    try:
        sides = (() if args.no_baseline else (("baseline " + args.baseline, tree_of(args.baseline, trees)),)) \
            + (("this tree", ROOT),)
        results = {label: [] for label, _ in sides}
        for r in range(args.runs):
            for label, tree in sides:
                res = in_child(tree, argv)
                results[label].append(res)
                print("round %d %-16s %6.0f us/event (%.0f system)  RSS idle %.1f, %d devices %.1f, peak %.1f MiB"
                      % (r + 1, label, res["cpu_us"], res["sys_us"], res["idle"], args.devices, res["rss"], res["peak"]),
                      flush=True)
        if args.profile:
            in_child(ROOT, argv, os.path.abspath(args.profile))
            print("profile (this tree under cProfile, every thread): %s" % args.profile)
    finally:
        shutil.rmtree(trees, ignore_errors=True)
    print("%d devices, %.0f events/s for %.0f s, median of %d runs each"
          % (args.devices, args.rate, args.seconds, args.runs))
    print("%-18s %14s %12s %12s %16s %12s" % ("agent", "CPU us/event", "of it system", "RSS idle",
                                              "RSS %d devices" % args.devices, "peak"))
    for label, rows in results.items():
        med = lambda k: statistics.median(x[k] for x in rows)  # noqa: E731
        print("%-18s %14.0f %12.0f %8.1f MiB %12.1f MiB %8.1f MiB" % (
            label, med("cpu_us"), med("sys_us"), med("idle"), med("rss"), med("peak")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
