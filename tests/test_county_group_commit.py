"""Group commit in the county store: batches that wait while another
transaction runs are written in one transaction, and each is still answered
per event exactly as if it had been committed alone, only after that commit.
On SQLite and on PostgreSQL (test_county.county_db)."""
import threading
import time

from test_county import county_db  # noqa: F401  (the fixture)
from tools.county.errors import StoreError
from tools.county.store import open_store
from tools.county.testing import rating


def items(device, seqs, level="satisfied"):
    return [{"device": device, "seq": s, "body": rating(device, s, level)} for s in seqs]


def held_while(store, calls):
    """Run `calls` (name, hall, batch, items) in threads while the writer's
    turn is taken, so all of them queue; then let them go: one group."""
    group = store._group
    results, transactions = {}, []
    real = store._ingest

    def spy(jobs):
        transactions.append([job[1] for job in jobs])
        return real(jobs)
    store._ingest = spy

    def post(name, hall, batch, its):
        try:
            results[name] = store.ingest(hall, batch, its, 1764000000000)
        except Exception as e:
            results[name] = e
    threads = [threading.Thread(target=post, args=c) for c in calls]
    with group._turn:
        for i, t in enumerate(threads):         # one after another: the queue's order is the calls'
            t.start()
            deadline = time.monotonic() + 30
            while len(group._queue) <= i:
                assert time.monotonic() < deadline, "batches did not queue"
                time.sleep(0.01)
        assert results == {}, "answered before the commit"
    for t in threads:
        t.join(30)
    return results, transactions


def statuses(results):
    return [r["status"] for r in results]


def test_waiting_batches_share_one_transaction_and_answer_alone(county_db):  # noqa: F811
    store = open_store(county_db)
    try:
        results, transactions = held_while(store, [
            ("a", "h1", "b-a", items("ev-01", [1, 2, 3])),
            ("b", "h1", "b-b", items("ev-01", [3, 4]) + items("ev-02", [1])),     # seq 3 again: same event
            ("c", "h2", "b-c", items("ev-01", [1])),                             # another hall: its own event
            ("d", "h1", "b-d", items("ev-01", [4], "very_dissatisfied")),        # seq 4, other content
        ])
        assert transactions == [["b-a", "b-b", "b-c", "b-d"]]
        # Each answered as if committed alone, after the ones before it.
        assert statuses(results["a"]) == ["stored"] * 3
        assert statuses(results["b"]) == ["duplicate", "stored", "stored"]
        assert statuses(results["c"]) == ["stored"]
        assert statuses(results["d"]) == ["conflict"]
        h1, h2 = store.stats("h1"), store.stats("h2")
        assert h1["total"] == 5 and h2["total"] == 1 and h1["conflicts"] == 1
        assert h1["batches"] == h1["batch_posts"] == 3 and h2["batches"] == 1
    finally:
        store.close()


def test_a_batch_the_database_refuses_fails_alone(county_db):  # noqa: F811
    store = open_store(county_db)
    real = store._store_batch

    def refusing(cur, hall, batch, *rest):
        if batch == "b-bad":
            raise StoreError("refused for the test")
        return real(cur, hall, batch, *rest)
    store._store_batch = refusing
    try:
        results, transactions = held_while(store, [
            ("good", "h1", "b-good", items("ev-01", [1, 2])),
            ("bad", "h1", "b-bad", items("ev-02", [1])),
            ("late", "h1", "b-late", items("ev-03", [1])),
        ])
        assert transactions == [["b-good", "b-bad", "b-late"], ["b-good"], ["b-bad"], ["b-late"]]
        assert statuses(results["good"]) == ["stored", "stored"]
        assert statuses(results["late"]) == ["stored"]
        assert isinstance(results["bad"], StoreError)
        assert store.stats("h1")["total"] == 3           # nothing of the refused batch
    finally:
        store.close()


def test_one_batch_alone_is_one_transaction(county_db):  # noqa: F811
    store = open_store(county_db)
    try:
        assert statuses(store.ingest("h1", "b1", items("ev-01", [1, 2]), 1)) == ["stored", "stored"]
        assert statuses(store.ingest("h1", "b1", items("ev-01", [1, 2]), 2)) == ["duplicate", "duplicate"]
        st = store.stats("h1")
        assert st["batches"] == 1 and st["batch_posts"] == 2 and st["total"] == 2
    finally:
        store.close()


def test_many_threads_every_event_once(county_db, n=8):  # noqa: F811
    store = open_store(county_db)
    try:
        out = {}

        def post(i):
            # Overlapping batches of one device's events, posted at once.
            out[i] = store.ingest("h1", "b%d" % i, items("ev-01", range(i + 1, i + 21)), 1)
        threads = [threading.Thread(target=post, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        stored = sum(statuses(r).count("stored") for r in out.values())
        assert stored == store.stats("h1")["total"] == n + 19
        assert all(set(statuses(r)) <= {"stored", "duplicate"} for r in out.values())
    finally:
        store.close()
