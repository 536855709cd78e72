"""A stand-in for the county's case API (tools/county/API.md, 'Cases'). The
kiosk's own tests run on the reference server (tests/kiosk_rig.py); this
remains for tests/test_agent_kiosk*.py: the hostile-county test (garbage
the real county never sends) and, until they move, the agent-request and
screen tests there. It serves the hall's
cases and cards behind the hall's bearer token, a cursor that moves, and
the batch POST answered `stored` so the uplink stays quiet. `down` makes
every answer a 503; `cases` is what the next GET lists (whatever a test
puts there, hostile or not); `link_key` is the link-key answer (None: 404,
a county without a link secret)."""
import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandInCounty:
    def __init__(self, hall, token):
        self.hall, self.token = hall, token
        self.cases = []
        self.cards = {"date": "2026-05-06", "green": 7, "yellow": 2, "red": 1}
        self.down = False
        self.link_key = None
        self.rev = 0
        self.asked = []                 # (path, query) of every GET
        county = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                county._get(self)

            def do_POST(self):
                county._post(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, h, code, obj):
        data = json.dumps(obj, ensure_ascii=False).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _refused(self, h):
        if self.down:
            return self._answer(h, 503, {"error": "database down"}) or True
        if h.headers.get("Authorization") != "Bearer " + self.token:
            return self._answer(h, 401, {"error": "missing or wrong bearer token"}) or True
        return False

    def _get(self, h):
        path, _, query = h.path.partition("?")
        self.asked.append((path, query))
        if self._refused(h):
            return
        base = "/v1/halls/%s/" % self.hall
        if path == base + "cases":
            self.rev += 1
            return self._answer(h, 200, {"cases": list(self.cases), "cursor": "20260506.%d" % self.rev})
        if path == base + "cards":
            return self._answer(h, 200, self.cards)
        if path == base + "link-key" and self.link_key is not None:
            return self._answer(h, 200, self.link_key)
        return self._answer(h, 404, {"error": "no such path"})

    def _post(self, h):
        body = h.rfile.read(int(h.headers["Content-Length"]))
        if self._refused(h):
            return
        batch = json.loads(gzip.decompress(body))
        self._answer(h, 200, {"batch": batch["batch"], "results": [
            {"device": e["device"], "seq": e["seq"], "status": "stored"} for e in batch["events"]]})


def case(number, state="in_review", light="yellow", name="个体工商户设立登记", url=None):
    """A case as the county lists it."""
    return {"case": number, "item": "110101", "item_name": name, "state": state, "accepted": "2026-05-01",
            "promised": "2026-05-08", "light": light,
            "rate_url": url or "https://pj.county.example/r/h1/case/%s/0123456789abcdef" % number}
