"""Hardware in the loop, opt-in: a real board with the firmware installed
(`hallctl install`) on the serial port named by QL_HIL_PORT, e.g.

    QL_HIL_PORT=/dev/ttyUSB0 .venv/bin/pytest -q tests/test_hardware_hil.py

Hands off the buttons while it runs; watch the light go green, yellow, red
and off, hear one beep, and read "QL self-test" on the display. Skipped
without QL_HIL_PORT. QL_HIL_WIFI="ssid:password" also checks Wi-Fi."""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPREMOTE = os.path.join(ROOT, ".venv", "bin", "mpremote")
PORT = os.environ.get("QL_HIL_PORT")

pytestmark = pytest.mark.skipif(not PORT, reason="no board attached: set QL_HIL_PORT=/dev/ttyUSB0 to run")

SELF_TEST = r'''
import json, time, board
b = board.load()
out = {"name": b.name, "cause": b.reset_cause(), "root": b.mount_flash(),
       "buttons": dict((k, f()) for k, f in b.buttons.items())}
for c in ("green", "yellow", "red", None):
    b.set_light(c)
    time.sleep_ms(400)
b.beep(120)
b.display.fill(0)
b.display.text("QL self-test", 0, 0)
b.display.show()
out["faults"] = b.faults
wifi = %r
if wifi:
    b.wifi_connect(*wifi.split(":", 1))
    for _ in range(200):
        if b.wifi_connected():
            break
        time.sleep_ms(100)
    out["wifi"] = [b.wifi_connected(), b.rssi()]
print("HIL " + json.dumps(out))
'''


def test_board_self_test():
    wifi = os.environ.get("QL_HIL_WIFI", "")
    r = subprocess.run([MPREMOTE, "connect", PORT, "exec", SELF_TEST % wifi],
                       capture_output=True, text=True, timeout=120)
    lines = [l for l in r.stdout.splitlines() if l.startswith("HIL ")]
    assert lines, r.stdout + r.stderr
    out = json.loads(lines[-1][4:])
    assert out["buttons"] and set(out["buttons"].values()) == {1}, "a button reads pressed: %s" % out["buttons"]
    assert out["root"] == "/" and out["faults"] == []
    assert out["cause"] in ("power_on", "watchdog", "soft", "brownout", "deep_sleep", "intentional")
    if wifi:
        assert out["wifi"][0] is True and out["wifi"][1] < 0
