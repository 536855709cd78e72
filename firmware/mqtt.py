"""A small asyncio MQTT 3.1.1 client for the evaluator.

Why not umqtt.simple: it blocks, so a slow broker would freeze the buttons,
and it waits one PUBACK round trip per QoS 1 message. Here:

- publish() writes and returns; up to `window` QoS 1 messages may wait for
  their PUBACK at once (pipelining), so a backlog drains at link speed;
- TCP_NODELAY, so small packets are not held back by Nagle + delayed ACK;
- one background reader task handles PUBACK, SUBACK, PINGRESP and incoming
  PUBLISH (acked at once: the app handles a message before returning);
- every failure of the link is an OSError; reconnecting is the caller's job
  (one place: uplink.py);
- TLS when given a CA file (`ca_file`, one DER certificate): the broker's
  certificate must chain to it and name `server_hostname`; anything else
  fails the handshake (an OSError like any other link failure).

Nothing here is durable: the outbox keeps events until the agent's protocol
ack, and the uplink resends them after a reconnect.
"""
import asyncio
import struct
import time

try:
    from micropython import const
except ImportError:
    def const(x):
        return x

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)
_IPPROTO_TCP = const(6)
_TCP_NODELAY = const(1)
_MAX_IN = const(4096)       # incoming messages here are acks and config: small
_WAIT_MS = const(1)         # poll step while waiting for a PUBACK, a SUBACK or the writer


