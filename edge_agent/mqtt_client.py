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
  - a message goes straight to `on_message`: the agent adds no per-topic
    callbacks, so paho's topic matching and two locks per message go;
  - `puback_all` queues a batch's PUBACKs as one write.

Only paho's own seams are used: the socket it creates, its `loop_read`, its
message hand-over and its output queue (paho-mqtt is pinned in constraints.txt).
"""
import struct

import paho.mqtt.client as mqtt

_CHUNK = 65536
_DRAIN = 2000                   # packets one pass of paho's loop reads at most
_PUBACK = struct.Struct("!BBH")


class _Chunked:
    """A connected socket (plain or TLS) read in large chunks."""
    __slots__ = ("sock", "_buf", "_pos")

    def __init__(self, sock):
        self.sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, n):
        pos = self._pos
        if pos >= len(self._buf):
            # Errors (would block, TLS wants, reset) reach paho as before.
            self._buf, self._pos = self.sock.recv(_CHUNK), 0
            if not self._buf:
                return b""
            pos = 0
        self._pos = pos + n
        return self._buf[pos:pos + n]

    def buffered(self):
        return len(self._buf) - self._pos

    def pending(self):
        """Bytes readable without the network: paho then skips its wait."""
        inner = self.sock.pending() if hasattr(self.sock, "pending") else 0
        return max(0, len(self._buf) - self._pos) + inner

    def fileno(self):
        return self.sock.fileno()

    def __getattr__(self, name):        # send, close, setblocking, ...: the socket's own
        return getattr(self.sock, name)


class Client(mqtt.Client):
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

    def message_callback_add(self, sub, callback):
        raise NotImplementedError("every message goes to on_message")

    def _handle_on_message(self, message):
        self.on_message(self, self._userdata, message)

    def puback_all(self, mids):
        """PUBACK these QoS 1 messages (manual_ack) with one queued write,
        in the order given."""
        if mids:
            data = b"".join([_PUBACK.pack(mqtt.PUBACK, 2, mid) for mid in mids])
            self._packet_queue(mqtt.PUBACK, data, 0, 0)
