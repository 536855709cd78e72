"""`make demo`: a hall on this machine, run on embedded defaults.

Starts a private Mosquitto, the reference county server, the edge agent,
virtual evaluators and two self-service kiosks running the real firmware
under MicroPython, posts a few cases to the county (as the hall's business
system would: some green, yellow and red), then lets simulated citizens be
served and press buttons at the windows, and look up, print and rate cases
at the kiosks. Prints a live summary until Ctrl-C, or for --seconds and then
checks that every rating a citizen was thanked for, at a window or a kiosk,
reached the county database exactly once (exit 0) or not (exit 1).
"""
import argparse
import datetime
import os
import random
import sys
import threading
import time

from tools.hall import Hall
from tools.procs import wait_for

# Most citizens are content; the lobby screen should still see some 差评.
LEVEL_WEIGHTS = [("very_satisfied", 60), ("satisfied", 25), ("basically_satisfied", 8),
                 ("dissatisfied", 4), ("very_dissatisfied", 3)]
# Who is on duty at A01, A02, ...: their names on the evaluators and the lobby screen,
# their numbers (经办人编号) in every rating and in the monthly report.
ROSTER = [("王芳", "1024"), ("李强", "1025"), ("张丽", "1031"), ("刘洋", "1042"), ("陈静", "1057"),
          ("杨帆", "1063"), ("赵敏", "1078"), ("黄磊", "1081")]


def citizen_loop(vd, stop, pressed, lock, rng):
    ticket = 0
    levels = [lv for lv, w in LEVEL_WEIGHTS for _ in range(w)]
    while not stop.is_set():
        ticket += 1
        try:
            vd.call("A%03d" % ticket)
            time.sleep(rng.uniform(0.2, 1.0))          # the service, compressed
            if rng.random() < 0.1:
                vd.staff("pause")
                time.sleep(0.2)
                vd.staff("resume")
            vd.staff("end")
            time.sleep(rng.uniform(0.1, 0.4))          # the citizen reads the prompt
            vd.press(rng.choice(levels))
            with lock:
                pressed[0] += 1
        except OSError as e:                           # device restarting: try again
            print("  %s: %s" % (vd.device, e), file=sys.stderr)
        time.sleep(rng.uniform(0.2, 0.8))


def demo_cases(today):
    """Case events for the kiosks to find: accepted today with 10 and 1 working
    days (green, yellow), three weeks ago with 3 (red), and one ready to collect."""
    old = (today - datetime.timedelta(days=21)).isoformat()
    day = today.isoformat()
    events, n = [], 0
    for light, accepted, days, count in (("green", day, 10, 3), ("yellow", day, 1, 2), ("red", old, 3, 2),
                                         ("ready", old, 3, 1)):
        for _ in range(count):
            n += 1
            case = "DM%s%04d" % (today.strftime("%Y%m%d"), n)
            events.append({"id": case + "-1", "case": case, "type": "accepted", "date": accepted,
                           "item": "431100-%03d" % n, "item_name": "营业执照变更登记", "window": "A01",
                           "promised_days": days})
            if light == "ready":
                events += [{"id": case + "-2", "case": case, "type": "completed", "date": day},
                           {"id": case + "-3", "case": case, "type": "ready", "date": day}]
    return events


def kiosk_loop(vk, cases, stop, counts, lock, rng):
    """A citizen at a kiosk: a case scanned, sometimes its slip printed, then
    the rating prompt: mostly a level, sometimes walked away from (unrated)."""
    levels = [lv for lv, w in LEVEL_WEIGHTS for _ in range(w)]

    def reach(*states, timeout=30):
        wait_for(lambda: vk.state() in states, timeout, 0.1, "kiosk %s in %s" % (vk.device, states))
    while not stop.is_set():
        try:
            vk.scan(rng.choice(cases) if cases and rng.random() < 0.9 else "DM%06d" % rng.randrange(10 ** 6))
            reach("case", "message", "prompt")
            if vk.state() == "case":
                time.sleep(rng.uniform(0.3, 1.0))     # the citizen reads the screen
                vk.tap("print" if rng.random() < 0.3 else "back")
            reach("prompt", timeout=60)
            if rng.random() < 0.9:
                vk.tap(rng.choice(levels))
                with lock:
                    counts["pressed"] += 1
            else:
                reach("idle", timeout=60)             # walked away: unrated
        except (OSError, TimeoutError) as e:
            print("  %s: %s" % (vk.device, e), file=sys.stderr)
        time.sleep(rng.uniform(0.5, 2.0))


