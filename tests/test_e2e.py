"""From the button to the county database, with every real part:
Mosquitto, the county server, the edge agent and three evaluators running
the firmware under MicroPython. N ratings pressed -> exactly N at the county."""
import pytest

from tools.hall import Hall

LEVELS = ["very_satisfied", "satisfied", "basically_satisfied", "dissatisfied", "very_dissatisfied"]


@pytest.fixture
def hall(tmp_path):
    h = Hall(str(tmp_path / "hall"), hall="e2e-hall", devices=3)
    try:
        yield h.start()
    finally:
        h.stop()


def test_every_press_reaches_the_county_exactly_once(hall):
    n = 0
    for round_ in range(5):
        for i, vd in enumerate(hall.devices.values()):
            vd.call("A%03d" % (round_ * 10 + i))
            vd.staff("end")
            vd.press(LEVELS[(round_ + i) % 5])
            n += 1
    hall.wait_county_ratings(n, timeout=120)
    assert sum(vd.stats()["thanks"] for vd in hall.devices.values()) == n
    by_level = hall.county_stats()["ratings"]
    assert sum(by_level.values()) == n
