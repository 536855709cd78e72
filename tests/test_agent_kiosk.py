"""The kiosk's requests against the real agent, Mosquitto and a stand-in
county (tests/county_standin.py; the reference county's case API is being
built beside this): a case looked up while the cache is fresh, `offline`
once the county has been silent too long (never an old state as current),
`unknown_case`; a print job fetched in chunks that reassemble to its sha,
with the GB18030 text, the rating QR and the cut, which no other device can
fetch and which is done once the kiosk reports it; and a hostile county
whose garbage reaches no kiosk."""
import base64
import hashlib
import itertools
import re

import pytest

from county_standin import StandInCounty, case
from edge_agent import cases as case_cache, queues
from edge_agent.store import Store, now_ms
from harness import Mosquitto, wait_for
from test_agent_support import PahoDevice, add_devices, free_port, start_agent, store_count, write_config

HALL = "h1"
TOKEN = "hall-token-h1"
RATE = "https://pj.county.example/r/h1/case/2026-0001/0123456789abcdef"
LINK_KEY = bytes(range(32))


def counter(db, name):
    return store_count(db, "SELECT coalesce(sum(value), 0) FROM counters WHERE name = ?", (name,))


class Kiosk:
    """A PahoDevice asking one request at a time, its counter going up."""

    def __init__(self, dev):
        self.dev, self.n = dev, itertools.count(100)

    def ask(self, **msg):
        n = next(self.n)
        self.dev.ask(msg, n)
        reply = self.dev.reply_to(n)
        return {k: v for k, v in reply.items() if k not in ("n", "re", "rq", "cmd")}


@pytest.fixture
def hall(tmp_path):
    work = str(tmp_path)
    broker = Mosquitto(work + "/broker", port=free_port()).start()
    county = StandInCounty(HALL, TOKEN).start()
    # 2026-0003 as a county with no link secret and no item name lists it, open with no
    # promised date (the county's null: the date moved into a year without a holiday schedule).
    bare = dict(case("2026-0003"), rate_url=None, promised=None, light=None)
    del bare["item_name"]
    county.cases = [case("2026-0001", url=RATE), case("2026-0002", state="completed", light=None), bare]
    county.link_key = {"hall": HALL, "key": LINK_KEY.hex(), "base": "https://pj.county.example"}
    http = free_port()
    config = write_config(work, broker.port, hall=HALL, http_port=http, extra="\n".join([
        "[uplink]", 'url = "%s"' % county.url, 'token = "%s"' % TOKEN, "allow_plain_http = true",
        "[kiosk]", "cases_poll_s = 0.3", "cases_fresh_s = 3.0"]))
    keys = add_devices(config, ["ks-01", "ks-02"], window_prefix="K")
    agent = start_agent(work, config, http)
    devs = [PahoDevice(HALL, d, keys[d], broker.port).start() for d in ("ks-01", "ks-02")]
    try:
        for d in devs:
            wait_for(lambda: d.configs, 20, what="the kiosk's config")
        yield {"county": county, "kiosks": [Kiosk(d) for d in devs], "devs": devs, "db": work + "/agent.db",
               "http": http, "agent": agent}
    finally:
        for d in devs:
            d.stop()
        agent.stop()
        county.stop()
        broker.stop()


def fresh_answer(kiosk, number, timeout=20):
    """Ask until the cache has heard from the county (the first poll)."""
    box = {}

    def answered():
        box["r"] = kiosk.ask(op="case", case=number)
        return box["r"].get("error") != "offline"
    wait_for(answered, timeout, what="a case answer from a fresh cache")
    return box["r"]


