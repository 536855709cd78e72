"""The hall's queues against the real agent, Mosquitto and (for the last
test) the county: tickets from two kiosks through an agent SIGKILL, five
windows calling at once, priority first, recall/no-show/transfer, and a
kiosk's offline-block tickets joining their queue and reaching the county."""
import hashlib
import hmac
import sqlite3
import threading
import time

import pytest

from harness import Mosquitto, wait_for
from test_agent_support import PahoDevice, edge_agent, free_port, http_json, start_agent, write_config
from edge_agent.county_client import County, UplinkError
from tools.county.testing import CountyProc

HALL = "h1"
LINK_KEY = bytes(range(32))
KIOSKS = ["ks-01", "ks-02"]
WINDOWS = ["W%02d" % i for i in range(1, 6)]
EVALUATORS = ["ev-%02d" % i for i in range(1, 6)]


class Asker:
    """A device that asks (SPEC 'Requests'): its own counter, one request
    at a time, and asking again, above, when no reply comes."""

    def __init__(self, dev):
        self.dev, self.n = dev, 100

    def ask(self, msg, timeout=3.0):
        self.n += 1
        n = self.n
        self.dev.ask(msg, n)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for r in list(self.dev.replies):
                if r["re"] == n:
                    return r
            time.sleep(0.01)
        return None

    def ask_until_answered(self, msg, within=90.0):
        end = time.monotonic() + within
        while time.monotonic() < end:
            r = self.ask(msg)
            if r is not None:
                return r
        raise AssertionError("no reply to %r within %ss" % (msg, within))


class HallQueue:
    def __init__(self, tmp_path, county=None, link_key=None):
        self.work = str(tmp_path)
        self.broker = Mosquitto(self.work + "/broker", port=free_port()).start()
        self.http = free_port()
        self.config = write_config(self.work, self.broker.port, hall=HALL, http_port=self.http)
        with open(self.config, "a") as f:
            if county is not None:
                f.write('[uplink]\nurl = "%s"\ntoken = "%s"\nallow_plain_http = true\ninterval_s = 0.2\n'
                        % (county.url, "tok-" + "a" * 20))
            if link_key is not None:      # the hall's key for rating links, as the county gives it
                f.write('[queue]\nlink_key = "%s"\nrate_base = "https://county.example"\n' % link_key.hex())
        self.db = self.work + "/agent.db"
        self.keys = {}
        import secrets
        for d, w in list(zip(KIOSKS, ["K01", "K02"])) + list(zip(EVALUATORS, WINDOWS)):
            self.keys[d] = secrets.token_bytes(32)
            edge_agent(self.config, "devices", "add", d, "--window", w, "--key", self.keys[d].hex())
        edge_agent(self.config, "queue", "add", "A", "综合受理")
        edge_agent(self.config, "queue", "add", "B", "不动产")
        for w in WINDOWS:
            edge_agent(self.config, "queue", "serve", w, "A", "B")
        self.agent = start_agent(self.work, self.config, self.http)
        self.devs = {d: PahoDevice(HALL, d, k, self.broker.port).start() for d, k in self.keys.items()}
        for d in self.devs.values():
            wait_for(lambda: d.configs, 20, what="%s's config" % d.device)
        self.askers = {d: Asker(dev) for d, dev in self.devs.items()}

    def rows(self, sql, params=()):
        c = sqlite3.connect(self.db, timeout=30)
        try:
            return c.execute(sql, params).fetchall()
        finally:
            c.close()

    def stop(self):
        for d in self.devs.values():
            d.stop()
        self.agent.stop()
        self.broker.stop()


@pytest.fixture
def hall(tmp_path, request):
    h = HallQueue(tmp_path, link_key=getattr(request, "param", None))
    yield h
    h.stop()


