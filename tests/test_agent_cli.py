"""The edge-agent command line: config check explains, devices commands,
help on every command, one-line errors."""
import hashlib
import os
import shutil
import subprocess

import pytest

from edge_agent import cli, config
from test_agent_support import EDGE_AGENT


def run(*args):
    return subprocess.run([EDGE_AGENT] + list(args), capture_output=True, text=True)


@pytest.fixture
def conf(tmp_path):
    p = tmp_path / "agent.toml"
    p.write_text('hall = "h1"\n[store]\npath = "%s"\n[http]\nport = 0\n' % (tmp_path / "agent.db"))
    return str(p)


@pytest.mark.parametrize("body, words", [
    ('hall = "h1"\n[mqtt]\nprot = 1\n', "did you mean 'port'"),
    ('hall = "h1"\n[mqtt]\nport = 70000\n', "port number"),
    ('hall = "h1"\n[mqtt]\nport = "1883"\n', "must be a whole number"),
    ('hall = "h1"\n[stor]\npath = "x"\n', "did you mean 'store'"),
    ('[mqtt]\nport = 1\n', "hall is required"),
    ('hall = "h 1"\n', "hall 'h 1' must be"),
    ('hall = "h1"\n[store]\ndisk_max_pct = 150\n', "percentage"),
    ('hall = "h1"\n[uplink]\nurl = "http://x"\n', "token is required"),
    ('hall = "h1"\n[uplink]\nurl = "http://county.example"\ntoken = "t"\n', "set [uplink] allow_plain_http = true"),
    ('hall = "h1"\n[quarantine]\nmax_rows_per_device = -1\n', "must not be negative"),
    ('hall = "h1"\n[http]\nmax_connections = 0\n', "max_connections and timeout_s must be above 0"),
    ('hall = "h1"\n[light]\npins = { gren = 5 }\n', "did you mean 'green'"),
    ('hall = = "h1"\n', "not valid TOML"),
    ('hall = "h1"\n[mqtt]\ntls_ca = "/nonexistent/ca.pem"\n', "no such file /nonexistent/ca.pem"),
    # [devices] goes into every device config: the protocol's rules, and a size the device takes.
    ('hall = "h1"\n[devices]\nprompt_s = 0\n', "prompt_s must be a whole number 1-3600"),
    ('hall = "h1"\n[devices]\nwarn_pct = 101\n', "must be a percentage"),
    ('hall = "h1"\n[devices]\ntargets = { default = 86401 }\n', "targets.default: item names, each with a whole"),
    ('hall = "h1"\n[devices]\ntargets = { default = true }\n', "targets.default"),
    ('hall = "h1"\n[devices]\ntargets = { default = 900, "a\\tb" = 60 }\n', "targets.a\\tb"),
    ('hall = "h1"\n[devices]\ntargets = { %s }\n' % ", ".join("I%040d = 600" % i for i in range(40)),
     "over the 2048 a device takes"),
    # The evaluators' reason screen: the county's categories, labels that fit the display.
    ('hall = "h1"\n[devices]\nreasons = { atitude = "态度不好" }\n', "did you mean 'attitude'"),
    ('hall = "h1"\n[devices]\nreasons = { attitude = "服务态度很不好" }\n', "a label of 1-6 characters"),
    ('hall = "h1"\n[devices]\nreasons = { attitude = "态度\\t不好" }\n', "a label of 1-6 characters"),
    ('hall = "h1"\n[devices]\nreasons = { attitude = 1 }\n', "reasons.attitude must be text"),
])
def test_config_check_explains_in_plain_words(tmp_path, body, words):
    p = tmp_path / "bad.toml"
    p.write_text(body)
    out = run("config", "check", "--config", str(p))
    assert out.returncode == 1
    assert words in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_config_check_ok_and_example_is_complete_and_valid(tmp_path, conf):
    out = run("--config", conf, "config", "check")
    assert out.returncode == 0 and "ok" in out.stdout
    example = run("config", "example").stdout
    shipped = open(os.path.join(os.path.dirname(cli.__file__), "..", "deploy", "edge-agent.example.toml")).read()
    assert example == shipped, "deploy/edge-agent.example.toml is stale: edge-agent config example > it"
    import tomllib
    config.validate(tomllib.loads(example))      # valid as shipped (paths are the Pi's)
    for section, key, *_ in config.KEYS:
        assert key in example


def test_config_example_out_writes_a_private_file(tmp_path):
    path = tmp_path / "edge-agent.toml"
    out = run("config", "example", "--out", str(path))
    assert out.returncode == 0, out.stderr
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == run("config", "example").stdout
    again = run("config", "example", "--out", str(path))
    assert again.returncode == 1 and "exists" in again.stderr


@pytest.mark.parametrize("secret", ['[mqtt]\npassword = "pw"', '[http]\ntoken = "tok"',
                                    '[uplink]\nurl = "https://county.example"\ntoken = "tok"'])
