"""Over-the-air updates through the agent (protocol SPEC 'OTA').

    ota = Ota(cfg)
    ota.register(requests)                 # the `ota_chunk` and `ota` requests
    version = take_bundle(store, data)     # POST /api/ota/bundles (hallctl ota)
    offer(store, devices, version, health_s)    # POST /api/ota/offer
    ota.send_offers(store, link, hall, sealer, devices=None)

A bundle (tools/hallctl/ota.py builds it from the ship list) is a zip of
`manifest.json` ({"version", "files": [{"name": "app.rom", "size",
"sha256"}], "ship": {module: sha256}}) and the app image. The agent checks
the image against the manifest when it takes the bundle and keeps both in
its store. The offer to a device is a `cmd` sealed with that device's own
key: the device applies only a manifest its own agent sealed for it. The
device then fetches the image chunk by chunk with `ota_chunk` requests,
each answered after the request's commit like any other, and reports what
became of it with `ota` requests (`switching`, `healthy`, `rolled_back`,
`refused`).
"""
import base64
import hashlib
import io
import json
import logging
import zipfile

from edge_agent.errors import AgentError
from edge_agent.requests import RequestRefused
from edge_agent.store import now_ms
from protocol import topics

log = logging.getLogger("edge_agent.ota")

CHUNK_BYTES = 64            # raw bytes a reply carries (the 48 KiB evaluator: firmware/README.md "Memory")
MAX_BUNDLE_BYTES = 2 * 1024 * 1024
IMAGE = "app.rom"
# What a device may report, and the states they put it in.
REPORTS = {"switching": "switching", "healthy": "healthy", "rolled_back": "rolled_back", "refused": "refused"}
PENDING = ("offered", "downloading")        # a device is still to fetch the image
FINAL = ("healthy", "rolled_back", "refused", "failed", "withdrawn")


class BundleError(AgentError):
    """A bundle the agent refuses to keep (not a zip, the image does not match)."""


def read_bundle(data):
    """(version, manifest dict, image bytes) of a bundle, checked; BundleError if not one."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            manifest = json.loads(z.read("manifest.json"))
            image = z.read(IMAGE)
    except (zipfile.BadZipFile, KeyError, ValueError) as e:
        raise BundleError("not an update bundle: %s" % e)
    files = manifest.get("files") if type(manifest) is dict else None
    version = manifest.get("version") if type(manifest) is dict else None
    if type(version) is not str or not 0 < len(version) <= 64 or not version.isprintable():
        raise BundleError("bundle manifest: no version")
    if type(files) is not list or len(files) != 1 or type(files[0]) is not dict or files[0].get("name") != IMAGE:
        raise BundleError("bundle manifest: files must be exactly [%s]" % IMAGE)
    if files[0].get("size") != len(image) or files[0].get("sha256") != hashlib.sha256(image).hexdigest():
        raise BundleError("bundle: %s does not match its manifest (size or sha256)" % IMAGE)
    return version, manifest, image


def take_bundle(store, data):
    """Keep a bundle; returns its version."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError("bundle over %d bytes" % MAX_BUNDLE_BYTES)
    version, manifest, image = read_bundle(data)
    with store.atomic():
        if not store.bundles.add(version, json.dumps(manifest, sort_keys=True), image,
                                 manifest["files"][0]["sha256"], now_ms()):
            raise BundleError("version %s is already here with another image: give the new one a new version"
                              % version)
    return version


def offer(store, devices, version, health_s):
    """Offer `version` to `devices` (recorded; the running agent sends it)."""
    if type(health_s) is not int or not 10 <= health_s <= 3600:
        raise AgentError("health_s must be a whole number of seconds, 10 to 3600")
    _check_devices(devices)
    if type(version) is not str:
        raise AgentError("version must be the bundle's version, a string")
    with store.atomic():
        if store.bundles.get(version) is None:
            raise AgentError("no bundle %r on this agent: send it first" % (version,))
        for d in devices:
            row = store.devices.get(d)
            if row is None or row["status"] != "active":
                raise AgentError("no active device %r" % (d,))
            store.updates.offer(d, version, row.get("fw"), health_s, now_ms())
        store.set_meta("ota_rev", int(store.meta("ota_rev", 0)) + 1)


