"""County ingest rate: events per second committed and answered by the county
server, with several halls posting at once, on SQLite and on PostgreSQL.

The baseline is the server this one replaced (the standard library's
http.server, tools/county/server.py before issue 10), measured in the same
run on the same machine: its module and the store it ran with are taken from
git history (`git show`) into a temporary directory, so the old code is
never kept in the tree. Old and new take turns, --rounds times, and the
median of each counts (the machine is shared: one run can be off by 20 %).
Each run gets a fresh database; at the end the database must hold exactly
the events posted, else exit 1. Exit 1 too when the new server's median is
below the old one's (one process; --workers 2 is reported, not judged).

--profile FILE runs the new server once more on SQLite under cProfile
(every thread, CPU time per thread), writes the stats to FILE (read them
with `python -m pstats FILE`) and prints the top functions.

    python -m bench.county_ingest [--events 200000] [--halls 4] [--batch 500] [--rounds 5]
                                  [--stores sqlite,postgresql] [--profile FILE]
"""
import argparse
import gzip
import http.client
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import protocol
from tools.county.testing import CountyProc
from tools.procs import ROOT, Proc, free_port, wait_port

KEY = bytes(range(32))
TOKEN = "bench-token-0123456789"
OLD_FILES = ("tools/county/server.py", "tools/county/store.py")
# Run the old server from its own modules; the rest (records, report, errors) is the tree's.
OLD_MAIN = """
import sys
import old_server, old_store
tokens = dict(a.split("=", 1) for a in sys.argv[3:])
store = old_store.open_store(sys.argv[1])
server = old_server.CountyServer(("127.0.0.1", int(sys.argv[2])), store, tokens)
print("old county server on", server.url, flush=True)
server.serve_forever()
"""


# The new server under cProfile: one profiler per thread, timed by that thread's
# CPU clock (wall time would charge a thread for waiting on the interpreter lock).
PROFILED_MAIN = """
import cProfile, pstats, sys, threading, time
out, argv = sys.argv[1], sys.argv[2:]
profiles = [cProfile.Profile(time.thread_time)]

def start(*_):
    sys.setprofile(None)
    p = cProfile.Profile(time.thread_time)
    profiles.append(p)
    p.enable()
threading.setprofile(start)
from tools.county import cli
profiles[0].enable()
try:
    code = cli.main(argv)
finally:
    stats = None
    for p in profiles:
        p.disable()
        p.create_stats()
        if p.stats:
            stats = pstats.Stats(p) if stats is None else stats.add(p)
    stats.dump_stats(out)
sys.exit(code)
"""


def old_server(work):
    """The replaced server's modules from git, in `work`; returns (dir, commit)."""
    gone = subprocess.run(["git", "log", "-1", "--format=%H", "--diff-filter=D", "--", OLD_FILES[0]],
                          cwd=ROOT, capture_output=True, text=True)
    commit = gone.stdout.strip()
    if gone.returncode or not commit:
        raise SystemExit("bench: cannot find the old county server in git history (%s); a git checkout is needed"
                         % (gone.stderr.strip() or "no commit removed %s" % OLD_FILES[0]))
    d = os.path.join(work, "old")
    os.makedirs(d)
    for path, name in zip(OLD_FILES, ("old_server.py", "old_store.py")):
        src = subprocess.run(["git", "show", "%s^:%s" % (commit, path)], cwd=ROOT, capture_output=True, check=True)
        with open(os.path.join(d, name), "wb") as f:
            f.write(src.stdout)
    with open(os.path.join(d, "old_main.py"), "w") as f:
        f.write(OLD_MAIN)
    return d, commit[:10]


class OldProc(Proc):
    def __init__(self, work, old_dir, db, halls):
        self.port = free_port()
        argv = [sys.executable, os.path.join(old_dir, "old_main.py"), db, str(self.port)]
        argv += ["%s=%s" % (h, TOKEN) for h in halls]
        super().__init__("old-county-%d" % self.port, argv, work,
                         env={"PYTHONPATH": os.pathsep.join([old_dir, ROOT])})

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        super().start()
        wait_port(self.port, 30)
        return self


