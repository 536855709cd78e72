"""The real edge agent as the firmware tests' other end.

Starts `edge-agent run` on a test's broker with the devices registered and
the windows staffed, and reads back what it committed to SQLite, with the
same questions the tests ask: events of a kind, conflicts, refusals. kill()
is a real SIGKILL (an agent outage: devices keep their backlog)."""
import os

from edge_agent import registry
from harness import free_port
from test_agent_support import registry_of, start_agent, write_config
from tools.hall import store_rows, stored_events


class RealAgent:
    def __init__(self, work_dir, broker_port, hall, keys, windows, prompt_s=30):
        """keys: {device: key bytes}; windows: {device: {"window", "staff", "staff_no"}}."""
        self.work = os.path.join(work_dir, "agent")
        os.makedirs(self.work, exist_ok=True)
        self.http_port = free_port()
        self.config = write_config(self.work, broker_port, hall=hall, http_port=self.http_port,
                                   extra="[devices]\nprompt_s = %d" % prompt_s)
        with registry_of(self.config) as (store, hall):     # `devices add`, `window set`
            for device, key in keys.items():
                w = windows[device]
                registry.add(store, hall, device, w["window"], key.hex())
                registry.set_window(store, w["window"], w["staff"], w["staff_no"])
        self.db_path = os.path.join(self.work, "agent.db")
        self.proc = None

    def start(self):
        self.proc = start_agent(self.work, self.config, self.http_port)
        return self

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def kill(self):
        if self.proc:
            self.proc.kill()

    def stop(self):
        if self.proc:
            self.proc.stop()

    def _query(self, sql, args=()):
        return store_rows(self.db_path, sql, args)

    def of_kind(self, kind):
        return stored_events(self.db_path, kind)

    @property
    def conflicts(self):
        return self._query("SELECT count(*) FROM quarantine WHERE reason = 'conflict'")[0][0]

    @property
    def rejected(self):
        return self._query("SELECT reason, detail FROM quarantine WHERE reason != 'conflict'")
