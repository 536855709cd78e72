"""Over-the-air updates (issue 11): virtual devices running the real
firmware under MicroPython at 56 KiB (what an update needs: firmware/README.md
"Memory"), real Mosquitto, the real agent and
county (tools.hall), `hallctl ota` as the technician runs it."""
import json
import os
import re
import sqlite3
import subprocess
import threading
import time
import zipfile

import pytest

from harness import VENV_BIN, wait_for
from edge_agent.ota import CHUNK_BYTES
from tools.hall import Hall
from tools.hallctl import ota as hota
from tools.vdevice import rom_sources

HALLCTL = os.path.join(VENV_BIN, "hallctl")
HEAP = "56k"
# make test: 3 devices (one, then two), ~40 s; the 10 in `make soak`.
N_DEVICES = int(os.environ.get("QL_OTA_DEVICES", "3"))


def bundle(tmp, version, patch=None):
    """A bundle of this tree's firmware carrying FW `version`; patch(name,
    text) -> text changes a module (an app that misbehaves)."""
    out_dir = os.path.join(tmp, "src-" + re.sub(r"\W", "_", version))
    os.makedirs(os.path.join(out_dir, "protocol"), exist_ok=True)
    srcs = []
    for local, name in rom_sources():
        with open(local) as f:
            text = f.read()
        if name == "evaluator.py":
            text, n = re.subn(r'FW = "[^"]*"', 'FW = "%s"' % version, text)
            assert n == 1
        if patch:
            text = patch(name, text)
        path = os.path.join(out_dir, name)
        with open(path, "w") as f:
            f.write(text)
        srcs.append((path, name))
    path = os.path.join(tmp, re.sub(r"\W", "_", version) + ".qlb")
    hota.build(path, "sim", srcs)
    return path


def image_of(path):
    with zipfile.ZipFile(path) as z:
        return z.read("app.rom")


def manifest_of(path):
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("manifest.json"))


def hallctl(*args, timeout=300):
    return subprocess.run([HALLCTL] + list(args), capture_output=True, text=True, timeout=timeout)


def status(hall):
    return hota.Agent("http://127.0.0.1:%d" % hall.http_port).status()


def agent_events(hall, kind):
    db = sqlite3.connect(os.path.join(hall.work_dir, "agent.db"), timeout=30)
    try:
        return [json.loads(b) for (b,) in db.execute("SELECT body FROM events WHERE kind = ?", (kind,))]
    finally:
        db.close()


def rate(vd, ticket, level="satisfied"):
    vd.call(ticket)
    vd.staff("end")
    vd.press(level, ms=20)
    return "Thank you" in vd.screen()["lines"]


@pytest.fixture
def hall(tmp_path):
    h = Hall(str(tmp_path / "hall"), hall="ota-hall", devices=N_DEVICES, heapsize=HEAP)
    try:
        yield h.start()
    finally:
        h.stop()


def _rollout(hall, path, first, then=(), health_s=60, timeout=240):
    args = ["ota", "rollout", path, "--first", first, "--agent", "http://127.0.0.1:%d" % hall.http_port,
            "--health-s", str(health_s), "--timeout", str(timeout)]
    if then:
        args += ["--then", ",".join(then)]
    return hallctl(*args, timeout=timeout * 3)


def test_a_good_bundle_reaches_every_device_in_a_staged_rollout(hall, tmp_path):
    _staged_rollout(hall, tmp_path)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_a_good_bundle_reaches_10_devices(tmp_path):
    h = Hall(str(tmp_path / "hall"), hall="ota-hall", devices=10, heapsize=HEAP)
    try:
        _staged_rollout(h.start(), tmp_path, timeout=900)
    finally:
        h.stop()


def _staged_rollout(hall, tmp_path, timeout=240):
    path = bundle(str(tmp_path), "ql-eval/0.2-ota")
    ids = hall.device_ids
    # Ratings while the first device downloads still reach the county.
    vd = hall.devices[ids[0]]
    during = []
    rater = threading.Thread(target=lambda: during.extend(rate(vd, "D%04d" % i) for i in range(3)))
    timer = threading.Timer(3, rater.start)
    timer.start()
    out = _rollout(hall, path, ids[0], ["all"], timeout=timeout)     # the rest of the hall's evaluators
    timer.join()
    rater.join()
    assert out.returncode == 0, out.stdout + out.stderr
    # One device first, then the rest.
    assert out.stdout.index("wave 1: %s\n" % ids[0]) < out.stdout.index("wave 2: %s\n" % ", ".join(ids[1:]))
    st = status(hall)
    for d in ids:
        assert st[d]["state"] == "healthy" and st[d]["version"] == "ql-eval/0.2-ota", st[d]
        wait_for(lambda: status(hall)[d]["fw"] == "ql-eval/0.2-ota", 30, what="%s's status names the new fw" % d)
    # The new app rates, and its events and those made during the update reach the county.
    assert rate(vd, "N0001")
    hall.wait_county_ratings(1 + sum(during), timeout=60)
    assert sum(during) >= 2
    table = hallctl("ota", "status", "--agent", "http://127.0.0.1:%d" % hall.http_port)
    assert table.returncode == 0 and "healthy" in table.stdout


