"""Cases (办件) and 红黄牌 at the county, on a real server: business systems
post case events, the hall reads its cases with lights and signed rating
links (the kiosk's contract, API.md), by cursor; the lobby's cards; working
days from the 2026 holiday notice (中秋 on 2026-09-25, the 调休 Saturday
2026-10-10); a year without a published schedule refused."""
import hashlib
import hmac
import urllib.parse

import pytest

from test_county import county_db  # noqa: F401 (fixture)
from tools.county.testing import CountyProc

HALL, TOKEN, MANAGER = "hall-a", "tok-" + "a" * 20, "mgr-" + "a" * 20
SYSTEM, SECRET = "sys-" + "s" * 20, "link-secret-" + "x" * 20
TODAY = "2026-09-28"        # a Monday; Friday 09-25 was 中秋


def server(tmp_path, db, today=TODAY, name="c"):
    return CountyProc(str(tmp_path / name), db, {HALL: TOKEN, "hall-b": "tok-" + "b" * 20}, extra=[
        "--today", today, "--system-token", SYSTEM, "--link-secret", SECRET,
        "--manager-token", "%s=%s" % (HALL, MANAGER), "--public-url", "https://county.example"]).start()


@pytest.fixture
def county(county_db, tmp_path):
    c = server(tmp_path, county_db)
    yield c
    c.stop()


def accepted(case, date, days, item="431100-001", **extra):
    return dict({"id": case + "-1", "case": case, "type": "accepted", "date": date, "item": item,
                 "item_name": "食品经营许可", "department": "市场监管局", "window": "A01", "promised_days": days},
                **extra)


def step(case, n, kind, date):
    return {"id": "%s-%d" % (case, n), "case": case, "type": kind, "date": date}


def sig(hall, kind, ident):
    key = hmac.new(SECRET.encode(), ("link:" + hall).encode(), hashlib.sha256).digest()
    return hmac.new(key, ("%s:%s" % (kind, ident)).encode(), hashlib.sha256).digest()[:16].hex()


EVENTS = [
    accepted("C1", "2026-09-21", 5),            # 4 working days gone (09-25 中秋): yellow, due 09-29
    accepted("C2", "2026-09-14", 3),            # due 09-17: red
    accepted("C3", "2026-09-28", 10),           # green; 国庆 and the 调休 Saturday 10-10: due 10-16
    accepted("C4", "2026-09-16", 3), step("C4", 2, "suspended", "2026-09-17"), step("C4", 3, "resumed", "2026-09-22"),
    accepted("C5 / 办", "2026-09-21", 5), step("C5 / 办", 2, "completed", "2026-09-24"),
]


