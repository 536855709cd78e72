"""Export upward: a month of ratings (device, QR with its 追评, system
default) as each province profile's records, JSON lines and CSV from the
CLI, every record valid against its profile's JSON Schema (jsonschema); the
level codes pinned against the interfaces they come from (GB/T 39046 App.
A.8: 1 = 非常满意; Zhejiang: 1 = 非常不满意), and a profile with its levels
mapped the wrong way round failing both the schema and the pins."""
import copy
import csv
import io
import json
import os
import subprocess
import zoneinfo

import jsonschema
import pytest

from harness import VENV_BIN
from test_county_report import at
from tools.county import export, profiles
from tools.county.store import open_store
from tools.county.testing import rating

COUNTY = os.path.join(VENV_BIN, "county-server")
HALL = "hall-a"
ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")
START, END = at("2026-10-01 00:00:00"), at("2026-11-01 00:00:00")
# The interfaces' own numbering, written from their documents, not from the profile files.
PINNED = {"national": ("满意度代码", {"very_satisfied": "1", "very_dissatisfied": "5"}),
          "zhejiang": ("satisfaction", {"very_satisfied": 5, "very_dissatisfied": 1})}


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "county.db")
    store = open_store(path)
    events = [rating("ev-1", 1, "very_satisfied", at("2026-10-12 10:00:00"), window="A01", staff="1024",
                     item="431100-001", case="C-1"),
              rating("ev-1", 2, "very_dissatisfied", at("2026-10-13 10:00:00"), window="A01", staff="1024",
                     item="431100-001", case="C-2", reasons=["attitude", "slow"]),
              rating("kiosk-1", 1, "basically_satisfied", at("2026-10-14 10:00:00"), channel="kiosk")]
    store.ingest(HALL, "b1", [{"device": json.loads(e)["device"], "seq": json.loads(e)["seq"], "body": e}
                              for e in events], at("2026-10-14 11:00:00"))
    with store._connection() as c:
        for ref, n, level, channel, reasons, t in (
                ("C-3", 1, "dissatisfied", "qr", ["wait"], at("2026-10-15 09:00:00")),
                ("C-3", 2, "satisfied", "qr", [], at("2026-10-20 09:00:00")),
                ("ev-9-1-1", 1, "basically_satisfied", "default", [], at("2026-10-21 09:00:00"))):
            c.execute('INSERT INTO county_ratings (hall, kind, ref, n, level, channel, reasons, t, item, "case", '
                      '"window", staff) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)',
                      (HALL, "case" if ref.startswith("C") else "session", ref, n, level, channel, json.dumps(reasons),
                       t, "431100-003" if ref.startswith("C") else None, ref if ref.startswith("C") else None))
    store.close()
    return path


def pinned(name, profile, db):
    """The pinned codes of the interface, checked on a real export."""
    field, codes = PINNED[name]
    store = open_store(db)
    try:
        recs = export.records(store, profile, HALL, START, END, "431100", ZONE)
    finally:
        store.close()
    by_case = {r[profile["export"]["fields"]["case"]]: r for r in recs}
    assert by_case["C-1"][field] == codes["very_satisfied"]
    assert by_case["C-2"][field] == codes["very_dissatisfied"]
    return recs


@pytest.mark.parametrize("name", ["national", "zhejiang"])
def test_the_export_meets_its_profiles_schema(db, name):
    profile, schema = profiles.load(name), profiles.schema(name)
    got = subprocess.run([COUNTY, "export", "--db", db, "--hall", HALL, "--month", "2026-10", "--profile", name,
                          "--region", "431100"], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    recs = [json.loads(line) for line in got.stdout.splitlines()]
    assert len(recs) == 6
    for r in recs:
        jsonschema.validate(r, schema)
    assert recs == pinned(name, profile, db)
    f = profile["export"]["fields"]
    # A 追评 is 评价次数 2; a system default has its own channel code; times in the profile's format.
    second = [r for r in recs if r[f["number"]] == profile["export"]["numbers"]["2"]]
    assert [(r[f["case"]], r[f["time"]]) for r in second] == [("C-3", "2026-10-20 09:00:00")]
    defaults = [r for r in recs if r[f["channel_code"]] == profile["export"]["channels"]["default"]]
    assert [r[f["case"]] for r in defaults] == ["hall-a-ev-9-1-1"]
    assert by(recs, f, "C-2")[f["reasons"]] == ["attitude", "slow"]
    assert by(recs, f, "C-1")[f["staff"]] == "1024"
    # CSV: the same records, one column per field, Excel's BOM.
    out = subprocess.run([COUNTY, "export", "--db", db, "--hall", HALL, "--month", "2026-10", "--profile", name,
                          "--region", "431100", "--format", "csv"], capture_output=True, timeout=60).stdout
    assert out.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(out.decode("utf-8-sig"))))
    assert [r[f["case"]] for r in rows] == [r[f["case"]] for r in recs]
    assert by(rows, f, "C-2")[f["reasons"]] == "attitude;slow"


def by(recs, f, case):
    return next(r for r in recs if r[f["case"]] == case)


@pytest.mark.parametrize("name", ["national", "zhejiang"])
def test_levels_mapped_the_wrong_way_round_fail(db, name):
    profile = copy.deepcopy(profiles.load(name))
    levels = profile["export"]["levels"]
    codes = list(levels.values())
    profile["export"]["levels"] = dict(zip(levels, reversed(codes)))
    with pytest.raises(AssertionError):
        pinned(name, profile, db)
    store = open_store(db)
    try:
        recs = export.records(store, profile, HALL, START, END, "431100", ZONE)
    finally:
        store.close()
    # The schema alone catches it too: a name that disagrees with its code, or reasons on a good rating.
    with pytest.raises(jsonschema.ValidationError):
        for r in recs:
            jsonschema.validate(r, profiles.schema(name))


def test_a_channel_without_a_code_is_refused(db):
    profile = profiles.load("zhejiang")
    with pytest.raises(export.ExportError, match="no code for channel phone"):
        export.record({"case": "C-9", "item": None, "level": "satisfied", "channel": "phone", "number": 1,
                       "t": START, "reasons": [], "staff": None}, profile, "431100", ZONE)
    got = subprocess.run([COUNTY, "export", "--db", db, "--hall", HALL, "--month", "2026-10", "--region", "43"],
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 1 and "行政区划" in got.stderr
