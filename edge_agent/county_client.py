"""The county's HTTP API as the hall talks to it: the batch POST (the
uplink's) and the GETs of the hall's cases and cards (edge_agent/cases.py),
over one kept-alive HTTP(S) connection, gzip both ways, a bearer token,
optionally a pinned CA; every failure is an UplinkError (each caller
retries in one place).

The county is not trusted to be small: an answer is read up to
MAX_ANSWER_BYTES within a deadline and inflated (gzip or deflate) only up
to the same bound, so a hostile or broken county cannot exhaust the Pi.
"""
import gzip
import http.client
import json
import ssl
import time
import urllib.parse
import zlib

# One result per event (~100 bytes) for up to 10,000 events, with room to spare.
MAX_ANSWER_BYTES = 4 << 20
_READ_CHUNK = 65536


class UplinkError(OSError):
    """The county could not take a batch now; retried after a backoff."""


class BatchTooLarge(UplinkError):
    """HTTP 413: the county takes smaller batches than we sent."""


class County:
    """The county's batch endpoint over one kept-alive HTTP(S) connection."""

    def __init__(self, url, token, hall, timeout_s, ca_file):
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.base = parts.path.rstrip("/") + "/v1/halls/%s/" % urllib.parse.quote(hall)
        self.path = self.base + "batches"
        self.timeout = timeout_s
        self.token = token
        self.tls = None
        if self.https:
            # With cafile, create_default_context loads that file and not the system store.
            try:
                self.tls = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
            except (OSError, ssl.SSLError) as e:
                raise UplinkError("cannot load county CA %s: %s" % (ca_file, e))
        self._conn = None

    def _connect(self):
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.tls)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def post(self, payload):
        """POST a batch (JSON bytes) and return the county's answer dict."""
        body = gzip.compress(payload, 1)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        answer = self._ask("POST", self.path, body, headers)
        if type(answer.get("results")) is not list:
            raise UplinkError("county answer unreadable: no results list")
        return answer

    def get(self, what, query=None):
        """GET <hall's path>/<what>[?query] and return the answer, a dict
        (its values are the caller's to check)."""
        path = self.base + what
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return self._ask("GET", path, None, {})

    def _ask(self, method, path, body, headers):
        headers = dict(headers, **{"Accept-Encoding": "gzip", "Authorization": "Bearer " + self.token})
        reused = self._conn is not None
        try:
            resp, data = self._exchange(method, path, body, headers)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            if not reused:
                raise UplinkError("county unreachable: %s" % (str(e) or type(e).__name__))
            # The county may have closed the idle connection: one fresh try at once.
            try:
                resp, data = self._exchange(method, path, body, headers)
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise UplinkError("county unreachable: %s" % (str(e) or type(e).__name__))
        if resp.will_close or data is None:
            self.close()
        if data is None:
            raise UplinkError("county answer over %d bytes or slower than %.0f s: not read"
                              % (MAX_ANSWER_BYTES, self._deadline_s()))
        if resp.status == 413:
            raise BatchTooLarge("county answered 413: batch too large")
        if resp.status != 200:
            raise UplinkError("county answered %d: %r" % (resp.status, data[:200].decode("utf-8", "replace")))
        try:
            answer = json.loads(inflate(data, resp.getheader("Content-Encoding")))
            if type(answer) is not dict:
                raise ValueError("not a JSON object")
        except (ValueError, RecursionError) as e:
            raise UplinkError("county answer unreadable: %s" % e)
        return answer

    def _deadline_s(self):
        return self.timeout * 3

    def _exchange(self, method, path, body, headers):
        if self._conn is None:
            self._conn = self._connect()
        self._conn.request(method, path, body, headers)
        resp = self._conn.getresponse()
        return resp, read_bounded(resp, MAX_ANSWER_BYTES, self._deadline_s())

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def read_bounded(resp, limit, deadline_s):
    """The response body, or None when it is longer than `limit` or takes
    longer than `deadline_s` (a county dripping bytes); then the connection
    cannot be reused."""
    declared = resp.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    end = time.monotonic() + deadline_s
    parts, size = [], 0
    while True:
        chunk = resp.read1(_READ_CHUNK)
        if not chunk:
            resp.close()        # read whole: as read() does, so the connection takes the next request
            return b"".join(parts)
        size += len(chunk)
        if size > limit or time.monotonic() > end:
            return None
        parts.append(chunk)


def inflate(data, encoding, limit=MAX_ANSWER_BYTES):
    """Undo a gzip or deflate Content-Encoding, never past `limit` bytes
    (a small gzip bomb inflates to gigabytes); ValueError in plain words."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return data
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise ValueError("unsupported Content-Encoding %r" % encoding)
    # 47: gzip or zlib header; deflate is zlib-wrapped by the RFC, raw by some servers.
    tries = (47,) if encoding != "deflate" else (47, -15)
    for wbits in tries:
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(data, limit + 1)
        except zlib.error as e:
            err = e
            continue
        if len(out) > limit:
            raise ValueError("answer inflates past %d bytes" % limit)
        if not d.eof:
            raise ValueError("%s answer cut short" % encoding)
        return out
    raise ValueError("bad %s answer: %s" % (encoding, err))
