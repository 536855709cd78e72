"""A small MQTT 3.1.1 client on a non-blocking socket, polled from one task.

Why not umqtt.simple: it blocks, so a slow broker would freeze the buttons,
and it waits one PUBACK round trip per QoS 1 message. Why not asyncio's
streams: they load two more asyncio modules and a reader task (~3.4 KB of a
small heap on every connect); the device does without asyncio (tasks.py). Here:

- the socket is non-blocking; every wait is a short `sleep_ms` poll, so
  the caller's task never blocks the buttons or the display;
- publish() writes and returns; up to `window` QoS 1 messages may wait for
  their PUBACK at once (pipelining), so a backlog drains at link speed;
- TCP_NODELAY, so small packets are not held back by Nagle + delayed ACK;
- poll() reads what has arrived and handles it: PUBACK, SUBACK, PINGRESP
  and incoming PUBLISH (handed to `on_message`, then acked: the app has
  handled a message before it returns). Its one caller (uplink.py) calls
  it between publishes and while idle, when ready() says something has
  arrived (ready() allocates nothing; a call of poll() is a coroutine
  frame); the waits here call it too;
- every failure of the link is an OSError; reconnecting is the caller's job
  (one place: uplink.py). Its texts are short: a str constant over 10 bytes
  is an object in the device's heap, a short one a name in flash;
- TLS when given a CA file (`ca_file`, one DER certificate): the broker's
  certificate must chain to it and name `server_hostname`; anything else
  fails the handshake (an OSError like any other link failure).

Nothing here is durable: the outbox keeps events until the agent's protocol
ack, and the uplink resends them after a reconnect.
"""
import select
import socket
import struct
import time

