"""The lobby's call board in a real browser (headless Chromium, watched over
the DevTools protocol): a call made at a window appears on the open page,
without a reload, within about a second (the page asks /api/queue every
400 ms), with the people waiting and the estimated wait per queue."""
import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from harness import free_port, wait_for
from test_agent_queue import HallQueue
from test_hall_screen import CHROMIUM, FLAGS

websockets = pytest.importorskip("websockets.sync.client")
pytestmark = pytest.mark.skipif(not CHROMIUM, reason="chromium is installed by make (tools/system-deps.sh)")


class Page:
    """One page of a headless Chromium, read with Runtime.evaluate."""

    def __init__(self, url, tmp_path):
        port = free_port()
        self.proc = subprocess.Popen([CHROMIUM] + FLAGS + ["--user-data-dir=%s" % (tmp_path / "chromium"),
                                     "--remote-debugging-port=%d" % port, "--window-size=1920,1080", url],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        targets = []

        def page_target():
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=2) as r:
                    targets[:] = [t for t in json.load(r) if t["type"] == "page"]
            except OSError:
                return False
            return bool(targets)
        wait_for(page_target, 30, what="chromium's page")
        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(websockets.connect(targets[0]["webSocketDebuggerUrl"], max_size=None))
        self.n = 0

    def eval(self, expression):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": "Runtime.evaluate",
                                 "params": {"expression": expression, "returnByValue": True}}))
        while True:
            msg = json.loads(self.ws.recv(timeout=10))
            if msg.get("id") == self.n:
                return msg["result"]["result"].get("value")

    def close(self):
        self.stack.close()
        self.proc.kill()
        self.proc.wait()


def test_a_call_shows_on_the_open_lobby_page_within_a_second(tmp_path):
    hall = HallQueue(tmp_path / "hall")
    page = None
    try:
        k = hall.askers["ks-01"]
        for q in "AABB":
            k.ask_until_answered({"op": "ticket", "queue": q})
        page = Page("http://127.0.0.1:%d/" % hall.http, tmp_path)
        wait_for(lambda: page.eval("document.querySelectorAll('#queues tbody tr').length") == 2, 30,
                 what="the call board's queues")
        page.eval("window.loadedOnce = true")        # gone if the page reloads
        rows = page.eval("[...document.querySelectorAll('#queues tbody tr')].map(r => r.innerText)")
        assert "A 综合受理\t2\t" in rows[0] and "B 不动产\t2\t" in rows[1]
        assert page.eval("document.getElementById('now').textContent") == "等候叫号"
        latencies = []
        for ev, want in (("ev-03", "请 A001 号 到 W03 号窗口"), ("ev-05", "请 A002 号 到 W05 号窗口")):
            assert hall.askers[ev].ask_until_answered({"op": "next"})["ticket"] == want.split()[1]
            t0 = time.monotonic()
            wait_for(lambda: page.eval("document.getElementById('now').textContent") == want, 10,
                     what="the call on the page", interval=0.02)
            latencies.append(time.monotonic() - t0)
        assert page.eval("window.loadedOnce") is True
        assert page.eval("document.getElementById('before').innerText").startswith("A001")
        wait_for(lambda: page.eval("document.querySelector('#queues tbody tr').innerText").split("\t")[1] == "0",
                 5, what="A's waiting count down to 0")
        print("call -> screen: %s s" % ", ".join("%.2f" % x for x in latencies))
        # The page polls every 400 ms: generous bound, a loaded 2-core machine included.
        assert max(latencies) < 2.0, latencies
        shot = tmp_path / "calls.png"
        subprocess.run([CHROMIUM] + FLAGS + ["--user-data-dir=%s" % (tmp_path / "chromium2"),
                       "--virtual-time-budget=3000", "--window-size=1920,1080", "--screenshot=%s" % shot,
                       "http://127.0.0.1:%d/" % hall.http], capture_output=True, timeout=120)
        assert shot.exists() and shot.stat().st_size > 10000
        keep = os.environ.get("QL_SCREENSHOT_DIR")
        if keep:
            shutil.copy(shot, os.path.join(keep, "hall-calls.png"))
    finally:
        if page is not None:
            page.close()
        hall.stop()
        shutil.rmtree(tmp_path / "chromium", ignore_errors=True)
