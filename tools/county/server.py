"""The county's HTTP API (API.md): batch ingest per hall, stats, health.

A threaded stdlib server: each request is one store transaction, committed
before the answer is written, so an answer always means "on disk".
"""
import contextlib
import gzip
import hmac
import json
import logging
import re
import socket
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tools.county import records, report
from tools.county.errors import StoreError

log = logging.getLogger("county")

MAX_WIRE_BYTES = 8 << 20        # a request body as sent (gzip or not)
MAX_JSON_BYTES = 32 << 20       # after gunzip: a gzip bomb stops here
MAX_EVENTS = 10000              # per batch
_BATCHES = re.compile(r"^/v1/halls/([A-Za-z0-9_-]{1,32})/batches$")
_HALL_STATS = re.compile(r"^/v1/halls/([A-Za-z0-9_-]{1,32})/stats$")
_REPORT = re.compile(r"^/v1/halls/([A-Za-z0-9_-]{1,32})/report$")
# A batch id is for tracing: printable ASCII, no spaces or control characters.
_BATCH_ID = re.compile(r"[\x21-\x7e]{1,64}")


class RequestError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class CountyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, store, tokens, fail_after_commit=0, tls=None):
        self.store = store
        self.tokens = dict(tokens)       # hall -> bearer token
        # Test hook: commit the first N batches, then drop the connection unanswered.
        self.fail_after_commit = fail_after_commit
        self._hook_lock = threading.Lock()
        self._busy = 0                   # batches being committed and answered
        self._idle = threading.Condition()
        super().__init__(addr, Handler)
        if tls is not None:
            # The handshake happens on the handler's thread, not in the accept loop.
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    @property
    def url(self):
        host, port = self.server_address[:2]
        return "%s://%s:%d" % ("https" if hasattr(self.socket, "cipher") else "http", host, port)

    def authorized(self, hall, header):
        want = self.tokens.get(hall)
        if not want or not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[7:].strip().encode(), want.encode())

    @contextlib.contextmanager
    def batch_in_hand(self):
        with self._idle:
            self._busy += 1
        try:
            yield
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    def finish_batches(self, timeout=30):
        """After shutdown(): wait for batches in hand to commit and be answered.
        Idle keep-alive connections are daemon threads and simply end."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def lose_answer(self):
        with self._hook_lock:
            if self.fail_after_commit > 0:
                self.fail_after_commit -= 1
                return True
        return False


class Handler(BaseHTTPRequestHandler):
    server_version = "qinglian-county/1"
    protocol_version = "HTTP/1.1"        # keep-alive: a draining hall posts back to back
    timeout = 120                        # an idle or stalled client frees its thread
    # Headers and body go out in two writes; with Nagle the second waits out a delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self):
        path, _, query = self.path.partition("?")
        try:
            if path == "/healthz":
                self.server.store.ping()
                return self._json(200, {"ok": True})
            if path == "/v1/stats":
                return self._json(200, self.server.store.stats())
            m = _HALL_STATS.match(path)
            if m:
                return self._json(200, self.server.store.stats(m.group(1)))
            m = _REPORT.match(path)
            if m:
                return self._json(200, self._report(m.group(1), query))
            raise RequestError(404, "no such resource")
        except RequestError as e:
            self._json(e.status, {"error": str(e)})
        except report.ReportError as e:
            self._json(400, {"error": str(e)})
        except StoreError as e:
            log.error("%s", e)
            self._json(503, {"error": "store unavailable"})
        except Exception:
            self._internal_error()

    def _internal_error(self):
        # The traceback is for the county's log, not for whoever sent the request.
        log.exception("%s %s", self.command, self.path[:200])
        try:
            self._json(500, {"error": "internal error; the county's log has the details"})
        except OSError:
            pass

    def do_POST(self):
        try:
            m = _BATCHES.match(self.path)
            if not m:
                raise RequestError(404, "no such resource")
            hall = m.group(1)
            if not self.server.authorized(hall, self.headers.get("Authorization")):
                raise RequestError(401, "bad or missing bearer token for hall %s" % hall)
            batch, items = self._batch(hall)
            with self.server.batch_in_hand():
                self._ingest(hall, batch, items)
        except RequestError as e:
            self._json(e.status, {"error": str(e)})
        except records.Malformed as e:
            self._json(400, {"error": str(e)})
        except StoreError as e:
            log.error("%s", e)
            self._json(503, {"error": "store unavailable, retry later"})
        except OSError as e:                # the hall hung up or timed out mid-body
            log.info("POST %s: %s", self.path[:200], e)
            self.close_connection = True
        except Exception:
            self._internal_error()

    def _report(self, hall, query):
        # Event content (staff numbers, case ids): only for the hall's own token.
        if not self.server.authorized(hall, self.headers.get("Authorization")):
            raise RequestError(401, "bad or missing bearer token for hall %s" % hall)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
        if "month" not in q:
            raise RequestError(400, "month=YYYY-MM is required")
        return report.build(self.server.store, hall, q["month"], q.get("tz", report.DEFAULT_TZ),
                            q.get("deadline_days", report.DEFAULT_DEADLINE_DAYS))

    def _ingest(self, hall, batch, items):
        started = time.monotonic()
        results = self.server.store.ingest(hall, batch, items, int(time.time() * 1000))
        counts = {}
        for r in results:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        log.info("hall %s batch %s: %s (%.0f ms)", hall, batch,
                 " ".join("%s=%d" % kv for kv in sorted(counts.items())),
                 (time.monotonic() - started) * 1000)
        if self.server.lose_answer():
            log.warning("hall %s batch %s: committed, answer dropped (--fail-after-commit)", hall, batch)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._json(200, {"batch": batch, "results": results})

    def _length(self):
        declared = self.headers.get("Content-Length")
        if declared is None:
            raise RequestError(411, "Content-Length required")
        if not declared.strip().isdigit():
            raise RequestError(400, "Content-Length must be a whole number of bytes")
        return int(declared)

    def _batch(self, hall):
        n = self._length()
        if n > MAX_WIRE_BYTES:
            raise RequestError(413, "request over %d bytes" % MAX_WIRE_BYTES)
        raw = self.rfile.read(n)
        enc = (self.headers.get("Content-Encoding") or "identity").lower()
        if enc == "gzip":
            try:
                d = zlib.decompressobj(wbits=31)
                raw = d.decompress(raw, MAX_JSON_BYTES + 1)
            except zlib.error:
                raise RequestError(400, "bad gzip body")
            if len(raw) > MAX_JSON_BYTES:
                raise RequestError(413, "batch over %d bytes uncompressed" % MAX_JSON_BYTES)
        elif enc != "identity":
            raise RequestError(415, "unsupported Content-Encoding %s" % enc)
        try:
            doc = json.loads(raw, parse_constant=_not_json)
        except RecursionError:
            raise RequestError(400, "body is JSON nested too deep")
        except ValueError:
            raise RequestError(400, "body is not JSON (UTF-8, no NaN or Infinity)")
        if type(doc) is not dict or type(doc.get("events")) is not list:
            raise RequestError(400, "expected an object with an events list")
        batch = doc.get("batch")
        if type(batch) is not str or not _BATCH_ID.fullmatch(batch):
            raise RequestError(400, "batch id must be 1-64 printable ASCII characters without spaces")
        if doc.get("hall") != hall:
            raise RequestError(400, "hall in the body differs from the URL")
        if len(doc["events"]) > MAX_EVENTS:
            raise RequestError(413, "batch over %d events" % MAX_EVENTS)
        return batch, doc["events"]

    def _json(self, status, doc):
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
        if len(data) > 4096 and "gzip" in (self.headers.get("Accept-Encoding") or ""):
            data = gzip.compress(data, 5)
            gz = True
        else:
            gz = False
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if gz:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400 and self.command == "POST":
            # The body may be unread: this connection cannot carry another request.
            self.close_connection = True
            self.send_header("Connection", "close")
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="qinglian-county"')
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.address_string(), *args)


def _not_json(name):
    raise ValueError("%s is not JSON" % name)
