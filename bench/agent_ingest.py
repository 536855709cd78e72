"""Durable ingest rate of the edge agent against the broker's own limit,
both measured in this run on this machine with the same broker settings:

  broker limit   P `mosquitto_pub -l` publishers (QoS 1) -> one
                 `mosquitto_sub -q 1` subscriber: how fast Mosquitto moves
                 these messages from publishers to one QoS 1 subscriber;
  paho only      a Python paho subscriber that PUBACKs and stores nothing:
                 the ceiling of any paho-based agent on this machine;
  agent          the same publishers and messages -> the edge agent (this
                 tree's, and `--baseline REV`'s, main by default), counted
                 when COMMITted to SQLite (synchronous=FULL) - durable, the
                 moment a device may forget the event.

Each of the three runs R times in turn (median reported, and the median of
the per-round ratios, so a busy moment hits both sides of a ratio). Also
reports the agent's batch size (messages per commit). `--profile OUT` runs
the agent once more under cProfile (every thread) and writes the profile to
OUT. Exit 1 if the agent does not end with exactly N events.

    python -m bench.agent_ingest [--events N] [--publishers P] [--inflight K] [--runs R] [--profile OUT]
        [--baseline REV]
"""
import argparse
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

import protocol
from protocol import topics
from bench._trees import edge_agent, tree_of
from tools.procs import Mosquitto, Proc, ROOT, free_port, healthy, wait_for

HALL = "bench"


def broker_conf(work, port, inflight):
    return "\n".join(["listener %d 127.0.0.1" % port, "allow_anonymous true", "persistence false",
                      "max_queued_messages 0", "max_inflight_messages %d" % inflight,
                      "log_dest stdout", "log_type error", ""])


def payloads(devices, per_device, keys):
    out = {}
    for d in devices:
        lines = []
        for seq in range(1, per_device + 1):
            ev = {"v": 1, "device": d, "seq": seq, "kind": "rating", "t": 1764000000000 + seq,
                  "level": protocol.LEVELS[seq % 5], "channel": "window", "session": "%s-1-%d" % (d, seq)}
            lines.append(protocol.encode(ev, keys[d]))
        out[d] = b"\n".join(lines) + b"\n"
    return out


def publish_all(port, data):
    procs = [subprocess.Popen(["mosquitto_pub", "-p", str(port), "-q", "1", "-l",
                               "-i", "bench-pub-" + d, "-t", topics.topic(HALL, d, "events")],
                              stdin=subprocess.PIPE) for d in data]
    for p, body in zip(procs, data.values()):
        p.stdin.write(body)
        p.stdin.close()
    return procs


