"""Ingest end to end with the real parts: Mosquitto, the agent as a process,
SQLite, devices (paho) that keep an outbox until the agent's ack."""
import os

from harness import Mosquitto, wait_for
from test_agent_support import (PahoDevice, add_devices, free_port, http_json, rating, start_agent,
                                store_count, write_config)


def test_signed_events_are_committed_and_acked(tmp_path):
    broker = Mosquitto(str(tmp_path / "broker")).start()
    http = free_port()
    config = write_config(str(tmp_path), broker.port, http_port=http)
    names = ["ev-%02d" % i for i in range(5)]
    keys = add_devices(config, names)
    agent = start_agent(str(tmp_path), config, http)
    devices = [PahoDevice("h1", d, keys[d], broker.port).start() for d in names]
    try:
        for seq in range(1, 41):
            for dev in devices:
                dev.send(rating(dev.device, seq))
        db = str(tmp_path / "agent.db")
        wait_for(lambda: store_count(db) == 200, 30, what="200 events stored")
        wait_for(lambda: all(d.pending() == 0 for d in devices), 30, what="every outbox emptied by acks")
        assert store_count(db, "SELECT count(DISTINCT device || '/' || seq) FROM events") == 200
        assert all(d.acked == set(range(1, 41)) for d in devices)
        # each device got its retained config with the seq high-water mark
        wait_for(lambda: all(d.configs for d in devices), 10, what="configs")
        assert devices[0].configs[-1]["window"] == "A01"
        assert os.stat(db).st_mode & 0o777 == 0o600
        snap = http_json(http, "/api/status")
        assert snap["committed"] == 200 and snap["devices_online"] == 5
    finally:
        for d in devices:
            d.stop()
        agent.stop()
        broker.stop()
    assert agent.p.returncode == 0, agent.log()
