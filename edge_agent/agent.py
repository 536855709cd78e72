"""The running agent: wires the store, the broker link, the committer, the
HTTP API, the uplink, the county's case cache, the kiosks' requests and the
tower light, and does the periodic chores (device configs, time beacon,
disk guard, light, old print jobs, watchdog). Retention is the uplink's: it
deletes only rows the county has committed.

Threads: paho's network loop (fills the inbox), the committer (the only
writer of events), the requests, the uplink and the case cache (each its
own connection; the cache also takes the county's link key for tickets),
the HTTP server, and
this one, the housekeeper, the only sender of device configs and commands
(the committer sends the acks). SIGTERM sets `stop`: the committer finishes and
acks what it holds, then the link disconnects.
"""
import fcntl
import logging
import os
import shutil
import sqlite3
import threading
import time

from protocol import topics
from edge_agent import kiosk, ota, queues, quarantine, registry, status, systemd
from edge_agent.cases import CaseCache
from edge_agent.committer import Committer
from edge_agent.errors import AgentError
from edge_agent.light import HallLight
from edge_agent.link import BrokerLink
from edge_agent.requests import Requests
from edge_agent.sealer import Sealer
from edge_agent.store import Store, now_ms
from edge_agent.uplink import Uplink

CLOCK_STEP_S = 2.0     # a wall-clock change this large is a step (NTP slews small ones)

log = logging.getLogger("edge_agent")

# Page cache per connection (SQLite's default is 2 MiB each). Ingest appends
# and the status queries scan; the OS caches the file anyway, and at 2 MiB
# the three connections took the agent from 30 to 33 MiB within a minute of
# a hall's rate (bench/agent_hall_rate.py). The uplink keeps its own, larger.
_CACHE_KIB = 512


class DiskGuard:
    """Up while the store's filesystem is fuller than disk_max_pct."""

    def __init__(self, path, max_pct, usage=None):
        self.dir = os.path.dirname(os.path.abspath(path))
        self.max_pct = max_pct
        self.usage = usage or self._usage
        self.active = False
        self.pct = 0.0

    def _usage(self):
        u = shutil.disk_usage(self.dir)
        return 100.0 * u.used / max(1, u.used + u.free)   # as df's Use%

    def check(self):
        self.pct = self.usage()
        was, self.active = self.active, self.pct > self.max_pct
        if self.active and not was:
            log.error("ALARM disk %.1f%% full (limit %.0f%%): no longer acking new events; "
                      "devices keep them until space is freed", self.pct, self.max_pct)
        elif was and not self.active:
            log.warning("disk %.1f%% full: acking events again", self.pct)
        return self.active


