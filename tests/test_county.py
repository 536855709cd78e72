"""The reference county server as a real process, on SQLite and on the real
PostgreSQL: per-event results, idempotency, auth, encodings, the CLI."""
import json
import os
import secrets
import subprocess
import urllib.parse

import pytest

from harness import VENV_BIN
from tools.county.testing import CountyProc, rating

HALL, TOKEN = "hall-a", "tok-" + "a" * 20
COUNTY = os.path.join(VENV_BIN, "county-server")


def pg_url():
    """A fresh schema in the local PostgreSQL `test` database, or skip."""
    psycopg = pytest.importorskip("psycopg")
    last = None
    for user in ("postgres", "root"):
        base = "postgresql://%s@127.0.0.1:5432/test" % user
        try:
            conn = psycopg.connect(base, connect_timeout=3, autocommit=True)
        except psycopg.Error as e:
            last = e
            continue
        schema = "county_test_" + secrets.token_hex(4)
        conn.execute("CREATE SCHEMA %s" % schema)
        url = base + "?options=" + urllib.parse.quote("-csearch_path=%s" % schema)
        return conn, schema, url
    pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432 (database test): %s" % last)


@pytest.fixture(params=["sqlite", "postgresql"])
def county_db(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "county.db")
        return
    conn, schema, url = pg_url()
    try:
        yield url
    finally:
        conn.execute("DROP SCHEMA %s CASCADE" % schema)
        conn.close()


@pytest.fixture
def county(county_db, tmp_path):
    c = CountyProc(str(tmp_path), county_db, {HALL: TOKEN, "hall-b": "tok-" + "b" * 20}).start()
    yield c
    c.stop()


def batch(events, batch_id="b1", hall=HALL):
    return {"batch": batch_id, "hall": hall,
            "events": [{"device": json.loads(b)["device"], "seq": json.loads(b)["seq"], "body": b}
                       for b in events]}


def statuses(answer):
    return [(r["device"], r["seq"], r["status"]) for r in answer["results"]]


def test_each_event_is_stored_once_and_a_different_body_is_a_conflict(county):
    e1, e2 = rating("ev-1", 1, "very_satisfied"), rating("ev-1", 2, "dissatisfied")
    status, ans = county.post(HALL, TOKEN, batch([e1, e2]))
    assert status == 200 and ans["batch"] == "b1"
    assert statuses(ans) == [("ev-1", 1, "stored"), ("ev-1", 2, "stored")]

    # The same batch again (an answer lost on the way): nothing new.
    status, ans = county.post(HALL, TOKEN, batch([e1, e2]))
    assert statuses(ans) == [("ev-1", 1, "duplicate"), ("ev-1", 2, "duplicate")]
    # Re-serialised by someone on the way (spaces, escapes): still the same event.
    respaced = json.dumps(dict(reversed(list(json.loads(e1).items()))))
    assert respaced != e1
    assert statuses(county.post(HALL, TOKEN, batch([respaced]))[1]) == [("ev-1", 1, "duplicate")]

    # Same (device, seq), other content: kept aside, the first one stays.
    forged = rating("ev-1", 2, "very_satisfied")
    status, ans = county.post(HALL, TOKEN, batch([forged, rating("ev-1", 3)], "b2"))
    assert statuses(ans) == [("ev-1", 2, "conflict"), ("ev-1", 3, "stored")]
    status, ans = county.post(HALL, TOKEN, batch([forged], "b3"))
    assert statuses(ans) == [("ev-1", 2, "conflict")]

    s = county.stats(HALL)
    assert s["events"] == {"rating": 3}
    assert s["ratings"] == {"dissatisfied": 1, "satisfied": 1, "very_satisfied": 1}
    assert s["conflicts"] == 1             # the same conflicting body twice is one record
    assert (s["batches"], s["batch_posts"]) == (3, 5)


def test_a_hall_is_its_own_namespace(county):
    e = rating("ev-1", 1)
    assert statuses(county.post(HALL, TOKEN, batch([e]))[1]) == [("ev-1", 1, "stored")]
    status, ans = county.post("hall-b", "tok-" + "b" * 20, batch([e], hall="hall-b"))
    assert statuses(ans) == [("ev-1", 1, "stored")]
    assert county.stats()["halls"] == {HALL: 1, "hall-b": 1}


def test_bodies_that_do_not_parse_are_invalid_with_the_protocol_reason(county):
    good = rating("ev-2", 1)
    no_mac = json.dumps({k: v for k, v in json.loads(rating("ev-2", 2)).items() if k != "mac"})
    items = [
        {"device": "ev-2", "seq": 1, "body": good},
        {"device": "ev-2", "seq": 2, "body": no_mac},
        {"device": "ev-2", "seq": 3, "body": "{not json"},
        {"device": "ev-2", "seq": 4, "body": rating("ev-2", 5)},      # body names another seq
        {"device": "ev-2", "seq": 6, "body": rating("ev-2", 6).replace('"v":1', '"v":2')},
    ]
    status, ans = county.post(HALL, TOKEN, {"batch": "bx", "hall": HALL, "events": items})
    assert status == 200
    got = [(r["seq"], r["status"], r.get("reason")) for r in ans["results"]]
    assert got == [(1, "stored", None), (2, "invalid", "missing_field"), (3, "invalid", "bad_json"),
                   (4, "invalid", "key_mismatch"), (6, "invalid", "bad_version")]
    s = county.stats(HALL)
    assert (s["total"], s["invalid"]) == (1, 4)


