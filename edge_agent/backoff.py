"""How a thread that talks to the county (the uplink, the case cache) is
doing, and how long it waits after a failure: exponential from 1 s up to a
cap, jittered so that the halls of a county do not retry in lockstep.

    health = Backoff("uplink", log, cap_s=60)
    try: ...; health.ok()
    except UplinkError as e: stop.wait(health.failed(e))

`state()` is what `status` and the hall light read: last_ok_ms,
failing_since_ms (the first failure of the current run of them), last_error.
"""
import random
import threading

from edge_agent.store import now_ms

FIRST_S = 1.0


class Backoff:
    def __init__(self, what, log, cap_s):
        self.what, self._log, self.cap_s = what, log, cap_s
        self._lock = threading.Lock()
        self._failures = 0             # in a row
        self._state = {"last_ok_ms": None, "failing_since_ms": None, "last_error": None}

    def failed(self, err):
        """Record a failure; return how long to wait before the next try."""
        with self._lock:
            self._failures += 1
            s = self._state
            first = s["failing_since_ms"] is None
            if first:
                s["failing_since_ms"] = now_ms()
            s["last_error"] = str(err)
            n = self._failures
        delay = min(self.cap_s, FIRST_S * 2 ** min(n - 1, 30))
        delay = random.uniform(delay / 2, delay)
        (self._log.warning if first or n % 10 == 0 else self._log.info)(
            "%s failure %d: %s; retry in %.1f s", self.what, n, err, delay)
        return delay

    def ok(self, now=None):
        """The county answered: the waits start over from FIRST_S."""
        now = now_ms() if now is None else now
        with self._lock:
            since = self._state["failing_since_ms"]
            self._state.update(last_ok_ms=now, failing_since_ms=None, last_error=None)
            self._failures = 0
        if since:
            self._log.info("%s: county reachable again after %.0f s", self.what, (now - since) / 1000)

    def state(self):
        with self._lock:
            return dict(self._state)
