"""The receiving side of events (the hall's agent, the county): wire bytes ->
a checked, authenticated event, and the canonical bytes two deliveries of
one event compare by.

Apart from events.py, which a device needs to build its events, so that a
device, which never receives one, keeps none of this code in its small
heap; the `protocol` package brings these names in everywhere else
(protocol.parse, protocol.decode, ...).
"""
import json

from protocol import mac as _mac
from protocol.errors import ProtocolError
from protocol.events import MAX_PAYLOAD, body, validate


def wire(ev):
    """The canonical wire bytes of a parsed event, its received mac last:
    what two deliveries of one event compare by (agent and county alike)."""
    return _mac.attach(body(ev), ev["mac"])


def parse(payload):
    """Decode and validate wire bytes without checking the signature (the
    caller learns the device from it to find the key)."""
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError("too_large", str(len(payload)))
    try:
        ev = json.loads(payload)
    except Exception:
        raise ProtocolError("bad_json")
    validate(ev)
    if "mac" not in ev:
        raise ProtocolError("missing_field", "mac")
    m = ev["mac"]
    if type(m) is not str or len(m) != 64:
        raise ProtocolError("bad_type", "mac")
    return ev


def verify(ev, key):
    if not _mac.equal(ev["mac"], _mac.sign(key, body(ev))):
        raise ProtocolError("bad_mac", ev["device"])
    return ev


def decode(payload, key):
    """Wire bytes -> validated, authenticated event dict, or ProtocolError."""
    return verify(parse(payload), key)
