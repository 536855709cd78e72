"""The store's schema: named migrations, applied in order, each in its own
transaction and recorded in `_migrations` (Store.migrate). Every table of
the agent's file is made here and nowhere else; a store made by any earlier
agent is brought up to date when it is opened.
"""


def _script(conn, sql):
    # Statement by statement: sqlite3's executescript() COMMITs the open
    # transaction first, and a migration must be all or nothing.
    for statement in sql.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def _m001_initial(conn):
    _script(conn, """
    CREATE TABLE events (
        device TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        t INTEGER NOT NULL,
        body TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        synced_ms INTEGER,
        PRIMARY KEY (device, seq)
    );
    -- Every entry has synced_ms NULL, so the index is in rowid (arrival) order.
    CREATE INDEX events_unsynced ON events(synced_ms) WHERE synced_ms IS NULL;
    CREATE TABLE quarantine (
        id INTEGER PRIMARY KEY,
        received_ms INTEGER NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        device TEXT,
        seq INTEGER
    );
    CREATE TABLE devices (
        device TEXT PRIMARY KEY,
        hall TEXT NOT NULL,
        window TEXT,
        key_hex TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
        replaced_by TEXT,
        hwm INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        online INTEGER NOT NULL DEFAULT 0,
        presence_ms INTEGER,
        fw TEXT,
        last_event_ms INTEGER
    );
    CREATE TABLE windows (
        window TEXT PRIMARY KEY,
        staff TEXT,
        staff_no TEXT,
        target_s INTEGER,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """)


def _m002_quarantine_repeats(conn):
    # A device with a wrong key resends its whole outbox again and again:
    # keep one row per distinct refused message and count the repeats.
    _script(conn, """
    ALTER TABLE quarantine ADD COLUMN digest TEXT;
    ALTER TABLE quarantine ADD COLUMN repeats INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE quarantine ADD COLUMN last_ms INTEGER;
    CREATE UNIQUE INDEX quarantine_digest ON quarantine(digest);
    """)


def _m003_device_health(conn):
    # The hall manager's view of each device: the alarm and outbox depth of its
    # newest status event (by seq, so a late or resent one never rolls it back),
    # taken at once from the status events already stored.
    _script(conn, """
    ALTER TABLE devices ADD COLUMN health_seq INTEGER;
    ALTER TABLE devices ADD COLUMN health_alarm TEXT;
    ALTER TABLE devices ADD COLUMN health_outbox INTEGER;
    UPDATE devices SET (health_seq, health_alarm, health_outbox) = (
        SELECT seq, json_extract(body, '$.alarm'), json_extract(body, '$.outbox') FROM events
        WHERE events.device = devices.device AND kind = 'status' ORDER BY seq DESC LIMIT 1);
    """)


def _m004_quarantine_bounds(conn):
    # The quarantine is bounded per device (edge_agent/quarantine.py): each row
    # names the bucket it counts against and its size; purging by age needs
    # last_ms on every row. Ids not in the registry share one bucket.
    _script(conn, """
    ALTER TABLE quarantine ADD COLUMN bucket TEXT;
    ALTER TABLE quarantine ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
    UPDATE quarantine SET last_ms = coalesce(last_ms, received_ms),
        size = length(payload) + length(CAST(topic AS BLOB)) + length(CAST(detail AS BLOB)),
        bucket = CASE WHEN device IN (SELECT device FROM devices) THEN device ELSE '(unregistered)' END;
    CREATE INDEX quarantine_bucket ON quarantine(bucket);
    CREATE INDEX quarantine_last ON quarantine(last_ms);
    """)


def _m005_uplink_tables(conn):
    # The uplink kept these two outside the migrations (created on its first
    # run, so an agent without an uplink has neither): IF NOT EXISTS takes
    # over the ones it made, with their rows, and gives every store both.
    _script(conn, """
    -- The batch in flight: id and members, so a resend reuses both.
    CREATE TABLE IF NOT EXISTS uplink_batches (
        batch TEXT PRIMARY KEY, created_ms INTEGER NOT NULL,
        members TEXT NOT NULL, posts INTEGER NOT NULL DEFAULT 0);
    -- What the county refused, kept for a human (the body too: retention may
    -- delete the synced conflict row from events).
    CREATE TABLE IF NOT EXISTS uplink_rejects (
        device TEXT NOT NULL, seq INTEGER NOT NULL, status TEXT NOT NULL,
        reason TEXT, body TEXT NOT NULL, first_ms INTEGER NOT NULL,
        last_ms INTEGER NOT NULL, retry_ms INTEGER, PRIMARY KEY (device, seq));
    """)


