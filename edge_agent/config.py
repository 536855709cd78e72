"""The agent's configuration: one TOML file, every key in the table below.

The table is the documentation: `config check` explains errors from it and
`deploy/edge-agent.example.toml` is generated from it (`edge-agent config
example`), so the three cannot drift apart.
"""
import difflib
import os
import tomllib
import urllib.parse

from protocol.errors import ProtocolError
from protocol.events import MAX_CONFIG, check_field
from protocol.rules import reason_categories, rule
from protocol.topics import valid_id
from edge_agent.errors import ConfigError

DEFAULT_PATH = os.environ.get("EDGE_AGENT_CONFIG", "/etc/qinglian/edge-agent.toml")

# (section, key, type, default, doc). Section "" is the top level.
# A default of None means "not set"; REQUIRED must be given.
REQUIRED = object()
KEYS = [
    ("", "hall", str, REQUIRED, "hall id, as in the MQTT topics (1-32 of A-Z a-z 0-9 - _)"),
    ("mqtt", "host", str, "127.0.0.1", "the hall's Mosquitto"),
    ("mqtt", "port", int, 1883, "its port (8883 with tls_ca)"),
    ("mqtt", "client_id", str, None, "fixed client id of the persistent session; default qinglian-agent-<hall> "
     "(the broker broker-config writes uses the username instead, so no device login can take it over)"),
    ("mqtt", "username", str, None, "the agent's broker user; unset = agent-<hall>, the user broker-config writes"),
    ("mqtt", "password", str, None, "its password"),
    ("mqtt", "tls_ca", str, None, "CA file: connect with TLS and check the broker against it"),
    ("mqtt", "keepalive_s", int, 30, "MQTT keepalive"),
    ("mqtt", "batch_max", int, 500, "group commit: at most this many messages per transaction"),
    ("mqtt", "batch_ms", int, 100, "group commit: wait at most this long to fill a batch"),
    ("mqtt", "beacon_s", int, 60, "time beacon to every device on its cmd topic every so often"),
    ("store", "path", str, "/var/lib/qinglian/agent.db", "the SQLite file (mode 0600)"),
    ("store", "disk_max_pct", float, 90.0, "above this disk use the agent stops acking new events (devices keep them)"),
    ("store", "retention_days", int, 30, "the uplink deletes events synced to the county and older than this; "
     "unsynced never; 0 keeps all"),
    ("uplink", "url", str, None, "county server base URL; unset = no uplink"),
    ("uplink", "token", str, None, "the hall's bearer token"),
    ("uplink", "batch_max_events", int, 500, "events per batch"),
    ("uplink", "batch_max_bytes", int, 262144, "bytes per batch (before gzip)"),
    ("uplink", "in_flight", int, 2, "batches at the county at once, each on its own connection; "
     "1 = send one and wait for its answer"),
    ("uplink", "interval_s", float, 2.0, "longest wait between looks when there is nothing to send "
     "(a commit of new events wakes it at once)"),
    ("uplink", "timeout_s", float, 10.0, "HTTP timeout"),
    ("uplink", "backoff_max_s", float, 60.0, "longest wait between retries"),
    ("uplink", "ca_file", str, None, "pin the county's CA"),
    ("uplink", "allow_plain_http", bool, False, "accept an http:// url (token and events cross the network readable); "
     "only for a county on this machine or a test"),
    ("uplink", "retry_invalid_s", int, 3600, "events the county called invalid are offered again after this"),
    ("uplink", "alarm_after_min", int, 30, "tower light goes red when the uplink fails longer than this"),
    ("http", "host", str, "127.0.0.1", "listen address of /healthz, /metrics, /api/hall"),
    ("http", "port", int, 8080, "listen port; 0 disables the HTTP server"),
    ("http", "token", str, None, "bearer token that POST /api/windows needs; unset = writes only from this machine"),
    ("http", "max_connections", int, 32, "open connections at most; more are answered 503 and closed"),
    ("http", "timeout_s", float, 10.0, "a request must arrive whole within this, or its connection is closed"),
    ("quarantine", "max_rows_per_device", int, 1000, "refused messages kept per registered device "
     "(and once more for all unregistered ids together); past it they are only counted"),
    ("quarantine", "max_bytes_per_device", int, 1048576, "bytes of refused messages kept per device, as above"),
    ("quarantine", "keep_days", int, 30, "refused messages not seen for this long are deleted; 0 keeps them"),
    ("light", "enabled", bool, False, "drive the tower light on the Pi's GPIO"),
    ("light", "pins", dict, {"green": 17, "yellow": 27, "red": 22, "buzzer": 23}, "BCM pin numbers"),
    ("light", "active_high", bool, True, "false for relay boards that switch on a low input (most Pi relay boards)"),
    ("kiosk", "cases_poll_s", float, 60.0, "ask the county for the hall's cases and 红黄牌 counts this often, "
     "with [uplink] url, token, ca_file and timeout_s (no [uplink] url: no cases, kiosks are told `offline`)"),
    ("kiosk", "cases_fresh_s", float, 300.0, "a case is answered while the county answered within this many "
     "seconds; after it a kiosk is told `offline` (never an old state as current); above cases_poll_s"),
    ("kiosk", "cases_keep_days", int, 30, "cases the county has not listed for this many days are dropped"),
    ("kiosk", "job_keep_s", int, 3600, "a print job's bytes are deleted this long after it was made "
     "(its id is never given out again)"),
    ("screen", "ratings_delay_min", int, 30, "the lobby screen's rating figures count only ratings at least this "
     "old, moving in steps of this many minutes, so that no one watching can tell how the citizen just served "
     "rated (rater confidentiality, GB/T 39734); 0 shows them live; at most 720"),
    ("queue", "timezone", str, "Asia/Shanghai", "the hall's time zone: ticket numbers start again at 1 each local day"),
    ("queue", "block_size", int, 50, "numbers a kiosk reserves per queue at a time, for tickets it hands out "
     "while it cannot ask the agent"),
    ("queue", "service_s", int, 300, "service time per ticket for the wait estimate, until the half hour's "
     "calls give a rate"),
    ("queue", "link_key", str, None, "the hall's key for signing ticket rating links (hex, the county's "
     "GET /v1/halls/<hall>/link-key); unset = fetched from the county when [uplink] url is set"),
    ("queue", "rate_base", str, None, "county base URL of the rating links; unset = the one the county names, "
     "or [uplink] url"),
    ("voice", "enabled", bool, False, "announce each call in the hall (needs audio: off on machines without)"),
    ("voice", "command", str, "espeak-ng -v cmn -s 150 --stdout", "text-to-speech command: the text as its "
     "last argument, a WAV on stdout"),
    ("voice", "player", str, "aplay -q", "plays a WAV file named after it"),
    ("voice", "chime", bool, True, "a two-note chime before each announcement"),
    ("voice", "repeat", int, 1, "times each call is said (1-3)"),
    ("devices", "offline_after_s", int, 120, "a device without presence this long counts as offline"),
    ("devices", "prompt_s", int, 30, "rating prompt timeout in seconds, sent in the device config: "
     + rule("config", "prompt_s")),
    ("devices", "warn_pct", int, 80, "yellow at this percentage of a service-time target: " + rule("config", "warn_pct")),
    ("devices", "targets", dict, {"default": 900}, "service-time targets by service item, 'default' for the rest: "
     + rule("config", "targets") + "; every device config holds them all, so a few dozen at most"),
    ("devices", "reasons", dict, {r["code"]: r["short"] for r in reason_categories()},
     "the reason screen after 不满意/非常不满意, in this order: category code = label on the terminal's display "
     "(1-6 characters); codes from the county's categories (protocol/reasons.json), at most 12; "
     "an empty table { } shows no reason screen"),
]