def test_200_tickets_from_two_kiosks_through_an_agent_kill_no_number_twice_none_lost(hall):
    got = {k: [] for k in KIOSKS}
    blocks = []
    for k in KIOSKS:             # each kiosk keeps a block for the time it cannot ask
        blocks.append(hall.askers[k].ask_until_answered({"op": "block", "queue": "A"}))

    def kiosk(name):
        a = hall.askers[name]
        for i in range(100):
            msg = {"op": "ticket", "queue": "AB"[i % 2], "priority": i % 10 == 0}
            r = a.ask_until_answered(msg)
            assert "error" not in r, r
            got[name].append(r)

    threads = [threading.Thread(target=kiosk, args=(k,)) for k in KIOSKS]
    for t in threads:
        t.start()
    wait_for(lambda: sum(len(v) for v in got.values()) >= 70, 60, what="70 tickets before the kill")
    hall.agent.kill()             # SIGKILL, mid-stream: some asked, some committed and not answered
    time.sleep(0.5)
    hall.agent = start_agent(hall.work, hall.config, hall.http)
    for t in threads:
        t.join(180)
    replies = got["ks-01"] + got["ks-02"]
    assert len(replies) == 200
    names = [r["ticket"] for r in replies]
    assert len(set(names)) == 200, "a number given twice"
    for r in replies:
        assert r["ticket"][0] == r["queue"] and r["issued"] > 0 and r["ahead"] >= 0 and r["wait_s"] >= 0
        assert "rate_url" not in r      # no link key given or fetched
    # Every number of each queue's day is on record: a ticket, or a kiosk's block.
    day = hall.rows("SELECT max(day) FROM tickets")[0][0]
    for q in "AB":
        last = hall.rows("SELECT last FROM queue_numbers WHERE queue = ? AND day = ?", (q, day))[0][0]
        numbers = [int(t[1:]) for (t,) in hall.rows("SELECT ticket FROM tickets WHERE queue = ? AND day = ?",
                                                      (q, day))]
        for lo, hi in hall.rows("SELECT lo, hi FROM queue_blocks WHERE queue = ? AND day = ?", (q, day)):
            numbers += range(lo, hi + 1)
        assert sorted(numbers) == list(range(1, last + 1)), "queue %s: a number skipped or given twice" % q
    stored = {t for (t,) in hall.rows("SELECT ticket FROM tickets")}
    assert set(names) <= stored
    # What the kill cut off (committed, never answered) is on record, and no more than was in flight.
    assert len(stored) - 200 <= 2
    assert {(b["from"], b["to"]) for b in blocks} == {(1, 50), (51, 100)}
    # Each ticket went to the county's queue once, as the agent's own `issued` event.
    assert hall.rows("SELECT count(*) FROM events WHERE device = '_queue' AND json_extract(body, '$.action') "
                     "= 'issued'")[0][0] == len(stored)


@pytest.mark.parametrize("hall", [LINK_KEY], indirect=True, ids=["link-key"])
def test_five_windows_calling_at_once_never_share_a_ticket_and_priority_goes_first(hall):
    k = hall.askers["ks-01"]
    issued = []
    for i in range(10):
        r = k.ask_until_answered({"op": "ticket", "queue": "AB"[i % 2], "priority": i in (3, 8)})
        issued.append(r["ticket"])
        # The citizen's rating link, signed with the hall's key as the county checks it.
        tid = r["rate_url"].split("/")[-2]
        assert tid.endswith("-" + r["ticket"]) and r["rate_url"] == "https://county.example/r/%s/ticket/%s/%s" % (
            HALL, tid, hmac.new(LINK_KEY, b"ticket:" + tid.encode(), hashlib.sha256).digest()[:16].hex())
    priority = {issued[3], issued[8]}
    called = []
    for round_ in range(2):
        barrier = threading.Barrier(5)
        answers = {}

        def window(ev):
            barrier.wait()
            answers[ev] = hall.askers[ev].ask_until_answered({"op": "next"})

        threads = [threading.Thread(target=window, args=(ev,)) for ev in EVALUATORS]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        tickets = [answers[ev]["ticket"] for ev in EVALUATORS]
        assert len(set(tickets)) == 5, answers
        if round_ == 0:
            assert priority <= set(tickets), "绿色通道 first"
            # Then by arrival: the three oldest of the others.
            assert set(tickets) - priority == set([t for t in issued if t not in priority][:3])
        for ev in EVALUATORS:
            # The evaluator's session starts with the ticket: the `call` command follows the reply.
            wait_for(lambda: any(c.get("cmd") == "call" and c["ticket"] == answers[ev]["ticket"]
                                 for c in hall.devs[ev].cmds), 10, what="%s's call command" % ev)
            assert answers[ev]["window"] == WINDOWS[EVALUATORS.index(ev)]
        called += tickets
    assert sorted(called) == sorted(issued)
    assert hall.askers["ev-01"].ask_until_answered({"op": "next"})["error"] == "empty"

    # 重呼, 过号 (and the next one with it), 转移.
    e1, e2 = hall.askers["ev-01"], hall.askers["ev-02"]
    r = e1.ask_until_answered({"op": "recall"})
    assert r["calls"] == 2
    new = k.ask_until_answered({"op": "ticket", "queue": "A"})["ticket"]
    r = e1.ask_until_answered({"op": "noshow", "next": True})
    assert r["ticket"] == new and r["no_show"] not in (new,)
    r = e1.ask_until_answered({"op": "transfer", "queue": "B"})
    assert r == dict(r, ticket=new, queue="B")
    assert e2.ask_until_answered({"op": "next"})["ticket"] == new       # waiting again, in B
    board = http_json(hall.http, "/api/queue")
    assert board["calls"][0]["ticket"] == new and board["calls"][0]["window"] == "W02"
    assert sum(q["no_show_today"] for q in board["queues"]) == 1
    assert hall.askers["ks-02"].ask_until_answered({"op": "ticket", "queue": "Z"})["error"] == "unknown_queue"
    assert hall.askers["ks-02"].ask_until_answered({"op": "recall"})["error"] == "no_ticket"


