# Checks protocol/vectors.json with whatever interpreter runs it (MicroPython
# or CPython). Prints one FAIL line per problem, then "vectors ok N" or
# "vectors failed N". Usage: <python> run_vectors.py path/to/vectors.json
import sys
import binascii
import json

import protocol
import protocol.kiosk  # noqa: F401 (a device imports the kinds it sends; the vectors hold all)
from protocol.receive import decode
from protocol import messages

with open(sys.argv[1], "rb") as f:
    V = json.loads(f.read())

failed = 0
checked = 0


def fail(name, why):
    global failed
    failed += 1
    print("FAIL", name, why)


for c in V["valid"]:
    checked += 1
    key = binascii.unhexlify(c["key"])
    wire = c["wire"].encode()
    try:
        if protocol.encode(c["event"], key) != wire:
            fail(c["name"], "encode differs")
        if protocol.body(c["event"]) != c["body"].encode():
            fail(c["name"], "body differs")
        ev = decode(wire, key)
        if ev["mac"] != c["mac"]:
            fail(c["name"], "mac differs")
        for k in c["event"]:
            if ev[k] != c["event"][k]:
                fail(c["name"], "field " + k)
    except protocol.ProtocolError as e:
        fail(c["name"], "raised " + e.code)

for c in V["invalid"]:
    checked += 1
    try:
        decode(c["wire"].encode(), binascii.unhexlify(c["key"]))
        fail(c["name"], "accepted")
    except protocol.ProtocolError as e:
        if e.code != c["error"]:
            fail(c["name"], "code " + e.code + " != " + c["error"])

for c in V["acks"]:
    checked += 1
    if messages.encode(messages.ack(c["seqs"])) != c["wire"].encode():
        fail("ack " + c["wire"], "encode differs")

for c in V.get("fields", ()):
    checked += 1
    try:
        protocol.check_field(c["kind"], c["name"], c["value"])
        if c["error"] is not None:
            fail("field " + c["name"], "accepted")
    except protocol.ProtocolError as e:
        if e.code != c["error"]:
            fail("field " + c["name"], "code " + e.code + " != " + str(c["error"]))

for c in V["sealed"]:
    checked += 1
    key = binascii.unhexlify(c["key"])
    wire = c["wire"].encode()
    try:
        if messages.seal(key, c["channel"], c["msg"], c["n"]) != wire:
            fail(c["name"], "seal differs")
        msg = messages.unseal(key, c["channel"], wire, c["last"])
        if msg.pop("n") != c["n"] or msg != c["msg"]:
            fail(c["name"], "unsealed differs")
    except protocol.ProtocolError as e:
        fail(c["name"], "raised " + e.code)

for c in V["refused"]:
    checked += 1
    try:
        messages.unseal(binascii.unhexlify(c["key"]), c["channel"], c["wire"].encode(), c["last"])
        fail(c["name"], "accepted")
    except protocol.ProtocolError as e:
        if e.code != c["error"]:
            fail(c["name"], "code " + e.code + " != " + c["error"])

if failed:
    print("vectors failed", failed)
else:
    print("vectors ok", checked)