SECTIONS = list(dict.fromkeys(k[0] for k in KEYS if k[0]))


def _spec(section, key):
    for s in KEYS:
        if s[0] == section and s[1] == key:
            return s
    return None


def _where(section, key):
    return key if not section else "[%s] %s" % (section, key)


def _did_you_mean(word, choices):
    close = difflib.get_close_matches(word, choices, n=1)
    return " (did you mean %r?)" % close[0] if close else ""


def _type_name(t):
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false", dict: "a table"}[t]


def _check_value(section, key, typ, value):
    where = _where(section, key)
    if typ is float and type(value) is int:
        value = float(value)
    if type(value) is not typ:
        raise ConfigError("%s must be %s, not %r" % (where, _type_name(typ), value))
    if key == "port" and not 0 <= value <= 65535:
        raise ConfigError("%s must be a port number 0-65535, not %d" % (where, value))
    if key.endswith("_pct") and not 0 < value <= 100:
        raise ConfigError("%s must be a percentage between 0 and 100, not %s" % (where, value))
    if typ in (int, float) and key not in ("port",) and value < 0:
        raise ConfigError("%s must not be negative" % where)
    return value


def validate(raw):
    """Raw TOML dict -> complete config dict with defaults; ConfigError in plain words."""
    cfg = {s: {} for s in SECTIONS}
    top_keys = [k[1] for k in KEYS if not k[0]]
    for name, value in raw.items():
        if isinstance(value, dict) and name in SECTIONS:
            known = [k[1] for k in KEYS if k[0] == name]
            for key, v in value.items():
                spec = _spec(name, key)
                if spec is None:
                    raise ConfigError("unknown key %s%s" % (_where(name, key), _did_you_mean(key, known)))
                cfg[name][key] = _check_value(name, key, spec[2], v)
        elif _spec("", name):
            cfg[name] = _check_value("", name, _spec("", name)[2], value)
        else:
            kind = "section" if isinstance(value, dict) else "key"
            raise ConfigError("unknown %s %r%s" % (kind, name, _did_you_mean(name, SECTIONS + top_keys)))
    for section, key, typ, default, doc in KEYS:
        target = cfg if not section else cfg[section]
        if key not in target:
            if default is REQUIRED:
                raise ConfigError("%s is required: %s" % (_where(section, key), doc))
            target[key] = dict(default) if isinstance(default, dict) else default
    if not valid_id(cfg["hall"]):
        raise ConfigError("hall %r must be 1-32 characters of A-Z a-z 0-9 - _" % cfg["hall"])
    if not cfg["mqtt"]["client_id"]:
        cfg["mqtt"]["client_id"] = "qinglian-agent-" + cfg["hall"]
    if not cfg["mqtt"]["username"]:
        cfg["mqtt"]["username"] = agent_user(cfg["hall"])
    _check_devices(cfg["devices"])
    _check_queue(cfg["queue"], cfg["voice"])
    check_pins(cfg["light"]["pins"])
    if cfg["uplink"]["url"]:
        _check_uplink(cfg["uplink"])
    if cfg["http"]["max_connections"] < 1 or cfg["http"]["timeout_s"] <= 0:
        raise ConfigError("[http] max_connections and timeout_s must be above 0")
    if cfg["mqtt"]["batch_max"] < 1:
        raise ConfigError("[mqtt] batch_max must be at least 1")
    check_kiosk(cfg["kiosk"])
    if cfg["screen"]["ratings_delay_min"] > 720:
        raise ConfigError("[screen] ratings_delay_min must be 0-720 minutes, not %d" % cfg["screen"]["ratings_delay_min"])
    return cfg