def _offer(hall, device, path, health_s=60):
    agent = hota.Agent("http://127.0.0.1:%d" % hall.http_port)
    version = agent.send_bundle(path)
    agent.offer([device], version, health_s)
    return agent, version


def _counter(hall, name):
    db = sqlite3.connect(os.path.join(hall.work_dir, "agent.db"), timeout=30)
    try:
        row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return row[0] if row else 0
    finally:
        db.close()


@pytest.mark.parametrize("devices", [2])
def test_a_tampered_bundle_is_refused(tmp_path, devices):
    import paho.mqtt.client as mqtt
    from protocol import messages, topics
    h = Hall(str(tmp_path / "hall"), hall="ota-hall", devices=devices, heapsize=HEAP).start()
    try:
        dev, other = h.device_ids
        path = bundle(str(tmp_path), "ql-eval/0.2-bad")
        manifest, image = manifest_of(path), image_of(path)
        flipped = bytearray(image)
        flipped[len(flipped) // 2] ^= 1
        # The agent refuses a bundle whose image is not the one its manifest names.
        bad = os.path.join(str(tmp_path), "flipped.qlb")
        with open(bad, "wb") as f:
            f.write(hota.zipped(manifest, bytes(flipped)))
        out = _rollout(h, bad, dev)
        assert out.returncode == 1 and "does not match its manifest" in out.stderr, out.stderr

        # A manifest sealed for another device (with its key) on this device's
        # command topic: refused as forged, never acted on.
        vd = h.devices[dev]
        bad_before, boot = vd.stats()["bad"], vd.stats()["boot"]
        offer = {"cmd": "ota", "ota": "ql-eval/0.2-bad", "files": [["app.rom", len(image), manifest["files"][0]["sha256"]]],
                 "c": 128, "h": 30}
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder")
        c.connect("127.0.0.1", h.broker.port)
        c.loop_start()
        c.publish(topics.topic(h.hall, dev, topics.CMD),
                  messages.seal(h.keys[other], topics.CMD, offer, 2 ** 52), qos=1).wait_for_publish()
        c.loop_stop()
        c.disconnect()
        wait_for(lambda: vd.stats()["bad"] > bad_before, 20, what="the forged offer counted as bad")
        assert vd.stats()["boot"] == boot          # no restart into an update

        # A byte changed after the agent took the bundle (its store, its disk):
        # the device checks the image against the sealed manifest and refuses it.
        agent, version = _offer(h, dev, path, health_s=30)
        db = sqlite3.connect(os.path.join(h.work_dir, "agent.db"), timeout=30)
        db.execute("UPDATE ota_bundles SET image = ? WHERE version = ?", (bytes(flipped), version))
        db.commit()
        db.close()
        wait_for(lambda: agent.status()[dev]["state"] == "refused", 120, what="the device refusing the image")
        assert "bad_sha" in agent.status()[dev]["detail"]
        assert rate(vd, "T0001")
        wait_for(lambda: agent.status()[dev]["fw"] == "ql-eval/0.1", 10, what="the old firmware still running")
    finally:
        h.stop()


def test_an_app_that_never_reports_healthy_is_rolled_back_and_the_rollout_stops(hall, tmp_path):
    # The new app boots and takes presses, but its uplink never connects: no healthy report.
    def broken(name, text):
        if name == "uplink.py":
            text = text.replace("        await mq.connect()\n", "        raise OSError(\"no link\")\n")
        return text
    path = bundle(str(tmp_path), "ql-eval/0.3-mute", broken)
    first, then = hall.device_ids[0], hall.device_ids[1:]
    vd = hall.devices[first]
    out = _rollout(hall, path, first, then, health_s=10)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "%s: rolled_back" % first in out.stderr
    st = status(hall)
    assert st[first]["state"] == "rolled_back"
    assert all(d not in st for d in then)          # the rest were never offered it
    # It runs the old app again, by itself, and rates.
    assert rate(vd, "R0001")
    wait_for(lambda: status(hall)[first]["fw"] == "ql-eval/0.1", 30, what="the old fw reported")
    hall.wait_county_ratings(1, timeout=60)


CUTS = ["chunk", "staged", "switch", "switched", "trial", "healthy", "kept"]
QUICK_CUTS = ("switched",)      # make test (a cut mid-download: the resume test); every step in make soak


@pytest.mark.parametrize("at", [c if c in QUICK_CUTS else pytest.param(c, marks=pytest.mark.soak) for c in CUTS])
def test_a_power_cut_at_each_step_leaves_a_complete_app_and_every_event(tmp_path, at):
    h = Hall(str(tmp_path / "hall"), hall="ota-hall", devices=1, heapsize=HEAP).start()
    try:
        dev = h.device_ids[0]
        vd = h.devices[dev]
        path = bundle(str(tmp_path), "ql-eval/0.4-cut")
        thanked = [rate(vd, "P%04d" % i) for i in range(2)]
        vd.env["QL_CUT"] = at
        agent, version = _offer(h, dev, path, health_s=60)
        try:
            wait_for(lambda: "ota: cut at " + at in vd.log(), 240, what="the device at the cut point " + at)
        except TimeoutError:
            raise AssertionError("no cut at %s: %s\n%s" % (at, agent.status(), vd.log()[-3000:]))
        vd.kill()
        del vd.env["QL_CUT"]
        vd.start()          # boots a complete app: the old one, or the new one on trial
        wait_for(lambda: agent.status()[dev]["state"] == "healthy", 240, what="the update completing after the cut")
        wait_for(lambda: agent.status()[dev]["fw"] == version, 30, what="the new fw reported")
        thanked += [rate(vd, "Q%04d" % i) for i in range(2)]
        assert all(thanked), (thanked, vd.screen(), vd.stats(), vd.log()[-2000:])
        wait_for(lambda: vd.stats()["outbox"] == 0, 60, what="every event acked")
        assert len(agent_events(h, "rating")) == 4
        h.wait_county_ratings(4, timeout=60)
    finally:
        h.stop()


def test_a_link_dropped_mid_download_resumes_where_it_stopped(hall, tmp_path):
    dev = hall.device_ids[0]
    vd = hall.devices[dev]
    path = bundle(str(tmp_path), "ql-eval/0.5-resume")
    agent, version = _offer(hall, dev, path)
    try:
        wait_for(lambda: agent.status()[dev]["chunks"] > 300, 120, 0.05, what="a third of the download")
    except TimeoutError:
        raise AssertionError("%s\n%s" % (agent.status(), vd.log()[-3000:]))
    vd.wifi(False)
    assert rate(vd, "W0001")                        # rated offline, kept on flash
    stopped = agent.status()[dev]["chunks"]
    time.sleep(3)
    vd.wifi(True)
    wait_for(lambda: agent.status()[dev]["state"] == "healthy", 120, what="the update completing")
    chunks = -(-len(image_of(path)) // CHUNK_BYTES)
    served = _counter(hall, "ota_chunks_served")
    assert stopped < chunks and served < chunks + 20, (stopped, served, chunks)   # not fetched again from 0
    wait_for(lambda: vd.stats()["outbox"] == 0, 60, what="the offline rating acked")
    assert len(agent_events(hall, "rating")) == 1


def test_a_board_without_the_heap_for_an_update_gives_it_up_and_says_so(tmp_path):
    # At 48 KiB the evaluator serves, but an update's boot cannot connect
    # (firmware/README.md "Memory"): after the health time it boots the plain
    # app again, which refuses the offer when it comes again, and rates.
    h = Hall(str(tmp_path / "hall"), hall="ota-hall", devices=1, heapsize="48k").start()
    try:
        dev = h.device_ids[0]
        vd = h.devices[dev]
        out = _rollout(h, bundle(str(tmp_path), "ql-eval/0.6-big"), dev, health_s=10, timeout=120)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "%s: refused" % dev in out.stderr, out.stderr
        assert "no link during the update" in status(h)[dev]["detail"]
        assert rate(vd, "S0001")
        wait_for(lambda: status(h)[dev]["fw"] == "ql-eval/0.1", 30, what="the old fw reported")
        h.wait_county_ratings(1, timeout=60)
    finally:
        h.stop()


def test_rollout_refuses_bad_arguments_before_it_reaches_an_agent(tmp_path):
    # No agent listens on the default address's port here: every case must
    # fail on its own words first, one line, exit 2 (usage) or 1.
    cases = [
        (["--health-s", "5"], "--health-s must be 10 to 3600"),
        (["--health-s", "99999999999999999999"], "--health-s must be 10 to 3600"),
        (["--wave", "-1"], "--wave must be 0"),
        (["--timeout", "0"], "--timeout must be more than 0"),
        (["--timeout", "nan"], "--timeout must be more than 0"),
        (["--agent", "ftp://x"], "give the agent's address as http://HOST:PORT"),
        (["--wave", "x"], "invalid int value"),
    ]
    for extra, words in cases:
        out = hallctl("ota", "rollout", str(tmp_path / "none.qlb"), "--first", "ev-01", *extra, timeout=30)
        assert out.returncode in (1, 2) and words in out.stderr, (extra, out.stderr)
        assert "Traceback" not in out.stderr
