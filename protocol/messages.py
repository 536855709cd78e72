"""Agent -> device messages: acks, config and commands, sealed with the
device's key (SPEC: 'The device link').

The broker ACL keeps other devices off these topics, but the link is plain
MQTT and the device cannot tell who the broker is: whoever sits between it
and the Pi could empty its outbox with a forged ack or poison its seq with a
forged hwm. So each message carries `n`, a counter that only goes up, and
`mac`, an HMAC-SHA256 with the device key over the channel name and the
bytes before `mac`. The device checks both before it acts.

The sealed bytes are the JSON object with its top-level keys sorted (so
both interpreters write the same bytes) and `mac` last. The device checks
the MAC over the bytes as received and never re-encodes them.
"""
import json

from protocol import mac
from protocol.compact import dumps
from protocol.errors import ProtocolError


def seal(key, channel, msg, n):
    """The wire bytes of `msg` (a dict) for `channel`, with counter `n`."""
    if "n" in msg or "mac" in msg:
        raise ValueError("n and mac are the seal's own fields")
    fields = dict(msg)
    fields["n"] = n
    body = ("{" + ",".join(dumps(k) + ":" + dumps(fields[k]) for k in sorted(fields)) + "}").encode()
    # The channel is signed too: an ack can never be replayed as a command.
    tag = mac.sign(key, channel.encode() + b"\n" + body)
    return mac.attach(body, tag)


def unseal(key, channel, payload, last):
    """The message in `payload` if `key` sealed it for `channel` and its
    counter is newer than `last`, the counter of the last message accepted
    on this channel; a config may also repeat it (the retained copy comes
    again on every reconnect). Raises ProtocolError: `bad_mac` (not sealed
    with this key: forged, another device's, or plain), `bad_json`,
    `bad_value` (no counter), `replayed` (an old counter)."""
    size = len(payload)           # the tail is ,"mac":"<64 hex>"} (74 bytes)
    if size < 76 or payload[size - 74:size - 66] != b',"mac":"' or payload[size - 2:] != b'"}':
        raise ProtocolError("bad_mac", "not sealed")
    body = payload[:size - 74] + b"}"
    try:
        tag = payload[size - 66:size - 2].decode()
    except Exception:
        raise ProtocolError("bad_mac")
    if not mac.equal(mac.sign(key, channel.encode() + b"\n" + body), tag):
        raise ProtocolError("bad_mac")
    msg = loads(body)
    n = msg.get("n")
    if type(n) is not int or n < 1:
        raise ProtocolError("bad_value", "n")
    if n < last or (n == last and channel != "config"):
        raise ProtocolError("replayed")
    return msg


def ack(seqs):
    """The ack body for the committed seqs, as inclusive ranges: {"acks":[[1,5],[7,7]]}."""
    ranges = []
    for s in sorted(seqs):
        if ranges and ranges[-1][1] + 1 >= s:
            if s > ranges[-1][1]:
                ranges[-1][1] = s
        else:
            ranges.append([s, s])
    return {"acks": ranges}


def parse_ack(msg):
    """Return a list of (lo, hi) ranges from an unsealed ack or raise ProtocolError."""
    try:
        out = []
        for r in msg["acks"]:
            lo, hi = r
            if type(lo) is not int or type(hi) is not int or lo < 1 or hi < lo:
                raise ValueError
            out.append((lo, hi))
        return out
    except ProtocolError:
        raise
    except Exception:
        raise ProtocolError("bad_ack")


def acked(ranges, seq):
    for lo, hi in ranges:
        if lo <= seq <= hi:
            return True
    return False


def encode(msg):
    """Device presence as compact JSON bytes."""
    return dumps(msg).encode()


def loads(payload):
    try:
        msg = json.loads(payload)
    except Exception:
        raise ProtocolError("bad_json")
    if type(msg) is not dict:
        raise ProtocolError("bad_json", "not an object")
    return msg
