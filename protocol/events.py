"""Events: schema, canonical encoding, signing and validation.

An event travels as compact JSON with a fixed field order: the common head,
the kind's own fields in schema order, then `mac`, the HMAC-SHA256 of the
same bytes without `mac`. Because the order and the spelling are fixed,
the bytes a device signs are the bytes the agent re-derives from the
decoded fields, on either interpreter.
"""
import sys

from protocol import mac as _mac
from protocol.compact import dumps as _dump
from protocol.errors import ProtocolError
from protocol.topics import valid_id

VERSION = 1
MAX_PAYLOAD = 1024          # bytes on the wire, mac included
MAX_INT = 9007199254740991  # 2**53 - 1: exact in every JSON reader (JavaScript's too)
# A device config on the wire: the device reads at most 4096 bytes per MQTT
# packet (firmware/mqtt.py), topic and any signature included.
MAX_CONFIG = 2048
MAX_TARGET_S = 86400        # a service-time target longer than a day is a typo
MAX_SEQ_DEVICE = 4294967295  # a device's outbox keeps seqs in 32 bits (4e9 events: never reached)
_MAX_STR = 64
_MAX_LIST = 8

# Satisfaction levels, best first. Names, never numbers: GB/T 39046-2020
# numbers them 1 = very satisfied, several provinces the other way round.
LEVELS = ("very_satisfied", "satisfied", "basically_satisfied",
          "dissatisfied", "very_dissatisfied")
# Where the rating was given (评价渠道). Province codes are mapped on export.
CHANNELS = ("window", "kiosk", "qr", "pc", "mobile", "phone", "sms")

# Field types.
_INT = 1     # int 0..MAX_INT, or the schema's (lowest, highest); never a bool
_STR = 2     # short text, no control characters
_ENUM = 3    # one of a tuple of names
_LIST = 4    # short list of short texts
_BOOL = 5
_TARGETS = 6  # {name: seconds}, in the device config
_REQ = 8     # added to a type: the field is required
_TYPE = 7    # the type without _REQ

# A schema is one flat tuple: name, type (+ _REQ), allowed (an enum's
# names, an int's (lowest, highest), or None), then the next field. Flat
# rather than a tuple per field: a device keeps these tables in its small
# heap, where every small tuple costs a block of its own.
_HEAD = (
    "v", _INT + _REQ, None,
    "device", _STR + _REQ, None,
    "seq", _INT + _REQ, None,
    "kind", _STR + _REQ, None,
    "t", _INT + _REQ, None,      # wall clock, Unix ms; 0 = device had no time yet
)

KINDS = {
    # A citizen's rating of one service (一次一评).
    "rating": (
        "level", _ENUM + _REQ, LEVELS,
        "channel", _ENUM + _REQ, CHANNELS,
        "session", _STR + _REQ, None,
        "window", _STR, None,
        "staff", _STR, None,
        "item", _STR, None,        # 事项编码
        "case", _STR, None,        # 办件编号
        "reasons", _LIST, None,
    ),
    # One step of a service at a window. service_ms excludes paused time.
    "session": (
        "action", _ENUM + _REQ, ("called", "started", "paused", "resumed", "ended", "unrated"),
        "session", _STR + _REQ, None,
        "window", _STR + _REQ, None,
        "ticket", _STR, None,
        "staff", _STR, None,
        "item", _STR, None,
        "case", _STR, None,
        "service_ms", _INT, None,
        "paused_ms", _INT, None,
    ),
    # Device health, sent periodically; may be dropped when the outbox is full.
    "status": (
        "fw", _STR + _REQ, None,
        "uptime_s", _INT + _REQ, None,
        "reset", _STR + _REQ, None,
        "outbox", _INT + _REQ, None,
        "heap", _INT + _REQ, None,
        "rssi", _INT, None,        # dBm as a positive number: 67 = -67 dBm
        "ignored", _INT, None,     # presses outside a prompt or repeated
        "alarm", _STR, None,
    ),
}
# The kiosk's own kinds are in protocol/kiosk.py: a device keeps in its heap
# only the schemas of what it sends (the agent and the county import all).

