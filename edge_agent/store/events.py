"""The events table: what ingest stores, what status reads, the uplink's
backlog (unsynced rows in arrival order) and its retention."""


class Events:
    def __init__(self, conn):
        self.conn = conn

    # -- ingest
    def add(self, device, seq, kind, t, body, received_ms):
        """Store a new event; False when (device, seq) is held already."""
        return self.conn.execute(
            "INSERT INTO events (device, seq, kind, t, body, received_ms) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (device, seq) DO NOTHING", (device, seq, kind, t, body, received_ms)).rowcount > 0

    def body(self, device, seq):
        row = self.conn.execute("SELECT body FROM events WHERE device = ? AND seq = ?", (device, seq)).fetchone()
        return row[0] if row else None

    def top_seq(self, device):
        """The highest seq stored for a device (0 when none)."""
        return self.conn.execute("SELECT MAX(seq) FROM events WHERE device = ?", (device,)).fetchone()[0] or 0

    # -- status
    def count(self):
        return self.conn.execute("SELECT count(*) FROM events").fetchone()[0]

    def backlog(self):
        """(events not yet at the county, received_ms of the oldest or None)."""
        return tuple(self.conn.execute("SELECT count(*), min(received_ms) FROM events WHERE synced_ms IS NULL"
                                       ).fetchone())

    def ratings_between(self, since_ms, until_ms):
        """(device, level, count) of ratings in [since_ms, until_ms) by the
        rating's own time, or the arrival time when the device had no clock."""
        return self.conn.execute(
            "SELECT device, json_extract(body, '$.level'), count(*) FROM events "
            "WHERE kind = 'rating' AND (CASE WHEN t > 0 THEN t ELSE received_ms END) BETWEEN ? AND ? - 1 "
            "GROUP BY 1, 2", (since_ms, until_ms)).fetchall()

    def last_session(self, device):
        """The body of a device's newest session event, or None."""
        row = self.conn.execute("SELECT body FROM events WHERE device = ? AND kind = 'session' "
                                "ORDER BY seq DESC LIMIT 1", (device,)).fetchone()
        return row[0] if row else None

    def session_steps(self, device, session):
        """(action, t) of one session's events, in seq order."""
        return self.conn.execute(
            "SELECT json_extract(body, '$.action'), t FROM events WHERE device = ? AND kind = 'session' "
            "AND json_extract(body, '$.session') = ? ORDER BY seq", (device, session)).fetchall()

    # -- the uplink
    def unsynced_after(self, rowid, limit):
        """A cursor of (rowid, device, seq, body), unsynced, in arrival order."""
        return self.conn.execute("SELECT rowid, device, seq, body FROM events WHERE synced_ms IS NULL "
                                 "AND rowid > ? ORDER BY rowid LIMIT ?", (rowid, limit))

    def unsynced(self, device, seq):
        """(rowid, body) of the event when it is not synced yet, else None."""
        return self.conn.execute("SELECT rowid, body FROM events WHERE device = ? AND seq = ? "
                                 "AND synced_ms IS NULL", (device, seq)).fetchone()

    def mark_synced(self, keys, at_ms):
        """The county committed these (device, seq)."""
        self.conn.executemany("UPDATE events SET synced_ms = ? WHERE device = ? AND seq = ?",
                              [(at_ms, device, seq) for device, seq in keys])

    def purge_synced(self, older_than_ms, chunk):
        """Delete synced events received before older_than_ms, `chunk` rows per
        transaction (ingest keeps its turn); unsynced rows are never touched.
        Returns rows deleted."""
        total = 0
        while True:
            n = self.conn.execute("DELETE FROM events WHERE rowid IN (SELECT rowid FROM events "
                                  "WHERE synced_ms IS NOT NULL AND received_ms < ? LIMIT ?)",
                                  (older_than_ms, chunk)).rowcount
            total += n
            if n < chunk:
                return total
