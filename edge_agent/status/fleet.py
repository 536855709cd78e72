"""The technician's fleet view (`hallctl fleet`, `GET /api/fleet`): every
active device with what a visit would check, those that need one first.

A device needs a visit, worst first, when it is offline, when its newest
status raised an alarm, when it restarted for a reason other than power or
a deliberate reset (a watchdog or a crash: firmware to look at), when its
outbox is backing up (events not reaching the agent), when its free heap or
its Wi-Fi signal is low. Each reason is named, so the list says why.
"""

# Thresholds a technician would call a problem on an ESP32 at a hall window.
OUTBOX_BACKLOG = 100       # events waiting on the device: the link or the agent is not keeping up
LOW_HEAP = 8 * 1024        # bytes free: below this a long config or a TLS reconnect may fail
WEAK_RSSI = 80             # dBm as a positive number: weaker than -80 dBm drops packets
# Reset causes that are not a fault (SPEC 'status': the board's own words).
QUIET_RESETS = ("power_on", "deep_sleep", "intentional")   # soft: the firmware reset itself

# Reason -> weight: the sort key adds them, so an offline device with an alarm
# comes before one that is only offline.
_WEIGHT = {"offline": 100, "alarm": 50, "reset": 20, "outbox": 10, "heap": 5, "rssi": 2, "no_status": 1}


def visit_reasons(d):
    """Why device row `d` (from snapshot()['devices']) needs a visit, worst first."""
    h = d.get("health") or {}
    why = []
    if d.get("offline"):
        why.append("offline")
    if d.get("alarms"):
        why.append("alarm")
    if h.get("reset") and h["reset"] not in QUIET_RESETS:
        why.append("reset")
    if (d.get("outbox") or 0) >= OUTBOX_BACKLOG:
        why.append("outbox")
    if h.get("heap") is not None and h["heap"] < LOW_HEAP:
        why.append("heap")
    if h.get("rssi") is not None and h["rssi"] > WEAK_RSSI:
        why.append("rssi")
    if h.get("t") is None:
        why.append("no_status")
    return why


def fleet(snap):
    """{hall, now_ms, devices: [row]} with rows sorted by need of a visit,
    then by window and device."""
    rows = []
    for d in snap["devices"]:
        if d["status"] != "active":
            continue
        h = d.get("health") or {}
        why = visit_reasons(d)
        rows.append({
            "hall": snap["hall"], "device": d["device"], "window": d["window"],
            "fw": d.get("fw") or h.get("fw"), "online": d["online"],
            "last_seen_ms": max(x for x in (d.get("presence_ms"), d.get("last_event_ms"), 0) if x is not None),
            "outbox": d.get("outbox"), "reset": h.get("reset"), "heap": h.get("heap"), "rssi": h.get("rssi"),
            "uptime_s": h.get("uptime_s"), "alarms": d.get("alarms") or [], "visit": why,
        })
    rows.sort(key=visit_order)
    return {"hall": snap["hall"], "now_ms": snap["now_ms"], "devices": rows}


def visit_order(row):
    """Sort key of a fleet row: most need of a visit first, then hall, window, device."""
    return (-sum(_WEIGHT.get(w, 0) for w in row["visit"]), row["hall"], row["window"] or "", row["device"])
