"""The county server against hostile batches over real HTTP: a request
that cannot be trusted as a whole is a 4xx JSON error with a clear message
and stores nothing; an event that cannot be trusted is `invalid` with its
reason; nothing is ever a 500 or a dropped connection, and the log has no
traceback."""
import json
import socket

import pytest

from test_county import HALL, TOKEN, batch, county, county_db  # noqa: F401 (fixtures)
from tools.county.testing import rating

GOOD = rating("ev-7", 1)


def item(body, device="ev-7", seq=1):
    return {"device": device, "seq": seq, "body": body}


def doc(events, batch_id="h1", hall=HALL):
    return json.dumps({"batch": batch_id, "hall": hall, "events": events}).encode()


def raw_post(port, body, headers=None):
    """POST bytes with exactly these headers: (status, JSON answer)."""
    h = {"Host": "127.0.0.1", "Authorization": "Bearer " + TOKEN, "Content-Length": str(len(body))}
    h.update(headers or {})
    head = "".join("%s: %s\r\n" % kv for kv in h.items() if kv[1] is not None)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(("POST /v1/halls/%s/batches HTTP/1.1\r\n%s\r\n" % (HALL, head)).encode() + body)
        got = b""
        while b"\r\n\r\n" not in got or len(got.partition(b"\r\n\r\n")[2]) < _length(got):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    head, _, answer = got.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(answer)


def _length(got):
    for line in got.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


REFUSED = [
    ("not JSON", b"{not json", {}, 400, "not JSON"),
    ("invalid UTF-8", b'{"batch":"\xff\xfe"}', {}, 400, "not JSON"),
    ("NaN", b'{"batch":"b","hall":"%s","events":[{"device":"ev-7","seq":NaN,"body":"x"}]}' % HALL.encode(),
     {}, 400, "not JSON"),
    ("deeply nested", b'{"batch":"b","hall":"%s","events":[' % HALL.encode() + b"[" * 100000 + b"]" * 100000
     + b"]}", {}, 400, "nested too deep"),
    ("top-level list", b"[]", {}, 400, "events list"),
    ("events not a list", doc("x"), {}, 400, "events list"),
    ("batch id a number", json.dumps({"batch": 7, "hall": HALL, "events": []}).encode(), {}, 400, "batch id"),
    ("batch id with a control character", doc([item(GOOD)], "b\x00\x1b[2J"), {}, 400, "batch id"),
    ("batch id a lone surrogate", b'{"batch":"\\ud800","hall":"%s","events":[]}' % HALL.encode(), {}, 400,
     "batch id"),
    ("seq over 2^53-1", doc([item(GOOD), item(GOOD, seq=2 ** 53)]), {}, 400, "2^53-1"),
    ("seq over 2^64", doc([item(GOOD), item(GOOD, seq=2 ** 64)]), {}, 400, "2^53-1"),
    ("seq a string", doc([item(GOOD), item(GOOD, seq="2")]), {}, 400, "valid seq"),
    ("device not ASCII", doc([item(GOOD), item(GOOD, device="ev-\u2460")]), {}, 400, "device id"),
    ("hall not the URL's", doc([item(GOOD)], hall="hall-b"), {}, 400, "hall"),
    ("no Content-Length", doc([item(GOOD)]), {"Content-Length": None}, 411, "Content-Length"),
    ("negative Content-Length", doc([item(GOOD)]), {"Content-Length": "-1"}, 400, "Content-Length"),
    ("Content-Length not a number", doc([item(GOOD)]), {"Content-Length": "1_0"}, 400, "Content-Length"),
    ("over-large body", b"", {"Content-Length": str(9 << 20)}, 413, "over"),
]


@pytest.mark.parametrize("name, body, headers, status, words", REFUSED, ids=[r[0] for r in REFUSED])
def test_a_hostile_request_is_a_4xx_and_stores_nothing(county, name, body, headers, status, words):  # noqa: F811
    got, answer = raw_post(county.port, body, headers)
    assert (got, words in answer["error"]) == (status, True), answer
    s = county.stats()
    assert (s["total"], s["invalid"], s["batches"]) == (0, 0, 0)
    assert county.get("/healthz") == {"ok": True}
    assert "Traceback" not in county.log()


def test_hostile_events_are_invalid_one_by_one(county):  # noqa: F811
    ev = json.loads(GOOD)
    bad = [
        item(GOOD.replace('"session":"ev-7-1-1"', '"session":"a\\u0001b"'), seq=1),      # control character
        item(GOOD.replace('"session":"ev-7-1-1"', '"session":"\\ud800"'), seq=1),        # lone surrogate
        item(GOOD.replace('"t":%d' % ev["t"], '"t":%d' % 2 ** 53).replace('"seq":1', '"seq":2'), seq=2),
        item(GOOD.replace('"t":%d' % ev["t"], '"t":%d' % 2 ** 70).replace('"seq":1', '"seq":3'), seq=3),
        item([[["not a string"]]], seq=4),
        item("\ud800", seq=5),
    ]
    assert ev["session"] == "ev-7-1-1"
    mac = json.loads(rating("ev-7", 7))["mac"]
    surrogate_mac = item(rating("ev-7", 7).replace(mac, "\\ud800" + mac[1:]), seq=7)    # 64 characters
    status, answer = raw_post(county.port, json.dumps(
        {"batch": "b-ev", "hall": HALL, "events": bad + [item(rating("ev-7", 6), seq=6), surrogate_mac]}).encode())
    assert status == 200
    got = [(r["seq"], r["status"], r.get("reason")) for r in answer["results"]]
    assert got == [(1, "invalid", "bad_value"), (1, "invalid", "bad_value"), (2, "invalid", "bad_value"),
                   (3, "invalid", "bad_value"), (4, "invalid", "bad_type"), (5, "invalid", "bad_value"),
                   (6, "stored", None), (7, "invalid", "bad_value")]
    s = county.stats(HALL)
    assert (s["total"], s["invalid"]) == (1, 7)
    assert "Traceback" not in county.log()


def test_the_uplink_batch_shape_still_passes(county):  # noqa: F811
    status, answer = county.post(HALL, TOKEN, batch([GOOD], "18c1f0a2b3c-5e2a9c01d4f7"))
    assert status == 200 and answer["results"][0]["status"] == "stored"
