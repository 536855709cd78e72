"""`hallctl fleet`: every device of one hall or several, read from each
hall's agent (`GET /api/fleet`), the devices that need a visit first.

An agent that cannot be reached is named on its own line and makes the exit
status 1; the halls that answered are still shown.
"""
import json
import time
import urllib.error
import urllib.request

from edge_agent.status.fleet import visit_order
from edge_agent.terminal import printable

MAX_ANSWER = 8 * 1024 * 1024      # bytes; an agent's fleet of hundreds of devices is far less

COLUMNS = ("hall", "device", "window", "fw", "seen", "outbox", "reset", "heap", "rssi", "visit")


def read(agent_url, timeout_s=10.0):
    """The fleet document of one agent, or raise OSError/ValueError with why."""
    url = agent_url.rstrip("/") + "/api/fleet"
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        body = r.read(MAX_ANSWER + 1)
    if len(body) > MAX_ANSWER:
        raise ValueError("answer larger than %d bytes" % MAX_ANSWER)
    doc = json.loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list):
        raise ValueError("not a fleet document (is %s an edge agent?)" % agent_url)
    for row in doc["devices"]:
        if not isinstance(row, dict) or not isinstance(row.get("visit"), list) or not all(
                isinstance(row.get(k), str) for k in ("hall", "device")):
            raise ValueError("a device row is malformed")
    return doc


def gather(agent_urls, timeout_s=10.0):
    """(rows of every hall sorted by need of a visit, {url: why} of agents not reached)."""
    rows, unreachable = [], {}
    for url in agent_urls:
        try:
            rows.extend(read(url, timeout_s)["devices"])
        except (OSError, ValueError, urllib.error.URLError) as e:
            unreachable[url] = str(getattr(e, "reason", None) or e)
    rows.sort(key=visit_order)
    return rows, unreachable


def _ago(ms, now_ms):
    if not ms:
        return "never"
    s = max(0, (now_ms - ms) // 1000)
    if s < 120:
        return "%ds ago" % s
    if s < 7200:
        return "%dm ago" % (s // 60)
    if s < 172800:
        return "%dh ago" % (s // 3600)
    return "%dd ago" % (s // 86400)


def _cells(row, now_ms):
    heap = row.get("heap")
    rssi = row.get("rssi")
    return [row["hall"], row["device"], row.get("window") or "-", row.get("fw") or "-",
            "online" if row.get("online") else "away, seen " + _ago(row.get("last_seen_ms"), now_ms),
            "-" if row.get("outbox") is None else str(row["outbox"]),
            row.get("reset") or "-",
            "-" if heap is None else "%.1fK" % (heap / 1024),
            "-" if rssi is None else "-%d dBm" % rssi,
            ", ".join(row["visit"] + ["alarm: " + a for a in row.get("alarms") or []]) or "ok"]


def table(rows, now_ms=None):
    """The fleet as aligned text; every value from a device escaped for the terminal."""
    now_ms = now_ms or int(time.time() * 1000)
    lines = [list(COLUMNS)] + [[printable(c) for c in _cells(r, now_ms)] for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)
