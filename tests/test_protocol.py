"""Protocol behaviour beyond the golden vectors (CPython side)."""
import json
import random

import pytest

import protocol
from protocol import messages, topics

KEY = bytes(range(32))
EV = {"v": 1, "device": "ev-01", "seq": 5, "kind": "rating", "t": 1764000000000,
      "level": "satisfied", "channel": "window", "session": "s-1", "staff": "李四"}


def test_roundtrip_and_field_order_independent_of_dict_order():
    shuffled = dict(reversed(list(EV.items())))
    assert protocol.encode(shuffled, KEY) == protocol.encode(EV, KEY)
    assert protocol.decode(protocol.encode(EV, KEY), KEY)["staff"] == "李四"


def test_non_canonical_bytes_with_right_content_still_verify():
    # A verifier rebuilds the canonical bytes, so whitespace on the wire is harmless.
    wire = json.loads(protocol.encode(EV, KEY))
    assert protocol.decode(json.dumps(wire, indent=2).encode(), KEY)["seq"] == 5


def test_wrong_key_is_bad_mac():
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.decode(protocol.encode(EV, KEY), b"x" * 32)
    assert e.value.code == "bad_mac"


def test_encode_refuses_invalid_events():
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.encode(dict(EV, level=3), KEY)
    assert e.value.code == "bad_type"


def test_random_garbage_only_ever_raises_protocol_error():
    rng = random.Random(2026)
    good = protocol.encode(EV, KEY)
    for _ in range(3000):
        mode = rng.randrange(3)
        if mode == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        elif mode == 1:
            b = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            data = bytes(b)
        else:
            data = good[:rng.randrange(len(good))]
        try:
            protocol.decode(data, KEY)
        except protocol.ProtocolError:
            pass


def test_topics():
    t = topics.topic("hall-1", "ev-01", topics.EVENTS)
    assert t == "qinglian/v1/hall-1/ev-01/events"
    assert topics.parse(t) == ("hall-1", "ev-01", "events")
    assert topics.for_all_devices("hall-1", topics.STATUS) == "qinglian/v1/hall-1/+/status"
    for bad in ["qinglian/v1/hall-1/ev-01", "qinglian/v2/h/d/events", "qinglian/v1/h/d/nope",
                "qinglian/v1/h/d#/events", "qinglian/v1/h//events"]:
        with pytest.raises(protocol.ProtocolError) as e:
            topics.parse(bad)
        assert e.value.code == "bad_topic"


def test_acks():
    assert messages.parse_ack(messages.ack([3, 1, 2])) == [(1, 3)]
    assert messages.acked([(1, 3), (7, 9)], 8) and not messages.acked([(1, 3)], 4)
    for bad in [{}, {"acks": 5}, {"acks": [[2, 1]]}, {"acks": [[0, 1]]}, {"acks": [["a", 1]]}, {"acks": [[1]]}]:
        with pytest.raises(protocol.ProtocolError) as e:
            messages.parse_ack(bad)
        assert e.value.code == "bad_ack"


def _variants(wire):
    """The same event's fields in non-canonical spellings json.loads reads alike."""
    ev = json.loads(wire)
    reordered = dict(reversed(list(ev.items())))
    text = wire.decode()
    return [
        json.dumps(ev, indent=1, ensure_ascii=False).encode(),        # whitespace
        json.dumps(ev, separators=(",", ":")).encode(),               # \u escapes for 李四
        json.dumps(reordered, separators=(",", ":"), ensure_ascii=False).encode(),
        text.replace('"window",', '"window","item":null,').encode(),   # a null optional field
        text.replace('"session":"s-1"', '"session":"s\\u002d1"').encode(),
        (" " + text).encode(), (text + "\n").encode(),
        text.encode("utf-16"),
    ]


def test_signed_bytes_are_the_canonical_body_however_the_payload_is_spelled():
    # The agent checks the MAC over signed(): cut from a canonical payload, rebuilt otherwise.
    wire = protocol.encode(EV, KEY)
    ev = protocol.parse(wire)
    assert protocol.signed(ev, wire) == protocol.body(ev) == wire[:-74] + b"}"
    for payload in _variants(wire):
        parsed = protocol.parse(payload)
        assert protocol.signed(parsed, payload) == protocol.body(ev), payload


def test_a_mac_over_non_canonical_bytes_is_refused():
    # A sender that signs its own spelling instead of the canonical bytes: bad_mac, as the SPEC says.
    from protocol import mac
    from edge_agent.ingest import verified_wire
    canonical = protocol.body(EV)
    text = canonical.decode()
    for body in (json.dumps(EV, indent=1, ensure_ascii=False).encode(),
                 json.dumps(EV, separators=(",", ":")).encode(),
                 json.dumps(dict(reversed(list(EV.items()))), separators=(",", ":"), ensure_ascii=False).encode(),
                 text.replace('"window",', '"window","item":null,').encode(),
                 text.replace('"session":"s-1"', '"session":"s\\u002d1"').encode(),
                 (" " + text).encode()):
        assert body != canonical
        forged = mac.attach(body, mac.sign(KEY, body))
        ev = protocol.parse(forged)
        with pytest.raises(protocol.ProtocolError) as e:
            verified_wire(ev, forged, KEY)
        assert e.value.code == "bad_mac"
    wire = protocol.encode(EV, KEY)
    assert verified_wire(protocol.parse(wire), wire, KEY) == wire.decode()