def _varlen(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return out


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack("!H", len(s)) + s


class MQTT:
    def __init__(self, client_id, host, port, user=None, password=None,
                 keepalive=30, will=None, on_message=None, window=32,
                 ca_file=None, server_hostname=None):
        self.client_id = client_id
        self.host, self.port = host, port
        self.ca_file = ca_file
        self.server_hostname = server_hostname or host
        self.user, self.password = user, password
        self.keepalive = keepalive
        self.will = will                 # (topic, payload, retain) sent QoS 1
        self.on_message = on_message     # f(topic str, payload bytes, retained bool)
        self.window = window
        # Every wait on the broker is bounded, and shorter than the watchdog:
        # a silent broker is a link failure (reconnect), not a hung task.
        self.timeout_ms = 5000
        self.inflight = {}               # pid -> ticks sent, awaiting PUBACK
        self.puback = 0
        self.alive = False
        self._pid = 0
        self._r = self._w = None
        # Flags polled every _WAIT_MS rather than asyncio.Lock and Event:
        # those load two more asyncio modules (~2 KB of a 64 KiB heap).
        self._sending = False            # a writer is in _send (drain must not interleave)
        self._subacked = False
        self._reader = None
        self.last_in = 0
        self.last_out = 0

    # -- connection ------------------------------------------------------
    async def connect(self, clean=True):
        timeout_ms = self.timeout_ms
        self._r, self._w = await asyncio.wait_for_ms(
            asyncio.open_connection(self.host, self.port), timeout_ms)
        try:
            self._w.s.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass  # a port without the option still works, only slower
        if self.ca_file:
            # Wrapped here rather than by open_connection(ssl=...): TCP_NODELAY
            # must be set on the plain socket. Reader and writer are one Stream.
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = ssl.CERT_REQUIRED
            with open(self.ca_file, "rb") as f:
                ca = f.read()      # read per connect, not kept: the heap is small
            try:
                ctx.load_verify_locations(cadata=ca)
            except ValueError:
                raise OSError("bad CA")   # a link failure like any other: retried, never a crash
            ca = None
            self._w.s = ctx.wrap_socket(self._w.s, server_hostname=self.server_hostname,
                                        do_handshake_on_connect=False)
            self._w.s.setblocking(False)
        flags = 0x02 if clean else 0
        body = bytearray(b"\x00\x04MQTT\x04\x00")
        body += struct.pack("!H", self.keepalive)
        body += _str(self.client_id)
        if self.will:
            flags |= 0x04 | 0x08 | (0x20 if self.will[2] else 0)
            body += _str(self.will[0]) + _str(self.will[1])
        if self.user is not None:
            flags |= 0x80
            body += _str(self.user)
            if self.password is not None:
                flags |= 0x40
                body += _str(self.password)
        body[7] = flags
        # Bounded too: with TLS the handshake happens in this first send.
        await asyncio.wait_for_ms(self._send(bytes([_CONNECT]) + _varlen(len(body)), body), timeout_ms)
        kind, data = await asyncio.wait_for_ms(self._packet(), timeout_ms)
        if kind != _CONNACK or len(data) != 2 or data[1] != 0:
            raise OSError("connack %r" % (data,))
        self.alive = True
        self.last_in = time.ticks_ms()
        self._reader = asyncio.create_task(self._read_loop())

    def close(self):
        self.alive = False
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._w is not None:
            try:
                # The socket itself: asyncio's Stream.close() leaves it open,
                # and a TLS session's buffers would wait for a collection.
                self._w.s.close()
            except OSError:
                pass
            self._w = self._r = None
        self.inflight = {}

    async def disconnect(self):
        try:
            await self._send(bytes([_DISCONNECT, 0]))
        finally:
            self.close()

    # -- outgoing --------------------------------------------------------
    async def _send(self, *parts):
        if self._w is None:
            raise OSError("not connected")
        # One writer at a time: Stream.drain() must not interleave.
        while self._sending:
            await asyncio.sleep_ms(_WAIT_MS)
        w = self._w
        if w is None:
            raise OSError("not connected")
        self._sending = True
        try:
            for p in parts:
                w.write(p)
            await w.drain()
        except ValueError as e:
            # MicroPython's ssl says "not signed by the trusted CA" as a
            # ValueError: to the uplink it is a failed link like any other.
            raise OSError(str(e).strip())
        finally:
            self._sending = False
        self.last_out = time.ticks_ms()

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    async def publish(self, topic, payload, qos=1, retain=False):
        """Send; for QoS 1 wait only for room in the window, not the PUBACK."""
        if qos and len(self.inflight) >= self.window:
            await self._until(self._room, "no PUBACK")     # a broker that stopped answering
        t = _str(topic)
        first = _PUBLISH | (qos << 1) | (1 if retain else 0)
        n = len(t) + len(payload) + (2 if qos else 0)
        head = bytes([first]) + _varlen(n) + t
        if qos:
            pid = self._next_pid()
            self.inflight[pid] = time.ticks_ms()
            head += struct.pack("!H", pid)
        await self._send(head, payload)

    async def subscribe(self, topics):
        """topics: [(name, qos)]; waits for the SUBACK."""
        body = bytearray(struct.pack("!H", self._next_pid()))
        for name, qos in topics:
            body += _str(name) + bytes([qos])
        self._subacked = False
        await self._send(bytes([_SUBSCRIBE]) + _varlen(len(body)), body)
        await self._until(self._suback, "no SUBACK")

    def _room(self):
        return len(self.inflight) < self.window

    def _suback(self):
        return self._subacked

    async def _until(self, done, what):
        """Wait until done() or the link closes (OSError), at most timeout_ms."""
        began = time.ticks_ms()
        while not done():
            if not self.alive:
                raise OSError("link closed")
            if time.ticks_diff(time.ticks_ms(), began) > self.timeout_ms:
                raise OSError(what)
            await asyncio.sleep_ms(_WAIT_MS)
        if not self.alive:
            raise OSError("link closed")

    async def ping(self):
        await self._send(bytes([_PINGREQ, 0]))

    def stale(self):
        """No packet from the broker for 1.5 keepalives: the link is dead."""
        return time.ticks_diff(time.ticks_ms(), self.last_in) > self.keepalive * 1500

    # -- incoming --------------------------------------------------------
    async def _packet(self):
        b = await self._r.readexactly(1)
        kind = b[0]
        n, shift = 0, 0
        while True:
            c = (await self._r.readexactly(1))[0]
            n |= (c & 0x7F) << shift
            if not c & 0x80:
                break
            shift += 7
            if shift > 21:
                raise OSError("bad length")
        if n > _MAX_IN:
            raise OSError("packet too large")
        data = await self._r.readexactly(n) if n else b""
        return kind, data

    async def _read_loop(self):
        try:
            while True:
                kind, data = await self._packet()
                self.last_in = time.ticks_ms()
                t = kind & 0xF0
                if t == _PUBACK:
                    pid = struct.unpack("!H", data)[0]
                    if self.inflight.pop(pid, None) is not None:
                        self.puback += 1
                elif t == _PUBLISH:
                    await self._incoming(kind, data)
                elif t == _SUBACK:
                    if b"\x80" in data[2:]:
                        raise OSError("subscription refused")
                    self._subacked = True
                # PINGRESP: last_in is all it is for.
        except asyncio.CancelledError:
            return
        except Exception:
            # EOF, reset, garbage: all the same to the caller, a dead link.
            pass
        self.alive = False

    async def _incoming(self, kind, data):
        tl = struct.unpack("!H", data[:2])[0]
        topic = data[2:2 + tl].decode()
        pos = 2 + tl
        qos = (kind >> 1) & 3
        pid = None
        if qos:
            pid = struct.unpack("!H", data[pos:pos + 2])[0]
            pos += 2
        if self.on_message is not None:
            # The retain flag is set only on messages the broker kept from
            # before we subscribed; live ones arrive without it.
            self.on_message(topic, data[pos:], bool(kind & 1))
        if qos == 1:
            await self._send(bytes([_PUBACK, 2]), struct.pack("!H", pid))