def check_kiosk(k):
    if not k["cases_poll_s"] > 0:
        raise ConfigError("[kiosk] cases_poll_s must be above 0")
    if not k["cases_fresh_s"] > k["cases_poll_s"]:
        raise ConfigError("[kiosk] cases_fresh_s (%s) must be above cases_poll_s (%s): otherwise every case "
                          "goes stale between two polls" % (k["cases_fresh_s"], k["cases_poll_s"]))
    if k["cases_keep_days"] < 1 or k["job_keep_s"] < 60:
        raise ConfigError("[kiosk] cases_keep_days must be at least 1 and job_keep_s at least 60")
    return k


def section(name, given=None):
    """One section's table: `given` (a partial table, as a test or a bench
    passes it) checked like the file's, the rest from the defaults."""
    known = [k[1] for k in KEYS if k[0] == name]
    out = {}
    for key, v in (given or {}).items():
        spec = _spec(name, key)
        if spec is None:
            raise ConfigError("unknown key %s%s" % (_where(name, key), _did_you_mean(key, known)))
        if v is not None:
            out[key] = _check_value(name, key, spec[2], v)
    for s, key, typ, default, doc in KEYS:
        if s == name and key not in out:
            out[key] = dict(default) if isinstance(default, dict) else default
    return out


def uplink(given):
    """The [uplink] table the uplink runs with, defaults filled in and checked."""
    up = section("uplink", given)
    _check_uplink(up)
    return up


