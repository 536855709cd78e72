"""Helpers for tests and benches that need a real county server or an
agent-side store to send from. Not used by the server itself."""
import gzip
import json
import os
import urllib.error
import urllib.parse
import urllib.request

import protocol
from tools.procs import Proc, VENV_BIN, free_port, wait_port

LEVELS = protocol.LEVELS
KEY = bytes(range(32))
COUNTY_TOKEN = "county-" + "c" * 20       # what tests give `--county-token`


class CountyProc(Proc):
    """`county-server run` on a free port; kill() is a real SIGKILL and
    start() again keeps the port and the database."""

    def __init__(self, work_dir, db, tokens, port=None, extra=(), county_token=COUNTY_TOKEN, managers=None):
        """tokens: {hall: uplink token}; managers: {hall: hall manager's token} (reports, stats)."""
        os.makedirs(work_dir, exist_ok=True)
        self.port = port or free_port()
        self.db = db
        self.county_token = county_token
        argv = [os.path.join(VENV_BIN, "county-server"), "run", "--db", db,
                "--host", "127.0.0.1", "--port", str(self.port)]
        if county_token:
            argv += ["--county-token", county_token]
        for hall, token in tokens.items():
            argv += ["--token", "%s=%s" % (hall, token)]
        for hall, token in (managers or {}).items():
            argv += ["--manager-token", "%s=%s" % (hall, token)]
        argv += list(extra)
        self.scheme = "https" if "--tls-cert" in extra else "http"
        super().__init__("county-%d" % self.port, argv, work_dir)

    @property
    def url(self):
        return "%s://127.0.0.1:%d" % (self.scheme, self.port)

    def start(self, wait=True):
        super().start()
        return self.ready() if wait else self

    def ready(self):
        """Wait until it listens (it has migrated its store by then)."""
        try:
            wait_port(self.port, 30)
        except TimeoutError:
            raise RuntimeError("county server did not start:\n" + self.log())
        return self

    def get(self, path, token=None):
        """GET a JSON answer, with this bearer token if given."""
        req = urllib.request.Request(self.url + path, headers={"Authorization": "Bearer " + token} if token else {})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def report(self, hall, token, **query):
        """GET a hall's monthly report; returns (status, answer dict)."""
        return self.call("GET", "/v1/halls/%s/report?%s" % (hall, urllib.parse.urlencode(query)), token)

    def call(self, method, path, token=None, doc=None, basic=None):
        """Any JSON request: (status, answer dict or None). `basic`: (user, password) instead of a token."""
        import base64
        h = {"Content-Type": "application/json"} if doc is not None else {}
        if token:
            h["Authorization"] = "Bearer " + token
        if basic:
            h["Authorization"] = "Basic " + base64.b64encode(("%s:%s" % basic).encode()).decode()
        data = json.dumps(doc, ensure_ascii=False).encode() if doc is not None else None
        return _answer(urllib.request.Request(self.url + path, data=data, headers=h, method=method))

    def stats(self, hall=None):
        """Counts, asked with the county token (a hall's own token also gets its stats)."""
        return self.get("/v1/halls/%s/stats" % hall if hall else "/v1/stats", self.county_token)

    def post(self, hall, token, doc, compress=True, raw=None, headers=None):
        """POST a batch; returns (status, answer dict or None)."""
        data = raw if raw is not None else json.dumps(doc, ensure_ascii=False).encode()
        h = {"Content-Type": "application/json"}
        if token is not None:
            h["Authorization"] = "Bearer " + token
        if compress:
            data = gzip.compress(data)
            h["Content-Encoding"] = "gzip"
        h.update(headers or {})
        return _answer(urllib.request.Request("%s/v1/halls/%s/batches" % (self.url, hall), data=data, headers=h))


def _answer(req):
    """(status, answer dict), or None for an answer that is not JSON."""
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.load(e)
        except ValueError:
            return e.code, None


def rating(device, seq, level="satisfied", t=1764000000000, key=KEY, **extra):
    """A signed rating event: its wire text."""
    ev = {"v": 1, "device": device, "seq": seq, "kind": "rating", "t": t,
          "level": level, "channel": "window", "session": "%s-1-%d" % (device, seq)}
    ev.update(extra)
    return protocol.encode(ev, key).decode()


def session(device, seq, action, session, window, t, key=KEY, **extra):
    """A signed session step (SPEC: session): its wire text."""
    ev = {"v": 1, "device": device, "seq": seq, "kind": "session", "t": t, "action": action,
          "session": session, "window": window}
    ev.update(extra)
    return protocol.encode(ev, key).decode()


def agent_store(path):
    """An agent's store, made by the agent's own migrations; a plain
    connection to it for the test to fill and read."""
    from edge_agent.store import Store, connect
    Store(path).close()
    return connect(path, create=False)


def add_events(db, bodies, received_ms=None):
    """Insert wire bodies as the agent's ingest would; returns how many."""
    import time
    now = received_ms or int(time.time() * 1000)
    rows = []
    for b in bodies:
        ev = json.loads(b)
        rows.append((ev["device"], ev["seq"], ev["kind"], ev["t"], b, now))
    db.execute("BEGIN")
    db.executemany("INSERT INTO events (device, seq, kind, t, body, received_ms) VALUES (?, ?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    return len(rows)
