"""The device registry: keys, window bindings, seq high-water marks, and the
staff on duty per window. Each change bumps the registry revision so that a
running agent republishes the device configs (retained) within a second.
"""
import hashlib
import logging
import secrets
import unicodedata

from protocol import mac, messages
from protocol.errors import ProtocolError
from protocol.events import MAX_INT, MAX_TARGET_S, check_field, clean_config
from protocol.rules import rule
from protocol.topics import valid_id
from edge_agent.errors import RegistryError
from edge_agent.store import now_ms

KEY_BYTES = 32
log = logging.getLogger("edge_agent.registry")


def mqtt_password(key):
    """A device's broker password, derived from its signing key so provisioning
    writes one secret; the key itself never crosses the (maybe plain) MQTT link."""
    return mac.sign(key, b"qinglian/v1/mqtt-password")[:32]


def key_fingerprint(key_hex):
    """First 8 hex of sha256 of the key's bytes: what `hallctl info` prints for the
    key on a board, so a technician can match the two without showing the key."""
    return hashlib.sha256(bytes.fromhex(key_hex)).hexdigest()[:8]


def _key(key_hex):
    if key_hex is None:
        return secrets.token_hex(KEY_BYTES)
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        raise RegistryError("--key must be hex")
    if len(key) != KEY_BYTES:
        raise RegistryError("--key must be %d bytes (%d hex digits), not %d bytes" % (KEY_BYTES, 2 * KEY_BYTES, len(key)))
    return key.hex()


def _id(what, value):
    """A device or window id as typed, surrounding whitespace removed (a tab pasted
    from a spreadsheet); it becomes a topic level and goes into events."""
    text = value.strip() if type(value) is str else value
    if type(text) is not str or not valid_id(text):
        raise RegistryError("%s %s must be 1-32 characters of A-Z a-z 0-9 - _" % (what, _shown(value)))
    return text


def _shown(value):
    # Bad input quoted back on one line: escapes shown, long text cut.
    if type(value) is str and len(value) > 24:
        return "%r... (%d characters)" % (value[:20], len(value))
    return repr(value)


def _person_text(what, value):
    """A name typed (or pasted from a spreadsheet) by a person, for the events'
    `staff`: surrounding whitespace removed, NFC (the form the device's font
    draws), then the protocol's rule. None = unchanged; "" = nobody."""
    if value is None:
        return None
    if type(value) is not str:
        raise RegistryError("%s must be text, not %s" % (what, _shown(value)))
    text = unicodedata.normalize("NFC", value.strip())
    if text:
        try:
            check_field("rating", "staff", text)
        except ProtocolError:
            raise RegistryError("%s %s: must be %s, after surrounding spaces and tabs are removed"
                                % (what, _shown(value), rule("rating", "staff")))
    return text


def _target(value):
    if value is None:
        return None
    try:
        check_field("config", "targets", {"default": value})
    except ProtocolError:
        raise RegistryError("target_s %s: must be a whole number of seconds 1-%d" % (_shown(value), MAX_TARGET_S))
    return value


def must_get(store, device):
    d = store.devices.get(device)
    if d is None:
        raise RegistryError("no device %r (see `edge-agent devices list`)" % device)
    return d


def add(store, hall, device, window, key_hex=None, hwm=0):
    """Register a device; returns its key as hex (generated when not given)."""
    device = _id("device", device)
    window = _id("window", window)
    key_hex = _key(key_hex)
    from edge_agent.queues import QUEUE_DEVICE
    if device == QUEUE_DEVICE:
        raise RegistryError("device id %s is the agent's own (its queue events)" % device)
    with store.atomic():
        if store.devices.get(device):
            raise RegistryError("device %r exists already (retire or replace it)" % device)
        store.devices.add(device, hall, window, key_hex, hwm, now_ms())
        store.bump_registry()
    return key_hex


def retire(store, device):
    with store.atomic():
        must_get(store, device)
        store.devices.retire(device)
        store.bump_registry()


def hwm(store, device):
    """Highest seq held for the device: the registry's mark or a stored event."""
    d = store.devices.get(device)
    return max(store.events.top_seq(device), d["hwm"] if d else 0)


def replace(store, hall, old, new, key_hex=None):
    """A new board takes over the old one's window and continues above its seq."""
    with store.atomic():
        d = must_get(store, old)
        if d["status"] == "retired":
            raise RegistryError("device %r is retired already" % old)
        mark = hwm(store, old)
        key_hex = add(store, hall, new, d["window"], key_hex, hwm=mark)
        store.devices.retire(old, replaced_by=new)
    return key_hex, mark


def set_window(store, window, staff=None, staff_no=None, target_s=None):
    """Who is on duty at a window and its service target; the one door for the
    CLI and HTTP, so every value is checked here by the protocol's rules."""
    window = _id("window", window)
    staff = _person_text("staff", staff)
    staff_no = _person_text("staff_no", staff_no)
    target_s = _target(target_s)
    with store.atomic():
        store.windows.set(window, staff, staff_no, target_s, now_ms())
        store.bump_registry()
    return window, staff, staff_no, target_s


def device_config(store, device, dev_cfg, t_ms):
    """The retained config message body for a device (protocol SPEC 'Config')."""
    d = must_get(store, device)
    msg = config_message(d["window"], store.windows.all().get(d["window"]) or {}, dev_cfg, t_ms, hwm(store, device),
                         d["last_request"], bool(store.queues.served_by(d["window"])))
    # What an older agent let into the store is left out, not sent to fail on the device.
    for name in clean_config(msg):
        log.warning("window %s: its %s breaks the protocol's rules and is left out of %s's config; "
                    "set it again with `edge-agent window set`", d["window"], name, device)
    return msg


def config_message(window, w, dev_cfg, t_ms, hwm_seq, rq=0, calls=False):
    """A device config from its window's row `w` and the [devices] settings;
    `calls`: the window calls tickets from a queue (its staff key asks `next`)."""
    targets = dict(dev_cfg["targets"])
    if w.get("target_s"):
        targets["default"] = w["target_s"]
    msg = {"window": window}
    for k in ("staff", "staff_no"):      # left out until someone is on duty
        if w.get(k):
            msg[k] = w[k]
    msg.update(targets=targets, warn_pct=dev_cfg["warn_pct"], prompt_s=dev_cfg["prompt_s"],
               t=t_ms, hwm=hwm_seq, rq=rq)
    if calls:
        msg["calls"] = 1
    if dev_cfg.get("reasons"):
        msg["reasons"] = reason_choices(dev_cfg["reasons"])
    return msg


def reason_choices(reasons):
    """[devices] reasons ({code: label}) as the device config carries them:
    "<code> <label>" each, one string per reason (a device keeps its config
    in a small heap, where every JSON object or list is an allocation of its own)."""
    return [code + " " + label for code, label in reasons.items()]


def largest_config(dev_cfg):
    """Bytes of the largest device config these [devices] settings allow: the
    longest window id, staff name and number (4-byte characters), the
    longest target, the largest t and hwm, sealed with the largest counter.
    Kept under MAX_CONFIG, no `window set` can make a config the device or
    the broker refuses."""
    name = "\U00020000" * 64     # a CJK Extension B character: 4 bytes in UTF-8
    w = {"staff": name, "staff_no": name, "target_s": MAX_TARGET_S}
    msg = config_message("W" * 32, w, dev_cfg, MAX_INT, MAX_INT, MAX_INT, True)
    return len(messages.seal(bytes(32), "config", msg, MAX_INT))
