"""Ingest: a batch of MQTT messages in, one SQLite transaction out.

The rules (protocol/SPEC.md, delivery semantics):
  - a valid new event is stored; an identical redelivery is counted and
    acked again; the same (device, seq) with other content is a conflict,
    kept in quarantine and acked so the device stops resending;
  - anything else that cannot be trusted is quarantined with its reason
    and never acked to a device (a forged seq must not delete a real event
    from a real outbox); the quarantine is bounded per device and counts
    what it could not keep (edge_agent/quarantine.py);
  - a new `status` event also sets the device's health (alarm, outbox
    depth) in the same transaction, unless a newer status already has; a
    kiosk's `printer` event sets its printer state the same way, and its
    `print` event marks that print job done;
  - a new `ticket` event from a kiosk (one it handed out from its reserved
    block while it could not ask) joins its queue (edge_agent/queues.py);
  - nothing here raises on input: only a store failure escapes, and then
    the whole batch is rolled back and nothing is acked.
The caller PUBACKs every message of the batch in arrival order and sends
the protocol acks in `Outcome.acks`, both only after commit.
"""
import collections
import json
import logging
import sqlite3

import protocol
from protocol import mac, topics
from protocol.errors import ProtocolError
from edge_agent.quarantine import Quarantine

log = logging.getLogger("edge_agent.ingest")

# One received MQTT message. `link_gen` names the broker connection it came
# on: a PUBACK is only valid on that connection.
Inbound = collections.namedtuple("Inbound", "mid qos topic payload retain received_ms link_gen")


class Outcome:
    def __init__(self):
        self.acks = collections.defaultdict(set)   # device -> seqs to ack
        self.keys = {}                             # device -> key_hex, for sealing its ack
        self.came_online = set()                   # devices that reconnected
        self.stored = 0
        self.duplicates = 0
        self.quarantined = collections.Counter()


def verified_wire(ev, payload, key):
    """Check the MAC over the canonical bytes (SPEC: 'Canonical encoding and
    signatures'), cut from the received `payload` when it is canonical, as
    devices send it, rebuilt from the fields when not; return the canonical
    wire text, what two redeliveries compare."""
    b = protocol.signed(ev, payload)
    if not mac.equal(ev["mac"], mac.sign(key, b)):
        raise ProtocolError("bad_mac", ev["device"])
    return mac.attach(b, ev["mac"]).decode()


class Batch:
    """Classifies and stores one batch; use inside store.atomic()."""

    def __init__(self, store, hall, limits=None, zone=None):
        """`limits`: the config's [quarantine] table (its defaults when None);
        `zone`: the hall's time zone ([queue] timezone's default when None)."""
        if limits is None:
            from edge_agent import config
            limits = config.validate({"hall": hall})["quarantine"]
        self.store, self.hall, self.zone = store, hall, zone
        self.kept = Quarantine(store, limits)
        self.out = Outcome()
        self._devices = {}
        self._hwm = {}
        self.received = 0

    def _device(self, device):
        if device not in self._devices:
            self._devices[device] = self.store.devices.credentials(device)
        return self._devices[device]

    def quarantine(self, m, reason, detail="", device=None, seq=None):
        registered = device is not None and self._device(device) is not None
        self.kept.add(m, reason, detail, device, seq, registered)
        self.store.bump("quarantined:" + reason)
        self.out.quarantined[reason] += 1

    def add(self, m):
        self.received += 1
        try:
            hall, device, channel = topics.parse(m.topic)
            if hall != self.hall:
                raise ProtocolError("bad_topic", "hall %s" % hall)
            if channel == topics.EVENTS:
                self._event(m, device)
            elif channel == topics.STATUS:
                self._presence(m, device)
            else:
                raise ProtocolError("bad_topic", "agent does not read %s" % channel)
        except ProtocolError as e:
            self.quarantine(m, e.code, e.detail, device=locals().get("device"))
        except sqlite3.Error:
            raise
        except Exception as e:  # a bug must not stop ingest; keep the message and say so
            log.exception("unexpected error on %s", m.topic)
            self.quarantine(m, "agent_error", repr(e))

    def _event(self, m, device):
        ev = protocol.parse(m.payload)
        if ev["device"] != device:
            raise ProtocolError("topic_mismatch", "payload says %s" % ev["device"])
        row = self._device(device)
        if row is None:
            raise ProtocolError("unknown_device", device)
        if row[1] != "active":
            raise ProtocolError("unknown_device", "%s is retired" % device)
        wire = verified_wire(ev, m.payload, bytes.fromhex(row[0]))
        seq = ev["seq"]
        if self.store.events.add(device, seq, ev["kind"], ev["t"], wire, m.received_ms):
            self.out.stored += 1
            top, _ = self._hwm.get(device, (0, 0))
            self._hwm[device] = (max(seq, top), m.received_ms)
            if ev["kind"] == "status":
                self.store.devices.set_health(device, ev)
            elif ev["kind"] == "printer":
                self.store.devices.set_printer(device, seq, ev["state"])
            elif ev["kind"] == "print":          # the job has ended: its chunks are no longer served
                self.store.print_jobs.finish(ev["job"], device, ev["result"], m.received_ms)
            elif ev["kind"] == "ticket":
                self._ticket(device, ev, m.received_ms)
        elif self.store.events.body(device, seq) == wire:
            self.out.duplicates += 1
        else:
            self.quarantine(m, "conflict", "differs from the stored event", device, seq)
        self.out.acks[device].add(seq)
        self.out.keys[device] = row[0]

    def _ticket(self, device, ev, received_ms):
        from edge_agent import queues
        if self.zone is None:
            from edge_agent import config
            self.zone = queues.tz(config.validate({"hall": self.hall}))
        queues.join_offline(self.store, device, ev, received_ms, self.zone)

    def _presence(self, m, device):
        if not m.payload:
            return  # a cleared retained message
        try:
            msg = json.loads(m.payload)
            online = msg["online"]
            if type(online) is not bool:
                raise ValueError
        except Exception:
            if not m.retain:  # retained ones come back on every reconnect; quarantine once
                raise ProtocolError("bad_json", "presence must be {\"online\":true|false,...}")
            return
        if self._device(device) is None:
            self.store.bump("presence_unknown_device")
            return
        fw = msg.get("fw") if isinstance(msg.get("fw"), str) else None
        self.store.devices.set_presence(device, online, m.received_ms, fw)
        if online:
            self.out.came_online.add(device)
        else:
            self.out.came_online.discard(device)

    def finish(self):
        for device, (seq, last_ms) in self._hwm.items():
            self.store.devices.raise_hwm(device, seq, last_ms)
        self.store.bump_all({"received": self.received, "commits": 1, "committed": self.out.stored,
                             "duplicates": self.out.duplicates})
        return self.out


def commit(store, hall, messages, limits=None, zone=None):
    """Store a batch in one transaction and return what to ack."""
    with store.atomic():
        b = Batch(store, hall, limits, zone)
        for m in messages:
            b.add(m)
        return b.finish()
