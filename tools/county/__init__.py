"""The reference county server: receives every hall's batches of events over
HTTP, stores each event once under (hall, device, seq) and answers per event.

County IT may run it as is (SQLite for a trial, PostgreSQL in production) or
implement API.md themselves; the edge agent's uplink only relies on API.md.
"""
