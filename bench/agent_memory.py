"""Edge agent memory with 200 connected devices, against the same agent with
none connected, measured in this run:

  idle       agent running, broker connected, no device online;
  connected  N devices online (retained presence, config and beacon flowing),
             each having sent E events, all committed and acked;
  peak       the process's high-water mark (VmHWM) over the run.

Devices are paho clients in this process (the agent's numbers come from
/proc/<agent pid>/status). Exit 1 if not every event is stored.

    python -m bench.agent_memory [--devices 200] [--events-each 20]
"""
import argparse
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

import protocol
from protocol import messages, topics
from tools.procs import Mosquitto, Proc, VENV_BIN, free_port, healthy, wait_for

HALL = "bench"


def rss_kib(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                k, v = line.split(":")
                out[k] = int(v.split()[0])
    return out


class Device:
    def __init__(self, name, key, port):
        self.name, self.key, self.acked = name, key, set()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-" + name)
        c.will_set(topics.topic(HALL, name, "status"), b'{"online":false}', qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        self.ready = threading.Event()
        c.connect_async("127.0.0.1", port, keepalive=60)
        c.loop_start()
        self.client = c

    def _on_connect(self, c, u, f, rc, p):
        c.subscribe([(topics.topic(HALL, self.name, ch), 1) for ch in ("ack", "config", "cmd")])
        c.publish(topics.topic(HALL, self.name, "status"), b'{"online":true,"fw":"bench"}', qos=1, retain=True)
        self.ready.set()

    def _on_message(self, c, u, msg):
        if msg.topic.endswith("/ack"):
            for lo, hi in messages.parse_ack(messages.unseal(self.key, "ack", msg.payload, 0)):
                self.acked.update(range(lo, hi + 1))

    def send(self, seq):
        ev = {"v": 1, "device": self.name, "seq": seq, "kind": "rating", "t": 1764000000000 + seq,
              "level": "satisfied", "channel": "window", "session": "%s-1-%d" % (self.name, seq)}
        self.client.publish(topics.topic(HALL, self.name, "events"), protocol.encode(ev, self.key), qos=1)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--events-each", type=int, default=20)
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="bench-agent-memory-")
    port, http = free_port(), free_port()
    broker = Mosquitto(work + "/broker", port=port).start()
    cfg, db = os.path.join(work, "agent.toml"), os.path.join(work, "agent.db")
    with open(cfg, "w") as f:
        f.write('hall = "%s"\n[mqtt]\nport = %d\nbeacon_s = 10\n[store]\npath = "%s"\n[http]\nport = %d\n'
                % (HALL, port, db, http))
    names = ["ev-%03d" % i for i in range(args.devices)]
    keys = {d: secrets.token_bytes(32) for d in names}
    # Register in one go (one process per device would take minutes).
    subprocess.run([sys.executable, "-c", "import sys,json; from edge_agent import registry; "
                    "from edge_agent.store import Store; s=Store(sys.argv[1]); "
                    "[registry.add(s, %r, d, 'W%%03d' %% i, k) for i, (d, k) in enumerate(json.loads(sys.argv[2]).items())]"
                    % HALL, db, __import__("json").dumps({d: k.hex() for d, k in keys.items()})], check=True)
    agent = Proc("edge-agent", [os.path.join(VENV_BIN, "edge-agent"), "run", "--config", cfg], work).start()
    devices = []
    try:
        wait_for(lambda: healthy(http), 30, what="agent")
        time.sleep(3)
        idle = rss_kib(agent.p.pid)
        devices = [Device(d, keys[d], port) for d in names]
        wait_for(lambda: all(d.ready.is_set() for d in devices), 60, what="devices connected")
        for seq in range(1, args.events_each + 1):
            for d in devices:
                d.send(seq)
        total = args.devices * args.events_each
        wait_for(lambda: all(len(d.acked) == args.events_each for d in devices), 300, 0.5, "all acked")
        time.sleep(12)   # a beacon round and the light/status chores
        connected = rss_kib(agent.p.pid)
        c = sqlite3.connect(db)
        stored = c.execute("SELECT count(*) FROM events").fetchone()[0]
        online = c.execute("SELECT count(*) FROM devices WHERE online = 1").fetchone()[0]
        c.close()
    finally:
        for d in devices:
            d.stop()
        agent.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("edge agent RSS, %d devices (%d online), %d events each" % (args.devices, online, args.events_each))
    print("%-34s %8.1f MiB" % ("idle, no device connected", idle["VmRSS"] / 1024))
    print("%-34s %8.1f MiB" % ("%d devices connected, all acked" % args.devices, connected["VmRSS"] / 1024))
    print("%-34s %8.1f MiB" % ("peak (VmHWM)", connected["VmHWM"] / 1024))
    if stored != total:
        print("FAIL: stored %d of %d" % (stored, total))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
