"""The lobby screen in a real browser (headless Chromium): what the hall
manager sees after citizens at two windows have rated."""
import json
import os
import shutil
import subprocess
import urllib.request

import pytest

from harness import wait_for
from tools.hall import Hall

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="chromium is installed by make (tools/system-deps.sh)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def browse(url, tmp_path, *extra):
    out = subprocess.run([CHROMIUM] + FLAGS + ["--user-data-dir=%s" % (tmp_path / "chromium"),
                         "--virtual-time-budget=6000"] + list(extra) + [url],
                         capture_output=True, text=True, timeout=120)
    return out.stdout


def hall_api(hall):
    with urllib.request.urlopen(hall.screen_url + "api/hall", timeout=5) as r:
        return json.load(r)


def test_screen_shows_windows_staff_and_todays_ratings(tmp_path):
    hall = Hall(str(tmp_path / "hall"), hall="screen-hall", devices=2, ratings_delay_min=0).start()
    try:
        hall.edge_agent("window", "set", "A01", "--staff", "王芳", "--staff-no", "1024")
        a, b = hall.devices["ev-01"], hall.devices["ev-02"]
        for vd, level in ((a, "very_satisfied"), (a, "satisfied"), (b, "very_dissatisfied")):
            vd.call("A100")
            vd.staff("end")
            vd.press(level)
        hall.wait_county_ratings(3)
        b.call("A101")  # a service running at A02 while we look
        a.call("A102")
        a.staff("pause")  # A01's staff stepped away: 暂停服务, its clock stands still
        wait_for(lambda: [bool(w["service"]) and w["service"]["paused"] for w in hall_api(hall)["windows"]]
                 == [True, False], 30, what="A01 paused and A02 serving at the agent")
        dom = browse(hall.screen_url, tmp_path, "--dump-dom")
        assert 'data-window="A01"' in dom and 'data-window="A02"' in dom
        assert "王芳 · 1024" in dom
        assert '<b id="total">3</b>' in dom
        assert '<b id="bad">1</b>' in dom
        assert '<b id="rate">66.7%</b>' in dom
        assert "办理中" in dom and "暂停服务" in dom
        shot = tmp_path / "screen.png"
        browse(hall.screen_url, tmp_path, "--window-size=1920,1080", "--screenshot=%s" % shot)
        assert shot.exists() and shot.stat().st_size > 10000
        keep = os.environ.get("QL_SCREENSHOT_DIR")
        if keep:
            shutil.copy(shot, os.path.join(keep, "hall-screen.png"))
    finally:
        hall.stop()
