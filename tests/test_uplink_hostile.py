"""The real uplink against a hostile or broken county over real HTTP: a
huge answer, a gzip bomb, an answer that never ends, non-JSON, JSON nested
past the parser's depth. Each is a logged failure and a retry with the rows
kept unsynced; the loop never dies and never takes the Pi's memory. And the
config refuses plain http:// unless it says so."""
import json
import resource
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness import wait_for
from edge_agent.config import uplink as check_config
from edge_agent.county_client import MAX_ANSWER_BYTES
from edge_agent.errors import ConfigError
from test_uplink import Running, agent_db, events  # noqa: F401 (fixture)
from tools.county.testing import add_events

MB = 1 << 20


def bomb(size):
    """gzip of `size` zero bytes, built without holding them."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(MB)
    return b"".join([z.compress(block) for _ in range(size // MB)] + [z.flush()])


def results_for(body):
    doc = json.loads(body)
    return json.dumps({"batch": doc["batch"], "results": [
        {"device": e["device"], "seq": e["seq"], "status": "stored"} for e in doc["events"]]}).encode()


class County:
    """A county stub on a real socket; `answer(batch_json) -> (headers, chunks)`."""

    def __init__(self, answer):
        self.posts = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                stub.posts += 1
                body = zlib.decompress(self.rfile.read(int(self.headers["Content-Length"])), 31)
                headers, chunks = answer(body)
                self.send_response(200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    for c in chunks:
                        self.wfile.write(c)
                except OSError:
                    pass            # the uplink hung up on us: what we want

            def log_message(self, *args):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def endless(_body):
    return {}, (bytes(MB) for _ in range(256))                   # no length: read to close


def huge_declared(_body):
    return {"Content-Length": str(64 * MB)}, (bytes(MB) for _ in range(64))


def gzip_bomb(body):
    return {"Content-Encoding": "gzip", "Content-Length": str(len(BOMB))}, [BOMB]


def dripping(_body):
    def slow():
        for _ in range(100):
            yield b" "
            time.sleep(0.2)
    return {"Content-Length": "100"}, slow()


def not_json(_body):
    return {"Content-Length": "9"}, [b"<html>hi"]


def nested(_body):
    doc = b"[" * 100000 + b"]" * 100000
    return {"Content-Length": str(len(doc))}, [doc]


BOMB = bomb(256 * MB)


@pytest.mark.parametrize("answer, words", [
    (endless, "over %d bytes" % MAX_ANSWER_BYTES),
    (huge_declared, "over %d bytes" % MAX_ANSWER_BYTES),
    (gzip_bomb, "inflates past"),
    (dripping, "slower than"),
    (not_json, "unreadable"),
    (nested, "unreadable"),
])
def test_a_hostile_county_answer_is_a_failure_retried_never_a_crash(agent_db, answer, words):  # noqa: F811
    path, db = agent_db
    add_events(db, events("ev-h", 3))
    county = County(answer)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    up = Running(path, county.url, timeout_s=1.0, backoff_max_s=0.3)
    try:
        st = wait_for(lambda: (lambda s: s if county.posts >= 2 and s["last_error"] else None)(up.up.state()),
                      60, 0.1, "two failed posts")
        assert up.thread.is_alive()
    finally:
        up.close()
        county.close()
    assert words in st["last_error"], st["last_error"]
    assert st["pending"] == 3 and st["events_synced"] == 0 and st["failing_since_ms"]
    assert db.execute("SELECT count(*) FROM events WHERE synced_ms IS NOT NULL").fetchone()[0] == 0
    # ru_maxrss is in KiB: the answer was never held whole.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 64 * 1024


@pytest.mark.parametrize("encoding, wbits", [("gzip", 31), ("deflate", 15), ("deflate", -15)])
def test_a_compressed_answer_within_the_bound_is_read(agent_db, encoding, wbits):  # noqa: F811
    def answer(body):
        z = zlib.compressobj(6, zlib.DEFLATED, wbits)
        data = z.compress(results_for(body)) + z.flush()
        return {"Content-Encoding": encoding, "Content-Length": str(len(data))}, [data]

    path, db = agent_db
    add_events(db, events("ev-d", 5))
    county = County(answer)
    up = Running(path, county.url)
    try:
        up.drained(30)
    finally:
        up.close()
        county.close()
    assert db.execute("SELECT count(*) FROM events WHERE synced_ms IS NULL").fetchone()[0] == 0


def test_plain_http_is_refused_unless_the_config_says_so():
    with pytest.raises(ConfigError, match=r"allow_plain_http = true"):
        check_config({"url": "http://county.example", "token": "t"})
    with pytest.raises(ConfigError, match=r"allow_plain_http must be true or false"):
        check_config({"url": "http://county.example", "token": "t", "allow_plain_http": "yes"})
    assert check_config({"url": "http://127.0.0.1:9", "token": "t", "allow_plain_http": True})
    assert check_config({"url": "https://county.example", "token": "t"})