def _check_uplink(up):
    if not up["token"]:
        raise ConfigError("[uplink] token is required when [uplink] url is set (the hall's bearer token "
                          "at the county)")
    url = up["url"] or ""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("[uplink] url must be https://host[:port][/path], not %r" % url)
    if parts.scheme == "http" and up["allow_plain_http"] is not True:
        raise ConfigError("[uplink] url %s is plain http: the hall's token and events would cross the network "
                          "readable; use https://, or set [uplink] allow_plain_http = true for a county on "
                          "this machine or a test" % url)
    for k in ("batch_max_events", "batch_max_bytes", "interval_s", "timeout_s", "backoff_max_s"):
        if not up[k] or up[k] <= 0:
            raise ConfigError("[uplink] %s must be a positive number, not %r" % (k, up[k]))
    if not 1 <= up["in_flight"] <= 16:
        raise ConfigError("[uplink] in_flight must be 1-16 batches, not %r" % up["in_flight"])
    if up["ca_file"] and parts.scheme != "https":
        raise ConfigError("[uplink] ca_file pins a CA for HTTPS, but the url is %s" % parts.scheme)


LAMPS = ("green", "yellow", "red")


def check_pins(pins):
    """[light] pins as the circuit allows them: the three lamps and an
    optional buzzer, each on its own BCM pin."""
    if not isinstance(pins, dict):
        raise ConfigError("[light] pins must be a table of lamp name -> BCM pin number")
    names = list(LAMPS) + ["buzzer"]
    seen = {}
    for name, pin in pins.items():
        if name not in names:
            raise ConfigError("[light] pins.%s: the tower light has %s and an optional buzzer%s"
                              % (name, ", ".join(LAMPS), _did_you_mean(name, names)))
        if type(pin) is not int or not 0 <= pin <= 27:
            raise ConfigError("[light] pins.%s must be a BCM pin number 0-27, not %r" % (name, pin))
        if pin in seen:
            raise ConfigError("[light] pins: %s and %s are both on pin %d" % (seen[pin], name, pin))
        seen[pin] = name
    missing = [lamp for lamp in LAMPS if lamp not in pins]
    if missing:
        raise ConfigError("[light] pins missing for %s" % ", ".join(missing))
    return pins


