"""A device's link to the hall: Wi-Fi, MQTT, and draining the outbox.

Shared by every app on the device core (the evaluator, the kiosk): it knows
the site config, the outbox, the network and the callbacks it is given, and
nothing of the app behind them.

    up = Uplink(site, key, outbox, net, presence, on_config, on_cmd, log, n)
        # site: the provisioning dict (hall, device, broker_*, username,
        #   password, ssid, wifi_password, keepalive_s, ack_timeout_s,
        #   ack_backoff_max_s, mqtt_window, tls_name); key: the device key;
        # outbox: pending(limit, after), depth(), ack(ranges);
        # net: wifi_connect(ssid, password), wifi_connected() (the board);
        # presence() -> bytes of the retained `status` announcing it online;
        # on_config(msg, retained), on_cmd(msg): sealed agent messages, checked;
        # log(what, err); n: the counter of the newest config kept on flash;
        # ca_file: the CA on flash for TLS to the broker (None: plain MQTT).
    tasks.create_task(up.run()); up.kick()   # kick: a new event is on flash
    n = up.ask({"op": "case", "case": "..."})  # a request; None: no link now
        # its answer comes to on_cmd as {"cmd": "reply", "re": n, ...}

One task, one retry loop (the only place that reconnects):
  Wi-Fi up -> MQTT connect with a Last Will (`{"online":false}`, retained)
  -> subscribe ack/config/cmd (again after every reconnect: the session is
  clean) -> retained presence -> publish what the outbox holds,
  oldest first, pipelined -> wait for new events, acks or a keepalive.
On any failure: close, wait an exponential backoff with jitter, retry.

Events leave the outbox only on the agent's protocol `ack` (after its
commit), never on a PUBACK. Everything unacked is sent again after a
reconnect; if acks stop coming while events wait, they are sent again
after `ack_timeout_s`, then after twice that, and so on up to
`ack_backoff_max_s` (an agent that is down does not get the whole outbox
every 30 s); the first ack brings the interval back. The agent absorbs
the duplicates.

Acks, configs and commands are acted on only when sealed with this
device's key and newer than the last one accepted on their topic
(protocol/messages.py); anything else is counted in `bad` and ignored.

Requests (SPEC 'Requests') are sealed the same way, with the device's own
counter: it starts above the `rq` in the agent's config, the last request
counter the agent took, so a request recorded on the hall's Wi-Fi cannot be
played again. A reply that says `replayed` (a stale config after a boot)
carries the agent's `rq`: the request goes again once, above it.
"""
import random
import time

from protocol import messages
from protocol import topics
from mqtt import MQTT
from tasks import sleep_ms

try:
    from micropython import const
except ImportError:  # CPython (type checkers, host tests): a const is its int; no
    const = int         # fallback function, which a device would keep in its heap

_BATCH = const(4)            # records read from flash per step
_MIN_BACKOFF = const(1000)
_MAX_BACKOFF = const(30000)
_STEADY_MS = const(60000)    # a link that lived this long resets the backoff
_WIFI_WAIT_MS = const(10000)


