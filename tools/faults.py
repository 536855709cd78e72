"""Faults a hall meets, made on purpose for the chaos run (tools/chaos.py)
and the tests: a county link that fails in each way a real one does, and a
small disk of the agent's own that can fill up.

    proxy = CountyLink(county_port).start()   # the agent's uplink url points at proxy.port
    proxy.mode = "5xx"                        # ok | 5xx | hang | slow | drop
    disk = SmallDisk(path, mib=64).mount()    # tmpfs; fill(leave_kib) / unfill() / unmount()

Each is the real thing (TCP connections cut and held, a filesystem that
says ENOSPC), not a flag inside the code under test.
"""
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import time

from tools.procs import own_name

MODES = ("ok", "5xx", "hang", "slow", "drop")
_BODY_503 = b'{"error":"county in maintenance (chaos)"}'
_ANSWER_503 = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(_BODY_503) + _BODY_503)


class CountyLink:
    """A TCP proxy in front of the county server. Modes: `ok` passes bytes;
    `5xx` answers every request 503 without passing it on; `hang` takes the
    connection and never answers (the agent's timeout must fire); `slow`
    passes bytes with a pause per chunk; `drop` cuts every connection at once,
    and switching to it cuts those open (a link that dies mid-batch: the
    county may have committed, the agent never hears)."""

    def __init__(self, county_port, host="127.0.0.1", slow_s=1.5):
        self.target = (host, county_port)
        self.slow_s = slow_s
        self.mode = "ok"
        self.served = dict.fromkeys(MODES, 0)
        self._lsock = socket.socket()
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind((host, 0))
        self._lsock.listen(64)
        self.port = self._lsock.getsockname()[1]
        self._open = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self):
        threading.Thread(target=self._accept, name="county-link", daemon=True).start()
        return self

    def set(self, mode):
        if mode not in MODES:
            raise ValueError("no such county link mode: %r" % (mode,))
        self.mode = mode
        if mode == "drop":
            self.cut()

    def cut(self):
        """Close every connection open now."""
        with self._lock:
            socks, self._open = self._open, set()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def stop(self):
        self._stop.set()
        self._lsock.close()
        self.cut()

    def _accept(self):
        while not self._stop.is_set():
            try:
                client, _ = self._lsock.accept()
            except OSError:
                return
            mode = self.mode
            self.served[mode] += 1
            if mode == "drop":
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client, mode), daemon=True).start()

    def _track(self, *socks):
        with self._lock:
            self._open.update(socks)

    def _serve(self, client, mode):
        self._track(client)
        try:
            if mode == "5xx":
                client.settimeout(10)
                client.recv(65536)              # the request's head (the rest is not read)
                client.sendall(_ANSWER_503)
                return
            if mode == "hang":
                while not self._stop.is_set() and self.mode == "hang":
                    r, _, _ = select.select([client], [], [], 0.5)
                    if r and not client.recv(65536):
                        return
                return                           # the link healed: this connection is still dead to it
            upstream = socket.create_connection(self.target, timeout=10)
            self._track(upstream)
            self._pump(client, upstream, mode)
        except (OSError, ValueError):
            pass        # ValueError: select() on a socket the cut closed from another thread (fd -1)
        finally:
            for s in (client,):
                try:
                    s.close()
                except OSError:
                    pass

    def _pump(self, a, b, mode):
        socks = [a, b]
        try:
            while True:
                r, _, _ = select.select(socks, [], [], 1.0)
                if self._stop.is_set():
                    return
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    if mode == "slow":
                        time.sleep(self.slow_s)
                    (b if s is a else a).sendall(data)
        finally:
            b.close()


class SmallDisk:
    """A tmpfs of `mib` MiB at `path` for the agent's store: full means
    ENOSPC for real. Needs root (mount); `available()` says if it can be had."""

    def __init__(self, path, mib=64):
        self.path, self.mib = os.path.abspath(path), mib
        self.filler = os.path.join(self.path, "filler.bin")
        self.mounted = False

    @staticmethod
    def available():
        return os.geteuid() == 0 and shutil.which("mount") is not None

    def mount(self):
        os.makedirs(self.path, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0755" % self.mib, "qinglian-chaos", self.path],
                       check=True, capture_output=True)
        self.mounted = True
        return self

    def usage_pct(self):
        st = os.statvfs(self.path)
        return 100.0 * (1 - st.f_bavail / st.f_blocks)

    def fill(self, leave_kib=256):
        """Fill the disk until only `leave_kib` KiB are free (the agent's own
        writes then meet ENOSPC or its disk guard)."""
        st = os.statvfs(self.path)
        free = st.f_bavail * st.f_frsize
        size = max(0, free - leave_kib * 1024)
        with open(self.filler, "ab") as f:
            block = b"\0" * (1 << 20)
            while size > 0:
                n = min(size, len(block))
                try:
                    f.write(block[:n])
                    f.flush()
                except OSError:
                    break
                size -= n

    def unfill(self):
        try:
            os.remove(self.filler)
        except FileNotFoundError:
            pass

    def unmount(self):
        if self.mounted:
            subprocess.run(["umount", "-l", self.path], capture_output=True)
            self.mounted = False


class WallClock:
    """The hall Pi's wall clock for one process (the agent): `jump(ms)` moves
    it, `reset()` is NTP setting it right again. tools/wallclock.c, built here
    with the machine's C compiler and loaded with LD_PRELOAD (`env()`), reads
    the offset from a file of ours; only the wall clock moves, never the
    monotonic one, so the process's sleeps and timeouts run as before — as on
    a Pi whose clock is set. `available()` says if a compiler is there."""

    SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "wallclock.c")

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.offset_ms = 0
        self._write(0)

    @staticmethod
    def available():
        return shutil.which("cc") is not None

    @classmethod
    def library(cls):
        """The shim, built once per source change into build/."""
        out = os.path.join(os.path.dirname(os.path.dirname(cls.SOURCE)), "build", "wallclock.so")
        if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(cls.SOURCE):
            os.makedirs(os.path.dirname(out), exist_ok=True)
            part = own_name(out)
            cc = subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-Wall", "-Werror", "-o", part, cls.SOURCE,
                                 "-ldl"], capture_output=True, text=True)
            if cc.returncode:
                raise RuntimeError("building %s failed:\n%s" % (cls.SOURCE, cc.stderr))
            os.replace(part, out)
        return out

    def env(self):
        """The environment that gives a child process this clock."""
        return {"LD_PRELOAD": self.library(), "QL_WALLCLOCK_FILE": self.path}

    def jump(self, ms):
        self.offset_ms += int(ms)
        self._write(self.offset_ms)

    def reset(self):
        self.offset_ms = 0
        self._write(0)

    def _write(self, ms):
        # One 8-byte write at offset 0 of a file the reader has mapped: the
        # page cache is shared, the reader sees the new value on its next call.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, struct.pack("<q", ms), 0)
        finally:
            os.close(fd)
