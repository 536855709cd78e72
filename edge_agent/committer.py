"""The committer: drains the inbox in batches (group commit), stores each
batch in one transaction, and only then PUBACKs (arrival order) and sends
the protocol acks. One thread; the only writer of events and quarantine.
"""
import logging
import sqlite3
import threading
import time

from protocol import messages, topics
from edge_agent import ingest
from edge_agent.sealer import Sealer

log = logging.getLogger("edge_agent.committer")


class Committer(threading.Thread):
    def __init__(self, store, link, hall, batch_max=500, batch_ms=20, guard=None, quarantine=None,
                 sealer=None, zone=None):
        super().__init__(name="committer", daemon=True)
        self.zone = zone                 # the hall's time zone: a kiosk's offline ticket joins its day
        self.store, self.link, self.hall = store, link, hall
        self.sealer = sealer or Sealer(store)
        self.batch_max, self.batch_s = batch_max, batch_ms / 1000.0
        self.guard = guard               # object with .active: hold everything while set
        self.quarantine = quarantine     # the config's [quarantine] bounds (defaults when None)
        self.stopping = threading.Event()
        self.beat = time.monotonic()     # last sign of life, for the systemd watchdog
        self.config_due = set()          # devices that came online: resend their config
        self.config_lock = threading.Lock()
        self.held = 0                    # messages waiting behind the disk guard

    def stop(self):
        """Finish what is in the inbox, ack it, and end."""
        self.stopping.set()

    def run(self):
        while True:
            batch = self._take()
            if not batch:
                if self.stopping.is_set():
                    return
                continue
            if not self._hold(batch):
                return
            out = self._commit(batch)
            if out is None:
                return
            self.link.puback(batch)
            for device, seqs in out.acks.items():
                # Only events verified with a registered key are acked, with that key.
                self.sealer.publish(self.link, self.hall, device, out.keys[device], topics.ACK, messages.ack(seqs))
            if out.came_online:
                with self.config_lock:
                    self.config_due |= out.came_online
            self.beat = time.monotonic()

    def _take(self):
        batch = self.link.inbox.take(self.batch_max, self.batch_s)
        if not batch:
            self.beat = time.monotonic()
        return batch

    def _hold(self, batch):
        """Backpressure: while the disk guard is up, commit nothing and ack
        nothing; the broker and the devices' outboxes keep the events."""
        while self.guard is not None and self.guard.active:
            self.held = len(batch) + self.link.inbox.qsize()
            self.beat = time.monotonic()
            if self.stopping.is_set():
                return False
            time.sleep(0.5)
        self.held = 0
        return True

    def _commit(self, batch):
        delay = 0.1
        while True:
            try:
                return ingest.commit(self.store, self.hall, batch, self.quarantine, self.zone)
            except sqlite3.Error as e:
                # Nothing was acked; retry the same batch (one place for retries).
                log.error("commit of %d messages failed (%s); retrying in %.1fs", len(batch), e, delay)
                if self.stopping.is_set():
                    return None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
