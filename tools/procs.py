"""Real processes for tests and the demo: Mosquitto on a free port, the
county server, the edge agent, MicroPython devices. Each is a Proc that can
be killed for real (SIGKILL) and started again with the same state dir."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
MICROPYTHON = os.path.join(VENV_BIN, "micropython")
MPLIB = os.path.join(ROOT, "build", "mplib")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def own_name(path):
    """A name beside `path` that only this process and thread write: make the
    file there, then os.replace it over `path` (atomic). Test workers and the
    boards' threads may be making the same file at the same moment."""
    return "%s.%d-%d.tmp" % (path, os.getpid(), threading.get_ident())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError("nothing listening on %s:%d after %.0fs" % (host, port, timeout))


def wait_for(predicate, timeout=30.0, interval=0.1, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("timed out after %.0fs waiting for %s" % (timeout, what))


def healthy(http_port, path="/healthz", host="127.0.0.1"):
    """True when a service's health endpoint answers 200 (the agent's /healthz)."""
    import urllib.request
    try:
        with urllib.request.urlopen("http://%s:%d%s" % (host, http_port, path), timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def micropython_path(*extra):
    """MICROPYPATH for host runs: firmware, the simulated board (firmware/sim),
    the protocol package, micropython-lib."""
    return ":".join(list(extra) + [os.path.join(ROOT, "firmware"), os.path.join(ROOT, "firmware", "sim"),
                                   ROOT, MPLIB])


class Proc:
    """A child process with its log in a file; kill() is a real SIGKILL."""

    def __init__(self, name, argv, log_dir, env=None, cwd=None):
        self.name, self.argv, self.cwd = name, argv, cwd or ROOT
        self.env = dict(os.environ, **(env or {}))
        self.log_path = os.path.join(log_dir, name + ".log")
        self.p = None

    def start(self):
        log = open(self.log_path, "ab")
        self.p = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                  env=self.env, cwd=self.cwd, start_new_session=True)
        log.close()
        return self

    def alive(self):
        return self.p is not None and self.p.poll() is None

    def _signal(self, sig):
        try:
            os.killpg(self.p.pid, sig)
        except ProcessLookupError:
            pass  # it ended (and was reaped, maybe by a watcher thread) since alive() looked

    def kill(self):
        if self.alive():
            self._signal(signal.SIGKILL)
            self.p.wait()

    def stop(self, timeout=10):
        if self.alive():
            self._signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""


def broker_dir():
    """Mosquitto drops to its own user before reading the password file and
    writing persistence: give it a directory it can reach (pytest's are 0700)."""
    d = tempfile.mkdtemp(prefix="qinglian-broker-")
    os.chmod(d, 0o755)
    os.makedirs(d + "/data")
    try:
        shutil.chown(d + "/data", "mosquitto")
    except (LookupError, PermissionError):
        os.chmod(d + "/data", 0o777)
    return d


class Mosquitto(Proc):
    """A private broker with persistence, so a restart keeps QoS 1 state.

    `conf` is extra config text (listeners, ACL, passwords); by default an
    anonymous loopback listener on a free port."""

    def __init__(self, work_dir, port=None, conf=None):
        os.makedirs(work_dir, exist_ok=True)
        self.port = port or free_port()
        self.work_dir = work_dir
        path = os.path.join(work_dir, "mosquitto.conf")
        with open(path, "w") as f:
            f.write(conf if conf is not None else self.default_conf())
        super().__init__("mosquitto-%d" % self.port, [MOSQUITTO, "-c", path], work_dir)

    def default_conf(self):
        return "\n".join([
            "listener %d 127.0.0.1" % self.port,
            "allow_anonymous true",
            "persistence true",
            "persistence_location %s/" % self.work_dir,
            "autosave_interval 1",
            # Debian's default of 1000 silently drops QoS 1 messages for a lagging subscriber.
            "max_queued_messages 0",
            "max_inflight_messages 0",
            "set_tcp_nodelay true",       # as broker-config writes it: requests without Nagle's wait
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "",
        ])

    def start(self):
        super().start()
        wait_port(self.port)
        return self
