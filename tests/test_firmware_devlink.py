"""The device link (protocol SPEC: 'The device link'): the real firmware
under MicroPython, a real Mosquitto, and someone on the hall network who
publishes to the device's topics. Acks, configs and commands count only
when sealed with the device's own key and newer than the last one taken:
a forged ack empties nothing, a forged hwm moves no seq, an old config or
command replayed is refused, across a reboot too; the real agent's acks
still drain the outbox. While no ack comes, resends back off; the broker's
queue for an absent agent is bounded, and nothing is lost past the bound."""
import re
import shutil
import time

import paho.mqtt.client as mqtt
import pytest

from agent_rig import RealAgent
from edge_agent import broker as broker_conf
from edge_agent import registry
from harness import Mosquitto, free_port, wait_for
from test_agent_support import broker_dir, edge_agent, start_agent, write_config
from protocol import messages, topics
from tools.hall import store_rows
from tools.vdevice import Acker, VirtualDevice

HALL = "link-hall"
DEV = "ev-31"
KEY = bytes(range(40, 72))
OTHER_KEY = bytes(range(100, 132))      # a neighbour's key: sealed, but not for this device
BASE = {"window": "A05", "staff": "李四", "staff_no": "2001",
        "targets": {"default": 900}, "warn_pct": 80, "prompt_s": 30}
LEVELS = ["very_satisfied", "dissatisfied", "satisfied"]


@pytest.fixture
def intruder(broker):
    """A client on the hall network that publishes whatever it likes."""
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder")
    c.connect("127.0.0.1", broker.port, 30)
    c.loop_start()

    def publish(channel, payload, retain=False):
        c.publish(topics.topic(HALL, DEV, channel), payload, qos=1, retain=retain).wait_for_publish(5)
    yield publish
    c.loop_stop()
    c.disconnect()


def device(tmp_path, broker, site=None):
    return VirtualDevice(str(tmp_path / DEV), HALL, DEV, KEY, broker.port, site=dict({"long_ms": 150}, **(site or {})))


@pytest.fixture
def rig(tmp_path, broker):
    """The test-side agent (tools.vdevice.Acker, sealing with the device key) and the device."""
    acker = Acker(broker.port, HALL, {DEV: KEY}, {"*": BASE}).start()
    vd = device(tmp_path, broker)
    yield acker, vd
    vd.stop()
    acker.stop()


def rate(vd, ticket, level):
    vd.call(ticket)
    vd.staff("end")
    vd.press(level)
    if level == "dissatisfied" and vd.stats()["state"] == "reasons":
        vd.press("very_dissatisfied")      # the agent's default reason screen: 5 sends, none chosen


def settle(vd, n):
    """Give the device time to refuse n agent messages in all; the caller
    checks what they did (or did not do), then the count."""
    try:
        wait_for(lambda: vd.stats()["bad"] >= n, 10, what="%d refused" % n)
    except TimeoutError:
        pass
    time.sleep(0.3)


def test_forged_acks_empty_nothing_and_every_thanked_press_arrives(rig, intruder):
    acker, vd = rig
    acker.acking = False
    vd.start()
    for i, level in enumerate(LEVELS):
        rate(vd, "F%02d" % i, level)
    wait_for(lambda: len(acker.of_kind("rating")) == 3, 20, what="3 ratings published")
    depth = vd.stats()["outbox"]
    assert depth >= 9
    everything = {"acks": [[1, 2147483647]]}
    sealed = messages.seal(KEY, topics.ACK, everything, 2 ** 52).decode()
    for forged in [b'{"acks":[[1,2147483647]]}',                              # plain, as before
                   (sealed[:-66] + "0" * 64 + '"}').encode(),                # a made-up MAC
                   messages.seal(OTHER_KEY, topics.ACK, everything, 2 ** 52),  # another device's key
                   messages.seal(KEY, topics.CMD, everything, 2 ** 52),      # sealed for another topic
                   b'{"acks":[[1,9]],"n":9,"mac":"' + b"\xff" * 64 + b'"}']:  # not even text
        intruder(topics.ACK, forged)
    settle(vd, 5)
    assert vd.stats()["outbox"] >= depth
    assert vd.stats()["bad"] == 5
    acker.acking = True
    wait_for(lambda: vd.stats()["outbox"] == 0, 30, what="the agent's acks drain the outbox")
    st = vd.stats()
    assert st["thanks"] == 3 and st["bad"] == 5
    assert [e["level"] for e in acker.of_kind("rating")] == LEVELS
    assert acker.conflicts == 0 and not acker.rejected


