"""`hallctl ota`: over-the-air updates through a hall's agent.

    hallctl ota build -o fw.qlb [--port esp32]       the bundle, from the ship list `install` copies
    hallctl ota rollout fw.qlb --first ev-01 --then ev-02,ev-03 [--agent URL]
    hallctl ota status [--agent URL]

A bundle is a zip: `manifest.json` (version: the FW the image carries;
files: the app image `app.rom` with its size and sha256; ship: every module
in the image with its sha256) and `app.rom`, a ROMFS image of what
firmware/manifest.py ships (tools/hallctl/bundle.py: the same list `hallctl
install` copies), compiled as the board runs it from flash.

The rollout gives the bundle to the agent, offers it to the first device and
waits until that device reports healthy on the new version; then to the
rest, a wave (`--wave N`, default all) at a time. The first failure
(refused, rolled back, no report in time) stops it: the offers not yet
switching are withdrawn and the exit status is 1.
"""
import hashlib
import io
import json
import os
import time
import urllib.error
import urllib.request
import zipfile

from tools.hallctl.device import HallctlError

IMAGE = "app.rom"
FINAL_BAD = ("rolled_back", "refused", "failed", "withdrawn")


def sources(port):
    """[(local path, name in the image)] of the app image for `port`: what
    firmware/manifest.py ships, the protocol package under protocol/; the
    simulated board's modules for port "sim" (tools/vdevice.py)."""
    from tools import vdevice
    if port == "sim":
        return vdevice.rom_sources()
    from tools.hallctl.bundle import shipped
    return [(local, name[len("lib/"):] if name.startswith("lib/") else name) for name, local in shipped(port)]


def build(out, port="esp32", srcs=None):
    """Write the bundle for `srcs` (default: sources(port)) to `out`; return its manifest."""
    from tools.hallctl.bundle import firmware_version
    from tools.vdevice import firmware_romfs
    srcs = srcs or sources(port)
    version = firmware_version([(name, local) for local, name in srcs])
    if not version:
        raise HallctlError("no FW version in evaluator.py among the bundle's files")
    with open(firmware_romfs(srcs), "rb") as f:
        image = f.read()
    ship = {}
    for local, name in srcs:
        with open(local, "rb") as f:
            ship[name] = hashlib.sha256(f.read()).hexdigest()
    manifest = {"version": version, "port": port,
                "files": [{"name": IMAGE, "size": len(image), "sha256": hashlib.sha256(image).hexdigest()}],
                "ship": ship}
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
        z.writestr(IMAGE, image)
    os.replace(tmp, out)
    return manifest


def bundle_version(path):
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read("manifest.json"))["version"]


class Agent:
    """The agent's OTA API (edge_agent/http_api.py)."""

    def __init__(self, url, token=None, timeout_s=30.0):
        self.url, self.token, self.timeout_s = url.rstrip("/"), token, timeout_s

    def _call(self, path, body=None, ctype="application/json"):
        headers = {"Content-Type": ctype}
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        if body is not None and ctype == "application/json":
            body = json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=body, headers=headers,
                                     method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                why = json.loads(e.read()).get("error")
            except ValueError:
                why = None
            raise HallctlError("%s: %s" % (self.url, why or e))
        except (OSError, ValueError) as e:
            raise HallctlError("%s: agent not reachable (%s)" % (self.url, getattr(e, "reason", e)))

    def send_bundle(self, path):
        with open(path, "rb") as f:
            return self._call("/api/ota/bundles", f.read(), "application/octet-stream")["version"]

    def offer(self, devices, version, health_s):
        self._call("/api/ota/offer", {"devices": devices, "version": version, "health_s": health_s})

    def withdraw(self, devices):
        self._call("/api/ota/withdraw", {"devices": devices})

    def devices(self, fw_prefix):
        """The hall's active devices whose firmware starts with `fw_prefix` (its fleet view)."""
        return sorted(r["device"] for r in self._call("/api/fleet")["devices"]
                      if (r.get("fw") or "").startswith(fw_prefix))

    def status(self):
        return {r["device"]: r for r in self._call("/api/ota")["devices"]}


def wait_wave(agent, devices, version, timeout_s, say=print, poll_s=1.0):
    """Wait until every device of a wave is healthy on `version`; the first
    failure (or the time running out) raises HallctlError naming it."""
    until = time.monotonic() + timeout_s
    said = {}
    while True:
        st = agent.status()
        healthy = 0
        for d in devices:
            row = st.get(d) or {}
            state = row.get("state")
            if said.get(d) != state:
                said[d] = state
                say("  %-16s %s%s" % (d, state, " (%s)" % row["detail"] if row.get("detail") else ""))
            if row.get("version") == version and state in FINAL_BAD:
                raise HallctlError("%s: %s (%s): rollout stopped" % (d, state, row.get("detail") or "-"))
            healthy += row.get("version") == version and state == "healthy"
        if healthy == len(devices):
            return
        if time.monotonic() > until:
            late = [d for d in devices if said.get(d) != "healthy"]
            raise HallctlError("no healthy report within %d s from %s: rollout stopped"
                               % (timeout_s, ", ".join(late)))
        time.sleep(poll_s)


def rollout(agent, bundle, first, rest, wave=0, health_s=120, timeout_s=600, say=print):
    """Give the agent the bundle and roll it out: `first`, then `rest` in
    waves of `wave` (0: all at once); stop at the first failure."""
    version = agent.send_bundle(bundle)
    say("bundle %s on %s" % (version, agent.url))
    waves = [[first]]
    rest = [d for d in rest if d != first]
    step = wave or len(rest) or 1
    waves += [rest[i:i + step] for i in range(0, len(rest), step)]
    offered = []
    for n, devices in enumerate(waves, 1):
        say("wave %d: %s" % (n, ", ".join(devices)))
        agent.offer(devices, version, health_s)
        offered += devices
        try:
            wait_wave(agent, devices, version, timeout_s, say)
        except HallctlError:
            agent.withdraw(offered)
            raise
    say("%s: %d devices healthy" % (version, len(offered)))
    return version


def status_table(rows):
    from edge_agent.terminal import printable
    cols = ("device", "version", "state", "fw", "chunks", "detail")
    lines = [list(cols)] + [[printable(str(r.get(c) if r.get(c) is not None else "-")) for c in cols]
                            for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(cols))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def zipped(manifest, image):
    """A bundle's bytes from a manifest and an image (tests: a tampered one)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("manifest.json", json.dumps(manifest))
        z.writestr(IMAGE, image)
    return buf.getvalue()
