"""The real edge agent with the kiosk's three requests answered by a
stand-in (protocol SPEC 'Requests': `case`, `print`, `chunk`), until the
agent's own handlers land (issue 8, agent side). Run as a process:

    python tests/kiosk_agent.py CONFIG CASES_JSON

Everything but the handlers is the real agent (edge_agent.agent.Agent: its
store, link, committer, sealed replies after commit). The handlers follow
the contract in SPEC.md: a case from CASES_JSON ({number: fields}); a
case-status slip rendered with python-escpos (GB18030 text, native QR with
the rating link, cut) kept in memory by job id; chunks of it as base64.
"""
import base64
import hashlib
import itertools
import json
import os
import signal
import sys
import threading

from escpos.printer import Dummy

from edge_agent import config as config_mod
from edge_agent.agent import Agent
from edge_agent.requests import RequestRefused

CHUNK = 1536
STATES = {"accepted": "已受理", "in_review": "审查中", "suspended": "暂停", "completed": "已办结", "ready": "待领取"}
LIGHTS = {"green": "绿灯", "yellow": "黄灯", "red": "红灯", None: "无"}


def render(job, case, c):
    p = Dummy()
    p.set(align="center", bold=True)
    p.text("办件状态 Case status\n")
    p.set(align="left", bold=False)
    p.text("办件编号 Case: %s\n" % case)
    p.text("事项 %s\n" % c.get("item_name", ""))
    p.text("状态 State: %s %s\n" % (c["state"], STATES[c["state"]]))
    p.text("承诺办结 Due: %s\n" % c["promised"])
    p.text("时限 Light: %s %s\n" % (c.get("light") or "none", LIGHTS[c.get("light")]))
    p.text("job %s\n" % job)
    p.qr(c["rate_url"], native=True, size=6)
    p.text("扫码评价 Scan to rate\n")
    p.cut()
    return p.output


class Stand:
    def __init__(self, cases):
        self.cases = cases
        self.jobs = {}
        self.seq = itertools.count(1)
        self.lock = threading.Lock()

    def case(self, store, device, msg):
        c = self.cases.get(msg.get("case"))
        if c is None:
            raise RequestRefused("unknown_case")
        out = {"case": msg["case"]}
        out.update(c)
        return out

    def print(self, store, device, msg):
        c = self.cases.get(msg.get("case"))
        if msg.get("doc") != "case_status" or c is None:
            raise RequestRefused("unknown_case")
        with self.lock:
            job = "j%d-%s" % (next(self.seq), os.urandom(3).hex())
            data = render(job, msg["case"], c)
            self.jobs[job] = data
        return {"job": job, "size": len(data), "sha": hashlib.sha256(data).hexdigest(),
                "chunks": (len(data) + CHUNK - 1) // CHUNK}

    def chunk(self, store, device, msg):
        data = self.jobs.get(msg.get("job"))
        i = msg.get("i")
        if data is None or type(i) is not int or not 0 <= i * CHUNK < len(data):
            raise RequestRefused("unknown_job")
        return {"job": msg["job"], "i": i,
                "data": base64.b64encode(data[i * CHUNK:(i + 1) * CHUNK]).decode()}


def main(config_path, cases_path):
    with open(cases_path) as f:
        stand = Stand(json.load(f))
    agent = Agent(config_mod.load(config_path))
    for op in ("case", "print", "chunk"):
        agent.requests.handle(op, getattr(stand, op))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent.run(stop)


if __name__ == "__main__":
    main(*sys.argv[1:3])
