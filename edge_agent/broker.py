"""`edge-agent broker-config`: the hall's Mosquitto config, password file and ACL.

Each device logs in as its device id (password: registry.mqtt_password(key))
and may publish only its own events and status and read only its own ack,
config and cmd. Only the agent's user reads everything and writes ack,
config and cmd. Retired devices get no login.
"""
import grp
import os
import subprocess
import shutil

from protocol import topics
from edge_agent import registry
from edge_agent.config import agent_user
from edge_agent.errors import AgentError

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
USERNAME_AS_CLIENTID = "use_username_as_clientid true"


def conf_text(out_dir, listen="0.0.0.0", port=1883, tls=None, data_dir="/var/lib/mosquitto", drop_in=False):
    """mosquitto.conf. `tls` = {"cert", "key", "ca" (optional), "port", "listen"} adds a TLS listener.
    `drop_in`: for /etc/mosquitto/conf.d/ under Debian's mosquitto.conf (the Debian package's),
    which sets the persistence directory and the log already: Mosquitto refuses a second
    persistence_location, and a second log destination would log everything twice."""
    lines = [
        "# Qinglian hall broker, written by `edge-agent broker-config`. Reload: systemctl reload mosquitto",
        "per_listener_settings false",
        "allow_anonymous false",
        "password_file %s" % os.path.join(out_dir, "passwd"),
        "acl_file %s" % os.path.join(out_dir, "acl"),
        "",
        "# Persistence: QoS 1 messages queued for the agent survive a broker restart.",
        "persistence true",
    ] + ([] if drop_in else ["persistence_location %s/" % data_dir.rstrip("/")]) + [
        "autosave_interval 1",
        "",
        "# Limits are part of correctness. What waits for the agent while it is away is",
        "# bounded in bytes, so a long outage cannot fill the Pi's disk or memory (devices",
        "# resend their unacked outbox). Past the bound the broker drops, and nothing is",
        "# lost: a device deletes an event only on the agent's ack after commit and sends",
        "# again what stays unacked (protocol SPEC, delivery semantics). No count limit",
        "# (Debian has 1000): events are at most 1024 bytes, so the bytes bound it. 64 MiB:",
        "# some hundred thousand events, a small part of a Pi's memory and SD card.",
        "max_queued_messages 0",
        "max_queued_bytes 67108864",
        "# Messages in flight to one client before its PUBACKs: the agent's group-commit",
        "# batch size. Larger = fewer commits; each device only ever sees a few.",
        "max_inflight_messages 200",
        "# Events are at most 1024 bytes; bigger payloads still reach the agent's",
        "# quarantine (too_large), anything past this is refused at the door.",
        "max_packet_size 16384",
        "# A device's request and the agent's reply are small packets that follow others:",
        "# with Nagle on each waited ~40 ms for a delayed ACK (bench.queue_requests: a",
        "# ticket 47 ms -> 3 ms).",
        "set_tcp_nodelay true",
        "",
        "# Devices and the agent. On every listener, a client's id is its username: a",
        "# login that connects with the agent's client id (or another device's) gets its",
        "# own instead of disconnecting the holder; the agent's persistent session lives",
        "# under agent-<hall>. Read at a broker restart, not a reload.",
        "listener %d %s" % (port, listen),
        # A listener setting: above the first listener it would open another on 1883.
        USERNAME_AS_CLIENTID,
    ]
    if tls:
        lines += ["", "# TLS for devices on the hall network.",
                  "listener %d %s" % (tls["port"], tls.get("listen") or listen), USERNAME_AS_CLIENTID,
                  "certfile %s" % os.path.abspath(tls["cert"]),
                  "keyfile %s" % os.path.abspath(tls["key"])]
        if tls.get("ca"):
            lines.append("cafile %s" % os.path.abspath(tls["ca"]))
    if not drop_in:
        lines += ["", "log_dest stdout", "log_type error", "log_type warning", "log_type notice"]
    return "\n".join(lines + [""])


def acl_text(hall, devices):
    root = topics.ROOT + "/" + hall
    out = ["# Written by `edge-agent broker-config`; one block per active device.",
           "user %s" % agent_user(hall),
           "topic read %s/+/%s" % (root, topics.EVENTS),
           "topic read %s/+/%s" % (root, topics.STATUS),
           "topic read %s/+/%s" % (root, topics.REQ),
           "topic write %s/+/%s" % (root, topics.ACK),
           "topic write %s/+/%s" % (root, topics.CONFIG),
           "topic write %s/+/%s" % (root, topics.CMD), ""]
    for d in devices:
        t = lambda ch: topics.topic(hall, d, ch)  # noqa: E731
        out += ["user %s" % d,
                "topic write %s" % t(topics.EVENTS),
                "topic write %s" % t(topics.STATUS),
                "topic write %s" % t(topics.REQ),
                "topic read %s" % t(topics.ACK),
                "topic read %s" % t(topics.CONFIG),
                "topic read %s" % t(topics.CMD), ""]
    return "\n".join(out)


def write(store, cfg, out_dir, listen="0.0.0.0", port=None, tls=None, data_dir="/var/lib/mosquitto"):
    """Write mosquitto.conf, passwd (hashed by mosquitto_passwd) and acl; return their paths."""
    hall = cfg["hall"]
    if tls and not (tls.get("cert") and tls.get("key")):
        raise AgentError("--tls-cert and --tls-key go together")
    if not cfg["mqtt"]["password"]:
        raise AgentError("[mqtt] password is not set: the agent needs one to log in to the broker")
    if cfg["mqtt"]["username"] != agent_user(hall):
        raise AgentError("[mqtt] username must be %r (or unset) for the ACL to match" % agent_user(hall))
    devices = [d for d in store.devices.all() if d["status"] == "active"]
    if any(d["device"] == agent_user(hall) for d in devices):
        raise AgentError("a device is named like the agent's user %r" % agent_user(hall))
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {n: os.path.join(out_dir, n) for n in ("mosquitto.conf", "passwd", "acl")}
    with open(paths["mosquitto.conf"], "w") as f:
        f.write(conf_text(out_dir, listen, port or cfg["mqtt"]["port"], tls, data_dir))
    with open(paths["acl"], "w") as f:
        f.write(acl_text(hall, [d["device"] for d in devices]))
    fd = os.open(paths["passwd"] + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("%s:%s\n" % (agent_user(hall), cfg["mqtt"]["password"]))
        for d in devices:
            f.write("%s:%s\n" % (d["device"], registry.mqtt_password(bytes.fromhex(d["key_hex"]))))
    try:
        subprocess.run([MOSQUITTO_PASSWD, "-U", paths["passwd"] + ".new"], check=True,
                       capture_output=True, text=True)
    except FileNotFoundError:
        raise AgentError("mosquitto_passwd not found: apt-get install mosquitto")
    except subprocess.CalledProcessError as e:
        raise AgentError("mosquitto_passwd failed: %s" % (e.stderr.strip() or e.returncode))
    _readable_by_broker(paths["passwd"] + ".new")
    os.replace(paths["passwd"] + ".new", paths["passwd"])
    return paths


def _readable_by_broker(path):
    # Mosquitto reads the password file after dropping to its own user: give
    # that group read access, nobody else.
    try:
        gid = grp.getgrnam("mosquitto").gr_gid
        os.chown(path, -1, gid)
        os.chmod(path, 0o640)
    except (KeyError, PermissionError):
        pass
