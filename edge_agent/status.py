"""The hall's numbers, read from the store: one snapshot feeds
`edge-agent status`, /metrics, /api/hall and the tower light."""
import datetime
import json

from edge_agent import quarantine
from edge_agent.store import now_ms
from edge_agent.terminal import printable

LIGHT_ORDER = ("ok", "warn", "alarm")

# Device alarms (protocol/SPEC.md, status): the tower light's level and the words
# for each. A full outbox means ratings are being refused; a config the device cannot
# use means ratings go without the staff (or are refused) until someone fixes it; a
# name this agent does not know yet is a fault to look at.
DEVICE_ALARMS = {"outbox_full": ("alarm", "outbox full"), "display": ("warn", "display fault"),
                 "config": ("alarm", "config error")}


def device_alarm(name):
    return DEVICE_ALARMS.get(name, ("warn", name))


def _midnight_ms(now):
    d = datetime.datetime.fromtimestamp(now / 1000).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(d.timestamp() * 1000)


def snapshot(store, cfg, runtime=None, now=None):
    """Everything `status` shows. `runtime` adds what only a running agent
    knows (broker connection, disk guard, uplink state)."""
    now = now or now_ms()
    c = store.counters()
    quarantined = {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("quarantined:")}
    pending, oldest = store.conn.execute(
        "SELECT count(*), min(received_ms) FROM events WHERE synced_ms IS NULL").fetchone()
    offline_ms = cfg["devices"]["offline_after_s"] * 1000
    devices = []
    for r in store.db.query("SELECT device, window, status, online, presence_ms, fw, hwm, last_event_ms, "
                            "health_alarm, health_outbox FROM devices ORDER BY device"):
        r["online"] = bool(r["online"])
        # Health as the device's newest status reported it (None: no status yet).
        r["alarms"] = [a for a in (r.pop("health_alarm") or "").split(",") if a]
        r["outbox"] = r.pop("health_outbox")
        # A reboot is not an outage: offline only after offline_after_s without presence.
        r["offline"] = r["status"] == "active" and not r["online"] and (
            r["presence_ms"] is None or now - r["presence_ms"] > offline_ms)
        devices.append(r)
    active = [d for d in devices if d["status"] == "active"]
    snap = {
        "hall": cfg["hall"],
        "now_ms": now,
        "received": c.get("received", 0),
        "committed": c.get("committed", 0),
        "duplicates": c.get("duplicates", 0),
        "conflicts": quarantined.get("conflict", 0),
        "quarantined": quarantined,
        "quarantine": quarantine.usage(store),
        "events_stored": store.one("SELECT count(*) FROM events"),
        "pending_uplink": pending,
        "oldest_unsynced_age_s": round((now - oldest) / 1000.0, 1) if oldest else 0.0,
        "devices_online": sum(1 for d in active if d["online"]),
        "devices_offline": sum(1 for d in active if d["offline"]),
        "devices_retired": len(devices) - len(active),
        "devices": devices,
    }
    snap.update(runtime or {})
    return snap


def hall_screen(store, cfg, now=None, snap=None):
    """/api/hall: each window, who is on duty, online, today's ratings by level
    (by the rating's own time; arrival time when the device had no clock)."""
    now = now or now_ms()
    since = _midnight_ms(now)
    windows = {r["window"]: r for r in store.db.query("SELECT * FROM windows")}
    ratings = {}
    for device, level, n in store.conn.execute(
            "SELECT device, json_extract(body, '$.level'), count(*) FROM events "
            "WHERE kind = 'rating' AND (CASE WHEN t > 0 THEN t ELSE received_ms END) >= ? "
            "GROUP BY 1, 2", (since,)):
        ratings.setdefault(device, {})[level] = n
    snap = snap or snapshot(store, cfg, now=now)
    out = []
    for d in snap["devices"]:
        if d["status"] != "active":
            continue
        w = windows.get(d["window"]) or {}
        out.append({"window": d["window"], "device": d["device"], "staff": w.get("staff"),
                    "staff_no": w.get("staff_no"), "online": d["online"],
                    "target_s": w.get("target_s") or cfg["devices"]["targets"].get("default"),
                    "service": open_service(store, d["device"], now),
                    "ratings_today": ratings.get(d["device"], {}), "alarms": d["alarms"]})
    return {"hall": cfg["hall"], "now_ms": now, "windows": out}


