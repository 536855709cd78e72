"""`edge-agent`: the commands, as a table (edge_agent/cmdline.py). Each has
--help; a failure is one line on stderr, "edge-agent: error: ...", exit 1.
`--config PATH` works before or after the command (default
$EDGE_AGENT_CONFIG or /etc/qinglian/edge-agent.toml)."""
import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import urllib.request

from protocol.events import MAX_TARGET_S
from protocol.rules import rule
from edge_agent import cmdline, config as config_mod
from edge_agent.cmdline import Command
from edge_agent.errors import AgentError
from edge_agent.terminal import dumps, printable

PROG = "edge-agent"


def _store(cfg):
    from edge_agent.store import Store
    return Store(cfg["store"]["path"])


def cmd_run(args, cfg):
    from edge_agent.agent import Agent
    _setup_logging(args.verbose)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Agent(cfg).run(stop)


def cmd_config_check(args, cfg):
    for where, path in (("[mqtt] tls_ca", cfg["mqtt"]["tls_ca"]), ("[uplink] ca_file", cfg["uplink"]["ca_file"])):
        if path and not os.path.isfile(path):
            raise AgentError("%s: no such file %s" % (where, path))
    store_dir = os.path.dirname(os.path.abspath(cfg["store"]["path"]))
    parent = store_dir
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK):
        raise AgentError("[store] path: cannot write in %s (the agent's user needs it)" % parent)
    exposed = config_mod.exposed_secrets(args.config_path, cfg)
    if exposed:
        print("%s: warning: %s holds %s and others on this machine can read it; run: chmod 600 %s"
              % (PROG, args.config_path, ", ".join(exposed), args.config_path), file=sys.stderr)
    print("%s: ok (hall %s, store %s, broker %s:%d, uplink %s)" % (
        args.config_path, cfg["hall"], cfg["store"]["path"], cfg["mqtt"]["host"], cfg["mqtt"]["port"],
        cfg["uplink"]["url"] or "off"))


def cmd_config_example(args, cfg):
    if not args.out:
        sys.stdout.write(config_mod.example())
        return
    if os.path.exists(args.out):
        raise AgentError("%s exists; not overwriting a config (remove it first)" % args.out)
    config_mod.write_private(args.out, config_mod.example())
    print("wrote %s (mode 0600: fill in the hall, then the passwords and tokens)" % args.out)


def cmd_devices_add(args, cfg):
    from edge_agent import registry
    key = registry.add(_store(cfg), cfg["hall"], args.device, args.window, args.key)
    print("added %s at window %s" % (args.device, args.window))
    print("key %s (fingerprint %s)" % (key, registry.key_fingerprint(key)))
    print("mqtt user %s password %s" % (args.device, registry.mqtt_password(bytes.fromhex(key))))


def cmd_devices_list(args, cfg):
    rows = _store(cfg).devices.all()
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "key_hex"} for r in rows], indent=1))
        return
    # alarm: as the device's newest status reported it (protocol/SPEC.md, status).
    print("%-20s %-8s %-8s %-7s %8s  %-20s %s" % ("device", "window", "status", "online", "hwm", "alarm", "fw"))
    for r in rows:  # fw and alarm are what a device sent: escaped (edge_agent/terminal.py)
        print(printable("%-20s %-8s %-8s %-7s %8d  %-20s %s" % (
            r["device"], r["window"] or "-", r["status"], "yes" if r["online"] else "no", r["hwm"],
            r["health_alarm"] or "-", r["fw"] or "-")))


def cmd_devices_show(args, cfg):
    from edge_agent import registry
    store = _store(cfg)
    d = registry.must_get(store, args.device)
    d["hwm"] = registry.hwm(store, args.device)
    d["key_fingerprint"] = registry.key_fingerprint(d["key_hex"])  # as `hallctl info` shows it
    if not args.show_key:
        d["key_hex"] = "(hidden; --show-key)"
    for k, v in d.items():
        print(printable("%-14s %s" % (k, v)))


