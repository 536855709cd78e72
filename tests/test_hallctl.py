"""hallctl against a virtual device over a real pseudo-terminal, with the
real mpremote transport: what a technician does with a board on USB."""
import os
import shutil
import subprocess

import paho.mqtt.client as mqtt
import pytest
import serial

from harness import Mosquitto, VENV_BIN, free_port, wait_for
from test_agent_support import add_devices, broker_dir, edge_agent, write_config
from tools.vdevice import VirtualDevice
from tools.vserial import VirtualSerial

pytestmark = pytest.mark.skipif(not shutil.which("socat"), reason="socat is installed by make (tools/system-deps.sh)")
HALLCTL = os.path.join(VENV_BIN, "hallctl")


def hallctl(*args, timeout=120):
    return subprocess.run([HALLCTL] + list(args), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def bench(tmp_path):
    """A board on the technician's bench: a fresh flash image behind a serial port."""
    image = str(tmp_path / "flash.img")
    port = VirtualSerial(str(tmp_path), image).start()
    yield port, image
    port.stop()


def test_provisioned_device_logs_in_to_the_secured_broker(tmp_path, bench):
    """The technician's path: register with the agent, secure the broker with
    broker-config, provision over serial; the board then logs in with the
    derived password and is let in only to its own topics."""
    port, image = bench
    work, bdir = str(tmp_path), broker_dir()
    mqtt_port = free_port()
    config = write_config(work, mqtt_port, hall="hall-7",
                          extra='username = "agent-hall-7"\npassword = "agent-secret"')
    key = add_devices(config, ["ev-42"])["ev-42"]
    edge_agent(config, "broker-config", "--out", bdir, "--data-dir", bdir + "/data",
               "--listen", "127.0.0.1", "--port", str(mqtt_port))
    broker = Mosquitto(bdir, port=mqtt_port, conf=open(bdir + "/mosquitto.conf").read()).start()
    try:
        out = hallctl("provision", port.tty, "--hall", "hall-7", "--device", "ev-42", "--key", key.hex(),
                      "--broker", "127.0.0.1:%d" % mqtt_port, "--window", "B02")
        assert out.returncode == 0, out.stderr
        assert "provisioned hall-7/ev-42" in out.stdout
        port.stop()  # unplug from the bench, power up in the hall

        seen = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        sub.username_pw_set("agent-hall-7", "agent-secret")
        sub.on_message = lambda c, u, m: seen.append(m.topic)
        sub.connect("127.0.0.1", mqtt_port)
        sub.subscribe("qinglian/v1/+/+/status", 1)
        sub.loop_start()
        # The identity comes from the flash hallctl wrote, not from the runner.
        vd = VirtualDevice(str(tmp_path / "dev"), "ignored", "ignored", b"\0" * 32, 1)
        vd.image = image
        vd.start()
        try:
            wait_for(lambda: "qinglian/v1/hall-7/ev-42/status" in seen, 30,
                     what="the provisioned device's presence through the ACL")
        finally:
            vd.stop()
            sub.loop_stop()
    finally:
        broker.stop()


def test_install_copies_the_firmware_bundle(bench):
    port, _ = bench
    out = hallctl("install", port.tty, "--board", "esp32_devkitc", timeout=300)
    assert out.returncode == 0, out.stderr
    assert "100%" in out.stdout and "installed" in out.stdout
    check = subprocess.run([os.path.join(VENV_BIN, "mpremote"), "connect", port.tty, "resume", "exec",
                            "import os; print(sorted(os.listdir()), sorted(os.listdir('lib/protocol')))"],
                           capture_output=True, text=True, timeout=60)
    assert "'board.json'" in check.stdout and "'evaluator.py'" in check.stdout
    assert "'font.qlf'" in check.stdout        # names pushed later must draw
    assert "'events.py'" in check.stdout
    assert "board_sim.py" not in check.stdout   # the simulator never ships


def test_busy_port_is_one_clear_line(bench):
    port, _ = bench
    with serial.Serial(port.tty, exclusive=True):
        out = hallctl("provision", port.tty, "--hall", "h", "--device", "d", "--key", "00" * 32,
                      "--broker", "127.0.0.1")
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "another program holds it" in out.stderr


def test_missing_port_and_bad_key_are_clear(tmp_path):
    out = hallctl("provision", str(tmp_path / "ttyUSB9"), "--hall", "h", "--device", "d",
                  "--key", "00" * 32, "--broker", "x")
    assert out.returncode == 1 and "no serial port" in out.stderr
    out = hallctl("provision", str(tmp_path / "ttyUSB9"), "--hall", "h", "--device", "d",
                  "--key", "abc", "--broker", "x")
    assert out.returncode == 1 and "64 hex characters" in out.stderr
