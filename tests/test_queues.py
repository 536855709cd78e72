"""The queue's rules on a real SQLite store (edge_agent/queues.py), without
the broker: numbers start again at the hall's local midnight, the calling
order (绿色通道, appointments in their slot, arrival), appointments asked
twice, the rating link's signature, and every value a person types checked
where it enters."""
import datetime
import hashlib
import hmac
import zoneinfo

import pytest

from edge_agent import config, queues
from edge_agent.requests import RequestRefused
from edge_agent.store import Store
from test_agent_support import edge_agent, write_config

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
KIOSK = {"device": "ks-01", "window": "K01"}
W1 = {"device": "ev-01", "window": "W01"}


def at(local):
    return int(datetime.datetime.fromisoformat(local).replace(tzinfo=SHANGHAI).timestamp() * 1000)


class Clock:
    def __init__(self, local):
        self.ms = at(local)

    def __call__(self):
        return self.ms


@pytest.fixture
def hall():
    store = Store(memory=True)
    queues.add(store, "A", "综合受理", 0)
    queues.add(store, "B", "不动产", 0)
    queues.serve(store, "W01", ["A", "B"])
    clock = Clock("2026-11-30 23:58:00")
    ops = queues.QueueOps(config.validate({"hall": "h1"}), lambda: (bytes(range(32)), "https://county.example/"),
                          clock)
    return store, ops, clock


def op(store, fn, device, msg):
    with store.atomic():
        return fn(store, device, msg)


def test_numbers_start_again_at_the_halls_midnight_not_utcs(hall):
    store, ops, clock = hall
    assert op(store, ops.op_ticket, KIOSK, {"queue": "A"})["ticket"] == "A001"
    assert op(store, ops.op_ticket, KIOSK, {"queue": "A"})["ticket"] == "A002"
    clock.ms = at("2026-12-01 00:00:01")         # 16:00 UTC: a new day in the hall
    r = op(store, ops.op_ticket, KIOSK, {"queue": "A"})
    assert r["ticket"] == "A001" and r["ahead"] == 0     # yesterday's waiting do not count
    # The rating link: the county's signature over "ticket:<yyyymmdd>-<ticket>".
    sig = hmac.new(bytes(range(32)), b"ticket:20261201-A001", hashlib.sha256).digest()[:16].hex()
    assert r["rate_url"] == "https://county.example/r/h1/ticket/20261201-A001/" + sig
    # Today's call takes today's ticket, never one left over from yesterday.
    assert op(store, ops.op_next, W1, {})["ticket"] == "A001"
    with pytest.raises(RequestRefused) as e:
        op(store, ops.op_next, W1, {})
    assert e.value.code == "empty"


def test_a_clock_set_back_never_starts_the_days_numbers_again(hall):
    """The Pi has no real-time clock: after a power cut it runs on the time it
    last saved until NTP answers. Today's numbers go on, today's waiting
    tickets are called, and the lobby board shows today."""
    store, ops, clock = hall
    clock.ms = at("2026-11-30 14:00:00")
    assert [op(store, ops.op_ticket, KIOSK, {"queue": "A"})["ticket"] for _ in range(2)] == ["A001", "A002"]
    clock.ms = at("2026-11-29 17:30:00")         # booted on yesterday evening's saved time
    assert op(store, ops.op_ticket, KIOSK, {"queue": "A"})["ticket"] == "A003"
    assert op(store, ops.op_next, W1, {})["ticket"] == "A001"
    block = op(store, ops.op_block, KIOSK, {"queue": "A"})
    assert block["day"] == "2026-11-30" and block["from"] == 4
    assert queues.board(store, ops.cfg, clock.ms)["day"] == "2026-11-30"
    clock.ms = at("2026-11-30 14:05:00")         # NTP set it right: the same day goes on
    assert op(store, ops.op_ticket, KIOSK, {"queue": "A"})["ticket"] == "A%03d" % (block["to"] + 1)
    assert op(store, ops.op_next, W1, {})["ticket"] == "A002"


