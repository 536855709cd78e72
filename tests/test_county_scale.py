"""Several county-server processes on one PostgreSQL: two halls post the same
batches to two processes at once (as halls behind a load balancer whose
answers got lost would); every event is stored exactly once, the other post
of it answers `duplicate`, and the counters agree with the rows."""
import threading

import pytest

from test_county import pg_url
from tools.county.testing import CountyProc, rating, session

TOKENS = {"hall-a": "tok-" + "a" * 20, "hall-b": "tok-" + "b" * 20}
BATCHES, PER_BATCH = 12, 150


@pytest.fixture
def pg():
    conn, schema, url = pg_url()
    conn.execute("SET search_path TO %s" % schema)
    try:
        yield conn, url
    finally:
        conn.execute("DROP SCHEMA %s CASCADE" % schema)
        conn.close()


def hall_batches(hall):
    """A hall's backlog as its agent batches it: ratings and session steps."""
    out = []
    for b in range(BATCHES):
        items = []
        for i in range(PER_BATCH):
            n = b * PER_BATCH + i
            device, seq = "ev-%02d" % (n % 7), n // 7 + 1
            body = (rating(device, seq, ("satisfied", "dissatisfied", "very_satisfied")[n % 3])
                    if n % 2 else session(device, seq, "ended", "%s-s%d" % (device, seq), "A01", 1764000000000 + n))
            items.append({"device": device, "seq": seq, "body": body})
        out.append({"batch": "%s-%d" % (hall, b), "hall": hall, "events": items})
    return out


def test_two_processes_store_each_event_once(pg, tmp_path):
    conn, url = pg
    # Both start on an empty schema at the same moment: the migrations must not collide either.
    procs = [CountyProc(str(tmp_path / ("p%d" % i)), url, TOKENS) for i in (1, 2)]
    for p in procs:
        p.start(wait=False)
    try:
        for p in procs:
            p.ready()
        work = {hall: hall_batches(hall) for hall in TOKENS}
        answers, failures = {}, []

        def post_all(proc, hall):
            for doc in work[hall]:
                status, ans = proc.post(hall, TOKENS[hall], doc)
                if status != 200:
                    failures.append((proc.port, hall, doc["batch"], status, ans))
                    return
                answers.setdefault((proc.port, hall), []).extend(ans["results"])
        threads = [threading.Thread(target=post_all, args=(p, hall)) for hall in TOKENS for p in procs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not failures, failures[:3]

        for hall in TOKENS:
            seen = {}
            for p in procs:
                for r in answers[(p.port, hall)]:
                    seen.setdefault((r["device"], r["seq"]), []).append(r["status"])
            assert len(seen) == BATCHES * PER_BATCH
            assert all(sorted(v) == ["duplicate", "stored"] for v in seen.values()), \
                [kv for kv in seen.items() if sorted(kv[1]) != ["duplicate", "stored"]][:3]

        rows = conn.execute("SELECT hall, count(*), count(DISTINCT (device, seq)) FROM events GROUP BY hall "
                            "ORDER BY hall").fetchall()
        assert rows == [(hall, BATCHES * PER_BATCH, BATCHES * PER_BATCH) for hall in sorted(TOKENS)]
        assert conn.execute("SELECT count(*), min(posts), max(posts) FROM batches").fetchone() == (
            2 * BATCHES, 2, 2)
        assert conn.execute("SELECT count(*) FROM conflicts").fetchone()[0] == 0
        # Either process tells the same counts, and they equal the rows.
        s1, s2 = (p.stats() for p in procs)
        assert s1 == s2
        assert s1["halls"] == {hall: BATCHES * PER_BATCH for hall in TOKENS}
        assert (s1["batches"], s1["batch_posts"]) == (2 * BATCHES, 4 * BATCHES)
        ratings = dict(conn.execute("SELECT level, count(*) FROM events WHERE kind = 'rating' "
                                    "GROUP BY level").fetchall())
        assert s1["ratings"] == ratings
        for p in procs:
            assert "Traceback" not in p.log()
    finally:
        for p in procs:
            p.stop()


def test_workers_share_one_port_and_one_sqlite_file(tmp_path):
    """--workers 2 on SQLite: both processes write the one file (SQLite's own
    lock between them), every event once; SIGTERM stops both, exit 0."""
    c = CountyProc(str(tmp_path), str(tmp_path / "county.db"), TOKENS, extra=["--workers", "2"]).start()
    try:
        work = {hall: hall_batches(hall)[:4] for hall in TOKENS}
        failures = []

        def post_all(hall):
            for doc in work[hall]:
                for _ in range(2):                   # every batch twice: the answer "was lost"
                    status, ans = c.post(hall, TOKENS[hall], doc)
                    if status != 200:
                        failures.append((hall, status, ans))
        threads = [threading.Thread(target=post_all, args=(hall,)) for hall in TOKENS for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failures, failures[:3]
        s = c.stats()
        assert s["halls"] == {hall: 4 * PER_BATCH for hall in TOKENS}
        assert (s["batches"], s["batch_posts"]) == (8, 32)
    finally:
        c.p.terminate()
        assert c.p.wait(30) == 0
    assert "Traceback" not in c.log()
