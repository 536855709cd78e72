"""`edge-agent broker-config` on the real broker: a device's credentials
cannot publish as another device or read another device's topics, and the
agent, logged in with its own user, still ingests everything."""
import os
import shutil
import subprocess
import threading
import time

import paho.mqtt.client as mqtt

from protocol import topics
from edge_agent import registry
from harness import Mosquitto, wait_for
from test_agent_support import (PahoDevice, broker_dir, add_devices, edge_agent, free_port, rating, start_agent,
                                store_count, write_config)

HALL = "h1"


def test_acl_keeps_devices_in_their_own_topics(tmp_path):
    work = str(tmp_path)
    bdir = broker_dir()
    port, tls_port, http = free_port(), free_port(), free_port()
    ca = make_certs(bdir)
    # the agent comes in over TLS, checking the broker against the hall's CA; devices in plain MQTT
    config = write_config(work, tls_port, hall=HALL, http_port=http,
                          extra='username = "agent-h1"\npassword = "agent-secret"\ntls_ca = "%s"' % ca)
    keys = add_devices(config, ["ev-a", "ev-b"])
    out = edge_agent(config, "broker-config", "--out", bdir, "--data-dir", bdir + "/data", "--listen", "127.0.0.1",
                     "--port", str(port), "--tls-port", str(tls_port), "--tls-cert", bdir + "/server.pem",
                     "--tls-key", bdir + "/server.key")
    assert "mosquitto.conf" in out.stdout
    conf = open(bdir + "/mosquitto.conf").read()
    assert "max_queued_messages 0" in conf and "allow_anonymous false" in conf
    assert "listener %d 127.0.0.1" % tls_port in conf and "certfile" in conf
    assert "agent-secret" not in open(bdir + "/passwd").read()
    broker = Mosquitto(bdir, port=port, conf=conf).start()
    agent = start_agent(work, config, http)
    pw = {d: registry.mqtt_password(k) for d, k in keys.items()}
    # A login has one connection at a time (its client id is its username): A's
    # credentials are used by the spy and the forgers first, device A comes after.
    a = PahoDevice(HALL, "ev-a", keys["ev-a"], port, username="ev-a", password=pw["ev-a"])
    b = PahoDevice(HALL, "ev-b", keys["ev-b"], port, username="ev-b", password=pw["ev-b"]).start()
    spy_got = []
    spy = _client("ev-a", pw["ev-a"], port, "spy-ev-a", on_message=lambda c, u, m: spy_got.append(m.topic))
    try:
        wait_for(lambda: b.connected.is_set(), 10, what="device B connected")
        # A, with its own login, tries B's topics: subscribe and publish as B
        # (Mosquitto 2.0 grants the subscription and then delivers nothing of it.)
        spy.subscribe([(topics.topic(HALL, "ev-b", ch), 1) for ch in ("ack", "config", "cmd", "events")]
                      + [(topics.topic(HALL, "ev-a", "config"), 1)])
        db = work + "/agent.db"
        for seq in range(1, 6):
            b.send(rating("ev-b", seq))
        wait_for(lambda: store_count(db) == 5 and b.pending() == 0, 20, what="B's events and acks")
        time.sleep(1)
        assert set(spy_got) == {topics.topic(HALL, "ev-a", "config")}, spy_got   # its own config only
        spy.loop_stop()
        spy.disconnect()
        import protocol
        # (Mosquitto 2.0 PUBACKs a refused publish and drops it, or drops the client.)
        for topic, payload in [(topics.topic(HALL, "ev-b", "events"), protocol.encode(rating("ev-b", 7), keys["ev-a"])),
                               (topics.topic(HALL, "ev-b", "ack"), b'{"acks":[[1,100]]}'),
                               (topics.topic(HALL, "ev-b", "status"), b'{"online":false}')]:
            c = _client("ev-a", pw["ev-a"], port, "forger-ev-a")
            c.publish(topic, payload, qos=1)
            time.sleep(0.3)
            c.loop_stop()
            c.disconnect()
        # legitimate traffic from A too
        a.start()
        for seq in range(1, 6):
            a.send(rating("ev-a", seq))
        wait_for(lambda: store_count(db) == 10, 20, what="10 events")
        wait_for(lambda: a.pending() == 0 and b.pending() == 0, 20, what="acks")
        assert store_count(db, "SELECT count(*) FROM events WHERE device='ev-b' AND seq=7") == 0
        assert store_count(db, "SELECT count(*) FROM quarantine") == 0
        assert b.acked == set(range(1, 6))
        # a wrong password is refused outright
        rc = []
        bad = _client("ev-a", "wrong", port, "bad-ev-a", on_connect=lambda c, u, f, r, p: rc.append(r))
        wait_for(lambda: rc, 5, what="CONNACK")
        assert rc[0].is_failure
        bad.loop_stop()
    finally:
        spy.loop_stop()
        for d in (a, b):
            d.stop()
        agent.stop()
        broker.stop()
        if not os.environ.get("KEEP"):
            shutil.rmtree(bdir, ignore_errors=True)


