"""Qinglian wire protocol v1: one package for MicroPython and CPython.

Kept free of typing imports, dataclasses and f-strings so that the same
files run on an ESP32 and on the hall's Raspberry Pi.
"""
from protocol.errors import ProtocolError
from protocol.events import (
    VERSION, MAX_PAYLOAD, LEVELS, CHANNELS, KINDS,
    encode, decode, parse, verify, validate, body, signed, wire,
    MAX_INT, MAX_CONFIG, check_field, clean_config,
)
from protocol import topics