from tasks import sleep_ms

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int; no
    const = int         # fallback function, which a device would keep in its heap

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_IPPROTO_TCP = const(6)
_TCP_NODELAY = const(1)
_EINPROGRESS = const(115)
_EAGAIN = const(11)
_MAX_IN = const(4096)       # incoming messages here are acks and config: small
_HEAD_MAX = const(128)      # a PUBLISH's fixed header, topic and packet id (topics: ~90 bytes)
_WAIT_MS = const(1)         # poll step while the socket cannot take or give more


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
        # What connect() needs, once: one tuple rather than eight attributes
        # (each an entry in the instance's table on the small heap).
        self._conn = (client_id, host, port, user, password, ca_file, server_hostname or host)
        self.keepalive = keepalive
        self._will = will                # (topic, payload, retain) sent QoS 1
        self.on_message = on_message     # f(topic str, payload bytes, retained bool)
        self.window = window
        # Every wait on the broker is bounded, and shorter than the watchdog:
        # a silent broker is a link failure (reconnect), not a hung task.
        self.timeout_ms = 5000
        self.inflight = {}               # pid -> ticks sent, awaiting PUBACK
        self.puback = 0
        self.alive = False
        self._pid = 0
        self._s = None
        self._p = None                   # poll object of the connection (ready())
        self._subacked = False
        self._connacked = False
        # The packet being read: its first byte (-1: none yet), length so far, body.
        self._one = bytearray(1)
        # A PUBLISH's header is put together here, made once while the heap is
        # whole: a publish then allocates nothing of its own but a memoryview.
        # (One writer: the uplink's task is the only caller of publish.)
        self._head = bytearray(_HEAD_MAX)
        self._kind = -1
        self._len = self._shift = self._got = 0
        self._body = None
        self.last_in = 0
        self.last_out = 0

    # -- connection ------------------------------------------------------
    async def connect(self, clean=True):
        """A new session; after close(), the same client connects again."""
        # Few locals: this coroutine's frame is allocated on every connect, from
        # a heap that has been in use for hours (TLS and the packet are made in
        # helpers whose frames are gone when they return).
        began = time.ticks_ms()
        self._kind = -1
        self._body = None
        self._subacked = False
        self._connacked = False
        c = self._conn
        ai = socket.getaddrinfo(c[1], c[2], 0, socket.SOCK_STREAM)[0]
        s = self._s = socket.socket(ai[0], socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass  # a port without the option still works, only slower
        try:
            s.connect(ai[-1])
        except OSError as e:
            if e.args[0] != _EINPROGRESS:
                raise
        ai = None
        # Connected once writable (or refused: an error event). The poll
        # object stays: ready() asks it whether anything has arrived.
        p = self._p = select.poll()
        p.register(s, select.POLLOUT)
        while True:
            ev = p.poll(0)
            if ev:
                if ev[0][1] & (select.POLLERR | select.POLLHUP):
                    raise OSError("refused")
                break
            if time.ticks_diff(time.ticks_ms(), began) > self.timeout_ms:
                raise OSError("timeout")
            await sleep_ms(_WAIT_MS)
        ev = None
        if c[5]:
            self._tls(s)
            p.unregister(s)
            p.register(self._s, select.POLLIN)
        else:
            p.modify(s, select.POLLIN)
        p = None
        await self._send(self._hello(clean))
        await self._until(_CONNACK, "no CONNACK", began)
        self.alive = True
        self.last_in = time.ticks_ms()

    def _tls(self, s):
        # Wrapped here, on the plain socket with TCP_NODELAY set; the
        # handshake happens in the first writes, polled like any other.
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = ssl.CERT_REQUIRED
        with open(self._conn[5], "rb") as f:
            ca = f.read()      # read per connect, not kept: the heap is small
        try:
            ctx.load_verify_locations(cadata=ca)
        except ValueError:
            raise OSError("bad CA")   # a link failure like any other: retried, never a crash
        ca = None
        self._s = ctx.wrap_socket(s, server_hostname=self._conn[6], do_handshake_on_connect=False)

    def _hello(self, clean):
        """The CONNECT packet."""
        client_id, user, password = self._conn[0], self._conn[3], self._conn[4]
        flags = 0x02 if clean else 0
        body = bytearray(10)     # protocol name "MQTT", level 4, flags, keepalive
        struct.pack_into("!H4sBBH", body, 0, 4, "MQTT".encode(), 4, 0, self.keepalive)
        body += _str(client_id)
        will = self._will
        if will:
            flags |= 0x04 | 0x08 | (0x20 if will[2] else 0)
            body += _str(will[0]) + _str(will[1])
        if user is not None:
            flags |= 0x80
            body += _str(user)
            if password is not None:
                flags |= 0x40
                body += _str(password)
        body[7] = flags
        return bytes([_CONNECT]) + _varlen(len(body)) + body

    def ready(self):
        """Something has arrived (or the link broke) for poll() to handle.
        Asked without allocating anything: an idle link then costs its
        caller no coroutine frame per look."""
        p = self._p
        if p is not None:
            for _ in p.ipoll(0):
                return True
        return False

    def close(self):
        self.alive = False
        self._p = None
        if self._s is not None:
            try:
                self._s.close()
            except OSError:
                pass
            self._s = None
        self.inflight = {}
        self._body = None

    # -- outgoing --------------------------------------------------------
    def _out(self, mv):
        """Write what the socket takes of memoryview mv now; the rest (mv
        itself when it took nothing: its buffer is full)."""
        s = self._s
        if s is None:
            raise OSError("no link")
        try:
            k = s.write(mv)
        except ValueError as e:
            # MicroPython's ssl says "not signed by the trusted CA" as a
            # ValueError: to the uplink it is a failed link like any other.
            raise OSError(str(e).strip())
        except OSError as e:
            if e.args[0] != _EAGAIN:
                raise
            k = None
        return mv[k:] if k else mv

    async def _send(self, *parts):
        began = time.ticks_ms()
        for p in parts:
            mv = memoryview(p)
            while mv:
                n = len(mv)
                mv = self._out(mv)
                if len(mv) == n:        # the socket's buffer is full: wait, bounded
                    if time.ticks_diff(time.ticks_ms(), began) > self.timeout_ms:
                        raise OSError("send stuck")
                    await sleep_ms(_WAIT_MS)
        self.last_out = time.ticks_ms()

    async def publish(self, topic, payload, qos=1, retain=False):
        """Send; for QoS 1 wait only for room in the window, not the PUBACK."""
        if qos and len(self.inflight) >= self.window:
            await self._until(_PUBACK, "no PUBACK")     # a broker that stopped answering
        t = memoryview(topic)       # a str's UTF-8 bytes, no copy
        tl = len(t)
        if tl > _HEAD_MAX - 9:
            raise ValueError("topic len")
        h = self._head
        h[0] = _PUBLISH | (qos << 1) | (1 if retain else 0)
        n = 2 + tl + len(payload) + (2 if qos else 0)
        i = 1
        while True:                 # the remaining length, 7 bits a byte
            b = n & 0x7F
            n >>= 7
            h[i] = b | 0x80 if n else b
            i += 1
            if not n:
                break
        struct.pack_into("!H", h, i, tl)
        h[i + 2:i + 2 + tl] = t
        i += 2 + tl
        t = None
        if qos:
            self._pid = pid = self._pid % 65535 + 1
            self.inflight[pid] = time.ticks_ms()
            struct.pack_into("!H", h, i, pid)
            i += 2
        # Written here rather than by _send(): a coroutine frame less per event.
        mv = memoryview(h)[:i]
        began = time.ticks_ms()
        while True:
            n = len(mv)
            if n:
                mv = self._out(mv)
            if not mv:
                if payload is None:
                    break
                mv, payload = memoryview(payload), None
            elif len(mv) == n:          # the socket's buffer is full: wait, bounded
                if time.ticks_diff(time.ticks_ms(), began) > self.timeout_ms:
                    raise OSError("send stuck")
                await sleep_ms(_WAIT_MS)
        self.last_out = time.ticks_ms()

    async def subscribe(self, topics):
        """topics: [(name, qos)]; waits for the SUBACK."""
        self._pid = self._pid % 65535 + 1
        body = bytearray(struct.pack("!H", self._pid))
        for name, qos in topics:
            body += _str(name) + bytes([qos])
        self._subacked = False
        await self._send(bytes([_SUBSCRIBE]) + _varlen(len(body)), body)
        await self._until(_SUBACK, "no SUBACK")

    async def _until(self, wait, what, began=None):
        """Read and handle what arrives until `wait` is over (OSError after
        timeout_ms): the CONNACK, the SUBACK, or room in the window."""
        if began is None:
            began = time.ticks_ms()
        while True:
            if self._s is None:
                raise OSError("no link")
            await self.poll()
            if (self._connacked if wait == _CONNACK else self._subacked if wait == _SUBACK
                    else len(self.inflight) < self.window):
                return
            if time.ticks_diff(time.ticks_ms(), began) > self.timeout_ms:
                raise OSError(what)
            await sleep_ms(_WAIT_MS)

    async def ping(self):
        h = self._head          # PINGREQ
        h[0], h[1] = _PINGREQ, 0
        await self._send(memoryview(h)[:2])

    def stale(self):
        """No packet from the broker for 1.5 keepalives: the link is dead."""
        return time.ticks_diff(time.ticks_ms(), self.last_in) > self.keepalive * 1500

    # -- incoming --------------------------------------------------------
    def _read(self, buf):
        """Bytes read into buf, 0 when nothing is there yet; OSError at EOF."""
        try:
            n = self._s.readinto(buf)
        except ValueError as e:
            raise OSError(str(e).strip())      # ssl, as in _send
        except OSError as e:
            if e.args[0] != _EAGAIN:
                raise
            return 0
        if n is None:
            return 0
        if n == 0:
            raise OSError("broker eof")
        return n

    async def poll(self):
        """Handle every whole packet that has arrived; return when none is left."""
        while self._s is not None:
            body = self._body
            if body is None:
                # The fixed header, a byte at a time: the type, then the length.
                if not self._read(self._one):
                    return
                b = self._one[0]
                if self._kind < 0:
                    self._kind, self._len, self._shift = b, 0, 0
                    continue
                self._len |= (b & 0x7F) << self._shift
                if b & 0x80:
                    self._shift += 7
                    if self._shift > 21:
                        raise OSError("bad length")
                    continue
                if self._len > _MAX_IN:
                    raise OSError("too large")
                body = self._body = bytearray(self._len)
                self._got = 0
            if self._got < len(body):
                n = self._read(memoryview(body)[self._got:])
                if not n:
                    return
                self._got += n
                if self._got < len(body):
                    continue
            kind = self._kind
            self._kind = -1
            self._body = None
            self.last_in = time.ticks_ms()
            # Handled here, not in helper coroutines: each would be a frame
            # allocated per packet.
            t = kind & 0xF0
            if t == _PUBACK:
                if self.inflight.pop((body[0] << 8) | body[1], None) is not None:
                    self.puback += 1
            elif t == _PUBLISH:
                tl = (body[0] << 8) | body[1]
                topic = str(memoryview(body)[2:2 + tl], "utf-8")
                pos = 2 + tl
                qos = (kind >> 1) & 3
                pid = 0
                if qos:
                    pid = (body[pos] << 8) | body[pos + 1]
                    pos += 2
                if self.on_message is not None:
                    # The retain flag is set only on messages the broker kept from
                    # before we subscribed; live ones arrive without it.
                    self.on_message(topic, bytes(memoryview(body)[pos:]), bool(kind & 1))
                topic = body = None
                if qos == 1:
                    # Acked once handled: on_message has returned.
                    await self._send(bytes((_PUBACK, 2, pid >> 8, pid & 0xFF)))
            elif t == _SUBACK:
                for i in range(2, len(body)):
                    if body[i] == 0x80:
                        raise OSError("sub denied")
                self._subacked = True
            elif t == _CONNACK:
                if len(body) != 2 or body[1] != 0:
                    raise OSError("connack %r" % (bytes(body),))
                self._connacked = True
            # PINGRESP: last_in is all it is for.
