"""A snapshot as text: `edge-agent status` for a person, /metrics for
Prometheus. (As JSON it is the snapshot itself: edge_agent/terminal.dumps.)"""
from edge_agent.status.alarms import device_alarm
from edge_agent.terminal import printable


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
    c = snap["cases"]
    m("cases_cached", "gauge", "The county's cases of this hall cached for the kiosks.", [("", c["cached"])])
    m("cases_fresh", "gauge", "1 while kiosks get case answers; 0: the county has not answered within "
      "[kiosk] cases_fresh_s and kiosks are told offline.", [("", int(c["fresh"]))])
    if c["as_of_ms"]:
        m("cases_age_seconds", "gauge", "Since the county last answered for the case cache.",
          [("", round((snap["now_ms"] - c["as_of_ms"]) / 1000.0, 1))])
    if c["cards"]:
        m("case_cards", "gauge", "Today's open cases by timeliness light (红黄牌), as the county counts them.",
          [('{light="%s"}' % light, c["cards"][light]) for light in ("green", "yellow", "red")])
    qs = (snap.get("queues") or {}).get("queues") or []
    if qs:
        m("queue_waiting", "gauge", "Tickets waiting in a queue today.", [('{queue="%s"}' % q["queue"], q["waiting"])
                                                                          for q in qs])
        m("queue_wait_estimate_seconds", "gauge", "The wait a new ticket of the queue is told.",
          [('{queue="%s"}' % q["queue"], q["wait_s"]) for q in qs])
        m("queue_no_shows_today", "gauge", "Tickets marked 过号 today.",
          [('{queue="%s"}' % q["queue"], q["no_show_today"]) for q in qs])
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
    c = snap["cases"]
    if c["as_of_ms"]:
        out.append("cases: %d cached, county answered %.0fs ago%s" % (
            c["cached"], (snap["now_ms"] - c["as_of_ms"]) / 1000.0, "" if c["fresh"] else " (STALE: kiosks told offline)"))
    elif c["polled"]:
        out.append("cases: the county has not answered yet (kiosks told offline)")
    if c["cards"]:
        out.append("cards today: green %d, yellow %d, red %d" % (c["cards"]["green"], c["cards"]["yellow"],
                                                                c["cards"]["red"]))
    qs = (snap.get("queues") or {}).get("queues") or []
    out.append("queues:" if qs else "queues: none")
    for q in qs:
        out.append("  %s %s (windows %s): %d waiting, about %ds; today %d called, %d no-show" % (
            q["queue"], q["name"], ",".join(q["windows"]) or "-", q["waiting"], q["wait_s"], q["called_today"],
            q["no_show_today"]))
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