def _m006_device_requests(conn):
    _script(conn, """
    -- The counter of the last request each device sent that the agent took
    -- (protocol SPEC 'Requests'): a request at or below it is a replay.
    ALTER TABLE devices ADD COLUMN last_request INTEGER NOT NULL DEFAULT 0;
    """)


def _m007_queues(conn):
    _script(conn, """
    -- The hall's queues (edge_agent/queue.py): a letter each, the ticket's first character.
    CREATE TABLE queues (
        queue TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    -- Which windows call from which queues.
    CREATE TABLE queue_windows (
        window TEXT NOT NULL,
        queue TEXT NOT NULL,
        PRIMARY KEY (window, queue)
    );
    -- The last number given out per queue and hall-local day, online or in a
    -- kiosk's block: taken in the transaction that records what it went to.
    CREATE TABLE queue_numbers (
        queue TEXT NOT NULL,
        day TEXT NOT NULL,
        last INTEGER NOT NULL,
        PRIMARY KEY (queue, day)
    );
    -- Numbers a kiosk reserved for tickets it hands out while it cannot ask.
    CREATE TABLE queue_blocks (
        device TEXT NOT NULL,
        queue TEXT NOT NULL,
        day TEXT NOT NULL,
        lo INTEGER NOT NULL,
        hi INTEGER NOT NULL,
        taken_ms INTEGER NOT NULL,
        PRIMARY KEY (queue, day, lo)
    );
    -- Every ticket, online or from a block; `queue` is where it waits now.
    CREATE TABLE tickets (
        id INTEGER PRIMARY KEY,
        day TEXT NOT NULL,
        ticket TEXT NOT NULL,
        queue TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        appointment TEXT,
        slot_ms INTEGER,
        device TEXT,
        source TEXT NOT NULL CHECK (source IN ('agent', 'block')),
        issued_ms INTEGER NOT NULL,
        order_ms INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'called', 'no_show')),
        window TEXT,
        first_called_ms INTEGER,
        calls INTEGER NOT NULL DEFAULT 0,
        UNIQUE (day, ticket)
    );
    CREATE INDEX tickets_waiting ON tickets(queue, priority, order_ms) WHERE state = 'waiting';
    CREATE INDEX tickets_window ON tickets(window, state);
    -- Each call and recall, in order: the lobby's board and the voice read it.
    CREATE TABLE queue_calls (
        id INTEGER PRIMARY KEY,
        ticket_id INTEGER NOT NULL,
        window TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        recall INTEGER NOT NULL DEFAULT 0
    );
    -- Appointments (预约) for a time slot, exchanged for a ticket once.
    CREATE TABLE appointments (
        code TEXT PRIMARY KEY,
        queue TEXT NOT NULL,
        slot_ms INTEGER NOT NULL,
        until_ms INTEGER NOT NULL,
        ticket_id INTEGER,
        created_ms INTEGER NOT NULL
    );
    """)


