"""Queue request round trips through the real agent and Mosquitto: a kiosk
asking for a ticket (a number taken, a ticket and its `issued` event
committed with synchronous=FULL, then the sealed reply) and a window calling
the next one (the reply, then the `call` command), against `ping` (the
request's counter committed, the reply: the floor any request pays),
measured in the same run, one request at a time per device; each with
Mosquitto's default (Nagle on its client sockets) and with set_tcp_nodelay
as `edge-agent broker-config` writes it.

    python -m bench.queue_requests [--requests 200]
"""
import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

from protocol import messages, topics
from tools.procs import Mosquitto, Proc, VENV_BIN, free_port, wait_for

HALL = "bench-hall"


class Device:
    def __init__(self, name, key, port):
        self.name, self.key, self.n = name, key, 0
        self.replies, self.got = {}, threading.Event()
        self.ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-" + name)
        c.on_connect = lambda cl, u, f, rc, p: (
            # As the firmware's socket (firmware/mqtt.py): small packets go at once.
            cl.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),
            cl.subscribe(topics.topic(HALL, name, topics.CMD), 1),
            cl.subscribe(topics.topic(HALL, name, topics.CONFIG), 1))
        c.on_message = self._message
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _message(self, client, userdata, msg):
        ch = msg.topic.rsplit("/", 1)[1]
        if ch == topics.CONFIG and msg.payload:
            self.ready.set()
            return
        m = messages.unseal(self.key, ch, msg.payload, 0)
        if m.get("cmd") == "reply":
            self.replies[m["re"]] = m
            self.got.set()

    def ask(self, msg):
        self.n += 1
        n = self.n
        self.got.clear()
        t0 = time.perf_counter()
        self.client.publish(topics.topic(HALL, self.name, topics.REQ), messages.seal(self.key, topics.REQ, msg, n))
        while n not in self.replies:
            if not self.got.wait(10):
                raise RuntimeError("no reply to %r" % msg)
            self.got.clear()
        return time.perf_counter() - t0, self.replies.pop(n)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def agent(cfg, *args):
    subprocess.run([os.path.join(VENV_BIN, "edge-agent"), "--config", cfg] + list(args), check=True,
                   capture_output=True)


def row(name, secs):
    ms = sorted(s * 1000 for s in secs)
    return "%-36s %8.1f %8.1f %8.1f %8.0f" % (name, statistics.median(ms), ms[int(len(ms) * 0.9) - 1], ms[-1],
                                            len(ms) / sum(secs))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.queue_requests", description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="requests of each kind (200)")
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench-queue-")
    results = {}
    for nodelay in (False, True):
        results[nodelay] = run(work, args.requests, nodelay)
    print("queue requests through the agent (%d each; ms, one at a time)" % args.requests)
    print("%-36s %8s %8s %8s %8s" % ("", "median", "p90", "max", "per s"))
    for nodelay in (False, True):
        for name, secs in results[nodelay]:
            print(row("%s, broker %s" % (name, "nodelay" if nodelay else "Nagle"), secs))
    return 0


def run(work, requests, nodelay):
    """One agent and broker: [(name, seconds of each request)]."""
    work = os.path.join(work, "nodelay" if nodelay else "nagle")
    broker = Mosquitto(os.path.join(work, "broker"))
    # tools/procs.py and broker-config set it; the baseline is Mosquitto's default.
    conf = os.path.join(work, "broker", "mosquitto.conf")
    with open(conf) as f:
        text = f.read().replace("set_tcp_nodelay true", "set_tcp_nodelay %s" % ("true" if nodelay else "false"))
    with open(conf, "w") as f:
        f.write(text)
    broker.start()
    cfg = os.path.join(work, "agent.toml")
    with open(cfg, "w") as f:
        f.write('hall = "%s"\n[mqtt]\nhost = "127.0.0.1"\nport = %d\n[store]\npath = "%s/agent.db"\n'
                '[http]\nport = %d\n' % (HALL, broker.port, work, free_port()))
    keys = {"ks-01": secrets.token_bytes(32), "ev-01": secrets.token_bytes(32)}
    agent(cfg, "devices", "add", "ks-01", "--window", "K01", "--key", keys["ks-01"].hex())
    agent(cfg, "devices", "add", "ev-01", "--window", "W01", "--key", keys["ev-01"].hex())
    agent(cfg, "queue", "add", "A", "综合受理")
    agent(cfg, "queue", "serve", "W01", "A")
    proc = Proc("edge-agent", [os.path.join(VENV_BIN, "edge-agent"), "run", "--config", cfg], work).start()
    devs = []
    try:
        kiosk, window = (Device(d, keys[d], broker.port) for d in ("ks-01", "ev-01"))
        devs = [kiosk, window]
        for d in devs:
            wait_for(d.ready.is_set, 30, what="%s's config" % d.name)
        kiosk.ask({"op": "ping"})                       # warm up
        pings, tickets, nexts = [], [], []
        for i in range(requests):                  # taking turns: same machine state for both
            pings.append(kiosk.ask({"op": "ping"})[0])
            secs, r = kiosk.ask({"op": "ticket", "queue": "A"})
            assert "ticket" in r, r
            tickets.append(secs)
        for i in range(requests):
            secs, r = window.ask({"op": "next"})
            assert "ticket" in r, r
            nexts.append(secs)
        return [("ping (baseline)", pings), ("ticket (kiosk)", tickets), ("next (window)", nexts)]
    finally:
        for d in devs:
            d.close()
        proc.stop()
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