def payloads(n, halls, size):
    """Each hall's batches, ready to send (gzip'd as the agent sends them)."""
    per_hall = n // halls
    out = {}
    for h in range(halls):
        hall = "hall-%02d" % h
        items = []
        for i in range(per_hall):
            d, seq = "ev-%02d" % (i % 20), i // 20 + 1
            ev = {"v": 1, "device": d, "seq": seq, "kind": "rating", "t": 1764000000000 + i * 1000,
                  "level": protocol.LEVELS[i % 5], "channel": "window", "session": "%s-1-%d" % (d, seq),
                  "window": "A%02d" % (i % 20), "staff": "1024"}
            items.append({"device": d, "seq": seq, "body": protocol.encode(ev, KEY).decode()})
        out[hall] = [gzip.compress(json.dumps({"batch": "%s-%d" % (hall, b), "hall": hall,
                                               "events": items[b:b + size]}).encode(), 6)
                     for b in range(0, per_hall, size)]
    return out


def post_all(urls, work):
    """Every hall posts its batches one after another (as an agent does), all
    halls at once; hall i goes to urls[i % len(urls)]. Returns seconds."""
    errors = []

    def hall(name, batches, url):
        u = urllib.parse.urlsplit(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "Accept-Encoding": "gzip",
                   "Authorization": "Bearer " + TOKEN}
        for body in batches:
            conn.request("POST", "/v1/halls/%s/batches" % name, body, headers)
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                errors.append("%s: HTTP %d" % (name, r.status))
                return
        conn.close()
    threads = [threading.Thread(target=hall, args=(name, batches, urls[i % len(urls)]))
               for i, (name, batches) in enumerate(sorted(work.items()))]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - started
    if errors:
        raise SystemExit("bench: a post failed: %s" % errors[0])
    return took


def count(db):
    if db.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(db) as c:
            return c.execute("SELECT count(*) FROM events").fetchone()[0]
    import sqlite3
    c = sqlite3.connect(db)
    try:
        return c.execute("SELECT count(*) FROM events").fetchone()[0]
    finally:
        c.close()


def pg_base():
    """A PostgreSQL URL to make schemas in, or None with the reason."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg not installed"
    last = None
    for user in ("postgres", "root"):
        url = "postgresql://%s@127.0.0.1:5432/test" % user
        try:
            psycopg.connect(url, connect_timeout=3).close()
            return url, None
        except psycopg.Error as e:
            last = str(e).strip().splitlines()[0]
    return None, last


class Schema:
    """A fresh PostgreSQL schema for one run, dropped after."""

    def __init__(self, base):
        import psycopg
        self.name = "county_bench_" + secrets.token_hex(4)
        self.conn = psycopg.connect(base, autocommit=True)
        self.conn.execute("CREATE SCHEMA %s" % self.name)
        self.url = base + "?options=" + urllib.parse.quote("-csearch_path=%s" % self.name)

    def drop(self):
        self.conn.execute("DROP SCHEMA %s CASCADE" % self.name)
        self.conn.close()


def healthy(url, timeout=30):
    """Both servers open their port before they can answer: time from the first answer on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            u = urllib.parse.urlsplit(url)
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("bench: %s did not become healthy" % url)


def run(label, make_procs, db, work, n):
    procs = [p.start() for p in make_procs()]
    try:
        for p in procs:
            healthy(p.url)
        took = post_all([p.url for p in procs], work)
    finally:
        for p in procs:
            p.stop()
    held = count(db)
    rate = n / took
    print("  %-46s %9.0f events/s  (%.1f s)%s" % (label, rate, took, "" if held == n else
                                                  "  MISMATCH: %d events stored" % held), flush=True)
    return rate, held == n


class ProfiledProc(CountyProc):
    """`county-server run` under PROFILED_MAIN."""

    def __init__(self, work, db, halls, out):
        super().__init__(work, db, halls, extra=["--log-level", "WARNING"])
        script = os.path.join(work, "profiled_main.py")
        with open(script, "w") as f:
            f.write(PROFILED_MAIN)
        self.argv = [sys.executable, script, out] + self.argv[1:]
        self.env = dict(self.env or {}, PYTHONPATH=ROOT)


