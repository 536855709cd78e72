"""paho-mqtt's client, fitted to an agent that receives thousands of
messages a second and PUBACKs them in batches.

Stock paho reads a packet with several `recv` calls (its type byte, each
length byte, the body) and one packet per pass of its loop, each pass a
`select`; it queues every PUBACK as a packet of its own, with a wake-up
byte written to its socketpair for each. At full rate that network loop was
half the agent's CPU, and every call that lets go of the interpreter lock
hands it to the committer and waits to get it back. Here:

  - the socket is read in chunks of up to 64 KiB (`_Chunked`), and paho's
    packet reader takes its bytes from the chunk; `pending()` tells paho's
    loop that bytes wait (as it already asks of a TLS socket);
  - one pass of the loop reads every packet the chunk holds (bounded, so
    queued writes still get their turn);
  - a PUBLISH (QoS 0 or 1) that is whole in the chunk is taken apart here
    and its fields go straight to `on_received`: no paho packet state, no
    MQTTMessage (with a lock and a condition of its own), no topic matching;
    every other packet, and one the chunk cuts, is read by paho as before;
  - `puback_all` queues a batch's PUBACKs as one write.

What is overridden are paho's seams: the socket it creates, `loop_read`,
`_packet_read` (for whole PUBLISH packets only), the message hand-over and
the output queue; paho-mqtt is pinned in constraints.txt, and
tests/test_agent_mqtt_client.py checks this against paho's own reading.
"""
import struct

import paho.mqtt.client as mqtt

_CHUNK = 65536
_DRAIN = 2000                   # packets one pass of paho's loop reads at most
_PUBACK = struct.Struct("!BBH")


class _Chunked:
    """A connected socket (plain or TLS) read in large chunks, into one
    buffer made once: at a hall's rate a fresh 64 KiB bytes object per read,
    shrunk to the few hundred bytes that came, took the agent from 28.8 to
    31 MiB (bench/agent_hall_rate.py)."""
    __slots__ = ("sock", "_buf", "_view", "_pos", "_end")

    def __init__(self, sock):
        self.sock = sock
        self._buf = bytearray(_CHUNK)
        self._view = memoryview(self._buf)
        self._pos = self._end = 0

    def recv(self, n):
        pos = self._pos
        if pos >= self._end:
            # Errors (would block, TLS wants, reset) reach paho as before.
            got = self.sock.recv_into(self._buf, _CHUNK)
            if not got:
                return b""
            pos, self._end = 0, got
        self._pos = stop = min(pos + n, self._end)
        return bytes(self._view[pos:stop])

    def buffered(self):
        return self._end - self._pos

    def pending(self):
        """Bytes readable without the network: paho then skips its wait."""
        inner = self.sock.pending() if hasattr(self.sock, "pending") else 0
        return self._end - self._pos + inner

    def fileno(self):
        return self.sock.fileno()

    def __getattr__(self, name):        # send, close, setblocking, ...: the socket's own
        return getattr(self.sock, name)


class Client(mqtt.Client):
    """`on_received(mid, qos, topic, payload, retain)` (topic as bytes) gets
    every message; paho's `on_message` is not called."""
    on_received = None

    def _create_socket(self):
        return _Chunked(super()._create_socket())

    def loop_read(self, max_packets=1):
        rc = super().loop_read(max_packets)
        for _ in range(_DRAIN):
            sock = self._sock
            if rc or sock is None or sock.buffered() <= 0:
                break
            rc = super().loop_read(max_packets)
        return rc

    def _packet_read(self):
        # A PUBLISH (QoS 0 or 1, MQTT 3.1.1) that is whole in the chunk is
        # taken apart here (MQTT 3.1.1, 3.3), without paho's reads, its
        # packet state and an MQTTMessage with its own lock and condition;
        # everything else, and a packet cut by the chunk's end, is paho's.
        sock = self._sock
        if type(sock) is not _Chunked or self._in_packet["command"] or self._protocol == mqtt.MQTTv5:
            return super()._packet_read()
        buf, start, end = sock._buf, sock._pos, sock._end
        if end - start < 2 or buf[start] & 0xF6 not in (0x30, 0x32):      # PUBLISH, QoS 0 or 1
            return super()._packet_read()
        head = buf[start]
        size, shift, i = 0, 0, start + 1
        while True:
            if i >= end or shift > 21:
                return super()._packet_read()
            c = buf[i]
            size |= (c & 0x7F) << shift
            shift += 7
            i += 1
            if not c & 0x80:
                break
        stop = i + size
        qos = (head >> 1) & 3
        if stop > end or size < 2:
            return super()._packet_read()
        topic_end = i + 2 + (buf[i] << 8 | buf[i + 1])
        if topic_end == i + 2 or topic_end + 2 * qos > stop:
            return super()._packet_read()       # malformed: paho says so
        mid = buf[topic_end] << 8 | buf[topic_end + 1] if qos else 0
        sock._pos = stop
        self._last_bytes_received = mqtt.time_func()      # what paho's keepalive looks at
        view = sock._view
        self.on_received(mid, qos, bytes(view[i + 2:topic_end]), bytes(view[topic_end + 2 * qos:stop]),
                         bool(head & 1))
        return mqtt.MQTTErrorCode.MQTT_ERR_SUCCESS

    def message_callback_add(self, sub, callback):
        raise NotImplementedError("every message goes to on_received")

    def _handle_on_message(self, message):
        self.on_received(message.mid, message.qos, message._topic, message.payload, message.retain)

    def puback_all(self, mids):
        """PUBACK these QoS 1 messages (manual_ack) with one queued write,
        in the order given."""
        if mids:
            data = b"".join([_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids])
            self._packet_queue(mqtt.PUBACK, data, 0, 0)
