# The uplink's side of device requests (protocol SPEC 'Requests') under the
# real MicroPython: counters above the config's rq, a `replayed` refusal
# answered once more above the agent's counter, replies matched to the
# request waiting. Run by tests/test_firmware_requests.py; prints "PASS".
from protocol import messages
from uplink import Uplink

KEY = bytes(range(32))
SITE = {"hall": "h1", "device": "ks-01", "broker_host": "127.0.0.1"}
CMD = "qinglian/v1/h1/ks-01/cmd"
CONFIG = "qinglian/v1/h1/ks-01/config"
seen = []
n_agent = [100]


def sealed(channel, msg):
    n_agent[0] += 1
    return messages.seal(KEY, channel, msg, n_agent[0])


def check(cond, what):
    if not cond:
        raise SystemExit("FAIL " + what)


up = Uplink(SITE, KEY, None, None, lambda: b"", lambda m, r: None, seen.append, lambda w, e: print(w, e))
check(up.ask({"op": "ping"}) is None, "no link: no request")
up.connected = True
up._message(CONFIG, sealed("config", {"rq": 41}), False)
n = up.ask({"op": "ping"})
check(n == 42, "continues above the config's rq: %r" % n)
# A reply to another request is not the app's.
up._message(CMD, sealed("cmd", {"cmd": "reply", "re": 7}), False)
check(seen == [], "a reply to another request is ignored")
# The agent's counter was further on (a stale config): sent once more, above it.
up._message(CMD, sealed("cmd", {"cmd": "reply", "re": 42, "error": "replayed", "rq": 50}), False)
check(seen == [] and up.asking[1] == 51 and up.asking[2] is False, "re-asked above rq: %r" % (up.asking,))
up._message(CMD, sealed("cmd", {"cmd": "reply", "re": 51, "rq": 51, "ok": 1}), False)
check(len(seen) == 1 and seen[0]["re"] == 42 and seen[0]["ok"] == 1, "the app sees its own counter: %r" % seen)
check(up.asking is None, "answered")
# A second refusal is the app's to show, not a loop.
n = up.ask({"op": "ping"})
up._message(CMD, sealed("cmd", {"cmd": "reply", "re": n, "error": "replayed", "rq": 60}), False)
up._message(CMD, sealed("cmd", {"cmd": "reply", "re": 61, "error": "replayed", "rq": 70}), False)
check(seen[-1].get("error") == "replayed" and seen[-1]["re"] == n, "refused twice: told once: %r" % seen)
# Other commands still reach the app; a forged reply does not.
up._message(CMD, messages.seal(bytes(32), "cmd", {"cmd": "reply", "re": 1}, 10 ** 9), False)
check(up.bad == 1, "forged reply counted")
print("PASS")
