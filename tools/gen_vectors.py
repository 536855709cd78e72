"""Regenerate protocol/vectors.json from the cases below.

The file is golden: tests check both interpreters against it, so a change
to the canonical encoding shows up as a diff in review, never silently.

    python -m tools.gen_vectors [--check]
"""
import argparse
import json
import os
import sys

import protocol
from protocol import mac, messages

KEY_A = bytes(range(32))
KEY_B = b"qinglian-device-key-ev-02-000000"          # 32 bytes
KEY_LONG = bytes(range(100))                       # longer than the SHA-256 block

HEAD = {"v": 1, "device": "ev-01", "seq": 1, "t": 1764000000000}


def ev(**fields):
    out = dict(HEAD)
    out.update(fields)
    return out


VALID = [
    ("rating_minimal", KEY_A, ev(kind="rating", level="very_satisfied", channel="window", session="ev-01-1-1")),
    ("rating_full", KEY_B, ev(device="ev-02", seq=42, kind="rating", level="very_dissatisfied", channel="window",
                              session="ev-02-3-17", window="A03", staff="张三", item="11430100MB1234567X4",
                              case="HN20261125000123", reasons=["slow", "attitude"])),
    ("rating_kiosk_long_key", KEY_LONG, ev(kind="rating", level="basically_satisfied", channel="kiosk",
                                           session="ks-7", t=0)),
    ("session_ended", KEY_A, ev(seq=7, kind="session", action="ended", session="ev-01-1-2", window="A01",
                                ticket="A017", staff="1024", service_ms=754000, paused_ms=60000)),
    ("session_unrated", KEY_A, ev(seq=8, kind="session", action="unrated", session="ev-01-1-2", window="A01")),
    ("status", KEY_A, ev(seq=9, kind="status", fw="0.1.0", uptime_s=3600, reset="power_on", outbox=0,
                         heap=41000, rssi=67, ignored=3)),
    ("ticket", KEY_A, ev(device="ks-01", kind="ticket", ticket="B105", queue="B", item="市场主体登记")),
    ("print", KEY_A, ev(device="ks-01", seq=2, kind="print", job="j-2", doc="case_status", result="paper_out",
                        pages=1, case="HN20261125000123")),
    ("print_cut_short", KEY_A, ev(device="ks-01", seq=5, kind="print", job="j-3", doc="case_status",
                                  result="cut_short", case="HN20261125000123")),
    ("printer", KEY_A, ev(device="ks-01", seq=3, kind="printer", state="paper_low")),
    ("kiosk_session", KEY_A, ev(device="ks-01", seq=4, kind="kiosk_session", action="ended", session="ks-01-9")),
    ("escapes", KEY_A, ev(seq=10, kind="rating", level="satisfied", channel="qr", session='q"uote\\slash/')),
]

_GOOD = protocol.encode(VALID[0][2], KEY_A).decode()


def _swap(old, new, src=_GOOD):
    assert old in src, old
    return src.replace(old, new, 1)


INVALID = [
    ("not_json", "{not json", "bad_json"),
    ("array", "[1,2]", "bad_json"),
    ("too_large", '{"v":1,"pad":"' + "x" * 1100 + '"}', "too_large"),
    ("version_2", _swap('"v":1', '"v":2'), "bad_version"),
    ("version_bool", _swap('"v":1', '"v":true'), "bad_version"),
    ("unknown_kind", _swap('"kind":"rating"', '"kind":"vote"'), "unknown_kind"),
    ("missing_seq", _swap('"seq":1,', ''), "missing_field"),
    ("missing_level", _swap('"level":"very_satisfied",', ''), "missing_field"),
    ("missing_mac", _GOOD[:_GOOD.index(',"mac"')] + "}", "missing_field"),
    ("extra_field", _swap('"channel":"window"', '"channel":"window","score":5'), "unknown_field"),
    ("level_as_number", _swap('"level":"very_satisfied"', '"level":1'), "bad_type"),
    ("seq_float", _swap('"seq":1', '"seq":1.0'), "bad_type"),
    ("seq_zero", _swap('"seq":1', '"seq":0'), "bad_value"),
    ("seq_negative", _swap('"seq":1', '"seq":-5'), "bad_value"),
    ("unknown_level", _swap('"level":"very_satisfied"', '"level":"ok"'), "bad_value"),
    ("control_char", _swap('"session":"ev-01-1-1"', '"session":"a\\nb"'), "bad_value"),
    ("device_bad_id", _swap('"device":"ev-01"', '"device":"ev/01"'), "bad_value"),
    ("mac_short", _swap('"mac":"', '"mac":"00'), "bad_type"),
    ("forged_mac", _GOOD[:-67] + '"' + "0" * 64 + '"}', "bad_mac"),
    ("tampered_level", _swap('"level":"very_satisfied"', '"level":"satisfied"'), "bad_mac"),
]

