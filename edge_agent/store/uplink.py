"""The uplink's tables: the batches in flight (so every resend of its rows,
also after a restart, carries the same id) and what the county refused."""
import json


class Outbound:
    def __init__(self, conn):
        self.conn = conn

    def pending_batch(self, skip=()):
        """(batch id, [[device, seq], ...]) of the oldest batch in flight, or
        None; batches named in `skip` (being sent now) left out."""
        for batch, members in self.conn.execute("SELECT batch, members FROM uplink_batches ORDER BY created_ms"):
            if batch not in skip:
                return batch, json.loads(members)
        return None

    def open_batch(self, batch, created_ms, members):
        self.conn.execute("INSERT INTO uplink_batches (batch, created_ms, members) VALUES (?, ?, ?)",
                          (batch, created_ms, json.dumps(members)))

    def count_post(self, batch):
        self.conn.execute("UPDATE uplink_batches SET posts = posts + 1 WHERE batch = ?", (batch,))

    def drop_batch(self, batch):
        self.conn.execute("DELETE FROM uplink_batches WHERE batch = ?", (batch,))

    def reject(self, device, seq, status, reason, body, at_ms, retry_ms):
        """Keep what the county refused; a refusal again updates the row."""
        self.conn.execute(
            "INSERT INTO uplink_rejects (device, seq, status, reason, body, first_ms, last_ms, retry_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, seq) DO UPDATE SET "
            "status = excluded.status, reason = excluded.reason, last_ms = excluded.last_ms, "
            "retry_ms = excluded.retry_ms", (device, seq, status, reason, body, at_ms, at_ms, retry_ms))

    def held(self, now_ms):
        """{(device, seq)} the county called invalid, held back until their retry time."""
        return set(self.conn.execute("SELECT device, seq FROM uplink_rejects WHERE status = 'invalid' "
                                     "AND retry_ms > ?", (now_ms,)).fetchall())

    def invalid_count(self):
        return self.conn.execute("SELECT count(*) FROM uplink_rejects WHERE status = 'invalid'").fetchone()[0]
