"""Press-to-county latency across a hall, with its parts, and what an event
costs in bytes at the agent and at the county:

  hall       Mosquitto as `edge-agent broker-config` writes it (ACL, a login
             per device), the edge agent, the county server (SQLite, or
             PostgreSQL with --county-db), the agent's uplink pointing at it;
  devices    N paho clients with their real keys and logins (the device side
             of bench/agent_hall_rate.py), together pressing R ratings/s for
             S seconds, one device after the other; each rating's `t` is the
             press (the device's wall clock, this machine's);
  parts      press -> broker PUBACK (the device's publish reached Mosquitto:
             the floor of the next part, measured on the same events),
             press -> the agent's sealed ack heard by the device (the agent
             acks only after its COMMIT: device -> agent commit, plus the
             ack's way back), agent ack -> county (the county's received_ms,
             stamped in the transaction that stores the event: agent commit
             -> county commit, plus the ack's way back, the other way);
             press -> county, p50/p99/max;
  bytes      growth of the agent's database (and WAL) and of the county's,
             per event stored, from idle to after the run (checkpointed;
             PostgreSQL: pg_total_relation_size of its tables).

Baselines in the same run: another revision's agent (`git archive`, main
by default; rounds alternate), the broker's PUBACK above (what any device
link costs), and a one-event batch POSTed straight to the county (the
county's own commit latency without the agent). Medians of `--runs`.
Exit 1 if any run does not deliver every event to the county exactly once.

    python -m bench.press_to_county [--devices 20] [--rate 50] [--seconds 20]
        [--runs 5] [--baseline main] [--interval S] [--county-db URL] [--json OUT]
"""
import argparse
import json
import os
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

from bench._hall import HALL, BenchHall
from bench._trees import tree_of
from bench.agent_hall_rate import Device
from tools.county.testing import CountyProc
from tools.procs import ROOT, wait_for

TOKEN = "tok-bench-" + "b" * 16


class TimedDevice(Device):
    """Device with times: the press (t), the broker's PUBACK, the agent's ack."""

    def __init__(self, name, key, port):
        self.pressed, self.puback, self.acked_at, self.mids = {}, {}, {}, {}
        Device.__init__(self, name, key, port)
        self.client.on_publish = self._on_publish

    def _on_publish(self, c, u, mid, rc, props):
        now = time.time()
        with self.lock:
            seq = self.mids.pop(mid, None)
            if seq is not None:
                self.puback[seq] = now

    def _on_message(self, c, u, msg):
        Device._on_message(self, c, u, msg)
        now = time.time()
        with self.lock:
            for seq in self.acked:
                self.acked_at.setdefault(seq, now)

    def send(self, seq):
        import protocol
        from protocol import topics
        t = int(time.time() * 1000)
        ev = {"v": 1, "device": self.name, "seq": seq, "kind": "rating", "t": t,
              "level": protocol.LEVELS[seq % 5], "channel": "window", "session": "%s-1-%d" % (self.name, seq),
              "window": "W" + self.name[-3:], "staff": "窗口工作人员"}
        with self.lock:
            self.pressed[seq] = t / 1000.0
            info = self.client.publish(topics.topic(HALL, self.name, topics.EVENTS), protocol.encode(ev, self.key),
                                       qos=1)
            self.mids[info.mid] = seq


def _sqlite_bytes(path):
    """Database + WAL bytes after a checkpoint (what the disk holds)."""
    c = sqlite3.connect(path, timeout=30)
    try:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        c.close()
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def _county_bytes(county):
    if county.db.startswith("postgresql"):
        from tools.county.store import open_store
        store = open_store(county.db, create=False)
        try:
            with store._reading() as db:
                return db.execute("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                                  "JOIN pg_namespace n ON n.oid = c.relnamespace "
                                  "WHERE n.nspname = current_schema() AND c.relkind = 'r'").fetchone()[0]
        finally:
            store.close()
    return _sqlite_bytes(county.db)


def _county_rows(county):
    from tools.county.store import open_store
    store = open_store(county.db, create=False)
    try:
        with store._reading() as db:
            return db.execute("SELECT device, seq, received_ms FROM events WHERE hall = %s AND kind = 'rating'"
                              " AND device <> 'bench-post'" % store.placeholder, (HALL,)).fetchall()
    finally:
        store.close()


def _pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))] if xs else float("nan")


def _county_post_ms(county, n=20):
    """The county's own latency: a one-event batch POSTed straight to it (ms, median of n)."""
    import protocol
    from tools.county.testing import KEY
    out = []
    for i in range(n):
        ev = {"v": 1, "device": "bench-post", "seq": int(time.time() * 1000) % 10 ** 9 + i, "kind": "rating",
              "t": int(time.time() * 1000), "level": "satisfied", "channel": "window", "session": "p-%d" % i}
        doc = {"batch": secrets.token_hex(8), "hall": HALL,
               "events": [{"device": ev["device"], "seq": ev["seq"], "body": protocol.encode(ev, KEY).decode()}]}
        t0 = time.perf_counter()
        status, _ = county.post(HALL, TOKEN, doc)
        out.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise SystemExit("FAIL: county answered %d to a direct batch" % status)
    return statistics.median(out)