def test_calling_order_priority_then_appointments_in_their_slot_then_arrival(hall):
    store, ops, clock = hall
    clock.ms = at("2026-11-30 09:00:00")
    queues.appoint(store, "YY-7", "B", at("2026-11-30 09:30"), 30, clock.ms)
    a1 = op(store, ops.op_ticket, KIOSK, {"queue": "A"})["ticket"]
    b_appt = op(store, ops.op_ticket, KIOSK, {"appointment": "YY-7"})
    assert b_appt["ticket"] == "B001"
    # Asked again (the reply was lost): the same ticket, not a second one.
    assert op(store, ops.op_ticket, KIOSK, {"appointment": "YY-7"})["ticket"] == "B001"
    a2 = op(store, ops.op_ticket, KIOSK, {"queue": "A"})["ticket"]
    green = op(store, ops.op_ticket, KIOSK, {"queue": "B", "priority": True})["ticket"]
    assert green == "B002"
    calls = [op(store, ops.op_next, W1, {})["ticket"]]          # 绿色通道 first
    clock.ms = at("2026-11-30 09:31:00")                         # the appointment's slot has begun
    calls += [op(store, ops.op_next, W1, {})["ticket"] for _ in range(3)]
    assert calls == [green, "B001", a1, a2]
    with pytest.raises(RequestRefused) as e:
        op(store, ops.op_ticket, KIOSK, {"appointment": "nope"})
    assert e.value.code == "unknown_appointment"
    clock.ms = at("2026-11-30 10:01:00")
    queues.appoint(store, "YY-8", "B", at("2026-11-30 09:30"), 30, clock.ms)
    with pytest.raises(RequestRefused) as e:
        op(store, ops.op_ticket, KIOSK, {"appointment": "YY-8"})
    assert e.value.code == "appointment_expired"


def test_the_kiosks_menu_and_the_wait_estimate(hall):
    store, ops, clock = hall
    clock.ms = at("2026-11-30 09:00:00")
    for q in "AAAB":
        op(store, ops.op_ticket, KIOSK, {"queue": q})
    menu = op(store, ops.op_queues, KIOSK, {})["queues"]
    # No calls yet: [queue] service_s (300) per ticket, shared by the one window serving each.
    assert menu == [{"queue": "A", "name": "综合受理", "waiting": 3, "wait_s": 900,
                     "name_gb": "综合受理".encode("gb18030").hex()},
                    {"queue": "B", "name": "不动产", "waiting": 1, "wait_s": 300,
                     "name_gb": "不动产".encode("gb18030").hex()}]
    # Nine calls of A in the half hour: one per 200 s, faster than service_s: the rate stands.
    for i in range(2):
        op(store, ops.op_next, W1, {})
    for i in range(9):
        op(store, ops.op_ticket, KIOSK, {"queue": "A"})
    for i in range(8):
        op(store, ops.op_next, W1, {})
    assert store.queues.first_calls_since("A", clock.ms - 1800000) == 9      # and B's one
    menu = op(store, ops.op_queues, KIOSK, {})["queues"]
    assert menu[0]["waiting"] == 3 and menu[0]["wait_s"] == 3 * 200


@pytest.mark.parametrize("msg, code", [({"queue": "a"}, "unknown_queue"), ({"queue": "C"}, "unknown_queue"),
                                       ({"queue": ["A"]}, "unknown_queue"), ({}, "unknown_queue"),
                                       ({"queue": "A", "priority": 1}, "bad_value"),
                                       ({"appointment": "x\ty"}, "bad_value")])
def test_a_request_that_breaks_the_rules_is_refused_by_name(hall, msg, code):
    store, ops, _ = hall
    with pytest.raises(RequestRefused) as e:
        op(store, ops.op_ticket, KIOSK, msg)
    assert e.value.code == code
    assert store.queues.last_number("A", "2026-11-30") == 0      # no number taken


def test_the_cli_checks_every_value_and_says_why_in_one_line(tmp_path):
    cfg = write_config(str(tmp_path), 1883)
    for args, words in ((["queue", "add", "AB", "x"], "one letter A-Z"),
                        (["queue", "add", "A", "综合\t受理"], "no control characters"),
                        (["queue", "add", "A", "x" * 65], "1-64 characters"),
                        (["queue", "serve", "W01", "Q"], "no queue Q"),
                        (["queue", "serve", "W 01", "A"], "window"),
                        (["queue", "appoint", "c1", "--queue", "A", "--at", "tomorrow"], "YYYY-MM-DD HH:MM")):
        out = edge_agent(cfg, *args, check=False)
        assert out.returncode == 1 and out.stderr.count("\n") == 1 and words in out.stderr, (args, out.stderr)
    edge_agent(cfg, "queue", "add", "a", " 综合受理 ")
    assert "queue A exists" in edge_agent(cfg, "queue", "add", "A", "x", check=False).stderr
    edge_agent(cfg, "queue", "serve", "W01", "A")
    listed = edge_agent(cfg, "queue", "list").stdout
    assert "综合受理" in listed and "W01" in listed
    assert "A 综合受理 (windows W01): 0 waiting" in edge_agent(cfg, "status").stdout


def test_config_timezone_block_size_and_link_key_are_checked():
    for q, words in (({"timezone": "Mars/Olympus"}, "timezone"), ({"block_size": 0}, "block_size"),
                     ({"link_key": "abc"}, "link_key"), ({"rate_base": "ftp://x"}, "rate_base")):
        with pytest.raises(config.ConfigError, match=words):
            config.validate({"hall": "h1", "queue": q})
    with pytest.raises(config.ConfigError, match="repeat"):
        config.validate({"hall": "h1", "voice": {"repeat": 9}})
