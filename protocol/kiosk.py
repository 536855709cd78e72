"""The self-service kiosk's event kinds (自助终端: tickets, printing, its
transactions), added to the schema table in events.py.

Apart from the window evaluator's kinds so that a device keeps in its small
heap only the schemas of what it sends: the evaluator never imports this,
a kiosk does, and so does the `protocol` package everywhere but on a device.
"""
from protocol.events import KINDS, _BOOL, _ENUM, _INT, _REQ, _STR

# A queue ticket was issued (a kiosk's, from its reserved block), or, from
# the agent's queue (device `_queue`), what happened to one: the fields
# after `item` are optional, so a ticket event of before reads as it did.
KINDS["ticket"] = (
    "ticket", _STR + _REQ, None,
    "queue", _STR + _REQ, None,
    "item", _STR, None,
    "action", _ENUM, ("issued", "called", "recalled", "no_show", "transferred"),
    "id", _STR, None,          # <yyyymmdd>-<ticket>: unique in the hall
    "window", _STR, None,
    "wait_ms", _INT, None,     # on `called`: first call - issued
    "to", _STR, None,          # on `transferred`: the queue it went to
    "priority", _BOOL, None,   # 绿色通道
)
# One print job and how it ended (cut_short: the kiosk rebooted mid-job; it never resends it).
KINDS["print"] = (
    "job", _STR + _REQ, None,
    "doc", _ENUM + _REQ, ("case_status", "ticket", "receipt", "form"),
    "result", _ENUM + _REQ, ("ok", "paper_out", "printer_error", "cancelled", "cut_short"),
    "pages", _INT, None,
    "case", _STR, None,
)
# The printer changed state.
KINDS["printer"] = (
    "state", _ENUM + _REQ, ("ok", "paper_low", "paper_out", "cover_open", "offline"),
)
# A citizen's transaction at the terminal.
KINDS["kiosk_session"] = (
    "action", _ENUM + _REQ, ("started", "ended", "unrated"),
    "session", _STR + _REQ, None,
    "item", _STR, None,
    "case", _STR, None,
)