def test_a_wrong_or_missing_token_is_refused_and_nothing_stored(county):
    doc = batch([rating("ev-3", 1)])
    assert county.post(HALL, "tok-" + "x" * 20, doc)[0] == 401
    assert county.post(HALL, None, doc)[0] == 401
    assert county.post(HALL, "tok-" + "b" * 20, doc)[0] == 401       # another hall's token
    assert county.post("hall-z", TOKEN, batch([rating("ev-3", 1)], hall="hall-z"))[0] == 401
    assert county.stats()["total"] == 0


def test_plain_and_gzip_bodies_are_both_accepted(county):
    assert county.post(HALL, TOKEN, batch([rating("ev-4", 1)], "g1"), compress=True)[0] == 200
    assert county.post(HALL, TOKEN, batch([rating("ev-4", 2)], "p1"), compress=False)[0] == 200
    assert county.stats(HALL)["total"] == 2


def test_a_malformed_request_is_refused_whole(county):
    good = {"device": "ev-5", "seq": 1, "body": rating("ev-5", 1)}
    cases = [
        (None, b"{not json"),
        ({"batch": "m1", "hall": "hall-b", "events": [good]}, None),          # hall differs from URL
        ({"batch": "", "hall": HALL, "events": [good]}, None),
        ({"batch": "m1", "hall": HALL, "events": [good, {"device": "ev-5", "body": "x"}]}, None),
        ({"batch": "m1", "hall": HALL, "events": [good, {"device": "ev 5", "seq": 2, "body": "x"}]}, None),
        ({"batch": "m1", "hall": HALL, "events": {"a": 1}}, None),
    ]
    for doc, raw in cases:
        status, ans = county.post(HALL, TOKEN, doc, raw=raw)
        assert status == 400, (doc, raw, status)
        assert ans["error"]
    assert county.post(HALL, TOKEN, None, raw=b"\x1f\x8b junk", compress=False,
                       headers={"Content-Encoding": "gzip"})[0] == 400
    assert county.stats()["total"] == 0         # not even the good event of a refused batch


def test_an_oversized_batch_is_413(county):
    items = [{"device": "ev-6", "seq": i + 1, "body": "x"} for i in range(10001)]
    assert county.post(HALL, TOKEN, {"batch": "big", "hall": HALL, "events": items})[0] == 413
    assert county.stats()["total"] == 0


def test_health_and_unknown_paths(county):
    assert county.get("/healthz") == {"ok": True}
    with pytest.raises(Exception) as e:
        county.get("/v2/nothing")
    assert getattr(e.value, "code", None) == 404


def test_stats_command_reads_the_store(county, county_db):
    county.post(HALL, TOKEN, batch([rating("ev-7", 1, "very_dissatisfied")]))
    out = subprocess.run([COUNTY, "stats", "--db", county_db, "--json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert s["ratings"] == {"very_dissatisfied": 1} and s["halls"] == {HALL: 1}
    out = subprocess.run([COUNTY, "stats", "--db", county_db], capture_output=True, text=True)
    assert "very_dissatisfied" in out.stdout and out.returncode == 0


def test_every_command_has_help():
    from tools.county.cli import COMMANDS
    for argv in [["--help"]] + [list(c.words) + ["--help"] for c in COMMANDS]:
        out = subprocess.run([COUNTY] + argv, capture_output=True, text=True)
        assert out.returncode == 0 and "usage:" in out.stdout, argv
    for c in COMMANDS:
        assert c.help, c.words


@pytest.mark.parametrize("argv, words", [
    (["run", "--db", "/nonexistent/dir/county.db", "--token", "h=tok-aaaaaaaa"], "cannot open"),
    (["run", "--db", "x.db", "--token", "h"], "HALL=TOKEN"),
    (["stats", "--db", "typo.db"], "no county database at typo.db"),
    (["run", "--db", "x.db"], "--token"),
    (["run", "--db", "x.db", "--tokens-file", "/nonexistent"], "tokens file"),
    (["run", "--db", "postgresql://nobody@127.0.0.1:1/x", "--token", "h=tok-aaaaaaaa"], "PostgreSQL"),
    (["run", "--db", "x.db", "--token", "h=tok-aaaaaaaa", "--workers", "0"], "--workers must be 1 to 64"),
    (["run", "--db", "x.db", "--token", "h=tok-aaaaaaaa", "--workers", "100000"], "--workers must be 1 to 64"),
])
def test_operator_errors_are_one_line(argv, words, tmp_path):
    out = subprocess.run([COUNTY] + argv, capture_output=True, text=True, cwd=str(tmp_path), timeout=30)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("county-server: error:"), out.stderr


def test_tokens_file(tmp_path):
    f = tmp_path / "tokens"
    f.write_text("# halls of the county\nhall-a = tok-aaaaaaaa\n\nhall-b=tok-bbbbbbbb\n")
    from tools.county.cli import parse_tokens
    assert parse_tokens(["hall-c=tok-cccccccc"], [str(f)]) == {
        "hall-a": "tok-aaaaaaaa", "hall-b": "tok-bbbbbbbb", "hall-c": "tok-cccccccc"}


def test_sigterm_exits_cleanly_with_a_keep_alive_connection_open(county):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", county.port, timeout=10)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read()
    county.p.terminate()                     # SIGTERM while a hall's connection idles
    assert county.p.wait(15) == 0
    conn.close()
