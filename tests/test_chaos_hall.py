"""The whole hall under a seeded fault schedule (tools/chaos.py): every
press a citizen was thanked for (window and kiosk) is at the county exactly
once, every ticket accounted for, every print job on paper at most once,
the quarantine exactly the bad inputs sent. The seed and
the schedule are printed; `python -m tools.chaos --seed N` replays a run.

`make test` runs a short hall, 60 s with a fault every ~4.5 s (every kind
dealt, twelve faults); `make soak HOURS=N` runs it for hours, one every ~6 s."""
import os
import random

import pytest

from tools.chaos import FAULTS, ChaosHall
from tools.faults import SmallDisk


def _county_db():
    """The running PostgreSQL when there is one (the county's production
    store), else SQLite; the schema is dropped afterwards."""
    try:
        from test_county import pg_url
        return pg_url()
    except pytest.skip.Exception:
        return None


def _run(tmp_path, seed, devices, seconds, every_s=6.0):
    pg = _county_db()
    hall = ChaosHall(str(tmp_path / "hall"), seed, devices=devices, seconds=seconds,
                     county_db=pg[2] if pg else None, every_s=every_s)
    try:
        hall.start()
        report = hall.run()
        assert report["thanked"] > devices, "too few presses got through to mean anything"
        assert report["channels"].get("kiosk"), "no kiosk rating in the run"
        assert report["prints"] and report["tickets"].get("called"), report
        kinds = {k for _, k, _, w in report["faults"] if not w.startswith(("skipped", "failed"))}
        assert len(kinds) >= 4 and "device_replace" in kinds, report["faults"]
        if {k for _, k, _, _ in hall.plan} >= set(FAULTS):     # a schedule long enough to deal every kind
            assert kinds >= set(FAULTS) - (set() if SmallDisk.available() else {"disk_full"}), report["faults"]
    finally:
        hall.close()
        if pg:
            pg[0].execute("DROP SCHEMA %s CASCADE" % pg[1])
            pg[0].close()


def test_a_hall_in_chaos_counts_every_thanked_press_once(tmp_path):
    seed = int(os.environ.get("QL_CHAOS_SEED", "20261131"))
    _run(tmp_path, seed, devices=int(os.environ.get("QL_CHAOS_DEVICES", "20")),
         seconds=float(os.environ.get("QL_CHAOS_SECONDS", "60")),
         every_s=float(os.environ.get("QL_CHAOS_EVERY_S", "4.5")))


@pytest.mark.soak
def test_a_hall_in_chaos_for_hours(tmp_path):
    hours = float(os.environ.get("QL_SOAK_HOURS", "1"))
    _run(tmp_path, random.SystemRandom().getrandbits(31), devices=20, seconds=hours * 3600)