# Control characters are the only place the two interpreters' json.dumps
# disagree; a surrogate (a lone "\ud800" escape) has no UTF-8 form: CPython
# cannot even encode it. The agent finds them at C speed (it checks every
# string it ingests); a device, which has no such regex, char by char.
_unplain = None
if sys.implementation.name != "micropython":
    import re
    _unplain = re.compile("[\x00-\x1f\ud800-\udfff]").search


def _plain(s):
    if _unplain is not None:
        return _unplain(s) is None
    # Over the UTF-8 bytes: iterating the str would make each Chinese
    # character a str the device interns (a qstr, never freed). A control
    # character is one byte below 0x20; a surrogate is ED A0..BF xx.
    b = memoryview(s)
    n = len(b)
    for i in range(n):
        c = b[i]
        if c < 0x20 or (c == 0xED and i + 1 < n and b[i + 1] >= 0xA0):
            return False
    return True


def _check(name, typ, allowed, value):
    tv = type(value)
    if typ == _INT:
        if tv is not int:
            raise ProtocolError("bad_type", name)
        lo, hi = allowed or (0, MAX_INT)
        if value < lo or value > hi:
            raise ProtocolError("bad_value", name)
    elif typ == _BOOL:
        if tv is not bool:
            raise ProtocolError("bad_type", name)
    elif typ == _LIST:
        if tv is not list:
            raise ProtocolError("bad_type", name)
        if len(value) > (allowed or _MAX_LIST):
            raise ProtocolError("bad_value", name)
        for v in value:
            _check(name, _STR, None, v)
            if allowed:
                # A list with its own length (the config's `reasons`): "<code> <label>",
                # the label 1-6 characters, so that "1√" and it fit a 128-pixel row.
                i = v.find(" ")
                if i < 1 or not 0 < len(v) - i - 1 <= 6:
                    raise ProtocolError("bad_value", name)
    elif typ == _TARGETS:
        if tv is not dict:
            raise ProtocolError("bad_type", name)
        for k in value:
            _check(name, _STR, None, k)
            _check(name, _INT, allowed, value[k])
    else:
        if tv is not str:
            raise ProtocolError("bad_type", name)
        if not value or len(value) > _MAX_STR:
            raise ProtocolError("bad_value", name)
        if allowed is not None and value not in allowed:
            raise ProtocolError("bad_value", name)
        if not _plain(value):
            raise ProtocolError("bad_value", name)


def _config_field(name):
    # The device config (agent -> device, retained; SPEC 'Config'): the fields
    # a device reads, by the rules of the event fields they end up in
    # (`staff_no`, when set, is what events carry as `staff`). Code, not a
    # table, so that a device keeps no copy of it in its small heap.
    if name == "window" or name == "staff" or name == "staff_no":
        return _STR, None
    if name == "targets":           # {item: seconds}, "default" for the rest
        return _TARGETS, (1, MAX_TARGET_S)
    if name == "warn_pct":
        return _INT, (1, 100)
    if name == "prompt_s":
        return _INT, (1, 3600)
    if name == "hwm":               # a device's outbox keeps seqs in 32 bits
        return _INT, (0, MAX_SEQ_DEVICE)
    if name == "t" or name == "rq":  # rq: the last request counter the agent took
        return _INT, None
    if name == "calls":             # the window calls from a queue: its staff key asks `next`
        return _INT, (1, 1)
    if name == "reasons":           # the 差评 reason screen: up to 12 "<code> <label>"
        return _LIST, 12
    return None                     # not a config field: devices ignore it


def field(kind, name):
    """(type, allowed) of a field: `kind` an event kind, or "config" for the
    device config; ProtocolError unknown_field when it has no such field."""
    if kind == "config":
        spec = _config_field(name)
        if spec is not None:
            return spec
    else:
        for schema in (_HEAD, _fields(kind)):
            for i in range(0, len(schema), 3):
                if schema[i] == name:
                    return schema[i + 1] & _TYPE, schema[i + 2]
    raise ProtocolError("unknown_field", _shown(name))


