"""The evaluator's MQTT client on the wire, against a scripted broker that
records the exact bytes: the CONNECT (clean session, Last Will, per-device
login), the subscriptions, and pipelining: QoS 1 publishes keep coming
before any PUBACK, up to the window, instead of one round trip each."""
import socket
import struct
import threading

from harness import wait_for
from tools.vdevice import VirtualDevice

HALL = "wire-hall"
DEV = "ev-31"
KEY = bytes(range(9, 41))
ROOT = "qinglian/v1/%s/%s/" % (HALL, DEV)


class ScriptedBroker:
    """Accepts one device at a time, answers CONNECT and SUBSCRIBE, and
    PUBACKs only when told to; records every packet."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.port = self.srv.getsockname()[1]
        self.packets = []        # (type, flags, body)
        self.publishes = []      # (topic, pid, payload)
        self.acking = False
        self.conn = None
        threading.Thread(target=self._run, daemon=True).start()

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.conn.recv(n - len(out))
            if not chunk:
                raise OSError("closed")
            out += chunk
        return out

    def _run(self):
        try:
            self.conn, _ = self.srv.accept()
            while True:
                first = self._read(1)[0]
                n, shift = 0, 0
                while True:
                    b = self._read(1)[0]
                    n |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                body = self._read(n) if n else b""
                self.packets.append((first >> 4, first & 15, body))
                if first >> 4 == 1:
                    self.conn.sendall(b"\x20\x02\x00\x00")
                elif first >> 4 == 8:
                    self.conn.sendall(b"\x90\x05" + body[:2] + b"\x01\x01\x01")
                elif first >> 4 == 3:
                    tl = struct.unpack("!H", body[:2])[0]
                    pid = struct.unpack("!H", body[2 + tl:4 + tl])[0]
                    self.publishes.append((body[2:2 + tl].decode(), pid, body[4 + tl:]))
                    if self.acking:
                        self.puback(pid)
                elif first >> 4 == 12:
                    self.conn.sendall(b"\xd0\x00")
        except OSError:
            pass

    def puback(self, pid):
        self.conn.sendall(b"\x40\x02" + struct.pack("!H", pid))


def test_connect_bytes_and_pipelined_publishes(tmp_path):
    broker = ScriptedBroker()
    # hwm 0 in site.json: ready without an agent, so presses count at once.
    vd = VirtualDevice(str(tmp_path / DEV), HALL, DEV, KEY, broker.port, username=DEV, password="pw",
                       site={"long_ms": 150, "hwm": 0, "mqtt_window": 8})
    try:
        vd.start()
        for i in range(6):
            vd.call("M%02d" % i)
            vd.staff("end")
            vd.press("satisfied", ms=20)
        assert vd.stats()["outbox"] >= 24
        # Without a single PUBACK, the device sends exactly a window's worth.
        wait_for(lambda: len(broker.publishes) == 8, 10, what="a window of publishes")
        kind, flags, connect = broker.packets[0]
        assert kind == 1
        will = (ROOT + "status").encode()
        assert connect == (b"\x00\x04MQTT\x04" + bytes([0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02])
                           + struct.pack("!H", 30)
                           + struct.pack("!H", len(DEV)) + DEV.encode()
                           + struct.pack("!H", len(will)) + will
                           + b'\x00\x10{"online":false}'
                           + b"\x00\x05" + DEV.encode() + b"\x00\x02pw")
        subscribe = broker.packets[1]
        assert subscribe[0] == 8 and subscribe[1] == 2
        for channel in ("ack", "config", "cmd"):
            assert (ROOT + channel).encode() + b"\x01" in subscribe[2]
        assert broker.publishes[0][0] == ROOT + "status"            # presence, after subscribing
        assert all(t == ROOT + "events" for t, _, _ in broker.publishes[1:])
        # Releasing the window lets the rest through at once, PUBACKed as they come.
        broker.acking = True
        for _, pid, _ in list(broker.publishes):
            broker.puback(pid)
        events = vd.stats()["outbox"]
        wait_for(lambda: len(broker.publishes) >= 1 + events, 10, what="the rest of the outbox")
        # PUBACKs are not the agent's ack: nothing left the flash.
        assert vd.stats()["outbox"] == events
    finally:
        vd.stop()
