"""The agent's store: one SQLite file, one class as its front door
(db.py); the SQL lives in this package and nowhere else in edge_agent/
(tests/test_agent_layout.py says so).

  db.py          Store: connect(), atomic(), migrate(), counters, meta
  migrations.py  every table, as named migrations
  events.py      events: ingest's inserts, status's reads, the uplink's backlog, retention
  devices.py     devices and windows: the registry, presence, health, hwm
  quarantine.py  refused messages: repeats, bucket usage, purge, listing
  uplink.py      the uplink's batch in flight and the county's rejects
  kiosk.py       the county's cases (cached) and the kiosks' print jobs
  queues.py      queues, the windows serving them, numbers, blocks, tickets, calls, appointments
  ota.py         over-the-air updates: the bundles, where each device stands

Tables:
  events          one row per (device, seq), body = canonical wire JSON with mac;
                  synced_ms is NULL until the county committed it; rowid order is
                  arrival order and a partial index finds the unsynced rows.
  quarantine      everything refused, with the ProtocolError code as reason;
                  one row per distinct message, `repeats` counts resends;
                  bounded per device `bucket` (edge_agent/quarantine.py).
  devices         the registry: key, window binding, status, seq high-water mark,
                  presence, and the health its newest status event reported
                  (health_seq, health_alarm, health_outbox, and for the fleet view
                  health_fw, health_reset, health_heap, health_rssi, health_uptime_s,
                  health_t); last_request, the counter of the last device request taken;
                  a kiosk's printer as its newest `printer` event said (printer_seq,
                  printer_state).
  windows         staff on duty and the service-time target per window.
  counters        received, committed, duplicates, quarantined:<reason>,
                  quarantine_dropped:<bucket>, quarantine_purged, ...
  meta            registry_rev, bumped when devices/windows change so a running
                  agent republishes device configs; link_epoch (edge_agent/sealer.py).
  uplink_batches  the batch in flight: its id and members, so a resend reuses both.
  uplink_rejects  what the county refused (conflict, invalid), kept for a human.
  cases           the county's cases of this hall as its case API last listed them;
                  meta keeps the cursor, when the county last answered, and the
                  day's 红黄牌 counts (edge_agent/cases.py).
  print_jobs      ESC/POS bytes rendered for one kiosk, with their sha256; done_ms
                  once the kiosk's `print` event says how the job ended.
  queues, queue_windows, queue_numbers, queue_blocks, tickets, queue_calls,
  appointments    the hall's queues (edge_agent/queue.py): numbers per queue and
                  hall-local day, taken in the transaction that records them.
  ota_bundles     update bundles (hallctl ota): version, manifest, the app image and
                  its sha256.
  ota_devices     the update offered to each device and where it stands (offered,
                  downloading, switching, healthy, rolled_back, refused, failed,
                  withdrawn); chunks served; meta ota_rev, bumped when offers change
                  so a running agent sends them.
"""
from edge_agent.store.db import Store, connect, now_ms
from edge_agent.store.migrations import MIGRATIONS

__all__ = ["Store", "connect", "now_ms", "MIGRATIONS"]
