"""The quarantine table: refused messages, one row per distinct message
(its digest), with the bucket it counts against (edge_agent/quarantine.py
decides what is kept)."""


class Quarantined:
    def __init__(self, conn):
        self.conn = conn

    def repeat(self, digest, at_ms):
        """Count a resend of a kept message; False when none has this digest."""
        return self.conn.execute("UPDATE quarantine SET repeats = repeats + 1, last_ms = ? WHERE digest = ?",
                                 (at_ms, digest)).rowcount > 0

    def add(self, received_ms, topic, payload, reason, detail, device, seq, digest, bucket, size):
        self.conn.execute(
            "INSERT INTO quarantine (received_ms, topic, payload, reason, detail, device, seq, digest, "
            "last_ms, bucket, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (received_ms, topic, payload, reason, detail, device, seq, digest, received_ms, bucket, size))

    def usage(self, bucket=None):
        """[rows, bytes] kept, in one bucket or in all."""
        if bucket is None:
            cur = self.conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM quarantine")
        else:
            cur = self.conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM quarantine WHERE bucket = ?",
                                    (bucket,))
        return list(cur.fetchone())

    def purge(self, before_ms):
        """Delete rows last seen before `before_ms`; returns how many."""
        return self.conn.execute("DELETE FROM quarantine WHERE last_ms < ?", (before_ms,)).rowcount

    def newest(self, reason=None, limit=20):
        """(id, received_ms, last_ms, repeats, reason, detail, topic, payload), newest first."""
        where, params = ("WHERE reason = ?", [reason]) if reason else ("", [])
        return self.conn.execute(
            "SELECT id, received_ms, last_ms, repeats, reason, detail, topic, payload FROM quarantine %s "
            "ORDER BY id DESC LIMIT ?" % where, params + [limit]).fetchall()