def test_cases_lights_cursor_cards_and_links(county, tmp_path):
    st, got = county.call("POST", "/v1/halls/%s/cases" % HALL, SYSTEM, {"events": EVENTS})
    assert st == 200, got
    assert [r["status"] for r in got["results"]] == ["stored"] * len(EVENTS)
    # A resend is a duplicate; the same id with another body a conflict; an impossible step rejected.
    again = [EVENTS[0], dict(EVENTS[1], promised_days=9), step("C1", 2, "resumed", "2026-09-22")]
    st, got = county.call("POST", "/v1/cases", SYSTEM, {"events": [dict(e, hall=HALL) for e in again]})
    assert st == 200, got
    assert [r["status"] for r in got["results"]] == ["duplicate", "conflict", "rejected"]
    assert got["results"][2]["reason"] == "resumed cannot follow accepted"

    st, got = county.call("GET", "/v1/halls/%s/cases" % HALL, TOKEN)
    assert st == 200, got
    by = {c["case"]: c for c in got["cases"]}
    assert {k: (c["state"], c["promised"], c["light"]) for k, c in by.items()} == {
        "C1": ("accepted", "2026-09-29", "yellow"),
        "C2": ("accepted", "2026-09-17", "red"),
        "C3": ("accepted", "2026-10-16", "green"),
        "C4": ("in_review", "2026-09-24", "red"),       # 3 days + 4 suspended working days (Sunday 09-20 worked)
        "C5 / 办": ("completed", "2026-09-29", None),
    }
    c1 = by["C1"]
    assert set(c1) == {"case", "item", "item_name", "state", "accepted", "promised", "light", "rate_url"}
    assert (c1["item"], c1["item_name"], c1["accepted"]) == ("431100-001", "食品经营许可", "2026-09-21")
    assert c1["rate_url"] == "https://county.example/r/hall-a/case/C1/" + sig(HALL, "case", "C1")
    assert by["C5 / 办"]["rate_url"] == ("https://county.example/r/hall-a/case/%s/%s"
                                        % (urllib.parse.quote("C5 / 办", safe=""), sig(HALL, "case", "C5 / 办")))
    cursor = got["cursor"]

    # Nothing new the same day; a new event gives only its case.
    assert county.call("GET", "/v1/halls/%s/cases?since=%s" % (HALL, cursor), TOKEN)[1]["cases"] == []
    county.call("POST", "/v1/halls/%s/cases" % HALL, SYSTEM, {"events": [
        step("C5 / 办", 3, "ready", "2026-09-28"), step("C1", 2, "suspended", "2026-09-28")]})
    st, got = county.call("GET", "/v1/halls/%s/cases?since=%s" % (HALL, cursor), TOKEN)
    assert sorted((c["case"], c["state"], c["light"]) for c in got["cases"]) == [
        ("C1", "suspended", "yellow"), ("C5 / 办", "ready", None)]
    assert county.call("GET", "/v1/halls/%s/cases?since=bogus" % HALL, TOKEN)[0] == 400
    # Another hall sees none of them.
    assert county.call("GET", "/v1/halls/hall-b/cases", "tok-" + "b" * 20)[1]["cases"] == []

    st, cards = county.call("GET", "/v1/halls/%s/cards" % HALL, TOKEN)
    assert cards == {"hall": HALL, "date": TODAY, "green": 1, "yellow": 1, "red": 2}

    # The hall's link key signs exactly what the county verifies.
    st, key = county.call("GET", "/v1/halls/%s/link-key" % HALL, TOKEN)
    assert st == 200
    assert key["key"] == hmac.new(SECRET.encode(), b"link:hall-a", hashlib.sha256).hexdigest()
    assert key["base"] == "https://county.example"

    # 超时 in the monthly report, per department and window.
    st, r = county.call("GET", "/v1/halls/%s/report?month=2026-09" % HALL, MANAGER)
    o = r["overdue_cases"]
    assert o["as_of"] == TODAY
    assert o["groups"] == [{"department": "市场监管局", "window": "A01", "open": 2, "late": 0}]
    assert [(c["case"], c["promised"], c["overdue_days"]) for c in o["cases"]] == [
        ("C2", "2026-09-17", 7), ("C4", "2026-09-24", 1)]   # Sunday 09-20 was worked (调休)

    # The next day (a new server process on the same store): every open case again, lights moved on.
    later = server(tmp_path, county.db, "2026-09-29", "c2")
    try:
        st, got = later.call("GET", "/v1/halls/%s/cases?since=%s" % (HALL, cursor), TOKEN)
        assert sorted((c["case"], c["light"]) for c in got["cases"]) == [
            ("C1", "yellow"), ("C2", "red"), ("C3", "green"), ("C4", "red"), ("C5 / 办", None)]
    finally:
        later.stop()


def test_who_may_do_what(county):
    path = "/v1/halls/%s/cases" % HALL
    ev = {"events": [accepted("X1", "2026-09-28", 3)]}
    assert county.call("POST", path, TOKEN, ev)[0] == 401                  # a hall posts batches, not cases
    assert county.call("POST", path, MANAGER, ev)[0] == 401
    assert county.call("POST", path, county.county_token, ev)[0] == 200
    assert county.call("GET", path, "tok-" + "b" * 20)[0] == 401           # another hall's token
    assert county.call("GET", "/v1/halls/%s/link-key" % HALL, MANAGER)[0] == 401
    assert county.call("GET", "/v1/halls/hall-b/link-key", TOKEN)[0] == 401
    # The hall's uplink token never reads its reports (with or without a manager token).
    assert county.call("GET", "/v1/halls/%s/report?month=2026-09" % HALL, TOKEN)[0] == 401
    assert county.call("GET", "/v1/halls/%s/report?month=2026-09" % HALL, MANAGER)[0] == 200
    assert county.call("GET", "/v1/halls/hall-b/report?month=2026-09", "tok-" + "b" * 20)[0] == 401


def test_a_year_without_a_published_schedule_is_refused(county):
    path = "/v1/halls/%s/cases" % HALL
    st, got = county.call("POST", path, SYSTEM, {"events": [accepted("Y1", "2027-01-05", 3)]})
    assert st == 400 and "no holiday schedule for 2027" in got["error"], got
    # Accepted in 2026 but due in 2027: refused too, and nothing of the request stored.
    st, got = county.call("POST", path, SYSTEM, {"events": [accepted("Y2", "2026-12-01", 3),
                                                            accepted("Y3", "2026-12-20", 20)]})
    assert st == 400 and "2027" in got["error"], got
    assert county.call("GET", path, TOKEN)[1]["cases"] == []
    for bad in ({"events": [dict(accepted("Z", "2026-09-28", 0))]}, {"events": [step("Z", 1, "bogus", "2026-09-28")]},
                {"events": [dict(accepted("Z", "2026-02-30", 3))]}, {"events": [accepted("\u0001", "2026-09-28", 3)]},
                {"nothing": 1}):
        assert county.call("POST", path, SYSTEM, bad)[0] == 400, bad
