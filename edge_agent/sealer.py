"""Seals the agent's messages to devices (acks, configs, commands) with
each device's key and a counter that only goes up (protocol SPEC: 'The
device link').

The counter is `link_epoch << 32` plus a count kept in memory: the epoch
is bumped in the store's `meta` table once per agent start, so counters
keep rising across restarts without a write per message. 2^32 messages per
run and 2^21 starts stay below 2^53, an integer every JSON reader keeps.
"""
import threading

from protocol import messages

_COUNT_BITS = 32


class Sealer:
    def __init__(self, store):
        with store.atomic():
            self.epoch = int(store.meta("link_epoch", 0)) + 1
            store.set_meta("link_epoch", self.epoch)
        self._n = self.epoch << _COUNT_BITS
        self._lock = threading.Lock()

    def seal(self, key_hex, channel, msg):
        """Wire bytes for one device. Seal and publish from one thread per
        channel, in order: the device refuses a counter older than the last."""
        with self._lock:
            self._n += 1
            n = self._n
        return messages.seal(bytes.fromhex(key_hex), channel, msg, n)
