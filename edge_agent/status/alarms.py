"""What is wrong in the hall, in words and as the tower light's state:
the worst of every window and of the agent itself, from a snapshot."""

LIGHT_ORDER = ("ok", "warn", "alarm")

# Device alarms (protocol/SPEC.md, status): the tower light's level and the words
# for each. A full outbox means ratings are being refused; a config the device cannot
# use means ratings go without the staff (or are refused) until someone fixes it; a
# name this agent does not know yet is a fault to look at.
# A kiosk's printer (its `printer` events): out of paper or offline, citizens
# cannot print at all; low paper or an open cover wants a hand soon.
DEVICE_ALARMS = {"outbox_full": ("alarm", "outbox full"), "display": ("warn", "display fault"),
                 "config": ("alarm", "config error"),
                 "paper_low": ("warn", "printer paper low"), "paper_out": ("alarm", "printer out of paper"),
                 "cover_open": ("warn", "printer cover open"), "printer_offline": ("alarm", "printer offline")}


def device_alarm(name):
    return DEVICE_ALARMS.get(name, ("warn", name))


def hall_state(snap, screen, cfg):
    """The tower light: the worst of every window and of the agent itself.
    alarm: disk guard up, uplink failing too long, a device's outbox full
    (it refuses ratings), a kiosk's printer out of paper or offline, a
    service over its target; warn: a device offline, another device alarm
    (a dead display, low paper), a service past warn_pct of its target."""
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
