"""Wall-clock time from the agent's beacons, durations from ticks.

The board has no battery-backed clock. The agent's retained config carries
`t` and the `cmd` topic a time beacon (Unix ms); between beacons the time
runs on ticks_ms, so event times stay right through a network outage.
Before the first beacon event times are 0, as the protocol says.
"""
import time


class Clock:
    def __init__(self):
        self.base = 0          # Unix ms at base_ticks; 0 = no wall clock yet
        self.base_ticks = 0

    def beacon(self, t, authoritative=True):
        """A retained config's `t` may be old: it only sets a clock that has
        none, or moves it forward. A live beacon always wins."""
        if type(t) is not int or t <= 0:
            return
        if authoritative or not self.base or t > self.now():
            self.base = t
            self.base_ticks = time.ticks_ms()

    def now(self):
        if not self.base:
            return 0
        now = time.ticks_ms()
        d = time.ticks_diff(now, self.base_ticks)
        if d > 86400000:
            # ticks wrap after days: move the base along before they do
            self.base += d
            self.base_ticks = now
        return self.base + d
