"""The queue tables (migration 007): queues and the windows that serve
them, the numbers given out per day, kiosks' reserved blocks, tickets,
the calls and appointments. The rules live in edge_agent/queue.py; these
are its named queries, run inside its transactions."""


def _dicts(cursor):
    cols = [d[0] for d in cursor.description]
    return [dict(zip(cols, row)) for row in cursor]


# The order a window calls in: 绿色通道 first, then appointments whose slot
# has begun, then everyone else by when they joined.
_ORDER = ("priority DESC, CASE WHEN slot_ms IS NOT NULL AND slot_ms <= :now THEN 0 ELSE 1 END, "
          "order_ms, id")


class Queues:
    def __init__(self, conn):
        self.conn = conn

    # -- queues and windows
    def add(self, queue, name, created_ms):
        """False when the letter is taken."""
        return self.conn.execute("INSERT INTO queues VALUES (?, ?, ?) ON CONFLICT(queue) DO NOTHING",
                                 (queue, name, created_ms)).rowcount > 0

    def rename(self, queue, name):
        return self.conn.execute("UPDATE queues SET name = ? WHERE queue = ?", (name, queue)).rowcount > 0

    def all(self):
        """[{queue, name, windows: [...]}] in letter order."""
        rows = _dicts(self.conn.execute("SELECT queue, name FROM queues ORDER BY queue"))
        serving = {}
        for window, queue in self.conn.execute("SELECT window, queue FROM queue_windows ORDER BY window"):
            serving.setdefault(queue, []).append(window)
        for r in rows:
            r["windows"] = serving.get(r["queue"], [])
        return rows

    def exists(self, queue):
        return self.conn.execute("SELECT 1 FROM queues WHERE queue = ?", (queue,)).fetchone() is not None

    def serve(self, window, queues):
        """The window calls from exactly these queues (none: it calls no more)."""
        self.conn.execute("DELETE FROM queue_windows WHERE window = ?", (window,))
        self.conn.executemany("INSERT INTO queue_windows VALUES (?, ?)", [(window, q) for q in queues])

    def served_by(self, window):
        return [r[0] for r in self.conn.execute(
            "SELECT queue FROM queue_windows WHERE window = ? ORDER BY queue", (window,))]

    def windows_serving(self):
        """{queue: number of windows calling from it}"""
        return dict(self.conn.execute("SELECT queue, count(*) FROM queue_windows GROUP BY queue"))

    # -- numbers
    def take(self, queue, day, n):
        """Reserve the next n numbers of a queue's day: (first, last)."""
        last = self.conn.execute(
            "INSERT INTO queue_numbers VALUES (?, ?, ?) ON CONFLICT(queue, day) DO UPDATE "
            "SET last = last + excluded.last RETURNING last", (queue, day, n)).fetchone()[0]
        return last - n + 1, last

    def last_order(self, day):
        """The latest place in a day's calling order (ms), or 0."""
        return self.conn.execute("SELECT coalesce(max(order_ms), 0) FROM tickets WHERE day = ?", (day,)).fetchone()[0]

    def latest_day(self):
        """The latest day numbers were taken for ('YYYY-MM-DD'), or None."""
        return self.conn.execute("SELECT max(day) FROM queue_numbers").fetchone()[0]

    def last_number(self, queue, day):
        row = self.conn.execute("SELECT last FROM queue_numbers WHERE queue = ? AND day = ?",
                                (queue, day)).fetchone()
        return row[0] if row else 0

    def add_block(self, device, queue, day, lo, hi, taken_ms):
        self.conn.execute("INSERT INTO queue_blocks VALUES (?, ?, ?, ?, ?, ?)", (device, queue, day, lo, hi, taken_ms))

    def block_day(self, device, queue, number, day=None):
        """The day of the device's block holding this number (that day's when
        given and it has one, else the newest), or None."""
        rows = [r[0] for r in self.conn.execute(
            "SELECT day FROM queue_blocks WHERE device = ? AND queue = ? AND lo <= ? AND ? <= hi "
            "ORDER BY day DESC", (device, queue, number, number))]
        if day in rows:
            return day
        return rows[0] if rows else None

    def blocks(self, day):
        return _dicts(self.conn.execute("SELECT * FROM queue_blocks WHERE day = ? ORDER BY queue, lo", (day,)))

    # -- tickets
    def add_ticket(self, day, ticket, queue, source, device, issued_ms, priority=False, appointment=None,
                   slot_ms=None, item=None, case=None, order_ms=None):
        """The new ticket's id; None when that day already has this ticket.
        order_ms: its place in the calling order (default: its issue time)."""
        cur = self.conn.execute(
            "INSERT INTO tickets (day, ticket, queue, priority, appointment, slot_ms, device, source, issued_ms, "
            'order_ms, item, "case") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(day, ticket) DO NOTHING',
            (day, ticket, queue, int(bool(priority)), appointment, slot_ms, device, source, issued_ms,
             issued_ms if order_ms is None else order_ms, item, case))
        return cur.lastrowid if cur.rowcount > 0 else None

    def ticket(self, ticket_id):
        rows = _dicts(self.conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)))
        return rows[0] if rows else None

    def tickets(self, day):
        return _dicts(self.conn.execute("SELECT * FROM tickets WHERE day = ? ORDER BY id", (day,)))

    def next_waiting(self, queues, day, now):
        """The ticket the next call takes from these queues today, or None."""
        if not queues:
            return None
        marks = ",".join("?" * len(queues))
        rows = _dicts(self.conn.execute(
            "SELECT * FROM tickets WHERE state = 'waiting' AND queue IN (%s) AND day = ? ORDER BY %s LIMIT 1"
            % (marks, _ORDER.replace(":now", "?")), list(queues) + [day, now]))
        return rows[0] if rows else None

    def ahead(self, ticket_id, day, now):
        """Tickets waiting in its queue that a call would take before it."""
        t = self.ticket(ticket_id)
        rows = self.conn.execute(
            "SELECT id FROM tickets WHERE state = 'waiting' AND queue = ? AND day = ? ORDER BY %s"
            % _ORDER.replace(":now", "?"), (t["queue"], day, now))
        n = 0
        for (i,) in rows:
            if i == ticket_id:
                return n
            n += 1
        return n

    def called(self, ticket_id, window, at_ms, recall=False):
        """Record a call (or a recall) of a ticket at a window."""
        self.conn.execute("UPDATE tickets SET state = 'called', window = ?, calls = calls + 1, "
                          "first_called_ms = coalesce(first_called_ms, ?) WHERE id = ?", (window, at_ms, ticket_id))
        self.conn.execute("INSERT INTO queue_calls (ticket_id, window, at_ms, recall) VALUES (?, ?, ?, ?)",
                          (ticket_id, window, at_ms, int(recall)))

    def current(self, window):
        """The ticket this window called last, while it stands called."""
        rows = _dicts(self.conn.execute(
            "SELECT t.* FROM queue_calls c JOIN tickets t ON t.id = c.ticket_id WHERE c.window = ? "
            "ORDER BY c.id DESC LIMIT 1", (window,)))
        if rows and rows[0]["state"] == "called" and rows[0]["window"] == window:
            return rows[0]
        return None

    def no_show(self, ticket_id):
        self.conn.execute("UPDATE tickets SET state = 'no_show' WHERE id = ?", (ticket_id,))

    def transfer(self, ticket_id, queue, order_ms):
        """Back to waiting, in another queue."""
        self.conn.execute("UPDATE tickets SET state = 'waiting', queue = ?, window = NULL, order_ms = ? "
                          "WHERE id = ?", (queue, order_ms, ticket_id))

    def waiting(self, day):
        """{queue: tickets waiting} for a day."""
        return dict(self.conn.execute("SELECT queue, count(*) FROM tickets WHERE day = ? AND state = 'waiting' "
                                      "GROUP BY queue", (day,)))

    def calls_after(self, call_id, limit=50):
        """Calls newer than call_id, oldest first, with their ticket."""
        return _dicts(self.conn.execute(
            "SELECT c.id, c.window, c.at_ms, c.recall, t.ticket, t.queue, q.name FROM queue_calls c "
            "JOIN tickets t ON t.id = c.ticket_id LEFT JOIN queues q ON q.queue = t.queue "
            "WHERE c.id > ? ORDER BY c.id LIMIT ?", (call_id, limit)))

    def last_calls(self, limit):
        """The newest calls, newest first."""
        return _dicts(self.conn.execute(
            "SELECT c.id, c.window, c.at_ms, c.recall, t.ticket, t.queue, q.name FROM queue_calls c "
            "JOIN tickets t ON t.id = c.ticket_id LEFT JOIN queues q ON q.queue = t.queue "
            "ORDER BY c.id DESC LIMIT ?", (limit,)))

    def last_call_id(self):
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM queue_calls").fetchone()[0]

    def waits(self, day):
        """(queue, issued_ms, first_called_ms) of the day's called tickets."""
        return self.conn.execute("SELECT queue, issued_ms, first_called_ms FROM tickets WHERE day = ? "
                                 "AND first_called_ms IS NOT NULL", (day,)).fetchall()

    def first_calls_since(self, queue, since_ms):
        return self.conn.execute("SELECT count(*) FROM tickets WHERE queue = ? AND first_called_ms >= ?",
                                 (queue, since_ms)).fetchone()[0]

    def no_shows(self, day):
        return dict(self.conn.execute("SELECT queue, count(*) FROM tickets WHERE day = ? AND state = 'no_show' "
                                      "GROUP BY queue", (day,)))

    # -- appointments
    def add_appointment(self, code, queue, slot_ms, until_ms, created_ms, item=None, case=None):
        return self.conn.execute('INSERT INTO appointments (code, queue, slot_ms, until_ms, ticket_id, created_ms, '
                                 'item, "case") VALUES (?, ?, ?, ?, NULL, ?, ?, ?) ON CONFLICT(code) DO NOTHING',
                                 (code, queue, slot_ms, until_ms, created_ms, item, case)).rowcount > 0

    def appointment(self, code):
        rows = _dicts(self.conn.execute("SELECT * FROM appointments WHERE code = ?", (code,)))
        return rows[0] if rows else None

    def use_appointment(self, code, ticket_id):
        self.conn.execute("UPDATE appointments SET ticket_id = ? WHERE code = ?", (ticket_id, code))

    def appointments(self, since_ms):
        return _dicts(self.conn.execute("SELECT * FROM appointments WHERE until_ms >= ? ORDER BY slot_ms",
                                        (since_ms,)))
