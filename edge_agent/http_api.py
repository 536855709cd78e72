"""HTTP for the hall: / (the lobby screen), /healthz, /metrics (Prometheus),
/api/status, /api/hall (what the screen shows) and POST /api/windows/<W>
(staff on duty).
Stdlib server in a thread; one store connection behind a lock.

Reading is open: the lobby screen is shown to the whole hall. Writing
changes who a citizen is told served them, so POST needs `Authorization:
Bearer <[http] token>`; with no token configured, only clients on this
machine (loopback) may write."""
import hmac
import ipaddress
import json
import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from edge_agent import registry, status
from edge_agent.errors import AgentError

log = logging.getLogger("edge_agent.http")
# The lobby screen: one static page that polls /api/hall.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "screen", "index.html"), encoding="utf-8") as _f:
    SCREEN_HTML = _f.read()


class HallHTTP:
    def __init__(self, store, cfg, runtime, health):
        self.store, self.cfg = store, cfg
        self.runtime = runtime   # () -> dict of live agent state
        self.health = health     # () -> (ok, reason)
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                log.debug(fmt, *args)

            def do_GET(self):
                api.route(self, "GET")

            def do_POST(self):
                api.route(self, "POST")

        self.server = ThreadingHTTPServer((cfg["http"]["host"], cfg["http"]["port"]), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def route(self, h, method):
        path = h.path.split("?", 1)[0].rstrip("/") or "/"
        try:
            if method == "GET" and path == "/healthz":
                ok, why = self.health()
                return self.send(h, 200 if ok else 503, "text/plain", (why or "ok") + "\n")
            if method == "GET" and path == "/metrics":
                with self.lock:
                    snap = status.snapshot(self.store, self.cfg, self.runtime())
                return self.send(h, 200, "text/plain; version=0.0.4", status.metrics(snap))
            if method == "GET" and path == "/api/status":
                with self.lock:
                    snap = status.snapshot(self.store, self.cfg, self.runtime())
                return self.send_json(h, 200, snap)
            if method == "GET" and path in ("/", "/screen"):
                return self.send(h, 200, "text/html; charset=utf-8", SCREEN_HTML)
            if method == "GET" and path == "/api/hall":
                with self.lock:
                    screen = status.hall_screen(self.store, self.cfg)
                rt = self.runtime()
                screen.update(light=rt.get("light"), light_reasons=rt.get("light_reasons"))
                return self.send_json(h, 200, screen)
            if method == "POST" and path.startswith("/api/windows/"):
                refused = self.refuse_write(h)
                if refused:
                    return self.send_json(h, refused[0], {"error": refused[1]})
                body = json.loads(h.rfile.read(int(h.headers.get("Content-Length") or 0)) or b"{}")
                with self.lock:
                    registry.set_window(self.store, path.rsplit("/", 1)[1], body.get("staff"),
                                        body.get("staff_no"), body.get("target_s"))
                return self.send_json(h, 200, {"ok": True})
            return self.send_json(h, 404, {"error": "no such path"})
        except (AgentError, ValueError) as e:
            return self.send_json(h, 400, {"error": str(e)})
        except Exception as e:
            log.exception("HTTP %s %s", method, path)
            return self.send_json(h, 500, {"error": repr(e)})

    def refuse_write(self, h):
        """(status, reason) when this request may not write; None when it may."""
        token = self.cfg["http"]["token"]
        if token is None:
            if ipaddress.ip_address(h.client_address[0]).is_loopback:
                return None
            return 403, "writes from other machines need [http] token set on the agent"
        given = h.headers.get("Authorization") or ""
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode()):
            return None
        return 401, "missing or wrong bearer token"

    def send_json(self, h, code, obj):
        self.send(h, code, "application/json; charset=utf-8", json.dumps(obj, ensure_ascii=False))

    def send(self, h, code, ctype, text):
        data = text.encode()
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
