# The kiosk's check of the agent's `case` answer (SPEC 'Requests', case),
# under the real MicroPython: `promised` is a date or null (the county has
# no deadline for it: a year whose holidays are not published yet).
import kiosk

ok = {"case": "KC1", "state": "accepted", "light": None, "promised": "2026-12-09", "item_name": "事项"}
assert kiosk._case_reply(ok, "KC1")
ok["promised"] = None
assert kiosk._case_reply(ok, "KC1")
for bad in ("2026-1-9", 20261209, ""):
    ok["promised"] = bad
    assert not kiosk._case_reply(ok, "KC1"), bad
ok["promised"] = None
ok["state"] = "lost"
assert not kiosk._case_reply(ok, "KC1")
print("PASS")