# Bounds (issue 7): integers past 2**53 - 1, strings no UTF-8 can carry, MACs
# that are not lowercase hex. The agent quarantines each with this reason.
VALID += [
    ("int_max", KEY_A, ev(seq=protocol.MAX_INT, kind="rating", level="satisfied", channel="window",
                          session="ev-01-1-3")),
]
INVALID += [
    ("seq_over_2_53", _swap('"seq":1', '"seq":%d' % (protocol.MAX_INT + 1)), "bad_value"),
    ("t_huge", _swap('"t":1764000000000', '"t":' + "9" * 30), "bad_value"),
    ("lone_surrogate", _swap('"session":"ev-01-1-1"', '"session":"a\\ud800"'), "bad_value"),
    ("surrogate_field_name", _swap('"channel":"window"', '"channel":"window","\\udfff":1'), "unknown_field"),
    ("mac_non_ascii", _GOOD[:-67] + '"' + "é" * 64 + '"}', "bad_mac"),
    ("mac_non_hex", _GOOD[:-67] + '"' + "g" * 64 + '"}', "bad_mac"),
    ("mac_upper", _GOOD[:-67] + _GOOD[-67:].upper(), "bad_mac"),
]

# The queue's ticket events (the agent's own, device `_queue`): the fields
# after `item` are optional, so the kiosk's ticket above reads as before.
VALID += [
    ("ticket_called", KEY_A, ev(device="_queue", seq=5, kind="ticket", ticket="A012", queue="A", action="called",
                                id="20261130-A012", window="W03", wait_ms=754000)),
    ("ticket_priority_transferred", KEY_A, ev(device="_queue", seq=6, kind="ticket", ticket="A013", queue="A",
                                              action="transferred", id="20261130-A013", window="W03", to="B",
                                              priority=True)),
]
_TICKET = protocol.encode(VALID[-2][2], KEY_A).decode()
INVALID += [
    ("ticket_unknown_action", _swap('"action":"called"', '"action":"served"', _TICKET), "bad_value"),
    ("ticket_wait_negative", _swap('"wait_ms":754000', '"wait_ms":-1', _TICKET), "bad_value"),
    ("ticket_priority_int", _swap('"wait_ms":754000', '"wait_ms":754000,"priority":1', _TICKET), "bad_type"),
]

# One value against its field's rule (protocol.check_field): what the agent
# checks before a value can reach a device config or an event.
FIELDS = [
    ("rating", "staff", "张三", None),
    ("rating", "staff", "x" * 64, None),
    ("rating", "staff", "x" * 65, "bad_value"),
    ("rating", "staff", "张三\t", "bad_value"),
    ("rating", "staff", "a\u0001b", "bad_value"),
    ("rating", "staff", "", "bad_value"),
    ("config", "targets", {"default": 900}, None),
    ("config", "targets", {"default": 0}, "bad_value"),
    ("config", "targets", {"default": protocol.events.MAX_TARGET_S + 1}, "bad_value"),
    ("config", "targets", {"default": True}, "bad_type"),
    ("config", "targets", {"default": "900"}, "bad_type"),
    ("config", "warn_pct", 101, "bad_value"),
    ("config", "prompt_s", 0, "bad_value"),
    ("config", "hwm", protocol.events.MAX_SEQ_DEVICE, None),
    ("config", "hwm", protocol.events.MAX_SEQ_DEVICE + 1, "bad_value"),
    ("session", "service_ms", protocol.MAX_INT + 1, "bad_value"),
]

ACKS = [
    ([1, 2, 3, 5, 7, 8], '{"acks":[[1,3],[5,5],[7,8]]}'),
    ([9, 9, 4], '{"acks":[[4,4],[9,9]]}'),
]

