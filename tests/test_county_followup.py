"""差评 follow-up at the county, by API and CLI on a real server (SQLite and
PostgreSQL): a 差评 walked through every state, an appeal only the county
may decide, every step appended with who/when/note, and the overdue flag on
exactly the working day the 2026 calendar says: 整改 entered on 2026-09-30
with 5 working days runs over 国庆 (10-01..07) and the 调休 Saturday 10-10,
so it is overdue on 10-14, not on 10-08 as Monday-to-Friday counting says.
办不成事 reports through their own stages."""
import datetime
import json
import os
import subprocess
import zoneinfo

import pytest

from harness import VENV_BIN
from test_county import batch, county_db  # noqa: F401 (fixture)
from tools.county.testing import CountyProc, rating

COUNTY = os.path.join(VENV_BIN, "county-server")
HALL, TOKEN, MANAGER = "hall-a", "tok-" + "a" * 20, "mgr-" + "a" * 20
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def at(local):
    return int(datetime.datetime.fromisoformat(local).replace(tzinfo=SHANGHAI).timestamp()) * 1000


def server(tmp_path, db, today, name):
    return CountyProc(str(tmp_path / name), db, {HALL: TOKEN}, extra=[
        "--today", today, "--manager-token", "%s=%s" % (HALL, MANAGER)]).start()


def cli(db, *args, today=None):
    argv = [COUNTY, "followup"] + list(args) + ["--db", db, "--hall", HALL] + (["--today", today] if today else [])
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_a_bad_rating_through_every_state(county_db, tmp_path):  # noqa: F811
    c = server(tmp_path, county_db, "2026-09-30", "a")
    path = "/v1/halls/%s/followups" % HALL
    try:
        st, _ = c.post(HALL, TOKEN, batch([
            rating("ev-a1", 1, "dissatisfied", at("2026-09-29 10:00:00"), window="A01", staff="1024",
                   reasons=["attitude"]),
            rating("ev-a1", 2, "very_dissatisfied", at("2026-09-29 11:00:00"), window="A01"),
            rating("ev-a1", 3, "satisfied", at("2026-09-29 12:00:00"))]))
        assert st == 200
        assert c.call("GET", path, TOKEN)[0] == 401          # the uplink token posts batches only
        st, got = c.call("GET", path, MANAGER)
        assert st == 200, got
        assert [(f["id"], f["state"], f["since"], f["deadline"], f["overdue"]) for f in got["followups"]] == [
            ("r:ev-a1:1", "pending", "2026-09-29", "2026-09-30", False),
            ("r:ev-a1:2", "pending", "2026-09-29", "2026-09-30", False)]
        assert got["followups"][0]["reasons"] == ["attitude"]

        one, two = path + "/r:ev-a1:1", path + "/r:ev-a1:2"
        st, f = c.call("POST", one + "/steps", MANAGER, {"to": "answered", "who": "王五", "note": "x"})
        assert st == 400 and "next: rectifying, appealed" in f["error"]
        st, f = c.call("POST", one + "/steps", MANAGER, {"to": "rectifying", "who": "王五", "note": "已回访, 情况属实"})
        assert st == 200, f
        assert (f["state"], f["state_zh"], f["since"], f["deadline"]) == ("rectifying", "整改中", "2026-09-30",
                                                                          "2026-10-13")
        # An appeal is the county's to decide.
        assert c.call("POST", two + "/steps", MANAGER, {"to": "appealed", "who": "王五", "note": "误评"})[0] == 200
        st, f = c.call("POST", two + "/steps", MANAGER, {"to": "appeal_upheld", "who": "王五", "note": "同意"})
        assert st == 403, f
        st, f = c.call("POST", two + "/steps", c.county_token, {"to": "appeal_upheld", "who": "县政务办", "note": "核实为误评"})
        assert (st, f["state"], f["closed"]) == (200, "appeal_upheld", True)
        assert c.call("POST", two + "/steps", c.county_token, {"to": "rectifying", "who": "x", "note": "x"})[0] == 400
    finally:
        c.stop()

    # The overdue flag: by the CLI on any day, by the API from a server whose day is 10-14.
    def flag(today):
        r = cli(county_db, "list", "--json", today=today)
        assert r.returncode == 0, r.stderr
        return {f["id"]: f["overdue"] for f in json.loads(r.stdout)}["r:ev-a1:1"]
    assert [flag(d) for d in ("2026-10-08", "2026-10-09", "2026-10-12", "2026-10-13", "2026-10-14")] == [
        False, False, False, False, True]
    r = cli(county_db, "list", "--overdue", today="2026-10-14")
    assert "r:ev-a1:1" in r.stdout and "超期" in r.stdout and "1 follow-up(s), 1 overdue" in r.stdout, r.stdout
    late = server(tmp_path, county_db, "2026-10-14", "b")
    try:
        st, got = late.call("GET", path + "?overdue=true", MANAGER)
        assert [f["id"] for f in got["followups"]] == ["r:ev-a1:1"]
    finally:
        late.stop()

    # The rest by CLI and API: 已整改, 已反馈, 追评 (with the citizen's new level).
    r = cli(county_db, "update", "--id", "r:ev-a1:1", "--to", "rectified", "--who", "李四", "--note", "窗口已整改",
            today="2026-10-12")
    assert r.returncode == 0 and "已整改" in r.stdout, r.stderr
    assert cli(county_db, "update", "--id", "r:ev-a1:1", "--to", "bogus", "--who", "a", "--note", "b").returncode == 1
    c = server(tmp_path, county_db, "2026-10-13", "c")
    try:
        one = path + "/r:ev-a1:1"
        assert c.call("POST", one + "/steps", MANAGER, {"to": "answered", "who": "王五", "note": "已电话反馈"})[0] == 200
        st, f = c.call("POST", one + "/steps", MANAGER, {"to": "followed_up", "who": "王五", "note": "追评"})
        assert st == 400 and "level" in f["error"]
        st, f = c.call("POST", one + "/steps", MANAGER, {"to": "followed_up", "who": "王五", "note": "群众追评",
                                                         "level": "satisfied"})
        assert st == 200, f
    finally:
        c.stop()
    r = cli(county_db, "show", "--id", "r:ev-a1:1", "--json")
    f = json.loads(r.stdout)
    assert [(s["n"], s["state"], s["date"], s["who"]) for s in f["steps"]] == [
        (1, "pending", "2026-09-29", "system"), (2, "rectifying", "2026-09-30", "王五 (manager)"),
        (3, "rectified", "2026-10-12", "李四 (cli)"), (4, "answered", "2026-10-13", "王五 (manager)"),
        (5, "followed_up", "2026-10-13", "王五 (manager)")]
    assert f["steps"][-1]["level"] == "satisfied" and f["closed"] and not f["overdue"]
    text = cli(county_db, "show", "--id", "r:ev-a1:1").stdout
    assert "窗口已整改" in text and "群众追评" in text


