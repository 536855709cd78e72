"""The events table: what ingest stores, what status reads, the uplink's
backlog (unsynced rows in arrival order) and its retention."""

# Parameters per statement stay within SQLite's oldest limit (999), and the
# statements have a few shapes only (lists padded, rows in powers of two):
# each shape is a prepared statement kept in the connection's cache, and one
# per batch size held ~0.5 MiB more at a hall's rate.
_PER_LOOKUP = 256
_ROWS_PER_INSERT = 128


def _shapes(n, most):
    """n as a sum of powers of two up to `most`, largest first."""
    while n:
        k = min(most, 1 << (n.bit_length() - 1))
        yield k
        n -= k


class Events:
    def __init__(self, conn):
        self.conn = conn

    # -- ingest
    def add_new(self, rows):
        """Store those of `rows` (device, seq, kind, t, body, received_ms) not
        held yet, in a few statements; returns, row by row, True for each one
        this call stored (False: held already, or earlier in `rows`). Run in
        the writer's transaction (atomic()): nothing else inserts meanwhile.
        A statement per row let go of the interpreter lock per row, and the
        committer then waited for paho's thread to give it back."""
        seqs = {}
        for r in rows:
            seqs.setdefault(r[0], []).append(r[1])
        held = set()
        for device, wanted in seqs.items():
            for i in range(0, len(wanted), _PER_LOOKUP):
                part = wanted[i:i + _PER_LOOKUP]
                part += part[-1:] * ((1 << (len(part) - 1).bit_length()) - len(part))     # padded: a repeat
                held.update((device, s) for (s,) in self.conn.execute(
                    "SELECT seq FROM events WHERE device = ? AND seq IN (%s)" % ",".join("?" * len(part)),
                    [device] + part))
        new, stored = [], []
        for r in rows:
            key = (r[0], r[1])
            fresh = key not in held
            stored.append(fresh)
            if fresh:
                held.add(key)
                new.append(r)
        i = 0
        for k in _shapes(len(new), _ROWS_PER_INSERT):
            self.conn.execute("INSERT INTO events (device, seq, kind, t, body, received_ms) VALUES "
                              + ",".join(["(?, ?, ?, ?, ?, ?)"] * k), [v for r in new[i:i + k] for v in r])
            i += k
        return stored

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