def test_a_forged_hwm_moves_no_seq(rig, intruder):
    acker, vd = rig
    vd.start()
    poisoned = dict(BASE, hwm=10 ** 9, t=int(time.time() * 1000))
    genuine = messages.seal(KEY, topics.CONFIG, dict(BASE, hwm=5), 2 ** 52).decode()
    for forged in [messages.encode(poisoned),
                   messages.seal(OTHER_KEY, topics.CONFIG, poisoned, 2 ** 52),
                   genuine.replace('"hwm":5', '"hwm":%d' % 10 ** 9).encode()]:
        intruder(topics.CONFIG, forged)
    settle(vd, 3)
    rate(vd, "H01", "satisfied")
    wait_for(lambda: acker.of_kind("rating"), 20, what="the rating")
    assert acker.of_kind("rating")[0]["seq"] < 100
    assert vd.stats()["bad"] == 3
    wait_for(lambda: vd.stats()["outbox"] == 0, 20, what="acked")


def test_an_old_config_or_command_replayed_is_refused_also_after_a_reboot(rig, intruder):
    acker, vd = rig
    vd.start()
    old = acker.send_config(DEV, staff_no="3001")
    wait_for(lambda: vd.screen()["lines"][0] == "A05 No.3001", 10, what="the first config")
    acker.send_config(DEV, staff_no="3002")
    wait_for(lambda: vd.screen()["lines"][0] == "A05 No.3002", 10, what="the newer config")
    intruder(topics.CONFIG, old)
    settle(vd, 1)
    assert vd.screen()["lines"][0] == "A05 No.3002"
    assert vd.stats()["bad"] == 1

    # Rebooted with no agent about (no live config): the intruder makes
    # the old config the retained one, the first thing the device hears.
    acker.stop()
    vd.stop()
    intruder(topics.CONFIG, old, retain=True)
    vd.start()
    wait_for(lambda: vd.stats()["connected"], 20, what="connected")
    settle(vd, 1)
    assert vd.screen()["lines"][0] == "A05 No.3002"
    assert vd.stats()["bad"] == 1

    # A reset from the agent, and the same message replayed after the boot.
    reset = messages.seal(KEY, topics.CMD, {"cmd": "reset"}, time.time_ns() // 1000 + 10 ** 9)
    intruder(topics.CMD, reset)        # (standing in for the agent, which is away)
    wait_for(lambda: vd.restarts == 1, 20, what="the board reset itself")
    wait_for(lambda: vd.stats()["connected"], 20, what="connected again")
    settle(vd, 1)                      # the retained old config, once more
    intruder(topics.CMD, reset)
    settle(vd, 2)
    time.sleep(1)
    assert vd.restarts == 1 and vd.alive()
    assert vd.stats()["bad"] == 2


def test_the_real_agent_s_acks_drain_the_outbox_across_agent_restarts(tmp_path, broker):
    agent = RealAgent(str(tmp_path), broker.port, HALL, {DEV: KEY},
                      {DEV: {"window": "A05", "staff": "李四", "staff_no": "2001"}}).start()
    vd = device(tmp_path, broker)
    try:
        vd.start()
        rate(vd, "R01", "satisfied")
        wait_for(lambda: vd.stats()["outbox"] == 0, 20, what="acked by the agent")
        # A restarted agent seals with a new link epoch: its counters are higher still.
        agent.stop()
        agent.start()
        rate(vd, "R02", "very_satisfied")
        wait_for(lambda: vd.stats()["outbox"] == 0, 20, what="acked by the restarted agent")
        assert [r["level"] for r in agent.of_kind("rating")] == ["satisfied", "very_satisfied"]
        assert vd.stats()["bad"] == 0
        assert agent._query("SELECT value FROM meta WHERE key = 'link_epoch'")[0][0] == "2"
        assert agent.conflicts == 0 and not agent.rejected
    finally:
        vd.stop()
        agent.stop()


def test_resends_back_off_while_no_ack_comes(tmp_path, broker):
    # No agent at all, the broker up: the device was provisioned with its hwm.
    vd = device(tmp_path, broker, site={"hwm": 0, "ack_timeout_s": 1, "ack_backoff_max_s": 4})
    acker = None
    try:
        vd.start()
        rate(vd, "B01", "satisfied")
        start = vd.stats()["resends"]
        time.sleep(14)
        # Every 1 s without backoff (about 12); 1, 2, 4, 4, 4 s with it.
        resends = vd.stats()["resends"] - start
        assert 3 <= resends <= 6, resends
        acker = Acker(broker.port, HALL, {DEV: KEY}, {"*": BASE}).start()
        wait_for(lambda: vd.stats()["outbox"] == 0, 20, what="drained once the agent is back")
        # The ack brought the interval back to ack_timeout_s.
        acker.acking = False
        rate(vd, "B02", "satisfied")
        before = vd.stats()["resends"]
        wait_for(lambda: vd.stats()["resends"] > before, 3, what="a resend after 1 s again")
    finally:
        vd.stop()
        if acker:
            acker.stop()


def test_a_bounded_broker_queue_loses_nothing_over_an_agent_outage(tmp_path):
    work, bdir = str(tmp_path), broker_dir()
    port, http = free_port(), free_port()
    config = write_config(work, port, hall=HALL, http_port=http,
                          extra='username = "%s"\npassword = "agent-secret"' % broker_conf.agent_user(HALL))
    edge_agent(config, "devices", "add", DEV, "--window", "A05", "--key", KEY.hex())
    edge_agent(config, "window", "set", "A05", "--staff", "李四", "--staff-no", "2001")
    edge_agent(config, "broker-config", "--out", bdir, "--data-dir", bdir + "/data",
               "--listen", "127.0.0.1", "--port", str(port))
    conf = open(bdir + "/mosquitto.conf").read()
    bound = int(re.search(r"^max_queued_bytes (\d+)$", conf, re.M).group(1))
    assert 0 < bound <= 256 * 1024 * 1024, "the generated config bounds the agent's queue"
    # The same config with a bound a few events deep.
    conf = conf.replace("max_queued_bytes %d" % bound, "max_queued_bytes 2000")
    broker = Mosquitto(bdir, port=port, conf=conf).start()
    agent = start_agent(work, config, http)
    vd = VirtualDevice(str(tmp_path / DEV), HALL, DEV, KEY, port, username=DEV,
                       password=registry.mqtt_password(KEY), site={"long_ms": 150, "ack_timeout_s": 2})
    db = work + "/agent.db"
    try:
        vd.start()
        rate(vd, "Q00", "satisfied")
        wait_for(lambda: vd.stats()["outbox"] == 0, 20, what="acked through the generated broker config")
        agent.stop()
        for i in range(1, 11):                   # 30 events, some 7 KB: more than the bound
            rate(vd, "Q%02d" % i, LEVELS[i % 3])
        wait_for(lambda: vd.stats()["published"] >= 34, 20, what="published to the broker")
        time.sleep(1)
        agent = start_agent(work, config, http)
        wait_for(lambda: vd.stats()["outbox"] == 0, 60, what="the backlog delivered and acked")
        st = vd.stats()
        assert st["thanks"] == 11
        rows = store_rows(db, "SELECT seq FROM events WHERE device = ? ORDER BY seq", (DEV,))
        assert [r[0] for r in rows] == list(range(1, len(rows) + 1))      # every seq once, none missing
        ratings = store_rows(db, "SELECT body FROM events WHERE kind = 'rating'")
        assert len(ratings) == 11
        assert not store_rows(db, "SELECT reason FROM quarantine")
        broker.stop()                            # (Mosquitto's log reaches the file on exit)
        dropped = [line for line in broker.log().splitlines() if "Outgoing messages are being dropped" in line]
        assert dropped and broker_conf.agent_user(HALL) in dropped[0], "the bound was never reached"
    finally:
        vd.stop()
        agent.stop()
        broker.stop()
        shutil.rmtree(bdir, ignore_errors=True)