def _m008_kiosk(conn):
    # The self-service kiosk (issue 8). 007 is the queues' (tickets).
    _script(conn, """
    -- The county's cases of this hall, as its case API last listed them
    -- (edge_agent/cases.py checks every value before it gets here). A county
    -- may list a case without its item's name, and without a rating link
    -- (it has no link secret): NULL, a slip without a QR code.
    CREATE TABLE cases (
        "case" TEXT PRIMARY KEY, item TEXT NOT NULL, item_name TEXT,
        state TEXT NOT NULL, accepted TEXT NOT NULL, promised TEXT, light TEXT,
        rate_url TEXT, fetched_ms INTEGER NOT NULL);
    CREATE INDEX cases_fetched ON cases(fetched_ms);
    -- Print jobs rendered for a kiosk: the bytes it fetches in chunks. A job id
    -- is never given out twice; done_ms is set when the kiosk's `print` event
    -- for it arrives, and then its chunks are no longer served.
    CREATE TABLE print_jobs (
        job TEXT PRIMARY KEY, device TEXT NOT NULL, doc TEXT NOT NULL, "case" TEXT,
        data BLOB NOT NULL, sha TEXT NOT NULL, created_ms INTEGER NOT NULL,
        done_ms INTEGER, result TEXT);
    CREATE INDEX print_jobs_created ON print_jobs(created_ms);
    -- A kiosk's printer as its newest `printer` event said (by seq, as health).
    ALTER TABLE devices ADD COLUMN printer_seq INTEGER;
    ALTER TABLE devices ADD COLUMN printer_state TEXT;
    """)


def _m009_device_health_detail(conn):
    # The technician's fleet view (`hallctl fleet`): the rest of the newest
    # status, kept on the device's row so retention deleting synced events
    # never blanks it; taken at once from the status events already stored.
    _script(conn, """
    ALTER TABLE devices ADD COLUMN health_fw TEXT;
    ALTER TABLE devices ADD COLUMN health_reset TEXT;
    ALTER TABLE devices ADD COLUMN health_heap INTEGER;
    ALTER TABLE devices ADD COLUMN health_rssi INTEGER;
    ALTER TABLE devices ADD COLUMN health_uptime_s INTEGER;
    ALTER TABLE devices ADD COLUMN health_t INTEGER;
    UPDATE devices SET (health_fw, health_reset, health_heap, health_rssi, health_uptime_s, health_t) = (
        SELECT json_extract(body, '$.fw'), json_extract(body, '$.reset'), json_extract(body, '$.heap'),
               json_extract(body, '$.rssi'), json_extract(body, '$.uptime_s'), t FROM events
        WHERE events.device = devices.device AND kind = 'status' ORDER BY seq DESC LIMIT 1);
    """)


def _m010_ticket_item_case(conn):
    # Issue 14: a ticket may know the 事项编码 and the 办件编号 it is for (from its
    # appointment, or the device that asked for it); the call passes them to the
    # window's evaluator, which puts them on the session and the rating.
    _script(conn, """
    ALTER TABLE tickets ADD COLUMN item TEXT;
    ALTER TABLE tickets ADD COLUMN "case" TEXT;
    ALTER TABLE appointments ADD COLUMN item TEXT;
    ALTER TABLE appointments ADD COLUMN "case" TEXT;
    """)


def _m011_ota(conn):
    # Over-the-air updates (edge_agent/ota.py): the bundles the technician
    # gave the agent, and where each device stands with the one offered to it.
    _script(conn, """
    CREATE TABLE ota_bundles (
        version TEXT PRIMARY KEY,
        manifest TEXT NOT NULL,
        image BLOB NOT NULL,
        sha TEXT NOT NULL,
        added_ms INTEGER NOT NULL
    );
    CREATE TABLE ota_devices (
        device TEXT PRIMARY KEY,
        version TEXT NOT NULL REFERENCES ota_bundles(version),
        state TEXT NOT NULL CHECK (state IN ('offered', 'downloading', 'switching', 'healthy',
                                             'rolled_back', 'refused', 'failed', 'withdrawn')),
        from_fw TEXT,
        chunks INTEGER NOT NULL DEFAULT 0,
        health_s INTEGER NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        offered_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    """)


# Named, applied in order, each in its own transaction, recorded in _migrations.
MIGRATIONS = [
    ("001_initial", _m001_initial),
    ("002_quarantine_repeats", _m002_quarantine_repeats),
    ("003_device_health", _m003_device_health),
    ("004_quarantine_bounds", _m004_quarantine_bounds),
    ("005_uplink_tables", _m005_uplink_tables),
    ("006_device_requests", _m006_device_requests),
    ("007_queues", _m007_queues),
    ("008_kiosk", _m008_kiosk),
    ("009_device_health_detail", _m009_device_health_detail),
    ("010_ticket_item_case", _m010_ticket_item_case),
    ("011_ota", _m011_ota),
]
