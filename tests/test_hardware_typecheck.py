"""The real-board code cannot run here, so pyright checks it against the
MicroPython board stubs (pyrightconfig.<port>.json): a call the board's
`machine`/`network` do not have fails the suite. A planted bad call proves
the check is alive (without the venv settings `machine` does not resolve
and pyright would pass everything)."""
import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYRIGHT = os.path.join(ROOT, "node_modules", ".bin", "pyright")
PORTS = ("esp32", "rp2")

pytestmark = pytest.mark.skipif(shutil.which("node") is None,
                                reason="node is not installed: `make setup` installs nodejs and npm")


@pytest.fixture(scope="module", autouse=True)
def stubs():
    stamps = [os.path.join(ROOT, "node_modules", ".installed"), os.path.join(ROOT, "build", "mplib", ".done")]
    stamps += [os.path.join(ROOT, "build", "stubs-" + p, ".installed") for p in PORTS]
    if not all(map(os.path.exists, stamps)):
        print("setting up pyright and the board stubs: make hardware-deps build/mplib/.done")
        subprocess.run(["make", "-s", "hardware-deps", "build/mplib/.done"], cwd=ROOT, check=True)


def pyright(config):
    r = subprocess.run([PYRIGHT, "--outputjson", "-p", config], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    report = json.loads(r.stdout)
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    return r.returncode, report, errors


def _show(errors):
    return "\n".join("%s:%d: %s" % (os.path.relpath(e["file"], ROOT), e["range"]["start"]["line"] + 1,
                                    e["message"]) for e in errors)


@pytest.mark.parametrize("port", PORTS)
def test_board_code_matches_the_port_stubs(port):
    rc, report, errors = pyright(os.path.join(ROOT, "pyrightconfig.%s.json" % port))
    assert errors == [], _show(errors)
    assert rc == 0
    # Really checked: the port module and the shared one were analysed.
    assert report["summary"]["filesAnalyzed"] >= 2


@pytest.mark.parametrize("port", PORTS)
def test_a_call_the_board_lacks_fails_the_check(port, tmp_path):
    src = os.path.join(ROOT, "firmware", "board_%s.py" % port)
    planted = tmp_path / ("board_%s.py" % port)
    planted.write_text(open(src).read() + "\nfrom machine import Pin\nPin(4).bogus()\n")
    with open(os.path.join(ROOT, "pyrightconfig.%s.json" % port)) as f:
        conf = json.loads("".join(l for l in f if not l.lstrip().startswith("//")))
    conf.update(include=[str(planted)],
                typeshedPath=os.path.join(ROOT, conf["typeshedPath"]),
                venvPath=os.path.join(ROOT, conf["venvPath"]),
                extraPaths=[os.path.join(ROOT, p) for p in conf["extraPaths"]])
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(conf))
    rc, _, errors = pyright(str(tmp_path / "pyrightconfig.json"))
    assert rc != 0
    assert [e["rule"] for e in errors] == ["reportAttributeAccessIssue"], _show(errors)
    assert "bogus" in errors[0]["message"] and "Pin" in errors[0]["message"]


def test_the_kiosk_app_is_checked_for_its_esp32_s3_board():
    # The kiosk runs only on the ESP32-S3 kiosk board: its modules are in the esp32 check.
    with open(os.path.join(ROOT, "pyrightconfig.esp32.json")) as f:
        conf = json.loads("".join(l for l in f if not l.lstrip().startswith("//")))
    assert {"firmware/kiosk.py", "firmware/kiosk_print.py"} <= set(conf["include"])
