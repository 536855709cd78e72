"""The device registry: keys, window bindings, seq high-water marks, and the
staff on duty per window. Each change bumps the registry revision so that a
running agent republishes the device configs (retained) within a second.
"""
import hashlib
import secrets

from protocol import mac
from protocol.topics import valid_id
from edge_agent.errors import RegistryError
from edge_agent.store import now_ms

KEY_BYTES = 32


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


def _check_id(what, value):
    if not valid_id(value):
        raise RegistryError("%s %r must be 1-32 characters of A-Z a-z 0-9 - _" % (what, value))


def get(store, device):
    row = store.conn.execute("SELECT * FROM devices WHERE device = ?", (device,)).fetchone()
    if row is None:
        return None
    cols = [d[0] for d in store.conn.execute("SELECT * FROM devices LIMIT 0").description]
    return dict(zip(cols, row))


def must_get(store, device):
    d = get(store, device)
    if d is None:
        raise RegistryError("no device %r (see `edge-agent devices list`)" % device)
    return d


def all_devices(store):
    return [dict(r) for r in store.db.query("SELECT * FROM devices ORDER BY device")]


def add(store, hall, device, window, key_hex=None, hwm=0):
    """Register a device; returns its key as hex (generated when not given)."""
    _check_id("device", device)
    _check_id("window", window)
    key_hex = _key(key_hex)
    with store.atomic():
        if get(store, device):
            raise RegistryError("device %r exists already (retire or replace it)" % device)
        store.conn.execute(
            "INSERT INTO devices (device, hall, window, key_hex, hwm, created_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (device, hall, window, key_hex, hwm, now_ms()))
        store.bump_registry()
    return key_hex


def retire(store, device):
    with store.atomic():
        must_get(store, device)
        store.conn.execute("UPDATE devices SET status = 'retired' WHERE device = ?", (device,))
        store.bump_registry()


def hwm(store, device):
    """Highest seq held for the device: the registry's mark or a stored event."""
    d = get(store, device)
    top = store.one("SELECT MAX(seq) FROM events WHERE device = ?", (device,)) or 0
    return max(top, d["hwm"] if d else 0)


def replace(store, hall, old, new, key_hex=None):
    """A new board takes over the old one's window and continues above its seq."""
    with store.atomic():
        d = must_get(store, old)
        if d["status"] == "retired":
            raise RegistryError("device %r is retired already" % old)
        mark = hwm(store, old)
        key_hex = add(store, hall, new, d["window"], key_hex, hwm=mark)
        store.conn.execute("UPDATE devices SET status = 'retired', replaced_by = ? WHERE device = ?", (new, old))
    return key_hex, mark


def set_window(store, window, staff=None, staff_no=None, target_s=None):
    _check_id("window", window)
    if target_s is not None and target_s <= 0:
        raise RegistryError("--target-s must be a positive number of seconds")
    with store.atomic():
        store.conn.execute(
            "INSERT INTO windows (window, staff, staff_no, target_s, updated_ms) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(window) DO UPDATE SET staff = coalesce(excluded.staff, staff), "
            "staff_no = coalesce(excluded.staff_no, staff_no), "
            "target_s = coalesce(excluded.target_s, target_s), updated_ms = excluded.updated_ms",
            (window, staff, staff_no, target_s, now_ms()))
        store.bump_registry()


def windows(store):
    return {r["window"]: r for r in store.db.query("SELECT * FROM windows")}


def device_config(store, device, dev_cfg, t_ms):
    """The retained config message body for a device (protocol SPEC 'Config')."""
    d = must_get(store, device)
    w = windows(store).get(d["window"]) or {}
    targets = dict(dev_cfg["targets"])
    if w.get("target_s"):
        targets["default"] = w["target_s"]
    msg = {"window": d["window"]}
    for k in ("staff", "staff_no"):      # left out until someone is on duty
        if w.get(k):
            msg[k] = w[k]
    msg.update(targets=targets, warn_pct=dev_cfg["warn_pct"], prompt_s=dev_cfg["prompt_s"],
               t=t_ms, hwm=hwm(store, device))
    return msg
