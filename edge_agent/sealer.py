"""Seals the agent's messages to devices (acks, configs, commands) with
each device's key and a counter that only goes up (protocol SPEC: 'The
device link').

The counter is `link_epoch << 32` plus a count kept in memory: the epoch
is bumped in the store's `meta` table once per agent start, so counters
keep rising across restarts without a write per message. 2^32 messages per
run and 2^21 starts stay below 2^53, an integer every JSON reader keeps.
"""
import threading

from protocol import messages, topics

_COUNT_BITS = 32


class Sealer:
    def __init__(self, store):
        with store.atomic():
            self.epoch = int(store.meta("link_epoch", 0)) + 1
            store.set_meta("link_epoch", self.epoch)
        self._n = self.epoch << _COUNT_BITS
        self._lock = threading.Lock()

    def publish(self, link, hall, device, key_hex, channel, msg, retain=False):
        """Seal `msg` for one device and publish it, under one lock: the
        device refuses a counter older than the last on the topic (and a
        config makes older commands old), so counters must reach the broker
        in the order they were taken, whichever thread sends (acks from the
        committer, replies from the requests, configs and beacons from
        housekeeping)."""
        with self._lock:
            self._n += 1
            link.publish(topics.topic(hall, device, channel),
                         messages.seal(bytes.fromhex(key_hex), channel, msg, self._n), retain=retain)
