"""The inbox: messages paho received, waiting for the committer.

A deque and one condition. The committer takes a batch: the first message,
then up to `most` within a window. `put` wakes it only when the batch it
waits for is full (or for the first message), not for every message: at a
hall's rate of a few messages per window, a wake-up per message cost more
CPU than storing them. Unbounded: the broker's max_inflight_messages bounds
what is in flight to the agent before its PUBACKs.
"""
import collections
import threading
import time


class Inbox:
    def __init__(self):
        self._items = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self._want = 1                  # wake the committer when this many wait

    def put(self, item):
        # The deque is thread-safe; the lock only for a wake-up. A wake-up
        # missed on a stale _want costs the committer at most its window.
        items = self._items
        items.append(item)
        if len(items) >= self._want:
            with self._ready:
                self._ready.notify()

    def qsize(self):
        return len(self._items)

    def take(self, most, window_s, idle_s=0.2):
        """Up to `most` messages in arrival order: waits up to idle_s for the
        first, then until `most` are there or window_s has passed; [] when
        none came in idle_s."""
        with self._ready:
            if not self._items:
                self._ready.wait(idle_s)
                if not self._items:
                    return []
            deadline = time.monotonic() + window_s
            self._want = most
            try:
                while len(self._items) < most:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._ready.wait(left)
            finally:
                self._want = 1
            items = self._items
            return [items.popleft() for _ in range(min(most, len(items)))]