def check_field(kind, name, value):
    """Check one value by the rule of its field (see field()) and return it;
    raise ProtocolError. What the agent takes from a person goes through
    here before it can reach a device, so both sides hold it to one rule."""
    typ, allowed = field(kind, name)
    _check(name, typ, allowed, value)
    return value


def clean_config(cfg):
    """Leave out, in place, the config fields that break their rules and
    return their names: a device keeps working without a bad staff name
    (and says so: the `config` alarm) instead of failing every event."""
    bad = []
    for name in cfg:
        spec = _config_field(name)
        if spec is not None:
            try:
                _check(name, spec[0], spec[1], cfg[name])
            except ProtocolError:
                bad.append(name)
    for name in bad:
        del cfg[name]
    return bad


def _shown(x):
    # Refused input quoted back in an error: short, and encodable even when
    # it holds a surrogate (the agent stores the detail in SQLite).
    s = str(x)[:_MAX_STR]
    return s if _plain(s) else repr(s)[:_MAX_STR]


def _fields(kind):
    schema = KINDS.get(kind)
    if schema is None:
        raise ProtocolError("unknown_kind", _shown(kind))
    return schema


def _canonical(ev, schema):
    parts = []
    for i in range(0, len(_HEAD), 3):
        name = _HEAD[i]
        parts.append('"' + name + '":' + _dump(ev[name]))
    for i in range(0, len(schema), 3):
        name = schema[i]
        v = ev.get(name)
        if v is not None:
            parts.append('"' + name + '":' + _dump(v))
    return parts


def _known(name, schema):
    for i in range(0, len(_HEAD), 3):
        if _HEAD[i] == name:
            return True
    for i in range(0, len(schema), 3):
        if schema[i] == name:
            return True
    return False


def validate(ev):
    """Check an event dict against its schema; raise ProtocolError."""
    if type(ev) is not dict:
        raise ProtocolError("bad_json", "not an object")
    for i in range(0, len(_HEAD), 3):
        if _HEAD[i] not in ev:
            raise ProtocolError("missing_field", _HEAD[i])
    if type(ev["v"]) is not int or ev["v"] != VERSION:
        raise ProtocolError("bad_version", _shown(ev["v"])[:8])
    if type(ev["kind"]) is not str:
        raise ProtocolError("bad_type", "kind")
    schema = _fields(ev["kind"])
    for i in range(0, len(_HEAD), 3):
        name = _HEAD[i]
        _check(name, _HEAD[i + 1] & _TYPE, _HEAD[i + 2], ev[name])
    if not valid_id(ev["device"]):
        raise ProtocolError("bad_value", "device")
    if ev["seq"] < 1:
        raise ProtocolError("bad_value", "seq")
    known = len(_HEAD) // 3 + ("mac" in ev)    # keys of ev that are fields (or the mac)
    for i in range(0, len(schema), 3):
        name = schema[i]
        v = ev.get(name)
        if v is None:
            if schema[i + 1] & _REQ:
                raise ProtocolError("missing_field", name)
            if name in ev:
                known += 1
        else:
            _check(name, schema[i + 1] & _TYPE, schema[i + 2], v)
            known += 1
    if known != len(ev):    # field names are distinct: a key is unknown; name it
        for k in ev:
            if k != "mac" and not _known(k, schema):
                raise ProtocolError("unknown_field", _shown(k))
    return ev


def body(ev):
    """The canonical bytes of an event without its mac: what is signed, and
    what tells an identical redelivery from a conflicting one."""
    return ("{" + ",".join(_canonical(ev, _fields(ev["kind"]))) + "}").encode()


def encode(ev, key):
    """Validate, sign with the device key and return the wire bytes."""
    validate(ev)
    b = body(ev)
    out = _mac.attach(b, _mac.sign(key, b))
    if len(out) > MAX_PAYLOAD:
        raise ProtocolError("too_large", str(len(out)))
    return out
