"""`hallctl fleet` through the real agent: every device's newest status as
the agent stored it, those that need a visit first and why; an agent that
cannot be reached is named, the others still shown."""
import json
import subprocess

from harness import Mosquitto, VENV_BIN, wait_for
from test_agent_support import PahoDevice, add_devices, free_port, start_agent, status, store_count, write_config

HALL = "h1"
HALLCTL = VENV_BIN + "/hallctl"


def health(device, seq, **kw):
    ev = status(device, seq, alarm=kw.pop("alarm", None), outbox=kw.pop("outbox", 0))
    ev.update(kw)
    return ev


def hallctl(*args):
    return subprocess.run([HALLCTL, "fleet"] + list(args), capture_output=True, text=True, timeout=60)


def test_fleet_lists_the_devices_that_need_a_visit_first(tmp_path):
    work = str(tmp_path)
    broker = Mosquitto(work + "/broker", port=free_port()).start()
    http = free_port()
    config = write_config(work, broker.port, hall=HALL, http_port=http)
    names = ["ev-ok", "ev-dog", "ev-heap", "ev-far", "ev-full", "ev-calm"]
    keys = add_devices(config, names)
    agent = start_agent(work, config, http)
    devs = {d: PahoDevice(HALL, d, keys[d], broker.port).start() for d in names}
    try:
        wait_for(lambda: all(d.connected.is_set() for d in devs.values()), 20, what="devices connected")
        devs["ev-ok"].send(health("ev-ok", 1, rssi=55))
        devs["ev-dog"].send(health("ev-dog", 1, reset="power_on"))
        devs["ev-dog"].send(health("ev-dog", 2, reset="watchdog", fw="ql-eval/0.2"))
        devs["ev-heap"].send(health("ev-heap", 1, heap=4000))
        devs["ev-far"].send(health("ev-far", 1, rssi=88))
        devs["ev-full"].send(health("ev-full", 1, outbox=2400, alarm="outbox_full,odd\u202e"))
        devs["ev-calm"].send(health("ev-calm", 1))
        wait_for(lambda: store_count(work + "/agent.db") == 7, 20, what="7 status events stored")
        devs["ev-dog"].send(health("ev-dog", 2, reset="watchdog", fw="ql-eval/0.2"))   # a resend changes nothing

        out = hallctl("--agent", "http://127.0.0.1:%d" % http, "--json")
        assert out.returncode == 0, out.stderr
        rows = json.loads(out.stdout)["devices"]
        by = {r["device"]: r for r in rows}
        assert [r["device"] for r in rows][:2] == ["ev-full", "ev-dog"]        # alarm first, then a watchdog reset
        assert by["ev-full"]["visit"] == ["alarm", "outbox"] and by["ev-full"]["alarms"] == ["outbox_full", "odd\u202e"]
        assert by["ev-dog"]["visit"] == ["reset"] and by["ev-dog"]["reset"] == "watchdog"
        assert by["ev-heap"]["visit"] == ["heap"] and by["ev-far"]["visit"] == ["rssi"]
        assert by["ev-ok"]["visit"] == [] and rows[-1]["device"] in ("ev-ok", "ev-calm")
        assert by["ev-ok"]["rssi"] == 55 and by["ev-ok"]["fw"] == "paho"      # presence's fw, the live one

        # Two halls, one of them not there: the one that is, and a named failure.
        dead = "http://127.0.0.1:%d" % free_port()
        out = hallctl("--agent", "http://127.0.0.1:%d" % http, "--agent", dead, "--timeout", "3")
        assert out.returncode == 1
        assert "hallctl: %s: agent not reachable" % dead in out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].split()[:3] == ["hall", "device", "window"]
        assert lines[1].split()[1] == "ev-full" and "alarm: outbox_full" in lines[1]
        assert "6 device(s), 4 need a visit" in out.stdout
        assert "\u202e" not in out.stdout and "odd\\u202e" in out.stdout      # a bidi override, shown escaped
        assert hallctl("--agent", "file:///etc/passwd").returncode == 1
        assert "give the agent's address" in hallctl("--agent", "file:///etc/passwd").stderr
    finally:
        for d in devs.values():
            d.stop()
        agent.stop()
        broker.stop()
