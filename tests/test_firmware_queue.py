"""The evaluator (real firmware on the MicroPython unix port, 64 KiB heap)
calling from the hall's queue through the real agent: the staff key asks
`next`, the agent's `call` starts the session with the ticket, the display
shows the number; staff held + the last rating key is 过号 and calls the
next one."""
import json
import os
import socket
import sqlite3
import threading
import time
import urllib.request

import pytest

from harness import wait_for
from test_agent_support import PahoDevice
from tools.hall import Hall


@pytest.fixture
def hall(tmp_path):
    h = Hall(str(tmp_path / "hall"), hall="fw-queue-hall", devices=1, heapsize="64k")
    try:
        yield h.start()
    finally:
        h.stop()


def _sessions(hall):
    db = sqlite3.connect(os.path.join(hall.work_dir, "agent.db"), timeout=30)
    try:
        return [json.loads(b) for (b,) in db.execute("SELECT body FROM events WHERE kind = 'session' ORDER BY seq")]
    finally:
        db.close()


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