def cmd_devices_retire(args, cfg):
    from edge_agent import registry
    registry.retire(_store(cfg), args.device)
    print("retired %s (run broker-config again to remove its broker login)" % args.device)


def cmd_devices_replace(args, cfg):
    from edge_agent import registry
    key, mark = registry.replace(_store(cfg), cfg["hall"], args.old, args.new, args.key)
    print("%s replaces %s; its seq continues above %d" % (args.new, args.old, mark))
    print("key %s (fingerprint %s)" % (key, registry.key_fingerprint(key)))
    print("mqtt user %s password %s" % (args.new, registry.mqtt_password(bytes.fromhex(key))))


def cmd_window_set(args, cfg):
    from edge_agent import registry
    window, staff, staff_no, target_s = registry.set_window(_store(cfg), args.window, args.staff, args.staff_no,
                                                            args.target_s)
    print("window %s: %s (%s)%s" % (window, staff or "-", staff_no or "-",
                                   ", target %ds" % target_s if target_s else ""))


def cmd_queue_add(args, cfg):
    from edge_agent import queues
    from edge_agent.store import now_ms
    q, name = queues.add(_store(cfg), args.queue, args.name, now_ms())
    print("queue %s: %s (tickets %s001, %s002, ...; `queue serve` names the windows calling it)" % (q, name, q, q))


def cmd_queue_rename(args, cfg):
    from edge_agent import queues
    q, name = queues.rename(_store(cfg), args.queue, args.name)
    print("queue %s: %s" % (q, name))


def cmd_queue_serve(args, cfg):
    from edge_agent import queues
    window, served = queues.serve(_store(cfg), args.window, args.queues)
    print("window %s calls from %s" % (window, ", ".join(served) if served else "no queue"))


def cmd_queue_appoint(args, cfg):
    import datetime
    from edge_agent import queues
    from edge_agent.store import now_ms
    try:
        at = datetime.datetime.strptime(args.at, "%Y-%m-%d %H:%M").replace(tzinfo=queues.tz(cfg))
    except ValueError:
        raise queues.QueueError("--at %r: the slot's start as YYYY-MM-DD HH:MM, hall time" % args.at)
    code, q = queues.appoint(_store(cfg), args.code, args.queue, int(at.timestamp() * 1000), args.minutes, now_ms(),
                             args.item, args.case)
    print("appointment %s: queue %s, %s for %d minutes" % (code, q, args.at, args.minutes))


def cmd_queue_list(args, cfg):
    from edge_agent import queues
    from edge_agent.store import now_ms
    summary = queues.summary(_store(cfg), cfg, now_ms())
    if args.json:
        print(dumps(summary, indent=1))
        return
    print("%-5s %-16s %-20s %7s %8s %6s %7s" % ("queue", "name", "windows", "waiting", "wait", "called", "no-show"))
    for q in summary["queues"]:
        print(printable("%-5s %-16s %-20s %7d %7ds %6d %7d" % (
            q["queue"], q["name"], ",".join(q["windows"]) or "-", q["waiting"], q["wait_s"], q["called_today"],
            q["no_show_today"])))
    if not summary["queues"]:
        print("no queues (edge-agent queue add A 综合受理)")


def cmd_quarantine_list(args, cfg):
    rows = _store(cfg).quarantine.newest(args.reason, args.limit)
    for qid, first, last, repeats, reason, detail, topic, payload in rows:
        # Anyone on the broker chose these bytes: escaped, never raw to the terminal.
        text = printable(bytes(payload[:120]).decode("utf-8", "replace"))
        print("#%d %s x%d %s %s%s\n    %s" % (qid, reason, repeats, printable(topic), printable(detail or ""),
                                          "" if repeats == 1 else " (last %s)" % last, text))
    if not rows:
        print("quarantine is empty" if not args.reason else "nothing quarantined as %s" % args.reason)


