"""A whole hall on one machine, from real parts: a private Mosquitto, the
reference county server, the edge agent, virtual evaluators and virtual
self-service kiosks (tools/vkiosk.py: the kiosk app with its simulated
printer and scanner) running the real firmware under MicroPython.
`make demo`, the end-to-end and the kiosk tests use it.

    hall = Hall(work, devices=2, kiosks=1).start()
    hall.post_cases([...])          # as a business system would (API.md 'Cases')
    hall.kiosks["ks-01"].scan(...)
    hall.county_events("rating")    # what the county stored, from its database

The county signs rating links (`--link-secret-file`) and takes case events from
the hall's business system (`--system-token`); its links point at itself.
"""
import json
import os
import secrets
import sqlite3
import subprocess
import urllib.error
import urllib.request

from edge_agent.config import write_private
from tools.procs import Mosquitto, Proc, VENV_BIN, free_port, wait_port, wait_for


def store_rows(path, sql, args=()):
    """Rows of a query on an agent's store (its SQLite file), as committed."""
    db = sqlite3.connect(path, timeout=30)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def stored_events(path, kind):
    """An agent's stored events of `kind` (their bodies), by device and seq."""
    return [json.loads(b) for (b,) in store_rows(path, "SELECT body FROM events WHERE kind = ? "
                                                       "ORDER BY device, seq", (kind,))]


def _toml_str(s):
    return json.dumps(s, ensure_ascii=False)


# A kiosk's board: the budget of an ESP32-S3 without PSRAM (issue 8).
KIOSK_HEAP = "128k"


