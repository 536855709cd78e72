"""The device's side of requests (protocol SPEC 'Requests'), firmware/uplink.py
under the real MicroPython: see tests/mp/uplink_requests.py. The round trip
with the real agent is in tests/test_agent_requests.py and the kiosk's tests."""
import os
import subprocess

from harness import MICROPYTHON, ROOT, micropython_path


def test_requests_continue_above_rq_and_retry_once_when_behind():
    out = subprocess.run([MICROPYTHON, os.path.join(ROOT, "tests", "mp", "uplink_requests.py")],
                         env=dict(os.environ, MICROPYPATH=micropython_path()), capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip().endswith("PASS"), out.stdout + out.stderr