def test_config_check_warns_when_others_can_read_a_secret(tmp_path, secret):
    path = tmp_path / "agent.toml"
    path.write_text('hall = "h1"\n[store]\npath = "%s"\n%s\n' % (tmp_path / "agent.db", secret))
    path.chmod(0o644)
    out = run("config", "check", "--config", str(path))
    assert out.returncode == 0 and "ok" in out.stdout
    assert "warning" in out.stderr and "chmod 600 %s" % path in out.stderr
    path.chmod(0o600)
    out = run("config", "check", "--config", str(path))
    assert out.returncode == 0 and out.stderr == ""


def test_a_config_without_secrets_may_be_readable(tmp_path, conf):
    os.chmod(conf, 0o644)
    out = run("config", "check", "--config", conf)
    assert out.returncode == 0 and out.stderr == ""


def test_the_hall_tool_writes_its_agent_config_private(tmp_path):
    from tools.hall import Hall
    hall = Hall(str(tmp_path / "hall"))
    hall.write_agent_config()
    assert os.stat(hall.config_path).st_mode & 0o777 == 0o600
    assert run("config", "check", "--config", hall.config_path).stderr == ""


def test_every_command_has_help():
    for c in cli.COMMANDS:
        assert c.help, c.words
        out = run(*c.words, "--help")
        assert out.returncode == 0 and c.help in " ".join(out.stdout.split()), c.words
        for flags, kw in c.arguments:
            assert kw.get("help"), (c.words, flags)


def test_devices_add_list_show_retire_replace(conf, tmp_path):
    out = out_add = run("devices", "add", "ev-01", "--window", "A01", "--config", conf)
    assert out.returncode == 0, out.stderr
    key = [l.split()[1] for l in out.stdout.splitlines() if l.startswith("key ")][0]
    assert len(bytes.fromhex(key)) == 32
    assert run("--config", conf, "devices", "add", "ev-01", "--window", "A01").returncode == 1
    out = run("--config", conf, "devices", "add", "ev-02", "--window", "A02", "--key", "abcd")
    assert out.returncode == 1 and "32 bytes" in out.stderr
    assert "ev-01" in run("--config", conf, "devices", "list").stdout
    show = run("--config", conf, "devices", "show", "ev-01").stdout
    assert "A01" in show and key not in show
    # the fingerprint `hallctl info` prints for the key on the board, at add time and in show
    fingerprint = hashlib.sha256(bytes.fromhex(key)).hexdigest()[:8]
    assert "(fingerprint %s)" % fingerprint in out_add.stdout and fingerprint in show
    assert key in run("--config", conf, "devices", "show", "ev-01", "--show-key").stdout
    # the new board takes the window and the seq high-water mark
    from edge_agent.store import Store
    s = Store(str(tmp_path / "agent.db"))
    s.conn.execute("UPDATE devices SET hwm = 41 WHERE device = 'ev-01'")
    out = run("--config", conf, "devices", "replace", "ev-01", "ev-09")
    assert out.returncode == 0 and "above 41" in out.stdout, out.stderr
    rows = {r["device"]: r for r in s.devices.all()}
    assert rows["ev-09"]["window"] == "A01" and rows["ev-09"]["hwm"] == 41
    assert rows["ev-01"]["status"] == "retired" and rows["ev-01"]["replaced_by"] == "ev-09"
    assert run("--config", conf, "devices", "retire", "nope").stderr.startswith("edge-agent: error: no device")
    out = run("--config", conf, "window", "set", "A01", "--staff", "张三", "--staff-no", "1024", "--target-s", "600")
    assert out.returncode == 0
    from edge_agent import registry
    cfg = config.load(conf)
    msg = registry.device_config(s, "ev-09", cfg["devices"], 1)
    assert msg["staff"] == "张三" and msg["staff_no"] == "1024" and msg["hwm"] == 41
    assert msg["targets"]["default"] == 600


def test_status_without_a_running_agent(conf):
    run("--config", conf, "devices", "add", "ev-01", "--window", "A01")
    assert "quarantine is empty" in run("--config", conf, "quarantine", "list").stdout
    out = run("--config", conf, "status", "--json")
    assert out.returncode == 0 and '"committed": 0' in out.stdout
    assert "devices: 0 online, 1 offline" in run("--config", conf, "status").stdout


def test_systemd_unit_restarts_watches_and_hardens():
    unit = open(os.path.join(os.path.dirname(cli.__file__), "..", "deploy", "edge-agent.service")).read()
    for line in ("Type=notify", "Restart=always", "WatchdogSec=", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/qinglian", "NoNewPrivileges=true", "PrivateTmp=true",
                 "UMask=0077", "ExecStart=/opt/qinglian/.venv/bin/edge-agent run --config"):
        assert line in unit, line
    analyze = shutil.which("systemd-analyze")
    if analyze:
        out = subprocess.run([analyze, "verify", "--man=no", os.path.abspath(os.path.join(
            os.path.dirname(cli.__file__), "..", "deploy", "edge-agent.service"))], capture_output=True, text=True)
        complaints = [l for l in out.stderr.splitlines() if "is not executable" not in l and l.strip()]
        assert not complaints, complaints
