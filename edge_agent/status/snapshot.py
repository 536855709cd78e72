"""The hall's numbers, read from the store: one snapshot (a plain dict)
feeds `edge-agent status`, /api/status, /metrics, /api/hall and the tower
light; the renderings are in text.py, the light's policy in alarms.py."""
import datetime
import json

from edge_agent import quarantine, queues
from edge_agent.store import now_ms


def _midnight_ms(now):
    d = datetime.datetime.fromtimestamp(now / 1000).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(d.timestamp() * 1000)


def snapshot(store, cfg, runtime=None, now=None):
    """Everything `status` shows. `runtime` adds what only a running agent
    knows (broker connection, disk guard, uplink state)."""
    now = now or now_ms()
    c = store.counters()
    quarantined = {k.split(":", 1)[1]: v for k, v in c.items() if k.startswith("quarantined:")}
    pending, oldest = store.events.backlog()
    offline_ms = cfg["devices"]["offline_after_s"] * 1000
    devices = []
    for r in store.devices.overview():
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
        "events_stored": store.events.count(),
        "pending_uplink": pending,
        "oldest_unsynced_age_s": round((now - oldest) / 1000.0, 1) if oldest else 0.0,
        "devices_online": sum(1 for d in active if d["online"]),
        "devices_offline": sum(1 for d in active if d["offline"]),
        "devices_retired": len(devices) - len(active),
        "devices": devices,
        "queues": queues.summary(store, cfg, now),
    }
    snap.update(runtime or {})
    return snap


def hall_screen(store, cfg, now=None, snap=None):
    """/api/hall: each window, who is on duty, online, today's ratings by level
    (by the rating's own time; arrival time when the device had no clock)."""
    now = now or now_ms()
    since = _midnight_ms(now)
    windows = store.windows.all()
    ratings = {}
    for device, level, n in store.events.ratings_since(since):
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
    body = store.events.last_session(device)
    if not body:
        return None
    ev = json.loads(body)
    if ev["action"] not in ("started", "resumed", "paused"):
        return None
    start, paused_ms, paused_at = None, 0, None
    for action, t in store.events.session_steps(device, ev["session"]):
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
