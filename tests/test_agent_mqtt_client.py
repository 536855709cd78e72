"""edge_agent/mqtt_client.py reads what stock paho reads: the same bytes from
a socket, cut anywhere, give the same messages in the same order (mid, QoS,
topic, payload, retain), and what is not a whole QoS 0/1 PUBLISH is still
paho's (a PINGRESP; a malformed packet is still a protocol error). A batch's
PUBACKs are one write of the PUBACK packets, in order. The agent against a
real Mosquitto: tests/test_agent_ingest.py and the others."""
import random
import struct

import paho.mqtt.client as mqtt

from edge_agent import mqtt_client


def publish(topic, payload, qos=1, mid=0, retain=False, dup=False):
    body = struct.pack("!H", len(topic)) + topic + (struct.pack("!H", mid) if qos else b"") + payload
    size, n = b"", len(body)
    while True:                                 # MQTT's remaining length, 7 bits a byte
        n, low = n >> 7, n & 0x7F
        size += bytes([low | (0x80 if n else 0)])
        if not n:
            break
    return bytes([0x30 | qos << 1 | retain | dup << 3]) + size + body


def stream():
    rnd = random.Random(12)
    out = []
    for i in range(400):
        qos = 1 if i % 7 else 0
        payload = bytes(rnd.randrange(256) for _ in range(rnd.choice((0, 5, 120, 127, 128, 300, 20000))))
        out.append(publish(b"qinglian/v1/h1/ev-%02d/events" % (i % 11), payload, qos, mid=i % 65535 + 1 if qos else 0,
                           retain=i % 5 == 0, dup=i % 9 == 0))
        if i % 50 == 0:
            out.append(b"\xd0\x00")             # PINGRESP
    out.append(publish("qinglian/v1/h1/\u9752/events".encode(), b"{}", 1, mid=7))    # a non-ASCII topic
    return b"".join(out)


class Wire:
    """The socket's side paho reads: `pieces` as the network delivers them
    (recv gives at most one piece, at most what was asked), then the end."""

    def __init__(self, pieces):
        self.pieces = [p for p in pieces if p]

    def recv(self, n):
        if not self.pieces:
            return b""
        piece = self.pieces[0]
        if len(piece) > n:
            self.pieces[0] = piece[n:]
            return piece[:n]
        self.pieces.pop(0)
        return piece

    def recv_into(self, buf, n):
        data = self.recv(min(n, len(buf)))
        buf[:len(data)] = data
        return len(data)

    def close(self):
        pass


def read_all(client_class, wrap, data, pieces):
    """Every message `client_class` delivers from the wire, and the error
    codes its loop_read returned (the last one: the connection's end)."""
    got = []
    c = client_class(mqtt.CallbackAPIVersion.VERSION2, client_id="t", clean_session=False, manual_ack=True)
    c.on_message = lambda cl, u, m: got.append((m.mid, m.qos, m._topic, m.payload, m.retain))
    c.on_received = lambda mid, qos, topic, payload, retain: got.append((mid, qos, topic, payload, retain))
    c._sock = wrap(Wire(pieces(data)))
    errors = []
    for _ in range(100000):
        rc = c.loop_read()
        if rc:
            errors.append(rc)
            break
    return got, errors


def whole(data):
    return [data[i:i + 65536] for i in range(0, len(data), 65536)]


def cut(data):
    rnd, i = random.Random(3), 0
    while i < len(data):
        n = rnd.choice((1, 2, 3, 7, 100, 1000, 70000))
        yield data[i:i + n]
        i += n


def test_same_messages_as_paho_whole_and_cut_anywhere():
    data = stream()
    for pieces in (whole, cut):
        want, _ = read_all(mqtt.Client, lambda s: s, data, pieces)
        got, errors = read_all(mqtt_client.Client, mqtt_client._Chunked, data, pieces)
        assert len(want) == 401
        assert got == want and errors == [mqtt.MQTTErrorCode.MQTT_ERR_CONN_LOST]


def test_a_malformed_publish_is_still_a_protocol_error():
    bad = publish(b"", b"x", 1, mid=3)          # MQTT 3.1.1: a topic may not be empty
    data = publish(b"qinglian/v1/h1/ev-01/events", b"ok", 1, mid=2) + bad
    want, want_errors = read_all(mqtt.Client, lambda s: s, data, whole)
    got, errors = read_all(mqtt_client.Client, mqtt_client._Chunked, data, whole)
    assert got == want and [m[0] for m in got] == [2]
    assert errors == want_errors == [mqtt.MQTTErrorCode.MQTT_ERR_PROTOCOL]


def test_a_batch_of_pubacks_is_one_write_in_order():
    c = mqtt_client.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t", clean_session=False, manual_ack=True)
    c.puback_all([5, 1, 65535])
    assert len(c._out_packet) == 1
    assert c._out_packet[0]["packet"] == b"\x40\x02\x00\x05" b"\x40\x02\x00\x01" b"\x40\x02\xff\xff"
    c.puback_all([])
    assert len(c._out_packet) == 1
