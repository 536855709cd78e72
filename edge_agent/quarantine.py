"""The quarantine: refused messages kept with their reason, within bounds.

Quarantined input is data, for a human to look at: the first occurrences
are kept (one row per distinct message; `repeats` counts resends of it).
But anyone who can publish on the hall's broker can send junk, under any
device id, so rows are bounded by count and by bytes per bucket: each
registered device has its own, and every id the registry does not know
shares one (UNREGISTERED), so forged ids cannot multiply the bound. What
comes over the bound is counted per bucket (`quarantine_dropped:<bucket>`),
never silently lost; rows not seen for `keep_days` are deleted.
"""
import hashlib

from edge_agent.store import now_ms

UNREGISTERED = "(unregistered)"     # not a valid device id: no device can own this bucket
MAX_PAYLOAD = 4096                  # bytes of a refused payload kept for inspection
MAX_TOPIC = 256
MAX_DETAIL = 200
_DAY_MS = 86400000


class Quarantine:
    """Used inside one ingest transaction; `limits` is the config's
    [quarantine] table."""

    def __init__(self, store, limits):
        self.store = store
        self.max_rows = limits["max_rows_per_device"]
        self.max_bytes = limits["max_bytes_per_device"]
        self._used = {}             # bucket -> [rows, bytes], read once per transaction

    def add(self, m, reason, detail, device, seq, registered):
        """Keep a refused message, or count it when its bucket is full.
        Returns True when it is kept (as a new row or a repeat)."""
        bucket = device if registered else UNREGISTERED
        rows = self.store.quarantine
        digest = hashlib.sha256(b"\0".join((m.topic.encode(), bytes(m.payload), reason.encode()))).hexdigest()
        if rows.repeat(digest, m.received_ms):
            return True
        payload = bytes(m.payload[:MAX_PAYLOAD])
        if len(m.payload) > MAX_PAYLOAD:
            detail = (detail + " " if detail else "") + "(payload cut from %d bytes)" % len(m.payload)
        topic, detail = m.topic[:MAX_TOPIC], detail[:MAX_DETAIL]
        size = len(payload) + len(topic.encode()) + len(detail.encode())
        used = self._usage(bucket)
        if used[0] + 1 > self.max_rows or used[1] + size > self.max_bytes:
            self.store.bump("quarantine_dropped:" + bucket)
            return False
        rows.add(m.received_ms, topic, payload, reason, detail, device, seq, digest, bucket, size)
        used[0] += 1
        used[1] += size
        return True

    def _usage(self, bucket):
        if bucket not in self._used:
            self._used[bucket] = self.store.quarantine.usage(bucket)
        return self._used[bucket]


def purge(store, keep_days, now=None):
    """Delete rows not seen for keep_days (0 keeps all); returns how many."""
    if not keep_days:
        return 0
    with store.atomic():
        n = store.quarantine.purge((now or now_ms()) - keep_days * _DAY_MS)
        store.bump("quarantine_purged", n)
    return n


def usage(store):
    """What `status` shows: rows and bytes kept, and what was dropped by bucket."""
    rows, size = store.quarantine.usage()
    c = store.counters()
    dropped = {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("quarantine_dropped:")}
    return {"rows": rows, "bytes": size, "dropped": dropped, "purged": c.get("quarantine_purged", 0)}
