"""hallctl against a virtual device over a real pseudo-terminal, with the
real mpremote transport: what a technician does with a board on USB."""
import hashlib
import json
import os
import shutil
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
import serial

from harness import Mosquitto, VENV_BIN, free_port, wait_for
from test_agent_support import add_devices, broker_dir, edge_agent, write_config
from tools.hallctl import bundle, cli
from tools.hallctl.device import Board
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
        vd.start(ready_timeout=0)          # no agent here to make it ready: its presence is what counts
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
    assert "press EN (ESP32) or power-cycle" in out.stdout   # the technician learns the firmware stopped
    check = subprocess.run([os.path.join(VENV_BIN, "mpremote"), "connect", port.tty, "resume", "exec",
                            "import os; print(sorted(os.listdir()), sorted(os.listdir('lib/protocol')))"],
                           capture_output=True, text=True, timeout=60)
    assert "'board.json'" in check.stdout and "'evaluator.py'" in check.stdout
    assert "'font.qlf'" in check.stdout        # names pushed later must draw
    assert "'events.py'" in check.stdout
    assert "board_sim.py" not in check.stdout   # the simulator never ships

    files = bundle.files("esp32_devkitc")
    out = hallctl("update", port.tty)            # the board it was installed for
    assert out.returncode == 0, out.stderr
    assert "0 changed, %d unchanged, 0 removed" % len(files) in out.stdout
    assert "%" not in out.stdout                 # not one byte re-sent, not even the font
    out = hallctl("update", port.tty, "--no-font")
    assert "0 changed, %d unchanged, 0 removed" % (len(files) - 1) in out.stdout  # the font stays
    out = hallctl("info", port.tty)
    assert out.returncode == 0, out.stderr
    assert "esp32_devkitc" in out.stdout
    assert "%s, %d files, all as installed" % (bundle.firmware_version(files), len(files)) in out.stdout
    assert "ql-eval/" in out.stdout


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


