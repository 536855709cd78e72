"""Helpers for the edge agent tests (no tests here): a config writer, the
agent as a real process, and a paho-based stand-in for a device that keeps
an outbox exactly as SPEC.md says (delete only on the agent's ack, resend
the rest)."""
import contextlib
import json
import os
import secrets
import subprocess
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt

import protocol
from protocol import messages, topics
from harness import Proc, VENV_BIN, broker_dir, free_port, healthy, wait_for

EDGE_AGENT = os.path.join(VENV_BIN, "edge-agent")


def write_config(work, broker_port, hall="h1", http_port=0, extra=""):
    path = os.path.join(work, "agent.toml")
    with open(path, "w") as f:
        f.write("\n".join([
            'hall = "%s"' % hall,
            "[mqtt]", 'host = "127.0.0.1"', "port = %d" % broker_port, extra,
            "[store]", 'path = "%s"' % os.path.join(work, "agent.db"),
            "[http]", 'host = "127.0.0.1"', "port = %d" % http_port, ""]))
    return path


def edge_agent(config, *args, check=True):
    out = subprocess.run([EDGE_AGENT, "--config", config] + list(args), capture_output=True, text=True)
    if check and out.returncode != 0:
        raise AssertionError("edge-agent %s: %s" % (" ".join(args), out.stderr))
    return out


@contextlib.contextmanager
def registry_of(config):
    """(store, hall) of the agent `config` names, opened as the `edge-agent`
    commands open it, for setting up devices and windows through the
    functions those commands call (tests/test_agent_cli.py runs the commands
    themselves): one store opened, not a Python start per device (the 50 of
    tests/test_agent_kill.py took 20 s)."""
    from edge_agent import config as agent_config
    from edge_agent.store import Store
    cfg = agent_config.load(config)
    store = Store(cfg["store"]["path"])
    try:
        yield store, cfg["hall"]
    finally:
        store.close()


def add_devices(config, names, window_prefix="A"):
    """`edge-agent devices add` for each name, at windows A01, A02, ...; their keys."""
    from edge_agent import registry
    keys = {}
    with registry_of(config) as (store, hall):
        for i, d in enumerate(names):
            keys[d] = secrets.token_bytes(32)
            registry.add(store, hall, d, "%s%02d" % (window_prefix, i + 1), keys[d].hex())
    return keys


def agent_proc(work, config, name="edge-agent"):
    return Proc(name, [EDGE_AGENT, "run", "--config", config], work)


def start_agent(work, config, http_port, name="edge-agent"):
    """Start the agent and wait until its session with the broker exists (a
    persistent session only queues messages once it has subscribed)."""
    p = agent_proc(work, config, name).start()
    wait_for(lambda: healthy(http_port) or not p.alive(), 30, what="agent healthy")
    assert p.alive(), p.log()
    return p


def http_json(http_port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (http_port, path), timeout=5) as r:
        return json.load(r)


def rating(device, seq, level="satisfied", session=None, t=None):
    return {"v": 1, "device": device, "seq": seq, "kind": "rating", "t": t if t is not None else 1764000000000 + seq,
            "level": level, "channel": "window", "session": session or "%s-1-%d" % (device, seq)}


def status(device, seq, alarm=None, outbox=0, t=None):
    """A device's periodic health event; `alarm` as the SPEC writes it ("display,outbox_full")."""
    ev = {"v": 1, "device": device, "seq": seq, "kind": "status", "t": t if t is not None else 1764000000000 + seq,
          "fw": "ql-eval/0.1", "uptime_s": 60, "reset": "power_on", "outbox": outbox, "heap": 30000}
    if alarm:
        ev["alarm"] = alarm
    return ev


