"""Test helpers. The process machinery lives in tools/procs.py because
`make demo` runs the same real processes; test-only helpers go below."""
from tools.procs import *  # noqa: F401,F403
from tools.procs import ROOT, VENV_BIN, MICROPYTHON, MPLIB, MOSQUITTO  # noqa: F401