class Uplink:
    def __init__(self, site, key, outbox, net, presence, on_config, on_cmd, log, n=None,
                 ca_file=None):
        self.site, self.key, self.outbox, self.net = site, key, outbox, net
        self.presence, self.on_config, self.on_cmd, self.log = presence, on_config, on_cmd, log
        hall, dev = site["hall"], site["device"]
        self.t_events = topics.topic(hall, dev, topics.EVENTS)
        self.t_status = topics.topic(hall, dev, topics.STATUS)
        self.t_agent = topics.topic(hall, dev, "")    # + ack, config, cmd: the agent's channels; + req: ours
        self.keepalive = site.get("keepalive_s", 30)
        self.ack_timeout = site.get("ack_timeout_s", 30) * 1000
        self.resend_ms = self.ack_timeout     # grows while no ack comes
        self.woken = False
        # One MQTT client for the device's life, made now while the heap is
        # whole: one made per connect asked a fragmented heap for its
        # ~400-byte attribute table (at 48 KiB the link then never came up).
        self.mq = MQTT(site["device"], site["broker_host"], site.get("broker_port", 8883 if ca_file else 1883),
                       site.get("username"), site.get("password"), self.keepalive,
                       (self.t_status, b'{"online":false}', True), self._message,
                       site.get("mqtt_window", 16), ca_file, site.get("tls_name"))
        self.connected = False
        self.progress = False        # read and cleared by the watchdog guard
        self.sent = 0                # highest seq published on this connection
        self.last_ack = 0
        self.published = 0
        self.acks = 0
        self.bad = 0                 # agent messages refused: unreadable, not sealed, replayed
        # Counter of the last agent message accepted per topic; after a boot
        # the one stored with the config (the app keeps it on flash).
        self.last_n = [n, n, n] if type(n) is int else [0, 0, 0]    # ack, config, cmd
        self.reconnects = 0
        self.resends = 0
        self.req_n = 0               # counter of the last request sent or the agent's rq
        self.asking = None           # [msg, n, sent, first n] of the request awaiting its reply

    def ask(self, msg):
        """Send `msg` ({"op": ...}) to the agent; return its counter, which
        the reply names in `re`, or None when there is no link (the app
        says it cannot ask now). One request at a time: a new one replaces
        one that has not been answered."""
        if not self.connected:
            return None
        self.req_n += 1
        self.asking = [msg, self.req_n, False, self.req_n]
        self.woken = True
        return self.req_n

    def kick(self):
        """A new event is on flash."""
        self.woken = True

    async def run(self):
        backoff = _MIN_BACKOFF
        while True:
            self.progress = True
            began = time.ticks_ms()
            try:
                await self._link()
            except (OSError, MemoryError) as e:
                # MemoryError too: drop the link and its buffers, try again later.
                self.log("uplink", e)
            finally:
                self.connected = False
                self.mq.close()
            if time.ticks_diff(time.ticks_ms(), began) > _STEADY_MS:
                backoff = _MIN_BACKOFF
            half = backoff // 2
            # Jitter: a hall's devices must not all come back in the same instant.
            await self._sleep(half + random.getrandbits(16) % (half + 1))
            backoff = min(backoff * 2, _MAX_BACKOFF)

    async def _sleep(self, ms):
        while ms > 0:
            self.progress = True
            step = min(ms, 500)
            await sleep_ms(step)
            ms -= step

    async def _link(self):
        site, net = self.site, self.net
        if not net.wifi_connected():
            net.wifi_connect(site.get("ssid"), site.get("wifi_password"))
            waited = 0
            while not net.wifi_connected():
                if waited >= _WIFI_WAIT_MS:
                    raise OSError("wifi")
                await self._sleep(250)
                waited += 250
        self.reconnects += 1
        # TLS when provisioning wrote a CA (ca_file): the broker must show a
        # certificate from it.
        mq = self.mq
        await mq.connect()
        # Subscribe before announcing presence: the agent answers "online"
        # with a live config (fresh hwm), which must not arrive as retained.
        t = self.t_agent
        await mq.subscribe(((t + topics.ACK, 1), (t + topics.CONFIG, 1), (t + topics.CMD, 1)))
        t = None
        await mq.publish(self.t_status, self.presence(), 1, True)
        self.connected = True
        self.sent = 0
        self.last_ack = time.ticks_ms()
        ob = self.outbox
        while mq.alive and net.wifi_connected():
            self.progress = True
            if mq.ready():
                await mq.poll()      # PUBACKs, acks, configs, commands
            a = self.asking
            if a and not a[2]:
                a[2] = True
                # The topic made per request (a few a minute), not kept: a str
                # and a name less in the heap for the device's life.
                await mq.publish(self.t_agent + topics.REQ, messages.seal(self.key, topics.REQ, a[0], a[1]))
            a = None
            batch = ob.pending(_BATCH, self.sent)
            if batch:
                for seq, payload in batch:
                    await mq.publish(self.t_events, payload)
                    self.sent = seq
                    self.published += 1
                batch = None
                continue
            now = time.ticks_ms()
            if mq.stale():
                raise OSError("keepalive")
            if time.ticks_diff(now, mq.last_out) > self.keepalive * 500:
                await mq.ping()
            if self.sent and time.ticks_diff(now, self.last_ack) > self.resend_ms:
                if ob.depth():
                    self.sent = 0      # no acks for a while: send the unacked again
                    self.resends += 1
                    self.resend_ms = min(self.resend_ms * 2, site.get("ack_backoff_max_s", 480) * 1000)
                self.last_ack = now
            # Wait up to 500 ms for a new event or something from the broker;
            # looking at a flag and the socket allocates nothing (poll() is
            # a coroutine frame: called only when something is there). Every
            # 10 ms: an ack is acted on as soon as it comes, as a reader task would.
            self.woken = False
            for _ in range(50):
                await sleep_ms(10)
                if mq.ready():
                    await mq.poll()
                if self.woken or not mq.alive:
                    break

    def _message(self, topic, payload, retained):
        try:
            t = self.t_agent
            if not topic.startswith(t):
                return
            channel = topic[len(t):]
            if channel == topics.ACK:
                i = 0
            elif channel == topics.CONFIG:
                i = 1
            elif channel == topics.CMD:
                i = 2
            else:
                return
            msg = messages.unseal(self.key, channel, payload, self.last_n[i])
            self.last_n[i] = msg["n"]
            # A config or a reply carries the agent's last request counter:
            # ours continue above it.
            rq = msg.get("rq")
            if type(rq) is int and rq > self.req_n:
                self.req_n = rq
            if i == 0:
                self.outbox.ack(messages.parse_ack(msg))
                self.acks += 1
                self.last_ack = time.ticks_ms()
                self.resend_ms = self.ack_timeout
                self.woken = True
            elif i == 1:
                # Commands sent before this config are old news too.
                self.last_n[2] = max(self.last_n[2], msg["n"])
                self.on_config(msg, retained)
            elif msg.get("cmd") != "reply":
                self.on_cmd(msg)
            else:
                # A reply: the app sees it when it answers the request waiting
                # (inline, as the rq above: every method's name is a qstr).
                a = self.asking
                if a is None or msg.get("re") != a[1]:
                    return              # not the request waiting (one replaced, or old)
                if msg.get("error") == "replayed" and a[1] == a[3]:
                    # Our counter was behind the agent's (a stale config after
                    # a boot): once more, above the agent's rq.
                    self.req_n += 1
                    a[1], a[2] = self.req_n, False
                    self.woken = True
                    return
                self.asking = None
                msg["re"] = a[3]        # the counter the app was given
                self.on_cmd(msg)
        except ValueError as e:        # ProtocolError is a ValueError
            self.bad += 1
            self.log("agent message", e)
