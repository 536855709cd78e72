"""Real headless Chromium driven over the DevTools protocol (CDP), for pages
a person taps through (the QR rating page): open a page at a phone's size,
run a line of script in it (a tap, a read of what is shown), screenshot it.
Only the `websockets` client the county's stack already pins."""
import json
import os
import shutil
import subprocess
import time
import urllib.request

from tools.procs import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--lang=zh-CN"]


class Browser:
    def __init__(self, profile_dir, width=390, height=844):
        from websockets.sync.client import connect
        port = free_port()
        self.proc = subprocess.Popen([CHROMIUM] + FLAGS + ["--remote-debugging-port=%d" % port,
                                                           "--user-data-dir=%s" % profile_dir, "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % port, timeout=5) as r:
                    pages = [p for p in json.load(r) if p["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.2)
        self._connection = connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self.ws = self._connection.__enter__()
        self.n = 0
        # A phone: 390 x 844 CSS pixels, touch, mobile viewport rules.
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=2, mobile=True)
        self.send("Emulation.setTouchEmulationEnabled", enabled=True)

    def send(self, method, **params):
        self.n += 1
        self.ws.send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError("%s: %s" % (method, msg["error"]))
                return msg["result"]

    def eval(self, expression):
        got = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in got:
            raise RuntimeError("script failed: %s" % got["exceptionDetails"])
        return got["result"].get("value")

    def wait(self, expression, timeout=30):
        """Poll until the expression is truthy in the page (a navigation may be under way)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.eval(expression)
                if value:
                    return value
            except RuntimeError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("page never showed: %s" % expression)
            time.sleep(0.1)

    def goto(self, url):
        self.send("Page.navigate", url=url)
        self.wait("document.readyState === 'complete' && location.href === %s" % json.dumps(url))

    def screenshot(self, path):
        import base64
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def close(self):
        try:
            if hasattr(self, "ws"):
                self._connection.__exit__(None, None, None)
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
