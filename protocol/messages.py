"""Agent -> device messages: acks, config and the time beacon.

These travel on topics only the agent may write (the broker ACL enforces
it), so they carry no per-device MAC.
"""
import json

from protocol.compact import dumps
from protocol.errors import ProtocolError


def ack(seqs):
    """Bytes acking the committed seqs, as inclusive ranges: {"acks":[[1,5],[7,7]]}."""
    ranges = []
    for s in sorted(seqs):
        if ranges and ranges[-1][1] + 1 >= s:
            if s > ranges[-1][1]:
                ranges[-1][1] = s
        else:
            ranges.append([s, s])
    return dumps({"acks": ranges}).encode()


def parse_ack(payload):
    """Return a list of (lo, hi) ranges or raise ProtocolError."""
    try:
        msg = json.loads(payload)
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
    """Config and command dicts as compact JSON bytes."""
    return dumps(msg).encode()


def loads(payload):
    try:
        msg = json.loads(payload)
    except Exception:
        raise ProtocolError("bad_json")
    if type(msg) is not dict:
        raise ProtocolError("bad_json", "not an object")
    return msg