def thanks(devices):
    return sum(vd.stats().get("thanks", 0) for vd in devices.values())


def at_county(hall):
    """Ratings the county holds: (from evaluators, from kiosks), or (None, None)."""
    try:
        by = [r["device"] for r in hall.county_events("rating")]
    except Exception:
        return None, None
    kiosks = sum(d in hall.kiosks for d in by)
    return len(by) - kiosks, kiosks


def main(argv=None):
    ap = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=0, help="run this long, then verify (0: until Ctrl-C)")
    ap.add_argument("--devices", type=int, default=5, help="virtual evaluators (default: 5)")
    ap.add_argument("--kiosks", type=int, default=2, help="virtual self-service kiosks (default: 2)")
    ap.add_argument("--work-dir", default="demo-run", help="state of this run (default: demo-run/)")
    args = ap.parse_args(argv)

    work = os.path.join(args.work_dir, time.strftime("%Y%m%d-%H%M%S"))
    hall = Hall(work, devices=args.devices, kiosks=args.kiosks, agent_config={"kiosk": {"cases_poll_s": 5.0}})
    print("starting a hall in %s: Mosquitto, county server, edge agent, %d evaluators, %d kiosks"
          % (work, args.devices, args.kiosks))
    stop = threading.Event()
    pressed, lock = [0], threading.Lock()
    kiosk_counts = {"pressed": 0}
    try:
        hall.start()
        try:
            hall.post_cases(demo_cases(datetime.date.today()))
            cases = sorted(hall.county_cases())
            lights = [c["light"] for c in hall.county_cases().values()]
            print("cases posted to the county: %d (green %d, yellow %d, red %d, no light %d)" % (
                len(cases), lights.count("green"), lights.count("yellow"), lights.count("red"), lights.count(None)))
        except RuntimeError as e:       # a year without a holiday schedule: the kiosks find no case
            cases = []
            print("no cases for the kiosks: %s" % e, file=sys.stderr)
        for i in range(args.devices):
            name, number = ROSTER[i % len(ROSTER)]
            hall.edge_agent("window", "set", "A%02d" % (i + 1), "--staff", name, "--staff-no", number)
        print("hall screen:   %s  (JSON: /api/hall, Prometheus: /metrics)" % hall.screen_url)
        print("county server: %s" % hall.county_url)
        print("monthly report: .venv/bin/county-server report --db %s --hall %s --month %s"
              % (os.path.join(work, "county.db"), hall.hall, time.strftime("%Y-%m")))
        rng = random.Random(1)
        threads = [threading.Thread(target=citizen_loop, args=(vd, stop, pressed, lock, random.Random(rng.random())),
                                    daemon=True) for vd in hall.devices.values()]
        threads += [threading.Thread(target=kiosk_loop, args=(vk, cases, stop, kiosk_counts, lock,
                                                              random.Random(rng.random())), daemon=True)
                    for vk in hall.kiosks.values()]
        for t in threads:
            t.start()
        started = time.monotonic()
        while not args.seconds or time.monotonic() - started < args.seconds:
            time.sleep(2)
            # Downstream first, so a press finishing meanwhile mostly shows as "pressed" ahead
            # of "thanked" (a press counts when its button is released, after the thank-you).
            (county, kcounty), thanked, kthanked = at_county(hall), thanks(hall.devices), thanks(hall.kiosks)
            print("  %4.0fs  windows: pressed %5d thanked %5d at county %5s   kiosks: thanked %4d at county %4s" % (
                time.monotonic() - started, pressed[0], thanked, county, kthanked, kcounty))
        stop.set()
        for t in threads:
            t.join(10)
        want, kwant = thanks(hall.devices), thanks(hall.kiosks)
        print("citizens stopped; waiting for the county to hold all %d + %d ratings ..." % (want, kwant))
        try:
            wait_for(lambda: at_county(hall) == (want, kwant), 90, 0.5, "every rating at the county")
        except TimeoutError:
            pass
        got, kgot = at_county(hall)
        print("windows: pressed %d, thanked %d, stored at county %s" % (pressed[0], want, got))
        print("kiosks:  rated %d, thanked %d, stored at county %s" % (kiosk_counts["pressed"], kwant, kgot))
        if got == want == pressed[0] and kgot == kwant:
            print("OK: every rating reached the county exactly once")
            return 0
        print("MISMATCH: see the logs in %s" % work, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping")
        return 0
    finally:
        stop.set()
        hall.stop()


if __name__ == "__main__":
    sys.exit(main())
