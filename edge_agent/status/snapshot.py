"""The hall's numbers, read from the store: one snapshot (a plain dict)
feeds `edge-agent status`, /api/status, /metrics, /api/hall and the tower
light; the renderings are in text.py, the light's policy in alarms.py."""
import datetime
import json

from edge_agent import cases, quarantine, queues
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
        # A kiosk's printer, as its newest `printer` event said: an alarm until it reports ok.
        r["printer"] = r.pop("printer_state")
        if r["printer"] in PRINTER_ALARMS:
            r["alarms"].append(PRINTER_ALARMS[r["printer"]])
        r["outbox"] = r.pop("health_outbox")
        # The rest of that status, for the fleet view (None until one came).
        r["health"] = {k: r.pop("health_" + k) for k in ("fw", "reset", "heap", "rssi", "uptime_s", "t")}
        # A reboot is not an outage: offline only after offline_after_s without presence.
        r["offline"] = r["status"] == "active" and not r["online"] and (
            r["presence_ms"] is None or now - r["presence_ms"] > offline_ms)
        devices.append(r)
    active = [d for d in devices if d["status"] == "active"]
    as_of = cases.cached_as_of(store)
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
        # The kiosks' case cache: how many, when the county last answered, whether
        # kiosks get answers (fresh) or `offline`; the day's 红黄牌 while fresh.
        "cases": {"polled": bool(cfg["uplink"]["url"]), "cached": store.cases.count(), "as_of_ms": as_of,
                  "fresh": as_of is not None and now - as_of <= cfg["kiosk"]["cases_fresh_s"] * 1000,
                  "cards": _fresh_cards(store, cfg, now)},
        "queues": queues.summary(store, cfg, now),
    }
    snap.update(runtime or {})
    return snap


# `printer` event states -> the device alarm each raises (names as DEVICE_ALARMS has them).
PRINTER_ALARMS = {"paper_low": "paper_low", "paper_out": "paper_out", "cover_open": "cover_open",
                  "offline": "printer_offline"}


def _fresh_cards(store, cfg, now):
    c = cases.cards(store)
    if c is None or now - c["as_of_ms"] > cfg["kiosk"]["cases_fresh_s"] * 1000:
        return None         # an old count is not shown as today's
    return c


def ratings_cutoff(now, delay_min):
    """The lobby screen counts ratings before this time: at least delay_min
    old, moving in steps of delay_min, so a 差评 never shows as it happens
    (0: live, every rating up to now)."""
    step = delay_min * 60000
    return now + 1 if not step else (now - step) // step * step


def hall_screen(store, cfg, now=None, snap=None):
    """/api/hall: each window, who is on duty, online, today's ratings by level
    (by the rating's own time; arrival time when the device had no clock),
    counted up to ratings_cutoff() (the `ratings_until_ms` it gives)."""
    now = now or now_ms()
    since = _midnight_ms(now)
    until = max(since, ratings_cutoff(now, cfg["screen"]["ratings_delay_min"]))
    windows = store.windows.all()
    ratings = {}
    for device, level, n in store.events.ratings_between(since, until):
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
                    "ratings_today": ratings.get(d["device"], {}), "alarms": d["alarms"],
                    "printer": d["printer"]})
    return {"hall": cfg["hall"], "now_ms": now, "windows": out, "cards": snap["cases"]["cards"],
            "ratings_until_ms": min(until, now)}


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
