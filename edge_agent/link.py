"""The agent's MQTT session with the hall's broker (paho-mqtt 2.x).

A persistent session (fixed client id, clean_session=False) with manual
acks: the broker keeps every QoS 1 message for us until we PUBACK it, and we
PUBACK only after commit, in arrival order. on_message never blocks paho's
network loop: it only puts the message in the inbox for the committer.
"""
import logging
import ssl
import threading

import paho.mqtt.client as mqtt

from protocol import topics
from edge_agent.inbox import Inbox
from edge_agent.ingest import Inbound
from edge_agent.store import now_ms

log = logging.getLogger("edge_agent.link")


class BrokerLink:
    def __init__(self, mqtt_cfg, hall, inbox=None, on_connected=None, on_request=None):
        self.cfg, self.hall = mqtt_cfg, hall
        self.on_request = on_request     # (topic, payload): devices' requests, served apart from events
        self.inbox = inbox if inbox is not None else Inbox()
        self.on_connected = on_connected
        # Bumped on every (re)connect: a message's PUBACK is only sent on the
        # connection it came on (after a reconnect the broker resends it anyway,
        # and the old packet id may already name another message).
        self.gen = 0
        self.connected = threading.Event()
        self.stopping = False
        self.intake_closed = False
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=mqtt_cfg["client_id"],
                        clean_session=False, manual_ack=True)
        # Always a user (the config's default is agent-<hall>): the hall's broker takes no anonymous login.
        c.username_pw_set(mqtt_cfg["username"], mqtt_cfg["password"])
        if mqtt_cfg["tls_ca"]:
            c.tls_set(ca_certs=mqtt_cfg["tls_ca"], cert_reqs=ssl.CERT_REQUIRED)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.message_callback_add(topics.for_all_devices(hall, topics.REQ), self._on_request)
        self.client = c

    def start(self):
        self.client.connect_async(self.cfg["host"], self.cfg["port"], keepalive=self.cfg["keepalive_s"])
        self.client.loop_start()

    def stop(self):
        """Disconnect after everything queued (PUBACKs, acks) has been written."""
        self.stopping = True
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("broker refused the connection: %s", reason_code)
            return
        self.gen += 1
        log.info("connected to %s:%d%s (session present: %s)", self.cfg["host"], self.cfg["port"],
                 " over TLS" if self.cfg["tls_ca"] else "",
                 flags.session_present)
        # Requests at QoS 0: live only, none kept for an agent that is away
        # (edge_agent/requests.py), and no PUBACK of ours to wait for a commit.
        client.subscribe([(topics.for_all_devices(self.hall, topics.EVENTS), 1),
                          (topics.for_all_devices(self.hall, topics.STATUS), 1),
                          (topics.for_all_devices(self.hall, topics.REQ), 0)])
        self.connected.set()
        if self.on_connected:
            self.on_connected()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        if not self.stopping:
            log.warning("disconnected from the broker (%s); reconnecting", reason_code)

    def close_intake(self):
        """On shutdown: take no more messages (never PUBACKed, the broker
        resends them next session), so the committer's drain has an end."""
        self.intake_closed = True

    def _on_message(self, client, userdata, msg):
        if self.intake_closed:
            return
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)
        self.inbox.put(Inbound(msg.mid, msg.qos, topic, msg.payload, msg.retain, now_ms(), self.gen))

    def _on_request(self, client, userdata, msg):
        if self.intake_closed or self.on_request is None:
            return
        if msg.qos:        # subscribed at QoS 0; a QoS 1 copy needs its PUBACK all the same
            client.ack(msg.mid, msg.qos)
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = repr(msg._topic)      # refused as bad_topic, counted
        self.on_request(topic, msg.payload)

    def puback(self, messages):
        """PUBACK a committed batch, in arrival order, on the connection each came on."""
        for m in messages:
            if m.qos and m.link_gen == self.gen:
                self.client.ack(m.mid, m.qos)

    def publish(self, topic, payload, retain=False):
        # QoS 1; paho keeps it and sends it after a reconnect if need be.
        self.client.publish(topic, payload, qos=1, retain=retain)
