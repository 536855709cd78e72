"""A kiosk's printer states as the hall sees them: its `printer` events
become alarms on the lobby screen (in headless Chromium), in `edge-agent
status`, /metrics and the tower light's state, until a later `ok`; the
county's 红黄牌 counts on the screen while they are fresh."""
import shutil
import subprocess
import urllib.request

import pytest

from county_standin import StandInCounty, case
from harness import Mosquitto, wait_for
from test_agent_support import (PahoDevice, add_devices, edge_agent, free_port, http_json, start_agent,
                                write_config)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
HALL = "h1"
TOKEN = "hall-token-h1"


def dom(url, tmp_path):
    out = subprocess.run([CHROMIUM] + FLAGS + ["--user-data-dir=%s" % (tmp_path / "chromium"),
                         "--virtual-time-budget=6000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    return out.stdout


def metrics(http):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http, timeout=5) as r:
        return r.read().decode()


def printer(seq, state):
    return {"v": 1, "device": "ks-01", "seq": seq, "kind": "printer", "t": 1764000000000 + seq, "state": state}


def kiosk_alarms(http):
    return next(w for w in http_json(http, "/api/hall")["windows"] if w["device"] == "ks-01")["alarms"]


@pytest.mark.skipif(not CHROMIUM, reason="chromium is installed by make (tools/system-deps.sh)")
def test_printer_alarms_on_screen_status_metrics_and_light_until_ok(tmp_path):
    work = str(tmp_path)
    broker = Mosquitto(work + "/broker", port=free_port()).start()
    county = StandInCounty(HALL, TOKEN).start()
    county.cases = [case("2026-0001")]
    http = free_port()
    config = write_config(work, broker.port, hall=HALL, http_port=http, extra="\n".join([
        "[uplink]", 'url = "%s"' % county.url, 'token = "%s"' % TOKEN, "allow_plain_http = true",
        "[kiosk]", "cases_poll_s = 0.3", "cases_fresh_s = 30.0"]))
    keys = add_devices(config, ["ks-01"], window_prefix="K")
    agent = start_agent(work, config, http)
    dev = PahoDevice(HALL, "ks-01", keys["ks-01"], broker.port).start()
    url = "http://127.0.0.1:%d/" % http
    try:
        wait_for(lambda: dev.configs, 20, what="the kiosk's config")
        # Paper low, then out: the newest state is the alarm (a late, older event changes nothing).
        dev.send(printer(1, "paper_low"))
        dev.send(printer(3, "paper_out"))
        wait_for(lambda: kiosk_alarms(http) == ["paper_out"], 20, what="paper_out on /api/hall")
        dev.send(printer(2, "cover_open"))
        wait_for(lambda: 2 in dev.acked, 20, what="the late event acked")
        assert kiosk_alarms(http) == ["paper_out"]
        wait_for(lambda: http_json(http, "/api/hall")["cards"] is not None, 20, what="the county's cards")

        page = dom(url, tmp_path)
        assert 'data-window="K01"' in page
        assert '<span class="alarm stop" data-alarm="paper_out">打印机缺纸</span>' in page
        assert '<b id="card-red">1</b>' in page and '<b id="card-yellow">2</b>' in page

        assert 'qinglian_agent_device_alarm{device="ks-01",alarm="paper_out"} 1' in metrics(http)
        assert 'qinglian_agent_case_cards{light="red"} 1' in metrics(http)
        out = edge_agent(config, "status").stdout
        assert "ks-01 at window K01: printer out of paper" in out
        assert "cards today: green 7, yellow 2, red 1" in out
        wait_for(lambda: http_json(http, "/api/status")["light"] == "alarm", 20, what="the light at alarm")
        assert "device ks-01: printer out of paper" in http_json(http, "/api/status")["light_reasons"]

        # Paper loaded: the printer says ok, every trace of the alarm goes.
        dev.send(printer(4, "ok"))
        wait_for(lambda: kiosk_alarms(http) == [], 20, what="the alarm cleared")
        assert 'data-alarm="paper_out"' not in dom(url, tmp_path)
        assert 'alarm="paper_out"' not in metrics(http)
        wait_for(lambda: http_json(http, "/api/status")["light"] == "ok", 20, what="the light back at ok")
    finally:
        dev.stop()
        agent.stop()
        county.stop()
        broker.stop()
