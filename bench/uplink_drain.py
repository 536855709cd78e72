"""Uplink drain rate: how fast a hall's backlog of N pending events (1,000,000
by default: weeks of a busy hall offline) reaches the county, against two
baselines measured in the same run on the same machine:

  raw insert     the same rows straight into the county's SQLite schema
                 (executemany, one commit per batch, synchronous=FULL):
                 what the county's disk allows;
  county ingest  the county store's own ingest() in-process (parse each body,
                 insert-or-compare, commit per batch), no HTTP: what the
                 county's code allows.

The drain is the real thing: the agent's SQLite store -> Uplink (gzip,
HTTP keep-alive) -> `county-server run` (SQLite) in its own process. At the
end the county must hold exactly N events, else exit 1.

Each of `--runs` rounds measures both baselines, then drains once per
`--in-flight` value (batches at the county at once), each from a fresh copy
of the backlog; reported: the medians, and the median of the rounds' ratios
(a busy moment then hits both sides of a ratio).

A hall's agent and the county's server are different machines: on a machine
with 2 cores or more the county (and the in-process baseline, which stands
for it) runs on one core and the agent on another, so neither is measured
while the other takes its core. `--no-pin` lets the scheduler place them.

    python -m bench.uplink_drain [--events N] [--batch 500] [--devices 50] [--in-flight 1,2] [--runs 5] [--no-pin]
"""
import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time

import protocol
from edge_agent import config
from edge_agent.uplink import Uplink
from tools.county import records
from tools.county.migrations import INITIAL as _SCHEMA
from tools.county.store import SqliteStore, _COLS
from tools.county.testing import CountyProc, add_events, agent_store

HALL, TOKEN = "bench-hall", "bench-token-0123456789"
KEY = bytes(range(32))


def cores(pin):
    """(county's core, agent's core), or None when not pinning."""
    mine = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return (mine[0], mine[1]) if pin and len(mine) >= 2 else None


def on_core(pid, core):
    """Move every thread of `pid` to `core`; threads started later inherit it."""
    if core is None:
        return
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            os.sched_setaffinity(int(tid), {core})
        except ProcessLookupError:          # a thread that ended meanwhile
            pass


def make_events(n, devices):
    """n signed events, spread over devices like a hall's evaluators."""
    levels = protocol.LEVELS
    out = []
    for i in range(n):
        d, seq = "ev-%03d" % (i % devices), i // devices + 1
        ev = {"v": 1, "device": d, "seq": seq, "kind": "rating", "t": 1764000000000 + i * 1000,
              "level": levels[i % 5], "channel": "window", "session": "%s-1-%d" % (d, seq),
              "window": "A%02d" % (i % devices), "staff": "1024"}
        out.append(protocol.encode(ev, KEY).decode())
    return out


def batches(seq, size):
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def raw_insert(path, bodies, size):
    """Baseline 1: rows ready-made, straight into the county schema."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA cache_size=-131072")      # as the county store sets it
    for ddl in _SCHEMA:
        db.execute(ddl)
    sql = "INSERT INTO events (%s) VALUES (%s)" % (", ".join('"%s"' % c for c in _COLS), ", ".join("?" * len(_COLS)))
    rows = []
    for b in bodies:
        ev = json.loads(b)
        r = {c: ev.get(c) for c in _COLS}
        r.update(hall=HALL, body=b, batch="b", received_ms=0)
        rows.append([r[c] for c in _COLS])
    started = time.perf_counter()
    for chunk in batches(rows, size):
        db.execute("BEGIN")
        db.executemany(sql, chunk)
        db.execute("COMMIT")
    took = time.perf_counter() - started
    db.close()
    return took


def county_ingest(path, bodies, size):
    """Baseline 2: the county's own code, no network."""
    store = SqliteStore(path)
    items = [{"device": json.loads(b)["device"], "seq": json.loads(b)["seq"], "body": b} for b in bodies]
    started = time.perf_counter()
    for i, chunk in enumerate(batches(items, size)):
        store.ingest(HALL, "b%d" % i, chunk, 0)
    took = time.perf_counter() - started
    store.close()
    return took


