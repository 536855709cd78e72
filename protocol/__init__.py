"""Qinglian wire protocol v1: one package for MicroPython and CPython.

Kept free of typing imports, dataclasses and f-strings so that the same
files run on an ESP32 and on the hall's Raspberry Pi.
"""
from protocol.errors import ProtocolError
from protocol.events import (
    VERSION, MAX_PAYLOAD, LEVELS, CHANNELS, KINDS,
    encode, validate, body,
    MAX_INT, MAX_CONFIG, check_field, clean_config,
)
from protocol import topics

import sys
if sys.implementation.name != "micropython":
    # Every kind, for the agent and the county; a device imports the kinds of
    # another family (protocol.kiosk) itself, or keeps them out of its heap.
    from protocol import kiosk  # noqa: F401
    # The receiving side (agent, county); a device never receives an event.
    from protocol.receive import parse, verify, decode, wire, signed  # noqa: F401
del sys