def cmd_broker_config(args, cfg):
    from edge_agent import broker
    tls = None
    if args.tls_cert or args.tls_key:
        tls = {"cert": args.tls_cert, "key": args.tls_key, "ca": args.tls_ca, "port": args.tls_port}
    paths = broker.write(_store(cfg), cfg, args.out, args.listen, args.port, tls, args.data_dir)
    for p in paths.values():
        print("wrote %s" % p)


def cmd_status(args, cfg):
    from edge_agent import status
    snap = None
    if cfg["http"]["port"]:
        host = cfg["http"]["host"] if cfg["http"]["host"] not in ("0.0.0.0", "::") else "127.0.0.1"
        try:
            with urllib.request.urlopen("http://%s:%d/api/status" % (host, cfg["http"]["port"]), timeout=3) as r:
                snap = json.load(r)
        except (OSError, ValueError):
            snap = None
    if snap is None:
        if not os.path.exists(cfg["store"]["path"]):
            raise AgentError("no store at %s and no agent answering on HTTP" % cfg["store"]["path"])
        snap = status.snapshot(_store(cfg), cfg)
    if args.json:
        print(dumps(snap, indent=1))
    else:
        print(status.human(snap))


def _setup_logging(verbose):
    # Under journald: no timestamps (the journal has them), and a <N> priority
    # prefix so `journalctl -p warning` works.
    if os.environ.get("JOURNAL_STREAM"):
        class Prio(logging.Formatter):
            def format(self, record):
                prio = {50: 2, 40: 3, 30: 4, 20: 6, 10: 7}.get(record.levelno, 6)
                return "<%d>%s" % (prio, super().format(record))
        fmt = Prio("%(name)s: %(message)s")
    else:
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(fmt)
    root = logging.getLogger()
    root.handlers[:] = [h]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("edge_agent.http").setLevel(logging.INFO)


