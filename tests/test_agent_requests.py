"""Device requests (protocol SPEC 'Requests') against the real agent and
Mosquitto: answered once committed, sealed with the device's key; a replay,
a forgery or an unknown operation does nothing, is counted, and a device
whose counter fell behind learns the agent's from the refusal."""
import secrets

from harness import Mosquitto, wait_for
from test_agent_support import (PahoDevice, add_devices, free_port, start_agent, store_count, write_config)

HALL = "h1"


def counter(db, name):
    return store_count(db, "SELECT coalesce(sum(value), 0) FROM counters WHERE name = ?", (name,))


def test_requests_are_answered_once_and_replays_refused_across_restarts(tmp_path):
    work = str(tmp_path)
    broker = Mosquitto(work + "/broker", port=free_port()).start()
    http = free_port()
    config = write_config(work, broker.port, hall=HALL, http_port=http)
    keys = add_devices(config, ["ks-01"])
    db = work + "/agent.db"
    agent = start_agent(work, config, http)
    dev = PahoDevice(HALL, "ks-01", keys["ks-01"], broker.port).start()
    try:
        wait_for(lambda: dev.configs, 20, what="the device's config")
        assert dev.configs[-1]["rq"] == 0                  # no request taken yet
        wire = dev.ask({"op": "ping"}, 5)
        reply = dev.reply_to(5)
        assert {k: reply[k] for k in reply if k != "n"} == {"cmd": "reply", "re": 5, "rq": 5}
        # The same bytes again (someone on the Wi-Fi recorded them): refused,
        # and the device is told the agent's counter.
        dev.client.publish("qinglian/v1/h1/ks-01/req", wire, qos=1)
        wait_for(lambda: counter(db, "requests_refused:replayed") == 1, 10, what="the replay counted")
        assert dev.reply_to(5)["error"] == "replayed" and dev.replies[-1]["rq"] == 5
        # Another key (a forger) gets no answer at all; an unknown op is refused by name.
        dev.ask({"op": "ping"}, 9, key=secrets.token_bytes(32))
        wait_for(lambda: counter(db, "requests_refused:bad_mac") == 1, 10, what="the forgery counted")
        assert not any(r["re"] == 9 for r in dev.replies)
        assert dev.ask({"op": "no-such-thing"}, 10) and dev.reply_to(10)["error"] == "unknown_op"
        # The counter outlives the agent: after a kill, the recorded request is still old,
        # and the config the device gets says where to go on from.
        agent.kill()
        agent = start_agent(work, config, http)
        dev.configs.clear()
        dev.client.publish("qinglian/v1/h1/ks-01/status", b'{"online":true,"fw":"paho"}', qos=1, retain=True)
        wait_for(lambda: dev.configs and dev.configs[-1]["rq"] == 10, 20, what="a config with rq 10")
        dev.client.publish("qinglian/v1/h1/ks-01/req", wire, qos=1)
        wait_for(lambda: counter(db, "requests_refused:replayed") == 2, 10, what="the replay refused again")
        assert dev.ask({"op": "ping"}, 11) and "error" not in dev.reply_to(11)
    finally:
        dev.stop()
        agent.stop()
        broker.stop()