def broker_limit(work, n, data, inflight):
    port = free_port()
    broker = Mosquitto(work + "/b1", port=port, conf=broker_conf(work + "/b1", port, inflight)).start()
    try:
        sub = subprocess.Popen(["mosquitto_sub", "-p", str(port), "-q", "1", "-C", str(n),
                                "-t", topics.for_all_devices(HALL, "events")], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        t0 = time.monotonic()
        pubs = publish_all(port, data)
        sub.wait(600)
        dt = time.monotonic() - t0
        for p in pubs:
            p.wait(60)
        return n / dt, dt
    finally:
        broker.stop()


def paho_limit(work, n, data, inflight):
    """A paho subscriber that PUBACKs each message in on_message and does
    nothing else: the ceiling of any Python paho-based agent here."""
    import threading
    import paho.mqtt.client as mqtt
    port = free_port()
    broker = Mosquitto(work + "/b3", port=port, conf=broker_conf(work + "/b3", port, inflight)).start()
    got, done = [0], threading.Event()

    def on_message(c, u, m):
        c.ack(m.mid, m.qos)
        got[0] += 1
        if got[0] == n:
            done.set()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-paho", clean_session=False, manual_ack=True)
    c.on_message = on_message
    c.on_connect = lambda cl, *a: cl.subscribe(topics.for_all_devices(HALL, "events"), 1)
    try:
        c.connect("127.0.0.1", port)
        c.loop_start()
        time.sleep(0.5)
        t0 = time.monotonic()
        pubs = publish_all(port, data)
        done.wait(600)
        dt = time.monotonic() - t0
        for p in pubs:
            p.wait(60)
        return n / dt, dt
    finally:
        c.loop_stop()
        broker.stop()


def agent_rate(work, n, data, keys, inflight, tree=ROOT, profile=None):
    os.makedirs(work, exist_ok=True)
    port, http = free_port(), free_port()
    broker = Mosquitto(work + "/b2", port=port, conf=broker_conf(work + "/b2", port, inflight)).start()
    cfg = os.path.join(work, "agent.toml")
    db = os.path.join(work, "agent.db")
    with open(cfg, "w") as f:
        f.write('hall = "%s"\n[mqtt]\nport = %d\n[store]\npath = "%s"\n[http]\nport = %d\n' % (HALL, port, db, http))
    ea, env = edge_agent(tree)
    for d, k in keys.items():
        subprocess.run(ea + ["--config", cfg, "devices", "add", d, "--window", "W" + d[-3:], "--key", k.hex()],
                       check=True, capture_output=True, env=env, cwd=tree)
    argv = ea + ["run", "--config", cfg]
    if profile:
        argv = [sys.executable, "-m", "bench._profile", profile, "run", "--config", cfg]
    agent = Proc("edge-agent", argv, work, env=env, cwd=tree).start()
    try:
        wait_for(lambda: healthy(http), 30, what="agent")
        t0 = time.monotonic()
        pubs = publish_all(port, data)
        c = sqlite3.connect(db, timeout=30)
        wait_for(lambda: c.execute("SELECT count(*) FROM events").fetchone()[0] >= n, 600, 0.02, "all stored")
        dt = time.monotonic() - t0
        stored = c.execute("SELECT count(*) FROM events").fetchone()[0]
        counters = dict(c.execute("SELECT name, value FROM counters"))
        c.close()
        for p in pubs:
            p.wait(60)
        return n / dt, dt, stored, counters.get("received", 0) / max(1, counters.get("commits", 1))
    finally:
        agent.stop()
        broker.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=60000)
    ap.add_argument("--publishers", type=int, default=10)
    ap.add_argument("--inflight", type=int, default=200, help="broker max_inflight_messages (broker-config's value)")
    ap.add_argument("--runs", type=int, default=5, help="rounds of the three measurements (median reported)")
    ap.add_argument("--profile", metavar="OUT", help="also run the agent under cProfile, profile to OUT")
    ap.add_argument("--baseline", default="main", help="git revision whose agent is measured too (default: main)")
    args = ap.parse_args(argv)
    per = args.events // args.publishers
    n = per * args.publishers
    devices = ["ev-%03d" % i for i in range(args.publishers)]
    keys = {d: secrets.token_bytes(32) for d in devices}
    data = payloads(devices, per, keys)
    rounds, failed = [], None
    trees = tempfile.mkdtemp(prefix="bench-agent-ingest-trees-")
    try:
        base_tree = tree_of(args.baseline, trees)
        for r in range(args.runs):
            work = tempfile.mkdtemp(prefix="bench-agent-ingest-")
            try:
                limit, _ = broker_limit(work, n, data, args.inflight)
                paho, _ = paho_limit(work, n, data, args.inflight)
                base, _, _, _ = agent_rate(work + "/base", n, data, keys, args.inflight, base_tree)
                rate, _, stored, per_commit = agent_rate(work, n, data, keys, args.inflight)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            rounds.append((limit, paho, rate, per_commit, base))
            print("round %d: broker %.0f/s, paho-only %.0f/s, agent %s %.0f/s (%.0f %%), this agent %.0f/s (%.0f %%)"
                  % (r + 1, limit, paho, args.baseline, base, 100.0 * base / limit, rate, 100.0 * rate / limit),
                  flush=True)
            if stored != n:
                failed = "FAIL: agent stored %d of %d" % (stored, n)
    finally:
        shutil.rmtree(trees, ignore_errors=True)
    if args.profile:
        work = tempfile.mkdtemp(prefix="bench-agent-ingest-")
        try:
            agent_rate(work, n, data, keys, args.inflight, profile=os.path.abspath(args.profile))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print("profile (agent under cProfile, every thread): %s" % args.profile)
    med = lambda i: statistics.median(x[i] for x in rounds)  # noqa: E731
    ratio = lambda i, j: statistics.median(x[i] / x[j] for x in rounds)  # noqa: E731
    print("%d QoS 1 events from %d publishers, broker max_inflight_messages %d, median of %d"
          % (n, args.publishers, args.inflight, args.runs))
    print("%-44s %9.0f msg/s" % ("broker limit (mosquitto_pub -> mosquitto_sub)", med(0)))
    print("%-44s %9.0f msg/s" % ("paho subscriber, PUBACK only, nothing stored", med(1)))
    print("%-44s %9.0f msg/s" % ("agent %s, durable" % args.baseline, med(4)))
    print("%-44s %9.0f msg/s" % ("agent, durable (committed, synchronous=FULL)", med(2)))
    print("%-44s %9.0f %%" % ("agent %s / broker limit" % args.baseline, 100.0 * ratio(4, 0)))
    print("%-44s %9.0f %%" % ("agent / broker limit", 100.0 * ratio(2, 0)))
    print("%-44s %9.0f %%" % ("agent / paho-only subscriber", 100.0 * ratio(2, 1)))
    print("%-44s %9.0f" % ("agent messages per commit (mean)", med(3)))
    if failed:
        print(failed)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
