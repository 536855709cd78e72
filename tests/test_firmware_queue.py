"""The evaluator (real firmware on the MicroPython unix port, 64 KiB heap)
calling from the hall's queue through the real agent: the staff key asks
`next`, the agent's `call` starts the session with the ticket, the display
shows the number; staff held + the last rating key is 过号 and calls the
next one. Five windows pressing the staff key at the same moment, with
tickets from a virtual kiosk, never get the same ticket, 绿色通道 first."""
import json
import os
import re
import socket
import threading
import time
import urllib.request

import pytest

from harness import wait_for
from kiosk_rig import ready, take_ticket
from test_agent_support import PahoDevice
from tools.hall import Hall


@pytest.fixture
def hall(evaluator_hall):
    return evaluator_hall


def _sessions(hall):
    return hall.agent_events("session")


def _hold_staff(vd, ms):
    # A second control connection: the staff key held while the test presses another.
    with socket.create_connection(("127.0.0.1", vd.control_port), 30) as s:
        s.sendall(json.dumps({"op": "press", "button": "staff", "ms": ms}).encode() + b"\n")
        s.recv(100)


def test_the_staff_key_calls_the_next_ticket_and_a_combination_marks_a_no_show(hall):
    vd = next(iter(hall.devices.values()))
    wait_for(lambda: "Welcome" in vd.screen()["lines"], 30, what="device has its config")
    hall.edge_agent("queue", "add", "A", "综合受理")
    hall.edge_agent("queue", "serve", "A01", "A")
    key = os.urandom(32)
    hall.edge_agent("devices", "add", "ks-01", "--window", "K01", "--key", key.hex())
    kiosk = PahoDevice(hall.hall, "ks-01", key, hall.broker.port).start()
    try:
        wait_for(lambda: kiosk.configs, 30, what="the kiosk's config")
        for n in (1, 2, 3):
            kiosk.ask({"op": "ticket", "queue": "A"}, n)
            assert kiosk.reply_to(n)["ticket"] == "A%03d" % n
        time.sleep(2)                     # the evaluator's config with `calls` (republished within a second)
        vd.staff("start")
        wait_for(lambda: vd.screen()["lines"][1].startswith("A001"), 20, what="A001 on the evaluator")
        assert vd.screen()["lines"][2].startswith("Serving")          # the number where the staff name goes
        wait_for(lambda: any(s.get("ticket") == "A001" and s["action"] == "started" for s in _sessions(hall)),
                 30, what="the session started with A001 at the agent")
        # 过号: staff held, the last rating key pressed: A001 marked, A002 called.
        holder = threading.Thread(target=_hold_staff, args=(vd, 900))
        holder.start()
        time.sleep(0.3)
        vd.press("very_dissatisfied")
        holder.join(30)
        wait_for(lambda: vd.screen()["lines"][1].startswith("A002"), 20, what="A002 on the evaluator")
        assert vd.stats()["ignored"] == 0                # the combination was not a rating
        vd.staff("end")
        vd.press("satisfied")
        assert "Thank you" in vd.screen()["lines"]
        # A003 is next; after it nobody waits: the staff key serves a walk-in, no ticket.
        vd.staff("start")
        wait_for(lambda: vd.screen()["lines"][1].startswith("A003"), 20, what="A003 on the evaluator")
        vd.staff("end")
        vd.staff("start")
        # (No staff on duty here: the display's empty staff row is not in `lines`.)
        wait_for(lambda: vd.screen()["lines"][1].startswith("Serving"), 20, what="a service without a ticket")
        assert vd.stats()["state"] == "serving" and len(vd.screen()["lines"]) == 3   # window, state, 服务中
        board = json.load(urllib.request.urlopen(hall.screen_url + "api/queue", timeout=5))
        assert [c["ticket"] for c in board["calls"][:3]] == ["A003", "A002", "A001"]
        assert board["queues"][0]["no_show_today"] == 1 and board["queues"][0]["waiting"] == 0
    finally:
        kiosk.stop()


WINDOWS = ["A%02d" % i for i in range(1, 6)]
GUIDE = "gd-01"     # the guide desk's terminal (导服台), which gives 绿色通道 tickets


@pytest.fixture
def five_windows(tmp_path):
    h = Hall(str(tmp_path / "hall"), hall="fw-queue-hall", devices=5, kiosks=1, heapsize="64k",
             queues={"A": "综合受理", "B": "不动产登记"}, serve={w: "AB" for w in WINDOWS},
             agent_config={"devices": {"prompt_s": 3}}, kiosk_opts={"site": {"status_s": 60}})
    try:
        yield h.start()
    finally:
        h.stop()


def _called(vd):
    # The display's second line is the called number ("A012 ..."), or "Serving" for a walk-in.
    line = vd.screen()["lines"][1]
    return re.match(r"^[AB]\d{3}\b", line) and line[:4]


def test_five_windows_calling_at_once_never_share_a_ticket_and_priority_goes_first(five_windows):
    hall = five_windows
    evs = [hall.devices["ev-%02d" % i] for i in range(1, 6)]
    vk = hall.kiosks["ks-01"]
    # No firmware gives 绿色通道 tickets yet (the kiosk has no such key): the guide
    # desk's terminal asks for them as a device does (SPEC 'Requests', ticket).
    key = os.urandom(32)
    hall.edge_agent("devices", "add", GUIDE, "--window", "G01", "--key", key.hex())
    guide = PahoDevice(hall.hall, GUIDE, key, hall.broker.port).start()
    try:
        for vd in evs:
            wait_for(lambda: "Welcome" in vd.screen()["lines"], 30, what="%s has its config" % vd.device)
        ready(vk)
        wait_for(lambda: guide.configs, 30, what="the guide desk's config")
        issued = []
        for i in range(10):
            if i in (3, 8):
                guide.ask({"op": "ticket", "queue": "AB"[i % 2], "priority": True}, 100 + i)
                issued.append(guide.reply_to(100 + i)["ticket"])
            else:
                issued.append(take_ticket(vk, 1 + i % 2)[0])
        priority = {issued[3], issued[8]}
        called = []
        for round_ in range(2):
            barrier = threading.Barrier(len(evs))

            def window(vd):
                barrier.wait()
                vd.staff("start")          # 叫号, all five at once

            threads = [threading.Thread(target=window, args=(vd,)) for vd in evs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            tickets = [wait_for(lambda: _called(vd), 20, 0.05, what="a number on %s" % vd.device) for vd in evs]
            assert len(set(tickets)) == 5, tickets
            if round_ == 0:
                assert priority <= set(tickets), "绿色通道 first"
                # Then by arrival: the three oldest of the others.
                assert set(tickets) - priority == set([t for t in issued if t not in priority][:3])
            for vd in evs:
                vd.staff("end")
                vd.press("satisfied")
            called += tickets
        assert sorted(called) == sorted(issued)
        # At the agent: each ticket called once, to the window that showed it, and the
        # session started there carries it.
        calls = [e for e in hall.agent_events("ticket") if e.get("action") == "called"]
        assert sorted((e["ticket"], e["window"]) for e in calls) == sorted(
            (t, WINDOWS[i % 5]) for i, t in enumerate(called))
        wait_for(lambda: sorted(s["ticket"] for s in hall.agent_events("session")
                                if s["action"] == "started" and "ticket" in s) == sorted(issued),
                 30, 0.2, what="the sessions carry the tickets")
    finally:
        guide.stop()
