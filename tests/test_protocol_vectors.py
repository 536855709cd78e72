"""Every golden vector passes under CPython and under the real MicroPython."""
import os
import subprocess
import sys

import pytest

from harness import MICROPYTHON, ROOT, micropython_path

VECTORS = os.path.join(ROOT, "protocol", "vectors.json")
RUNNER = os.path.join(ROOT, "tests", "mp", "run_vectors.py")


def run(argv, env):
    out = subprocess.run(argv + [RUNNER, VECTORS], env=dict(os.environ, **env), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    return out.stdout + out.stderr


def test_vectors_file_is_current():
    assert subprocess.run([sys.executable, "-m", "tools.gen_vectors", "--check"], cwd=ROOT).returncode == 0


@pytest.mark.parametrize("interpreter", ["cpython", "micropython"])
def test_all_vectors(interpreter):
    if interpreter == "cpython":
        out = run([sys.executable], {"PYTHONPATH": ROOT})
    else:
        out = run([MICROPYTHON], {"MICROPYPATH": micropython_path()})
    assert "vectors ok" in out, out
    assert "FAIL" not in out, out