def test_case_lookup_fresh_then_offline_when_the_county_is_silent_then_fresh_again(hall):
    k = hall["kiosks"][0]
    r = fresh_answer(k, "2026-0001")
    assert {x: r[x] for x in r if x != "as_of"} == {
        "case": "2026-0001", "state": "in_review", "item_name": "个体工商户设立登记", "promised": "2026-05-08",
        "light": "yellow", "rate_url": RATE}
    assert type(r["as_of"]) is int and r["as_of"] > 0
    assert k.ask(op="case", case="2026-0002")["light"] is None           # completed: no light
    assert k.ask(op="case", case="2099-9999") == {"error": "unknown_case"}
    assert k.ask(op="case", case="bad\nid") == {"error": "bad_value"}
    assert k.ask(op="case") == {"error": "bad_type"}
    # The county polls ask from the cursor of the last answer.
    assert any(q.startswith("since=20260506.") for p, q in hall["county"].asked if p.endswith("/cases"))
    # The county goes silent: within cases_fresh_s (+ a poll) every answer is `offline`,
    # also for a case the cache still holds, and print jobs are refused the same way.
    hall["county"].down = True
    wait_for(lambda: k.ask(op="case", case="2026-0001") == {"error": "offline"}, 20, what="offline")
    assert k.ask(op="print", doc="case_status", case="2026-0001") == {"error": "offline"}
    hall["county"].down = False
    assert fresh_answer(k, "2026-0001")["state"] == "in_review"


def test_the_agent_signs_its_tickets_with_the_link_key_its_case_cache_took(hall):
    db = hall["db"]
    wait_for(lambda: store_count(db, "SELECT count(*) FROM meta WHERE key = 'link_key' AND value = ?",
                                 (LINK_KEY.hex(),)) == 1, 20, what="the county's link key kept")
    store = Store(db, create=False)
    try:
        queues.add(store, "A", "综合业务", now_ms())
    finally:
        store.close()
    k = hall["kiosks"][0]
    wait_for(lambda: "rate_url" in k.ask(op="ticket", queue="A"), 20, what="a ticket with its rating link")
    t = k.ask(op="ticket", queue="A")
    tid = t["rate_url"].split("/")[-2]          # <base>/r/<hall>/ticket/<id>/<sig>
    assert tid.endswith("-" + t["ticket"])
    assert t["rate_url"] == queues.rate_url("https://pj.county.example", HALL, LINK_KEY, tid)


def parse_qr(stream):
    """The QR payload stored with GS ( k <pL pH> 1 P 0 <data>, printed by GS ( k ... 1 Q 0."""
    i = stream.index(b"\x1d(k")
    payloads = []
    while i >= 0:
        size = stream[i + 3] + 256 * stream[i + 4]
        fn = stream[i + 5:i + 8]
        if fn == b"1P0":
            payloads.append(stream[i + 8:i + 5 + size])
        i = stream.find(b"\x1d(k", i + 5 + size)
    assert b"\x1d(k\x03\x001Q0" in stream, "the stored QR code is printed"
    return payloads


def fetch(kiosk, job, chunks):
    return b"".join(base64.b64decode(kiosk.ask(op="chunk", job=job, i=i)["data"]) for i in range(chunks))


def test_a_case_without_item_name_rating_link_or_promised_date_is_answered_and_printed(hall):
    k = hall["kiosks"][0]
    r = fresh_answer(k, "2026-0003")
    assert r["item_name"] is None and r["rate_url"] is None and r["state"] == "in_review"
    assert r["promised"] is None and r["light"] is None
    job = k.ask(op="print", doc="case_status", case="2026-0003")
    data = fetch(k, job["job"], job["chunks"])
    assert hashlib.sha256(data).hexdigest() == job["sha"] and data.endswith(b"\x1dV\x00")
    text = data.decode("gb18030")
    assert "2026-0003" in text and "事项:—" in text
    assert "承诺办结:待定" in text and "时限:—" in text     # open, its date not known yet
    assert b"\x1d(k" not in data                     # no link: no QR code
    assert counter(hall["db"], "cases_refused:rate_url") == 0
    assert counter(hall["db"], "cases_refused:promised") == 0


