"""The county store's schema, as named migrations applied in order, each in
its own transaction and recorded in `_migrations`: the same SQL and the same
runner on SQLite and PostgreSQL (as the agent's store does it).

001 is the schema the server created before it had migrations, written with
IF NOT EXISTS so that such a database takes it as already there; later steps
change what exists. Never edit a step once released: add one.
"""
import time

INITIAL = (
    # One row per event, ever: (hall, device, seq) is its permanent name.
    """CREATE TABLE IF NOT EXISTS events (
        hall TEXT NOT NULL, device TEXT NOT NULL, seq BIGINT NOT NULL,
        kind TEXT NOT NULL, t BIGINT NOT NULL,
        level TEXT, channel TEXT, "window" TEXT, staff TEXT, session TEXT,
        action TEXT, item TEXT, "case" TEXT,
        body TEXT NOT NULL, batch TEXT NOT NULL, received_ms BIGINT NOT NULL,
        PRIMARY KEY (hall, device, seq))""",
    # Monthly reports and screens ask "this hall's ratings in this period".
    "CREATE INDEX IF NOT EXISTS events_report ON events (hall, kind, t)",
    # The losing side of a conflict, once per distinct body.
    """CREATE TABLE IF NOT EXISTS conflicts (
        hall TEXT NOT NULL, device TEXT NOT NULL, seq BIGINT NOT NULL,
        digest TEXT NOT NULL, body TEXT NOT NULL,
        batch TEXT NOT NULL, received_ms BIGINT NOT NULL,
        PRIMARY KEY (hall, device, seq, digest))""",
    # Bodies the county could not parse (a newer protocol, a bug): kept for a human.
    """CREATE TABLE IF NOT EXISTS invalid (
        hall TEXT NOT NULL, device TEXT NOT NULL, seq BIGINT NOT NULL,
        digest TEXT NOT NULL, body TEXT NOT NULL, reason TEXT NOT NULL,
        batch TEXT NOT NULL, received_ms BIGINT NOT NULL,
        PRIMARY KEY (hall, device, seq, digest))""",
    # Every batch id seen and how often it was posted: a resend shows as posts > 1.
    """CREATE TABLE IF NOT EXISTS batches (
        hall TEXT NOT NULL, batch TEXT NOT NULL,
        first_ms BIGINT NOT NULL, last_ms BIGINT NOT NULL,
        posts BIGINT NOT NULL, events BIGINT NOT NULL,
        PRIMARY KEY (hall, batch))""",
)

# Stats without scanning: counts per hall, bumped in the ingest transaction
# that changes what they count. Names: events:<kind>, ratings:<level>,
# conflicts, invalid, batches, batch_posts. Filled from the tables once.
COUNTERS = (
    """CREATE TABLE counters (
        hall TEXT NOT NULL, name TEXT NOT NULL, value BIGINT NOT NULL,
        PRIMARY KEY (hall, name))""",
    "INSERT INTO counters SELECT hall, 'events:' || kind, count(*) FROM events GROUP BY hall, kind",
    "INSERT INTO counters SELECT hall, 'ratings:' || coalesce(level, ''), count(*) FROM events "
    "WHERE kind = 'rating' GROUP BY hall, coalesce(level, '')",
    "INSERT INTO counters SELECT hall, 'conflicts', count(*) FROM conflicts GROUP BY hall",
    "INSERT INTO counters SELECT hall, 'invalid', count(*) FROM invalid GROUP BY hall",
    "INSERT INTO counters SELECT hall, 'batches', count(*) FROM batches GROUP BY hall",
    "INSERT INTO counters SELECT hall, 'batch_posts', sum(posts) FROM batches GROUP BY hall",
)

