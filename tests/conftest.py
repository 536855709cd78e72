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


def pytest_collection_modifyitems(config, items):
    """A soak run lasts as long as it is asked to (`make soak HOURS=N`): its
    limit is those hours and one more, not the suite's 600 s per test (which
    cut the hour-long chaos run off at ten minutes). A test that names its
    own timeout keeps it."""
    limit = int(float(os.environ.get("QL_SOAK_HOURS", "1")) * 3600 + 3600)
    for item in items:
        if item.get_closest_marker("soak") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(limit))
