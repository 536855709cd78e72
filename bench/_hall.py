"""A whole hall for a benchmark run (bench/agent_hall_rate.py,
bench/press_to_county.py): Mosquitto as `edge-agent broker-config` writes
it (ACL, a login per device), the devices registered with their keys, and
the agent of a tree (this one, or a baseline's `git archive`) with its own
venv, run as deploy/edge-agent.service runs it (MALLOC_ARENA_MAX=2).

    with BenchHall(tree, keys, "bench-x-") as hall:
        hall.start(extra='[uplink]\\nurl = "..."\\n')
        devices = hall.connect(Device, timeout=120)

Leaving the block stops the devices, the agent and the broker and removes
their files; on an exception it first prints the end of the agent's log.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from bench._trees import edge_agent
from tools.procs import Mosquitto, Proc, broker_dir, free_port, healthy, wait_for

HALL = "bench"
PASSWORD = "agent-secret"
REGISTER = ("import sys, json; from edge_agent import registry; from edge_agent.store import Store; "
            "s = Store(sys.argv[1]); "
            "[registry.add(s, %r, d, 'W%%03d' %% i, k) for i, (d, k) in enumerate(json.loads(sys.argv[2]).items())]"
            % HALL)


class BenchHall:
    def __init__(self, tree, keys, prefix):
        """`keys`: device name -> key, in the order the devices are made."""
        self.tree, self.keys = tree, keys
        self.work = tempfile.mkdtemp(prefix=prefix)
        self.bdir = broker_dir()
        self.port, self.http = free_port(), free_port()
        self.cfg, self.db = os.path.join(self.work, "agent.toml"), os.path.join(self.work, "agent.db")
        self.agent = self.broker = None
        self.devices = []

    def start(self, mqtt=(), extra="", profile=None):
        """The broker and the agent, until /healthz answers. `mqtt`: more
        [mqtt] lines; `extra`: more sections; `profile`: run the agent under
        cProfile (bench/_profile.py), the profile to this file."""
        with open(self.cfg, "w") as f:
            f.write('hall = "%s"\n[mqtt]\nport = %d\npassword = "%s"\n%s\n[store]\npath = "%s"\n[http]\nport = %d\n%s'
                    % (HALL, self.port, PASSWORD, "\n".join(mqtt), self.db, self.http, extra))
        py, env = edge_agent(self.tree)
        env = dict(env, MALLOC_ARENA_MAX="2")
        subprocess.run([sys.executable, "-c", REGISTER, self.db, json.dumps({d: k.hex() for d, k in self.keys.items()})],
                       check=True, env=env, cwd=self.tree)
        subprocess.run(py + ["--config", self.cfg, "broker-config", "--out", self.bdir, "--data-dir", self.bdir + "/data",
                             "--listen", "127.0.0.1"], check=True, env=env, cwd=self.tree, capture_output=True)
        with open(self.bdir + "/mosquitto.conf") as f:
            self.broker = Mosquitto(self.bdir, port=self.port, conf=f.read()).start()
        argv = py + ["run", "--config", self.cfg]
        if profile:
            argv = [sys.executable, "-m", "bench._profile", profile, "run", "--config", self.cfg]
        self.agent = Proc("edge-agent", argv, self.work, env=env, cwd=self.tree).start()
        wait_for(lambda: healthy(self.http), 30, what="agent")
        return self

    def connect(self, device, timeout):
        """`device(name, key, port)` for every device, once each has its config."""
        self.devices = [device(d, k, self.port) for d, k in self.keys.items()]
        wait_for(lambda: all(d.ready.is_set() for d in self.devices), timeout, 0.2, "every device's config")
        return self.devices

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if kind is not None and self.agent is not None:
            sys.stderr.write(self.agent.log()[-3000:])
        for d in self.devices:
            d.stop()
        for p in (self.agent, self.broker):
            if p is not None:
                p.stop()
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.bdir, ignore_errors=True)
