"""The agent is SIGKILLed again and again while 50 devices send, the broker
is killed once mid-run; every event ends in the store exactly once (and at
the county, through the uplink). Devices are paho stand-ins that keep
unacked events and resend them, as the firmware's outbox does."""
import json
import os
import random
import secrets
import shutil
import sqlite3
import threading
import time
import urllib.request

import pytest

from harness import Mosquitto, Proc, VENV_BIN, free_port, wait_for, wait_port
from test_agent_support import (PahoDevice, add_devices, broker_dir, persistent_broker_conf, rating,
                                start_agent, store_count, write_config)

HALL = "h1"


def county_total(url, token):
    req = urllib.request.Request("%s/v1/halls/%s/stats" % (url, HALL), headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.load(r)["total"]
    except OSError:
        return None


def run_kill_test(work, total, publishers, kills, seed=1):
    rnd = random.Random(seed)
    bdir = broker_dir()
    port, http = free_port(), free_port()
    broker = Mosquitto(bdir, port=port, conf=persistent_broker_conf(bdir, port)).start()
    token, manager = secrets.token_hex(8), secrets.token_hex(8)
    cport = free_port()
    county = Proc("county", [os.path.join(VENV_BIN, "county-server"), "run", "--db", work + "/county.db",
                             "--port", str(cport), "--token", "%s=%s" % (HALL, token),
                             "--manager-token", "%s=%s" % (HALL, manager)], work).start()
    wait_port(cport, 20)
    county_url = "http://127.0.0.1:%d" % cport
    extra_uplink = '[uplink]\nurl = "%s"\ntoken = "%s"\nallow_plain_http = true\ninterval_s = 0.5\nbackoff_max_s = 2\n' % (county_url, token)
    config = write_config(work, port, hall=HALL, http_port=http)
    with open(config, "a") as f:
        f.write(extra_uplink)
    names = ["ev-%02d" % i for i in range(publishers)]
    keys = add_devices(config, names)
    agent = start_agent(work, config, http)
    devices = [PahoDevice(HALL, d, keys[d], port).start() for d in names]
    db = work + "/agent.db"
    done_sending = threading.Event()
    failures = []

    def send_all():
        per = total // publishers
        try:
            for seq in range(1, per + 1):
                for d in devices:
                    d.send(rating(d.device, seq, level=rnd.choice(["satisfied", "dissatisfied"])))
                time.sleep(0.25)
        except Exception as e:  # surfaced by the main thread
            failures.append(e)
        finally:
            done_sending.set()

    def resend_loop():
        while not stop_resend.is_set():
            for d in devices:
                d.resend(older_than_s=4.0)
            stop_resend.wait(2.0)

    stop_resend = threading.Event()
    threads = [threading.Thread(target=send_all), threading.Thread(target=resend_loop)]
    for t in threads:
        t.start()
    try:
        for i in range(kills):
            # Each kill within the ~25 s of sending (about 1 s to start again): a SIGKILL
            # after the last send only meets the resends.
            time.sleep(rnd.uniform(0.2, 0.8))
            if i == kills // 2:
                # the broker dies under a running agent, which reconnects to its session
                broker.kill()
                time.sleep(rnd.uniform(0.2, 1.0))
                broker.start()
                continue
            agent.kill()
            agent = start_agent(work, config, http, name="edge-agent")
        done_sending.wait(600)
        assert not failures, failures
        wait_for(lambda: all(d.pending() == 0 for d in devices), 180, 0.5, "every outbox acked")
        stored = store_count(db)
        assert stored == total, stored
        c = sqlite3.connect(db)
        rows = set(c.execute("SELECT device, seq FROM events"))
        assert rows == {(d, s) for d in names for s in range(1, total // publishers + 1)}
        dups = c.execute("SELECT value FROM counters WHERE name='duplicates'").fetchone()
        c.close()
        if county:
            wait_for(lambda: county_total(county_url, manager) == total, 180, 1, "%d events at the county" % total)
            cc = sqlite3.connect(work + "/county.db")
            assert cc.execute("SELECT count(*) FROM events").fetchone()[0] == total
            cc.close()
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http, timeout=5) as r:
                metrics = r.read().decode()
            wait_for(lambda: store_count(db, "SELECT count(*) FROM events WHERE synced_ms IS NULL") == 0, 30,
                     what="all marked synced")
            assert "qinglian_agent_uplink_failing_seconds 0" in metrics, metrics
        return {"stored": stored, "duplicates_absorbed": dups[0] if dups else 0, "county": bool(county)}
    finally:
        stop_resend.set()
        for t in threads:
            t.join(30)
        for d in devices:
            d.stop()
        agent.stop()
        if county:
            county.stop()
        broker.stop()
        shutil.rmtree(bdir, ignore_errors=True)


def test_sigkill_20_times_loses_nothing_duplicates_nothing(tmp_path):
    out = run_kill_test(str(tmp_path), total=5000, publishers=50, kills=21)
    print(out)


@pytest.mark.soak
def test_sigkill_soak_20000_events(tmp_path):
    out = run_kill_test(str(tmp_path), total=20000, publishers=50, kills=30, seed=2)
    print(out)
