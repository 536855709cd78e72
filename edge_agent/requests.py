"""Device requests (protocol SPEC 'Requests'): what a device asks the agent
and waits for, where an event would not do: a kiosk asking for a queue
ticket or a case's state, an evaluator calling the next ticket.

    requests = Requests(Store(path), link, hall, sealer)
    requests.handle("ping", lambda store, device, msg: {})
    requests.start(); link.on_request = requests.put

A request is sealed by its device like the agent's own messages, with the
device's counter; it is taken only when newer than the last one taken from
that device (`devices.last_request`, kept in the store), so a request
recorded on the hall's Wi-Fi does nothing when played again. The handler's
writes and the new counter commit in one transaction, and only then is the
reply sealed and sent on the device's `cmd` topic: an answered ticket is
never lost by a restart. A request the agent cannot take gets a sealed
`error` reply when the device can read one (its own key), and nothing at
all otherwise; both are counted (`requests_refused:<reason>`).

Requests are live: the agent subscribes at QoS 0, so the broker keeps none
for an agent that is away (a ticket asked for an hour ago helps nobody);
the device sees no reply in time and says it cannot ask now.
"""
import logging
import queue
import threading

from protocol import messages, topics
from protocol.errors import ProtocolError

log = logging.getLogger("edge_agent.requests")

_QUEUE_MAX = 1000          # requests waiting; past it new ones are dropped (counted)


class RequestRefused(Exception):
    """A handler's answer that the request cannot be done, as `error` in the
    reply: `code` is short and machine-readable (`unknown_queue`, ...)."""

    def __init__(self, code, detail=""):
        super().__init__(code if not detail else "%s: %s" % (code, detail))
        self.code = code


class Requests(threading.Thread):
    def __init__(self, store, link, hall, sealer):
        super().__init__(name="requests", daemon=True)
        self.store, self.link, self.hall, self.sealer = store, link, hall, sealer
        self.handlers = {"ping": _ping}
        self.afters = {}
        self.waiting = queue.Queue(_QUEUE_MAX)
        self.stopping = threading.Event()

    def handle(self, op, handler, after=None):
        """handler(store, device_row, msg) -> reply fields (a dict), inside
        the transaction that takes the request; RequestRefused to refuse.
        after(requests, device, key_hex, reply): once the reply is sent, for
        a request that was done (a command that must follow it)."""
        self.handlers[op] = handler
        if after is not None:
            self.afters[op] = after

    def command(self, device, key_hex, msg):
        """Send a sealed command to a device (after a request's commit)."""
        return self._send(device, key_hex, msg)

    def put(self, topic, payload):
        """From the MQTT thread: never blocks it."""
        try:
            self.waiting.put_nowait((topic, payload))
        except queue.Full:
            self._count("queue_full")

    def stop(self):
        self.stopping.set()
        self.waiting.put((None, None))

    def run(self):
        while not self.stopping.is_set():
            topic, payload = self.waiting.get()
            if topic is None:
                continue
            try:
                self.serve(topic, payload)
            except Exception:                 # one bad request must not end the service
                log.exception("request on %s", topic)
                self._count("bug")

    def serve(self, topic, payload):
        """Take one request and answer it; returns the reply sent or None."""
        try:
            hall, device, channel = topics.parse(topic)
        except ProtocolError:
            return self._count("bad_topic")
        if hall != self.hall or channel != topics.REQ:
            return self._count("bad_topic")
        cred = self.store.devices.credentials(device)
        if cred is None or cred[1] != "active":
            return self._count("unknown_device")
        key_hex = cred[0]
        payload = bytes(payload)
        with self.store.atomic():
            last = self.store.devices.last_request(device)
            try:
                msg = messages.unseal(bytes.fromhex(key_hex), topics.REQ, payload, last)
            except ProtocolError as e:
                if e.code != "replayed":
                    return self._count(e.code)      # not sealed with its key: nothing to say to it
                # Sealed by the device, counter old: a replay, or the device
                # booted with a stale config. Tell it our counter (harmless
                # to a replayer: the device goes on above it).
                self._count("replayed")
                reply = {"cmd": "reply", "re": messages.loads(payload[:-74] + b"}")["n"],
                         "error": "replayed", "rq": last}
                return self._send(device, key_hex, reply)
            n = msg["n"]
            self.store.devices.took_request(device, n)
            reply = {"cmd": "reply", "re": n, "rq": n}
            op = msg.get("op")
            handler = self.handlers.get(op) if type(op) is str else None
            if handler is None:
                reply["error"] = "unknown_op"
                self._count("unknown_op")
            else:
                try:
                    with self.store.atomic():       # a refused request leaves only its counter
                        reply.update(handler(self.store, self.store.devices.get(device), msg))
                except RequestRefused as e:
                    reply["error"] = e.code
                except ProtocolError as e:
                    reply["error"] = e.code
        # Committed: now the device may hear about it.
        self._send(device, key_hex, reply)
        after = self.afters.get(op) if handler is not None and "error" not in reply else None
        if after is not None:
            after(self, device, key_hex, reply)
        return reply

    def _send(self, device, key_hex, reply):
        self.sealer.publish(self.link, self.hall, device, key_hex, topics.CMD, reply)
        return reply

    def _count(self, reason):
        self.store.bump("requests_refused:" + reason)
        log.info("request refused: %s", reason)
        return None


def _ping(store, device, msg):
    # The simplest request: a technician's and the tests' check of the round trip.
    return {}
