"""Board definitions are checked against what the chip allows before a board
is flashed: the shipped files pass, and each wiring mistake a technician can
make is refused with a message naming the key and the reason."""
import copy
import glob
import json
import os
import subprocess
import sys

import pytest

from hardware import boards

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = sorted(glob.glob(os.path.join(ROOT, "hardware", "boards", "*.json")))


def shipped(name):
    with open(os.path.join(ROOT, "hardware", "boards", name + ".json")) as f:
        return json.load(f)


def test_shipped_boards_are_valid_and_complete():
    assert {os.path.basename(f) for f in FILES} >= {"esp32_devkitc.json", "pico_w.json"}
    for path in FILES:
        board = boards.load(path)
        if board.get("app") != "kiosk":
            assert set(board["buttons"]) == set(boards.BUTTONS)
        errors, warnings = boards.validate(board)
        assert (errors, warnings) == ([], []), path


def test_firmware_button_names_match():
    # The evaluator's keys (firmware/evaluator.py): both take the levels from protocol/.
    import protocol
    src = open(os.path.join(ROOT, "firmware", "evaluator.py")).read()
    assert 'BUTTONS = list(protocol.LEVELS)' in src and 'BUTTONS.append("staff")' in src
    assert boards.BUTTONS == protocol.LEVELS + ("staff",)


def broken(name, change):
    board = copy.deepcopy(shipped(name))
    change(board)
    return boards.validate(board)[0]


@pytest.mark.parametrize("name, change, expect", [
    ("esp32_devkitc", lambda b: b["buttons"].update(staff=34),
     "buttons.staff: GPIO34 is input-only on ESP32-WROOM-32 and has no internal pull-up"),
    ("esp32_devkitc", lambda b: b["buttons"].update(satisfied=0),
     "buttons.satisfied: GPIO0 is a strapping pin; a press during power-up changes the boot mode"),
    ("esp32_devkitc", lambda b: b["light"].update(red=7),
     "light.red: GPIO7 is wired to the module's SPI flash"),
    ("esp32_devkitc", lambda b: b["light"].update(red=36),
     "light.red: GPIO36 is input-only on ESP32-WROOM-32 and cannot drive an output"),
    ("esp32_devkitc", lambda b: b["buzzer"].update(pin=1),
     "buzzer.pin: GPIO1 is UART0, the USB serial console"),
    ("esp32_devkitc", lambda b: b["buzzer"].update(pin=24),
     "buzzer.pin: GPIO24 does not exist on ESP32-WROOM-32"),
    ("esp32_devkitc", lambda b: b["buzzer"].update(pin=21),
     "display.i2c.sda: GPIO21 is already used by buzzer.pin"),
    ("esp32_devkitc", lambda b: b["buttons"].pop("staff"),
     "buttons.staff: missing"),
    ("esp32_devkitc", lambda b: b["display"]["i2c"].update(addr=0x27),
     "display.i2c.addr: 39 is not an SSD1306 address"),
    ("pico_w", lambda b: b["display"]["i2c"].update(sda=6),
     "display.i2c.sda: I2C0 SDA can only be on GPIO 0, 4, 8, 12, 16, 20, not GPIO6"),
    ("pico_w", lambda b: b["light"].update(green=25),
     "light.green: GPIO25 is used by the CYW43439 Wi-Fi chip on the Pico W"),
    ("pico_w", lambda b: b["buttons"].update(very_satisfied=11),
     "buttons.very_satisfied: GPIO11 is already used by buttons.satisfied"),
    ("pico_w", lambda b: b["buzzer"].update(duty_u16=70000),
     "buzzer.duty_u16: 70000 is outside 1..65535"),
    ("pico_w", lambda b: b["wifi"].update(country="china"),
     "wifi.country: 'china' is not a two-letter country code"),
    ("pico_w", lambda b: b.update(chip="esp8266"),
     "chip: 'esp8266' is not one of esp32, esp32s3, rp2040_pico_w"),
])
def test_wiring_mistakes_are_refused(name, change, expect):
    errors = broken(name, change)
    assert any(e.startswith(expect) for e in errors), errors


def test_cli_rejects_a_bad_file_in_one_line(tmp_path):
    board = shipped("esp32_devkitc")
    board["buttons"]["dissatisfied"] = 35
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(board))
    good = os.path.join(ROOT, "hardware", "boards", "pico_w.json")
    r = subprocess.run([sys.executable, "-m", "hardware.boards", str(bad), good],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "error: bad.json: buttons.dissatisfied: GPIO35 is input-only on ESP32-WROOM-32 "
        "and has no internal pull-up; an active-low button needs one"]
    assert r.stdout.startswith("ok: pico_w.json")


def test_cli_rejects_broken_json(tmp_path):
    bad = tmp_path / "torn.json"
    bad.write_text('{"chip": "esp32", ')
    with pytest.raises(boards.BoardError, match="^torn.json: "):
        boards.load(str(bad))


LABELS = {"very_satisfied": "非常满意 button", "satisfied": "| 满意 button", "basically_satisfied": "基本满意 button",
          "dissatisfied": "| 不满意 button", "very_dissatisfied": "非常不满意 button", "staff": "staff key",
          "green": "green LED", "yellow": "yellow LED", "red": "red LED", "buzzer": "buzzer",
          "sda": "SSD1306 SDA", "scl": "SSD1306 SCL"}


@pytest.mark.parametrize("name, heading, prefix", [("esp32_devkitc", "## Wiring: ESP32-DevKitC", ""),
                                                   ("pico_w", "## Wiring: Raspberry Pi Pico W", "GP")])
def test_readme_wiring_table_matches_the_board_file(name, heading, prefix):
    readme = open(os.path.join(ROOT, "hardware", "README.md"), encoding="utf-8").read()
    section = readme.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    board = shipped(name)
    pins = dict(board["buttons"])
    pins.update((c, board["light"][c]) for c in ("green", "yellow", "red"))
    pins.update(buzzer=board["buzzer"]["pin"], sda=board["display"]["i2c"]["sda"], scl=board["display"]["i2c"]["scl"])
    for role, gpio in pins.items():
        row = rows.get("%s%d" % (prefix, gpio), "")
        assert LABELS[role] in row, "README %s: GPIO %d should be %s, row is %r" % (name, gpio, LABELS[role], row)


@pytest.mark.parametrize("module", ["hardware.boards", "tools.fontgen"])
def test_hardware_tools_explain_themselves(module):
    r = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0
    description = r.stdout.split("\n\n")[1]
    assert len(description.strip()) > 20, r.stdout