def info(tty):
    out = hallctl("info", tty, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_info_on_a_blank_board_says_what_is_missing(bench):
    port, _ = bench
    out = hallctl("info", port.tty)
    assert out.returncode == 0, out.stderr
    for plain in ("no board file", "no firmware installed", "not provisioned", "outbox       empty", "free of"):
        assert plain in out.stdout
    facts = info(port.tty)
    assert facts["micropython"].startswith("1.") and facts["machine"]
    assert (facts["board"], facts["firmware"], facts["site"], facts["outbox"]) == (None, None, None, None)
    assert 0 < facts["flash"]["free"] <= facts["flash"]["total"]


def test_info_shows_the_site_and_a_key_fingerprint_never_the_key(bench):
    port, _ = bench
    key = bytes(range(40, 72))
    out = hallctl("provision", port.tty, "--hall", "hall-3", "--device", "ev-07", "--key", key.hex(),
                  "--broker", "10.1.2.3:1884", "--window", "C05", "--wifi-ssid", "hall-wifi",
                  "--wifi-password", "wifi-secret-pw", "--password", "broker-secret-pw")
    assert out.returncode == 0, out.stderr
    fingerprint = hashlib.sha256(key).hexdigest()[:8]
    text = hallctl("info", port.tty)
    facts = info(port.tty)
    assert facts["site"] == {"hall": "hall-3", "device": "ev-07", "window": "C05", "broker": "10.1.2.3:1884",
                             "ssid": "hall-wifi", "key_fingerprint": fingerprint}
    assert "hall-3/ev-07, window C05, broker 10.1.2.3:1884" in text.stdout and fingerprint in text.stdout
    for secret in (key.hex(), "wifi-secret-pw", "broker-secret-pw"):
        assert secret not in text.stdout + text.stderr + json.dumps(facts)


def _leave_unsent_events(tmp_path):
    """A device that rated with no agent in reach: its events wait on flash."""
    vd = VirtualDevice(str(tmp_path / "dev"), "hall-2", "ev-05", bytes(range(32)), free_port(),
                       site={"hwm": 0, "long_ms": 150})   # hwm: takes presses without the agent
    vd.start(ready_timeout=20)
    try:
        vd.call("A001")
        vd.staff("end")
        vd.press("satisfied")
        stats = vd.stats()
    finally:
        vd.stop()
    assert stats["thanks"] == 1
    waiting = stats["outbox"]
    assert waiting >= 3     # session start, session end, rating
    return vd.image, waiting


def _state(tty):
    """site.json and every outbox file, byte for byte."""
    with Board(tty) as board:
        names = sorted(e.name for e in board.t.fs_listdir("outbox"))
        return {p: bytes(board.read(p)) for p in ["site.json"] + ["outbox/" + n for n in names]}


def _run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_update_copies_only_what_changed_and_never_the_site_or_outbox(tmp_path, monkeypatch, capsys):
    image, waiting = _leave_unsent_events(tmp_path)
    port = VirtualSerial(str(tmp_path), image).start()
    try:
        tty = port.tty
        before = _state(tty)
        facts = info(tty)     # counted with the firmware's own outbox.py, read-only
        assert facts["outbox"]["events"] == waiting and facts["outbox"]["segments"] >= 1
        assert facts["site"]["device"] == "ev-05" and facts["firmware"] is None
        assert _state(tty) == before

        real = bundle.files("esp32_devkitc", font=False)
        retired, changed = tmp_path / "retired.py", tmp_path / "clock.py"
        retired.write_text("# a module the next bundle drops\n")
        changed.write_bytes(open(dict(real)["clock.py"], "rb").read() + b"# changed on the bench\n")
        older = real + [("lib/old/retired.py", str(retired))]
        monkeypatch.setattr(bundle, "files", lambda board, font=True: older)
        assert _run(capsys, "install", tty, "--no-font")[0] == 0
        with Board(tty) as board:
            board.write("notes.txt", b"the technician's own file")

        monkeypatch.setattr(bundle, "files", lambda board, font=True: [
            (r, str(changed) if r == "clock.py" else local) for r, local in real])
        rc, out, err = _run(capsys, "update", tty, "--no-font")
        assert rc == 0, err
        assert "1 changed, %d unchanged, 1 removed" % (len(real) - 1) in out
        assert "[1/1] clock.py" in out and "100%" in out
        with Board(tty) as board:
            assert bytes(board.read("clock.py")) == changed.read_bytes()
            assert board.t.fs_exists("notes.txt") and not board.t.fs_exists("lib/old")
        assert _state(tty) == before
        after = info(tty)
        assert after["outbox"]["events"] == waiting
        assert after["firmware"]["files"] == len(real) and not after["firmware"]["changed"]

        # A board that keeps other bytes than were sent is one clear error, and says so after.
        changed.write_bytes(changed.read_bytes() + b"# again\n")
        write = Board.write
        monkeypatch.setattr(Board, "write", lambda self, remote, data, progress=None: write(
            self, remote, data[:-1] if remote == "clock.py" else data, progress))
        rc, out, err = _run(capsys, "update", tty, "--no-font")
        assert rc == 1 and err.count("\n") == 1
        assert "clock.py on the board does not match what was sent" in err
        monkeypatch.setattr(Board, "write", write)
        assert info(tty)["firmware"]["partial"]
        assert "update not finished" in hallctl("info", tty).stdout
        rc, out, err = _run(capsys, "update", tty, "--no-font")
        assert rc == 0 and "1 changed" in out
        assert info(tty)["firmware"]["partial"] is False
        assert _state(tty) == before
    finally:
        port.stop()


def _site(tty):
    with Board(tty) as board:
        return json.loads(bytes(board.read("site.json")))


def test_provision_takes_secrets_from_a_file_stdin_or_the_environment(tmp_path, bench):
    port, _ = bench
    key = bytes(range(100, 132))
    key_file = tmp_path / "ev-08.key"
    key_file.write_text(key.hex() + "\n")
    env = dict(os.environ, QL_BROKER_PASSWORD="broker from env")
    out = subprocess.run([HALLCTL, "provision", port.tty, "--hall", "hall-3", "--device", "ev-08",
                          "--key-file", str(key_file), "--broker", "10.1.2.3", "--wifi-ssid", "hall",
                          "--wifi-password-file", "-"], input="wifi pass with spaces\n", env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    site = _site(port.tty)
    assert (site["key"], site["wifi_password"], site["password"]) == (key.hex(), "wifi pass with spaces",
                                                                       "broker from env")
    # The key from the environment alone; nothing secret on the command line.
    env = dict(os.environ, QL_DEVICE_KEY="ab" * 32, QL_WIFI_PASSWORD="w")
    out = subprocess.run([HALLCTL, "provision", port.tty, "--hall", "hall-3", "--device", "ev-08",
                          "--broker", "10.1.2.3"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (_site(port.tty)["key"], _site(port.tty)["wifi_password"]) == ("ab" * 32, "w")

    for argv, words in ((["--key", "00" * 32, "--key-file", str(key_file)], "not both"),
                        (["--key-file", "-", "--wifi-password-file", "-"], "only one secret"),
                        (["--key-file", str(tmp_path / "missing")], "cannot read --key-file"),
                        ([], "no device key")):
        out = subprocess.run([HALLCTL, "provision", port.tty, "--hall", "h", "--device", "d",
                              "--broker", "x"] + argv, env={k: v for k, v in os.environ.items()
                                                            if not k.startswith("QL_")},
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and words in out.stderr and out.stderr.count("\n") == 1, out.stderr
    helptext = hallctl("provision", "--help").stdout
    for words in ("--key-file", "QL_DEVICE_KEY", "QL_WIFI_PASSWORD", "visible to all users", "standard input"):
        assert words in " ".join(helptext.split()), words


def test_site_json_survives_a_cable_cut_mid_write(bench, monkeypatch, capsys):
    """The cable comes out halfway through site.json: the board keeps the old
    one whole (written aside, renamed only once all of it is there)."""
    port, _ = bench
    argv = ["provision", port.tty, "--hall", "hall-3", "--device", "ev-09", "--key", "11" * 32,
            "--broker", "10.0.0.1", "--wifi-ssid", "hall", "--wifi-password", "first"]
    assert _run(capsys, *argv)[0] == 0
    old = _site(port.tty)

    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport
    real = SerialTransport.fs_writefile

    def cut(self, dest, data, chunk_size=256, progress_callback=None):
        real(self, dest, data[:len(data) // 2], chunk_size)   # half of it reaches the flash
        raise TransportError("could not exec command")
    monkeypatch.setattr(SerialTransport, "fs_writefile", cut)
    rc, out, err = _run(capsys, *(argv[:-1] + ["second, a much longer password than before"]))
    assert rc == 1 and "site.json" in err and err.count("\n") == 1
    monkeypatch.setattr(SerialTransport, "fs_writefile", real)
    assert _site(port.tty) == old            # whole, and still the old one
    assert info(port.tty)["site"]["device"] == "ev-09"


def test_info_prints_board_strings_escaped(bench):
    """A board someone tampered with: what its files say reaches the terminal escaped."""
    port, _ = bench
    out = hallctl("provision", port.tty, "--hall", "hall-3", "--device", "ev-07", "--key", "22" * 32,
                  "--broker", "10.1.2.3", "--window", "C\x1b[2J")
    assert out.returncode == 1 and "--window C\\x1b[2J: 1-64 characters, no control" in out.stderr
    site = {"hall": "hall-3", "device": "ev-07", "key": "22" * 32, "broker_host": "10.1.2.3",
            "window": "C\x1b[2J", "ssid": "hall\x1b]0;owned\x07\u202e"}
    with Board(port.tty) as board:
        board.write("site.json", json.dumps(site).encode())
    text = hallctl("info", port.tty).stdout
    assert "C\\x1b[2J" in text and 'Wi-Fi "hall\\x1b]0;owned\\x07\\u202e"' in text
    raw = hallctl("info", port.tty, "--json").stdout
    assert json.loads(raw)["site"]["window"] == "C\x1b[2J"
    for out in (text, raw):
        assert not [c for c in out if c in "\x1b\x07\u202e"]


def _running(vd):
    try:
        return vd.stats()
    except OSError:
        return None


def test_a_production_board_keeps_its_secrets_from_the_usb_port(tmp_path):
    """install --production, provision, power up: the firmware runs with its
    console on the serial line, as a board's USB is. A development board
    hands site.json to anyone with mpremote; a production one answers
    hallctl info in one line and gives mpremote nothing, and keeps rating."""
    work, image = str(tmp_path), str(tmp_path / "flash.img")
    secrets = {"wifi": "wifi-secret-pw", "key": bytes(range(7, 39)).hex(), "broker": "broker-secret-pw"}
    mpremote = os.path.join(VENV_BIN, "mpremote")

    def bench(*argv, input=None):
        port = VirtualSerial(work, image).start()
        try:
            out = subprocess.run([HALLCTL, argv[0], port.tty] + list(argv[1:]), input=input,
                                 capture_output=True, text=True, timeout=300)
        finally:
            port.stop()
        assert out.returncode == 0, out.stderr
        return out.stdout

    def power_up():
        vd = VirtualDevice(os.path.join(work, "dev"), "ignored", "ignored", b"\0" * 32, 1)
        port = VirtualSerial(work, image, device=vd).start()
        wait_for(lambda: _running(vd), 30, what="the firmware running")
        return vd, port

    def read_site(tty):
        return subprocess.run([mpremote, "connect", tty, "resume", "exec", "print(open('site.json').read())"],
                              capture_output=True, text=True, timeout=60)

    bench("install", "--board", "esp32_devkitc", "--no-font")
    bench("provision", "--hall", "hall-5", "--device", "ev-50", "--key-file", "-", "--broker", "10.0.0.2",
          "--wifi-ssid", "hall", "--wifi-password", secrets["wifi"], "--password", secrets["broker"],
          input=secrets["key"])
    vd, port = power_up()
    try:   # today's board: a Ctrl-C on the cable and everything is readable
        out = read_site(port.tty)
        assert out.returncode == 0 and all(s in out.stdout for s in secrets.values())
    finally:
        port.stop()

    out = bench("install", "--board", "esp32_devkitc", "--no-font", "--production")
    assert "production board" in out and "provision it now" in out
    vd, port = power_up()
    try:
        boot = vd.stats()["boot"]
        started = time.monotonic()
        text = hallctl("info", port.tty)
        assert time.monotonic() - started < 8          # one look, not mpremote's 10 s wait
        assert text.returncode == 0 and text.stdout.count("\n") == 1, text
        assert "is a production board: its serial REPL is off" in text.stdout
        assert "hallctl flash %s --firmware FILE (erases the flash" % port.tty in text.stdout
        js = hallctl("info", port.tty, "--json")
        assert json.loads(js.stdout) == {"port": port.tty, "production": True, "serial_repl": False}
        again = hallctl("provision", port.tty, "--hall", "h", "--device", "d", "--key", "00" * 32,
                        "--broker", "x")
        assert again.returncode == 1 and "production board" in again.stderr and again.stderr.count("\n") == 1
        theft = read_site(port.tty)
        assert theft.returncode != 0
        for out in (text, js, again, theft):
            for s in secrets.values():
                assert s not in out.stdout + out.stderr
        st = vd.stats()                                  # never interrupted: still the same boot
        assert st["boot"] == boot and port.proc.alive()
    finally:
        port.stop()