def open_service(store, device, now):
    """The service running at a device's window: {session, elapsed_s, paused}
    or None. elapsed_s is service time as the window's own light counts it:
    since `started`, less the paused spans, and frozen while paused (暂停服务)."""
    row = store.conn.execute("SELECT body FROM events WHERE device = ? AND kind = 'session' "
                             "ORDER BY seq DESC LIMIT 1", (device,)).fetchone()
    if not row:
        return None
    ev = json.loads(row[0])
    if ev["action"] not in ("started", "resumed", "paused"):
        return None
    start, paused_ms, paused_at = None, 0, None
    for action, t in store.conn.execute(
            "SELECT json_extract(body, '$.action'), t FROM events WHERE device = ? AND kind = 'session' "
            "AND json_extract(body, '$.session') = ? ORDER BY seq", (device, ev["session"])):
        if action == "started":
            start, paused_ms, paused_at = t, 0, None
        elif action == "paused" and paused_at is None:
            paused_at = t
        elif action == "resumed" and paused_at is not None:
            paused_ms += t - paused_at
            paused_at = None
    if start is None:
        return None
    until = paused_at if paused_at is not None else now
    return {"session": ev["session"], "elapsed_s": max(0, (until - start - paused_ms) // 1000),
            "paused": paused_at is not None}


def hall_state(snap, screen, cfg):
    """The tower light: the worst of every window and of the agent itself.
    alarm: disk guard up, uplink failing too long, a device's outbox full
    (it refuses ratings), a service over its target; warn: a device offline,
    another device alarm (a dead display), a service past warn_pct of its target."""
    reasons = []
    if snap.get("disk_guard"):
        reasons.append(("alarm", "disk guard"))
    failing = (snap.get("uplink") or {}).get("failing_since_ms")
    if failing and snap["now_ms"] - failing > cfg["uplink"]["alarm_after_min"] * 60000:
        reasons.append(("alarm", "uplink down"))
    if snap["devices_offline"]:
        reasons.append(("warn", "%d device(s) offline" % snap["devices_offline"]))
    for d in snap["devices"]:
        if d["status"] != "active":
            continue
        for name in d["alarms"]:
            level, words = device_alarm(name)
            reasons.append((level, "device %s: %s" % (d["device"], words)))
    for w in screen["windows"]:
        s, target = w["service"], w["target_s"]
        if s and target:
            if s["elapsed_s"] > target:
                reasons.append(("alarm", "window %s over target" % w["window"]))
            elif s["elapsed_s"] * 100 >= target * cfg["devices"]["warn_pct"]:
                reasons.append(("warn", "window %s near target" % w["window"]))
    state = max([r[0] for r in reasons] or ["ok"], key=LIGHT_ORDER.index)
    return state, [r[1] for r in reasons]


def metrics(snap):
    """Prometheus text exposition format."""
    lines = []

    def m(name, kind, help_, samples):
        lines.append("# HELP qinglian_agent_%s %s" % (name, help_))
        lines.append("# TYPE qinglian_agent_%s %s" % (name, kind))
        for labels, v in samples:
            lines.append("qinglian_agent_%s%s %s" % (name, labels, v))

    m("received_total", "counter", "MQTT messages taken into a commit.", [("", snap["received"])])
    m("committed_total", "counter", "New events stored.", [("", snap["committed"])])
    m("duplicates_total", "counter", "Identical redeliveries absorbed.", [("", snap["duplicates"])])
    m("conflicts_total", "counter", "Same (device, seq), different content.", [("", snap["conflicts"])])
    m("quarantined_total", "counter", "Messages kept aside, by reason.",
      [('{reason="%s"}' % k, v) for k, v in sorted(snap["quarantined"].items())] or [('{reason="none"}', 0)])
    q = snap["quarantine"]
    m("quarantine_rows", "gauge", "Refused messages kept for inspection.", [("", q["rows"])])
    m("quarantine_bytes", "gauge", "Bytes of refused messages kept.", [("", q["bytes"])])
    m("quarantine_dropped_total", "counter", "Refused messages counted but not kept: their device's "
      "quarantine was full (device=\"(unregistered)\" for ids not in the registry).",
      [('{device="%s"}' % _label(k), v) for k, v in sorted(q["dropped"].items())])
    m("quarantine_purged_total", "counter", "Refused messages deleted after [quarantine] keep_days.",
      [("", q["purged"])])
    m("pending_uplink", "gauge", "Events not yet committed by the county.", [("", snap["pending_uplink"])])
    m("oldest_unsynced_age_seconds", "gauge", "Age of the oldest event not yet at the county.",
      [("", snap["oldest_unsynced_age_s"])])
    m("devices", "gauge", "Active devices by presence.",
      [('{state="online"}', snap["devices_online"]), ('{state="offline"}', snap["devices_offline"])])
    active = [d for d in snap["devices"] if d["status"] == "active"]
    m("device_alarm", "gauge", "1 for each alarm in an active device's newest status.",
      [('{device="%s",alarm="%s"}' % (d["device"], _label(a)), 1) for d in active for a in d["alarms"]])
    m("device_outbox", "gauge", "Events waiting in an active device's outbox, as its newest status said.",
      [('{device="%s"}' % d["device"], d["outbox"]) for d in active if d["outbox"] is not None])
    up = snap.get("uplink")
    if up:
        failing = up.get("failing_since_ms")
        m("uplink_failing_seconds", "gauge", "How long the county uplink has been failing (0 = fine).",
          [("", round((snap["now_ms"] - failing) / 1000.0, 1) if failing else 0)])
        if up.get("last_ok_ms"):
            m("uplink_last_ok_timestamp_seconds", "gauge", "When the county last took a batch.",
              [("", up["last_ok_ms"] / 1000.0)])
    if "http_refused" in snap:
        m("http_refused_total", "counter", "HTTP connections answered 503: [http] max_connections were open.",
          [("", snap["http_refused"])])
        m("http_cut_total", "counter", "HTTP connections closed because the request took over [http] timeout_s.",
          [("", snap["http_cut"])])
    if "disk_guard" in snap:
        m("disk_guard", "gauge", "1 while new events are refused for lack of disk.", [("", int(snap["disk_guard"]))])
        m("broker_connected", "gauge", "1 while connected to the hall broker.", [("", int(snap["broker_connected"]))])
    return "\n".join(lines) + "\n"


def _label(value):
    # Prometheus label values escape backslash, double quote and newline.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def human(snap):
    """`edge-agent status` without --json."""
    out = ["hall %s" % snap["hall"],
           "events: received %d, committed %d, duplicates %d, conflicts %d, stored %d" % (
               snap["received"], snap["committed"], snap["duplicates"], snap["conflicts"], snap["events_stored"]),
           "quarantined: %s" % (", ".join("%s %d" % kv for kv in sorted(snap["quarantined"].items())) or "none"),
           "quarantine kept: %d rows, %d bytes; dropped over the bound: %s" % (
               snap["quarantine"]["rows"], snap["quarantine"]["bytes"],
               ", ".join("%s %d" % kv for kv in sorted(snap["quarantine"]["dropped"].items())) or "none"),
           "uplink: %d pending, oldest %.0fs" % (snap["pending_uplink"], snap["oldest_unsynced_age_s"]),
           "devices: %d online, %d offline, %d retired" % (
               snap["devices_online"], snap["devices_offline"], snap["devices_retired"])]
    sick = [d for d in snap["devices"] if d["status"] == "active" and d.get("alarms")]
    out.append("device alarms:" if sick else "device alarms: none")
    for d in sick:
        out.append("  %s at window %s: %s; %s events in its outbox" % (
            d["device"], d["window"] or "-", ", ".join(device_alarm(a)[1] for a in d["alarms"]), d["outbox"]))
    if "light" in snap:
        out.append("light: %s%s" % (snap["light"], (" (" + "; ".join(snap["light_reasons"]) + ")")
                                    if snap.get("light_reasons") else ""))
        out.append("broker: %s, disk %.0f%%%s" % ("connected" if snap["broker_connected"] else "DISCONNECTED",
                                                 snap["disk_pct"], ", GUARD UP" if snap["disk_guard"] else ""))
    else:
        out.append("agent: not reachable over HTTP (numbers from the store only)")
    # Device ids, alarm names and windows came from devices: escaped, line by line.
    return "\n".join(printable(line) for line in out)