# The table of commands (edge_agent/cmdline.py).
COMMANDS = [Command(*c) for c in [
    (("run",), cmd_run, "run the agent in the foreground (systemd runs this)",
     [(("-v", "--verbose"), dict(action="store_true", help="debug logging"))]),
    (("config", "check"), cmd_config_check, "validate the config file and explain what is wrong", []),
    (("config", "example"), cmd_config_example, "print an example config with every key and its default", [
        (("--out",), dict(help="write it to this new file, readable only by you (0600), instead"))]),
    (("devices", "add"), cmd_devices_add, "register a device at a window; prints its key", [
        (("device",), dict(help="device id, as in its topics")),
        (("--window",), dict(required=True, help="window it serves, e.g. A03")),
        (("--key",), dict(help="32-byte key as hex (default: a new random one)"))]),
    (("devices", "list"), cmd_devices_list, "list devices with window, status, presence, alarms",
     [(("--json",), dict(action="store_true", help="JSON output"))]),
    (("devices", "show"), cmd_devices_show, "show one device", [
        (("device",), dict(help="device id")),
        (("--show-key",), dict(action="store_true", help="print its key too"))]),
    (("devices", "retire"), cmd_devices_retire, "retire a device: its events are refused from now on",
     [(("device",), dict(help="device id"))]),
    (("devices", "replace"), cmd_devices_replace,
     "a new device takes over an old one's window and seq high-water mark", [
        (("old",), dict(help="device being replaced")),
        (("new",), dict(help="new device id")),
        (("--key",), dict(help="the new device's key as hex (default: a new random one)"))]),
    (("quarantine", "list"), cmd_quarantine_list, "show refused messages, newest first, with their reason", [
        (("--reason",), dict(help="only this reason (bad_mac, conflict, unknown_device, ...)")),
        (("--limit",), dict(type=int, default=20, help="how many (20)"))]),
    (("window", "set"), cmd_window_set, "set the staff on duty and service target of a window", [
        (("window",), dict(help="window id")),
        (("--staff",), dict(help="name shown on the evaluator and sent in its events: %s; surrounding spaces "
                                 "and tabs are removed first; \"\" = nobody" % rule("rating", "staff"))),
        (("--staff-no",), dict(help="staff number (经办人编号), the same rules; sent instead of the name when set")),
        (("--target-s",), dict(type=int, help="service-time target in seconds, 1-%d" % MAX_TARGET_S))]),
    (("queue", "add"), cmd_queue_add, "add a queue: its letter starts its tickets (A012)", [
        (("queue",), dict(help="one letter A-Z")),
        (("name",), dict(help="its name on the kiosk and the lobby screen, e.g. 综合受理: %s"
                              % rule("ticket", "queue")))]),
    (("queue", "rename"), cmd_queue_rename, "change a queue's name", [
        (("queue",), dict(help="its letter")), (("name",), dict(help="the new name"))]),
    (("queue", "serve"), cmd_queue_serve, "set the queues a window calls from (none: it calls no more)", [
        (("window",), dict(help="window id")),
        (("queues",), dict(nargs="*", help="queue letters, e.g. A B"))]),
    (("queue", "appoint"), cmd_queue_appoint, "add an appointment (预约): its code gets a ticket at the kiosk", [
        (("code",), dict(help="the appointment's code, as the citizen brings it")),
        (("--queue",), dict(required=True, help="queue letter")),
        (("--at",), dict(required=True, help="slot start, YYYY-MM-DD HH:MM in the hall's time zone")),
        (("--minutes",), dict(type=int, default=30, help="slot length (30)")),
        (("--item",), dict(help="事项编码 the appointment is for: the call gives it to the window's evaluator, "
                                "its session and rating carry it")),
        (("--case",), dict(help="办件编号 the appointment is for, as --item"))]),
    (("queue", "list"), cmd_queue_list, "queues, their windows, and today's waiting, calls and no-shows",
     [(("--json",), dict(action="store_true", help="JSON output"))]),
    (("broker-config",), cmd_broker_config, "write mosquitto.conf, password file and ACL", [
        (("--out",), dict(required=True, help="directory to write into")),
        (("--listen",), dict(default="0.0.0.0", help="address devices reach the broker on (0.0.0.0)")),
        (("--port",), dict(type=int, help="plain MQTT port (default: [mqtt] port)")),
        (("--tls-cert",), dict(help="server certificate: adds a TLS listener")),
        (("--tls-key",), dict(help="its private key")),
        (("--tls-ca",), dict(help="CA for client certificates (optional)")),
        (("--tls-port",), dict(type=int, default=8883, help="TLS listener port (8883)")),
        (("--data-dir",), dict(default="/var/lib/mosquitto",
                               help="broker persistence directory, writable by the mosquitto user"))]),
    (("status",), cmd_status, "the hall's numbers: events, quarantine, uplink, devices",
     [(("--json",), dict(action="store_true", help="JSON output"))]),
]]


GROUPS = {"config": "check the config file, or print an example",
          "devices": "the device registry: keys, windows, replacement",
          "quarantine": "messages the agent refused, with their reason",
          "queue": "queues (排队叫号): letters, names, the windows calling them, appointments",
          "window": "staff on duty and service targets per window"}


def parser():
    top = cmdline.parser(PROG, "Qinglian edge agent: device events in over MQTT, kept in SQLite, sent on to the "
                         "county. `edge-agent COMMAND --help` for each command.", COMMANDS, GROUPS,
                         common=[(("--config",), dict(default=argparse.SUPPRESS, help="config file"))])
    top.add_argument("--config", help="config file (default %s)" % config_mod.DEFAULT_PATH)
    return top


def _call(args):
    args.config_path = args.config or config_mod.DEFAULT_PATH
    cfg = None if args.fn is cmd_config_example else config_mod.load(args.config_path)
    return args.fn(args, cfg)


def main(argv=None):
    return cmdline.run(PROG, parser(), argv, (AgentError, OSError, sqlite3.Error), _call)


if __name__ == "__main__":
    sys.exit(main())