def drain(work, bodies, size, in_flight, pinned=None):
    """The uplink for real: agent store -> HTTP -> county-server process."""
    os.makedirs(work)
    agent_path = os.path.join(work, "agent.db")
    db = agent_store(agent_path)
    for chunk in batches(bodies, 50000):
        add_events(db, chunk)
    db.close()
    county = CountyProc(os.path.join(work, "county"), os.path.join(work, "county-drain.db"), {HALL: TOKEN},
                        extra=["--log-level", "WARNING"]).start()
    if pinned:
        on_core(county.p.pid, pinned[0])
        on_core(os.getpid(), pinned[1])
    stop = threading.Event()
    up = Uplink(agent_path, {"url": county.url, "token": TOKEN, "allow_plain_http": True, "batch_max_events": size,
                             "batch_max_bytes": 4 << 20, "interval_s": 0.2, "in_flight": in_flight}, HALL)
    t = threading.Thread(target=up.run, args=(stop,), daemon=True)
    try:
        started = time.perf_counter()
        t.start()
        while True:
            time.sleep(0.5)
            st = up.state()
            if st["pending"] == 0:
                break
            if st["last_error"]:
                print("  uplink: %s" % st["last_error"], file=sys.stderr)
        took = time.perf_counter() - started
        stop.set()
        t.join(30)
    finally:
        county.stop()
    c = sqlite3.connect(county.db)
    held = c.execute("SELECT count(*), count(DISTINCT device || '/' || seq) FROM events").fetchone()
    posts = c.execute("SELECT count(*), sum(posts) FROM batches").fetchone()
    c.close()
    return took, held, posts, st


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.uplink_drain", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1000000, help="pending events to drain (default: 1,000,000)")
    agent = config.section("uplink")       # the agent's defaults are what a hall runs
    ap.add_argument("--batch", type=int, default=agent["batch_max_events"],
                    help="events per batch (default: %d, the agent's)" % agent["batch_max_events"])
    ap.add_argument("--devices", type=int, default=50, help="devices the events come from (default: 50)")
    ap.add_argument("--in-flight", default="1,%d" % agent["in_flight"], help="[uplink] in_flight values to drain "
                    "with, the first being the baseline (default: 1,%d: one batch at a time, then the agent's "
                    "default)" % agent["in_flight"])
    ap.add_argument("--runs", type=int, default=5, help="rounds of baselines and drains (median reported; "
                    "default: 5)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--no-pin", action="store_true", help="do not give the county and the agent a core each")
    args = ap.parse_args(argv)

    work = tempfile.mkdtemp(prefix="uplink-drain-")
    n = args.events
    flights = [int(x) for x in args.in_flight.split(",")]
    pinned = cores(not args.no_pin)
    rounds = []                 # per round: (raw, in-process, {in_flight: drain}) in events/s
    try:
        t0 = time.perf_counter()
        bodies = make_events(n, args.devices)
        print("uplink drain: %d events from %d devices, batches of %d, county store SQLite (synchronous=FULL)"
              % (n, args.devices, args.batch))
        print("  (signed %d events in %.0f s; work dir %s)" % (n, time.perf_counter() - t0, work), flush=True)
        print("  county and in-process baselines on core %d, agent on core %d" % pinned if pinned
              else "  not pinned: the scheduler places county and agent", flush=True)
        ok = True
        for r in range(args.runs):
            here = os.path.join(work, "round-%d" % r)
            os.makedirs(here)
            on_core(os.getpid(), pinned and pinned[0])      # the baselines stand for the county
            raw = n / raw_insert(os.path.join(here, "county-raw.db"), bodies, args.batch)
            ing = n / county_ingest(os.path.join(here, "county-ingest.db"), bodies, args.batch)
            drains = {}
            line = "round %d: raw insert %.0f/s, county ingest in-process %.0f/s" % (r + 1, raw, ing)
            for k in flights:
                took, held, posts, st = drain(os.path.join(here, "in-flight-%d" % k), bodies, args.batch, k, pinned)
                drains[k] = n / took
                line += "; in_flight %d %.0f/s (%.0f%%, %d posts)" % (k, drains[k], 100 * drains[k] / ing,
                                                                        posts[1] or 0)
                if not (held[0] == held[1] == n and st["pending"] == 0):
                    ok = False
                    line += " MISMATCH: county holds %d (%d distinct), agent pending %d" % (
                        held[0], held[1], st["pending"])
            print(line, flush=True)
            rounds.append((raw, ing, drains))
            if not args.keep:
                shutil.rmtree(here, ignore_errors=True)
        med = statistics.median
        print("median of %d round(s), each baseline measured in the same round as the drains:" % args.runs)
        print("  %-44s %9.0f events/s" % ("baseline: raw insert into county schema", med(x[0] for x in rounds)))
        print("  %-44s %9.0f events/s" % ("baseline: county ingest in-process, no HTTP", med(x[1] for x in rounds)))
        for k in flights:
            print("  %-44s %9.0f events/s = %.0f%% of county ingest, %.0f%% of raw insert (medians of the "
                  "rounds' ratios)" % ("uplink drain, in_flight %d: agent -> HTTP -> county" % k,
                                       med(x[2][k] for x in rounds), 100 * med(x[2][k] / x[1] for x in rounds),
                                       100 * med(x[2][k] / x[0] for x in rounds)))
        print("  %s" % ("OK: every event at the county exactly once" if ok else "MISMATCH"))
        return 0 if ok else 1
    finally:
        if args.keep:
            print("  kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