def make_certs(d):
    """A hall CA and a broker certificate for 127.0.0.1, made with openssl."""
    def ossl(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=d)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=hall CA")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=broker")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    for f in ("server.key", "server.pem", "ca.pem"):
        os.chmod(os.path.join(d, f), 0o644)
    return os.path.join(d, "ca.pem")


def _client(user, password, port, client_id, on_message=None, on_connect=None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    c.username_pw_set(user, password)
    ready = threading.Event()
    c.on_connect = on_connect or (lambda *a: ready.set())
    if on_message:
        c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    if on_connect is None:
        assert ready.wait(5)
    return c


def _hall_broker(work, extra):
    """The agent's config as given, one device, and the broker `broker-config` writes for them."""
    bdir = broker_dir()
    port, http = free_port(), free_port()
    config = write_config(work, port, hall=HALL, http_port=http, extra=extra)
    keys = add_devices(config, ["ev-a"])
    edge_agent(config, "broker-config", "--out", bdir, "--data-dir", bdir + "/data", "--listen", "127.0.0.1")
    broker = Mosquitto(bdir, port=port, conf=open(bdir + "/mosquitto.conf").read()).start()
    return bdir, broker, config, http, keys


def test_the_documented_config_logs_in_as_agent_hall(tmp_path):
    # [mqtt] username left unset, as the example config and broker-config promise.
    work = str(tmp_path)
    bdir, broker, config, http, keys = _hall_broker(work, 'password = "agent-secret"')
    agent = start_agent(work, config, http)          # healthy = logged in and subscribed
    dev = PahoDevice(HALL, "ev-a", keys["ev-a"], broker.port, username="ev-a",
                     password=registry.mqtt_password(keys["ev-a"])).start()
    try:
        for seq in range(1, 4):
            dev.send(rating("ev-a", seq))
        wait_for(lambda: store_count(work + "/agent.db") == 3, 20, what="3 events ingested")
        wait_for(lambda: dev.pending() == 0, 20, what="acks")
    finally:
        dev.stop()
        agent.stop()
        broker.stop()
        shutil.rmtree(bdir, ignore_errors=True)


def test_a_device_login_cannot_knock_the_agent_off_the_broker(tmp_path):
    # Anyone holding one evaluator's password connects with the agent's client id,
    # again and again: the broker gives that login its own id (its username), the
    # agent stays connected and keeps ingesting; its persistent session lives on.
    work = str(tmp_path)
    bdir, broker, config, http, keys = _hall_broker(
        work, 'username = "agent-h1"\npassword = "agent-secret"\nclient_id = "qinglian-agent-h1"')
    db = work + "/agent.db"
    agent = start_agent(work, config, http)
    pw = registry.mqtt_password(keys["ev-a"])
    dev = PahoDevice(HALL, "ev-a", keys["ev-a"], broker.port, username="ev-a", password=pw).start()
    try:
        wait_for(dev.connected.is_set, 10, what="device connected")
        for seq in range(1, 6):
            for cid in ("qinglian-agent-" + HALL, "agent-" + HALL):
                thief = _client("ev-a", pw, broker.port, cid)
                time.sleep(0.3)
                thief.loop_stop()
                thief.disconnect()
            dev.send(rating("ev-a", seq))
        wait_for(lambda: store_count(db) == 5, 30, what="every event ingested throughout")
        wait_for(lambda: dev.pending() == 0, 30, what="acks")
        assert "disconnected from the broker" not in agent.log(), agent.log()
        # The persistent session is the username's: events sent while the agent is
        # down wait in it and arrive after a restart.
        agent.stop()
        for seq in range(6, 9):
            dev.send(rating("ev-a", seq))
        time.sleep(0.5)
        agent = start_agent(work, config, http, name="edge-agent-2")
        wait_for(lambda: store_count(db) == 8, 30, what="events queued while the agent was down")
        assert "session present: True" in agent.log()
    finally:
        dev.stop()
        agent.stop()
        broker.stop()
        shutil.rmtree(bdir, ignore_errors=True)