def _check_devices(devices):
    if type(devices) is not list or not devices or not all(type(d) is str for d in devices):
        raise AgentError("devices must be a list of device ids")


def withdraw(store, devices):
    """Withdraw offers not yet switching (a rollout stopped): their next chunk
    request is refused and they drop what they fetched."""
    _check_devices(devices)
    with store.atomic():
        for d in devices:
            store.updates.set_state(d, "withdrawn", "rollout stopped", now_ms(), only_from=PENDING)
        store.set_meta("ota_rev", int(store.meta("ota_rev", 0)) + 1)


def offer_message(store, row):
    b = store.bundles.get(row["version"])
    return {"cmd": "ota", "ota": row["version"], "files": [[IMAGE, b["size"], b["sha"]]], "c": CHUNK_BYTES,
            "h": row["health_s"]}


def send_offers(store, link, hall, sealer, devices=None):
    """Send the offers still to be fetched (to `devices` only, when given:
    those that just came online)."""
    for row in store.updates.all():
        if row["state"] not in PENDING or (devices is not None and row["device"] not in devices):
            continue
        cred = store.devices.credentials(row["device"])
        if cred is None or cred[1] != "active":
            continue
        sealer.publish(link, hall, row["device"], cred[0], topics.CMD, offer_message(store, row))


def check_deadlines(store, at_ms):
    """A device switching or on trial that has said nothing for three times
    its health time has failed (it may not even come back online); returns
    the devices marked."""
    failed = []
    for row in store.updates.all():
        if row["state"] == "switching" and at_ms - row["updated_ms"] > 3 * 1000 * row["health_s"]:
            with store.atomic():
                if store.updates.set_state(row["device"], "failed", "no report after the switch", at_ms,
                                           only_from=("switching",)):
                    failed.append(row["device"])
    return failed


def _chunk(store, device, msg):
    v, i = msg.get("ota"), msg.get("i")
    row = store.updates.get(device["device"])
    if row is None or row["version"] != v or row["state"] not in PENDING:
        raise RequestRefused("unknown_ota")
    if type(i) is not int or not 0 <= i < MAX_BUNDLE_BYTES // CHUNK_BYTES:
        raise RequestRefused("bad_chunk")
    data = store.bundles.piece(v, i * CHUNK_BYTES, CHUNK_BYTES)
    if not data:
        raise RequestRefused("bad_chunk")
    store.updates.served(device["device"], i, now_ms())
    store.bump("ota_chunks_served")
    return {"ota": v, "i": i, "data": base64.b64encode(data).decode()}


def _report(store, device, msg):
    v, state = msg.get("ota"), msg.get("state")
    row = store.updates.get(device["device"])
    if row is None or row["version"] != v:
        raise RequestRefused("unknown_ota")
    if state not in REPORTS:
        raise RequestRefused("bad_value")
    why = msg.get("detail")
    detail = "fw %s" % msg.get("fw") if type(msg.get("fw")) is str else ""
    if type(why) is str:
        detail = (why + "; " + detail).strip("; ")
    if state == "healthy":
        for k in ("outbox", "heap"):
            if type(msg.get(k)) is int:
                detail += "; %s %d" % (k, msg[k])
    if row["state"] == "withdrawn" and state == "refused":
        return {"ota": v}                   # it dropped a withdrawn offer: withdrawn it stays
    store.updates.set_state(device["device"], REPORTS[state], detail[:200], now_ms())
    log.info("ota %s: %s %s (%s)", device["device"], v, state, detail)
    return {"ota": v}


def register(requests):
    requests.handle("ota_chunk", _chunk)
    requests.handle("ota", _report)