class Agent:
    def __init__(self, cfg, disk_usage=None, pin_factory=None):
        self.cfg, self.hall = cfg, cfg["hall"]
        self.path = cfg["store"]["path"]
        self.store = Store(self.path, cache_kib=_CACHE_KIB)      # housekeeping connection
        self.guard = DiskGuard(self.path, cfg["store"]["disk_max_pct"], disk_usage)
        self.link = BrokerLink(cfg["mqtt"], self.hall, on_connected=self._on_connected)
        self.sealer = Sealer(self.store)         # one counter for acks, configs, commands and replies
        self.requests = Requests(Store(self.path, cache_kib=_CACHE_KIB), self.link, self.hall, self.sealer)
        self.link.on_request = self.requests.put
        kiosk_ops = kiosk.Kiosk(cfg).register(self.requests)
        self.link_key = self._configured_link_key()      # (key, county base) for tickets' rate_url, or None
        queues.QueueOps(cfg, lambda: self.link_key, kiosk=kiosk_ops).register(self.requests)
        ota.register(self.requests)
        self.committer = Committer(Store(self.path, cache_kib=_CACHE_KIB), self.link, self.hall,
                                   cfg["mqtt"]["batch_max"], cfg["mqtt"]["batch_ms"], self.guard,
                                   cfg["quarantine"], self.sealer, queues.tz(cfg))
        self.voice = None
        self.pin_factory = pin_factory
        self.uplink = self.light = self.http = self.cases = None
        self._republish = threading.Event()
        self.light_state, self.light_reasons = "ok", []

    # -- what the HTTP API and `status` see of a running agent
    def runtime(self):
        up = self.uplink.state() if self.uplink else None
        return {"broker_connected": self.link.connected.is_set(), "disk_guard": self.guard.active,
                "disk_pct": round(self.guard.pct, 1), "held_by_guard": self.committer.held,
                "inbox": self.link.inbox.qsize(), "uplink": up,
                "cases_poll": self.cases.state() if self.cases else None,
                "light": self.light_state, "light_reasons": self.light_reasons}

    def health(self):
        if not self.committer.is_alive():
            return False, "committer stopped"
        if not self.link.connected.is_set():
            return False, "not connected to the broker"
        if self.guard.active:
            return False, "disk guard up"
        return True, "ok"

    def _on_connected(self):
        self._republish.set()   # retained configs carry hwm and the time

    def _lock(self):
        """One agent per store: a second one would fight the first for the
        broker session (same client id) all day."""
        self._lockf = open(self.path + ".lock", "a")
        try:
            fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AgentError("another edge-agent is running on %s" % self.path)

    def run(self, stop):
        cfg = self.cfg
        self._lock()
        self.guard.check()
        self.committer.start()
        self.requests.start()
        self.link.start()
        if cfg["http"]["port"]:
            from edge_agent.http_api import HallHTTP
            self.http = HallHTTP(Store(self.path, cache_kib=_CACHE_KIB), cfg, self.runtime, self.health).start()
            log.info("HTTP on %s:%d", cfg["http"]["host"], self.http.port)
        uplink_stop = threading.Event()
        uplink_thread = self._start_uplink(uplink_stop)
        cases_thread = self._start_cases(uplink_stop)
        self._start_light()
        self._start_voice()
        systemd.notify("READY=1")
        log.info("agent for hall %s running, store %s", self.hall, self.path)
        try:
            self._housekeep(stop)
        finally:
            systemd.notify("STOPPING=1")
            log.info("stopping: finishing in-flight commits")
            self.link.close_intake()
            self.committer.stop()
            self.committer.join(30)
            self.requests.stop()
            if self.voice is not None:
                self.voice.stopping.set()
            self.link.stop()
            uplink_stop.set()
            if self.uplink is not None:
                self.uplink.poke()
            if uplink_thread:
                uplink_thread.join(15)
            if cases_thread:
                cases_thread.join(15)
            if self.http:
                self.http.stop()
            if self.light is not None:
                self.light.close()
            log.info("stopped")

    def _start_uplink(self, stop):
        if not self.cfg["uplink"]["url"]:
            log.info("uplink disabled: [uplink] url not set")
            return None
        self.uplink = Uplink(self.path, self.cfg["uplink"], self.hall, self.cfg["store"]["retention_days"])
        self.committer.on_stored = self.uplink.poke
        t = threading.Thread(target=self.uplink.run, args=(stop,), name="uplink", daemon=True)
        t.start()
        return t

    def _start_cases(self, stop):
        if not self.cfg["uplink"]["url"]:
            return None         # no county: the kiosks hear `offline` for every case
        self.cases = CaseCache(self.path, self.cfg["uplink"], self.cfg["kiosk"], self.hall,
                               on_link_key=None if self.link_key else self._took_link_key)
        t = threading.Thread(target=self.cases.run, args=(stop,), name="cases", daemon=True)
        t.start()
        return t

    def _start_light(self):
        if not self.cfg["light"]["enabled"]:
            return
        light = self.cfg["light"]
        try:
            self.light = HallLight(light["pins"], pin_factory=self.pin_factory, active_high=light["active_high"])
        except Exception as e:  # a broken lamp (or no gpiozero pin factory) must not stop ingest
            log.error("tower light disabled: %s", e)

    def _start_voice(self):
        if not self.cfg["voice"]["enabled"]:
            return
        from edge_agent.voice import Announcer, has_audio
        if not has_audio():
            log.warning("[voice] enabled but this machine has no audio device: calls are not announced")
            return
        self.voice = Announcer(Store(self.path, cache_kib=_CACHE_KIB), self.cfg["voice"])
        self.voice.start()

    def _configured_link_key(self):
        q = self.cfg["queue"]
        if q["link_key"]:
            base = q["rate_base"] or self.cfg["uplink"]["url"]
            return (bytes.fromhex(q["link_key"]), base) if base else None
        key, base = self.store.meta("link_key"), self.store.meta("link_base")
        return (bytes.fromhex(key), q["rate_base"] or base) if key and base else None

    def _took_link_key(self, key, base):
        # The case cache's thread, once: the county's key (already in meta) for tickets' rate_url.
        self.link_key = (key, self.cfg["queue"]["rate_base"] or base)
        log.info("link key from the county: tickets carry rate_url under %s", self.link_key[1])

    def _housekeep(self, stop):
        every = {"beacon": self.cfg["mqtt"]["beacon_s"], "guard": 5, "light": 5, "purge_quarantine": 3600,
                 "purge_jobs": 60, "ota_deadlines": 5}
        last = dict.fromkeys(every, float("-inf"))     # every chore is due at start
        rev = self.store.registry_rev()
        ota_rev = None
        wd = systemd.watchdog_interval_s()
        last_wd = 0.0
        lead = time.time() - time.monotonic()      # the wall clock's lead on the monotonic one
        while not stop.wait(0.5):
            now = time.monotonic()
            step = time.time() - now - lead
            if abs(step) > CLOCK_STEP_S:
                # NTP (or a person) set the Pi's clock: the devices stamp their
                # events with the agent's time, so they hear it now, not at the
                # next beacon.
                log.warning("the Pi's clock was set %+.0f s; sending the devices the time now", step)
                lead += step
                last["beacon"] = float("-inf")
            if not self.committer.is_alive():
                log.error("committer thread ended; exiting so systemd restarts the agent")
                raise SystemExit(1)
            r = self.store.registry_rev()
            if r != rev or self._republish.is_set():
                rev = r
                self._republish.clear()
                self.publish_configs(None)
            with self.committer.config_lock:
                due, self.committer.config_due = self.committer.config_due, set()
            if due:
                self.publish_configs(due)
            # Update offers: all pending ones when hallctl changed them, and
            # again to a device that comes online (it resumes where it stopped).
            r = self.store.meta("ota_rev", 0)
            if r != ota_rev and self.link.connected.is_set():
                ota_rev = r
                ota.send_offers(self.store, self.link, self.hall, self.sealer)
            elif due:
                ota.send_offers(self.store, self.link, self.hall, self.sealer, due)
            for chore, period in every.items():
                if period and now - last[chore] >= period:
                    last[chore] = now
                    getattr(self, "_" + chore)()
            if wd and now - last_wd >= wd and now - self.committer.beat < 60:
                last_wd = now
                systemd.notify("WATCHDOG=1")

    def publish_configs(self, devices):
        """Retained config per device (all active ones when devices is None);
        a retired device's retained config is cleared."""
        t = now_ms()
        for d in self.store.devices.all():
            if devices is not None and d["device"] not in devices:
                continue
            topic = topics.topic(self.hall, d["device"], topics.CONFIG)
            if d["status"] != "active":
                self.link.publish(topic, b"", retain=True)
                continue
            msg = registry.device_config(self.store, d["device"], self.cfg["devices"], t)
            self.sealer.publish(self.link, self.hall, d["device"], d["key_hex"], topics.CONFIG, msg, retain=True)

    def _beacon(self):
        if not self.link.connected.is_set():
            return
        msg = {"cmd": "time", "t": now_ms()}
        for d in self.store.devices.all():
            if d["status"] == "active":
                self.sealer.publish(self.link, self.hall, d["device"], d["key_hex"], topics.CMD, msg)

    def _guard(self):
        self.guard.check()

    def _ota_deadlines(self):
        for d in ota.check_deadlines(self.store, now_ms()):
            log.warning("ota %s: no report after the switch: failed", d)

    def _purge_quarantine(self):
        try:
            n = quarantine.purge(self.store, self.cfg["quarantine"]["keep_days"])
        except sqlite3.Error as e:      # the next hour tries again; ingest goes on
            log.error("quarantine purge failed: %s", e)
            return
        if n:
            log.info("quarantine: deleted %d refused messages not seen for %d days", n,
                     self.cfg["quarantine"]["keep_days"])

    def _purge_jobs(self):
        try:
            n = kiosk.purge_jobs(self.store, self.cfg["kiosk"]["job_keep_s"])
        except sqlite3.Error as e:      # the next minute tries again
            log.error("print job purge failed: %s", e)
            return
        if n:
            log.info("print jobs: deleted %d made over %d s ago", n, self.cfg["kiosk"]["job_keep_s"])

    def _light(self):
        snap = status.snapshot(self.store, self.cfg, self.runtime())
        screen = status.hall_screen(self.store, self.cfg, snap["now_ms"], snap)
        state, reasons = status.hall_state(snap, screen, self.cfg)
        if state != self.light_state:
            log.info("hall light %s -> %s %s", self.light_state, state, "; ".join(reasons))
        self.light_state, self.light_reasons = state, reasons
        if self.light is not None:
            try:
                self.light.show(state)
            except Exception:
                log.exception("tower light failed")