def one_run(tree, names, keys, args, interval, county_db=None):
    with BenchHall(tree, {d: keys[d] for d in names}, "bench-p2c-") as hall:
        county = CountyProc(os.path.join(hall.work, "county"), county_db or os.path.join(hall.work, "county.db"),
                            {HALL: TOKEN})
        try:
            county.start()
            hall.start(extra='[uplink]\nurl = "%s"\ntoken = "%s"\nallow_plain_http = true\n%s'
                       % (county.url, TOKEN, "" if interval is None else "interval_s = %s\n" % interval))
            devices = hall.connect(TimedDevice, 120)
            time.sleep(3)
            post_ms = _county_post_ms(county)
            agent_b0, county_b0 = _sqlite_bytes(hall.db), _county_bytes(county)
            total = int(args.rate * args.seconds)
            t0 = time.monotonic()
            for i in range(total):
                left = t0 + i / args.rate - time.monotonic()
                if left > 0:
                    time.sleep(left)
                devices[i % len(devices)].send(i // len(devices) + 1)
            wait_for(lambda: all(len(d.acked_at) >= len(d.pressed) for d in devices), 120, 0.1, "every ack")
            wait_for(lambda: len(_county_rows(county)) >= total, 120, 0.2, "every rating at the county")
            rows = _county_rows(county)
            agent_b1, county_b1 = _sqlite_bytes(hall.db), _county_bytes(county)
        finally:
            county.stop()
    keyed = {}
    for device, seq, received_ms in rows:
        keyed.setdefault((device, seq), []).append(received_ms)
    if len(keyed) != total or any(len(v) != 1 for v in keyed.values()):
        raise SystemExit("FAIL: %d distinct of %d at the county, %d rows" % (len(keyed), total, len(rows)))
    by = {d.name: d for d in devices}
    puback, agent_ms, uplink_ms, p2c = [], [], [], []
    for (device, seq), (received_ms,) in keyed.items():
        d = by[device]
        press = d.pressed[seq]
        puback.append((d.puback[seq] - press) * 1000)
        agent_ms.append((d.acked_at[seq] - press) * 1000)
        uplink_ms.append(received_ms - d.acked_at[seq] * 1000)
        p2c.append(received_ms - press * 1000)
    res = {"events": total, "county_post_ms": post_ms,
           "agent_bytes_per_event": (agent_b1 - agent_b0) / total,
           "county_bytes_per_event": (county_b1 - county_b0) / total}
    for name, xs in (("puback", puback), ("agent", agent_ms), ("uplink", uplink_ms), ("p2c", p2c)):
        res[name + "_p50"], res[name + "_p99"], res[name + "_max"] = _pct(xs, 50), _pct(xs, 99), max(xs)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--rate", type=float, default=50.0, help="ratings per second, all devices together")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--interval", type=float, default=None,
                    help="[uplink] interval_s for both agents (default: the agent's default, 2.0)")
    ap.add_argument("--baseline", default="main", help="git revision to compare with (default: main)")
    ap.add_argument("--no-baseline", action="store_true", help="measure this tree only")
    ap.add_argument("--county-db", default=None, help="a PostgreSQL URL for the county (default SQLite)")
    ap.add_argument("--json", default=None, help="write the medians here as JSON (default $QL_BENCH_JSON)")
    args = ap.parse_args(argv)
    names = ["ev-%03d" % i for i in range(args.devices)]
    keys = {d: secrets.token_bytes(32) for d in names}
    trees = tempfile.mkdtemp(prefix="bench-p2c-trees-")
    try:
        sides = (() if args.no_baseline else (("baseline " + args.baseline, tree_of(args.baseline, trees)),)) \
            + (("this tree", ROOT),)
        results = {label: [] for label, _ in sides}
        for r in range(args.runs):
            for label, tree in sides:
                res = one_run(tree, names, keys, args, args.interval, args.county_db)
                results[label].append(res)
                print("round %d %-14s press->county p50 %4.0f p99 %5.0f max %5.0f ms; device->agent commit p50 %3.0f "
                      "p99 %4.0f; ->county p50 %4.0f p99 %5.0f; broker PUBACK p50 %.1f; county POST %.1f ms"
                      % (r + 1, label, res["p2c_p50"], res["p2c_p99"], res["p2c_max"], res["agent_p50"],
                         res["agent_p99"], res["uplink_p50"], res["uplink_p99"], res["puback_p50"],
                         res["county_post_ms"]), flush=True)
    finally:
        shutil.rmtree(trees, ignore_errors=True)
    print("%d devices, %.0f ratings/s for %.0f s, county on %s, uplink interval_s %s, median of %d runs each "
          "(ms; bytes per event)" % (args.devices, args.rate, args.seconds,
                                     "PostgreSQL" if args.county_db else "SQLite",
                                     "default" if args.interval is None else args.interval, args.runs))
    cols = ("p2c_p50", "p2c_p99", "p2c_max", "agent_p50", "agent_p99", "uplink_p50", "uplink_p99",
            "puback_p50", "puback_p99", "county_post_ms", "agent_bytes_per_event", "county_bytes_per_event")
    print("%-16s" % "agent" + "".join("%13s" % c.replace("_bytes_per_event", " B/ev") for c in cols))
    medians = {}
    for label, rows in results.items():
        medians[label] = m = {c: round(statistics.median(x[c] for x in rows), 1) for c in cols}
        print("%-16s" % label + "".join("%13.1f" % m[c] for c in cols))
    out = args.json or os.environ.get("QL_BENCH_JSON")
    if out:
        with open(out, "w") as f:
            json.dump({"devices": args.devices, "rate": args.rate, "seconds": args.seconds, "runs": args.runs,
                       "county": "postgresql" if args.county_db else "sqlite", "interval_s": args.interval,
                       "unit": "ms, bytes", "medians": medians, "rounds": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