def _check_queue(q, voice):
    import zoneinfo
    try:
        zoneinfo.ZoneInfo(q["timezone"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError("[queue] timezone %r: not a time zone this machine knows (e.g. Asia/Shanghai)"
                          % q["timezone"])
    if not 1 <= q["block_size"] <= 999:
        raise ConfigError("[queue] block_size must be 1-999 numbers, not %r" % q["block_size"])
    if not 1 <= q["service_s"] <= 86400:
        raise ConfigError("[queue] service_s must be 1-86400 seconds, not %r" % q["service_s"])
    if q["link_key"] is not None:
        try:
            if len(bytes.fromhex(q["link_key"])) != 32:
                raise ValueError
        except ValueError:
            raise ConfigError("[queue] link_key must be 32 bytes as 64 hex digits")
    if q["rate_base"] is not None:
        parts = urllib.parse.urlsplit(q["rate_base"])
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("[queue] rate_base must be https://host[:port][/path], not %r" % q["rate_base"])
    if not 1 <= voice["repeat"] <= 3:
        raise ConfigError("[voice] repeat must be 1-3, not %r" % voice["repeat"])
    for k in ("command", "player"):
        if not voice[k].split():
            raise ConfigError("[voice] %s must name a program" % k)


def agent_user(hall):
    """The agent's broker user: what `broker-config` writes and the agent logs in as."""
    return "agent-" + hall


def _check_devices(dev):
    """[devices]: what goes into every device config, by the protocol's rules."""
    for key in ("prompt_s", "warn_pct"):
        try:
            check_field("config", key, dev[key])
        except ProtocolError:
            raise ConfigError("[devices] %s must be %s, not %r" % (key, rule("config", key), dev[key]))
    for name, t in dev["targets"].items():
        try:
            check_field("config", "targets", {name: t})
        except ProtocolError:
            raise ConfigError("[devices] targets.%s: %s" % (repr(name)[1:-1], rule("config", "targets")))
    from edge_agent.registry import largest_config, reason_choices
    reasons = dev["reasons"]
    known = [r["code"] for r in reason_categories()]
    for code, label in reasons.items():
        if code not in known:
            raise ConfigError("[devices] reasons: %r is not a reason category (%s)%s"
                              % (code, ", ".join(known), _did_you_mean(code, known)))
        if type(label) is not str:
            raise ConfigError("[devices] reasons.%s must be text, not %r" % (code, label))
    try:
        check_field("config", "reasons", reason_choices(reasons))
    except ProtocolError:
        raise ConfigError("[devices] reasons: " + rule("config", "reasons"))
    size = largest_config(dev)
    if size > MAX_CONFIG:
        raise ConfigError("[devices] targets: with these %d targets a device config can reach %d bytes, over the "
                          "%d a device takes; keep fewer item targets" % (len(dev["targets"]), size, MAX_CONFIG))


def load(path):
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("config file %s not found" % path)
    except OSError as e:
        raise ConfigError("cannot read %s: %s" % (path, e.strerror))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("%s is not valid TOML: %s" % (path, e))
    return validate(raw)


# Keys whose values let someone pose as the agent, the hall or the manager.
SECRETS = (("mqtt", "password"), ("uplink", "token"), ("http", "token"), ("queue", "link_key"))


def exposed_secrets(path, cfg):
    """The secret keys set in `cfg` when its file at `path` is readable by
    group or others; [] when none or the file is private."""
    held = [_where(s, k) for s, k in SECRETS if cfg[s][k]]
    try:
        if not held or not os.stat(path).st_mode & 0o077:
            return []
    except OSError:
        return []
    return held


def write_private(path, text):
    """Write a config file only its owner can read (0600), whole or not at
    all: it may hold the broker password and the hall's tokens."""
    path = os.path.abspath(path)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _toml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{ " + ", ".join("%s = %s" % (k, _toml(v)) for k, v in value.items()) + " }"
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def example():
    """The documented example config: every key with its default."""
    out = ["# Qinglian edge agent configuration (generated by `edge-agent config example`).",
           "# Every key is shown with its default; keys commented out are unset by default.", ""]
    for section in [""] + SECTIONS:
        if section:
            out += ["", "[%s]" % section]
        for s, key, typ, default, doc in KEYS:
            if s != section:
                continue
            out.append("# %s" % doc)
            if default is REQUIRED:
                out.append('%s = "hall-01"' % key)
            elif default is None:
                out.append("# %s = " % key)
            else:
                out.append("%s = %s" % (key, _toml(default)))
    return "\n".join(out) + "\n"