def test_offline_block_tickets_join_their_queue_and_reach_the_county(tmp_path):
    county = CountyProc(str(tmp_path / "county"), str(tmp_path / "county.db"), {HALL: "tok-" + "a" * 20}).start()
    hall = HallQueue(tmp_path / "hall", county)
    try:
        block = hall.askers["ks-02"].ask_until_answered({"op": "block", "queue": "B"})
        assert (block["queue"], block["from"], block["to"]) == ("B", 1, 50)
        online = hall.askers["ks-01"].ask_until_answered({"op": "ticket", "queue": "B"})["ticket"]
        assert online == "B051"
        now = int(time.time() * 1000)
        dev = hall.devs["ks-02"]
        for seq, n in ((1, 1), (2, 2)):     # handed out while the kiosk could not ask
            dev.send({"v": 1, "device": "ks-02", "seq": seq, "kind": "ticket", "t": now - 60000 + seq,
                      "ticket": "B%03d" % n, "queue": "B"})
        dev.send({"v": 1, "device": "ks-02", "seq": 3, "kind": "ticket", "t": now, "ticket": "B077", "queue": "B"})
        wait_for(lambda: dev.pending() == 0, 20, what="the kiosk's tickets acked")
        board = http_json(hall.http, "/api/queue")
        assert [q["waiting"] for q in board["queues"] if q["queue"] == "B"] == [3]     # B077: not its block
        calls = [hall.askers["ev-01"].ask_until_answered({"op": "next"})["ticket"] for _ in range(3)]
        assert calls == ["B001", "B002", "B051"]     # offline ones by the time they were handed out
        wait_for(lambda: _county_rows(tmp_path / "county.db", "SELECT count(*) FROM events WHERE kind = 'ticket'")
                 [0][0] == 3 + 1 + 3, 60, what="tickets and calls at the county")
        rows = _county_rows(tmp_path / "county.db", "SELECT device, action, body FROM events WHERE kind = 'ticket' "
                            "ORDER BY device, seq")
        assert [(d, a) for d, a, _ in rows] == [("_queue", "issued")] + [("_queue", "called")] * 3 + [
            ("ks-02", None)] * 3
        assert all('"wait_ms":' in b for d, a, b in rows if a == "called")
        assert hall.rows("SELECT value FROM counters WHERE name = 'queue_offline_refused:no_block'") == [(1,)]
        # The agent asks the county for the hall's link key with the uplink's client; a county
        # without a link secret (this one) leaves the tickets without rate_url, asked again hourly.
        client = County(county.url, "tok-" + "a" * 20, HALL, 5, None)
        assert client.get("cards")["hall"] == HALL
        with pytest.raises(UplinkError, match="404"):
            client.get("link-key")
        assert "rate_url" not in hall.askers["ks-01"].ask_until_answered({"op": "ticket", "queue": "A"})
    finally:
        hall.stop()
        county.stop()


def _county_rows(db, sql):
    c = sqlite3.connect(str(db), timeout=30)
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()
