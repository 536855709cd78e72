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
