"""The hall's queue requests (SPEC 'Requests') on the wire, against the real
agent, Mosquitto and (for the last test) the county: recall, no-show and
transfer, the errors, the signed rating link, and a kiosk's offline-block
tickets joining their queue and reaching the county. Devices speak the
protocol from paho here; the firmware's side (200 tickets from two virtual
kiosks through an agent kill, five virtual evaluators calling at once) is
in test_kiosk_ticket.py and test_firmware_queue.py."""
import hashlib
import hmac
import sqlite3
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


@pytest.mark.parametrize("hall", [LINK_KEY], indirect=True, ids=["link-key"])
def test_recall_no_show_and_transfer_from_a_window_and_the_tickets_signed_rating_link(hall):
    k = hall.askers["ks-01"]
    r = k.ask_until_answered({"op": "ticket", "queue": "A"})
    # The citizen's rating link, signed with the hall's key as the county checks it.
    tid = r["rate_url"].split("/")[-2]
    assert tid.endswith("-" + r["ticket"]) and r["rate_url"] == "https://county.example/r/%s/ticket/%s/%s" % (
        HALL, tid, hmac.new(LINK_KEY, b"ticket:" + tid.encode(), hashlib.sha256).digest()[:16].hex())
    e1, e2 = hall.askers["ev-01"], hall.askers["ev-02"]
    first = e1.ask_until_answered({"op": "next"})
    assert (first["ticket"], first["window"]) == (r["ticket"], "W01")
    # The evaluator's session starts with the ticket: the `call` command follows the reply.
    wait_for(lambda: any(c.get("cmd") == "call" and c["ticket"] == r["ticket"] for c in hall.devs["ev-01"].cmds),
             10, what="ev-01's call command")
    assert e1.ask_until_answered({"op": "next"})["error"] == "empty"

    # 重呼, 过号 (and the next one with it), 转移.
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