# Cases (办件) that business systems post, for the 红黄牌 lights: the case as
# it stands, and every event that made it so. `revisions` numbers changes
# county-wide, so a hall asks for "what changed since N" (cases.py).
CASES = (
    """CREATE TABLE cases (
        hall TEXT NOT NULL, "case" TEXT NOT NULL, item TEXT NOT NULL, item_name TEXT, department TEXT,
        "window" TEXT, promised_days BIGINT NOT NULL, state TEXT NOT NULL, accepted TEXT NOT NULL,
        completed TEXT, suspended_since TEXT, suspended_days BIGINT NOT NULL,
        rev BIGINT NOT NULL, updated_ms BIGINT NOT NULL,
        PRIMARY KEY (hall, "case"))""",
    "CREATE INDEX cases_rev ON cases (hall, rev)",
    """CREATE TABLE case_events (
        hall TEXT NOT NULL, "case" TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL, date TEXT NOT NULL,
        body TEXT NOT NULL, received_ms BIGINT NOT NULL,
        PRIMARY KEY (hall, "case", id))""",
    "CREATE TABLE revisions (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
    "INSERT INTO revisions (name, value) VALUES ('cases', 0)",
)

# Follow-up work (差评 整改, 办不成事): one row per matter, its history as
# appended steps, never updated (followup.py).
FOLLOWUPS = (
    """CREATE TABLE followups (
        hall TEXT NOT NULL, id TEXT NOT NULL, workflow TEXT NOT NULL, opened TEXT NOT NULL,
        opened_ms BIGINT NOT NULL, level TEXT, "window" TEXT, staff TEXT, item TEXT, "case" TEXT,
        reasons TEXT NOT NULL, note TEXT,
        PRIMARY KEY (hall, id))""",
    """CREATE TABLE followup_steps (
        hall TEXT NOT NULL, id TEXT NOT NULL, n BIGINT NOT NULL, state TEXT NOT NULL, who TEXT NOT NULL,
        at_ms BIGINT NOT NULL, date TEXT NOT NULL, note TEXT NOT NULL, level TEXT,
        PRIMARY KEY (hall, id, n))""",
)

# Ratings the county takes itself: by QR link (一事一评, channel qr; n = 2 is
# the 追评) and the system default for a service left unrated (channel default).
COUNTY_RATINGS = (
    """CREATE TABLE county_ratings (
        hall TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, n BIGINT NOT NULL,
        level TEXT NOT NULL, channel TEXT NOT NULL, reasons TEXT NOT NULL, t BIGINT NOT NULL,
        item TEXT, "case" TEXT, "window" TEXT, staff TEXT,
        PRIMARY KEY (hall, kind, ref, n))""",
    "CREATE INDEX county_ratings_t ON county_ratings (hall, t)",
)

MIGRATIONS = [
    ("001_initial", INITIAL),
    ("002_counters", COUNTERS),
    ("003_cases", CASES),
    ("004_followups", FOLLOWUPS),
    ("005_county_ratings", COUNTY_RATINGS),
]

_TABLE = "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_ms BIGINT NOT NULL)"


def migrate(store):
    """Apply what is pending; returns the names applied. Each step runs in a
    transaction of its own under the store's schema lock, so two servers
    starting together on one PostgreSQL apply each step once."""
    p = store.placeholder
    applied = []
    for name, steps in MIGRATIONS:
        with store._connection() as db:
            store._schema_lock(db)
            db.execute(_TABLE)
            if db.execute("SELECT 1 FROM _migrations WHERE name = %s" % p, (name,)).fetchone():
                continue
            for sql in steps:
                db.execute(sql)
            db.execute("INSERT INTO _migrations (name, applied_ms) VALUES (%s, %s)" % (p, p),
                       (name, int(time.time() * 1000)))
            applied.append(name)
    return applied


def status(store):
    """[(name, applied_ms or None)] for every known step, in order."""
    with store._connection() as db:
        store._schema_lock(db)
        db.execute(_TABLE)
        done = dict(db.execute("SELECT name, applied_ms FROM _migrations").fetchall())
    return [(name, done.get(name)) for name, _ in MIGRATIONS]
