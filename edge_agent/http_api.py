"""HTTP for the hall: / (the lobby screen), /healthz, /metrics (Prometheus),
/api/status, /api/hall (what the screen shows), /api/queue (the call
board: the newest calls, waiting and waits per queue; the screen asks for
it every 400 ms, so a call shows within a second), POST /api/windows/<W>
(staff on duty), and over-the-air updates (hallctl ota): GET /api/ota,
POST /api/ota/bundles, /api/ota/offer, /api/ota/withdraw.
Stdlib server in a thread; one store connection behind a lock.

Reading is open: the lobby screen is shown to the whole hall. Writing
changes who a citizen is told served them, so POST needs `Authorization:
Bearer <[http] token>`; with no token configured, only clients on this
machine (loopback) may write. A browser page from elsewhere must not
borrow either (it cannot read the token, but a kiosk browser on the Pi is
loopback): a write naming another Origin is refused.

The hall's Wi-Fi is not trusted to be polite: at most [http]
max_connections are open at once (more are answered 503 and closed), and a
request must arrive whole within [http] timeout_s, so idle or slowloris
connections cannot hold every thread or file handle."""
import hmac
import ipaddress
import json
import logging
import os
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from edge_agent import registry, status
from edge_agent.status.fleet import fleet
from edge_agent.errors import AgentError

log = logging.getLogger("edge_agent.http")
# The lobby screen: one static page that polls /api/hall.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "screen", "index.html"), encoding="utf-8") as _f:
    SCREEN_HTML = _f.read()

# POST /api/windows carries a few short fields.
MAX_BODY_BYTES = 16384
_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
         b"Content-Length: 39\r\n\r\n{\"error\": \"too many open connections\"}\n")