def profile(tmp, work, halls, n, out):
    d = os.path.join(tmp, "profiled")
    db = os.path.join(d, "county.db")
    run("SQLite: uvicorn/FastAPI under cProfile", lambda: [ProfiledProc(d, db, halls, out)], db, work, n)
    import pstats
    print("profile of the new server (CPU time per thread, all threads) in %s; top 25 by own time:" % out)
    pstats.Stats(out).sort_stats("tottime").print_stats(25)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.county_ingest", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200000, help="events posted per run (default: 200,000)")
    ap.add_argument("--halls", type=int, default=4, help="halls posting at once (default: 4)")
    ap.add_argument("--batch", type=int, default=500, help="events per batch (default: 500, the agent's default)")
    ap.add_argument("--rounds", type=int, default=5, help="runs of each server, taking turns; the median counts "
                                                          "(default: 5)")
    ap.add_argument("--stores", default="sqlite,postgresql", help="which stores to measure, comma-separated "
                                                                  "(default: sqlite,postgresql)")
    ap.add_argument("--profile", metavar="FILE", help="also run the new server on SQLite under cProfile and "
                                                      "write its stats here")
    args = ap.parse_args(argv)
    wanted = set(args.stores.lower().split(","))
    if not wanted or wanted - {"sqlite", "postgresql"}:
        ap.error("--stores takes sqlite, postgresql or both")
    if args.rounds < 1 or args.events < args.halls or args.batch < 1:
        ap.error("--rounds and --batch must be 1 or more, --events at least --halls")

    tmp = tempfile.mkdtemp(prefix="county-ingest-")
    try:
        old_dir, commit = old_server(tmp)
        n = args.events // args.halls * args.halls
        work = payloads(n, args.halls, args.batch)
        halls = {h: TOKEN for h in work}
        print("county ingest: %d events from %d halls at once, batches of %d (gzip), keep-alive; "
              "baseline: the http.server county server of %s" % (n, args.halls, args.batch, commit), flush=True)
        results, ok = {}, True
        stores = [("SQLite", None)] if "sqlite" in wanted else []
        why = "not asked for (--stores)"
        if "postgresql" in wanted:
            pg, why = pg_base()
            stores += [("PostgreSQL", pg)] if pg else []
        for store, base in stores:
            # Old and new take turns, so that whatever else the machine does falls on both.
            for r in range(args.rounds):
                for kind, procs in [("old", 1), ("new", 1), ("new", 2)]:
                    schema = Schema(base) if base else None
                    tag = "%s-%d-r%d" % (kind, procs, r)
                    db = schema.url if schema else os.path.join(tmp, tag + ".db")
                    d = os.path.join(tmp, store + "-" + tag)
                    if kind == "old":
                        make = (lambda db=db, d=d: [OldProc(d, old_dir, db, halls)])
                        label = "%s: old http.server (baseline)" % store
                    else:
                        make = (lambda db=db, d=d, procs=procs: [CountyProc(
                            d, db, halls, extra=["--log-level", "WARNING", "--workers", str(procs)])])
                        label = "%s: uvicorn/FastAPI%s" % (store, ", --workers %d" % procs if procs > 1 else "")
                    try:
                        os.makedirs(d, exist_ok=True)
                        rate, held = run("%s [%d]" % (label, r + 1), make, db, work, n)
                    finally:
                        if schema:
                            schema.drop()
                    results.setdefault((store, kind, procs), []).append(rate)
                    ok = ok and held
        if "postgresql" in wanted and not any(s == "PostgreSQL" for s, _ in stores):
            print("  PostgreSQL: not measured (%s)" % why)
        print("median of %d (min-max):" % args.rounds)
        for store, _ in stores:
            old, new, two = (results[(store, k, p)] for k, p in (("old", 1), ("new", 1), ("new", 2)))
            m_old, m_new, m_two = (statistics.median(v) for v in (old, new, two))
            verdict = "not slower" if m_new >= m_old else "SLOWER"
            print("  %-10s old %6.0f/s (%.0f-%.0f)  new %6.0f/s (%.0f-%.0f) %.2f×, %s;  "
                  "new --workers 2 %6.0f/s (%.0f-%.0f) %.2f×" % (
                      store, m_old, min(old), max(old), m_new, min(new), max(new), m_new / m_old, verdict,
                      m_two, min(two), max(two), m_two / m_old))
            ok = ok and verdict == "not slower"
        if args.profile:
            profile(tmp, work, halls, n, os.path.abspath(args.profile))
        return 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