class PahoDevice:
    """A device's delivery behaviour on paho: an outbox of signed events,
    published QoS 1, deleted only when the agent's ack covers them."""

    def __init__(self, hall, device, key, port, username=None, password=None, client_id=None):
        self.hall, self.device, self.key = hall, device, key
        self.outbox = {}           # seq -> wire bytes
        self.sent_at = {}          # seq -> monotonic time of the last (re)send
        self.acked = set()
        self.configs = []
        self.replies = []          # the agent's replies to requests, unsealed
        self.cmds = []             # the agent's other commands (a queue's `call`), unsealed
        self.lock = threading.Lock()
        self.connected = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "dev-" + device,
                        clean_session=True)
        if username:
            c.username_pw_set(username, password)
        c.will_set(topics.topic(hall, device, topics.STATUS), b'{"online":false}', qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_disconnect = lambda *a: self.connected.clear()
        c.reconnect_delay_set(0.2, 2)
        self.client, self.port = c, port
        self.sub_results = []

    def start(self):
        self.client.connect_async("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        return self

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, rc, props):
        if rc.is_failure:
            return
        client.subscribe([(topics.topic(self.hall, self.device, ch), 1)
                          for ch in (topics.ACK, topics.CONFIG, topics.CMD)])
        client.publish(topics.topic(self.hall, self.device, topics.STATUS), b'{"online":true,"fw":"paho"}',
                       qos=1, retain=True)
        self.connected.set()
        self.resend()

    def _on_message(self, client, userdata, msg):
        ch = msg.topic.rsplit("/", 1)[1]
        if ch == topics.ACK:
            # The agent's ack, sealed with this device's key (protocol SPEC: the device link).
            ranges = messages.parse_ack(messages.unseal(self.key, topics.ACK, msg.payload, 0))
            with self.lock:
                for seq in list(self.outbox):
                    if messages.acked(ranges, seq):
                        del self.outbox[seq]
                        self.acked.add(seq)
        elif ch == topics.CONFIG and msg.payload:
            self.configs.append(messages.unseal(self.key, topics.CONFIG, msg.payload, 0))
        elif ch == topics.CMD:
            cmd = messages.unseal(self.key, topics.CMD, msg.payload, 0)
            if cmd.get("cmd") == "reply":
                self.replies.append(cmd)
            else:
                self.cmds.append(cmd)

    def ask(self, msg, n, key=None):
        """Publish a request sealed with counter n (SPEC 'Requests'); the wire bytes."""
        wire = messages.seal(key or self.key, topics.REQ, msg, n)
        self.client.publish(topics.topic(self.hall, self.device, topics.REQ), wire, qos=1)
        return wire

    def reply_to(self, n, timeout=10):
        wait_for(lambda: any(r["re"] == n for r in self.replies), timeout, what="reply to request %d" % n)
        return [r for r in self.replies if r["re"] == n][-1]

    def send(self, ev):
        wire = protocol.encode(ev, self.key)
        with self.lock:
            self.outbox[ev["seq"]] = wire
            self.sent_at[ev["seq"]] = time.monotonic()
        self.client.publish(topics.topic(self.hall, self.device, topics.EVENTS), wire, qos=1)

    def resend(self, older_than_s=0.0):
        """Publish again what no ack covered yet (all of it after a reconnect;
        what waited longer than older_than_s when called periodically)."""
        now = time.monotonic()
        with self.lock:
            pending = sorted((s, w) for s, w in self.outbox.items() if now - self.sent_at[s] >= older_than_s)
            for s, _ in pending:
                self.sent_at[s] = now
        for seq, wire in pending:
            self.client.publish(topics.topic(self.hall, self.device, topics.EVENTS), wire, qos=1)

    def pending(self):
        with self.lock:
            return len(self.outbox)


def persistent_broker_conf(d, port):
    """The harness broker's settings, with persistence in a directory the
    broker's user can write, so a broker restart keeps the agent's queue."""
    return "\n".join(["listener %d 127.0.0.1" % port, "allow_anonymous true", "persistence true",
                      "persistence_location %s/data/" % d, "autosave_interval 1",
                      "max_queued_messages 0", "max_inflight_messages 200",
                      "log_dest stdout", "log_type error", "log_type warning", ""])


def store_count(db_path, sql="SELECT count(*) FROM events", params=()):
    import sqlite3
    c = sqlite3.connect(db_path, timeout=30)
    try:
        return c.execute(sql, params).fetchone()[0]
    finally:
        c.close()


__all__ = ["write_config", "edge_agent", "add_devices", "agent_proc", "rating", "status", "PahoDevice",
           "store_count", "free_port", "wait_for", "start_agent", "healthy", "http_json",
           "broker_dir", "persistent_broker_conf"]
