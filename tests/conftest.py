import os
import sys

# Tests import the harness and the project's packages from the checkout.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import pytest  # noqa: E402


@pytest.fixture
def broker(tmp_path):
    """A private Mosquitto (anonymous, loopback, persistent) for one test."""
    from harness import Mosquitto
    b = Mosquitto(str(tmp_path / "broker")).start()
    yield b
    b.stop()


@pytest.fixture
def evaluator_hall(tmp_path):
    """A whole hall (tools/hall.py: Mosquitto, county, agent) with one
    evaluator, ev-01 at A01, on the firmware's 64 KiB heap."""
    from tools.hall import Hall
    h = Hall(str(tmp_path / "hall"), hall="fw-hall", devices=1, heapsize="64k")
    try:
        yield h.start()
    finally:
        h.stop()


def pytest_collection_modifyitems(config, items):
    """A soak run lasts as long as it is asked to (`make soak HOURS=N`): its
    limit is those hours and one more, not the suite's 600 s per test (which
    cut the hour-long chaos run off at ten minutes). A test that names its
    own timeout keeps it."""
    limit = int(float(os.environ.get("QL_SOAK_HOURS", "1")) * 3600 + 3600)
    for item in items:
        if item.get_closest_marker("soak") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(limit))
