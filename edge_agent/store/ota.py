"""Over-the-air updates (edge_agent/ota.py): the bundles and where each
device stands with the one offered to it."""

_UPDATE_COLS = ("device", "version", "state", "from_fw", "chunks", "health_s", "detail", "offered_ms",
                "updated_ms")


class Bundles:
    def __init__(self, conn):
        self.conn = conn

    def add(self, version, manifest, image, sha, at_ms):
        """Keep a bundle; the same version again must be the same image."""
        row = self.conn.execute("SELECT sha FROM ota_bundles WHERE version = ?", (version,)).fetchone()
        if row is not None:
            return row[0] == sha
        self.conn.execute("INSERT INTO ota_bundles (version, manifest, image, sha, added_ms) VALUES (?, ?, ?, ?, ?)",
                          (version, manifest, image, sha, at_ms))
        return True

    def get(self, version):
        """{version, manifest, size, sha} without the image, or None."""
        row = self.conn.execute("SELECT version, manifest, length(image), sha FROM ota_bundles WHERE version = ?",
                                (version,)).fetchone()
        return dict(zip(("version", "manifest", "size", "sha"), row)) if row else None

    def piece(self, version, offset, n):
        """Bytes [offset, offset + n) of a bundle's image (b"" past its end), or None."""
        row = self.conn.execute("SELECT substr(image, ?, ?) FROM ota_bundles WHERE version = ?",
                                (offset + 1, n, version)).fetchone()
        return None if row is None else bytes(row[0])


class Updates:
    def __init__(self, conn):
        self.conn = conn

    def offer(self, device, version, from_fw, health_s, at_ms):
        self.conn.execute(
            "INSERT INTO ota_devices (device, version, state, from_fw, chunks, health_s, detail, offered_ms, "
            "updated_ms) VALUES (?, ?, 'offered', ?, 0, ?, '', ?, ?) ON CONFLICT (device) DO UPDATE SET "
            "version = excluded.version, state = 'offered', from_fw = excluded.from_fw, chunks = 0, "
            "health_s = excluded.health_s, detail = '', offered_ms = excluded.offered_ms, "
            "updated_ms = excluded.updated_ms", (device, version, from_fw, health_s, at_ms, at_ms))

    def get(self, device):
        row = self.conn.execute("SELECT %s FROM ota_devices WHERE device = ?" % ", ".join(_UPDATE_COLS),
                                (device,)).fetchone()
        return dict(zip(_UPDATE_COLS, row)) if row else None

    def all(self):
        return [dict(zip(_UPDATE_COLS, r)) for r in
                self.conn.execute("SELECT %s FROM ota_devices ORDER BY device" % ", ".join(_UPDATE_COLS))]

    def served(self, device, i, at_ms):
        """Chunk i went to the device: it is downloading."""
        self.conn.execute("UPDATE ota_devices SET state = 'downloading', chunks = max(chunks, ?), updated_ms = ? "
                          "WHERE device = ? AND state IN ('offered', 'downloading')", (i + 1, at_ms, device))

    def set_state(self, device, state, detail, at_ms, only_from=None):
        """Move a device's update to `state`; with only_from, only from those states."""
        sql = "UPDATE ota_devices SET state = ?, detail = ?, updated_ms = ? WHERE device = ?"
        args = [state, detail, at_ms, device]
        if only_from:
            sql += " AND state IN (%s)" % ", ".join("?" * len(only_from))
            args += list(only_from)
        return self.conn.execute(sql, args).rowcount
