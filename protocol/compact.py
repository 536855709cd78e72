"""Compact JSON that is byte-identical on MicroPython and CPython.

CPython escapes non-ASCII unless told not to; MicroPython always writes
UTF-8 and knows no ensure_ascii argument. Control characters are the one
remaining difference, and events.validate refuses them.
"""
import json
import sys

if sys.implementation.name == "micropython":
    def dumps(value):
        return json.dumps(value, separators=(",", ":"))
else:
    def dumps(value):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