class Hall:
    """`devices` evaluators (ev-01.., windows A01..) and `kiosks` kiosks
    (ks-01.., K01..). `today`: the county's day for case lights (its
    `--today`; None: the real date). `agent_config`: extra TOML sections for
    the agent ({section: {key: value}}), such as a short [kiosk] cases_poll_s.
    `kiosk_opts`: VirtualKiosk keywords (printer_opts, site, heapsize).
    `ratings_delay_min`: how far the lobby screen's figures lag (30 min on a
    real hall's default): a demo shows them after a minute, a test at once (0).
    `queues` ({letter: name}) and `serve` ({window: letters}) are set before
    the agent and the devices start, so a kiosk's first menu has them and it
    reserves its blocks at boot."""

    def __init__(self, work_dir, hall="demo-hall", devices=5, token=None, heapsize=None, kiosks=0,
                 today=None, agent_config=None, kiosk_opts=None, ratings_delay_min=1, queues=None, serve=None):
        self.work_dir = os.path.abspath(work_dir)
        os.makedirs(self.work_dir, exist_ok=True)
        self.hall = hall
        self.token = token or secrets.token_hex(16)
        self.manager_token = secrets.token_hex(16)      # the hall manager's: reads stats and reports
        self.system_token = secrets.token_hex(16)       # the hall's business system (审批系统)
        self.device_ids = ["ev-%02d" % (i + 1) for i in range(devices)]
        self.kiosk_ids = ["ks-%02d" % (i + 1) for i in range(kiosks)]
        self.keys = {d: secrets.token_bytes(32) for d in self.device_ids + self.kiosk_ids}
        self.heapsize = heapsize
        self.agent_config = {"screen": {"ratings_delay_min": ratings_delay_min}}
        for section, values in (agent_config or {}).items():
            self.agent_config.setdefault(section, {}).update(values)
        self.kiosk_opts = dict(kiosk_opts or {})
        self.queues, self.serve = dict(queues or {}), dict(serve or {})
        self.county_port = free_port()
        self.http_port = free_port()
        self.broker = Mosquitto(os.path.join(self.work_dir, "broker"))
        self.config_path = os.path.join(self.work_dir, "edge-agent.toml")
        self.county_db = os.path.join(self.work_dir, "county.db")
        argv = [os.path.join(VENV_BIN, "county-server"), "run", "--db", self.county_db,
                "--host", "127.0.0.1", "--port", str(self.county_port),
                "--token", "%s=%s" % (self.hall, self.token), "--system-token", self.system_token,
                "--manager-token", "%s=%s" % (self.hall, self.manager_token),
                "--link-secret-file", os.path.join(self.work_dir, "link-secret")]
        if today:
            argv += ["--today", today]
        self.county = Proc("county-server", argv, self.work_dir)
        self.agent = Proc("edge-agent", [
            os.path.join(VENV_BIN, "edge-agent"), "run", "--config", self.config_path], self.work_dir)
        self.devices = {}
        self.kiosks = {}

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
        ] + ["[%s]\n%s" % (section, "\n".join("%s = %s" % (k, json.dumps(v, ensure_ascii=False))
                                            for k, v in values.items()))
             for section, values in self.agent_config.items()] + [""]))

    def edge_agent(self, *args):
        out = subprocess.run([os.path.join(VENV_BIN, "edge-agent")] + list(args) + ["--config", self.config_path],
                             capture_output=True, text=True, cwd=self.work_dir)
        if out.returncode != 0:
            raise RuntimeError("edge-agent %s failed: %s" % (" ".join(args), out.stderr.strip()))
        return out.stdout

    def start(self):
        from tools.vdevice import VirtualDevice
        from tools.vkiosk import VirtualKiosk
        self.broker.start()
        write_private(os.path.join(self.work_dir, "link-secret"), secrets.token_hex(32))
        self.county.start()
        wait_port(self.county_port, 20)
        self.write_agent_config()
        for i, d in enumerate(self.device_ids):
            self.edge_agent("devices", "add", d, "--window", "A%02d" % (i + 1), "--key", self.keys[d].hex())
        for i, d in enumerate(self.kiosk_ids):
            self.edge_agent("devices", "add", d, "--window", "K%02d" % (i + 1), "--key", self.keys[d].hex())
        for letter, name in self.queues.items():
            self.edge_agent("queue", "add", letter, name)
        for window, letters in self.serve.items():
            self.edge_agent("queue", "serve", window, *letters)
        self.agent.start()
        wait_port(self.http_port, 30)
        for i, d in enumerate(self.device_ids):
            vd = VirtualDevice(os.path.join(self.work_dir, d), self.hall, d, self.keys[d], self.broker.port,
                               window="A%02d" % (i + 1), heapsize=self.heapsize)
            self.devices[d] = vd.start()
        for i, d in enumerate(self.kiosk_ids):
            opts = dict({"heapsize": KIOSK_HEAP}, **self.kiosk_opts)
            self.kiosks[d] = VirtualKiosk(os.path.join(self.work_dir, d), self.hall, d, self.keys[d],
                                          self.broker.port, window="K%02d" % (i + 1), **opts)
            self.kiosks[d].start()
        return self

    def stop(self):
        for vd in self.devices.values():
            vd.stop()
        for vk in self.kiosks.values():
            vk.close()
        for p in (self.agent, self.county, self.broker):
            p.stop()

    # -- the agent ------------------------------------------------------------------
    def agent_rows(self, sql, args=()):
        return store_rows(os.path.join(self.work_dir, "agent.db"), sql, args)

    def agent_events(self, kind):
        return stored_events(os.path.join(self.work_dir, "agent.db"), kind)

    # -- the county -----------------------------------------------------------------
    def _county_call(self, method, path, token, doc=None):
        data = json.dumps(doc, ensure_ascii=False).encode() if doc is not None else None
        req = urllib.request.Request(self.county_url + path, data=data, method=method, headers=dict(
            {"Authorization": "Bearer " + token}, **({"Content-Type": "application/json"} if data else {})))
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            raise RuntimeError("county %s %s: %d %s" % (method, path, e.code, e.read()[:300].decode("utf-8", "replace")))

    def post_cases(self, events):
        """Case events (API.md 'Cases') as the hall's business system posts them;
        every one must be stored (or a duplicate of one that was)."""
        got = self._county_call("POST", "/v1/halls/%s/cases" % self.hall, self.system_token, {"events": events})
        bad = [r for r in got["results"] if r["status"] not in ("stored", "duplicate")]
        if bad:
            raise RuntimeError("county refused case events: %s" % bad)
        return got["results"]

    def county_cases(self):
        """The hall's cases as its agent reads them (with lights and rating links)."""
        return {c["case"]: c for c in self._county_call("GET", "/v1/halls/%s/cases" % self.hall, self.token)["cases"]}

    def county_events(self, kind, device_prefix=""):
        """The events of `kind` the county stored for this hall (their bodies), read
        from its database, by device and seq."""
        db = sqlite3.connect("file:%s?mode=ro" % self.county_db, uri=True, timeout=30)
        try:
            rows = db.execute("SELECT body FROM events WHERE hall = ? AND kind = ? AND device LIKE ? "
                              "ORDER BY device, seq", (self.hall, kind, device_prefix + "%")).fetchall()
        finally:
            db.close()
        return [json.loads(b) for (b,) in rows]

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
