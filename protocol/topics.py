"""MQTT topic names: qinglian/v1/<hall>/<device>/<channel>."""
from protocol.errors import ProtocolError

ROOT = "qinglian/v1"
EVENTS = "events"    # device -> agent, QoS 1, signed events
ACK = "ack"          # agent -> device, which seqs are committed
CONFIG = "config"    # agent -> device, retained
CMD = "cmd"          # agent -> device, time beacon and commands
STATUS = "status"    # device -> agent, retained presence; also the Last Will
REQ = "req"          # device -> agent, sealed requests, answered on cmd (SPEC 'Requests')
CHANNELS = (EVENTS, ACK, CONFIG, CMD, STATUS, REQ)


def valid_id(s):
    # Hall and device ids become topic levels and file names: keep them plain.
    if not s or len(s) > 32:
        return False
    # Over the bytes: iterating the str would make each character a str,
    # which a device interns as a qstr for good (a new qstr pool is a
    # ~640-byte block its fragmented heap may not have).
    try:
        b = s.encode()
    except UnicodeError:      # CPython: a lone surrogate
        return False
    for c in b:
        if not (97 <= c <= 122 or 48 <= c <= 57 or c == 45 or c == 95 or 65 <= c <= 90):
            return False     # a-z 0-9 - _ A-Z; any other byte, non-ASCII included
    return True


def topic(hall, device, channel):
    return ROOT + "/" + hall + "/" + device + "/" + channel


def for_all_devices(hall, channel):
    return ROOT + "/" + hall + "/+/" + channel


def parse(name):
    """Return (hall, device, channel) or raise ProtocolError('bad_topic')."""
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).decode()
    parts = name.split("/")
    if (len(parts) != 5 or parts[0] + "/" + parts[1] != ROOT
            or not valid_id(parts[2]) or not valid_id(parts[3])
            or parts[4] not in CHANNELS):
        raise ProtocolError("bad_topic", name)
    return parts[2], parts[3], parts[4]
