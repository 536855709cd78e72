"""The kiosk tests' hall: real Mosquitto, the real edge agent with the
kiosk's requests answered (tests/kiosk_agent.py), a virtual kiosk
(tools.vkiosk) with its simulated printer and scanner at -X heapsize=128k."""
import json
import os
import sqlite3
import sys

from harness import Mosquitto, Proc, VENV_BIN, free_port, healthy, wait_for
from test_agent_support import edge_agent, write_config
from tools.vkiosk import VirtualKiosk

HALL = "ks-hall"
KEY = bytes(range(40, 72))
DEV = "ks-01"
HEAP = "128k"
CASES = {
    "KC2025000123": {"state": "in_review", "item_name": "食品经营许可", "promised": "2026-01-20",
                     "light": "yellow", "rate_url": "https://county.example/r/KC2025000123?s=5f3a"},
    "KC2025000777": {"state": "ready", "item_name": "个体工商户登记", "promised": "2025-12-01",
                     "light": "green", "rate_url": "https://county.example/r/KC2025000777?s=9b21"},
    "4401202500042": {"state": "completed", "item_name": "不动产登记", "promised": "2025-11-30",
                      "light": "red", "rate_url": "https://county.example/r/4401202500042?s=77aa"},
}


class KioskAgent:
    """The real agent (kiosk_agent.py: Agent + the stand-in handlers)."""

    def __init__(self, work, broker_port, prompt_s):
        self.work = os.path.join(work, "agent")
        os.makedirs(self.work, exist_ok=True)
        self.http_port = free_port()
        self.config = write_config(self.work, broker_port, hall=HALL, http_port=self.http_port,
                                   extra="[devices]\nprompt_s = %d" % prompt_s)
        edge_agent(self.config, "devices", "add", DEV, "--window", "K01", "--key", KEY.hex())
        self.cases = os.path.join(self.work, "cases.json")
        with open(self.cases, "w") as f:
            json.dump(CASES, f, ensure_ascii=False)
        self.db_path = os.path.join(self.work, "agent.db")
        here = os.path.dirname(os.path.abspath(__file__))
        self.proc = Proc("kiosk-agent", [os.path.join(VENV_BIN, "python"), os.path.join(here, "kiosk_agent.py"),
                                         self.config, self.cases], self.work,
                         env={"PYTHONPATH": os.pathsep.join([os.path.dirname(here)] + sys.path)})

    def start(self):
        self.proc.start()
        wait_for(lambda: healthy(self.http_port) or not self.proc.alive(), 30, what="agent healthy")
        assert self.proc.alive(), self.proc.log()
        return self

    def alive(self):
        return self.proc.alive()

    def kill(self):
        self.proc.kill()

    def stop(self):
        self.proc.stop()

    def of_kind(self, kind):
        db = sqlite3.connect(self.db_path, timeout=30)
        try:
            rows = db.execute("SELECT body FROM events WHERE kind = ? ORDER BY device, seq", (kind,)).fetchall()
        finally:
            db.close()
        return [json.loads(b) for (b,) in rows]


class Hall:
    def __init__(self, tmp_path, prompt_s=3, heapsize=HEAP, site=None, **kiosk):
        self.broker = Mosquitto(str(tmp_path / "broker")).start()
        self.agent = KioskAgent(str(tmp_path), self.broker.port, prompt_s).start()
        site = dict({"status_s": 60, "ack_timeout_s": 5}, **(site or {}))
        self.kiosk = VirtualKiosk(str(tmp_path / DEV), HALL, DEV, KEY, self.broker.port,
                                  heapsize=heapsize, site=site, **kiosk)

    def stop(self):
        for f in (self.kiosk.close, self.agent.stop, self.broker.stop):
            try:
                f()
            except Exception:
                pass


def ready(vk, timeout=30):
    wait_for(lambda: vk.stats().get("ready") and vk.state() == "idle", timeout, what="kiosk ready and idle")


def wait_state(vk, states, timeout=30):
    states = (states,) if isinstance(states, str) else states
    return wait_for(lambda: vk.state() in states and vk.state(), timeout, 0.05, what="kiosk in %s" % (states,))


def drained(vk, timeout=120):
    wait_for(lambda: vk.stats()["outbox"] == 0, timeout, 0.2, what="the kiosk's outbox acked")
