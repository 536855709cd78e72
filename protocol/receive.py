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
from protocol.events import _HEAD, _dump, _fields, MAX_PAYLOAD, body, validate


def wire(ev):
    """The canonical wire bytes of a parsed event, its received mac last:
    what two deliveries of one event compare by (agent and county alike)."""
    return _mac.attach(body(ev), ev["mac"])


def _in_canonical_order(ev, schema):
    # json keeps an object's keys in wire order: the head, the kind's fields
    # present in schema order (none null), then mac.
    order = [_HEAD[i] for i in range(0, len(_HEAD), 3)]
    for i in range(0, len(schema), 3):
        name = schema[i]
        if name in ev:
            if ev[name] is None:
                return False
            order.append(name)
    order.append("mac")
    return list(ev) == order


def signed(ev, payload):
    """The bytes `ev`'s mac signs, `ev` parsed (by parse()) from the wire
    bytes `payload`: cut from the payload when it is canonical (as every
    encoder here writes it; one C-speed re-encoding of the whole event
    proves it), else rebuilt from the fields. Either way body(ev): a
    canonical payload is body + mac. The agent's path: no MicroPython use."""
    if (payload[-74:-66] == b',"mac":"' and _dump(ev).encode() == payload
            and _in_canonical_order(ev, _fields(ev["kind"]))):
        return payload[:-74] + b"}"        # the tail is ,"mac":"<64 hex>"}
    return body(ev)


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
