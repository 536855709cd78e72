"""A whole hall on one machine, from real parts: a private Mosquitto, the
reference county server, the edge agent and virtual evaluators running the
real firmware under MicroPython. `make demo` and the end-to-end tests use it.
"""
import json
import os
import secrets
import subprocess
import urllib.request

from edge_agent.config import write_private
from tools.procs import Mosquitto, Proc, VENV_BIN, free_port, wait_port, wait_for


def _toml_str(s):
    return json.dumps(s, ensure_ascii=False)


class Hall:
    def __init__(self, work_dir, hall="demo-hall", devices=5, token=None, heapsize=None, ratings_delay_min=1):
        self.work_dir = os.path.abspath(work_dir)
        os.makedirs(self.work_dir, exist_ok=True)
        self.hall = hall
        self.token = token or secrets.token_hex(16)
        self.manager_token = secrets.token_hex(16)     # the hall manager's: reads stats and reports
        self.device_ids = ["ev-%02d" % (i + 1) for i in range(devices)]
        self.keys = {d: secrets.token_bytes(32) for d in self.device_ids}
        self.heapsize = heapsize
        # The lobby screen's figures lag by this much (30 min on a real hall's
        # default): a demo shows them after a minute, a test at once (0).
        self.ratings_delay_min = ratings_delay_min
        self.county_port = free_port()
        self.http_port = free_port()
        self.broker = Mosquitto(os.path.join(self.work_dir, "broker"))
        self.config_path = os.path.join(self.work_dir, "edge-agent.toml")
        self.county = Proc("county-server", [
            os.path.join(VENV_BIN, "county-server"), "run",
            "--db", os.path.join(self.work_dir, "county.db"),
            "--host", "127.0.0.1", "--port", str(self.county_port),
            "--token", "%s=%s" % (self.hall, self.token),
            "--manager-token", "%s=%s" % (self.hall, self.manager_token)], self.work_dir)
        self.agent = Proc("edge-agent", [
            os.path.join(VENV_BIN, "edge-agent"), "run", "--config", self.config_path], self.work_dir)
        self.devices = {}

    @property
    def county_url(self):
        return "http://127.0.0.1:%d" % self.county_port

    @property
    def screen_url(self):
        return "http://127.0.0.1:%d/" % self.http_port

    def write_agent_config(self):
        # The config holds the hall's county token: 0600, as on a Pi.
        write_private(self.config_path, "\n".join([
            "hall = %s" % _toml_str(self.hall),
            "[mqtt]",
            'host = "127.0.0.1"',
            "port = %d" % self.broker.port,
            "[store]",
            "path = %s" % _toml_str(os.path.join(self.work_dir, "agent.db")),
            "[uplink]",
            "url = %s" % _toml_str(self.county_url),
            "token = %s" % _toml_str(self.token),
            "allow_plain_http = true",   # the county runs on this machine
            "interval_s = 1",
            "[http]",
            'host = "127.0.0.1"',
            "port = %d" % self.http_port,
            "[screen]",
            "ratings_delay_min = %d" % self.ratings_delay_min,
            "",
        ]))

    def edge_agent(self, *args):
        out = subprocess.run([os.path.join(VENV_BIN, "edge-agent")] + list(args) + ["--config", self.config_path],
                             capture_output=True, text=True, cwd=self.work_dir)
        if out.returncode != 0:
            raise RuntimeError("edge-agent %s failed: %s" % (" ".join(args), out.stderr.strip()))
        return out.stdout

    def start(self):
        from tools.vdevice import VirtualDevice
        self.broker.start()
        self.county.start()
        wait_port(self.county_port, 20)
        self.write_agent_config()
        for i, d in enumerate(self.device_ids):
            self.edge_agent("devices", "add", d, "--window", "A%02d" % (i + 1), "--key", self.keys[d].hex())
        self.agent.start()
        for i, d in enumerate(self.device_ids):
            vd = VirtualDevice(os.path.join(self.work_dir, d), self.hall, d, self.keys[d], self.broker.port,
                               window="A%02d" % (i + 1), heapsize=self.heapsize)
            self.devices[d] = vd.start()
        return self

    def stop(self):
        for vd in self.devices.values():
            vd.stop()
        for p in (self.agent, self.county, self.broker):
            p.stop()

    def county_stats(self):
        req = urllib.request.Request("%s/v1/halls/%s/stats" % (self.county_url, self.hall),
                                     headers={"Authorization": "Bearer " + self.manager_token})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def county_ratings(self):
        try:
            return self.county_stats().get("events", {}).get("rating", 0)
        except OSError:
            return None

    def wait_county_ratings(self, n, timeout=120):
        return wait_for(lambda: self.county_ratings() == n or None, timeout, 0.5,
                        "%d ratings at the county" % n)