# Agent -> device messages, sealed (SPEC: 'The device link'). `last` is the
# counter of the last message the device accepted on that channel.
N = (7 << 32) + 5          # link epoch 7, fifth message of that run
SEALED = [
    ("ack", KEY_A, "ack", {"acks": [[1, 3], [5, 5]]}, N, N - 1),
    ("config", KEY_B, "config", {"window": "A03", "staff": "张三", "staff_no": "1024",
                                 "targets": {"default": 900}, "warn_pct": 80, "prompt_s": 30,
                                 "t": 1764000000000, "hwm": 1234}, N, N - 9),
    ("config_retained_again", KEY_B, "config", {"window": "A03", "t": 1764000000000, "hwm": 7}, N, N),
    ("cmd_time", KEY_A, "cmd", {"cmd": "time", "t": 1764000000000}, N, 0),
    ("cmd_long_key", KEY_LONG, "cmd", {"cmd": "status"}, 1, 0),
]

_ACK = messages.seal(KEY_A, "ack", {"acks": [[1, 3]]}, N).decode()


def _sealed_by_hand(channel, body):
    # A message sealed correctly but not as messages.seal would build it.
    return body[:-1] + ',"mac":"' + mac.sign(KEY_A, channel.encode() + b"\n" + body.encode()) + '"}'


REFUSED = [
    ("plain_ack", '{"acks":[[1,2147483647]]}', "ack", 0, "bad_mac"),
    ("forged_mac", _ACK[:-66] + "0" * 64 + '"}', "ack", 0, "bad_mac"),
    ("upper_hex_mac", _ACK[:-66] + _ACK[-66:-2].upper() + '"}', "ack", 0, "bad_mac"),
    ("other_device_key", messages.seal(KEY_B, "ack", {"acks": [[1, 3]]}, N).decode(), "ack", 0, "bad_mac"),
    ("widened_range", _swap("[[1,3]]", "[[1,2147483647]]", _ACK), "ack", 0, "bad_mac"),
    ("ack_as_cmd", _ACK, "cmd", 0, "bad_mac"),
    ("forged_hwm", _swap('"hwm":1234', '"hwm":9999999',
                         messages.seal(KEY_A, "config", {"window": "A03", "hwm": 1234}, N).decode()),
     "config", 0, "bad_mac"),
    ("ack_replayed", _ACK, "ack", N, "replayed"),
    ("cmd_replayed", messages.seal(KEY_A, "cmd", {"cmd": "reset"}, N).decode(), "cmd", N, "replayed"),
    ("config_older", messages.seal(KEY_A, "config", {"window": "A03"}, N).decode(), "config", N + 1, "replayed"),
    ("no_counter", _sealed_by_hand("ack", '{"acks":[[1,3]]}'), "ack", 0, "bad_value"),
    ("counter_float", _sealed_by_hand("ack", '{"acks":[[1,3]],"n":5.0}'), "ack", 0, "bad_value"),
    ("not_json", _sealed_by_hand("cmd", '{"cmd":"time"]}'), "cmd", 0, "bad_json"),
    ("truncated", _ACK[:-1], "ack", 0, "bad_mac"),
    ("empty", "", "config", 0, "bad_mac"),
]


def build():
    valid = []
    for name, key, event in VALID:
        wire = protocol.encode(event, key)
        valid.append({"name": name, "key": key.hex(), "event": event,
                      "body": protocol.body(event).decode(), "wire": wire.decode(),
                      "mac": json.loads(wire)["mac"]})
    return {
        "about": "Golden vectors for protocol v1 (see SPEC.md). Regenerate with python -m tools.gen_vectors.",
        "valid": valid,
        "invalid": [{"name": n, "key": KEY_A.hex(), "wire": w, "error": c} for n, w, c in INVALID],
        "acks": [{"seqs": s, "wire": w} for s, w in ACKS],
        "fields": [{"kind": k, "name": n, "value": v, "error": c} for k, n, v, c in FIELDS],
        "sealed": [{"name": name, "key": key.hex(), "channel": ch, "msg": msg, "n": n, "last": last,
                    "wire": messages.seal(key, ch, msg, n).decode()}
                   for name, key, ch, msg, n, last in SEALED],
        "refused": [{"name": name, "key": KEY_A.hex(), "channel": ch, "last": last, "wire": w, "error": c}
                    for name, w, ch, last, c in REFUSED],
    }


PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "protocol", "vectors.json")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tools.gen_vectors", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if vectors.json differs instead of writing it")
    args = ap.parse_args(argv)
    text = json.dumps(build(), ensure_ascii=False, indent=1) + "\n"
    if args.check:
        with open(PATH, encoding="utf-8") as f:
            if f.read() != text:
                print("protocol/vectors.json is out of date", file=sys.stderr)
                return 1
        return 0
    with open(PATH, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