def test_cannot_do_reports_have_their_own_stages(county_db, tmp_path):  # noqa: F811
    c = server(tmp_path, county_db, "2026-10-09", "a")
    path = "/v1/halls/%s/followups" % HALL
    try:
        report = {"id": "bbc-001", "who": "前台", "note": "跨部门事项无法办理", "item": "431100-009", "window": "Z01"}
        st, f = c.call("POST", path, MANAGER, report)
        assert (st, f["workflow"], f["state"], f["state_zh"]) == (201, "cannot_do", "received", "受理"), f
        assert c.call("POST", path, MANAGER, report)[0] == 200            # a resend opens nothing new
        assert c.call("POST", path, TOKEN, report)[0] == 401
        for to in ("assessing", "assigned", "done"):
            st, f = c.call("POST", path + "/bbc-001/steps", MANAGER, {"to": to, "who": "专员", "note": to})
            assert st == 200, f
        assert f["state_zh"] == "办结" and f["deadline"] == "2026-10-12"   # 2 working days: Sat 10-10 worked, then Mon
        st, f = c.call("POST", path + "/bbc-001/steps", MANAGER, {"to": "rated", "who": "专员", "note": "评价",
                                                                 "level": "very_satisfied"})
        assert (st, f["state_zh"], f["closed"]) == (200, "评价", True)
        st, got = c.call("GET", path + "?workflow=cannot_do", MANAGER)
        assert [x["id"] for x in got["followups"]] == ["bbc-001"]
        assert c.call("GET", path + "/nope", MANAGER)[0] == 404
    finally:
        c.stop()
