"""The national 好差评 figures (figures.py) of a generated month, against
figures computed by hand, on SQLite and on the running PostgreSQL: 主动评价率,
参评率 (never over 100 %: a QR rating is a service of its own), 未评率, 好评率,
差评率, 差评回访率, 差评整改率, 整改满意率, and the default-rating rule
(unrated after 7 days -> 基本满意, channel default, not 主动评价)."""
import pytest

from test_county import batch, county_db  # noqa: F401 (fixture)
from test_county_report import Evaluator, at
from tools.county.testing import CountyProc, rating, session

HALL, TOKEN, MANAGER = "hall-a", "tok-" + "a" * 20, "mgr-" + "a" * 20
TODAY = "2026-11-03"        # defaults reach services ended before 2026-10-28 00:00


def month_events():
    ev = Evaluator("ev-1", "A01", "1024")
    # Twenty services on 10-08 .. 10-27, the last two moved to 10-30/31 (too recent for a default).
    pattern = ["very_satisfied"] * 6 + ["satisfied", "dissatisfied", None, None]
    for i in range(20):
        day = 8 + i + (4 if i >= 18 else 0)
        ev.service("2026-10-%02d 10:00:00" % day, 300, pattern[i % 10])
    out = list(ev.events)
    # Ended on September 30, rated on October 1: a service of October's figures, rated (no 121 %).
    out.append(session("ev-2", 1, "ended", "ev-2-1-1", "A02", at("2026-09-30 23:59:00"), service_ms=60000))
    out.append(rating("ev-2", 2, "satisfied", at("2026-10-01 00:05:00"), session="ev-2-1-1", window="A02"))
    # Two QR ratings of things that are not sessions of the month.
    out.append(rating("qr-1", 1, "satisfied", at("2026-10-05 12:00:00"), channel="qr", session="web-1"))
    out.append(rating("qr-1", 2, "very_dissatisfied", at("2026-10-06 12:00:00"), channel="qr", session="web-2"))
    return out


# By hand: services 20 + 1 (ended in September) + 2 (QR) = 23. Rated by a person: 16 of the 20
# (12 非常满意, 2 满意, 2 不满意) + 1 + 2 = 19; good 12 + 2 + 1 + 1 = 16; bad 2 + 1 = 3.
# Unrated: i = 8, 9 (10-16, 10-17: defaulted), 18, 19 (10-30, 10-31: not yet) -> defaulted 2, unrated 2.
# Follow-ups: 3 差评; one walked to 追评 (满意), one appealed and upheld, one left 待核实:
# called back 2 of 3; rectified 1 of (3 - 1 upheld); 追评 1, satisfied 1.
EXPECTED = {
    "services": 23, "active": 19, "defaulted": 2, "unrated": 2, "good": 16, "bad": 3,
    "bad_called_back": 2, "bad_appeals_upheld": 1, "bad_rectified": 1, "second_ratings": 1, "second_satisfied": 1,
    "active_pct": 82.61,                # 19 / 23
    "participation_pct": 91.3,          # (19 + 2) / 23
    "unrated_pct": 17.39,               # (23 - 19) / 23
    "good_pct": 84.21,                  # 16 / 19
    "bad_pct": 15.79,                   # 3 / 19
    "callback_pct": 66.67,              # 2 / 3
    "rectified_pct": 50.0,              # 1 / (3 - 1)
    "rectified_satisfied_pct": 100.0,   # 1 / 1
}


@pytest.fixture
def county(county_db, tmp_path):  # noqa: F811
    c = CountyProc(str(tmp_path), county_db, {HALL: TOKEN}, extra=[
        "--today", TODAY, "--manager-token", "%s=%s" % (HALL, MANAGER)]).start()
    yield c
    c.stop()


def test_a_month_of_figures_by_the_national_definitions(county):
    st, got = county.post(HALL, TOKEN, batch(month_events()))
    assert st == 200 and {r["status"] for r in got["results"]} == {"stored"}
    path = "/v1/halls/%s/followups" % HALL
    st, fl = county.call("GET", path, MANAGER)
    bad = [f["id"] for f in fl["followups"]]
    assert len(bad) == 3
    walk = {bad[0]: [("rectifying", None), ("rectified", None), ("answered", None), ("followed_up", "satisfied")],
            bad[1]: [("appealed", None)]}
    for fid, steps in walk.items():
        for to, level in steps:
            st, f = county.call("POST", "%s/%s/steps" % (path, fid), MANAGER, {"to": to, "who": "王五", "note": to,
                                                                              "level": level})
            assert st == 200, f
    st, f = county.call("POST", "%s/%s/steps" % (path, bad[1]), county.county_token,
                        {"to": "appeal_upheld", "who": "县政务办", "note": "恶意差评"})
    assert st == 200, f

    st, r = county.report(HALL, MANAGER, month="2026-10")
    assert st == 200, r
    assert r["figures"] == EXPECTED
    # The defaults are stored once: asking again changes nothing.
    assert county.report(HALL, MANAGER, month="2026-10")[1]["figures"] == EXPECTED
    # The old per-window table counts device ratings only; the figures never pass 100 %.
    assert all(v is None or v <= 100 for k, v in r["figures"].items() if k.endswith("_pct"))
