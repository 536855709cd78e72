"""The devices and windows tables: the registry's rows, and what ingest
learns about each device (presence, health, seq high-water mark)."""


def _dicts(cursor):
    cols = [d[0] for d in cursor.description]
    return [dict(zip(cols, row)) for row in cursor]


class Devices:
    def __init__(self, conn):
        self.conn = conn

    def get(self, device):
        """The device's row as a dict, or None."""
        rows = _dicts(self.conn.execute("SELECT * FROM devices WHERE device = ?", (device,)))
        return rows[0] if rows else None

    def all(self):
        return _dicts(self.conn.execute("SELECT * FROM devices ORDER BY device"))

    def credentials(self, device):
        """(key_hex, status) or None: what ingest needs to check an event."""
        return self.conn.execute("SELECT key_hex, status FROM devices WHERE device = ?", (device,)).fetchone()

    def key(self, device):
        row = self.conn.execute("SELECT key_hex FROM devices WHERE device = ?", (device,)).fetchone()
        return row[0] if row else None

    def add(self, device, hall, window, key_hex, hwm, created_ms):
        self.conn.execute(
            "INSERT INTO devices (device, hall, window, key_hex, hwm, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (device, hall, window, key_hex, hwm, created_ms))

    def retire(self, device, replaced_by=None):
        self.conn.execute("UPDATE devices SET status = 'retired', replaced_by = coalesce(?, replaced_by) "
                          "WHERE device = ?", (replaced_by, device))

    def set_presence(self, device, online, at_ms, fw):
        """Presence as the device's retained status said; fw kept when not given."""
        self.conn.execute("UPDATE devices SET online = ?, presence_ms = ?, fw = coalesce(?, fw) WHERE device = ?",
                          (int(online), at_ms, fw, device))

    def set_health(self, device, ev):
        """The device's health is its newest status event `ev`: one that
        arrives late (a lower seq, resent after a reboot) must not roll it back."""
        self.conn.execute(
            "UPDATE devices SET health_seq = ?, health_alarm = ?, health_outbox = ?, health_fw = ?, "
            "health_reset = ?, health_heap = ?, health_rssi = ?, health_uptime_s = ?, health_t = ? "
            "WHERE device = ? AND coalesce(health_seq, 0) < ?",
            (ev["seq"], ev.get("alarm"), ev["outbox"], ev["fw"], ev["reset"], ev["heap"], ev.get("rssi"),
             ev["uptime_s"], ev["t"], device, ev["seq"]))

    def set_printer(self, device, seq, state):
        """A kiosk's printer state is its newest `printer` event's, as health is."""
        self.conn.execute("UPDATE devices SET printer_seq = ?, printer_state = ? "
                          "WHERE device = ? AND coalesce(printer_seq, 0) < ?", (seq, state, device, seq))

    def last_request(self, device):
        row = self.conn.execute("SELECT last_request FROM devices WHERE device = ?", (device,)).fetchone()
        return row[0] if row else 0

    def took_request(self, device, n):
        self.conn.execute("UPDATE devices SET last_request = max(last_request, ?) WHERE device = ?", (n, device))

    def raise_hwm(self, device, seq, last_event_ms):
        self.conn.execute("UPDATE devices SET hwm = max(hwm, ?), last_event_ms = ? WHERE device = ?",
                          (seq, last_event_ms, device))

    def overview(self):
        """What `status` shows of each device, in device order."""
        return _dicts(self.conn.execute(
            "SELECT device, window, status, online, presence_ms, fw, hwm, last_event_ms, "
            "health_alarm, health_outbox, health_fw, health_reset, health_heap, health_rssi, "
            "health_uptime_s, health_t, printer_state FROM devices ORDER BY device"))


class Windows:
    def __init__(self, conn):
        self.conn = conn

    def set(self, window, staff, staff_no, target_s, updated_ms):
        """Upsert a window; None leaves a field as it is."""
        self.conn.execute(
            "INSERT INTO windows (window, staff, staff_no, target_s, updated_ms) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(window) DO UPDATE SET staff = coalesce(excluded.staff, staff), "
            "staff_no = coalesce(excluded.staff_no, staff_no), "
            "target_s = coalesce(excluded.target_s, target_s), updated_ms = excluded.updated_ms",
            (window, staff, staff_no, target_s, updated_ms))

    def all(self):
        """{window: row dict}"""
        return {r["window"]: r for r in _dicts(self.conn.execute("SELECT * FROM windows"))}