class BadRequest(Exception):
    """The request is wrong: a 4xx with this message, nothing written."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class _Server(ThreadingHTTPServer):
    """Connections are counted and each has a deadline; one reaper thread
    hangs up on the late ones (a per-read timeout alone lets a client send
    one byte just before every timeout)."""
    daemon_threads = True

    def __init__(self, addr, handler, max_connections, deadline_s):
        self.max_connections, self.deadline_s = max_connections, deadline_s
        self.open = {}                      # socket -> monotonic deadline
        self.open_lock = threading.Lock()
        self.refused = 0                    # connections answered 503: all slots taken
        self.cut = 0                        # connections closed at their deadline
        self.closed = threading.Event()
        super().__init__(addr, handler)
        threading.Thread(target=self._reap, name="http-reaper", daemon=True).start()

    def process_request(self, request, client_address):
        with self.open_lock:
            full = len(self.open) >= self.max_connections
            if not full:
                self.open[request] = time.monotonic() + self.deadline_s
        if full:
            self.refused += 1
            try:
                request.settimeout(1)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        request.settimeout(self.deadline_s + 2)     # a backstop: the reaper cuts first
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request):
        with self.open_lock:
            self.open.pop(request, None)

    def server_close(self):
        self.closed.set()
        super().server_close()

    def _reap(self):
        while not self.closed.wait(min(1.0, self.deadline_s / 4)):
            now = time.monotonic()
            with self.open_lock:
                late = [r for r, end in self.open.items() if now > end]
            for r in late:
                self.cut += 1
                try:
                    r.shutdown(socket.SHUT_RDWR)    # the handler's read or write ends at once
                except OSError:
                    pass


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

        self.server = _Server((cfg["http"]["host"], cfg["http"]["port"]), Handler,
                              cfg["http"]["max_connections"], cfg["http"]["timeout_s"])
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
                return self.send(h, 200, "text/plain; version=0.0.4", status.metrics(self.snapshot()))
            if method == "GET" and path == "/api/status":
                return self.send_json(h, 200, self.snapshot())
            if method == "GET" and path == "/api/fleet":
                return self.send_json(h, 200, fleet(self.snapshot()))
            if method == "GET" and path in ("/", "/screen"):
                return self.send(h, 200, "text/html; charset=utf-8", SCREEN_HTML)
            if method == "GET" and path == "/api/hall":
                with self.lock:
                    screen = status.hall_screen(self.store, self.cfg)
                rt = self.runtime()
                screen.update(light=rt.get("light"), light_reasons=rt.get("light_reasons"))
                return self.send_json(h, 200, screen)
            if method == "GET" and path == "/api/queue":
                from edge_agent import queues
                from edge_agent.store import now_ms
                with self.lock:
                    board = queues.board(self.store, self.cfg, now_ms())
                return self.send_json(h, 200, board)
            if method == "GET" and path == "/api/ota":
                with self.lock:
                    return self.send_json(h, 200, ota_status(self.store))
            if method == "POST" and path.startswith("/api/ota/"):
                return self.ota_write(h, path[len("/api/ota/"):])
            if method == "POST" and path.startswith("/api/windows/"):
                refused = self.refuse_write(h)
                if refused:
                    return self.send_json(h, refused[0], {"error": refused[1]})
                body = read_object(h)
                with self.lock:
                    registry.set_window(self.store, path.rsplit("/", 1)[1], body.get("staff"),
                                        body.get("staff_no"), body.get("target_s"))
                return self.send_json(h, 200, {"ok": True})
            return self.send_json(h, 404, {"error": "no such path"})
        except BadRequest as e:
            h.close_connection = True           # the body may be unread
            return self.send_json(h, e.status, {"error": str(e)})
        except (AgentError, ValueError) as e:
            return self.send_json(h, 400, {"error": str(e)})
        except OSError as e:                    # the client hung up or ran out of time
            log.debug("HTTP %s %s: %s", method, path, e)
            h.close_connection = True
        except Exception:
            # The details are for the log, not for whoever is on the hall's Wi-Fi.
            log.exception("HTTP %s %s", method, path)
            return self.send_json(h, 500, {"error": "internal error; the agent's log has the details"})

    def ota_write(self, h, what):
        """POST /api/ota/bundles (the bundle's bytes), /offer {devices,
        version, health_s}, /withdraw {devices}: hallctl ota."""
        from edge_agent import ota
        refused = self.refuse_write(h)
        if refused:
            h.close_connection = True
            return self.send_json(h, refused[0], {"error": refused[1]})
        if what == "bundles":
            data = read_body(h, ota.MAX_BUNDLE_BYTES)
            with self.lock:
                version = ota.take_bundle(self.store, data)
            return self.send_json(h, 200, {"version": version})
        if what not in ("offer", "withdraw"):
            return self.send_json(h, 404, {"error": "no such path"})
        body = read_object(h)
        with self.lock:
            if what == "offer":
                ota.offer(self.store, body.get("devices"), body.get("version"), body.get("health_s", 120))
            else:
                ota.withdraw(self.store, body.get("devices"))
        return self.send_json(h, 200, {"ok": True})

    def snapshot(self):
        rt = dict(self.runtime(), http_refused=self.server.refused, http_cut=self.server.cut)
        with self.lock:
            return status.snapshot(self.store, self.cfg, rt)

    def refuse_write(self, h):
        """(status, reason) when this request may not write; None when it may."""
        if not same_origin(h):
            return 403, "writes from a page of another origin are refused"
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


def same_origin(h):
    """A browser names the page behind a request in Origin (and, lately,
    Sec-Fetch-Site); tools like curl and the CLI send neither."""
    site = h.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = h.headers.get("Origin")
    if origin is None:
        return True
    parts = urllib.parse.urlsplit(origin.strip())
    return parts.scheme in ("http", "https") and parts.netloc != "" and parts.netloc == h.headers.get("Host")


def read_body(h, limit):
    """The request body's bytes, at most `limit`, or BadRequest."""
    declared = h.headers.get("Content-Length")
    if declared is None:
        raise BadRequest(411, "Content-Length required")
    if not declared.strip().isdigit():
        raise BadRequest(400, "Content-Length must be a whole number of bytes, not %r" % declared[:40])
    n = int(declared)
    if n > limit:
        raise BadRequest(413, "body over %d bytes" % limit)
    data = h.rfile.read(n)
    if len(data) < n:
        raise BadRequest(400, "body shorter than its Content-Length")
    return data


def ota_status(store):
    """Where each device stands with its update, beside what it runs now."""
    fw = {d["device"]: d.get("health_fw") or d.get("fw") for d in store.devices.all()}
    return {"devices": [dict(r, fw=fw.get(r["device"])) for r in store.updates.all()]}


def read_object(h):
    """The request body as a JSON object, or BadRequest saying what is wrong."""
    data = read_body(h, MAX_BODY_BYTES)
    try:
        body = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise BadRequest(400, "body is not JSON (UTF-8)")
    if type(body) is not dict:
        raise BadRequest(400, "body must be a JSON object, e.g. {\"staff\": \"张三\"}")
    return body


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)
