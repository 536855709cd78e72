"""`hallctl info`: what is on a board, read over its serial port.

One program runs on the board and answers in JSON with what may leave it:
the site's names and a key fingerprint (first 8 hex of sha256 of the key's
bytes), never the key or a password. The firmware version comes from the
manifest `install` and `update` write (bundle.MANIFEST), each listed file
checked against its sha256 on the board. Nothing on the board is written.
"""
import json

from tools.hallctl.bundle import MANIFEST
from tools.hallctl.device import HallctlError

# Runs on the board; prints one JSON line.
_PROBE = r"""
def _ql_info():
    import os, sys, json, binascii, hashlib

    def load(path):  # None: not there; False: damaged
        try:
            f = open(path)
        except OSError:
            return None
        with f:
            try:
                v = json.load(f)
            except ValueError:
                v = None
        return v if type(v) is dict else False

    def outbox(segment_bytes, max_segments):
        try:
            names = [n for n in os.listdir('outbox') if n.endswith('.seg')]
        except OSError:
            return None
        r = {'segments': len(names), 'bytes': sum(os.stat('outbox/' + n)[6] for n in names),
             'events': None}
        try:
            from outbox import Outbox
        except Exception:  # none on the board, or a broken one: count files only
            return r
        try:
            # The firmware's own reader, so the record format lives in one place;
            # readonly: nothing written or tidied on a board just stopped for the REPL.
            r['events'] = Outbox('outbox', segment_bytes, max_segments, readonly=True).depth()
        except Exception:
            pass  # an older outbox.py without readonly: the file count still helps
        return r

    try:
        machine = os.uname().machine
    except AttributeError:  # the unix port (a virtual board)
        machine = getattr(sys.implementation, '_machine', sys.platform)
    v = sys.implementation.version
    r = {'micropython': '%d.%d.%d' % v[:3] + ('-' + v[3] if len(v) > 3 and v[3] else ''),
         'machine': machine}
    s = os.statvfs('.')
    r['flash'] = {'total': s[0] * s[2], 'free': s[0] * s[3]}
    b = load('board.json')
    r['board'] = b and {'name': b.get('name'), 'title': b.get('title')}
    r['evaluator_on_flash'] = 'evaluator.py' in os.listdir()
    site = load('site.json')
    r['site'] = site
    if site:
        try:
            fp = binascii.hexlify(hashlib.sha256(binascii.unhexlify(site['key'])).digest())[:8].decode()
        except Exception:
            fp = None
        # Only these leave the board.
        r['site'] = {'hall': site.get('hall'), 'device': site.get('device'), 'window': site.get('window'),
                     'broker': '%s:%s' % (site.get('broker_host'), site.get('broker_port', 1883)),
                     'ssid': site.get('ssid'), 'key_fingerprint': fp}
    # Opened as the evaluator opens it.
    site = site or {}
    r['outbox'] = outbox(site.get('segment_bytes', 4096), site.get('max_segments', 32))
    print(json.dumps(r))
_ql_info()
del _ql_info
"""


def probe(board):
    """What is on the board: the dict `info --json` prints."""
    out = board.exec(_PROBE).strip().splitlines()
    try:
        facts = json.loads(out[-1])
    except (IndexError, ValueError):
        raise HallctlError("the board's answer was not understood: %r" % b"\n".join(out)[-200:])
    try:
        m = board.read_json(MANIFEST)
    except ValueError:
        m = False
    if isinstance(m, dict) and isinstance(m.get("files"), dict):
        want = m["files"]
        have = board.sha256(sorted(want))
        facts["firmware"] = {"version": m.get("firmware"), "board": m.get("board"), "files": len(want),
                             "partial": bool(m.get("partial")),
                             "missing": [p for p in sorted(want) if have[p] is None],
                             "changed": [p for p in sorted(want) if have[p] not in (None, want[p])]}
    else:
        facts["firmware"] = None if m is None else False
    order = ("micropython", "machine", "board", "firmware", "evaluator_on_flash", "site", "outbox", "flash")
    return {k: facts[k] for k in order}


def _size(n):
    for unit in ("bytes", "KB", "MB"):
        if n < 1024 or unit == "MB":
            return ("%.1f %s" if unit == "MB" else "%d %s") % (n, unit)
        n /= 1024.0


def report(facts, port):
    """The technician's lines, one per part of the board."""
    lines = [("port", port), ("MicroPython", "%s on %s" % (facts["micropython"], facts["machine"]))]
    b = facts["board"]
    if b is None:
        lines.append(("board", "no board file (board.json): hallctl install %s --board NAME" % port))
    elif b is False:
        lines.append(("board", "board.json is damaged: hallctl update %s --board NAME" % port))
    else:
        lines.append(("board", "%s: %s" % (b["name"], b["title"])))

    fw = facts["firmware"]
    if fw is None and facts["evaluator_on_flash"]:
        lines.append(("firmware", "not installed by hallctl (no %s): hallctl update %s --board NAME "
                                  "checks every file and records it" % (MANIFEST, port)))
    elif fw is None:
        lines.append(("firmware", "no firmware installed: hallctl install %s --board NAME" % port))
    elif fw is False:
        lines.append(("firmware", "%s is damaged: hallctl update %s --board NAME" % (MANIFEST, port)))
    else:
        text = "%s, %d files" % (fw["version"] or "unknown version", fw["files"])
        if fw["partial"]:
            text += ", update not finished: run hallctl update %s again" % port
        elif fw["missing"] or fw["changed"]:
            text += ", %d missing, %d changed since installed (%s): hallctl update %s" % (
                len(fw["missing"]), len(fw["changed"]), ", ".join((fw["missing"] + fw["changed"])[:4]), port)
        else:
            text += ", all as installed"
        lines.append(("firmware", text))

    s = facts["site"]
    if s is None:
        lines.append(("site", "not provisioned (no site.json): hallctl provision %s ..." % port))
    elif s is False:
        lines.append(("site", "site.json is damaged: provision the board again"))
    else:
        lines.append(("site", "%s/%s, window %s, broker %s, Wi-Fi %s" % (
            s["hall"], s["device"], s["window"], s["broker"], '"%s"' % s["ssid"] if s["ssid"] else "none")))
        lines.append(("key", "fingerprint %s (sha256 of the key)" % s["key_fingerprint"]
                      if s["key_fingerprint"] else "missing or not 64 hex: provision again"))

    ob = facts["outbox"]
    if ob is None:
        lines.append(("outbox", "empty (no outbox yet)"))
    else:
        where = "%d segment files, %s" % (ob["segments"], _size(ob["bytes"]))
        if ob["events"] is None:
            lines.append(("outbox", "%s (events not counted: no outbox.py on the board that reads "
                                    "without writing)" % where))
        else:
            lines.append(("outbox", "%d events wait for the agent's ack (%s)" % (ob["events"], where)
                          if ob["events"] else "empty, every event acked (%s)" % where))
    f = facts["flash"]
    lines.append(("flash", "%s free of %s" % (_size(f["free"]), _size(f["total"]))))
    return "\n".join("%-12s %s" % line for line in lines)