def test_a_print_job_in_chunks_is_the_kiosks_alone_and_done_once_reported(hall):
    k, other = hall["kiosks"]
    fresh_answer(k, "2026-0001")
    job = k.ask(op="print", doc="case_status", case="2026-0001")
    assert set(job) == {"job", "size", "sha", "chunks"}, job
    assert job["chunks"] == -(-job["size"] // 1536) and job["chunks"] >= 1
    data = fetch(k, job["job"], job["chunks"])
    assert len(data) == job["size"] and hashlib.sha256(data).hexdigest() == job["sha"]
    assert data.startswith(b"\x1b@\x1c&")                               # reset, Chinese mode (GB18030)
    assert data.endswith(b"\x1dV\x00")                                  # cut
    text = data.decode("gb18030", "replace")
    for words in ("办件状态", "2026-0001", "个体工商户设立登记", "审查中", "2026-05-08", "黄灯"):
        assert words in text, words
    assert parse_qr(data) == [RATE.encode()]
    # Every reply stays well under the 4,096 bytes a device reads per MQTT packet.
    assert max(len(r["data"]) for r in hall["devs"][0].replies if "data" in r) <= 2048

    # Another kiosk cannot fetch it (nor learn that it exists); bad indexes are refused.
    assert other.ask(op="chunk", job=job["job"], i=0) == {"error": "unknown_job"}
    assert k.ask(op="chunk", job="no-such-job", i=0) == {"error": "unknown_job"}
    for i in (job["chunks"], -1, "0", True, None):
        assert k.ask(op="chunk", job=job["job"], i=i) == {"error": "bad_chunk"}, i
    assert k.ask(op="print", doc="poster", case="2026-0001") == {"error": "unknown_doc"}
    assert k.ask(op="print", doc="case_status", case="2099-9999") == {"error": "unknown_case"}

    # The other templates: the notice copy names what the case is at, the receipt carries the QR too.
    form = k.ask(op="print", doc="form", case="2026-0002")
    assert "办结通知书" in fetch(k, form["job"], form["chunks"]).decode("gb18030")
    receipt = k.ask(op="print", doc="receipt", case="2026-0001")
    assert parse_qr(fetch(k, receipt["job"], receipt["chunks"])) == [RATE.encode()]

    # Reprinting is a new job with a new id; the kiosk's `print` event ends the first.
    again = k.ask(op="print", doc="case_status", case="2026-0001")
    assert again["job"] != job["job"]
    hall["devs"][0].send({"v": 1, "device": "ks-01", "seq": 1, "kind": "print", "t": 1764000000000,
                          "job": job["job"], "doc": "case_status", "result": "ok", "case": "2026-0001"})
    wait_for(lambda: 1 in hall["devs"][0].acked, 20, what="the print event acked")
    assert k.ask(op="chunk", job=job["job"], i=0) == {"error": "job_done"}
    assert "data" in k.ask(op="chunk", job=again["job"], i=0)
    assert store_count(hall["db"], "SELECT count(*) FROM print_jobs WHERE done_ms IS NOT NULL") == 1


HOSTILE = [
    ("case", case("2026-\x1b[2J")),
    ("case", case("x" * 65)),
    ("item_name", case("2026-0101", name="缺纸\u202e")),               # a bidi override
    ("item_name", case("2026-0102", name="\x1dV\x00")),                # a cut command in the name
    ("state", case("2026-0103", state="approved")),
    ("light", case("2026-0104", light="blue")),
    ("rate_url", case("2026-0105", url="javascript:alert(1)")),
    ("rate_url", case("2026-0106", url="https://pj.example/r x")),
    ("rate_url", case("2026-0107", url="https://pj.example/" + "a" * 300)),
]


def test_a_hostile_county_reaches_no_kiosk_and_an_old_row_is_not_kept_as_current(hall):
    k = hall["kiosks"][0]
    county = hall["county"]
    fresh_answer(k, "2026-0001")
    bad_date = dict(case("2026-0108"), accepted="2026-02-30")
    not_text = dict(case("2026-0109"), item=12345)
    # 2026-0001 was cached; the county now sends garbage for it: its old row must go.
    broken_0001 = dict(case("2026-0001"), promised="someday")
    county.cases = [c for _, c in HOSTILE] + [bad_date, not_text, broken_0001, "not a case",
                                             case("2026-0200", state="ready", light=None)]
    db = hall["db"]
    wait_for(lambda: counter(db, "cases_refused:promised") >= 1, 20, what="the hostile answer taken")
    for field in ("case", "item_name", "state", "light", "rate_url", "accepted", "item", "not_an_object"):
        assert counter(db, "cases_refused:" + field) >= 1, field
    for _, c in HOSTILE[2:] + [(None, bad_date), (None, not_text), (None, broken_0001)]:
        assert k.ask(op="case", case=c["case"]) == {"error": "unknown_case"}, c["case"]
    assert k.ask(op="case", case="2026-0200")["state"] == "ready"      # the good one in the same answer
    assert store_count(db, "SELECT count(*) FROM cases WHERE \"case\" LIKE '2026-01%'") == 0


@pytest.mark.parametrize("field,bad", HOSTILE, ids=[h[0] + "-%d" % i for i, h in enumerate(HOSTILE)])
def test_check_case_names_the_field_it_refuses(field, bad):
    with pytest.raises(case_cache.CaseRefused) as e:
        case_cache.check_case(bad)
    assert e.value.field == field


def test_check_cards_refuses_what_a_screen_cannot_show():
    good = {"date": "2026-05-06", "green": 1, "yellow": 0, "red": 3}
    assert case_cache.check_cards(dict(good, hall="h1")) == good
    for bad in (dict(good, red=-1), dict(good, red=True), dict(good, red="3"), dict(good, date="06/05/2026"),
                dict(good, green=10 ** 12), [good]):
        with pytest.raises(case_cache.CaseRefused):
            case_cache.check_cards(bad)
    assert re.match(r"^\d+$", str(case_cache.MAX_CARD))


def test_the_case_cache_takes_the_link_key_once_asks_hourly_and_refuses_a_bad_one(tmp_path):
    """The hall's key for ticket rating links comes with the cases' thread and connection."""
    from edge_agent.county_client import County
    county = StandInCounty(HALL, TOKEN).start()
    store = Store(str(tmp_path / "agent.db"))
    client = County(county.url, TOKEN, HALL, 5, None)
    took = []
    cache = case_cache.CaseCache(tmp_path / "agent.db", {"url": county.url, "backoff_max_s": 1},
                                 {"cases_poll_s": 1}, HALL, on_link_key=lambda k, b: took.append((k, b)))

    def asked():
        return sum(p.endswith("/link-key") for p, _ in county.asked)
    try:
        cache.take_link_key(store, client)              # a county without a link secret: 404
        cache.take_link_key(store, client)              # not asked again within the hour
        assert asked() == 1 and not took and store.meta("link_key") is None
        for bad in ({"key": "ab" * 31}, {"key": "zz" * 32}, {"key": None},
                    {"key": "ab" * 32, "base": "javascript:alert(1)"}, {"key": "ab" * 32, "base": "https://x/\x1b"}):
            county.link_key, cache._link_key_due = bad, 0.0      # the hour is up
            cache.take_link_key(store, client)
            assert not took and store.meta("link_key") is None, bad
        county.link_key, cache._link_key_due = {"key": "ab" * 32}, 0.0     # no base: the uplink's url
        cache.take_link_key(store, client)
        assert took == [(b"\xab" * 32, county.url)]
        assert (store.meta("link_key"), store.meta("link_base")) == ("ab" * 32, county.url)
        n, cache._link_key_due = asked(), 0.0
        cache.take_link_key(store, client)              # taken: never asked again
        assert asked() == n and len(took) == 1
        assert cache.state()["failing_since_ms"] is None  # none of it was a failure of the cases
    finally:
        client.close()
        store.close()
        county.stop()
