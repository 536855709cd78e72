"""The kiosk's tables: the county's cases of this hall (the cache the
`case` and `print` requests read) and the print jobs rendered for kiosks."""

_CASE_COLS = ("case", "item", "item_name", "state", "accepted", "promised", "light", "rate_url")


class Cases:
    def __init__(self, conn):
        self.conn = conn

    def put(self, case, fetched_ms):
        """Insert or replace one case (a dict with the _CASE_COLS, checked)."""
        self.conn.execute(
            'INSERT INTO cases ("case", item, item_name, state, accepted, promised, light, rate_url, fetched_ms) '
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (\"case\") DO UPDATE SET item = excluded.item, "
            "item_name = excluded.item_name, state = excluded.state, accepted = excluded.accepted, "
            "promised = excluded.promised, light = excluded.light, rate_url = excluded.rate_url, "
            "fetched_ms = excluded.fetched_ms", tuple(case[k] for k in _CASE_COLS) + (fetched_ms,))

    def forget(self, case):
        """The county sent something for this case that could not be taken:
        its old row must not be answered as current."""
        self.conn.execute('DELETE FROM cases WHERE "case" = ?', (case,))

    def get(self, case):
        row = self.conn.execute('SELECT "case", item, item_name, state, accepted, promised, light, rate_url '
                                'FROM cases WHERE "case" = ?', (case,)).fetchone()
        return dict(zip(_CASE_COLS, row)) if row else None

    def count(self):
        return self.conn.execute("SELECT count(*) FROM cases").fetchone()[0]

    def purge(self, before_ms):
        """Cases the county has not listed since `before_ms`; returns how many."""
        return self.conn.execute("DELETE FROM cases WHERE fetched_ms < ?", (before_ms,)).rowcount


class PrintJobs:
    def __init__(self, conn):
        self.conn = conn

    def add(self, job, device, doc, case, data, sha, created_ms):
        self.conn.execute('INSERT INTO print_jobs (job, device, doc, "case", data, sha, created_ms) '
                          "VALUES (?, ?, ?, ?, ?, ?, ?)", (job, device, doc, case, data, sha, created_ms))

    def get(self, job, device):
        """{data, sha, done_ms} of a job that belongs to `device`, or None."""
        row = self.conn.execute("SELECT data, sha, done_ms FROM print_jobs WHERE job = ? AND device = ?",
                                (job, device)).fetchone()
        return {"data": row[0], "sha": row[1], "done_ms": row[2]} if row else None

    def finish(self, job, device, result, at_ms):
        """The kiosk reported the job's end (its `print` event); the first report stands."""
        self.conn.execute("UPDATE print_jobs SET done_ms = ?, result = ? WHERE job = ? AND device = ? "
                          "AND done_ms IS NULL", (at_ms, result, job, device))

    def purge(self, before_ms):
        """Jobs made before `before_ms`; returns how many."""
        return self.conn.execute("DELETE FROM print_jobs WHERE created_ms < ?", (before_ms,)).rowcount
