"""One incoming event -> the row the county stores, or the reason it cannot.

The county holds no device keys, so it checks structure only
(`protocol.parse`); the hall's agent checked every MAC before sending.
"""
import hashlib

import protocol
from protocol.topics import valid_id

# Event fields copied into their own columns so reports need no JSON parsing.
COLUMNS = ("level", "channel", "window", "staff", "session", "action", "item", "case")
# The largest integer every JSON reader holds exactly (a double's 53 bits);
# also well inside the BIGINT columns of both databases.
MAX_SAFE_INT = 2 ** 53 - 1


class Malformed(ValueError):
    """The request itself is wrong (HTTP 400), not one event in it."""


class Invalid(ValueError):
    """One event the county refuses; `reason` is a protocol error code."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def key(item):
    """(device, seq) of a batch item, or Malformed: without them no per-event
    answer can be given, so the whole request is refused."""
    if type(item) is not dict:
        raise Malformed("each event must be an object")
    device, seq = item.get("device"), item.get("seq")
    if type(device) is not str or not valid_id(device):
        raise Malformed("event without a valid device id")
    if type(seq) is not int or not 1 <= seq <= MAX_SAFE_INT:
        raise Malformed("event %s without a valid seq (a whole number 1 to 2^53-1)" % device)
    return device, seq


def canonical(ev):
    # The wire form as SPEC.md defines it: what tells a duplicate from a conflict
    # even if a hall re-serialised the JSON.
    return protocol.wire(ev).decode()


def record(device, seq, body):
    """Parse a wire body -> dict of the columns to store; raise Invalid."""
    if type(body) is not str:
        raise Invalid("bad_type")
    try:
        ev = protocol.parse(body.encode())
    except UnicodeEncodeError:              # a lone surrogate (JSON "\ud800")
        raise Invalid("bad_value")
    except protocol.ProtocolError as e:
        raise Invalid(e.code)
    try:
        # parse() has held every field to the protocol's rules (integers within
        # 2^53 - 1, no surrogates); the mac's characters are checked only by a
        # verify, which the hall's agent made. A lone surrogate there has no
        # UTF-8 form: neither canonical() nor a database could take it.
        ev["mac"].encode()
    except UnicodeEncodeError:
        raise Invalid("bad_value")
    if ev["device"] != device or ev["seq"] != seq:
        raise Invalid("key_mismatch")
    row = {"kind": ev["kind"], "t": ev["t"], "body": body}
    for c in COLUMNS:
        row[c] = ev.get(c)
    return row


def same_event(stored, body):
    """Is `body` a redelivery of the stored body? Byte-equal is the common
    case; otherwise compare the canonical forms (a re-serialised resend)."""
    if stored == body:
        return True
    try:
        return canonical(protocol.parse(stored.encode())) == canonical(protocol.parse(body.encode()))
    except protocol.ProtocolError:
        return False


def as_stored(body):
    """An invalid body as text any database takes: a lone surrogate escaped,
    anything not a string named by its type (it was not an event)."""
    if type(body) is not str:
        return "(not a string: %s)" % type(body).__name__
    return body.encode("utf-8", "backslashreplace").decode()


def digest(text):
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
